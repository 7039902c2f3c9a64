"""Backend options (``--model-option KEY=VALUE``): parsed and checked before any model loads.

Only the ``openai:`` backend takes options (:data:`vlmtrust.models.openai_compat.OPTIONS`:
timeout, retries, concurrency, a requests-per-second limit, image encoding, ...); the checked
values go to :func:`vlmtrust.models.loader.load_model` as keyword arguments and end up in
``spec.json``. A key is never an option: a name that looks like one is refused with a line
saying to use the environment variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from vlmtrust.core.errors import InputError
from vlmtrust.models.loader import parse_spec

__all__ = ["check_model_options", "parse_model_options"]

_SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "auth",
        "authorization",
        "bearer",
        "credential",
        "credentials",
        "cookie",
    }
)


def _looks_secret(name: str) -> bool:
    """``api_key``, ``token``, ``openai_secret``...; ``api_key_env`` names a variable: fine."""
    words = name.lower().replace("-", "_").split("_")
    return bool(_SECRET_WORDS.intersection(words)) and words[-1] != "env"


def _secret_refusal(name: str) -> InputError:
    return InputError(
        f"--model-option {name}: keys are never given as options (they would be stored in "
        "spec.json and the shell history); export the key as OPENAI_API_KEY, or put it in "
        "another variable and pass --model-option api_key_env=THAT_VARIABLE"
    )


def parse_model_options(items: Sequence[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` items (the command line's ``--model-option``) as a dict; later ones win.

    Values are never echoed in errors (a key pasted by mistake must not reach the terminal).

    Example:
        >>> parse_model_options(["timeout_s=30", "concurrency=4"])
        {'timeout_s': '30', 'concurrency': '4'}
    """
    out: dict[str, str] = {}
    for n, item in enumerate(items or [], 1):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InputError(
                f"--model-option number {n} is not KEY=VALUE (e.g. --model-option timeout_s=30)"
            )
        if _looks_secret(key):
            raise _secret_refusal(key)
        out[key] = value
    return out


def check_model_options(spec: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check ``options`` for the backend of ``spec`` and return them typed.

    Args:
        spec: a model spec (its scheme picks the backend).
        options: ``{name: value}`` from :func:`parse_model_options` or Python values.

    Returns:
        The keyword arguments for :func:`~vlmtrust.models.loader.load_model`.

    Raises:
        InputError: one line: a key-like name, an unknown name (with the valid ones), a bad
            value, or a backend that takes no options.
        ModelSpecError: ``spec`` does not parse.
    """
    if not options:
        return {}
    for name in options:
        if _looks_secret(str(name)):
            raise _secret_refusal(str(name))
    ms = parse_spec(spec)
    if ms.scheme == "openai":
        from vlmtrust.models.openai_compat import check_options

        return check_options(options)
    names = ", ".join(sorted(str(k) for k in options))
    raise InputError(
        f"model {spec}: the {ms.scheme}: backend takes no --model-option (got {names}); "
        "options apply to openai:MODEL@URL models only"
    )
