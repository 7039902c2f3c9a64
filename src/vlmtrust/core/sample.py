"""The unit of probe work: :class:`Sample` and the :class:`ImageRef` it points at."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vlmtrust.core.limits import DataLimits


def image_digest(image: Image.Image) -> str:
    """Stable content hash of a decoded image (mode, size and pixels)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}|{image.size[0]}x{image.size[1]}|".encode())
    h.update(image.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class ImageRef:
    """A reference to one image: a file on disk or an in-memory image.

    Files are decoded lazily through :func:`vlmtrust.core.images.load_image`, the one loader
    that enforces the pixel and aspect-ratio limits (``limits``, default :class:`DataLimits`)
    and normalises modes and orientation. In-memory images are assumed to be produced by the
    project's own code (generators, attacks) and are used as is.
    """

    path: str | None = None
    image: Image.Image | None = field(default=None, compare=False, repr=False)
    label: str = ""
    limits: DataLimits | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_image(cls, image: Image.Image, label: str = "") -> ImageRef:
        """Wrap an in-memory image."""
        return cls(path=None, image=image, label=label)

    @classmethod
    def from_path(cls, path: str | Path, limits: DataLimits | None = None) -> ImageRef:
        """Reference a file on disk (decoded later, safely, within ``limits``)."""
        return cls(path=str(path), image=None, label=str(path), limits=limits)

    def load(self) -> Image.Image:
        """Decode the image (RGB). Raises :class:`~vlmtrust.core.errors.ImageLoadError`."""
        if self.image is not None:
            return self.image
        if self.path is None:
            raise ValueError("ImageRef has neither a path nor an image")
        from vlmtrust.core.images import load_image

        limits = self.limits or DataLimits()
        return load_image(
            self.path,
            max_pixels=limits.max_image_pixels,
            max_aspect_ratio=limits.max_aspect_ratio,
        )

    def loaded(self) -> ImageRef:
        """Return an in-memory copy (decodes a file reference once)."""
        if self.image is not None:
            return self
        return ImageRef(
            path=self.path,
            image=self.load(),
            label=self.label or (self.path or ""),
            limits=self.limits,
        )

    @property
    def display_name(self) -> str:
        """Name shown in errors and reports."""
        return self.label or self.path or "<in-memory image>"


@dataclass(frozen=True)
class Sample:
    """One unit of probe work. Its ``id`` is stable across runs (cache keys and ``--resume``).

    Attributes:
        id: unique within a probe run, stable for a given seed and params.
        images: the images the model sees.
        prompt: text prompt (generative probes) or query text (dual probes).
        target: expected answer or label, if any.
        attributes: group and control features (fairness breakdowns, topics, severities).
        metadata: anything else the probe needs to score (JSON-serialisable).
    """

    id: str
    images: tuple[ImageRef, ...] = ()
    prompt: str | None = None
    target: str | None = None
    attributes: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def with_images(self, images: tuple[ImageRef, ...]) -> Sample:
        """Copy with other images."""
        return dataclasses.replace(self, images=images)

    def pil_images(self) -> list[Image.Image]:
        """Decoded images (the runner has already validated them)."""
        return [ref.load() for ref in self.images]
