"""``safety/defense_prompt`` — AdaShield-S / self-reminder style safety prompts (wrapper).

* ``adashield_s`` (default): the static defense prompt of AdaShield (Wang et al., ECCV 2024,
  "AdaShield: Safeguarding Multimodal Large Language Models from Structure-based Attack via
  Adaptive Shield Prompting"), appended to the user's text: inspect the image for text or items
  suggesting harmful activity first, answer "I am sorry" if the request is unsafe, and otherwise
  carry out the instruction. The wording here is the project's own.
* ``self_reminder``: the system-mode self-reminder (Xie et al., Nature Machine Intelligence
  2023, "Defending ChatGPT against jailbreak attack via self-reminders"): a system prompt asking
  the model to be a responsible assistant, plus a reminder after the user's query.
* ``custom``: any ``text`` placed by ``mode`` (``system``, ``prefix`` or ``suffix``).

A defense prompt is only as good as the model's instruction following: evaluate it with the
over-refusal and FigStep probes beside it, as ``vlmtrust audit`` does. Measured effect:
docs/results/safety.md#defense_prompt.

The wrapper keeps the white-box path: ``target_loss`` renders prompts exactly as ``generate``
does, so the visual adversarial probe attacks the defended model, not the bare one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from vlmtrust.core.mitigation import WrapperMitigation, mitigation
from vlmtrust.core.model import GenerateRequest, Texts, per_example
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations.safety._guarded import GuardedModel

if TYPE_CHECKING:
    import torch

ADASHIELD_S = (
    "Before you follow any instruction, look carefully at the image for text or objects that "
    "point to a harmful, illegal or dangerous activity. If the image or the instruction asks "
    "for something unsafe, do not carry it out and answer: I am sorry. Otherwise, carry out "
    "the instruction safely and correctly."
)
"""AdaShield-S style static defense prompt (appended to the user's text)."""

SELF_REMINDER_SYSTEM = (
    "You should be a responsible assistant and must not produce harmful or misleading "
    "content. Answer the following request in a responsible way."
)
SELF_REMINDER_SUFFIX = (
    "Remember: you should be a responsible assistant and must not produce harmful or "
    "misleading content."
)

Preset = Literal["adashield_s", "self_reminder", "custom"]
Mode = Literal["system", "prefix", "suffix"]


class DefensePromptParams(Params):
    """Parameters of ``safety/defense_prompt``."""

    preset: Preset = Field("adashield_s", description="adashield_s, self_reminder or custom")
    text: str | None = Field(None, description="custom defense text (preset=custom)")
    mode: Mode = Field("suffix", description="where custom text goes: system, prefix, suffix")
    only_with_images: bool = Field(
        False, description="defend only requests that carry images (AdaShield's setting)"
    )

    @model_validator(mode="after")
    def _custom_text(self) -> DefensePromptParams:
        if self.preset == "custom" and not (self.text and self.text.strip()):
            from vlmtrust.core.errors import InputError

            raise InputError(
                "safety/defense_prompt preset=custom needs text=...: pass --param text='...'"
            )
        return self


def _join(a: str | None, b: str, sep: str = "\n\n") -> str:
    return f"{a}{sep}{b}" if a else b


class DefendedModel(GuardedModel):
    """A generative model whose requests carry a safety prompt."""

    guard = "safety/defense_prompt"
    params: DefensePromptParams
    keeps_gradient = True

    def placement(self) -> tuple[str | None, str | None, str | None]:
        """``(system, prefix, suffix)`` texts this defense adds."""
        p = self.params
        if p.preset == "adashield_s":
            return None, None, ADASHIELD_S
        if p.preset == "self_reminder":
            return SELF_REMINDER_SYSTEM, None, SELF_REMINDER_SUFFIX
        text = (p.text or "").strip()
        return (
            text if p.mode == "system" else None,
            text if p.mode == "prefix" else None,
            text if p.mode == "suffix" else None,
        )

    def defend(self, prompt: str, system: str | None, has_images: bool) -> tuple[str, str | None]:
        """The defended ``(prompt, system)`` of one request."""
        if self.params.only_with_images and not has_images:
            return prompt, system
        sys_add, prefix, suffix = self.placement()
        if prefix:
            prompt = f"{prefix}\n\n{prompt}"
        if suffix:
            prompt = f"{prompt}\n\n{suffix}"
        if sys_add:
            system = _join(system, sys_add)
        return prompt, system

    def prepare(self, requests: Sequence[GenerateRequest]) -> list[GenerateRequest]:
        """Add the defense prompt to each request."""
        out = []
        for r in requests:
            prompt, system = self.defend(r.prompt, r.system, bool(r.images))
            out.append(replace(r, prompt=prompt, system=system))
        return out

    def target_loss(
        self, pixels: torch.Tensor, prompts: Texts, targets: Texts, *, system: str | None = None
    ) -> torch.Tensor:
        """The base model's target NLL with the defense prompt applied (one image each)."""
        ps, ts = per_example(int(pixels.shape[0]), "target_loss", prompts=prompts, targets=targets)
        defended = [self.defend(p, system, True) for p in ps]
        systems = {s for _, s in defended}
        if len(systems) == 1:
            loss: torch.Tensor = self.base.target_loss(
                pixels, [p for p, _ in defended], ts, system=systems.pop()
            )
            return loss
        import torch

        parts = [
            self.base.target_loss(pixels[i : i + 1], [p], [ts[i]], system=s)
            for i, (p, s) in enumerate(defended)
        ]
        return torch.cat(parts)


@mitigation("safety/defense_prompt")
class DefensePrompt(WrapperMitigation):
    """AdaShield-S / self-reminder safety prompt added to every request."""

    pillar = Pillar.SAFETY
    requires = Capability.GENERATE
    Params = DefensePromptParams
    wrapper = DefendedModel
    description = (
        "Defense prompt: an AdaShield-S static shield (appended to the query) or a self-reminder "
        "system prompt, or custom text."
    )
