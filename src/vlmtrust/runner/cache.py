"""A content-addressed cache of embeddings and deterministic generations.

Keys are ``model fingerprint + kind + input hash``, so a cached value is reused across probes
and runs only for the very same weights and inputs. Storage is one SQLite file in WAL mode with
a busy timeout: several processes (parallel runs, Ray workers) may read and write at once.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vlmtrust.core.model import GenerateRequest, Generation
from vlmtrust.core.redact import redact_text
from vlmtrust.core.sample import image_digest

_SCHEMA = "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)"
_CHUNK = 500  # SQLite's default host-parameter limit is 999 on older builds


def default_cache_path() -> Path:
    """``$VLMTRUST_CACHE`` or ``~/.cache/vlmtrust/cache.sqlite``."""
    import os

    env = os.environ.get("VLMTRUST_CACHE")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "vlmtrust" / "cache.sqlite"


class Cache:
    """Key/value store on SQLite, safe under concurrent writers (threads and processes)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            str(self.path), timeout=60.0, check_same_thread=False, isolation_level=None
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=60000")
        self._retry(lambda: self._conn.execute(_SCHEMA))
        self.hits = 0
        self.misses = 0

    def _retry(self, fn: Any) -> Any:
        delay = 0.01
        for _ in range(50):
            try:
                return fn()
            except sqlite3.OperationalError as e:  # pragma: no cover - timing dependent
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        return fn()

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Values for the keys present."""
        out: dict[str, bytes] = {}
        with self._lock:
            for i in range(0, len(keys), _CHUNK):
                chunk = list(keys[i : i + _CHUNK])
                q = f"SELECT key, value FROM kv WHERE key IN ({','.join('?' * len(chunk))})"
                rows = self._retry(lambda q=q, chunk=chunk: self._conn.execute(q, chunk).fetchall())
                out.update({k: bytes(v) for k, v in rows})
        self.hits += len(out)
        self.misses += len(set(keys)) - len(out)
        return out

    def put_many(self, items: Mapping[str, bytes]) -> None:
        """Store values (one transaction)."""
        if not items:
            return

        def tx() -> None:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", list(items.items())
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

        with self._lock:
            self._retry(tx)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM kv").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _text_key(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class _Wrapper:
    """Forwards everything it does not override to the wrapped model."""

    def __init__(self, model: Any, cache: Cache) -> None:
        self.inner = model
        self.cache = cache
        # Keys hold the fingerprint: no credential a caller left in it reaches the cache file.
        self.spec: str = redact_text(model.spec)
        self.fingerprint: str = redact_text(model.fingerprint)
        self.kind = model.kind
        self.capabilities = model.capabilities

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class CachedEmbeddingModel(_Wrapper):
    """An :class:`~vlmtrust.core.model.EmbeddingModel` whose embeddings are cached."""

    def _cached(
        self, kind: str, keys: list[str], compute: Any, items: Sequence[Any]
    ) -> NDArray[np.float32]:
        full = [f"{self.fingerprint}|{kind}|{k}" for k in keys]
        found = self.cache.get_many(full)
        miss = [i for i, k in enumerate(full) if k not in found]
        vecs: dict[int, NDArray[np.float32]] = {}
        if miss:
            # Deduplicate misses so repeated inputs in one batch are computed once.
            first: dict[str, int] = {}
            for i in miss:
                first.setdefault(full[i], i)
            uniq = list(first.values())
            emb = np.asarray(compute([items[i] for i in uniq]), dtype=np.float32)
            store = {}
            for row, i in enumerate(uniq):
                store[full[i]] = emb[row].tobytes()
                vecs[i] = emb[row]
            self.cache.put_many(store)
            for i in miss:
                if i not in vecs:
                    vecs[i] = vecs[first[full[i]]]
        for i, k in enumerate(full):
            if i not in vecs:
                vecs[i] = np.frombuffer(found[k], dtype=np.float32)
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([vecs[i] for i in range(len(items))])

    def embed_images(self, images: Sequence[Image.Image]) -> NDArray[np.float32]:
        """Cached ``embed_images``."""
        keys = [image_digest(im) for im in images]
        return self._cached("img", keys, self.inner.embed_images, images)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Cached ``embed_texts``."""
        keys = [_text_key(t) for t in texts]
        return self._cached("txt", keys, self.inner.embed_texts, texts)


class CachedGenerativeModel(_Wrapper):
    """A :class:`~vlmtrust.core.model.GenerativeModel` caching deterministic answers."""

    async def generate(self, requests: Sequence[GenerateRequest]) -> list[Generation]:
        """Answer from the cache where possible; only greedy, successful answers are stored."""
        keys = [f"{self.fingerprint}|gen|{r.digest()}" if r.deterministic else "" for r in requests]
        found = self.cache.get_many([k for k in keys if k])
        out: list[Generation | None] = []
        todo: list[int] = []
        for i, k in enumerate(keys):
            if k and k in found:
                text, _, finish = found[k].decode().partition("\x00")
                out.append(Generation(text=text, finish_reason=finish or None))
            else:
                out.append(None)
                todo.append(i)
        if todo:
            gens = await self.inner.generate([requests[i] for i in todo])
            store = {}
            for i, g in zip(todo, gens, strict=True):
                out[i] = g
                if keys[i] and g.ok:
                    store[keys[i]] = (g.text + "\x00" + (g.finish_reason or "")).encode()
            self.cache.put_many(store)
        return [g for g in out if g is not None]


def with_cache(model: Any, cache: Cache | None) -> Any:
    """Wrap ``model`` so its embeddings / deterministic generations go through ``cache``."""
    if cache is None:
        return model
    if model.kind == "dual":
        return CachedEmbeddingModel(model, cache)
    return CachedGenerativeModel(model, cache)


def iter_chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]
