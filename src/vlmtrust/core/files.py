"""File hashing and permissions shared by the model loaders, writers and reference tooling."""

from __future__ import annotations

import contextlib
import hashlib
import os
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


def current_umask() -> int:
    """The process umask (read without changing it where ``/proc`` allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: the only portable read is a set-and-restore
    os.umask(old)
    return old


def respect_umask(*paths: Path) -> None:
    """Give files (and folders, recursively) the modes a plain ``open`` would have given them.

    Writers that go through a temp file (``tempfile.mkstemp``) or safetensors create
    owner-only files (0600) whatever the umask; shared runs and hardened models must be
    readable by whoever the umask lets read them.
    """
    mask = current_umask()
    for top in paths:
        top = Path(top)
        items = [top, *top.rglob("*")] if top.is_dir() else [top]
        for p in items:
            if p.is_symlink():
                continue
            mode = (0o777 if p.is_dir() else 0o666) & ~mask
            with contextlib.suppress(OSError):
                os.chmod(p, mode)


def resource_rows(*parts: str) -> list[dict[str, Any]]:
    """The JSON objects, one a line, of the shipped ``vlmtrust/resources/<parts>`` (.jsonl).

    Blank lines are skipped.
    """
    import json
    from importlib import resources

    path = resources.files("vlmtrust.resources").joinpath(*parts)
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
