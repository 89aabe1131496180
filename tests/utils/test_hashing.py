"""Content hashes agree with hashlib and do not depend on key order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from medtransfer.utils.hashing import canonical_json, file_digest, json_digest


def test_json_digest_ignores_key_order_and_reads_paths_as_strings():
    document = {"b": [1, 2.5, None], "a": {"y": "z", "x": Path("/data/x")}}
    reordered = {"a": {"x": "/data/x", "y": "z"}, "b": [1, 2.5, None]}
    assert canonical_json(document) == '{"a":{"x":"/data/x","y":"z"},"b":[1,2.5,null]}'
    assert json_digest(document) == json_digest(reordered)
    assert json_digest(document) == hashlib.sha256(canonical_json(reordered).encode()).hexdigest()[:16]
    assert json_digest(document) != json_digest({**reordered, "b": [1, 2.5]})
    assert json.loads(canonical_json(document)) == reordered


def test_file_digest_matches_hashlib_over_several_chunks(tmp_path, monkeypatch):
    from medtransfer.utils import hashing

    monkeypatch.setattr(hashing, "CHUNK_BYTES", 7)
    path = tmp_path / "file.bin"
    path.write_bytes(bytes(range(256)) * 3)
    assert file_digest(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_digest(str(path), "md5") == hashlib.md5(path.read_bytes()).hexdigest()
