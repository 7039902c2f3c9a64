"""Shared plumbing for the ``hf:`` backends: resolving a target, kind detection, fingerprints.

A ``hf:`` target is either a local directory written by ``save_pretrained`` or a Hugging Face
Hub repo id (optionally ``org/name@revision``). Everything here is cheap to import: torch and
transformers are imported inside the functions that need them.

Weights are loaded from safetensors only; directories holding only pickle checkpoints
(``pytorch_model.bin`` and friends) are refused before anything is deserialised.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlmtrust.core.errors import InputError, ModelSpecError
from vlmtrust.core.files import hash_into, respect_umask

if TYPE_CHECKING:
    import torch
    from PIL import Image

__all__ = [
    "DUAL_MODEL_TYPES",
    "batched",
    "HFTarget",
    "LocalBackend",
    "detect_kind",
    "fingerprint",
    "from_pretrained",
    "is_offline",
    "load_config",
    "load_weights",
    "pil_backend_kwargs",
    "resolve_device",
    "resolve_dtype",
    "resolve_target",
    "save_model_dir",
    "transformers_major",
]

DUAL_MODEL_TYPES: frozenset[str] = frozenset(
    {"clip", "siglip", "siglip2", "chinese_clip", "altclip", "metaclip_2"}
)
"""Config ``model_type`` values loaded as dual encoders (contrastive image/text towers)."""

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")
_SUPPORTED = (
    "dual encoders (CLIP, SigLIP, SigLIP2, ChineseCLIP, AltCLIP, MetaCLIP2) and "
    "image-text-to-text models (LLaVA family, Qwen2-VL, Idefics3/SmolVLM, ...)"
)
# Files besides the weights whose content changes what the model computes.
_FINGERPRINT_SIDE_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "model.safetensors.index.json",
)


def is_offline() -> bool:
    """True when the Hugging Face Hub must not be contacted (``HF_HUB_OFFLINE`` and friends)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}:
            return True
    return False


@dataclass(frozen=True)
class HFTarget:
    """A resolved ``hf:`` target.

    Attributes:
        spec: the spec as the user wrote it (for error messages), e.g. ``hf:/models/clip``.
        path: the local directory, or ``None`` for a Hub repo id.
        repo_id: the Hub repo id, or ``None`` for a local directory.
        revision: the requested Hub revision (branch, tag or commit), if any.
    """

    spec: str
    path: Path | None
    repo_id: str | None
    revision: str | None = None

    @property
    def name_or_path(self) -> str:
        """What ``from_pretrained`` takes."""
        if self.path is not None:
            return str(self.path)
        assert self.repo_id is not None
        return self.repo_id

    def pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every ``from_pretrained`` call on this target gets."""
        kw: dict[str, Any] = {}
        if self.path is not None or is_offline():
            kw["local_files_only"] = True
        if self.revision is not None:
            kw["revision"] = self.revision
        return kw


def _looks_like_path(target: str) -> bool:
    return (
        target.startswith(("/", "./", "../", "~", "\\"))
        or target in (".", "..")
        or bool(re.match(r"^[A-Za-z]:[\\/]", target))
        or os.path.exists(os.path.expanduser(target))
    )


def resolve_target(target: str, *, spec: str | None = None) -> HFTarget:
    """Resolve ``target`` (directory or Hub repo id) and check it can be loaded safely.

    Args:
        target: what follows ``hf:`` in a spec.
        spec: the full spec, used in error messages (defaults to ``"hf:" + target``).

    Returns:
        The resolved target.

    Raises:
        ModelSpecError: the directory is missing, is not a model directory, holds only pickle
            weights, or the repo id is malformed.
    """
    shown = spec or f"hf:{target}"
    t = target.strip()
    if not t:
        raise ModelSpecError(f"model spec {shown!r} is empty: use hf:ORG/NAME or hf:/path/to/dir")
    if _looks_like_path(t):
        path = Path(os.path.expanduser(t)).resolve()
        if not path.exists():
            raise ModelSpecError(
                f"model spec {shown!r}: directory {path} does not exist; "
                "pass a folder written by save_pretrained"
            )
        if not path.is_dir():
            raise ModelSpecError(
                f"model spec {shown!r}: {path} is a file; pass the folder that holds config.json"
            )
        if not (path / "config.json").is_file():
            raise ModelSpecError(
                f"model spec {shown!r}: {path} is not a Hugging Face model directory "
                "(no config.json); pass the folder written by save_pretrained"
            )
        _check_safetensors_dir(path, shown)
        return HFTarget(spec=shown, path=path, repo_id=None)
    repo, at, revision = t.partition("@")
    if not _REPO_ID.match(repo) or (at and not revision):
        raise ModelSpecError(
            f"model spec {shown!r}: {t!r} is neither an existing directory nor a Hub repo id; "
            "use hf:ORG/NAME[@REVISION] or hf:/path/to/dir"
        )
    return HFTarget(spec=shown, path=None, repo_id=repo, revision=revision or None)


def _check_safetensors_dir(path: Path, shown: str) -> None:
    names = [p.name for p in path.iterdir() if p.is_file()]
    if any(n.endswith(".safetensors") for n in names):
        return
    pickles = sorted(n for n in names if n.endswith(_PICKLE_SUFFIXES))
    if pickles:
        raise ModelSpecError(
            f"model spec {shown!r}: {path} holds only pickle weights ({', '.join(pickles)}), "
            "which vlmtrust refuses to load; convert them to safetensors in a trusted "
            "environment (model.save_pretrained(dir, safe_serialization=True))"
        )
    raise ModelSpecError(
        f"model spec {shown!r}: {path} has no *.safetensors weights; "
        "save the model with save_pretrained(dir, safe_serialization=True)"
    )


def load_config(target: str | HFTarget, *, spec: str | None = None) -> Any:
    """Load the transformers config of a target, offline when the environment says so.

    Raises:
        ModelSpecError: the target cannot be resolved or the config cannot be read.
    """
    t = target if isinstance(target, HFTarget) else resolve_target(target, spec=spec)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(t.name_or_path, **t.pretrained_kwargs())
    except (OSError, ValueError, KeyError) as e:
        raise _load_error(t, e) from e


def _load_error(t: HFTarget, e: BaseException) -> ModelSpecError:
    """Turn a transformers/hub loading failure into one actionable line."""
    text = str(e).strip()
    first = f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__
    if t.repo_id is not None and is_offline():
        return ModelSpecError(
            f"model spec {t.spec!r}: {t.repo_id} is not in the local Hugging Face cache and "
            "HF_HUB_OFFLINE=1; download it first (`hf download "
            f"{t.repo_id}` with network) or pass a local directory"
        )
    if t.repo_id is not None:
        return ModelSpecError(
            f"model spec {t.spec!r}: could not fetch {t.repo_id} from the Hugging Face Hub "
            f"({first}); check the repo id, your network and HF_TOKEN"
        )
    return ModelSpecError(
        f"model spec {t.spec!r}: could not load {t.path} ({first}); the files may be corrupt "
        "or partial: re-save the model with save_pretrained(dir, safe_serialization=True)"
    )


def detect_kind(target: str, *, spec: str | None = None) -> Literal["dual", "generative"]:
    """Detect whether a ``hf:`` target is a dual encoder or a generative VLM, from its config.

    Args:
        target: a local directory or Hub repo id (what follows ``hf:``).
        spec: the full spec, for error messages.

    Returns:
        ``"dual"`` for CLIP-like contrastive models, ``"generative"`` for architectures in
        transformers' image-text-to-text auto mapping.

    Raises:
        ModelSpecError: the target cannot be loaded or its architecture is not supported.
    """
    t = resolve_target(target, spec=spec)
    cfg = load_config(t)
    model_type = str(getattr(cfg, "model_type", ""))
    if model_type in DUAL_MODEL_TYPES:
        return "dual"
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    if model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        return "generative"
    raise ModelSpecError(
        f"model spec {t.spec!r}: architecture {model_type or 'unknown'!r} is not a supported "
        f"vision-language model; hf: supports {_SUPPORTED}"
    )


# --------------------------------------------------------------------------- fingerprints

_FP_CACHE: dict[tuple[str, tuple[tuple[str, int, int], ...]], str] = {}


def _fingerprint_files(path: Path) -> list[Path]:
    files = [p for p in path.iterdir() if p.is_file() and p.name.endswith(".safetensors")]
    files += [path / n for n in _FINGERPRINT_SIDE_FILES if (path / n).is_file()]
    return sorted(set(files), key=lambda p: p.name)


def fingerprint(target: str | HFTarget, *, spec: str | None = None) -> str:
    """A stable identifier of the model's weights, for caching.

    For a local directory: ``sha256:<hex>`` over the safetensors weight files, the config and
    the processor/tokenizer files (names and contents, in name order). For a Hub repo id:
    ``name@revision``, the revision resolved to the commit hash in the local cache when it can
    be (else the requested revision, or ``main``).

    Example:
        >>> fingerprint("openai/clip-vit-base-patch32@v1.0")
        'openai/clip-vit-base-patch32@v1.0'
    """
    t = target if isinstance(target, HFTarget) else resolve_target(target, spec=spec)
    if t.path is None:
        assert t.repo_id is not None
        return f"{t.repo_id}@{_cached_commit(t.repo_id, t.revision) or t.revision or 'main'}"
    files = _fingerprint_files(t.path)
    key = (
        str(t.path),
        tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files),
    )
    if key in _FP_CACHE:
        return _FP_CACHE[key]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(b"\x00")
        h.update(str(p.stat().st_size).encode())
        h.update(b"\x00")
        hash_into(h, p)
    fp = "sha256:" + h.hexdigest()
    _FP_CACHE[key] = fp
    return fp


def _cached_commit(repo_id: str, revision: str | None) -> str | None:
    """Commit hash of ``repo_id@revision`` in the local Hub cache, if it is there."""
    if revision is not None and re.fullmatch(r"[0-9a-f]{40}", revision):
        return revision
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub ships with transformers
        return None
    found = try_to_load_from_cache(repo_id, "config.json", revision=revision)
    if isinstance(found, str):
        parts = Path(found).parts
        if "snapshots" in parts:
            i = parts.index("snapshots")
            if i + 1 < len(parts):
                return parts[i + 1]
    return None


# --------------------------------------------------------------------------- device / dtype

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The torch device to run on: ``cuda`` when available (or as asked), else ``cpu``.

    Raises:
        InputError: the device string is invalid or names an unavailable CUDA device.
    """
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise InputError(f"device {device!r} is not a torch device; use cpu, cuda or cuda:N") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for but CUDA is not available; use device='cpu'")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, *, half_on_gpu: bool = False
) -> torch.dtype:
    """The parameter dtype: as asked, else float32 (bfloat16/float16 on GPU if ``half_on_gpu``).

    Raises:
        InputError: the dtype name is not one of float32, bfloat16, float16.
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if half_on_gpu and device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    name = _DTYPES.get(str(dtype).lower())
    if name is None:
        raise InputError(f"dtype {dtype!r} is not supported; use float32, bfloat16 or float16")
    out: torch.dtype = getattr(torch, name)
    return out


@dataclass(frozen=True)
class LocalSetup:
    """What every local ``hf:`` backend resolves before it reads any weights."""

    target: HFTarget
    device: torch.device
    dtype: torch.dtype
    config: Any
    model_type: str


def local_setup(
    target: str,
    *,
    spec: str | None,
    device: str | torch.device | None,
    dtype: str | torch.dtype | None,
    batch_size: int,
    half_on_gpu: bool = False,
) -> LocalSetup:
    """Validate the batch size, resolve target, device and dtype, and read the config.

    Raises:
        InputError: a bad batch size, device or dtype.
        ModelSpecError: the target cannot be found or its config cannot be read.
    """
    if batch_size < 1:
        raise InputError(f"batch_size={batch_size} must be ≥ 1")
    t = resolve_target(target, spec=spec)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev, half_on_gpu=half_on_gpu)
    config = load_config(t)
    return LocalSetup(t, dev, dt, config, str(config.model_type))


class LocalBackend:
    """Attributes every local ``hf:`` backend keeps from its :class:`LocalSetup`."""

    spec: str
    target: HFTarget
    batch_size: int
    device: torch.device
    dtype: torch.dtype
    config: Any
    model_type: str

    def _adopt(self, setup: LocalSetup, batch_size: int) -> HFTarget:
        """Keep ``setup``'s target, device, dtype and config; return the target."""
        self.spec = setup.target.spec
        self.target = setup.target
        self.batch_size = batch_size
        self.device = setup.device
        self.dtype = setup.dtype
        self.config = setup.config
        self.model_type = setup.model_type
        return setup.target


def normalisation(image_processor: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of an image processor as ``(1, C, 1, 1)`` float32 tensors.

    Identity (0, 1) when the processor does not normalise or names no statistics.
    """
    import torch

    mean = getattr(image_processor, "image_mean", None) or (0.0, 0.0, 0.0)
    std = getattr(image_processor, "image_std", None) or (1.0, 1.0, 1.0)
    if not getattr(image_processor, "do_normalize", True):
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return (
        torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1),
        torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1),
    )


def model_fingerprint(t: HFTarget, dtype: torch.dtype) -> str:
    """Cache key of loaded weights: the files' fingerprint plus the dtype.

    Call it after loading (a Hub download has put the resolved commit in the cache by then);
    the dtype is part of it so fp16 GPU outputs are never served to an fp32 CPU run.
    """
    return f"{fingerprint(t)}|{str(dtype).removeprefix('torch.')}"


def pil_backend_kwargs() -> dict[str, Any]:
    """Keyword arguments that make (Auto)processors use the PIL image backend.

    transformers ≥ 5 selects image-processor backends with ``backend=``; 4.x with ``use_fast``.
    Either way the PIL path is taken, so torchvision is never needed.
    """
    import transformers

    major = int(transformers.__version__.split(".")[0])
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


def batched(n: int, size: int) -> Iterable[slice]:
    """Slices covering ``range(n)`` in chunks of ``size``."""
    if size < 1:
        raise InputError(f"batch_size={size} must be ≥ 1")
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


def transformers_major() -> int:
    """Major version of the installed transformers."""
    import transformers

    return int(transformers.__version__.split(".")[0])


def from_pretrained(auto_cls: Any, t: HFTarget, **kwargs: Any) -> Any:
    """``auto_cls.from_pretrained`` on a target, safetensors-only, errors as one line.

    Raises:
        ModelSpecError: the files cannot be loaded (missing, pickle-only, not cached offline).
    """
    kw = {**t.pretrained_kwargs(), **kwargs}
    try:
        return auto_cls.from_pretrained(t.name_or_path, **kw)
    except Exception as e:
        # OSError: missing / not cached; SafetensorError: corrupt or truncated weight file.
        if isinstance(e, OSError | ValueError | KeyError | TypeError | RuntimeError) or (
            type(e).__name__ == "SafetensorError"
        ):
            raise _load_error(t, e) from e
        raise


def load_weights(auto_cls: Any, t: HFTarget, *, dtype: torch.dtype) -> Any:
    """Load a model's weights from safetensors only (pickle checkpoints are refused)."""
    key = "dtype" if transformers_major() >= 5 else "torch_dtype"
    from transformers.utils import logging as hf_logging

    # A per-tensor progress bar on every load clutters the audit's own progress display.
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    return from_pretrained(auto_cls, t, use_safetensors=True, **{key: dtype})


def save_model_dir(model: Any, out_dir: str | os.PathLike[str], *processors: Any) -> Path:
    """Write ``model`` (safetensors) and its processors/tokenizers with ``save_pretrained``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if transformers_major() >= 5:  # v5 always writes safetensors
        model.save_pretrained(out)
    else:  # pragma: no cover - transformers 4.x
        model.save_pretrained(out, safe_serialization=True)
    for p in processors:
        if p is not None:
            p.save_pretrained(out)
    respect_umask(out)  # safetensors writes 0600 files
    return out


def rgb_images(images: Sequence[Image.Image]) -> list[Image.Image]:
    """``images`` as RGB PIL images; an :class:`InputError` for anything that is not one."""
    from PIL import Image

    out = []
    for i, im in enumerate(images):
        if not isinstance(im, Image.Image):
            raise InputError(
                f"images[{i}] is a {type(im).__name__}, not a PIL image; load it with "
                "vlmtrust's image loader first"
            )
        out.append(im if im.mode == "RGB" else im.convert("RGB"))
    return out


def plain_pixel_shape(image_processor: Any, *, tolerant: bool = False) -> tuple[int, int] | None:
    """``(H, W)`` when the processor yields only ``(B, 3, H, W)`` pixel_values, else None.

    ``tolerant``: a processor that raises on the probe image also gives None.
    """
    from PIL import Image

    probe = Image.new("RGB", (8, 8), (127, 127, 127))
    try:
        out = image_processor(images=[probe], return_tensors="pt")
    except Exception:  # noqa: BLE001 - exotic processors: no white-box path
        if tolerant:
            return None
        raise
    pv = out.get("pixel_values")
    if set(out.keys()) != {"pixel_values"} or pv is None or pv.ndim != 4:
        return None
    return (int(pv.shape[-2]), int(pv.shape[-1]))
