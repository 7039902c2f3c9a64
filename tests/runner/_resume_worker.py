"""Runs an audit in a subprocess so a test can kill -9 it mid-run."""

import sys
from pathlib import Path

from runner_toys import ColourEncoder, ColourProbe

from vlmtrust.core.probe import ProbeContext
from vlmtrust.runner.engine import run_audit

if __name__ == "__main__":
    out, delay, resume = Path(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
    run_audit(
        ColourEncoder(delay_s=delay),
        [ColourProbe({"n": 64})],
        out_dir=out,
        ctx=ProbeContext(seed=3),
        resume=resume,
    )
