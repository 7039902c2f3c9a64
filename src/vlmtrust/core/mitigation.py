"""The :class:`Mitigation` base class and the ``@mitigation`` registry.

A mitigation answers a probe's finding. ``kind`` says what it produces: a new model directory
(``model``), an inference-time wrapper spec (``wrapper``) or a cleaned dataset (``data``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel

from vlmtrust.core.limits import DataLimits
from vlmtrust.core.params import Params, validate_params
from vlmtrust.core.plugins import MITIGATIONS_GROUP
from vlmtrust.core.registry import Registry
from vlmtrust.core.types import Capability, Pillar


@dataclass(frozen=True)
class HardenedArtifact:
    """What a mitigation produced: ``spec`` is loadable with ``--model``."""

    spec: str
    out_dir: Path
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class MitigationContext:
    """Shared settings for a mitigation run."""

    seed: int = 0
    out_dir: Path = Path("hardened")
    data: str | None = None
    quick: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    data_limits: DataLimits = field(default_factory=DataLimits)
    """What the data loaders accept when reading ``data`` (see :class:`DataLimits`)."""


class Mitigation(abc.ABC):
    """Base class of every mitigation. Register subclasses with :func:`mitigation`."""

    name: ClassVar[str]
    pillar: ClassVar[Pillar]
    kind: ClassVar[Literal["model", "wrapper", "data"]]
    requires: ClassVar[Capability]
    Params: ClassVar[type[BaseModel]] = Params
    description: ClassVar[str] = ""

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        self.params = validate_params(
            self.Params, params, f"mitigation {self.name}", "see `vlmtrust list mitigations -v`"
        )

    @abc.abstractmethod
    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Harden ``model``; write the result under ``ctx.out_dir``."""


_M = TypeVar("_M", bound=type[Mitigation])
_REGISTRY: Registry[type[Mitigation]] = Registry(
    "mitigation", "vlmtrust.mitigations", MITIGATIONS_GROUP, Mitigation
)


def mitigation(name: str) -> Callable[[_M], _M]:
    """Class decorator registering a mitigation under ``name`` (``pillar/short_name``)."""
    return _REGISTRY.decorator(name)  # type: ignore[return-value]


# The registry's own methods, under the names the rest of the package uses: ``registry()``
# (every mitigation by name), ``get_mitigation(name)`` (one, or an error with close matches) and
# ``load_plugins()`` (entry points installed since the first look-up).
registry = _REGISTRY.all
get_mitigation = _REGISTRY.get
load_plugins = _REGISTRY.load_plugins


WRAPPER_FILE = "wrapper.json"


class WrapperMitigation(Mitigation):
    """A mitigation applied at inference time around an unchanged model.

    Subclasses name the wrapped-model class in :attr:`wrapper` or override :meth:`wrap`.
    :meth:`apply` records the base model spec and the parameters in ``wrapper.json``;
    ``hardened:DIR`` loads the base model and wraps it again.
    """

    kind: ClassVar[Literal["model", "wrapper", "data"]] = "wrapper"
    wrapper: ClassVar[type[Any] | None] = None
    """The wrapped-model class, built as ``wrapper(model, params)`` by :meth:`wrap`."""
    source_dir: Path | None = None
    """The folder of ``wrapper.json`` when ``hardened:DIR`` loads the wrapper (files a wrapper
    saved beside it, e.g. trained weights, are read from there); None otherwise."""

    def wrap(self, model: Any) -> Any:
        """Return a model with the same surface as ``model``, hardened.

        Raises:
            NotImplementedError: the subclass sets no :attr:`wrapper` and does not override it.
        """
        if self.wrapper is None:
            raise NotImplementedError(f"{self.name}: set `wrapper` or override wrap()")
        return self.wrapper(model, self.params)

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Compute anything the wrapper needs from data (e.g. a calibrated threshold).

        Returns extra parameters stored in ``wrapper.json`` (default: none).
        """
        return {}

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Write ``wrapper.json`` under ``ctx.out_dir``; the spec is ``hardened:DIR``."""
        import json

        extra = self.prepare(model, ctx)
        params = {**self.params.model_dump(mode="json"), **extra}
        if extra:
            self.params = self.Params(**params)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        payload = {"mitigation": self.name, "base": model.spec, "params": params}
        (ctx.out_dir / WRAPPER_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        return HardenedArtifact(
            spec=f"hardened:{ctx.out_dir}", out_dir=ctx.out_dir, summary={"wrapper": payload}
        )
