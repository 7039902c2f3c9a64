"""One MPyC party of :func:`vlmtrust.crypto.mpc.secure_top1` (run as a separate process).

Usage: ``python -m vlmtrust.crypto._mpc_party JOB.json PID``. The party's own job file
(written by the orchestrator) names the party addresses, the public sizes, the fixed-point
format and, for parties 0 and 1 only, the ``.npy`` file of their own private input. Party 0
(the client) inputs the query embeddings and learns each argmax (and the scores with
``reveal_scores``); party 1 (the model owner) inputs the class matrix; party 2 is a helper
without input. The party
writes ``result-PID.json``; on failure it writes ``{"error": ...}`` and exits with 3.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _fail(out: Path, msg: str) -> None:
    out.write_text(json.dumps({"error": msg}))
    sys.exit(3)


def main() -> None:
    job_path, pid = Path(sys.argv[1]), int(sys.argv[2])
    job: dict[str, Any] = json.loads(job_path.read_text())
    out = job_path.parent / f"result-{pid}.json"
    addrs: list[str] = job["addresses"]
    # MPyC reads its options from sys.argv when mpyc.runtime is first imported.
    sys.argv = [sys.argv[0], *[a for addr in addrs for a in ("-P", addr)], "-I", str(pid)]
    sys.argv += ["-L", str(job["bit_length"]), "--no-log"]
    from mpyc.runtime import mpc

    d, n = int(job["dim"]), int(job["rows"])
    secfxp = mpc.SecFxp(int(job["bit_length"]), int(job["frac_bits"]))

    async def run() -> dict[str, Any]:
        try:
            await asyncio.wait_for(mpc.start(), float(job["connect_timeout"]))
        except TimeoutError:
            missing = [p.pid for p in mpc.parties if p.pid != pid and p.protocol is None]
            _fail(
                out,
                f"party {pid}: parties {missing or 'some'} did not connect within "
                f"{job['connect_timeout']} s",
            )
        t0 = time.perf_counter()
        m = int(job["queries"])
        q_plain = np.load(job["input"], allow_pickle=False) if pid == 0 else np.zeros((m, d))
        w_plain = np.load(job["input"], allow_pickle=False) if pid == 1 else np.zeros((n, d))
        # integral=False on every party: MPyC skips truncation for integral values, so the
        # placeholders of the non-senders must not be inferred integral from their zeros.
        q = mpc.input(secfxp.array(q_plain, integral=False), senders=0)
        w = mpc.input(secfxp.array(w_plain, integral=False), senders=1)
        res: dict[str, Any] = {"pid": pid, "top1": [], "scores": []}
        for i in range(m):
            scores = w @ q[i]  # fixed-point products, one truncation per score
            idx = await mpc.output(mpc.np_argmax(scores), receivers=[0])
            if job["reveal_scores"]:
                s = await mpc.output(scores, receivers=[0])
                if pid == 0:
                    res["scores"].append([float(v) for v in np.asarray(s, dtype=np.float64)])
            if pid == 0:
                res["top1"].append(int(idx))
        res["compute_s"] = time.perf_counter() - t0
        res["bytes_sent"] = {
            str(p.pid): int(p.protocol.nbytes_sent) for p in mpc.parties if p.pid != pid
        }
        field = secfxp.field
        res["field"] = {"modulus": str(field.modulus), "byte_length": int(field.byte_length)}
        await mpc.shutdown()
        return res

    res = mpc.run(run())
    out.write_text(json.dumps(res))


if __name__ == "__main__":
    main()
