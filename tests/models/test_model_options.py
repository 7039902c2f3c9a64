"""--model-option parsing and checking (models/options.py), before any model loads."""

from __future__ import annotations

import pytest

from vlmtrust.core.errors import InputError, ModelSpecError
from vlmtrust.models.options import check_model_options, parse_model_options

URL_SPEC = "openai:llava@http://127.0.0.1:8000/v1"


def test_parse_key_value_items_later_ones_win() -> None:
    assert parse_model_options(None) == {}
    assert parse_model_options(["timeout_s=30", "concurrency=2", "timeout_s=5"]) == {
        "timeout_s": "5",
        "concurrency": "2",
    }
    assert parse_model_options(["image_format="]) == {"image_format": ""}


@pytest.mark.parametrize("item", ["retries", "=hunter2", "sk-abcdef123456", "two words=1"])
def test_a_malformed_item_is_one_line_and_never_echoed(item: str) -> None:
    with pytest.raises(InputError) as info:
        parse_model_options(["concurrency=2", item])
    msg = str(info.value)
    assert "number 2 is not KEY=VALUE" in msg and "\n" not in msg
    assert item not in msg


@pytest.mark.parametrize("name", ["api_key", "key", "OPENAI_API_KEY", "token", "auth", "password"])
def test_a_key_is_refused_and_the_env_var_named(name: str) -> None:
    secret = "sk-SECRET-0123456789"
    for attempt in (
        lambda: parse_model_options([f"{name}={secret}"]),
        lambda: check_model_options(URL_SPEC, {name: secret}),
    ):
        with pytest.raises(InputError) as info:
            attempt()
        msg = str(info.value)
        assert secret not in msg and "\n" not in msg
        assert "OPENAI_API_KEY" in msg and "api_key_env" in msg


def test_openai_options_are_typed_and_checked() -> None:
    got = check_model_options(URL_SPEC, parse_model_options(["timeout=30", "api_key_env=MY_KEY"]))
    assert got == {"timeout_s": 30.0, "api_key_env": "MY_KEY"}
    assert check_model_options(URL_SPEC, {}) == {}
    with pytest.raises(InputError, match="valid: concurrency, timeout_s"):
        check_model_options(URL_SPEC, {"max_tokens": "5"})
    with pytest.raises(InputError, match="max_retries='many' is invalid"):
        check_model_options(URL_SPEC, {"max_retries": "many"})


@pytest.mark.parametrize("spec", ["hf:some/model", "reference:clip", "mock:generative"])
def test_other_backends_refuse_options(spec: str) -> None:
    with pytest.raises(InputError) as info:
        check_model_options(spec, {"timeout_s": "3"})
    msg = str(info.value)
    assert spec.split(":")[0] + ": backend takes no --model-option" in msg
    assert "timeout_s" in msg and "openai:MODEL@URL" in msg
    assert check_model_options(spec, None) == {}  # no options: nothing to refuse


def test_a_bad_spec_is_still_a_spec_error() -> None:
    with pytest.raises(ModelSpecError):
        check_model_options("gguf:x", {"timeout_s": "3"})
