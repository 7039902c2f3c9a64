"""Third-party probes and mitigations load from the vlmtrust.probes / .mitigations groups."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vlmtrust.core.mitigation as mitigation_mod
import vlmtrust.core.probe as probe_mod
from vlmtrust.cli import app

PLUGIN_MODULE = textwrap.dedent(
    '''
    """A third-party probe package (test fixture)."""
    from vlmtrust.core.probe import Probe, probe
    from vlmtrust.core.types import Capability, Pillar


    class _Base(Probe):
        pillar = Pillar.CAPABILITY
        requires = Capability.GENERATE
        description = "a plug-in probe"

        def samples(self, ctx):
            return []

        def evaluate(self, model, batch, ctx):
            return []

        def aggregate(self, records, ctx):
            return []


    @probe("capability/plugin_demo")
    class PluginDemo(_Base):
        pass


    class Undecorated(_Base):
        """Registered under its entry point's name."""
    '''
)

MITIGATION_MODULE = textwrap.dedent(
    """
    from vlmtrust.core.mitigation import Mitigation, mitigation
    from vlmtrust.core.types import Capability, Pillar


    @mitigation("safety/plugin_demo")
    class PluginGuard(Mitigation):
        pillar = Pillar.SAFETY
        kind = "wrapper"
        requires = Capability.GENERATE
        description = "a plug-in mitigation"

        def apply(self, model, ctx):
            raise NotImplementedError
    """
)

MODULES = ("vlmtrust_plugin_demo", "vlmtrust_plugin_demo.guard", "vlmtrust_plugin_missing")


def _dist_info(site: Path, name: str, version: str, entry_points: str) -> None:
    d = site / f"{name.replace('-', '_')}-{version}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    (d / "entry_points.txt").write_text(textwrap.dedent(entry_points), encoding="utf-8")


def _package(root: Path) -> None:
    pkg = root / "vlmtrust_plugin_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    (pkg / "guard.py").write_text(MITIGATION_MODULE, encoding="utf-8")


@pytest.fixture()
def fresh_registries(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Built-ins loaded, plug-ins not yet; every change undone afterwards."""
    probe_mod.registry()
    mitigation_mod.registry()
    for mod in (probe_mod, mitigation_mod):
        reg = mod._REGISTRY
        monkeypatch.setattr(reg, "entries", dict(reg.entries))
        monkeypatch.setattr(reg, "plugins_loaded", False)
        monkeypatch.setattr(reg, "seen", set())
    yield
    for name in MODULES:
        sys.modules.pop(name, None)


def _site_with_plugins(tmp_path: Path) -> Path:
    """What pip would leave in a target directory: the package and its ``.dist-info``."""
    site = tmp_path / "site"
    _package(site)
    _dist_info(
        site,
        "vlmtrust-plugin-demo",
        "0.1",
        """
        [vlmtrust.probes]
        demo = vlmtrust_plugin_demo
        extra = vlmtrust_plugin_demo:Undecorated

        [vlmtrust.mitigations]
        guard = vlmtrust_plugin_demo.guard
        """,
    )
    _dist_info(
        site,
        "vlmtrust-broken-plugin",
        "2.0",
        """
        [vlmtrust.probes]
        broken = vlmtrust_plugin_missing
        notaprobe = vlmtrust_plugin_demo.guard:PluginGuard
        """,
    )
    return site


@pytest.mark.usefixtures("fresh_registries")
def test_entry_points_register_probes_and_mitigations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.syspath_prepend(str(_site_with_plugins(tmp_path)))
    n_builtin = len(probe_mod._REGISTRY)
    with caplog.at_level(logging.WARNING, logger="vlmtrust"):
        reg = probe_mod.registry()
        mreg = mitigation_mod.registry()
    assert reg["capability/plugin_demo"].description == "a plug-in probe"
    assert reg["extra"].__name__ == "Undecorated" and reg["extra"].name == "extra"
    assert len(reg) == n_builtin + 2  # the broken ones are skipped, the rest loads
    assert "safety/plugin_demo" in mreg
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("\n" not in line for line in lines)
    assert all("vlmtrust-broken-plugin 2.0" in line for line in lines)
    assert any("'broken'" in line and "ModuleNotFoundError" in line for line in lines)
    assert any("'notaprobe'" in line and "not a Probe subclass" in line for line in lines)

    probe_mod.registry()  # loaded once: no second round of warnings
    assert len(caplog.records) == 2

    res = CliRunner().invoke(app, ["list", "probes"])
    assert res.exit_code == 0, res.output
    assert any(
        line.startswith("capability/plugin_demo") and "a plug-in probe" in line
        for line in res.output.splitlines()
    )
    res = CliRunner().invoke(app, ["list", "mitigations"])
    assert "safety/plugin_demo" in res.output


@pytest.mark.usefixtures("fresh_registries")
def test_pip_installed_plugin_is_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real ``pyproject.toml`` built and installed by pip (offline, into a target dir)."""
    pytest.importorskip("setuptools")
    src = tmp_path / "src"
    _package(src / "src")
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "vlmtrust-plugin-demo"
            version = "0.1"

            [project.entry-points."vlmtrust.probes"]
            demo = "vlmtrust_plugin_demo"
            """
        ),
        encoding="utf-8",
    )
    target = tmp_path / "target"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--target", str(target), str(src)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    monkeypatch.syspath_prepend(str(target))
    assert "capability/plugin_demo" in probe_mod.registry()
