"""The runner: samples → batches → model → records (streamed to disk) → metrics.

It owns data I/O (the only reader of ``--data``: :mod:`vlmtrust.runner.data`), batching,
caching, resume, progress and writing; probes own only what to ask and how to score. Each
image is decoded once, and the report's thumbnail is kept from that decode. One bad sample
becomes one error record; the run goes on.

Run directory layout::

    spec.json               model (spec, fingerprint), probes (params, versions), seed, version
    results.json            the AuditLog
    samples/<probe>.jsonl   one Record per line, appended as each batch completes (in sample
                            order, also when several batches are in flight)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import json
import logging
import os
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from vlmtrust.core.errors import CapabilityError, InputError, VlmtrustError, one_line
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.probe import Probe, ProbeContext
from vlmtrust.core.redact import redact_data, redact_text
from vlmtrust.core.results import (
    AuditLog,
    ErrorSummary,
    ModelInfo,
    ProbeResult,
    ProbeSpec,
    Record,
    RequestStats,
    RunSpec,
)
from vlmtrust.core.sample import ImageRef, Sample
from vlmtrust.runner.cache import Cache, with_cache
from vlmtrust.runner.data import Thumbnails, with_data
from vlmtrust.runner.outcome import DID_NOT_RUN, SUMMARY_FAILED
from vlmtrust.runner.outdir import prepare_out_dir

log = logging.getLogger("vlmtrust")

MAX_ERRORS_KEPT = 20


def samples_file(run_dir: Path, probe_name: str) -> Path:
    """Where a probe's records live inside a run directory."""
    return run_dir / "samples" / (probe_name.replace("/", "__") + ".jsonl")


class RecordWriter:
    """Appends records to a JSONL file, flushed per batch (survives kill -9).

    Each batch is handed to the operating system at once (a killed process loses nothing
    written); it is also fsynced (survives a power cut) at most every ``sync_every_s``
    seconds, and on :meth:`close`.
    """

    def __init__(self, path: Path, *, sync_every_s: float = 1.0) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")
        self._sync_every_s = sync_every_s
        self._synced = time.monotonic()
        self._dirty = False

    def write(self, records: Sequence[Record]) -> None:
        """Append and flush (fsync when the last one is ``sync_every_s`` old)."""
        if not records:
            return
        self._fh.write("".join(r.model_dump_json() + "\n" for r in records))
        self._fh.flush()
        self._dirty = True
        if time.monotonic() - self._synced >= self._sync_every_s:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._synced = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        """Make what was written durable and close the file."""
        if self._dirty and not self._fh.closed:
            self._sync()
        self._fh.close()


def read_records(path: Path, *, repair: bool = False) -> list[Record]:
    """Records of a samples file; later lines win for the same sample id.

    A torn last line (the process was killed mid-write) is skipped and, with ``repair``,
    cut off so appending continues cleanly.
    """
    if not path.exists():
        return []
    by_id: dict[str, Record] = {}
    good_end = 0
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                rec = Record.model_validate_json(raw)
            except ValueError:
                log.warning("%s: skipping unreadable line at byte %d", path, good_end)
                good_end += len(raw)
                continue
            by_id[rec.sample_id] = rec
            good_end += len(raw)
    if repair and path.stat().st_size != good_end:
        with path.open("r+b") as fh:
            fh.truncate(good_end)
    return sorted(by_id.values(), key=lambda r: r.index)


@dataclass
class _Progress:
    advance: Callable[[int], None]
    finish: Callable[[], None] = lambda: None
    """Close the bar at what was done (a probe that failed or skipped samples ends full)."""


def _error_record(sample_id: str, index: int, message: str, attributes: Any = None) -> Record:
    return Record(
        sample_id=sample_id, index=index, attributes=dict(attributes or {}), error=message
    )


class _BatchLimit:
    """The largest batch that fits on the accelerator, lowered on each out-of-memory error."""

    def __init__(self) -> None:
        self.size: int | None = None
        self.first: int | None = None
        self.halvings = 0

    def halve(self, failed: int) -> None:
        """A batch of ``failed`` samples ran out of memory: allow half of it from now on."""
        import sys

        half = max(1, failed // 2)
        self.size = half if self.size is None else min(self.size, half)
        self.first = failed if self.first is None else self.first
        self.halvings += 1
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()

    def note(self) -> str | None:
        """The results note of the back-off, or None when none happened."""
        if self.first is None:
            return None
        return (
            f"accelerator out of memory at a batch of {self.first} samples: halved to "
            f"{self.size} and retried ({self.halvings} halvings); the records are unchanged"
        )


def _evaluate_batch(
    model: Any,
    probe: Probe,
    batch: list[tuple[int, Sample]],
    ctx: ProbeContext,
    limit: _BatchLimit | None = None,
) -> list[Record]:
    from vlmtrust.runner.compute import is_oom

    if limit is not None and limit.size is not None and len(batch) > limit.size:
        step = limit.size
        out: list[Record] = []
        for i in range(0, len(batch), step):
            out.extend(_evaluate_batch(model, probe, batch[i : i + step], ctx, limit))
        return out
    samples = [s for _, s in batch]
    try:
        records = probe.evaluate(model, samples, ctx)
        if len(records) != len(samples):
            raise RuntimeError(
                f"probe {probe.name} returned {len(records)} records for {len(samples)} samples"
            )
    except (KeyboardInterrupt, CapabilityError):
        raise
    except Exception as e:
        if limit is not None and len(batch) > 1 and is_oom(e):
            log.warning("probe %s: out of memory at batch %d, halving", probe.name, len(batch))
            limit.halve(len(batch))
            return _evaluate_batch(model, probe, batch, ctx, limit)
        if len(batch) > 1:
            # Isolate the bad sample(s): retry one by one.
            out = []
            for item in batch:
                out.extend(_evaluate_batch(model, probe, [item], ctx, limit))
            return out
        idx, s = batch[0]
        log.debug("sample %s failed", s.id, exc_info=True)
        return [_error_record(s.id, idx, one_line(e), s.attributes)]
    by_id = {s.id: i for i, s in batch}
    fixed = []
    for rec in records:
        if rec.sample_id not in by_id:
            raise RuntimeError(f"probe {probe.name} returned a record for unknown {rec.sample_id}")
        fixed.append(rec.model_copy(update={"index": by_id[rec.sample_id]}))
    return fixed


def _prepare(sample: Sample) -> Sample:
    """Decode and validate every image once (the safe loader raises one-line errors)."""
    if all(ref.image is not None for ref in sample.images):
        return sample
    return sample.with_images(tuple(ref.loaded() for ref in sample.images))


def prepare_or_error(index: int, sample: Sample) -> tuple[int, Sample] | Record:
    """``(index, sample decoded)``, or the error record of an image that does not load."""
    try:
        return index, _prepare(sample)
    except InputError as e:
        return _error_record(sample.id, index, one_line(e), sample.attributes)


@dataclass
class Pending:
    """A probe's samples still to evaluate in this run, and what walking them collects.

    ``done`` holds the records already computed (``--resume``): those samples are skipped;
    ``seen`` collects every id the stream yields (resume keeps only records still in it);
    ``thumbs`` keeps the report preview of each sample from its one decode.
    """

    probe: Probe
    ctx: ProbeContext
    done: dict[str, Record]
    batch_size: int
    seen: set[str] = field(default_factory=set)
    thumbs: Thumbnails = field(default_factory=Thumbnails)

    def items(self) -> Iterator[tuple[int, Sample] | Record]:
        """``(index, sample)`` of each pending sample, and error records, in stream order.

        A data loader's error marker and a duplicate id become error records; a sample in
        ``done`` is left out (its preview is remembered, decoded only if shown).
        """
        seen, done = self.seen, self.done
        for index, item in enumerate(self.probe.samples(self.ctx)):
            if not isinstance(item, Sample):
                # A data loader's error marker (bad manifest line, unreadable entry).
                sid = str(getattr(item, "id", f"#{index}"))
                seen.add(sid)
                if sid not in done:
                    yield _error_record(sid, index, one_line(str(getattr(item, "message", item))))
                continue
            if item.id in seen:
                yield _error_record(
                    f"{item.id}#dup{index}", index, f"duplicate sample id {item.id!r}"
                )
                continue
            seen.add(item.id)
            if item.id in done:
                self.thumbs.skip(item)
                continue
            yield index, item


_T = TypeVar("_T")


def group(items: Iterable[Record | _T], size: int) -> Iterator[tuple[list[Record], list[_T]]]:
    """``(error records, batch)`` pairs: each batch holds ``size`` items, the last what is left.

    Error records go with the batch they came before (in stream order); the last pair may
    hold errors only.
    """
    batch: list[_T] = []
    errors: list[Record] = []
    for it in items:
        if isinstance(it, Record):
            errors.append(it)
            continue
        batch.append(it)
        if len(batch) >= size:
            yield errors, batch
            batch, errors = [], []
    if batch or errors:
        yield errors, batch


def _batches(pending: Pending) -> Iterator[tuple[list[Record], list[tuple[int, Sample]]]]:
    """Group the probe's pending samples into decoded batches (plus error records).

    Image files are decoded in the child process of :mod:`vlmtrust.runner.decoder` (when
    :func:`~vlmtrust.runner.decoder.enabled`), :data:`DECODE_AHEAD` batches ahead of the one
    the model computes; the batches, records and previews are the same either way.
    """
    from vlmtrust.runner import decoder

    def here(it: tuple[int, Sample]) -> tuple[int, Sample] | Record:
        out = prepare_or_error(*it)
        if not isinstance(out, Record):
            pending.thumbs.keep(it[1], out[1])
        return out

    def decoded() -> Iterator[tuple[int, Sample] | Record]:
        for it in pending.items():
            yield it if isinstance(it, Record) else here(it)

    items = _decoded_ahead(pending, here) if decoder.enabled() else decoded()
    return group(items, pending.batch_size)


DECODE_AHEAD = 3
"""Batches of image files the decoder process works on ahead of the model."""


def _files(sample: Sample) -> list[ImageRef]:
    """The sample's images still to decode from a file."""
    return [r for r in sample.images if r.image is None and r.path is not None]


def _job(ref: ImageRef) -> tuple[str, int, float]:
    """What the decoder process needs to load ``ref`` as :meth:`ImageRef.load` would."""
    limits = ref.limits or DataLimits()
    return str(ref.path), limits.max_image_pixels, limits.max_aspect_ratio


def _decoded_ahead(
    pending: Pending, here: Callable[[tuple[int, Sample]], tuple[int, Sample] | Record]
) -> Iterator[tuple[int, Sample] | Record]:
    """``pending.items()`` decoded as :func:`prepare_or_error` would, by the decoder process.

    Chunks of one batch's worth of items go to the process :data:`DECODE_AHEAD` chunks before
    they are needed; a chunk sent while the process is still starting, or lost with it, is
    decoded in-process by ``here``.
    """
    from collections import deque

    from vlmtrust.runner import decoder

    dec: decoder.Decoder | None = None
    window: deque[tuple[list[tuple[int, Sample] | Record], int | None]] = deque()

    def finish(
        chunk: list[tuple[int, Sample] | Record], ticket: int | None
    ) -> Iterator[tuple[int, Sample] | Record]:
        got: Iterator[Any] | None = None
        if ticket is not None and dec is not None:
            try:
                got = iter(dec.result(ticket))
            except OSError:
                got = None
        for it in chunk:
            if isinstance(it, Record) or got is None or not _files(it[1]):
                yield it if isinstance(it, Record) else here(it)
                continue
            index, sample = it
            refs, error = [], None
            for ref in sample.images:
                if ref.image is not None or ref.path is None:
                    refs.append(ref)
                    continue
                image = next(got)
                if isinstance(image, InputError):
                    error = error or image
                    continue
                refs.append(replace(ref, image=image, label=ref.label or ref.path))
            if error is not None:
                yield _error_record(sample.id, index, one_line(error), sample.attributes)
                continue
            out = sample.with_images(tuple(refs))
            pending.thumbs.keep(sample, out)
            yield index, out

    chunk: list[tuple[int, Sample] | Record] = []
    for it in itertools.chain(pending.items(), [None]):
        if it is not None:
            chunk.append(it)
            if len(chunk) < pending.batch_size:
                continue
        if not chunk:
            break
        jobs = [_job(r) for x in chunk if not isinstance(x, Record) for r in _files(x[1])]
        ticket = None
        if jobs:
            dec = dec or decoder.shared()
            if dec is not None and dec.usable:
                try:
                    ticket = dec.submit(jobs)
                except OSError:
                    ticket = None
        window.append((chunk, ticket))
        chunk = []
        while len(window) > DECODE_AHEAD:
            yield from finish(*window.popleft())
    while window:
        yield from finish(*window.popleft())


_DONE = object()


PREFETCH_LOCAL = False
"""Whether batches for an in-process model are also produced in a background thread.

Off: the thread's decoding and SynthWorld rendering hold the GIL against the model's own
Python preprocessing, so on a 2-core machine the runner was slower with it than without
(reference:clip and the ViT-B/32-size model alike); image files are overlapped with the model
by the decoder process instead (:mod:`vlmtrust.runner.decoder`). Remote models
(``batches_in_flight`` > 1) wait on the network, so they always get the thread.
"""


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Produce ``items`` in a background thread, ``depth`` ahead of the consumer.

    Sample generation and image decoding then overlap the model's forward passes (torch and
    PIL release the GIL part of the time); used for remote models and with
    :data:`PREFETCH_LOCAL`.
    """
    import queue
    import threading

    q: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(x: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for it in items:
                if not put(it):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer, raised there
            put(e)

    t = threading.Thread(target=work, name="vlmtrust-prefetch", daemon=True)
    t.start()
    try:
        while True:
            it = q.get()
            if it is _DONE:
                return
            if isinstance(it, BaseException):
                raise it
            yield it
    finally:
        stop.set()
        t.join(timeout=5)
        if t.is_alive():
            log.warning("prefetch thread still busy after the consumer stopped")


def _stream(
    model: Any, pending: Pending, limit: _BatchLimit | None = None
) -> Iterator[list[Record]]:
    """Evaluate the ``pending`` samples, yielding records batch by batch.

    For a model that declares ``batches_in_flight`` > 1 (remote endpoints) and a probe with
    ``parallel_batches``, several batches run at once (:mod:`vlmtrust.runner.pipeline`); the
    records still come out in sample order, batch by batch.
    """
    probe, ctx = pending.probe, pending.ctx
    depth = batches_in_flight(model, probe)
    items = _batches(pending)
    if depth > 1 or PREFETCH_LOCAL:
        items = _prefetch(items)
    if depth <= 1:
        for errors, batch in items:
            yield errors + (_evaluate_batch(model, probe, batch, ctx, limit) if batch else [])
        return
    from vlmtrust.runner.pipeline import pipelined

    def work(batch: list[tuple[int, Sample]]) -> list[Record]:
        return _evaluate_batch(model, probe, batch, ctx, limit)

    jobs = ((errors, batch or None) for errors, batch in items)
    for errors, recs in pipelined(jobs, work, depth):
        yield errors + recs


def render_size(model: Any) -> int | None:
    """The side at which probes render SynthWorld for ``model``: a dual encoder's square input.

    None (SynthWorld's default) for generative models, which pick their own resolution, and
    for a dual encoder that declares no square ``input_size``.
    """
    if getattr(model, "kind", None) != "dual":
        return None
    try:
        size = model.input_size
    except Exception:  # a model without one: the default size
        return None
    if (
        isinstance(size, tuple)
        and len(size) == 2
        and all(isinstance(v, int) and v > 0 for v in size)
        and size[0] == size[1]
    ):
        return int(size[0])
    return None


def batches_in_flight(model: Any, probe: Probe) -> int:
    """How many of ``probe``'s batches the runner evaluates at once on ``model`` (>= 1)."""
    if not getattr(probe, "parallel_batches", False):
        return 1
    n = getattr(model, "batches_in_flight", 1)
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def evaluate_probe(
    model: Any,
    probe: Probe,
    ctx: ProbeContext | None = None,
    *,
    done: Sequence[Record] = (),
    writer: RecordWriter | None = None,
    batch_size: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    executor: Any = None,
) -> ProbeResult:
    """Run one probe on one model and summarise it.

    Args:
        model: a loaded model (possibly cache-wrapped).
        probe: a configured probe.
        ctx: shared settings (seed, data, limit).
        done: records already computed (``--resume``): their samples are skipped.
        writer: where new records are appended as they complete.
        batch_size: override the probe's batch size.
        on_progress: called with the number of samples finished after each batch.
        executor: where the batches run (:class:`vlmtrust.runner.executor.RayExecutor`);
            None runs them in this process.

    A batch that runs out of accelerator memory is halved and retried (down to one sample,
    then it is an error record); later batches start at the size that fitted, and the
    result's notes say so.

    Returns:
        The probe's :class:`ProbeResult`; ``requests`` holds the request statistics of a model
        with ``track_requests()`` (remote endpoints) over this probe, else None (also under an
        ``executor``, whose workers make the requests).

    SynthWorld scenes are rendered at the model's own input resolution
    (:func:`render_size`) unless ``ctx.image_size`` is set.

    Model loading for probes: unless the caller set one, ``ctx.extras["load_model"]`` is the
    runner's loader (:func:`vlmtrust.models.loader.load_model`, spec → model), for probes whose
    parameters name a second model (e.g. the red-team attacker), so that they need not load
    models themselves.
    """
    ctx = with_data(ctx or ProbeContext())
    if ctx.image_size is None:
        ctx = replace(ctx, image_size=render_size(model))
    if "load_model" not in ctx.extras:
        from vlmtrust.models.loader import load_model

        ctx = replace(ctx, extras={**ctx.extras, "load_model": load_model})
    why = probe.unsupported(model)
    if why is not None:
        raise CapabilityError(why)
    t0 = time.perf_counter()
    by_id = {r.sample_id: r for r in done if r.ok}
    pending = Pending(probe, ctx, by_id, batch_size or probe.batch_size)
    limit = _BatchLimit()
    records: list[Record] = []
    # Under another executor the requests are made by its workers, not by this model object.
    track = getattr(model, "track_requests", None) if executor is None else None
    with track() if callable(track) else contextlib.nullcontext() as tracker:
        if executor is None:
            batches = _stream(model, pending, limit)
        else:
            batches = executor.stream(model, pending)
        for recs in batches:
            recs = [
                r if r.ok else r.model_copy(update={"error": redact_text(r.error or "")})
                for r in recs
            ]
            if writer is not None:
                writer.write(recs)
            records.extend(recs)
            if on_progress is not None:
                on_progress(len(recs))
    summary = getattr(tracker, "summary", None)
    requests = summary() if callable(summary) else None
    if not isinstance(requests, RequestStats):
        requests = None
    # Earlier records count only if the current sample stream still contains them.
    records.extend(r for sid, r in by_id.items() if sid in pending.seen)
    records.sort(key=lambda r: r.index)
    ok = [r for r in records if r.ok]
    errors = [r for r in records if not r.ok]
    notes: list[str] = [n for n in (limit.note(),) if n is not None]
    metrics, plots, examples = [], [], []
    try:
        metrics = probe.aggregate(ok, ctx)
        plots = probe.plots(ok, ctx)
        examples = probe.examples(ok, ctx)
        notes.extend(probe.notes(ok, ctx))
        pending.thumbs.fill(examples)
    except Exception as e:  # a summary failure must not lose the other probes' results
        log.exception("probe %s: summarising failed", probe.name)
        notes.append(f"{SUMMARY_FAILED}{one_line(e)}")
    return _result(
        probe,
        metrics=metrics,
        plots=plots,
        examples=examples,
        n_samples=len(records),
        n_errors=len(errors),
        errors=[ErrorSummary(sample_id=r.sample_id, message=r.error or "") for r in errors][
            :MAX_ERRORS_KEPT
        ],
        seconds=time.perf_counter() - t0,
        notes=notes,
        requests=requests,
    )


def _git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and len(sha) == 40 else None


def make_spec(model: Any, probes: Sequence[Probe], ctx: ProbeContext, label: str = "") -> RunSpec:
    """The run's :class:`RunSpec`.

    Credentials in the model's spec or fingerprint, the params or the data spec are redacted
    (:mod:`vlmtrust.core.redact`).
    """
    from vlmtrust import __version__

    return RunSpec(
        model=ModelInfo(
            spec=redact_text(model.spec),
            fingerprint=redact_text(model.fingerprint),
            kind=model.kind,
            capabilities=model.capabilities.names(),
            options=_options(model),
        ),
        probes=[
            ProbeSpec(
                name=p.name, version=p.version, params=redact_data(p.params.model_dump(mode="json"))
            )
            for p in probes
        ],
        seed=ctx.seed,
        data=None if ctx.data is None else redact_text(ctx.data),
        limit=ctx.limit,
        vlmtrust_version=__version__,
        git_sha=_git_sha(),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        label=label,
    )


def _options(model: Any) -> dict[str, Any]:
    """The backend settings a model reports (``options``; never a key), JSON-ready.

    A local torch model also reports its ``device`` and ``dtype``, and ``threads`` (torch's
    CPU threads, :mod:`vlmtrust.runner.compute`) is added whenever torch is in use.
    """
    from vlmtrust.runner.compute import threads_in_use

    opts = getattr(model, "options", None)
    out: dict[str, Any] = {}
    if isinstance(opts, dict):
        out = {str(k): v for k, v in opts.items() if v is None or isinstance(v, str | int | float)}
    for key in ("device", "dtype"):
        value = getattr(model, key, None)
        if key not in out and value is not None and type(value).__module__.startswith("torch"):
            out[key] = str(value).removeprefix("torch.")
    threads = threads_in_use()
    if threads is not None and "threads" not in out:
        out["threads"] = threads
    return out


def _same_spec(a: RunSpec, b: RunSpec) -> bool:
    return (
        a.model.fingerprint == b.model.fingerprint
        and a.seed == b.seed
        and a.data == b.data
        and a.limit == b.limit
        and [p.model_dump() for p in a.probes] == [p.model_dump() for p in b.probes]
    )


def run_audit(
    model: Any,
    probes: Sequence[Probe],
    *,
    out_dir: Path,
    ctx: ProbeContext | None = None,
    resume: bool = False,
    cache: Cache | None = None,
    progress: bool = False,
    label: str = "",
    overwrite: bool = False,
    executor: Any = None,
) -> AuditLog:
    """Run probes on one model, writing a run directory (see the module docstring).

    ``executor`` runs the batches elsewhere (:mod:`vlmtrust.runner.executor`; None: here).

    With ``resume``, samples already in ``samples/*.jsonl`` are not recomputed (error records
    are retried) and the results equal those of an uninterrupted run. A folder that already
    holds a run is refused unless ``resume`` or ``overwrite`` (clear it first) is given
    (:func:`vlmtrust.runner.outdir.prepare_out_dir`).
    """
    ctx = with_data(ctx or ProbeContext())
    out_dir = Path(out_dir)
    prepare_out_dir(out_dir, resume=resume, overwrite=overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = make_spec(model, probes, ctx, label)
    spec_path = out_dir / "spec.json"
    if resume and spec_path.exists():
        old = RunSpec.model_validate_json(spec_path.read_text())
        if not _same_spec(old, spec):
            raise InputError(
                f"{out_dir}: --resume needs the same model, probes, params and seed as the "
                "interrupted run (and the same --data and --limit); use a new --out folder or drop "
                "--resume"
            )
        spec = old
    elif not resume:
        for p in probes:
            samples_file(out_dir, p.name).unlink(missing_ok=True)
    spec_path.write_text(spec.model_dump_json(indent=2) + "\n")
    ctx.work_dir = out_dir
    target = with_cache(model, cache)
    t0 = time.perf_counter()
    results: list[ProbeResult] = []
    with _progress_bar(progress) as bar:
        for p in probes:
            path = samples_file(out_dir, p.name)
            done = read_records(path, repair=True) if resume else []
            writer = RecordWriter(path)
            total = _estimate(p, ctx)
            task = bar(f"{spec.model.spec} · {p.name}", total)
            t_probe = time.perf_counter()
            try:
                task.advance(len([r for r in done if r.ok]))
                results.append(
                    evaluate_probe(
                        target,
                        p,
                        ctx,
                        done=done,
                        writer=writer,
                        on_progress=task.advance,
                        executor=executor,
                    )
                )
            except VlmtrustError as e:
                # A probe that cannot run here (missing data, capability) is reported, and the
                # other probes still run.
                log.warning("probe %s: %s", p.name, one_line(e))
                results.append(_failed_result(p, one_line(e), time.perf_counter() - t_probe))
            finally:
                writer.close()
                task.finish()
            audit = AuditLog(spec=spec, results=results, seconds=time.perf_counter() - t0)
            _atomic_write(out_dir / "results.json", audit.model_dump_json(indent=2) + "\n")
    if not probes:
        audit = AuditLog(spec=spec, results=[], seconds=time.perf_counter() - t0)
        _atomic_write(out_dir / "results.json", audit.model_dump_json(indent=2) + "\n")
    return audit


def _failed_result(probe: Probe, message: str, seconds: float) -> ProbeResult:
    return _result(probe, seconds=seconds, notes=[f"{DID_NOT_RUN}{message}"])


def _result(probe: Probe, **fields: Any) -> ProbeResult:
    """A :class:`ProbeResult` naming ``probe`` (name, pillar, version, params) with ``fields``."""
    return ProbeResult(
        probe=probe.name,
        pillar=probe.pillar,
        version=probe.version,
        description=probe.description,
        params=redact_data(probe.params.model_dump(mode="json")),
        **fields,
    )


def _estimate(probe: Probe, ctx: ProbeContext) -> int | None:
    fn = getattr(probe, "n_samples", None)
    if fn is None:
        return None
    try:
        n = fn(ctx)
    except Exception:  # an estimate is only for the progress bar
        return None
    return int(n) if n is not None else None


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Callable[[str, int | None], _Progress]]:
    if not enabled:
        yield lambda name, total: _Progress(advance=lambda n: None)
        return
    from vlmtrust.core.progress import new_progress

    with new_progress(rate=True) as prog:

        def make(name: str, total: int | None) -> _Progress:
            tid = prog.add_task(name, total=total)

            def finish() -> None:
                done = prog.tasks[prog.task_ids.index(tid)].completed
                prog.update(tid, total=max(done, 1), completed=max(done, 1))

            return _Progress(advance=lambda n: prog.advance(tid, n), finish=finish)

        yield make


def write_index(parent: Path, runs: Sequence[str]) -> None:
    """Write ``index.json`` for a multi-model audit (one sub-run per model)."""
    parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(parent / "index.json", json.dumps({"runs": list(runs)}, indent=2) + "\n")
