"""``robustness/fare``: unsupervised adversarial fine-tuning of a vision tower (FARE).

Schlarmann et al. 2024 ("Robust CLIP"): ``min_θ E max_{‖δ‖∞≤ε} ‖f_θ(x+δ) − f_orig(x)‖²₂`` —
the adversarial embedding is pulled back to the *original* clean embedding, so the tower keeps
its behaviour on clean inputs and can replace the vision tower of a generative VLM built on it
(VILLA's lesson: adversarial training in embedding space first).

* On a dual encoder: fine-tunes a copy's vision tower and writes it (``hardened:DIR``).
* On a LLaVA-class generative model: trains FARE on a dual encoder whose vision tower has the
  same architecture (``encoder=SPEC``; default ``reference:clip``, from which
  ``reference:vlm``'s tower was initialised), starting from the VLM's own tower weights
  (``from_model_tower``, default on: the anchor is the tower the VLM really uses), and swaps
  the robust tower in with :func:`swap_vision_tower`.

Measured effect: docs/results/robustness.md#fare (on a dual encoder: #tecoa)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import hardening_record, save_tuned, write_record
from vlmtrust.mitigations.robustness._advtrain import AdvTrainParams


class FAREParams(AdvTrainParams):
    """Parameters of ``robustness/fare`` (see :class:`AdvTrainParams`)."""

    lr: float = Field(5e-4, gt=0, lt=1, description="AdamW learning rate")

    encoder: str | None = Field(
        None,
        description="generative targets: dual encoder whose FARE tower is swapped in "
        "(default reference:clip)",
    )
    train_encoder: bool = Field(
        True, description="False: the encoder is already FARE-hardened, only swap it in"
    )
    from_model_tower: bool = Field(
        True,
        description="generative targets: start FARE from the VLM's own vision tower (its clean "
        "embeddings are the anchor); False: from the encoder's tower as it is",
    )


def _tower(gen_module: Any) -> Any:
    """The vision tower module of a LLaVA-class model."""
    for path in ("model.vision_tower", "vision_tower"):
        obj = gen_module
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj[0] if isinstance(obj, list | tuple) else obj
    raise InputError(
        "swap_vision_tower: the generative model has no vision_tower; use a LLaVA-class model"
    )


def _source_tower(dual_module: Any) -> Any:
    tower = getattr(dual_module, "vision_model", None)
    if tower is None:
        raise InputError("swap_vision_tower: the encoder has no vision_model; use a CLIP model")
    return tower


def _mapped_state(src: dict[str, Any], dst: dict[str, Any]) -> dict[str, Any]:
    """Source weights keyed like ``dst`` (handles a ``vision_model.`` prefix either way)."""
    candidates = [
        {k: k for k in dst},
        {k: k.removeprefix("vision_model.") for k in dst},
        {k: "vision_model." + k for k in dst},
    ]
    for mapping in candidates:
        if all(v in src for v in mapping.values()):
            return {k: src[v] for k, v in mapping.items()}
    missing = sorted(k for k in dst if k not in src and k.removeprefix("vision_model.") not in src)
    raise InputError(
        f"swap_vision_tower: the encoder's vision tower lacks {len(missing)} weights of the "
        f"generative model's tower (e.g. {missing[:1]}); use an encoder with the same architecture"
    )


def towers_match(gen_model: Any, dual_model: Any) -> bool:
    """Whether ``dual_model``'s vision tower can replace ``gen_model``'s (same keys, shapes)."""
    try:
        dst = _tower(gen_model.model).state_dict()
        src = _source_tower(dual_model.model).state_dict()
        mapped = _mapped_state(src, dst)
    except InputError:
        return False
    return all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in dst.items())


def load_tower_into_encoder(gen_model: Any, dual_model: Any) -> None:
    """Overwrite ``dual_model``'s vision tower (in place) with ``gen_model``'s weights.

    FARE's anchor ``f_orig`` is the tower the VLM actually uses. The encoder a VLM's tower came
    from may since have changed (reference:clip's fragility stage ran after reference:vlm took
    its tower; a VLM may have trained its tower), so the encoder only lends the projection.
    """
    import torch

    enc = _source_tower(dual_model.model)
    dst = enc.state_dict()
    try:
        mapped = _mapped_state(_tower(gen_model.model).state_dict(), dst)
    except InputError:
        raise InputError(
            "robustness/fare: the VLM's vision tower does not map onto the encoder's; pass "
            "--param from_model_tower=false or an encoder with the same architecture"
        ) from None
    with torch.no_grad():
        enc.load_state_dict({k: v.detach().to(dst[k].dtype) for k, v in mapped.items()})


def swap_vision_tower(
    gen_model_dir_or_model: str | Path | Any,
    fare_clip_dir: str | Path | Any,
    out_dir: str | Path,
) -> Path:
    """Copy a (FARE-hardened) CLIP vision tower into a LLaVA-class model and save the result.

    Args:
        gen_model_dir_or_model: a generative model wrapper or a ``save_pretrained`` directory.
        fare_clip_dir: a dual-encoder wrapper or directory (e.g. a ``robustness/fare`` output).
        out_dir: where to write the generative model with the new tower.

    Returns:
        ``out_dir`` (loadable as ``hardened:DIR`` / ``hf:DIR``).

    Raises:
        InputError: the towers differ in architecture (one line naming the mismatch).
    """
    import torch

    from vlmtrust.models.loader import load_model

    gen: Any = (
        load_model(f"hf:{gen_model_dir_or_model}")
        if isinstance(gen_model_dir_or_model, str | Path)
        else gen_model_dir_or_model
    )
    dual: Any = (
        load_model(f"hf:{fare_clip_dir}")
        if isinstance(fare_clip_dir, str | Path)
        else fare_clip_dir
    )
    if gen.kind != "generative" or dual.kind != "dual":
        raise InputError(
            "swap_vision_tower: pass a generative model first and a dual encoder second"
        )
    tower = _tower(gen.model)
    dst = tower.state_dict()
    mapped = _mapped_state(_source_tower(dual.model).state_dict(), dst)
    for k, v in dst.items():
        if tuple(mapped[k].shape) != tuple(v.shape):
            raise InputError(
                f"swap_vision_tower: weight {k} has shape {tuple(mapped[k].shape)} in the encoder "
                f"but {tuple(v.shape)} in the generative model; the towers must match"
            )
    # The caller's model is left as it was: the new tower goes in for the save, then the
    # original weights come back (a mitigation must not change the model it was given).
    original = {k: v.detach().clone() for k, v in dst.items()}
    out = Path(out_dir)
    with torch.no_grad():
        tower.load_state_dict({k: t.detach().to(dst[k].dtype) for k, t in mapped.items()})
    try:
        gen.save_pretrained(out)
    finally:
        with torch.no_grad():
            tower.load_state_dict(original)
    return out


@mitigation("robustness/fare")
class FARE(Mitigation):
    """Unsupervised adversarial fine-tuning in embedding space (keeps clean embeddings)."""

    pillar = Pillar.ROBUSTNESS
    kind = "model"
    requires = Capability.TRAIN
    Params = FAREParams
    description = (
        "FARE (Schlarmann et al. 2024): adversarial fine-tuning of the vision tower so that "
        "perturbed images keep their clean embedding; swappable into LLaVA-class models."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Harden a dual encoder, or swap a FARE tower into a generative model."""
        from vlmtrust.mitigations.robustness._advtrain import harden_dual

        p = self.params
        assert isinstance(p, FAREParams)
        out = Path(ctx.out_dir)
        if model.kind == "dual":
            if p.encoder is not None:
                raise InputError(
                    "robustness/fare: encoder= is only for generative models; drop it for a "
                    "dual encoder"
                )
            hardened, summary = harden_dual(model, ctx, p, "fare")
            return save_tuned(hardened, model.spec, ctx, self.name, p, summary)
        if model.kind != "generative":  # pragma: no cover - every backend is dual or generative
            raise CapabilityError(f"robustness/fare: unsupported model kind {model.kind}")
        summary = self._generative(model, ctx, p, out)
        return write_record(
            out, "hardening.json", hardening_record(self.name, p, summary), summary=summary
        )

    def _generative(
        self, model: Any, ctx: MitigationContext, p: FAREParams, out: Path
    ) -> dict[str, Any]:
        from vlmtrust.mitigations.robustness._advtrain import harden_dual
        from vlmtrust.models.loader import load_model

        if not (model.capabilities & Capability.TRAIN) or not hasattr(model, "save_pretrained"):
            raise CapabilityError(
                f"robustness/fare: model {model.spec} cannot be re-saved with a new vision tower; "
                "use a local LLaVA-class checkpoint (hf:DIR)"
            )
        spec = p.encoder or "reference:clip"
        encoder = load_model(spec)
        if encoder.kind != "dual":
            raise InputError(f"robustness/fare: encoder {spec} is not a dual encoder (CLIP-like)")
        if not towers_match(model, encoder):
            raise InputError(
                f"robustness/fare: the vision tower of {spec} does not match {model.spec}'s; pass "
                "--param encoder=SPEC of the CLIP model the VLM's tower came from"
            )
        if p.train_encoder:
            if p.from_model_tower:
                load_tower_into_encoder(model, encoder)
            hardened, summary = harden_dual(encoder, ctx, p, "fare")
            enc_dir = out / "fare_encoder"
            hardened.save_pretrained(enc_dir)
            summary["encoder_dir"] = str(enc_dir)
        else:
            hardened, summary = encoder, {"objective": "fare", "trained": False}
        swap_vision_tower(model, hardened, out)
        summary["base"] = model.spec
        summary["encoder"] = spec
        return summary
