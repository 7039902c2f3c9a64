"""Where local models compute: torch's CPU threads, and CUDA out-of-memory back-off.

``--threads N`` (or ``VLMTRUST_THREADS``) fixes torch's intra-op thread count (and its
inter-op pool, when torch has not started it yet) for the whole process, so that a run does
not fight other processes for cores: torch otherwise starts one thread per core and, when
another process takes a core, every parallel region waits for its slowest thread.

:func:`is_oom` tells a CUDA out-of-memory error from other failures; the runner then halves
the batch and retries (:func:`vlmtrust.runner.engine.evaluate_probe`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

from vlmtrust.core.errors import InputError

THREADS_ENV = "VLMTRUST_THREADS"
"""Environment variable read when no thread count is passed."""

_chosen: int | None = None


def parse_threads(value: Any, source: str = "--threads") -> int:
    """``value`` as a thread count (a whole number >= 1).

    Raises:
        InputError: one line naming ``source`` and the fix.
    """
    try:
        n = int(str(value).strip()) if not isinstance(value, bool) else None
    except ValueError:
        n = None
    if n is None or n < 1:
        raise InputError(
            f"{source}={value!r} is not a whole number >= 1; give e.g. {source}=2 "
            "(the torch threads this run may use)"
        )
    return n


def configure_threads(threads: int | None = None) -> int | None:
    """Set torch's CPU threads to ``threads`` (default: ``$VLMTRUST_THREADS``); return it.

    With neither given nothing changes and None is returned. The inter-op pool is sized too
    when torch allows it (only before its first parallel work); the intra-op count, which is
    what fights other processes, is always set. The count stays for the rest of the process.

    Raises:
        InputError: a count (or the variable's value) that is not a whole number >= 1.
    """
    global _chosen
    if threads is None:
        env = os.environ.get(THREADS_ENV, "").strip()
        if not env:
            return None
        n = parse_threads(env, THREADS_ENV)
    else:
        n = parse_threads(threads)
    import torch

    torch.set_num_threads(n)
    if torch.get_num_interop_threads() != n:
        # Once the inter-op pool has started only the intra-op count can change.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(n)
    _chosen = n
    return n


def threads_in_use() -> int | None:
    """The intra-op thread count of torch, when torch is loaded or a count was configured."""
    if _chosen is None and "torch" not in sys.modules:
        return None
    import torch

    return int(torch.get_num_threads())


def is_oom(error: BaseException) -> bool:
    """True for an accelerator out-of-memory error (``torch.OutOfMemoryError`` and kin).

    Host memory errors (:class:`MemoryError`) are not: halving a batch rarely cures them.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch, "OutOfMemoryError", None) or getattr(
            getattr(torch, "cuda", None), "OutOfMemoryError", None
        )
        if isinstance(oom, type) and isinstance(error, oom):
            return True
    return (
        isinstance(error, RuntimeError)
        and "out of memory" in str(error).lower()
        and ("cuda" in str(error).lower() or "hip" in str(error).lower())
    )
