r"""Loaders for published fairness datasets, in the layouts their authors publish.

Their licences forbid shipping them: download them yourself and point ``--data`` at the files.

=================================  ==========================================================
spec                               source
=================================  ==========================================================
``fairface:DIR#SPLIT``             FairFace (Kärkkäinen & Joo 2021): ``DIR/fairface_label_
``fairface:CSV``                   {train,val}.csv`` with columns ``file,age,gender,race,
                                   service_test``; ``file`` is the image path relative to the
                                   CSV's folder (``val/1.jpg``). Attributes ``age``, ``gender``,
                                   ``race``; ``metadata["service_test"]``. No target.
``pata:DIR``                       PATA (Seth et al. 2023): ``DIR/pata_fairness.files.lst``,
``pata:LST``                       one ``SCENE_RACE_GENDER_AGE|URL`` line per image (the scene
                                   may hold underscores: ``gun_range``); images are downloaded
                                   by you to ``DIR/images/<line>.{jpg,jpeg,png,webp}`` (0-based
                                   line number). Attributes ``race``, ``gender``, ``age``;
                                   target: the scene (underscores as spaces). With
                                   ``pata_fairness.captions.json`` beside it, each sample's
                                   ``metadata`` holds its scene's ``pos``/``neg`` captions.
``fairvlmed:DIR#SPLIT``            Harvard-FairVLMed (Luo et al. 2024): ``DIR/{Training,
                                   Validation,Test}/data_NNNNN.npz`` (or ``DIR`` one such
                                   folder), each holding ``slo_fundus`` (the image), the codes
                                   ``race``, ``gender``, ``ethnicity``, ``language``,
                                   ``maritalstatus``, ``glaucoma`` and the text ``note``.
                                   Codes become names (``race`` 0/1/2: asian/black/white; -1:
                                   unknown, left out); target ``glaucoma``/``non-glaucoma``.
                                   The text (``metadata["caption"]``) is the GPT-4 summary from
                                   ``DIR/gpt-4_summarized_notes.csv`` (file name in the first
                                   column, summary in the third), else a ``gpt4_summary`` array
                                   in the file, else ``note``. Read with
                                   ``np.load(allow_pickle=False)``: a pickled array is refused.
``bold:FILE``                      BOLD (Dhamala et al. 2021): ``prompts/<domain>_prompt.json``
``bold:DIR[#DOMAIN]``              mapping group → {name: [prompts]} (one file, or every such
                                   file in ``DIR``), or the JSON-lines release with ``domain``,
                                   ``category``, ``name``, ``prompts``. Text-only samples:
                                   ``prompt`` is the prompt, ``attributes[<domain>]`` the group,
                                   ``metadata`` the name and domain.
=================================  ==========================================================

``#SPLIT`` picks a split (FairFace ``train``/``val``; FairVLMed ``train``/``val``/``test`` or
the folder names); it may be left out when there is one. A wrong layout raises
:class:`~vlmtrust.core.errors.InputError` with one line saying what was expected; a bad row
is a :class:`~vlmtrust.data.datasets.DataError` and the stream goes on. Images stay lazy and
are decoded by the safe loader (a path leaving the dataset folder is refused when decoded).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Final

import numpy as np
from PIL import Image

from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.limits import DataLimits
from vlmtrust.core.sample import ImageRef, Sample

FAIRNESS_PREFIXES: Final[tuple[str, ...]] = ("fairface:", "pata:", "fairvlmed:", "bold:")
"""Data-spec prefixes of these loaders."""
FAIRNESS_KINDS: Final[frozenset[str]] = frozenset(p[:-1] for p in FAIRNESS_PREFIXES)

FAIRFACE_COLUMNS: Final[tuple[str, ...]] = ("file", "age", "gender", "race")
"""Columns a FairFace label CSV must have (``service_test`` is optional)."""
FAIRFACE_SPLITS: Final[tuple[str, ...]] = ("train", "val")
PATA_FILES: Final[str] = "pata_fairness.files.lst"
PATA_CAPTIONS: Final[str] = "pata_fairness.captions.json"
PATA_IMAGE_EXTENSIONS: Final[tuple[str, ...]] = (".jpg", ".jpeg", ".png", ".webp")
FAIRVLMED_SPLITS: Final[dict[str, str]] = {
    "train": "Training",
    "training": "Training",
    "val": "Validation",
    "validation": "Validation",
    "test": "Test",
}
FAIRVLMED_SUMMARIES: Final[str] = "gpt-4_summarized_notes.csv"
FAIRVLMED_CODES: Final[dict[str, dict[int, str]]] = {
    "race": {0: "asian", 1: "black", 2: "white"},
    "gender": {0: "female", 1: "male"},
    "ethnicity": {0: "non-hispanic", 1: "hispanic"},
    "language": {0: "english", 1: "spanish", 2: "other"},
    "maritalstatus": {
        0: "married or partnered",
        1: "single",
        2: "divorced",
        3: "widowed",
        4: "legally separated",
    },
}
"""Harvard-FairVLMed attribute codes (its dataset card); ``-1`` is unknown."""
FAIRVLMED_IMAGE_KEYS: Final[tuple[str, ...]] = ("slo_fundus", "fundus_slo")
"""Array names of the fundus image (``fundus_slo`` in an early release of the loader)."""
BOLD_SUFFIXES: Final[tuple[str, ...]] = ("_prompt.json", "_wiki.json", ".json", ".jsonl")


# --------------------------------------------------------------------------------------------
# specs


def parse_fairness_spec(text: str) -> Any:
    """Parse ``fairface:``/``pata:``/``fairvlmed:``/``bold:`` specs into a ``DataSpec``.

    Raises:
        InputError: the path is missing or is not the dataset's published layout.
    """
    checks = {
        "fairface": _fairface_csv,
        "pata": _pata_files,
        "fairvlmed": _fairvlmed_dir,
        "bold": _bold_files,
    }
    return parse_layout_spec(text, checks)


def parse_layout_spec(text: str, checks: Mapping[str, Any]) -> Any:
    """``KIND:PATH[#SPLIT]`` as a ``DataSpec``, after ``checks[KIND](path, split, text)``.

    The check raises :class:`InputError` (one line) when the files are not the dataset's
    published layout; a ``#`` that is part of an existing path is not a split.
    """
    from vlmtrust.data.datasets import DataSpec

    kind, _, rest = text.partition(":")
    split: str | None = None
    if "#" in rest and not Path(rest).expanduser().exists():
        rest, split = rest.rsplit("#", 1)
        split = split.strip() or None
    if not rest.strip():
        raise InputError(f"data {text}: no path after {kind}: — pass {kind}:PATH")
    path = Path(rest).expanduser()
    if not path.exists():
        raise InputError(f"data {text}: {path} not found — check the path")
    checks[kind](path, split, text)  # fail now, with one line, on a wrong layout
    return DataSpec(kind=kind, path=path, split=split)  # type: ignore[arg-type]


def iter_fairness(spec: Any, limits: DataLimits | None = None) -> Iterator[Any]:
    """Stream a parsed fairness dataset (see the module docs); layout errors raise at once.

    Images decode within ``limits`` (default :class:`DataLimits`).
    """
    kind, path, split = spec.kind, Path(spec.path), spec.split
    where = f"{kind}:{path}" + (f"#{split}" if split else "")
    if kind == "fairface":
        return _fairface(_fairface_csv(path, split, where), limits)
    if kind == "pata":
        return _pata(_pata_files(path, split, where), where, limits)
    if kind == "fairvlmed":
        folder, root = _fairvlmed_dir(path, split, where)
        return _fairvlmed(folder, root, where, limits)
    return _bold(_bold_files(path, split, where), where)


def fairness_class_names(spec: Any) -> list[str]:
    """Class names (the targets) of a parsed fairness dataset.

    Raises:
        InputError: FairFace and BOLD have no target.
    """
    kind = spec.kind
    if kind == "pata":
        lst = _pata_files(Path(spec.path), spec.split, f"pata:{spec.path}")
        scenes = {
            s.target for s in _pata(lst, str(lst), None) if isinstance(s, Sample) and s.target
        }
        return sorted(scenes)
    if kind == "fairvlmed":
        return ["glaucoma", "non-glaucoma"]
    what = "race, gender and age attributes" if kind == "fairface" else "prompts with groups"
    raise InputError(
        f"data {kind}:{spec.path}: has no class labels ({kind} rows carry {what}) — "
        "use it with the group and data-audit probes"
    )


# --------------------------------------------------------------------------------------------
# shared helpers


def _data_error(item_id: str, message: str) -> Any:
    from vlmtrust.data.datasets import DataError

    return DataError(item_id, message)


def _member(root: Path, rel: str) -> Path:
    """``root / rel`` for a relative path that stays inside ``root`` (checked lexically)."""
    shown = json.dumps(rel)
    posix = rel.replace("\\", "/")
    win = PureWindowsPath(rel)
    if not rel.strip() or "\x00" in rel:
        raise ValueError(f"image path {shown} is empty or invalid — give a relative path")
    if posix.startswith("/") or win.drive or win.root:
        raise ValueError(f"image path {shown} is absolute — give a path relative to {root}")
    if ".." in PurePosixPath(posix).parts:
        raise ValueError(f"image path {shown} leaves {root} via '..' — keep images inside it")
    return root / posix


@dataclass(frozen=True)
class MemberImageRef(ImageRef):
    """An image file inside a dataset folder; on decode, a path resolving outside is refused."""

    root: str = ""

    def load(self) -> Image.Image:
        """Decode through the safe loader after checking the resolved path stays in ``root``."""
        if self.image is not None:
            return self.image
        from vlmtrust.core.images import load_image

        assert self.path is not None
        full = Path(self.path).resolve()
        if self.root and not full.is_relative_to(Path(self.root).resolve()):
            raise ImageLoadError(
                f"image {self.path}: resolves outside {self.root} (symbolic link) — copy the "
                "image into the dataset folder"
            )
        limits = self.limits or DataLimits()
        return load_image(
            full, max_pixels=limits.max_image_pixels, max_aspect_ratio=limits.max_aspect_ratio
        )


@dataclass(frozen=True)
class NpzImageRef(ImageRef):
    """An image stored as an array in an ``.npz`` file (read without pickle, on decode)."""

    key: str = "slo_fundus"

    def load(self) -> Image.Image:
        """Read the array and convert it to RGB (pixel limit checked from its shape)."""
        if self.image is not None:
            return self.image
        from vlmtrust.core.images import to_rgb

        max_pixels = (self.limits or DataLimits()).max_image_pixels

        assert self.path is not None
        name = f"{self.path}[{self.key}]"
        try:
            with np.load(self.path, allow_pickle=False) as data:
                arr = np.asarray(data[self.key])
        except (OSError, ValueError, KeyError) as exc:
            raise ImageLoadError(
                f"image {name}: cannot read the array ({_brief(exc)}) — re-save the file with "
                "numpy.savez"
            ) from exc
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise ImageLoadError(
                f"image {name}: array of shape {arr.shape} is not an image — expected (H, W) "
                "or (H, W, 3)"
            )
        if arr.shape[0] * arr.shape[1] > max_pixels:
            raise ImageLoadError(
                f"image {name}: {arr.shape[1]}×{arr.shape[0]} pixels exceed the limit of "
                f"{max_pixels:,} — downscale it or raise --max-image-pixels"
            )
        if arr.dtype == np.bool_:
            arr = arr.astype(np.uint8) * 255
        if arr.ndim == 3 and arr.dtype != np.uint8:
            arr = _to_uint8(arr)
        elif arr.ndim == 2 and arr.dtype not in (np.uint8, np.float32, np.int32, np.uint16):
            arr = arr.astype(np.float32)
        try:
            return to_rgb(Image.fromarray(np.ascontiguousarray(arr)), name=name)
        except (TypeError, ValueError) as exc:
            raise ImageLoadError(
                f"image {name}: array of type {arr.dtype} is not an image ({_brief(exc)}) — "
                "store it as uint8 or float"
            ) from exc


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    a = arr.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif hi > lo:
        a = (a - lo) * (255.0 / (hi - lo))
    return np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8)


def _brief(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _open_text(path: Path, where: str) -> Any:
    try:
        return path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"data {where}: cannot open {path} ({_brief(exc)}) — check it") from exc


# --------------------------------------------------------------------------------------------
# FairFace


def _fairface_csv(path: Path, split: str | None, where: str) -> Path:
    expected = "a FairFace folder with fairface_label_train.csv / fairface_label_val.csv"
    if path.is_dir():
        found = {s: path / f"fairface_label_{s}.csv" for s in FAIRFACE_SPLITS}
        found = {s: p for s, p in found.items() if p.is_file()}
        if split is not None:
            if split not in FAIRFACE_SPLITS:
                raise InputError(
                    f"data {where}: no split {split!r} — FairFace has {', '.join(FAIRFACE_SPLITS)}"
                )
            if split not in found:
                raise InputError(
                    f"data {where}: fairface_label_{split}.csv not found in {path} — expected "
                    f"{expected}"
                )
            csv_path = found[split]
        elif len(found) == 1:
            csv_path = next(iter(found.values()))
        elif not found:
            raise InputError(f"data {where}: no FairFace label CSV in {path} — expected {expected}")
        else:
            raise InputError(
                f"data {where}: has splits {', '.join(found)} — pick one with fairface:{path}#val"
            )
    else:
        if split is not None:
            raise InputError(f"data {where}: #{split} needs a folder — drop it or pass the folder")
        csv_path = path
    with _open_text(csv_path, where) as fh:
        header = next(csv.reader(fh), [])
    cols = [c.strip() for c in header]
    missing = [c for c in FAIRFACE_COLUMNS if c not in cols]
    if missing:
        raise InputError(
            f"data {where}: {csv_path.name} has columns {','.join(cols) or '(none)'} — expected "
            "file,age,gender,race,service_test (the FairFace label CSV)"
        )
    return csv_path


def _fairface(csv_path: Path, limits: DataLimits | None) -> Iterator[Any]:
    root = csv_path.absolute().parent
    split = csv_path.stem.removeprefix("fairface_label_")
    produced = 0
    with _open_text(csv_path, str(csv_path)) as fh:
        reader = csv.DictReader(fh)
        for line, row in enumerate(reader, start=2):
            produced += 1
            where = f"{csv_path}:{line}"
            rel = (row.get("file") or "").strip()
            try:
                if None in row:
                    raise ValueError("has more fields than the header")
                path = _member(root, rel)
            except ValueError as exc:
                yield _data_error(f"line-{line}", f"{where}: {exc}")
                continue
            attrs = {k: str(row[k]).strip() for k in ("age", "gender", "race") if row.get(k)}
            meta: dict[str, Any] = {"split": split}
            service = (row.get("service_test") or "").strip()
            if service:
                meta["service_test"] = service.lower() == "true"
            yield Sample(
                id=rel,
                images=(MemberImageRef(path=str(path), label=rel, root=str(root), limits=limits),),
                attributes=attrs,
                metadata=meta,
            )
    if produced == 0:
        raise InputError(f"data {csv_path}: the label CSV has no rows — pass the FairFace CSV")


# --------------------------------------------------------------------------------------------
# PATA


def _pata_files(path: Path, split: str | None, where: str) -> Path:
    if split is not None:
        raise InputError(f"data {where}: PATA has no splits — drop '#{split}'")
    lst = path / PATA_FILES if path.is_dir() else path
    if not lst.is_file():
        raise InputError(
            f"data {where}: {PATA_FILES} not found in {path} — expected the PATA folder with "
            f"{PATA_FILES} (SCENE_RACE_GENDER_AGE|URL lines) and images/<line>.jpg"
        )
    with _open_text(lst, where) as fh:
        first = next((x for x in fh if x.strip()), "")
    if "|" not in first or len(first.split("|", 1)[0].split("_")) < 4:
        raise InputError(
            f"data {where}: {lst.name} starts with {first.strip()[:60]!r} — expected lines "
            "SCENE_RACE_GENDER_AGE|URL (PATA's pata_fairness.files.lst)"
        )
    return lst


def _pata_captions(folder: Path) -> dict[str, Any]:
    path = folder / PATA_CAPTIONS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(
            f"data {path}: cannot read the captions ({_brief(exc)}) — expected PATA's JSON list "
            'of {"short": scene, "pos": {...}, "neg": {...}}'
        ) from exc
    if not isinstance(data, list) or not all(isinstance(x, dict) and "short" in x for x in data):
        raise InputError(
            f"data {path}: expected PATA's JSON list of "
            '{"short": scene, "long": ..., "pos": {...}, "neg": {...}} — replace the file'
        )
    return {
        str(x["short"]).replace(" ", "_"): {"pos": x.get("pos", {}), "neg": x.get("neg", {})}
        for x in data
    }


def _pata(lst: Path, where: str, limits: DataLimits | None) -> Iterator[Any]:
    folder = lst.absolute().parent
    captions = _pata_captions(folder)
    images = folder / "images"
    with _open_text(lst, where) as fh:
        for index, raw in enumerate(fh):
            line = raw.strip()
            if not line:
                continue
            label, bar, url = line.partition("|")
            parts = label.strip().split("_")
            if not bar or len(parts) < 4:
                yield _data_error(
                    f"pata-{index}",
                    f"{lst}:{index + 1}: {line[:60]!r} is not SCENE_RACE_GENDER_AGE|URL — fix it",
                )
                continue
            *scene_parts, race, gender, age = parts
            scene = "_".join(scene_parts)
            image = next(
                (
                    images / f"{index}{e}"
                    for e in PATA_IMAGE_EXTENSIONS
                    if (images / f"{index}{e}").exists()
                ),
                images / f"{index}.jpg",
            )
            meta: dict[str, Any] = {"url": url.strip(), "scene": scene, "line": index}
            if scene in captions:
                meta["captions"] = captions[scene]
            yield Sample(
                id=f"pata-{index}",
                images=(
                    MemberImageRef(
                        path=str(image), label=f"pata-{index}", root=str(folder), limits=limits
                    ),
                ),
                target=scene.replace("_", " "),
                attributes={"race": race, "gender": gender, "age": age},
                metadata=meta,
            )


# --------------------------------------------------------------------------------------------
# Harvard-FairVLMed


def _fairvlmed_dir(path: Path, split: str | None, where: str) -> tuple[Path, Path]:
    """``(folder of .npz files, dataset root)``."""
    expected = (
        "the Harvard-FairVLMed folder with Training/, Validation/ and Test/ of data_NNNNN.npz "
        "files (or one of those folders)"
    )
    if not path.is_dir():
        raise InputError(f"data {where}: {path} is not a folder — expected {expected}")
    present = [s for s in ("Training", "Validation", "Test") if (path / s).is_dir()]
    if split is not None:
        name = FAIRVLMED_SPLITS.get(split.lower(), split)
        if not (path / name).is_dir():
            raise InputError(
                f"data {where}: no split folder {name!r} in {path} — use one of "
                f"{', '.join(present) or 'Training, Validation, Test'}"
            )
        folder, root = path / name, path
    elif len(present) == 1:
        folder, root = path / present[0], path
    elif present:
        raise InputError(
            f"data {where}: has splits {', '.join(present)} — pick one with fairvlmed:{path}#test"
        )
    else:
        folder, root = path, path.parent
    first = next(iter(sorted(folder.glob("*.npz"))), None)
    if first is None:
        raise InputError(f"data {where}: no .npz files in {folder} — expected {expected}")
    return folder, root


def _fairvlmed_summaries(root: Path, folder: Path) -> dict[str, str]:
    for base in (root, folder):
        path = base / FAIRVLMED_SUMMARIES
        if path.is_file():
            out: dict[str, str] = {}
            with _open_text(path, str(path)) as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                if len(header) < 3:
                    raise InputError(
                        f"data {path}: has {len(header)} columns — expected the file name in the "
                        "first column and the summarised note in the third"
                    )
                for row in reader:
                    if len(row) >= 3 and row[0].strip():
                        out[row[0].strip()] = row[2].strip()
            return out
    return {}


def _scalar(data: Any, key: str) -> Any:
    value = np.asarray(data[key])
    if value.size != 1:
        raise ValueError(f"{key!r} holds {value.size} values, expected one")
    return value.reshape(()).item()


def _fairvlmed(folder: Path, root: Path, where: str, limits: DataLimits | None) -> Iterator[Any]:
    summaries = _fairvlmed_summaries(root, folder)
    with os.scandir(folder) as it:
        names = sorted(e.name for e in it if e.name.endswith(".npz") and e.is_file())
    for name in names:
        path = folder / name
        sid = name.removesuffix(".npz")
        try:
            with np.load(path, allow_pickle=False) as data:
                keys = set(data.files)
                missing = [k for k in ("race", "gender", "glaucoma") if k not in keys]
                if missing:
                    raise ValueError(
                        f"no {', '.join(missing)} (has {', '.join(sorted(keys))}) — expected a "
                        "Harvard-FairVLMed file with slo_fundus, race, gender, ethnicity, "
                        "language, maritalstatus, glaucoma, note"
                    )
                image_key = next((k for k in FAIRVLMED_IMAGE_KEYS if k in keys), None)
                if image_key is None:
                    raise ValueError("no slo_fundus image array")
                attrs = _fairvlmed_attributes(data, keys)
                glaucoma = int(_scalar(data, "glaucoma"))
                text = summaries.get(name)
                if text is None:
                    text_key = "gpt4_summary" if "gpt4_summary" in keys else "note"
                    text = str(_scalar(data, text_key)).strip() if text_key in keys else None
                meta: dict[str, Any] = {"file": name, "split": folder.name}
                if text:
                    meta["caption"] = text
                if "age" in keys:
                    meta["age"] = float(_scalar(data, "age"))
        except ValueError as exc:
            msg = _brief(exc, 400)
            if "allow_pickle" in msg or "Object arrays" in msg:
                msg = "holds a pickled (object) array — vlmtrust loads no pickles; re-save it"
            yield _data_error(sid, f"data {path}: {msg}")
            continue
        except (OSError, KeyError) as exc:
            yield _data_error(sid, f"data {path}: cannot read ({_brief(exc)}) — re-save it")
            continue
        yield Sample(
            id=sid,
            images=(NpzImageRef(path=str(path), label=name, key=image_key, limits=limits),),
            target="glaucoma" if glaucoma == 1 else "non-glaucoma",
            attributes=attrs,
            metadata=meta,
        )


def _fairvlmed_attributes(data: Any, keys: set[str]) -> dict[str, str]:
    attrs: dict[str, str] = {}
    for key, codes in FAIRVLMED_CODES.items():
        if key not in keys:
            continue
        value = _scalar(data, key)
        if isinstance(value, str):
            if value.strip() and value.strip().lower() not in ("-1", "unknown"):
                attrs[key] = value.strip().lower()
            continue
        code = int(value)
        if code == -1:
            continue
        attrs[key] = codes.get(code, f"code {code}")
    return attrs


# --------------------------------------------------------------------------------------------
# BOLD


def _bold_domain(path: Path) -> str:
    name = path.name
    for suffix in BOLD_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)] or "bold"
    return path.stem


def _bold_files(path: Path, split: str | None, where: str) -> list[Path]:
    expected = "BOLD's prompts/<domain>_prompt.json (group → {name: [prompts]}) or a folder of them"
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.endswith("_prompt.json"))
        if not files:
            files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
        if split is not None:
            files = [p for p in files if _bold_domain(p) == split]
            if not files:
                raise InputError(
                    f"data {where}: no {split}_prompt.json in {path} — check the domain"
                )
        if not files:
            raise InputError(f"data {where}: no BOLD prompt files in {path} — expected {expected}")
        return files
    if split is not None:
        raise InputError(f"data {where}: #{split} picks a file in a folder — pass the folder")
    return [path]


def _bold_load(path: Path) -> list[tuple[str, str, str, list[str]]]:
    """``(domain, group, name, prompts)`` of one BOLD file, either release layout."""
    expected = (
        "expected BOLD's {group: {name: [prompt, ...]}} or JSON lines with domain, category, "
        "name, prompts"
    )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"data {path}: cannot read ({_brief(exc)}) — {expected}") from exc
    domain = _bold_domain(path).removesuffix("_prompt_wiki")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    out: list[tuple[str, str, str, list[str]]] = []
    if isinstance(data, dict) and not {"category", "name", "prompts"} <= set(data):
        for group, names in data.items():
            if not isinstance(names, Mapping):
                raise InputError(f"data {path}: group {group!r} is not an object — {expected}")
            for name, prompts in names.items():
                if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                    raise InputError(
                        f"data {path}: {group}/{name} is not a list of strings — {expected}"
                    )
                out.append((domain, str(group), str(name), prompts))
        return out
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise InputError(
                f"data {path}:{lineno}: not JSON ({_brief(exc)}) — {expected}"
            ) from exc
        if not isinstance(row, dict) or not {"category", "name", "prompts"} <= set(row):
            raise InputError(f"data {path}:{lineno}: {expected}")
        prompts = row["prompts"] if isinstance(row["prompts"], list) else [row["prompts"]]
        out.append(
            (
                str(row.get("domain") or domain),
                str(row["category"]),
                str(row["name"]),
                [str(p) for p in prompts],
            )
        )
    if not out:
        raise InputError(f"data {path}: no prompts — {expected}")
    return out


def _bold(files: list[Path], where: str) -> Iterator[Any]:
    loaded = [(f, _bold_load(f)) for f in files]  # a wrong layout fails before streaming
    return _bold_samples(loaded)


def _bold_samples(
    loaded: list[tuple[Path, list[tuple[str, str, str, list[str]]]]],
) -> Iterator[Any]:
    for _path, entries in loaded:
        for domain, group, name, prompts in entries:
            for k, prompt in enumerate(prompts):
                if not prompt.strip():
                    continue
                yield Sample(
                    id=f"{domain}/{group}/{name}/{k}",
                    prompt=prompt,
                    attributes={domain: group},
                    metadata={"name": name, "domain": domain},
                )
