"""Parameter field types shared by the context-aware safety defenses."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from vlmtrust.core.params import Params


def _judge_name(v: str) -> str:
    from vlmtrust.judges.base import check_judge_name

    return check_judge_name(v)


JudgeName = Annotated[str, AfterValidator(_judge_name)]
"""A judge name checked against the judge registry (``refusal/keyword``, ``llm:SPEC``, ...)."""


def refusal_judge_field(description: str) -> JudgeName:
    """A ``refusal_judge`` field defaulting to ``refusal/keyword``."""
    out: JudgeName = Field("refusal/keyword", description=description)
    return out


class LoopParams(Params):
    """The optimiser loop of a trained defense."""

    steps: int = Field(100, ge=1, le=1_000_000, description="optimiser steps")
    batch_size: int = Field(16, ge=2, le=4096, description="examples per step")
    lr: float = Field(1e-4, gt=0.0, le=10.0, description="AdamW learning rate")


class HeldOutParams(Params):
    """The before/after measurement of a trained defense (test splits, fresh scenes)."""

    refusal_judge: JudgeName = refusal_judge_field("judge of the model's refusals")
    evaluate: bool = Field(True, description="measure before/after on held-out data")
    n_eval: int = Field(60, ge=2, le=100_000, description="held-out items per measurement")
