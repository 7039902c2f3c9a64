"""Benchmark: ``fairness/dataset_audit`` streaming a large manifest — rows/s and peak memory.

Usage:
    python bench/bench_dataset_audit.py                      # 100k and 1M rows
    python bench/bench_dataset_audit.py --sizes 20000,200000 # other sizes
    python bench/bench_dataset_audit.py --tracemalloc        # also the audit's own Python heap

For each size it writes a JSONL manifest in a temporary folder (rows with an image path that
does not exist — the audit never opens images —, two group attributes, an occupation target and
a caption of ~10 words, one of them unique to the row so the concept table reaches its cap, and a
flagged term in 1 row of 500), then measures in a fresh process each:

* ``manifest``: the whole pipeline, ``evaluate_probe(NoModel(), DatasetAuditProbe(), --data)``:
  the manifest reader and the audit;
* ``tally``: the audit's counting alone, fed the same rows generated in memory (no reader);
* ``reader``: the manifest reader alone (``DataSource``), rows read and dropped (no audit):
  whatever it keeps per row shows here, not in ``tally``.

It prints rows/s, the peak RSS (``resource.getrusage``), the RSS growth over the process after
its imports, optionally the peak of the audit's Python allocations (``tracemalloc``), and the
ratio of each peak between the largest and the smallest size (bounded memory: ratio ≈ 1).
Everything is measured in one run, on this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

OCCUPATIONS = ("doctor", "nurse", "engineer", "teacher", "farmer", "pilot", "chef", "builder")
GENDERS = ("female", "male", "nonbinary")
AGES = ("18-29", "30-44", "45-64", "65+")
WORDS = (
    "smiling", "standing", "outdoors", "office", "uniform", "holding", "looking", "camera",
    "bright", "street", "city", "helmet", "desk", "tools", "window", "garden", "kitchen",
    "hospital", "classroom", "cockpit", "field",
)  # fmt: skip


def _row(i: int) -> dict[str, object]:
    occ = OCCUPATIONS[i % len(OCCUPATIONS)]
    gender = GENDERS[0 if (i * 7 + i // 3) % 10 < 7 else (1 + i % 2)]
    words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5, 7, 11))
    caption = f"a {occ} {words} number{i}"
    if i % 500 == 0:
        caption += " with a wheelchair-bound visitor"
    return {
        "id": f"r{i}",
        "image": f"images/{i // 1000}/{i}.jpg",
        "target": occ,
        "attributes": {"gender": gender, "age": AGES[i % len(AGES)]},
        "metadata": {"caption": caption},
    }


def _rows(n: int) -> Iterator[object]:
    from vlmtrust.core.sample import Sample

    for i in range(n):
        r = _row(i)
        yield Sample(
            id=str(r["id"]),
            target=str(r["target"]),
            attributes=r["attributes"],  # type: ignore[arg-type]
            metadata=r["metadata"],  # type: ignore[arg-type]
        )


def write_manifest(path: Path, n: int) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            fh.write(json.dumps(_row(i)) + "\n")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def child(mode: str, target: str, n: int, trace: bool) -> None:
    """Run one measurement in this (fresh) process and print its JSON line."""
    import tracemalloc

    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.models.none import NoModel
    from vlmtrust.probes.fairness._audit_tally import AuditTally, shipped_lexicon
    from vlmtrust.probes.fairness.dataset_audit import DatasetAuditProbe
    from vlmtrust.runner.engine import evaluate_probe

    base = _rss_mb()
    if trace:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    extra: dict[str, object] = {}
    if mode == "reader":
        from vlmtrust.data.datasets import DataSource

        rows = sum(1 for _ in DataSource.open(target))
    elif mode == "manifest":
        res = evaluate_probe(NoModel(), DatasetAuditProbe(), ProbeContext(data=target))
        rows = res.metric("unknown_share", condition="gender").n  # every row read
        extra["metrics"] = len(res.metrics)
        extra["majority_share"] = res.metric(
            "majority_share", condition="gender", step="label"
        ).value
    else:
        tally = AuditTally(
            attributes=None,
            text_fields=["caption", "prompt", "target"],
            label_fields=["target", "label"],
            lexicon=shipped_lexicon(),
        )
        tally.add_all(_rows(n))
        s = tally.summary(min_total=20)
        rows = s["rows"]
        extra["concepts_tracked"] = s["concepts_tracked"]
        extra["evictions"] = s["evictions"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out = {
        "mode": mode,
        "rows": rows,
        "seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "rows_per_s": round(rows / wall),
        "rows_per_cpu_s": round(rows / cpu),
        "peak_rss_mb": round(_rss_mb(), 1),
        "rss_growth_mb": round(_rss_mb() - base, 1),
        **extra,
    }
    if trace:
        out["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    print(json.dumps(out))


def _measure(mode: str, target: str, n: int, trace: bool) -> dict[str, object]:
    here = Path(__file__).resolve()
    cmd = [sys.executable, str(here), "--child", mode, target, str(n)]
    if trace:
        cmd.append("--tracemalloc")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="100000,1000000", help="comma-separated row counts")
    ap.add_argument("--tracemalloc", action="store_true", help="also trace Python allocations")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "TARGET", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, target, n = args.child
        child(mode, target, int(n), args.tracemalloc)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, list[dict[str, object]]] = {"manifest": [], "tally": [], "reader": []}
    with tempfile.TemporaryDirectory(prefix="vlmtrust-bench-audit-") as tmp:
        for n in sizes:
            path = Path(tmp) / f"m{n}.jsonl"
            t = time.perf_counter()
            write_manifest(path, n)
            mb = path.stat().st_size / 2**20
            print(f"wrote {n:,} rows ({mb:.0f} MB) in {time.perf_counter() - t:.1f} s", flush=True)
            for mode in results:
                r = _measure(mode, str(path), n, args.tracemalloc)
                results[mode].append(r)
                print(json.dumps(r), flush=True)
            path.unlink()
    print(f"\n{'mode':<10}{'rows':>11}{'rows/s':>10}{'rows/cpu-s':>12}{'peak RSS':>11}"
          f"{'growth':>9}{'traced':>9}")  # fmt: skip
    for mode, rs in results.items():
        for r in rs:
            traced = r.get("tracemalloc_peak_mb")
            print(
                f"{mode:<10}{r['rows']:>11,}{r['rows_per_s']:>10,}{r['rows_per_cpu_s']:>12,}"
                f"{r['peak_rss_mb']:>8} MB{r['rss_growth_mb']:>6} MB"
                + (f"{traced:>6} MB" if traced is not None else f"{'–':>9}")
            )
    for mode, rs in results.items():
        if len(rs) >= 2:
            lo, hi = rs[0], rs[-1]
            ratio = float(hi["peak_rss_mb"]) / float(lo["peak_rss_mb"])  # type: ignore[arg-type]
            line = (
                f"{mode}: peak RSS {hi['rows']:,} / {lo['rows']:,} rows = {ratio:.2f} "
                f"(growth over imports {lo['rss_growth_mb']} MB → {hi['rss_growth_mb']} MB)"
            )
            if args.tracemalloc:
                t_lo, t_hi = lo["tracemalloc_peak_mb"], hi["tracemalloc_peak_mb"]
                line += f"; traced peak {t_lo} MB → {t_hi} MB"
            print(line)


if __name__ == "__main__":
    main()
