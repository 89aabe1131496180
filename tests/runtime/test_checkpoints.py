"""Reading a checkpoint weights-only: a file that is no checkpoint at all (a results.json handed over as one)
is named as such, not as a pickle of Python objects."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from medtransfer.runtime.checkpoints import AtomicCheckpointIO, CheckpointFileError, read_checkpoint


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


REFUSED_SAVE = """
import resource, signal, sys, torch
from medtransfer.runtime.checkpoints import AtomicCheckpointIO
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
try:
    AtomicCheckpointIO().save_checkpoint({"epoch": 2, "weights": torch.zeros(1 << 20)}, sys.argv[1])
except Exception as error:
    print(type(error).__name__, error)
"""


@pytest.mark.skipif(os.name != "posix", reason="a file-size limit (ulimit -f) is POSIX")
def test_a_checkpoint_the_file_system_refuses_is_named_and_the_last_one_kept(tmp_path):
    """A real refused write, not a mocked one: past a file-size limit, as on a full disk, torch's own writer
    raised "enforce fail at inline_container.cc ... unexpected pos" and the fit ended in that traceback."""
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, target)
    before = target.read_bytes()
    said = subprocess.run([sys.executable, "-c", REFUSED_SAVE, str(target)], capture_output=True, text=True,
                          timeout=300).stdout
    assert said.startswith(f"OutputWriteError cannot write {target}: File too large;"), said
    assert "ulimit -f" in said and "inline_container" not in said
    assert target.read_bytes() == before and os.listdir(tmp_path) == ["last.ckpt"]
