"""Exceptions a user can act on: each renders as one line naming the input and the fix."""

from __future__ import annotations


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
