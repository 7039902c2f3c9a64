"""Every probe declares its progress total, and the bars show a rate and an ETA."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlmtrust.core.probe import ProbeContext, registry
from vlmtrust.models.mock import MockModel
from vlmtrust.runner.data import with_data
from vlmtrust.runner.engine import evaluate_probe

LIMIT = 3
# Parameters that let a probe run at LIMIT samples (its defaults refuse so small a draw).
SMALL = {
    "fairness/retrieval_skew": {"k": [1]},
    "privacy/membership_inference": {"fprs": [0.5]},
}


# The built-in probes (test modules register toy probes of their own in the same registry).
BUILT_IN = sorted(n for n, cls in registry().items() if cls.__module__.startswith("vlmtrust."))


@pytest.mark.parametrize("name", BUILT_IN)
def test_declared_total_equals_the_samples_streamed(name: str) -> None:
    """The runner makes one progress step per item of ``samples``: the total must match."""
    probe = registry()[name](SMALL.get(name))
    ctx = with_data(ProbeContext(limit=LIMIT))
    total = probe.n_samples(ctx)
    assert total is not None, f"{name} declares no progress total"
    assert total == sum(1 for _ in probe.samples(ctx)), name


@pytest.mark.parametrize(
    ("name", "kind"),
    [("robustness/typographic", "dual"), ("capability/vqa", "generative")],
)
def test_progress_steps_of_a_run_equal_the_total(name: str, kind: str) -> None:
    """On a real (mock-model) run the steps reported sum to the declared total."""
    probe = registry()[name](SMALL.get(name))
    ctx = with_data(ProbeContext(limit=1))
    steps: list[int] = []
    evaluate_probe(MockModel(kind), probe, ctx, on_progress=steps.append)
    assert sum(steps) == probe.n_samples(ctx)


@pytest.mark.parametrize("info", [False, True])  # the runner's bars, the trainers' bars
def test_bar_renders_rate_and_eta(info: bool) -> None:
    from vlmtrust.core.progress import new_progress

    now = [100.0]
    prog: Any = new_progress(info=info)
    prog.get_time = lambda: now[0]
    tid = prog.add_task("mock:dual · robustness/typographic", total=400, info="loss 1.0")
    prog.start_task(tid)
    for _ in range(4):  # 10 samples a second on a fixed clock
        now[0] += 1.0
        prog.advance(tid, 10)
    task = prog.tasks[0]
    text = " ".join(str(c.render(task)) for c in prog.columns if not hasattr(c, "bar_width"))
    assert "40/400" in text
    assert "10.0/s" in text
    assert "eta" in text and "0:00:36" in text


@pytest.mark.parametrize("name", ["robustness/typographic", "robustness/adversarial"])
def test_declared_total_counts_user_data(name: str, tmp_path: Path) -> None:
    """With --data the labeled-image and attack probes count the dataset's entries."""
    from PIL import Image

    for label, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        (tmp_path / label).mkdir()
        for i in range(2):
            Image.new("RGB", (32, 32), colour).save(tmp_path / label / f"{i}.png")
    probe = registry()[name]()
    ctx = with_data(ProbeContext(data=str(tmp_path), limit=LIMIT))
    total = probe.n_samples(ctx)
    assert total is not None and total == sum(1 for _ in probe.samples(ctx))


# The probes that stream the user's rows when given --data (and their extra parameters).
DATA_PROBES = {
    "capability/zero_shot": {},
    "capability/vqa": {},
    "privacy/encrypted_zero_shot": {},
    "fairness/retrieval_skew": {"k": [1]},
    "fairness/zero_shot_groups": {},
    "fairness/embedding_bias": {},
    "fairness/attribute_leakage": {},
    "fairness/generation_bias": {},
    "fairness/counterfactual": {},
    "robustness/ood_detection": {"ood_data": "OOD"},
}


@pytest.mark.parametrize("name", sorted(DATA_PROBES))
def test_every_data_probe_declares_its_total(name: str, tmp_path: Path) -> None:
    """With --data each of these probes counts the manifest's rows (an unreadable one included)."""
    import json

    from PIL import Image

    rows = []
    for i in range(6):
        colour = "red" if i % 2 else "blue"
        rgb = (200, 0, 0) if i % 2 else (0, 0, 200)
        Image.new("RGB", (16, 16), rgb).save(tmp_path / f"{i}.png")
        rows.append(
            {
                "image": f"{i}.png",
                "prompt": "What colour is the shape?",
                "target": colour,
                "attributes": {"group": "ab"[i % 3 == 0], "set": f"s{i // 2}", "label": colour},
            }
        )
    rows.append({"image": "missing.png", "target": "red", "attributes": {"group": "a"}})
    (tmp_path / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ood").mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (0, 200, 0)).save(tmp_path / "ood" / f"{i}.png")
    params = {k: (str(tmp_path / "ood") if v == "OOD" else v) for k, v in DATA_PROBES[name].items()}
    probe = registry()[name](params or None)
    ctx = with_data(ProbeContext(data=str(tmp_path / "data.jsonl"), limit=5))
    total = probe.n_samples(ctx)
    assert total is not None, f"{name} declares no progress total with --data"
    assert total == sum(1 for _ in probe.samples(ctx)), name
