import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.mitigations.privacy.dedup import (
    DedupParams,
    find_duplicates,
    near_hash_pairs,
)


def _img(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(
        np.kron(rng.integers(0, 255, (8, 8, 3)), np.ones((size // 8, size // 8, 1))).astype(
            np.uint8
        )
    )


def _manifest(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    rows = []
    for i in range(6):
        _img(i).save(d / "img" / f"{i}.png")
    # a byte-identical copy of 0, a slightly brightened 1, distinct 2..5
    (d / "img" / "0b.png").write_bytes((d / "img" / "0.png").read_bytes())
    near = np.asarray(_img(1)).astype(int) + 3
    Image.fromarray(np.clip(near, 0, 255).astype(np.uint8)).save(d / "img" / "1b.png")
    caps = ["a secret code red fox jumps", "a photo of a blue circle", "a photo of a square",
            "a photo of a cat", "a photo of a dog", "a photo of a bird"]  # fmt: skip
    for i in range(6):
        rows.append({"image": f"img/{i}.png", "caption": caps[i]})
    rows.append({"image": "img/0b.png", "caption": "A secret code: red fox jumps!"})
    rows.append({"image": "img/1b.png", "caption": "a photo of a blue circle"})
    rows.append({"image": "img/2.png", "caption": "something else entirely here"})  # image only
    rows.append({"image": "img/3.png", "caption": "a photo of a cat"})  # exact repeat
    m = d / "m.jsonl"
    m.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n{broken\n")
    return m


def test_near_hash_pairs_matches_all_pairs() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, 40).astype(np.uint64)
    h = np.concatenate([base, base ^ flips, base[:5] ^ (flips[:5] | (flips[:5] >> np.uint64(1)))])
    k = 2
    brute = {
        (i, j)
        for i in range(len(h))
        for j in range(i + 1, len(h))
        if bin(int(h[i]) ^ int(h[j])).count("1") <= k
    }
    assert near_hash_pairs(h, np.ones(len(h), bool), k) == brute


def test_find_duplicates_rules() -> None:
    ims = [_img(0), _img(0), _img(1), _img(2)]
    caps = ["a cat", "a cat", "a cat", "a dog"]
    both = find_duplicates(ims, caps, DedupParams())
    assert both.keep == [0, 2, 3] and both.clusters == [[0, 1]]
    cap_only = find_duplicates(ims, caps, DedupParams(match="caption"))
    assert cap_only.keep == [0, 3]
    assert find_duplicates(ims, ["x", "y", "z", "w"], DedupParams(match="image")).keep == [0, 2, 3]
    with pytest.raises(InputError):
        find_duplicates(ims, caps[:2])


def test_dedup_mitigation_writes_manifest_and_report(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    out = tmp_path / "out"
    mit = get_mitigation("privacy/dedup")()
    art = mit.apply(None, MitigationContext(out_dir=out, data=str(m)))
    report = json.loads((out / "dedup_report.json").read_text())
    assert report["records"] == 11 and report["unreadable"] == 1
    # removed: the identical copy with a near caption, the near image with the same caption
    # and the exact repeat; the image-only repeat stays (match=both)
    assert report["removed"] == 3, report
    kept = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()[:-1]]
    assert [r["caption"] for r in kept][-1] == "something else entirely here"
    assert (out / "img" / "0.png").is_file() and not (out / "img" / "0b.png").exists()
    assert art.spec.endswith("manifest.jsonl")
    from vlmtrust.data.datasets import iter_dataset

    assert sum(1 for _ in iter_dataset(art.spec)) == 8  # 7 kept samples + the broken line


def test_dedup_cli(tmp_path: Path) -> None:
    m = _manifest(tmp_path)
    out = tmp_path / "o"
    args = ["harden", "--model", "none", "--mitigation", "privacy/dedup", "--data", str(m),
            "--out", str(out), "-p", "match=either"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "cleaned data:" in r.output
    r = CliRunner().invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0, r.output


def test_dedup_needs_manifest(tmp_path: Path) -> None:
    mit = get_mitigation("privacy/dedup")()
    with pytest.raises(InputError, match="needs --data"):
        mit.apply(None, MitigationContext(out_dir=tmp_path / "o"))
    with pytest.raises(InputError, match="not a .jsonl manifest"):
        mit.apply(None, MitigationContext(out_dir=tmp_path / "o", data=str(tmp_path)))


def test_phash64_equals_imagehash() -> None:
    import imagehash

    from vlmtrust.mitigations.privacy.dedup import phash64

    ims = [_img(i) for i in range(5)] + [Image.new("RGB", (40, 90), (200, 10, 10))]
    ImageDraw.Draw(ims[-1]).ellipse((5, 5, 30, 60), fill=(0, 0, 255))
    h, ok = phash64([*ims, None], chunk=4)
    assert ok.tolist() == [True] * 6 + [False]
    for i, im in enumerate(ims):
        assert f"{int(h[i]):016x}" == str(imagehash.phash(im))


def test_embedding_neighbours_need_a_dual_encoder(tmp_path: Path) -> None:
    m = _manifest(tmp_path)

    vecs = np.eye(10, 16)
    vecs[5] = vecs[4]  # the 5th and 6th images (distinct pixels) point the same way

    class Dual:
        kind = "dual"

        def embed_images(self, ims: list[Image.Image]) -> np.ndarray:
            return vecs[: len(ims)]

    p = {"match": "image", "embedding_threshold": 0.99, "image_distance": 0}
    base = get_mitigation("privacy/dedup")({"match": "image", "image_distance": 0})
    n0 = base.apply(None, MitigationContext(out_dir=tmp_path / "a", data=str(m))).summary
    n1 = (
        get_mitigation("privacy/dedup")(p)
        .apply(Dual(), MitigationContext(out_dir=tmp_path / "b", data=str(m)))
        .summary
    )
    assert n1["pairs"]["embedding_pairs"] == 1 and n1["removed"] == n0["removed"] + 1
    with pytest.raises(InputError, match="needs a dual encoder"):
        get_mitigation("privacy/dedup")(p).apply(
            None, MitigationContext(out_dir=tmp_path / "c", data=str(m))
        )
