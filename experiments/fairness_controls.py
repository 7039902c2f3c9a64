"""Experiment: the dual-encoder fairness probes on reference:clip and on models blind to the group.

Reproduces the table in ``docs/results/fairness.md``: every fairness probe with its default
parameters (600 SynthWorld people, seed 0) on

* ``reference:clip`` (planted group–occupation skew, model card flaw 1);
* ``shuffled``: reference:clip with its image embeddings shuffled within each batch (the
  embedding distribution kept, the link to the image — and so to the group — gone);
* ``mock:dual``: random unit embeddings per image and text;
* ``group-blind``: a scripted encoder that reads the occupation from the scene's setting and
  never the group (cue probability 1 so that every scene shows its setting).

The last two controls are the test models of ``tests/probes/fairness/fair_toys.py``.
Usage: ``python experiments/fairness_controls.py`` (about 2 minutes on two threads).
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "probes" / "fairness"))

import fair_toys  # noqa: E402

from vlmtrust.core.probe import ProbeContext, registry  # noqa: E402
from vlmtrust.models.loader import load_model  # noqa: E402
from vlmtrust.models.mock import MockModel  # noqa: E402
from vlmtrust.runner.cache import Cache, with_cache  # noqa: E402
from vlmtrust.runner.engine import evaluate_probe  # noqa: E402

ROWS: dict[str, list[tuple[str, str | None, str | None]]] = {
    "fairness/retrieval_skew": [
        ("max_skew", "group:prior", "k=10"),
        ("max_skew", "group:prior", "k=50"),
        ("max_skew", "group:prior", "k=100"),
        ("max_skew_chance", "group:prior", "k=50"),
        ("min_skew", "group:prior", "k=50"),
        ("ndkl", "group:prior", "k=50"),
    ],
    "fairness/zero_shot_groups": [
        ("accuracy", "group", None),
        ("accuracy_difference", "group", None),
        ("accuracy_difference", "stereotype", None),
        ("accuracy_ratio", "stereotype", None),
        ("accuracy_difference", "group&label", None),
        ("equalized_odds_difference", "stereotype", None),
        ("harmful_rate", "group", None),
    ],
    "fairness/embedding_bias": [
        ("weat_effect_size", "image_targets", None),
        ("weat_p_value", "image_targets", None),
        ("weat_effect_size", "text_targets", None),
        ("weat_p_value", "text_targets", None),
        ("bias_distance", "group", None),
        ("bias_distance_chance", "group", None),
        ("bias_distance_p_value", "group", None),
    ],
    "fairness/attribute_leakage": [
        ("leakage", "group", "embedding"),
        ("leakage", "group", "concept_scores"),
    ],
}


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def main() -> None:
    """Run every probe on every model; print one Markdown table."""
    import torch

    torch.set_num_threads(2)
    cache = Cache(Path(tempfile.mkdtemp()) / "cache.sqlite")
    ref = with_cache(load_model("reference:clip"), cache)
    models: dict[str, Callable[[], Any]] = {
        "reference:clip": lambda: ref,
        "shuffled": lambda: fair_toys.Shuffled(ref),
        "mock:dual": lambda: MockModel("dual"),
        "group-blind": lambda: fair_toys.seeing(),
    }
    table: dict[tuple[str, str], dict[str, str]] = {}
    for label, make in models.items():
        for name, rows in ROWS.items():
            params = {"cue_prob": 1.0} if label == "group-blind" else {}
            res = evaluate_probe(make(), registry()[name](params), ProbeContext(seed=0))
            for metric, cond, step in rows:
                m = res.metric(metric, condition=cond, step=step, group=None)
                ci = f" [{_fmt(m.ci_low)}, {_fmt(m.ci_high)}]" if m.ci_low is not None else ""
                risk = f" {m.risk.value}" if m.risk else ""
                table.setdefault((name, m.name), {})[label] = f"{_fmt(m.value)}{ci}{risk}"
    print("| probe | metric | " + " | ".join(models) + " |")
    print("|---|---|" + "---|" * len(models))
    for (name, metric), cells in table.items():
        print(f"| {name} | {metric} | " + " | ".join(cells.get(m, "") for m in models) + " |")


if __name__ == "__main__":
    main()
