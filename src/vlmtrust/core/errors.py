"""Exceptions a user can act on: each renders as one line naming the input and the fix."""

from __future__ import annotations

from vlmtrust.core.redact import redact_text


class VlmtrustError(Exception):
    """Base class for errors with a one-line, user-facing message."""


class InputError(VlmtrustError):
    """A user input (file, manifest line, spec, parameter) is invalid.

    The message names the input and says how to fix it.
    """


class ImageLoadError(InputError):
    """An image could not be loaded safely."""


class ModelSpecError(InputError):
    """A model spec could not be parsed or resolved."""


class CapabilityError(VlmtrustError):
    """A model lacks a capability a probe or mitigation needs."""


class BackendError(VlmtrustError):
    """A model backend failed (after retries) for one request."""


def one_line(e: BaseException | str, limit: int = 400) -> str:
    """Render an exception (or text) as one line: the promise every user-facing error keeps.

    Library exceptions keep their message; others are prefixed with their type. Newlines are
    folded, credentials redacted (:func:`vlmtrust.core.redact.redact_text`) and very long
    messages cut.

    Example:
        >>> one_line(ValueError("bad" + chr(10) + "value"))
        'ValueError: bad | value'
    """
    if isinstance(e, BaseException):
        text = str(e).strip()
        if not isinstance(e, VlmtrustError):
            text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    else:
        text = e.strip()
    text = " | ".join(part.strip() for part in text.splitlines() if part.strip())
    text = redact_text(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
