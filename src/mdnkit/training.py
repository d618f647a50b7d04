"""The fit loop: one resumable loop for single networks and ensembles, over any batches.

A model is trained as ``M`` members (a single network is an ensemble of one) through a
:class:`TrainStep`, an ``nn.Module`` whose forward gives ``(member_nll [M], reported_nll)`` on a
batch, so a ``DistributedDataParallel`` wrapper can wrap the loss itself. The loop's whole state
is a :class:`TrainState` (optimiser moments, each member's learning rate, plateau and
early-stopping record and best weights, the random generator, the epoch): handing it back to
:func:`train` continues the run exactly where it stopped.

The pieces of a step are small and separate: noise regularisation (:func:`_perturbed`),
per-member clipping (:func:`_clip_grad_norm_per_member`), per-member learning rates
(:class:`_MemberRates`), learning-rate decay on plateau (:class:`_Plateau`), per-member early
stopping (:meth:`TrainState.record`), rollback after a non-finite loss (:meth:`TrainState.rollback`),
the weights' moving average that validation scores and early stopping keeps
(:class:`~mdnkit._weight_average.WeightAverage`, swapped in by :meth:`TrainState.averaged`),
and a progress bar. Members are trained as if each were fitted alone (Lakshminarayanan et al.
2017): clipped, decayed, stopped and restored member by member; only a rollback is shared.

Data arrive already in the network's units: tensors, which :class:`InMemoryBatches` shuffles
(one permutation per epoch, then contiguous slices), or any batch source, such as a
``DataLoader`` (:class:`IterableBatches`: any re-iterable of ``(x, y[, row_weights])``). The recorded NLLs are shifted by ``nll_offset`` (the log-Jacobian of
the caller's scaling) so that a caller can report them in the user's units.
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor, nn

from mdnkit import distributed
from mdnkit._adamw import AdamW
from mdnkit._fused_step import FusedStep
from mdnkit._weight_average import WeightAverage

Optimizer = Literal["adam", "lbfgs"]
Batch = tuple[Tensor, Tensor, "Tensor | None"]  # x [N, F], y [N, D], row weights [M, N] or None
_VALIDATION_CHUNK = 65_536  # rows per validation forward pass: memory stays flat


class TrainingDivergedError(RuntimeError):
    """Raised when the loss keeps turning non-finite even after rolling back and slowing down."""


class TrainingInterrupted(UserWarning):
    """Warned when Ctrl-C stopped training: the fit ends early with the best weights so far."""


@dataclass
class TrainingConfig:
    """Settings of one fit; see :class:`mdnkit.MDNRegressor` for what each one means."""

    optimizer: Optimizer = "adam"
    learning_rate: float = 3e-3
    batch_size: int | None = None
    max_epochs: int = 1000
    patience: int = 50
    lr_decay_patience: int = 25
    lr_decay_factor: float = 0.5
    weight_decay: float = 0.0
    gradient_clip: float | None = 10.0
    input_noise: float | tuple[float, ...] = 0.0  # a tuple: each member its own level (a noise search)
    target_noise: float | tuple[float, ...] = 0.0  # a tuple: each member its own level, as input_noise
    max_rollbacks: int = 5
    verbose: bool = False
    # Decay per step of the weights' moving average that is validated and kept (Adam only); 0: none.
    weight_averaging: float = 0.0


@dataclass
class TrainingResult:
    """What one call of :func:`train` learned about the run (the module is updated in place)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # whose weights were kept, counted in this call; for an ensemble, the latest member's
    member_best_epochs: list[int] = field(default_factory=list)  # each member's, counted in this call
    # Each member's own record per epoch of ``history``: "train_nll", "val_nll", "learning_rate"
    # and "active" (whether it trained that epoch), each a list of M.
    member_history: list[dict[str, list[float]]] = field(default_factory=list)
    stopped_early: bool = False
    rollbacks: int = 0
    interrupted: bool = False
    state: TrainState | None = None  # hand back to train(state=...) to continue exactly


# ---------------------------------------------------------------------- the loss, as a module
class TrainStep(nn.Module):
    """``(x, y, row_weights) -> (member_nll [M], reported_nll)``: the loss, inside a module.

    ``module.training_losses`` when the module has one (every
    :class:`~mdnkit.model.DensityNetwork`), otherwise ``-module(x).log_prob(y).mean()`` for any
    module whose forward returns a distribution (one member). Wrapping this module in
    ``DistributedDataParallel`` synchronises the gradients of the whole loss; the member count
    is read here, once, not from behind the wrapper.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.n_members = int(getattr(module, "n_members", 1))

    def forward(
        self, x: Tensor, y: Tensor, row_weights: Tensor | None = None, member_inputs: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``member_inputs``: ``x`` is each member's own, ``[M, N, *F]`` (per-member input noise)."""
        if member_inputs:
            return self.module.training_losses(x, y, row_weights, member_inputs=True)
        if hasattr(self.module, "training_losses"):
            return self.module.training_losses(x, y, row_weights)
        nll = -self.module(x).log_prob(y).mean()
        return nll.unsqueeze(0), nll.detach()


# ---------------------------------------------------------------------- batches
class InMemoryBatches:
    """Batches of in-memory tensors: one shuffle per epoch, then contiguous slices.

    Slicing one permuted copy is cheaper than gathering each minibatch (at 256 rows a step is
    dominated by per-op overhead). With ``batch_size=None`` every epoch is the whole set, in
    order, and the generator is not used.

    Args:
        x, y: ``[N, F]`` and ``[N, D]``.
        row_weights: ``[M, N]`` each member's weight of each row, or ``None`` (all rows, all members).
        batch_size: Rows per batch, or ``None`` for full batches.
    """

    def __init__(self, x: Tensor, y: Tensor, row_weights: Tensor | None, batch_size: int | None) -> None:
        self.x, self.y, self.row_weights = x, y, row_weights
        self.batch_size = None if batch_size is None or batch_size >= len(x) else int(batch_size)

    def __len__(self) -> int:
        return len(self.x)

    def epoch(self, generator: torch.Generator | None) -> Iterator[Batch]:
        if self.batch_size is None:
            yield self.x, self.y, self.row_weights
            return
        order = torch.randperm(len(self.x), generator=generator, device=self.x.device)
        x_epoch, y_epoch = self.x[order].split(self.batch_size), self.y[order].split(self.batch_size)
        weights = [None] * len(x_epoch) if self.row_weights is None else self.row_weights[:, order].split(self.batch_size, 1)
        yield from zip(x_epoch, y_epoch, weights)


class IterableBatches:
    """Any re-iterable of ``(x, y)`` or ``(x, y, row_weights)`` batches as a batch source: a
    ``torch.utils.data.DataLoader``, a generator function's list, a reader of files.

    Each epoch iterates ``batches`` again (its own shuffling, if any, is its own affair: the
    loop's generator is not used). Batches move to ``device`` and ``dtype`` as they arrive.
    """

    def __init__(self, batches: Iterable, device: torch.device | None = None, dtype: torch.dtype | None = None) -> None:
        self.batches, self.device, self.dtype = batches, device, dtype

    def epoch(self, generator: torch.Generator | None) -> Iterator[Batch]:
        for batch in self.batches:
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise ValueError(f"A batch must be (x, y) or (x, y, row_weights); got {type(batch).__name__}"
                                 f"{f' of {len(batch)} items' if isinstance(batch, (tuple, list)) else ''}.")
            x, y, weights = (*batch, None) if len(batch) == 2 else batch
            yield (*(torch.as_tensor(t).to(device=self.device, dtype=self.dtype, non_blocking=True) for t in (x, y)),
                   None if weights is None else torch.as_tensor(weights).to(device=self.device, dtype=self.dtype))


def batch_source(data: Tensor | Iterable, y: Tensor | None, row_weights: Tensor | None, batch_size: int | None,
                 like: Tensor) -> InMemoryBatches | IterableBatches:
    """Tensors ``(data [N, F], y [N, D])`` as :class:`InMemoryBatches`; an object with
    ``epoch(generator)`` as it is; any other iterable of batches as :class:`IterableBatches`
    (moved to the device and dtype of ``like``)."""
    if isinstance(data, Tensor):
        if y is None:
            raise ValueError("y is missing: pass targets with tensor inputs, or an iterable of (x, y) batches.")
        return InMemoryBatches(data, y, row_weights, batch_size)
    if y is not None or row_weights is not None:
        raise ValueError("With an iterable of batches, targets and weights come in the batches; y must be None.")
    if hasattr(data, "epoch"):
        return data
    return IterableBatches(data, like.device, like.dtype)


def _chunks(x: Tensor, y: Tensor, row_weights: Tensor | None) -> Iterable[Batch]:
    weights = [None] * math.ceil(len(x) / _VALIDATION_CHUNK) if row_weights is None \
        else row_weights.split(_VALIDATION_CHUNK, 1)
    return zip(x.split(_VALIDATION_CHUNK), y.split(_VALIDATION_CHUNK), weights)


# ---------------------------------------------------------------------- small pieces of a step
def _clip_grad_norm_per_member(parameters: list[nn.Parameter], max_norm: float, n_members: int) -> None:
    """Clip each member's gradient to ``max_norm`` on its own, as if it were trained alone."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(n_members, -1), dim=1) for g in grads])  # [P, M]
    scale = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)
    # One call for every gradient: a small network's step is per-operation overhead.
    torch._foreach_mul_(grads, [scale.view(n_members, *[1] * (grad.dim() - 1)) for grad in grads])


def _clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> None:
    """One member's clipping: ``nn.utils.clip_grad_norm_`` without its per-call bookkeeping
    (grouping by device and dtype, error options), which costs about as much as the clipping on a
    small network."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)


def _has_noise(config: TrainingConfig) -> bool:
    return any(level > 0 for level in (*_levels(config.input_noise), *_levels(config.target_noise)))


def _levels(noise: float | tuple[float, ...]) -> tuple[float, ...]:
    return tuple(noise) if isinstance(noise, (tuple, list)) else (float(noise),)


def _perturbed(x: Tensor, y: Tensor, config: TrainingConfig, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Noise regularisation (Rothfuss et al. 2019): fresh noise on the standardised x and y.

    With one input-noise level per member the inputs become each member's own, ``[M, N, *F]``;
    with one target-noise level per member the targets become each member's own, ``[M, N, D]``.
    """
    return _noised(x, _levels(config.input_noise), generator), _noised(y, _levels(config.target_noise), generator)


def _noised(values: Tensor, levels: tuple[float, ...], generator: torch.Generator | None) -> Tensor:
    """``values [N, ...]`` plus Gaussian noise of sd ``levels[0]``, or, with one level per
    member, each member's own noisy copy ``[M, N, ...]``."""
    like = dict(generator=generator, device=values.device, dtype=values.dtype)
    if len(levels) > 1:
        scale = torch.tensor(levels, device=values.device, dtype=values.dtype).view(-1, *[1] * values.dim())
        return values + scale * torch.randn((len(levels), *values.shape), **like)
    return values + levels[0] * torch.randn(values.shape, **like) if levels[0] > 0 else values


def _make_optimizer(config: TrainingConfig, parameters: list[nn.Parameter]) -> torch.optim.LBFGS | AdamW:
    if config.optimizer == "lbfgs":
        return torch.optim.LBFGS(
            parameters, lr=config.learning_rate, max_iter=20, history_size=50,
            line_search_fn="strong_wolfe",
        )
    # AdamW: decoupled weight decay (AdamW with weight_decay=0 is Adam). torch's fused kernel,
    # where it runs, updates every parameter in one call, which matters for the small networks MDNs
    # usually are; mdnkit's holder of its state skips torch.optim's import of torch._dynamo (_adamw).
    return AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


class _MemberRates:
    """Each member's own learning rate in one optimiser.

    One optimiser has one learning rate (the members' weights share tensors), so it runs at the
    largest active rate and each step is scaled back member by member: Adam's step is linear in
    its rate, so ``old + factor * (new - old)`` is the step at ``factor`` times the rate (exact
    at factors 0, for frozen members, and 1).
    """

    def __init__(self, optimizer: torch.optim.LBFGS | AdamW, parameters: list[nn.Parameter], n_members: int) -> None:
        self.optimizer, self.parameters, self.n = optimizer, parameters, n_members
        self.factors: list[Tensor] | None = None  # per parameter [M, 1, ...]; None while all are equal
        self.previous: list[Tensor] = []

    def apply(self, rates: list[float], active: list[bool]) -> None:
        rates = [rate if alive else 0.0 for rate, alive in zip(rates, active)]
        top = max(rates)
        for group in self.optimizer.param_groups:
            group["lr"] = top
        if all(rate == top for rate in rates):
            self.factors = None
            return
        factors = torch.tensor([rate / top for rate in rates], dtype=torch.float64)
        self.factors = [factors.to(p).view(self.n, *[1] * (p.dim() - 1)) for p in self.parameters]

    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        if self.factors is None:
            return self.optimizer.step(closure)
        with torch.no_grad():
            if not self.previous:
                self.previous.extend(torch.empty_like(p) for p in self.parameters)
            torch._foreach_copy_(self.previous, self.parameters)
        value = self.optimizer.step(closure)
        with torch.no_grad():  # one call per operation for every parameter (per-op overhead, as above)
            torch._foreach_lerp_(self.previous, self.parameters, self.factors)
            torch._foreach_copy_(self.parameters, self.previous)
        return value


class _Plateau:
    """``ReduceLROnPlateau``'s rule (mode ``min``, absolute threshold ``1e-5``, no cooldown,
    ``min_lr=1e-6``) applied to each member's own NLL and learning rate.

    Absolute thresholds because relative ones misjudge negative NLLs.
    """

    def __init__(self, config: TrainingConfig, n_members: int) -> None:
        self.factor, self.patience = config.lr_decay_factor, config.lr_decay_patience
        self.best = [math.inf] * n_members
        self.bad_epochs = [0] * n_members

    def step(self, scores: list[float], active: list[bool], learning_rates: list[float]) -> bool:
        """Record one epoch's ``scores``; lower ``learning_rates`` in place; True if any changed."""
        changed = False
        for m, score in enumerate(scores):
            if not active[m]:
                continue
            if score < self.best[m] - 1e-5:
                self.best[m], self.bad_epochs[m] = score, 0
            else:
                self.bad_epochs[m] += 1
            if self.bad_epochs[m] > self.patience:
                lowered = max(learning_rates[m] * self.factor, 1e-6)
                if learning_rates[m] - lowered > 1e-8:
                    learning_rates[m], changed = lowered, True
                self.bad_epochs[m] = 0
        return changed


def _is_unit(name: str) -> bool:
    """A buffer of the network's own units (shared by every member, never trained)."""
    return name.startswith(("x_transform.", "y_transform."))


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _copy_members(source: dict[str, Tensor], target: dict[str, Tensor], members: list[int], n_members: int) -> None:
    """Copy members ``members`` of every tensor from ``source`` to ``target``, two state dicts of
    one model (a module's own writes through to it). An ensemble keeps the member first in every
    parameter and buffer; a single network is all of member 0."""
    with torch.no_grad():
        for name, value in target.items():
            if _is_unit(name):
                continue
            if n_members == 1:
                value.copy_(source[name])
                continue
            index = torch.as_tensor(members, device=value.device)
            value.index_copy_(0, index, source[name].index_select(0, index))


# ---------------------------------------------------------------------- the resumable state
class TrainState:
    """Everything a run needs to go on: hand it to :func:`train` again to continue exactly.

    Args:
        module: The model (updated in place).
        config: Its optimiser and schedule settings (the learning rate and optimiser are fixed
            at creation; the rest is read at every call of :func:`train`).
        generator: The random source of shuffling and noise, advanced by every epoch.
    """

    def __init__(self, module: nn.Module, config: TrainingConfig, generator: torch.Generator | None = None) -> None:
        self.module, self.config, self.generator = module, config, generator
        self.step_module = TrainStep(module)
        self.parallel_step = distributed.data_parallel(self.step_module)  # itself on one process
        self.fused_step = self._fused_step(config)
        self.n = self.step_module.n_members
        if self.n > 1:
            unbatched = [name for name, value in module.state_dict().items()
                         if not _is_unit(name) and (value.dim() == 0 or len(value) != self.n)]
            if unbatched:
                raise ValueError(f"Every parameter and buffer of an ensemble must have the member first; not {unbatched}.")
        self.parameters = [p for p in module.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(config, self.parameters)
        self.rates = _MemberRates(self.optimizer, self.parameters, self.n)
        self.average = self._weight_average(config)
        self.learning_rates = [config.learning_rate] * self.n
        self.plateau = None if config.optimizer == "lbfgs" else _Plateau(config, self.n)
        self.active = [True] * self.n
        self.best_scores = [math.inf] * self.n
        self.epochs_without_improvement = [0] * self.n
        self.best_epochs = [0] * self.n  # absolute epoch numbers
        self.epoch = 0
        self.rollbacks = 0
        self.best_state = _snapshot(module)
        self.good_state = _snapshot(module)
        self.candidate_state: dict[str, Tensor] | None = None
        self._loss_weights: tuple[list[bool], Tensor, Tensor] | None = None

    def _fused_step(self, config: TrainingConfig) -> FusedStep | None:
        """mdnkit's own network on one process: its backward written out (:mod:`mdnkit._fused_step`)."""
        if config.optimizer == "lbfgs" or distributed.world()[1] > 1 or not FusedStep.supports(self.module):
            return None
        return FusedStep(self.module)

    def _weight_average(self, config: TrainingConfig) -> WeightAverage | None:
        """The weights' moving average, when asked for; L-BFGS's full-batch steps do not jitter."""
        if not config.weight_averaging or config.optimizer == "lbfgs":
            return None
        return WeightAverage(self.parameters, config.weight_averaging, self.n)

    @contextlib.contextmanager
    def averaged(self) -> Iterator[None]:
        """Inside, the module holds the weights' average (when there is one): what validation
        scores, early stopping keeps and a stopped member is frozen at."""
        if self.average is None:
            yield
            return
        with self.average.swapped_in(self.active):
            yield

    # -------------------------------------------------------------- per-member bookkeeping
    @property
    def member_inputs(self) -> bool:
        """Whether each member gets its own noisy inputs (one input-noise level per member)."""
        return len(_levels(self.config.input_noise)) > 1

    @torch.no_grad()
    def member(self, index: int, module: nn.Module, extract: Callable[[], nn.Module]) -> TrainState:
        """The state of member ``index`` alone, for ``module``, a copy of that member made by
        ``extract()`` (e.g. ``lambda: ensemble.member(index)``): its optimiser moments (mapped to
        the single network's layout by ``extract`` itself), learning rate, plateau and
        early-stopping record, and the shared generator and epoch.

        While a stopped member waited for the others its moments kept decaying, so this is the
        member's state at the end of the whole run, not of a run alone. Its weights' average (with
        ``weight_averaging``) starts afresh from the member's weights.
        """
        config = replace(self.config, **{
            name: levels[index] if len(levels) > 1 else levels[0]
            for name in ("input_noise", "target_noise") for levels in [_levels(getattr(self.config, name))]})
        state = TrainState(module, config, self.generator)
        if config.optimizer != "lbfgs" and self.optimizer.state:
            weights = [p.detach().clone() for p in self.parameters]
            try:
                first = self.optimizer.state[self.parameters[0]]
                for key in [k for k, v in first.items() if torch.is_tensor(v) and v.shape == self.parameters[0].shape]:
                    for p in self.parameters:  # the moments pass through the same map as the weights
                        p.copy_(self.optimizer.state[p][key])
                    for q, moment in zip(state.parameters, extract().parameters()):
                        state.optimizer.state[q][key] = moment.detach().clone()
                for q in state.parameters:
                    state.optimizer.state[q]["step"] = first["step"].clone()
            finally:
                for p, weight in zip(self.parameters, weights):
                    p.copy_(weight)
        state.learning_rates = [self.learning_rates[index]]
        if state.plateau is not None and self.plateau is not None:
            state.plateau.best, state.plateau.bad_epochs = [self.plateau.best[index]], [self.plateau.bad_epochs[index]]
        state.active, state.best_scores = [self.active[index]], [self.best_scores[index]]
        state.epochs_without_improvement = [self.epochs_without_improvement[index]]
        state.best_epochs, state.epoch = [self.best_epochs[index]], self.epoch
        state.apply_rates()
        return state

    def apply_rates(self) -> None:
        self.rates.apply(self.learning_rates, self.active)

    def loss_weights(self, like: Tensor) -> Tensor | None:
        """``[M]`` 1 for active members, 0 for frozen ones; ``None`` while all are active."""
        if all(self.active):
            return None
        return self._active_tensors(like)[0]

    def trained_members(self, like: Tensor) -> Tensor | None:
        """The indices of the active members, ``[T]``; ``None`` while all are active."""
        return None if all(self.active) else self._active_tensors(like)[1]

    def _active_tensors(self, like: Tensor) -> tuple[Tensor, Tensor]:
        """``(loss weights [M], active indices [T])`` on ``like``'s device, made once per change of ``active``."""
        if self._loss_weights is None or self._loss_weights[0] != self.active:
            indices = [m for m, alive in enumerate(self.active) if alive]
            self._loss_weights = (list(self.active), torch.tensor(self.active, dtype=like.dtype, device=like.device),
                                  torch.tensor(indices, dtype=torch.long, device=like.device))
        return self._loss_weights[1:]

    def resume(self, config: TrainingConfig) -> None:
        """Go on under ``config``: a learning rate or weight decay the caller changed applies
        from now on (the optimiser's moments stay); otherwise the schedules simply continue."""
        if config.optimizer != self.config.optimizer:
            raise ValueError(f"state was trained with optimizer={self.config.optimizer!r}; cannot continue "
                             f"with {config.optimizer!r}.")
        if config.learning_rate != self.config.learning_rate:
            self.learning_rates = [config.learning_rate] * self.n
        # A run that ended on its average without validation goes on from its trained weights;
        # the average handed over is what a validated continuation scores first, so its best.
        handed_back = _snapshot(self.module)
        going_on = (self.average is not None and config.weight_averaging == self.config.weight_averaging
                    and self.average.take_back())
        for group in self.optimizer.param_groups:
            if "weight_decay" in group:
                group["weight_decay"] = config.weight_decay
        self.config = config
        self.fused_step = self._fused_step(config)  # the caller may have changed the module (bins, hooks)
        self.rollbacks = 0  # max_rollbacks is per call, as it always was
        if self.plateau is not None:
            self.plateau.factor, self.plateau.patience = config.lr_decay_factor, config.lr_decay_patience
        # The weights the caller hands back are where this call starts and what it falls back
        # on (after a validated call they are each member's best; a caller may have edited them).
        self.best_state, self.good_state = handed_back, _snapshot(self.module)
        if not going_on:
            self.average = self._weight_average(config)  # averaging from there on
        self.reactivate()
        self.apply_rates()

    def reactivate(self) -> None:
        """A finished run asked to go on (a warm start after every member stopped): members train
        again, from their best weights, with fresh patience; optimiser and schedules are kept."""
        if not any(self.active):
            self.active = [True] * self.n
            self.epochs_without_improvement = [0] * self.n
            self.apply_rates()

    def record(self, scores: list[float], validate: bool) -> bool:
        """Early stopping on one epoch's monitored ``scores [M]``; True when every member stopped."""
        if not validate:  # without validation the last weights are kept
            self.best_epochs = [self.epoch] * self.n
            return False
        improved, stopping = [], []
        for m in range(self.n):
            if not self.active[m]:
                continue
            if scores[m] < self.best_scores[m] - 1e-5:  # in nats per row, standardised units
                self.best_scores[m], self.best_epochs[m] = scores[m], self.epoch
                self.epochs_without_improvement[m] = 0
                improved.append(m)
            else:
                self.epochs_without_improvement[m] += 1
                if self.epochs_without_improvement[m] >= self.config.patience:
                    stopping.append(m)
        if improved:
            if self.n == 1:
                self.best_state = _snapshot(self.module)
            else:
                _copy_members(self.module.state_dict(), self.best_state, improved, self.n)
        if stopping:
            for m in stopping:
                self.active[m] = False
            if not any(self.active):
                return True
            # Freeze the stopped members at their best: the rest go on as they would alone.
            _copy_members(self.best_state, self.module.state_dict(), stopping, self.n)
            self.apply_rates()
        return False

    def rollback(self) -> None:
        """Back to the last weights a finite loss vouched for, without the optimiser's moments,
        at half the learning rates; raises once that has happened ``max_rollbacks`` times."""
        self.rollbacks += 1
        self.module.load_state_dict(self.good_state)
        frozen = [m for m in range(self.n) if not self.active[m]]
        if frozen:  # frozen members stay at their best weights
            _copy_members(self.best_state, self.module.state_dict(), frozen, self.n)
        if self.average is not None:  # the good weights are also where the average starts again
            self.average.restart_from_parameters()
        if self.rollbacks >= self.config.max_rollbacks:
            raise TrainingDivergedError(
                f"The loss became non-finite {self.rollbacks} times (last at epoch {self.epoch}) even "
                f"after lowering the learning rate to {self.optimizer.param_groups[0]['lr']:.3g}. Try a "
                "smaller learning_rate, a larger min_scale, gradient_clip, or check the data for "
                "extreme values."
            )
        self.optimizer.state.clear()
        self.learning_rates[:] = [rate * 0.5 for rate in self.learning_rates]
        self.apply_rates()
        warnings.warn(
            f"Non-finite loss at epoch {self.epoch}: rolled back to the last good weights and halved "
            f"the learning rate to {self.optimizer.param_groups[0]['lr']:.3g}.",
            RuntimeWarning,
            stacklevel=3,
        )

    # -------------------------------------------------------------- steps and passes
    def gradient_step(self, x: Tensor, y: Tensor, weights: Tensor | None) -> tuple[Tensor, Tensor]:
        """One optimiser step on a batch; its (pre-step) members' and recorded mean NLLs."""
        config = self.config
        if _has_noise(config):
            x, y = _perturbed(x, y, config, self.generator)
        self.optimizer.zero_grad(set_to_none=True)
        if self.fused_step is not None:
            member_nll, reported = self.fused_step(x, y, weights, self.member_inputs, self.loss_weights(x),
                                                   self.trained_members(x))
        else:
            member_nll, reported = self.parallel_step(x, y, weights, self.member_inputs)
            loss_weights = self.loss_weights(member_nll)
            (member_nll.sum() if loss_weights is None else member_nll @ loss_weights).backward()
        if config.gradient_clip:
            if self.n == 1:
                _clip_grad_norm(self.parameters, config.gradient_clip)
            else:
                _clip_grad_norm_per_member(self.parameters, config.gradient_clip, self.n)
        self.rates.step()
        if self.average is not None:
            self.average.update()
        return member_nll.detach(), reported.detach()

    def lbfgs_step(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """One L-BFGS step (up to 20 evaluations) on the full batch; the NLLs at its start."""
        config = self.config
        x, y, weights = batch
        if _has_noise(config):
            x, y = _perturbed(x, y, config, self.generator)
        first: list[tuple[Tensor, Tensor]] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            member_nll, reported = self.step_module(x, y, weights, self.member_inputs)
            if not first:
                first.append((member_nll.detach(), reported.detach()))
            loss_weights = self.loss_weights(member_nll)
            loss = member_nll.sum() if loss_weights is None else member_nll @ loss_weights
            if config.weight_decay:  # L-BFGS has no decoupled decay: penalise instead
                loss = loss + 0.5 * config.weight_decay * sum(p.square().sum() for p in self.parameters)
            loss.backward()
            return loss

        self.rates.step(closure)
        return first[0]

    def train_epoch(self, batches: InMemoryBatches | IterableBatches) -> tuple[Tensor, Tensor]:
        """One pass; ``(members' train NLL [M], recorded train NLL)`` weighted by rows."""
        if self.config.optimizer == "lbfgs":
            epoch = list(batches.epoch(self.generator))
            if len(epoch) != 1:
                raise ValueError(f"optimizer='lbfgs' takes full batches; this source gave {len(epoch)} batches an epoch.")
            return self.lbfgs_step(epoch[0])
        # Running sums, not a list of every step's NLLs: thousands of small tensors kept alive
        # among the freed activations of each step fragmented the heap (+250 MiB resident over
        # 2200 steps of a streamed epoch), without a sync per step.
        first, n_steps, n_rows = None, 0, 0
        reported = members = member_rows = 0.0
        for x, y, w in batches.epoch(self.generator):
            member_nll, nll = self.gradient_step(x, y, w)
            first = (member_nll, nll) if n_steps == 0 else first
            rows = torch.full_like(member_nll, len(x)) if w is None else w.sum(1)  # each member's own rows
            reported, members = reported + nll * len(x), members + member_nll * rows
            member_rows, n_steps, n_rows = member_rows + rows, n_steps + 1, n_rows + len(x)
        if n_steps == 0:
            raise ValueError("The batch source gave no batches for this epoch.")
        several = distributed.world()[1] > 1
        if n_steps == 1 and not several:  # a full batch: its NLLs as they are
            return first
        if several:  # every rank's rows: the same NLLs, hence the same decisions, on every rank
            members, member_rows, reported, n_rows = distributed.summed(members, member_rows, reported, n_rows)
        return members / member_rows.clamp(min=1e-12), reported / n_rows

    @torch.no_grad()
    def evaluate(self, batches: Iterable[Batch]) -> tuple[Tensor, Tensor]:
        """Validation NLLs ``(members [M], reported)`` over ``batches``, weighted as one pass."""
        self.module.eval()
        try:
            batches = list(batches) if isinstance(batches, (list, tuple)) else batches
            several = distributed.world()[1] > 1
            if isinstance(batches, list) and len(batches) == 1 and not several:
                return self.step_module(*batches[0])
            members, reported, member_rows, scored_rows = 0.0, 0.0, 0.0, 0.0
            if several:  # a rank whose own rows hold no validation row still sums [M] with the others
                members = member_rows = torch.zeros(self.n, dtype=torch.float64, device=next(self.module.parameters()).device)
            for x_chunk, y_chunk, w_chunk in batches:
                member_nll, nll = self.step_module(x_chunk, y_chunk, w_chunk)
                rows = torch.full_like(member_nll, len(x_chunk)) if w_chunk is None else w_chunk.sum(1)
                scored = len(x_chunk) if w_chunk is None else (w_chunk.sum(0) > 0).sum()
                members, member_rows = members + member_nll * rows, member_rows + rows
                reported, scored_rows = reported + nll * scored, scored_rows + scored
            if several:
                members, member_rows, reported, scored_rows = distributed.summed(members, member_rows, reported, scored_rows)
            return members / member_rows.clamp(min=1e-12), reported / max(float(scored_rows), 1.0)
        finally:
            self.module.train()


# ---------------------------------------------------------------------- the loop
def train(
    module: nn.Module,
    x_train: Tensor | Iterable,
    y_train: Tensor | None = None,
    x_val: Tensor | Iterable | None = None,
    y_val: Tensor | None = None,
    config: TrainingConfig | None = None,
    generator: torch.Generator | None = None,
    nll_offset: float = 0.0,
    holdout: Tensor | None = None,
    state: TrainState | None = None,
) -> TrainingResult:
    """Fit ``module`` by maximum likelihood for up to ``config.max_epochs`` more epochs.

    An ensemble (``n_members`` ``M > 1``) is trained as if each member were fitted alone: each
    keeps its own best weights, chosen by its own validation NLL, has its own learning-rate
    schedule, and is frozen once it has not improved for ``patience`` epochs; training ends when
    every member is frozen.

    Args:
        module: A :class:`~mdnkit.model.DensityNetwork` (or any module whose ``forward(x [N, F])``
            returns a distribution with ``log_prob(y [N, D]) -> [N]``).
        x_train, y_train: Training data ``[N, F]`` and ``[N, D]`` on the module's device, in the
            network's own units. Or, as ``x_train`` alone, any batch source: an object with
            ``epoch(generator) -> iterator of (x, y, row_weights)`` or any re-iterable of
            ``(x, y)`` / ``(x, y, row_weights)`` batches (a ``DataLoader``), iterated once per
            epoch and moved to the module's device and dtype.
        x_val, y_val: Optional validation data, tensors or (``x_val`` alone) an iterable of
            batches; when given, training stops after ``patience`` epochs without improvement
            and the best weights are restored.
        config: Optimiser and schedule settings.
        generator: Random source for shuffling and noise (determinism).
        nll_offset: Added to every recorded NLL (the log-Jacobian of the caller's scaling).
        holdout: For an ensemble only, instead of ``x_val``/``y_val``: booleans ``[M, N]``, the
            rows of ``x_train`` that member ``m`` holds out to early-stop on; it trains on the
            others. The recorded validation NLL is then the out-of-bag one: each held-out row
            scored by the mixture of the members that held it out. With full batches each member
            follows exactly its path alone on its own rows; minibatches are slices of one
            shuffle of all rows, each member taking its own rows of every slice.
        state: The :attr:`TrainingResult.state` of an earlier call on this module: the run
            continues exactly (optimiser, schedules, early-stopping record, generator, epoch).

    Returns:
        This call's history and how the run ended, with the state to continue from.

    Raises:
        TrainingDivergedError: The loss became non-finite ``max_rollbacks`` times.
    """
    config = config or (state.config if state is not None else TrainingConfig())
    if state is None:
        state = TrainState(module, config, generator)
    else:
        if state.module is not module:
            raise ValueError("state belongs to another module; continue a run with its own module.")
        state.resume(config)
    for name in ("input_noise", "target_noise"):
        levels = _levels(getattr(config, name))
        if len(levels) > 1 and len(levels) != state.n:
            raise ValueError(f"{name} has {len(levels)} levels for {state.n} members; give one level or one per member.")
    if holdout is not None and not isinstance(x_train, Tensor):
        raise ValueError("holdout needs in-memory tensors; a batch source carries its own row_weights.")
    x_train, y_train, x_val, y_val, train_weights, val_weights = _split_holdout(
        state.n, x_train, y_train, x_val, y_val, holdout)
    like = next(module.parameters())
    batches = batch_source(x_train, y_train, train_weights, config.batch_size, like)
    validation = _validation_batches(x_val, y_val, val_weights, like)
    if distributed.world()[1] > 1:  # a process group (torchrun): this rank's share of every batch
        if config.optimizer == "lbfgs":
            raise ValueError("optimizer='lbfgs' does not train data-parallel; use Adam or AdamW under torchrun.")
        if not getattr(batches, "sharded", False):  # a rank's own rows already (a sharded table) stay whole
            batches = distributed.ShardedBatches(batches, state.generator)
        if not getattr(x_val, "sharded", False):
            validation = distributed.sharded_validation(validation)
        distributed.decorrelate(state.generator)  # each rank its own noise for its own rows
    validate = validation is not None
    if validate and state.epoch > 0:
        # A continued run measures its start on this call's validation rows: on the same rows
        # that is the best score already recorded; on new rows the old score would mislead.
        with state.averaged():
            start_scores = state.evaluate(validation())[0].tolist()
        state.best_scores = list(start_scores)
        if state.plateau is not None:
            state.plateau.best = list(start_scores)
    start_epoch = state.epoch
    result = TrainingResult()
    start = time.perf_counter()
    module.train()
    progress = _progress_bar(config)
    try:
        while state.epoch - start_epoch < config.max_epochs:
            state.epoch += 1
            if state.epoch % 10 == 1:  # weights this epoch's loss will vouch for, if it is finite
                state.candidate_state = _snapshot(module)
            member_train, train_loss = state.train_epoch(batches)
            # validated, kept and frozen: the weights' average (without validation, the end's)
            with state.averaged() if validate else contextlib.nullcontext():
                member_val, val_loss = state.evaluate(validation()) if validate else (None, None)
                members_train = member_train.tolist()
                members_val = member_val.tolist() if validate else [math.nan] * state.n
                train_value = float(train_loss)
                val_value = float(val_loss) if validate else math.nan
                checked = [v for m in range(state.n) if state.active[m]
                           for v in (members_train[m], *(members_val[m:m + 1] if validate else ()))]
                if not all(map(math.isfinite, [*checked, train_value, *([val_value] if validate else [])])):
                    try:
                        state.rollback()
                    finally:
                        result.rollbacks += 1
                    continue
                if state.candidate_state is not None:
                    state.good_state, state.candidate_state = state.candidate_state, None
                monitored = members_val if validate else members_train
                if state.plateau is not None and state.plateau.step(monitored, state.active, state.learning_rates):
                    state.apply_rates()
                result.history.append({
                    "epoch": state.epoch - start_epoch,
                    "train_nll": train_value + nll_offset,
                    "val_nll": val_value + nll_offset,
                    "learning_rate": state.optimizer.param_groups[0]["lr"],
                    "time": time.perf_counter() - start,
                })
                result.member_history.append({"train_nll": [v + nll_offset for v in members_train],
                                              "val_nll": [v + nll_offset for v in members_val],
                                              "learning_rate": list(state.learning_rates),
                                              "active": list(state.active)})
                progress.update(1)
                if state.epoch % 10 == 0 or state.epoch == 1:  # a disabled bar ignores it
                    progress.set_postfix(train_nll=f"{train_value + nll_offset:.4f}",
                                         val_nll=f"{val_value + nll_offset:.4f}", refresh=False)
                if state.record(monitored, validate):
                    result.stopped_early = True
                    break
    except KeyboardInterrupt:
        # Ctrl-C ends the fit, not the program: keep the best weights so far (restored below).
        result.interrupted = True
    finally:
        progress.close()
    result.member_best_epochs = [max(epoch - start_epoch, 0) for epoch in state.best_epochs]
    result.best_epoch = max(result.member_best_epochs)
    if validate:
        module.load_state_dict(state.best_state)
    elif state.average is not None:  # without validation the last weights are kept: their average
        state.average.hand_over()
    module.eval()
    result.state = state
    return result


def _validation_batches(x_val: Tensor | Iterable | None, y_val: Tensor | None, weights: Tensor | None,
                        like: Tensor) -> Callable[[], Iterable[Batch]] | None:
    """A fresh iterable of validation batches per call (chunks of tensors), or ``None``."""
    if x_val is None:
        return None
    if isinstance(x_val, Tensor):
        if y_val is None or len(x_val) == 0:
            return None
        chunks = list(_chunks(x_val, y_val, weights))
        return lambda: chunks
    source = batch_source(x_val, y_val, weights, None, like)
    return lambda: source.epoch(None)


def _split_holdout(
    n_members: int, x_train: Tensor, y_train: Tensor, x_val: Tensor | None, y_val: Tensor | None,
    holdout: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None]:
    """With ``holdout [M, N]``: the training and validation rows and each member's row weights
    ``[M, rows]`` on them (a row every member holds out trains none)."""
    if holdout is None:
        return x_train, y_train, x_val, y_val, None, None
    if (n_members == 1 or x_val is not None or holdout.dtype != torch.bool
            or tuple(holdout.shape) != (n_members, len(x_train))):
        raise ValueError(
            f"holdout must be booleans [n_members, rows] = [{n_members}, {len(x_train)}] for an ensemble "
            f"trained without x_val; got {holdout.dtype} of shape {tuple(holdout.shape)}."
        )
    holdout = holdout.to(x_train.device)
    for what, members in (("no rows to validate on", ~holdout.any(1)), ("no rows to train on", holdout.all(1))):
        if bool(members.any()):
            raise ValueError(f"holdout leaves member(s) {members.nonzero().flatten().tolist()} {what}.")
    val_rows = holdout.any(0).nonzero().flatten()
    fit_rows = (~holdout).any(0).nonzero().flatten()
    return (x_train[fit_rows], y_train[fit_rows], x_train[val_rows], y_train[val_rows],
            (~holdout[:, fit_rows]).to(x_train.dtype), holdout[:, val_rows].to(x_train.dtype))


def _progress_bar(config: TrainingConfig):
    from mdnkit._progress import epoch_bar

    return epoch_bar(config.max_epochs, config.verbose and distributed.world()[0] == 0)  # one bar: rank 0's
