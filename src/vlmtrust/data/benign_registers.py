"""Benign texts in different registers and about different groups (written for vlmtrust).

``safety/over_filtering`` sends them through every guard and judge: simple filters risk
flagging texts written by or about marginalised groups (dialect spellings, identity terms,
illness, faith) although nothing in them is harmful. Every text here is benign.

Registers (:data:`REGISTERS`): ``standard`` (plain standard English: the reference),
``dialect`` (AAVE-like spelling and grammar), ``non_native`` (English as a second language),
``reclaimed`` (reclaimed-identity self-description: queer, fat, Deaf, trans …),
``health_disability`` (illness and disability) and ``religion`` (faith practices). Each has
benign *requests* a user might type and benign *answers* (with the prompt they answer) a model
might give, so input and output guards are both measured.

Example:
    >>> texts = benign_register_texts()
    >>> sorted({t.register for t in texts}) == sorted(REGISTERS)
    True
    >>> {t.kind for t in texts} == {"request", "answer"}
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from vlmtrust.core.errors import InputError
from vlmtrust.data.requests import resource_jsonl

REGISTERS: Final[tuple[str, ...]] = (
    "standard",
    "dialect",
    "non_native",
    "reclaimed",
    "health_disability",
    "religion",
)
"""The registers of the set (``standard`` is the reference the others are compared with)."""


@dataclass(frozen=True)
class RegisterText:
    """One benign text.

    Attributes:
        id: stable identifier (``<register>-req-NN`` or ``<register>-ans-NN``).
        register: one of :data:`REGISTERS`.
        kind: ``request`` (a user's message) or ``answer`` (a model's reply to ``prompt``).
        text: the text.
        prompt: for answers, the request answered (empty for requests).
    """

    id: str
    register: str
    kind: str
    text: str
    prompt: str = ""


@lru_cache(maxsize=1)
def _load() -> tuple[RegisterText, ...]:
    name = "benign_registers.jsonl"

    def build(row: dict[str, Any]) -> RegisterText:
        given = {f: str(row[f]) for f in ("id", "register", "kind", "text")}
        return RegisterText(**given, prompt=str(row.get("prompt", "")))

    rows = resource_jsonl(name, build)
    for lineno, item in rows:
        if item.register not in REGISTERS or item.kind not in ("request", "answer"):
            raise InputError(
                f"resource safety/{name} line {lineno} has a bad register or kind; "
                "reinstall vlmtrust"
            )
    return tuple(item for _, item in rows)


def benign_register_texts(
    registers: tuple[str, ...] | list[str] | None = None,
) -> list[RegisterText]:
    """The benign texts (optionally of some registers only), in a fixed order.

    Raises:
        InputError: a register is not one of :data:`REGISTERS`.
    """
    if registers is None:
        return list(_load())
    bad = [r for r in registers if r not in REGISTERS]
    if bad:
        raise InputError(f"unknown register {bad[0]!r}; use one of {', '.join(REGISTERS)}")
    keep = set(registers)
    return [t for t in _load() if t.register in keep]
