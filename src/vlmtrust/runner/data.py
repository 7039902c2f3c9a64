"""The runner's data: the one reader of ``--data``, and the thumbnails kept from each decode.

:class:`RunData` opens every dataset spec a run uses (``--data`` and any a probe's params
name, e.g. ``ood_data``) once, and hands probes a re-iterable :class:`OpenDataset` through
``ProbeContext.datasets``. Iterating it streams :class:`~vlmtrust.core.sample.Sample` items
whose images are *not* decoded yet (a probe or the runner decodes each one once, when it is
reached) and data-error markers, which the runner turns into error records.

:class:`Thumbnails` keeps, for every sample the runner decoded, the report preview made from
that one decode, so the report's example images need no second pass over the data.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from PIL import Image

from vlmtrust.core.limits import DataLimits
from vlmtrust.core.probe import ProbeContext
from vlmtrust.core.results import Example
from vlmtrust.core.sample import ImageRef, Sample

log = logging.getLogger("vlmtrust")


class OpenDataset:
    """One opened dataset: re-iterable, lazily decoded, its class names read once.

    Images are decoded within ``limits``; warnings about the dataset as a whole (keys kept
    under ``metadata``...) are logged once.
    """

    def __init__(self, spec: str, limits: DataLimits | None = None) -> None:
        from vlmtrust.data.datasets import DataSource

        self.spec = spec
        self._source = DataSource.open(spec, limits=limits)
        self._classes: list[str] | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter(self._source)

    def class_names(self) -> list[str]:
        """The dataset's label set (see :func:`vlmtrust.data.datasets.class_names`)."""
        if self._classes is None:
            self._classes = self._source.class_names()
        return list(self._classes)


class RunData:
    """Opens each dataset spec once per run; the callable a :class:`ProbeContext` carries.

    Every dataset is read within ``limits`` (default :class:`DataLimits`).
    """

    def __init__(self, limits: DataLimits | None = None) -> None:
        self.limits = limits or DataLimits()
        self._open: dict[str, OpenDataset] = {}

    def __call__(self, spec: str) -> OpenDataset:
        """The opened dataset ``spec`` (opened on first use)."""
        if spec not in self._open:
            self._open[spec] = OpenDataset(spec, self.limits)
        return self._open[spec]


def with_data(ctx: ProbeContext) -> ProbeContext:
    """``ctx`` with the runner's dataset reader attached (kept if one is there).

    A reader it attaches reads within ``ctx.data_limits``.
    """
    if ctx.datasets is not None:
        return ctx
    return replace(ctx, datasets=RunData(ctx.data_limits))


class Thumbnails:
    """Report previews of a probe's samples, made from the runner's one decode of each."""

    MAX_SIDE = 160
    """Longest side of a preview (:func:`vlmtrust.core.images.thumbnail`)."""

    def __init__(self) -> None:
        self._thumbs: dict[str, Image.Image] = {}
        self._refs: dict[str, ImageRef] = {}

    def keep(self, original: Sample, decoded: Sample) -> None:
        """Keep what the preview of a decoded sample's first image needs.

        A file-backed image keeps only its reference (decoded again only if the report shows
        it), so memory does not grow with the number of samples. An image that exists only in
        memory keeps a small thumbnail; one no larger than two thumbnails (e.g. a 224-px
        render) is kept as it is and its thumbnail made only if the report shows it, the same
        pixels either way. A preview that cannot be made is left out (it is cosmetic: the
        sample itself is still evaluated).
        """
        if not decoded.images or decoded.images[0].image is None:
            return
        if original.images and original.images[0].path is not None:
            self._refs[original.id] = original.images[0]
            return
        from vlmtrust.core.images import thumbnail

        image = decoded.images[0].image
        if image.mode == "RGB" and image.width * image.height <= 2 * self.MAX_SIDE**2:
            self._thumbs[decoded.id] = image
            return
        try:
            self._thumbs[decoded.id] = thumbnail(image, self.MAX_SIDE)
        except Exception:  # a preview must never fail the probe
            log.debug("no preview for sample %s", decoded.id, exc_info=True)

    def skip(self, sample: Sample) -> None:
        """Remember a sample not decoded in this run (``--resume``): decoded only if shown."""
        if sample.images:
            self._refs[sample.id] = sample.images[0]

    def fill(self, examples: list[Example]) -> None:
        """Set the image of every example that has none and whose sample was seen."""
        from vlmtrust.core.images import png_b64, thumbnail

        for e in examples:
            if e.image_png_b64 is not None:
                continue
            with contextlib.suppress(Exception):  # a preview must never fail the probe
                kept = self._thumbs.get(e.sample_id)
                if kept is None and e.sample_id in self._refs:
                    kept = self._refs[e.sample_id].load()
                if kept is not None:
                    # A thumbnail's thumbnail is the same pixels.
                    e.image_png_b64 = png_b64(thumbnail(kept, self.MAX_SIDE))
