"""Shared fixtures of the fairness probe tests: reference:clip (loaded once), with a cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ref_clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """reference:clip behind an embedding cache shared by every fairness test (same images)."""
    import torch

    from vlmtrust.models.loader import load_model
    from vlmtrust.runner.cache import Cache, with_cache

    torch.set_num_threads(2)
    cache = Cache(Path(tmp_path_factory.mktemp("fair-cache")) / "cache.sqlite")
    yield with_cache(load_model("reference:clip"), cache)
