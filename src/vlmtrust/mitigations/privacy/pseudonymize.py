"""``privacy/pseudonymize``: consistent surrogates for the PII of an image–text manifest.

A data mitigation (no model). Every line of the JSONL manifest is read; PII is found without
ground truth by :class:`~vlmtrust.mitigations.privacy._pii_text.PiiTextFinder` (Presidio's
pattern recognisers plus rules for names, street addresses, short phones and ID numbers; no
spaCy model, nothing downloaded):

* **text** — the string values under :data:`TEXT_KEYS` (top level and in ``metadata``) go
  through Presidio's ``AnonymizerEngine`` with a ``custom`` operator that returns the entity's
  **surrogate**: one fictional value per distinct original (the same name gives the same fake
  name on every line, in captions, prompts and images alike), drawn with Faker from ``seed``
  and never equal to another entity's surrogate or to an original met before it;
* **images** — the images of each line (the first of ``image``/``file_name``/``path``/
  ``image_path``, and every path in ``images``, relative to the manifest) are read offline
  with rapidocr; the PII part of each text box is ``replace``-d (painted over in the box's
  background colour and the surrogate written in its ink colour), ``blur``-red (Gaussian) or
  ``black``-ed out.

The output folder holds ``manifest.jsonl`` (the rewritten lines; images under the same
relative paths: changed ones re-encoded in the format their extension names, unchanged ones
copied), a
``pseudonymize_report.json`` with counts per PII type (replacements in text and in images,
distinct entities) and the lines whose images were missing or unreadable (an unreadable image
is not copied: it could hold PII nobody checked), and ``hardening.json``. The original →
surrogate table is never written (it would undo the pseudonymisation).

Run: ``vlmtrust harden --model none --mitigation privacy/pseudonymize --data MANIFEST --out
DIR``. Needs the ``privacy``, ``safety`` (rapidocr) and ``data`` (faker) extras.
"""

from __future__ import annotations

import importlib
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from PIL import Image, ImageDraw, ImageFilter, ImageFont
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import HardenedArtifact, Mitigation, MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.core.types import Capability, Pillar
from vlmtrust.judges.pii import PII_KINDS, normalise
from vlmtrust.mitigations._train import CLEANED_MANIFEST, data_manifest, write_cleaned
from vlmtrust.mitigations.privacy._pii_text import (
    PiiBox,
    PiiKind,
    PiiSpan,
    PiiTextFinder,
    image_pii_boxes,
    kinds_field,
)

MANIFEST_NAME = CLEANED_MANIFEST
REPORT_NAME = "pseudonymize_report.json"
TEXT_KEYS = ("caption", "text", "prompt", "question", "answer", "target")
"""Manifest keys whose string values are pseudonymised (top level and inside ``metadata``)."""
IMAGE_KEYS = ("image", "file_name", "path", "image_path")
"""Manifest keys read as a line's image path, first present wins (then ``images[0]``)."""


class PseudonymizeParams(Params):
    """Parameters of ``privacy/pseudonymize``."""

    kinds: list[PiiKind] = kinds_field("replace")
    images: Literal["replace", "blur", "black", "keep"] = Field(
        "replace", description="what happens to PII text in images (keep: images untouched)"
    )
    threshold: float = Field(0.3, ge=0.0, le=1.0, description="minimum Presidio score")
    ocr_max_side: int = Field(512, ge=64, le=2048, description="OCR input size (longer side)")
    blur_radius: float = Field(6.0, gt=0.0, le=64.0, description="Gaussian radius for blur")
    pad: int = Field(2, ge=0, le=32, description="pixels added around each replaced box")


class Surrogates:
    """One fictional value per distinct original, per PII type (deterministic in ``seed``).

    Example:
        >>> s = Surrogates(seed=0)
        >>> s.get("name", "Ada Park") == s.get("name", "ada  park") != "Ada Park"
        True
    """

    def __init__(self, seed: int = 0) -> None:
        try:
            from faker import Faker
        except ImportError:
            raise InputError(
                'privacy/pseudonymize draws surrogates with Faker: pip install "vlmtrust[data]"'
            ) from None
        self._fake = Faker("en_US")
        self._fake.seed_instance(seed)
        self._table: dict[tuple[str, str], str] = {}
        self._used: set[str] = set()
        self._originals: set[str] = set()

    def _draw(self, kind: str) -> str:
        f = self._fake
        if kind == "name":
            return f"{f.first_name()} {f.last_name()}"
        if kind == "email":
            return f"{f.first_name().lower()}.{f.last_name().lower()}@example.net"
        if kind == "phone":
            return str(f.numerify("555-####"))
        if kind == "address":
            return str(f.street_address())
        if kind == "id_number":
            return str(f.bothify("ID-######"))
        return str(f.date_of_birth(minimum_age=18, maximum_age=90).isoformat())

    def get(self, kind: str, original: str) -> str:
        """The surrogate of ``original`` (compared NFKC-case-folded, spaces collapsed)."""
        key = (kind, " ".join(normalise(original).split()))
        if key not in self._table:
            self._originals.add(key[1])
            for _ in range(1000):
                value = self._draw(kind)
                v = " ".join(normalise(value).split())
                if value not in self._used and v not in self._originals:
                    break
            self._used.add(value)
            self._table[key] = value
        return self._table[key]

    def distinct(self) -> dict[str, int]:
        """How many distinct originals were replaced, per PII type."""
        return dict(Counter(kind for kind, _ in self._table))


def _need(module: str, extra: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise InputError(
            f'privacy/pseudonymize needs {module.split(".")[0]}: pip install "vlmtrust[{extra}]"'
        ) from None


class _Pseudonymizer:
    def __init__(self, p: PseudonymizeParams, seed: int) -> None:
        self.p = p
        self.finder = PiiTextFinder(p.kinds, p.threshold)
        self.surrogates = Surrogates(seed)
        self.text_counts: Counter[str] = Counter()
        self.image_counts: Counter[str] = Counter()
        anonymizer: Any = importlib.import_module("presidio_anonymizer")
        self.engine = anonymizer.AnonymizerEngine()

    def text(self, text: str) -> str:
        spans: list[PiiSpan] = self.finder.find(text)
        if not spans:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        kinds = {s.entity: s.kind for s in spans}
        operators = {
            entity: OperatorConfig(
                "custom", {"lambda": lambda x, k=kind: self.surrogates.get(k, x)}
            )
            for entity, kind in kinds.items()
        }
        res = self.engine.anonymize(
            text=text,
            analyzer_results=[RecognizerResult(s.entity, s.start, s.end, s.score) for s in spans],
            operators=operators,
        )
        self.text_counts.update(s.kind for s in spans)
        return str(res.text)

    def image(self, image: Image.Image) -> Image.Image | None:
        """The image with its PII replaced, or None when it shows none."""
        p = self.p
        boxes = image_pii_boxes(image, self.finder, max_side=p.ocr_max_side, pad=p.pad)
        if not boxes:
            return None
        out = image.convert("RGB")
        for b in boxes:
            self._paint(out, b)
            self.image_counts[b.kind] += 1
        return out

    def _paint(self, im: Image.Image, b: PiiBox) -> None:
        x0, y0, x1, y1 = b.box
        if x1 <= x0 or y1 <= y0:
            return
        if self.p.images == "black":
            ImageDraw.Draw(im).rectangle(b.box, fill=(0, 0, 0))
            return
        region = im.crop(b.box)
        if self.p.images == "blur":
            im.paste(region.filter(ImageFilter.GaussianBlur(self.p.blur_radius)), b.box[:2])
            return
        # replace: background = the most common colour of the box, ink = the darkest (or
        # lightest, on a dark background) — then the surrogate, shrunk to fit the box
        found: Any = region.getcolors(region.size[0] * region.size[1])
        colours: list[tuple[int, tuple[int, int, int]]] = found or [(1, (255, 255, 255))]

        def lum(c: tuple[int, int, int]) -> float:
            return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]

        bg = max(colours, key=lambda c: c[0])[1]
        pick = max if lum(bg) < 128 else min
        ink = pick(colours, key=lambda c: lum(c[1]))[1]
        draw = ImageDraw.Draw(im)
        draw.rectangle(b.box, fill=bg)
        text = self.surrogates.get(b.kind, b.text)
        size = max(6, y1 - y0 - 2)
        while True:
            font = ImageFont.load_default(size=size)
            width = draw.textlength(text, font=font)
            if width <= (x1 - x0) * 1.6 or size <= 6:
                break
            size -= 1
        draw.text((x0, y0 + (y1 - y0 - size) / 2), text, fill=ink, font=font)


def _image_paths(obj: dict[str, Any]) -> list[str]:
    """The relative image paths of a line: the first of :data:`IMAGE_KEYS`, then ``images``."""
    out: list[str] = []
    for k in IMAGE_KEYS:
        if isinstance(obj.get(k), str) and obj[k]:
            out.append(obj[k])
            break
    imgs = obj.get("images")
    if isinstance(imgs, list):
        out += [x for x in imgs if isinstance(x, str) and x and x not in out]
    return out


@mitigation("privacy/pseudonymize")
class Pseudonymize(Mitigation):
    """Consistent Faker surrogates for PII in a manifest's texts and images (Presidio + OCR)."""

    pillar = Pillar.PRIVACY
    kind = "data"
    requires = Capability.NONE
    Params = PseudonymizeParams
    description = (
        "Pseudonymise an image–text manifest: Presidio's anonymizer gives every PII entity in "
        "captions and prompts one consistent surrogate; PII text in images (rapidocr boxes) is "
        "replaced, blurred or blacked out; writes the new manifest and counts per PII type."
    )

    def apply(self, model: Any, ctx: MitigationContext) -> HardenedArtifact:
        """Read ``ctx.data``, write the pseudonymised manifest, images and report."""
        from vlmtrust.data.images import load_image

        p = self.params
        assert isinstance(p, PseudonymizeParams)
        src = data_manifest(self.name, ctx, "whose PII to replace")
        if not src.is_file():
            raise InputError(f"privacy/pseudonymize: --data {src} is not a file; give a .jsonl")
        _need("presidio_anonymizer", "privacy")
        if p.images != "keep":
            _need("rapidocr", "safety")
        root = src.absolute().parent.resolve()
        out = Path(ctx.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        work = _Pseudonymizer(p, ctx.seed)
        lines = images_changed = 0
        errors: list[str] = []
        with (
            src.open(encoding="utf-8") as fh_in,
            (out / MANIFEST_NAME).open("w", encoding="utf-8") as fh_out,
        ):
            for lineno, raw in enumerate(fh_in, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    raise InputError(
                        f"privacy/pseudonymize: {src} line {lineno} is not JSON; write one "
                        "JSON object a line"
                    ) from None
                if not isinstance(obj, dict):
                    raise InputError(
                        f"privacy/pseudonymize: {src} line {lineno} is not a JSON object"
                    )
                lines += 1
                self._texts(obj, work)
                meta = obj.get("metadata")
                if isinstance(meta, dict):
                    self._texts(meta, work)
                for rel in _image_paths(obj):
                    path = (root / rel).resolve()
                    if not (path.is_relative_to(root) and path.is_file()):
                        errors.append(f"line {lineno}: image {rel} missing or outside the folder")
                    else:
                        dst = out / path.relative_to(root)
                        dst.parent.mkdir(parents=True, exist_ok=True)
                        new = None
                        if p.images != "keep":
                            try:
                                im = load_image(
                                    path,
                                    max_pixels=ctx.data_limits.max_image_pixels,
                                    max_aspect_ratio=ctx.data_limits.max_aspect_ratio,
                                )
                            except Exception as exc:  # reported; never copied unread
                                first = str(exc).splitlines()[0][:160] if str(exc) else ""
                                errors.append(
                                    f"line {lineno}: image {rel} unreadable, not copied: {first}"
                                )
                                continue
                            new = work.image(im)
                        if new is None:
                            shutil.copy2(path, dst)
                        else:
                            fmt = Image.registered_extensions().get(dst.suffix.lower(), "PNG")
                            new.save(dst, format=fmt)
                            images_changed += 1
                fh_out.write(json.dumps(obj, ensure_ascii=False) + "\n")
        if lines == 0:
            raise InputError(f"privacy/pseudonymize: manifest {src} has no lines")
        report = {
            "source": str(src),
            "records": lines,
            "images_changed": images_changed,
            "text": _counts(work.text_counts),
            "images": _counts(work.image_counts),
            "entities": _counts(Counter(work.surrogates.distinct())),
            "errors": errors[:20],
        }
        keys = ("records", "images_changed", "text", "images", "entities")
        return write_cleaned(out, self.name, p, report, REPORT_NAME, keys)

    @staticmethod
    def _texts(obj: dict[str, Any], work: _Pseudonymizer) -> None:
        for k in TEXT_KEYS:
            if isinstance(obj.get(k), str):
                obj[k] = work.text(obj[k])


def _counts(c: Counter[str]) -> dict[str, int]:
    """Counts per PII type in :data:`PII_KINDS` order, zeros left out."""
    return {k: c[k] for k in PII_KINDS if c[k]}
