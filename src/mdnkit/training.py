"""The fit loop: optimisers, batching, noise regularisation, early stopping, divergence recovery.

:func:`train` minimises ``-module(x).log_prob(y).mean()`` for any module whose forward returns a
distribution. It works on tensors already standardised and on their device; the estimator does
the scaling. Everything it records (the per-epoch history) is shifted by ``nll_offset`` so that a
caller can report NLLs in the user's original units.

A module with an ``n_members`` attribute ``M`` is an ensemble trained as ``M`` independent fits
in one: every parameter and buffer has the member first, and ``training_losses(x, y) ->
(member_nll [M], nll)`` gives each member's NLL (their sum is minimised) and the NLL to record
(of their mixture), as :class:`~mdnkit.heads.MDNEnsemble` does. Gradients are clipped, learning
rates decayed, best weights kept and training stopped member by member, so each member ends as it
would have trained alone (Lakshminarayanan et al. 2017); only a divergence rollback is shared.
With ``holdout`` each member also has its own validation rows, taken from one pool of rows
(``training_losses(x, y, row_weights)`` then weighs each member's rows).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

Optimizer = Literal["adam", "lbfgs"]


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
    input_noise: float = 0.0
    target_noise: float = 0.0
    max_rollbacks: int = 5
    verbose: bool = False


@dataclass
class TrainingResult:
    """What :func:`train` learned about the run (the module itself is updated in place)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0  # whose weights were kept; for an ensemble, the latest member's
    member_best_epochs: list[int] = field(default_factory=list)  # each member's ([best_epoch] for one)
    stopped_early: bool = False
    rollbacks: int = 0
    interrupted: bool = False


def _nll(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    if hasattr(module, "training_losses"):  # a DensityNetwork: its own units, its own loss
        return module.training_losses(x, y)[0][0]
    return -module(x).log_prob(y).mean()  # any module whose forward returns a distribution


def _is_unit(name: str) -> bool:
    """A buffer of the network's own units (the same for every member, never trained)."""
    return name.startswith(("x_transform.", "y_transform."))


def _clip_grad_norm_per_member(parameters: list[nn.Parameter], max_norm: float, n_members: int) -> None:
    """Clip each member's gradient to ``max_norm`` on its own, as if it were trained alone."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    squares = torch.stack([g.reshape(n_members, -1).square().sum(1) for g in grads]).sum(0)  # [M]
    scale = (max_norm / (squares.sqrt() + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale.view(n_members, *[1] * (grad.dim() - 1)))


def _clip_grad_norm(parameters: list[nn.Parameter], max_norm: float) -> None:
    """``nn.utils.clip_grad_norm_`` without its per-call bookkeeping (grouping by device and
    dtype, error options), which costs about as much as the clipping on a small network."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for grad in grads:
        grad.mul_(scale)


def _snapshot(module: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _make_optimizer(config: TrainingConfig, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    if config.optimizer == "lbfgs":
        return torch.optim.LBFGS(
            parameters, lr=config.learning_rate, max_iter=20, history_size=50,
            line_search_fn="strong_wolfe",
        )
    # AdamW: decoupled weight decay (AdamW with weight_decay=0 is Adam). The fused kernel updates
    # every parameter in one call, which matters for the small networks MDNs usually are.
    try:
        return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


def train(
    module: nn.Module,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor | None = None,
    y_val: Tensor | None = None,
    config: TrainingConfig | None = None,
    generator: torch.Generator | None = None,
    nll_offset: float = 0.0,
    holdout: Tensor | None = None,
) -> TrainingResult:
    """Fit ``module`` by maximum likelihood.

    An ensemble (a module with ``n_members``) is trained as if each member were fitted alone:
    each keeps its own best weights, chosen by its own validation NLL, has its own learning-rate
    schedule, and is frozen once it has not improved for ``patience`` epochs; training ends when
    every member is frozen.

    Args:
        module: ``forward(x [N, F])`` returns a distribution with ``log_prob(y [N, D]) -> [N]``.
        x_train, y_train: Training data ``[N, F]`` and ``[N, D]`` on the module's device.
        x_val, y_val: Optional validation data; when given, training stops after ``patience``
            epochs without improvement and the best weights are restored.
        config: Optimiser and schedule settings.
        generator: Random source for shuffling and noise (determinism).
        nll_offset: Added to every recorded NLL (the log-Jacobian of the caller's scaling).
        holdout: For an ensemble only, instead of ``x_val``/``y_val``: booleans ``[M, N]``, the
            rows of ``x_train`` that member ``m`` holds out to early-stop on; it trains on the
            others. The recorded validation NLL is then the out-of-bag one: each held-out row
            scored by the mixture of the members that held it out. With full batches each member
            follows exactly its path alone on its own rows; minibatches are slices of one
            shuffle of all rows, each member taking its own rows of every slice.

    Returns:
        The per-epoch history and how the run ended.

    Raises:
        TrainingDivergedError: The loss became non-finite ``max_rollbacks`` times.
    """
    config = config or TrainingConfig()
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = _make_optimizer(config, parameters)
    noisy = config.input_noise > 0 or config.target_noise > 0
    n = int(getattr(module, "n_members", 1))
    ensemble = n > 1
    n_members = n if ensemble else None
    if ensemble:
        unbatched = [name for name, value in module.state_dict().items()
                     if not _is_unit(name) and (value.dim() == 0 or len(value) != n)]
        if unbatched:
            raise ValueError(f"Every parameter and buffer of an ensemble must have the member first; not {unbatched}.")
    # Row weights [M, rows] of each member's training and validation rows (None: all rows, shared).
    train_weights = val_weights = None
    if holdout is not None:
        if (not ensemble or x_val is not None or holdout.dtype != torch.bool
                or tuple(holdout.shape) != (n, len(x_train))):
            raise ValueError(
                f"holdout must be booleans [n_members, rows] = [{n}, {len(x_train)}] for an ensemble "
                f"trained without x_val; got {holdout.dtype} of shape {tuple(holdout.shape)}."
            )
        holdout = holdout.to(x_train.device)
        for what, members in (("no rows to validate on", ~holdout.any(1)), ("no rows to train on", holdout.all(1))):
            if bool(members.any()):
                raise ValueError(f"holdout leaves member(s) {members.nonzero().flatten().tolist()} {what}.")
        val_rows = holdout.any(0).nonzero().flatten()
        fit_rows = (~holdout).any(0).nonzero().flatten()  # a row every member holds out trains none
        x_val, y_val = x_train[val_rows], y_train[val_rows]
        val_weights = holdout[:, val_rows].to(x_train.dtype)
        x_train, y_train = x_train[fit_rows], y_train[fit_rows]
        train_weights = (~holdout[:, fit_rows]).to(x_train.dtype)
    validate = x_val is not None and y_val is not None and len(x_val) > 0
    n_train = len(x_train)
    batch_size = n_train if config.batch_size is None else min(int(config.batch_size), n_train)

    # Each member's own learning rate, early-stopping record and state. One optimiser has one
    # learning rate (the members' weights share tensors), so it runs at the largest active rate
    # and each step is scaled back member by member (optimizer_step); frozen members get 0.
    learning_rates = [config.learning_rate] * n
    plateau = None if config.optimizer == "lbfgs" else _Plateau(config, n)
    active = [True] * n
    best_scores = [math.inf] * n
    epochs_without_improvement = [0] * n
    step_factors: list[Tensor] | None = None  # per parameter [M, 1, ...]; None while all are equal
    loss_weights: Tensor | None = None  # [M], 0 for frozen members; None while none is
    previous: list[Tensor] = []

    def apply_learning_rates() -> None:
        nonlocal step_factors, loss_weights
        rates = [rate if alive else 0.0 for rate, alive in zip(learning_rates, active)]
        top = max(rates)
        for group in optimizer.param_groups:
            group["lr"] = top
        if all(rate == top for rate in rates):
            step_factors = None
        else:
            factors = torch.tensor([rate / top for rate in rates], dtype=torch.float64)
            step_factors = [factors.to(p).view(n, *[1] * (p.dim() - 1)) for p in parameters]
        loss_weights = None if all(active) else torch.tensor(active, dtype=x_train.dtype, device=x_train.device)

    def optimizer_step(closure=None):
        if step_factors is None:
            return optimizer.step(closure)
        with torch.no_grad():
            if not previous:
                previous.extend(torch.empty_like(p) for p in parameters)
            for old, p in zip(previous, parameters):
                old.copy_(p)
        value = optimizer.step(closure)
        with torch.no_grad():  # old + factor * (new - old): Adam's step is linear in its rate
            for p, old, factor in zip(parameters, previous, step_factors):
                p.copy_(old.lerp_(p, factor))  # exact at factors 0 and 1
        return value

    def losses(x: Tensor, y: Tensor, weights: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """``(loss to minimise, the members' NLLs [M] or None, the NLL to record)``; ``weights``:
        the members' row weights ``[M, rows]`` (None: every member on every row)."""
        if not ensemble:
            loss = _nll(module, x, y)
            return loss, None, loss
        member_nll, reported = module.training_losses(*(x, y) if weights is None else (x, y, weights))
        loss = member_nll.sum() if loss_weights is None else member_nll @ loss_weights
        return loss, member_nll.detach(), reported

    def perturbed(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # Noise regularisation (Rothfuss et al. 2019): fresh noise on standardised x and y.
        if config.input_noise > 0:
            x = x + config.input_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if config.target_noise > 0:
            y = y + config.target_noise * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return x, y

    def gradient_step(x: Tensor, y: Tensor, weights: Tensor | None = None) -> tuple[Tensor | None, Tensor]:
        """One Adam step on a batch; returns its (pre-step) members' and recorded mean NLLs."""
        x, y = perturbed(x, y) if noisy else (x, y)
        optimizer.zero_grad(set_to_none=True)
        loss, member_nll, reported = losses(x, y, weights)
        loss.backward()
        if config.gradient_clip:
            if n_members is None:
                _clip_grad_norm(parameters, config.gradient_clip)
            else:
                _clip_grad_norm_per_member(parameters, config.gradient_clip, n_members)
        optimizer_step()
        return member_nll, reported.detach()

    result = TrainingResult(member_best_epochs=[0] * n)
    best_state, good_state, candidate_state = _snapshot(module), _snapshot(module), None
    start = time.perf_counter()
    module.train()
    progress = _progress_bar(config)
    epoch = 0
    try:
        while epoch < config.max_epochs:
            epoch += 1
            if epoch % 10 == 1:  # weights this epoch's loss will vouch for, if it is finite
                candidate_state = _snapshot(module)
            if config.optimizer == "lbfgs":
                x_step, y_step = perturbed(x_train, y_train) if noisy else (x_train, y_train)

                first: list[tuple[Tensor | None, Tensor]] = []  # the NLLs at the step's start

                def closure() -> Tensor:
                    optimizer.zero_grad(set_to_none=True)
                    loss, member_nll, reported = losses(x_step, y_step, train_weights)
                    if not first:
                        first.append((member_nll, reported.detach()))
                    if config.weight_decay:  # L-BFGS has no decoupled decay: penalise instead
                        loss = loss + 0.5 * config.weight_decay * sum(p.square().sum() for p in parameters)
                    loss.backward()
                    return loss

                step_loss = optimizer_step(closure).detach()  # the first closure's value
                member_train, train_loss = first[0]
                if not ensemble:
                    train_loss = step_loss
            elif batch_size == n_train:  # no shuffling or indexing: one step on the whole set
                member_train, train_loss = gradient_step(x_train, y_train, train_weights)
            else:
                # One shuffle of the whole set per epoch, then contiguous slices: cheaper than
                # gathering every minibatch (at 256 rows a step is dominated by per-op overhead).
                order = torch.randperm(n_train, generator=generator, device=x_train.device)
                x_epoch, y_epoch = x_train[order], y_train[order]
                batches = zip(x_epoch.split(batch_size), y_epoch.split(batch_size))
                if train_weights is None:
                    steps = [(gradient_step(x_batch, y_batch), len(x_batch), len(x_batch)) for x_batch, y_batch in batches]
                else:  # each member's NLL is a mean over its own rows of the batch
                    steps = [
                        (gradient_step(x_batch, y_batch, weights), weights.sum(1), len(x_batch))
                        for (x_batch, y_batch), weights in zip(batches, train_weights[:, order].split(batch_size, 1))
                    ]
                train_loss = torch.stack([reported * rows for (_, reported), _, rows in steps]).sum() / n_train
                member_train = (
                    torch.stack([member_nll * rows for (member_nll, _), rows, _ in steps]).sum(0)
                    / (n_train if train_weights is None else train_weights.sum(1))
                    if ensemble else None
                )

            val_loss = member_val = None
            if validate:
                module.eval()
                with torch.no_grad():
                    if ensemble:
                        member_val, val_loss = module.training_losses(
                            *(x_val, y_val) if val_weights is None else (x_val, y_val, val_weights))
                    else:
                        val_loss = _nll(module, x_val, y_val)
                module.train()
            train_value = float(train_loss)
            val_value = float(val_loss) if val_loss is not None else math.nan
            if ensemble:  # per member: train and (when validating) validation NLL
                members_train = member_train.tolist()
                members_val = member_val.tolist() if validate else [math.nan] * n
                monitored = members_val if validate else members_train
                finite = all(
                    math.isfinite(members_train[m]) and (not validate or math.isfinite(members_val[m]))
                    for m in range(n) if active[m]
                )
            else:
                monitored = [val_value if validate else train_value]
                finite = True
            finite = finite and math.isfinite(train_value) and (not validate or math.isfinite(val_value))

            if not finite:
                # Roll back to the last finite weights, forget the optimiser's moments, slow down.
                result.rollbacks += 1
                module.load_state_dict(good_state)
                frozen = [m for m in range(n) if not active[m]]
                if ensemble and frozen:  # frozen members stay at their best weights
                    _copy_members(best_state, module.state_dict(), frozen)
                if result.rollbacks >= config.max_rollbacks:
                    progress.close()
                    raise TrainingDivergedError(
                        f"The loss became non-finite {result.rollbacks} times (last at epoch {epoch}) even "
                        f"after lowering the learning rate to {optimizer.param_groups[0]['lr']:.3g}. Try a "
                        "smaller learning_rate, a larger min_scale, gradient_clip, or check the data for "
                        "extreme values."
                    )
                optimizer.state.clear()
                learning_rates[:] = [rate * 0.5 for rate in learning_rates]
                apply_learning_rates()
                warnings.warn(
                    f"Non-finite loss at epoch {epoch}: rolled back to the last good weights and halved "
                    f"the learning rate to {optimizer.param_groups[0]['lr']:.3g}.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue

            if candidate_state is not None:
                good_state, candidate_state = candidate_state, None
            if plateau is not None and plateau.step(monitored, active, learning_rates):
                apply_learning_rates()
            result.history.append({
                "epoch": epoch,
                "train_nll": train_value + nll_offset,
                "val_nll": val_value + nll_offset,
                "learning_rate": optimizer.param_groups[0]["lr"],
                "time": time.perf_counter() - start,
            })
            progress.update(1)
            if config.verbose and (epoch % 10 == 0 or epoch == 1):
                progress.set_postfix(train_nll=f"{train_value + nll_offset:.4f}",
                                     val_nll=f"{val_value + nll_offset:.4f}", refresh=False)

            if not validate:  # without validation the last weights are kept
                result.member_best_epochs = [epoch] * n
                continue
            improved, stopping = [], []
            for m in range(n):
                if not active[m]:
                    continue
                if monitored[m] < best_scores[m] - 1e-5:  # in nats per row, standardised units
                    best_scores[m], result.member_best_epochs[m] = monitored[m], epoch
                    epochs_without_improvement[m] = 0
                    improved.append(m)
                else:
                    epochs_without_improvement[m] += 1
                    if epochs_without_improvement[m] >= config.patience:
                        stopping.append(m)
            if improved:
                if ensemble:
                    _copy_members(module.state_dict(), best_state, improved)
                else:
                    best_state = _snapshot(module)
            if stopping:
                for m in stopping:
                    active[m] = False
                if not any(active):
                    result.stopped_early = True
                    break
                # Freeze the stopped members at their best: the rest go on as they would alone.
                _copy_members(best_state, module.state_dict(), stopping)
                apply_learning_rates()
    except KeyboardInterrupt:
        # Ctrl-C ends the fit, not the program: keep the best weights so far (restored below).
        result.interrupted = True
    progress.close()
    result.best_epoch = max(result.member_best_epochs)
    if validate:
        module.load_state_dict(best_state)
    module.eval()
    return result


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


def _copy_members(source: dict[str, Tensor], target: dict[str, Tensor], members: list[int]) -> None:
    """Copy members ``members`` (rows of the leading dimension) of every tensor from ``source``
    to ``target``, two state dicts of one ensemble (a module's own writes through to it)."""
    with torch.no_grad():
        for name, value in target.items():
            if _is_unit(name):
                continue
            index = torch.as_tensor(members, device=value.device)
            value.index_copy_(0, index, source[name].index_select(0, index))


def _progress_bar(config: TrainingConfig):
    from tqdm.auto import tqdm

    return tqdm(total=config.max_epochs, disable=not config.verbose, unit="epoch", desc="fit", leave=False)
