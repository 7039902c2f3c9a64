"""``privacy/dedup``: exact and near-duplicate removal from an image–text manifest.

Repeated training pairs are memorised far more than pairs seen once (Carlini et al. 2023,
"Extracting Training Data from Diffusion Models"; Kandpal et al. 2022), so deduplicating a
training mixture is the first privacy mitigation to try. Two records are duplicates when

* **images**: their files are byte-identical (sha256), or their 64-bit perceptual hashes
  (``imagehash.phash``) differ in at most ``image_distance`` bits. Candidate pairs come from
  splitting the hash into ``image_distance + 1`` bands: by the pigeonhole principle two hashes
  within that distance agree on a whole band, so bucketing by band finds every such pair
  without comparing all pairs;
* **captions**: their normalised text (lower case, single spaces) is equal, or the Jaccard
  similarity of their word sets, estimated by MinHash and found with LSH (``datasketch``),
  is at least ``caption_threshold``;
* **embeddings** (optional, ``embedding_threshold``): with a dual encoder as ``--model``, the
  cosine similarity of their image embeddings is at least the threshold.

``match`` says which of these make a duplicate pair: ``both`` (default: image *and* caption,
so distinct images that share a generic caption are kept), ``either``, ``image`` or
``caption``. Duplicate pairs are joined into clusters (union–find); the first record of each
cluster (in file order) is kept. The output folder holds ``manifest.jsonl`` (the kept lines,
byte for byte, with their images hard-linked or copied under the same relative paths, so the
folder loads as ``--data OUT/manifest.jsonl``), ``dedup_report.json`` (counts and the largest
clusters) and ``hardening.json``.

Run: ``vlmtrust harden --model none --mitigation privacy/dedup --data MANIFEST --out DIR``.
Needs the ``dedup`` extra (``pip install 'vlmtrust[dedup]'``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.mitigations._train import CLEANED_MANIFEST, data_manifest, write_cleaned

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL import Image

MANIFEST_NAME = CLEANED_MANIFEST
REPORT_NAME = "dedup_report.json"
CAPTION_KEYS = ("caption", "text", "target", "label", "prompt")
"""Manifest keys read as a record's caption, first present wins (then ``metadata.caption``)."""
IMAGE_KEYS = ("image", "file_name", "path", "image_path")
"""Manifest keys read as a record's image path, first present wins (then ``images[0]``)."""


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"privacy/dedup needs {module}; install it with pip install 'vlmtrust[dedup]'"
        ) from None


class DedupParams(Params):
    """Parameters of ``privacy/dedup``."""

    match: Literal["both", "either", "image", "caption"] = Field(
        "both", description="what makes a duplicate pair: image and caption, either, or one"
    )
    image_distance: int = Field(
        4, ge=0, le=16, description="largest Hamming distance of 64-bit pHashes for near-dups"
    )
    caption_threshold: float = Field(
        0.8, gt=0, le=1, description="MinHash-estimated Jaccard of caption word sets for near-dups"
    )
    num_perm: int = Field(64, ge=16, le=512, description="MinHash permutations")
    embedding_threshold: float | None = Field(
        None, gt=0, le=1, description="with a dual encoder: image-embedding cosine for near-dups"
    )
    copy_images: bool = Field(
        False, description="copy kept images into --out (default: hard-link, copying if that fails)"
    )
    max_clusters: int = Field(50, ge=0, le=100_000, description="largest clusters in the report")


def normalise_caption(text: str) -> str:
    """Lower case, punctuation dropped, single spaces.

    Example:
        >>> normalise_caption("  A  photo, of a CAT! ")
        'a photo of a cat'
    """
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        p = self.parent
        while p[i] != i:
            p[i] = p[p[i]]
            i = p[i]
        return i

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller index is the root: the first record represents its cluster
            self.parent[max(ra, rb)] = min(ra, rb)


def _popcount(x: NDArray[np.uint64]) -> NDArray[np.int64]:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return ((x * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def phash64(
    images: Sequence[Image.Image | None], chunk: int = 4096
) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """64-bit pHash of each image as integers (bit 63 first), and which images were present.

    The same bits as ``imagehash.phash`` (greyscale, 32×32 Lanczos, 2-D DCT-II, the 8×8
    low-frequency block against its median), with the DCT done for ``chunk`` images at once.
    """
    _need("imagehash")  # the reference implementation; the tests check the bits agree
    from PIL import Image as _Image
    from scipy.fft import dct

    out = np.zeros(len(images), dtype=np.uint64)
    ok = np.array([im is not None for im in images], dtype=bool)
    weights = np.uint64(1) << np.arange(63, -1, -1, dtype=np.uint64)
    present = np.flatnonzero(ok)
    for s in range(0, len(present), chunk):
        idx = present[s : s + chunk]
        px = np.stack(
            [
                np.asarray(images[i].convert("L").resize((32, 32), _Image.Resampling.LANCZOS))
                for i in idx
            ]
        ).astype(np.float64)
        coef = dct(dct(px, axis=1), axis=2)[:, :8, :8].reshape(len(idx), 64)
        bits = (coef > np.median(coef, axis=1, keepdims=True)).astype(np.uint64)
        out[idx] = (bits * weights).sum(axis=1, dtype=np.uint64)
    return out, ok


def near_hash_pairs(
    hashes: NDArray[np.uint64], ok: NDArray[np.bool_], k: int
) -> set[tuple[int, int]]:
    """Index pairs ``i < j`` whose 64-bit hashes differ in at most ``k`` bits (all of them).

    Example:
        >>> h = np.array([0, 1, 3, 2**63], dtype=np.uint64)
        >>> sorted(near_hash_pairs(h, np.ones(4, bool), 1))
        [(0, 1), (0, 3), (1, 2)]
    """
    pairs: set[tuple[int, int]] = set()
    idx = np.flatnonzero(ok)
    if len(idx) < 2:
        return pairs
    h = hashes[idx]
    bands = k + 1
    edges = np.linspace(0, 64, bands + 1).astype(int)
    for b in range(bands):
        lo, width = int(edges[b]), int(edges[b + 1] - edges[b])
        key = (h >> np.uint64(lo)) & np.uint64((1 << width) - 1)
        order = np.argsort(key, kind="stable")
        sk = key[order]
        starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]])
        ends = np.r_[starts[1:], len(sk)]
        for s, e in zip(starts, ends, strict=True):
            if e - s < 2:
                continue
            members = idx[order[s:e]]
            mh = hashes[members]
            d = _popcount(mh[:, None] ^ mh[None, :])  # the bucket's pairs in one call
            row, col = np.nonzero(np.triu(d <= k, 1))
            for i, j in zip(members[row].tolist(), members[col].tolist(), strict=True):
                pairs.add((i, j) if i < j else (j, i))
    return pairs


def caption_pairs(
    captions: Sequence[str | None], threshold: float, num_perm: int
) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """``(exact, near)`` caption pairs ``i < j``: equal normalised text; MinHash-LSH Jaccard."""
    ds = _need("datasketch")
    norm = [normalise_caption(c) if c else "" for c in captions]
    exact: set[tuple[int, int]] = set()
    first: dict[str, int] = {}
    reps: list[int] = []
    for i, t in enumerate(norm):
        if not t:
            continue
        if t in first:
            exact.add((first[t], i))
        else:
            first[t] = i
            reps.append(i)
    near: set[tuple[int, int]] = set()
    if len(reps) >= 2:
        tokens = [[w.encode() for w in set(norm[i].split())] for i in reps]
        hashes = ds.MinHash.bulk(tokens, num_perm=num_perm, seed=1)
        lsh = ds.MinHashLSH(threshold=threshold, num_perm=num_perm)
        with lsh.insertion_session() as session:
            for r, m in zip(reps, hashes, strict=True):
                session.insert(r, m)
        for r, m in zip(reps, hashes, strict=True):
            for other in lsh.query(m):
                if other != r:
                    near.add((min(r, other), max(r, other)))
    return exact, near


def embedding_pairs(emb: NDArray[np.floating[Any]], threshold: float) -> set[tuple[int, int]]:
    """Pairs ``i < j`` whose L2-normalised embeddings have cosine ≥ ``threshold``."""
    from sklearn.neighbors import NearestNeighbors

    pairs: set[tuple[int, int]] = set()
    if len(emb) < 2:
        return pairs
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    radius = float(np.sqrt(max(0.0, 2.0 - 2.0 * threshold)))
    nn = NearestNeighbors(radius=radius).fit(x)
    for i, nbrs in enumerate(nn.radius_neighbors(x, return_distance=False)):
        for j in nbrs:
            if int(j) > i:
                pairs.add((i, int(j)))
    return pairs


@dataclass
class DedupResult:
    """Clusters of duplicate records and the pair counts behind them."""

    n: int
    keep: list[int]
    clusters: list[list[int]]
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def removed(self) -> int:
        """Records dropped (each cluster keeps one)."""
        return self.n - len(self.keep)


def find_duplicates(
    images: Sequence[Image.Image | None],
    captions: Sequence[str | None],
    params: DedupParams | None = None,
    *,
    image_digests: Sequence[str | None] | None = None,
    embeddings: NDArray[np.floating[Any]] | None = None,
) -> DedupResult:
    """Cluster records ``i`` = ``(images[i], captions[i])`` into duplicates.

    Args:
        images: each record's image (``None``: none).
        captions: each record's caption (``None``: none).
        params: thresholds and the ``match`` rule (default :class:`DedupParams`).
        image_digests: byte digests of the image files; equal digests are exact duplicates.
        embeddings: ``(n, d)`` image embeddings for ``embedding_threshold``.

    Returns:
        A :class:`DedupResult`: the indices kept (first of each cluster, ascending) and every
        cluster of two or more records.
    """
    p = params or DedupParams()
    n = len(images)
    if len(captions) != n:
        raise InputError(f"find_duplicates: {n} images but {len(captions)} captions")
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    image_set: set[tuple[int, int]] = set()
    caption_set: set[tuple[int, int]] = set()
    if p.match != "caption":
        if image_digests is not None:
            first: dict[str, int] = {}
            exact_img: set[tuple[int, int]] = set()
            for i, d in enumerate(image_digests):
                if d and d in first:
                    exact_img.add((first[d], i))
                elif d:
                    first[d] = i
            counts["exact_image_pairs"] = len(exact_img)
            image_set |= exact_img
        hashes, ok = phash64(images)
        near_img = near_hash_pairs(hashes, ok, p.image_distance)
        counts["near_image_pairs"] = len(near_img)
        image_set |= near_img
        if p.embedding_threshold is not None and embeddings is not None:
            emb = embedding_pairs(embeddings, p.embedding_threshold)
            counts["embedding_pairs"] = len(emb)
            image_set |= emb
    if p.match != "image":
        exact_cap, near_cap = caption_pairs(captions, p.caption_threshold, p.num_perm)
        counts["exact_caption_pairs"] = len(exact_cap)
        counts["near_caption_pairs"] = len(near_cap)
        caption_set = exact_cap | near_cap
    if p.match == "image":
        dup = image_set
    elif p.match == "caption":
        dup = caption_set
    elif p.match == "either":
        dup = image_set | caption_set
    else:  # both: the images match and the captions match (same or same group of captions)
        dup = _both(image_set, caption_set, n)
    uf = _UnionFind(n)
    for a, b in dup:
        uf.union(a, b)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(uf.find(i), []).append(i)
    clusters = sorted((g for g in groups.values() if len(g) > 1), key=lambda g: (-len(g), g[0]))
    keep = sorted(groups)
    counts["duplicate_pairs"] = len(dup)
    return DedupResult(n, keep, clusters, counts, time.perf_counter() - t0)


def _both(
    image_set: set[tuple[int, int]], caption_set: set[tuple[int, int]], n: int
) -> set[tuple[int, int]]:
    """Image pairs whose captions are in one caption cluster.

    Exact caption pairs are stored as a star on the first occurrence, so caption equality is
    judged by cluster, not by stored pair.
    """
    uf = _UnionFind(n)
    for a, b in caption_set:
        uf.union(a, b)
    return {(a, b) for a, b in image_set if uf.find(a) == uf.find(b)}


@dataclass
class _Record:
    line: bytes
    image: str | None
    caption: str | None
    error: str | None = None


def _field(obj: dict[str, Any], keys: Sequence[str]) -> str | None:
    for k in keys:
        v = obj.get(k)
        if isinstance(v, str) and v:
            return v
    return None


def read_manifest(path: Path) -> list[_Record]:
    """Each non-blank line of a JSONL manifest with its image path and caption."""
    if not path.is_file() or path.suffix != ".jsonl":
        raise InputError(
            f"privacy/dedup: --data {path} is not a .jsonl manifest; pass an image–text "
            "manifest (one JSON object per line with image and caption)"
        )
    out: list[_Record] = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            line = raw if raw.endswith(b"\n") else raw + b"\n"
            try:
                obj = json.loads(raw)
            except ValueError:
                out.append(_Record(line, None, None, f"line {lineno}: not JSON"))
                continue
            if not isinstance(obj, dict):
                out.append(_Record(line, None, None, f"line {lineno}: not an object"))
                continue
            image = _field(obj, IMAGE_KEYS)
            imgs = obj.get("images")
            if image is None and isinstance(imgs, list) and imgs and isinstance(imgs[0], str):
                image = imgs[0]
            caption = _field(obj, CAPTION_KEYS)
            meta = obj.get("metadata")
            if isinstance(meta, dict) and isinstance(meta.get("caption"), str):
                caption = meta["caption"] or caption
            out.append(_Record(line, image, caption))
    if not out:
        raise InputError(f"privacy/dedup: manifest {path} has no lines; add one JSON object a line")
    return out


def _inside(root: Path, rel: str) -> Path | None:
    p = (root / rel).resolve()
    return p if p.is_relative_to(root) and p.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    if not copy:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


@mitigation("privacy/dedup")
class Dedup(Mitigation):
    """Exact and near-duplicate removal (pHash, MinHash-LSH, embeddings) on a manifest."""

    pillar = Pillar.PRIVACY
    kind = "data"
    requires = Capability.NONE
    Params = DedupParams
    description = (
        "Deduplicate an image–text manifest: exact and perceptual-hash image duplicates, "
        "MinHash-LSH caption near-duplicates, optionally embedding neighbours; writes the "
        "deduplicated manifest and a cluster report."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Read ``ctx.data``, write the deduplicated manifest and report to ``ctx.out_dir``."""
        from vlmtrust.data.images import load_image

        p = self.params
        assert isinstance(p, DedupParams)
        src = data_manifest(self.name, ctx, "to clean")
        records = read_manifest(src)
        root = src.absolute().parent.resolve()
        images: list[Any] = []
        digests: list[str | None] = []
        paths: list[Path | None] = []
        errors = [r.error for r in records if r.error]
        for r in records:
            path = _inside(root, r.image) if r.image else None
            if r.image and path is None and r.error is None:
                r.error = f"image {r.image}: missing or outside the manifest folder"
                errors.append(r.error)
            im = None
            if path is not None:
                try:
                    im = load_image(
                        path,
                        max_pixels=ctx.data_limits.max_image_pixels,
                        max_aspect_ratio=ctx.data_limits.max_aspect_ratio,
                    )
                except Exception as exc:  # an undecodable image is reported, not fatal
                    r.error = f"image {r.image}: {str(exc).splitlines()[0][:160]}"
                    errors.append(r.error)
                    path = None
            paths.append(path)
            images.append(im)
            digests.append(_sha256(path) if path is not None else None)
        embeddings = None
        if p.embedding_threshold is not None:
            if getattr(model, "kind", None) != "dual" or not hasattr(model, "embed_images"):
                raise InputError(
                    "privacy/dedup: embedding_threshold needs a dual encoder as --model "
                    "(e.g. reference:clip); drop it for --model none"
                )
            present = [i for i, im in enumerate(images) if im is not None]
            emb = np.asarray(model.embed_images([images[i] for i in present]), dtype=np.float64)
            embeddings = np.zeros((len(images), emb.shape[1]))
            # absent images get orthogonal random directions: never anyone's neighbour
            rng = np.random.default_rng(0)
            embeddings[:] = rng.standard_normal(embeddings.shape)
            embeddings[present] = emb
        bad = {i for i, r in enumerate(records) if r.error}
        result = find_duplicates(
            [None if i in bad else im for i, im in enumerate(images)],
            [None if i in bad else r.caption for i, r in enumerate(records)],
            p,
            image_digests=[None if i in bad else d for i, d in enumerate(digests)],
            embeddings=embeddings,
        )
        out = Path(ctx.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with (out / MANIFEST_NAME).open("wb") as fh:
            for i in result.keep:
                fh.write(records[i].line)
                path = paths[i]
                if path is not None and records[i].image is not None:
                    _place(path, out / path.relative_to(root), p.copy_images)
        report = {
            "source": str(src),
            "records": result.n,
            "kept": len(result.keep),
            "removed": result.removed,
            "clusters": len(result.clusters),
            "cluster_sizes": _histogram([len(c) for c in result.clusters]),
            "pairs": result.counts,
            "unreadable": len(errors),
            "errors": errors[:20],
            "largest_clusters": [
                {"size": len(c), "kept_line": c[0] + 1, "lines": [i + 1 for i in c[:20]]}
                for c in result.clusters[: p.max_clusters]
            ],
            "seconds": round(result.seconds, 3),
        }
        keys = ("records", "kept", "removed", "clusters", "pairs")
        return write_cleaned(out, self.name, p, report, REPORT_NAME, keys)


def _histogram(sizes: Sequence[int]) -> dict[str, int]:
    """Cluster count by size.

    Example:
        >>> _histogram([2, 2, 5])
        {'2': 2, '5': 1}
    """
    h: dict[str, int] = {}
    for s in sorted(sizes):
        h[str(s)] = h.get(str(s), 0) + 1
    return h
