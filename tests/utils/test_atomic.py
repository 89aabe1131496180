"""Atomic files: whole or absent, never half, and no temporary file left behind."""

from __future__ import annotations

import os
import stat

import pytest

from medtransfer.utils.atomic import atomic_path, write_bytes_atomic


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
