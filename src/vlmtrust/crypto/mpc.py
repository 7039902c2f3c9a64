"""Three-party secure zero-shot top-1 with MPyC (Shamir secret sharing, fixed point).

:func:`secure_top1` starts three MPyC parties as separate processes on 127.0.0.1:

* party 0 — the client: secret-shares the query embedding, learns only the argmax (and the
  scores, with ``reveal_scores=True``);
* party 1 — the model owner: secret-shares the class-prompt (or gallery) matrix;
* party 2 — a helper with no input.

The parties compute the dot products on secret-shared fixed-point numbers
(``SecFxp(bit_length, frac_bits)``) and a secure argmax; with threshold ``t = 1`` no single
party learns either input (semi-honest model). Each party's process exits, and a party that
does not connect or finish within ``timeout`` seconds stops the run with one
:class:`~vlmtrust.crypto.CryptoError` line.

With ``capture=True`` every connection runs through a logging TCP proxy, and
:attr:`MPCResult.received` holds the bytes each party received; :func:`clear_occurrences`
searches such a transcript for an input in the clear (its fixed-point field encoding, as
MPyC puts field elements on the wire, or its float32/float64 bytes).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlmtrust.crypto import CryptoError

N_PARTIES = 3


def _check_mpyc() -> None:
    # find_spec, not import: importing mpyc configures logging in this process.
    import importlib.util

    if importlib.util.find_spec("mpyc") is None:
        raise CryptoError(
            "secure multi-party computation needs MPyC: pip install 'vlmtrust[crypto]'"
        )


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class MPCResult:
    """Outcome of one secure query.

    Attributes:
        top1: argmax row per query, learned by party 0.
        scores: ``(n_queries, n_rows)`` scores opened to party 0 (``reveal_scores=True``),
            else ``None``.
        wall_s: seconds from starting the processes to the last result (connection set-up
            and interpreter start included).
        compute_s: seconds party 0 spent from inputs to the last output (connections
            already open), all queries together.
        bytes_sent: bytes each party sent (MPyC's own message counts, headers included).
        received: with ``capture``: bytes each party received, per party id.
        field_params: modulus and byte length of the fixed-point field.
        frac_bits: fractional bits of the fixed-point encoding.
    """

    top1: list[int]
    scores: NDArray[np.float64] | None
    wall_s: float
    compute_s: float
    bytes_sent: dict[int, int]
    frac_bits: int
    field_params: dict[str, Any]
    received: dict[int, bytes] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """Bytes exchanged by all parties together."""
        return sum(self.bytes_sent.values())

    @property
    def n_queries(self) -> int:
        """Number of queries answered."""
        return len(self.top1)


class _Proxy:
    """Forwards TCP connections and records the bytes each party receives."""

    def __init__(self, routes: dict[int, tuple[int, int, int]]) -> None:
        # listen port -> (src party, dst party, dst real port)
        self.routes = routes
        self.received: dict[int, bytearray] = {p: bytearray() for p in range(N_PARTIES)}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> _Proxy:
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise CryptoError(f"transcript proxy did not start: {self._error}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as e:  # reported by __enter__
            self._error = e
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        servers = []
        for port, (src, dst, real) in self.routes.items():

            async def handle(
                r: asyncio.StreamReader,
                w: asyncio.StreamWriter,
                src: int = src,
                dst: int = dst,
                real: int = real,
            ) -> None:
                await self._bridge(r, w, src, dst, real)

            servers.append(await asyncio.start_server(handle, "127.0.0.1", port))
        self._ready.set()
        await self._stop.wait()
        for s in servers:
            s.close()

    async def _bridge(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, src: int, dst: int, real: int
    ) -> None:
        deadline = time.monotonic() + 30
        while True:  # the destination may not listen yet
            try:
                ur, uw = await asyncio.open_connection("127.0.0.1", real)
                break
            except OSError:
                if time.monotonic() > deadline:
                    w.close()
                    return
                await asyncio.sleep(0.05)

        async def pump(a: asyncio.StreamReader, b: asyncio.StreamWriter, to: int) -> None:
            try:
                while data := await a.read(65536):
                    self.received[to].extend(data)
                    b.write(data)
                    await b.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                b.close()

        await asyncio.gather(pump(r, uw, dst), pump(ur, w, src))


def secure_top1(
    query: Any,
    rows: Any,
    *,
    frac_bits: int = 16,
    bit_length: int = 32,
    reveal_scores: bool = False,
    timeout: float = 60.0,
    capture: bool = False,
    absent: Sequence[int] = (),
) -> MPCResult:
    """Argmax of ``rows @ q`` for each query ``q``, computed by three MPyC parties on shares.

    Args:
        query: ``(d,)`` embedding or ``(m, d)`` embeddings, party 0's private input; one
            session answers them all (the processes and connections are set up once).
        rows: ``(n, d)`` class-prompt or gallery embeddings, party 1's private input.
        frac_bits: fractional bits of the fixed-point numbers (resolution ``2**-frac_bits``).
        bit_length: total bits of a fixed-point number (range ``±2**(bit_length-frac_bits-1)``).
        reveal_scores: also open the scores to party 0 (for checks; the argmax alone is
            the protocol's output).
        timeout: seconds for the parties to connect and finish; a party that does not
            answer in time stops the run with :class:`CryptoError`.
        capture: route connections through a logging proxy and return what each party
            received.
        absent: parties not to start (to exercise the time-out).

    Raises:
        CryptoError: wrong shapes or dimensions, or a party failed or did not answer.
    """
    _check_mpyc()
    q = np.asarray(query, dtype=np.float64)
    w = np.asarray(rows, dtype=np.float64)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.size == 0:
        raise CryptoError(f"query embeddings have shape {q.shape}: pass (d,) or (m, d)")
    if w.ndim != 2 or w.shape[0] == 0:
        raise CryptoError(f"rows have shape {w.shape}: pass an (n, d) matrix")
    if w.shape[1] != q.shape[1]:
        raise CryptoError(
            f"query embedding has dimension {q.shape[1]} but the rows have {w.shape[1]}: "
            "use embeddings of the same model on both sides"
        )
    if not (np.isfinite(q).all() and np.isfinite(w).all()):
        raise CryptoError("embeddings contain NaN or infinity: embed again")
    if not 1 <= frac_bits < bit_length - 1:
        raise CryptoError(f"frac_bits {frac_bits} must be in 1..bit_length-2 ({bit_length - 2})")
    limit = 2.0 ** (bit_length - frac_bits - 1)
    if np.abs(q).max() * np.abs(w).max() * q.shape[1] >= limit:
        raise CryptoError(
            f"scores may exceed the fixed-point range ±{limit:g}: L2-normalise the "
            "embeddings or pass secure_top1 a larger bit_length"
        )
    real = _free_ports(N_PARTIES)
    addresses = [[f"127.0.0.1:{p}" for p in real] for _ in range(N_PARTIES)]
    routes: dict[int, tuple[int, int, int]] = {}
    if capture:  # party i connects to every j > i: through its own proxy port
        pairs = [(i, j) for i in range(N_PARTIES) for j in range(i + 1, N_PARTIES)]
        for (i, j), port in zip(pairs, _free_ports(len(pairs)), strict=True):
            routes[port] = (i, j, real[j])
            addresses[i][j] = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="vlmtrust-mpc-") as tmp:
        d = Path(tmp)
        np.save(d / "query.npy", q, allow_pickle=False)
        np.save(d / "rows.npy", w, allow_pickle=False)
        job = {
            "dim": int(q.shape[1]),
            "rows": int(w.shape[0]),
            "queries": int(q.shape[0]),
            "bit_length": bit_length,
            "frac_bits": frac_bits,
            "reveal_scores": reveal_scores,
            "connect_timeout": timeout,
        }
        inputs = {0: str(d / "query.npy"), 1: str(d / "rows.npy")}
        for pid in range(N_PARTIES):  # each party's job names only its own input
            own = {"addresses": addresses[pid], "input": inputs.get(pid)}
            (d / f"job-{pid}.json").write_text(json.dumps({**job, **own}))
        if capture:
            with _Proxy(routes) as proxy:
                results, wall = _run_parties(d, timeout, absent)
                received = {p: bytes(b) for p, b in proxy.received.items()}
        else:
            results, wall = _run_parties(d, timeout, absent)
            received = {}
    r0 = results[0]
    return MPCResult(
        top1=[int(i) for i in r0["top1"]],
        scores=np.asarray(r0["scores"], dtype=np.float64) if reveal_scores else None,
        wall_s=wall,
        compute_s=float(r0["compute_s"]),
        bytes_sent={p: sum(int(v) for v in r["bytes_sent"].values()) for p, r in results.items()},
        frac_bits=frac_bits,
        field_params=dict(r0["field"]),
        received=received,
    )


def _run_parties(
    d: Path, timeout: float, absent: Sequence[int]
) -> tuple[dict[int, dict[str, Any]], float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs: dict[int, subprocess.Popen[bytes]] = {}
    t0 = time.perf_counter()
    for pid in range(N_PARTIES):
        if pid in absent:
            continue
        log = (d / f"party-{pid}.log").open("wb")
        procs[pid] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vlmtrust.crypto._mpc_party",
                str(d / f"job-{pid}.json"),
                str(pid),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
    deadline = t0 + timeout + 5  # the parties' own connect time-out fires first
    try:
        # Poll all parties: one that exits with an error stops the others at once (they would
        # otherwise wait for its messages until the deadline).
        while any(p.poll() is None for p in procs.values()):
            failed = [pid for pid, p in procs.items() if p.returncode not in (None, 0)]
            if failed:
                break
            if time.perf_counter() > deadline:
                late = [pid for pid, p in procs.items() if p.poll() is None]
                raise CryptoError(
                    f"MPC parties {late} did not answer within {timeout:g} s "
                    f"(parties not started: {list(absent) or 'none'}); check that all three "
                    "run and can reach each other on 127.0.0.1"
                )
            time.sleep(0.02)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    wall = time.perf_counter() - t0
    results: dict[int, dict[str, Any]] = {}
    # Report a party that failed on its own before the ones killed because of it.
    order = sorted(procs, key=lambda pid: procs[pid].returncode in (0, -9))
    for pid in order:
        f = d / f"result-{pid}.json"
        res = json.loads(f.read_text()) if f.is_file() else None
        if res is None or "error" in res:
            tail = (d / f"party-{pid}.log").read_text(errors="replace").strip().splitlines()
            why = (
                res["error"]
                if res
                else (tail[-1] if tail else f"exit code {procs[pid].returncode}")
            )
            raise CryptoError(f"MPC party {pid} failed: {why}")
        results[pid] = res
    if absent:
        raise CryptoError(f"MPC parties {list(absent)} were not started")
    return results, wall


def field_encoding(values: Any, frac_bits: int, modulus: int, byte_length: int) -> list[bytes]:
    """The wire bytes MPyC uses for each value as a fixed-point field element."""
    out = []
    for v in np.asarray(values, dtype=np.float64).ravel():
        x = round(float(v) * (1 << frac_bits)) % modulus
        out.append(int(x).to_bytes(byte_length, "little"))
    return out


def clear_occurrences(
    transcript: bytes,
    values: Any,
    *,
    frac_bits: int,
    modulus: int,
    byte_length: int,
    window: int = 3,
) -> int:
    """Count runs of ``window`` consecutive input values found in ``transcript`` in the clear.

    Each run is searched as MPyC field elements (fixed-point encoding, little-endian), as
    float64 and as float32 (both byte orders). Runs rather than single values keep chance
    matches of short, mostly-zero encodings out. ``values`` is a vector or a matrix (runs are
    taken within rows).
    """
    a = np.asarray(values, dtype=np.float64)
    rows = a if a.ndim == 2 else a[None, :]
    hits = 0
    for row in rows:
        enc = field_encoding(row, frac_bits, modulus, byte_length)
        for k in range(len(row) - window + 1):
            chunk = row[k : k + window]
            patterns = [
                b"".join(enc[k : k + window]),
                struct.pack(f"<{window}d", *chunk),
                struct.pack(f">{window}d", *chunk),
                struct.pack(f"<{window}f", *chunk),
                struct.pack(f">{window}f", *chunk),
            ]
            hits += sum(1 for p in patterns if p in transcript)
    return hits
