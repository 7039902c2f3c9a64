"""Parameter field types shared by the context-aware safety defenses."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field


def _judge_name(v: str) -> str:
    from vlmtrust.judges.base import check_judge_name

    return check_judge_name(v)


JudgeName = Annotated[str, AfterValidator(_judge_name)]
"""A judge name checked against the judge registry (``refusal/keyword``, ``llm:SPEC``, ...)."""


def refusal_judge_field(description: str) -> JudgeName:
    """A ``refusal_judge`` field defaulting to ``refusal/keyword``."""
    out: JudgeName = Field("refusal/keyword", description=description)
    return out
