"""Privacy-preserving inference over a dual encoder's embeddings.

* :mod:`vlmtrust.crypto.he` — CKKS homomorphic encryption (TenSEAL): the server scores an
  encrypted query against plaintext class prompts or a gallery and never sees the query.
* :mod:`vlmtrust.crypto.mpc` — three-party computation (MPyC): the query and the class matrix
  are secret-shared; the parties compute the scores and the argmax.

Both need the ``crypto`` extra (``pip install 'vlmtrust[crypto]'``); importing this package
does not import either library.
"""

from __future__ import annotations

from vlmtrust.core.errors import InputError


class CryptoError(InputError):
    """An encryption context, key, ciphertext or party is unusable; the message says why."""


__all__ = ["CryptoError"]
