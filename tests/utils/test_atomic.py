"""Atomic files: whole or absent, never half, and no temporary file left behind."""

from __future__ import annotations

import os
import stat

import pytest

from medtransfer.utils import atomic
from medtransfer.utils.atomic import atomic_path, torch_save_atomic, write_bytes_atomic


def test_the_file_appears_only_when_the_block_ends(tmp_path):
    target = tmp_path / "deep" / "folder" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("new")
        assert tmp.parent == target.parent and not target.exists()
    assert target.read_text() == "new" and os.listdir(target.parent) == ["out.txt"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.txt"]


def test_temporary_names_are_unique_and_permissions_follow_the_umask(tmp_path):
    target = tmp_path / "out.bin"
    with atomic_path(target) as first, atomic_path(target) as second:
        first.write_bytes(b"1")
        second.write_bytes(b"2")
        assert first != second
    assert target.read_bytes() == b"1"  # the last rename wins
    write_bytes_atomic(target, b"data")
    mask = os.umask(0)
    os.umask(mask)
    assert target.read_bytes() == b"data"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("raised", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_what_a_torch_save_write_raised_comes_out_as_itself(tmp_path, monkeypatch, raised):
    """Ctrl-C (or SIGTERM's exception) during a checkpoint save must end the run as the signal, not as torch's
    "enforce fail" RuntimeError; a full disk as the file system's refusal, naming the file."""
    import torch

    target = tmp_path / "last.ckpt"
    target.write_bytes(b"old")

    class Interrupted:
        def __init__(self, handle):
            self.handle, self.calls = handle, 0

        def write(self, data):
            self.calls += 1
            if self.calls == 2:
                raise raised
            return self.handle.write(data)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    monkeypatch.setattr(atomic, "open", lambda path, mode: Interrupted(open(path, mode)), raising=False)
    with pytest.raises(type(raised)) as caught:
        torch_save_atomic({"weights": torch.zeros(1000)}, target)
    assert isinstance(raised, KeyboardInterrupt) or str(target) in str(caught.value)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["last.ckpt"]
