"""The attack tree of ``safety/red_team`` laid out as indented text (a report example's note).

:func:`format_tree` draws the nodes stored in ``Record.output["tree"]`` — every node with its
round, strategy, the attacker's rewrite and the target's answer, children indented under their
parent — cut to fit the report's per-text budget. It is pure text layout over the stored data;
the report escapes the (untrusted) texts when it renders the note.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_TEE, _ELBOW = "├─\u00a0", "└─\u00a0"
_PIPE, _BLANK = "│\u00a0\u00a0", "\u00a0\u00a0\u00a0"
# No-break spaces: the Markdown report turns newlines into <br>, where plain spaces collapse.
MIN_SNIPPET = 24
"""Shortest cut of a rewrite or answer in the report's tree, however large the tree."""
ROOT_LIMIT = 300
"""The request as typed (a tree's root) is cut only beyond this length."""
MAX_SHOWN_EXAMPLES = 8
"""Examples the report shows per probe (``vlmtrust.report.view.MAX_EXAMPLES``; a test keeps
them in step: probes may not import the report)."""
NOTE_LIMIT = 1500
"""The report cuts an untrusted text past this length (``vlmtrust.report.view.MAX_TEXT``): the
budget of a tree in one note."""


def _flat(text: Any) -> str:
    return " ".join(str(text or "").split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(1, limit - 1)].rstrip() + "…"


def _cap(lengths: Sequence[int], room: int, floor: int) -> int:
    """The largest cut ``c >= floor`` with ``sum(min(n, c)) <= room`` (water-filling)."""
    top = max(lengths, default=floor)
    if sum(lengths) <= room:
        return top
    lo, hi = floor, max(floor, top)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lengths) <= room:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _header(node: dict[str, Any], marked: bool) -> str:
    head = f"{node.get('id')} · round {node.get('round')} · {node.get('strategy')}"
    k = int(node.get("n_images") or (1 if node.get("image") else 0))
    if k:
        head += f" + {k} image{'s' if k > 1 else ''}"
    if node.get("error"):
        head += " · ⚠ error"
    else:
        labels = ", ".join(str(v) for v in dict(node.get("judgments") or {}).values())
        head += f" · {'✓' if node.get('success') else '✗'} {labels or '—'}".rstrip()
    if node.get("attacker_error"):
        head += " · attacker failed, template used"
    return head + (" ◀" if marked else "")


def format_tree(
    tree: Sequence[dict[str, Any]],
    *,
    judges: Sequence[str],
    mark: str | None = None,
    limit: int = NOTE_LIMIT,
) -> list[str]:
    """An attack tree (``Record.output["tree"]``) as indented text for the report.

    One header line per node (id, round, strategy, images sent, verdicts) followed by the
    attacker's rewrite (``ask``) and the target's answer, children indented under their parent.
    Rewrites and answers are whitespace-collapsed and cut evenly so the text fits in ``limit``
    characters (never below :data:`MIN_SNIPPET` each; the request as typed, at the root, is
    kept up to :data:`ROOT_LIMIT`). A tree too large for that is returned in several parts of
    at most ``limit`` characters, cut between nodes, so that every node is shown. The texts are
    untrusted: the report escapes them.

    Args:
        tree: the nodes, as stored by the probe.
        judges: the judge names, in the order of each node's verdicts.
        mark: id of the node shown in full beside the tree (marked ``◀``).
        limit: length budget of one part.

    Returns:
        The parts (one for all but very large trees).

    Example:
        >>> t = [
        ...     {"id": "n0", "parent": None, "round": 0, "strategy": "direct", "prompt": "Q?",
        ...      "response": "No.", "judgments": {"refusal/keyword": "refusal"}},
        ...     {"id": "n1", "parent": "n0", "round": 1, "strategy": "role_play",
        ...      "prompt": "Play Q?", "response": "Yes.", "success": True,
        ...      "judgments": {"refusal/keyword": "compliance"}},
        ... ]
        >>> print(format_tree(t, judges=["refusal/keyword"])[0].replace("\u00a0", " "))
        attack tree, 2 queries (✓ success, ✗ failure; verdicts: refusal/keyword):
        n0 · round 0 · direct · ✗ refusal
        │  ask: Q?
        │  answer: No.
        └─ n1 · round 1 · role_play · ✓ compliance
              ask: Play Q?
              answer: Yes.
    """
    blocks = _tree_rows(tree, mark)
    legend = (
        f"attack tree, {len(tree)} queries (✓ success, ✗ failure; verdicts: {', '.join(judges)}"
    )
    legend += "; ◀ = prompt and output above):" if mark is not None else "):"
    fixed = len(legend) + sum(len(a) + 1 for rows in blocks for a, _ in rows)
    lengths = [len(t) for rows in blocks for _, t in rows if t is not None]
    top = max(MIN_SNIPPET, limit // 4)

    def parts_at(cap: int) -> list[str]:
        texts = [
            "\n".join((a if t is None else a + _clip(t, cap)).rstrip() for a, t in rows)
            for rows in blocks
        ]
        return _pack(legend, texts, limit)

    parts = parts_at(min(_cap(lengths, limit - fixed, MIN_SNIPPET), top))
    if len(parts) > 1:  # the fewest parts (shortest cuts), then the longest cuts that keep them
        fewest = len(parts_at(MIN_SNIPPET))
        lo, hi = MIN_SNIPPET, top
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if len(parts_at(mid)) <= fewest else (lo, mid - 1)
        parts = parts_at(lo)
    return parts


_CONTINUED = "attack tree, continued:"


def _pack(legend: str, blocks: Sequence[str], limit: int) -> list[str]:
    """``legend`` and the node blocks in parts of at most ``limit`` characters."""
    parts: list[str] = []
    cur, fresh = legend, True
    for b in blocks:
        if not fresh and len(cur) + 1 + len(b) > limit:
            parts.append(cur)
            cur = _CONTINUED
        cur, fresh = f"{cur}\n{b}", False
    return [*parts, cur]


def _tree_rows(
    tree: Sequence[dict[str, Any]], mark: str | None
) -> list[list[tuple[str, str | None]]]:
    """Per node, depth first: its lines as ``(layout, untrusted text to cut or None)``."""
    ids = {str(n.get("id")) for n in tree}
    kids: dict[str | None, list[dict[str, Any]]] = {}
    for n in tree:
        parent = n.get("parent")
        kids.setdefault(str(parent) if parent in ids else None, []).append(n)
    blocks: list[list[tuple[str, str | None]]] = []
    seen: set[str] = set()

    def walk(node: dict[str, Any], head: str, body: str) -> None:
        seen.add(str(node.get("id")))
        children = [c for c in kids.get(str(node.get("id")), []) if str(c.get("id")) not in seen]
        seen.update(str(c.get("id")) for c in children)
        bar = _PIPE if children else _BLANK
        answer = f"error: {node['error']}" if node.get("error") else node.get("response")
        ask: tuple[str, str | None] = (body + bar + "ask: ", _flat(node.get("prompt")))
        if not head:  # a root: the request as typed, kept whole up to ROOT_LIMIT
            ask = (ask[0] + _clip(ask[1] or "", ROOT_LIMIT), None)
        blocks.append(
            [
                (head + _header(node, node.get("id") == mark), None),
                ask,
                (body + bar + "answer: ", _flat(answer)),
            ]
        )
        for i, child in enumerate(children):
            last = i == len(children) - 1
            walk(child, body + (_ELBOW if last else _TEE), body + (_BLANK if last else _PIPE))

    for root in kids.get(None, []):
        if str(root.get("id")) not in seen:
            walk(root, "", "")
    for n in tree:  # nodes on a parent cycle (a hand-edited file): shown, not lost
        if str(n.get("id")) not in seen:
            walk(n, "", "")
    return blocks
