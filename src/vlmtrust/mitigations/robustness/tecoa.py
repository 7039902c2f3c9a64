"""``robustness/tecoa``: supervised adversarial fine-tuning of a dual encoder (Mao et al. 2023).

``min_θ E max_{‖δ‖∞≤ε} CE(scale · cos(f_θ(x+δ), T), y)`` with the class-prompt embeddings
``T`` frozen; only the vision tower is trained (AdamW), the inner maximisation is PGD from
:mod:`vlmtrust.attacks.pgd`. Trains on SynthWorld in-distribution shapes by default (or the
labeled ``--data``); writes a ``save_pretrained`` directory loadable as ``hardened:DIR``.

Measured effect: docs/results/robustness.md#tecoa
"""

from __future__ import annotations

from typing import Any

from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import save_tuned
from vlmtrust.mitigations.robustness._advtrain import AdvTrainParams


class TeCoAParams(AdvTrainParams):
    """Parameters of ``robustness/tecoa`` (see :class:`AdvTrainParams`)."""


@mitigation("robustness/tecoa")
class TeCoA(Mitigation):
    """Text-guided contrastive adversarial training of the vision tower (supervised)."""

    pillar = Pillar.ROBUSTNESS
    kind = "model"
    requires = Capability.GRADIENT | Capability.TRAIN
    Params = TeCoAParams
    description = (
        "TeCoA (Mao et al. 2023): adversarial fine-tuning of a dual encoder's vision tower "
        "against PGD on the zero-shot cross-entropy with frozen class prompts."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Fine-tune a copy of ``model`` and write it to ``ctx.out_dir``."""
        from vlmtrust.mitigations.robustness._advtrain import harden_dual

        assert isinstance(self.params, TeCoAParams)
        hardened, summary = harden_dual(model, ctx, self.params, "tecoa")
        return save_tuned(hardened, model.spec, ctx, self.name, self.params, summary)
