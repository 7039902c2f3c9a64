"""Dataset loaders: image folders, JSONL manifests (with hostile paths), saved HF datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.sample import Sample
from vlmtrust.data.datasets import (
    DataError,
    DataSource,
    class_names,
    iter_dataset,
    parse_data_spec,
)


def _png(path: Path, colour: tuple[int, int, int] = (255, 0, 0), size: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def _split(items: Iterable[Sample | DataError]) -> tuple[list[Sample], list[DataError]]:
    samples: list[Sample] = []
    errors: list[DataError] = []
    for item in items:
        if isinstance(item, DataError):
            errors.append(item)
        else:
            assert isinstance(item, Sample)
            samples.append(item)
    return samples, errors


def _write_manifest(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


# -------------------------------------------------------------------------------- image folder


def test_image_folder_labels_ids_and_laziness(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    _png(root / "dog" / "b.png", (0, 0, 255))
    _png(root / "cat" / "a.jpg", (255, 0, 0))
    _png(root / "cat" / "z.PNG", (0, 255, 0))
    _png(root / "cat" / "nested" / "c.webp", (9, 9, 9))
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    _png(root / ".hidden" / "x.png")
    (root / "empty_label").mkdir()  # a label folder without images
    (root / "empty_label" / "readme.md").write_text("nothing")
    _png(root / "loose.png", (1, 2, 3))

    assert parse_data_spec(str(root)).kind == "folder"
    samples, errors = _split(iter_dataset(str(root)))
    assert errors == []
    assert [s.id for s in samples] == [
        "cat/a.jpg",
        "cat/nested/c.webp",
        "cat/z.PNG",
        "dog/b.png",
        "loose.png",
    ]
    assert [s.target for s in samples] == ["cat", "cat", "cat", "dog", None]
    assert dict(samples[0].attributes) == {"label": "cat"} and dict(samples[4].attributes) == {}
    ref = samples[3].images[0]
    assert ref.image is None and ref.path == str(root / "dog" / "b.png")  # lazy
    assert ref.load().getpixel((0, 0)) == (0, 0, 255)
    assert class_names(str(root)) == ["cat", "dog"]
    # stable: a second pass gives the same ids
    assert [s.id for s in _split(iter_dataset(root))[0]] == [s.id for s in samples]


def test_image_folder_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "cat").mkdir(parents=True)
    (empty / "cat" / "x.txt").write_text("x")
    with pytest.raises(InputError, match=r"image folder holds no images .* — lay it out as DIR/"):
        iter_dataset(str(empty))
    with pytest.raises(InputError, match=r"^data .*nowhere: not found — pass an image folder"):
        iter_dataset(str(tmp_path / "nowhere"))
    stray = tmp_path / "data.csv"
    stray.write_text("a,b\n")
    with pytest.raises(InputError, match=r"not a folder, \.jsonl manifest or saved dataset"):
        iter_dataset(str(stray))
    with pytest.raises(InputError, match="apply only to hf-disk datasets"):
        iter_dataset(str(empty), image_column="img")


def test_unreadable_label_folder_is_a_data_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vlmtrust.data.datasets as mod

    root = tmp_path / "imgs"
    _png(root / "a" / "1.png")
    _png(root / "b" / "2.png")
    real = mod._sorted_entries

    def deny_b(directory: Path | str) -> list[os.DirEntry[str]]:
        if Path(directory).name == "b":  # as if chmod 000 (tests may run as root)
            raise PermissionError(13, "Permission denied")
        return real(directory)

    monkeypatch.setattr(mod, "_sorted_entries", deny_b)
    samples, errors = _split(iter_dataset(root))
    assert [s.id for s in samples] == ["a/1.png"]
    assert [e.id for e in errors] == ["b"] and "cannot list folder" in errors[0].message


# ---------------------------------------------------------------------------------- manifests


def test_manifest_good_lines(tmp_path: Path) -> None:
    _png(tmp_path / "img" / "a.png", (10, 20, 30))
    _png(tmp_path / "img" / "b.png", (40, 50, 60))
    manifest = _write_manifest(
        tmp_path / "manifest.jsonl",
        [
            {
                "id": "q1",
                "image": "img/a.png",
                "prompt": "What colour?",
                "target": "teal",
                "attributes": {"group": "x"},
                "metadata": {"source": "unit", "k": [1, 2]},
            },
            "",  # blank lines are skipped, not errors
            {"images": ["img/a.png", "./img/b.png"], "prompt": "Compare.", "target": 3},
            {"prompt": "text only"},
            {"id": 7, "image": "img/b.png"},
        ],
    )
    assert parse_data_spec(str(manifest)).kind == "manifest"
    samples, errors = _split(iter_dataset(str(manifest)))
    assert errors == []
    assert [s.id for s in samples] == ["q1", "line-3", "line-4", "7"]
    first = samples[0]
    assert first.prompt == "What colour?" and first.target == "teal"
    assert dict(first.attributes) == {"group": "x"}
    assert dict(first.metadata) == {"source": "unit", "k": [1, 2]}
    assert first.images[0].image is None  # lazy
    assert first.images[0].path == str((tmp_path / "img" / "a.png").resolve())
    assert first.images[0].load().getpixel((1, 1)) == (10, 20, 30)
    assert [Path(r.path or "").name for r in samples[1].images] == ["a.png", "b.png"]
    assert samples[1].target == "3" and samples[2].images == ()
    assert class_names(str(manifest)) == ["3", "teal"]


def test_manifest_paths_escaping_the_folder_are_rejected(tmp_path: Path) -> None:
    outside = _png(tmp_path / "secret.png")
    base = tmp_path / "data"
    _png(base / "ok.png")
    (base / "link.png").symlink_to(outside)
    (base / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    manifest = _write_manifest(
        base / "m.jsonl",
        [
            {"id": "good", "image": "ok.png"},
            {"id": "dotdot", "image": "../secret.png"},
            {"id": "sneaky", "image": "sub/../../secret.png"},
            {"id": "abs", "image": str(outside)},
            {"id": "win", "image": "C:\\secret.png"},
            {"id": "backslash", "image": "..\\secret.png"},
            {"id": "link", "image": "link.png"},
            {"id": "linkdir", "image": "linkdir/secret.png"},
            {"id": "many", "images": ["ok.png", "../secret.png"]},
        ],
    )
    samples, errors = _split(iter_dataset(manifest))
    assert [s.id for s in samples] == ["good"]
    by_id = {e.id: e.message for e in errors}
    assert list(by_id) == ["dotdot", "sneaky", "abs", "win", "backslash", "link", "linkdir", "many"]
    assert by_id["dotdot"] == (
        f"{manifest}:2: image path \"../secret.png\" escapes the manifest's folder via '..' "
        "— move the image under the manifest's folder"
    )
    assert by_id["sneaky"].startswith(f"{manifest}:3: ")
    assert f"{manifest}:4: image path" in by_id["abs"] and "is absolute" in by_id["abs"]
    assert "is absolute" in by_id["win"] and "via '..'" in by_id["backslash"]
    for key in ("link", "linkdir"):
        assert "resolves outside the manifest's folder (symbolic link)" in by_id[key]
    assert by_id["many"].startswith(f"{manifest}:9: ")
    assert all("\n" not in m and " — " in m for m in by_id.values())


def test_malformed_lines_become_data_errors_and_the_stream_goes_on(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    manifest = tmp_path / "m.jsonl"
    lines = [
        json.dumps({"id": "first", "image": "a.png"}),
        '{"id": "broken", "image": "a.png"',  # 2: truncated JSON
        "[1, 2]",  # 3: not an object
        json.dumps({"id": "typo", "image": "a.png", "target": "cat", "label": "dog"}),  # 4
        json.dumps({"image": 5}),  # 5
        json.dumps({"image": "a.png", "attributes": {"age": 30}}),  # 6
        json.dumps({"image": "a.png", "target": ["x"]}),  # 7
        json.dumps({"id": "first", "image": "a.png"}),  # 8: duplicate id
        json.dumps({"metadata": {}}),  # 9: nothing to ask
        json.dumps({"image": "a.png", "images": ["a.png"]}),  # 10
        json.dumps({"id": True, "image": "a.png"}),  # 11
        json.dumps({"image": "a.png", "prompt": "last good"}),  # 12
    ]
    manifest.write_bytes(("\n".join(lines) + "\n").encode() + b'{"image": "\xff\xfe"}\n')
    samples, errors = _split(iter_dataset(manifest))
    assert [s.id for s in samples] == ["first", "line-12"]
    got = {e.message.split(": ", 1)[0]: e.message.split(": ", 1)[1] for e in errors}
    expected_lines = [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert list(got) == [f"{manifest}:{n}" for n in expected_lines]
    msg = {n: got[f"{manifest}:{n}"] for n in expected_lines}
    assert msg[2].startswith("invalid JSON (Expecting ',' delimiter at column 34) — ")
    assert msg[3].startswith("expected a JSON object, got array")
    assert msg[4] == (
        'has both "target" and "label" (an alias of it) with different values — keep one of '
        'them (move the other under "metadata")'
    )
    assert msg[5].startswith('"image" must be a path string, got integer')
    assert msg[6].startswith('"attributes.age" must be a string, got integer — quote the value')
    assert msg[7].startswith('"target" must be a string or number, got array')
    assert msg[8] == "duplicate id 'first' (first on line 1) — make ids unique"
    assert msg[9].startswith('has no "image", "images" or "prompt"')
    assert msg[10].startswith('has both "image" and "images"')
    assert msg[11].startswith('"id" must be a string or integer, got boolean')
    assert msg[13].startswith("not valid UTF-8 (byte 11) — save the file as UTF-8")
    ids = [e.id for e in errors]
    assert ids[0] == "line-2"  # unparseable: the line id
    assert ids[2] == "typo" and ids[6] == "line-8"  # a duplicate gets its line id
    assert len(set(ids)) == len(ids)


def test_manifest_whole_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"manifest not found — check the path"):
        iter_dataset(str(tmp_path / "missing.jsonl"))
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n")
    with pytest.raises(InputError, match=r"manifest has no samples"):
        list(iter_dataset(blank))
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(InputError, match=r"manifest is a directory — pass the \.jsonl file"):
        iter_dataset(str(tmp_path / "dir.jsonl"))
    nolabels = _write_manifest(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    with pytest.raises(InputError, match=r"has no class labels"):
        class_names(nolabels)


def test_overlong_line_is_skipped_not_fatal(tmp_path: Path) -> None:
    manifest = _write_manifest(
        tmp_path / "m.jsonl",
        [{"prompt": "x" * 500}, {"prompt": "short"}],
    )
    limits = DataLimits(max_manifest_line_bytes=64)
    samples, errors = _split(iter_dataset(manifest, limits=limits))
    assert [s.prompt for s in samples] == ["short"] and [s.id for s in samples] == ["line-2"]
    assert errors[0].message.startswith(f"{manifest}:1: line longer than 64 bytes")
    assert errors[0].message.endswith("or raise --max-manifest-line-bytes")
    raised = DataSource.open(manifest, limits=DataLimits(max_manifest_line_bytes=1024))
    assert [s.prompt for s in _split(raised)[0]] == ["x" * 500, "short"]


def test_manifest_bom_and_bad_image_stays_lazy(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"")
    manifest = tmp_path / "m.jsonl"
    manifest.write_bytes(b"\xef\xbb\xbf" + json.dumps({"image": "bad.png"}).encode() + b"\n")
    (sample,) = _split(iter_dataset(manifest))[0]
    with pytest.raises(ImageLoadError, match=r"bad\.png: file is empty \(0 bytes\)"):
        sample.images[0].load()  # the runner records this as an error record


def test_manifest_written_by_other_tools(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _png(tmp_path / "a.png")
    _png(tmp_path / "b.png")
    manifest = _write_manifest(
        tmp_path / "m.jsonl",
        [
            {"file_name": "a.png", "label": "cat", "score": 0.9},  # 1: image classification
            {"path": "b.png", "class": "dog", "bbox": [1, 2, 3, 4]},  # 2
            {"image_path": "a.png", "question": "What colour?", "answer": "red"},  # 3: VQA
            {"image": "a.png", "caption": "a cat", "text": "a cat"},  # 4: same value twice
            {"image": "b.png", "target": "cat", "label": "cat", "promt": "hi"},  # 5
            {"image": "a.png", "label": "cat", "caption": "a dog"},  # 6: two values
            {"file_name": "a.png", "images": ["b.png"]},  # 7
            {"image": "a.png", "source": "x", "metadata": {"source": "y"}},  # 8
            {"image": "a.png", "label": None, "target": "cat", "metadata": {"k": 1}},  # 9
        ],
    )
    source = DataSource.open(manifest)
    with caplog.at_level("WARNING", logger="vlmtrust"):
        samples, errors = _split(source)
        assert source.class_names() == ["a cat", "cat", "dog", "red"]  # a second pass
        _split(source)
    by_line = {int(s.id.split("-")[1]): s for s in samples}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 9]
    assert [(by_line[n].target, by_line[n].prompt) for n in (1, 2, 3, 4, 5, 9)] == [
        ("cat", None),
        ("dog", None),
        ("red", "What colour?"),
        ("a cat", None),
        ("cat", None),
        ("cat", None),
    ]
    assert by_line[2].images[0].path == str((tmp_path / "b.png").resolve())
    assert dict(by_line[1].metadata) == {"score": 0.9}
    assert dict(by_line[2].metadata) == {"bbox": [1, 2, 3, 4]}
    assert dict(by_line[5].metadata) == {"promt": "hi"}
    assert dict(by_line[9].metadata) == {"k": 1}
    assert [e.message.split(": ", 1)[1] for e in errors] == [
        'has both "label" and "caption" (both read as "target") with different values — '
        'keep one of them (move the other under "metadata")',
        'has both "file_name" and "images" — use one of them',
        'has "source" both as a key and under "metadata", with different values — keep one of them',
    ]
    # one line for the file, however often it is read, naming every key kept under metadata
    warnings = [r.getMessage() for r in caplog.records if r.name == "vlmtrust"]
    assert warnings == [
        f'data {manifest}: keys that are not manifest fields, kept under "metadata": '
        '"bbox" (1 line), "promt" (1 line, did you mean "prompt"?), "score" (1 line) — rename '
        "any that was meant as a field (id, image, images, prompt, target, attributes; or an "
        "alias such as label, caption, question, file_name)"
    ]


def test_classification_manifest_with_a_label_key_gives_zero_shot_classes(
    tmp_path: Path,
) -> None:
    rows = [{"image": f"{k}.png", "label": c} for k, c in enumerate(["cat", "dog", "cat"])]
    for k in range(3):
        _png(tmp_path / f"{k}.png")
    manifest = _write_manifest(tmp_path / "m.jsonl", rows)
    samples, errors = _split(iter_dataset(manifest))
    assert errors == [] and [s.target for s in samples] == ["cat", "dog", "cat"]
    assert class_names(manifest) == ["cat", "dog"]


def test_image_limits_travel_with_the_image(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "imgs"
    Image.new("RGB", (4000, 2)).save(_png(root / "wide" / "a.png"))
    (root / "metadata.jsonl").write_text('{"file_name": "wide/a.png", "text": "a line"}\n')
    with caplog.at_level("WARNING", logger="vlmtrust"):
        (default,) = _split(iter_dataset(root))[0]
    assert [r.getMessage() for r in caplog.records] == [
        f"data {root}: its metadata.jsonl is not read when the folder is the data (labels "
        f"come from sub-folder names) — pass --data {root / 'metadata.jsonl'} to use its fields"
    ]
    with pytest.raises(ImageLoadError) as info:
        default.images[0].load()
    assert str(info.value).endswith("crop or pad the image, or raise --max-aspect-ratio")
    wide = DataLimits(max_aspect_ratio=2000)
    for spec in (root, root / "metadata.jsonl"):
        (sample,) = _split(DataSource.open(spec, limits=wide))[0]
        assert sample.images[0].load().size == (4000, 2)
        assert sample.images[0].loaded().limits == wide
    small = DataLimits(max_image_pixels=7999, max_aspect_ratio=2000)
    (sample,) = _split(iter_dataset(root, limits=small))[0]
    with pytest.raises(ImageLoadError, match=r"raise --max-image-pixels if you trust it$"):
        sample.images[0].load()


# ---------------------------------------------------------------------- hf datasets on disk


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    import datasets

    datasets.disable_progress_bars()
    root = tmp_path_factory.mktemp("hf")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (9, 9, 9)]
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # decoded through our loader: RGB out
    images = [Image.new("RGB", (4, 4), c) for c in colours[:3]] + [cmyk]
    ds = datasets.Dataset.from_dict(
        {
            "img": images,
            "label": [0, 1, 0, -1],
            "question": ["q0", "q1", None, "q3"],
            "group": ["a", "b", "a", "b"],
            "uid": ["u0", "u1", "u2", "u3"],
        }
    )
    ds = ds.cast_column("img", datasets.Image())
    ds = ds.cast_column("label", datasets.ClassLabel(names=["cat", "dog"]))
    single = root / "single"
    ds.save_to_disk(str(single))
    captions = datasets.Dataset.from_dict(
        {"image": images[:2], "answer": ["red", "green"]}
    ).cast_column("image", datasets.Image())
    dd = root / "dict"
    datasets.DatasetDict({"train": captions, "test": captions.select([1])}).save_to_disk(str(dd))
    return single, dd


def test_hf_disk_round_trip(hf_dirs: tuple[Path, Path]) -> None:
    single, _ = hf_dirs
    spec = parse_data_spec(str(single))
    assert spec.kind == "hf-disk" and spec.split is None
    samples, errors = _split(iter_dataset(str(single), attribute_columns=["group"]))
    assert errors == []
    assert [s.id for s in samples] == ["0", "1", "2", "3"]
    assert [s.target for s in samples] == ["cat", "dog", "cat", None]  # -1 = no label
    assert [s.prompt for s in samples] == ["q0", "q1", None, "q3"]  # auto: question column
    assert dict(samples[1].attributes) == {"group": "b", "label": "dog"}
    assert dict(samples[3].attributes) == {"group": "b"}
    assert dict(samples[2].metadata) == {"index": 2}
    pixels = [s.images[0].image for s in samples]
    assert all(p is not None and p.mode == "RGB" for p in pixels)
    assert [s.pil_images()[0].getpixel((1, 1)) for s in samples[:3]] == [
        (255, 0, 0),
        (0, 255, 0),
        (0, 0, 255),
    ]
    r, g, b = np.asarray(samples[3].pil_images()[0])[1, 1]
    assert r > 240 and g < 15 and b < 15
    assert class_names(single) == ["cat", "dog"]  # ClassLabel order


def test_hf_disk_spec_options_and_splits(hf_dirs: tuple[Path, Path]) -> None:
    single, dd = hf_dirs
    samples, _ = _split(iter_dataset(f"hf-disk:{single}?image=img&id=uid&target=group"))
    assert [s.id for s in samples] == ["u0", "u1", "u2", "u3"]
    assert [s.target for s in samples] == ["a", "b", "a", "b"]
    assert class_names(f"hf-disk:{single}?target=group") == ["a", "b"]
    assert class_names(single, target_column="group") == ["a", "b"]

    test, _ = _split(iter_dataset(f"hf-disk:{dd}#test"))
    assert [(s.id, s.target, dict(s.metadata)) for s in test] == [
        ("0", "green", {"index": 0, "split": "test"})
    ]
    assert parse_data_spec(str(dd)).kind == "hf-disk"
    with pytest.raises(InputError, match=r"has splits test, train — pick one with hf-disk:.*#test"):
        iter_dataset(str(dd))
    with pytest.raises(InputError, match=r"no split 'valid' — use one of test, train"):
        iter_dataset(f"hf-disk:{dd}#valid")
    with pytest.raises(InputError, match=r"no image column 'picture' \(columns: img, label"):
        iter_dataset(f"hf-disk:{single}?image=picture")
    with pytest.raises(InputError, match=r"column 'group' is not an Image feature"):
        iter_dataset(single, image_column="group")
    with pytest.raises(InputError, match=r"option 'prompt' is empty — give a column name"):
        iter_dataset(f"hf-disk:{single}?prompt=")
    with pytest.raises(InputError, match=r"unknown option 'colour'"):
        iter_dataset(f"hf-disk:{single}?colour=red")
    with pytest.raises(InputError, match=r"is not a dataset saved with save_to_disk"):
        iter_dataset(f"hf-disk:{single.parent}")
    source = DataSource.open(f"hf-disk:{dd}#train")
    assert [s.target for s in _split(source)[0]] == ["red", "green"]
    assert source.class_names() == ["green", "red"]


def test_hf_disk_bad_image_cell_is_a_data_error(tmp_path: Path) -> None:
    import io

    import datasets

    datasets.disable_progress_bars()
    good = Image.effect_noise((64, 64), 60).convert("RGB")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
    buf = io.BytesIO()
    good.save(buf, "PNG")
    rows = {
        "image": [
            {"bytes": buf.getvalue(), "path": None},
            {"bytes": b"not an image at all", "path": None},
            {"bytes": buf.getvalue()[: len(buf.getvalue()) // 2], "path": None},
        ],
        "label": ["x", "y", "z"],
    }
    ds = datasets.Dataset.from_dict(rows, features=feats)
    ds.save_to_disk(str(tmp_path / "ds"))
    samples, errors = _split(iter_dataset(str(tmp_path / "ds")))
    assert [s.id for s in samples] == ["0"]
    assert [e.id for e in errors] == ["1", "2"]
    assert errors[0].message.startswith(f"image {tmp_path / 'ds'}[1].image: not a supported")
    assert "truncated" in errors[1].message and " — " in errors[1].message


def test_hf_disk_other_tools_columns_and_limits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import io

    import datasets

    datasets.disable_progress_bars()
    buf = io.BytesIO()
    Image.new("RGB", (400, 2), (1, 2, 3)).save(buf, "PNG")
    feats = datasets.Features(
        {
            "image": datasets.Image(),
            "caption": datasets.Value("string"),
            "text": datasets.Value("string"),
        }
    )
    rows = {"image": [{"bytes": buf.getvalue(), "path": None}], "caption": ["c"], "text": ["t"]}
    datasets.Dataset.from_dict(rows, features=feats).save_to_disk(str(tmp_path / "ds"))
    source = DataSource.open(tmp_path / "ds", limits=DataLimits(max_aspect_ratio=199))
    with caplog.at_level("WARNING", logger="vlmtrust"):
        samples, errors = _split(source)
        assert source.class_names() == ["c"]
    assert samples == [] and errors[0].message.endswith("or raise --max-aspect-ratio")
    assert [r.getMessage() for r in caplog.records] == [
        f"data {tmp_path / 'ds'}: several columns could be the target ('caption', 'text'); "
        "using 'caption' — name another with hf-disk:PATH?target=COL"
    ]
    (sample,) = _split(iter_dataset(tmp_path / "ds", limits=DataLimits(max_aspect_ratio=200)))[0]
    assert sample.target == "c" and sample.pil_images()[0].size == (400, 2)
