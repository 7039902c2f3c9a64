"""Three-party MPyC secure top-1: agreement, transcripts without clear inputs, bad input."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

pytest.importorskip("mpyc", reason="needs the crypto extra: pip install 'vlmtrust[crypto]'")

from vlmtrust.crypto import CryptoError  # noqa: E402
from vlmtrust.crypto.mpc import clear_occurrences, field_encoding, secure_top1  # noqa: E402


def test_reference_clip_top1_and_no_clear_input_in_any_transcript(
    clip_embeddings: dict[str, Any],
) -> None:
    e = clip_embeddings
    q, w = e["images"][:3], e["prompts"]
    r = secure_top1(q, w, reveal_scores=True, capture=True, timeout=60)
    assert r.top1 == [int(i) for i in np.argmax(q @ w.T, axis=1)]
    assert r.scores is not None and np.abs(r.scores - q @ w.T).max() < 1e-3
    enc = {
        "frac_bits": r.frac_bits,
        "modulus": int(r.field_params["modulus"]),
        "byte_length": int(r.field_params["byte_length"]),
    }
    for pid in range(3):
        got = r.received[pid]
        assert len(got) >= r.total_bytes // 10  # every party took part
        assert clear_occurrences(got, q, **enc) == 0, f"party {pid} saw the query"
        assert clear_occurrences(got, w, **enc) == 0, f"party {pid} saw the class matrix"
    # The proxy saw every byte MPyC counted as sent (plus the connection handshakes).
    assert sum(len(b) for b in r.received.values()) >= r.total_bytes


def test_clear_occurrences_finds_an_input_sent_in_the_clear() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal(16) / 4
    modulus, nbytes = 2**80 - 65, 10
    noise = os.urandom(4000)
    leaked_field = noise + b"".join(field_encoding(x, 16, modulus, nbytes)) + noise
    assert clear_occurrences(leaked_field, x, frac_bits=16, modulus=modulus, byte_length=nbytes)
    leaked_float = noise + x.astype(">f8").tobytes() + noise
    assert clear_occurrences(leaked_float, x, frac_bits=16, modulus=modulus, byte_length=nbytes)
    assert not clear_occurrences(noise * 3, x, frac_bits=16, modulus=modulus, byte_length=nbytes)


def test_a_party_that_does_not_answer_times_out_with_one_line() -> None:
    q = np.full(8, 1 / np.sqrt(8))
    t = time.monotonic()
    # 6 s: a cold start of a party process (imports) took over 2 s on a 2-core CI machine, and
    # a party still starting is reported beside the absent one.
    with pytest.raises(CryptoError, match=r"parties \[(1, )?2\] did not connect within 6 s") as ei:
        secure_top1(q, np.eye(8)[:3], timeout=6, absent=(2,))
    assert "\n" not in str(ei.value)
    assert time.monotonic() - t < 25


def test_bad_input_is_refused_before_starting() -> None:
    q = np.full(8, 1 / np.sqrt(8))
    with pytest.raises(CryptoError, match="dimension 8 but the rows have 4"):
        secure_top1(q, np.eye(4))
    with pytest.raises(CryptoError, match="fixed-point range"):
        secure_top1(q * 1e5, np.eye(8))
    with pytest.raises(CryptoError, match="NaN"):
        secure_top1(np.full(8, np.nan), np.eye(8))
    with pytest.raises(CryptoError, match="pass an"):
        secure_top1(q, np.ones(8))
