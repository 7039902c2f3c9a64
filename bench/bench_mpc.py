"""Benchmark: three-party MPyC secure top-1 against 10, 100 and 1,000 classes.

Usage:
    python bench/bench_mpc.py                     # d = 512 (ViT-B/32 size), 3 queries
    python bench/bench_mpc.py --dim 128 --classes 10,100 --queries 5

Random unit embeddings of ViT-B/32 size (512; the model itself cannot be downloaded here):
cost depends only on the sizes. Three MPyC processes on 127.0.0.1 (this machine's cores are
shared by all three). Per query it prints the latency with the connections open (inputs to
argmax), the bytes all parties sent, each beside plaintext float32 as a ratio, and the
wall time of the whole session (process start and connection set-up included) once.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=3)
    ap.add_argument("--classes", default="10,100,1000")
    ap.add_argument("--frac-bits", type=int, default=16)
    args = ap.parse_args()

    from vlmtrust.crypto.mpc import secure_top1

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, args.dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    queries = unit(args.queries)
    print(
        f"MPyC 3 parties (t=1), SecFxp(32, {args.frac_bits}); d={args.dim}, "
        f"{args.queries} queries per session"
    )
    print(
        f"{'classes':>8} {'ms/query':>10} {'x plain':>10} {'KB/query':>10} {'x plain':>8} "
        f"{'session s':>10} {'top1 agree':>10}"
    )
    for n in (int(c) for c in args.classes.split(",")):
        rows = unit(n)
        r32, q32 = rows.astype(np.float32), queries.astype(np.float32)
        reps = 200
        t = time.perf_counter()
        for _ in range(reps):
            for q in q32:
                int(np.argmax(r32 @ q))
        plain_s = (time.perf_counter() - t) / (reps * len(q32))
        plain_bytes = 4 * args.dim + 4 * n  # query to a server, scores back
        res = secure_top1(queries, rows, frac_bits=args.frac_bits, timeout=600)
        per_q = res.compute_s / res.n_queries
        per_b = res.total_bytes / res.n_queries
        agree = float(np.mean(np.asarray(res.top1) == (queries @ rows.T).argmax(1)))
        print(
            f"{n:>8} {1e3 * per_q:>10.0f} {per_q / plain_s:>10.0f} {per_b / 1e3:>10.0f} "
            f"{per_b / plain_bytes:>8.0f} {res.wall_s:>10.1f} {agree:>10.0%}"
        )


if __name__ == "__main__":
    main()
