"""Typed, validated parameters of probes and mitigations (recorded in the log).

Every :class:`Params` checks two things of any field, whatever the subclass:

* a field named ``template`` or ``*_template`` (a string) must hold one ``{}`` placeholder,
  filled by ``template.format(value)`` (e.g. the class name of a zero-shot prompt);
* no string anywhere in a value may carry a credential (URL user-info, ``?api_key=…``, a token):
  parameters are written to ``spec.json``, ``results.json`` and the reports, so secrets go
  through the environment instead (see :mod:`vlmtrust.core.redact`).
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from vlmtrust.core.errors import InputError
from vlmtrust.core.redact import credentials_in

_T = TypeVar("_T")


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
        if first["type"] == "extra_forbidden":
            import difflib

            valid = list(cls.model_fields)
            close = difflib.get_close_matches(loc, valid, n=2)
            mean = f"did you mean {', '.join(close)}? " if close else ""
            raise InputError(
                f"{what} has no parameter {loc!r}: {mean}it has {', '.join(valid) or 'none'} "
                f"({hint})"
            ) from None
        raise InputError(f"{what}: bad parameter {loc!r}: {first['msg']} ({hint})") from None


def some_of(default: Sequence[Any], description: str) -> Any:
    """A list parameter's ``Field``: at least one value, by default a copy of ``default``."""
    return Field(default_factory=lambda: list(default), min_length=1, description=description)


def distinct(values: list[_T], *, empty: str) -> list[_T]:
    """``values`` without repeats, in order (a validator body); ``ValueError(empty)`` if none.

    >>> distinct(["a", "b", "a"], empty="give one")
    ['a', 'b']
    """
    if not values:
        raise ValueError(empty)
    return list(dict.fromkeys(values))


def is_template_field(name: str) -> bool:
    """True for the parameter names that hold a ``{}`` template: ``template``, ``*_template``."""
    return name == "template" or name.endswith("_template")


def check_template(value: str) -> str:
    """``value`` if it is a template with exactly one ``{}`` placeholder; else ``ValueError``.

    Example:
        >>> check_template("a photo of a {}")
        'a photo of a {}'
    """
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    except ValueError as e:
        raise ValueError(
            f"{value!r} is not a valid template ({e}); use e.g. 'a photo of a {{}}'"
        ) from None
    if fields != [""]:
        raise ValueError(
            f"{value!r} needs exactly one '{{}}' placeholder for the class name, "
            "e.g. 'a photo of a {}'"
        )
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v)


class Params(BaseModel):
    """Base of every probe's typed parameters (validated, recorded in the log)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*")
    @classmethod
    def _params_template_placeholder(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if name is not None and is_template_field(name) and isinstance(v, str):
            check_template(v)
        return v

    @field_validator("*")
    @classmethod
    def _params_no_credentials(cls, v: Any) -> Any:
        for text in _strings(v):
            found = credentials_in(text)
            if found:
                raise ValueError(
                    f"holds a credential ({', '.join(found)}); remove it and set the key in "
                    "the environment instead ($OPENAI_API_KEY for openai:, $HF_TOKEN for hf:)"
                )
        return v
