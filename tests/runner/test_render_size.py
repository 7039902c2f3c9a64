"""SynthWorld is rendered at a dual encoder's own input resolution (no resizing on the way in)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.probe import ProbeContext
from vlmtrust.runner.engine import evaluate_probe, render_size


class _Spy:
    """Records the size of every image a model is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.sizes = inner, set()  # type: set[tuple[int, int]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def embed_images(self, images: Sequence[Any]) -> Any:
        self.sizes.update(im.size for im in images)
        return self.inner.embed_images(images)


@pytest.mark.parametrize("probe_name", ["capability/zero_shot", "robustness/typographic"])
def test_probes_render_at_the_models_input_size(tiny_clip, probe_name):
    from vlmtrust.core.probe import get_probe

    assert tiny_clip.input_size == (32, 32) and render_size(tiny_clip) == 32
    spy = _Spy(tiny_clip)
    res = evaluate_probe(spy, get_probe(probe_name)(), ProbeContext(limit=3))
    assert res.n_errors == 0 and res.n_samples > 0
    assert spy.sizes == {(32, 32)}


def test_rendered_images_reach_the_model_unresized(tiny_clip):
    from vlmtrust.probes import _data

    ctx = ProbeContext(image_size=render_size(tiny_clip))
    img = next(iter(_data.labeled_images(ctx, 1, purpose="t"))).images[0].load().convert("RGB")
    pixels = tiny_clip.to_pixels([img])[0].permute(1, 2, 0).numpy()
    assert np.allclose(pixels, np.asarray(img, dtype=np.float32) / 255.0, atol=1e-6)


def test_reference_clip_keeps_its_64_px_scenes(ref_clip):
    from vlmtrust.probes import _data

    assert render_size(ref_clip) == 64
    default = next(iter(_data.labeled_images(ProbeContext(), 1, purpose="t")))
    sized = next(iter(_data.labeled_images(ProbeContext(image_size=64), 1, purpose="t")))
    assert default.images[0].load().tobytes() == sized.images[0].load().tobytes()


def test_generative_and_unsized_models_get_the_default():
    from vlmtrust.models.loader import load_model

    assert render_size(load_model("mock:generative")) is None
    assert render_size(load_model("mock:dual")) is None
