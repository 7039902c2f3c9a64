"""Judges: refusal, toxicity and LLM judges, pluggable per probe, each with measured agreement.

See :mod:`vlmtrust.judges.base` for the protocol and registry and
:mod:`vlmtrust.judges.agreement` for agreement with the shipped labeled set.
"""

from vlmtrust.judges.base import Judge, Judgment, available_judges, get_judge

__all__ = ["Judge", "Judgment", "available_judges", "get_judge"]
