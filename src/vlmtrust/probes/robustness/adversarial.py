"""``robustness/adversarial``: robust accuracy under white-box (or transfer) attacks.

* **Dual encoders with GRADIENT**: PGD/APGD on [0, 1] pixels maximising the zero-shot
  cross-entropy of the true class prompt (``vlmtrust.attacks.pgd.zero_shot_ce``), or with
  ``objective=embedding`` the label-free feature distance ``‖f(x+δ) − f(x)‖²``; accuracy is
  measured on the float adversarial pixels.
* **Generative models with GRADIENT**: VQA (``task=vqa``, the shape question) or captioning
  (``task=caption``) attacks in MultiTrust R.4/R.5 style through ``model.target_loss``:
  *untargeted* maximises the NLL of the true answer (VQA) or of the model's own clean caption,
  *targeted* minimises the NLL of a wrong class name (VQA) or of the clean caption with its
  shape swapped for a wrong one (``caption_target`` overrides); answers are then generated
  from the adversarial image (quantised to 8 bits, as a real attacker would have to save it)
  and counted by the class they name.
* **Models without GRADIENT** (e.g. ``openai:``): a transfer attack crafted on a surrogate dual
  encoder (``surrogate``, default ``reference:clip``) and shown to the target model.

Metrics: clean accuracy, robust accuracy at each ε (default 1, 2 and 4 /255 on L∞), attack
success rate (share of clean-correct samples the attack breaks, or that reach the target), and
a robust-accuracy-vs-ε curve. Examples show clean | adversarial | perturbation magnified around
gray (×0.5/ε).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import Example, MetricResult, Plot, Record, Series
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, mean_ci, metric
from vlmtrust.core.types import Capability, Pillar

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from vlmtrust.core.model import Model

TRANSFER_HINT = "use --param mode=transfer --param surrogate=SPEC (e.g. surrogate=reference:clip)"


def _parse_eps(value: Any) -> float:
    """``0.0078``, ``"2/255"`` or ``"0.0078"`` → float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            pass
    raise ValueError(f"eps value {value!r} is not a number; write e.g. 2/255 or 0.0078")


def eps_label(eps: float) -> str:
    """Compact label of a budget in 1/255 units.

    Example:
        >>> eps_label(2 / 255), eps_label(0.5 / 255)
        ('2/255', '0.5/255')
    """
    k = eps * 255
    return f"{round(k, 3):g}/255"


class AdversarialParams(Params):
    """Parameters of ``robustness/adversarial``."""

    mode: Literal["auto", "whitebox", "transfer"] = Field(
        "auto", description="auto = white-box when the model has GRADIENT, else transfer"
    )
    surrogate: str = Field("reference:clip", description="dual encoder spec for transfer attacks")
    eps: list[float] = Field(
        default_factory=lambda: [1 / 255, 2 / 255, 4 / 255],
        description="budgets on [0, 1] pixels (e.g. 2/255)",
    )
    norm: Literal["linf", "l2"] = "linf"
    algorithm: Literal["pgd", "apgd"] = "pgd"
    steps: int = Field(10, ge=1, le=1000)
    step_size: float | None = Field(
        None, gt=0, description="α; default ε/4 (L∞ PGD), ε/5 (L2) or 2ε (APGD)"
    )
    random_start: bool = True
    goal: Literal["untargeted", "targeted"] = Field(
        "untargeted", description="generative/targeted: push the answer to a wrong class name"
    )
    objective: Literal["ce", "embedding"] = Field(
        "ce",
        description=(
            "dual/transfer: ce = zero-shot cross-entropy on the labels; embedding = label-free "
            "feature attack maximising ‖f(x+δ) − f(x)‖² (what FARE defends)"
        ),
    )
    task: Literal["vqa", "caption"] = Field(
        "vqa",
        description=(
            "generative: vqa = the one-word shape question; caption = captioning attacks "
            "(untargeted: push the caption off the model's own clean caption; targeted: toward "
            "a wrong class), MultiTrust R.4 / R.5"
        ),
    )
    caption_prompt: str = "Describe the image."
    caption_target: str | None = Field(
        None,
        description=(
            "targeted captioning: a target caption template, '{}' = the wrong class (default: "
            "the model's clean caption with the true class name swapped for the wrong one)"
        ),
    )
    n: int = Field(48, ge=1, le=100_000, description="number of images")
    class_template: str = "a photo of a {}"
    question: str = "What shape is in the image? Answer with one word."
    n_examples: int = Field(4, ge=0, le=50)

    @field_validator("eps", mode="before")
    @classmethod
    def _eps_list(cls, v: Any) -> list[float]:
        items = v.split(",") if isinstance(v, str) else (v if isinstance(v, list | tuple) else [v])
        out = sorted({_parse_eps(x) for x in items})
        if not out:
            raise ValueError("give at least one eps, e.g. eps=1/255,2/255,4/255")
        for e in out:
            if not (e > 0.0 and math.isfinite(e)):
                raise ValueError(f"eps {e:g} must be a positive number, e.g. 2/255")
        return out

    @model_validator(mode="after")
    def _eps_in_range(self) -> AdversarialParams:
        # L∞ budgets bound each pixel on [0, 1]; an L2 radius may exceed 1 (it is a norm over
        # all C·H·W pixels, e.g. 0.5 or 2.0 in the robustness literature)
        if self.norm == "linf":
            for e in self.eps:
                if e > 1.0:
                    raise ValueError(
                        f"eps {e:g} is outside (0, 1]; L∞ budgets are on [0, 1] pixels"
                    )
        return self

    @field_validator("class_template", "caption_target")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and "{}" not in v:
            raise ValueError("class_template and caption_target need a '{}' for the class name")
        return v


def _key(eps: float) -> str:
    return f"{eps * 255:.4g}"


def _seed(ctx: ProbeContext, ids: Sequence[str]) -> int:
    h = hashlib.sha256(("|".join([str(ctx.seed), "adversarial", *ids])).encode()).digest()
    return int.from_bytes(h[:4], "little")


def _to_pil(pixels: torch.Tensor) -> list[Image.Image]:
    """[0, 1] pixels → 8-bit RGB images (round to the nearest level)."""
    from PIL import Image

    arr = (pixels.detach().clamp(0, 1) * 255.0).round().to(dtype=_uint8()).cpu().numpy()
    return [Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)), "RGB") for a in arr]


def _uint8() -> Any:
    import torch

    return torch.uint8


def _quantise(pixels: torch.Tensor, clean: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Round adversarial pixels to 8-bit levels, staying inside the ε-ball of ``clean``."""
    import torch

    from vlmtrust.attacks.pgd import project

    q = (pixels * 255.0).round() / 255.0
    if norm == "linf":
        # rounding toward the clean pixel keeps the L∞ budget exactly
        over = (q - clean).abs() > eps + 1e-7
        q = torch.where(over, torch.where(q > clean, q - 1 / 255, q + 1 / 255), q)
        return q.clamp(0, 1)
    return project(q - clean, clean, "l2", eps)


def _panel(clean: Image.Image, adv: Image.Image, eps: float) -> Image.Image:
    """Clean | adversarial | perturbation ×(0.5/ε) around gray, side by side."""
    from PIL import Image

    a = np.asarray(clean, dtype=np.float64) / 255.0
    b = np.asarray(adv, dtype=np.float64) / 255.0
    gain = 0.5 / max(eps, 1e-6)
    diff = np.clip(0.5 + (b - a) * gain, 0.0, 1.0)
    d = Image.fromarray((diff * 255).round().astype(np.uint8), "RGB")
    w, h = clean.size
    gap = max(2, w // 32)
    out = Image.new("RGB", (3 * w + 2 * gap, h), (255, 255, 255))
    for i, im in enumerate((clean, adv, d)):
        out.paste(im, (i * (w + gap), 0))
    return out


@probe("robustness/adversarial")
class AdversarialProbe(Probe):
    """White-box (PGD/APGD) or transfer attacks on [0, 1] pixels; robust accuracy vs ε."""

    pillar = Pillar.ROBUSTNESS
    version = 1
    requires = Capability.NONE
    requires_any = Capability.EMBED | Capability.GENERATE
    Params = AdversarialParams
    batch_size = 16
    description = (
        "Adversarial robustness: PGD/APGD perturbations within an L∞ (or L2) budget ε on "
        "[0, 1] pixels — white-box with gradients, or transferred from a surrogate dual "
        "encoder — and the accuracy that survives them (robust accuracy vs ε, attack success)."
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._surrogate: Any = None

    @property
    def p(self) -> AdversarialParams:
        """Typed parameters."""
        assert isinstance(self.params, AdversarialParams)
        return self.params

    @classmethod
    def defaults_for(cls, kind: str) -> dict[str, Any]:
        """Generative models answer ~30× slower per attack step: a smaller default set."""
        return {"n": 16} if kind == "generative" else {}

    def unsupported(self, model: Model) -> str | None:
        """Any dual or generative model; ``mode=whitebox`` also needs GRADIENT."""
        if self.p.mode == "whitebox" and not model.capabilities & Capability.GRADIENT:
            return (
                f"robustness/adversarial: a white-box attack needs GRADIENT but model "
                f"{model.spec} has none; {TRANSFER_HINT}"
            )
        return super().unsupported(model)

    # ------------------------------------------------------------------ samples

    def samples(self, ctx: ProbeContext) -> Iterable[Sample | Any]:
        """SynthWorld in-distribution shapes by default, or the user's labeled data."""
        from vlmtrust.probes.families.labeled_image import Base, base_images, make_sample

        bases, classes = base_images(ctx, self.p.n, purpose="adversarial")
        for b in bases:
            if not isinstance(b, Base):
                yield b
                continue
            yield make_sample(
                b.id,
                b.image,
                b.label,
                classes,
                attributes=dict(b.attributes),
                prompt=self.p.question,
            )

    # ------------------------------------------------------------------ evaluate

    def _mode(self, model: Any) -> Literal["whitebox", "transfer"]:
        has_grad = bool(model.capabilities & Capability.GRADIENT)
        if self.p.mode == "whitebox":
            if not has_grad:
                raise CapabilityError(
                    f"robustness/adversarial: a white-box attack needs GRADIENT but model "
                    f"{model.spec} has none; {TRANSFER_HINT}"
                )
            return "whitebox"
        if self.p.mode == "transfer":
            return "transfer"
        return "whitebox" if has_grad else "transfer"

    def surrogate(self) -> Any:
        """The surrogate dual encoder for transfer attacks (loaded once)."""
        if self._surrogate is None:
            from vlmtrust.models.loader import load_model

            sur = load_model(self.p.surrogate)
            if sur.kind != "dual" or not (sur.capabilities & Capability.GRADIENT):
                raise CapabilityError(
                    f"robustness/adversarial: surrogate {self.p.surrogate} must be a dual encoder "
                    "with GRADIENT; use e.g. --param surrogate=reference:clip"
                )
            self._surrogate = sur
        return self._surrogate

    def _config(self, eps: float, seed: int, *, targeted: bool, early: bool) -> Any:
        from vlmtrust.attacks.pgd import AttackConfig

        return AttackConfig(
            norm=self.p.norm,
            eps=eps,
            step=self.p.step_size,
            steps=self.p.steps,
            random_start=self.p.random_start,
            algorithm=self.p.algorithm,
            targeted=targeted,
            seed=seed,
            early_stop=early,
        )

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Attack each sample at every ε and score clean and adversarial predictions."""
        mode = self._mode(model)
        out: list[Record] = []
        # samples may carry different label sets (user data): group them
        groups: dict[tuple[str, ...], list[Sample]] = {}
        for s in batch:
            groups.setdefault(tuple(s.metadata["classes"]), []).append(s)
        by_id: dict[str, Record] = {}
        for classes, items in groups.items():
            if mode == "whitebox" and model.kind == "dual":
                recs = self._whitebox_dual(model, items, list(classes), ctx)
            elif mode == "whitebox":
                recs = self._whitebox_generative(model, items, list(classes), ctx)
            else:
                recs = self._transfer(model, items, list(classes), ctx)
            by_id.update({r.sample_id: r for r in recs})
        for s in batch:
            out.append(by_id[s.id])
        return out

    def _labels(self, items: Sequence[Sample], classes: list[str]) -> list[int]:
        idx = {c: i for i, c in enumerate(classes)}
        labels = []
        for s in items:
            if s.target not in idx:
                raise InputError(f"sample {s.id}: label {s.target!r} is not among the classes")
            labels.append(idx[str(s.target)])
        return labels

    def _record(
        self,
        sample: Sample,
        *,
        mode: str,
        kind: str,
        clean_pred: str,
        adv_preds: dict[float, str],
        success: dict[float, bool],
        clean_img: Image.Image,
        adv_imgs: dict[float, Image.Image],
        target: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Record:
        from vlmtrust.data.images import thumbnail_png_b64

        label = str(sample.target)
        scores: dict[str, float | None] = {"clean_correct": float(clean_pred == label)}
        output: dict[str, Any] = {
            "mode": mode,
            "kind": kind,
            "clean_pred": clean_pred,
            "label": label,
        }
        if target is not None:
            output["target"] = target
        if extra:
            output.update(extra)
        for eps, pred in adv_preds.items():
            k = _key(eps)
            scores[f"robust_correct@{k}"] = float(pred == label)
            scores[f"success@{k}"] = float(success[eps])
            output[f"pred@{k}"] = pred
        # the example image: largest ε at which the attack succeeded (else the largest)
        won = [e for e in adv_preds if success[e]]
        show = max(won) if won else max(adv_preds)
        output["shown_eps"] = show
        output["panel_png_b64"] = thumbnail_png_b64(
            _panel(clean_img, adv_imgs[show], show), max_side=3 * 96
        )
        return self.record(sample, output=output, scores=scores)

    def _whitebox_dual(
        self, model: Any, items: Sequence[Sample], classes: list[str], ctx: ProbeContext
    ) -> list[Record]:
        import torch

        from vlmtrust.attacks.pgd import attack
        from vlmtrust.attacks.zeroshot import class_prompts, logit_scale

        images = [s.pil_images()[0] for s in items]
        y = torch.tensor(self._labels(items, classes), dtype=torch.long)
        pixels = model.to_pixels(images)
        with torch.no_grad():
            clean_feats = model.image_features(pixels)
        text = model.text_features(class_prompts(classes, self.p.class_template))
        y = y.to(text.device)
        scale = logit_scale(model)

        def preds(px: torch.Tensor) -> list[int]:
            with torch.no_grad():
                return [int(i) for i in (model.image_features(px) @ text.T).argmax(1).tolist()]

        clean = preds(pixels)
        seed = _seed(ctx, [s.id for s in items])
        adv_preds: dict[float, list[int]] = {}
        adv_px: dict[float, torch.Tensor] = {}
        # Budgets ascend: a sample wrong on clean input, or broken at a smaller ε, is broken at
        # every larger ε too (the smaller ball lies inside the larger one), so only the
        # survivors are attacked again; the others keep their earlier adversarial image.
        current = pixels.clone()
        pred_now = torch.tensor(clean, device=y.device)
        for eps in self.p.eps:
            alive = (pred_now == y).nonzero().flatten()
            if len(alive):
                cfg = self._config(eps, seed, targeted=False, early=True)
                obj = self._objective(model, text, y[alive], scale, clean_feats[alive])
                res = attack(obj, pixels[alive], cfg)
                current[alive] = res.pixels
                pred_now[alive] = torch.tensor(preds(res.pixels), device=y.device)
            adv_px[eps] = current.clone()
            adv_preds[eps] = [int(v) for v in pred_now.tolist()]
        clean_imgs = _to_pil(pixels)
        adv_imgs = {e: _to_pil(p) for e, p in adv_px.items()}
        recs = []
        for i, s in enumerate(items):
            recs.append(
                self._record(
                    s,
                    mode="whitebox",
                    kind="dual",
                    clean_pred=classes[clean[i]],
                    adv_preds={e: classes[adv_preds[e][i]] for e in self.p.eps},
                    success={
                        e: clean[i] == int(y[i]) and adv_preds[e][i] != int(y[i])
                        for e in self.p.eps
                    },
                    clean_img=clean_imgs[i],
                    adv_imgs={e: adv_imgs[e][i] for e in self.p.eps},
                )
            )
        return recs

    def _objective(
        self, model: Any, text: torch.Tensor, y: torch.Tensor, scale: float, clean: torch.Tensor
    ) -> Any:
        """The dual-encoder objective: zero-shot CE, or the label-free embedding distance."""
        from vlmtrust.attacks.pgd import embedding_distance, zero_shot_ce

        if self.p.objective == "embedding":
            return embedding_distance(model, clean)
        return zero_shot_ce(model, text, y, scale)

    def _generate(
        self, model: Any, images: Sequence[Image.Image], prompt: str, max_new_tokens: int
    ) -> list[str]:
        """Ask ``prompt`` about each image (greedy); the raw answers."""
        from vlmtrust.core.model import GenerateRequest, generate_sync

        reqs = [
            GenerateRequest(prompt=prompt, images=(im,), max_new_tokens=max_new_tokens)
            for im in images
        ]
        out = []
        for g in generate_sync(model, reqs):
            if not g.ok:
                raise RuntimeError(f"generation failed: {g.error}")
            out.append(g.text)
        return out

    def _answers(self, model: Any, images: Sequence[Image.Image], classes: list[str]) -> list[str]:
        """Ask the shape question; map each answer to the class it names ('' for none)."""
        from vlmtrust.attacks.zeroshot import answer_class

        texts = self._generate(model, images, self.p.question, 12)
        return [answer_class(t, classes) or "" for t in texts]

    def _target_caption(self, clean: str, true: str, wrong: str) -> str:
        """The targeted-captioning goal caption.

        ``caption_target`` with the wrong class; by default the clean caption with the true
        class name swapped for the wrong one (a minimal edit the model can produce), or
        ``"A <wrong>."`` when the clean caption does not name the class.
        """
        import re

        if self.p.caption_target is not None:
            return self.p.caption_target.format(wrong)
        # the first mention (plural kept), replaced by a function: no escapes in class names
        swapped, n = re.subn(
            rf"\b{re.escape(true)}(s?)\b",
            lambda m: wrong + m.group(1),
            clean,
            count=1,
            flags=re.IGNORECASE,
        )
        return swapped.strip() if n else f"A {wrong}."

    def _whitebox_generative(
        self, model: Any, items: Sequence[Sample], classes: list[str], ctx: ProbeContext
    ) -> list[Record]:
        """VQA (the shape question) or captioning attacks through the target-text loss.

        Untargeted VQA raises the loss of the true class name; untargeted captioning (R.4)
        raises the loss of the model's own clean caption; targeted attacks lower the loss of a
        wrong class name (VQA) or of the goal caption (captioning, R.5: see
        :meth:`_target_caption`). An answer counts by the class it names (:func:`answer_class`).
        """
        from vlmtrust.attacks.pgd import attack, target_text_loss
        from vlmtrust.attacks.zeroshot import answer_class

        caption = self.p.task == "caption"
        prompt = self.p.caption_prompt if caption else self.p.question
        max_new = 32 if caption else 12
        images = [s.pil_images()[0] for s in items]
        labels = self._labels(items, classes)
        pixels = model.to_pixels(images)
        clean_imgs = _to_pil(pixels)
        clean_texts = self._generate(model, clean_imgs, prompt, max_new)
        clean = [answer_class(t, classes) or "" for t in clean_texts]
        targeted = self.p.goal == "targeted"
        if targeted:
            wanted = [classes[(lab + 1) % len(classes)] for lab in labels]
            goal_text = [
                self._target_caption(t, classes[lab], c) if caption else c
                for t, lab, c in zip(clean_texts, labels, wanted, strict=True)
            ]
        else:
            wanted = [classes[lab] for lab in labels]
            goal_text = [
                (t.strip() or c) if caption else c for t, c in zip(clean_texts, wanted, strict=True)
            ]
        seed = _seed(ctx, [s.id for s in items])
        adv_answers: dict[float, list[str]] = {}
        adv_texts: dict[float, list[str]] = {}
        adv_imgs: dict[float, list[Image.Image]] = {}
        # As for dual models: budgets ascend, and a sample already answered wrongly (or with
        # the target) keeps its earlier image; only the survivors are attacked again.
        answers_now = list(clean)
        texts_now = list(clean_texts)
        imgs_now = list(clean_imgs)
        for eps in self.p.eps:
            alive = [
                i
                for i in range(len(items))
                if (answers_now[i] != wanted[i] if targeted else answers_now[i] == wanted[i])
            ]
            if alive:
                obj = target_text_loss(
                    model, [prompt] * len(alive), [goal_text[i] for i in alive], targeted=targeted
                )
                cfg = self._config(eps, seed, targeted=targeted, early=False)
                res = attack(obj, pixels[alive], cfg)
                new_imgs = _to_pil(_quantise(res.pixels, pixels[alive], eps, self.p.norm))
                new_texts = self._generate(model, new_imgs, prompt, max_new)
                for j, i in enumerate(alive):
                    imgs_now[i] = new_imgs[j]
                    texts_now[i] = new_texts[j]
                    answers_now[i] = answer_class(new_texts[j], classes) or ""
            adv_imgs[eps] = list(imgs_now)
            adv_texts[eps] = list(texts_now)
            adv_answers[eps] = list(answers_now)
        recs = []
        for i, s in enumerate(items):
            lab = classes[labels[i]]
            if targeted:
                # a hit counts only from a correct clean answer (as the untargeted rate does)
                succ = {e: clean[i] == lab and adv_answers[e][i] == wanted[i] for e in self.p.eps}
            else:
                succ = {e: clean[i] == lab and adv_answers[e][i] != lab for e in self.p.eps}
            extra = None
            if caption:
                extra = {
                    "task": "caption",
                    "clean_caption": clean_texts[i],
                    "captions": {eps_label(e): adv_texts[e][i] for e in self.p.eps},
                    "target_caption": goal_text[i] if targeted else None,
                }
            recs.append(
                self._record(
                    s,
                    mode="whitebox",
                    kind="generative",
                    clean_pred=clean[i],
                    adv_preds={e: adv_answers[e][i] for e in self.p.eps},
                    success=succ,
                    clean_img=clean_imgs[i],
                    adv_imgs={e: adv_imgs[e][i] for e in self.p.eps},
                    target=wanted[i] if targeted else None,
                    extra=extra,
                )
            )
        return recs

    def _transfer(
        self, model: Any, items: Sequence[Sample], classes: list[str], ctx: ProbeContext
    ) -> list[Record]:
        import torch

        from vlmtrust.attacks.pgd import attack
        from vlmtrust.attacks.zeroshot import class_prompts, logit_scale

        sur = self.surrogate()
        images = [s.pil_images()[0] for s in items]
        labels = self._labels(items, classes)
        pixels = sur.to_pixels(images)
        with torch.no_grad():
            clean_feats = sur.image_features(pixels)
        text = sur.text_features(class_prompts(classes, self.p.class_template))
        y = torch.tensor(labels, dtype=torch.long, device=text.device)
        seed = _seed(ctx, [s.id for s in items])
        clean_imgs = _to_pil(pixels)
        adv_imgs: dict[float, list[Image.Image]] = {}
        for eps in self.p.eps:
            # no early stop: keep pushing past the surrogate's boundary (transfers better)
            cfg = self._config(eps, seed, targeted=False, early=False)
            obj = self._objective(sur, text, y, logit_scale(sur), clean_feats)
            res = attack(obj, pixels, cfg)
            adv_imgs[eps] = _to_pil(_quantise(res.pixels, pixels, eps, self.p.norm))
        clean = self._target_predict(model, clean_imgs, classes)
        adv = {e: self._target_predict(model, adv_imgs[e], classes) for e in self.p.eps}
        recs = []
        for i, s in enumerate(items):
            lab = classes[labels[i]]
            recs.append(
                self._record(
                    s,
                    mode="transfer",
                    kind=str(model.kind),
                    clean_pred=clean[i],
                    adv_preds={e: adv[e][i] for e in self.p.eps},
                    success={e: clean[i] == lab and adv[e][i] != lab for e in self.p.eps},
                    clean_img=clean_imgs[i],
                    adv_imgs={e: adv_imgs[e][i] for e in self.p.eps},
                )
            )
        return recs

    def _target_predict(
        self, model: Any, images: Sequence[Image.Image], classes: list[str]
    ) -> list[str]:
        if model.kind == "dual":
            from vlmtrust.attacks.zeroshot import TextCache, class_prompts, predict

            pr = predict(model, images, class_prompts(classes, self.p.class_template), TextCache())
            return [
                "" if a else classes[int(i)] for i, a in zip(pr.index, pr.abstained, strict=True)
            ]
        return self._answers(model, images, classes)

    # ------------------------------------------------------------------ summarise

    def _ok(self, records: Sequence[Record]) -> list[Record]:
        return [r for r in records if r.ok]

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Clean accuracy, robust accuracy and attack success rate per ε."""
        recs = self._ok(records)
        if not recs:
            return []
        seed = ctx.seed
        groups = [r.attributes.get("class", "") for r in recs]
        clean = np.array([r.scores["clean_correct"] for r in recs], dtype=np.float64)
        mode = str(recs[0].output.get("mode", ""))
        out = [
            metric(
                "clean_accuracy",
                accuracy,
                clean,
                higher_is_better=True,
                description="accuracy on the unperturbed images (as the attack saw them)",
                unit="%",
                seed=seed,
            )
        ]
        headline_eps = min(self.p.eps, key=lambda e: abs(e - 2 / 255))
        targeted = self.p.goal == "targeted" and any("target" in r.output for r in recs)
        for eps in self.p.eps:
            k = _key(eps)
            rob = np.array([r.scores[f"robust_correct@{k}"] for r in recs], dtype=np.float64)
            out.append(
                metric(
                    f"robust_accuracy@{eps_label(eps)}",
                    accuracy,
                    rob,
                    higher_is_better=True,
                    groups=groups if eps == headline_eps else None,
                    group_by="class" if eps == headline_eps else None,
                    thresholds=(0.5, 0.2),
                    description=(
                        f"accuracy under a {mode} {self.p.algorithm.upper()} attack, "
                        f"{self.p.norm} ε={eps_label(eps)}, {self.p.steps} steps"
                    ),
                    unit="%",
                    headline=eps == headline_eps,
                    seed=seed,
                )
            )
            succ = np.array([r.scores[f"success@{k}"] for r in recs], dtype=np.float64)
            base = clean.astype(bool)  # both goals: among clean-correct samples
            out.append(
                metric(
                    f"attack_success_rate@{eps_label(eps)}",
                    accuracy,
                    succ[base],
                    higher_is_better=False,
                    thresholds=(0.5, 0.8),
                    description=(
                        "share of clean-correct samples whose answer moved to the target class"
                        if targeted
                        else "share of clean-correct samples the attack makes wrong"
                    ),
                    unit="%",
                    seed=seed,
                )
            )
        return out

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Robust accuracy vs ε (ε = 0 is clean accuracy), with 95% CIs."""
        recs = self._ok(records)
        if not recs:
            return []
        xs: list[float] = [0.0]
        cols = [[r.scores["clean_correct"] for r in recs]]
        for eps in self.p.eps:
            xs.append(round(eps * 255, 4))
            cols.append([r.scores[f"robust_correct@{_key(eps)}"] for r in recs])
        ys: list[float | None] = []
        lo: list[float | None] = []
        hi: list[float | None] = []
        for c in cols:
            m, a, b = mean_ci(np.array(c, dtype=np.float64), seed=ctx.seed)
            ys.append(m)
            lo.append(a)
            hi.append(b)
        return [
            Plot(
                kind="line",
                title=f"Robust accuracy vs ε ({self.p.norm}, {self.p.algorithm.upper()})",
                x_label="ε (×1/255)",
                y_label="accuracy",
                series=[Series(name="robust accuracy", x=xs, y=ys, lo=lo, hi=hi)],
            )
        ]

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """Successful attacks first: clean | adversarial | magnified perturbation."""
        recs = self._ok(records)

        def broken(r: Record) -> float:
            return sum(v or 0.0 for k, v in r.scores.items() if k.startswith("success@"))

        ranked = sorted(recs, key=lambda r: (-broken(r), r.index))[: self.p.n_examples]
        out = []
        for r in ranked:
            eps = float(r.output.get("shown_eps", self.p.eps[-1]))
            pred = r.output.get(f"pred@{_key(eps)}", "")
            out.append(
                Example(
                    sample_id=r.sample_id,
                    title=f"{r.output.get('label')} → {pred or '(no class)'} at ε={eps_label(eps)}",
                    prompt=self.p.question if r.output.get("kind") == "generative" else None,
                    output=str(pred),
                    expected=str(r.output.get("label")),
                    note=(
                        f"clean prediction: {r.output.get('clean_pred') or '(no class)'}; "
                        f"panels: clean | adversarial | perturbation ×{0.5 / eps:.0f} around gray"
                    ),
                    image_png_b64=r.output.get("panel_png_b64"),
                )
            )
        return out
