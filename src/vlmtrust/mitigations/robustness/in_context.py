"""``robustness/in_context`` — few-shot examples in the prompt of a generative VLM (wrapper).

In-context learning for generalisation: every request carries ``k`` solved examples (image,
question, answer) before the real question. The examples are SynthWorld shape scenes from a
stream disjoint from the probes' (``seed + 9,000,011``), each re-rendered in one of
``example_styles`` (``attacks.styles``; ``"none"`` keeps the scene as drawn) at
``example_severity``, answered with the shape's name, so the model sees that a sketch or a
night scene of a star is still a star. The examples are fixed for a wrapper (same ``seed``,
same examples).

Retrieval (``retriever``, RICES: Alayrac et al. 2022, Yang et al. 2022): with the spec of a dual
model (e.g. ``reference:clip``), each request gets its own examples instead: a pool of ``pool``
scenes from the same disjoint stream, each in every ``example_styles`` style, is embedded once;
per request the query's first image is embedded and the ``k`` most similar pool images with
``k`` *different* answers are shown, the most similar last (next to the query). The fingerprint
then includes the retriever's.

Layouts:

* ``multi_image``: the ``k`` example images, then the request's own images, all in the
  request (the backend puts every image part into the user turn); the text numbers the
  images: ``Image 1: Q: … A: star`` …, then ``Image k+1: <the question>``.
* ``interleaved``: as ``multi_image``, but each example image stands right before its own
  ``Q: … A: …`` line and the request's images before its question (an interleaved
  :class:`~vlmtrust.core.model.GenerateRequest`): the layout of interleaved image-text
  training (Flamingo, IDEFICS, LLaVA-Interleave), for models whose chat template keeps the
  order of image and text parts. ``multi_image`` falls back to it for requests that are
  interleaved already.
* ``composite``: one image — a grid of the ``k`` examples and the request's image (last
  tile, bottom right), each tile at the request image's size; the text names the tiles.
* ``auto`` (default): ``multi_image`` when the model declares ``max_images`` of at least
  ``k + 1``, else ``composite``. ``hf:`` (and ``reference:``) models declare it from their
  family and context length (:mod:`vlmtrust.models.hf_generative`), ``openai:`` models from
  the ``max_images`` option (default 1). The fingerprint names the layout used, so cached
  answers of the two layouts never mix.

Requests without images pass unchanged. The wrapper drops ``GRADIENT`` and ``TRAIN`` (white-box
attacks and fine-tuning go to the base model).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal, cast, get_args

from PIL import Image
from pydantic import Field

from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import IMAGE_SLOT, EmbeddingModel, GenerateRequest
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import GuardedModel

EXAMPLE_SEED_OFFSET = 9_000_011
"""Example scenes come from SynthWorld seeded ``seed + EXAMPLE_SEED_OFFSET``."""

ExampleStyle = Literal["none", "sketch", "painting", "infrared", "night", "low_light"]
"""``"none"`` (as drawn) or a style of :mod:`vlmtrust.attacks.styles`."""

VQA_QUESTION = "What shape is in the image? Answer with one word."


class InContextParams(Params):
    """Parameters of ``robustness/in_context``."""

    k: int = Field(3, ge=1, le=8, description="few-shot examples per request")
    layout: Literal["auto", "multi_image", "interleaved", "composite"] = Field(
        "auto",
        description="several images (multi_image: images first; interleaved: each next to its "
        "answer), one grid image (composite) or auto",
    )
    question: str = Field(VQA_QUESTION, description="the examples' question")
    example_styles: list[ExampleStyle] = Field(
        default_factory=lambda: list(get_args(ExampleStyle)),
        min_length=1,
        description="styles the examples are drawn in, cycled ('none': as drawn)",
    )
    example_severity: int = Field(2, ge=1, le=3, description="severity of the example styles")
    seed: int = Field(0, description="seed of the example scenes")
    retriever: str | None = Field(
        None, description="dual model spec whose image embeddings pick each request's examples"
    )
    pool: int = Field(40, ge=1, le=2000, description="retrieval pool scenes (each in every style)")


def example_set(p: InContextParams, n: int | None = None) -> list[tuple[Image.Image, str]]:
    """The ``k`` solved examples ``(image, answer)`` of a wrapper, in order.

    With ``n``: the retrieval pool, ``n`` scenes each in every style (scene-major order).
    """
    from vlmtrust.attacks.styles import stylize
    from vlmtrust.data.synthworld import SynthWorld

    scenes = SynthWorld(seed=p.seed + EXAMPLE_SEED_OFFSET).shapes(p.k if n is None else n)
    n_styles = 1 if n is None else len(p.example_styles)
    out = []
    for i, s in enumerate(scenes):
        for j in range(n_styles):
            style = p.example_styles[(i if n is None else j) % len(p.example_styles)]
            seed = i * n_styles + j
            image = (
                s.image
                if style == "none"
                else stylize(s.image, style, p.example_severity, seed=seed)
            )
            out.append((image, str(s.attributes["shape"])))
    return out


class Retriever:
    """RICES: the pool examples nearest a query image, one per answer, nearest last."""

    def __init__(self, params: InContextParams) -> None:
        from vlmtrust.core.errors import InputError
        from vlmtrust.models.loader import load_model

        model = load_model(str(params.retriever))
        if getattr(model, "kind", None) != "dual":
            raise InputError(
                f"robustness/in_context: retriever {params.retriever!r} is not a dual model; "
                "use an image-text encoder spec such as reference:clip"
            )
        self.model = cast("EmbeddingModel", model)  # its kind is checked above
        self.k = params.k
        self.pool = example_set(params, params.pool)
        self.embeddings = self.model.embed_images([im for im, _ in self.pool])

    def nearest(self, images: Sequence[Image.Image]) -> list[list[tuple[Image.Image, str]]]:
        """For each query image, its ``k`` examples (distinct answers, most similar last)."""
        sims = self.model.embed_images(list(images)) @ self.embeddings.T
        out = []
        for row in sims:
            picked: dict[str, int] = {}
            for i in row.argsort()[::-1]:
                picked.setdefault(self.pool[int(i)][1], int(i))
                if len(picked) == self.k:
                    break
            out.append([self.pool[i] for i in reversed(picked.values())])
        return out


def composite(images: Sequence[Image.Image], tile: tuple[int, int]) -> Image.Image:
    """A grid of ``images`` read left to right, top to bottom, each resized to ``tile``."""
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * tile[0], rows * tile[1]), "white")
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB").resize(tile), ((i % cols) * tile[0], (i // cols) * tile[1]))
    return grid


class InContextModel(GuardedModel):
    """A generative model whose image requests carry ``k`` solved examples."""

    guard = "robustness/in_context"
    params: InContextParams

    def __init__(self, base: Any, params: InContextParams) -> None:
        super().__init__(base, params)
        self.examples = example_set(params)
        self.retriever = Retriever(params) if params.retriever else None
        multi = int(getattr(base, "max_images", 1) or 1) >= params.k + 1
        self.layout = (
            params.layout if params.layout != "auto" else ("multi_image" if multi else "composite")
        )
        self.fingerprint = f"{self.fingerprint}#layout={self.layout}"
        if self.retriever is not None:
            self.fingerprint += f"#retriever={self.retriever.model.fingerprint}"

    def shots(
        self, request: GenerateRequest, examples: Sequence[tuple[Image.Image, str]] | None = None
    ) -> GenerateRequest:
        """``request`` with ``examples`` (default: the fixed ones) added.

        Requests without images are returned unchanged.
        """
        if not request.images:
            return request
        shown = self.examples if examples is None else examples
        q = self.params.question
        k = len(shown)
        if self.layout == "interleaved" or (self.layout == "multi_image" and request.interleaved):
            own = request.prompt
            if not request.interleaved:
                own = f"{IMAGE_SLOT * len(request.images)} {own}"
            lines = [*(f"{IMAGE_SLOT} Q: {q} A: {a}" for _, a in shown), own]
            images = (*(im for im, _ in shown), *request.images)
            return replace(request, prompt="\n".join(lines), images=images, interleaved=True)
        if self.layout == "multi_image":
            lines = [f"Image {i + 1}: Q: {q} A: {a}" for i, (_, a) in enumerate(shown)]
            lines.append(f"Image {k + 1}: {request.prompt}")
            images = (*(im for im, _ in shown), *request.images)
            return replace(request, prompt="\n".join(lines), images=images)
        tiles = [im for im, _ in shown] + [request.images[0]]
        grid = composite(tiles, request.images[0].size)
        lines = [
            f"The image is a grid of {k + 1} pictures, left to right, top to bottom.",
            *(f"Picture {i + 1}: Q: {q} A: {a}" for i, (_, a) in enumerate(shown)),
            f"Picture {k + 1} (the last): {request.prompt}",
        ]
        return replace(request, prompt="\n".join(lines), images=(grid, *request.images[1:]))

    def prepare(self, requests: Sequence[GenerateRequest]) -> list[GenerateRequest]:
        """Add the examples (retrieved per request with a retriever) to each image request."""
        if self.retriever is None:
            return [self.shots(r) for r in requests]
        queries = [i for i, r in enumerate(requests) if r.images]
        found = self.retriever.nearest([requests[i].images[0] for i in queries])
        per = dict(zip(queries, found, strict=True))
        return [self.shots(r, per.get(i)) for i, r in enumerate(requests)]


@mitigation("robustness/in_context")
class InContext(WrapperMitigation):
    """k solved SynthWorld examples (styled) put before every image question."""

    description = (
        "In-context learning for generalisation: k solved example images (SynthWorld, shifted "
        "styles) before each question; several images where the model takes them, else a grid."
    )
    pillar, requires = Pillar.ROBUSTNESS, Capability.GENERATE
    Params = InContextParams
    params: InContextParams

    def wrap(self, model: Any) -> InContextModel:
        """Put the examples around ``model`` (a generative VLM)."""
        return InContextModel(model, self.params)
