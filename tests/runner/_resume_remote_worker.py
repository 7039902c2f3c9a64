"""Runs a pipelined audit of an openai: model in a subprocess so a test can kill -9 it."""

import sys
from pathlib import Path

from runner_toys import AskProbe

from vlmtrust.core.probe import ProbeContext
from vlmtrust.models.loader import load_model
from vlmtrust.runner.engine import run_audit

if __name__ == "__main__":
    url, out, resume = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
    model = load_model(f"openai:test-model@{url}", concurrency=4, api_key_env="VLMTRUST_NO_KEY")
    run_audit(
        model,
        [AskProbe({"n": 48, "slow_every": 7})],
        out_dir=out,
        ctx=ProbeContext(seed=3),
        resume=resume,
    )
