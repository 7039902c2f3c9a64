r"""User datasets as lazy streams of :class:`~vlmtrust.core.sample.Sample`.

One data spec string selects the source (see :func:`parse_data_spec`):

=================================  ==========================================================
spec                               source
=================================  ==========================================================
``DIR``                            image folder ``DIR/<label>/*.png|jpg|...``: the label is
                                   the first sub-folder (``Sample.target`` and
                                   ``attributes["label"]``); images directly in ``DIR`` have
                                   no label. Ids are relative paths (``cat/001.png``).
``PATH.jsonl``                     JSONL manifest, one object per line (:data:`MANIFEST_FIELDS`,
                                   or the aliases other tools write, :data:`MANIFEST_ALIASES`);
                                   image paths are relative to the manifest's folder and may
                                   not leave it. Other keys are kept under ``metadata``. Ids are
                                   ``id`` or ``line-<n>``.
``hf-disk:PATH[#SPLIT][?OPTS]``    a Hugging Face ``datasets`` dataset written with
                                   ``save_to_disk``; ``OPTS`` map columns:
                                   ``image=COL&target=COL&prompt=COL&id=COL&attributes=A,B``.
                                   A directory holding ``dataset_info.json``, ``state.json``
                                   or ``dataset_dict.json`` is detected without the prefix.
                                   Ids are row indices (or the ``id`` column).
=================================  ==========================================================

A bad source as a whole (missing, empty, unknown kind) raises
:class:`~vlmtrust.core.errors.InputError` at once. A bad *item* (malformed manifest line,
path escaping the manifest folder, undecodable dataset image) does not stop the stream: it is
yielded as a :class:`DataError` that the runner records as an error record, and iteration
goes on. Images from folders and manifests stay lazy (:meth:`ImageRef.from_path`); the
runner decodes them through :func:`vlmtrust.data.images.load_image`, within the
:class:`~vlmtrust.core.limits.DataLimits` the source was opened with (each reference carries
them). Something worth knowing about a whole source (manifest keys kept under ``metadata``, a
guessed hf-disk column) is one warning line on the ``vlmtrust`` logger per source, not one per
item.

Example:
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "m.jsonl").write_text(
    ...     json.dumps({"image": "a.png", "prompt": "What colour?", "target": "red"}) + "\n"
    ...     + "{not json\n"
    ... )
    >>> [type(x).__name__ for x in iter_dataset(str(d / "m.jsonl"))]
    ['Sample', 'DataError']
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

from vlmtrust.core.errors import ImageLoadError, InputError
from vlmtrust.core.limits import DEFAULT_MAX_MANIFEST_LINE_BYTES, DataLimits, option
from vlmtrust.core.sample import ImageRef, Sample

log = logging.getLogger("vlmtrust")

DataKind = Literal[
    "folder",
    "manifest",
    "hf-disk",
    "fairface",
    "pata",
    "fairvlmed",
    "bold",
    "mmsafetybench",
    "jailbreakv",
    "vlguard",
    "rtvlm",
]

IMAGE_EXTENSIONS: Final[frozenset[str]] = frozenset(
    {".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
"""File suffixes (lower-cased) an image folder picks up; other files are not samples."""

MANIFEST_FIELDS: Final[tuple[str, ...]] = (
    "id",
    "image",
    "images",
    "prompt",
    "target",
    "attributes",
    "metadata",
)
"""The manifest's own keys. Other keys are kept under ``metadata``, named in one warning per
file (with a "did you mean" for near-misses such as ``promt``)."""

MANIFEST_ALIASES: Final[dict[str, str]] = {
    "label": "target",
    "class": "target",
    "caption": "target",
    "text": "target",
    "answer": "target",
    "question": "prompt",
    "file_name": "image",
    "path": "image",
    "image_path": "image",
}
"""Keys other tools write (image classification, captioning, VQA, Hugging Face ``imagefolder``
``metadata.jsonl``) → the manifest field each one fills. A line giving one field under two
keys with different values is an error."""

MAX_MANIFEST_LINE_BYTES: Final[int] = DEFAULT_MAX_MANIFEST_LINE_BYTES
"""Default longest manifest line (1 MiB, ``--max-manifest-line-bytes``); longer lines become a
:class:`DataError`."""

HF_PREFIX: Final[str] = "hf-disk:"
_HF_MARKERS: Final[tuple[str, ...]] = ("dataset_info.json", "state.json", "dataset_dict.json")
_HF_OPTION_KEYS: Final[dict[str, str]] = {
    "image": "image_column",
    "target": "target_column",
    "label": "target_column",
    "prompt": "prompt_column",
    "id": "id_column",
    "attributes": "attribute_columns",
}
_AUTO_TARGET: Final[tuple[str, ...]] = (
    "label",
    "labels",
    "target",
    "answer",
    "class",
    "caption",
    "text",
)
_AUTO_PROMPT: Final[tuple[str, ...]] = ("prompt", "question")
_SPEC_FIX: Final[str] = (
    "pass an image folder DIR/<label>/*.png, a manifest .jsonl, or hf-disk:PATH[#split]"
)


@dataclass(frozen=True)
class DataError:
    """One dataset item that could not be turned into a :class:`Sample`.

    Yielded in place of the sample so a run records it as an error and goes on.

    Attributes:
        id: a stable id for the item (the manifest ``id``, ``line-<n>``, or the row index).
        message: one line naming the input (``file:line`` for manifests) and the fix.
    """

    id: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec (see :func:`parse_data_spec`).

    Attributes:
        kind: ``"folder"``, ``"manifest"`` or ``"hf-disk"``.
        path: the folder, manifest file or saved dataset directory.
        split: ``hf-disk`` only: the split of a saved ``DatasetDict``.
        image_column: ``hf-disk`` only: column of ``Image`` (or list of ``Image``) features.
        target_column: ``hf-disk`` only: label / answer column.
        prompt_column: ``hf-disk`` only: prompt / question column.
        id_column: ``hf-disk`` only: column of stable ids (default: the row index).
        attribute_columns: ``hf-disk`` only: columns copied into ``Sample.attributes``.
    """

    kind: DataKind
    path: Path
    split: str | None = None
    image_column: str | None = None
    target_column: str | None = None
    prompt_column: str | None = None
    id_column: str | None = None
    attribute_columns: tuple[str, ...] = field(default=())


def parse_data_spec(spec: str | Path) -> DataSpec:
    """Detect what a data spec points at.

    Rules, in order: ``hf-disk:`` prefix; a directory containing ``dataset_info.json``,
    ``state.json`` or ``dataset_dict.json`` → ``hf-disk``; a ``*.jsonl`` file → manifest;
    another directory → image folder; anything else is an error.

    Args:
        spec: the spec string (or a path).

    Returns:
        The parsed :class:`DataSpec`.

    Raises:
        InputError: one line naming the spec and the fix.

    ``hf-disk:/data/ds#test?image=img&attributes=age,sex`` reads split ``test`` of the dataset
    saved in ``/data/ds``, images from column ``img``, and copies columns ``age`` and ``sex``
    into ``Sample.attributes``.
    """
    text = str(spec).strip()
    if not text:
        raise InputError(f"data spec is empty — {_SPEC_FIX}")
    if text.startswith(HF_PREFIX):
        return _parse_hf_spec(text)
    from vlmtrust.data import fairness_sets as fair  # fairface:, pata:, fairvlmed:, bold:

    if text.startswith(fair.FAIRNESS_PREFIXES):
        return fair.parse_fairness_spec(text)  # type: ignore[no-any-return]
    from vlmtrust.data import safety_sets as safety  # mmsafetybench:, jailbreakv:, vlguard:, rtvlm:

    if text.startswith(safety.SAFETY_PREFIXES):
        return safety.parse_safety_spec(text)  # type: ignore[no-any-return]
    path = Path(text).expanduser()
    if path.is_dir() and path.suffix.lower() == ".jsonl":
        raise InputError(f"data {text}: manifest is a directory — pass the .jsonl file")
    if path.is_dir():
        if any((path / marker).is_file() for marker in _HF_MARKERS):
            return DataSpec(kind="hf-disk", path=path)
        return DataSpec(kind="folder", path=path)
    if path.suffix.lower() == ".jsonl":
        if not path.exists():
            raise InputError(f"data {text}: manifest not found — check the path")
        if not path.is_file():
            raise InputError(f"data {text}: manifest is not a regular file — pass a .jsonl file")
        return DataSpec(kind="manifest", path=path)
    if not path.exists():
        raise InputError(f"data {text}: not found — {_SPEC_FIX}")
    raise InputError(f"data {text}: not a folder, .jsonl manifest or saved dataset — {_SPEC_FIX}")


def iter_dataset(
    spec: str | Path | DataSpec,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    prompt_column: str | None = None,
    id_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
    limits: DataLimits | None = None,
) -> Iterator[Sample | DataError]:
    """Stream the samples of a dataset, lazily, in a stable order.

    The source is opened and checked when this is called (so a missing or empty dataset fails
    here, with one line); items are produced as the iterator is consumed.

    Args:
        spec: a data spec string (see the module docs), a path, or a :class:`DataSpec`.
        image_column: ``hf-disk``: column holding the images (default: the first ``Image``
            column). Keyword arguments override options given in the spec.
        target_column: ``hf-disk``: label/answer column (default: the first of ``label``,
            ``labels``, ``target``, ``answer``, ``class``, ``caption``, ``text`` that exists;
            one warning names the choice when several do). ``ClassLabel`` ids become names
            and are also put in ``attributes["label"]`` (as for image folders).
        prompt_column: ``hf-disk``: prompt column (default: ``prompt`` or ``question``).
        id_column: ``hf-disk``: id column (default: the row index).
        attribute_columns: ``hf-disk``: columns copied (as strings) into ``attributes``.
        limits: what the loaders accept (default :class:`DataLimits`): the manifest line
            length here, the image limits wherever a yielded image is decoded.

    Yields:
        :class:`Sample` for each good item, :class:`DataError` for each bad one.

    Raises:
        InputError: the source as a whole is unusable (missing, empty, unknown column...).
    """
    parsed = _with_columns(
        spec if isinstance(spec, DataSpec) else parse_data_spec(spec),
        image_column=image_column,
        target_column=target_column,
        prompt_column=prompt_column,
        id_column=id_column,
        attribute_columns=attribute_columns,
    )
    return _iterate(parsed, limits or DataLimits(), _Notes())


def _iterate(spec: DataSpec, limits: DataLimits, notes: _Notes) -> Iterator[Sample | DataError]:
    if spec.kind == "folder":
        return _iter_folder(spec.path, limits, notes)
    if spec.kind == "manifest":
        return _iter_manifest(spec.path, limits, notes)
    if spec.kind in ("fairface", "pata", "fairvlmed", "bold"):
        from vlmtrust.data.fairness_sets import iter_fairness

        return iter_fairness(spec, limits)
    if spec.kind in ("mmsafetybench", "jailbreakv", "vlguard", "rtvlm"):
        from vlmtrust.data.safety_sets import iter_safety

        return iter_safety(spec, limits)
    return _iter_hf(spec, limits, notes)


def class_names(
    spec: str | Path | DataSpec,
    *,
    target_column: str | None = None,
    limits: DataLimits | None = None,
) -> list[str]:
    """Class names for zero-shot classification.

    Image folder: the label sub-folders that hold at least one image, sorted. Manifest: the
    distinct ``target`` values, sorted (bad lines are skipped). ``hf-disk``: the
    ``ClassLabel`` names in label-id order, else the distinct target values, sorted.

    Args:
        spec: a data spec (see :func:`iter_dataset`).
        target_column: ``hf-disk``: label column (default as in :func:`iter_dataset`).
        limits: as in :func:`iter_dataset` (a manifest's lines are read within them).

    Returns:
        The class names (non-empty).

    Raises:
        InputError: the dataset has no labels.
    """
    parsed = _with_columns(
        spec if isinstance(spec, DataSpec) else parse_data_spec(spec),
        target_column=target_column,
    )
    return _class_names(parsed, limits or DataLimits(), _Notes())


def _class_names(parsed: DataSpec, limits: DataLimits, notes: _Notes) -> list[str]:
    names: list[str]
    if parsed.kind == "folder":
        _require_dir(parsed.path)
        names = sorted(
            entry.name
            for entry in _sorted_entries(parsed.path)
            if _is_visible_dir(entry)
            and any(
                not isinstance(item, DataError) for item in _walk_images(entry.path, entry.name)
            )
        )
    elif parsed.kind == "manifest":
        targets = {
            item.target
            for item in _iter_manifest(parsed.path, limits, notes)
            if isinstance(item, Sample) and item.target is not None
        }
        names = sorted(targets)
    elif parsed.kind in ("fairface", "pata", "fairvlmed", "bold"):
        from vlmtrust.data.fairness_sets import fairness_class_names

        names = fairness_class_names(parsed)
    elif parsed.kind in ("mmsafetybench", "jailbreakv", "vlguard", "rtvlm"):
        raise InputError(
            f"data {parsed.kind}:{parsed.path}: has no class labels (safety requests) — use it "
            "with the safety probes (safety/figstep, safety/query_relevant, safety/over_refusal)"
        )
    else:
        names = _hf_class_names(parsed, notes)
    if not names:
        raise InputError(
            f"data {parsed.path}: has no class labels — give images a label sub-folder, "
            'manifest lines a "target" (or "label"), or name the label column '
            "(hf-disk:PATH?target=COL)"
        )
    return names


class _Notes:
    """Warnings about a whole source, each logged once per source (not per item, not per pass).

    A topic (``"keys"``, ``"target"``...) is warned about again only when a later pass finds
    something under it that no earlier warning named.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: dict[str, set[str]] = {}

    def warn(self, topic: str, items: Sequence[str], message: str) -> None:
        """Log ``message`` unless every one of ``items`` was named under ``topic`` already."""
        with self._lock:
            said = self._said.setdefault(topic, set())
            if set(items) <= said:
                return
            said.update(items)
        log.warning("%s", message)


@dataclass(frozen=True)
class DataSource:
    """A re-iterable dataset: ``for item in DataSource.open(spec)`` streams it each time.

    Warnings about the source as a whole are logged once per :class:`DataSource`, however
    often it is iterated.

    Attributes:
        spec: the parsed spec, column options included.
        limits: what the loaders accept (see :func:`iter_dataset`).
    """

    spec: DataSpec
    limits: DataLimits = field(default_factory=DataLimits)
    _notes: _Notes = field(default_factory=_Notes, init=False, repr=False, compare=False)

    @classmethod
    def open(
        cls, spec: str | Path | DataSpec, *, limits: DataLimits | None = None, **columns: Any
    ) -> DataSource:
        """Parse ``spec`` (keyword arguments as in :func:`iter_dataset`)."""
        parsed = spec if isinstance(spec, DataSpec) else parse_data_spec(spec)
        return cls(spec=_with_columns(parsed, **columns), limits=limits or DataLimits())

    def __iter__(self) -> Iterator[Sample | DataError]:
        return _iterate(self.spec, self.limits, self._notes)

    def class_names(self) -> list[str]:
        """See :func:`class_names`."""
        return _class_names(self.spec, self.limits, self._notes)


# --------------------------------------------------------------------------------------------
# spec helpers


def _parse_hf_spec(text: str) -> DataSpec:
    rest = text[len(HF_PREFIX) :]
    options: dict[str, Any] = {}
    split: str | None = None
    if not Path(rest).expanduser().is_dir():  # a literal directory name wins over parsing
        if "?" in rest:
            rest, query = rest.rsplit("?", 1)
            for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
                if key not in _HF_OPTION_KEYS:
                    raise InputError(
                        f"data {text}: unknown option {key!r} — use "
                        "image=COL, target=COL, prompt=COL, id=COL or attributes=A,B"
                    )
                if not value.strip():
                    raise InputError(
                        f"data {text}: option {key!r} is empty — give a column name ({key}=COL)"
                    )
                name = _HF_OPTION_KEYS[key]
                if name == "attribute_columns":
                    options[name] = tuple(c.strip() for c in value.split(",") if c.strip())
                else:
                    options[name] = value.strip()
        if "#" in rest:
            rest, split = rest.rsplit("#", 1)
            split = split.strip() or None
    path = Path(rest).expanduser()
    if not rest:
        raise InputError(f"data {text}: no path after {HF_PREFIX} — pass hf-disk:PATH[#split]")
    if not path.exists():
        raise InputError(f"data {text}: {path} not found — check the path")
    if not path.is_dir() or not any((path / m).is_file() for m in _HF_MARKERS):
        raise InputError(
            f"data {text}: {path} is not a dataset saved with save_to_disk (no "
            "dataset_info.json, state.json or dataset_dict.json) — pass the save_to_disk folder"
        )
    return DataSpec(kind="hf-disk", path=path, split=split, **options)


def _with_columns(
    spec: DataSpec,
    *,
    image_column: str | None = None,
    target_column: str | None = None,
    prompt_column: str | None = None,
    id_column: str | None = None,
    attribute_columns: Sequence[str] | None = None,
) -> DataSpec:
    given = {
        "image_column": image_column,
        "target_column": target_column,
        "prompt_column": prompt_column,
        "id_column": id_column,
    }
    updates: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if attribute_columns is not None:
        if isinstance(attribute_columns, str):
            attribute_columns = [c.strip() for c in attribute_columns.split(",") if c.strip()]
        updates["attribute_columns"] = tuple(attribute_columns)
    if not updates:
        return spec
    if spec.kind != "hf-disk":
        names = ", ".join(sorted(updates))
        raise InputError(
            f"data {spec.path}: column options ({names}) apply only to hf-disk datasets — "
            "drop them, or use an hf-disk:PATH spec"
        )
    return DataSpec(
        kind=spec.kind,
        path=spec.path,
        split=spec.split,
        image_column=updates.get("image_column", spec.image_column),
        target_column=updates.get("target_column", spec.target_column),
        prompt_column=updates.get("prompt_column", spec.prompt_column),
        id_column=updates.get("id_column", spec.id_column),
        attribute_columns=updates.get("attribute_columns", spec.attribute_columns),
    )


# --------------------------------------------------------------------------------------------
# image folder


def _require_dir(root: Path) -> None:
    if not root.is_dir():
        raise InputError(f"data {root}: image folder not found — check the path")


def _sorted_entries(directory: Path | str) -> list[os.DirEntry[str]]:
    with os.scandir(directory) as it:
        return sorted(it, key=lambda e: e.name)


def _is_visible_dir(entry: os.DirEntry[str]) -> bool:
    return not entry.name.startswith(".") and entry.is_dir(follow_symlinks=True)


def _walk_images(
    directory: Path | str, rel: str, seen: set[str] | None = None
) -> Iterator[tuple[str, str] | DataError]:
    """``(relative posix path, path)`` of image files under ``directory``, sorted, depth-first.

    Hidden entries are skipped; directory symlink loops are visited once. An unreadable
    sub-folder becomes a :class:`DataError` (its siblings are still listed). Paths are
    strings: the runner lists every file of a dataset twice (its count, then its samples),
    and ``pathlib`` objects per file cost as much as the rest of the walk.
    """
    seen = set() if seen is None else seen
    real = os.path.realpath(directory)
    if real in seen:
        return
    seen.add(real)
    try:
        entries = _sorted_entries(directory)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if not rel:
            raise InputError(
                f"data {directory}: cannot list image folder ({reason}) — make it readable"
            ) from exc
        yield DataError(rel, f"data {directory}: cannot list folder ({reason}) — make it readable")
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        child_rel = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir(follow_symlinks=True):
            yield from _walk_images(entry.path, child_rel, seen)
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield child_rel, entry.path


def _iter_folder(root: Path, limits: DataLimits, notes: _Notes) -> Iterator[Sample | DataError]:
    _require_dir(root)
    walker = _walk_images(root, "")
    first = next(walker, None)
    if first is None:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputError(
            f"data {root}: image folder holds no images ({exts}) — "
            "lay it out as DIR/<label>/<image files>"
        )
    metadata = root / "metadata.jsonl"
    if metadata.is_file():  # a Hugging Face imagefolder: its captions/labels live in there
        notes.warn(
            "metadata.jsonl",
            ["metadata.jsonl"],
            f"data {root}: its metadata.jsonl is not read when the folder is the data (labels "
            f"come from sub-folder names) — pass --data {metadata} to use its fields",
        )
    return _folder_samples(chain([first], walker), limits)


def _folder_samples(
    items: Iterator[tuple[str, str] | DataError], limits: DataLimits
) -> Iterator[Sample | DataError]:
    for item in items:
        if isinstance(item, DataError):
            yield item
            continue
        rel, path = item
        label = rel.split("/", 1)[0] if "/" in rel else None
        yield Sample(
            id=rel,
            images=(ImageRef.from_path(path, limits),),
            target=label,
            attributes={"label": label} if label is not None else {},
        )


# --------------------------------------------------------------------------------------------
# JSONL manifest


class _LineError(Exception):
    """A problem with one manifest line (message without the ``file:line`` prefix)."""


def _iter_manifest(path: Path, limits: DataLimits, notes: _Notes) -> Iterator[Sample | DataError]:
    root = path.absolute().parent.resolve()
    try:
        path.open("rb").close()  # fail now, with one line, if it cannot be read at all
    except OSError as exc:
        reason = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
        raise InputError(f"data {path}: cannot open manifest ({reason}) — check the file") from exc
    return _manifest_items(path, root, limits, notes)


def _manifest_items(
    path: Path, root: Path, limits: DataLimits, notes: _Notes
) -> Iterator[Sample | DataError]:
    seen: dict[str, int] = {}
    extra_keys: dict[str, int] = {}
    produced = 0
    longest = limits.max_manifest_line_bytes
    try:
        with path.open("rb") as handle:
            lineno = 0
            while True:
                raw: bytes = handle.readline(longest + 1)
                if not raw:
                    break
                lineno += 1
                where = f"{path}:{lineno}"
                if len(raw) > longest and not raw.endswith(b"\n"):
                    while True:  # skip the rest of the over-long line
                        chunk = handle.readline(longest)
                        if not chunk or chunk.endswith(b"\n"):
                            break
                    produced += 1
                    yield DataError(
                        f"line-{lineno}",
                        f"{where}: line longer than {longest:,} bytes — keep one sample per "
                        "line and move large values out of the manifest, or raise "
                        f"{option('max_manifest_line_bytes')}",
                    )
                    continue
                item = _manifest_line(raw, lineno, where, root, seen, limits, extra_keys)
                if item is not None:
                    produced += 1
                    yield item
    finally:  # also when the reader stops early (--limit): the keys of the lines read
        if extra_keys:
            notes.warn("keys", sorted(extra_keys), _extra_keys_warning(path, extra_keys))
    if produced == 0:
        raise InputError(
            f"data {path}: manifest has no samples — add one JSON object per line, e.g. "
            '{"image": "a.png", "prompt": "...", "target": "..."}'
        )


_MAX_KEYS_NAMED: Final[int] = 20


def _shown_key(key: str) -> str:
    """A manifest key as a message shows it: quoted, printable, at most 60 characters."""
    text = "".join(ch if ch.isprintable() else "?" for ch in key)
    return json.dumps(text if len(text) <= 60 else text[:59] + "…", ensure_ascii=False)


def _extra_keys_warning(path: Path, counts: Mapping[str, int]) -> str:
    """One line naming the keys of ``path`` kept under ``metadata``, with near-miss hints."""
    known = [*MANIFEST_FIELDS, *MANIFEST_ALIASES]
    parts: list[str] = []
    for key in sorted(counts)[:_MAX_KEYS_NAMED]:
        n = counts[key]
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
        hint = f", did you mean {_shown_key(close[0])}?" if close else ""
        parts.append(f"{_shown_key(key)} ({n} line{'s' if n != 1 else ''}{hint})")
    if len(counts) > _MAX_KEYS_NAMED:
        parts.append(f"and {len(counts) - _MAX_KEYS_NAMED} more")
    fields = ", ".join(f for f in MANIFEST_FIELDS if f != "metadata")
    return (
        f'data {path}: keys that are not manifest fields, kept under "metadata": '
        f"{', '.join(parts)} — rename any that was meant as a field ({fields}; or an "
        "alias such as label, caption, question, file_name)"
    )


def _manifest_line(
    raw: bytes,
    lineno: int,
    where: str,
    root: Path,
    seen: dict[str, int],
    limits: DataLimits,
    extra_keys: dict[str, int],
) -> Sample | DataError | None:
    fallback_id = f"line-{lineno}"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DataError(
            fallback_id, f"{where}: not valid UTF-8 (byte {exc.start}) — save the file as UTF-8"
        )
    if lineno == 1:
        text = text.lstrip("\ufeff")
    text = text.strip()
    if not text:
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        return DataError(
            fallback_id,
            f"{where}: invalid JSON ({exc.msg} at column {exc.colno}) — "
            "write one complete JSON object per line",
        )
    except RecursionError:
        return DataError(fallback_id, f"{where}: JSON nested too deeply — flatten the line")
    try:
        sample, extras = _manifest_sample(obj, fallback_id, root, limits)
    except _LineError as exc:
        sample_id = _peek_id(obj)
        if sample_id is not None and sample_id in seen:
            sample_id = None
        return DataError(sample_id or fallback_id, f"{where}: {exc}")
    first = seen.get(sample.id)
    if first is not None:
        return DataError(
            fallback_id,
            f"{where}: duplicate id {sample.id!r} (first on line {first}) — make ids unique",
        )
    seen[sample.id] = lineno
    for key in extras:
        extra_keys[key] = extra_keys.get(key, 0) + 1
    return sample


def _peek_id(obj: object) -> str | None:
    if isinstance(obj, dict):
        value = obj.get("id")
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    return None


def _type_name(value: object) -> str:
    return {
        dict: "object",
        list: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _same_value(a: object, b: object) -> bool:
    """JSON values equal as JSON (``1`` and ``"1"`` differ; key order does not matter)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _manifest_fields(
    obj: dict[str, Any],
) -> tuple[dict[str, tuple[str, Any]], dict[str, Any]]:
    """Map a line's keys onto the manifest fields.

    Returns ``({field: (key it came from, value)}, {other key: value})``. A canonical key wins
    over its aliases for naming; a ``null`` alias counts as absent.

    Raises:
        _LineError: one field given under two keys with different values.
    """
    found: dict[str, tuple[str, Any]] = {}
    extras: dict[str, Any] = {}
    for key, value in obj.items():
        name = key if key in MANIFEST_FIELDS else MANIFEST_ALIASES.get(key)
        if name is None:
            extras[key] = value
            continue
        if value is None:  # absent, but a canonical null still counts as given (as before)
            if key == name and name not in found:
                found[name] = (key, None)
            continue
        if name in found and found[name][1] is not None:
            other = found[name][0]
            if not _same_value(found[name][1], value):
                first, second = (key, other) if key == name else (other, key)
                what = "an alias of it" if name == first else f'both read as "{name}"'
                raise _LineError(
                    f'has both "{first}" and "{second}" ({what}) with different values — keep '
                    'one of them (move the other under "metadata")'
                )
            if key != name:
                continue
        found[name] = (key, value)
    return found, extras


def _manifest_sample(
    obj: object, fallback_id: str, root: Path, limits: DataLimits
) -> tuple[Sample, list[str]]:
    """The sample of one parsed line, and the keys kept under its ``metadata``."""
    if not isinstance(obj, dict):
        raise _LineError(
            f"expected a JSON object, got {_type_name(obj)} — write one object per line"
        )
    found, extras = _manifest_fields(obj)

    def key(name: str) -> str:
        return found[name][0] if name in found else name

    def value(name: str) -> Any:
        return found[name][1] if name in found else None

    sample_id = fallback_id
    if value("id") is not None:
        raw_id = value("id")
        if isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
            raise _LineError(
                f'"id" must be a string or integer, got {_type_name(raw_id)} — quote the id'
            )
        sample_id = str(raw_id)
        if not sample_id.strip():
            raise _LineError('"id" is empty — give a non-empty id or drop the field')

    if "image" in found and "images" in found:
        raise _LineError(f'has both "{key("image")}" and "images" — use one of them')
    paths: list[str]
    if "images" in found:
        images = value("images")
        if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
            raise _LineError(
                f'"images" must be an array of path strings, got {_type_name(images)} — '
                'write "images": ["a.png", "b.png"]'
            )
        paths = list(images)
    elif value("image") is not None:
        if not isinstance(value("image"), str):
            raise _LineError(
                f'"{key("image")}" must be a path string, got {_type_name(value("image"))} — '
                f'write "{key("image")}": "rel/path.png"'
            )
        paths = [value("image")]
    else:
        paths = []

    prompt = value("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise _LineError(f'"{key("prompt")}" must be a string, got {_type_name(prompt)} — quote it')
    if not paths and prompt is None:
        raise _LineError('has no "image", "images" or "prompt" — give at least one of them')

    target = value("target")
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, str | int | float):
            raise _LineError(
                f'"{key("target")}" must be a string or number, got {_type_name(target)} — quote it'
            )
        target = str(target)

    attributes = value("attributes")
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise _LineError(
            f'"attributes" must be an object of strings, got {_type_name(attributes)} — '
            'write "attributes": {"group": "a"}'
        )
    for name, text in attributes.items():
        if not isinstance(text, str):
            raise _LineError(
                f'"attributes.{name}" must be a string, got {_type_name(text)} — quote the value'
            )

    metadata = value("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise _LineError(f'"metadata" must be an object, got {_type_name(metadata)} — wrap it')
    for name, extra in extras.items():
        if name in metadata and not _same_value(metadata[name], extra):
            raise _LineError(
                f'has {_shown_key(name)} both as a key and under "metadata", with different '
                "values — keep one of them"
            )

    refs = tuple(ImageRef.from_path(_resolve_member(root, p), limits) for p in paths)
    sample = Sample(
        id=sample_id,
        images=refs,
        prompt=prompt,
        target=target,
        attributes=dict(attributes),
        metadata={**metadata, **extras},
    )
    return sample, list(extras)


def _resolve_member(root: Path, rel: str) -> Path:
    """Resolve a manifest image path, refusing anything that leaves the manifest's folder."""
    shown = json.dumps(rel)
    if not rel.strip():
        raise _LineError("image path is empty — give a path relative to the manifest's folder")
    if "\x00" in rel:
        raise _LineError(f"image path {shown} contains a NUL byte — fix the path")
    posix = rel.replace("\\", "/")
    windows = PureWindowsPath(rel)
    if posix.startswith("/") or windows.drive or windows.root:
        raise _LineError(
            f"image path {shown} is absolute — give a path relative to the manifest's folder"
        )
    if ".." in PurePosixPath(posix).parts:
        raise _LineError(
            f"image path {shown} escapes the manifest's folder via '..' — "
            "move the image under the manifest's folder"
        )
    full = (root / posix).resolve()
    if not full.is_relative_to(root):
        raise _LineError(
            f"image path {shown} resolves outside the manifest's folder (symbolic link) — "
            "copy the image under the manifest's folder"
        )
    return full


# --------------------------------------------------------------------------------------------
# Hugging Face datasets saved on disk


@dataclass(frozen=True)
class _HFColumns:
    image: str
    image_is_list: bool
    target: str | None
    target_names: tuple[str, ...] | None
    prompt: str | None
    id: str | None
    attributes: tuple[str, ...]
    attribute_names: Mapping[str, tuple[str, ...]]


def _load_hf(spec: DataSpec) -> Any:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(spec.path))
    except Exception as exc:  # corrupt arrow files, version mismatch, missing shards...
        raise InputError(
            f"data {spec.path}: cannot load the saved dataset ({_one_line(exc)}) — "
            "re-create it with Dataset.save_to_disk"
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        splits = sorted(loaded)
        if spec.split is None:
            if len(splits) == 1:
                return loaded[splits[0]]
            raise InputError(
                f"data {spec.path}: has splits {', '.join(splits)} — "
                f"pick one with hf-disk:{spec.path}#{splits[0]}"
            )
        if spec.split not in loaded:
            raise InputError(
                f"data {spec.path}: no split {spec.split!r} — use one of {', '.join(splits)}"
            )
        return loaded[spec.split]
    if spec.split is not None and str(loaded.split or "") != spec.split:
        raise InputError(
            f"data {spec.path}: is a single dataset without split {spec.split!r} — "
            f"drop '#{spec.split}'"
        )
    return loaded


def _image_kind(feature: Any) -> str | None:
    """``"single"`` for an ``Image`` feature, ``"list"`` for a list of them, else ``None``."""
    import datasets

    if isinstance(feature, datasets.Image):
        return "single"
    if isinstance(feature, datasets.List | datasets.Sequence | datasets.LargeList):
        inner = getattr(feature, "feature", None)
        if isinstance(inner, datasets.Image):
            return "list"
    if isinstance(feature, list) and len(feature) == 1 and isinstance(feature[0], datasets.Image):
        return "list"
    return None


def _label_names(feature: Any) -> tuple[str, ...] | None:
    import datasets

    if isinstance(feature, datasets.ClassLabel):
        return tuple(feature.names)
    return None


def _auto_column(
    spec: DataSpec,
    features: Mapping[str, Any],
    candidates: tuple[str, ...],
    what: str,
    option_key: str,
    notes: _Notes,
) -> str | None:
    """The first of ``candidates`` the dataset has; one warning when several could be meant."""
    present = [c for c in candidates if c in features]
    if len(present) > 1:
        others = ", ".join(repr(c) for c in present[1:])
        notes.warn(
            what,
            [present[0]],
            f"data {spec.path}: several columns could be the {what} ({present[0]!r}, {others}); "
            f"using {present[0]!r} — name another with hf-disk:PATH?{option_key}=COL",
        )
    return present[0] if present else None


def _resolve_hf_columns(spec: DataSpec, features: Mapping[str, Any], notes: _Notes) -> _HFColumns:
    columns = list(features)
    listed = ", ".join(columns)

    def need(name: str, what: str) -> str:
        if name not in features:
            raise InputError(
                f"data {spec.path}: no {what} column {name!r} (columns: {listed}) — "
                "name an existing column"
            )
        return name

    if spec.image_column is not None:
        image = need(spec.image_column, "image")
        kind = _image_kind(features[image])
        if kind is None:
            raise InputError(
                f"data {spec.path}: column {image!r} is not an Image feature — "
                f"cast it with ds.cast_column({image!r}, datasets.Image()) and save again"
            )
    else:
        found = [(c, _image_kind(features[c])) for c in columns]
        found = [(c, k) for c, k in found if k is not None]
        if not found:
            raise InputError(
                f"data {spec.path}: has no Image column (columns: {listed}) — "
                "cast the image column with datasets.Image() and save again"
            )
        image, kind = found[0]

    target = (
        need(spec.target_column, "target")
        if spec.target_column is not None
        else _auto_column(spec, features, _AUTO_TARGET, "target", "target", notes)
    )
    prompt = (
        need(spec.prompt_column, "prompt")
        if spec.prompt_column is not None
        else _auto_column(spec, features, _AUTO_PROMPT, "prompt", "prompt", notes)
    )
    id_col = need(spec.id_column, "id") if spec.id_column is not None else None
    attributes = tuple(need(c, "attribute") for c in spec.attribute_columns)
    names = {c: n for c in attributes if (n := _label_names(features[c])) is not None}
    return _HFColumns(
        image=image,
        image_is_list=kind == "list",
        target=target,
        target_names=_label_names(features[target]) if target is not None else None,
        prompt=prompt,
        id=id_col,
        attributes=attributes,
        attribute_names=names,
    )


def _iter_hf(spec: DataSpec, limits: DataLimits, notes: _Notes) -> Iterator[Sample | DataError]:
    ds = _load_hf(spec)
    if len(ds) == 0:
        raise InputError(f"data {spec.path}: the dataset has no rows — pass a non-empty dataset")
    cols = _resolve_hf_columns(spec, ds.features, notes)
    return _hf_samples(spec, ds, cols, limits)


def _hf_samples(
    spec: DataSpec, ds: Any, cols: _HFColumns, limits: DataLimits
) -> Iterator[Sample | DataError]:
    wanted = [cols.image, cols.target, cols.prompt, cols.id, *cols.attributes]
    keep = list(dict.fromkeys(c for c in wanted if c is not None))
    # Arrow format: image cells stay undecoded {"bytes", "path"} dicts for our safe loader.
    table_view = ds.select_columns(keep).with_format("arrow")
    index = 0
    for batch in table_view.iter(batch_size=64):
        for row in batch.to_pylist():
            yield _hf_row(spec, cols, row, index, limits)
            index += 1


def _scalar_text(value: object, names: tuple[str, ...] | None) -> str | None:
    """A cell as text: ``ClassLabel`` ids become names, -1 (no label) becomes ``None``."""
    if value is None:
        return None
    if names is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            if value == -1:
                return None
            if 0 <= value < len(names):
                return names[value]
        raise ValueError(f"label id {value!r} outside the ClassLabel range 0..{len(names) - 1}")
    if isinstance(value, str | int | float | bool):
        return str(value)
    raise ValueError(f"expected a scalar, got {type(value).__name__}")


def _hf_row(
    spec: DataSpec, cols: _HFColumns, row: Mapping[str, Any], index: int, limits: DataLimits
) -> Sample | DataError:
    where = f"{spec.path}[{index}]"
    sample_id = str(index)
    try:
        if cols.id is not None:
            raw_id = row.get(cols.id)
            if raw_id is None or str(raw_id) == "":
                raise ValueError(f"id column {cols.id!r} is empty")
            sample_id = str(raw_id)
        target = _scalar_text(row.get(cols.target), cols.target_names) if cols.target else None
        prompt = row.get(cols.prompt) if cols.prompt else None
        if prompt is not None and not isinstance(prompt, str):
            raise ValueError(f"prompt column {cols.prompt!r} holds {type(prompt).__name__}")
        attributes: dict[str, str] = {}
        for col in cols.attributes:
            text = _scalar_text(row.get(col), cols.attribute_names.get(col))
            if text is not None:
                attributes[col] = text
        if target is not None and cols.target_names is not None:
            attributes.setdefault("label", target)
        cells = row.get(cols.image)
        cell_list = (cells or []) if cols.image_is_list else [cells]
        images = tuple(
            _hf_image(
                cell,
                f"{where}.{cols.image}" + (f"[{k}]" if cols.image_is_list else ""),
                limits,
            )
            for k, cell in enumerate(cell_list)
        )
        if not images and prompt is None:
            raise ValueError(f"row has no image in column {cols.image!r} and no prompt")
    except ImageLoadError as exc:
        return DataError(sample_id, str(exc))
    except ValueError as exc:
        return DataError(sample_id, f"data {where}: {exc} — fix the row or map other columns")
    return Sample(
        id=sample_id,
        images=images,
        prompt=prompt,
        target=target,
        attributes=attributes,
        metadata={"index": index, **({"split": spec.split} if spec.split else {})},
    )


def _hf_image(cell: object, name: str, limits: DataLimits | None = None) -> ImageRef:
    from vlmtrust.core.images import load_image_bytes

    limits = limits or DataLimits()
    if not isinstance(cell, dict):
        raise ValueError(f"image cell {name} is empty")
    data = cell.get("bytes")
    if data:
        image = load_image_bytes(
            data,
            name,
            max_pixels=limits.max_image_pixels,
            max_aspect_ratio=limits.max_aspect_ratio,
        )
        return ImageRef.from_image(image, label=name)
    path = cell.get("path")
    if isinstance(path, str) and path:
        # A saved dataset may come from anyone: a path-only cell could point anywhere on this
        # machine (and its pixels would end up in reports or remote requests).
        raise ValueError(
            f"image cell {name} points to an external file instead of embedding the image — "
            "re-save the dataset with the images embedded (Image feature with bytes)"
        )
    raise ValueError(f"image cell {name} is empty")


def _hf_class_names(spec: DataSpec, notes: _Notes) -> list[str]:
    ds = _load_hf(spec)
    features = ds.features
    target = spec.target_column
    if target is None:
        target = _auto_column(spec, features, _AUTO_TARGET, "target", "target", notes)
        if target is None:
            return []
    elif target not in features:
        raise InputError(
            f"data {spec.path}: no target column {target!r} (columns: {', '.join(features)}) — "
            "name an existing column"
        )
    names = _label_names(features[target])
    if names is not None:
        return list(names)
    values = ds.unique(target)
    return sorted({str(v) for v in values if v is not None and not isinstance(v, list | dict)})


def _one_line(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
