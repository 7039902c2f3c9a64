"""Open the generated HTML in headless Chromium and check it renders cleanly and offline.

The browser is driven over the DevTools protocol through ``--remote-debugging-pipe`` (JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no websocket client or other
Python dependency is needed. For each page we record console messages, uncaught exceptions, log
entries and every network request, then inspect the DOM and take a screenshot. A control page
with an external image and a console error proves the harness does catch both.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.chromium

TIMEOUT = 30.0
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1280,900",
    "--remote-debugging-pipe",
)

DOM_PROBE = """(() => {
  const all = Array.from(document.querySelectorAll('*'));
  const onAttrs = all.flatMap(el => Array.from(el.attributes)
      .filter(a => a.name.toLowerCase().startsWith('on')).map(a => el.tagName + '@' + a.name));
  const imgs = Array.from(document.images);
  const svgs = Array.from(document.querySelectorAll('figure.plot svg'));
  return JSON.stringify({
    title: document.title,
    scripts: document.scripts.length,
    iframes: document.querySelectorAll('iframe, frame, object, embed').length,
    links: document.querySelectorAll('link').length,
    onAttrs: onAttrs,
    imgSrcs: imgs.map(i => i.getAttribute('src').slice(0, 22)),
    imgsDecoded: imgs.filter(i => i.complete && i.naturalWidth > 0).length,
    svgCount: svgs.length,
    svgWidths: svgs.map(s => Math.round(s.getBoundingClientRect().width)),
    svgTexts: svgs.map(s => s.querySelectorAll('text').length),
    bodyHeight: document.body.scrollHeight,
    text: document.body.innerText,
    cards: document.querySelectorAll('.scorecard .card').length,
    probes: document.querySelectorAll('section.probe').length,
  });
})()"""


def find_chromium() -> str | None:
    env = os.environ.get("VLMTRUST_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageLoad:
    url: str
    requests: list[str] = field(default_factory=list)
    console: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    dom: dict[str, Any] = field(default_factory=dict)
    screenshot: bytes = b""

    @property
    def errors(self) -> list[str]:
        out = [
            f"console.{c['type']}: {c.get('args')}"
            for c in self.console
            if c["type"] in ("error", "assert", "warning")
        ]
        out += [f"exception: {e.get('exceptionDetails', {}).get('text')}" for e in self.exceptions]
        out += [
            f"log {e['entry'].get('level')}: {e['entry'].get('text')}"
            for e in self.log_entries
            if e["entry"].get("level") in ("error", "warning")
        ]
        return out

    @property
    def external_requests(self) -> list[str]:
        return [u for u in self.requests if not u.startswith(("file://", "data:", "about:"))]


class Browser:
    """A headless Chromium driven over ``--remote-debugging-pipe``."""

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads them on fd 3
        res_r, res_w = os.pipe()  # Chromium writes replies on fd 4, we read them
        # Move the child's ends above 10 so the shell's "3<&N 4>&M" cannot clobber them.
        child_in = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10)
        child_out = fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(res_w)
        self.stderr_path = user_data_dir.parent / "chromium-stderr.log"
        self._stderr = self.stderr_path.open("wb")
        script = f'exec "$@" 3<&{child_in} 4>&{child_out} {child_in}<&- {child_out}>&-'
        self.proc = subprocess.Popen(
            [
                shutil.which("bash") or "/bin/bash",
                "-c",
                script,
                "chromium",
                binary,
                *FLAGS,
                f"--user-data-dir={user_data_dir}",
                "about:blank",
            ],
            pass_fds=(child_in, child_out),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )
        os.close(child_in)
        os.close(child_out)
        self._w, self._r = cmd_w, res_r
        self._buf = b""
        self._next = 0
        self._events: list[dict[str, Any]] = []

    # -- protocol ---------------------------------------------------------------------------
    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no DevTools message from Chromium in time")
            ready, _, _ = select.select([self._r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._r, 1 << 20)
            if not chunk:
                raise RuntimeError(
                    "Chromium closed the DevTools pipe; stderr:\n"
                    + self.stderr_path.read_text(errors="replace")[-2000:]
                )
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        msg: dict[str, Any] = json.loads(raw)
        return msg

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = TIMEOUT,
    ) -> dict[str, Any]:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self._w, data) :]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self._events:
                if ev["method"] == method and ev.get("sessionId") == session:
                    return ev
            msg = self._read(deadline)
            if "method" in msg:
                self._events.append(msg)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                msg = self._read(deadline)
            except TimeoutError:
                return
            if "method" in msg:
                self._events.append(msg)

    # -- high level -------------------------------------------------------------------------
    def load(self, path: Path) -> PageLoad:
        url = path.resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self._events = [e for e in self._events if e.get("sessionId") != session]
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", session)
        self.drain(0.3)  # late console messages / requests
        dom = self.call(
            "Runtime.evaluate", {"expression": DOM_PROBE, "returnByValue": True}, session=session
        )
        shot = self.call("Page.captureScreenshot", {"format": "png"}, session=session)
        page = PageLoad(
            url=url,
            dom=json.loads(dom["result"]["value"]),
            screenshot=base64.b64decode(shot["data"]),
        )
        for ev in self._events:
            if ev.get("sessionId") != session:
                continue
            p = ev.get("params", {})
            if ev["method"] == "Network.requestWillBeSent":
                page.requests.append(p["request"]["url"])
            elif ev["method"] == "Runtime.consoleAPICalled":
                page.console.append(
                    {"type": p["type"], "args": [a.get("value") for a in p.get("args", [])]}
                )
            elif ev["method"] == "Runtime.exceptionThrown":
                page.exceptions.append(p)
            elif ev["method"] == "Log.entryAdded":
                page.log_entries.append(p)
        self.call("Target.closeTarget", {"targetId": target})
        return page

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._w)
        os.close(self._r)
        self._stderr.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (Debian: apt-get install chromium)")
    b = Browser(binary, tmp_path_factory.mktemp("chromium") / "profile")
    try:
        yield b
    finally:
        b.close()


def _painted(png: bytes) -> tuple[tuple[int, int], int]:
    img = Image.open(io.BytesIO(png)).convert("RGB")
    small = np.asarray(img.resize((64, 64))).reshape(-1, 3)
    return img.size, len(np.unique(small, axis=0))


def test_harness_catches_external_requests_and_console_errors(
    browser: Browser, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>bad</title></head><body><p>x</p>"
        '<img src="http://example.invalid/pixel.png">'
        "<script>console.error('boom')</script></body></html>",
        encoding="utf-8",
    )
    page = browser.load(bad)
    assert "http://example.invalid/pixel.png" in page.external_requests
    assert any("boom" in e for e in page.errors), page.errors
    assert page.dom["scripts"] == 1


def test_report_renders_offline_without_errors(
    browser: Browser, rendered_run: tuple[Path, Path, Path]
) -> None:
    _, html, _ = rendered_run
    page = browser.load(html)
    assert page.errors == []
    assert page.external_requests == []
    # The document itself; everything else is a data: URI (the thumbnails).
    assert [u for u in page.requests if not u.startswith("data:")] == [page.url], page.requests
    assert {u[:22] for u in page.requests if u.startswith("data:")} == {"data:image/png;base64,"}
    dom = page.dom
    assert dom["title"] == "vlmtrust report — reference:clip"
    # Nothing injected by the untrusted strings became an element or a handler.
    assert dom["scripts"] == 0 and dom["iframes"] == 0 and dom["links"] == 0
    assert dom["onAttrs"] == []
    # ...and they are shown as text.
    assert "<script>alert(1)</script>" in dom["text"]
    assert '"><iframe src=http://evil.example/x>' in dom["text"]
    # 3 valid thumbnails decoded from data: URIs (the invalid one is not shown).
    assert len(dom["imgSrcs"]) == 3
    assert all(s.startswith("data:image/png;base64") for s in dom["imgSrcs"])
    assert dom["imgsDecoded"] == 3
    # Every plot painted as inline SVG with text, at a sensible width.
    assert dom["svgCount"] == 6
    assert all(w >= 250 for w in dom["svgWidths"]), dom["svgWidths"]
    assert all(t >= 3 for t in dom["svgTexts"]), dom["svgTexts"]
    assert dom["cards"] == 5 and dom["probes"] == 5
    assert dom["bodyHeight"] > 2000
    size, colours = _painted(page.screenshot)
    assert size[0] >= 800 and size[1] >= 500, size
    assert colours > 20  # not a blank page


def test_compare_page_renders_offline(browser: Browser, tmp_path: Path, kit: Any) -> None:
    from vlmtrust.report.compare import render_compare

    a = kit.write_run(tmp_path / "a", kit.make_log())
    b = kit.write_run(tmp_path / "b", kit.make_log(asr=0.1, asr_ci=(0.05, 0.16), label="hardened"))
    html, _ = render_compare(a, b)
    page = browser.load(html)
    assert page.errors == []
    assert page.external_requests == []
    assert page.dom["scripts"] == 0 and page.dom["onAttrs"] == []
    assert "improved" in page.dom["text"]
    assert _painted(page.screenshot)[1] > 5
