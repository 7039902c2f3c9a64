"""FedAvg / FedProx fine-tuning of a zero-shot image projection head, with client crashes.

The task: the image tower's pooled features ``F`` (frozen, computed once) are projected by a
trainable head ``W`` (``(d, h)``, initialised from the model's own projection) and classified
zero-shot against fixed class-prompt embeddings ``T``: logits ``s · norm(F Wᵀ) Tᵀ``.

Each round every client trains the head from the global weights for ``local_epochs`` over
its own shard (SGD, mini-batches; FedProx adds ``μ/2 ‖W − W_global‖²``) and returns it; the
round's weights are aggregated by Flower's own ``FedAvg`` / ``FedProx`` strategy
(``aggregate_fit``: weighted by examples) with ``accept_failures=True``. A client that raises
during a round (``crash``) is passed to the strategy as a failure and the round completes with
the others; :class:`RoundLog` records it. The centralised baseline trains the same head on the
union of the shards for ``rounds × local_epochs`` epochs: the same number of examples seen.

Shards: for each class, its examples are divided among the clients by proportions drawn from
Dirichlet(α·1); ``alpha=math.inf`` is an even random split (IID).

DP-FedAvg (``dp_epsilon``, Opacus, the ``privacy-train`` extra): every client trains with
DP-SGD — Poisson-sampled mini-batches (rate ``batch_size / n_k``), each example's gradient
clipped to ``dp_clip`` and Gaussian noise added — so each client's own examples are protected
at record level (the unit a membership-inference attack targets) against the server and
everyone downstream of the aggregate. Each client's noise multiplier is calibrated by Opacus
(RDP accountant) so that its whole schedule (``rounds × local_epochs`` epochs) spends at most
``dp_epsilon`` at ``dp_delta``; its accountant records every step actually taken, and
:attr:`RoundLog.epsilon` is the ε each client has spent after that round. FedProx's proximal
pull is applied after each private step (it does not touch the data). Client-level DP (server
clipping and noising whole updates) is not offered: its noise is divided by the number of
clients per round, so with a handful of clients it would swamp the update.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from vlmtrust.core.errors import InputError

Strategy = Literal["fedavg", "fedprox"]

RDP_ORDERS: tuple[int, ...] = (*range(2, 64), 80, 96, 128, 256)
"""Rényi orders of the RDP accountant's (ε, δ) conversion. Integer orders only: Opacus's
default list adds 99 fractional ones, each a slow series (seconds per ε on two cores), which
only tighten ε noticeably beyond ε ≈ 20."""


def _flwr() -> Any:
    try:
        import flwr
    except ImportError as e:
        raise InputError(
            "federated fine-tuning needs Flower: pip install 'vlmtrust[federated]'"
        ) from e
    return flwr


@dataclass(frozen=True)
class HeadTask:
    """Frozen features, labels and class embeddings of a projection-head task.

    Attributes:
        train_x: ``(n, h)`` pooled image features for training.
        train_y: ``(n,)`` class indices.
        test_x: ``(m, h)`` held-out features.
        test_y: ``(m,)`` held-out class indices.
        class_emb: ``(C, d)`` L2-normalised class-prompt embeddings (fixed).
        head: ``(d, h)`` initial projection weights.
        logit_scale: multiplier of the cosines.
    """

    train_x: NDArray[np.float32]
    train_y: NDArray[np.int64]
    test_x: NDArray[np.float32]
    test_y: NDArray[np.int64]
    class_emb: NDArray[np.float32]
    head: NDArray[np.float32]
    logit_scale: float = 100.0

    def accuracy(self, head: NDArray[np.float32]) -> float:
        """Zero-shot top-1 accuracy of ``head`` on the held-out split."""
        z = self.test_x @ head.T
        z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
        return float(np.mean((z @ self.class_emb.T).argmax(1) == self.test_y))


def dirichlet_split(
    labels: Sequence[int] | NDArray[np.int64], n_clients: int, alpha: float, seed: int = 0
) -> list[NDArray[np.int64]]:
    """Indices of each client's shard: per class, proportions ~ Dirichlet(α); ∞ = even split.

    Example:
        >>> parts = dirichlet_split([0, 1] * 30, 3, math.inf)
        >>> sorted(len(p) for p in parts)
        [20, 20, 20]
    """
    y = np.asarray(labels, dtype=np.int64)
    if n_clients < 1:
        raise InputError(f"n_clients {n_clients} must be >= 1")
    if not alpha > 0:
        raise InputError(f"alpha {alpha} must be > 0 (math.inf for an even split)")
    rng = np.random.default_rng(seed)
    shards: list[list[int]] = [[] for _ in range(n_clients)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if math.isinf(alpha):
            cuts = np.linspace(0, len(idx), n_clients + 1).round().astype(int)[1:-1]
        else:
            p = rng.dirichlet(np.full(n_clients, alpha))
            cuts = (np.cumsum(p)[:-1] * len(idx)).round().astype(int)
        for k, part in enumerate(np.split(idx, cuts)):
            shards[k].extend(int(i) for i in part)
    return [np.asarray(sorted(s), dtype=np.int64) for s in shards]


@dataclass(frozen=True)
class _Local:
    """One client's local training run.

    Epochs, SGD step size and batch, FedProx μ, seed, and the step after which the client
    crashes (``None``: it does not).
    """

    epochs: int
    lr: float
    batch_size: int
    mu: float
    seed: int
    crash_after: int | None = None

    def check_crash(self, step: int) -> None:
        """Raise the simulated client failure once ``step`` reaches :attr:`crash_after`."""
        if self.crash_after is not None and step >= self.crash_after:
            raise RuntimeError(f"client crashed after {step} local steps")


def _train(
    task: HeadTask,
    head: NDArray[np.float32],
    idx: NDArray[np.int64],
    run: _Local,
    dp: _ClientDP | None = None,
) -> NDArray[np.float32]:
    if dp is not None:
        return _train_dp(task, head, idx, run, dp)
    import torch

    epochs, lr, batch_size, mu, seed = run.epochs, run.lr, run.batch_size, run.mu, run.seed

    g = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(task.train_x[idx])
    y = torch.from_numpy(task.train_y[idx])
    t = torch.from_numpy(task.class_emb)
    w0 = torch.from_numpy(head.copy())
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.SGD([w], lr=lr)
    step = 0
    for _ in range(epochs):
        for b in torch.split(torch.randperm(len(idx), generator=g), batch_size):
            run.check_crash(step)
            z = torch.nn.functional.normalize(x[b] @ w.T, dim=-1)
            loss = torch.nn.functional.cross_entropy(task.logit_scale * z @ t.T, y[b])
            if mu > 0:
                loss = loss + mu / 2 * (w - w0).pow(2).sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            step += 1
    return w.detach().numpy().astype(np.float32)


@dataclass
class _ClientDP:
    """One client's DP-SGD settings and its privacy accounting (kept across rounds).

    Every DP-SGD step is the same subsampled Gaussian mechanism (``noise_multiplier``,
    ``sample_rate``), so the RDP of ``steps`` of them is ``steps`` times that of one
    (``rdp_step``, Opacus's RDP analysis at :data:`RDP_ORDERS`).
    """

    noise_multiplier: float
    clip: float
    sample_rate: float
    rdp_step: NDArray[np.float64]
    steps: int = 0

    def epsilon(self, delta: float) -> float:
        """ε spent after :attr:`steps` steps at ``delta`` (RDP → (ε, δ) conversion)."""
        if not self.steps:
            return 0.0
        from opacus.accountants.analysis.rdp import get_privacy_spent

        with _quiet_orders():
            eps, _ = get_privacy_spent(
                orders=list(RDP_ORDERS), rdp=self.rdp_step * self.steps, delta=delta
            )
        return float(eps)


@contextlib.contextmanager
def _quiet_orders() -> Iterator[None]:
    """Silence Opacus's advice to widen the Rényi orders (the bound stays a valid upper one)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Optimal order is the")
        yield


def _train_dp(
    task: HeadTask,
    head: NDArray[np.float32],
    idx: NDArray[np.int64],
    run: _Local,
    dp: _ClientDP,
) -> NDArray[np.float32]:
    """DP-SGD on one shard with Opacus: Poisson batches, per-example clipping, noise."""
    import torch
    from opacus import GradSampleModule
    from opacus.data_loader import DPDataLoader
    from opacus.optimizers import DPOptimizer

    epochs, lr, mu, seed = run.epochs, run.lr, run.mu, run.seed

    d, h = head.shape
    lin = torch.nn.Linear(h, d, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(head))
    w0 = torch.from_numpy(head.copy())
    module = GradSampleModule(lin)
    opt = DPOptimizer(
        torch.optim.SGD(module.parameters(), lr=lr),
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.clip,
        expected_batch_size=max(1, round(dp.sample_rate * len(idx))),
        generator=torch.Generator().manual_seed(seed + 1),
    )
    data = torch.utils.data.TensorDataset(
        torch.from_numpy(task.train_x[idx]), torch.from_numpy(task.train_y[idx])
    )
    loader = DPDataLoader(
        data, sample_rate=dp.sample_rate, generator=torch.Generator().manual_seed(seed)
    )
    t = torch.from_numpy(task.class_emb)
    step = 0
    with warnings.catch_warnings():
        # Opacus warns that the inputs need no gradient (they are frozen features).
        warnings.filterwarnings("ignore", message=".*backward hook.*")
        for _ in range(epochs):
            for xb, yb in loader:
                run.check_crash(step)
                logits = task.logit_scale * torch.nn.functional.normalize(module(xb), dim=-1) @ t.T
                loss = torch.nn.functional.cross_entropy(logits, yb) if len(yb) else logits.sum()
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                dp.steps += 1
                if mu > 0:
                    with torch.no_grad():
                        lin.weight -= lr * mu * (lin.weight - w0)
                step += 1
    return lin.weight.detach().numpy().astype(np.float32).copy()


@dataclass
class RoundLog:
    """One federated round: accuracy after it, clients that finished or failed, bytes moved.

    ``epsilon``: with DP, the ε each client has spent after this round (``{client: ε}``, at the
    run's δ); empty without DP.
    """

    round: int
    accuracy: float
    completed: list[int]
    failed: dict[int, str]
    bytes: int
    epsilon: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DPReport:
    """What DP-FedAvg was run with: target ε, δ, clipping norm, each client's noise."""

    target_epsilon: float
    delta: float
    clip: float
    noise_multipliers: dict[int, float]
    sample_rates: dict[int, float]


@dataclass
class FedResult:
    """A federated run and its centralised baseline.

    Attributes:
        strategy: ``fedavg`` or ``fedprox``.
        alpha: Dirichlet concentration of the split.
        rounds: per-round logs.
        centralised: accuracy of centralised fine-tuning with the same budget.
        initial: accuracy of the initial head (no fine-tuning).
    """

    strategy: str
    alpha: float
    rounds: list[RoundLog]
    centralised: float
    initial: float
    shard_sizes: list[int] = field(default_factory=list)
    head: NDArray[np.float32] | None = None
    """The global head after the last round."""
    central_head: NDArray[np.float32] | None = None
    """The centralised baseline's head."""
    shards: list[NDArray[np.int64]] = field(default_factory=list)
    """Each client's training indices (into ``task.train_x``)."""
    dp: DPReport | None = None
    """DP-FedAvg settings (None: no DP)."""

    @property
    def epsilon(self) -> dict[int, float]:
        """With DP, each client's ε spent over the whole run (at ``dp.delta``); else empty."""
        return dict(self.rounds[-1].epsilon) if self.rounds else {}

    @property
    def final(self) -> float:
        """Accuracy after the last round."""
        return self.rounds[-1].accuracy

    def rounds_to(self, share: float = 0.95) -> int | None:
        """First round whose accuracy reaches ``share`` of the centralised one (None: never)."""
        for r in self.rounds:
            if r.accuracy >= share * self.centralised:
                return r.round
        return None

    @property
    def bytes_per_round(self) -> float:
        """Mean bytes per round (weights down to every client, up from those that finished)."""
        return float(np.mean([r.bytes for r in self.rounds]))

    @property
    def crashes(self) -> list[tuple[int, int]]:
        """``(round, client)`` for every client that failed in a round."""
        return [(r.round, c) for r in self.rounds for c in r.failed]


def federated_finetune(
    task: HeadTask,
    *,
    n_clients: int = 5,
    alpha: float = 0.5,
    strategy: Strategy = "fedavg",
    rounds: int = 10,
    local_epochs: int = 1,
    lr: float = 0.3,
    batch_size: int = 16,
    mu: float = 0.1,
    crash: Mapping[int, Sequence[int]] | None = None,
    seed: int = 0,
    dp_epsilon: float | None = None,
    dp_delta: float = 1e-5,
    dp_clip: float = 1.0,
) -> FedResult:
    """Run FedAvg or FedProx (Flower strategies) and the same-budget centralised baseline.

    Args:
        task: features, labels, class embeddings and the initial head.
        n_clients: number of clients ``K``.
        alpha: Dirichlet concentration (``math.inf``: IID).
        strategy: ``"fedavg"`` or ``"fedprox"`` (proximal term ``mu``).
        rounds: federated rounds.
        local_epochs: local epochs per round.
        lr: SGD learning rate (clients and baseline).
        batch_size: mini-batch size.
        mu: FedProx proximal coefficient.
        crash: ``{round: [client, ...]}`` — those clients raise half-way through that round.
        seed: seed of the split and of the mini-batch orders.
        dp_epsilon: DP-FedAvg: each client runs Opacus DP-SGD calibrated to spend at most
            this ε over the run (module docstring); ``None`` or ``math.inf``: no DP.
        dp_delta: the δ of every client's (ε, δ) guarantee; must be below ``1 / n_k`` of the
            largest client shard.
        dp_clip: per-example gradient clipping norm of DP-SGD.
    """
    flwr = _flwr()
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
    from flwr.server.strategy import FedAvg, FedProx

    if strategy not in ("fedavg", "fedprox"):
        raise InputError(f"strategy {strategy!r} is unknown: use fedavg or fedprox")
    if rounds < 1 or local_epochs < 1:
        raise InputError(f"rounds {rounds} and local_epochs {local_epochs} must be >= 1")
    crash = dict(crash or {})
    bad = [c for cs in crash.values() for c in cs if not 0 <= c < n_clients]
    if bad:
        raise InputError(f"crash names clients {bad}: use 0..{n_clients - 1}")
    shards = dirichlet_split(task.train_y, n_clients, alpha, seed)
    dps = _client_dp(shards, dp_epsilon, dp_delta, dp_clip, rounds * local_epochs, batch_size)
    common = {
        "accept_failures": True,
        "min_fit_clients": 1,
        "min_evaluate_clients": 1,
        "min_available_clients": 1,
        "fit_metrics_aggregation_fn": lambda m: {},
    }
    strat = FedProx(proximal_mu=mu, **common) if strategy == "fedprox" else FedAvg(**common)
    prox = mu if strategy == "fedprox" else 0.0
    head = task.head.astype(np.float32)
    nbytes = head.nbytes
    logs: list[RoundLog] = []
    for r in range(1, rounds + 1):
        results: list[tuple[Any, Any]] = []
        failures: list[BaseException] = []
        failed: dict[int, str] = {}
        done: list[int] = []
        for k, idx in enumerate(shards):
            if len(idx) == 0:
                continue
            dp = dps.get(k)
            per_epoch = math.ceil(len(idx) / batch_size) if dp is None else int(1 / dp.sample_rate)
            steps = local_epochs * per_epoch
            try:
                local = _Local(
                    local_epochs, lr, batch_size, prox, seed * 1000 + r * 100 + k,
                    crash_after=steps // 2 if k in crash.get(r, ()) else None,
                )  # fmt: skip
                w = _train(task, head, idx, local, dp)
            except RuntimeError as e:
                failures.append(e)
                failed[k] = str(e)
                continue
            status = Status(code=Code.OK, message="")
            res = FitRes(status, ndarrays_to_parameters([w]), len(idx), {})
            results.append((None, res))
            done.append(k)
        sent = sum(1 for idx in shards if len(idx)) * nbytes + len(done) * nbytes
        if results:
            agg, _ = strat.aggregate_fit(r, results, failures)
            head = parameters_to_ndarrays(agg)[0].astype(np.float32)
        eps = {k: c.epsilon(dp_delta) for k, c in dps.items()}
        logs.append(RoundLog(r, task.accuracy(head), done, failed, sent, eps))
    union = np.concatenate([s for s in shards if len(s)])
    central_run = _Local(rounds * local_epochs, lr, batch_size, 0.0, seed)
    central = _train(task, task.head.astype(np.float32), union, central_run)
    del flwr
    return FedResult(
        strategy=strategy,
        alpha=alpha,
        rounds=logs,
        centralised=task.accuracy(central),
        initial=task.accuracy(task.head.astype(np.float32)),
        shard_sizes=[len(s) for s in shards],
        head=head,
        central_head=central,
        shards=shards,
        dp=None
        if not dps
        else DPReport(
            target_epsilon=float(dp_epsilon or math.inf),
            delta=dp_delta,
            clip=dp_clip,
            noise_multipliers={k: c.noise_multiplier for k, c in dps.items()},
            sample_rates={k: c.sample_rate for k, c in dps.items()},
        ),
    )


def _client_dp(
    shards: Sequence[NDArray[np.int64]],
    epsilon: float | None,
    delta: float,
    clip: float,
    epochs: int,
    batch_size: int,
) -> dict[int, _ClientDP]:
    """Per non-empty client: its noise multiplier for ``epsilon`` over ``epochs``, an accountant."""
    if epsilon is None or (math.isinf(epsilon) and epsilon > 0):
        return {}
    if not epsilon > 0:
        raise InputError(f"dp_epsilon {epsilon} must be > 0 (None or math.inf: no DP)")
    sizes = [len(s) for s in shards if len(s)]
    if not 0 < delta < 1 / max(sizes):
        raise InputError(
            f"dp_delta {delta:g} must be in (0, 1/n) for the largest client shard "
            f"(n = {max(sizes)}): e.g. 1e-5"
        )
    if not clip > 0 or math.isinf(clip):
        raise InputError(f"dp_clip {clip} must be a finite norm > 0, e.g. 1.0")
    try:
        from opacus.accountants.analysis.rdp import compute_rdp
        from opacus.accountants.utils import get_noise_multiplier
    except ImportError as e:
        raise InputError("dp_epsilon needs Opacus: pip install 'vlmtrust[privacy-train]'") from e
    out: dict[int, _ClientDP] = {}
    for k, idx in enumerate(shards):
        if not len(idx):
            continue
        q = min(1.0, batch_size / len(idx))
        steps = epochs * int(1 / q)
        try:
            with _quiet_orders():
                sigma = float(
                    get_noise_multiplier(
                        target_epsilon=epsilon,
                        target_delta=delta,
                        sample_rate=q,
                        steps=steps,
                        accountant="rdp",
                        alphas=list(RDP_ORDERS),
                    )  # fmt: skip
                )
        except ValueError as e:
            raise InputError(
                f"dp_epsilon {epsilon:g} at dp_delta {delta:g} cannot be reached by client {k} "
                f"({len(idx)} examples, {steps} steps): {e}"
            ) from e
        rdp = compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(RDP_ORDERS))
        out[k] = _ClientDP(sigma, clip, q, np.asarray(rdp, dtype=np.float64))
    return out


def clip_head_task(
    model: Any,
    *,
    n_train: int = 300,
    n_test: int = 150,
    corruption: str = "gaussian_noise",
    severity: int = 5,
    seed: int = 0,
) -> HeadTask:
    """The projection-head task on a CLIP dual encoder (e.g. ``reference:clip``).

    SynthWorld shapes under an ImageNet-C ``corruption`` (a shift the zero-shot head handles
    poorly); features are the vision tower's pooled outputs before ``visual_projection``.
    """
    import torch

    from vlmtrust.attacks.corruptions import corrupt
    from vlmtrust.data.synthworld import SynthWorld
    from vlmtrust.data.synthworld import _vocab as vocab

    clip: Any = getattr(model, "model", None)
    proj = getattr(clip, "visual_projection", None)
    if proj is None or not hasattr(model, "to_pixels"):
        raise InputError("clip_head_task needs a CLIP dual encoder loaded with hf: or reference:")
    classes = list(vocab.ID_SHAPES)
    scenes = SynthWorld(seed=seed, image_size=64).shapes(n_train + n_test)
    images = [corrupt(s.image, corruption, severity, seed=seed + i) for i, s in enumerate(scenes)]
    labels = np.asarray([classes.index(str(s.target)) for s in scenes], dtype=np.int64)
    with torch.inference_mode():
        px = model.normalize(model.to_pixels(images)).to(model.dtype)
        out = clip.vision_model(pixel_values=px)
        feats = out.pooler_output.float().cpu().numpy().astype(np.float32)
        head = proj.weight.detach().float().cpu().numpy().astype(np.float32)
    prompts = np.asarray(model.embed_texts([f"a photo of a {c}" for c in classes]), np.float32)
    return HeadTask(
        train_x=feats[:n_train],
        train_y=labels[:n_train],
        test_x=feats[n_train:],
        test_y=labels[n_train:],
        class_emb=prompts,
        head=head,
        logit_scale=float(getattr(model, "logit_scale", 100.0)),
    )
