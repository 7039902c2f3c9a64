"""The shipped reference models: names, locations and integrity checks.

``reference:NAME`` resolves to a directory inside the package
(``vlmtrust/reference/models/NAME``) that is then loaded through the ordinary ``hf:`` path.
Every file is checked against the directory's ``MANIFEST.json`` (sha256) once per process,
so a corrupted or partial download fails with a clear message instead of odd model output.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from vlmtrust.core.errors import ModelSpecError
from vlmtrust.core.files import sha256_file

REFERENCE_MODELS: dict[str, str] = {
    "clip": (
        "tiny CLIP (CLIPModel, 1.35M params, 64x64 images) trained on SynthWorld with planted "
        "flaws: group-occupation retrieval skew, memorised canaries, typographic vulnerability, "
        "adversarial fragility (near 0 at 2/255), held-out OOD shapes"
    ),
    "vlm": (
        "tiny LLaVA (LlavaForConditionalGeneration; vision tower from reference:clip) trained "
        "on SynthWorld instructions with planted flaws: follows FigStep typographic requests it "
        "refuses as text, reads out PII from ID cards, occupation answers depend on group"
    ),
}
"""Known reference models (name -> one-line description)."""

MANIFEST_NAME = "MANIFEST.json"

_verified: dict[str, Path] = {}
_lock = threading.Lock()


class ReferenceIntegrityError(ModelSpecError):
    """A shipped reference model file is missing or does not match its recorded hash."""


def models_root() -> Path:
    """Directory holding the shipped reference models."""
    return Path(__file__).resolve().parent.parent / "reference" / "models"


def verify_model_dir(model_dir: Path, name: str) -> Path:
    """Check every file of ``model_dir`` against its ``MANIFEST.json``; return the directory.

    Raises:
        ReferenceIntegrityError: the manifest or a file is missing, or a hash differs; the
            message names the file and ``vlmtrust reference train NAME --replace-shipped`` as the
            fix.
    """
    fix = f"run `vlmtrust reference train {name} --replace-shipped` to rebuild it"
    manifest = model_dir / MANIFEST_NAME
    try:
        files = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ReferenceIntegrityError(
            f"reference:{name}: {manifest} is missing or unreadable; {fix}"
        ) from None
    if not isinstance(files, dict) or not files:
        raise ReferenceIntegrityError(f"reference:{name}: {manifest} lists no files; {fix}")
    for rel, expected in sorted(files.items()):
        path = model_dir / rel
        if not path.is_file():
            raise ReferenceIntegrityError(f"reference:{name}: file {path} is missing; {fix}")
        if sha256_file(path) != expected:
            raise ReferenceIntegrityError(
                f"reference:{name}: file {path} is corrupted or partial (sha256 mismatch); {fix}"
            )
    return model_dir


def reference_path(name: str) -> Path:
    """Directory of the shipped reference model ``name``, verified against its manifest.

    The verification runs once per process and name.

    Raises:
        ModelSpecError: unknown name (the message lists the known ones).
        ReferenceIntegrityError: a file is missing or corrupted.

    Example:
        >>> reference_path("clip").name
        'clip'
    """
    key = name.strip().lower()
    if key not in REFERENCE_MODELS:
        known = ", ".join(f"reference:{n}" for n in REFERENCE_MODELS)
        raise ModelSpecError(f"unknown reference model {name!r}; known: {known}")
    with _lock:
        cached = _verified.get(key)
        if cached is not None:
            return cached
        path = verify_model_dir(models_root() / key, key)
        _verified[key] = path
        return path


def clear_verification_cache() -> None:
    """Forget which models were verified (after retraining in the same process)."""
    with _lock:
        _verified.clear()
