"""``vlmtrust crypto``: encrypted (CKKS) or secret-shared (MPyC) zero-shot on a dual encoder."""

from __future__ import annotations

import time
from typing import Annotated, Literal

import typer

crypto_app = typer.Typer(
    help="Privacy-preserving zero-shot inference: CKKS encryption (TenSEAL) or three-party "
    "computation (MPyC) against the same model in plaintext. Needs the crypto extra.",
    no_args_is_help=True,
)


_EXAMPLES = (
    "\b\nExamples:\n"
    "  vlmtrust crypto zero-shot --method he --model reference:clip --n 4\n"
    "  vlmtrust crypto zero-shot --method mpc --n 8 --timeout 60"
)


@crypto_app.command("zero-shot", epilog=_EXAMPLES)
def zero_shot_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="dual-encoder spec")] = (
        "reference:clip"
    ),
    method: Annotated[
        str, typer.Option("--method", help="he (CKKS encryption) or mpc (three MPyC parties)")
    ] = "he",
    n: Annotated[int, typer.Option("--n", help="SynthWorld shape images to classify")] = 4,
    seed: Annotated[int, typer.Option("--seed", help="SynthWorld seed")] = 0,
    timeout: Annotated[float, typer.Option("--timeout", help="mpc: seconds per session")] = 120,
) -> None:
    """Classify SynthWorld shapes with the image embeddings encrypted or secret-shared.

    Prints top-1 agreement with plaintext, the largest |Δ cosine|, latency and bytes per
    query. Exit code 2 with one ``error:`` line on bad input.
    """
    from vlmtrust.core.errors import InputError, VlmtrustError, one_line

    try:
        if method not in ("he", "mpc"):
            raise InputError(f"--method {method!r} is unknown: use he or mpc")
        if not 1 <= n <= 1000:
            raise InputError(f"--n {n} is out of range: use 1..1000")
        _zero_shot(model, method, n, seed, timeout)  # type: ignore[arg-type]
    except VlmtrustError as e:
        typer.echo(f"error: {one_line(e)}", err=True)
        raise typer.Exit(2) from None


def _zero_shot(spec: str, method: Literal["he", "mpc"], n: int, seed: int, timeout: float) -> None:
    import numpy as np

    from vlmtrust.core.errors import CapabilityError
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.data.synthworld import _vocab as vocab
    from vlmtrust.models.loader import load_model

    if method == "he":  # fail on a missing extra before loading the model
        from vlmtrust.crypto.he import _ts

        _ts()
    else:
        from vlmtrust.crypto.mpc import _check_mpyc

        _check_mpyc()
    m = load_model(spec)
    if not hasattr(m, "embed_images") or not hasattr(m, "embed_texts"):
        raise CapabilityError(f"model {spec!r} is not a dual encoder: use e.g. reference:clip")
    scenes = SynthWorld(seed=seed, image_size=64).shapes(n)
    classes = list(vocab.ID_SHAPES)
    images = [s.image for s in scenes]
    prompts = [f"a photo of a {c}" for c in classes]
    t = time.perf_counter()
    if method == "he":
        from vlmtrust.crypto.he import encrypted_zero_shot

        he = encrypted_zero_shot(m, images, prompts)
        plain, scores, top1 = he.plain, he.scores, he.top1
        per_q = (time.perf_counter() - t) / n
        nbytes = he.query_bytes + he.reply_bytes
        extra = (
            f"public context {he.context_bytes / 1e6:.1f} MB once, {he.meta['security_bits']}-bit"
        )
    else:
        from vlmtrust.crypto.mpc import secure_top1

        img = np.asarray(m.embed_images(images), dtype=np.float64)
        txt = np.asarray(m.embed_texts(prompts), dtype=np.float64)
        plain = img @ txt.T
        res = secure_top1(img, txt, reveal_scores=True, timeout=timeout)
        assert res.scores is not None
        scores, top1 = res.scores, np.asarray(res.top1)
        per_q = res.compute_s / n
        nbytes = res.total_bytes // n
        extra = f"session {res.wall_s:.1f} s with process start-up"
    agree = float(np.mean(top1 == plain.argmax(1)))
    acc = float(np.mean([classes[int(i)] == s.target for i, s in zip(top1, scenes, strict=True)]))
    typer.echo(
        f"{method} {spec}: {n} images x {len(classes)} classes: top-1 agreement with plaintext "
        f"{agree:.0%}, accuracy {acc:.0%}, max |Δ cosine| {np.abs(scores - plain).max():.1e}, "
        f"{1e3 * per_q:.0f} ms and {nbytes / 1e3:.0f} KB per query ({extra})"
    )
