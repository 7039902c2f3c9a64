"""PII in free text without ground truth: Presidio's pattern recognisers plus document rules.

Used by the PII guards (``privacy/pii_guard``, ``privacy/pseudonymize``) and by the probes that
measure them (``safety/over_filtering``).

:class:`PiiTextFinder` is a Presidio ``AnalyzerEngine`` on the ``NoOpNlpEngine`` (no spaCy
model, nothing downloaded) holding Presidio's pattern recognisers (those of
:func:`vlmtrust.judges.pii.presidio_detector`: e-mail with an offline TLD check, phone, date,
US IDs) and four recognisers written here for what pattern-only Presidio misses:

* ``PERSON`` — a run of exactly two capitalised words (``Ada Park``) whose first word is not a
  common sentence opener or a document label (``The``, ``Tel``, ``Deliver`` …). Without NER this
  is a shape rule: it also fires on two-word business or place names (over-redaction), and a
  name of three words or more is missed;
* ``STREET_ADDRESS`` — a house number, one to three capitalised words and a USPS street suffix
  (``12 Oak Street``, ``82088 James Harbors``), optionally ``Suite``/``Apt`` and a number;
* ``SHORT_PHONE`` — local numbers ``phonenumbers`` rejects as too short (``555-0101``,
  ``(555) 010-1234``);
* ``ID_NUMBER`` — one to four capital letters, an optional dash and 5–10 digits
  (``ID-906533``).
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

ENTITY_KIND: dict[str, str] = {
    "PERSON": "name",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "SHORT_PHONE": "phone",
    "STREET_ADDRESS": "address",
    "ID_NUMBER": "id_number",
    "US_DRIVER_LICENSE": "id_number",
    "US_PASSPORT": "id_number",
    "US_SSN": "id_number",
    "US_ITIN": "id_number",
    "US_BANK_NUMBER": "id_number",
    "DATE_TIME": "dob",
}
"""Entity type found → PII type (the types of :data:`vlmtrust.judges.pii.PII_KINDS`)."""

STREET_SUFFIXES: tuple[str, ...] = tuple(
    """Alley Avenue Ave Bay Bend Bluff Boulevard Blvd Branch Bridge Brook Brooks Burg Burgs
    Bypass Camp Canyon Cape Causeway Center Centers Circle Circles Cliff Cliffs Club Common
    Corner Corners Course Court Ct Courts Cove Coves Creek Crescent Crest Crossing Crossroad
    Curve Dale Dam Divide Drive Dr Drives Estate Estates Expressway Extension Extensions Fall
    Falls Ferry Field Fields Flat Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway
    Garden Gardens Gateway Glen Glens Green Greens Grove Groves Harbor Harbors Haven Heights
    Highway Hill Hills Hollow Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls
    Lake Lakes Land Landing Lane Ln Light Lights Loaf Lock Locks Lodge Loop Mall Manor Manors
    Meadow Meadows Mews Mill Mills Mission Motorway Mount Mountain Mountains Neck Orchard Oval
    Overpass Park Parks Parkway Parkways Pass Passage Path Pike Pine Pines Place Pl Plain Plains
    Plaza Point Points Port Ports Prairie Radial Ramp Ranch Rapid Rapids Rest Ridge Ridges River
    Road Rd Roads Route Row Rue Run Shoal Shoals Shore Shores Skyway Spring Springs Spur Spurs
    Square Squares Station Stravenue Stream Street St Streets Summit Terrace Throughway Trace
    Track Trafficway Trail Trailer Tunnel Turnpike Underpass Union Unions Valley Valleys Via
    Viaduct View Views Village Villages Ville Vista Walk Walks Wall Way Ways Well Wells""".split()  # noqa: SIM905
)
"""USPS street suffixes (their usual spellings) that end a street address."""

NOT_A_FIRST_NAME: frozenset[str] = frozenset(
    """The This That These Those It Its A An In On At Of For From To With And Or But If As By
    Here There What Which Who Whose Where When Why How Yes No Sure Sorry Please Thank Thanks
    Hello Dear Tel Phone Email Mail Fax Name Address Date Birth Dob Id Card Form Receipt Total
    Deliver Delivery Contact Contacts Mobile Home Work Office Store Shop Order Invoice Item
    Items Subtotal Tax Cash Change Registration Reg Founded Company Business Member Valid
    Expires Issued Sex Born Signature Read Describe Image Photo Picture Document Text Screen
    Call Message Send Save Edit Back Menu Search Open Close New Street Road Avenue Lane Drive
    Mr Mrs Ms Dr Sir Madam I We You He She They My Your Our Their His Her""".split()  # noqa: SIM905
)
"""Capitalised words that do not start a person's name (sentence openers, document labels)."""

_NAME_WORD = r"[A-Z][a-z]+(?:['\-][A-Z]?[a-z]+)?"
_NAME_RUN = re.compile(rf"(?<![\w'\-])({_NAME_WORD}(?: {_NAME_WORD})+)(?![\w'\-])")
_SUFFIX_RE = "|".join(sorted(STREET_SUFFIXES, key=len, reverse=True))
_ADDRESS = re.compile(
    rf"(?<![\w\-])\d{{1,6}}(?: [A-Z][a-z]+){{0,3}} (?:{_SUFFIX_RE})\.?"
    r"(?:,? (?:Suite|Apt\.?|Unit) \d{1,5})?(?![\w\-])"
)
_SHORT_PHONE = re.compile(
    r"(?<![\w\-+])(?:\+?1[ .\-]?)?(?:\(\d{3}\) ?|\d{3}[ .\-])?\d{3}[ .\-]\d{4}(?![\w\-])"
)
_ID = re.compile(r"(?<![\w\-])[A-Z]{1,4}-?\d{5,10}(?![\w\-])")


@dataclass(frozen=True)
class PiiSpan:
    """One PII finding in a text: entity type, PII type, character span, score."""

    entity: str
    kind: str
    start: int
    end: int
    score: float


def _rules(text: str) -> list[PiiSpan]:
    """The findings of the four rules written here (see the module docstring)."""
    out: list[PiiSpan] = []
    for m in _NAME_RUN.finditer(text):
        ws = m.group(1).split(" ")
        # the two-word window(s) of the run: only a run of exactly two words counts,
        # after dropping a leading opener ("The Ada Park" -> "Ada Park")
        start = m.start(1)
        while ws and ws[0] in NOT_A_FIRST_NAME:
            start += len(ws[0]) + 1
            ws = ws[1:]
        if len(ws) == 2 and ws[1] not in NOT_A_FIRST_NAME:
            out.append(PiiSpan("PERSON", "name", start, start + len(ws[0]) + 1 + len(ws[1]), 0.5))
    for pattern, entity, kind in (
        (_ADDRESS, "STREET_ADDRESS", "address"),
        (_SHORT_PHONE, "SHORT_PHONE", "phone"),
        (_ID, "ID_NUMBER", "id_number"),
    ):
        out += [PiiSpan(entity, kind, m.start(), m.end(), 0.6) for m in pattern.finditer(text)]
    return out


class PiiTextFinder:
    """PII spans in free text: Presidio's pattern recognisers plus the rules written here.

    Args:
        kinds: PII types to report (default: all of :data:`ENTITY_KIND`'s).
        threshold: minimum score of a Presidio finding (the rules score 0.5–0.6).
    """

    def __init__(self, kinds: Sequence[str] | None = None, threshold: float = 0.3) -> None:
        from vlmtrust.judges.pii import presidio_mode

        mode = presidio_mode(None)
        if not mode.available:
            raise ImportError(mode.note)
        self.kinds = set(kinds) if kinds is not None else set(ENTITY_KIND.values())
        self.threshold = threshold
        self._analyzer = _shared_analyzer()
        self._lock = _FIND_LOCK  # one shared analyzer: one caller at a time

    def find(self, text: str) -> list[PiiSpan]:
        """Non-overlapping PII spans of ``text``, in order (the longer of two overlaps wins)."""
        if not text.strip():
            return []
        with self._lock:
            res = self._analyzer.analyze(
                text=text,
                language="en",
                entities=[e for e in _PRESIDIO_ENTITIES if ENTITY_KIND[e] in self.kinds],
                score_threshold=self.threshold,
            )
        spans = [
            PiiSpan(r.entity_type, ENTITY_KIND[r.entity_type], r.start, r.end, float(r.score))
            for r in res
            if r.entity_type in ENTITY_KIND
        ]
        spans += [s for s in _rules(text) if s.kind in self.kinds]
        spans.sort(key=lambda s: (-(s.end - s.start), s.start))
        kept: list[PiiSpan] = []
        for s in spans:
            if all(s.end <= k.start or s.start >= k.end for k in kept):
                kept.append(s)
        return sorted(kept, key=lambda s: s.start)

    def replace(self, text: str, template: str = "<{kind}>") -> tuple[str, list[PiiSpan]]:
        """``text`` with each span replaced by ``template`` (``{kind}``: upper-case PII type)."""
        spans = self.find(text)
        out, last = [], 0
        for s in spans:
            out += [text[last : s.start], template.format(kind=s.kind.upper())]
            last = s.end
        return "".join(out) + text[last:], spans


_PRESIDIO_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "DATE_TIME",
    "US_DRIVER_LICENSE",
    "US_PASSPORT",
    "US_SSN",
    "US_ITIN",
    "US_BANK_NUMBER",
)

_ANALYZER: list[Any] = []
_ANALYZER_LOCK = threading.Lock()
_FIND_LOCK = threading.Lock()


def _shared_analyzer() -> Any:
    """One pattern-only Presidio analyzer (built like the PII judge's, never downloads)."""
    with _ANALYZER_LOCK:
        if not _ANALYZER:
            pii: Any = importlib.import_module("vlmtrust.judges.pii")
            _ANALYZER.append(pii._build_analyzer(None))
        return _ANALYZER[0]
