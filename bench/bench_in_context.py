"""``robustness/in_context`` on a generative VLM: style-shift VQA before and after, per layout.

Measures ``robustness/style_shift`` (generative: the shape question, ``--n`` scenes, severity
``--severity``, probe seed ``--seed``) on the unwrapped model (``--model``, default
reference:vlm) and on the wrapper in each layout (``multi_image``: the k example images and the
query as separate images, images first; ``interleaved``: each example image next to its answer;
``composite``: one grid image), on the same scenes. Prints one JSON object: per variant the
clean and mean style accuracy with 95% bootstrap CIs, and the paired difference to the
unwrapped model (mean style accuracy; bootstrap over clean scenes, every style of a scene
resampled together).

``--interleaved`` also fine-tunes a copy of reference:vlm (in a temporary directory; the shipped
model is not touched) on in-context episodes (:meth:`Episodes.episode`): k solved examples of k
different shapes, one of them the query's, all drawn in the query's style and severity, in random
order, with the shape names *permuted at random per episode* — so the answer is in the context and
not in the query image alone — mixed with ordinary single-image shape questions (true names, clean
scenes); during the first 60% of the steps half of the episodes hold a single example (learning to
copy the context's name before learning to match). Language model and projector train, the vision
tower stays frozen (AdamW, lr 1e-3, warm-up and cosine; 8 episodes and 4 single-image questions per
step). The copy is then measured without the wrapper, with it (fixed examples) and with it
retrieving (RICES through reference:clip), all multi_image, on the same scenes; the held-out
episode accuracy (other scenes, permuted names; chance 1/k) says whether it learned to match. Not
part of the tests.

Usage: ``python bench/bench_in_context.py [--model SPEC] [--k 3] [--n 24]
[--interleaved [--steps 800]]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlmtrust.core.mitigation import get_mitigation
from vlmtrust.core.probe import ProbeContext, get_probe
from vlmtrust.core.results import Record
from vlmtrust.core.stats import bootstrap_ci
from vlmtrust.runner.engine import RecordWriter, evaluate_probe


def style_records(model: Any, n: int, severity: int, seed: int, tmp: Path) -> list[Record]:
    """``robustness/style_shift``'s records of ``model`` (every style at ``severity``)."""
    path = tmp / f"records-{time.monotonic_ns()}.jsonl"
    writer = RecordWriter(path)
    probe = get_probe("robustness/style_shift")({"n": n, "severities": [severity]})
    evaluate_probe(model, probe, ProbeContext(seed=seed), writer=writer)
    writer.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    return [Record.model_validate_json(line) for line in lines]


def per_scene(records: Sequence[Record]) -> tuple[dict[str, float], dict[str, float]]:
    """``(clean, mean style)`` correctness per clean scene (``base`` attribute)."""
    clean: dict[str, float] = {}
    styled: dict[str, list[float]] = defaultdict(list)
    for r in records:
        ok = float(r.scores.get("correct") or 0.0)
        if r.attributes["style"] == "none":
            clean[r.attributes["base"]] = ok
        else:
            styled[r.attributes["base"]].append(ok)
    return clean, {k: statistics.mean(v) for k, v in styled.items()}


def _mean(x: Any) -> float:
    return float(np.mean(x))


def _with_ci(values: Sequence[float]) -> str:
    lo, hi = bootstrap_ci(_mean, values)
    return f"{_mean(values):.3f} [{lo or 0:.3f}, {hi or 0:.3f}]"


def summary(records: Sequence[Record], before: Sequence[Record] | None = None) -> dict[str, Any]:
    """Clean and mean style accuracy with CIs; with ``before``, the paired style difference."""
    clean, styled = per_scene(records)
    keys = sorted(styled)
    out = {
        name: _with_ci([v[k] for k in keys]) for name, v in (("clean", clean), ("style", styled))
    }
    if before is not None:
        _, base = per_scene(before)
        out["paired_style_gain"] = _with_ci([styled[k] - base[k] for k in keys])
    return out


def before_after(
    model: Any, variants: dict[str, dict[str, Any]], a: argparse.Namespace, tmp: Path
) -> dict[str, Any]:
    """``model`` unwrapped and wrapped with each variant's parameters, on the same scenes."""
    before = style_records(model, a.n, a.severity, a.seed, tmp)
    out: dict[str, Any] = {"unwrapped": summary(before)}
    for label, params in variants.items():
        wrapped = get_mitigation("robustness/in_context")(params).wrap(model)
        out[label] = summary(style_records(wrapped, a.n, a.severity, a.seed, tmp), before)
    return out


class Episodes:
    """Training episodes and single-image questions from a SynthWorld stream of its own."""

    def __init__(self, wrapper: Any, seed: int = 424_242, n_scenes: int = 1500) -> None:
        from vlmtrust.data.synthworld import ID_SHAPES, SynthWorld

        self.wrapper, self.shapes = wrapper, ID_SHAPES
        self.scenes = SynthWorld(seed=seed).shapes(n_scenes)
        self.by_shape = {
            s: [x for x in self.scenes if x.attributes["shape"] == s] for s in ID_SHAPES
        }

    def episode(
        self, rng: np.random.Generator, *, held_out: bool = False, k: int | None = None
    ) -> tuple[Any, str]:
        """One episode of ``k`` examples (default: the wrapper's) and its answer (module doc)."""
        from vlmtrust.attacks.styles import STYLES, stylize
        from vlmtrust.core.model import GenerateRequest
        from vlmtrust.mitigations.robustness.in_context import VQA_QUESTION

        k = k or self.wrapper.params.k
        names = [self.shapes[int(i)] for i in rng.choice(len(self.shapes), size=k, replace=False)]
        query = names[int(rng.integers(k))]
        style = ("none", *STYLES)[int(rng.integers(len(STYLES) + 1))]
        severity, seed = int(rng.integers(1, 4)), int(rng.integers(1 << 30))
        perm = rng.permutation(len(self.shapes))
        label = {s: self.shapes[int(perm[i])] for i, s in enumerate(self.shapes)}

        def draw(shape: str, j: int) -> Any:
            pool = self.by_shape[shape]
            half = pool[len(pool) // 2 :] if held_out else pool[: len(pool) // 2]
            image = half[int(rng.integers(len(half)))].image
            return image if style == "none" else stylize(image, style, severity, seed=seed + j)

        shown = [(draw(s, j), label[s]) for j, s in enumerate(names)]
        request = GenerateRequest(VQA_QUESTION, images=(draw(query, k),), max_new_tokens=8)
        return self.wrapper.shots(request, shown), label[query]

    def single(self, rng: np.random.Generator) -> tuple[Any, str]:
        """An ordinary single-image shape question (clean scene, true name)."""
        from vlmtrust.core.model import GenerateRequest
        from vlmtrust.reference.train_vlm import shape_example

        ex = shape_example(self.scenes[int(rng.integers(len(self.scenes) // 2))], rng)
        return GenerateRequest(ex.prompt, images=(ex.image,)), ex.answer


def _encode(model: Any, items: Sequence[tuple[Any, str]]) -> dict[str, Any]:
    """Right-padded batch with labels on the answers only (as the backend renders prompts)."""
    import torch

    texts = [f"{model.render(r.prompt, len(r.images))} {answer}</s>" for r, answer in items]
    images = [im for r, _ in items for im in r.images]
    model.tokenizer.padding_side = "right"
    enc = dict(model.processor(text=texts, images=images, padding=True, return_tensors="pt"))
    model.tokenizer.padding_side = "left"
    ids, labels = enc["input_ids"], torch.full_like(enc["input_ids"], -100)
    assistant = model.tokenizer.convert_tokens_to_ids("▁ASSISTANT")
    for row in range(ids.shape[0]):
        start = int((ids[row] == assistant).nonzero()[-1]) + 2  # after "ASSISTANT:"
        mask = enc["attention_mask"][row].bool()
        labels[row, start:] = torch.where(mask[start:], ids[row, start:], -100)
    enc["labels"] = labels
    return enc


def held_out_accuracy(model: Any, episodes: Episodes, n: int = 40) -> float:
    """Share of held-out episodes (other scenes) answered with the permuted name."""
    rng = np.random.default_rng(123)
    pairs = [episodes.episode(rng, held_out=True) for _ in range(n)]
    outs = model.generate_batch([r for r, _ in pairs])
    hits = [f" {a}." in f" {g.text}" for g, (_, a) in zip(outs, pairs, strict=True)]
    return float(np.mean(hits))


def finetune_copy(out_dir: Path, *, k: int, steps: int) -> dict[str, Any]:
    """Fine-tune a fresh copy of reference:vlm on episodes; save it to ``out_dir``."""
    import torch

    from vlmtrust.models.loader import load_model

    model = load_model("reference:vlm", device="cpu")
    wrapper = get_mitigation("robustness/in_context")({"k": k, "layout": "multi_image"}).wrap(model)
    episodes = Episodes(wrapper)
    net = model.model
    net.model.vision_tower.requires_grad_(False)
    trained = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-3, weight_decay=0.01)
    rng = np.random.default_rng(0)
    info: dict[str, Any] = {"held_out_before": held_out_accuracy(model, episodes)}
    losses: list[float] = []
    for step in range(steps):
        net.train()
        net.model.vision_tower.eval()
        for g in opt.param_groups:  # warm-up then cosine
            g["lr"] = 1e-3 * min(1.0, (step + 1) / 20) * 0.5 * (1 + np.cos(np.pi * step / steps))
        items = []
        for j in range(8):  # the first 60%: half of the episodes hold one example (copying)
            request, name = episodes.episode(
                rng, k=1 if j % 2 == 0 and step < 0.6 * steps else None
            )
            items.append((request, f"It is {'an' if name[0] in 'aeiou' else 'a'} {name}."))
        items += [episodes.single(rng) for _ in range(4)]
        loss = net(**_encode(model, items)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    net.eval()
    info["held_out_after"] = held_out_accuracy(model, episodes)
    info["loss_first_last_50"] = [round(_mean(losses[:50]), 3), round(_mean(losses[-50:]), 3)]
    model.save_pretrained(out_dir)
    return info


def main() -> None:
    import torch

    from vlmtrust.models.loader import load_model

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="reference:vlm", help="generative model spec")
    ap.add_argument("--k", type=int, default=3, help="examples per request")
    ap.add_argument("--n", type=int, default=24, help="clean scenes (each in every style)")
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="probe seed")
    ap.add_argument("--params", default="{}", help="JSON parameters of the wrapper")
    ap.add_argument("--interleaved", action="store_true", help="also the fine-tuned copy")
    ap.add_argument("--steps", type=int, default=800, help="fine-tune steps (--interleaved)")
    a = ap.parse_args()
    params = {"k": a.k, **json.loads(a.params)}
    report: dict[str, Any] = {"params": params, "n": a.n, "severity": a.severity, "seed": a.seed}
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        t0 = time.perf_counter()
        ref = load_model(a.model, device="cpu")
        kinds = ("multi_image", "interleaved", "composite")
        layouts = {lay: {**params, "layout": lay} for lay in kinds}
        report[a.model] = before_after(ref, layouts, a, tmp)
        report["reference_seconds"] = round(time.perf_counter() - t0, 1)
        if a.interleaved:
            t0 = time.perf_counter()
            report["finetune"] = finetune_copy(tmp / "copy", k=a.k, steps=a.steps)
            report["finetune"]["seconds"] = round(time.perf_counter() - t0, 1)
            copy = load_model(f"hf:{tmp / 'copy'}", device="cpu")
            multi = {**params, "layout": "multi_image"}
            variants = {"fixed": multi, "retrieved": {**multi, "retriever": "reference:clip"}}
            report["interleaved_copy"] = before_after(copy, variants, a, tmp)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
