"""Reports and hardened weights respect the umask (not owner-only 0600 from temp files)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from vlmtrust.core.files import current_umask, respect_umask
from vlmtrust.report.html import write_text_atomic


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_reports_are_written_with_the_umask(tmp_path: Path, umask_022: None) -> None:
    assert current_umask() == 0o022
    out = write_text_atomic(tmp_path / "report.html", "<html></html>")
    assert _mode(out) == 0o644  # mkstemp alone gives 0600


def test_safetensors_weights_are_made_readable(tmp_path: Path, umask_022: None) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    d = tmp_path / "model"
    d.mkdir()
    save_file({"w": torch.zeros(2)}, str(d / "model.safetensors"))
    assert _mode(d / "model.safetensors") == 0o600  # what safetensors does by itself
    respect_umask(d)
    assert _mode(d / "model.safetensors") == 0o644 and _mode(d) == 0o755


def test_a_strict_umask_is_kept(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        out = write_text_atomic(tmp_path / "r.md", "x")
        assert _mode(out) == 0o600
    finally:
        os.umask(old)
