"""A tiny but real dual encoder and a probe for testing the runner's mechanics."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, Record
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.core.stats import accuracy, metric
from vlmtrust.core.types import Capability, Pillar

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


class ColourEncoder:
    """Embeds an image as its normalised mean colour and a text by the colour word it names."""

    kind = "dual"
    capabilities = Capability.EMBED
    logit_scale = 100.0

    def __init__(self, delay_s: float = 0.0, spec: str = "toy:colour") -> None:
        self.spec = spec
        self.fingerprint = "toy-colour-v1"
        self.delay_s = delay_s
        self.image_calls = 0
        self.images_seen = 0

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.image_calls += 1
        self.images_seen += len(images)
        if self.delay_s:
            time.sleep(self.delay_s)
        v = np.stack(
            [np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) for im in images]
        )
        v = v - v.mean(axis=1, keepdims=True)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            name = next((c for c in COLOURS if c in t), None)
            rgb = np.array(COLOURS[name] if name else (128, 128, 128), dtype=np.float32)
            rgb = rgb - rgb.mean()
            rows.append(rgb / (np.linalg.norm(rgb) + 1e-9))
        return np.stack(rows).astype(np.float32)


class ColourParams(Params):
    n: int = 40
    bad_every: int = 0
    """Every k-th sample raises inside evaluate (to test isolation)."""
    bad_path: str | None = None
    """A path for sample 3's image (to test load errors)."""


@probe("capability/test_colour")
class ColourProbe(Probe):
    pillar = Pillar.CAPABILITY
    requires = Capability.EMBED
    Params = ColourParams
    batch_size = 8
    description = "test probe"
    params: ColourParams

    def samples(self, ctx: ProbeContext):
        rng = ctx.rng("colour")
        names = list(COLOURS)
        for i in range(ctx.size(self.params.n)):
            name = names[int(rng.integers(0, 3))]
            base = np.array(COLOURS[name], dtype=np.int16)
            noise = rng.integers(-60, 60, size=(8, 8, 3))
            arr = np.clip(base + noise, 0, 255).astype(np.uint8)
            ref = ImageRef.from_image(Image.fromarray(arr))
            if self.params.bad_path and i == 3:
                ref = ImageRef.from_path(self.params.bad_path)
            yield Sample(id=f"c{i:03d}", images=(ref,), target=name, attributes={"colour": name})

    def evaluate(self, model, batch, ctx):
        for s in batch:
            if self.params.bad_every and int(s.id[1:]) % self.params.bad_every == 0:
                raise RuntimeError(f"boom on {s.id}")
        names = list(COLOURS)
        txt = model.embed_texts([f"a {n} thing" for n in names])
        img = model.embed_images([s.images[0].load() for s in batch])
        pred = (img @ txt.T).argmax(axis=1)
        return [
            self.record(
                s, output={"prediction": names[p]}, scores={"correct": float(names[p] == s.target)}
            )
            for s, p in zip(batch, pred, strict=True)
        ]

    def aggregate(self, records: Sequence[Record], ctx):
        return [
            metric(
                "accuracy",
                accuracy,
                [r.scores["correct"] for r in records],
                higher_is_better=True,
                groups=[r.attributes["colour"] for r in records],
                group_by="colour",
                headline=True,
                seed=ctx.seed,
            )
        ]

    def examples(self, records, ctx):
        return [Example(sample_id=r.sample_id, title="sample") for r in records[:2]]


class AskParams(Params):
    n: int = 24
    slow_every: int = 0
    """Every k-th prompt carries the SLOW marker (the test server answers it late)."""
    fail_batch: int = -1
    """Raise a CapabilityError in evaluate for the batch holding sample ``fail_batch``."""
    id_prefix: str = "q"


@probe("capability/test_ask")
class AskProbe(Probe):
    """Asks one text question per sample (no images); parallel batches allowed."""

    pillar = Pillar.CAPABILITY
    requires = Capability.GENERATE
    Params = AskParams
    batch_size = 4
    parallel_batches = True
    description = "test probe (generative)"
    params: AskParams

    def samples(self, ctx: ProbeContext):
        for i in range(ctx.size(self.params.n)):
            slow = self.params.slow_every and i % self.params.slow_every == 0
            yield Sample(
                id=f"{self.params.id_prefix}{i:03d}",
                prompt=f"question {i}" + (" SLOW" if slow else ""),
                attributes={"parity": "even" if i % 2 == 0 else "odd"},
            )

    def evaluate(self, model, batch, ctx):
        from vlmtrust.core.errors import CapabilityError
        from vlmtrust.core.model import GenerateRequest, generate_sync

        ids = [s.id for s in batch]
        if f"{self.params.id_prefix}{self.params.fail_batch:03d}" in ids:
            raise CapabilityError("test: this batch cannot run")
        reqs = [
            GenerateRequest(s.prompt or "", max_new_tokens=4, seed=ctx.seed, sample_id=s.id)
            for s in batch
        ]
        out = []
        for s, g in zip(batch, generate_sync(model, reqs), strict=True):
            if not g.ok:
                out.append(self.record(s, error=g.error))
                continue
            out.append(
                self.record(s, output={"answer": g.text}, scores={"length": float(len(g.text))})
            )
        return out

    def aggregate(self, records: Sequence[Record], ctx):
        return [
            metric(
                "mean_length",
                accuracy,  # the plain mean
                [r.scores["length"] for r in records],
                higher_is_better=True,
                groups=[r.attributes["parity"] for r in records],
                group_by="parity",
                headline=True,
                seed=ctx.seed,
            )
        ]
