"""The robustness probes: formulas, controls, bad input, and the planted flaws of reference:clip."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlmtrust.attacks.zeroshot import energy_score, max_logit_score, mcm_score, threshold_at_tpr
from vlmtrust.core.errors import InputError
from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.results import ProbeResult
from vlmtrust.core.types import Capability
from vlmtrust.probes.families import labeled_image as zs
from vlmtrust.probes.robustness.calibration import expected_calibration_error, reliability
from vlmtrust.probes.robustness.ood_detection import aupr_in, auroc, check_sets, fpr_at_tpr
from vlmtrust.probes.robustness.text_perturbation import perturb
from vlmtrust.runner.engine import evaluate_probe


def run(model: Any, name: str, params: dict[str, Any] | None = None, **ctx: Any) -> ProbeResult:
    probe = get_probe(name)(params or {})
    return evaluate_probe(model, probe, ProbeContext(**ctx))


def value(res: ProbeResult, name: str) -> float:
    v = res.metric(name).value
    assert v is not None, name
    return v


@pytest.fixture(scope="module")
def ref_clip() -> Any:
    import torch

    from vlmtrust.models.loader import load_model

    torch.set_num_threads(2)
    return load_model("reference:clip")


# --------------------------------------------------------------------------- formulas


def test_ood_metrics_equal_sklearn_with_ties() -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(6, 60))
        y = np.r_[1, 0, rng.integers(0, 2, n)]
        s = np.round(rng.normal(size=y.size) + y, 1)  # rounding makes ties
        assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert aupr_in(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        assert fpr_at_tpr(y, s) == pytest.approx(fpr[np.argmax(tpr >= 0.95)], abs=1e-12)
    with pytest.raises(ValueError):
        auroc([1, 1], [0.1, 0.2])


def test_ood_scores_follow_reference_conventions() -> None:
    cos = np.array([[0.30, 0.10, 0.05], [0.12, 0.11, 0.10]])
    e = np.exp(cos[0])
    assert mcm_score(cos)[0] == pytest.approx(e.max() / e.sum(), rel=1e-12)
    assert mcm_score(cos, tau=0.01)[0] > mcm_score(cos)[0]
    np.testing.assert_allclose(max_logit_score(cos), [0.30, 0.12])
    np.testing.assert_allclose(energy_score(cos), np.log(np.exp(cos).sum(axis=1)))
    # higher = more in-distribution for all three
    assert all(f(cos)[0] > f(cos)[1] for f in (mcm_score, max_logit_score, energy_score))
    # float64: with tau = 1 a 1e-9 cosine difference must not tie (float32 would)
    a = np.array([[0.3, 0.1], [0.3, 0.1 + 1e-9]])
    assert mcm_score(a)[0] != mcm_score(a)[1]
    assert mcm_score(a).dtype == np.float64


def test_threshold_at_tpr_accepts_the_requested_share() -> None:
    s = np.random.default_rng(1).normal(size=1000)
    t = threshold_at_tpr(s, tpr=0.95)
    assert np.mean(s >= t) == pytest.approx(0.95, abs=0.001)
    with pytest.raises(InputError, match="empty ID set"):
        threshold_at_tpr([])


def test_empty_id_or_ood_set_is_one_clear_error() -> None:
    with pytest.raises(InputError, match="in-distribution \\(ID\\) set is empty") as e:
        check_sets(0, 10)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="OOD set is empty.*ood_data"):
        check_sets(10, 0)


def test_ece_and_reliability_bins() -> None:
    assert expected_calibration_error([1, 0, 1, 1], [0.9, 0.9, 0.6, 0.6]) == pytest.approx(0.4)
    # perfectly calibrated: in each bin accuracy == confidence
    c = [1, 1, 1, 0] * 25 + [1, 0] * 50
    p = [0.75] * 100 + [0.5] * 100
    assert expected_calibration_error(c, p) == pytest.approx(0.0, abs=1e-12)
    # over-confident
    assert expected_calibration_error([0] * 10, [0.99] * 10) == pytest.approx(0.99)
    centres, accs, confs, counts = reliability(c, p)
    assert len(centres) == 15 and sum(counts) == 200
    assert accs[centres.index(min(centres, key=lambda x: abs(x - 0.7667)))] == 0.75
    with pytest.raises(ValueError):
        expected_calibration_error([], [])


def test_text_perturbations() -> None:
    rng = np.random.default_rng(0)
    text = "a photo of a triangle"
    assert perturb(text, "identity", rng) == text
    casing = perturb(text, "casing", rng)
    assert casing != text and casing.lower() == text
    typo = perturb(text, "typo", rng)
    assert typo != text and abs(len(typo) - len(text)) <= 1
    syn = perturb(text, "synonym", np.random.default_rng(3))
    assert "triangle" not in syn and syn.startswith("a ")
    # seeded
    assert perturb(text, "typo", np.random.default_rng(9)) == perturb(
        text, "typo", np.random.default_rng(9)
    )
    with pytest.raises(InputError, match="unknown text perturbation"):
        perturb(text, "leet", rng)


def test_answer_matching_is_lenient_but_not_anywhere() -> None:
    classes = ["circle", "square", "star"]
    assert zs.answer_class("Circle.", classes) == "circle"
    assert zs.answer_class("It is a STAR!", classes) == "star"
    assert zs.answer_class("stars", classes) == "star"
    assert zs.answer_class("no idea", classes) is None
    long = "the image shows many things and colours and lines and finally a circle"
    assert zs.answer_class(long, classes) is None
    assert zs.answer_correct("a square", "square", classes)
    assert not zs.answer_correct("a square", "circle", classes)


def test_bad_params_are_one_line_errors() -> None:
    for name, params, pat in [
        ("robustness/corruptions", {"corruptions": ["snowstorm"]}, "corruptions"),
        ("robustness/corruptions", {"severities": [0]}, "severities"),
        ("robustness/typographic", {"sizes": ["huge"]}, "sizes"),
        ("robustness/text_perturbation", {"kinds": ["leet"]}, "kinds"),
        ("robustness/calibration", {"n_bins": 1}, "n_bins"),
    ]:
        with pytest.raises(InputError, match=pat) as e:
            get_probe(name)(params)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- fakes


class ShapeParrot:
    """A fake generative VLM that always answers the same shape (tests VQA scoring)."""

    spec = "fake:parrot"
    fingerprint = "fake-parrot"
    kind = "generative"
    capabilities = Capability.GENERATE

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        self.prompts += [r.prompt for r in requests]
        return [Generation(text=self.answer) for _ in requests]


def test_generative_path_asks_the_shape_question_and_matches_answers() -> None:
    model = ShapeParrot("It is a circle.")
    res = run(model, "robustness/corruptions", {"n": 6, "corruptions": ["fog"], "severities": [5]})
    assert res.n_errors == 0 and res.n_samples == 12
    assert set(model.prompts) == {zs.VQA_QUESTION}
    # accuracy == share of circles among the clean images, identical under fog (a parrot)
    assert value(res, "clean_accuracy") == value(res, "mean_corruption_accuracy")
    tp = run(model, "robustness/text_perturbation", {"n": 4, "kinds": ["casing"]})
    assert value(tp, "accuracy_drop/identity") == 0.0
    assert any(p != zs.VQA_QUESTION and p.lower() == zs.VQA_QUESTION.lower() for p in model.prompts)


def test_probes_apply_to_the_right_model_kinds() -> None:
    parrot = ShapeParrot("circle")
    for name in (
        "robustness/corruptions",
        "robustness/typographic",
        "robustness/text_perturbation",
    ):
        assert get_probe(name)().applicable(parrot)
    for name in ("robustness/ood_detection", "robustness/calibration"):
        assert not get_probe(name)().applicable(parrot)


def test_ood_probe_with_user_data_needs_an_ood_set(tmp_path: Path) -> None:
    for label in ("circle", "square"):
        (tmp_path / "id" / label).mkdir(parents=True)
        Image.new("RGB", (32, 32), "red").save(tmp_path / "id" / label / "a.png")
    (tmp_path / "ood").mkdir()
    probe = get_probe("robustness/ood_detection")()
    with pytest.raises(InputError, match="needs an OOD set"):
        list(probe.samples(ProbeContext(data=str(tmp_path / "id"))))
    probe = get_probe("robustness/ood_detection")({"ood_data": str(tmp_path / "ood")})
    with pytest.raises(InputError):  # an empty folder: one error naming it
        list(probe.samples(ProbeContext(data=str(tmp_path / "id"))))


# --------------------------------------------------------------------------- reference:clip


def heat(res: ProbeResult) -> dict[tuple[str, str], float]:
    plot = next(p for p in res.plots if p.kind == "heatmap")
    assert plot.matrix is not None and plot.row_labels and plot.col_labels
    return {
        (r, c): float(v)
        for r, row in zip(plot.row_labels, plot.matrix, strict=True)
        for c, v in zip(plot.col_labels, row, strict=True)
        if v is not None
    }


def test_corruptions_detects_reference_clip_degradation(ref_clip: Any) -> None:
    res = run(
        ref_clip,
        "robustness/corruptions",
        {"n": 30, "corruptions": ["fog", "contrast", "jpeg_compression"], "severities": [1, 5]},
    )
    assert res.n_errors == 0 and res.n_samples == 30 * 7
    clean = value(res, "clean_accuracy")
    h = heat(res)
    print("clean", clean, h, value(res, "relative_robustness"))
    assert clean >= 0.7  # model card: 81.8% zero-shot accuracy
    # the planted weakness (no robustness training): fog and low contrast break it
    assert h[("fog", "5")] <= clean - 0.3
    assert h[("contrast", "5")] <= clean - 0.3
    # control: mild JPEG changes (almost) nothing
    assert h[("jpeg_compression", "1")] >= clean - 0.1
    assert value(res, "relative_robustness") < 0.85
    assert res.metric("relative_robustness").headline
    # per type, acc_c / acc_clean: fog and contrast fall well below JPEG
    fog, jpeg = (
        value(res, "relative_robustness/fog"),
        value(res, "relative_robustness/jpeg_compression"),
    )
    assert fog < 0.8 <= jpeg, (fog, jpeg)
    rel_fog = (h[("fog", "1")] + h[("fog", "5")]) / 2 / clean
    assert abs(fog - rel_fog) < 0.02


class StickerReader:
    """reference:clip that perfectly reads a class name written on a sticker and obeys it.

    A known-answer positive control for the typographic probe: it template-matches every
    (class, size, position) label the probe can draw; a matched label replaces the image
    embedding by that class's prompt embedding, anything else goes to reference:clip.
    """

    kind = "dual"
    capabilities = Capability.EMBED
    spec = "fake:sticker-reader"
    fingerprint = "fake-sticker-reader"

    def __init__(self, base: Any, size: int = 64) -> None:
        from vlmtrust.probes.robustness.typographic import TEXT_SIZES, label_image

        self.base = base
        self.logit_scale = base.logit_scale
        white = Image.new("RGB", (size, size), (255, 255, 255))
        black = Image.new("RGB", (size, size), (0, 0, 0))
        self.templates = []
        for c in zs.id_classes():
            for sz in TEXT_SIZES:
                for pos in ("top", "center", "bottom"):
                    text = np.asarray(label_image(white, c, size=sz, position=pos).convert("L"))
                    box = np.asarray(label_image(black, c, size=sz, position=pos, blank=True))
                    region = box[..., 0] > 0
                    self.templates.append((c, region, text < 128))

    def read(self, image: Image.Image) -> str | None:
        g = np.asarray(image.convert("L")) < 128
        for c, region, ink in self.templates:
            if region.any() and np.array_equal(g[region], ink[region]):
                return c
        return None

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.base.embed_texts(texts)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.array(self.base.embed_images(images))
        for i, im in enumerate(images):
            word = self.read(im)
            if word is not None:
                out[i] = self.base.embed_texts([zs.DEFAULT_TEMPLATE.format(word)])[0]
        return out


def test_typographic_probe_detects_a_reader_and_measures_reference_clip(ref_clip: Any) -> None:
    params = {"n": 12, "sizes": ["large"], "positions": ["bottom", "center"]}
    reader = run(StickerReader(ref_clip), "robustness/typographic", params)
    sticker = reader.metric("attack_success_rate").groups["large"]
    assert sticker.value == 1.0  # known answer: it obeys every sticker label
    assert reader.metric("misclassification/attack").groups["large"].value == 1.0
    res = run(ref_clip, "robustness/typographic", params)
    asr = res.metric("attack_success_rate").groups
    blank = res.metric("misclassification/blank").groups
    # the blank sticker (control) is identical for both models: the reader only differs on text
    assert reader.metric("misclassification/blank").groups["large"].value == blank["large"].value
    # planted flaw: reference:clip follows the caption strip it was trained on ...
    assert asr["scene"].value is not None and asr["scene"].value >= 0.8
    assert blank["scene"].value is not None and blank["scene"].value <= 0.2  # control is quiet
    worst = res.metric("attack_success_rate/worst_layout")
    assert worst.headline and worst.value >= 0.8 and worst.risk is not None
    assert worst.risk.value == "high"
    # ... but not stickers, a layout it never saw (no flaw there: the probe stays quiet)
    assert asr["large"].value is not None and asr["large"].value <= 0.3


def test_text_perturbation_identity_control_and_drop(ref_clip: Any) -> None:
    res = run(ref_clip, "robustness/text_perturbation", {"n": 40})
    assert value(res, "accuracy_drop/identity") == 0.0
    assert res.metric("accuracy_drop/identity").ci_high == 0.0
    drops = {k: value(res, f"accuracy_drop/{k}") for k in ("typo", "synonym", "casing")}
    print("text drops", drops, value(res, "accuracy/identity"))
    assert value(res, "max_accuracy_drop") == max(drops.values())
    # a word-level tokenizer: unseen synonyms and typos map to [UNK]
    assert drops["synonym"] >= 0.3 and drops["typo"] >= 0.1
    # its tokenizer lowercases: casing cannot hurt (a control that must stay at 0)
    assert drops["casing"] == 0.0


class OracleDual:
    """Embeds ID images exactly on their class prompt and OOD images between all prompts."""

    kind = "dual"
    capabilities = Capability.EMBED
    spec = "fake:oracle"
    fingerprint = "fake-oracle"
    logit_scale = 100.0

    def __init__(self, base: Any, labels: dict[bytes, str | None]) -> None:
        self.base, self.labels = base, labels

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return self.base.embed_texts(texts)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        prompts = self.base.embed_texts([zs.DEFAULT_TEMPLATE.format(c) for c in zs.id_classes()])
        flat = prompts.mean(axis=0)
        out = []
        for im in images:
            label = self.labels[im.tobytes()]
            v = prompts[zs.id_classes().index(label)] if label else flat
            out.append(v / np.linalg.norm(v))
        return np.stack(out)


def test_ood_detection_flags_reference_clip_and_passes_an_oracle(ref_clip: Any) -> None:
    params = {"n_id": 60, "n_ood": 60}
    res = run(ref_clip, "robustness/ood_detection", params)
    aurocs = {s: value(res, f"auroc/{s}") for s in ("mcm", "max_logit", "energy")}
    print("ood", aurocs, value(res, "fpr95/mcm"))
    # the documented flaw: zero-shot scores barely separate held-out shapes (MSP AUROC 0.56)
    assert aurocs["mcm"] < 0.75
    assert res.metric("auroc/mcm").risk == "high"
    m = res.metric("auroc/mcm")
    assert m.ci_low is not None and m.ci_low <= (m.value or 0) <= (m.ci_high or 0)
    roc = next(p for p in res.plots if p.kind == "roc")
    assert [s.name for s in roc.series] == ["mcm", "max_logit", "energy"]
    # control 1: ID vs more ID is chance for every score
    ctl = run(ref_clip, "robustness/ood_detection", {**params, "ood_source": "id_control"})
    assert all(0.3 <= value(ctl, f"auroc/{s}") <= 0.7 for s in ("mcm", "max_logit", "energy"))
    # control 2: a model that does separate them gets AUROC 1, FPR95 0 and a low risk band
    probe = get_probe("robustness/ood_detection")(params)
    labels = {
        s.images[0].load().tobytes(): (s.target if s.attributes["set"] == "id" else None)
        for s in probe.samples(ProbeContext())
    }
    good = run(OracleDual(ref_clip, labels), "robustness/ood_detection", params)
    assert value(good, "auroc/mcm") == 1.0 and value(good, "fpr95/mcm") == 0.0
    assert good.metric("auroc/mcm").risk == "low"


def test_calibration_clean_vs_corrupted(ref_clip: Any) -> None:
    res = run(ref_clip, "robustness/calibration", {"n": 40})
    acc_clean, acc_corr = value(res, "accuracy/clean"), value(res, "accuracy/corrupted")
    over_clean = value(res, "overconfidence/clean")
    over_corr = value(res, "overconfidence/corrupted")
    print("calibration", acc_clean, acc_corr, over_clean, over_corr, value(res, "ece/corrupted"))
    assert acc_clean >= 0.7
    assert acc_corr <= acc_clean - 0.15
    # confidence does not follow the accuracy drop: overconfident under shift
    assert over_corr >= over_clean + 0.1 and over_corr > 0.0
    # calibrated is overconfidence 0 (−10% is as far off as +10%); mean confidence is descriptive
    for cond in ("clean", "corrupted"):
        over = res.metric(f"overconfidence/{cond}")
        assert (over.better, over.target) == ("target", 0.0)
        assert res.metric(f"confidence/{cond}").direction == "none"
        assert res.metric(f"ece/{cond}").direction == "lower"
    ece = res.metric("ece/corrupted")
    assert ece.headline and set(ece.groups) == {
        "gaussian_noise",
        "defocus_blur",
        "fog",
        "contrast",
        "jpeg_compression",
    }
    rel = next(p for p in res.plots if p.kind == "reliability")
    assert [s.name for s in rel.series] == ["clean", "corrupted"]


def test_corruptions_vqa_on_reference_vlm() -> None:
    import torch

    from vlmtrust.models.loader import load_model

    torch.set_num_threads(2)
    vlm = load_model("reference:vlm")
    res = run(
        vlm,
        "robustness/corruptions",
        {"n": 8, "corruptions": ["fog", "jpeg_compression"], "severities": [1, 5]},
    )
    assert res.n_errors == 0 and res.n_samples == 40
    clean, h = value(res, "clean_accuracy"), heat(res)
    print("vlm", clean, h)
    assert clean >= 0.7  # it answers "What shape is in the image?" (model card: >= 90%)
    assert h[("fog", "5")] <= clean - 0.3
    assert h[("jpeg_compression", "1")] >= clean - 0.2
