"""Credential redaction (core/redact.py), the checks every Params runs, and one_line."""

from __future__ import annotations

import pytest

from vlmtrust.core.errors import InputError, one_line
from vlmtrust.core.params import Params, check_template, validate_params
from vlmtrust.core.redact import credentials_in, redact_data, redact_text, redact_url

KEY = "sk-live-0123456789abcdefXYZ"


@pytest.mark.parametrize(
    "text",
    [
        f"openai:m@http://user:{KEY}@host/v1",
        f"openai:m@http://{KEY}@host:8000/v1",
        f"openai:m@https://host/v1?api_key={KEY}",
        f"openai:m@https://host/v1?x=1&API-KEY={KEY}",
        f"openai:m@https://host/v1?access_token={KEY}#frag",
        f"https://blob.example/f?sv=1&sig={KEY}",
        f"https://host/v1?X-Amz-Signature={KEY}",
        f"https://host/v1?Password={KEY};a=b",
        f"https://host/cb#access_token={KEY}",
        f"http://host/v1?authorization={KEY}",
        f"hf:org/model?token={KEY}",
        f"api_key={KEY} somewhere in a message",
        f"Authorization: Bearer {KEY}",
        "hf:hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
        "sk-proj-0a1b2c3d4e5f6g7h8i9j0k1l",
    ],
)
def test_credentials_are_found_and_redacted(text: str) -> None:
    assert credentials_in(text), text
    out = redact_text(text)
    assert "***" in out
    for secret in (KEY, "hf_ABCDEFGHIJKLMNOPQRSTUVWXYZ0123", "0a1b2c3d4e5f6g7h8i9j0k1l"):
        assert secret not in out, out


@pytest.mark.parametrize(
    "text",
    [
        "openai:llava@http://127.0.0.1:8000/v1",
        "openai:org/m@x@https://api.example.com/v1?api-version=2024-02-01",
        "hf:openai/clip-vit-base-patch32",
        "max_new_tokens=48",
        "a photo of a {}",
        "sk-learn-style-names-are-not-keys",
        "https://example.com/path?page=2&q=cats",
        "judge refusal/keyword",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert credentials_in(text) == []
    assert redact_text(text) == text


def test_redact_url_keeps_structure() -> None:
    url = f"https://u:{KEY}@h.example:8443/v1/x?a=1&token={KEY}&b=2#sig={KEY}"
    assert redact_url(url) == "https://***@h.example:8443/v1/x?a=1&token=***&b=2#sig=***"


def test_redact_data_walks_json() -> None:
    data = {"judges": [f"llm:openai:g@http://h/v1?key={KEY}"], "n": 3, "t": ("x", f"token={KEY}")}
    out = redact_data(data)
    assert KEY not in repr(out) and out["n"] == 3 and isinstance(out["t"], tuple)


def test_one_line_redacts() -> None:
    assert KEY not in one_line(ValueError(f"GET http://h/v1?api_key={KEY} failed"))
    assert one_line(InputError(f"bad spec 'http://u:{KEY}@h'")) == "bad spec 'http://***@h'"


class _P(Params):
    template: str = "a photo of a {}"
    class_template: str = "a {}"
    attacker: str | None = None
    names: list[str] = []


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"template": "a photo"}, "exactly one '{}'"),
        ({"template": "a {} and {}"}, "exactly one '{}'"),
        ({"template": "a {name}"}, "exactly one '{}'"),
        ({"template": "a {"}, "not a valid template"),
        ({"class_template": "no slot"}, "exactly one '{}'"),
        ({"attacker": f"openai:a@http://h/v1?api_key={KEY}"}, "holds a credential"),
        ({"names": [f"llm:openai:g@http://u:{KEY}@h/v1"]}, "holds a credential"),
    ],
)
def test_params_refuse_bad_templates_and_credentials(raw: dict[str, object], fragment: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_params(_P, raw, "probe x", "see help")
    msg = str(exc.value)
    assert fragment in msg and "\n" not in msg and KEY not in msg
    assert repr(next(iter(raw))) in msg  # names the parameter


def test_params_accept_good_values() -> None:
    p = validate_params(_P, {"template": "an image of a {} {{sic}}"}, "probe x", "h")
    assert p.template == "an image of a {} {{sic}}"  # type: ignore[attr-defined]
    assert check_template("{}") == "{}"


def test_every_registered_template_param_is_checked() -> None:
    """Every probe / mitigation parameter named *template refuses a template without {}."""
    from vlmtrust.core.mitigation import registry as mitigations
    from vlmtrust.core.params import is_template_field
    from vlmtrust.core.probe import registry as probes

    seen = 0
    for reg in (probes(), mitigations()):
        for cls in reg.values():
            for field in cls.Params.model_fields:
                if is_template_field(field):
                    seen += 1
                    with pytest.raises(InputError, match="placeholder"):
                        cls({field: "no placeholder"})
    assert seen >= 6  # zero_shot, calibration, ood, labeled-image family, adversarial, ...
