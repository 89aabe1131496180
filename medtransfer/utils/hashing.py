"""Content hashes: of JSON-like documents (fingerprints of configs and feature stores) and of files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

CHUNK_BYTES = 1 << 22


def canonical_json(document: Any) -> str:
    """One text per content: keys sorted, no white space, other objects (paths) as their strings."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)


def json_digest(document: Any) -> str:
    """16 hex digits of the SHA-256 of the document's canonical JSON: equal contents, equal digests."""
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()[:16]


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """The full hex digest of a file's bytes (``sha256``, or ``md5`` where a publisher gives MD5), read in
    chunks so a large file never sits in memory whole."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()
