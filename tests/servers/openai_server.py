"""A real OpenAI-compatible HTTP server for tests and benchmarks (starlette + uvicorn).

It serves ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1, decodes the data-URL images
with PIL and answers with a pluggable backend:

* :class:`EchoBackend` answers at once with a JSON summary of what it received (prompt, system,
  decoding settings, each image's size and content digest), so tests can check the request
  crossed the wire intact;
* any object with ``generate_batch(list[GenerateRequest]) -> list[Generation]``;
* any :class:`~vlmtrust.core.model.GenerativeModel` (async ``generate``), e.g. the tiny HF
  LLaVA of ``tests/conftest.py`` — run in a worker thread, one request at a time.

Faults are injected per test: a *script* (one fault per incoming chat request, in arrival order),
*rules* (a fault applied to every request whose prompt contains a marker) and a *mix*
(:class:`FaultMix`: a fault drawn at random per request, seeded; :func:`standard_mix` is the
benchmark's 40%). Fault kinds: an HTTP status (429/500/503/401/... with an optional
``Retry-After``), a slow (late) answer, a dropped connection (socket closed with no response), a
malformed JSON body, a 200 without ``choices``, and an answer that echoes the caller's
``Authorization`` header (to test key redaction).

Timing: each chat request first does its *work* — waits for one of ``capacity`` slots (when
set: a server that answers at most that many requests at once, like a GPU batch), then sleeps
the latency — and then gets its fault or its answer. A fault marked ``early`` (admission
control, e.g. a rate limiter's 429) is answered on arrival instead, without work. A slow fault
holds its extra delay after the work, outside the capacity.

In-process use::

    with serve(EchoBackend(), faults=[Fault.status(503)], latency_s=0.0) as url:
        ...  # url == "http://127.0.0.1:PORT/v1"; url.stats has the counters

Separate process (benchmarks)::

    python tests/servers/openai_server.py --latency 0.2   # prints "READY http://...", serves
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import uvicorn
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from vlmtrust.core.model import IMAGE_SLOT, GenerateRequest, Generation, generate_sync
from vlmtrust.core.sample import image_digest

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"

Latency = float | Callable[[str], float]
"""Seconds before each answer: a constant, or a function of the request's prompt."""

# --------------------------------------------------------------------------- backends


class BatchBackend(Protocol):
    """Anything that answers a batch of requests synchronously."""

    def generate_batch(self, requests: list[GenerateRequest]) -> list[Generation]: ...


def describe_request(req: GenerateRequest) -> dict[str, Any]:
    """The summary :class:`EchoBackend` answers with (tests compute it on the client side)."""
    return {
        "prompt": req.prompt,
        "system": req.system,
        "max_tokens": req.max_new_tokens,
        "temperature": req.temperature,
        "seed": req.seed,
        "interleaved": req.interleaved,
        "images": [
            {"size": list(im.size), "mode": im.mode, "digest": image_digest(im)}
            for im in req.images
        ],
    }


class EchoBackend:
    """Deterministic, instant: the answer is the JSON summary of the request."""

    inline = True  # cheap: called on the event loop, no worker thread

    def generate_batch(self, requests: list[GenerateRequest]) -> list[Generation]:
        return [
            Generation(text=json.dumps(describe_request(r), sort_keys=True), finish_reason="stop")
            for r in requests
        ]


class ConstantBackend:
    """Instant and tiny: always the same short answer (benchmarks)."""

    inline = True

    def __init__(self, text: str = "ok") -> None:
        self.text = text

    def generate_batch(self, requests: list[GenerateRequest]) -> list[Generation]:
        return [Generation(text=self.text, finish_reason="stop") for _ in requests]


class _ModelBackend:
    """Adapts a GenerativeModel (async generate) to ``generate_batch``."""

    inline = False

    def __init__(self, model: Any) -> None:
        self.model = model

    def generate_batch(self, requests: list[GenerateRequest]) -> list[Generation]:
        return generate_sync(self.model, requests)


def as_backend(obj: Any) -> Any:
    """Accept a ``generate_batch`` object or a GenerativeModel."""
    if hasattr(obj, "generate_batch"):
        return obj
    if hasattr(obj, "generate"):
        return _ModelBackend(obj)
    raise TypeError(f"{type(obj).__name__} has neither generate_batch nor generate")


# --------------------------------------------------------------------------- faults


FaultKind = Literal["status", "slow", "drop", "malformed_json", "no_choices", "echo_auth"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour, applied to one chat request."""

    kind: FaultKind
    status: int = 200
    retry_after: str | None = None
    delay_s: float = 0.0
    early: bool = False
    """Answered on arrival, before the work (latency, capacity)."""

    @classmethod
    def http(
        cls, status: int, retry_after: str | float | None = None, *, early: bool = False
    ) -> Fault:
        """Answer with this status (and ``Retry-After`` when given) and an OpenAI error body."""
        ra = None if retry_after is None else str(retry_after)
        return cls("status", status=status, retry_after=ra, early=early)

    @classmethod
    def slow(cls, delay_s: float) -> Fault:
        """Wait ``delay_s`` before answering normally (unless the client hangs up first)."""
        return cls("slow", delay_s=delay_s)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without sending any response."""
        return cls("drop")

    @classmethod
    def malformed_json(cls) -> Fault:
        """200 with a truncated JSON body."""
        return cls("malformed_json")

    @classmethod
    def no_choices(cls) -> Fault:
        """200 with a valid JSON object that lacks ``choices``."""
        return cls("no_choices")

    @classmethod
    def echo_auth(cls, status: int = 200) -> Fault:
        """Echo the ``Authorization`` header back: in the completion (200) or the error body."""
        return cls("echo_auth", status=status)


class FaultMix:
    """A fault drawn at random for each chat request (seeded, so a run is reproducible).

    Args:
        entries: ``(probability, fault)`` pairs; the probabilities sum to at most 1 (the rest
            of the requests are answered normally).
        seed: the random generator's seed.
    """

    def __init__(self, entries: Sequence[tuple[float, Fault]], seed: int = 0) -> None:
        total = sum(p for p, _ in entries)
        if any(p < 0 for p, _ in entries) or total > 1 + 1e-9:
            raise ValueError("fault probabilities must be >= 0 and sum to at most 1")
        self.entries = list(entries)
        self.rate = total
        self._rng = random.Random(seed)

    def pick(self) -> Fault | None:
        """The fault for the next request, or None."""
        u = self._rng.random()
        for p, fault in self.entries:
            if u < p:
                return fault
            u -= p
        return None


def standard_mix(
    rate: float = 0.4,
    *,
    late: float = 0.1,
    late_s: float = 5.0,
    retry_after: float = 1.0,
    seed: int = 0,
) -> FaultMix:
    """``rate`` of the requests get a fault: ``late`` of them answer ``late_s`` late, the rest
    is split evenly over 429 with ``Retry-After`` (on arrival), 500, a dropped connection and
    malformed JSON (after the work)."""
    if not 0 <= late <= rate <= 1:
        raise ValueError("need 0 <= late <= rate <= 1")
    each = (rate - late) / 4
    return FaultMix(
        [
            (late, Fault.slow(late_s)),
            (each, Fault.http(429, retry_after=retry_after, early=True)),
            (each, Fault.http(500)),
            (each, Fault.drop()),
            (each, Fault.malformed_json()),
        ],
        seed=seed,
    )


@dataclass
class ServerStats:
    """What the server saw (read by tests after the client is done)."""

    chat_requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    faults_served: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """``time.monotonic()`` at each chat request's arrival."""
    prompts: list[str] = field(default_factory=list)
    auth_headers: list[str | None] = field(default_factory=list)
    client_ports: set[int] = field(default_factory=set)
    """Distinct client source ports seen (one per TCP connection: keep-alive reuse shows)."""


class ServedURL(str):
    """The base URL (``http://127.0.0.1:PORT/v1``) with the server's counters attached."""

    stats: ServerStats

    def __new__(cls, url: str, stats: ServerStats) -> ServedURL:
        obj = super().__new__(cls, url)
        obj.stats = stats
        return obj


def _json_body(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Response:
    return JSONResponse(payload, status_code=status, headers=dict(headers or {}))


async def _send_response(send: Send, response: Response, scope: Scope, receive: Receive) -> None:
    await response(scope, receive, send)


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _DropConnection(Exception):
    """Raised after starting a response when the socket cannot be reached (fallback drop)."""


class FaultInjector:
    """Outermost ASGI layer: counts in-flight requests, adds latency, injects faults."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: Sequence[Fault] = (),
        rules: Mapping[str, Fault] | None = None,
        mix: FaultMix | None = None,
        latency_s: Latency = 0.0,
        capacity: int | None = None,
        stats: ServerStats,
        record: bool = True,
    ) -> None:
        self.app = app
        self.record = record
        self.script = list(faults)
        self.rules = dict(rules or {})
        self.mix = mix
        self.latency_s = latency_s
        self.capacity = capacity
        self._slots: asyncio.Semaphore | None = None
        self.stats = stats

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT_PATH:
            await self.app(scope, receive, send)
            return
        st = self.stats
        st.chat_requests += 1
        st.arrivals.append(time.monotonic())
        client = scope.get("client")
        if client:
            st.client_ports.add(int(client[1]))
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            await self._handle(scope, receive, send)
        finally:
            st.in_flight -= 1

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        self.stats.auth_headers.append(auth)
        # the prompt is needed for rules and prompt-dependent latency only (JSON parsing costs
        # server CPU that the benchmark would otherwise charge to the client's throughput)
        prompt = _prompt_of(body) if self.rules or callable(self.latency_s) or self.record else ""
        self.stats.prompts.append(prompt)

        fault: Fault | None = None
        for marker, rule in self.rules.items():
            if marker in prompt:
                fault = rule
                break
        if fault is None and self.script:
            fault = self.script.pop(0)
        if fault is None and self.mix is not None:
            fault = self.mix.pick()
        if fault is not None:
            self.stats.faults_served.append(fault.kind)

        if fault is None or not fault.early:
            delay = self.latency_s(prompt) if callable(self.latency_s) else self.latency_s
            await self._work(delay)

        if fault is not None:
            done = await self._inject(fault, scope, receive, send, auth)
            if done:
                return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _work(self, delay: float) -> None:
        """The request's work: one of ``capacity`` slots (if set) for ``delay`` seconds."""
        if self.capacity is None:
            if delay > 0:
                await asyncio.sleep(delay)
            return
        if self._slots is None:  # created on the server's own loop
            self._slots = asyncio.Semaphore(self.capacity)
        async with self._slots:
            if delay > 0:
                await asyncio.sleep(delay)

    async def _inject(
        self, fault: Fault, scope: Scope, receive: Receive, send: Send, auth: str | None
    ) -> bool:
        """Apply a fault; True when the request is fully handled."""
        if fault.kind == "slow":
            try:
                await asyncio.wait_for(_wait_disconnect(receive), timeout=fault.delay_s)
            except TimeoutError:
                return False  # the client waited long enough: answer normally
            return True  # the client hung up
        if fault.kind == "drop":
            transport = getattr(getattr(send, "__self__", None), "transport", None)
            if transport is None:
                await send({"type": "http.response.start", "status": 200, "headers": []})
                raise _DropConnection("dropping the connection mid-response")
            transport.close()
            await asyncio.wait_for(_wait_disconnect(receive), timeout=5)
            return True
        if fault.kind == "malformed_json":
            resp: Response = Response(
                b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "tru',
                media_type="application/json",
            )
        elif fault.kind == "no_choices":
            resp = _json_body(200, {"id": "chatcmpl-empty", "object": "chat.completion"})
        elif fault.kind == "echo_auth":
            if fault.status == 200:
                resp = _json_body(200, _completion(f"you sent {auth}", "stop", "echo"))
            else:
                resp = _json_body(
                    fault.status,
                    {"error": {"message": f"bad header {auth}", "type": "invalid_request_error"}},
                )
        else:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            resp = _json_body(
                fault.status,
                {"error": {"message": f"injected {fault.status}", "type": "server_error"}},
                extra,
            )
        await _send_response(send, resp, scope, receive)
        return True


def _prompt_of(body: bytes) -> str:
    try:
        data = json.loads(body)
        for msg in data["messages"]:
            if msg.get("role") == "user":
                content = msg["content"]
                if isinstance(content, str):
                    return content
                return "".join(p.get("text", "") for p in content if p.get("type") == "text")
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return ""


# --------------------------------------------------------------------------- the app


class _BadRequest(Exception):
    pass


def _decode_data_url(url: str) -> Image.Image:
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:image/") or not head.endswith(";base64"):
        raise _BadRequest("image_url must be a data:image/...;base64 URL")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _BadRequest(f"bad base64 image: {exc}") from None
    try:
        im = Image.open(io.BytesIO(raw))
        im.load()
    except Exception as exc:
        raise _BadRequest(f"undecodable image: {exc}") from None
    return im


def _to_request(data: Any) -> GenerateRequest:
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise _BadRequest("body must be a JSON object with a messages list")
    system: str | None = None
    prompt_parts: list[str] = []
    images: list[Image.Image] = []
    for msg in data["messages"]:
        if not isinstance(msg, dict):
            raise _BadRequest("each message must be an object")
        role, content = msg.get("role"), msg.get("content")
        if role == "system" and isinstance(content, str):
            system = content
        elif role == "user":
            if isinstance(content, str):
                prompt_parts.append(content)
            elif isinstance(content, list):
                for part in content:
                    kind = part.get("type") if isinstance(part, dict) else None
                    if kind == "text":
                        prompt_parts.append(str(part.get("text", "")))
                    elif kind == "image_url":
                        images.append(_decode_data_url(str(part["image_url"]["url"])))
                        prompt_parts.append(IMAGE_SLOT)  # where it was: kept if interleaved
                    else:
                        raise _BadRequest(f"unsupported content part {kind!r}")
            else:
                raise _BadRequest("user content must be a string or a list of parts")
        else:
            raise _BadRequest(f"unsupported message role {role!r}")
    max_tokens = data.get("max_tokens", 16)
    temperature = data.get("temperature", 1.0)
    seed = data.get("seed", 0)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise _BadRequest("max_tokens must be a positive integer")
    if not isinstance(temperature, int | float) or not isinstance(seed, int):
        raise _BadRequest("temperature must be a number and seed an integer")
    # Images after some text make an interleaved request; images first are the plain kind.
    first_text = next((i for i, t in enumerate(prompt_parts) if t != IMAGE_SLOT), None)
    interleaved = first_text is not None and IMAGE_SLOT in prompt_parts[first_text:]
    if not interleaved:
        prompt_parts = [t for t in prompt_parts if t != IMAGE_SLOT]
    return GenerateRequest(
        interleaved=interleaved,
        prompt="".join(prompt_parts),
        images=tuple(images),
        system=system,
        max_new_tokens=max_tokens,
        temperature=float(temperature),
        seed=seed,
    )


def _completion(text: str, finish_reason: str | None, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason or "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


def _error(status: int, message: str, kind: str = "invalid_request_error") -> Response:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def build_app(
    backend: Any,
    *,
    model_name: str = "test-model",
    require_key: str | None = None,
    faults: Sequence[Fault] = (),
    rules: Mapping[str, Fault] | None = None,
    mix: FaultMix | None = None,
    latency_s: Latency = 0.0,
    capacity: int | None = None,
    stats: ServerStats | None = None,
    record: bool = True,
) -> tuple[ASGIApp, ServerStats]:
    """The ASGI app (fault injector around a Starlette app) and its stats object."""
    be = as_backend(backend)
    inline = bool(getattr(be, "inline", False))
    lock = threading.Lock()
    st = stats if stats is not None else ServerStats()

    def run_locked(reqs: list[GenerateRequest]) -> list[Generation]:
        with lock:
            return list(be.generate_batch(reqs))

    async def chat(request: Request) -> Response:
        if require_key is not None:
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {require_key}":
                shown = auth.removeprefix("Bearer ") or "none"
                return _error(401, f"Incorrect API key provided: {shown}")
        try:
            data = json.loads(await request.body())
        except ValueError:
            return _error(400, "body is not valid JSON")
        if not isinstance(data, dict) or data.get("model") != model_name:
            name = data.get("model") if isinstance(data, dict) else None
            return _error(404, f"The model {name!r} does not exist", "not_found_error")
        try:
            req = _to_request(data)
        except _BadRequest as exc:
            return _error(400, str(exc))
        if inline:
            gens = be.generate_batch([req])
        else:
            gens = await asyncio.to_thread(run_locked, [req])
        gen = gens[0]
        if gen.error is not None:
            return _error(500, f"backend failed: {gen.error}", "server_error")
        return JSONResponse(_completion(gen.text, gen.finish_reason, model_name))

    async def models(request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": model_name, "object": "model", "owned_by": "vlmtrust-tests"}],
            }
        )

    app = Starlette(
        routes=[
            Route(CHAT_PATH, chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )
    injector = FaultInjector(
        app,
        faults=faults,
        rules=rules,
        mix=mix,
        latency_s=latency_s,
        capacity=capacity,
        stats=st,
        record=record,
    )
    return injector, st


# --------------------------------------------------------------------------- serving


def _config(app: ASGIApp, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_config=None,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        ws="none",
        http="auto",  # httptools when installed, else h11
        timeout_keep_alive=30,
        timeout_graceful_shutdown=2,
        backlog=4096,
    )


def _bound_socket(port: int = 0) -> socket.socket:
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto is
    # TCP, and without it Nagle + delayed ACK add ~40 ms to every response (head, then body).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    return sock


@contextmanager
def serve(
    backend: Any,
    *,
    faults: Sequence[Fault] = (),
    rules: Mapping[str, Fault] | None = None,
    mix: FaultMix | None = None,
    latency_s: Latency = 0.0,
    capacity: int | None = None,
    model_name: str = "test-model",
    require_key: str | None = None,
    log_level: str = "critical",
) -> Iterator[ServedURL]:
    """Serve ``backend`` on a free 127.0.0.1 port in a background thread.

    Yields the base URL (``http://127.0.0.1:PORT/v1``) carrying ``.stats``.
    """
    app, stats = build_app(
        backend,
        model_name=model_name,
        require_key=require_key,
        faults=faults,
        rules=rules,
        mix=mix,
        latency_s=latency_s,
        capacity=capacity,
    )
    sock = _bound_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, log_level))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="openai-test-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    try:
        yield ServedURL(f"http://127.0.0.1:{port}/v1", stats)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve in this process until SIGINT/SIGTERM (benchmarks run it as a subprocess)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    ap.add_argument("--model-name", default="test-model")
    ap.add_argument("--backend", choices=["constant", "echo"], default="constant")
    ap.add_argument("--capacity", type=int, default=None, help="answers in progress at most")
    ap.add_argument("--fault-rate", type=float, default=0.0, help="share of faulty requests")
    ap.add_argument("--late", type=float, default=0.1, help="share of late answers (of all)")
    ap.add_argument("--late-s", type=float, default=5.0, help="how late a late answer is")
    ap.add_argument("--retry-after", type=float, default=1.0, help="Retry-After of a 429")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    args = ap.parse_args(argv)
    backend: Any = ConstantBackend() if args.backend == "constant" else EchoBackend()
    mix = (
        standard_mix(
            args.fault_rate,
            late=min(args.late, args.fault_rate),
            late_s=args.late_s,
            retry_after=args.retry_after,
            seed=args.seed,
        )
        if args.fault_rate > 0
        else None
    )
    app, _ = build_app(
        backend,
        model_name=args.model_name,
        latency_s=args.latency,
        capacity=args.capacity,
        mix=mix,
        record=False,
    )
    sock = _bound_socket(args.port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, "warning"))

    async def announce_when_started() -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        print(f"READY http://127.0.0.1:{port}/v1", flush=True)

    async def run() -> None:
        task = asyncio.ensure_future(announce_when_started())
        await server.serve(sockets=[sock])
        task.cancel()

    asyncio.run(run())
    sys.exit(0)


if __name__ == "__main__":
    main()
