"""MixGen fine-tuning and the OOD guard wrapper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.types import Capability
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.mitigations.robustness.mixgen import finetune, mixgen_batch, training_pairs
from vlmtrust.mitigations.robustness.ood_guard import OODGuardedModel
from vlmtrust.models.loader import load_model
from vlmtrust.runner.engine import evaluate_probe


@pytest.fixture(scope="module")
def ref_clip() -> Any:
    import torch

    torch.set_num_threads(2)
    return load_model("reference:clip")


def _guard(ref_clip: Any, out: Path, **params: Any) -> Path:
    art = get_mitigation("robustness/ood_guard")({"n_calibration": 300, **params}).apply(
        ref_clip, MitigationContext(seed=0, out_dir=out)
    )
    assert art.spec == f"hardened:{out}"
    return out


@pytest.fixture(scope="module")
def guard_dir(ref_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _guard(ref_clip, tmp_path_factory.mktemp("guard"))


@pytest.fixture(scope="module")
def knn_guard_dir(ref_clip: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _guard(ref_clip, tmp_path_factory.mktemp("knn"), score="knn", n_bank=250)


@pytest.fixture(scope="module")
def eval_images() -> tuple[list[Any], list[Any]]:
    world = SynthWorld(seed=77)  # not the calibration stream
    return [s.image for s in world.shapes(200)], [s.image for s in world.shapes(200, split="ood")]


# --------------------------------------------------------------------------- MixGen


def test_mixgen_batch_mixes_images_and_concatenates_captions() -> None:
    import torch

    px = torch.rand(8, 3, 4, 4)
    texts = [f"t{i}" for i in range(8)]
    out, new = mixgen_batch(px, texts, lam=0.5, n_mix=2)
    torch.testing.assert_close(out[0], 0.5 * px[0] + 0.5 * px[2])
    torch.testing.assert_close(out[1], 0.5 * px[1] + 0.5 * px[3])
    torch.testing.assert_close(out[2:], px[2:])
    assert new[:3] == ["t0 t2", "t1 t3", "t2"] and new[3:] == texts[3:]
    assert torch.equal(px, px.clone())  # input untouched
    out, _ = mixgen_batch(px, texts, lam=0.7)  # default M = B // 4
    torch.testing.assert_close(out[1], 0.7 * px[1] + 0.3 * px[3])
    with pytest.raises(InputError, match="n_mix"):
        mixgen_batch(px, texts, n_mix=5)
    with pytest.raises(InputError, match="captions"):
        mixgen_batch(px, texts[:3])


def test_mixgen_finetune_writes_a_loadable_hardened_model(tiny_clip_dir: Path, tmp_path: Path):
    import torch

    model = load_model(f"hf:{tiny_clip_dir}")
    before = {k: v.clone() for k, v in model.model.state_dict().items()}
    fp = model.fingerprint
    art = get_mitigation("robustness/mixgen")(
        {"steps": 4, "n_train": 48, "batch_size": 16, "lr": 1e-3}
    ).apply(model, MitigationContext(seed=0, out_dir=tmp_path / "mix"))
    assert art.summary["mixgen"] is True and np.isfinite(art.summary["last_loss"])
    assert model.fingerprint != fp
    after = model.model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and not any("logit_scale" in k for k in changed)
    hardened = load_model(art.spec)
    ims = [s.image for s in SynthWorld(seed=1).shapes(3)]
    np.testing.assert_allclose(hardened.embed_images(ims), model.embed_images(ims), atol=1e-5)
    assert (tmp_path / "mix" / "model.safetensors").exists()


def test_mixgen_is_deterministic_and_needs_training_access(tiny_clip_dir: Path) -> None:
    pairs = training_pairs(0, 16)
    a, b = (load_model(f"hf:{tiny_clip_dir}") for _ in range(2))
    ra = finetune(a, pairs, steps=2, batch_size=8, lr=1e-3, seed=5)
    rb = finetune(b, pairs, steps=2, batch_size=8, lr=1e-3, seed=5)
    assert ra.losses == rb.losses
    assert all(np.isfinite(ra.losses))


class FrozenDual:
    spec = "fake:frozen"
    fingerprint = "frozen"
    kind = "dual"
    capabilities = Capability.EMBED


def test_mixgen_refuses_models_without_training(tmp_path: Path) -> None:
    with pytest.raises(CapabilityError, match="TRAIN"):
        get_mitigation("robustness/mixgen")({"steps": 1}).apply(
            FrozenDual(), MitigationContext(out_dir=tmp_path)
        )


# --------------------------------------------------------------------------- OOD guard


def test_guard_calibrates_at_95_tpr_and_reloads_from_its_spec(guard_dir: Path, ref_clip: Any):
    payload = json.loads((guard_dir / "wrapper.json").read_text())
    assert payload["mitigation"] == "robustness/ood_guard"
    assert payload["base"] == "reference:clip"
    threshold = payload["params"]["threshold"]
    guard = load_model(f"hardened:{guard_dir}")
    assert isinstance(guard, OODGuardedModel) and guard.threshold == threshold
    assert guard.spec == f"hardened:{guard_dir}" and guard.kind == "dual"
    assert guard.capabilities == ref_clip.capabilities
    ims = [s.image for s in SynthWorld(seed=3).shapes(4)]
    np.testing.assert_array_equal(guard.embed_images(ims), ref_clip.embed_images(ims))
    assert guard.logit_scale == ref_clip.logit_scale
    assert guard.input_size == ref_clip.input_size  # delegated surface


def test_guard_abstains_on_ood_and_accepts_id(
    guard_dir: Path, knn_guard_dir: Path, eval_images: tuple[list[Any], list[Any]]
) -> None:
    id_ims, ood_ims = eval_images
    rates = {}
    for name, d in (("mcm", guard_dir), ("knn", knn_guard_dir)):
        guard = load_model(f"hardened:{d}")
        assert guard.score_name == name
        rates[name] = (float(guard.abstain(id_ims).mean()), float(guard.abstain(ood_ims).mean()))
    print("guard abstention (ID, OOD):", rates)
    # calibrated at 95% TPR: about 5% of fresh ID images are refused
    assert rates["mcm"][0] <= 0.10 and rates["knn"][0] <= 0.12
    # measured on the retrained reference:clip: MCM refuses 6.5% of ID and 32% of OOD shapes,
    # the image-embedding kNN score 3% and 49%
    assert rates["mcm"][1] >= 0.2 and rates["mcm"][1] >= rates["mcm"][0] + 0.15
    assert rates["knn"][1] >= 0.35 and rates["knn"][1] >= rates["knn"][0] + 0.25


def test_guard_shows_in_the_probes(guard_dir: Path, knn_guard_dir: Path, ref_clip: Any) -> None:
    ctx = ProbeContext(seed=0)
    params = {"n_id": 40, "n_ood": 40}
    base_res = evaluate_probe(ref_clip, get_probe("robustness/ood_detection")(params), ctx)
    assert base_res.metric("ood_rejection_rate").value == 0.0
    assert base_res.metric("id_rejection_rate").value == 0.0
    for d in (guard_dir, knn_guard_dir):  # the MCM guard of the issue, and kNN
        g = load_model(f"hardened:{d}")
        res = evaluate_probe(g, get_probe("robustness/ood_detection")(params), ctx)
        ood_rej = res.metric("ood_rejection_rate").value
        id_rej = res.metric("id_rejection_rate").value
        assert ood_rej is not None and id_rej is not None
        assert ood_rej >= 0.15 and id_rej <= 0.15 and ood_rej >= id_rej + 0.1, (d, ood_rej, id_rej)
    guard = load_model(f"hardened:{knn_guard_dir}")
    guard_res = evaluate_probe(guard, get_probe("robustness/ood_detection")(params), ctx)
    # same scores: the guard does not change the embeddings
    assert guard_res.metric("auroc/mcm").value == base_res.metric("auroc/mcm").value
    # zero-shot probes count an abstention as an error and report the rate
    params2 = {"n": 8, "corruptions": ["fog"], "severities": [5]}
    base_cor = evaluate_probe(ref_clip, get_probe("robustness/corruptions")(params2), ctx)
    cor = evaluate_probe(guard, get_probe("robustness/corruptions")(params2), ctx)
    abst = cor.metric("abstention_rate").value or 0.0
    assert abst > 0.0
    with pytest.raises(KeyError):
        base_cor.metric("abstention_rate")
    guarded_clean = cor.metric("clean_accuracy").value
    base_clean = base_cor.metric("clean_accuracy").value
    assert guarded_clean is not None and base_clean is not None
    assert guarded_clean <= base_clean  # an abstention is never a correct answer


def test_guard_without_threshold_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="no threshold"):
        get_mitigation("robustness/ood_guard")().wrap(FrozenDual())
    with pytest.raises(InputError, match="tpr"):
        get_mitigation("robustness/ood_guard")({"tpr": 1.5})
    with pytest.raises(InputError, match="bank"):
        get_mitigation("robustness/ood_guard")({"threshold": 0.5, "score": "knn"}).wrap(
            FrozenDual()
        )


def _zero_shot_accuracy(model: Any, n: int = 60) -> float:
    from vlmtrust.data.synthworld import ID_SHAPES

    shapes = SynthWorld(seed=4242).shapes(n)
    img = model.embed_images([s.image for s in shapes])
    txt = model.embed_texts([f"a photo of a {c}" for c in ID_SHAPES])
    pred = np.argmax(img @ txt.T, axis=1)
    return float(np.mean([ID_SHAPES[p] == s.target for p, s in zip(pred, shapes, strict=True)]))


def test_mixgen_on_reference_clip_keeps_it_working(ref_clip: Any, tmp_path: Path) -> None:
    before = _zero_shot_accuracy(ref_clip)
    model = load_model("reference:clip")
    art = get_mitigation("robustness/mixgen")({"steps": 4, "n_train": 64, "batch_size": 16}).apply(
        model, MitigationContext(seed=0, out_dir=tmp_path / "mixgen")
    )
    hardened = load_model(art.spec)
    after = _zero_shot_accuracy(hardened)
    print("mixgen zero-shot accuracy", before, "->", after, art.summary["last_loss"])
    assert np.isfinite(art.summary["last_loss"]) and art.summary["steps"] == 4
    assert after >= before - 0.1


@pytest.mark.slow
def test_mixgen_gains_contrast_and_snow_over_plain_finetuning(tmp_path: Path) -> None:
    """The augmentation's own effect (#4): the same fine-tuning of reference:clip (data, seed,
    budget) with and without MixGen, measured by the corruptions probe on fresh images. MixGen's
    half-contrast mixed images buy accuracy on the contrast and snow corruptions; over five
    seeds at 600 steps they gain +13 and +15 points and mean corruption accuracy +4.1
    (bench/bench_corruptions.py --mixgen --seeds, numbers in the mixgen module docstring)."""
    import torch

    torch.set_num_threads(1)  # the measured numbers are for one thread
    probe = {"n": 64, "corruptions": ["contrast", "snow"]}
    acc: dict[bool, dict[str, float]] = {}
    for mix in (False, True):
        params = {"steps": 300, "lr": 2e-4, "n_train": 2000, "mixgen": mix}
        art = get_mitigation("robustness/mixgen")(params).apply(
            load_model("reference:clip"), MitigationContext(seed=0, out_dir=tmp_path / str(mix))
        )
        res = evaluate_probe(load_model(art.spec), get_probe("robustness/corruptions")(probe),
                             ProbeContext(seed=0))  # fmt: skip
        acc[mix] = {c: res.metric(f"accuracy/{c}").value or 0.0 for c in ("contrast", "snow")}
    print("plain", acc[False], "MixGen", acc[True])
    # measured at this budget on the shipped (fragile) reference:clip: +5.9 / +6.3 points
    # (seed 0); on the earlier tower seeds 0, 1, 2 gave +5.0 / +6.9, +5.0 / +3.1, +12.2 / +5.3.
    gains = [acc[True][c] - acc[False][c] for c in ("contrast", "snow")]
    assert min(gains) > 0 and float(np.mean(gains)) >= 0.02, acc
