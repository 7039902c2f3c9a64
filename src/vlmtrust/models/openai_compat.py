"""The ``openai:MODEL@BASE_URL`` backend: any OpenAI-compatible chat-completions endpoint.

Works with vLLM, Ollama, llama.cpp's server, LM Studio, TGI's OpenAI route and hosted APIs.
Images travel as base64 data URLs (PNG by default, JPEG on request), optionally downscaled.

Behaviour worth knowing:

* Requests run concurrently, at most ``concurrency`` in flight (:class:`Slots`; a waiting
  retry gets the next free slot before waiting first attempts),
  over keep-alive ``httpx.AsyncClient`` connections created per event loop (closed when the
  loop ends, or by :meth:`OpenAICompatModel.aclose`); results come back in input order. With
  ``requests_per_second`` set, sends are spaced at least ``1 / requests_per_second`` apart
  (retries included), across every loop of the model.
* Transient failures are retried with exponential backoff and full jitter (Brooker, "Exponential
  Backoff and Jitter", AWS Architecture Blog 2015): HTTP 408/429/500/502/503/504, timeouts,
  dropped connections, malformed JSON and bodies without ``choices``. A ``Retry-After`` header
  (seconds or HTTP date; also OpenAI's ``retry-after-ms``) replaces the computed delay, capped at
  ``backoff_max_s``. A request waiting to retry gives its concurrency slot to another one.
* :meth:`OpenAICompatModel.track_requests` counts the requests made while it is open (requests,
  attempts, retries by cause, errors, the slowest requests with their sample ids): the runner
  stores one :class:`~vlmtrust.core.results.RequestStats` per probe.
* The runner keeps up to ``batches_in_flight`` batches of a probe in flight at once
  (:mod:`vlmtrust.runner.pipeline`), so one slow request holds back only its own batch.
* Every setting is an option (:data:`OPTIONS`; on the command line ``--model-option
  KEY=VALUE``, checked by :func:`check_options`); :attr:`OpenAICompatModel.options` lists them
  for ``spec.json``. Options that change what is sent (image size and format) are part of the
  fingerprint, so cached answers and ``--resume`` never mix them.
* Other 4xx answers (400, 401, 403, 404, ...) are not retried.
* A request that still fails becomes ``Generation(text="", error="...")``: one bad request never
  stops the run.
* The API key is read only from the environment variable ``api_key_env`` and sent as
  ``Authorization: Bearer``. It never appears in the fingerprint, ``repr``, errors or results;
  any server text that echoes it is redacted.
* ``max_images`` (default 1) declares how many images the server takes in one request; the
  in-context wrappers read it to send several images instead of one composed image. The
  backend itself sends every image a request holds. Raise it only as far as the server allows:
  vLLM takes one image per prompt unless started with ``--limit-mm-per-prompt '{"image": N}'``
  (its default is model-dependent; hosted APIs document their own limits).

Example:
    >>> from vlmtrust.models.loader import load_model
    >>> m = load_model("openai:llava@http://127.0.0.1:8000/v1", concurrency=8)
    >>> m.fingerprint
    'openai:llava@http://127.0.0.1:8000/v1'
    >>> load_model("openai:llava@http://127.0.0.1:8000/v1", max_image_side=512).fingerprint
    'openai:llava@http://127.0.0.1:8000/v1#max_image_side=512'
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import email.utils
import heapq
import io
import itertools
import json
import math
import os
import random
import re
import ssl
import threading
import time
import warnings
import weakref
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest, Generation, ModelKind
from vlmtrust.core.results import RETRY_CAUSES, RequestStats, SlowRequest
from vlmtrust.core.types import Capability

# anyio >= 4.16 runs each task's coroutine inside a wrapper; when httpx's timeout cancels a
# happy-eyeballs connect attempt before its first step, the inner coroutine is reported as "never
# awaited". The attempt is cancelled as intended: the warning is noise on a user's console.
warnings.filterwarnings(
    "ignore",
    message=r"coroutine 'connect_tcp.<locals>.try_connect' was never awaited",
    category=RuntimeWarning,
)

__all__ = [
    "OPTIONS",
    "OpenAICompatModel",
    "RETRYABLE_STATUS",
    "RequestTracker",
    "check_options",
    "parse_retry_after",
]

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried (request timeout, rate limit, transient server errors)."""


@dataclass(frozen=True)
class Option:
    """One setting of the backend, as ``--model-option NAME=VALUE`` gives it."""

    type: Literal["int", "float", "str"]
    default: Any
    help: str
    nullable: bool = False
    """``none`` is a valid value (no limit / the default rule)."""
    choices: tuple[str, ...] = ()


OPTIONS: dict[str, Option] = {
    "concurrency": Option("int", 16, "requests in flight at once (>= 1)"),
    "timeout_s": Option("float", 60.0, "per-request connect/read/write timeout in seconds"),
    "max_retries": Option("int", 5, "retries after the first attempt for transient failures"),
    "requests_per_second": Option(
        "float", None, "most sends per second, retries included (none: no limit)", nullable=True
    ),
    "batches_in_flight": Option(
        "int", None, "probe batches the runner keeps in flight (none: = concurrency)", nullable=True
    ),
    "backoff_base_s": Option("float", 0.5, "first backoff ceiling in seconds (full jitter)"),
    "backoff_max_s": Option("float", 30.0, "longest wait before a retry, Retry-After included"),
    "max_image_side": Option(
        "int", None, "downscale images whose longer side exceeds this (none: never)", nullable=True
    ),
    "image_format": Option(
        "str", "png", "how images are sent: png or jpeg", choices=("png", "jpeg")
    ),
    "jpeg_quality": Option("int", 90, "JPEG quality 1..100 (image_format=jpeg)"),
    "api_key_env": Option(
        "str", "OPENAI_API_KEY", "name of the environment variable that holds the API key"
    ),
    "max_images": Option(
        "int", 1, "images the server takes in one request (vLLM: --limit-mm-per-prompt)"
    ),
}
"""Every constructor setting of :class:`OpenAICompatModel`, with its type and default."""

ALIASES = {"timeout": "timeout_s", "retries": "max_retries", "rps": "requests_per_second"}
"""Short names accepted for some options."""

_INT = re.compile(r"[+-]?\d+")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_options(options: Mapping[str, object]) -> dict[str, Any]:
    """Validate backend options (strings from the command line, or Python values).

    Args:
        options: ``{name: value}``; names as in :data:`OPTIONS` or :data:`ALIASES`, values as
            text (``"30"``, ``"none"``, ``"jpeg"``) or already typed.

    Returns:
        ``{canonical name: typed value}``, ready for ``OpenAICompatModel(**options)``.

    Raises:
        InputError: one line naming the option and the fix (unknown names list the valid ones).

    Example:
        >>> check_options({"timeout": "30", "rps": "none"})
        {'timeout_s': 30.0, 'requests_per_second': None}
    """
    out: dict[str, Any] = {}
    for raw_name, value in options.items():
        name = ALIASES.get(raw_name, raw_name)
        opt = OPTIONS.get(name)
        if opt is None:
            valid = ", ".join(OPTIONS)
            raise InputError(
                f"model option {raw_name!r} is not an openai: option; valid: {valid} "
                f"(short names: {', '.join(f'{a}={c}' for a, c in ALIASES.items())})"
            )
        out[name] = _convert(name, opt, value)
    _validate({**{k: o.default for k, o in OPTIONS.items()}, **out})
    return out


def _convert(name: str, opt: Option, value: object) -> Any:
    text = value.strip() if isinstance(value, str) else None
    if opt.nullable and (value is None or (text is not None and text.lower() in ("none", "null"))):
        return None
    bad = f"model option {name}={value!r} is invalid"
    if opt.type == "int":
        if text is not None and _INT.fullmatch(text):
            return int(text)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise InputError(f"{bad}; use an integer" + (" or none" if opt.nullable else ""))
    if opt.type == "float":
        try:
            num = float(text) if text is not None else None
        except ValueError:
            num = None
        if num is None and isinstance(value, int | float) and not isinstance(value, bool):
            num = float(value)
        if num is None or not math.isfinite(num):
            raise InputError(f"{bad}; use a number" + (" or none" if opt.nullable else ""))
        return num
    if text is None:
        raise InputError(f"{bad}; use text")
    if opt.choices:
        if text.lower() not in opt.choices:
            raise InputError(f"{bad}; use {' or '.join(opt.choices)}")
        return text.lower()
    return text


def _validate(v: Mapping[str, Any]) -> None:
    """Range checks shared by :func:`check_options` and the constructor (InputError)."""
    _check(v["concurrency"] >= 1, "concurrency", v["concurrency"], "use an integer >= 1")
    _check(v["timeout_s"] > 0, "timeout_s", v["timeout_s"], "use a positive number of seconds")
    _check(v["max_retries"] >= 0, "max_retries", v["max_retries"], "use an integer >= 0")
    rps = v["requests_per_second"]
    _check(rps is None or rps > 0, "requests_per_second", rps, "use a number > 0 or none")
    depth = v["batches_in_flight"]
    _check(depth is None or depth >= 1, "batches_in_flight", depth, "use an integer >= 1 or none")
    _check(v["backoff_base_s"] >= 0, "backoff_base_s", v["backoff_base_s"], "use seconds >= 0")
    _check(v["backoff_max_s"] >= 0, "backoff_max_s", v["backoff_max_s"], "use seconds >= 0")
    side = v["max_image_side"]
    _check(side is None or side >= 1, "max_image_side", side, "use none or a side >= 1 pixel")
    fmt = v["image_format"]
    _check(fmt in ("png", "jpeg"), "image_format", fmt, 'use "png" or "jpeg"')
    _check(1 <= v["jpeg_quality"] <= 100, "jpeg_quality", v["jpeg_quality"], "use 1..100")
    _check(v["max_images"] >= 1, "max_images", v["max_images"], "use an integer >= 1")
    env = v["api_key_env"]
    if not isinstance(env, str) or not _ENV_NAME.fullmatch(env):
        # the value is not echoed: a key pasted here by mistake must not reach the terminal
        raise InputError(
            "api_key_env must name an environment variable (letters, digits, _), e.g. "
            "OPENAI_API_KEY; put the key itself in that variable"
        )


class RequestTracker:
    """Counts the requests a model makes while the tracker is open (thread-safe).

    Counted: requests started, HTTP attempts, retries by cause (:data:`RETRY_CAUSES`),
    requests that failed, and the ``keep_slowest`` slowest finished requests (first send to
    final answer) with their sample ids. Nothing of a request's content is kept.
    """

    def __init__(self, keep_slowest: int = 5) -> None:
        self._lock = threading.Lock()
        self._keep = max(0, int(keep_slowest))
        self._seq = itertools.count()
        self._slow: list[tuple[float, int, str | None, int, bool]] = []  # a min-heap
        self.requests = 0
        self.attempts = 0
        self.errors = 0
        self.retries: dict[str, int] = {}

    def _started(self) -> None:
        with self._lock:
            self.requests += 1

    def _attempted(self) -> None:
        with self._lock:
            self.attempts += 1

    def _retried(self, cause: str) -> None:
        with self._lock:
            self.retries[cause] = self.retries.get(cause, 0) + 1

    def _finished(
        self, seconds: float | None, sample_id: str | None, attempts: int, ok: bool
    ) -> None:
        with self._lock:
            if not ok:
                self.errors += 1
            if seconds is None or not self._keep:
                return
            item = (seconds, next(self._seq), sample_id, attempts, ok)
            if len(self._slow) < self._keep:
                heapq.heappush(self._slow, item)
            elif seconds > self._slow[0][0]:
                heapq.heapreplace(self._slow, item)

    def summary(self) -> RequestStats:
        """The counts so far, slowest requests first."""
        with self._lock:
            slow = sorted(self._slow, key=lambda t: (-t[0], t[1]))
            return RequestStats(
                requests=self.requests,
                attempts=self.attempts,
                retries={c: self.retries[c] for c in RETRY_CAUSES if c in self.retries},
                errors=self.errors,
                slowest=[
                    SlowRequest(sample_id=sid, seconds=round(sec, 3), attempts=n, ok=ok)
                    for sec, _, sid, n, ok in slow
                ],
            )


_REDACTED = "[REDACTED]"
_MAX_SERVER_TEXT = 200


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (RFC 9110 §10.2.3).

    Args:
        value: the header value: delay-seconds (``"2"``, ``"0.5"``) or an HTTP date.
        now: the current POSIX time (defaults to ``time.time()``), for HTTP dates.

    Returns:
        The delay in seconds (never negative), or None when absent or unparseable.

    Example:
        >>> parse_retry_after("3")
        3.0
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
        10.0
        >>> parse_retry_after("soon") is None
        True
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


class Slots:
    """At most ``n`` holders at once; a waiting retry is let in before any waiting first attempt.

    Without the priority, a retry would queue behind every request issued since it first
    started (the runner keeps whole batches waiting), and one unlucky request would wait for
    the backlog again at each retry. First attempts keep their arrival order.
    """

    def __init__(self, n: int) -> None:
        self._free = n
        self._waiting: tuple[collections.deque[asyncio.Future[None]], ...] = (
            collections.deque(),  # retries
            collections.deque(),  # first attempts
        )

    async def acquire(self, *, retry: bool = False) -> None:
        """Wait for a slot."""
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[0 if retry else 1].append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed a slot, then cancelled: pass it on
            raise

    def release(self) -> None:
        """Free a slot: hand it to the first waiting retry, else the first waiting request."""
        for queue in self._waiting:
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return
        self._free += 1


@dataclass
class _LoopState:
    """What belongs to one event loop: the HTTP clients, the slots, the closing guard.

    There is one single-connection keep-alive ``httpx.AsyncClient`` per concurrency slot (a
    "lane"); a request holds a slot and one free lane. This keeps the connection pool of
    each client trivial: httpcore's pool scans every connection for every queued request, which
    made one 64-connection client ~6x slower than 64 one-connection clients on 2 cores.
    """

    clients: list[httpx.AsyncClient]
    free: list[httpx.AsyncClient]
    slots: Slots
    api_key: str | None
    guard: AsyncGenerator[None, None] | None = None

    def __repr__(self) -> str:  # never show the key
        key = "set" if self.api_key else "unset"
        return f"_LoopState(lanes={len(self.clients)}, key={key})"

    async def aclose(self) -> None:
        """Close every client."""
        for client in self.clients:
            await client.aclose()


@dataclass(frozen=True)
class _Outcome:
    """One attempt's result: a final generation, or a retryable failure and its cause."""

    generation: Generation | None
    reason: str
    retry_after: float | None = None
    cause: str = ""


class OpenAICompatModel:
    """A generative VLM behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: the model name sent in each request (``"llava"``, ``"gpt-4o-mini"``).
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/chat/completions`` is
            appended).
        spec: the spec string the user gave (recorded in results).
        api_key_env: name of the environment variable holding the API key (optional for local
            servers). The key is read from there only.
        concurrency: maximum requests in flight at once.
        timeout_s: per-request connect/read/write timeout in seconds.
        max_retries: retries after the first attempt for transient failures.
        requests_per_second: most sends per second (retries included); None: no limit.
        batches_in_flight: probe batches the runner may evaluate at once on this model
            (None: ``concurrency``); 1 evaluates one batch after another.
        backoff_base_s: first backoff ceiling; the n-th retry waits uniform(0, base * 2**(n-1)).
        backoff_max_s: ceiling on any wait, ``Retry-After`` included.
        max_image_side: downscale images whose longer side exceeds this (aspect kept).
        image_format: ``"png"`` (lossless, default) or ``"jpeg"``.
        jpeg_quality: JPEG quality when ``image_format="jpeg"``.
        max_images: images the server takes in one request (declared for the wrappers; the
            backend sends what each request holds).

    Attributes:
        stats: lifetime counters: ``requests``, ``attempts``, ``retries``, ``errors``.
        options: every setting above but ``base_url`` (for ``spec.json``; never a key).

    Example:
        >>> m = OpenAICompatModel("llava", base_url="http://127.0.0.1:8000/v1",
        ...                       spec="openai:llava@http://127.0.0.1:8000/v1")
        >>> m.capabilities
        <Capability.GENERATE: 2>
        >>> m.stats["attempts"]
        0
    """

    kind: ModelKind = "generative"
    capabilities: Capability = Capability.GENERATE

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        spec: str,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 60,
        max_retries: int = 5,
        requests_per_second: float | None = None,
        batches_in_flight: int | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        max_image_side: int | None = None,
        image_format: Literal["png", "jpeg"] = "png",
        jpeg_quality: int = 90,
        max_images: int = 1,
    ) -> None:
        if not model:
            raise InputError(f"model spec {spec!r}: empty model name; use openai:MODEL@BASE_URL")
        url = base_url.rstrip("/")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise InputError(
                f"base URL {base_url!r} is invalid ({exc}); use http(s)://HOST/v1"
            ) from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise InputError(f"base URL {base_url!r} must look like http(s)://HOST[:PORT]/v1")
        if parsed.userinfo:
            raise InputError(
                f"base URL for {spec!r} contains credentials; remove them and set ${api_key_env}"
            )
        _validate(
            {
                "concurrency": concurrency,
                "timeout_s": timeout_s,
                "max_retries": max_retries,
                "requests_per_second": requests_per_second,
                "batches_in_flight": batches_in_flight,
                "backoff_base_s": backoff_base_s,
                "backoff_max_s": backoff_max_s,
                "max_image_side": max_image_side,
                "image_format": image_format,
                "jpeg_quality": jpeg_quality,
                "api_key_env": api_key_env,
                "max_images": max_images,
            }
        )

        self.model_name = model
        self.base_url = url
        self.spec = spec
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.requests_per_second = (
            None if requests_per_second is None else float(requests_per_second)
        )
        self.batches_in_flight = (
            self.concurrency if batches_in_flight is None else int(batches_in_flight)
        )
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_image_side = None if max_image_side is None else int(max_image_side)
        self.image_format: Literal["png", "jpeg"] = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.max_images = int(max_images)
        self.fingerprint = f"openai:{model}@{url}" + self._encoding_suffix()
        self._lifetime = RequestTracker(keep_slowest=0)
        self._trackers: tuple[RequestTracker, ...] = (self._lifetime,)
        self._trackers_lock = threading.Lock()
        self._send_interval = (
            0.0 if self.requests_per_second is None else 1.0 / self.requests_per_second
        )
        self._next_send = 0.0
        self._pace_lock = threading.Lock()
        self._endpoint = url + "/chat/completions"
        self._url = httpx.URL(self._endpoint)  # parsed once (saves ~35 us per request)
        self._rng = random.Random()
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return (
            f"OpenAICompatModel(model={self.model_name!r}, base_url={self.base_url!r}, "
            f"concurrency={self.concurrency}, api_key_env={self.api_key_env!r})"
        )

    def _encoding_suffix(self) -> str:
        """``#k=v,...`` for the non-default settings that change what is sent (or "")."""
        parts = []
        if self.max_image_side is not None:
            parts.append(f"max_image_side={self.max_image_side}")
        if self.image_format != "png":
            parts.append(f"image_format={self.image_format}")
            if self.jpeg_quality != OPTIONS["jpeg_quality"].default:
                parts.append(f"jpeg_quality={self.jpeg_quality}")
        return "#" + ",".join(parts) if parts else ""

    @property
    def options(self) -> dict[str, Any]:
        """Every setting (:data:`OPTIONS` names) with its value; the key itself never."""
        return {name: getattr(self, name) for name in OPTIONS}

    @property
    def stats(self) -> dict[str, int]:
        """Lifetime counters: requests, attempts, retries (all causes), errors."""
        t = self._lifetime
        with t._lock:
            return {
                "requests": t.requests,
                "attempts": t.attempts,
                "retries": sum(t.retries.values()),
                "errors": t.errors,
            }

    @contextlib.contextmanager
    def track_requests(self, keep_slowest: int = 5) -> Iterator[RequestTracker]:
        """Count the requests made inside the block (from any thread or loop).

        Example:
            >>> m = OpenAICompatModel("m", base_url="http://127.0.0.1:9/v1", spec="s")
            >>> with m.track_requests() as tracker:
            ...     pass
            >>> tracker.summary().requests
            0
        """
        tracker = RequestTracker(keep_slowest)
        with self._trackers_lock:
            self._trackers = (*self._trackers, tracker)
        try:
            yield tracker
        finally:
            with self._trackers_lock:
                self._trackers = tuple(t for t in self._trackers if t is not tracker)

    # ------------------------------------------------------------------ client lifecycle

    async def _state(self) -> _LoopState:
        """The client for the running loop, created on first use and closed with the loop."""
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is not None:
            return state
        api_key = os.environ.get(self.api_key_env) or None
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        timeout = httpx.Timeout(self.timeout_s)
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=30)
        # one TLS context shared by all lanes (building one loads the CA bundle: ~10 ms each)
        verify: ssl.SSLContext | bool = (
            httpx.create_ssl_context() if self.base_url.startswith("https://") else False
        )
        clients = [
            httpx.AsyncClient(
                headers=headers,
                timeout=timeout,
                limits=limits,
                verify=verify,
                follow_redirects=False,
            )
            for _ in range(self.concurrency)
        ]
        state = _LoopState(clients, list(clients), Slots(self.concurrency), api_key)
        self._states[loop] = state
        # An async generator registered with the loop: asyncio.run() (and anyone calling
        # loop.shutdown_asyncgens()) closes it before the loop closes, which closes the clients.
        guard = self._close_with_loop(weakref.ref(loop), state)
        await guard.__anext__()
        state.guard = guard
        return state

    async def _close_with_loop(
        self, loop_ref: weakref.ref[asyncio.AbstractEventLoop], state: _LoopState
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            loop = loop_ref()
            if loop is not None and self._states.get(loop) is state:
                del self._states[loop]
            await state.aclose()

    async def aclose(self) -> None:
        """Close this event loop's HTTP clients (a later call opens new ones).

        ``asyncio.run`` (hence :func:`~vlmtrust.core.model.generate_sync`) closes them by itself
        when its loop ends; call this when you drive a loop that you do not shut down that way.
        """
        loop = asyncio.get_running_loop()
        state = self._states.pop(loop, None)
        if state is None:
            return
        if state.guard is not None:
            await state.guard.aclose()  # its finally block closes the clients
        else:
            await state.aclose()

    async def __aenter__(self) -> OpenAICompatModel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ generation

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer each request; failures become error generations, order is kept.

        Args:
            requests: the requests (images + prompt + decoding settings).

        Returns:
            One :class:`Generation` per request, in input order.
        """
        if not requests:
            return []
        state = await self._state()
        encoded: dict[int, asyncio.Future[str]] = {}
        tasks = [self._one(state, req, encoded) for req in requests]
        return list(await asyncio.gather(*tasks))

    def generate_sync(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Synchronous :meth:`generate` (a fresh event loop; its clients are closed after)."""
        from vlmtrust.core.model import generate_sync

        return generate_sync(self, requests)

    async def _one(
        self, state: _LoopState, req: GenerateRequest, encoded: dict[int, asyncio.Future[str]]
    ) -> Generation:
        trackers = self._trackers
        for t in trackers:
            t._started()
        try:
            body = await self._body(req, encoded)
        except Exception as exc:  # a broken image must not stop the batch
            for t in trackers:
                t._finished(None, req.sample_id, 0, ok=False)
            return Generation(
                text="", error=f"could not encode the request images: {_first_line(exc)}"
            )
        gen, attempts, seconds = await self._with_retries(state, body, trackers)
        if gen.error is not None:
            # Every error text is built from server answers or exceptions: scrub the key.
            gen = Generation(text="", error=_redact(gen.error, state.api_key))
        for t in trackers:
            t._finished(seconds, req.sample_id, attempts, ok=gen.ok)
        return gen

    async def _with_retries(
        self, state: _LoopState, body: bytes, trackers: Sequence[RequestTracker]
    ) -> tuple[Generation, int, float]:
        """The final generation, the attempts made and the seconds from the first send."""
        attempts = 0
        start: float | None = None
        while True:
            # A slot (and lane) is held for one attempt only: a request that waits to retry
            # leaves it to the others.
            await state.slots.acquire(retry=attempts > 0)
            client = state.free.pop()
            try:
                await self._pace()
                if start is None:
                    start = time.perf_counter()
                attempts += 1
                for t in trackers:
                    t._attempted()
                outcome = await self._attempt(client, state.api_key, body)
            finally:
                state.free.append(client)
                state.slots.release()
            if outcome.generation is not None:
                return outcome.generation, attempts, time.perf_counter() - start
            if attempts > self.max_retries:
                plural = "s" if attempts != 1 else ""
                gen = Generation(
                    text="", error=f"{outcome.reason}, after {attempts} attempt{plural}"
                )
                return gen, attempts, time.perf_counter() - start
            for t in trackers:
                t._retried(outcome.cause)
            await asyncio.sleep(self._delay(attempts, outcome.retry_after))

    async def _pace(self) -> None:
        """Wait for this send's turn under ``requests_per_second`` (shared by every loop)."""
        if self._send_interval <= 0:
            return
        with self._pace_lock:
            now = time.monotonic()
            at = max(now, self._next_send)
            self._next_send = at + self._send_interval
        if at > now:
            await asyncio.sleep(at - now)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff before retry number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return self._rng.uniform(0.0, ceiling)  # full jitter

    async def _attempt(
        self, client: httpx.AsyncClient, api_key: str | None, body: bytes
    ) -> _Outcome:
        try:
            resp = await client.post(self._url, content=body)
        except httpx.TimeoutException as exc:
            reason = f"timeout ({type(exc).__name__}, limit {self.timeout_s:g} s)"
            return _Outcome(None, reason, cause="timeout")
        except httpx.UnsupportedProtocol:
            return _Outcome(
                Generation(text="", error=f"unsupported URL {self._endpoint}; use http(s)://"), ""
            )
        except httpx.TransportError as exc:
            reason = f"connection error ({type(exc).__name__}: {_first_line(exc)})"
            return _Outcome(None, reason, cause="connection")
        status = resp.status_code
        if 200 <= status < 300:
            return self._parse(resp.content, api_key)
        detail = _server_message(resp.content, api_key)
        reason = f"HTTP {status} {resp.reason_phrase}".rstrip() + (f": {detail}" if detail else "")
        if status in RETRYABLE_STATUS:
            ms = parse_retry_after(resp.headers.get("retry-after-ms"))
            retry_after = ms / 1000.0 if ms is not None else None
            if retry_after is None:
                retry_after = parse_retry_after(resp.headers.get("retry-after"))
            cause = "429" if status == 429 else "timeout" if status == 408 else "5xx"
            return _Outcome(None, reason, retry_after, cause)
        return _Outcome(Generation(text="", error=f"{reason}; {self._fix_for(status)}"), reason)

    def _fix_for(self, status: int) -> str:
        env = self.api_key_env
        if status == 401:
            if os.environ.get(env):
                return f"the key in ${env} was rejected: set the API key in ${env}"
            return f"set the API key in ${env}"
        if status == 403:
            return f"the API key in ${env} lacks access to model {self.model_name!r}"
        if status == 404:
            return (
                f"check the base URL {self.base_url!r} (it usually ends in /v1) "
                f"and the model name {self.model_name!r}"
            )
        if status == 413:
            return "the request is too large: set max_image_side to downscale images"
        if status in (400, 422):
            return (
                f"the server rejected the request: check that model {self.model_name!r} "
                "accepts images and the max_new_tokens/temperature values"
            )
        return "not retried; check the server's logs"

    def _parse(self, content: bytes, api_key: str | None) -> _Outcome:
        bad = "malformed"
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return _Outcome(
                None, f"malformed JSON in the response ({len(content)} bytes)", cause=bad
            )
        if not isinstance(data, dict):
            return _Outcome(None, "malformed response: the JSON body is not an object", cause=bad)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            detail = _server_message(content, api_key)
            reason = "malformed response: no choices" + (f" ({detail})" if detail else "")
            return _Outcome(None, reason, cause=bad)
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            return _Outcome(None, "malformed response: choices[0] has no message", cause=bad)
        text = _content_text(message.get("content"))
        if text is None:
            reason = "malformed response: choices[0].message.content is not text"
            return _Outcome(None, reason, cause=bad)
        finish = choice.get("finish_reason")
        return _Outcome(
            Generation(
                text=_redact(text, api_key),
                finish_reason=_redact(finish, api_key)[:40] if isinstance(finish, str) else None,
            ),
            "",
        )

    # ------------------------------------------------------------------ request encoding

    async def _body(self, req: GenerateRequest, encoded: dict[int, asyncio.Future[str]]) -> bytes:
        parts: list[dict[str, Any]] = []
        for part in req.parts():  # images first, or where an interleaved prompt puts them
            if isinstance(part, str):
                parts.append({"type": "text", "text": part})
            else:
                url = await self._data_url(req.images[part], encoded)
                parts.append({"type": "image_url", "image_url": {"url": url}})
        messages: list[dict[str, Any]] = []
        if req.system:
            messages.append({"role": "system", "content": req.system})
        messages.append({"role": "user", "content": parts})
        payload = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": req.max_new_tokens,
            "temperature": req.temperature,
            "seed": req.seed,
        }
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()

    async def _data_url(self, image: Image.Image, encoded: dict[int, asyncio.Future[str]]) -> str:
        # Each distinct image object is encoded once per generate() call, off the event loop
        # (Pillow releases the GIL while compressing). The images outlive the call, so id() is
        # a safe key for its duration.
        fut = encoded.get(id(image))
        if fut is None:
            fut = asyncio.ensure_future(asyncio.to_thread(self.encode_image, image))
            encoded[id(image)] = fut
        return await fut

    def encode_image(self, image: Image.Image) -> str:
        """Encode one image as a ``data:`` URL (downscaled to ``max_image_side`` if set).

        Args:
            image: a PIL image.

        Returns:
            ``data:image/png;base64,...`` (or ``image/jpeg``).
        """
        im = image
        side = self.max_image_side
        if side is not None and max(im.size) > side:
            scale = side / max(im.size)
            size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
            if im.mode not in ("RGB", "RGBA", "L", "LA"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            im = im.resize(size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if self.image_format == "jpeg":
            if im.mode not in ("RGB", "L"):
                im = im.convert("RGB")
            im.save(buf, format="JPEG", quality=self.jpeg_quality)
            mime = "image/jpeg"
        else:
            if im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"):
                im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
            im.save(buf, format="PNG", compress_level=4)
            mime = "image/png"
        return f"data:{mime};base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ---------------------------------------------------------------------- helpers


def _check(ok: bool, name: str, value: object, fix: str) -> None:
    if not ok:
        raise InputError(f"openai backend option {name}={value!r} is invalid; {fix}")


def _redact(text: str, api_key: str | None) -> str:
    if api_key and api_key in text:
        return text.replace(api_key, _REDACTED)
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "no details")[:_MAX_SERVER_TEXT]


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_SERVER_TEXT else flat[: _MAX_SERVER_TEXT - 1] + "…"


def _server_message(content: bytes, api_key: str | None) -> str:
    """A short, single-line, redacted excerpt of a server's error body (untrusted text)."""
    if not content:
        return ""
    text = content.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            text = err if isinstance(err, str) else json.dumps(err)
        else:
            return ""
    return _one_line(_redact(text, api_key))


def _content_text(content: object) -> str | None:
    """The text of ``message.content``: a string, null (empty) or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    return None
