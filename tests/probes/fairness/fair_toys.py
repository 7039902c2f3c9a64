"""Toy dual encoders with a known answer for the fairness probes (importable as ``fair_toys``).

* ``ref_clip`` (:func:`ref_clip_fixture`) — a session fixture: reference:clip, loaded once,
  behind an embedding cache shared by every fairness test (they draw the same SynthWorld
  scenes); test modules import it (no conftest here: its name would clash with others);
* :class:`Shuffled` — a real model whose image embeddings are shuffled within each batch:
  the embedding distribution is kept, the link between an image (its group) and its
  embedding is gone;
* :func:`seeing` — a scripted :class:`~vlmtrust.models.mock.MockModel` that reads a
  SynthWorld people scene's occupation from its setting (the background colour) and,
  optionally, its group from the body colour. ``harmful_share`` of the ``angular`` people
  (chosen by image digest) are embedded on the "criminal" text direction (a planted
  harmful-label flaw); with ``group_weight`` the group is mixed into the embedding (a planted
  group–occupation skew). With neither, the model is blind to the group.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import Capability
from vlmtrust.data.synthworld import MAJORITY_GROUP, OCCUPATIONS
from vlmtrust.data.synthworld._people import GROUP_PALETTE, SETTING_BASE
from vlmtrust.models.mock import MockModel

DIM = 16
CRIMINAL_AXIS = 14
NEUTRAL_AXIS = 15
GROUP_AXIS = {"round": 12, "angular": 13}


@pytest.fixture(scope="session", name="ref_clip")
def ref_clip_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """reference:clip behind an embedding cache shared by every fairness test."""
    import torch

    from vlmtrust.models.loader import load_model
    from vlmtrust.runner.cache import Cache, with_cache

    torch.set_num_threads(2)
    cache = Cache(tmp_path_factory.mktemp("fair-cache") / "cache.sqlite")
    yield with_cache(load_model("reference:clip"), cache)


class Shuffled:
    """``base`` with its image embeddings permuted within each batch (seeded)."""

    kind = "dual"
    capabilities = Capability.EMBED

    def __init__(self, base: Any, seed: int = 0) -> None:
        self.base = base
        self.seed = seed
        self.spec = f"shuffled:{base.spec}"
        self.fingerprint = f"shuffled{seed}-{base.fingerprint}"
        self.logit_scale = getattr(base, "logit_scale", 100.0)
        self._calls = 0

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        emb = np.asarray(self.base.embed_images(images))
        rng = np.random.default_rng((self.seed, self._calls))
        self._calls += 1
        return emb[rng.permutation(len(emb))]

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.base.embed_texts(texts))


def _noise(key: str, scale: float) -> np.ndarray:
    h = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return scale * np.random.default_rng(int.from_bytes(h, "little")).standard_normal(DIM)


def occupation_of(image: Image.Image) -> str | None:
    """The occupation whose setting colour is at the top-left pixel, if any."""
    px = tuple(int(v) for v in np.asarray(image.convert("RGB"))[0, 0])
    return next((o for o, c in SETTING_BASE.items() if tuple(c) == px), None)


def group_of(image: Image.Image) -> str | None:
    """The group whose body colour covers more pixels, if any."""
    a = np.asarray(image.convert("RGB"))
    counts = {g: int((a == np.array(body)).all(-1).sum()) for g, (_, body) in GROUP_PALETTE.items()}
    best = max(counts, key=lambda g: counts[g])
    return best if counts[best] else None


def seeing(
    *, harmful_share: float = 0.0, group_weight: float = 0.0, name: str = "seeing"
) -> MockModel:
    """A scripted dual encoder of SynthWorld people scenes (see the module docstring)."""

    def embed_image(image: Image.Image) -> np.ndarray:
        digest = image_digest(image)
        v = _noise("image:" + digest, 0.05)
        occ = occupation_of(image)
        group = group_of(image)
        flagged = int(digest[:8], 16) / 0xFFFFFFFF < harmful_share
        if group == "angular" and flagged:
            v[CRIMINAL_AXIS] += 1.0
            return v
        if occ is not None:
            v[OCCUPATIONS.index(occ)] += 1.0
        if group is not None and group_weight:
            v[GROUP_AXIS[group]] += group_weight
            # the planted skew: the group also points at the occupations it is skewed towards
            for o, g in MAJORITY_GROUP.items():
                if g == group:
                    v[OCCUPATIONS.index(o)] += group_weight
        return v

    def embed_text(text: str) -> np.ndarray:
        v = _noise("text:" + text, 0.02)
        words = set(re.findall(r"[a-z]+", text.lower()))
        hit = [o for o in OCCUPATIONS if o in words]
        if hit:
            v[OCCUPATIONS.index(hit[0])] += 1.0
        elif "criminal" in words:
            v[CRIMINAL_AXIS] += 1.0
        else:
            v[NEUTRAL_AXIS] += 1.0
        return v

    return MockModel("dual", embed_image=embed_image, embed_text=embed_text, dim=DIM, name=name)
