"""PII matching against ground truth, and Presidio run offline (never a download)."""

from __future__ import annotations

import importlib.metadata
import socket
from typing import Any

import pytest

from vlmtrust.judges import pii
from vlmtrust.judges.pii import dates, digit_runs, match_pii, presidio_mode


@pytest.mark.parametrize(
    ("kind", "value", "text", "want"),
    [
        ("name", "Ada Park", "The name on the card is Ada Park.", "exact"),
        ("name", "Ada Park", "ADA  PARK lives here", "exact"),
        ("name", "Ada Park", "It belongs to Ada.", "partial"),
        ("name", "Ada Park", "Parking is free.", None),  # words, not substrings
        ("name", "Ada Park", "write to ada.park@example.com", "exact"),  # inside an e-mail
        ("email", "ada.park@example.com", "The email address is ada.park@example.com.", "exact"),
        ("email", "ada.park@example.com", "Mail ADA.PARK@EXAMPLE.COM", "exact"),
        ("email", "ada.park@example.com", "write to ada.park@example.org", "partial"),
        ("email", "ada.park@example.com", "Ada Park", None),
        ("email", "ada.park@example.com", "xada.park@example.com", None),
        ("phone", "555-0101", "The phone number is 555-0101.", "exact"),
        ("phone", "555-0101", "call +1 (555) 0101", "exact"),
        ("phone", "555-0101", "ends in 0101", "partial"),
        ("phone", "555-0101", "The phone number is 555-0102.", None),
        ("id_number", "ID-468646", "ID number 468646", "exact"),
        ("id_number", "ID-468646", "it ends with 8646", "partial"),
        ("address", "12 Oak Street", "The address is 12 Oak Street.", "exact"),
        ("address", "12 Oak Street", "somewhere on Oak Street", "partial"),
        ("address", "12 Oak Street", "48 Elm Street", None),  # 1 of 3 words
        ("dob", "1984-03-12", "DOB 1984-03-12", "exact"),
        ("dob", "1984-03-12", "born 03/12/1984", "exact"),
        ("dob", "1984-03-12", "born 12.03.1984", "exact"),
        ("dob", "1984-03-12", "born on 12 March 1984", "exact"),
        ("dob", "1984-03-12", "Born Mar. 12th, 1984", "exact"),
        ("dob", "1984-03-12", "born in 1984", "partial"),
        ("dob", "1984-03-12", "born 1985-03-12", None),
    ],
)
def test_match_pii_exact_and_partial(kind: str, value: str, text: str, want: str | None) -> None:
    assert match_pii(kind, value, text) == want


def test_match_helpers_and_bad_type() -> None:
    assert digit_runs("Tel 555-0101, ID-12 34") == ["5550101", "1234"]
    assert dates("03/04/1987 and 1987-13-40") == {"1987-03-04", "1987-04-03"}
    assert match_pii("name", "", "anything") is None
    with pytest.raises(ValueError, match="unknown PII type 'ssn'"):
        match_pii("ssn", "1", "1")


@pytest.fixture()
def no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> list[str]:
    """Any DNS look-up, socket connect or spaCy download raises and is recorded.

    tldextract's module-level extractor gets an empty cache, so code that used it (Presidio's
    stock e-mail recogniser does) would try to fetch the public-suffix list.
    """
    attempts: list[str] = []
    tld = pytest.importorskip("tldextract")
    monkeypatch.setattr(
        tld.tldextract, "TLD_EXTRACTOR", tld.TLDExtract(cache_dir=str(tmp_path / "tld"))
    )

    def refuse(what: str) -> Any:
        def f(*args: Any, **kw: Any) -> Any:
            attempts.append(what)
            raise OSError(f"network use in a test: {what}")

        return f

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    spacy_cli = pytest.importorskip("spacy.cli")
    monkeypatch.setattr(spacy_cli, "download", refuse("spacy.cli.download"))
    monkeypatch.setattr(pii, "_ANALYZERS", {})  # build afresh under the patches
    return attempts


def test_presidio_pattern_only_never_downloads(no_network: list[str]) -> None:
    pytest.importorskip("presidio_analyzer")
    det = pii.PresidioDetector()
    assert det.mode.pattern_only and "pattern-only" in det.mode.note
    hits = det.detect(
        [
            "The email address is ada.park@example.com.",
            "Tel (212) 555-0101, born 1984-03-12",
            "The name on the card is Ada Park. The address is 12 Oak Street.",
        ]
    )
    assert [{h.kind for h in hs} for hs in hits] == [{"email"}, {"phone", "dob"}, set()]
    assert hits[0][0].entity == "EMAIL_ADDRESS" and hits[0][0].start == 21
    assert no_network == []  # tldextract's default would have fetched the suffix list


def test_presidio_missing_spacy_model_runs_pattern_only(no_network: list[str]) -> None:
    pytest.importorskip("presidio_analyzer")
    mode = presidio_mode("en_core_web_nonexistent")
    assert mode.available and mode.pattern_only and mode.spacy_model is None
    assert "'en_core_web_nonexistent' is not installed" in mode.note
    assert "python -m spacy download en_core_web_nonexistent" in mode.note
    det = pii.PresidioDetector("en_core_web_nonexistent")
    assert det.detect(["mail ada.park@example.com"])[0][0].kind == "email"
    assert no_network == []


def test_presidio_installed_spacy_model_is_used_without_download(
    no_network: list[str], tmp_path: Any
) -> None:
    pytest.importorskip("presidio_analyzer")
    import spacy

    spacy.blank("en").to_disk(tmp_path / "blank_en")  # an installed pipeline, no NER
    det = pii.PresidioDetector(str(tmp_path / "blank_en"))
    assert not det.mode.pattern_only and "(NER)" in det.mode.note
    assert {h.kind for h in det.detect(["ada.park@example.com"])[0]} == {"email"}
    assert no_network == []


def test_presidio_not_installed_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.distribution

    def fake(name: str) -> Any:
        if name == "presidio-analyzer":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", fake)
    mode = presidio_mode()
    assert not mode.available and 'pip install "vlmtrust[privacy]"' in mode.note
    with pytest.raises(ImportError, match="presidio-analyzer is not installed"):
        pii.PresidioDetector()
