"""Judges: refusal, toxicity and LLM judges, pluggable per probe, each with measured agreement.

Names: ``refusal/keyword``, ``refusal/classifier``, ``toxicity/profanity``,
``toxicity/detoxify``, and LLM judges ``llm:SPEC`` (Llama Guard), ``llm:SPEC#harm`` /
``llm:SPEC#refusal`` (rubric mode, built-in rubric) and ``llm:SPEC#TASK=RUBRIC_FILE`` (custom
rubric read as UTF-8). See :mod:`vlmtrust.judges.base` for the protocol and registry and
:mod:`vlmtrust.judges.agreement` for agreement with the shipped labeled set.
"""

from vlmtrust.judges.base import Judge, Judgment, available_judges, get_judge, judge_task

__all__ = ["Judge", "Judgment", "available_judges", "get_judge", "judge_task"]
