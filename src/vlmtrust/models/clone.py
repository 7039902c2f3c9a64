"""Copies of local models with their own weights (for reference models and fine-tuning)."""

from __future__ import annotations

import copy
from typing import Any

from vlmtrust.core.errors import CapabilityError

__all__ = ["clone", "unwrap"]


def unwrap(model: Any) -> Any:
    """The backend under runner wrappers (the cache), which forward everything else."""
    seen = 0
    while "inner" in getattr(model, "__dict__", {}) and seen < 8:
        model = model.__dict__["inner"]
        seen += 1
    return model


def clone(model: Any, label: str) -> Any:
    """A copy of a local ``hf:`` model with its own weights (the processors are shared).

    Raises:
        CapabilityError: the model has no local torch module to copy (an API model).
    """
    import torch

    base = unwrap(model)
    module = getattr(base, "model", None)
    if not isinstance(module, torch.nn.Module):
        raise CapabilityError(
            f"model {getattr(model, 'spec', '?')} has no local weights to fine-tune reference "
            "models from; pass reference_models=SPEC,… instead"
        )
    twin = copy.copy(base)
    twin.model = copy.deepcopy(module)
    twin.spec = f"{base.spec}#{label}"
    twin.fingerprint = f"{base.fingerprint}#{label}"
    return twin
