"""The report: escaping, self-containment, content, plots, Markdown, compare, multi-model."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from vlmtrust.core.errors import InputError
from vlmtrust.core.results import (
    AuditLog,
    MetricResult,
    ModelInfo,
    Plot,
    ProbeResult,
    RunSpec,
    Series,
)
from vlmtrust.core.types import Pillar, RiskBand
from vlmtrust.report.compare import compare_logs, render_compare, summarize
from vlmtrust.report.html import render_report
from vlmtrust.report.markdown import md_escape
from vlmtrust.report.plots import plot_to_svg
from vlmtrust.report.view import fmt_ci, fmt_pm, fmt_value


class DomCollector(HTMLParser):
    """Every start tag with its attributes, as a browser-grade tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> DomCollector:
    p = DomCollector()
    p.feed(html)
    p.close()
    return p


def section(html: str, anchor_part: str) -> str:
    """The HTML of the probe section whose id contains ``anchor_part``."""
    m = re.search(
        rf'<section class="probe" id="[^"]*{re.escape(anchor_part)}">(.*?)</section>', html, re.S
    )
    assert m, anchor_part
    return m.group(1)


# ---- HTML: escaping and self-containment ----------------------------------------------------


def test_untrusted_strings_are_escaped_and_inert(
    rendered_run: tuple[Path, Path, Path], kit: Any
) -> None:
    _, html_path, _ = rendered_run
    html = html_path.read_text(encoding="utf-8")
    for evil in kit.xss:
        assert evil not in html  # never raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&#34;&gt;&lt;iframe src=http://evil.example/x&gt;" in html
    dom = parse(html)
    tags = [t for t, _ in dom.tags]
    assert "script" not in tags and "iframe" not in tags and "object" not in tags
    for tag, attrs in dom.tags:
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")
    text = "".join(dom.text)
    # Shown as text in: outputs, prompts, sample ids, notes, params, probe notes, error messages.
    assert text.count("<script>alert(1)</script>") >= 9
    assert "sample img-0007<script>alert(1)</script>" in " ".join(text.split())


def test_html_is_self_contained(rendered_run: tuple[Path, Path, Path]) -> None:
    _, html_path, _ = rendered_run
    html = html_path.read_text(encoding="utf-8")
    # every tag as written (escaped text never forms one)
    for tag in re.findall(r"<[a-zA-Z][^>]*>", html):
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", tag, re.I), tag
    assert "<link" not in html.lower()
    assert not re.search(r"<script\b", html, re.I)
    assert "@import" not in html and "url(http" not in html
    assert set(re.findall(r"url\((.)", html)) <= {"#"}  # only in-document SVG references
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html and "<metadata" not in html
    assert "w3.org" not in html  # SVG namespaces dropped, no DTD
    dom = parse(html)
    for tag, attrs in dom.tags:
        for k, v in attrs.items():
            assert "http" not in v.lower(), (tag, k, v)  # no URL in any attribute
        for k in ("src", "href", "xlink:href", "action", "poster", "srcset", "background"):
            if k in attrs:
                assert attrs[k].startswith(("#", "data:image/png;base64,")), (tag, k)
    csp = [a for t, a in dom.tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in csp[0]["content"]
    ids = [a["id"] for _, a in dom.tags if "id" in a]
    assert len(ids) == len(set(ids)), "duplicate element ids (SVGs must be prefixed)"


def test_html_layout_header_scorecard_and_sections(rendered_run: tuple[Path, Path, Path]) -> None:
    _, html_path, _ = rendered_run
    html = html_path.read_text(encoding="utf-8")
    header = html[: html.index("Scorecard")]
    for piece in (
        "reference:clip",
        "sha256:abababab",
        "seed 7",
        "vlmtrust 0.1.0",
        "2026-11-23T23:59:00Z",
        "deadbeef",
    ):
        assert piece in header, piece
    cards = re.findall(
        r'<div class="card risk-(\w+)">\s*<div class="pillar"><span>(\w+)</span>', html
    )
    assert cards == [
        ("low", "privacy"),
        ("moderate", "fairness"),
        ("high", "robustness"),
        ("high", "safety"),
        ("none", "capability"),
    ]
    score = html[html.index('class="scorecard"') : html.index('<nav class="toc"')]
    assert "62.0% ± 7.0%" in score and "8.0% ± 3.5%" in score and "91.0% ± 3.5%" in score
    assert "95% CI [55.0%, 69.0%]" in score
    assert (
        '<span class="err">3 errors</span>' in score
        and '<span class="err">2 errors</span>' in score
    )
    # one section per probe, in the log's order
    assert re.findall(r'<section class="probe" id="([^"]+)"', html) == [
        "p0-robustness-pgd",
        "p1-safety-figstep",
        "p2-fairness-zero-shot-gap",
        "p3-privacy-membership-inference",
        "p4-capability-zero-shot",
    ]
    pgd = section(html, "robustness-pgd")
    assert "<h4>Parameters</h4>" in pgd and "[1, 2, 4]" in pgd  # params as JSON
    assert '<td class="num">8.0%</td>' in pgd and "[5.0%, 12.0%]" in pgd
    assert "↑ higher" in pgd and "moderate &lt; 50.0%, high &lt; 20.0%" in pgd
    assert '<td class="num">0.016</td>' in pgd  # no unit: not a percentage
    assert pgd.count("<svg") == 2
    assert pgd.count('src="data:image/png;base64,') == 2
    fig = section(html, "safety-figstep")
    assert "↓ lower" in fig
    # per-group values with their CIs
    assert (
        "by topic:" in fig
        and "illegal activity: <strong>70.0%</strong> [60.0%, 80.0%] (n=30)" in fig
    )
    assert "[3500 more characters]" in fig  # long output cut
    assert "thumbnail is not a valid PNG" in fig


def test_probe_errors_are_counted_and_listed(rendered_run: tuple[Path, Path, Path]) -> None:
    _, html_path, md_path = rendered_run
    html = html_path.read_text(encoding="utf-8")
    fig = section(html, "safety-figstep")
    assert "<strong>3 of 120 samples failed</strong> — 1 kind of error:" in fig
    assert fig.count("timeout after 30 s &lt;script&gt;") == 1  # one group of three
    assert "<strong>3×</strong> timeout after 30 s" in fig
    ids = fig[fig.index('<div class="ids">') :]
    assert ids.count('<span class="mono">figstep-0') == 3
    # privacy's result lists no messages: they are recovered from samples/<probe>.jsonl
    priv = section(html, "privacy-membership-inference")
    assert "<strong>2 of 300 samples failed</strong>" in priv
    assert "<strong>2×</strong> model returned malformed JSON &lt;b&gt;…&lt;/b&gt;" in priv
    assert "e.g. model returned malformed JSON &lt;b&gt;0&lt;/b&gt;" in priv
    assert "privacy/membership_inference-1</span>" in priv
    assert "membership_inference-2" not in priv  # sample 2 did not fail
    assert "samples failed" not in section(html, "robustness-pgd")
    md = md_path.read_text(encoding="utf-8")
    assert "**Errors:** 3 of 120 samples failed. 1 kind of error:" in md
    assert "**Errors:** 2 of 300 samples failed. 1 kind of error:" in md
    assert "- **2×** model returned malformed JSON &lt;b&gt;…&lt;/b&gt;" in md


def _record(sample_id: str, index: int, error: str | None) -> str:
    rec = {"sample_id": sample_id, "index": index, "output": {}, "scores": {}, "error": error}
    return json.dumps(rec)


def test_every_kind_of_error_is_listed_with_counts_and_ids(tmp_path: Path, kit: Any) -> None:
    from vlmtrust.core.results import ErrorSummary

    log = kit.make_log(evil=False)
    aspect = (
        "image /data/imgs/cat/{i}.png: 4000×{h} has aspect ratio {r:,}:1, beyond the limit of "
        "50:1 — crop or pad the image, or raise --max-aspect-ratio"
    )
    errors = [(f"cat/{i}.png", aspect.format(i=i, h=2 + i, r=2000 // (1 + i))) for i in range(25)]
    errors += [(f"q{i}", "backend: HTTP 503 <script>alert(1)</script>") for i in range(6)]
    errors += [("odd", "a one-off <img src=x onerror=alert(3)>")]
    records = [_record(sid, i, msg) for i, (sid, msg) in enumerate(errors)]
    records.append(_record("retried", 40, "backend: HTTP 503 <script>alert(1)</script>"))
    records += [_record(f"ok{i}", 50 + i, None) for i in range(5)]
    records.append(_record("retried", 40, None))  # --resume retried it: it no longer failed
    results = []
    for r in log.results:
        if r.probe == "robustness/pgd":  # as the runner keeps it: the count, the first 20
            kept = [ErrorSummary(sample_id=a, message=b) for a, b in errors[:20]]
            r = r.model_copy(update={"n_errors": len(errors), "errors": kept})
        results.append(r)
    run = kit.write_run(tmp_path / "run", log.model_copy(update={"results": results}))
    (run / "samples" / "robustness__pgd.jsonl").write_text("\n".join(records) + "\n")
    html_path, md_path = render_report(run)

    pgd = section(html_path.read_text(encoding="utf-8"), "robustness-pgd")
    assert "<strong>32 of 200 samples failed</strong> — 3 kinds of error:" in pgd
    shared = (
        "image /data/imgs/cat/…: 4000×… has aspect ratio …:1, beyond the limit of 50:1 — crop "
        "or pad the image, or raise --max-aspect-ratio"
    )
    groups = re.findall(r"<li><strong>(\d+)×</strong> (.*?)(?:<div|</li>)", pgd)
    assert groups == [
        ("25", shared),
        ("6", "backend: HTTP 503 &lt;script&gt;alert(1)&lt;/script&gt;"),
        ("1", "a one-off &lt;img src=x onerror=alert(3)&gt;"),
    ]
    assert "e.g. image /data/imgs/cat/0.png: 4000×2 has aspect ratio 2,000:1" in pgd
    assert pgd.count('<span class="mono">cat/') == 20 and " and 5 more</div>" in pgd
    assert "retried" not in pgd and "not listed" not in pgd
    assert "<script>" not in pgd and "<img src=x" not in pgd

    md = md_path.read_text(encoding="utf-8")
    assert "**Errors:** 32 of 200 samples failed. 3 kinds of error:" in md
    assert f"- **25×** {md_escape(shared)}" in md
    assert "- **6×** backend: HTTP 503 &lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "- **1×** a one-off &lt;img src=x onerror=alert(3)&gt;" in md
    assert "  - samples: cat/0.png, cat/1.png," in md and "cat/19.png and 5 more" in md

    # Without the samples file the 20 listed errors are grouped and the rest are counted.
    (run / "samples" / "robustness__pgd.jsonl").unlink()
    html_path, md_path = render_report(run)
    pgd = section(html_path.read_text(encoding="utf-8"), "robustness-pgd")
    assert "<strong>20×</strong> image /data/imgs/cat/…" in pgd
    assert "12 more errors not listed here" in pgd
    assert "- 12 more errors not listed here" in md_path.read_text(encoding="utf-8")


def test_rendering_is_deterministic_and_honours_out_paths(
    rendered_run: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    run, html_default, md_default = rendered_run
    assert (html_default, md_default) == (run / "report.html", run / "report.md")
    h, m = render_report(run, out_html=tmp_path / "out" / "a.html", out_md=tmp_path / "a.md")
    assert (h, m) == (tmp_path / "out" / "a.html", tmp_path / "a.md")
    assert h.read_bytes() == html_default.read_bytes()
    assert m.read_bytes() == md_default.read_bytes()


def test_broken_plot_is_reported_not_fatal(tmp_path: Path, kit: Any) -> None:
    log = kit.make_log(evil=False)
    log.results[2].plots.append(
        Plot(kind="heatmap", title="ragged <b>", matrix=[[1.0], [1.0, 2.0]])
    )
    run = kit.write_run(tmp_path / "run", log)
    html = render_report(run)[0].read_text(encoding="utf-8")
    fair = section(html, "fairness-zero-shot-gap")
    assert "plot could not be drawn: plot &#39;ragged &lt;b&gt;&#39;: heatmap rows differ" in fair
    assert fair.count("<svg") == 1


# ---- Markdown -------------------------------------------------------------------------------


def _tables(md: str) -> list[list[str]]:
    tables: list[list[str]] = []
    cur: list[str] = []
    for line in md.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    return tables


def test_markdown_content_and_escaping(rendered_run: tuple[Path, Path, Path], kit: Any) -> None:
    _, _, md_path = rendered_run
    md = md_path.read_text(encoding="utf-8")
    for evil in kit.xss:
        assert evil not in md
    assert not re.search(r"<(?!br>)[a-zA-Z/]", md), "raw HTML besides <br> in the Markdown"
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert r"2. \| pipe \| \`code\` \*\*bold\*\*" in md  # pipes, backticks, emphasis inert
    # every table keeps its column count (no pipe injected by an output)
    for t in _tables(md):
        counts = {len(re.findall(r"(?<!\\)\|", row)) for row in t}
        assert len(counts) == 1, t
    assert (
        "| safety | 🔴 high | asr (safety/figstep): **62.0% ± 7.0%** [55.0%, 69.0%] 🔴 high"
        " | 1 | **3** |" in md
    )
    assert "| capability | no band |" in md
    assert "### safety/figstep — 🔴 high" in md
    assert "- heatmap: ASR by topic and attack" in md  # plots listed, not drawn
    assert "data:image" not in md
    assert (
        "| **robust\\_accuracy@4/255** (headline)<br>accuracy under L-inf PGD, eps = 4/255"
        " | 8.0% | [5.0%, 12.0%] | 200 | ↑ higher |" in md
    )
    assert "by topic: illegal activity: 70.0% [60.0%, 80.0%] (n=30)" in md


def test_md_escape() -> None:
    assert md_escape("a|b") == r"a\|b"
    assert md_escape("[x](http://e)") == r"\[x\](http://e)"
    assert md_escape("![i](y)") == r"\!\[i\](y)"
    assert md_escape("<img src=x onerror=1>") == "&lt;img src=x onerror=1&gt;"
    assert md_escape("a\r\nb\nc") == "a<br>b<br>c"
    assert md_escape("&lt;") == "&amp;lt;"
    assert md_escape("_*`~#\\") == r"\_\*\`\~\#\\"


def test_number_formatting() -> None:
    assert fmt_value(0.8333, "%") == "83.3%"
    assert fmt_value(1.0, "%") == "100.0%"
    assert fmt_value(0.1234) == "0.123"
    assert fmt_value(12.345) == "12.35"
    assert fmt_value(1234.5, "s") == "1,234.5 s"
    assert fmt_value(0.00012) == "1.20e-04"
    assert fmt_value(None) == "—" and fmt_value(float("nan")) == "—"
    assert fmt_ci(0.25, 0.5, "%") == "[25.0%, 50.0%]"
    assert fmt_ci(None, 0.5) == "—"
    assert fmt_pm(0.6, 0.5, 0.8, "%") == "60.0% ± 15.0%"
    assert fmt_pm(0.6, None, None) == "0.600"


# ---- plots ----------------------------------------------------------------------------------


def _ids(svg: str) -> list[str]:
    return re.findall(r'\bid="([^"]+)"', svg)


def test_plot_line_with_ci_band() -> None:
    band = Plot(
        kind="line",
        title="acc <vs> eps $5",
        x_label="eps",
        y_label="acc",
        series=[
            Series(
                name="clean",
                x=[0.0, 1.0, 2.0],
                y=[0.9, None, 0.2],
                lo=[0.8, None, 0.1],
                hi=[1.0, None, 0.3],
            ),
            Series(name="robust", x=[0.0, 1.0, 2.0], y=[0.5, 0.4, 0.3]),
        ],
    )
    svg = plot_to_svg(band)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert "<?xml" not in svg and "DOCTYPE" not in svg and "<metadata" not in svg
    assert "acc &lt;vs&gt; eps $5" in svg  # escaped, and no math-text parsing of "$"
    ids = _ids(svg)
    assert "ci_band_s0" in ids and "ci_band_s1" not in ids
    assert "series_s0" in ids and "series_s1" in ids
    assert "DejaVu Sans" in svg
    assert plot_to_svg(band) == svg  # deterministic
    categorical = Plot(kind="line", title="t", series=[Series(name="a", x=["lo", "hi"], y=[1, 2])])
    assert ">lo<" in plot_to_svg(categorical)


def test_plot_bar_grouped_by_series() -> None:
    svg = plot_to_svg(
        Plot(
            kind="bar",
            title="by judge",
            series=[
                Series(name="text", x=["kw", "llm"], y=[0.4, 0.5], lo=[0.3, 0.4], hi=[0.5, 0.6]),
                Series(name="figstep", x=["llm", "human"], y=[0.7, None]),
            ],
        )
    )
    bars = sorted(i for i in _ids(svg) if i.startswith("bar_"))
    # categories kw=0, llm=1, human=2; series 1 has no kw and a missing human value
    assert bars == ["bar_s0_c0", "bar_s0_c1", "bar_s1_c1"]
    assert ">human<" in svg and ">figstep<" in svg


def test_plot_heatmap_annotated() -> None:
    svg = plot_to_svg(
        Plot(
            kind="heatmap",
            title="asr",
            matrix=[[0.1, None], [0.75, 1234.0]],
            row_labels=["hate <speech>", "fraud"],
            col_labels=["text", "figstep"],
        )
    )
    cells = dict(re.findall(r'<g id="(cell_\d_\d)">\s*<text[^>]*>([^<]*)<', svg))
    assert cells == {"cell_0_0": "0.10", "cell_0_1": "–", "cell_1_0": "0.75", "cell_1_1": "1.2e+03"}
    assert "hate &lt;speech&gt;" in svg and ">figstep<" in svg


def test_plot_roc_and_reliability_have_reference_diagonals() -> None:
    roc = plot_to_svg(
        Plot(
            kind="roc",
            title="roc",
            series=[Series(name="MCM", x=[0.0, 0.2, 1.0], y=[0.0, 0.7, 1.0])],
        )
    )
    assert "reference_diagonal" in _ids(roc) and "series_s0" in _ids(roc)
    assert "false positive rate" in roc and ">chance<" in roc
    rel = plot_to_svg(
        Plot(
            kind="reliability",
            title="rel",
            series=[
                Series(name="clean", x=[0.1, 0.3, 0.5, 0.7, 0.9], y=[0.0, 0.2, None, 0.6, 0.95])
            ],
        )
    )
    ids = _ids(rel)
    assert "reference_diagonal" in ids
    assert sorted(i for i in ids if i.startswith("bin_")) == [f"bin_s0_b{j}" for j in range(4)]
    assert "perfect calibration" in rel


def test_plot_id_prefix_and_bad_input() -> None:
    plot = Plot(kind="roc", title="r", series=[Series(name="a", x=[0.0, 1.0], y=[0.0, 1.0])])
    svg = plot_to_svg(plot, id_prefix="p3-f1-")
    assert all(i.startswith("p3-f1-") for i in _ids(svg))
    refs = re.findall(r'(?:url\(#|href="#)([^)"]+)', svg)
    assert refs and all(r.startswith("p3-f1-") for r in refs)
    cases = [
        Plot(kind="line", title="x", series=[Series(name="a", x=[0.0, 1.0], y=[1.0])]),
        Plot(
            kind="line",
            title="x",
            series=[Series(name="a", x=[0.0], y=[1.0], lo=[0.0, 1.0], hi=[1.0])],
        ),
        Plot(kind="heatmap", title="x"),
        Plot(kind="heatmap", title="x", matrix=[[1.0, 2.0]], row_labels=["a", "b"]),
        Plot(kind="roc", title="x", series=[Series(name="a", x=["a"], y=[1.0])]),
        Plot(kind="bar", title="x"),
    ]
    for bad in cases:
        with pytest.raises(InputError) as exc:
            plot_to_svg(bad)
        assert "\n" not in str(exc.value) and "plot 'x'" in str(exc.value)
    with pytest.raises(InputError):
        plot_to_svg(plot, id_prefix='x" onload="1')


# ---- multi-model parent and bad input -------------------------------------------------------


def test_multi_model_parent_gives_one_report_with_a_section_per_model(
    tmp_path: Path, kit: Any
) -> None:
    parent = kit.write_parent(
        tmp_path / "audit",
        {
            "clip": kit.make_log(spec="reference:clip"),
            "clip-hardened": kit.make_log(
                spec="reference:clip-hardened", asr=0.05, asr_ci=(0.02, 0.09)
            ),
        },
    )
    html_path, md_path = render_report(parent)
    assert html_path == parent / "report.html"
    html = html_path.read_text(encoding="utf-8")
    runs = re.findall(r'<section class="run" id="([^"]+)">\s*<h2>([^<]+)</h2>', html)
    assert runs == [("m0-clip-model", "clip"), ("m1-clip-hardened-model", "clip-hardened")]
    assert "vlmtrust report — 2 models" in html
    overview = html[html.index('<table class="overview">') : html.index("</table>")]
    assert overview.count("<tr>") == 3  # header + one row per model
    # pillars in order privacy, fairness, robustness, safety, capability; then errors
    rows = re.findall(r'<tr><td class="wrap">(.*?)</tr>', overview, re.S)
    bands = [re.findall(r'<td>(?:<span class="badge risk-(\w+)")?', r) for r in rows]
    assert bands == [
        ["low", "moderate", "high", "high", "none"],
        ["low", "moderate", "high", "low", "none"],
    ]
    assert html.count('class="card risk-') == 10
    assert html.count('<section class="probe"') == 10
    dom = parse(html)
    ids = [a["id"] for _, a in dom.tags if "id" in a]
    assert len(ids) == len(set(ids))
    md = md_path.read_text(encoding="utf-8")
    assert "## clip\n" in md and "## clip-hardened\n" in md
    assert md.count("### Scorecard") == 2
    assert "| safety | 🟢 low | asr (safety/figstep): **5.0% ± 3.5%**" in md


def test_bad_run_directories_give_one_line_errors(tmp_path: Path, kit: Any) -> None:
    def err(path: Path) -> str:
        with pytest.raises(InputError) as exc:
            render_report(path)
        msg = str(exc.value)
        assert "\n" not in msg and " — " in msg
        return msg

    assert "not a directory" in err(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no results.json" in err(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "results.json").write_text("{not json", encoding="utf-8")
    assert "not readable JSON" in err(broken)
    newer = kit.write_run(tmp_path / "newer", kit.make_log(evil=False))
    raw = json.loads((newer / "results.json").read_text(encoding="utf-8"))
    raw["schema_version"] = 99
    (newer / "results.json").write_text(json.dumps(raw), encoding="utf-8")
    assert "upgrade vlmtrust" in err(newer)
    raw["schema_version"] = 1
    raw["results"][0]["pillar"] = "vibes"
    (newer / "results.json").write_text(json.dumps(raw), encoding="utf-8")
    assert "not a valid AuditLog (results.0.pillar" in err(newer)
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "index.json").write_text(json.dumps({"runs": ["../newer"]}), encoding="utf-8")
    assert "not a sub-directory" in err(parent)
    (parent / "index.json").write_text(json.dumps({"runs": []}), encoding="utf-8")
    assert "at least one name" in err(parent)


# ---- compare --------------------------------------------------------------------------------


def _log(
    metrics: dict[str, list[MetricResult]],
    *,
    version: int = 1,
    params: dict[str, Any] | None = None,
) -> AuditLog:
    spec = RunSpec(
        model=ModelInfo(spec="m", fingerprint="f", kind="dual", capabilities=[]),
        probes=[],
        seed=0,
        vlmtrust_version="0.1.0",
        created="2026-11-23",
    )
    return AuditLog(
        spec=spec,
        results=[
            ProbeResult(
                probe=p, pillar=Pillar.SAFETY, version=version, params=params or {}, metrics=ms
            )
            for p, ms in metrics.items()
        ],
    )


def _m(
    name: str,
    v: float | None,
    lo: float | None = None,
    hi: float | None = None,
    *,
    hib: bool = True,
    risk: RiskBand | None = None,
    unit: str = "",
) -> MetricResult:
    return MetricResult(
        name=name, value=v, ci_low=lo, ci_high=hi, n=100, higher_is_better=hib, risk=risk, unit=unit
    )


def test_compare_logs_deltas_direction_and_significance() -> None:
    a = _log(
        {
            "p": [
                _m("asr", 0.62, 0.55, 0.69, hib=False, risk=RiskBand.HIGH),
                _m("acc", 0.80, 0.75, 0.85),
                _m("robust", 0.08, 0.05, 0.12),
                _m("nci", 0.5),
                _m("gone", 0.1),
            ],
            "old": [_m("x", 1.0)],
        }
    )
    b = _log(
        {
            "p": [
                _m("asr", 0.10, 0.05, 0.16, hib=False, risk=RiskBand.LOW),
                _m("acc", 0.70, 0.64, 0.74),
                _m("robust", 0.15, 0.10, 0.20),
                _m("nci", 0.9),
                _m("new", 0.3),
            ],
            "fresh": [_m("y", 2.0)],
        }
    )
    d = {(x.probe, x.metric): x for x in compare_logs(a, b)}
    asr = d["p", "asr"]
    assert asr.delta == pytest.approx(-0.52)
    assert asr.change == "improved" and asr.improved is True  # lower is better
    assert asr.ci_overlap is False and asr.significant is True
    assert asr.risk_change == "high → low"
    acc = d["p", "acc"]
    assert acc.delta == pytest.approx(-0.10)
    assert acc.change == "worsened" and acc.improved is False
    assert acc.ci_overlap is False and acc.significant is True  # [0.64,0.74] vs [0.75,0.85]
    rob = d["p", "robust"]
    assert rob.change == "improved" and rob.ci_overlap is True and rob.significant is False
    nci = d["p", "nci"]
    assert nci.change == "improved" and nci.ci_overlap is None and nci.significant is False
    assert [
        (x.probe, x.metric, x.presence) for x in compare_logs(a, b) if x.presence != "both"
    ] == [
        ("p", "gone", "only_a"),
        ("old", "x", "only_a"),
        ("p", "new", "only_b"),
        ("fresh", "y", "only_b"),
    ]
    assert d["p", "gone"].a_value == 0.1 and d["p", "gone"].b_value is None
    assert d["fresh", "y"].b_value == 2.0 and d["fresh", "y"].change == "n/a"
    s = summarize(compare_logs(a, b))
    assert (s.compared, s.improved, s.worsened, s.unchanged) == (4, 3, 1, 0)
    assert (s.significant_improved, s.significant_worsened) == (1, 1)
    assert (s.only_a, s.only_b, s.risk_down, s.risk_up) == (2, 2, 1, 0)


def test_compare_logs_flags_incomparable_metrics() -> None:
    a = _log({"p": [_m("m", 0.5, 0.4, 0.6), _m("same", 0.3, 0.2, 0.4)]}, version=1, params={"k": 1})
    b = _log(
        {"p": [_m("m", 0.7, 0.65, 0.75, hib=False), _m("same", 0.3, 0.2, 0.4)]},
        version=2,
        params={"k": 2},
    )
    d = {x.metric: x for x in compare_logs(a, b)}
    assert d["m"].change == "n/a" and d["m"].delta is None and not d["m"].significant
    assert d["m"].note == "probe version 1 → 2; params differ; direction differs"
    assert d["same"].change == "unchanged" and d["same"].delta == 0.0
    assert d["same"].improved is False


def test_render_compare_files(tmp_path: Path, kit: Any) -> None:
    a = kit.write_run(tmp_path / "before", kit.make_log())
    b = kit.write_run(
        tmp_path / "after",
        kit.make_log(
            asr=0.1, asr_ci=(0.05, 0.16), robust_acc=0.45, robust_ci=(0.38, 0.52), label="hardened"
        ),
    )
    html_path, md_path = render_compare(a, b)
    assert (html_path, md_path) == (b / "compare.html", b / "compare.md")
    html = html_path.read_text(encoding="utf-8")
    assert "<script" not in html and not re.search(r"(?:src|href)=\"(?:https?:)?//", html)
    assert "<strong>9</strong>metrics compared" in html
    assert '<strong class="chg-improved">2</strong>improved (2 significant)' in html
    assert "−52.0 pp" in html and "+37.0 pp" in html
    md = md_path.read_text(encoding="utf-8")
    assert (
        "| asr ↓ | 62.0% | [55.0%, 69.0%] | 10.0% | [5.0%, 16.0%] | −52.0 pp | **improved**"
        " | yes | no | high → low |"
    ) in md
    assert (
        "| over\\_refusal ↓ | 5.0% | [1.0%, 10.0%] | 5.0% | [1.0%, 10.0%] | 0 pp | unchanged"
        " | no | yes | low |" in md
    )
    assert "2 improved (2 significantly), 0 worsened (0 significantly), 7 unchanged" in md


def test_compare_parents_by_model_and_reject_mixed(tmp_path: Path, kit: Any) -> None:
    pa = kit.write_parent(tmp_path / "a", {"clip": kit.make_log(), "vlm": kit.make_log()})
    pb = kit.write_parent(
        tmp_path / "b",
        {"clip": kit.make_log(asr=0.1, asr_ci=(0.05, 0.16)), "other": kit.make_log()},
    )
    _, md_path = render_compare(pa, pb, out_md=tmp_path / "c.md", out_html=tmp_path / "c.html")
    md = md_path.read_text(encoding="utf-8")
    assert re.findall(r"^## (.*)$", md, re.M) == ["clip", "vlm", "other"]
    assert "## clip\n" in md and "1 improved (1 significantly)" in md
    assert md.count("Only one of the two runs has this model") == 2
    with pytest.raises(InputError, match="single run cannot be compared"):
        render_compare(pa, kit.write_run(tmp_path / "single", kit.make_log()))


def test_deltas_for_the_cli_table_and_json() -> None:
    from rich.console import Console

    from vlmtrust.report.compare import deltas_as_json, deltas_table

    a = _log({"p[bold]": [_m("asr", 0.62, 0.55, 0.69, hib=False, risk=RiskBand.HIGH, unit="%")]})
    b = _log(
        {
            "p[bold]": [_m("asr", 0.10, 0.05, 0.16, hib=False, risk=RiskBand.LOW, unit="%")],
            "q": [_m("new", 1.5)],
        }
    )
    deltas = compare_logs(a, b)
    console = Console(width=160, record=True, color_system=None)
    console.print(deltas_table(deltas))
    out = console.export_text()
    assert "p[bold]" in out  # shown literally, not parsed as rich markup
    assert "62.0% [55.0%, 69.0%]" in out and "10.0% [5.0%, 16.0%]" in out
    assert "−52.0 pp" in out and "improved *" in out and "high → low" in out
    assert "only in B" in out
    data = json.loads(deltas_as_json(deltas))
    assert data[0]["delta"] == pytest.approx(-0.52) and data[0]["significant"] is True
    assert data[0]["risk_a"] == "high" and data[1]["presence"] == "only_b"


def test_unfinished_run_says_how_to_resume(tmp_path: Path, kit: Any) -> None:
    run = kit.write_run(tmp_path / "run", kit.make_log(evil=False))
    (run / "results.json").unlink()
    with pytest.raises(InputError, match=r"has not finished .* `vlmtrust run --resume`"):
        render_report(run)


def test_unwritable_output_is_an_input_error(rendered_run: tuple[Path, Path, Path]) -> None:
    run, html, _ = rendered_run
    with pytest.raises(InputError, match="cannot write the report .* choose a writable path"):
        render_report(run, out_html=html / "inside-a-file.html")


# ---- request statistics ---------------------------------------------------------------------


def test_request_stats_table_in_html_and_markdown(tmp_path: Path, kit: Any) -> None:
    from vlmtrust.core.results import RequestStats, SlowRequest

    log = kit.make_log(evil=False)
    evil_id = "req-1<script>alert(1)</script>|x"
    log.results[0].requests = RequestStats(
        requests=40,
        attempts=57,
        retries={"429": 6, "5xx": 5, "timeout": 4, "connection": 1, "malformed": 1},
        errors=2,
        slowest=[
            SlowRequest(sample_id=evil_id, seconds=5.214, attempts=1),
            SlowRequest(sample_id="req-7", seconds=3.0, attempts=6, ok=False),
        ],
    )
    run = kit.write_run(tmp_path / "run", log)
    html_path, md_path = render_report(run)
    html, md = html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")
    first = section(html, log.results[0].probe.replace("/", "-"))
    assert "<h4>Requests</h4>" in first
    text = " ".join(" ".join(parse(first).text).split())
    assert "40 57 429: 6 · 5xx: 5 · timeout: 4 · connection: 1 · malformed: 1 2" in text
    assert f"{evil_id} 5.21 s 1 ok req-7 3.00 s 6 failed" in text
    assert "<script>" not in html
    # the other probes ran on no remote model: no requests table
    assert html.count("<h4>Requests</h4>") == 1
    assert "| 40 | 57 | 429: 6 · 5xx: 5 · timeout: 4 · connection: 1 · malformed: 1 | 2 |" in md
    assert r"| req-1&lt;script&gt;alert(1)&lt;/script&gt;\|x | 5.21 s | 1 | ok |" in md
    assert md.count("**Requests** (remote model)") == 1
    for t in _tables(md):
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in t}) == 1, t
