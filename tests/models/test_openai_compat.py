"""The ``openai:`` backend against a real HTTP server on 127.0.0.1 (no mocks of httpx)."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlmtrust.core.errors import InputError, ModelSpecError
from vlmtrust.core.model import GenerateRequest, GenerativeModel, generate_sync
from vlmtrust.core.sample import image_digest
from vlmtrust.core.types import Capability
from vlmtrust.models.loader import load_model
from vlmtrust.models.openai_compat import OpenAICompatModel, parse_retry_after

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from openai_server import (  # noqa: E402
    EchoBackend,
    Fault,
    ServedURL,
    describe_request,
    serve,
)

KEY_ENV = "VLMTRUST_TEST_OPENAI_KEY"


def make_model(url: str, **kw: object) -> OpenAICompatModel:
    opts: dict[str, object] = {
        "api_key_env": KEY_ENV,
        "backoff_base_s": 0.01,
        "backoff_max_s": 0.05,
        "timeout_s": 5.0,
    }
    opts.update(kw)
    return OpenAICompatModel(
        "test-model",
        base_url=url,
        spec=f"openai:test-model@{url}",
        **opts,  # type: ignore[arg-type]
    )


def noise_image(w: int, h: int, seed: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr, "RGB").convert(mode)


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)


@pytest.fixture(scope="module")
def echo_url() -> object:
    with serve(EchoBackend()) as url:
        yield url


# --------------------------------------------------------------------------- success path


def test_success_with_images_system_and_settings(echo_url: ServedURL) -> None:
    a, b = noise_image(31, 17, 0), noise_image(8, 40, 1)
    reqs = [
        GenerateRequest(
            "what is shown?", images=(a, b), system="be brief", max_new_tokens=7, seed=3
        ),
        GenerateRequest("no image, naïve ✓ 画像", temperature=0.5),
    ]
    model = make_model(echo_url)
    out = generate_sync(model, reqs)
    assert all(g.ok for g in out), out
    got = [json.loads(g.text) for g in out]
    # the server decoded the PNG data URLs to the very same pixels (lossless round trip)
    assert got == [describe_request(r) for r in reqs]
    assert got[0]["images"][0]["digest"] == image_digest(a)
    assert got[0]["images"][1]["size"] == [8, 40]
    assert got[0]["system"] == "be brief" and got[0]["max_tokens"] == 7 and got[0]["seed"] == 3
    assert got[1]["system"] is None and got[1]["temperature"] == 0.5
    assert out[0].finish_reason == "stop"
    assert model.stats == {"requests": 2, "attempts": 2, "retries": 0, "errors": 0}


def test_jpeg_and_downscaling(echo_url: ServedURL) -> None:
    big = noise_image(400, 100, 2, mode="RGBA")
    model = make_model(echo_url, image_format="jpeg", max_image_side=64)
    assert model.encode_image(big).startswith("data:image/jpeg;base64,")
    [gen] = generate_sync(model, [GenerateRequest("x", images=(big,))])
    info = json.loads(gen.text)["images"][0]
    assert info["size"] == [64, 16]  # longer side 64, aspect ratio kept
    assert info["mode"] == "RGB"  # JPEG has no alpha
    # PNG keeps small images untouched (no downscale below the limit)
    small = noise_image(20, 10, 3)
    [gen2] = generate_sync(
        make_model(echo_url, max_image_side=64), [GenerateRequest("y", images=(small,))]
    )
    assert json.loads(gen2.text)["images"][0]["digest"] == image_digest(small)


def test_same_image_encoded_once_per_call(echo_url: ServedURL) -> None:
    im = noise_image(16, 16, 4)
    model = make_model(echo_url)
    calls = 0
    original = model.encode_image

    def counting(image: Image.Image) -> str:
        nonlocal calls
        calls += 1
        return original(image)

    model.encode_image = counting  # type: ignore[method-assign]
    out = generate_sync(model, [GenerateRequest(f"q{i}", images=(im, im)) for i in range(5)])
    assert all(g.ok for g in out)
    assert calls == 1


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    "fault",
    [
        Fault.http(429),
        Fault.http(500),
        Fault.http(502),
        Fault.http(503),
        Fault.http(504),
        Fault.slow(3.0),
        Fault.drop(),
        Fault.malformed_json(),
        Fault.no_choices(),
    ],
    ids=lambda f: f.kind + (str(f.status) if f.kind == "status" else ""),
)
def test_each_fault_is_recovered_by_retry(fault: Fault) -> None:
    with serve(EchoBackend(), faults=[fault]) as url:
        model = make_model(url, timeout_s=0.4, max_retries=3)
        t0 = time.monotonic()
        [gen] = generate_sync(model, [GenerateRequest("hello")])
        elapsed = time.monotonic() - t0
        assert gen.ok, gen.error
        assert json.loads(gen.text)["prompt"] == "hello"
        assert url.stats.faults_served == [fault.kind]
        assert url.stats.chat_requests == 2
    assert model.stats == {"requests": 1, "attempts": 2, "retries": 1, "errors": 0}
    if fault.kind == "slow":
        assert 0.35 < elapsed < 2.5  # gave up on the slow answer at the client timeout


def test_retry_after_seconds_is_honoured() -> None:
    with serve(EchoBackend(), faults=[Fault.http(429, retry_after=0.6)]) as url:
        model = make_model(url, backoff_base_s=0.001, backoff_max_s=5.0)
        [gen] = generate_sync(model, [GenerateRequest("rate limited")])
        assert gen.ok
        first, second = url.stats.arrivals
    assert 0.55 <= second - first < 1.2


def test_retry_after_is_capped_by_backoff_max() -> None:
    with serve(EchoBackend(), faults=[Fault.http(503, retry_after=30)]) as url:
        model = make_model(url, backoff_max_s=0.2)
        [gen] = generate_sync(model, [GenerateRequest("capped")])
        first, second = url.stats.arrivals
    assert gen.ok
    assert 0.15 <= second - first < 1.0


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for bad in (None, "", "soon", "nan", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad) is None


def test_backoff_is_exponential_with_full_jitter() -> None:
    model = make_model("http://127.0.0.1:9/v1", backoff_base_s=0.1, backoff_max_s=0.25)
    model._rng = random.Random(0)
    for attempt, ceiling in ((1, 0.1), (2, 0.2), (3, 0.25), (6, 0.25)):
        delays = [model._delay(attempt, None) for _ in range(400)]
        assert 0.0 <= min(delays) < 0.1 * ceiling  # full jitter reaches near zero
        assert 0.9 * ceiling < max(delays) <= ceiling
        assert abs(float(np.mean(delays)) - ceiling / 2) < 0.1 * ceiling
    assert model._delay(2, 0.07) == 0.07  # Retry-After replaces the jittered delay
    assert model._delay(2, 9.0) == 0.25


def test_permanent_failure_is_an_error_generation_and_the_batch_goes_on() -> None:
    with serve(EchoBackend(), rules={"FAIL": Fault.http(503)}) as url:
        model = make_model(url, max_retries=2, concurrency=3)
        prompts = ["a", "b", "FAIL here", "c", "d"]
        out = generate_sync(model, [GenerateRequest(p) for p in prompts])
        assert url.stats.prompts.count("FAIL here") == 3
    bad = out[2]
    assert not bad.ok and bad.text == ""
    assert bad.error is not None and "\n" not in bad.error
    assert "HTTP 503" in bad.error and "after 3 attempts" in bad.error
    assert [json.loads(g.text)["prompt"] for i, g in enumerate(out) if i != 2] == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert model.stats == {"requests": 5, "attempts": 7, "retries": 2, "errors": 1}


def test_unreachable_server_gives_connection_errors() -> None:
    with serve(EchoBackend()) as url:
        dead = str(url)
    model = make_model(dead, max_retries=1)
    out = generate_sync(model, [GenerateRequest("x"), GenerateRequest("y")])
    for gen in out:
        assert gen.error is not None and "connection error" in gen.error
        assert "after 2 attempts" in gen.error
    assert model.stats["attempts"] == 4 and model.stats["errors"] == 2


def test_401_is_not_retried_and_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    with serve(EchoBackend(), require_key="sk-right") as url:
        model = make_model(url, max_retries=5)
        [gen] = generate_sync(model, [GenerateRequest("x")])
        assert url.stats.chat_requests == 1
        assert url.stats.auth_headers == [None]
        monkeypatch.setenv(KEY_ENV, "sk-right")
        [ok] = generate_sync(make_model(url), [GenerateRequest("x")])
        assert url.stats.auth_headers[-1] == "Bearer sk-right"
    assert gen.error is not None and "HTTP 401" in gen.error
    assert f"set the API key in ${KEY_ENV}" in gen.error
    assert model.stats == {"requests": 1, "attempts": 1, "retries": 0, "errors": 1}
    assert ok.ok


def test_400_and_404_are_not_retried(echo_url: ServedURL) -> None:
    wrong = OpenAICompatModel(
        "no-such-model", base_url=echo_url, spec="x", backoff_base_s=0.01, max_retries=4
    )
    [gen] = generate_sync(wrong, [GenerateRequest("x")])
    assert gen.error is not None and "HTTP 404" in gen.error and "no-such-model" in gen.error
    assert "check the base URL" in gen.error
    assert wrong.stats["attempts"] == 1
    with serve(EchoBackend(), faults=[Fault.http(400)]) as url:
        model = make_model(url)
        [gen] = generate_sync(model, [GenerateRequest("x")])
        assert url.stats.chat_requests == 1
    assert gen.error is not None and gen.error.startswith("HTTP 400 Bad Request: injected 400;")


def test_api_key_never_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-SECRET-7d1f0c9e2b4a"
    monkeypatch.setenv(KEY_ENV, secret)
    faults = [Fault.echo_auth(200), Fault.echo_auth(400)]
    with serve(EchoBackend(), faults=faults, require_key="sk-other") as url:
        model = make_model(url, concurrency=1, max_retries=1)
        out = generate_sync(model, [GenerateRequest("one"), GenerateRequest("two")])
        out += generate_sync(model, [GenerateRequest("three")])  # 401 whose body echoes the key
        # the key did go to the server, in the Authorization header
        assert url.stats.auth_headers == [f"Bearer {secret}"] * 3
    assert out[0].ok and out[0].text == "you sent Bearer [REDACTED]"
    assert out[1].error is not None and "[REDACTED]" in out[1].error
    assert out[2].error is not None and "HTTP 401" in out[2].error
    everything = [repr(model), str(model), model.fingerprint, model.spec, repr(vars(model))]
    everything += [repr(g) for g in out] + [str(model.stats)]
    for text in everything:
        assert secret not in text
    for name in dir(model):
        if not name.startswith("__"):
            assert secret not in repr(getattr(model, name, None))


# --------------------------------------------------------------------------- concurrency


def test_order_is_preserved_when_answers_arrive_out_of_order() -> None:
    n = 24

    def latency(prompt: str) -> float:  # later requests answer first
        return 0.004 * (n - int(prompt.split()[-1]))

    with serve(EchoBackend(), latency_s=latency) as url:
        model = make_model(url, concurrency=8)
        out = generate_sync(model, [GenerateRequest(f"item {i}") for i in range(n)])
        assert url.stats.max_in_flight == 8
    assert [json.loads(g.text)["prompt"] for g in out] == [f"item {i}" for i in range(n)]


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrency_is_bounded(concurrency: int) -> None:
    n, latency = 12, 0.05
    with serve(EchoBackend(), latency_s=latency) as url:
        model = make_model(url, concurrency=concurrency)
        t0 = time.monotonic()
        out = generate_sync(model, [GenerateRequest(f"p{i}") for i in range(n)])
        elapsed = time.monotonic() - t0
        assert all(g.ok for g in out)
        assert url.stats.max_in_flight == concurrency  # never more, and actually reached
        assert len(url.stats.client_ports) <= concurrency  # connections are reused
    assert elapsed >= (n / concurrency) * latency * 0.95


def test_client_is_reused_within_a_loop_and_closed_with_it(echo_url: ServedURL) -> None:
    model = make_model(echo_url, concurrency=2)

    async def run() -> tuple[int, int]:
        for i in range(3):
            out = await model.generate([GenerateRequest(f"r{i}-{j}") for j in range(4)])
            assert all(g.ok for g in out)
        open_states = len(model._states)
        await model.aclose()
        return open_states, len(model._states)

    ports_before = set(echo_url.stats.client_ports)
    assert asyncio.run(run()) == (1, 0)
    assert len(echo_url.stats.client_ports - ports_before) <= 2  # 12 requests, 2 connections
    # generate_sync makes a new loop each time; the clients are closed when it ends
    for _ in range(2):
        assert generate_sync(model, [GenerateRequest("again")])[0].ok
        assert len(model._states) == 0
    assert asyncio.run(model.generate([])) == []


# --------------------------------------------------------------------------- construction


def test_load_model_and_attributes() -> None:
    model = load_model("openai:llava-1.5@http://127.0.0.1:8000/v1/", concurrency=3)
    assert isinstance(model, OpenAICompatModel)
    assert isinstance(model, GenerativeModel)
    assert model.fingerprint == "openai:llava-1.5@http://127.0.0.1:8000/v1"
    assert model.kind == "generative" and model.capabilities == Capability.GENERATE
    assert model.concurrency == 3


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"concurrency": 0}, "concurrency=0"),
        ({"timeout_s": 0}, "timeout_s=0"),
        ({"max_retries": -1}, "max_retries=-1"),
        ({"max_image_side": 0}, "max_image_side=0"),
        ({"image_format": "gif"}, "image_format='gif'"),
        ({"api_key_env": ""}, "api_key_env"),
        ({"base_url": "ftp://host/v1"}, "http(s)://"),
        ({"base_url": "http://user:pw@host/v1"}, "remove them"),
    ],
)
def test_bad_options_raise_one_line_input_errors(kwargs: dict[str, object], needle: str) -> None:
    opts: dict[str, object] = {"base_url": "http://127.0.0.1:1/v1", "spec": "s"}
    opts.update(kwargs)
    with pytest.raises(InputError) as info:
        OpenAICompatModel("m", **opts)  # type: ignore[arg-type]
    msg = str(info.value)
    assert needle in msg and "\n" not in msg
    assert "pw" not in msg


def test_bad_spec_is_a_spec_error() -> None:
    with pytest.raises(ModelSpecError):
        load_model("openai:llava")


# --------------------------------------------------------------------------- tiny HF model


def test_tiny_hf_model_served_end_to_end(request: pytest.FixtureRequest) -> None:
    try:
        tiny = request.getfixturevalue("tiny_llava")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py provides no tiny_llava fixture yet")
    images = (noise_image(40, 30, 5), noise_image(24, 24, 6))
    reqs = [
        GenerateRequest("describe the picture", images=(images[0],), max_new_tokens=6),
        GenerateRequest("what color", images=(images[1],), max_new_tokens=4, system="be short"),
    ]
    direct = generate_sync(tiny, reqs)
    assert all(g.ok for g in direct) and any(g.text for g in direct)
    with serve(tiny) as url:
        model = make_model(url, concurrency=2, timeout_s=60)
        served = generate_sync(model, reqs)
        assert url.stats.chat_requests == 2
    assert all(g.ok for g in served), served
    # greedy decoding of the same pixels: the answer over HTTP equals the direct answer
    assert [g.text for g in served] == [g.text for g in direct]
    assert [g.finish_reason for g in served] == [g.finish_reason for g in direct]


def test_server_lists_its_model_and_rejects_bad_images(echo_url: ServedURL) -> None:
    import httpx

    listed = httpx.get(f"{echo_url}/models").json()
    assert [m["id"] for m in listed["data"]] == ["test-model"]
    bad = {
        "model": "test-model",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
                ],
            }
        ],
    }
    resp = httpx.post(f"{echo_url}/chat/completions", json=bad)
    assert resp.status_code == 400 and "undecodable image" in resp.json()["error"]["message"]


# --------------------------------------------------------------------------- options, limits, stats


def test_options_convert_validate_and_name_the_valid_keys() -> None:
    from vlmtrust.models.openai_compat import OPTIONS, check_options

    got = check_options(
        {"timeout": "30", "retries": "2", "rps": "none", "concurrency": 4, "image_format": "JPEG"}
    )
    assert got == {
        "timeout_s": 30.0,
        "max_retries": 2,
        "requests_per_second": None,
        "concurrency": 4,
        "image_format": "jpeg",
    }
    for bad, needle in [
        ({"timeout_s": "soon"}, "timeout_s='soon' is invalid; use a number"),
        ({"timeout_s": "0"}, "timeout_s=0.0 is invalid"),
        ({"concurrency": "1.5"}, "use an integer"),
        ({"requests_per_second": "-1"}, "requests_per_second=-1.0"),
        ({"image_format": "gif"}, "use png or jpeg"),
        ({"max_image_side": "none", "jpeg_quality": "101"}, "jpeg_quality=101"),
    ]:
        with pytest.raises(InputError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            check_options(bad)
    with pytest.raises(InputError) as info:
        check_options({"temperature": "0"})
    msg = str(info.value)
    assert "\n" not in msg and all(name in msg for name in OPTIONS)


def test_option_defaults_match_the_constructor() -> None:
    import inspect

    from vlmtrust.models.openai_compat import OPTIONS

    params = inspect.signature(OpenAICompatModel.__init__).parameters
    for name, opt in OPTIONS.items():
        assert params[name].default == opt.default, name
    model = make_model("http://127.0.0.1:9/v1", concurrency=3)
    assert set(model.options) == set(OPTIONS)
    assert model.options["concurrency"] == 3 and model.options["batches_in_flight"] == 3
    assert model.options["api_key_env"] == KEY_ENV


def test_options_that_change_the_request_are_in_the_fingerprint() -> None:
    base = "openai:test-model@http://127.0.0.1:9/v1"
    assert make_model("http://127.0.0.1:9/v1", timeout_s=3, concurrency=2).fingerprint == base
    assert make_model("http://127.0.0.1:9/v1", image_format="png", jpeg_quality=50).fingerprint == (
        base
    )
    jpeg = make_model("http://127.0.0.1:9/v1", image_format="jpeg", max_image_side=256)
    assert jpeg.fingerprint == base + "#max_image_side=256,image_format=jpeg"
    q = make_model("http://127.0.0.1:9/v1", image_format="jpeg", jpeg_quality=70)
    assert q.fingerprint == base + "#image_format=jpeg,jpeg_quality=70"


def test_a_key_pasted_as_api_key_env_is_not_echoed() -> None:
    with pytest.raises(InputError) as info:
        make_model("http://127.0.0.1:9/v1", api_key_env="sk-live-abc123")
    assert "sk-live" not in str(info.value) and "environment variable" in str(info.value)


def test_requests_per_second_spaces_the_sends_retries_included() -> None:
    with serve(EchoBackend(), faults=[Fault.http(503)]) as url:
        model = make_model(url, requests_per_second=20, concurrency=8)
        out = generate_sync(model, [GenerateRequest(f"r{i}") for i in range(6)])
        arrivals = sorted(url.stats.arrivals)
    assert all(g.ok for g in out)
    assert len(arrivals) == 7  # 6 requests, one retried
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert float(np.median(gaps)) > 0.04  # 1/20 s apart (arrivals jitter on a busy machine)
    assert arrivals[-1] - arrivals[0] >= 6 * 0.05 * 0.9


def test_a_request_waiting_to_retry_leaves_its_slot_to_others() -> None:
    # one slot; the first request is told to come back in 0.5 s. The second one must not wait.
    with serve(EchoBackend(), faults=[Fault.http(429, retry_after=0.5)]) as url:
        model = make_model(url, concurrency=1, backoff_max_s=5.0)
        out = generate_sync(model, [GenerateRequest("first"), GenerateRequest("second")])
        arrivals = dict(zip(url.stats.prompts, url.stats.arrivals, strict=False))
        first_try = url.stats.arrivals[0]
    assert all(g.ok for g in out)
    assert url.stats.prompts[:2] == ["first", "second"]
    assert arrivals["second"] - first_try < 0.3


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault.http(429), "429"),
        (Fault.http(408), "timeout"),
        (Fault.http(502), "5xx"),
        (Fault.slow(3.0), "timeout"),
        (Fault.drop(), "connection"),
        (Fault.malformed_json(), "malformed"),
        (Fault.no_choices(), "malformed"),
    ],
    ids=lambda x: x if isinstance(x, str) else x.kind + str(x.status),
)
def test_retries_are_counted_by_cause(fault: Fault, cause: str) -> None:
    with serve(EchoBackend(), faults=[fault, fault]) as url:
        model = make_model(url, timeout_s=0.3, max_retries=1)
        with model.track_requests(keep_slowest=2) as tracker:
            gens = generate_sync(
                model,
                [GenerateRequest("a", sample_id="s-a"), GenerateRequest("b", sample_id="s-b")],
            )
        outside = generate_sync(model, [GenerateRequest("c", sample_id="s-c")])
    st = tracker.summary()
    assert outside[0].ok
    assert st.requests == 2 and st.attempts == 4 and st.retries == {cause: 2}
    assert st.errors == sum(not g.ok for g in gens) == 0
    assert {s.sample_id for s in st.slowest} == {"s-a", "s-b"}
    assert all(s.attempts == 2 and s.ok for s in st.slowest)
    assert model.stats == {"requests": 3, "attempts": 5, "retries": 2, "errors": 0}


def test_a_failed_request_is_an_error_in_the_stats_and_nothing_of_it_is_kept() -> None:
    with serve(EchoBackend(), rules={"secret-prompt": Fault.http(500)}) as url:
        model = make_model(url, max_retries=1)
        with model.track_requests() as tracker:
            [gen] = generate_sync(model, [GenerateRequest("my secret-prompt", sample_id="x1")])
    st = tracker.summary()
    assert not gen.ok
    assert st.errors == 1 and st.retries == {"5xx": 1}
    assert st.slowest[0].sample_id == "x1" and not st.slowest[0].ok
    assert "secret-prompt" not in st.model_dump_json()


def test_slots_let_a_waiting_retry_in_first_and_survive_cancellation() -> None:
    from vlmtrust.models.openai_compat import Slots

    async def scenario() -> list[str]:
        slots = Slots(1)
        order: list[str] = []
        await slots.acquire()

        async def holder(name: str, retry: bool) -> None:
            await slots.acquire(retry=retry)
            order.append(name)
            await asyncio.sleep(0)
            slots.release()

        tasks = [asyncio.create_task(holder(n, False)) for n in ("new1", "new2")]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(holder("retry", True)))
        doomed = asyncio.create_task(holder("cancelled", True))
        await asyncio.sleep(0)
        doomed.cancel()
        slots.release()
        await asyncio.gather(*tasks)
        # every slot came back: two can be taken at once? No: one slot in all
        await slots.acquire()
        assert slots._free == 0
        slots.release()
        assert slots._free == 1
        return order

    assert asyncio.run(scenario()) == ["retry", "new1", "new2"]


def test_max_images_option_reaches_the_server_as_k_plus_one_image_parts(
    echo_url: ServedURL,
) -> None:
    """In-context examples go to the server as separate image parts only when declared."""
    from vlmtrust.core.mitigation import get_mitigation
    from vlmtrust.models.openai_compat import check_options

    assert check_options({"max_images": "4"}) == {"max_images": 4}
    with pytest.raises(InputError, match="max_images=0 is invalid; use an integer >= 1"):
        check_options({"max_images": "0"})
    query = noise_image(32, 32, 7)
    req = GenerateRequest("What shape is in the image? Answer with one word.", images=(query,))
    icl = get_mitigation("robustness/in_context")({"k": 3})
    multi = icl.wrap(make_model(echo_url, max_images=4))
    assert multi.layout == "multi_image" and multi.fingerprint.endswith("#layout=multi_image")
    [gen] = generate_sync(multi, [req])
    sent = json.loads(gen.text)
    assert len(sent["images"]) == 4  # the 3 examples and the query, each its own image part
    assert sent["images"][-1]["digest"] == image_digest(query)
    assert sent["prompt"].startswith("Image 1: Q:") and "Image 4: What shape" in sent["prompt"]
    single = icl.wrap(make_model(echo_url))  # default max_images=1: one composed image
    [gen] = generate_sync(single, [req])
    assert single.layout == "composite" and len(json.loads(gen.text)["images"]) == 1
    assert single.fingerprint != multi.fingerprint


def test_interleaved_request_keeps_its_image_order_on_the_wire(echo_url: ServedURL) -> None:
    from vlmtrust.core.errors import InputError
    from vlmtrust.core.model import IMAGE_SLOT, prompt_parts

    a, b = noise_image(9, 9, 5), noise_image(12, 7, 6)
    prompt = f"{IMAGE_SLOT} A: star\n{IMAGE_SLOT} What shape?"
    req = GenerateRequest(prompt, images=(a, b), interleaved=True)
    assert req.parts() == [0, "A: star\n", 1, "What shape?"]
    assert GenerateRequest(prompt, images=(a, b)).parts() == [0, 1, prompt]  # a slot is text
    assert req.digest() != GenerateRequest(prompt, images=(a, b)).digest()
    with pytest.raises(InputError, match="2 image slots for 1 images"):
        prompt_parts(prompt, 1, interleaved=True)
    out = generate_sync(make_model(echo_url), [req, replace(req, images=(a,))])
    got = json.loads(out[0].text)
    assert got["interleaved"] and got["prompt"] == f"{IMAGE_SLOT}A: star\n{IMAGE_SLOT}What shape?"
    assert [im["digest"] for im in got["images"]] == [image_digest(a), image_digest(b)]
    assert not out[1].ok and "2 image slots for 1 images" in str(out[1].error)
