"""robustness/ogen, robustness/anchor_finetune and robustness/in_context on the reference models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from helpers import evaluated as run
from helpers import value
from vlmtrust.core.errors import CapabilityError, InputError
from vlmtrust.core.mitigation import MitigationContext, get_mitigation
from vlmtrust.models.loader import load_model

OOD = {"n_id": 80, "n_ood": 80}


def test_ogen_keeps_held_out_shapes_apart_where_plain_finetuning_does_not(
    ref_clip: Any, tmp_path: Path
) -> None:
    auc: dict[str, float] = {"base": value(run(ref_clip, "robustness/ood_detection", OOD),
                                           "auroc/mcm")}  # fmt: skip
    zs: dict[str, float] = {}
    for label, synthesis in (("plain", False), ("ogen", True)):
        art = get_mitigation("robustness/ogen")({"synthesis": synthesis, "n_train": 300}).apply(
            ref_clip, MitigationContext(out_dir=tmp_path / label)
        )
        assert art.summary["last_loss"] < art.summary["first_loss"]
        model = load_model(art.spec)
        auc[label] = value(run(model, "robustness/ood_detection", OOD), "auroc/mcm")
        zs[label] = value(run(model, "capability/zero_shot", {"n": 60}), "accuracy")
    print("MCM AUROC", auc, "zero-shot", zs)
    # measured (seed 0, 80 + 80 images): base 0.651, plain fine-tuning 0.598, OGEN 0.692;
    # zero-shot 93% (plain) / 97% (OGEN)
    assert auc["plain"] < auc["base"]
    assert auc["ogen"] >= auc["base"] + 0.03 and auc["ogen"] >= auc["plain"] + 0.05
    assert zs["ogen"] >= 0.9
    payload = json.loads((tmp_path / "ogen" / "wrapper.json").read_text())
    assert len(payload["params"]["weights"]) == 128 * 128


def test_ogen_refuses_held_out_shapes_and_unknowns_that_are_known(
    ref_clip: Any, tmp_path: Path
) -> None:
    ctx = MitigationContext(out_dir=tmp_path)
    with pytest.raises(InputError, match="held-out OOD shapes"):
        get_mitigation("robustness/ogen")({"unknown_classes": ["cat", "ring"]}).apply(ref_clip, ctx)
    with pytest.raises(InputError, match="also known classes"):
        get_mitigation("robustness/ogen")({"unknown_classes": ["circle"]}).apply(ref_clip, ctx)
    with pytest.raises(InputError, match="no adapter weights"):
        get_mitigation("robustness/ogen")({}).wrap(ref_clip)
    with pytest.raises(InputError, match="not d\\*d"):
        get_mitigation("robustness/ogen")({"weights": [0.0, 1.0, 2.0]}).wrap(ref_clip)
    with pytest.raises(InputError, match="adapts dual encoders"):
        get_mitigation("robustness/ogen")({}).apply(load_model("mock:generative"), ctx)


CAL = {"n": 40}


def test_anchor_finetune_keeps_calibration_under_shift_where_plain_finetuning_loses_it(
    ref_clip: Any, tmp_path: Path
) -> None:
    ece = {"base": value(run(ref_clip, "robustness/calibration", CAL), "ece/corrupted")}
    for label, anchors in (("plain", False), ("anchors", True)):
        art = get_mitigation("robustness/anchor_finetune")(
            {"anchors": anchors, "steps": 15, "n_train": 160}
        ).apply(load_model("reference:clip"), MitigationContext(out_dir=tmp_path / label))
        assert art.summary["anchors"] > 100 and (tmp_path / label / "config.json").exists()
        ece[label] = value(
            run(load_model(art.spec), "robustness/calibration", CAL), "ece/corrupted"
        )
    print("ECE under corruption", ece)
    # measured (seed 0, 15 steps; 40 scenes x 5 corruptions): base 0.155, plain 0.200, anchors 0.099
    assert ece["plain"] > ece["base"]
    assert ece["anchors"] < ece["base"] and ece["anchors"] < ece["plain"] - 0.03


def test_anchor_finetune_refuses_generative_models(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="fine-tunes dual encoders"):
        get_mitigation("robustness/anchor_finetune")({}).apply(
            load_model("mock:generative"), MitigationContext(out_dir=tmp_path)
        )
    with pytest.raises(InputError, match="bad parameter 'anchor_weight'"):
        get_mitigation("robustness/anchor_finetune")({"anchor_weight": -1})


def test_in_context_puts_solved_examples_before_the_question(tmp_path: Path) -> None:
    from PIL import Image

    from vlmtrust.core.model import GenerateRequest

    base = load_model("mock:generative")
    art = get_mitigation("robustness/in_context")({"k": 3}).apply(
        base, MitigationContext(out_dir=tmp_path)
    )
    grid = load_model(art.spec)
    img = Image.new("RGB", (64, 48), "red")
    req = GenerateRequest("What shape is in the image?", images=(img,))
    out = grid.shots(req)
    assert grid.layout == "composite" and len(out.images) == 1
    assert out.images[0].size == (128, 96)  # 2 x 2 tiles of the request's size
    assert out.images[0].getpixel((100, 70)) == (255, 0, 0)  # the question is the last tile
    assert out.prompt.count(" A: ") == 3 and out.prompt.endswith("What shape is in the image?")
    answers = [line.rsplit(" A: ", 1)[1] for line in out.prompt.splitlines() if " A: " in line]
    from vlmtrust.data.synthworld import ID_SHAPES

    assert all(a in ID_SHAPES for a in answers)
    multi = get_mitigation("robustness/in_context")({"k": 2, "layout": "multi_image"}).wrap(base)
    m = multi.shots(req)
    assert len(m.images) == 3 and m.images[-1] is img and m.prompt.startswith("Image 1: Q:")
    assert grid.shots(GenerateRequest("hello")).prompt == "hello"  # no image: unchanged
    from typing import get_args

    from vlmtrust.attacks.styles import STYLES
    from vlmtrust.mitigations.robustness.in_context import ExampleStyle

    assert set(get_args(ExampleStyle)) == {"none", *STYLES}  # the Literal follows attacks.styles
    with pytest.raises(InputError, match="bad parameter 'example_styles.0'"):
        get_mitigation("robustness/in_context")({"example_styles": ["cubism"]})
    with pytest.raises(CapabilityError, match="wraps generative models"):
        get_mitigation("robustness/in_context")({}).wrap(load_model("mock:dual"))


def test_in_context_retrieves_the_nearest_examples_with_distinct_answers(
    ref_clip: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vlmtrust.core.model import GenerateRequest
    from vlmtrust.models import loader

    real = loader.load_model  # the session's reference:clip, not a second copy
    monkeypatch.setattr(
        loader,
        "load_model",
        lambda spec, **kw: ref_clip if spec == "reference:clip" else real(spec),
    )

    params = {"k": 3, "retriever": "reference:clip", "pool": 6, "layout": "multi_image"}
    model = get_mitigation("robustness/in_context")(params).wrap(load_model("mock:generative"))
    assert model.retriever is not None and len(model.retriever.pool) == 6 * 6  # x every style
    assert "#retriever=sha256:" in model.fingerprint
    image, answer = model.retriever.pool[7]
    [out, plain] = model.prepare(
        [GenerateRequest("What shape?", images=(image,)), GenerateRequest("hi")]
    )
    lines = out.prompt.splitlines()
    answers = [line.rsplit(" A: ", 1)[1] for line in lines[:-1]]
    assert len(set(answers)) == 3 and answers[-1] == answer  # the query itself is nearest, last
    assert out.images[2] is image and out.images[3] is image and plain.prompt == "hi"
    with pytest.raises(InputError, match="retriever 'mock:generative' is not a dual model"):
        get_mitigation("robustness/in_context")({"retriever": "mock:generative"}).wrap(
            load_model("mock:generative")
        )


def test_in_context_interleaved_puts_each_example_image_next_to_its_answer(
    ref_vlm: Any,
) -> None:
    from PIL import Image

    from vlmtrust.core.model import IMAGE_SLOT, GenerateRequest

    img = Image.new("RGB", (64, 64), "red")
    req = GenerateRequest("What shape?", images=(img,))
    plain = ref_vlm.render("What shape?", 1)
    wrap = get_mitigation("robustness/in_context")({"k": 2, "layout": "interleaved"}).wrap(ref_vlm)
    out = wrap.shots(req)
    assert out.interleaved and out.images[-1] is img and len(out.images) == 3
    assert out.parts()[0::2] == [0, 1, 2] and out.parts()[-1] == "What shape?"
    text = ref_vlm.render(out.prompt, 3, interleaved=True)  # the template keeps the order
    assert text.startswith("USER:<image> Q: What shape") and text.count("\n<image> ") == 2
    assert text.endswith("<image> What shape?\nASSISTANT:")
    assert ref_vlm.render(out.prompt.replace(IMAGE_SLOT, ""), 3) != text
    assert plain == "USER:<image> What shape?\nASSISTANT:"  # image-first requests unchanged
    multi = get_mitigation("robustness/in_context")({"k": 2, "layout": "multi_image"}).wrap(ref_vlm)
    again = multi.shots(out)  # an interleaved request keeps its slots under multi_image
    assert again.interleaved and again.prompt.count(IMAGE_SLOT) == len(again.images) == 5
    assert wrap.generate_batch([req])[0].ok
