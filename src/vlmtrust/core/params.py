"""Typed, validated parameters of probes and mitigations (recorded in the log)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from vlmtrust.core.errors import InputError


def validate_params(
    cls: type[BaseModel], raw: BaseModel | dict[str, Any] | None, what: str, hint: str
) -> BaseModel:
    """Validate user parameters into ``cls``; the first problem becomes one clear line."""
    if isinstance(raw, BaseModel):
        return raw
    try:
        return cls(**(raw or {}))
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise InputError(f"{what}: bad parameter {loc!r}: {first['msg']} ({hint})") from None


class Params(BaseModel):
    """Base of every probe's typed parameters (validated, recorded in the log)."""

    model_config = ConfigDict(extra="forbid")
