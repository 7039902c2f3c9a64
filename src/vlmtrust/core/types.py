"""Small enums shared by every layer."""

from __future__ import annotations

import enum


class Pillar(enum.StrEnum):
    """The review's four pillars, plus capability (measured beside them)."""

    PRIVACY = "privacy"
    FAIRNESS = "fairness"
    ROBUSTNESS = "robustness"
    SAFETY = "safety"
    CAPABILITY = "capability"


class Capability(enum.Flag):
    """What a model backend can do. Probes declare what they require."""

    NONE = 0
    EMBED = enum.auto()
    """``embed_images`` / ``embed_texts`` (dual encoders)."""
    GENERATE = enum.auto()
    """``generate(requests)`` (generative VLMs)."""
    GRADIENT = enum.auto()
    """Differentiable w.r.t. pixels in [0, 1] (white-box attacks)."""
    TRAIN = enum.auto()
    """Parameters can be fine-tuned (mitigations)."""

    def names(self) -> list[str]:
        """Member names contained in this flag, lowercased."""
        return [m.name.lower() for m in Capability if m.name and m.value and m in self]


class RiskBand(enum.StrEnum):
    """Risk band of a metric value against documented thresholds."""

    LOW = "low"
    MODERATE = "moderate"
    HIGH = "high"
