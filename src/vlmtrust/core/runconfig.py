"""Run config files: what ``vlmtrust run --config FILE`` reads (TOML; YAML with PyYAML).

A config names the model, the probes, their parameters, the data, the seed and the limit::

    model = "reference:clip"
    probes = ["capability/zero_shot", "robustness/adversarial"]
    seed = 0
    limit = 200
    data = "./my_images"          # optional

    [params."robustness/adversarial"]
    eps = ["1/255", "2/255"]

Every key is optional; a value given on the command line wins over the file's. The file is
copied into the run folder (``config.toml`` / ``config.yaml``) so the run can be repeated.
"""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmtrust.core.errors import InputError

CONFIG_KEYS = ("model", "probes", "params", "data", "seed", "limit")
"""The keys a run config may hold."""

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class RunConfig:
    """A parsed run config; ``None`` / empty means the file does not set it."""

    path: Path
    text: str
    model: str | None = None
    probes: list[str] = field(default_factory=list)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: str | None = None
    seed: int | None = None
    limit: int | None = None

    @property
    def record_name(self) -> str:
        """The file name the config is recorded under in the run folder."""
        return "config.yaml" if self.path.suffix.lower() in YAML_SUFFIXES else "config.toml"


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() in YAML_SUFFIXES:
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise InputError(
                f"--config {path}: reading YAML needs PyYAML (pip install pyyaml); or write "
                "the config as TOML (config.toml)"
            ) from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"--config {path}: not valid YAML ({e})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(
            f"--config {path}: not valid TOML ({e}); a .yaml/.yml file is read as YAML"
        ) from None


def load_run_config(path: str | Path) -> RunConfig:
    """Read and check a run config file (``.toml``, or ``.yaml``/``.yml`` with PyYAML).

    Raises:
        InputError: the file is missing or unreadable, does not parse, has an unknown key
            (close matches named), or a value of the wrong type.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"--config {p}: cannot read it ({e.__class__.__name__}: {e})") from None
    raw = _parse(p, text)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InputError(f"--config {p}: expected a table of keys ({', '.join(CONFIG_KEYS)})")
    for key in raw:
        if key not in CONFIG_KEYS:
            close = difflib.get_close_matches(str(key), CONFIG_KEYS, n=1)
            mean = f" (did you mean {close[0]}?)" if close else ""
            raise InputError(
                f"--config {p}: unknown key {key!r}{mean}; the keys are {', '.join(CONFIG_KEYS)}"
            )

    def bad(key: str, want: str) -> InputError:
        return InputError(f"--config {p}: {key} = {raw[key]!r} should be {want}")

    model = raw.get("model")
    if model is not None and not isinstance(model, str):
        raise bad("model", 'a model spec string, e.g. "reference:clip"')
    probes = raw.get("probes", [])
    if isinstance(probes, str):
        probes = [probes]
    if not isinstance(probes, list) or not all(isinstance(x, str) for x in probes):
        raise bad("probes", "a list of probe names")
    params = raw.get("params", {})
    if not isinstance(params, dict) or not all(
        isinstance(k, str) and isinstance(v, dict) for k, v in params.items()
    ):
        raise bad("params", 'a table per probe, e.g. [params."capability/vqa"] n = 50')
    data = raw.get("data")
    if data is not None and not isinstance(data, str):
        raise bad("data", "a dataset spec string")
    ints: dict[str, int | None] = {}
    for key in ("seed", "limit"):
        v = raw.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
            raise bad(key, "an integer")
        ints[key] = v
    return RunConfig(
        path=p,
        text=text,
        model=model,
        probes=list(probes),
        params={k: dict(v) for k, v in params.items()},
        data=data,
        seed=ints["seed"],
        limit=ints["limit"],
    )
