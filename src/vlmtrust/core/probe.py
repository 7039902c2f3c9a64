"""The :class:`Probe` base class, the ``@probe`` registry and the :class:`ProbeContext`.

A probe owns *what to ask* (:meth:`Probe.samples`), *how to score one batch*
(:meth:`Probe.evaluate`) and *how to summarise* (:meth:`Probe.aggregate`). The runner owns
batching, caching, resume, progress and writing. Probes never open files or call HTTP.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel

from vlmtrust.core.limits import DataLimits
from vlmtrust.core.params import Params, validate_params
from vlmtrust.core.plugins import PROBES_GROUP
from vlmtrust.core.registry import Registry
from vlmtrust.core.results import Example, MetricResult, Plot, Record
from vlmtrust.core.sample import Sample
from vlmtrust.core.types import Capability, Pillar

if TYPE_CHECKING:
    from vlmtrust.core.model import Model


@dataclass
class ProbeContext:
    """What a probe may use besides the model: seed, data location, shared settings."""

    seed: int = 0
    data: str | None = None
    """Dataset spec for probes that read user data (folder, manifest, ``hf-disk:`` path)."""
    limit: int | None = None
    """Cap on samples per probe (quick runs); ``None`` = the probe's default size."""
    work_dir: Path | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    data_limits: DataLimits = field(default_factory=DataLimits)
    """What the data loaders accept (image pixels, aspect ratio, manifest line length)."""
    image_size: int | None = None
    """Side in pixels at which SynthWorld scenes are rendered for the model under test: the
    runner sets it to a dual encoder's own input resolution, so its images reach the model
    without resizing; ``None`` = SynthWorld's default (64)."""

    # -- data handed in by the runner (the only reader of --data) ------------------------
    datasets: Callable[[str], Any] | None = None
    """Opens a dataset spec (``data`` or one a probe's params name) once per run: a
    re-iterable stream of :class:`Sample` items with lazily-decoded images, and data-error
    markers, with ``class_names()``. Set by the runner; probes read user data only through it
    (:mod:`vlmtrust.probes._data`)."""

    def rng(self, *names: str) -> np.random.Generator:
        """A generator seeded from the run seed and the given names (stable per purpose)."""
        h = hashlib.sha256(("|".join((str(self.seed), *names))).encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    def size(self, default: int) -> int:
        """The number of samples to use: ``default`` unless ``limit`` caps it."""
        return default if self.limit is None else min(default, self.limit)


class Probe(abc.ABC):
    """Base class of every probe. Register subclasses with :func:`probe`.

    Example:
        >>> from vlmtrust.core.probe import Probe, probe, Params
        >>> @probe("capability/example_doc")
        ... class Example(Probe):
        ...     pillar = Pillar.CAPABILITY
        ...     requires = Capability.EMBED
        ...     def samples(self, ctx): return []
        ...     def evaluate(self, model, batch, ctx): return []
        ...     def aggregate(self, records, ctx): return []
        >>> Example.name
        'capability/example_doc'
    """

    name: ClassVar[str]
    pillar: ClassVar[Pillar]
    version: ClassVar[int] = 1
    requires: ClassVar[Capability]
    """Capabilities the model must have (all of them)."""
    requires_any: ClassVar[Capability] = Capability.NONE
    """If set, the model must also have at least one of these (e.g. EMBED or GENERATE)."""
    Params: ClassVar[type[BaseModel]] = Params
    batch_size: ClassVar[int] = 32
    description: ClassVar[str] = ""
    parallel_batches: ClassVar[bool] = False
    """True when :meth:`evaluate` may run on several batches at once, from different threads
    (it keeps no mutable state of its own). The runner then keeps several batches in flight
    for models that declare ``batches_in_flight`` (remote endpoints)."""

    def __init__(self, params: BaseModel | dict[str, Any] | None = None) -> None:
        self.params = validate_params(
            self.Params, params, f"probe {self.name}", "see `vlmtrust list probes --verbose`"
        )

    @classmethod
    def defaults_for(cls, kind: str) -> dict[str, Any]:
        """Parameter defaults for a model kind (``dual``/``generative``); user values win.

        Lets a probe keep the default audit fast where one kind is much slower to query.
        """
        return {}

    @classmethod
    def supports(cls, capabilities: Capability) -> bool:
        """True when a model with ``capabilities`` can run this probe."""
        if cls.requires_any and not (cls.requires_any & capabilities):
            return False
        return (cls.requires & capabilities) == cls.requires

    def applicable(self, model: Model) -> bool:
        """Whether this probe can run on ``model`` (override :meth:`unsupported` to refine)."""
        return self.unsupported(model) is None

    def unsupported(self, model: Model) -> str | None:
        """Why this probe cannot run on ``model`` (one line naming the fix), or None."""
        if self.supports(model.capabilities):
            return None
        have = ", ".join(model.capabilities.names()).upper() or "nothing"
        need = [*self.requires.names()]
        if self.requires_any:
            need.append(" or ".join(self.requires_any.names()))
        return (
            f"probe {self.name} needs {', '.join(need).upper()}; model {model.spec} has {have} "
            "— pick a model of the right kind or see `vlmtrust list probes`"
        )

    def n_samples(self, ctx: ProbeContext) -> int | None:
        """How many items :meth:`samples` yields for ``ctx``: the progress bar's total.

        Every built-in probe declares it (computed from its parameters, without drawing the
        samples); ``None`` means unknown (the bar then shows a count and a rate, no ETA).
        """
        return None

    @abc.abstractmethod
    def samples(self, ctx: ProbeContext) -> Iterable[Sample]:
        """The samples to evaluate, lazily. Ids must be unique and stable for a seed."""

    @abc.abstractmethod
    def evaluate(self, model: Any, batch: Sequence[Sample], ctx: ProbeContext) -> list[Record]:
        """Run the model on a batch and score each sample (one :class:`Record` per sample).

        Images in ``batch`` are already decoded and validated. Raise to fail the batch: the
        runner retries sample by sample so one bad sample becomes one error record.
        """

    @abc.abstractmethod
    def aggregate(self, records: Sequence[Record], ctx: ProbeContext) -> list[MetricResult]:
        """Summarise the successful records (in sample order) into metrics."""

    def check(self, ctx: ProbeContext) -> None:
        """Refuse bad input that is known before any model loads (default: none).

        Raise :class:`~vlmtrust.core.errors.InputError` (one line). :func:`vlmtrust.audit`
        calls it for the probes a run names (``--probe``, ``--param``) before it loads the
        model; the data is not read here (the runner reads ``--data`` later).
        """
        return None

    def plots(self, records: Sequence[Record], ctx: ProbeContext) -> list[Plot]:
        """Plots for the report (default: none)."""
        return []

    def examples(self, records: Sequence[Record], ctx: ProbeContext) -> list[Example]:
        """Worst cases / illustrative samples; images are filled in by the runner."""
        return []

    def notes(self, records: Sequence[Record], ctx: ProbeContext) -> list[str]:
        """Warnings about the run shown with the result (default: none), e.g. a confounded split."""
        return []

    def record(self, sample: Sample, index: int = 0, **kw: Any) -> Record:
        """Convenience: a :class:`Record` for ``sample`` carrying its attributes."""
        return Record(sample_id=sample.id, index=index, attributes=dict(sample.attributes), **kw)


_P = TypeVar("_P", bound=type[Probe])
_REGISTRY: Registry[type[Probe]] = Registry("probe", "vlmtrust.probes", PROBES_GROUP, Probe)


def probe(name: str) -> Callable[[_P], _P]:
    """Class decorator registering a probe under ``name`` (``pillar/short_name``)."""
    return _REGISTRY.decorator(name)  # type: ignore[return-value]


# The registry's own methods, under the names the rest of the package uses: ``registry()``
# (every probe by name), ``get_probe(name)`` (one, or an error with close matches) and
# ``load_plugins()`` (entry points installed since the first look-up).
registry = _REGISTRY.all
get_probe = _REGISTRY.get
load_plugins = _REGISTRY.load_plugins
