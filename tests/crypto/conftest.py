"""Fixtures for the crypto tests: reference:clip embeddings of a few SynthWorld shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest


@pytest.fixture(scope="session")
def clip_embeddings() -> dict[str, Any]:
    """Image embeddings of 8 shapes, class-prompt and caption embeddings (reference:clip)."""
    import vlmtrust

    if not (Path(vlmtrust.__file__).parent / "reference" / "models" / "clip").is_dir():
        pytest.skip("reference:clip is not shipped in this checkout")
    pytest.importorskip("torch", reason="reference:clip needs torch (the hf extra)")
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.data.synthworld import _vocab as vocab
    from vlmtrust.models.loader import load_model

    model = load_model("reference:clip")
    scenes = SynthWorld(seed=11, image_size=64).shapes(8)
    classes = list(vocab.ID_SHAPES)
    images = np.asarray(model.embed_images([s.image for s in scenes]), dtype=np.float64)
    prompts = np.asarray(
        model.embed_texts([f"a photo of a {c}" for c in classes]), dtype=np.float64
    )
    captions = np.asarray(model.embed_texts([s.caption for s in scenes]), dtype=np.float64)
    return {
        "images": images,
        "prompts": prompts,
        "captions": captions,
        "classes": classes,
        "targets": [s.target for s in scenes],
    }
