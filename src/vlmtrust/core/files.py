"""File hashing shared by the model loaders and the reference-model tooling."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
"""Bytes read at a time."""


def hash_into(h: Any, path: Path) -> None:
    """Feed the bytes of ``path`` to the hash object ``h`` (``hashlib`` style), chunk by chunk."""
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    hash_into(h, path)
    return h.hexdigest()
