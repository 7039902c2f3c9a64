"""Did a run do what was asked? The problems that make ``vlmtrust run`` / ``audit`` exit 1.

A probe result has a problem when the probe did not run (missing data, a capability, a failed
summary), had no sample to evaluate, or every one of its samples failed; and, with a
``max_error_rate``, when more than that share of its samples became error records. Results
and reports are written either way: this only judges them.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import AuditLog, ProbeResult

DID_NOT_RUN = "probe did not run: "
"""The note the runner gives a probe that raised before producing records."""
SUMMARY_FAILED = "summarising failed: "
"""The note the runner gives a probe whose metrics could not be computed."""


def check_error_rate(rate: float | None) -> float | None:
    """``rate`` if it is ``None`` or a share in [0, 1]; else one-line :class:`InputError`."""
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise InputError(
            f"--max-error-rate {rate:g}: use a share of the samples between 0 and 1 (e.g. 0.05)"
        )
    return rate


def probe_problem(result: ProbeResult, *, max_error_rate: float | None = None) -> str | None:
    """What went wrong with one probe's result (one line), or ``None`` if nothing did.

    Example:
        >>> from vlmtrust.core.types import Pillar
        >>> r = ProbeResult(probe="p", pillar=Pillar.SAFETY, version=1, params={},
        ...                 n_samples=4, n_errors=1)
        >>> probe_problem(r) is None, probe_problem(r, max_error_rate=0.2)
        (True, '1 of 4 samples failed (25%, above --max-error-rate 0.2)')
    """
    for note in result.notes:
        if note.startswith(DID_NOT_RUN):
            return "did not run: " + note.removeprefix(DID_NOT_RUN)
        if note.startswith(SUMMARY_FAILED):
            return note
    n, bad = result.n_samples, result.n_errors
    if n == 0:
        return "no samples to evaluate (check --data and --limit)"
    first = f" (first: {result.errors[0].message})" if result.errors else ""
    if bad >= n:
        return f"all {n} samples failed{first}"
    if max_error_rate is not None and bad / n > max_error_rate:
        return (
            f"{bad} of {n} samples failed ({bad / n:.0%}, above --max-error-rate "
            f"{max_error_rate:g}){first}"
        )
    return None


def run_problems(
    logs: AuditLog | Sequence[AuditLog], *, max_error_rate: float | None = None
) -> list[str]:
    """One line per probe result with a problem, ``MODEL · PROBE: what`` (in run order)."""
    out = []
    for log in [logs] if isinstance(logs, AuditLog) else logs:
        for r in log.results:
            why = probe_problem(r, max_error_rate=max_error_rate)
            if why is not None:
                out.append(f"{log.spec.model.spec} · {r.probe}: {why}")
    return out
