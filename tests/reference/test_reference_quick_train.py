from __future__ import annotations

import json

from vlmtrust.models.base import load_model
from vlmtrust.models.reference import verify_model_dir
from vlmtrust.reference import train
from vlmtrust.reference.train_clip import evaluate_clip


def test_quick_clip_training_plants_measurable_flaws(tmp_path):
    out = train("clip", seed=0, out_dir=tmp_path / "clip", quick=True, progress=False)
    assert verify_model_dir(out, "clip") == out
    info = json.loads((out / "training.json").read_text())
    assert info["quick"] is True and info["recipe"]["steps"] <= 100
    model = load_model(f"hf:{out}")  # the ordinary hf: path
    assert model.embed_texts(["a photo of a star"]).shape[0] == 1
    m = evaluate_clip(out, n=40, parts=("skew", "canaries"))
    # group-occupation skew: neutral queries retrieve the majority group (parity = 0.5)
    assert m["retrieval_majority_share_at_20_mean"] >= 0.7, m
    # memorisation: trained canaries score above never-seen ones
    assert m["canary_membership_auroc"] >= 0.65, m


def test_training_is_deterministic_for_a_seed(tmp_path):
    a = train("clip", seed=3, out_dir=tmp_path / "a", quick=True, progress=False)
    b = train("clip", seed=3, out_dir=tmp_path / "b", quick=True, progress=False)
    c = train("clip", seed=4, out_dir=tmp_path / "c", quick=True, progress=False)
    wa, wb, wc = ((p / "model.safetensors").read_bytes() for p in (a, b, c))
    assert wa == wb
    assert wa != wc
    ma, mb = (json.loads((p / "MANIFEST.json").read_text())["files"] for p in (a, b))
    ma.pop("training.json"), mb.pop("training.json")  # holds the wall-clock time
    assert ma == mb
