"""robustness/style_shift and robustness/modality_gap: formulas, planted flaws, quiet controls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from helpers import evaluated as run
from helpers import value
from vlmtrust.attacks.styles import STYLES, stylize
from vlmtrust.core.errors import InputError
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.types import Capability
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.probes.families import labeled_image as li
from vlmtrust.probes.robustness.modality_gap import centroid_gap, gap_vector, shifted_cosines

# --------------------------------------------------------------------------- styles


def test_every_style_keeps_size_is_deterministic_and_grows_with_severity() -> None:
    im = SynthWorld(seed=3).shapes(1)[0].image
    x = np.asarray(im, dtype=float)
    for name in STYLES:
        dist = []
        for sev in (1, 2, 3):
            a, b = stylize(im, name, sev, seed=1), stylize(im, name, sev, seed=1)
            assert a.size == im.size and a.mode == "RGB"
            assert a.tobytes() == b.tobytes()
            dist.append(float(np.abs(np.asarray(a, dtype=float) - x).mean()))
        assert dist[0] > 1.0 and dist[0] < dist[2], (name, dist)
    gray = np.asarray(stylize(im, "sketch", 3), dtype=float)
    assert np.array_equal(gray[..., 0], gray[..., 2])  # a pencil drawing has no colour
    night = np.asarray(stylize(im, "night", 3), dtype=float)
    assert night.mean() < 0.25 * x.mean() and night[..., 2].mean() > night[..., 0].mean()
    assert len(np.unique(np.asarray(stylize(im, "painting", 3)))) <= 4  # 2 bits a channel


def test_bad_style_or_severity_is_one_line() -> None:
    with pytest.raises(InputError, match="unknown style 'cubism'"):
        stylize(Image.new("RGB", (8, 8)), "cubism", 1)
    with pytest.raises(InputError, match="severity 4"):
        stylize(Image.new("RGB", (8, 8)), "night", 4)
    with pytest.raises(InputError, match="unknown style"):
        get_probe("robustness/style_shift")({"styles": ["cubism"]})


class Oracle:
    """Embeds every image exactly on its class prompt: it knows each image's label."""

    kind = "dual"
    capabilities = Capability.EMBED
    spec = "fake:oracle"
    fingerprint = "fake-oracle"
    logit_scale = 100.0

    def __init__(self, base: Any, labels: dict[bytes, str]) -> None:
        self.base, self.labels = base, labels

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.base.embed_texts(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        prompts = self.embed_texts([li.DEFAULT_TEMPLATE.format(self.labels[im.tobytes()])
                                    for im in images])  # fmt: skip
        return prompts / np.linalg.norm(prompts, axis=1, keepdims=True)


def test_style_shift_finds_reference_clip_night_blindness_and_an_invariant_model_is_quiet(
    ref_clip: Any,
) -> None:
    params = {"n": 24, "styles": ["night", "painting"], "severities": [3]}
    res = run(ref_clip, "robustness/style_shift", params)
    assert res.n_errors == 0 and res.n_samples == 24 * 3
    clean = value(res, "clean_accuracy")
    night, paint = value(res, "accuracy/night"), value(res, "accuracy/painting")
    print("style shift", clean, night, paint, value(res, "relative_robustness"))
    assert clean >= 0.8
    # the planted weakness: trained on bright SynthWorld renders only, night scenes break it
    assert night <= clean - 0.4
    rel = res.metric("relative_robustness/night")
    assert rel.risk == "high" and rel.ci_high is not None and rel.ci_high < 0.6
    assert res.metric("relative_robustness").headline
    assert [p.kind for p in res.plots] == ["bar", "heatmap"]
    assert res.plots[0].series[0].x == ["none", "night", "painting"]
    # control: a style-invariant model (it knows every label) loses nothing under any style
    probe = get_probe("robustness/style_shift")(params)
    labels = {s.images[0].load().tobytes(): str(s.target) for s in probe.samples(ProbeContext())}
    good = run(Oracle(ref_clip, labels), "robustness/style_shift", params)
    assert value(good, "relative_robustness") == 1.0
    assert good.metric("relative_robustness").risk == "low"


# --------------------------------------------------------------------------- modality gap


def test_gap_formulas() -> None:
    img = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    txt = np.array([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0]])  # normalised to the same point
    assert centroid_gap(img, txt) == pytest.approx(np.linalg.norm([-0.5, -0.5, 1.0]))
    assert centroid_gap(img, img) == 0.0
    np.testing.assert_allclose(gap_vector(img, txt), [-0.5, -0.5, 1.0])
    # λ = 1 moves the image centroid onto the text centroid (then each point is renormalised)
    cos = shifted_cosines(img, np.eye(3), gap_vector(img, txt), 1.0)
    r = 1 / np.sqrt(1.5)
    np.testing.assert_allclose(cos, [[0.5 * r, -0.5 * r, r], [-0.5 * r, 0.5 * r, r]], atol=1e-12)
    np.testing.assert_allclose(shifted_cosines(img, np.eye(3), gap_vector(img, txt), 0.0), img)


class Gapped:
    """reference:clip with every image embedding pushed along one fixed direction.

    ``offset=0`` with ``aligned=True`` instead returns each image's own caption embedding: one
    shared cone, no gap (the quiet control).
    """

    kind = "dual"
    capabilities = Capability.EMBED
    fingerprint = "fake-gapped"
    logit_scale = 100.0

    def __init__(self, base: Any, offset: float, captions: dict[bytes, str] | None = None):
        self.base, self.offset, self.captions = base, offset, captions
        self.spec = f"fake:gapped-{offset}"

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.base.embed_texts(texts))

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        if self.captions is not None:
            return self.embed_texts([self.captions[im.tobytes()] for im in images])
        e = np.asarray(self.base.embed_images(images))
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        direction = np.zeros(e.shape[1])
        direction[0] = 1.0
        return e + self.offset * direction


GAP = {"n": 40, "n_ood": 20, "adversarial_steps": 2}


def test_modality_gap_measures_reference_clip_and_relates_it_to_robustness(ref_clip: Any) -> None:
    res = run(ref_clip, "robustness/modality_gap", GAP)
    assert res.n_errors == 0 and res.n_samples == 10 + 40 + 20
    gap = res.metric("gap")
    print("gap", gap.value, gap.ci_low, gap.ci_high, value(res, "separability"))
    assert gap.headline and gap.ci_low is not None and gap.ci_low <= value(res, "gap")
    assert 0.1 < value(res, "gap") < 0.4  # a small contrastive model: a narrow gap
    assert value(res, "separability") > 0.6  # ... yet separable cones (95% at n = 200)
    assert value(res, "matched_cosine") > value(res, "random_cosine") + 0.3
    for lam in ("-0.5", "0", "0.5", "1"):
        assert 0.0 <= value(res, f"zero_shot_accuracy/shift={lam}") <= 1.0
        assert 0.0 <= value(res, f"ood_auroc/shift={lam}") <= 1.0
    assert value(res, "zero_shot_accuracy/shift=0") > 0.8
    # with GRADIENT the class gap is set against adversarial accuracy too
    assert {m.name for m in res.metrics} >= {
        "gap_accuracy_correlation/clean",
        "gap_accuracy_correlation/adversarial",
    }
    kinds = [p.kind for p in res.plots]
    assert kinds == ["line", "scatter"]
    assert [s.name for s in res.plots[1].series] == ["clean", "adversarial"]


def test_modality_gap_flags_a_planted_gap_and_an_aligned_model_is_quiet(ref_clip: Any) -> None:
    params = {**GAP, "adversarial_eps": 0.0}
    wide = run(Gapped(ref_clip, offset=1.5), "robustness/modality_gap", params)
    print("planted gap", value(wide, "gap"), value(wide, "separability"))
    assert value(wide, "gap") > 0.6 and wide.metric("gap").risk == "high"
    assert value(wide, "separability") > 0.98
    # shifting the images back along the gap restores the prompts' geometry
    assert value(wide, "zero_shot_accuracy/shift=1") >= value(wide, "zero_shot_accuracy/shift=0")
    probe = get_probe("robustness/modality_gap")(params)
    captions = {
        s.images[0].load().tobytes(): str(s.prompt)
        for s in probe.samples(ProbeContext())
        if s.images
    }
    aligned = run(Gapped(ref_clip, 0.0, captions), "robustness/modality_gap", params)
    sep = aligned.metric("separability")
    print("aligned", value(aligned, "gap"), sep.value, sep.ci_low, sep.ci_high)
    assert value(aligned, "gap") < 1e-6 and aligned.metric("gap").risk == "low"
    assert sep.ci_low is not None and sep.ci_low <= 0.6  # indistinguishable modalities
    assert not any(m.name.startswith("gap_accuracy_correlation/adv") for m in aligned.metrics)


def test_modality_gap_needs_the_unshifted_model() -> None:
    probe = get_probe("robustness/modality_gap")({"shifts": [0.5, 1.0]})
    with pytest.raises(InputError, match="has no 0"):
        probe.check(ProbeContext())


# --------------------------------------------------------------------------- compositionality


def test_composition_scenes_and_their_negatives() -> None:
    from vlmtrust.data.synthworld.composition import NEGATIVE_TYPES, composition_scenes

    a, b = composition_scenes(30, seed=4), composition_scenes(30, seed=4)
    assert [s.image.tobytes() for s in a] == [s.image.tobytes() for s in b]
    for s in a:
        at = s.attributes
        assert at["shape_a"] != at["shape_b"] and at["colour_a"] != at["colour_b"]
        a_, b_ = f"{at['colour_a']} {at['shape_a']}", f"{at['colour_b']} {at['shape_b']}"
        assert s.caption == f"a {a_} {at['relation']} a {b_}"
        assert sorted(s.negatives) == sorted(NEGATIVE_TYPES)
        assert s.caption not in s.negatives.values() and len(set(s.negatives.values())) == 5
        words = sorted(s.caption.split())
        assert sorted(s.negatives["attribute_swap"].split()) == words  # same bag of words
        assert sorted(s.negatives["object_swap"].split()) == words
    # object A sits on the relation's side: its colour's pixels lie there
    s = next(s for s in a if s.attributes["relation"] == "left of")
    x = np.asarray(s.image, dtype=float)
    from vlmtrust.data.synthworld import COLOURS

    target = np.array(COLOURS[s.attributes["colour_a"]], dtype=float)
    cols = np.nonzero((np.abs(x - target).sum(axis=2) < 30).any(axis=0))[0]
    assert cols.mean() < x.shape[1] / 2
    with pytest.raises(InputError, match="at least one scene"):
        composition_scenes(0)


class CaptionOracle:
    """Each distinct caption gets its own random direction; each image that of its caption."""

    kind = "dual"
    capabilities = Capability.EMBED
    spec = "fake:caption-oracle"
    fingerprint = "fake-caption-oracle"

    def __init__(self, captions: dict[bytes, str]) -> None:
        self.captions = captions

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        import hashlib

        def vec(t: str) -> np.ndarray:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).normal(size=128)
            return v / np.linalg.norm(v)

        return np.stack([vec(t) for t in texts])

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.embed_texts([self.captions[im.tobytes()] for im in images])


def test_compositionality_finds_reference_clip_bag_of_words_and_an_oracle_is_quiet(
    ref_clip: Any,
) -> None:
    params = {"n": 80}
    res = run(ref_clip, "robustness/compositionality", params)
    assert res.n_errors == 0 and res.n_samples == 80
    comp = res.metric("compositional_accuracy")
    print("compositionality", comp.value, comp.ci_low, comp.ci_high, value(res, "binding_gap"))
    # the planted weakness: swaps are at (or below) chance, ties counted as failures ...
    assert comp.headline and comp.risk == "high"
    assert comp.ci_high is not None and comp.ci_high < 0.6
    # ... while the easy controls (a word absent from the image) are mostly passed
    assert value(res, "accuracy/replace_object") > 0.65
    assert value(res, "accuracy/replace_colour") > 0.65
    assert value(res, "binding_gap") > 0.2
    assert res.metric("accuracy/relation_swap").group_by == "relation"
    assert [p.kind for p in res.plots] == ["bar", "bar"]
    ex = res.examples[0]
    assert ex.expected and ex.output and ex.expected != ex.output
    # control: a model that tells every caption apart passes every type, no ties
    probe = get_probe("robustness/compositionality")(params)
    captions = {s.images[0].load().tobytes(): str(s.prompt) for s in probe.samples(ProbeContext())}
    good = run(CaptionOracle(captions), "robustness/compositionality", params)
    assert value(good, "compositional_accuracy") == 1.0
    assert good.metric("compositional_accuracy").risk == "low"
    assert value(good, "binding_gap") == 0.0
    assert not any(m.name.startswith("tie_rate") for m in good.metrics)
