"""Credentials out of everything vlmtrust prints or stores.

API keys belong in the environment (e.g. ``$OPENAI_API_KEY``, ``$HF_TOKEN``), never in a model
spec. :func:`credentials_in` names what looks like one in a piece of text, so that callers can
refuse it: URL user-info (``http://user:KEY@host``); a query or fragment parameter whose name
looks like a credential (``api_key``, ``key``, ``token``, ``access_token``, ``secret``,
``password``, ``sig``, ``signature``, ``auth…``; any case); a ``NAME=VALUE`` pair named
``token``, ``secret``, ``password``, ``api_key`` and the like; token-shaped strings (``hf_…``,
``sk-…``, ``Bearer …``). :func:`redact_text` replaces each such value with ``***`` wherever
text is shown or written.

Example:
    >>> redact_text("openai:m@http://user:KEY@host/v1?api_key=KEY&api-version=2")
    'openai:m@http://***@host/v1?api_key=***&api-version=2'
    >>> credentials_in("openai:m@http://host/v1?Token=abc")
    ["query parameter 'Token'"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
_NAME_WORDS = ("key", "token", "secret", "passw", "auth", "credential", "signature")
_NAME_PARTS = frozenset({"sig", "pwd", "pass", "jwt", "bearer", "sas"})
_PAIR = re.compile(
    r"(?i)(?<![\w-])((?:api|access|auth|secret|private|client)[_-]?(?:key|token|secret)"
    r"|token|secret|password|passwd)(=)([^\s&'\",;]+)"
)
_TOKENS = (
    re.compile(r"\bhf_[A-Za-z0-9]{20,}"),  # Hugging Face access tokens
    re.compile(r"\bsk-(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{20,}"),  # OpenAI-style secret keys
    re.compile(r"(?i)(?<=\bbearer )[A-Za-z0-9._~+/\-]{8,}=*"),  # an Authorization header value
)


def is_credential_name(name: str) -> bool:
    """True when a parameter name looks like it carries a credential (case-insensitive).

    Example:
        >>> [is_credential_name(n) for n in ("api_key", "X-Amz-Signature", "api-version")]
        [True, True, False]
    """
    low = unquote(name).lower()
    if any(word in low for word in _NAME_WORDS):
        return True
    return any(part in _NAME_PARTS for part in re.split(r"[^a-z0-9]+", low))


def _split_url(url: str) -> tuple[str, str, str, str, str]:
    """``scheme://``, user-info (with its ``@``, or ""), host+path, ``?query`` and ``#fragment``."""
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    userinfo = ""
    if "@" in authority:
        user, _, host = authority.rpartition("@")
        userinfo, authority = user + "@", host
    tail, hash_, fragment = tail.partition("#")
    path, q, query = tail.partition("?")
    return scheme + "://", userinfo, authority + path, q + query, hash_ + fragment


def _params(part: str) -> list[tuple[str, str, str]]:
    """``(name, "=", value)`` triples of a ``?query`` / ``#fragment`` (without its mark)."""
    return [p.partition("=") for p in re.split(r"[&;]", part[1:])] if part else []


def _credential_params(part: str) -> list[str]:
    return [name for name, eq, value in _params(part) if eq and value and is_credential_name(name)]


def _mask_params(part: str) -> str:
    if not part:
        return part
    pieces = re.split(r"([&;])", part[1:])
    for i in range(0, len(pieces), 2):
        name, eq, value = pieces[i].partition("=")
        if eq and value and is_credential_name(name):
            pieces[i] = f"{name}={MASK}"
    return part[0] + "".join(pieces)


def redact_url(url: str) -> str:
    """``url`` with its user-info and credential-like parameter values replaced by ``***``.

    Example:
        >>> redact_url("https://u:p@h.example/v1?sig=abc#x")
        'https://***@h.example/v1?sig=***#x'
    """
    scheme, userinfo, rest, query, fragment = _split_url(url)
    return (
        scheme
        + (MASK + "@" if userinfo else "")
        + rest
        + _mask_params(query)
        + _mask_params(fragment)
    )


def url_credentials(url: str) -> list[str]:
    """What in ``url`` looks like a credential: ``"user-info"`` and ``"query parameter 'NAME'"``."""
    _, userinfo, _, query, fragment = _split_url(url)
    found = ["user-info"] if userinfo else []
    found += [f"query parameter {n!r}" for n in _credential_params(query)]
    found += [f"fragment parameter {n!r}" for n in _credential_params(fragment)]
    return found


def credentials_in(text: str) -> list[str]:
    """Everything in ``text`` that looks like a credential, named (never its value); [] if none."""
    found: list[str] = []
    for m in _URL.finditer(text):
        found += url_credentials(m.group(0))
    rest = _URL.sub(" ", text)
    found += [f"parameter {m.group(1)!r}" for m in _PAIR.finditer(rest)]
    if any(p.search(text) for p in _TOKENS):
        found.append("a token-shaped string")
    return list(dict.fromkeys(found))


def redact_text(text: str) -> str:
    """``text`` with every credential :func:`credentials_in` finds replaced by ``***``.

    Example:
        >>> redact_text("hf:org/model?token=hf_abcdefghijklmnopqrstuvwxyz")
        'hf:org/model?token=***'
    """
    if not text:
        return text
    out = text
    for pattern in _TOKENS:
        out = pattern.sub(MASK, out)
    out = _URL.sub(lambda m: redact_url(m.group(0)), out)
    return _PAIR.sub(lambda m: m.group(1) + m.group(2) + MASK, out)


def redact_data(value: Any) -> Any:
    """A copy of JSON-like ``value`` (dicts, lists, strings) with every string redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_data(v) for v in value)
    return value
