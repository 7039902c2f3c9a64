"""Bounded-memory counting behind ``fairness/dataset_audit`` (one pass over the rows).

:class:`AuditTally` reads rows (:class:`~vlmtrust.core.sample.Sample` items; images are never
touched) and keeps, in memory that does not grow with the number of rows:

- per group attribute, the row count of each value (at most ``max_groups`` values; later
  values share one ``(other)`` bucket) — rows without the attribute are counted as unknown;
- per concept (a caption word or a label), the number of rows it occurs in (document
  frequency: a word twice in one caption counts once) and, per attribute value, the rows in
  which both occur. At most ``max_concepts`` concepts are tracked: when the table is full the
  least frequent half is evicted (lossy counting, Manku & Motwani 2002). A concept first seen
  after an eviction may have been evicted before, so its count is a lower bound, short by at
  most the largest count ever evicted (:attr:`AuditTally.error_bound`, recorded per concept);
- per lexicon term and category, the rows it occurs in, overall and per attribute value.

Co-occurrence counts are 32-bit (a dataset of up to 2**31 - 1 rows).

Counts are kept in numpy arrays indexed by concept and by *cell* (one cell per attribute
value) and updated in chunks of rows, so the Python work per row is small. :meth:`summary`
returns everything :mod:`vlmtrust.probes.fairness.dataset_audit` needs as plain JSON.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.files import resource_rows
from vlmtrust.core.sample import Sample

OTHER = "(other)"
"""The bucket of an attribute's values beyond ``max_groups``."""

_TOKEN = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")
_HAS_LETTER = re.compile(r"[a-z]")


@dataclass(frozen=True)
class LexiconTerm:
    """One flagged term of the lexicon."""

    term: str
    category: str
    severity: str
    suggestion: str


@lru_cache(maxsize=1)
def shipped_lexicon() -> tuple[LexiconTerm, ...]:
    """The lexicon shipped in ``resources/fairness/lexicon.jsonl``."""
    return tuple(
        LexiconTerm(str(r["term"]), str(r["category"]), str(r["severity"]), r["suggestion"])
        for r in resource_rows("fairness", "lexicon.jsonl")
    )


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens (letters/digits, inner apostrophes and hyphens kept).

    Example:
        >>> tokens("A wheelchair-bound man's photo, 2 dogs")
        ['a', 'wheelchair-bound', "man's", 'photo', '2', 'dogs']
    """
    return _TOKEN.findall(text.lower())


STOP_WORDS: frozenset[str] = frozenset((
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "around", "as", "at", "be", "because", "been", "before", "being", "below", "between",
    "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each",
    "either", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her", "here",
    "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into", "is", "it", "its",
    "itself", "just", "me", "more", "most", "my", "myself", "no", "nor", "not", "now", "of", "off",
    "on", "once", "only", "or", "other", "our", "ours", "ourselves", "out", "over", "own", "same",
    "she", "should", "so", "some", "such", "than", "that", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "upon", "very", "was", "we", "were", "what", "when", "where", "which",
    "while", "who", "whom", "why", "will", "with", "within", "without", "would", "you", "your",
    "yours", "yourself", "yourselves",
))  # fmt: skip
"""English function words left out of the word concepts (``stop_words=True``)."""


class _Lexicon:
    """Longest-match lookup of multi-word terms over a token list."""

    def __init__(self, terms: Sequence[LexiconTerm]) -> None:
        self.terms = list(terms)
        self.categories = sorted({t.category for t in terms})
        self._cat = {c: i for i, c in enumerate(self.categories)}
        self.term_category = [self._cat[t.category] for t in terms]
        self._by_len: dict[int, dict[tuple[str, ...], int]] = {}
        for i, t in enumerate(terms):
            key = tuple(tokens(t.term))
            if key:
                self._by_len.setdefault(len(key), {})[key] = i
        self._lengths = sorted(self._by_len, reverse=True)
        self._first = {key[0] for table in self._by_len.values() for key in table}

    def find(self, toks: Sequence[str]) -> set[int]:
        """Indices of the terms in ``toks`` (a longer term wins over one inside it)."""
        hits: set[int] = set()
        i, n = 0, len(toks)
        while i < n:
            if toks[i] not in self._first:
                i += 1
                continue
            for length in self._lengths:
                if i + length <= n:
                    j = self._by_len[length].get(tuple(toks[i : i + length]))
                    if j is not None:
                        hits.add(j)
                        i += length
                        break
            else:
                i += 1
        return hits


@dataclass(frozen=True)
class TallyLimits:
    """The caps that bound the tally's memory (see the module docstring)."""

    max_attributes: int = 16
    max_groups: int = 32
    max_concepts: int = 20_000
    max_text_chars: int = 10_000
    flush_rows: int = 4096


def _field_values(sample: Sample, name: str) -> list[str]:
    """A row's values of field ``name`` (``caption``, ``prompt``, ``target`` or a key)."""
    value: Any
    if name == "prompt":
        value = sample.prompt
    elif name == "target":
        value = sample.target
    elif name == "caption":
        value = sample.metadata.get("caption")
    elif name in sample.attributes:
        value = sample.attributes[name]
    else:
        value = sample.metadata.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [str(v) for v in value if isinstance(v, str | int | float) and str(v)]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


class AuditTally:
    """One pass over rows; :meth:`add` each row, then :meth:`summary`.

    Args:
        attributes: the group attributes; ``None``: every attribute key seen (up to
            ``limits.max_attributes``), except the label fields.
        text_fields: where a row's text is read (``caption`` = ``metadata["caption"]``,
            ``prompt``, ``target``, or any attribute/metadata key).
        label_fields: where a row's labels are read (``target``, ``label`` = the attribute).
        lexicon: the flagged terms.
        stop_words: leave English function words out of the word concepts.
        limits: the memory caps.
    """

    def __init__(
        self,
        *,
        attributes: Sequence[str] | None,
        text_fields: Sequence[str],
        label_fields: Sequence[str],
        lexicon: Sequence[LexiconTerm],
        stop_words: bool = True,
        limits: TallyLimits | None = None,
    ) -> None:
        self.limits = limits or TallyLimits()
        self.fixed_attributes = list(attributes) if attributes is not None else None
        self.text_fields = list(text_fields)
        self.label_fields = list(label_fields)
        self._label_attrs = set(label_fields)
        self._stop = STOP_WORDS if stop_words else frozenset()
        self.lexicon = _Lexicon(lexicon)
        self.rows = 0
        self.text_rows = 0
        self.label_rows = 0
        self.bad_rows = 0
        self.bad_examples: list[str] = []
        self.ignored_attributes: dict[str, int] = {}
        # attributes and their values
        self.attr_names: list[str] = []
        self._attr_index: dict[str, int] = {}
        self.attr_values: list[dict[str, int]] = []
        self.attr_value_names: list[list[str]] = []
        self.attr_rows: list[int] = []
        self.attr_overflow_values: list[int] = []
        self._cells: dict[tuple[int, int], int] = {}
        self.cell_of: list[tuple[int, int]] = []
        self.cell_rows = np.zeros(64, dtype=np.int64)
        self.text_cell_rows = np.zeros(64, dtype=np.int64)
        # concepts
        self._concept_index: dict[tuple[str, str], int] = {}
        self._concept_key: list[tuple[str, str] | None] = []
        self._free: list[int] = []
        cap = 1024
        self.totals = np.zeros(cap, dtype=np.int64)
        self.deltas = np.zeros(cap, dtype=np.int64)
        self.table = np.zeros((cap, 64), dtype=np.int32)
        self.error_bound = 0
        self.evictions = 0
        self.evicted_concepts = 0
        # lexicon
        n_terms = len(self.lexicon.terms)
        n_cats = len(self.lexicon.categories)
        self.lex_rows = 0
        self.lex_term_rows = np.zeros(n_terms, dtype=np.int64)
        self.lex_cat_rows = np.zeros(n_cats, dtype=np.int64)
        self.lex_cell_rows = np.zeros(64, dtype=np.int64)
        self.lex_term_cells = np.zeros((n_terms, 64), dtype=np.int64)
        self.lex_cat_cells = np.zeros((n_cats, 64), dtype=np.int64)
        # pending updates (flushed every ``flush_rows`` rows)
        self._pend_total: list[int] = []
        self._pend_concept: list[int] = []
        self._pend_cell: list[int] = []
        self._pend_rows = 0

    # ---------------------------------------------------------------- rows

    def add_error(self, message: str) -> None:
        """Count a row that could not be read (the first few messages are kept)."""
        self.bad_rows += 1
        if len(self.bad_examples) < 10:
            self.bad_examples.append(message)

    def add_all(self, items: Iterable[Any]) -> None:
        """Add every item: :class:`Sample` rows, anything else as an unreadable row."""
        for item in items:
            if isinstance(item, Sample):
                self.add(item)
            else:
                self.add_error(str(getattr(item, "message", item)))

    def add(self, sample: Sample) -> None:
        """Count one row."""
        self.rows += 1
        cells = self._row_cells(sample.attributes)
        for cell in cells:
            self.cell_rows[cell] += 1
        text = " ".join(v for f in self.text_fields for v in _field_values(sample, f))
        toks = tokens(text[: self.limits.max_text_chars]) if text else []
        labels = {v.strip().lower() for f in self.label_fields for v in _field_values(sample, f)}
        labels.discard("")
        if toks:
            self.text_rows += 1
            for cell in cells:
                self.text_cell_rows[cell] += 1
        if labels:
            self.label_rows += 1
        concepts = [("label", v) for v in labels]
        stop = self._stop
        concepts += [
            ("word", t) for t in set(toks) if len(t) > 1 and t not in stop and _HAS_LETTER.search(t)
        ]
        if concepts:
            cap = self.limits.max_concepts
            del concepts[cap:]
            new = sum(1 for key in concepts if key not in self._concept_index)
            if new and len(self._concept_index) + new > cap:
                self._evict(need=new)
            ids = [self._concept(key) for key in concepts]
            self._pend_total.extend(ids)
            for cell in cells:
                self._pend_concept.extend(ids)
                self._pend_cell.extend([cell] * len(ids))
        if toks:
            hits = self.lexicon.find(toks)
            if hits:
                self._lexicon_row(hits, cells)
        self._pend_rows += 1
        if self._pend_rows >= self.limits.flush_rows:
            self.flush()

    def _lexicon_row(self, hits: set[int], cells: Sequence[int]) -> None:
        self.lex_rows += 1
        cats = {self.lexicon.term_category[t] for t in hits}
        for t in hits:
            self.lex_term_rows[t] += 1
        for c in cats:
            self.lex_cat_rows[c] += 1
        for cell in cells:
            self.lex_cell_rows[cell] += 1
            for t in hits:
                self.lex_term_cells[t, cell] += 1
            for c in cats:
                self.lex_cat_cells[c, cell] += 1

    def _row_cells(self, attributes: Mapping[str, str]) -> list[int]:
        cells = []
        names: Iterable[str] = (
            self.fixed_attributes if self.fixed_attributes is not None else attributes
        )
        for name in names:
            value = attributes.get(name)
            if value is None:
                continue
            a = self._attr_index.get(name)
            if a is None:
                if self.fixed_attributes is None and name in self._label_attrs:
                    continue
                a = self._new_attribute(name)
                if a is None:
                    continue
            self.attr_rows[a] += 1
            g = self.attr_values[a].get(value)
            if g is None:
                g = self._new_value(a, value)
            cells.append(self._cell(a, g))
        return cells

    def _new_attribute(self, name: str) -> int | None:
        if len(self.attr_names) >= self.limits.max_attributes:
            if name in self.ignored_attributes or len(self.ignored_attributes) < 100:
                self.ignored_attributes[name] = self.ignored_attributes.get(name, 0) + 1
            return None
        a = len(self.attr_names)
        self.attr_names.append(name)
        self._attr_index[name] = a
        self.attr_values.append({})
        self.attr_value_names.append([])
        self.attr_rows.append(0)
        self.attr_overflow_values.append(0)
        return a

    def _new_value(self, a: int, value: str) -> int:
        values = self.attr_values[a]
        if len(values) < self.limits.max_groups:
            g = len(self.attr_value_names[a])
            self.attr_value_names[a].append(value)
            values[value] = g
            return g
        self.attr_overflow_values[a] += 1
        other = values.get(OTHER)
        if other is None:
            other = len(self.attr_value_names[a])
            self.attr_value_names[a].append(OTHER)
            values[OTHER] = other
        return other

    def _cell(self, a: int, g: int) -> int:
        cell = self._cells.get((a, g))
        if cell is None:
            cell = len(self.cell_of)
            self._cells[(a, g)] = cell
            self.cell_of.append((a, g))
            if cell >= self.table.shape[1]:
                self._grow_cells()
        return cell

    def _grow_cells(self) -> None:
        width = self.table.shape[1] * 2

        def wider(arr: NDArray[Any]) -> NDArray[Any]:
            out = np.zeros((arr.shape[0], width) if arr.ndim == 2 else width, dtype=arr.dtype)
            out[..., : arr.shape[-1]] = arr
            return out

        self.table = wider(self.table)
        self.cell_rows = wider(self.cell_rows)
        self.text_cell_rows = wider(self.text_cell_rows)
        self.lex_cell_rows = wider(self.lex_cell_rows)
        self.lex_term_cells = wider(self.lex_term_cells)
        self.lex_cat_cells = wider(self.lex_cat_cells)

    # ---------------------------------------------------------------- concepts

    def _concept(self, key: tuple[str, str]) -> int:
        idx = self._concept_index.get(key)
        if idx is not None:
            return idx
        if self._free:
            idx = self._free.pop()
        else:
            idx = len(self._concept_key)
            self._concept_key.append(None)
            if idx >= self.totals.shape[0]:
                self._grow_concepts()
        self._concept_key[idx] = key
        self._concept_index[key] = idx
        self.deltas[idx] = self.error_bound
        return idx

    def _grow_concepts(self) -> None:
        n = min(self.totals.shape[0] * 2, max(self.limits.max_concepts, 1))
        n = max(n, self.totals.shape[0] + 1)
        self.totals = np.concatenate([self.totals, np.zeros(n - self.totals.shape[0], np.int64)])
        self.deltas = np.concatenate([self.deltas, np.zeros(n - self.deltas.shape[0], np.int64)])
        grown = np.zeros((n, self.table.shape[1]), dtype=self.table.dtype)
        grown[: self.table.shape[0]] = self.table
        self.table = grown

    def _evict(self, need: int) -> None:
        """Drop the least frequent half of the tracked concepts, leaving room for ``need`` more.

        Pending counts are applied first, so every tracked count is current.
        """
        self.flush()
        live = np.array(list(self._concept_index.values()), dtype=np.int64)
        cap = self.limits.max_concepts
        keep = max(min(cap // 2, cap - need), 0)
        order = np.argsort(self.totals[live], kind="stable")
        drop = live[order[: len(live) - keep]]
        if not len(drop):
            return
        self.error_bound = max(self.error_bound, int(self.totals[drop].max()))
        for idx in drop.tolist():
            key = self._concept_key[idx]
            assert key is not None
            del self._concept_index[key]
            self._concept_key[idx] = None
            self._free.append(idx)
        self.totals[drop] = 0
        self.deltas[drop] = 0
        self.table[drop] = 0
        self.evictions += 1
        self.evicted_concepts += len(drop)

    def flush(self) -> None:
        """Apply the pending concept counts."""
        if self._pend_total:
            ids, counts = np.unique(
                np.asarray(self._pend_total, dtype=np.int64), return_counts=True
            )
            self.totals[ids] += counts
        if self._pend_concept:
            width = self.table.shape[1]
            flat = np.asarray(self._pend_concept, dtype=np.int64) * width + np.asarray(
                self._pend_cell, dtype=np.int64
            )
            u, counts = np.unique(flat, return_counts=True)
            self.table.reshape(-1)[u] += counts.astype(self.table.dtype)
        self._pend_total.clear()
        self._pend_concept.clear()
        self._pend_cell.clear()
        self._pend_rows = 0

    # ---------------------------------------------------------------- result

    def tracked_concepts(self) -> int:
        """How many concepts the table holds now."""
        return len(self._concept_index)

    def summary(self, *, min_total: int) -> dict[str, Any]:
        """All counts as plain JSON; concepts seen in fewer than ``min_total`` rows left out."""
        self.flush()
        attributes: dict[str, Any] = {}
        for a, name in enumerate(self.attr_names):
            counts: dict[str, int] = {}
            text: dict[str, int] = {}
            for g, value in enumerate(self.attr_value_names[a]):
                cell = self._cells.get((a, g))
                counts[value] = int(self.cell_rows[cell]) if cell is not None else 0
                text[value] = int(self.text_cell_rows[cell]) if cell is not None else 0
            attributes[name] = {
                "rows": self.attr_rows[a],
                "groups": counts,
                "text_rows": text,
                "overflow_rows": self.attr_overflow_values[a],
            }
        concepts: list[dict[str, Any]] = []
        below = 0
        for key, idx in self._concept_index.items():
            total = int(self.totals[idx])
            if total < min_total:
                below += 1
                continue
            concepts.append(
                {
                    "kind": key[0],
                    "value": key[1],
                    "n": total,
                    "delta": int(self.deltas[idx]),
                    "by": self._by_cells(self.table[idx]),
                }
            )
        concepts.sort(key=lambda c: (c["kind"], -c["n"], c["value"]))
        terms = {
            t.term: {
                "n": int(self.lex_term_rows[i]),
                "category": t.category,
                "severity": t.severity,
                "suggestion": t.suggestion,
                "by": self._by_cells(self.lex_term_cells[i]),
            }
            for i, t in enumerate(self.lexicon.terms)
            if self.lex_term_rows[i]
        }
        categories = {
            c: {"n": int(self.lex_cat_rows[i]), "by": self._by_cells(self.lex_cat_cells[i])}
            for i, c in enumerate(self.lexicon.categories)
            if self.lex_cat_rows[i]
        }
        return {
            "rows": self.rows,
            "text_rows": self.text_rows,
            "label_rows": self.label_rows,
            "bad_rows": self.bad_rows,
            "bad_examples": list(self.bad_examples),
            "attributes": attributes,
            "ignored_attributes": dict(self.ignored_attributes),
            "concepts": concepts,
            "concepts_tracked": self.tracked_concepts(),
            "concepts_below_min": below,
            "error_bound": self.error_bound,
            "evictions": self.evictions,
            "evicted_concepts": self.evicted_concepts,
            "lexicon": {
                "rows": self.lex_rows,
                "terms": terms,
                "categories": categories,
                "by": self._by_cells(self.lex_cell_rows),
                "size": len(self.lexicon.terms),
            },
            "limits": {
                "max_attributes": self.limits.max_attributes,
                "max_groups": self.limits.max_groups,
                "max_concepts": self.limits.max_concepts,
                "max_text_chars": self.limits.max_text_chars,
            },
        }

    def _by_cells(self, row: NDArray[Any]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for cell in np.flatnonzero(row[: len(self.cell_of)]).tolist():
            a, g = self.cell_of[cell]
            out.setdefault(self.attr_names[a], {})[self.attr_value_names[a][g]] = int(row[cell])
        return out
