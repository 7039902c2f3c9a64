"""``robustness/tecoa``: supervised adversarial fine-tuning of a dual encoder (Mao et al. 2023).

``min_θ E max_{‖δ‖∞≤ε} CE(scale · cos(f_θ(x+δ), T), y)`` with the class-prompt embeddings
``T`` frozen; only the vision tower is trained (AdamW), the inner maximisation is PGD from
:mod:`vlmtrust.attacks.pgd`. Trains on SynthWorld in-distribution shapes by default (or the
labeled ``--data``); writes a ``save_pretrained`` directory loadable as ``hardened:DIR``.

Measured effect: docs/results/robustness.md#tecoa
"""

from __future__ import annotations

from typing import Any

from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.types import Pillar
from vlmtrust.mitigations._train import TunedCopy
from vlmtrust.mitigations.robustness._advtrain import AdvTrainParams


class TeCoAParams(AdvTrainParams):
    """Parameters of ``robustness/tecoa`` (see :class:`AdvTrainParams`)."""


@mitigation("robustness/tecoa")
class TeCoA(TunedCopy):
    """Text-guided contrastive adversarial training of the vision tower (supervised)."""

    pillar = Pillar.ROBUSTNESS
    Params = TeCoAParams
    description = (
        "TeCoA (Mao et al. 2023): adversarial fine-tuning of a dual encoder's vision tower "
        "against PGD on the zero-shot cross-entropy with frozen class prompts."
    )
    params: TeCoAParams

    def tune(self, model: Any, ctx: MitigationContext) -> tuple[Any, dict[str, Any]]:
        """Adversarial fine-tuning of a copy of the vision tower (PGD, frozen class prompts)."""
        from vlmtrust.mitigations.robustness._advtrain import harden_dual

        return harden_dual(model, ctx, self.params, "tecoa")
