"""`vlmtrust crypto zero-shot`: registered, one error line on bad input."""

from __future__ import annotations

from typer.testing import CliRunner

from vlmtrust.cli import app


def test_crypto_zero_shot_refuses_an_unknown_method_in_one_line() -> None:
    r = CliRunner().invoke(app, ["crypto", "zero-shot", "--method", "rsa"])
    assert r.exit_code == 2
    assert r.output.strip() == "error: --method 'rsa' is unknown: use he or mpc"


def test_crypto_help_lists_zero_shot() -> None:
    r = CliRunner().invoke(app, ["crypto", "--help"])
    assert r.exit_code == 0 and "zero-shot" in r.output
