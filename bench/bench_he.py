"""Benchmark: CKKS-encrypted zero-shot scoring against 10, 100 and 1,000 classes.

Usage:
    python bench/bench_he.py                      # d = 512 (ViT-B/32 size), both layouts
    python bench/bench_he.py --params compact     # N = 4096 (also 128-bit): ~3x faster
    python bench/bench_he.py --dim 128 --queries 5 --classes 10,100,1000,4000

A ViT-B/32-size CLIP cannot be downloaded here, so the embeddings are random unit vectors of
the same dimension (512): cost depends only on the sizes, not the values. For each number of
classes and each server layout (``diagonal``: the class matrix packed diagonally, all scores
in one ciphertext; ``per_class``: one encrypted dot product per class) it prints the latency
per query (encrypt + server + decrypt) and the bytes per query (encrypted query + reply),
each beside the plaintext float32 computation as a ratio, and the top-1 agreement and largest
|Δ cosine| against plaintext. The public context (evaluation keys) is sent once per client
and printed separately. Parameters: HEParams() — N = 8192, log2 Q = 160, scale 2^40 — or
HEParams.compact() — N = 4096, log2 Q = 102, scale 2^30; both 128-bit.
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
    ap.add_argument("--layouts", default="diagonal,per_class")
    ap.add_argument(
        "--params",
        choices=("default", "compact"),
        default="default",
        help="HEParams() (N=8192) or HEParams.compact() (N=4096, 128-bit, ~1e-5 error)",
    )
    args = ap.parse_args()

    from vlmtrust.crypto.he import HEClient, HEParams, HEServer

    rng = np.random.default_rng(0)

    def unit(n: int) -> np.ndarray:
        x = rng.standard_normal((n, args.dim))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    params = HEParams() if args.params == "default" else HEParams.compact()
    t = time.perf_counter()
    client = HEClient(args.dim, params)
    pub = client.public_context()
    print(
        f"CKKS N={params.poly_modulus_degree}, moduli {params.coeff_mod_bit_sizes} "
        f"(log2 Q={params.total_coeff_bits}), scale 2^{params.scale_bits}: "
        f"{params.security()}-bit (HE Standard); d={args.dim}, {args.queries} queries/row"
    )
    print(f"key set-up {time.perf_counter() - t:.2f} s; public context {len(pub) / 1e6:.1f} MB")
    queries = unit(args.queries)
    head = (
        f"{'classes':>8} {'layout':<10} {'ms/query':>10} {'x plain':>10} {'KB/query':>10} "
        f"{'x plain':>8} {'ct out':>7} {'top1 agree':>10} {'max|Δcos|':>10}"
    )
    print(head)
    for n in (int(c) for c in args.classes.split(",")):
        rows = unit(n)
        r32, q32 = rows.astype(np.float32), queries.astype(np.float32)
        reps = 200
        t = time.perf_counter()
        for _ in range(reps):
            for q in q32:
                int(np.argmax(r32 @ q))
        plain_s = (time.perf_counter() - t) / (reps * len(q32))
        plain_bytes = 4 * args.dim + 4 * n
        for layout in args.layouts.split(","):
            server = HEServer(pub, rows, packing=layout)  # type: ignore[arg-type]
            got, lat, nbytes, n_ct = [], 0.0, 0, 0
            for q in queries:
                t = time.perf_counter()
                ct = client.encrypt(q)
                reply = server.score(ct)
                got.append(client.decrypt(reply, n))
                lat += time.perf_counter() - t
                nbytes, n_ct = len(ct) + sum(len(b) for b in reply), len(reply)
            s = np.asarray(got)
            plain = queries @ rows.T
            agree = float(np.mean(s.argmax(1) == plain.argmax(1)))
            err = float(np.abs(s - plain).max())
            per_q = lat / len(queries)
            print(
                f"{n:>8} {layout:<10} {1e3 * per_q:>10.1f} {per_q / plain_s:>10.0f} "
                f"{nbytes / 1e3:>10.0f} {nbytes / plain_bytes:>8.0f} {n_ct:>7} "
                f"{agree:>10.0%} {err:>10.1e}"
            )


if __name__ == "__main__":
    main()
