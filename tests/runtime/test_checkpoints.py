"""Reading a checkpoint weights-only: a file that is no checkpoint at all (a results.json handed over as one)
is named as such, not as a pickle of Python objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medtransfer.runtime.checkpoints import CheckpointFileError, read_checkpoint


def test_weights_are_read(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 3}, tmp_path / "last.ckpt")
    checkpoint = read_checkpoint(tmp_path / "last.ckpt")
    assert checkpoint["epoch"] == 3 and torch.equal(checkpoint["state_dict"]["w"], torch.ones(2))


@pytest.mark.parametrize(("content", "refusal"), [
    (b'{"metrics": {"test": {"auroc": 0.9}}}\n',
     r"results.json \(38 bytes\) is truncated or not a PyTorch checkpoint \(neither the zip archive "
     r"torch.save writes nor a pickle\)"),
    ("pickled objects", r"results.json holds pickled Python objects, not only weights"),
], ids=["a JSON file", "a pickle of objects"])
def test_a_file_that_is_no_weights_file_says_what_it_is(tmp_path, content, refusal):
    path = tmp_path / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save({"state_dict": {}, "path": Path("x")}, path)  # a Path: unpickling it runs a constructor
    with pytest.raises(CheckpointFileError, match=refusal):
        read_checkpoint(path)
