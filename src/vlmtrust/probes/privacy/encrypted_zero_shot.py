"""``privacy/encrypted_zero_shot``: zero-shot with the image embeddings CKKS-encrypted.

Each image's embedding is encrypted by a client (:class:`~vlmtrust.crypto.he.HEClient`, which
holds the only secret key); a server (:class:`~vlmtrust.crypto.he.HEServer`) scores the
ciphertext against the plaintext class-prompt embeddings without being able to decrypt it; the
client decrypts and takes the argmax. The same scores are computed in plaintext beside it.

Metrics: ``agreement`` (headline) — the share of images whose encrypted top-1 equals the
plaintext top-1 (Clopper–Pearson CI; 100% expected); ``max_abs_dcos`` — the largest
|decrypted − plaintext| cosine over all images and classes; ``latency_ms`` — client encrypt +
server score + client decrypt per query (mean, bootstrap CI); ``query_bytes`` /
``reply_bytes`` — ciphertext sizes per query; ``accuracy`` with encrypted scoring.

Opt-in: it is not part of a default audit (each query costs tenths of a second to seconds
and a key pair is generated per run); name it (``vlmtrust run privacy/encrypted_zero_shot``,
or ``probes=[…]`` in the API). Needs the ``crypto`` extra (TenSEAL); the MPC variant (three
MPyC processes per session) is reached through ``vlmtrust crypto zero-shot --method mpc``
only. Threat model and parameters: ``docs/privacy-crypto.md``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field

from vlmtrust.core.metrics import clopper_pearson
from vlmtrust.core.model import Model
from vlmtrust.core.params import Params
from vlmtrust.core.probe import Probe, ProbeContext, probe
from vlmtrust.core.results import MetricKey, MetricResult, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.stats import accuracy, mean_metric, metric
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.probes import _data

NAME = "privacy/encrypted_zero_shot"


class EncryptedZeroShotParams(Params):
    """Parameters of ``privacy/encrypted_zero_shot``."""

    n: int = Field(16, ge=1, le=100_000, description="images from the default data")
    template: str = Field("a photo of a {}", description="class prompt; {} is the class name")
    classes: list[str] | None = Field(
        None, description="class names (default: from the dataset's labels)"
    )
    he_params: Literal["default", "compact"] = Field(
        "default",
        description=(
            "CKKS parameters: default (N = 8192, moduli 60/40/60 bits, 128-bit) or compact "
            "(N = 4096, 36/30/36 bits, 128-bit, embeddings up to 1,024-d, ~1e-5 cosine error)"
        ),
    )
    packing: Literal["auto", "diagonal", "per_class"] = Field(
        "auto",
        description=(
            "server layout of the class matrix: diagonal (one reply ciphertext, cost flat in "
            "the classes), per_class (one dot product per class: faster for few classes); "
            "auto = per_class when classes < d / 2"
        ),
    )


@probe(NAME)
class EncryptedZeroShot(Probe):
    """Zero-shot with CKKS-encrypted image embeddings against plaintext (module docstring)."""

    pillar = Pillar.PRIVACY
    requires = Capability.EMBED
    Params = EncryptedZeroShotParams
    params: EncryptedZeroShotParams
    batch_size = 16
    description = (
        "Privacy-preserving zero-shot: the image embedding is CKKS-encrypted (TenSEAL, 128-bit) "
        "and scored by a server that cannot decrypt it; top-1 agreement and |Δ cosine| with "
        "plaintext, latency and ciphertext bytes per query. Opt-in: runs only when named."
    )

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self._he: tuple[str, Any, Any, Any, list[str]] | None = None
        self._names: dict[str | None, list[str]] = {}

    def applicable(self, model: Model) -> bool:
        """Never in a default audit (opt-in: name the probe); see :meth:`unsupported`."""
        return False

    def unsupported(self, model: Model) -> str | None:
        """A dual encoder, and TenSEAL installed."""
        try:
            import tenseal  # noqa: F401
        except ImportError:
            return f"{NAME} needs TenSEAL: pip install 'vlmtrust[crypto]'"
        return super().unsupported(model)

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """Number of samples (for progress bars)."""
        return ctx.size(self.params.n) if ctx.data is None else _data.count(ctx)

    def class_names(self, ctx: ProbeContext) -> list[str]:
        """The label set."""
        if self.params.classes:
            return list(self.params.classes)
        if ctx.data not in self._names:
            self._names[ctx.data] = _data.class_names(ctx)
        return self._names[ctx.data]

    def samples(self, ctx: ProbeContext) -> Iterable[Any]:
        """Labeled images: the user's dataset, or SynthWorld shapes."""
        return _data.labeled_images(ctx, self.params.n, purpose="encrypted_zero_shot")

    def _setup(self, model: Any, ctx: ProbeContext) -> tuple[Any, Any, Any, list[str]]:
        """Key pair, server over the class prompts, their plaintext embeddings (once a model)."""
        from vlmtrust.crypto.he import HEClient, HEParams, HEServer

        key = str(getattr(model, "fingerprint", model.spec))
        if self._he is None or self._he[0] != key:
            names = self.class_names(ctx)
            rows = np.asarray(
                model.embed_texts([self.params.template.format(c) for c in names]), np.float64
            )
            params = HEParams.compact() if self.params.he_params == "compact" else HEParams()
            client = HEClient(rows.shape[1], params)
            packing = self.params.packing
            if packing == "auto":
                packing = "per_class" if 2 * len(names) < rows.shape[1] else "diagonal"
            server = HEServer(client.public_context(), rows, packing=packing)
            self._he = (key, client, server, rows, names)
        return self._he[1:]

    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Encrypt, score under encryption, decrypt — per image — beside plaintext scores."""
        client, server, rows, names = self._setup(model, ctx)
        for s in batch:
            if s.target not in names:
                raise ValueError(f"sample {s.id}: label {s.target!r} is not among the classes")
        img = np.asarray(model.embed_images([s.images[0].load() for s in batch]), np.float64)
        out = []
        for i, s in enumerate(batch):
            t0 = time.perf_counter()
            ct = client.encrypt(img[i])
            reply = server.score(ct)
            dec = client.decrypt(reply, len(names))
            ms = (time.perf_counter() - t0) * 1e3
            plain = rows @ img[i]
            enc_top, plain_top = int(np.argmax(dec)), int(np.argmax(plain))
            out.append(
                self.record(
                    s,
                    output={"prediction": names[enc_top], "plaintext": names[plain_top]},
                    scores={
                        "agree": float(enc_top == plain_top),
                        "abs_dcos": float(np.max(np.abs(dec - plain))),
                        "latency_ms": ms,
                        "query_bytes": float(len(ct)),
                        "reply_bytes": float(sum(len(b) for b in reply)),
                        "correct": float(names[enc_top] == s.target),
                    },
                )
            )
        return out

    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Agreement (headline), max |Δ cosine|, latency, ciphertext bytes, accuracy."""
        rows = [r for r in records if r.ok and r.scores.get("agree") is not None]
        if not rows:
            return []

        def col(k: str) -> list[float]:
            return [float(r.scores[k] or 0.0) for r in rows]

        agree = col("agree")
        k = int(sum(agree))
        lo, hi = clopper_pearson(k, len(agree))
        out = [
            MetricResult(
                key=MetricKey(metric="agreement"),
                value=k / len(agree),
                ci_low=lo,
                ci_high=hi,
                n=len(agree),
                higher_is_better=True,
                unit="%",
                headline=True,
                description=(
                    "share of images whose top-1 under CKKS encryption equals the plaintext "
                    "top-1 (exact Clopper–Pearson 95% CI)"
                ),
            ),
            MetricResult(
                key=MetricKey(metric="max_abs_dcos"),
                value=max(col("abs_dcos")),
                n=len(agree),
                higher_is_better=False,
                description="largest |decrypted − plaintext| cosine over all images and classes",
            ),
            mean_metric(
                MetricKey(metric="latency_ms"),
                col("latency_ms"),
                higher_is_better=False,
                unit="ms",
                description="encrypt + encrypted scoring + decrypt per query (mean)",
                seed=ctx.seed,
            ),
        ]
        for key, what in (("query_bytes", "encrypted query"), ("reply_bytes", "encrypted reply")):
            out.append(
                MetricResult(
                    key=MetricKey(metric=key),
                    value=float(np.mean(col(key))),
                    n=len(agree),
                    higher_is_better=False,
                    unit="B",
                    description=f"bytes of one {what}",
                )
            )
        out.append(
            metric(
                MetricKey(metric="accuracy"),
                accuracy,
                col("correct"),
                higher_is_better=True,
                unit="%",
                description="top-1 zero-shot accuracy with encrypted scoring",
                seed=ctx.seed,
            )
        )
        return out
