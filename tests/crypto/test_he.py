"""CKKS encrypted zero-shot and retrieval: agreement with plaintext, packing, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

ts = pytest.importorskip("tenseal", reason="needs the crypto extra: pip install 'vlmtrust[crypto]'")

from vlmtrust.crypto import CryptoError  # noqa: E402
from vlmtrust.crypto.he import (  # noqa: E402
    HEClient,
    HEParams,
    HEServer,
    encrypted_scores,
    encrypted_zero_shot,
    security_bits,
)


@pytest.fixture(scope="module")
def client() -> HEClient:
    return HEClient(128)  # reference:clip's embedding size


@pytest.fixture(scope="module")
def small_client() -> HEClient:
    return HEClient(32)  # fewer rotations: a faster check of the layouts


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_reference_clip_zero_shot_and_retrieval(
    client: HEClient, clip_embeddings: dict[str, Any]
) -> None:
    e = clip_embeddings
    zs = encrypted_scores(e["images"][:2], e["prompts"], client=client)
    assert zs.agreement == 1.0
    assert zs.max_abs_error < 1e-3
    assert [e["classes"][i] for i in zs.top1] == e["targets"][:2]  # the model is right, too
    # Retrieval: captions (encrypted) against the plaintext image gallery.
    rt = encrypted_scores(e["captions"][:1], e["images"], client=client)
    assert rt.agreement == 1.0
    assert rt.max_abs_error < 1e-3
    assert zs.meta["security_bits"] >= 128


def test_diagonal_packing_reply_is_flat_per_class_is_linear(small_client: HEClient) -> None:
    client = small_client
    rng = np.random.default_rng(0)
    q = _unit(rng, 1, 32)
    few, many = _unit(rng, 10, 32), _unit(rng, 300, 32)
    d_few = encrypted_scores(q, few, client=client)
    d_many = encrypted_scores(q, many, client=client)
    assert abs(d_many.reply_bytes - d_few.reply_bytes) < 0.01 * d_few.reply_bytes
    p_few = encrypted_scores(q, few, client=client, packing="per_class")
    assert p_few.reply_bytes > 9 * d_few.reply_bytes  # ten ciphertexts instead of one
    assert p_few.agreement == d_many.agreement == 1.0
    assert p_few.max_abs_error < 1e-3


def test_server_never_gets_the_secret_key(small_client: HEClient) -> None:
    pub = small_client.public_context()
    server = HEServer(pub, np.eye(32)[:3])
    assert not server.info.has_secret_key
    with_secret = small_client._ctx.serialize(save_secret_key=True)
    with pytest.raises(CryptoError, match="carries the secret key"):
        HEServer(with_secret, np.eye(32)[:3])


def test_parameters_and_security_level() -> None:
    assert HEParams().security() == 128 and HEParams().total_coeff_bits == 160
    assert security_bits(8192, 219) == 0
    with pytest.raises(CryptoError, match="below 128-bit security"):
        HEClient(8, HEParams(poly_modulus_degree=4096, coeff_mod_bit_sizes=(60, 40, 40, 60)))
    with pytest.raises(CryptoError, match="poly_modulus_degree 3000"):
        HEParams(poly_modulus_degree=3000).check()
    with pytest.raises(CryptoError, match="does not fit"):
        HEClient(4096)
    small = HEClient(8, HEParams.compact())  # 2048 slots: rows of d = 1500 do not fit
    assert small.params.security() == 128
    with pytest.raises(CryptoError, match="row dimension 1500 does not fit 2048 slots"):
        HEServer(small.public_context(), np.ones((2, 1500)))


def test_wrong_scheme_context_is_refused() -> None:
    bfv = ts.context(ts.SCHEME_TYPE.BFV, poly_modulus_degree=4096, plain_modulus=1032193)
    bfv.make_context_public()
    with pytest.raises(CryptoError, match="BFV scheme; encrypted scoring needs CKKS"):
        HEServer(bfv.serialize(), np.eye(4))
    with pytest.raises(CryptoError, match="does not load"):
        HEServer(b"not a context", np.eye(4))


def test_wrong_dimension_and_foreign_ciphertext(small_client: HEClient) -> None:
    client = small_client
    with pytest.raises(CryptoError, match="dimension 64 but the encryption was set up for 32"):
        client.encrypt(np.ones(64))
    server = HEServer(client.public_context(), np.eye(16)[:3])
    with pytest.raises(CryptoError, match="dimension 32 but the server rows have 16"):
        server.score(client.encrypt(np.ones(32) / np.sqrt(32)))
    with pytest.raises(CryptoError, match="dimension 64 but the encryption was set up for 32"):
        encrypted_scores(np.ones((1, 32)), np.ones((2, 64)), client=client)
    with pytest.raises(CryptoError, match="query ciphertext does not load"):
        server.score(b"garbage")
    with pytest.raises(CryptoError, match="NaN"):
        client.encrypt(np.full(32, np.nan))


class _FakeDual:
    """A dual encoder stand-in: fixed unit embeddings, indexed by input."""

    def __init__(self) -> None:
        rng = np.random.default_rng(3)
        self.img, self.txt = _unit(rng, 2, 32), _unit(rng, 5, 32)

    def embed_images(self, images: list[int]) -> np.ndarray:
        return self.img[images]

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.txt[[int(t) for t in texts]]


def test_encrypted_zero_shot_embeds_then_scores(small_client: HEClient) -> None:
    m = _FakeDual()
    r = encrypted_zero_shot(m, [0, 1], ["0", "1", "2", "3", "4"], client=small_client)
    assert r.scores.shape == (2, 5) and r.agreement == 1.0
    assert np.allclose(r.plain, m.img @ m.txt.T)
