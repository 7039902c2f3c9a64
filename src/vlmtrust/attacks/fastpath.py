"""Attack-time CPU rewrites of a frozen model's forward: same function, less work.

An attack only needs ``∂loss/∂pixels`` of a frozen model, many times over the same batch. On
CPU a few parts of a Hugging Face ViT forward/backward cost far more than they must; while the
engine attacks (:func:`vlmtrust.attacks.pgd.attack`) they are swapped for cheaper forms that
compute the same function, and restored afterwards. Each rewrite is a context manager that
yields how many modules it touched, applies to CPU modules only and is checked by a test for
equal values and gradients (up to float rounding).

Measured effect: docs/results/robustness.md#fastpath
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

#: Switch a rewrite off by name (``bench/bench_pgd.py --ablate`` measures each one's share).
ENABLED: dict[str, bool] = {
    "patch_matmul": True,
    "quick_gelu_silu": True,
    "eager_attention": True,
    "cls_only_last_layer": True,
}

#: Vision towers with at most this many tokens run eager attention while attacked (see
#: :func:`eager_short_attention`); 65 = a 64 px image in 16 px patches plus CLS, up to 8×8.
SHORT_SEQUENCE = 65


@contextlib.contextmanager
def attack_fast_path(module: Any, *, pooled_only: bool = False) -> Iterator[dict[str, int]]:
    """All rewrites below at once; yields ``{rewrite: modules touched}``.

    ``pooled_only``: the objective reads only the pooled image embedding (zero-shot and
    embedding-distance objectives), which allows :func:`cls_only_last_layer`.
    """
    rewrites: dict[str, Callable[[Any], contextlib.AbstractContextManager[int]]] = {
        "patch_matmul": patch_embeddings_as_matmul,
        "quick_gelu_silu": quick_gelu_as_silu,
        "eager_attention": eager_short_attention,
        "cls_only_last_layer": cls_only_last_layer,
    }
    with contextlib.ExitStack() as stack:
        counts = {}
        for name, rewrite in rewrites.items():
            on = ENABLED.get(name, True) and (pooled_only or name != "cls_only_last_layer")
            counts[name] = stack.enter_context(rewrite(module)) if on else 0
        yield counts


def _transformers_major() -> int:
    try:
        import transformers
    except ImportError:  # pragma: no cover - transformers is a core dependency
        return 0
    return int(str(transformers.__version__).split(".", 1)[0])


def _on_cpu(module: Any) -> bool:
    p = next(iter(module.parameters()), None)
    return p is not None and p.device.type == "cpu"


# ----------------------------------------------------------------------- patch embedding


def _is_patchify(conv: Any) -> bool:
    """A ViT patch embedding: non-overlapping kernel (stride == kernel), no padding/dilation."""
    return (
        conv.stride == conv.kernel_size
        and tuple(conv.padding) == (0, 0)
        and tuple(conv.dilation) == (1, 1)
        and conv.groups == 1
        and conv.weight.device.type == "cpu"
    )


@contextlib.contextmanager
def patch_embeddings_as_matmul(module: Any) -> Iterator[int]:
    """Run CPU ViT patch-embedding convolutions as reshape + matmul while attacking.

    oneDNN's input-gradient of the stride-16 patch convolution is far slower than its forward;
    the same map written as a reshape and one matmul has a cheap, exact backward. The output
    equals the convolution's up to float rounding (a test checks values and gradients).
    Measured effect: docs/results/robustness.md#fastpath.
    Yields the number of convolutions rewritten; the original ``forward`` is restored after.
    """
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d) and _is_patchify(m)]
    for conv in convs:
        conv.forward = _matmul_forward(conv)  # type: ignore[method-assign,assignment]
    try:
        yield len(convs)
    finally:
        for conv in convs:
            del conv.forward


def _matmul_forward(conv: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    import torch

    kh, kw = conv.kernel_size
    out_ch = conv.out_channels

    def forward(x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        gh, gw = h // kh, w // kw  # like the convolution, drop a ragged border
        x = x[:, :, : gh * kh, : gw * kw]
        patches = x.reshape(b, c, gh, kh, gw, kw).permute(0, 2, 4, 1, 3, 5)
        flat = patches.reshape(b * gh * gw, c * kh * kw)
        y = torch.nn.functional.linear(flat, conv.weight.reshape(out_ch, -1), conv.bias)
        return y.reshape(b, gh, gw, out_ch).permute(0, 3, 1, 2)

    return forward


# ----------------------------------------------------------------------- quick GELU

_QUICK = 1.702


def _quick_gelu_silu(x: torch.Tensor) -> torch.Tensor:
    import torch

    # x·σ(1.702x) = silu(1.702x) / 1.702 exactly; silu has one fused kernel each way
    return torch.nn.functional.silu(x * _QUICK) * (1.0 / _QUICK)


@contextlib.contextmanager
def quick_gelu_as_silu(module: Any) -> Iterator[int]:
    """Evaluate CLIP's quick-GELU ``x·σ(1.702x)`` as ``silu(1.702x)/1.702`` on CPU.

    The same function; autograd of the product form runs two multiplications, a sigmoid
    backward (2.8 ms a call at 256 × 17 × 512) and an addition per MLP, the silu form one fused
    backward kernel. Measured effect: docs/results/robustness.md#fastpath.
    """
    try:
        from transformers.activations import QuickGELUActivation
    except ImportError:  # pragma: no cover - transformers is a core dependency
        yield 0
        return
    acts = [m for m in module.modules() if isinstance(m, QuickGELUActivation)]
    acts = acts if _on_cpu(module) else []
    for act in acts:
        act.forward = _quick_gelu_silu  # type: ignore[method-assign,assignment]
    try:
        yield len(acts)
    finally:
        for act in acts:
            del act.forward


# ----------------------------------------------------------------------- attention


@contextlib.contextmanager
def eager_short_attention(module: Any) -> Iterator[int]:
    """Eager (matmul + softmax) attention for CPU vision towers of ≤ :data:`SHORT_SEQUENCE` tokens.

    For 17-token sequences PyTorch's CPU flash-attention kernel spends more on blocking than
    on arithmetic (measured effect: docs/results/robustness.md#fastpath). Only configs that
    describe a vision tower (``image_size`` and ``patch_size``) currently set to ``sdpa`` are
    switched; yields how many.
    """
    configs: dict[int, Any] = {}
    # transformers 4.x binds the attention class at construction: the switch would do nothing
    if _on_cpu(module) and _transformers_major() >= 5:
        for m in module.modules():
            cfg = getattr(m, "config", None)
            size, patch = getattr(cfg, "image_size", None), getattr(cfg, "patch_size", None)
            if not (isinstance(size, int) and isinstance(patch, int) and patch > 0):
                continue
            if (size // patch) ** 2 + 1 > SHORT_SEQUENCE:
                continue
            if getattr(cfg, "_attn_implementation", None) == "sdpa":
                configs[id(cfg)] = cfg
    for cfg in configs.values():
        cfg._attn_implementation = "eager"
    try:
        yield len(configs)
    finally:
        for cfg in configs.values():
            cfg._attn_implementation = "sdpa"


# ----------------------------------------------------------------------- CLS-only last block


@contextlib.contextmanager
def cls_only_last_layer(module: Any) -> Iterator[int]:
    """Compute only the CLS token in the last block of a CLIP vision tower.

    CLIP's image embedding is the last block's CLS output (``last_hidden_state[:, 0]``); the
    other tokens' queries, attention outputs and MLPs in that block feed nothing the embedding
    uses, yet the forward computes them and the backward differentiates them. For an objective
    that reads only the pooled embedding the last block is run with the CLS query alone (keys
    and values still from every token): a quarter of reference:clip's four-block encoder →
    about a fifth less work per step. The block then returns ``(B, 1, d)``, so this applies only
    while such an objective attacks a CPU ``clip`` model under transformers ≥ 5; other towers
    (SigLIP pools by attention over all tokens) are left alone.
    """
    # transformers 5 encoder layers take (hidden, mask) and return a tensor; 4.x passes three
    # arguments and expects a tuple, so the rewrite is left off there
    ok = _on_cpu(module) and _transformers_major() >= 5
    layer = _clip_last_vision_layer(module) if ok else None
    if layer is None:
        yield 0
        return
    layer.forward = _cls_only_forward(layer)
    try:
        yield 1
    finally:
        del layer.forward


def _clip_last_vision_layer(module: Any) -> Any:
    if getattr(getattr(module, "config", None), "model_type", None) != "clip":
        return None
    vm = getattr(module, "vision_model", None)
    layers = getattr(getattr(vm, "encoder", None), "layers", None)
    if not layers:
        return None
    layer = layers[-1]
    attn = getattr(layer, "self_attn", None)
    need = ("q_proj", "k_proj", "v_proj", "out_proj", "head_dim", "scale")
    if attn is None or not all(hasattr(attn, n) for n in need):
        return None
    if not all(hasattr(layer, n) for n in ("layer_norm1", "layer_norm2", "mlp")):
        return None
    return layer


def _cls_only_forward(layer: Any) -> Callable[..., torch.Tensor]:
    import torch

    attn = layer.self_attn
    full = type(layer).forward

    def forward(hidden_states: torch.Tensor, attention_mask: Any = None, **kw: Any) -> Any:
        if attention_mask is not None:  # vision towers run unmasked; keep anything else exact
            return full(layer, hidden_states, attention_mask, **kw)
        b, t, d = hidden_states.shape
        hd = int(attn.head_dim)
        nh = d // hd
        h = layer.layer_norm1(hidden_states)
        q = attn.q_proj(h[:, :1]).view(b, 1, nh, hd).transpose(1, 2)
        k = attn.k_proj(h).view(b, t, nh, hd).transpose(1, 2)
        v = attn.v_proj(h).view(b, t, nh, hd).transpose(1, 2)
        w = torch.softmax((q @ k.transpose(-1, -2)) * attn.scale, dim=-1, dtype=torch.float32)
        o = (w.to(v.dtype) @ v).transpose(1, 2).reshape(b, 1, d)
        x = hidden_states[:, :1] + attn.out_proj(o)
        return x + layer.mlp(layer.layer_norm2(x))

    return forward
