"""Several batches in flight for remote models: one shared event loop, worker threads, in order.

A probe's :meth:`~vlmtrust.core.probe.Probe.evaluate` is synchronous and calls the model
through :func:`~vlmtrust.core.model.generate_sync`. :func:`pipelined` runs up to ``depth``
batches at once in worker threads; every model call they make is sent to one event loop owned
by :class:`LoopThread` (via :func:`~vlmtrust.core.model.sync_calls_via`), so the model keeps one
connection pool and one concurrency limit for all of them. A batch starts as soon as a worker
is free: one slow request delays only its own batch. Results come back in stream order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import logging
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, TypeVar

from vlmtrust.core.model import sync_calls_via

log = logging.getLogger("vlmtrust")

_T = TypeVar("_T")
_R = TypeVar("_R")


class LoopStopping(RuntimeError):
    """Raised to a worker that calls the model after the pipeline began to stop."""


class LoopThread:
    """An asyncio event loop running in a daemon thread until :meth:`close`.

    :meth:`run` (from any other thread) runs a coroutine on it and waits for the result.
    :meth:`close` cancels what is still running, lets async generators finish (backends close
    their HTTP clients there) and stops the thread.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="vlmtrust-loop", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the loop and return its result (blocks the calling thread)."""
        with self._lock:
            if self._stopping:
                coro.close()
                raise LoopStopping("the run is stopping; no new model calls")
            fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result()

    def cancel(self) -> None:
        """Refuse new calls and cancel every task on the loop (their callers get an error)."""
        with self._lock:
            self._stopping = True

        def cancel_all() -> None:
            for task in asyncio.all_tasks(self.loop):
                task.cancel()

        if self.loop.is_running():
            self.loop.call_soon_threadsafe(cancel_all)

    def close(self) -> None:
        """Cancel what is left, close async generators, stop the loop and join its thread."""
        self.cancel()
        if self.loop.is_running():
            for finish in (self.loop.shutdown_asyncgens, self.loop.shutdown_default_executor):
                done = asyncio.run_coroutine_threadsafe(finish(), self.loop)
                try:
                    done.result(timeout=30)
                except (cf.TimeoutError, cf.CancelledError, RuntimeError):
                    log.warning("event loop: %s did not finish in time", finish.__name__)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.loop.close()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pipelined(
    items: Iterable[tuple[_R, _T | None]],
    work: Callable[[_T], list[Any]],
    depth: int,
    *,
    window: int | None = None,
) -> Iterator[tuple[_R, list[Any]]]:
    """Run ``work`` on up to ``depth`` items at once; yield ``(head, results)`` in input order.

    Args:
        items: ``(head, job)`` pairs; ``head`` is passed through unchanged, ``job`` (unless
            None) goes to ``work`` in a worker thread whose model calls run on one shared loop.
        work: evaluates one job (may call :func:`~vlmtrust.core.model.generate_sync`).
        depth: jobs running at once (>= 1).
        window: jobs started but not yet yielded at most (default ``4 * depth``): bounds the
            results kept while an earlier, slower job finishes.

    Yields:
        ``(head, work(job))``, or ``(head, [])`` for a None job, in the order of ``items``. An
        exception from ``work`` is raised here as soon as it is seen (the results of later
        items are dropped); on any exception, or when the consumer stops early, running jobs
        are cancelled and the workers joined.
    """
    depth = max(1, int(depth))
    limit = max(depth, window if window is not None else 4 * depth)
    pending: deque[tuple[_R, cf.Future[list[Any]] | None]] = deque()
    with LoopThread() as lt:

        def run(job: _T) -> list[Any]:
            with sync_calls_via(lt.run):
                return work(job)

        pool = cf.ThreadPoolExecutor(depth, thread_name_prefix="vlmtrust-batch")
        ok = False
        try:
            source = iter(items)
            exhausted = False
            while not exhausted or pending:
                # start jobs while a worker is free and the window has room
                while not exhausted and len(pending) < limit and _running(pending) < depth:
                    try:
                        head, job = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((head, pool.submit(run, job) if job is not None else None))
                # hand over every finished job at the front, in order
                while pending and (pending[0][1] is None or pending[0][1].done()):
                    head, fut = pending.popleft()
                    yield head, (fut.result() if fut is not None else [])
                # a failed job ends the run now, not when its turn comes
                for _, fut in pending:
                    if fut is not None and fut.done() and fut.exception() is not None:
                        fut.result()
                if pending and (exhausted or len(pending) >= limit or _running(pending) >= depth):
                    busy = [f for _, f in pending if f is not None and not f.done()]
                    cf.wait(busy, return_when=cf.FIRST_COMPLETED)
            ok = True
        finally:
            if not ok:
                for _, fut in pending:
                    if fut is not None:
                        fut.cancel()
                lt.cancel()
            pool.shutdown(wait=True, cancel_futures=True)


def _running(pending: Iterable[tuple[Any, cf.Future[Any] | None]]) -> int:
    return sum(1 for _, f in pending if f is not None and not f.done())
