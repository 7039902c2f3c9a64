"""Loaders for FairFace, PATA, Harvard-FairVLMed and BOLD, each on a fixture written here in the
published layout (tiny images), plus one line for each wrong layout."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.sample import Sample
from vlmtrust.data.datasets import DataError, DataSource, class_names, iter_dataset, parse_data_spec


def _img(path: Path, colour=(200, 30, 30), size=(8, 6)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _items(spec: str) -> tuple[list[Sample], list[DataError]]:
    items = list(iter_dataset(spec))
    return [x for x in items if isinstance(x, Sample)], [
        x for x in items if isinstance(x, DataError)
    ]


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# ------------------------------------------------------------------ FairFace


def _fairface(root: Path, splits=("val",)) -> Path:
    rows = {
        "val": [
            ("val/1.jpg", "20-29", "Female", "East Asian", "True"),
            ("val/2.jpg", "more than 70", "Male", "Latino_Hispanic", "False"),
            ("val/3.jpg", "3-9", "Male", "", "True"),  # race missing: unknown
        ],
        "train": [("train/1.jpg", "30-39", "Female", "Indian", "True")],
    }
    root.mkdir(parents=True, exist_ok=True)
    for split in splits:
        with (root / f"fairface_label_{split}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["file", "age", "gender", "race", "service_test"])
            for r in rows[split]:
                w.writerow(r)
                _img(root / r[0])
    return root


def test_fairface_rows_carry_the_group_attributes(tmp_path):
    root = _fairface(tmp_path)
    samples, errors = _items(f"fairface:{root}")
    assert not errors and [s.id for s in samples] == ["val/1.jpg", "val/2.jpg", "val/3.jpg"]
    first = samples[0]
    assert dict(first.attributes) == {"age": "20-29", "gender": "Female", "race": "East Asian"}
    assert first.metadata == {"split": "val", "service_test": True}
    assert "race" not in samples[2].attributes
    assert first.images[0].load().size == (8, 6)
    # the label CSV itself is a spec too
    assert len(_items(f"fairface:{root / 'fairface_label_val.csv'}")[0]) == 3


def test_fairface_splits_and_wrong_layouts(tmp_path):
    root = _fairface(tmp_path, splits=("val", "train"))
    with pytest.raises(InputError, match="pick one with fairface:") as e:
        parse_data_spec(f"fairface:{root}")
    _one_line(e)
    assert [s.id for s in _items(f"fairface:{root}#train")[0]] == ["train/1.jpg"]
    with pytest.raises(InputError, match="no split 'test'"):
        parse_data_spec(f"fairface:{root}#test")
    bad = tmp_path / "bad.csv"
    bad.write_text("image,label\na.jpg,cat\n")
    with pytest.raises(InputError, match="expected file,age,gender,race,service_test") as e:
        parse_data_spec(f"fairface:{bad}")
    _one_line(e)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no FairFace label CSV"):
        parse_data_spec(f"fairface:{empty}")
    with pytest.raises(InputError, match="has no class labels"):
        class_names(f"fairface:{root}#val")


def test_fairface_bad_rows_and_escaping_images(tmp_path):
    root = tmp_path / "ff"
    root.mkdir()
    outside = tmp_path / "secret.png"
    _img(outside)
    (root / "val").mkdir()
    os.symlink(outside, root / "val" / "link.png")
    (root / "fairface_label_val.csv").write_text(
        "file,age,gender,race,service_test\n../x.jpg,20-29,Male,White,True\n"
        "val/link.png,20-29,Male,White,True\n"
    )
    samples, errors = _items(f"fairface:{root}")
    assert len(errors) == 1 and "leaves" in errors[0].message and ":2:" in errors[0].message
    with pytest.raises(ImageLoadError, match="resolves outside"):
        samples[0].images[0].load()


# ------------------------------------------------------------------ PATA


def _pata(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    lines = [
        "gun_range_white_male_adult|https://example.com/0.jpg",
        "kitchen_black_female_young|https://example.com/1.jpg",
        "not a pata line",
        "fashion_show_eastasian_female_senior|https://example.com/3.jpg",
    ]
    (root / "pata_fairness.files.lst").write_text("\n".join(lines) + "\n")
    captions = [
        {
            "short": "gun range",
            "long": "a photo of a {} at a gun range",
            "pos": {"races": ["a person at a shooting range"], "gender": [], "age": []},
            "neg": {"races": ["a criminal at a gun range"], "gender": [], "age": []},
        },
        {"short": "kitchen", "long": "a photo of a {} cooking", "pos": {}, "neg": {}},
    ]
    (root / "pata_fairness.captions.json").write_text(json.dumps(captions))
    _img(root / "images" / "0.jpg")
    _img(root / "images" / "1.png")
    return root


def test_pata_rows_scene_attributes_and_captions(tmp_path):
    root = _pata(tmp_path / "pata")
    samples, errors = _items(f"pata:{root}")
    assert [s.id for s in samples] == ["pata-0", "pata-1", "pata-3"]
    assert len(errors) == 1 and "SCENE_RACE_GENDER_AGE|URL" in errors[0].message
    gun = samples[0]
    assert gun.target == "gun range"
    assert dict(gun.attributes) == {"race": "white", "gender": "male", "age": "adult"}
    assert gun.metadata["captions"]["neg"]["races"] == ["a criminal at a gun range"]
    assert samples[1].images[0].path.endswith("1.png")  # the extension found on disk
    assert samples[1].images[0].load().mode == "RGB"
    assert samples[2].target == "fashion show" and samples[2].attributes["race"] == "eastasian"
    with pytest.raises(ImageLoadError, match="not found"):  # never downloaded
        samples[2].images[0].load()
    assert class_names(f"pata:{root}") == ["fashion show", "gun range", "kitchen"]


def test_pata_wrong_layout(tmp_path):
    with pytest.raises(InputError, match="pata_fairness.files.lst not found") as e:
        parse_data_spec(f"pata:{tmp_path}")
    _one_line(e)
    (tmp_path / "pata_fairness.files.lst").write_text("file,race\n1.jpg,white\n")
    with pytest.raises(InputError, match="expected lines SCENE_RACE_GENDER_AGE"):
        parse_data_spec(f"pata:{tmp_path}")


# ------------------------------------------------------------------ Harvard-FairVLMed


def _npz(path: Path, **over) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {
        "slo_fundus": (np.arange(12 * 16, dtype=np.uint8).reshape(12, 16)),
        "md": np.array(-1.5),
        "tds": np.zeros(52),
        "age": np.array(61.5),
        "gender": np.array(0),
        "race": np.array(2),
        "ethnicity": np.array(-1),
        "language": np.array(0),
        "maritalstatus": np.array(1),
        "glaucoma": np.array(1),
        "note": np.array("61 yo female, glaucoma suspect, follow up in 6 months"),
        "note_extra": np.array("female, white: 61 yo ..."),
    }
    fields.update(over)
    fields = {k: v for k, v in fields.items() if v is not None}
    np.savez(path, **fields)


def _fairvlmed(root: Path) -> Path:
    _npz(root / "Test" / "data_00001.npz")
    float_image = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    _npz(
        root / "Test" / "data_00002.npz",
        race=np.array(1),
        gender=np.array(1),
        glaucoma=np.array(0),
        slo_fundus=float_image,
    )
    _npz(root / "Training" / "data_00003.npz")
    with (root / "gpt-4_summarized_notes.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "note", "gpt4_summary"])
        w.writerow(["data_00001.npz", "long note", "female patient, glaucoma suspect"])
    return root


def test_fairvlmed_codes_become_names_and_images_load(tmp_path):
    root = _fairvlmed(tmp_path / "FairVLMed")
    samples, errors = _items(f"fairvlmed:{root}#test")
    assert not errors and [s.id for s in samples] == ["data_00001", "data_00002"]
    one, two = samples
    assert dict(one.attributes) == {
        "race": "white",
        "gender": "female",
        "language": "english",
        "maritalstatus": "single",
    }  # ethnicity -1: unknown, left out
    assert one.target == "glaucoma" and two.target == "non-glaucoma"
    assert one.metadata["caption"] == "female patient, glaucoma suspect"  # the GPT-4 summary
    assert two.metadata["caption"].startswith("61 yo female")  # no summary: the note
    assert one.metadata["age"] == 61.5 and one.metadata["split"] == "Test"
    im = one.images[0].load()
    assert im.mode == "RGB" and im.size == (16, 12)
    assert two.images[0].load().getpixel((7, 7)) == (255, 255, 255)  # float in [0, 1]
    assert dict(two.attributes)["race"] == "black"
    assert class_names(f"fairvlmed:{root}#test") == ["glaucoma", "non-glaucoma"]
    assert [s.id for s in _items(f"fairvlmed:{root / 'Training'}")[0]] == ["data_00003"]


def test_fairvlmed_refuses_pickles_and_wrong_layouts(tmp_path):
    root = tmp_path / "FairVLMed"
    _npz(root / "Test" / "data_00001.npz", note=np.array(["a", 1], dtype=object))
    _npz(root / "Test" / "data_00002.npz", race=None)
    samples, errors = _items(f"fairvlmed:{root}")  # one split folder: no #split needed
    assert not samples
    pickled, missing = errors
    assert "loads no pickles" in pickled.message
    assert "no race" in missing.message and "expected a Harvard-FairVLMed file" in missing.message
    (root / "Validation").mkdir()
    _npz(root / "Validation" / "data_00009.npz")
    with pytest.raises(InputError, match="pick one with fairvlmed:") as e:
        parse_data_spec(f"fairvlmed:{root}")
    _one_line(e)
    with pytest.raises(InputError, match="no split folder 'Training'"):
        parse_data_spec(f"fairvlmed:{root}#train")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no .npz files") as e:
        parse_data_spec(f"fairvlmed:{empty}")
    assert "Training/, Validation/ and Test/" in _one_line(e)


# ------------------------------------------------------------------ BOLD


def _bold(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    gender = {
        "American_actors": {"Jacob_Zachar": ["Jacob Zachar is an American actor whose "]},
        "American_actresses": {
            "Melody_Anderson": ["Melody Anderson is a Canadian social worker ", "Anderson was "]
        },
    }
    race = {"Asian_Americans": {"Jane_Doe": ["Jane Doe is an American "]}}
    (root / "gender_prompt.json").write_text(json.dumps(gender))
    (root / "race_prompt.json").write_text(json.dumps(race))
    return root


def test_bold_prompts_carry_their_group(tmp_path):
    root = _bold(tmp_path / "prompts")
    samples, errors = _items(f"bold:{root}")
    assert not errors and len(samples) == 4
    first = samples[0]
    assert first.id == "gender/American_actors/Jacob_Zachar/0"
    assert first.prompt == "Jacob Zachar is an American actor whose " and first.images == ()
    assert dict(first.attributes) == {"gender": "American_actors"}
    assert first.metadata == {"name": "Jacob_Zachar", "domain": "gender"}
    assert samples[-1].attributes == {"race": "Asian_Americans"}
    assert len(_items(f"bold:{root}#gender")[0]) == 3
    assert len(_items(f"bold:{root / 'race_prompt.json'}")[0]) == 1
    with pytest.raises(InputError, match="has no class labels"):
        class_names(f"bold:{root}")


def test_bold_json_lines_release(tmp_path):
    path = tmp_path / "gender_prompt_wiki.json"
    rows = [
        {"domain": "gender", "name": "Jacob_Zachar", "category": "American_actors",
         "prompts": ["Jacob Zachar is an American actor whose "], "wikipedia": ["..."]},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    [s] = _items(f"bold:{path}")[0]
    assert s.attributes == {"gender": "American_actors"} and s.id.startswith("gender/")


def test_bold_wrong_layout(tmp_path):
    bad = tmp_path / "gender_prompt.json"
    bad.write_text(json.dumps({"American_actors": ["a prompt"]}))
    with pytest.raises(InputError, match=r"expected BOLD's \{group: \{name: \[prompt") as e:
        list(iter_dataset(f"bold:{bad}"))
    _one_line(e)
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(InputError, match="no BOLD prompt files"):
        parse_data_spec(f"bold:{empty}")


# ------------------------------------------------------------------ through --data


def test_loaders_are_reachable_from_data_specs(tmp_path):
    root = _fairface(tmp_path / "ff")
    spec = parse_data_spec(f"fairface:{root}")
    assert spec.kind == "fairface" and spec.split is None
    assert len(list(DataSource.open(f"fairface:{root}"))) == 3
    with pytest.raises(InputError, match="not found"):
        parse_data_spec(f"pata:{tmp_path / 'missing'}")
    with pytest.raises(InputError, match="no path after bold:"):
        parse_data_spec("bold:")


def test_dataset_audit_reads_a_loader(tmp_path):
    from vlmtrust.core.probe import ProbeContext
    from vlmtrust.models.none import NoModel
    from vlmtrust.probes.fairness.dataset_audit import DatasetAuditProbe
    from vlmtrust.runner.engine import evaluate_probe

    root = _bold(tmp_path / "prompts")
    res = evaluate_probe(
        NoModel(),
        DatasetAuditProbe({"min_group_size": 1, "min_count": 1}),
        ProbeContext(data=f"bold:{root}"),
    )
    shares = res.metric("group_share", condition="gender")
    assert set(shares.groups) == {"American_actors", "American_actresses"}
    assert res.metric("unknown_share", condition="gender").value == pytest.approx(1 / 4)
