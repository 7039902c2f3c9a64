"""``mock:`` models: scripted answers and embeddings, declared capabilities, fingerprints."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from helpers import metrics, run_probe
from vlmtrust.core.errors import CapabilityError, InputError, ModelSpecError
from vlmtrust.core.model import (
    EmbeddingModel,
    GenerateRequest,
    Generation,
    GenerativeModel,
    generate_sync,
)
from vlmtrust.core.types import Capability
from vlmtrust.models.loader import load_model, parse_spec
from vlmtrust.models.mock import MockModel


def _texts(model: MockModel, prompts: list[str]) -> list[str]:
    return [g.text for g in generate_sync(model, [GenerateRequest(p) for p in prompts])]


def _img(colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (12, 12), colour)


def test_spec_parses_and_loads() -> None:
    assert parse_spec("mock:dual").scheme == "mock"
    gen = load_model("mock:generative", answers="hi")
    dual = load_model("mock:dual", dim=8)
    assert isinstance(gen, GenerativeModel) and gen.kind == "generative"
    assert isinstance(dual, EmbeddingModel) and dual.kind == "dual"
    assert gen.spec == "mock:generative" and gen.capabilities == Capability.GENERATE
    assert dual.capabilities == Capability.EMBED
    with pytest.raises(ModelSpecError, match="mock:generative or mock:dual"):
        parse_spec("mock:chat")


def test_answers_fixed_cycled_mapping_callable() -> None:
    assert _texts(MockModel(answers="no"), ["a", "b"]) == ["no", "no"]
    assert _texts(MockModel(answers=["x", "y"]), ["a", "b", "c"]) == ["x", "y", "x"]
    m = MockModel(answers={"a": "A"}, default="?")
    assert _texts(m, ["a", "b"]) == ["A", "?"]
    assert _texts(MockModel(answers=lambda r: r.prompt.upper()), ["ab"]) == ["AB"]
    assert _texts(MockModel(), ["a"]) == ["OK"]


def test_callable_may_return_generation_or_fail() -> None:
    def script(r: GenerateRequest) -> str | Generation:
        if r.prompt == "boom":
            raise RuntimeError("backend down")
        return Generation("", error="refused upstream") if r.prompt == "err" else "fine"

    gens = generate_sync(
        MockModel(answers=script), [GenerateRequest(p) for p in ("ok", "err", "boom")]
    )
    assert [g.ok for g in gens] == [True, False, False]
    assert gens[1].error == "refused upstream" and gens[2].error == "RuntimeError: backend down"


def test_records_requests() -> None:
    m = MockModel(kind="dual")
    m.embed_texts(["a", "b"])
    m.embed_images([_img((1, 2, 3))])
    assert m.text_calls == ["a", "b"] and len(m.image_calls) == 1
    g = MockModel()
    generate_sync(g, [GenerateRequest("q", images=(_img((0, 0, 0)),))])
    assert [r.prompt for r in g.calls] == ["q"] and len(g.calls[0].images) == 1


def test_embeddings_deterministic_normalised() -> None:
    a, b = MockModel("dual", dim=8), MockModel("dual", dim=8)
    ea = a.embed_images([_img((255, 0, 0)), _img((0, 255, 0)), _img((255, 0, 0))])
    assert ea.shape == (3, 8) and ea.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ea, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(ea[0], ea[2])
    assert not np.allclose(ea[0], ea[1])
    np.testing.assert_array_equal(a.embed_texts(["cat"]), b.embed_texts(["cat"]))
    assert not np.allclose(
        a.embed_texts(["cat"]), MockModel("dual", dim=8, seed=1).embed_texts(["cat"])
    )
    assert a.embed_texts([]).shape == (0, 8)


def test_scripted_embedding_callables() -> None:
    m = MockModel(
        "dual", dim=3, embed_text=lambda t: [len(t), 0, 0], embed_image=lambda im: [0, 0, 2]
    )
    np.testing.assert_allclose(m.embed_texts(["abc"]), [[1, 0, 0]])
    np.testing.assert_allclose(m.embed_images([_img((0, 0, 0))]), [[0, 0, 1]])
    with pytest.raises(InputError, match="size 2, not 3"):
        MockModel("dual", dim=3, embed_text=lambda t: [1, 2]).embed_texts(["x"])


def test_fingerprint_stable_and_config_based() -> None:
    assert MockModel(answers=["a", "b"]).fingerprint == MockModel(answers=["a", "b"]).fingerprint
    assert MockModel(answers="a").fingerprint != MockModel(answers="b").fingerprint
    assert MockModel("dual").fingerprint != MockModel("generative").fingerprint
    assert MockModel("dual", dim=4).fingerprint != MockModel("dual", dim=5).fingerprint
    assert MockModel(name="x").fingerprint != MockModel(name="y").fingerprint


def test_declared_capabilities_and_bad_kind() -> None:
    m = MockModel(capabilities=Capability.GENERATE | Capability.TRAIN)
    assert Capability.TRAIN in m.capabilities
    with pytest.raises(InputError, match="kind"):
        MockModel("chat")  # type: ignore[arg-type]
    with pytest.raises(CapabilityError, match="gradient=True"):
        MockModel("dual").to_pixels([_img((0, 0, 0))])


def test_gradient_path_dual_and_generative() -> None:
    torch = pytest.importorskip("torch")
    m = MockModel("dual", dim=6, gradient=True)
    assert Capability.GRADIENT in m.capabilities
    ims = [_img((200, 10, 10)), _img((10, 200, 10))]
    px = m.to_pixels(ims).requires_grad_(True)
    assert tuple(px.shape) == (2, 3, 8, 8) and float(px.detach().max()) <= 1.0
    feats = m.image_features(px)
    feats[:, 0].sum().backward()
    assert px.grad is not None and float(px.grad.abs().sum()) > 0
    np.testing.assert_allclose(m.embed_images(ims), feats.detach().numpy(), rtol=1e-5)
    assert tuple(m.text_features(["a", "b"]).shape) == (2, 6)

    g = MockModel(gradient=True)
    assert g.capabilities == Capability.GENERATE | Capability.GRADIENT
    px2 = g.to_pixels(ims).requires_grad_(True)
    loss = g.target_loss(px2, "describe", ["a", "b"])
    assert tuple(loss.shape) == (2,) and bool(torch.all(loss >= 0))
    loss.sum().backward()
    assert px2.grad is not None
    with pytest.raises(InputError, match="one prompt and target per image"):
        g.target_loss(px2, ["p"], ["a", "b"])


def test_mock_runs_a_probe_through_the_shared_loop() -> None:
    refuse, comply = "I'm sorry, but I cannot help with that.", "Sure! 1. ... 2. ... 3. ..."
    m = MockModel(answers=lambda r: comply if r.images else refuse)
    params = {"judges": ["refusal/keyword"], "n_harmful": 4, "n_benign": 2, "image_size": 64}
    p, recs = run_probe("safety/figstep", m, params)
    assert [r.index for r in recs] == list(range(len(recs))) and all(r.ok for r in recs)
    ms = metrics(p, recs)
    assert ms["asr/figstep/refusal/keyword"].value == 1.0
    assert ms["asr/text/refusal/keyword"].value == 0.0
    assert len(m.calls) == len(recs) == (4 + 2) * 2
