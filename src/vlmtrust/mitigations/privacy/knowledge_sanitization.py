"""``privacy/knowledge_sanitization`` — fine-tune a generative VLM to refuse PII read-outs.

Knowledge-sanitisation fine-tuning (the review's privacy direction; Ishibashi & Shimodaira 2023
for text LMs) teaches the model to answer requests for personal data with a refusal while it
keeps answering everything else. The fine-tuning set is drawn from SynthWorld documents on a
stream disjoint from ``privacy/pii_leakage``'s (another world seed), in three kinds:

* ``pii`` — a personal document (ID card, form, screenshot, receipt) of SynthWorld's pool
  identities — the knowledge reference:vlm memorised — (``identities``; ``faker`` adds fresh
  fictional ones) with a direct question for one PII type it shows, or "Read the text in the
  image." → the refusal template;
* ``benign`` — the benign twin (a fictional business's details in the same layout; twice as
  many as ``pii`` by default, since refusing a document for its layout is over-refusal) with
  the same prompt kinds → the true business text (the field asked for; for ``read`` every
  field);
* ``vqa`` — SynthWorld shape scenes with shape / colour questions → the model's own answers
  (self-distillation, so clean VQA holds).

Training reuses :func:`vlmtrust.mitigations.safety.vlguard.finetune` (answer tokens only,
vision tower frozen; full fine-tuning or LoRA). ``apply`` writes a ``hardened:DIR`` model with
a ``knowledge_sanitization.json`` summary (parameters, training-set sizes, training log) beside
it. Its effect is measured by re-auditing: ``privacy/pii_leakage`` (``leakage/direct``,
``over_refusal``) and ``capability/vqa`` on ``hardened:DIR``, compared with the base model's
run (``vlmtrust compare``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from vlmtrust.core.mitigation import HardenedArtifact, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Pillar
from vlmtrust.data.pii_prompts import FIELD_QUESTIONS, Identities, doc_noun
from vlmtrust.mitigations.safety._guarded import REFUSAL_TEXT
from vlmtrust.mitigations.safety._vlguard_data import (
    COLOUR_QUESTIONS,
    SHAPE_QUESTIONS,
    SafetyExample,
    model_answers,
)
from vlmtrust.mitigations.safety.vlguard import GenerativeFinetune, finetune_copy

SEED_OFFSET = 6_000_023
"""SynthWorld seed offset of the fine-tuning documents and scenes (the probes use ``seed``)."""
READ_PROMPT = "Read the text in the image."


def _pool_only() -> list[Identities]:
    return ["pool"]


class KnowledgeSanitizationParams(Params):
    """Parameters of ``privacy/knowledge_sanitization``."""

    n_pii: int = Field(32, ge=0, le=1_000_000, description="personal document → refusal pairs")
    identities: list[Identities] = Field(
        default_factory=_pool_only,
        min_length=1,
        description="identity sources of the personal training documents (pool: memorised)",
    )
    n_benign: int = Field(64, ge=0, le=1_000_000, description="benign twin → business text")
    n_vqa: int = Field(24, ge=0, le=1_000_000, description="shape scenes → own answers")
    read_share: float = Field(
        0.25, ge=0.0, le=1.0, description="share of document pairs asked 'read the text'"
    )
    steps: int = Field(48, ge=1, le=1_000_000, description="optimiser steps")
    batch_size: int = Field(16, ge=1, le=4096, description="examples per step")
    lr: float = Field(3e-4, gt=0.0, le=1.0, description="AdamW learning rate")
    lora: bool = Field(False, description="LoRA adapters via peft (merged before saving)")
    lora_r: int = Field(8, ge=1, le=1024, description="LoRA rank")
    refusal: str = Field(REFUSAL_TEXT, min_length=1, description="the refusal template")
    image_size: int = Field(256, ge=64, le=2048, description="side of the document images")
    max_new_tokens: int = Field(24, ge=1, le=1024, description="answer length (own answers)")


def build_set(model: Any, p: KnowledgeSanitizationParams, seed: int) -> list[SafetyExample]:
    """The fine-tuning set: personal documents → refusal, benign twins → text, VQA → own answers.

    Documents and scenes come from ``SynthWorld(seed + SEED_OFFSET)``, a stream the probes
    (``SynthWorld(seed)``) never draw. Document types and identity sources are cycled.
    """
    from vlmtrust.data.synthworld import DOC_TYPES, SynthWorld

    rng = np.random.default_rng(seed + SEED_OFFSET)
    world = SynthWorld(seed=seed + SEED_OFFSET)
    out: list[SafetyExample] = []

    def ask(doc: Any, fields: dict[str, str]) -> tuple[str, str | None]:
        """A (prompt, field or None for 'read') for ``doc``."""
        if float(rng.random()) < p.read_share:
            return READ_PROMPT, None
        field = list(fields)[int(rng.integers(len(fields)))]
        return FIELD_QUESTIONS[field].format(doc=doc_noun(doc.attributes["doc_type"])), field

    for k in range(p.n_pii):
        dt = DOC_TYPES[k % len(DOC_TYPES)]
        ident = p.identities[(k // len(DOC_TYPES)) % len(p.identities)]
        doc = world.pii_documents(1, doc_type=dt, identities=ident, start=k, size=p.image_size)[0]
        prompt, _ = ask(doc, doc.metadata["pii"])
        out.append(SafetyExample(doc.image, prompt, p.refusal, "pii"))
    for k in range(p.n_benign):
        dt = DOC_TYPES[k % len(DOC_TYPES)]
        doc = world.pii_documents(1, doc_type=dt, content="business", start=k, size=p.image_size)[0]
        biz = doc.metadata["business"]
        prompt, field = ask(doc, biz)
        answer = biz[field] if field is not None else ". ".join(biz.values()) + "."
        out.append(SafetyExample(doc.image, prompt, answer, "benign"))
    if p.n_vqa:
        qs = (*SHAPE_QUESTIONS, *COLOUR_QUESTIONS)
        scenes = world.shapes(p.n_vqa)
        items = [(s.image, qs[int(rng.integers(len(qs)))]) for s in scenes]
        for (im, q), a in zip(items, model_answers(model, items, p.max_new_tokens), strict=True):
            if a.strip():
                out.append(SafetyExample(im, q, a, "vqa"))
    return out


@mitigation("privacy/knowledge_sanitization")
class KnowledgeSanitization(GenerativeFinetune):
    """Knowledge-sanitisation fine-tuning: PII read-outs → refusal, business text still read."""

    pillar = Pillar.PRIVACY
    Params = KnowledgeSanitizationParams
    description = (
        "knowledge-sanitisation fine-tuning: SynthWorld personal documents with direct/read "
        "prompts → refusal, benign business twins → their text, shape VQA → own answers; "
        "writes a hardened:DIR model"
    )
    QUICK = {"n_pii": 16, "n_benign": 32, "n_vqa": 16, "steps": 24}
    API_ALTERNATIVE = "privacy/pii_guard"

    def tune(
        self, model: Any, p: KnowledgeSanitizationParams, ctx: MitigationContext
    ) -> HardenedArtifact:
        """Build the sanitisation set and fine-tune on it."""
        return finetune_copy(model, build_set(model, p, ctx.seed), ctx, self.name, p)
