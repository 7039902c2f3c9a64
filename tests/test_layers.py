"""Import layering: layers only point down (DESIGN.md, "Layers only point down").

Every module under ``src/vlmtrust/`` is parsed with :mod:`ast`; every import counts — top-level,
function-level, ``if TYPE_CHECKING:`` blocks, relative imports, and
``importlib.import_module("vlmtrust...")`` calls with a literal name. A module's layer is its
first package under ``vlmtrust`` (``vlmtrust.probes.safety.figstep`` is in ``probes``).

The layers, bottom to top::

    core                                  imports nothing else of vlmtrust
    resources, schema                     packaged data (schema may read core.results)
    models, attacks, data, judges         core, plus the minimal set today's code needs:
                                            data -> attacks   (synthworld renders FigStep scenes
                                                               with the one typography renderer)
                                            judges -> models  (the LLM judge loads its model
                                                               through load_model)
                                          models and attacks import only core
    probes, mitigations, reference        the layers above; probes and mitigations never import
                                          each other; reference (training code for the shipped
                                          models) may use mitigations (MixGen trains the
                                          reference CLIP) but not probes
    runner                                all of the above
    crypto                                (beside the probes) the second layer and below:
                                          encrypted and secret-shared scoring; the probes may
                                          use it (privacy/encrypted_zero_shot)
    federated                             (beside the runner) the probes and below: it fine-tunes
                                          with Flower and measures with the privacy probes
    report                                runner and below, never api / cli
    api                                   report and below
    cli                                   everything
    vlmtrust (the root package)           the public API on top; any module may read
                                          ``vlmtrust.__version__``

The registries (``core.registry``) import the built-in ``probes`` / ``mitigations`` packages by
name (``importlib.import_module(self.package)``) to register them — plug-in discovery, the same
path third-party entry points take, not a dependency on their code; the ast check does not see
such dynamic imports, so :data:`DISCOVERY` is empty.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "vlmtrust"

_L1 = {"core", "resources", "schema"}
_L2 = _L1 | {"models", "attacks", "data", "judges"}
_L3 = _L2 | {"probes", "mitigations", "reference"}
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "resources": set(),
    "schema": {"core"},
    "models": {"core", "resources", "schema"},
    "attacks": {"core", "resources", "schema"},
    "data": {"core", "resources", "schema", "attacks"},
    "judges": {"core", "resources", "schema", "models"},
    "probes": _L2 | {"crypto"},
    "mitigations": _L2,
    "reference": _L2 | {"mitigations"},
    "crypto": _L2,
    "federated": _L3,
    "runner": _L3,
    "report": _L3 | {"runner"},
    "api": _L3 | {"runner", "report"},
    "cli": _L3 | {"runner", "report", "api", "crypto", "federated"},
}
"""Layer -> the other layers its modules may import."""

ROOT_NAMES_OK = {"__version__"}
"""Names any module may import from the root package ``vlmtrust``."""

DISCOVERY: set[tuple[str, str]] = set()
"""(module, imported): static imports allowed as plug-in discovery (none since core.registry)."""

# Known violations still to fix; test_known_pending_still_needed fails as soon as an entry is
# no longer a violation, so the set only shrinks.
KNOWN_PENDING: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "<root>"


def _imports(path: Path) -> Iterator[tuple[str, set[str]]]:
    """``(imported module, names taken from it)`` for every import in ``path``."""
    text = path.read_text(encoding="utf-8")
    yield from _imports_of(text, _module_name(path), is_package=path.name == "__init__.py")


def _imports_of(source: str, module: str, *, is_package: bool) -> Iterator[tuple[str, set[str]]]:
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source, module)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, set()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            names = {a.name for a in node.names}
            yield target, names
            # ``from vlmtrust.pkg import submodule`` imports vlmtrust.pkg.submodule too.
            for n in names:
                yield f"{target}.{n}", {"<submodule?>"}
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value, set()


def _existing(module: str) -> bool:
    rel = Path(*module.split("."))
    return (SRC / rel).with_suffix(".py").is_file() or (SRC / rel / "__init__.py").is_file()


def violations() -> list[tuple[str, str, str]]:
    """``(module, imported, rule)`` for every import that points up or sideways."""
    out: set[tuple[str, str, str]] = set()
    for path in sorted(PKG.rglob("*.py")):
        module = _module_name(path)
        src_layer = _layer(module)
        if src_layer == "<root>":
            continue  # the public API sits on top of everything
        for target, names in _imports(path):
            if target != "vlmtrust" and not target.startswith("vlmtrust."):
                continue
            if "<submodule?>" in names and not _existing(target):
                continue  # a name imported from a module, not a submodule
            dst = _layer(target)
            if dst == src_layer or (module, target) in DISCOVERY:
                continue
            if dst == "<root>":
                if names and names <= ROOT_NAMES_OK:
                    continue
                rule = f"{src_layer} may import only {sorted(ROOT_NAMES_OK)} from vlmtrust"
            elif dst in ALLOWED.get(src_layer, set()):
                continue
            else:
                allowed = ", ".join(sorted(ALLOWED.get(src_layer, set()))) or "nothing else"
                rule = f"{src_layer} may import {allowed}; not {dst}"
            out.add((module, target, rule))
    return sorted(out)


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    missing = sorted((packages | modules) - set(ALLOWED))
    assert not missing, f"give these a layer in tests/test_layers.py ALLOWED: {missing}"


def test_layers_point_down() -> None:
    found = [v for v in violations() if (v[0], v[1]) not in KNOWN_PENDING]
    for module, imported, rule in found:
        print(f"{module} -> {imported} ({rule})")
    assert not found, "layering violations:\n" + "\n".join(f"{m} -> {i} ({r})" for m, i, r in found)


def test_known_pending_still_needed() -> None:
    current = {(m, i) for m, i, _ in violations()}
    stale = sorted(KNOWN_PENDING - current)
    assert not stale, f"fixed: remove these from KNOWN_PENDING in tests/test_layers.py: {stale}"


def test_checker_sees_function_level_and_type_checking_imports() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from vlmtrust.report import html\n"
        "def f():\n    import vlmtrust.cli\n"
        "    from . import sibling\n"
        "    importlib.import_module('vlmtrust.api')\n"
    )
    seen = {t for t, _ in _imports_of(source, "vlmtrust.core.m", is_package=False)}
    assert {"vlmtrust.report", "vlmtrust.cli", "vlmtrust.core.sibling", "vlmtrust.api"} <= seen
