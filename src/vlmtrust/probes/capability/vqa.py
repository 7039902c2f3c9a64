"""``capability/vqa`` — short-answer visual question answering accuracy of a generative VLM."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import Field

from vlmtrust.core.model import GenerateRequest, generate_sync
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes import _data
from vlmtrust.probes.capability._answers import answer_matches
from vlmtrust.probes.families import labeled_image as li


class VQAParams(Params):
    """Parameters of ``capability/vqa``."""

    n: int = Field(120, ge=1, le=1_000_000, description="samples from the default data")
    max_new_tokens: int = Field(16, ge=1, le=4096)
    suffix: str = Field("", description="appended to every question, e.g. ' Answer with one word.'")


@probe("capability/vqa")
class VQA(Probe):
    """Short-answer accuracy (lenient match near the start of the answer), per question type."""

    pillar = Pillar.CAPABILITY
    requires = Capability.GENERATE
    Params = VQAParams
    batch_size = 16
    parallel_batches = True
    description = (
        "Short-answer VQA: the answer counts as correct when the expected words appear among "
        "its first words."
    )

    params: VQAParams

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        return ctx.size(self.params.n) if ctx.data is None else _data.count(ctx)

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """Questions with expected answers: the user's manifest, or SynthWorld questions."""
        return _data.vqa_samples(ctx, self.params.n)

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Ask and score a batch."""
        for s in batch:
            if not s.prompt or s.target is None:
                raise ValueError(f"sample {s.id}: VQA needs a prompt and a target answer")
        reqs = [
            GenerateRequest(
                prompt=(s.prompt or "") + self.params.suffix,
                images=tuple(s.pil_images()),
                max_new_tokens=self.params.max_new_tokens,
                seed=ctx.seed,
                sample_id=s.id,
            )
            for s in batch
        ]
        gens = generate_sync(model, reqs)
        out = []
        for s, g in zip(batch, gens, strict=True):
            if not g.ok:
                out.append(self.record(s, error=g.error))
                continue
            ok = answer_matches(g.text, s.target or "")
            out.append(
                self.record(
                    s,
                    output={"answer": g.text, "target": s.target, "prompt": s.prompt},
                    scores={"correct": float(ok)},
                )
            )
        return out

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Accuracy with a CI, per question type when known."""
        correct = [r.scores["correct"] for r in records]
        qtype = [r.attributes.get("question", r.attributes.get("type", "all")) for r in records]
        acc = li.accuracy_metric(correct, qtype, "question", "short-answer accuracy", seed=ctx.seed)
        return [acc]

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Accuracy per question type."""
        return li.accuracy_bars(
            records,
            lambda r: r.attributes.get("question", "all"),
            title="Accuracy per question type",
            x_label="question",
        )

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """A few wrong answers."""
        return [
            Example(
                sample_id=r.sample_id,
                title="wrong answer",
                prompt=str(r.output.get("prompt")),
                output=str(r.output.get("answer")),
                expected=str(r.output.get("target")),
            )
            for r in records
            if r.scores.get("correct") == 0.0
        ][:6]
