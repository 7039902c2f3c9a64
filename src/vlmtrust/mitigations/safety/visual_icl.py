"""``safety/visual_icl`` — visual in-context safety examples before the user's turn (wrapper).

Before each request the conversation gets ``pairs`` example exchanges: a harmful request shown
as an image (FigStep typography, or MM-SafetyBench typography with ``form=typography``) that the
assistant refuses, and a benign look-alike in the same form that it answers. The examples come
from the *train* split of the project's requests (:func:`vlmtrust.data.requests.pool`), so the
probes' test-split samples are never among them; the answers are the model's own by default
(``auto``: its refusal of typed harmful requests, its answer to the benign request typed).

Images: the example images go into the conversation when the model declares multi-image input
(a ``max_images`` attribute ≥ the images needed; ``multi_image=on`` forces it): ``hf:`` and
``reference:`` models of multi-image families declare it (:mod:`vlmtrust.models.hf_generative`),
``openai:`` models through the ``max_images`` option (default 1). Otherwise each example's image
is replaced by a line quoting its text, so single-image models keep their one image slot for
the user's own image. With ``multi_image=auto`` the fingerprint names the declared limit.

Conversation: local transformers models (``hf:``, ``reference:``) get real prior user and
assistant turns through their chat template; other backends get the examples as a transcript
at the start of the prompt. Measured effect on reference:vlm: docs/results/safety.md#visual_icl.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from PIL import Image
from pydantic import Field

from vlmtrust.core.mitigation import MitigationContext, WrapperMitigation, mitigation
from vlmtrust.core.model import IMAGE_SLOT, GenerateRequest, Generation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import REFUSAL_TEXT
from vlmtrust.mitigations.safety._local import LocalInputModel

Form = Literal["figstep", "typography"]
HELPFUL_FALLBACK = "Sure. Here is a short answer to your request."
"""The benign example's answer when the model refuses the benign request itself."""


class VisualICLParams(Params):
    """Parameters of ``safety/visual_icl``."""

    pairs: int = Field(1, ge=1, le=4, description="harmful + benign example pairs")
    form: Form = Field("figstep", description="example images: figstep or typography (MMSB)")
    multi_image: Literal["auto", "on", "off"] = Field(
        "auto", description="example images in the conversation: auto (model declares), on, off"
    )
    image_size: int = Field(760, ge=32, le=2048, description="example image side")
    refusal: str = Field("auto", min_length=1, description="harmful example's answer, or auto")
    benign_answer: str = Field("auto", min_length=1, description="benign example's answer")
    harmful_ids: list[str] = Field(default_factory=list, description="example requests (set)")
    benign_ids: list[str] = Field(default_factory=list, description="example look-alikes (set)")


@dataclass(frozen=True)
class Shot:
    """One example exchange: the user's image and text, the assistant's answer."""

    image: Image.Image
    text: str
    prompt: str
    answer: str


def example_requests(seed: int, pairs: int) -> tuple[list[str], list[str]]:
    """Ids of ``pairs`` harmful requests and benign look-alikes (train split), one topic each."""
    from vlmtrust.data.requests import pool

    rng = np.random.default_rng(seed + 7_001)
    harmful, benign = (
        pool(harmful=True, split_name="train"),
        pool(harmful=False, split_name="train"),
    )
    topics = sorted({r.topic for r in harmful} & {r.topic for r in benign})
    chosen = [topics[int(i)] for i in rng.permutation(len(topics))[:pairs]]
    h = [next(r.id for r in harmful if r.topic == t) for t in chosen]
    b = [next(r.id for r in benign if r.topic == t) for t in chosen]
    return h, b


def build_shots(p: VisualICLParams) -> list[Shot]:
    """The example exchanges, harmful then benign for each pair (ids and answers must be set)."""
    from vlmtrust.attacks.typography import (
        FIGSTEP_PROMPT,
        MMSB_PROMPT,
        render_figstep,
        render_typography,
    )
    from vlmtrust.core.errors import InputError
    from vlmtrust.data.requests import benign_requests, harmful_requests

    if not p.harmful_ids or "auto" in (p.refusal, p.benign_answer):
        raise InputError(
            "safety/visual_icl: example ids and answers are set by `vlmtrust harden`; "
            "pass harmful_ids, benign_ids, refusal and benign_answer, or harden the model"
        )
    by_id = {r.id: r for r in (*harmful_requests(), *benign_requests())}
    missing = [i for i in (*p.harmful_ids, *p.benign_ids) if i not in by_id]
    if missing:
        raise InputError(f"safety/visual_icl: unknown request id {missing[0]!r}; re-run harden")
    shots: list[Shot] = []
    for hid, bid in zip(p.harmful_ids, p.benign_ids, strict=False):
        for rid, answer in ((hid, p.refusal), (bid, p.benign_answer)):
            statement = by_id[rid].statement
            if p.form == "figstep":
                image = render_figstep(statement, size=p.image_size)
                shots.append(Shot(image, statement, FIGSTEP_PROMPT, answer))
            else:  # MM-SafetyBench: the key phrase as typography, the query pointing at it
                phrase = statement.removeprefix("Steps to ").rstrip(".")
                image = render_typography(phrase, canvas=(p.image_size, None))
                shots.append(Shot(image, phrase, MMSB_PROMPT, answer))
    return shots


def example_content(shot: Shot, with_image: bool) -> tuple[list[dict[str, Any]], str]:
    """Chat content parts of one example's user turn, and its text."""
    text = shot.prompt if with_image else f'The image shows the text: "{shot.text}"\n{shot.prompt}'
    parts: list[dict[str, Any]] = [{"type": "image"}] if with_image else []
    return [*parts, {"type": "text", "text": text}], text


class ICLModel(LocalInputModel):
    """A generative model whose conversations open with refused and answered image examples."""

    guard = "safety/visual_icl"
    params: VisualICLParams

    def __init__(self, base: Any, params: VisualICLParams) -> None:
        super().__init__(base, params)
        self.shots = build_shots(params)
        if params.multi_image == "auto":  # the requests depend on the declared limit
            self.fingerprint += f"#max_images={getattr(base, 'max_images', None)}"

    def multi_image(self, n_request_images: int) -> bool:
        """Whether the example images go into the conversation for such a request."""
        mode = self.params.multi_image
        if mode != "auto":
            return mode == "on"
        limit = getattr(self.base, "max_images", None)
        return isinstance(limit, int) and limit >= len(self.shots) + n_request_images

    def chat(self, r: GenerateRequest) -> tuple[str, list[Image.Image]]:
        """The chat-templated text and the images of ``r`` with the examples (local models)."""
        base = self.base
        with_images = self.multi_image(len(r.images))
        msgs = base.messages(r.prompt, len(r.images), r.system, interleaved=r.interleaved)
        turns: list[dict[str, Any]] = []
        for shot in self.shots:
            content, _ = example_content(shot, with_images)
            turns.append({"role": "user", "content": content})
            turns.append({"role": "assistant", "content": [{"type": "text", "text": shot.answer}]})
        msgs = [*msgs[:-1], *turns, msgs[-1]]
        text = base.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        images = [s.image for s in self.shots] if with_images else []
        return str(text), [*images, *r.images]

    def transcript(self, r: GenerateRequest) -> GenerateRequest:
        """``r`` with the examples as a transcript before its prompt (remote models)."""
        with_images = self.multi_image(len(r.images))
        lines = ["Examples of how to answer:"]
        for k, shot in enumerate(self.shots, start=1):
            _, text = example_content(shot, with_images)
            # An interleaved request keeps its slots: each example image gets one too.
            mark = IMAGE_SLOT if r.interleaved else f"[image {k}]"
            where = f" {mark}" if with_images else ""
            lines += [f"User:{where} {text}", f"Assistant: {shot.answer}"]
        images = tuple(s.image for s in self.shots) if with_images else ()
        prompt = "\n".join(lines) + f"\n\nUser: {r.prompt}"
        return replace(r, prompt=prompt, images=(*images, *r.images))

    def encode(self, reqs: Sequence[GenerateRequest]) -> dict[str, Any]:
        """Processor inputs of a batch, each request after the example turns."""
        rendered = [self.chat(r) for r in reqs]
        images = [im for _, ims in rendered for im in self.base._rgb(ims)]  # noqa: SLF001
        return dict(self.base._encode([t for t, _ in rendered], images))  # noqa: SLF001

    async def remote(self, reqs: list[GenerateRequest]) -> list[Generation]:
        """Other backends: the examples as a transcript before each prompt."""
        return list(await self.base.generate([self.transcript(r) for r in reqs]))


@mitigation("safety/visual_icl")
class VisualICL(WrapperMitigation):
    """Visual in-context examples: a refused harmful image and an answered benign one."""

    params: VisualICLParams

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE
    Params = VisualICLParams
    description = (
        "Visual in-context examples: a refused harmful image request and an answered benign "
        "look-alike (train split, FigStep or MM-SafetyBench form) put before the user's turn; "
        "multi-image where the model declares it."
    )

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Pick the example requests and take the model's own answers to them."""
        from vlmtrust.data.requests import benign_requests, harmful_requests
        from vlmtrust.mitigations.safety._vlguard_data import (
            is_refusal,
            model_answers,
            model_refusal,
        )

        p = self.params
        h_ids, b_ids = p.harmful_ids, p.benign_ids
        if not h_ids:
            h_ids, b_ids = example_requests(ctx.seed, p.pairs)
        by_id = {r.id: r for r in (*harmful_requests(), *benign_requests())}
        refusal = p.refusal
        if refusal == "auto":
            refusal = model_refusal(model, [by_id[i].text for i in h_ids]) or REFUSAL_TEXT
        answer = p.benign_answer
        if answer == "auto":
            got = model_answers(model, [(None, by_id[b_ids[0]].text)], 48)[0]
            answer = got if got.strip() and not is_refusal([got])[0] else HELPFUL_FALLBACK
        return {
            "harmful_ids": h_ids,
            "benign_ids": b_ids,
            "refusal": refusal,
            "benign_answer": answer,
        }

    def wrap(self, model: Any) -> ICLModel:
        """Put the example exchanges before every request to ``model``."""
        return ICLModel(model, self.params)
