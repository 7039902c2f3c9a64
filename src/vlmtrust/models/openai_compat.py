"""The ``openai:MODEL@BASE_URL`` backend: any OpenAI-compatible chat-completions endpoint.

Works with vLLM, Ollama, llama.cpp's server, LM Studio, TGI's OpenAI route and hosted APIs.
Images travel as base64 data URLs (PNG by default, JPEG on request), optionally downscaled.

Behaviour worth knowing:

* Requests run concurrently, at most ``concurrency`` in flight (an :class:`asyncio.Semaphore`),
  over keep-alive ``httpx.AsyncClient`` connections created per event loop (closed when the
  loop ends, or by :meth:`OpenAICompatModel.aclose`); results come back in input order.
* Transient failures are retried with exponential backoff and full jitter (Brooker, "Exponential
  Backoff and Jitter", AWS Architecture Blog 2015): HTTP 408/429/500/502/503/504, timeouts,
  dropped connections, malformed JSON and bodies without ``choices``. A ``Retry-After`` header
  (seconds or HTTP date; also OpenAI's ``retry-after-ms``) replaces the computed delay, capped at
  ``backoff_max_s``.
* Other 4xx answers (400, 401, 403, 404, ...) are not retried.
* A request that still fails becomes ``Generation(text="", error="...")``: one bad request never
  stops the run.
* The API key is read only from the environment variable ``api_key_env`` and sent as
  ``Authorization: Bearer``. It never appears in the fingerprint, ``repr``, errors or results;
  any server text that echoes it is redacted.

Example:
    >>> from vlmtrust.models.loader import load_model
    >>> m = load_model("openai:llava@http://127.0.0.1:8000/v1", concurrency=8)
    >>> m.fingerprint
    'openai:llava@http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import io
import json
import math
import os
import random
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from PIL import Image

from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest, Generation, ModelKind
from vlmtrust.core.types import Capability

__all__ = ["OpenAICompatModel", "RETRYABLE_STATUS", "parse_retry_after"]

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that are retried (request timeout, rate limit, transient server errors)."""

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


@dataclass
class _LoopState:
    """What belongs to one event loop: the HTTP clients, the semaphore, the closing guard.

    There is one single-connection keep-alive ``httpx.AsyncClient`` per concurrency slot (a
    "lane"); a request holds the semaphore and one free lane. This keeps the connection pool of
    each client trivial: httpcore's pool scans every connection for every queued request, which
    made one 64-connection client ~6x slower than 64 one-connection clients on 2 cores.
    """

    clients: list[httpx.AsyncClient]
    free: list[httpx.AsyncClient]
    semaphore: asyncio.Semaphore
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
    """One attempt's result: a final generation, or a retryable failure."""

    generation: Generation | None
    reason: str
    retry_after: float | None = None


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
        backoff_base_s: first backoff ceiling; the n-th retry waits uniform(0, base * 2**(n-1)).
        backoff_max_s: ceiling on any wait, ``Retry-After`` included.
        max_image_side: downscale images whose longer side exceeds this (aspect kept).
        image_format: ``"png"`` (lossless, default) or ``"jpeg"``.
        jpeg_quality: JPEG quality when ``image_format="jpeg"``.

    Attributes:
        stats: counters for the report: ``requests``, ``attempts``, ``retries``, ``errors``.

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
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30,
        max_image_side: int | None = None,
        image_format: Literal["png", "jpeg"] = "png",
        jpeg_quality: int = 90,
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
        _check(concurrency >= 1, "concurrency", concurrency, "use an integer >= 1")
        _check(timeout_s > 0, "timeout_s", timeout_s, "use a positive number of seconds")
        _check(max_retries >= 0, "max_retries", max_retries, "use an integer >= 0")
        _check(backoff_base_s >= 0, "backoff_base_s", backoff_base_s, "use seconds >= 0")
        _check(backoff_max_s >= 0, "backoff_max_s", backoff_max_s, "use seconds >= 0")
        _check(
            max_image_side is None or max_image_side >= 1,
            "max_image_side",
            max_image_side,
            "use None or a side length >= 1 pixel",
        )
        _check(image_format in ("png", "jpeg"), "image_format", image_format, 'use "png" or "jpeg"')
        _check(1 <= jpeg_quality <= 100, "jpeg_quality", jpeg_quality, "use 1..100")
        if not api_key_env or "=" in api_key_env:
            raise InputError(
                f"api_key_env {api_key_env!r} is not an environment variable name; "
                "use e.g. OPENAI_API_KEY"
            )

        self.model_name = model
        self.base_url = url
        self.spec = spec
        self.fingerprint = f"openai:{model}@{url}"
        self.api_key_env = api_key_env
        self.concurrency = int(concurrency)
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        self.max_image_side = max_image_side
        self.image_format: Literal["png", "jpeg"] = image_format
        self.jpeg_quality = int(jpeg_quality)
        self.stats: dict[str, int] = {"requests": 0, "attempts": 0, "retries": 0, "errors": 0}
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
        state = _LoopState(clients, list(clients), asyncio.Semaphore(self.concurrency), api_key)
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
        self.stats["requests"] += 1
        try:
            body = await self._body(req, encoded)
        except Exception as exc:  # a broken image must not stop the batch
            self.stats["errors"] += 1
            return Generation(
                text="", error=f"could not encode the request images: {_first_line(exc)}"
            )
        async with state.semaphore:
            client = state.free.pop()
            try:
                gen = await self._with_retries(client, state.api_key, body)
            finally:
                state.free.append(client)
        if gen.error is not None:
            self.stats["errors"] += 1
            # Every error text is built from server answers or exceptions: scrub the key.
            gen = Generation(text="", error=_redact(gen.error, state.api_key))
        return gen

    async def _with_retries(
        self, client: httpx.AsyncClient, api_key: str | None, body: bytes
    ) -> Generation:
        attempts = 0
        while True:
            attempts += 1
            self.stats["attempts"] += 1
            outcome = await self._attempt(client, api_key, body)
            if outcome.generation is not None:
                return outcome.generation
            if attempts > self.max_retries:
                plural = "s" if attempts != 1 else ""
                return Generation(
                    text="", error=f"{outcome.reason}, after {attempts} attempt{plural}"
                )
            self.stats["retries"] += 1
            await asyncio.sleep(self._delay(attempts, outcome.retry_after))

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
            return _Outcome(None, f"timeout ({type(exc).__name__}, limit {self.timeout_s:g} s)")
        except httpx.UnsupportedProtocol:
            return _Outcome(
                Generation(text="", error=f"unsupported URL {self._endpoint}; use http(s)://"), ""
            )
        except httpx.TransportError as exc:
            return _Outcome(None, f"connection error ({type(exc).__name__}: {_first_line(exc)})")
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
            return _Outcome(None, reason, retry_after)
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
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            return _Outcome(None, f"malformed JSON in the response ({len(content)} bytes)")
        if not isinstance(data, dict):
            return _Outcome(None, "malformed response: the JSON body is not an object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            detail = _server_message(content, api_key)
            return _Outcome(
                None, "malformed response: no choices" + (f" ({detail})" if detail else "")
            )
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            return _Outcome(None, "malformed response: choices[0] has no message")
        text = _content_text(message.get("content"))
        if text is None:
            return _Outcome(None, "malformed response: choices[0].message.content is not text")
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
        for image in req.images:
            url = await self._data_url(image, encoded)
            parts.append({"type": "image_url", "image_url": {"url": url}})
        parts.append({"type": "text", "text": req.prompt})
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
