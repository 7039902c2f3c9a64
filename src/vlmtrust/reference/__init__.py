"""Shipped reference models with documented, planted trust flaws, and their training code.

``reference:clip`` and ``reference:vlm`` are a known-answer test bed: small models trained by
this package on SynthWorld with flaws planted on purpose (see each ``MODEL_CARD.md``). They are
not a substitute for auditing a real model.

Example:
    >>> from vlmtrust.reference import canaries
    >>> members, non_members = canaries()
    >>> len(members), len(non_members)
    (32, 32)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmtrust.core.sample import Sample
from vlmtrust.models.reference import REFERENCE_MODELS, reference_path

__all__ = ["REFERENCE_MODELS", "canaries", "metrics", "model_card", "reference_path", "train"]


def train(
    name: str,
    *,
    seed: int = 0,
    out_dir: Path | None = None,
    quick: bool = False,
    progress: bool = True,
    fragility: bool = True,
    canary_manifest: Path | None = None,
) -> Path:
    """Retrain reference model ``name`` from scratch (deterministic for a seed on CPU).

    Writes weights, tokenizer/processor, ``training.json``, and (unless ``quick``)
    ``metrics.json`` and ``MODEL_CARD.md``, then ``MANIFEST.json``. With ``out_dir=None``
    the shipped copy inside the package is replaced (the fix for a corrupted download).

    Args:
        name: ``"clip"`` or ``"vlm"`` (the VLM's vision tower is reference:clip's before its
            fragility stage: rebuilding the VLM retrains that stage first).
        seed: training seed.
        out_dir: target directory (default: the shipped location).
        quick: a reduced model trained in well under a minute (tests).
        progress: show a rich progress bar.
        fragility: clip only: run the fragility stage (planted flaw 4); ``False`` gives the
            tower reference:vlm starts from.
        canary_manifest: clip only: take the canaries of the training batches from this
            manifest, one record per slot (``write_canary_mixture`` writes the built-in one;
            a ``privacy/dedup`` output of it trains each canary once).

    Returns:
        The model directory, loadable with ``load_model("hf:" + str(path))``.
    """
    from vlmtrust.reference.build import build

    return build(
        name, seed=seed, out_dir=out_dir, quick=quick, progress=progress, fragility=fragility,
        canary_manifest=canary_manifest,
    )  # fmt: skip


def canaries() -> tuple[list[Sample], list[Sample]]:
    """reference:clip's canaries as samples: ``(members, non_members)``.

    Members were repeated in every training batch; non-members are canaries of the same kind
    (random 4×4 block image + ``"a secret code w1 w2 w3"``) that were never shown. Each
    sample's ``prompt`` is None, ``target`` the code words and ``metadata["caption"]`` the
    full caption; ``attributes["member"]`` is ``"true"``/``"false"``.
    """
    import dataclasses

    from vlmtrust.reference.train_clip import canary_samples

    members, non_members = canary_samples()

    def conv(items: tuple[Any, ...], member: bool) -> list[Sample]:
        out = []
        for c in items:
            s = c.to_sample()
            attrs = {**s.attributes, "member": str(member).lower()}
            out.append(dataclasses.replace(s, attributes=attrs))
        return out

    return conv(members, True), conv(non_members, False)


def model_card(name: str) -> str:
    """The shipped ``MODEL_CARD.md`` of reference model ``name``."""
    return (reference_path(name) / "MODEL_CARD.md").read_text()


def metrics(name: str) -> dict[str, Any]:
    """The measured numbers of the shipped reference model ``name`` (``metrics.json``)."""
    data: dict[str, Any] = json.loads((reference_path(name) / "metrics.json").read_text())
    return data
