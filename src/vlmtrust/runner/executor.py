"""Where a probe's batches run: in this process (``local``) or on Ray actors (``ray``).

The local executor is :func:`vlmtrust.runner.engine._stream`. :class:`RayExecutor` streams
the same records from a pool of Ray actors:

* Each actor loads the model once, from its spec (the driver's model fingerprint must match,
  else the run stops), and keeps it for every probe of the run.
* The driver walks the probe's sample stream (ids, duplicates, data-error markers, resume)
  exactly as the local runner does and forms the same batches of sample *indices*; one batch
  is one task. An actor rebuilds the probe from its name and parameters, walks the same
  seeded stream, decodes and evaluates only the indices it is given, and returns the records
  as JSON lines. Only names, numbers and JSON cross the process boundary.
* Records come back in sample order, batch by batch, to the run directory's writer, so
  ``--resume`` works across executors and results equal the local executor's.
* An actor that dies (a task fails with ``RayActorError``) has its unfinished batches sent to
  another actor, and a replacement is started (at most as many as there are workers). A
  batch's records are written only once its task returned, so nothing is counted twice.
* Each actor opens the run's cache file itself (SQLite in WAL mode, safe for several
  processes); on a multi-node cluster that path is on each node's own disk. Cache keys are the
  model fingerprint plus the input hash, so a hit returns what the same weights computed.

:func:`connect` joins a cluster at ``address`` (checked first: a Ray head answers gRPC there
within ``connect_timeout_s``, or the run stops with one line) or starts a local one on
this machine without a dashboard, asking Ray for loopback (see :func:`connect`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlmtrust.core.errors import InputError, VlmtrustError, one_line
from vlmtrust.core.probe import Probe, ProbeContext
from vlmtrust.core.results import Record
from vlmtrust.core.sample import Sample

if TYPE_CHECKING:
    from vlmtrust.runner.engine import Pending

log = logging.getLogger("vlmtrust")

EXECUTORS = ("local", "ray")
IN_FLIGHT_PER_WORKER = 2
"""Batches queued on each actor, so it never waits for the driver between two batches."""


def check_executor(name: str) -> str:
    """``name`` if it is a known executor, else an :class:`InputError` naming the choices."""
    if name not in EXECUTORS:
        raise InputError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    return name


@dataclass(frozen=True)
class RayOptions:
    """How the Ray executor reaches its cluster and sizes its actor pool.

    Attributes:
        address: an existing cluster (``HOST:PORT`` of its head, ``ray://HOST:PORT`` for Ray
            Client, or ``auto``); ``None`` starts a local cluster on this machine.
        workers: actors per model (default: the cluster's CPUs // ``cpus_per_worker``, shared
            out among the models of an audit that run at once).
        num_cpus: CPUs a local cluster offers (default: every CPU of this machine).
        cpus_per_worker: CPUs each actor reserves; also its torch thread count.
        connect_timeout_s: how long ``address`` has to answer.
    """

    address: str | None = None
    workers: int | None = None
    num_cpus: int | None = None
    cpus_per_worker: int = 1
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("workers", "num_cpus", "cpus_per_worker"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise InputError(f"--ray-{name.replace('_', '-')} {v!r}: expected an integer >= 1")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(
            "--executor ray needs Ray, which is not installed: pip install 'vlmtrust[ray]' "
            "(or use --executor local)"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a head address; None for ``auto``."""
    if address == "auto":
        return None
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(
            f"--ray-address {address!r}: expected HOST:PORT (e.g. 10.0.0.5:6379), "
            "ray://HOST:PORT or auto"
        )
    return host.strip("[]"), int(port)


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_address(address: str, timeout_s: float) -> None:
    """Raise :class:`InputError` unless a gRPC server (a Ray head) answers at ``address``.

    The check opens a TCP connection and sends the HTTP/2 preface; a gRPC server answers with
    a SETTINGS frame. Anything else within ``timeout_s`` (refused, silent, not HTTP/2) is one
    line naming the address and the fix, instead of ``ray.init`` retrying for minutes.
    """
    hp = _host_port(address)
    if hp is None:
        return
    fix = "start one with `ray start --head` or drop --ray-address to run a local cluster"
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection(hp, timeout=timeout_s) as s:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            s.sendall(_H2_PREFACE)
            head = s.recv(9)
    except TimeoutError:
        raise InputError(
            f"--ray-address {address}: no Ray cluster answered within {timeout_s:g} s; {fix}"
        ) from None
    except OSError as e:
        raise InputError(
            f"--ray-address {address}: cannot reach a Ray cluster ({e.strerror or e}); {fix}"
        ) from None
    if len(head) < 9 or head[3] != 0x04:
        raise InputError(
            f"--ray-address {address}: the server there is not a Ray head (no gRPC answer); {fix}"
        )


def connect(options: RayOptions) -> Any:
    """The ``ray`` module, connected: to ``options.address``, or to a new local cluster.

    A process already connected (``ray.is_initialized()``) is kept as it is. A local cluster
    has no dashboard and is asked for the loopback address (``_node_ip_address=127.0.0.1``).
    Ray 2.60 replaces that with the machine's own address and its gRPC servers listen on every
    interface; what keeps other hosts out is Ray's token authentication, on by default there.
    The cluster lives until the process ends.
    """
    ray = _import_ray()
    if options.address is not None:
        check_address(options.address, options.connect_timeout_s)
    with _CONNECT:
        if not ray.is_initialized():
            _init(ray, options)
    return ray


_CONNECT = threading.Lock()


def _init(ray: Any, options: RayOptions) -> None:
    common = {"log_to_driver": False, "configure_logging": False}
    if options.address is not None:
        ray.init(address=options.address, **common)
    else:
        ray.init(
            num_cpus=options.num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            **common,
        )


# -- the actor -------------------------------------------------------------------------------


class _Worker:
    """One Ray actor: the model loaded once; evaluates batches of sample indices."""

    def __init__(self, job: Mapping[str, Any]) -> None:
        self._error: str | None = None
        self._streams: dict[str, tuple[Iterator[Any], int]] = {}
        self._probes: dict[str, tuple[Probe, ProbeContext]] = {}
        try:
            self._load(job)
        except Exception as e:  # reported by ready() and run(), not as an actor death
            self._error = f"Ray worker could not load {job['spec']}: {one_line(e)}"

    def _load(self, job: Mapping[str, Any]) -> None:
        from vlmtrust.models.loader import load_model
        from vlmtrust.runner.cache import Cache, with_cache
        from vlmtrust.runner.data import RunData

        threads = int(job["threads"])
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # a model without torch
            pass
        model = load_model(job["spec"], **dict(job["load"]))
        if model.fingerprint != job["fingerprint"]:
            raise InputError(
                f"model {job['spec']}: its spec loads different weights on a Ray worker "
                "(fingerprints differ); pass a spec every node loads alike, or use "
                "--executor local"
            )
        self._model = with_cache(model, Cache(job["cache"]) if job["cache"] else None)
        self._datasets = RunData()
        self._load_model = load_model

    def ready(self) -> int:
        """This actor's process id, once the model is loaded."""
        if self._error:
            raise InputError(self._error)
        return os.getpid()

    def _probe(self, task: Mapping[str, Any]) -> tuple[Probe, ProbeContext]:
        from vlmtrust.core.limits import DataLimits
        from vlmtrust.core.probe import get_probe

        key = task["key"]
        if key not in self._probes:
            probe = get_probe(task["probe"])(task["params"])
            limits = DataLimits(**task["data_limits"])
            if self._datasets.limits != limits:
                from vlmtrust.runner.data import RunData

                self._datasets = RunData(limits)
            ctx = ProbeContext(
                seed=task["seed"],
                data=task["data"],
                limit=task["limit"],
                work_dir=None if task["work_dir"] is None else _path(task["work_dir"]),
                data_limits=limits,
                datasets=self._datasets,
                extras={"load_model": self._load_model},
                image_size=task.get("image_size"),
            )
            self._probes[key] = (probe, ctx)
        return self._probes[key]

    def _samples(
        self, key: str, probe: Probe, ctx: ProbeContext, wanted: set[int]
    ) -> dict[int, Any]:
        """The stream's items at ``wanted`` positions (continuing the last walk if it can)."""
        it, pos = self._streams.get(key, (iter(()), -1))
        if not wanted or min(wanted) <= pos or key not in self._streams:
            it, pos = iter(probe.samples(ctx)), -1
        out: dict[int, Any] = {}
        last = max(wanted)
        while pos < last:
            try:
                item = next(it)
            except StopIteration:
                break
            pos += 1
            if pos in wanted:
                out[pos] = item
        self._streams[key] = (it, pos)
        return out

    def run(self, task: Mapping[str, Any]) -> list[str]:
        """Evaluate one batch of sample indices: the records (errors included) as JSON lines."""
        from vlmtrust.runner.engine import _evaluate_batch, group, prepare_or_error

        if self._error:
            raise InputError(self._error)
        probe, ctx = self._probe(task)
        indices = [int(i) for i in task["indices"]]
        items = self._samples(task["key"], probe, ctx, set(indices))
        prepared: list[tuple[int, Sample] | Record] = []
        for i in indices:
            item = items.get(i)
            if not isinstance(item, Sample):
                raise VlmtrustError(
                    f"probe {probe.name}: sample {i} differs on a Ray worker; its sample stream "
                    "must be the same for the same seed in every process"
                )
            prepared.append(prepare_or_error(i, item))
        recs: list[Record] = []
        for errors, batch in group(prepared, len(prepared)):  # one pair: the whole task
            recs += errors + (_evaluate_batch(self._model, probe, batch, ctx) if batch else [])
        recs.sort(key=lambda r: r.index)
        return [r.model_dump_json() for r in recs]


def _path(p: str) -> Any:
    from pathlib import Path

    return Path(p)


# -- the driver ------------------------------------------------------------------------------


def _plan(pending: Pending) -> Iterator[tuple[list[Record], list[int]]]:
    """The local runner's batching (:func:`vlmtrust.runner.engine._batches`) without decoding.

    Yields ``(error records, sample indices of one batch)``; ``pending.seen`` and
    ``pending.thumbs`` are filled as the local runner fills them.
    """
    from vlmtrust.runner.engine import group

    def index_of(it: tuple[int, Sample] | Record) -> int | Record:
        if isinstance(it, Record):
            return it
        index, item = it
        if item.images and all(ref.image is not None for ref in item.images):
            pending.thumbs.keep(item, item)
        else:
            pending.thumbs.skip(item)
        return index

    return group(map(index_of, pending.items()), pending.batch_size)


@dataclass(eq=False)
class _Slot:
    actor: Any
    ready: Any  # the ObjectRef of ready(), until it resolved
    pid: int | None = None
    busy: int = 0


@dataclass
class _Shard:
    n: int
    errors: list[Record]
    indices: list[int]
    tries: int = 0


@dataclass
class RayExecutor:
    """Runs a model's probes on a pool of Ray actors (see the module docstring).

    Args:
        spec: the model spec each actor loads.
        fingerprint: the driver's model fingerprint; an actor loading other weights stops the
            run.
        load_kwargs: backend options for :func:`vlmtrust.models.loader.load_model` (JSON-able).
        cache_path: the cache file each actor opens, or None for no cache.
        options: the cluster and the pool size.
        share: how many models of an audit run at once (the default pool size is divided).

    Use it as a context manager (or call :meth:`close`): the actors are killed at the end.
    """

    spec: str
    fingerprint: str
    load_kwargs: Mapping[str, Any] = field(default_factory=dict)
    cache_path: str | None = None
    options: RayOptions = field(default_factory=RayOptions)
    share: int = 1
    retried: list[int] = field(default_factory=list)
    """First sample index of every batch that was re-sent after its actor died."""
    _slots: list[_Slot] = field(default_factory=list)
    _replacements: int = 0
    _ray: Any = None
    _calls: int = 0

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill this executor's actors (the cluster itself stays up)."""
        for s in self._slots:
            try:
                self._ray.kill(s.actor)
            except Exception:  # already dead
                log.debug("ray: actor already gone", exc_info=True)
        self._slots.clear()

    def _size(self) -> int:
        if self.options.workers:
            return self.options.workers
        cpus = int(self._ray.cluster_resources().get("CPU", 1))
        return max(1, cpus // self.options.cpus_per_worker // max(1, self.share))

    def _start_actor(self) -> _Slot:
        job = {
            "spec": self.spec,
            "load": dict(self.load_kwargs),
            "fingerprint": self.fingerprint,
            "cache": self.cache_path,
            "threads": self.options.cpus_per_worker,
        }
        cls = self._ray.remote(_Worker).options(
            num_cpus=self.options.cpus_per_worker, max_restarts=0, max_concurrency=1
        )
        actor = cls.remote(job)
        return _Slot(actor=actor, ready=actor.ready.remote())

    def start(self) -> None:
        """Connect and start the actor pool (called by the first :meth:`stream`)."""
        if self._slots:
            return
        self._ray = connect(self.options)
        self._slots = [self._start_actor() for _ in range(self._size())]

    def pids(self) -> list[int]:
        """Process ids of the actors whose model is loaded."""
        return [s.pid for s in self._slots if s.pid is not None]

    def stream(self, model: Any, pending: Pending) -> Iterator[list[Record]]:
        """Records of the ``pending`` samples, batch by batch in sample order.

        The contract of :func:`vlmtrust.runner.engine._stream`; ``model`` is the driver's
        copy, used only for its identity (the actors load their own).
        """
        self.start()
        ray = self._ray
        probe, ctx = pending.probe, pending.ctx
        self._calls += 1
        base = {
            "key": f"{self._calls}:{probe.name}",
            "probe": probe.name,
            "params": probe.params.model_dump(mode="json"),
            "seed": ctx.seed,
            "data": ctx.data,
            "limit": ctx.limit,
            "work_dir": None if ctx.work_dir is None else str(ctx.work_dir),
            "data_limits": dataclasses.asdict(ctx.data_limits),
            "image_size": ctx.image_size,  # workers render SynthWorld as the driver does
        }
        plan = enumerate(_plan(pending))
        planned_all = False
        queue: deque[_Shard] = deque()  # re-sent shards go first
        finished: dict[int, list[Record]] = {}
        in_flight: dict[Any, tuple[_Slot, _Shard]] = {}
        next_out = 0

        def next_shard() -> _Shard | None:
            nonlocal planned_all
            if queue:
                return queue.popleft()
            while not planned_all:
                try:
                    n, (errors, indices) = next(plan)
                except StopIteration:
                    planned_all = True
                    return None
                if indices:
                    return _Shard(n, errors, indices)
                finished[n] = errors
            return None

        while True:
            for slot in self._slots:
                while slot.pid is not None and slot.busy < IN_FLIGHT_PER_WORKER:
                    shard = next_shard()
                    if shard is None:
                        break
                    ref = slot.actor.run.remote({**base, "indices": shard.indices})
                    in_flight[ref] = (slot, shard)
                    slot.busy += 1
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
            if not in_flight and planned_all and not queue:
                break
            waiting = [s.ready for s in self._slots if s.pid is None] + list(in_flight)
            if not waiting:
                raise VlmtrustError(
                    f"every Ray worker for {self.spec} died; see the cluster's logs "
                    "(`ray logs`), or use --executor local"
                )
            ready, _ = ray.wait(waiting, num_returns=1)
            for ref in ready:
                if ref in in_flight:
                    slot, shard = in_flight.pop(ref)
                    slot.busy -= 1
                    try:
                        lines = ray.get(ref)
                    except ray.exceptions.RayActorError as e:
                        self._lost(slot, shard, queue, e)
                        continue
                    except ray.exceptions.RayTaskError as e:
                        raise _cause(e) from None
                    finished[shard.n] = shard.errors + [
                        Record.model_validate_json(line) for line in lines
                    ]
                else:
                    slot = next(s for s in self._slots if s.ready == ref)
                    try:
                        slot.pid = int(ray.get(ref))
                    except ray.exceptions.RayActorError as e:
                        self._lost(slot, None, queue, e)
                    except ray.exceptions.RayTaskError as e:
                        raise _cause(e) from None

    def _lost(self, slot: _Slot, shard: _Shard | None, queue: deque[_Shard], e: Any) -> None:
        """An actor died: re-send ``shard`` to another actor and replace the dead one once."""
        if slot in self._slots:
            self._slots.remove(slot)
            if self._replacements < max(1, self._size()):
                self._replacements += 1
                self._slots.append(self._start_actor())
        if shard is None:
            return
        shard.tries += 1
        if shard.tries > max(1, self._size()) + 1:
            raise VlmtrustError(
                f"samples {shard.indices[0]}–{shard.indices[-1]} killed {shard.tries} Ray "
                f"workers in a row ({one_line(str(e))[:200]}); run them with --executor local "
                "to see why"
            )
        self.retried.append(shard.indices[0])
        log.warning(
            "a Ray worker died while on samples %d–%d; they run again on another worker",
            shard.indices[0],
            shard.indices[-1],
        )
        queue.appendleft(shard)


def _cause(e: Any) -> BaseException:
    """The worker's own exception behind a ``RayTaskError`` (a one-line error if not ours)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, VlmtrustError):
        return cause
    return VlmtrustError(f"a Ray worker failed: {one_line(cause if cause else str(e))}")
