"""``fairness/prompt_array`` — learned prompt tokens trained against an attribute adversary.

After Berg et al. 2022 ("A Prompt Array Keeps the Bias Away: Debiasing Vision-Language Models
with Adversarial Learning"). ``n_tokens`` learned embeddings are prepended to every text at
the text tower's input (after the start token, before the words; the tokens are continuous
vectors, not vocabulary words). The image tower is unchanged.

Training, on the train part of the labelled fitting gallery (:func:`_trained.split_fit`):

* an adversary reads the protected attribute from an image's similarities to the neutral
  training ``queries`` embedded with the prompt. The queries are the concept names in
  :data:`TRAIN_TEMPLATES` by default (wordings the probes do not use), or, with
  ``queries="probe"``, :data:`~vlmtrust.data.synthworld.NEUTRAL_QUERIES`, the default queries
  of ``fairness/retrieval_skew`` (a prompt fitted for the wordings that probe measures; its
  images stay held out), or a list. Three adversaries (``adversary``):

  - ``"topk"`` (default): for each query, the group shares among the images in a soft top
    ``top_share`` of the query's ranking (each column standardised; an image's weight is a
    sigmoid of its distance above the column's ``1 − top_share`` quantile) against the groups'
    shares of all training images; the term is the mean over queries of their KL divergence
    (:func:`top_skew`), the quantity MaxSkew@k reads, and it reads every training image on
    each step;
  - ``"joint"`` (Berg et al.'s form): a small MLP over all the similarities together
    (standardised by their mean and spread under the base model), trained by gradient steps
    alongside the prompt, whose output the prompt drives to uniform;
  - ``"fisher"``: each query's similarities standardised over the batch, read by the best
    single-threshold reader of each query, refitted in closed form on every batch: the share of
    each query's variance between the groups (:func:`separability`), averaged over the queries
    and ``anchors`` random vocabulary words in the training templates.

  A shift or scale of one query's similarities changes no ranking, which is why ``topk`` and
  ``fisher`` standardise each query over the batch. What each form does on reference:clip,
  over 5 seeds: ``docs/results/fairness-mitigations.md``;
* the prompt is updated to minimise ``zero-shot CE + adv_weight · adversary term +
  keep_weight · (1 − cos(prompted text, original text))`` (``adv_weight`` by default 30 for
  ``topk``, 3 for ``joint``, 20 for ``fisher``): the zero-shot term classifies each image's
  ``concept`` (occupation) among the concept prompts, the keep term holds the prompted
  training texts and ``anchors`` prompts ``"a photo of a WORD"`` of random vocabulary words
  near their original embeddings, so prompts the training never saw keep working.

After each epoch the prompt is a checkpoint; the checkpoint kept is chosen on the validation
part only (:func:`_trained.select_checkpoint`): the lowest validation bias among checkpoints
within ``max_drop`` of the base zero-shot accuracy of the concept prompts. The bias is, for
``topk``, the mean over queries of MaxSkew@k against the prior with ``k = top_share`` of the
validation images (:func:`query_top_skew`); for ``fisher``, the mean over queries of the linear
leakage of the attribute from that query's similarity; for ``joint``, the linear leakage from
all of them.

Berg et al.'s protocol, for comparison (their paper and the authors' code,
``oxai/debias-vision-lang``): CLIP ViT-B/16 and others, FairFace images; the prompt array
(2 tokens in the released models) is trained on half of a list of paired adjectives in one
template (``"a photo of a {} person"``) and bias is measured by MaxSkew/NDKL over the
training prompts together with held-out adjectives in two templates; the adversary is an MLP
that reads the gender from an image's similarity logits to the training prompts, pre-trained
alone for some epochs and then alternated with the prompt, which ascends the adversary's
cross-entropy; a penalty keeps the training prompts' embeddings near the original ones and an
image–text contrastive loss (Flickr30K) keeps the representation; checkpoints are kept on
the bias measure, and training stops once zero-shot / retrieval performance falls too far.
Needs a CLIP-style transformers dual encoder (``hf:`` CLIP or ``reference:clip``); the prompt
is stored in ``wrapper.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from vlmtrust.core.errors import InputError
from vlmtrust.core.mitigation import MitigationContext, mitigation
from vlmtrust.core.params import Params
from vlmtrust.data.synthworld import NEUTRAL_QUERIES
from vlmtrust.mitigations import _train
from vlmtrust.mitigations.fairness import _dual, _trained

__all__ = ["PromptArray", "PromptArrayModel", "PromptArrayParams", "prefixed_text_features"]

TRAIN_TEMPLATES: tuple[str, ...] = ("a picture of a {}", "an image of a {}", "a {} at work")
"""Templates of the default training queries (the concept names in each)."""

ADV_WEIGHTS: dict[str, float] = {"topk": 30.0, "joint": 3.0, "fisher": 20.0}
"""Default ``adv_weight`` of each adversary."""


class PromptArrayParams(Params):
    """Parameters of ``fairness/prompt_array``."""

    attribute: str = Field("group", description="protected attribute the adversary predicts")
    concept: str = Field("occupation", description="attribute whose zero-shot accuracy is kept")
    template: str = Field("a photo of a {}", description="concept prompt; {} is the name")
    queries: list[str] | Literal["probe"] | None = Field(
        None,
        description='neutral training queries (default: concept names in 3 templates; "probe": '
        "fairness/retrieval_skew's default queries)",
    )
    n_tokens: int = Field(4, ge=1, le=16, description="learned prompt tokens")
    epochs: int = Field(16, ge=1, le=1000, description="epochs (one checkpoint each)")
    steps_per_epoch: int = Field(10, ge=1, le=10_000, description="optimiser steps per epoch")
    batch_size: int = Field(64, ge=2, le=4096, description="images per step (topk: all)")
    lr: float = Field(0.01, gt=0.0, lt=1.0, description="Adam learning rate of the prompt")
    adv_lr: float = Field(0.01, gt=0.0, lt=1.0, description="Adam learning rate of the adversary")
    adv_weight: float | None = Field(
        None,
        ge=0.0,
        le=1e4,
        description="weight of the adversary term (default: topk 30, joint 3, fisher 20)",
    )
    keep_weight: float = Field(1.0, ge=0.0, le=1e4, description="weight of the keep term")
    anchors: int = Field(
        32, ge=0, le=4096, description="random vocabulary prompts per step in the keep term"
    )
    adv_hidden: int = Field(32, ge=0, le=4096, description="adversary hidden width (0: linear)")
    adversary: Literal["joint", "fisher", "topk"] = Field(
        "topk",
        description="group shares of each query's soft top (topk), one MLP over all queries "
        "(joint, Berg et al.), or a closed-form reader per query (fisher)",
    )
    top_share: float = Field(
        0.083, gt=0.0, lt=1.0, description="topk: share of the images counted as a query's top"
    )
    top_temperature: float = Field(
        0.25, gt=0.0, le=10.0, description="topk: softness of the top cut (standardised units)"
    )
    val_fraction: float = Field(0.3, gt=0.0, lt=1.0, description="share held out for selection")
    max_drop: float = Field(
        0.02, ge=0.0, le=1.0, description="validation accuracy a checkpoint may lose"
    )
    n_fit: int = Field(600, ge=8, le=1_000_000, description="fitting images")
    validation_base: list[float] | None = Field(
        None, description="validation (leakage, accuracy) of the base model (fitted)"
    )
    prefix: list[list[float]] | None = Field(None, description="the learned tokens (fitted)")
    selected_epoch: int | None = Field(None, description="the checkpoint kept (fitted)")
    validation: list[list[float]] | None = Field(
        None, description="validation (leakage, accuracy) per epoch (fitted)"
    )


def _text_model(dual: Any, what: str) -> tuple[Any, Any]:
    """The CLIP text transformer and projection of ``dual``, or one line saying it has none."""
    module = getattr(dual, "model", None)
    tm = getattr(module, "text_model", None)
    proj = getattr(module, "text_projection", None)
    emb = getattr(tm, "embeddings", None)
    if tm is None or proj is None or not hasattr(emb, "token_embedding"):
        raise InputError(
            f"{what} prepends tokens inside a CLIP-style text tower; model "
            f"{getattr(dual, 'spec', dual)} has none (use an hf: CLIP model or reference:clip)"
        )
    return tm, proj


def _words(tokenizer: Any) -> list[str]:
    """Whole-word vocabulary entries (word-start markers stripped), sorted."""
    out = set()
    for w in tokenizer.get_vocab():
        word = str(w).replace("</w>", "").lstrip("▁Ġ")
        if word.isalpha() and len(word) > 2:
            out.add(word)
    return sorted(out)


def separability(z: Any, groups: Any, n_groups: int) -> Any:
    """Mean over columns of the share of ``z``'s variance between the groups (η², torch).

    ``z`` ``(b, q)`` has standardised columns (:func:`_standardise`). Per column, the
    between-group variance ``Σ_g share_g · mean_g²`` is what the best single-threshold reader
    of that column uses: 0 when the column's values do not depend on the group.
    """
    import torch

    onehot = torch.nn.functional.one_hot(groups, n_groups).to(z.dtype)
    share = onehot.mean(0)
    means = onehot.T @ z / onehot.sum(0).clamp_min(1.0)[:, None]
    return (share[:, None] * means.square()).sum(0).mean()


def top_skew(z: Any, groups: Any, n_groups: int, share: float, temperature: float) -> Any:
    """Mean over columns of the KL divergence of the group shares in a soft top from the prior.

    ``z`` ``(b, q)`` has standardised columns. Each image's weight in a column's top is
    ``sigmoid((z − cut) / temperature)``, the cut the column's ``1 − share`` quantile (not
    differentiated); the group shares of that weighted top are compared with the groups' shares
    of the batch. 0 when every column's top holds the groups in their batch proportions (what
    MaxSkew@k against the prior asks of a ranking).
    """
    import torch

    onehot = torch.nn.functional.one_hot(groups, n_groups).to(z.dtype)
    prior = onehot.mean(0).clamp_min(1e-6)
    cut = torch.quantile(z.detach(), 1.0 - share, dim=0)
    w = torch.sigmoid((z - cut) / temperature)
    top = (onehot.T @ w) / w.sum(0).clamp_min(1e-6)
    return (top * (top.clamp_min(1e-6) / prior[:, None]).log()).sum(0).mean()


def query_top_skew(sims: NDArray[np.float64], groups: NDArray[Any], share: float) -> float:
    """Mean over columns of MaxSkew@k against the prior, ``k = share · rows`` (at least 1)."""
    values, codes = np.unique(groups, return_inverse=True)
    n = len(codes)
    k = int(min(max(1, round(share * n)), n - 1))
    prior = np.bincount(codes, minlength=len(values)) / n
    out = []
    for j in range(sims.shape[1]):
        top = np.argsort(-sims[:, j], kind="stable")[:k]
        counts = np.bincount(codes[top], minlength=len(values))
        p = np.where(counts > 0, counts, 1.0) / k
        out.append(float(np.max(np.log(p / prior))))
    return float(np.mean(out))


def _standardise(s: Any) -> Any:
    """Each column minus its batch mean, over its batch standard deviation (torch).

    A shift or a scale of one query's similarities leaves its ranking as it was, so the
    adversary must not see them: against fixed statistics the prompt fools it by moving a
    query's similarities across the adversary's threshold, rankings (and MaxSkew) unchanged.
    """
    return (s - s.mean(0)) / s.std(0).clamp_min(1e-6)


def query_leakage(sims: NDArray[np.float64], groups: NDArray[Any], seed: int) -> float:
    """Mean over the columns (queries) of the linear leakage of ``groups`` from that column."""
    return float(
        np.mean([_trained.linear_leakage(sims[:, [j]], groups, seed) for j in range(sims.shape[1])])
    )


def prefixed_text_features(dual: Any, texts: Sequence[str], prefix: Any) -> Any:
    """L2-normalised text embeddings with ``prefix`` ``(n, width)`` after the start token.

    Differentiable w.r.t. ``prefix``; with ``n = 0`` it equals the model's own text features.
    """
    import torch

    tm, proj = _text_model(dual, "fairness/prompt_array")
    n = int(prefix.shape[0])
    limit = int(tm.embeddings.position_embedding.weight.shape[0])
    enc = dual.tokenizer(
        list(texts), padding=True, truncation=True, max_length=limit - n, return_tensors="pt"
    )
    ids = enc["input_ids"].to(dual.device)
    mask = enc["attention_mask"].to(dual.device)
    b, length = ids.shape
    tok = tm.embeddings.token_embedding(ids)
    pre = prefix.to(tok.dtype).to(tok.device).unsqueeze(0).expand(b, n, -1)
    h = torch.cat([tok[:, :1], pre, tok[:, 1:]], dim=1)
    total = length + n
    h = h + tm.embeddings.position_embedding(torch.arange(total, device=h.device)).unsqueeze(0)
    keep = torch.cat(
        [mask[:, :1], torch.ones(b, n, dtype=mask.dtype, device=mask.device), mask[:, 1:]], 1
    )
    causal = torch.ones(total, total, dtype=torch.bool, device=h.device).tril()
    allowed = causal.unsqueeze(0) & keep.bool().unsqueeze(1)
    additive = torch.zeros(b, 1, total, total, dtype=h.dtype, device=h.device)
    additive = additive.masked_fill(~allowed.unsqueeze(1), torch.finfo(h.dtype).min)
    out = tm.encoder(inputs_embeds=h, attention_mask=additive)
    last = tm.final_layer_norm(out.last_hidden_state)
    eos = int(getattr(tm, "eos_token_id", getattr(tm.config, "eos_token_id", 2)) or 2)
    # the end token's position, as transformers' CLIP pools (highest id for legacy eos id 2)
    pos = ids.to(torch.int).argmax(dim=-1) if eos == 2 else (ids == eos).int().argmax(dim=-1)
    pos = torch.where(pos > 0, pos + n, pos)
    pooled = last[torch.arange(b, device=h.device), pos]
    return torch.nn.functional.normalize(proj(pooled).float(), dim=-1)


class PromptArrayModel(_dual.DebiasedDualModel):
    """A dual encoder whose texts are embedded with the learned prompt tokens prepended."""

    def __init__(self, base: Any, prefix: NDArray[np.float64]) -> None:
        import torch

        _text_model(base, "fairness/prompt_array")
        super().__init__(base, name="prompt_array", tag=np.asarray(prefix).tobytes().hex())
        self.prefix = torch.tensor(prefix, dtype=torch.float32)

    def text_features(self, texts: Sequence[str], *, grad: bool = False) -> Any:
        """Prompted text embeddings as a torch tensor (the base model's ``text_features``)."""
        import torch

        if grad:
            return prefixed_text_features(self.base, texts, self.prefix)
        with torch.no_grad():
            return prefixed_text_features(self.base, texts, self.prefix)

    def embed_texts(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Prompted text embeddings, float32 ``(n, d)``."""
        import torch

        if isinstance(texts, str):
            raise InputError("texts must be a sequence of strings, not one string; wrap it: [text]")
        items = list(texts)
        if not items:
            return np.asarray(self.base.embed_texts([]), dtype=np.float32)
        chunks = []
        with torch.inference_mode():
            for i in range(0, len(items), 64):
                t = prefixed_text_features(self.base, items[i : i + 64], self.prefix)
                chunks.append(t.cpu().numpy().astype(np.float32))
        return np.concatenate(chunks, axis=0)


@mitigation("fairness/prompt_array")
class PromptArray(_dual.FittedWrapper):
    """Learned prompt tokens trained against an attribute adversary (Berg et al. 2022)."""

    Params = PromptArrayParams
    description = (
        "Prompt array (Berg et al. 2022): learned tokens prepended to every text, trained so "
        "that an adversary cannot predict the protected attribute from image-query "
        "similarities while zero-shot accuracy is kept; checkpoint chosen on a validation split."
    )
    LARGE = ("prefix", "validation")

    params: PromptArrayParams

    def _queries(self) -> list[str]:
        p = self.params
        if p.queries is not None:
            if p.queries == "probe":
                return list(NEUTRAL_QUERIES)
            if not p.queries:
                raise InputError(f"{self.name}: queries is empty; name neutral queries or omit it")
            return list(p.queries)
        return []

    def prepare(self, model: Any, ctx: MitigationContext) -> dict[str, Any]:
        """Train the prompt; keep the checkpoint chosen on the validation split."""
        import torch

        _dual.require_dual(model, self.name)
        tm, _ = _text_model(model, self.name)
        p = self.params
        if "{}" not in p.template:
            raise InputError(f"{self.name}: template {p.template!r} needs a '{{}}' placeholder")
        train, val = _trained.split_fit(
            model, ctx, p.n_fit, p.attribute, p.concept, p.val_fraction, name=self.name
        )
        names = sorted(set(train.concepts) | set(val.concepts))
        groups = sorted(set(train.groups))
        queries = self._queries() or [t.format(c) for t in TRAIN_TEMPLATES for c in names]
        prompts = [p.template.format(c) for c in names]
        torch.manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        x = torch.tensor(train.x, dtype=torch.float32)
        g = torch.tensor([groups.index(v) for v in train.groups])
        c = torch.tensor([names.index(v) for v in train.concepts])
        base_q = torch.tensor(model.embed_texts(queries), dtype=torch.float32)
        base_c = torch.tensor(model.embed_texts(prompts), dtype=torch.float32)
        width = int(tm.embeddings.token_embedding.weight.shape[1])
        std = float(tm.embeddings.token_embedding.weight.detach().std())
        prefix = torch.nn.Parameter(torch.randn(p.n_tokens, width) * std)
        fisher = p.adversary == "fisher"
        s0 = x @ base_q.T  # joint: standardised by the base model's statistics
        mu, sd = s0.mean(0), s0.std(0).clamp_min(1e-6)
        adv = _trained.mlp(len(queries), p.adv_hidden, len(groups))
        topk = p.adversary == "topk"
        adv_weight = ADV_WEIGHTS[p.adversary] if p.adv_weight is None else p.adv_weight

        def leakage(sims: NDArray[np.float64], labels: NDArray[Any], seed: int) -> float:
            if topk:
                return query_top_skew(sims, labels, p.top_share)
            if fisher:
                return query_leakage(sims, labels, seed)
            return _trained.linear_leakage(sims, labels, seed)

        opt_p = torch.optim.Adam([prefix], lr=p.lr)
        opt_a = torch.optim.Adam(adv.parameters(), lr=p.adv_lr)
        scale = float(model.logit_scale)
        ce = torch.nn.functional.cross_entropy
        losses: list[float] = []
        adv_losses: list[float] = []
        checkpoints: list[NDArray[np.float64]] = []
        vocab = _words(model.tokenizer)
        frozen = [q for q in model.model.parameters() if q.requires_grad]
        for q in frozen:  # only the prompt and the adversary learn
            q.requires_grad_(False)
        # topk reads every training image: the top share of a small batch is a handful
        size = len(x) if topk else min(p.batch_size, len(x))
        try:
            step = 0
            for _epoch in range(p.epochs):
                for _ in range(p.steps_per_epoch):
                    idx = torch.as_tensor(rng.choice(len(x), size=size, replace=False))
                    tq = prefixed_text_features(model, queries, prefix)
                    tc = prefixed_text_features(model, prompts, prefix)
                    s = x[idx] @ tq.T
                    z = _standardise(s) if fisher or topk else (s - mu) / sd
                    if topk:
                        confusion = top_skew(z, g[idx], len(groups), p.top_share, p.top_temperature)
                    elif fisher:  # the best per-query reader, refitted on every batch
                        read = [z]
                        if p.anchors and vocab:  # and random words in the training templates
                            words = rng.choice(len(vocab), size=min(p.anchors, len(vocab)))
                            extra = [
                                TRAIN_TEMPLATES[int(k) % len(TRAIN_TEMPLATES)].format(vocab[int(i)])
                                for k, i in enumerate(words)
                            ]
                            ts = prefixed_text_features(model, extra, prefix)
                            read.append(_standardise(x[idx] @ ts.T))
                        confusion = separability(torch.cat(read, 1), g[idx], len(groups))
                    else:
                        adv_loss = ce(adv(z.detach()), g[idx])
                        _train.optimizer_step(opt_a, adv_loss, adv_losses, step, None)
                        confusion = -torch.log_softmax(adv(z), dim=1).mean(dim=1).mean()
                    keep = (1 - (tq * base_q).sum(-1)).mean() + (1 - (tc * base_c).sum(-1)).mean()
                    if p.anchors and vocab:
                        words = rng.choice(len(vocab), size=min(p.anchors, len(vocab)))
                        texts = [f"a photo of a {vocab[int(i)]}" for i in words]
                        with torch.no_grad():
                            t0 = model.text_features(texts)
                        ta = prefixed_text_features(model, texts, prefix)
                        keep = keep + (1 - (ta * t0).sum(-1)).mean()
                    loss = (
                        ce(scale * x[idx] @ tc.T, c[idx])
                        + adv_weight * confusion
                        + p.keep_weight * keep
                    )
                    _train.optimizer_step(opt_p, loss, losses, step, None)
                    step += 1
                checkpoints.append(prefix.detach().double().numpy().copy())
        finally:
            for q in frozen:
                q.requires_grad_(True)
        base_acc = _trained.zero_shot_accuracy(val.x, base_c.double().numpy(), val.concepts, names)
        base_leak = leakage(val.x @ base_q.double().numpy().T, val.groups, ctx.seed)

        def score(pre: NDArray[np.float64], v: _trained.ValidationSplit) -> tuple[float, float]:
            with torch.no_grad():
                t = torch.tensor(pre, dtype=torch.float32)
                tq = prefixed_text_features(model, queries, t).double().numpy()
                tc = prefixed_text_features(model, prompts, t).double().numpy()
            leak = leakage(v.x @ tq.T, v.groups, ctx.seed)
            return leak, _trained.zero_shot_accuracy(v.x, tc, v.concepts, names)

        sel = _trained.select_checkpoint(
            checkpoints, val, score, base_accuracy=base_acc, max_drop=p.max_drop
        )
        return {
            "prefix": _dual.store_matrix(sel.chosen),
            "selected_epoch": sel.index + 1,
            "validation": [[round(b, 6), round(a, 6)] for b, a in sel.scores],
            "validation_base": [round(base_leak, 6), round(base_acc, 6)],
        }

    def wrap(self, model: Any) -> PromptArrayModel:
        """Prepend the learned tokens to ``model``'s texts; needs `vlmtrust harden`'s fit."""
        if self.params.prefix is None:
            raise InputError(
                f"{self.name} has no prompt: fit it with `vlmtrust harden --mitigation "
                f"{self.name}` and load the result with --model hardened:DIR"
            )
        _dual.require_dual(model, self.name)
        pre = np.asarray(self.params.prefix, dtype=np.float64)
        if pre.ndim != 2:
            raise InputError(
                f"{self.name}: the stored prefix is not a matrix; re-run `vlmtrust harden`"
            )
        return PromptArrayModel(model, pre)
