"""``docs/adding-a-probe.md`` followed step by step, on a temporary copy of the template.

The copy goes into a temporary package on ``sys.path`` (not into ``src/``), so the one import
line the doc tells you to change points there instead of ``vlmtrust.probes.<pillar>``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vlmtrust.core.probe import ProbeContext, registry
from vlmtrust.runner.engine import evaluate_probe

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "adding-a-probe.md"
EXAMPLES = ROOT / "docs" / "examples"

RENAMES = {
    '@probe("fairness/template_gap")': '@probe("fairness/occupation_gap")',
    "TemplateGapProbe": "OccupationGapProbe",
    "TemplateGapParams": "OccupationGapParams",
}
DOC_IMPORT = (
    "from vlmtrust.probes.fairness.occupation_gap import OccupationGapProbe as ProbeUnderTest"
)


def test_the_doc_names_the_files_renames_and_import_this_test_follows() -> None:
    doc = DOC.read_text()
    assert (
        "cp docs/examples/probe_template.py src/vlmtrust/probes/fairness/occupation_gap.py" in doc
    )
    assert "cp docs/examples/test_probe_template.py tests/probes/test_occupation_gap.py" in doc
    for old, new in RENAMES.items():
        assert f"`{old}`" in doc or f"`class {old}`" in doc, old
        assert new in doc, new
    assert DOC_IMPORT in doc
    assert "python -m pytest -q tests/probes/test_occupation_gap.py" in doc
    for path in re.findall(r"`((?:src|docs)/[\w/.-]+\.py)`", doc):
        assert (ROOT / path).exists() or "occupation_gap" in path, path


def _copy(tmp_path: Path) -> tuple[Path, Path]:
    """Step 1 and 2 of the doc: copy both files, rename, change the import line."""
    pkg = tmp_path / "contrib_probes"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    probe_src = (EXAMPLES / "probe_template.py").read_text()
    for old, new in RENAMES.items():
        assert old in probe_src, old
        probe_src = probe_src.replace(old, new)
    probe_file = pkg / "occupation_gap.py"
    probe_file.write_text(probe_src)

    test_src = (EXAMPLES / "test_probe_template.py").read_text()
    old_import = next(
        line for line in test_src.splitlines() if line.startswith("from probe_template import")
    )
    new_import = DOC_IMPORT.replace("vlmtrust.probes.fairness.", "contrib_probes.")
    test_file = tmp_path / "test_occupation_gap.py"
    test_file.write_text(test_src.replace(old_import, new_import))
    return probe_file, test_file


def test_copied_probe_registers_and_its_copied_test_passes(tmp_path: Path) -> None:
    probe_file, test_file = _copy(tmp_path)
    # Step 3: run the copied test.
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(tmp_path), str(ROOT / "src"), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 passed" in proc.stdout

    # And in this process: the renamed probe is in the registry and produces metrics.
    spec = importlib.util.spec_from_file_location("contrib_probes_occupation_gap", probe_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = registry()["fairness/occupation_gap"]
    assert cls is module.OccupationGapProbe and cls.pillar.value == "fairness"

    class Blind:
        """An encoder that sees nothing: every image gets the same embedding."""

        kind, spec, fingerprint, logit_scale = "dual", "toy:blind", "toy-blind", 100.0
        capabilities = cls.requires

        def embed_images(self, images: list[object]) -> np.ndarray:
            return np.tile(np.eye(6)[0], (len(images), 1))

        def embed_texts(self, texts: list[str]) -> np.ndarray:
            return np.eye(6)[: len(texts)]

    res = evaluate_probe(Blind(), cls({"n": 24}), ProbeContext(seed=0))
    acc = res.metric("accuracy", condition="group", group=None)
    assert acc.n == 24 and set(acc.groups) == {"round", "angular"}
    assert acc.value == pytest.approx(np.mean([r == "doctor" for r in _targets(cls)]))
    assert res.metric("accuracy_difference", condition="group").value is not None


def _targets(cls: type) -> list[str]:
    return [str(s.target) for s in cls({"n": 24}).samples(ProbeContext(seed=0))]
