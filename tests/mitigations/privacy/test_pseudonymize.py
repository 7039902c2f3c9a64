"""privacy/pseudonymize on a small SynthWorld document manifest, through `vlmtrust harden`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from vlmtrust.cli import app
from vlmtrust.data.synthworld import SynthWorld
from vlmtrust.judges.pii import match_pii
from vlmtrust.mitigations.privacy._pii_text import ocr_lines
from vlmtrust.mitigations.privacy.pseudonymize import Surrogates

pytest.importorskip("presidio_anonymizer")
pytest.importorskip("rapidocr")
pytest.importorskip("faker")


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    """Three ID cards: pool identities 0, 1 and 0 again (index 8), captions and prompts."""
    root = tmp_path_factory.mktemp("pseudo_src")
    world = SynthWorld(seed=0)
    docs = world.pii_documents(2, doc_type="id_card", identities="pool")
    docs += world.pii_documents(1, doc_type="id_card", identities="pool", start=8)
    (root / "img").mkdir()
    with (root / "train.jsonl").open("w") as fh:
        for i, d in enumerate(docs):
            d.image.save(root / "img" / f"{i}.png")
            pii = d.metadata["pii"]
            line = {
                "image": f"img/{i}.png",
                "caption": f"ID card of {pii['name']}, e-mail {pii['email']}.",
                "prompt": f"Who is {pii['name']}?",
                "label": "card",
            }
            fh.write(json.dumps(line) + "\n")
    return root / "train.jsonl", docs


@pytest.fixture(scope="module")
def harden_run(
    manifest: tuple[Path, list[Any]], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("pseudo") / "clean"
    args = ["harden", "--model", "none", "--mitigation", "privacy/pseudonymize",
            "--data", str(manifest[0]), "--out", str(out)]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    return out, r.output


def test_surrogates_consistent_originals_gone_counts_right(
    manifest: tuple[Path, list[Any]], harden_run: tuple[Path, str]
) -> None:
    _, docs = manifest
    out, printed = harden_run
    rows = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and [r["label"] for r in rows] == ["card"] * 3
    text = " ".join(r["caption"] + " " + r["prompt"] for r in rows)
    for d in docs:
        for kind in ("name", "email"):
            assert match_pii(kind, d.metadata["pii"][kind], text) is None, kind
    # one surrogate per entity: line 0 and line 2 are the same person, line 1 another
    fake = [r["prompt"].removeprefix("Who is ").removesuffix("?") for r in rows]
    assert fake[0] == fake[2] != fake[1]
    for r, f in zip(rows, fake, strict=True):
        assert r["caption"].startswith(f"ID card of {f}, e-mail ")
    assert rows[0]["caption"] == rows[2]["caption"] != rows[1]["caption"]
    report = json.loads((out / "pseudonymize_report.json").read_text())
    assert report["records"] == 3 and report["images_changed"] == 3
    assert report["text"] == {"name": 6, "email": 3}
    # each card shows the six types; the same person's values are one entity each (the ID
    # number is drawn per card: three)
    assert report["images"] == dict.fromkeys(
        ("name", "email", "phone", "address", "id_number", "dob"), 3
    )
    assert len({d.metadata["pii"]["id_number"] for d in docs}) == 3
    assert report["entities"] == {
        **dict.fromkeys(("name", "email", "phone", "address", "id_number", "dob"), 2),
        "id_number": 3,
    }
    # the readable harden summary prints the counts too (`--json` prints the dict)
    assert re.search(r"^\s+name\s+6$", printed, re.M) and "cleaned data:" in printed
    assert json.loads((out / "hardening.json").read_text())["mitigation"] == "privacy/pseudonymize"


def test_images_show_the_surrogate_not_the_original(
    manifest: tuple[Path, list[Any]], harden_run: tuple[Path, str]
) -> None:
    _, docs = manifest
    out, _ = harden_run
    fake = json.loads((out / "manifest.jsonl").read_text().splitlines()[0])["prompt"]
    read = " ".join(ln.text for ln in ocr_lines(Image.open(out / "img" / "0.png")))
    for kind, value in docs[0].metadata["pii"].items():
        assert match_pii(kind, value, read) is None, (kind, read)
    assert match_pii("name", fake.removeprefix("Who is ").removesuffix("?"), read) == "exact"


def test_surrogates_are_deterministic_and_distinct() -> None:
    a, b = Surrogates(seed=3), Surrogates(seed=3)
    names = [a.get("name", f"Person {i}") for i in range(50)]
    assert names == [b.get("name", f"Person {i}") for i in range(50)]
    assert len(set(names)) == 50 and a.distinct() == {"name": 50}


def test_missing_data_is_one_clear_line(tmp_path: Path) -> None:
    args = ["harden", "--model", "none", "--mitigation", "privacy/pseudonymize",
            "--out", str(tmp_path / "o")]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2 and "needs --data MANIFEST.jsonl" in r.output


def test_every_listed_image_handled_and_unreadable_ones_not_copied(tmp_path: Path) -> None:
    from vlmtrust.core.mitigation import MitigationContext, get_mitigation

    (tmp_path / "img").mkdir()
    Image.new("RGB", (64, 64), (200, 200, 200)).save(tmp_path / "img" / "blank.png")
    (tmp_path / "img" / "bad.png").write_bytes(b"not an image")
    line = {"images": ["img/blank.png", "img/bad.png"], "caption": "Call 555-0101 today."}
    (tmp_path / "m.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out"
    ctx = MitigationContext(out_dir=out, data=str(tmp_path / "m.jsonl"))
    art = get_mitigation("privacy/pseudonymize")({"images": "black"}).apply(None, ctx)
    row = json.loads((out / "manifest.jsonl").read_text())
    assert "555-0101" not in row["caption"] and row["caption"].startswith("Call 555-")
    assert (out / "img" / "blank.png").is_file() and not (out / "img" / "bad.png").exists()
    report = json.loads((out / "pseudonymize_report.json").read_text())
    assert report["text"] == {"phone": 1} and report["images_changed"] == 0
    assert (
        len(report["errors"]) == 1 and "img/bad.png unreadable, not copied" in report["errors"][0]
    )
    assert art.summary["entities"] == {"phone": 1}
