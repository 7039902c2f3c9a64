"""The one model-spec parser and :func:`load_model`, the entry point every command uses.

Specs (see the README table): ``hf:NAME_OR_DIR``, ``openai:MODEL@BASE_URL``,
``reference:NAME``, ``hardened:DIR``, ``mock:generative`` / ``mock:dual`` (scripted, for tests),
and ``none`` (no model: a data-only run of probes that need none).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from vlmtrust.core.errors import ModelSpecError
from vlmtrust.core.model import Model
from vlmtrust.core.redact import MASK, credentials_in, redact_text


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec."""

    scheme: Literal["hf", "openai", "reference", "hardened", "mock", "none"]
    target: str
    """``hf``: repo id or dir; ``openai``: model name; ``reference``: name; ``hardened``: dir;
    ``mock``: ``generative`` or ``dual``."""
    base_url: str | None = None
    raw: str = ""


SPEC_HELP = (
    "use hf:REPO_OR_DIR, openai:MODEL@BASE_URL (e.g. openai:llava@http://127.0.0.1:8000/v1), "
    "reference:NAME (see `vlmtrust list models`) or hardened:DIR"
)


KEY_ENV = {"openai": "$OPENAI_API_KEY (or the variable api_key_env names)", "hf": "$HF_TOKEN"}
"""Where each backend reads its credentials from (the only place they may come from)."""

_OPENAI_URL = re.compile(r"@(?=https?://)")


def parse_spec(spec: str) -> ModelSpec:
    """Parse a model spec string.

    Error messages show the spec with credentials redacted; a spec that carries one (URL
    user-info, ``?api_key=…``, a token) is refused, naming the environment variable to use.

    Example:
        >>> parse_spec("openai:llava@http://127.0.0.1:8000/v1").base_url
        'http://127.0.0.1:8000/v1'
        >>> parse_spec("reference:clip").target
        'clip'
    """
    s = spec.strip()
    if s == "none":  # a data-only run of probes that need no model
        return ModelSpec("none", "", raw=s)
    shown = _shown(s)
    scheme, sep, rest = s.partition(":")
    if not sep or not rest:
        raise ModelSpecError(f"model spec {shown!r} has no scheme: {SPEC_HELP}")
    found = credentials_in(s)
    if found:
        env = KEY_ENV.get(scheme, "it in the environment")
        raise ModelSpecError(
            f"model spec {shown!r} carries a credential ({', '.join(found)}); a spec is printed "
            f"and written to the results, so keys never go in it: remove it and set {env}"
        )
    if scheme == "openai":
        # The model name may contain '@'; the URL starts at the first '@http(s)://'.
        m = _OPENAI_URL.search(rest)
        name, url = (rest[: m.start()], rest[m.end() :]) if m else ("", "")
        if not name or not url:
            raise ModelSpecError(
                f"model spec {shown!r}: expected openai:MODEL@http(s)://HOST[:PORT]/v1"
            )
        return ModelSpec("openai", name, base_url=url.rstrip("/"), raw=s)
    if scheme == "mock":
        if rest not in ("generative", "dual"):
            raise ModelSpecError(f"model spec {shown!r}: expected mock:generative or mock:dual")
        return ModelSpec("mock", rest, raw=s)
    if scheme in ("hf", "reference", "hardened"):
        return ModelSpec(scheme, rest, raw=s)  # type: ignore[arg-type]
    raise ModelSpecError(f"model spec {shown!r}: unknown scheme {scheme!r}: {SPEC_HELP}")


def _shown(spec: str) -> str:
    """``spec`` as error messages may show it, credentials redacted.

    In a malformed ``openai:`` spec (no ``@http(s)://``), what lies between the model name and
    the last ``@`` is hidden too: it may be user-info typed without its scheme.
    """
    text = redact_text(spec)
    scheme, _, rest = text.partition(":")
    if scheme == "openai" and not _OPENAI_URL.search(rest) and rest.count("@") > 1:
        name, _, tail = rest.partition("@")
        text = f"openai:{name}@{MASK}@{tail.rpartition('@')[2]}"
    return text


def load_model(spec: str, **kwargs: Any) -> Model:
    """Load a model from a spec (the one entry point every command uses).

    Keyword arguments go to the backend (``device``, ``dtype``, ``concurrency``, ...).
    """
    if spec.strip() == "none":  # a data-only run: probes that need no model
        from vlmtrust.models.none import NoModel

        return NoModel()
    ms = parse_spec(spec)
    if ms.scheme == "openai":
        from vlmtrust.models.openai_compat import OpenAICompatModel

        assert ms.base_url is not None
        return OpenAICompatModel(ms.target, base_url=ms.base_url, spec=ms.raw, **kwargs)
    if ms.scheme == "mock":
        from vlmtrust.models.mock import load_mock

        return load_mock(ms.target, spec=ms.raw, **kwargs)
    if ms.scheme == "reference":
        from vlmtrust.models.reference import reference_path

        return _load_hf(str(reference_path(ms.target)), spec=ms.raw, **kwargs)
    if ms.scheme == "hardened":
        from vlmtrust.models.hardened import load_hardened

        model: Model = load_hardened(ms.target, spec=ms.raw, **kwargs)
        return model
    return _load_hf(ms.target, spec=ms.raw, **kwargs)


def _load_hf(target: str, *, spec: str, **kwargs: Any) -> Model:
    from vlmtrust.models.hf_common import detect_kind

    kind = detect_kind(target)
    if kind == "dual":
        from vlmtrust.models.hf_dual import HFDualEncoder

        return HFDualEncoder(target, spec=spec, **kwargs)
    from vlmtrust.models.hf_generative import HFGenerativeModel

    return HFGenerativeModel(target, spec=spec, **kwargs)
