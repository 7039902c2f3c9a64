"""A probe's error records grouped by message, for the report.

Messages that differ only in their per-sample specifics — the input's path, line or row
number, sizes, quoted values, the sample id — form one group. The group's message keeps the
parts its members share and shows ``…`` where they differ (a path keeps its common folder):

    >>> g = group_errors([
    ...     ("cat/1.png", "image /d/cat/1.png: 4000×2 has aspect ratio 2,000:1, beyond 50:1"),
    ...     ("dog/2.png", "image /d/dog/2.png: 9000×3 has aspect ratio 3,000:1, beyond 50:1"),
    ... ])
    >>> (g.groups[0].count, g.groups[0].message)
    (2, 'image /d/…: …×… has aspect ratio …:1, beyond 50:1')

Texts stay raw here (error messages may quote untrusted input): each renderer escapes them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

__all__ = ["MAX_ERROR_GROUPS", "MAX_IDS_SHOWN", "ErrorGroup", "ErrorGroups", "group_errors"]

MAX_IDS_SHOWN: Final[int] = 20
"""Sample ids listed per group; the rest are counted ("and N more")."""

MAX_ERROR_GROUPS: Final[int] = 500
"""Distinct groups kept; errors of any further group are counted, not listed."""

_SENTINEL: Final[str] = "\x00"
# Per-sample specifics, in priority order: the sample id (replaced by the sentinel first), a
# path (anything with a slash), a quoted value, a number.
_TOKEN: Final[re.Pattern[str]] = re.compile(
    r"(?P<id>\x00)"
    r"|(?P<path>(?:[A-Za-z]:)?[^\s:'\"()\[\]<>,]*[/\\][^\s:'\"()\[\]<>,]*)"
    r"|(?P<quoted>(?<!\w)'[^'\n]{1,200}'(?!\w)|\"[^\"\n]{1,200}\")"
    r"|(?P<number>(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?)"
)
_GAP: Final[str] = "…"


@dataclass(frozen=True)
class ErrorGroup:
    """Errors whose messages differ only in per-sample specifics.

    Attributes:
        message: the shared message, ``…`` where the members differ (raw text).
        example: the first member's full message.
        count: how many errors the group holds.
        sample_ids: the first :data:`MAX_IDS_SHOWN` of their sample ids, in record order.
    """

    message: str
    example: str
    count: int
    sample_ids: tuple[str, ...]

    @property
    def more_ids(self) -> int:
        """Sample ids of the group not listed in :attr:`sample_ids`."""
        return self.count - len(self.sample_ids)


@dataclass(frozen=True)
class ErrorGroups:
    """All of a probe's error groups, most frequent first.

    Attributes:
        groups: the groups (at most :data:`MAX_ERROR_GROUPS`).
        n_grouped: errors in :attr:`groups`.
        n_other: errors of further groups beyond :data:`MAX_ERROR_GROUPS` (counted only).
    """

    groups: tuple[ErrorGroup, ...] = ()
    n_grouped: int = 0
    n_other: int = 0


@dataclass
class _Slot:
    """One token position of a group: its first value, and whether the members differ."""

    kind: str
    value: str
    varies: bool = False


@dataclass
class _Building:
    parts: list[str]  # the template's literal text between the tokens (len(slots) + 1)
    slots: list[_Slot]
    example: str
    first: int
    count: int = 0
    ids: list[str] = field(default_factory=list)

    def add(self, sample_id: str, values: list[str]) -> None:
        self.count += 1
        if len(self.ids) < MAX_IDS_SHOWN:
            self.ids.append(sample_id)
        for slot, value in zip(self.slots, values, strict=True):
            if value == slot.value:
                continue
            if slot.kind == "path":
                slot.value = _common_folder(slot.value, value)
            slot.varies = True

    def message(self) -> str:
        out = [self.parts[0]]
        for slot, text in zip(self.slots, self.parts[1:], strict=True):
            if not slot.varies:
                out.append(slot.value)
            elif slot.kind == "path":
                out.append(slot.value + _GAP)
            elif slot.kind == "quoted":
                out.append(slot.value[0] + _GAP + slot.value[-1])
            else:
                out.append(_GAP)
            out.append(text)
        return "".join(out)


def _common_folder(a: str, b: str) -> str:
    """The longest common prefix of two paths, cut after a separator (``""`` if none)."""
    prefix = os.path.commonprefix([a, b])
    cut = max(prefix.rfind("/"), prefix.rfind("\\"))
    return prefix[: cut + 1]


def _is_word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _mark_id(message: str, sample_id: str) -> str:
    """``message`` with each whole-word occurrence of ``sample_id`` replaced by the sentinel.

    Short and all-digit ids are left alone (the number token covers row indices).
    """
    if len(sample_id) < 2 or sample_id.isdigit() or _SENTINEL in message:
        return message
    out: list[str] = []
    at = 0
    while (i := message.find(sample_id, at)) >= 0:
        end = i + len(sample_id)
        before = message[i - 1] if i else " "
        after = message[end] if end < len(message) else " "
        if _is_word(before) or _is_word(after):
            out.append(message[at : i + 1])
            at = i + 1
            continue
        out.append(message[at:i] + _SENTINEL)
        at = end
    out.append(message[at:])
    return "".join(out)


def _split(sample_id: str, message: str) -> tuple[str, list[str], list[str], list[str]]:
    """``(key, literal parts, token kinds, token values)`` of one message."""
    marked = _mark_id(message, sample_id)
    parts: list[str] = []
    kinds: list[str] = []
    values: list[str] = []
    at = 0
    for m in _TOKEN.finditer(marked):
        parts.append(marked[at : m.start()])
        kinds.append(m.lastgroup or "number")
        values.append(m.group().replace(_SENTINEL, sample_id))
        at = m.end()
    parts.append(marked[at:])
    key = "\x01".join(parts) + "\x02" + "".join(k[0] for k in kinds)
    return key, parts, kinds, values


def group_errors(errors: Iterable[tuple[str, str]]) -> ErrorGroups:
    """Group ``(sample_id, message)`` pairs by message, per-sample specifics normalised.

    Args:
        errors: the error records' sample ids and messages, in record order.

    Returns:
        The groups, most frequent first (ties: first seen first). Past
        :data:`MAX_ERROR_GROUPS` distinct groups, further errors are only counted.
    """
    building: dict[str, _Building] = {}
    n_other = 0
    for sample_id, message in errors:
        key, parts, kinds, values = _split(sample_id, message)
        group = building.get(key)
        if group is None:
            if len(building) >= MAX_ERROR_GROUPS:
                n_other += 1
                continue
            slots = [_Slot(kind=k, value=v) for k, v in zip(kinds, values, strict=True)]
            group = _Building(parts=parts, slots=slots, example=message, first=len(building))
            building[key] = group
        group.add(sample_id, values)
    ordered = sorted(building.values(), key=lambda g: (-g.count, g.first))
    groups = tuple(
        ErrorGroup(message=g.message(), example=g.example, count=g.count, sample_ids=tuple(g.ids))
        for g in ordered
    )
    return ErrorGroups(groups=groups, n_grouped=sum(g.count for g in groups), n_other=n_other)
