"""Encrypted zero-shot classification and retrieval with CKKS (TenSEAL).

The client holds the secret key. It encrypts an L2-normalised query embedding (an image for
zero-shot, an image or a text for retrieval) and sends the ciphertext with a *public* context
(relinearisation and Galois keys, no secret key). The server holds plaintext rows — class-prompt
embeddings or a gallery — and returns encrypted scores ``rows @ query`` without ever decrypting
anything; the client decrypts and takes the argmax (or top-k).

Two server layouts:

* ``"diagonal"`` (default): the class matrix is packed diagonally (Halevi–Shoup, TenSEAL's
  ``CKKSVector.mm``): ``d`` rotations and plaintext products give *all* scores in one
  ciphertext, so cost and reply size stay flat in the number of rows up to the slot count
  (``poly_modulus_degree / 2``) and grow by one ciphertext per further slot count of rows.
* ``"per_class"``: one encrypted dot product (and one reply ciphertext) per row; the baseline
  whose cost grows linearly.

Encryption parameters are checked against the Homomorphic Encryption Standard tables
(Albrecht et al. 2018, ternary secret, classical attacks): a context below
:data:`MIN_SECURITY_BITS` is refused, on either side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vlmtrust.crypto import CryptoError

MIN_SECURITY_BITS = 128

#: Maximum total coefficient-modulus bits per poly modulus degree for each security level
#: (HE Standard, Table 1, uniform ternary secret, classical; the values SEAL enforces).
HE_STANDARD_MAX_LOGQ: dict[int, dict[int, int]] = {
    128: {1024: 27, 2048: 54, 4096: 109, 8192: 218, 16384: 438, 32768: 881},
    192: {1024: 19, 2048: 37, 4096: 75, 8192: 152, 16384: 305, 32768: 611},
    256: {1024: 14, 2048: 29, 4096: 58, 8192: 118, 16384: 237, 32768: 476},
}

Packing = Literal["diagonal", "per_class"]


def _ts() -> Any:
    try:
        import tenseal
    except ImportError as e:
        raise CryptoError(
            "homomorphic encryption needs TenSEAL: pip install 'vlmtrust[crypto]'"
        ) from e
    return tenseal


def security_bits(poly_modulus_degree: int, total_coeff_bits: int) -> int:
    """Highest HE-Standard security level (128/192/256) the parameters meet; 0 if none.

    Example:
        >>> security_bits(8192, 160), security_bits(8192, 150), security_bits(4096, 160)
        (128, 192, 0)
    """
    best = 0
    for level, table in HE_STANDARD_MAX_LOGQ.items():
        limit = table.get(poly_modulus_degree)
        if limit is not None and total_coeff_bits <= limit:
            best = max(best, level)
    return best


@dataclass(frozen=True)
class HEParams:
    """CKKS parameters.

    The default — ``N = 8192``, coefficient moduli ``(60, 40, 60)`` bits (``log2 Q = 160``),
    scale ``2**40`` — is 128-bit secure by the HE Standard (at most 218 bits at ``N = 8192``;
    192-bit would need at most 152), has 4096 slots and one multiplicative level, which is all
    a plaintext-matrix product needs.

    Attributes:
        poly_modulus_degree: ring dimension ``N`` (a power of two); slots = ``N / 2``.
        coeff_mod_bit_sizes: bit sizes of the coefficient-modulus primes; the middle ones
            should equal ``scale_bits`` and the outer ones be larger (precision of the result).
        scale_bits: ``log2`` of the CKKS scale.
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40

    @classmethod
    def compact(cls) -> HEParams:
        """``N = 4096``, moduli ``(36, 30, 36)`` (``log2 Q = 102`` ≤ 109: 128-bit), scale ``2**30``.

        2048 slots; rotations and ciphertexts about a third the cost of the default, with
        about 1e-5 error on cosines instead of 1e-7.
        """
        return cls(poly_modulus_degree=4096, coeff_mod_bit_sizes=(36, 30, 36), scale_bits=30)

    @property
    def total_coeff_bits(self) -> int:
        """Total bits of the coefficient modulus ``log2 Q``."""
        return int(sum(self.coeff_mod_bit_sizes))

    @property
    def slots(self) -> int:
        """Number of CKKS slots, ``N / 2``."""
        return self.poly_modulus_degree // 2

    def security(self) -> int:
        """HE-Standard security level in bits (0: below 128)."""
        return security_bits(self.poly_modulus_degree, self.total_coeff_bits)

    def check(self) -> None:
        """Raise :class:`CryptoError` unless the parameters are valid and ≥ 128-bit secure."""
        n = self.poly_modulus_degree
        if n not in HE_STANDARD_MAX_LOGQ[128]:
            raise CryptoError(
                f"poly_modulus_degree {n} is not supported: use one of "
                f"{sorted(HE_STANDARD_MAX_LOGQ[128])}"
            )
        if len(self.coeff_mod_bit_sizes) < 3:
            raise CryptoError(
                f"coeff_mod_bit_sizes {self.coeff_mod_bit_sizes} leave no level for the "
                "plaintext product: use at least three primes, e.g. (60, 40, 60)"
            )
        if self.security() < MIN_SECURITY_BITS:
            raise CryptoError(
                f"CKKS parameters N={n}, log2 Q={self.total_coeff_bits} are below "
                f"{MIN_SECURITY_BITS}-bit security (HE Standard allows at most "
                f"{HE_STANDARD_MAX_LOGQ[128][n]} bits at N={n}): use fewer or smaller primes "
                "or a larger poly_modulus_degree"
            )


@dataclass(frozen=True)
class ContextInfo:
    """What a (deserialised) TenSEAL context is: scheme, size and keys."""

    scheme: str
    poly_modulus_degree: int
    total_coeff_bits: int
    has_secret_key: bool
    has_galois_keys: bool

    @property
    def security(self) -> int:
        """HE-Standard security level in bits (0: below 128)."""
        return security_bits(self.poly_modulus_degree, self.total_coeff_bits)


def context_info(ctx: Any) -> ContextInfo:
    """Scheme, ring size, modulus bits and keys of a TenSEAL context."""
    kcd = ctx.seal_context().data.key_context_data()
    parms = kcd.parms()
    scheme = str(parms.scheme()).rsplit(".", 1)[-1]
    return ContextInfo(
        scheme=scheme,
        poly_modulus_degree=int(parms.poly_modulus_degree()),
        total_coeff_bits=int(kcd.total_coeff_modulus_bit_count()),
        has_secret_key=bool(ctx.has_secret_key()),
        has_galois_keys=bool(ctx.has_galois_keys()),
    )


def _check_ckks(info: ContextInfo, who: str) -> None:
    if info.scheme != "CKKS":
        raise CryptoError(
            f"{who} context uses the {info.scheme} scheme; encrypted scoring needs CKKS: "
            "build it with HEClient (tenseal.SCHEME_TYPE.CKKS)"
        )
    if info.security < MIN_SECURITY_BITS:
        raise CryptoError(
            f"{who} context (N={info.poly_modulus_degree}, log2 Q={info.total_coeff_bits}) is "
            f"below {MIN_SECURITY_BITS}-bit security: use HEParams() or larger N"
        )


def _as_matrix(x: Any, what: str, dim: int | None = None) -> NDArray[np.float64]:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise CryptoError(f"{what} has shape {np.shape(x)}: expected (n, d) embeddings")
    if dim is not None and a.shape[1] != dim:
        raise CryptoError(
            f"{what}: dimension {a.shape[1]} but the encryption was set up for {dim}: "
            "use embeddings of the same model on both sides"
        )
    if not np.isfinite(a).all():
        raise CryptoError(f"{what}: NaN or infinity in the values: embed again")
    return a


class HEClient:
    """Holds the secret key: encrypts queries, decrypts scores.

    Args:
        dim: embedding dimension ``d`` (at most half the slot count, for the diagonal product).
        params: CKKS parameters (checked: ≥ 128-bit security).
    """

    def __init__(self, dim: int, params: HEParams | None = None) -> None:
        ts = _ts()
        self.params = params or HEParams()
        self.params.check()
        if not 1 <= dim <= self.params.slots // 2:
            raise CryptoError(
                f"embedding dimension {dim} does not fit: at most {self.params.slots // 2} for "
                f"poly_modulus_degree {self.params.poly_modulus_degree}; use a larger one"
            )
        self.dim = dim
        self._ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=self.params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(self.params.coeff_mod_bit_sizes),
        )
        self._ctx.global_scale = float(2**self.params.scale_bits)
        self._ctx.generate_galois_keys()

    def public_context(self) -> bytes:
        """The context to send to the server: public, relinearisation and Galois keys only."""
        data: bytes = self._ctx.serialize(
            save_public_key=True, save_secret_key=False, save_galois_keys=True, save_relin_keys=True
        )
        return data

    def encrypt(self, embedding: Any) -> bytes:
        """Encrypt one ``(d,)`` embedding; returns the serialised ciphertext."""
        q = _as_matrix(embedding, "query embedding", self.dim)
        if q.shape[0] != 1:
            raise CryptoError(
                f"encrypt takes one embedding, got {q.shape[0]}: call it once per query"
            )
        data: bytes = _ts().ckks_vector(self._ctx, q[0].tolist()).serialize()
        return data

    def decrypt(self, reply: Sequence[bytes], n_rows: int) -> NDArray[np.float64]:
        """Decrypt a server reply (its ciphertexts in order) into ``n_rows`` scores."""
        ts = _ts()
        parts: list[float] = []
        for i, blob in enumerate(reply):
            try:
                vec = ts.ckks_vector_from(self._ctx, blob)
            except Exception as e:  # TenSEAL raises RuntimeError/ValueError on bad bytes
                raise CryptoError(
                    f"reply ciphertext {i} does not decrypt under this key ({e}): it was made "
                    "with another context"
                ) from e
            parts.extend(vec.decrypt())
        if len(parts) != n_rows:
            raise CryptoError(f"reply holds {len(parts)} scores, expected {n_rows}")
        return np.asarray(parts, dtype=np.float64)


class HEServer:
    """Scores encrypted queries against plaintext rows; never holds a secret key.

    Args:
        public_context: the client's serialised public context.
        rows: ``(n, d)`` plaintext embeddings (class prompts or a gallery).
        packing: ``"diagonal"`` (default, flat cost) or ``"per_class"`` (baseline).

    Raises:
        CryptoError: the context is not CKKS, is below 128-bit security, carries the secret
            key, lacks Galois keys, or ``d`` does not fit its slots.
    """

    def __init__(self, public_context: bytes, rows: Any, packing: Packing = "diagonal") -> None:
        ts = _ts()
        try:
            ctx = ts.context_from(public_context)
        except Exception as e:
            raise CryptoError(
                f"public context does not load ({e}): send HEClient.public_context()"
            ) from e
        info = context_info(ctx)
        _check_ckks(info, "public")
        if info.has_secret_key:
            raise CryptoError(
                "the context sent to the server carries the secret key: send "
                "HEClient.public_context(), which leaves it out"
            )
        if not info.has_galois_keys:
            raise CryptoError(
                "the public context has no Galois keys, which rotations need: send "
                "HEClient.public_context()"
            )
        if packing not in ("diagonal", "per_class"):
            raise CryptoError(f"packing {packing!r} is unknown: use 'diagonal' or 'per_class'")
        self._ctx = ctx
        self.info = info
        self.packing: Packing = packing
        self.rows = _as_matrix(rows, "server rows")
        self.dim = int(self.rows.shape[1])
        self.slots = info.poly_modulus_degree // 2
        if self.dim > self.slots // 2:
            raise CryptoError(
                f"row dimension {self.dim} does not fit {self.slots} slots: the client needs "
                "a larger poly_modulus_degree"
            )
        # Plaintext blocks of at most `slots` rows, transposed for CKKSVector.mm (d, n_block).
        self._blocks = [
            self.rows[i : i + self.slots].T.tolist() for i in range(0, len(self.rows), self.slots)
        ]

    @property
    def n_rows(self) -> int:
        """Number of plaintext rows ``n``."""
        return int(self.rows.shape[0])

    def score(self, query: bytes) -> list[bytes]:
        """Encrypted scores ``rows @ q`` for one serialised encrypted query.

        Returns the reply ciphertexts in row order: ``ceil(n / slots)`` for ``"diagonal"``,
        ``n`` for ``"per_class"``.
        """
        ts = _ts()
        try:
            vec = ts.ckks_vector_from(self._ctx, query)
        except Exception as e:
            raise CryptoError(
                f"query ciphertext does not load under the public context ({e}): encrypt it "
                "with the client that sent this context"
            ) from e
        if vec.size() != self.dim:
            raise CryptoError(
                f"encrypted query has dimension {vec.size()} but the server rows have "
                f"{self.dim}: use embeddings of the same model on both sides"
            )
        if self.packing == "per_class":
            return [vec.dot(row.tolist()).serialize() for row in self.rows]
        return [vec.mm(block).serialize() for block in self._blocks]


@dataclass
class EncryptedScores:
    """Scores of queries computed under encryption, with the plaintext reference.

    Attributes:
        scores: ``(n_queries, n_rows)`` decrypted scores.
        plain: ``(n_queries, n_rows)`` the same computed in plaintext (float64).
        query_bytes: bytes of one encrypted query.
        reply_bytes: bytes of one encrypted reply.
        context_bytes: bytes of the public context (sent once).
    """

    scores: NDArray[np.float64]
    plain: NDArray[np.float64]
    query_bytes: int
    reply_bytes: int
    context_bytes: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def top1(self) -> NDArray[np.int64]:
        """Argmax row per query from the decrypted scores."""
        return np.asarray(np.argmax(self.scores, axis=1), dtype=np.int64)

    @property
    def agreement(self) -> float:
        """Share of queries whose decrypted argmax equals the plaintext argmax."""
        return float(np.mean(self.top1 == np.argmax(self.plain, axis=1)))

    @property
    def max_abs_error(self) -> float:
        """Largest absolute difference between decrypted and plaintext scores."""
        return float(np.max(np.abs(self.scores - self.plain)))

    def topk(self, k: int) -> NDArray[np.int64]:
        """Indices of the ``k`` best rows per query (best first)."""
        return np.asarray(np.argsort(-self.scores, axis=1)[:, :k], dtype=np.int64)


def encrypted_scores(
    queries: Any,
    rows: Any,
    *,
    params: HEParams | None = None,
    packing: Packing = "diagonal",
    client: HEClient | None = None,
) -> EncryptedScores:
    """Run the client–server protocol for each query against ``rows`` and decrypt.

    Zero-shot: ``queries`` are image embeddings, ``rows`` class-prompt embeddings. Retrieval:
    ``rows`` is the gallery. Embeddings should be L2-normalised (scores are then cosines).
    """
    q = _as_matrix(queries, "query embeddings")
    r = _as_matrix(rows, "server rows")
    if client is None:
        client = HEClient(q.shape[1], params)
    q = _as_matrix(q, "query embeddings", client.dim)
    r = _as_matrix(r, "server rows", client.dim)
    pub = client.public_context()
    server = HEServer(pub, r, packing=packing)
    out = np.empty((q.shape[0], r.shape[0]), dtype=np.float64)
    q_bytes = reply_bytes = 0
    for i, row in enumerate(q):
        ct = client.encrypt(row)
        reply = server.score(ct)
        out[i] = client.decrypt(reply, r.shape[0])
        q_bytes, reply_bytes = len(ct), sum(len(b) for b in reply)
    return EncryptedScores(
        scores=out,
        plain=q @ r.T,
        query_bytes=q_bytes,
        reply_bytes=reply_bytes,
        context_bytes=len(pub),
        meta={"packing": packing, "security_bits": server.info.security},
    )


def encrypted_zero_shot(
    model: Any,
    images: Sequence[Any],
    class_texts: Sequence[str],
    *,
    params: HEParams | None = None,
    packing: Packing = "diagonal",
    client: HEClient | None = None,
) -> EncryptedScores:
    """Zero-shot classification of ``images`` by ``model`` with the image embeddings encrypted.

    The model (a dual encoder with ``embed_images`` / ``embed_texts``) runs on the client for
    the images and on the server for the class prompts; only ciphertexts cross.
    """
    img = model.embed_images(list(images))
    txt = model.embed_texts(list(class_texts))
    return encrypted_scores(img, txt, params=params, packing=packing, client=client)
