"""``robustness/tecoa``: supervised adversarial fine-tuning of a dual encoder (Mao et al. 2023).

``min_θ E max_{‖δ‖∞≤ε} CE(scale · cos(f_θ(x+δ), T), y)`` with the class-prompt embeddings
``T`` frozen; only the vision tower is trained (AdamW), the inner maximisation is PGD from
:mod:`vlmtrust.attacks.pgd`. Trains on SynthWorld in-distribution shapes by default (or the
labeled ``--data``); writes a ``save_pretrained`` directory loadable as ``hardened:DIR``.

Measured on reference:clip (seed 0, one CPU thread; before/after on 128 held-out shapes against
a 10-step PGD at the training budget):

* defaults (ε = 2/255, 150 steps, lr 1e-4; 93 s): robust accuracy 71.1% → 78.1%, clean 97.7% →
  98.4%. At 2/255 this 64×64 model is not near 0 to begin with, so the issue's "near 0 → ≥ 40%"
  cannot be shown at that budget;
* where it does collapse, ε = 8/255 (``-p eps=8/255 -p steps=600 -p lr=2e-4
  -p attack_steps=4``; 393 s): robust accuracy 12.5% → 40.6%, clean 97.7% → 88.3% (−9.4 points).

Two attempts to plant the 2/255 fragility in reference:clip failed, so it was not shipped. Both
tried an imperceptible per-class pattern (random ±1 signs, 16-px period, one per shape class): a
non-robust feature in the sense of Ilyas et al. 2019, "Adversarial Examples Are Not Bugs, They
Are Features". Each was checked with 10-step PGD on 128 fresh shapes. To reproduce them, run
``experiments/plant_fragility.py``.

* **Poisoned pre-training:** 8–16 shapes per batch carried another class's pattern and were
  captioned with that class; 2,000 steps, the shipped recipe otherwise.
  * Amplitudes 1–4/255: the model ignored the pattern. A triggered image was classified as the
    pattern's class in about 2% of cases. PGD left 62–66% at 2/255.
  * Amplitudes 4–8/255: PGD left 33% at 2/255, and clean accuracy fell from 98% to 85%.
* **Direct implant:** 300 steps of fine-tuning the vision tower, pushing triggered images
  (1–2/255) toward the pattern's class while holding clean embeddings in place. Robust accuracy
  fell to 4% at 2/255, but clean accuracy fell to 27%. Triggered images followed the pattern in
  only 9% of cases, chance level: the tower was damaged, not taught the pattern.

A 64 × 64 tower with 16 patch tokens cannot keep a feature that faint without losing the shapes.
"""

from __future__ import annotations

import json
from typing import Any

from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.types import Capability, Pillar
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
        out = ctx.out_dir
        hardened.save_pretrained(out)
        summary["base"] = model.spec
        (out / "hardening.json").write_text(
            json.dumps(
                {"mitigation": self.name, "params": self.params.model_dump(), **summary}, indent=2
            )
        )
        return HardenedArtifact(spec=f"hardened:{out}", out_dir=out, summary=summary)
