"""robustness/adversarial: detects reference:clip's missing adversarial training; controls."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.types import Capability
from vlmtrust.probes.robustness.adversarial import AdversarialProbe, eps_label
from vlmtrust.runner.engine import evaluate_probe

torch.set_num_threads(1)


def _has_reference(name: str) -> bool:
    import vlmtrust

    return (Path(vlmtrust.__file__).parent / "reference" / "models" / name).is_dir()


@pytest.fixture(scope="module")
def ref_clip() -> Any:
    if not _has_reference("clip"):
        pytest.skip("reference:clip is not shipped yet")
    from vlmtrust.models.loader import load_model

    return load_model("reference:clip")


class EmbedOnly:
    """A dual model without GRADIENT (like a remote embedding API): EMBED only."""

    kind = "dual"
    capabilities = Capability.EMBED

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.spec = "embed-only:" + inner.spec
        self.fingerprint = "embed-only-" + inner.fingerprint
        self.logit_scale = inner.logit_scale

    def embed_images(self, images: Any) -> Any:
        return self.inner.embed_images(images)

    def embed_texts(self, texts: Any) -> Any:
        return self.inner.embed_texts(texts)


def test_registered_and_params_validate() -> None:
    assert get_probe("robustness/adversarial") is AdversarialProbe
    p = AdversarialProbe({"eps": "4/255, 1/255,2/255"})
    assert p.p.eps == pytest.approx([1 / 255, 2 / 255, 4 / 255])
    assert [eps_label(e) for e in p.p.eps] == ["1/255", "2/255", "4/255"]
    for bad in ({"eps": 2.0}, {"eps": "x/255"}, {"norm": "l3"}, {"steps": 0}):
        with pytest.raises(InputError) as e:
            AdversarialProbe(bad)
        assert "\n" not in str(e.value) and "robustness/adversarial" in str(e.value)


def test_whitebox_on_model_without_gradient_says_use_transfer(ref_clip: Any) -> None:
    probe = AdversarialProbe({"mode": "whitebox", "n": 2})
    batch = list(probe.samples(ProbeContext(seed=0)))
    with pytest.raises(CapabilityError) as e:
        probe.evaluate(EmbedOnly(ref_clip), batch, ProbeContext(seed=0))
    msg = str(e.value)
    assert "\n" not in msg
    assert "--param mode=transfer --param surrogate=" in msg
    # the runner and the API path (what `vlmtrust run` uses) say the same, in one line
    from vlmtrust.api import select_probes

    for call in (
        lambda: evaluate_probe(EmbedOnly(ref_clip), probe, ProbeContext(seed=0)),
        lambda: select_probes(
            EmbedOnly(ref_clip),
            ["robustness/adversarial"],
            params={"robustness/adversarial": {"mode": "whitebox"}},
        ),
    ):
        with pytest.raises(CapabilityError) as e:
            call()
        assert "\n" not in str(e.value) and "needs GRADIENT" in str(e.value)
        assert "--param mode=transfer --param surrogate=" in str(e.value)


def test_detects_reference_clip_adversarial_fragility(ref_clip: Any) -> None:
    ctx = ProbeContext(seed=0)
    res = evaluate_probe(ref_clip, AdversarialProbe({"n": 32}), ctx)
    assert res.n_errors == 0 and res.n_samples == 32
    clean = res.metric("clean_accuracy").value
    rob1 = res.metric("robust_accuracy@1/255").value
    rob2 = res.metric("robust_accuracy@2/255")
    rob4 = res.metric("robust_accuracy@4/255").value
    asr2 = res.metric("attack_success_rate@2/255").value
    assert clean is not None and rob1 is not None and rob4 is not None and asr2 is not None
    assert rob2.value is not None
    # reference:clip is accurate on clean shapes (model card: 98%) ...
    assert clean >= 0.9
    # ... and 2/255 breaks it (planted flaw 4, adversarial fragility; on these 32 images robust
    # accuracy is 28% / 13% / 3% at 1 / 2 / 4 /255): the probe flags it as high risk
    assert rob2.value <= 0.25 and rob2.risk == "high"
    assert rob4 <= rob2.value <= rob1 <= clean and rob1 <= clean - 0.4
    assert res.metric("attack_success_rate@4/255").value >= 0.8  # type: ignore[operator]
    assert asr2 >= 0.8
    assert rob2.headline
    assert set(rob2.groups) <= {s.target for s in AdversarialProbe({"n": 32}).samples(ctx)}
    # the curve: clean at 0 then robust accuracy per ε, with CIs
    (plot,) = res.plots
    s = plot.series[0]
    assert plot.kind == "line" and s.x == [0.0, 1.0, 2.0, 4.0]
    assert s.y[0] == pytest.approx(clean) and s.y[2] == pytest.approx(rob2.value)
    assert s.lo is not None and s.hi is not None
    lo0, y0, hi0 = s.lo[0], s.y[0], s.hi[0]
    assert lo0 is not None and y0 is not None and hi0 is not None and lo0 <= y0 <= hi0
    # examples: successful attacks, thumbnail = clean | adversarial | magnified perturbation
    assert len(res.examples) == 4
    ex = res.examples[0]
    assert ex.image_png_b64 is not None and "→" in ex.title
    im = Image.open(io.BytesIO(base64.b64decode(ex.image_png_b64)))
    assert im.width > 2.5 * im.height
    arr = np.asarray(im.convert("RGB"), dtype=np.float64)
    w = (im.width - 2 * max(2, im.height // 32)) // 3
    panel = arr[:, -w:]
    assert 100 < panel.mean() < 155  # centred on gray ...
    assert panel.std() > 10  # ... and visibly non-zero


def test_quiet_controls(ref_clip: Any) -> None:
    """No false alarm: a negligible budget leaves accuracy intact; transfer path works."""
    ctx = ProbeContext(seed=1)
    tiny = evaluate_probe(ref_clip, AdversarialProbe({"n": 24, "eps": [0.05 / 255]}), ctx)
    clean = tiny.metric("clean_accuracy").value
    rob = tiny.metric("robust_accuracy@0.05/255").value
    assert clean is not None and rob is not None
    assert rob >= clean - 0.05
    assert tiny.metric("attack_success_rate@0.05/255").risk == "low"
    # transfer: crafted on reference:clip, shown to an EMBED-only copy of it -> mode=transfer
    tr = evaluate_probe(EmbedOnly(ref_clip), AdversarialProbe({"n": 24, "eps": "8/255"}), ctx)
    assert tr.n_errors == 0
    rec_clean = tr.metric("clean_accuracy").value
    rec_rob = tr.metric("robust_accuracy@8/255").value
    assert rec_clean is not None and rec_rob is not None
    assert rec_clean >= 0.6 and rec_rob <= rec_clean - 0.3


def test_generative_whitebox_and_transfer(tiny_llava: Any, tiny_clip: Any) -> None:
    """Mechanics on the tiny random LLaVA: targeted/untargeted attacks and transfer run."""
    ctx = ProbeContext(seed=0)
    params = {"n": 2, "steps": 2, "eps": "2/255"}
    for goal in ("untargeted", "targeted"):
        res = evaluate_probe(tiny_llava, AdversarialProbe({**params, "goal": goal}), ctx)
        assert res.n_errors == 0, res.errors
        names = {m.name for m in res.metrics}
        assert {"clean_accuracy", "robust_accuracy@2/255", "attack_success_rate@2/255"} <= names
        assert res.examples[0].prompt and res.examples[0].image_png_b64
    tr = AdversarialProbe({**params, "mode": "transfer", "surrogate": tiny_clip.spec})
    res = evaluate_probe(tiny_llava, tr, ctx)
    assert res.n_errors == 0


def test_budget_checks_depend_on_the_norm() -> None:
    from vlmtrust.core.errors import InputError

    assert AdversarialProbe({"norm": "l2", "eps": "0.5,2.0"}).p.eps == [0.5, 2.0]
    for bad, word in (
        ({"eps": "2"}, "outside (0, 1]"),  # L∞ budgets live on [0, 1] pixels
        ({"norm": "l2", "eps": "-1"}, "positive"),
        ({"norm": "l3"}, "norm"),
    ):
        with pytest.raises(InputError) as e:
            AdversarialProbe(bad)
        assert word in str(e.value) and "\n" not in str(e.value).strip(), str(e.value)


def test_embedding_objective_is_a_label_free_feature_attack(ref_clip: Any) -> None:
    """objective=embedding pushes f(x+δ) away from f(x) (no labels) and still breaks
    zero-shot predictions, less directly than the CE attack at the same budget."""
    ctx = ProbeContext(seed=0)
    runs = {
        obj: evaluate_probe(
            ref_clip, AdversarialProbe({"n": 32, "eps": "8/255", "objective": obj}), ctx
        )
        for obj in ("ce", "embedding")
    }
    asr = {k: r.metric("attack_success_rate@8/255").value or 0.0 for k, r in runs.items()}
    assert asr["embedding"] >= 0.5 and asr["ce"] >= asr["embedding"], asr  # 0.78 / 0.94


def test_captioning_attacks_on_reference_vlm() -> None:
    """MultiTrust R.4 / R.5 style: attack the caption instead of a one-word answer."""
    if not _has_reference("vlm"):
        pytest.skip("reference:vlm is not shipped yet")
    from vlmtrust.models.loader import load_model

    torch.set_num_threads(1)
    vlm = load_model("reference:vlm", device="cpu")
    params = {"n": 8, "eps": "8/255,32/255", "task": "caption", "steps": 10}
    res = evaluate_probe(vlm, AdversarialProbe(params), ProbeContext(seed=0))
    assert res.n_errors == 0
    # clean captions name the shape; an untargeted attack pushes them off it
    assert (res.metric("clean_accuracy").value or 0.0) >= 0.75  # measured 1.0
    assert (res.metric("attack_success_rate@32/255").value or 0.0) >= 0.75  # measured 1.0
    asr8 = res.metric("attack_success_rate@8/255").value or 0.0
    assert asr8 <= (res.metric("attack_success_rate@32/255").value or 0.0)
    # targeted (R.5): the goal is the clean caption with the shape swapped for a wrong one
    tgt = evaluate_probe(
        vlm, AdversarialProbe({**params, "goal": "targeted"}), ProbeContext(seed=0)
    )
    assert (tgt.metric("attack_success_rate@32/255").value or 0.0) >= 0.6  # measured 0.875
    probe = AdversarialProbe({**params, "n": 2, "goal": "targeted"})
    recs = probe.evaluate(vlm, list(probe.samples(ProbeContext(seed=0))), ProbeContext(seed=0))
    out = recs[0].output
    assert out["task"] == "caption" and set(out["captions"]) == {"8/255", "32/255"}
    label, wrong = out["label"], out["target"]
    assert label in out["clean_caption"].lower()
    assert out["target_caption"] == out["clean_caption"].replace(label, wrong)
    with pytest.raises(InputError, match="caption_target"):
        AdversarialProbe({"task": "caption", "caption_target": "no placeholder"})
