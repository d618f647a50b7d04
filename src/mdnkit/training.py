"""The fit loop: optimisers, batching, noise regularisation, early stopping, divergence recovery.

:func:`train` minimises ``-module(x).log_prob(y).mean()`` for any module whose forward returns a
distribution. It works on tensors already standardised and on their device; the estimator does
the scaling. Everything it records (the per-epoch history) is shifted by ``nll_offset`` so that a
caller can report NLLs in the user's original units.

A module may instead define ``training_losses(x, y) -> (loss, nll)``, the objective to minimise
and the NLL to record; :class:`~mdnkit.heads.MDNEnsemble` does (the sum of its members' NLLs, and
the NLL of their mixture). A module with an ``n_members`` attribute has its gradients clipped
member by member: each parameter's leading dimension is the member.
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
    best_epoch: int = 0
    stopped_early: bool = False
    rollbacks: int = 0
    interrupted: bool = False


def _nll(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return -module(x).log_prob(y).mean()


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
) -> TrainingResult:
    """Fit ``module`` by maximum likelihood.

    Args:
        module: ``forward(x [N, F])`` returns a distribution with ``log_prob(y [N, D]) -> [N]``.
        x_train, y_train: Training data ``[N, F]`` and ``[N, D]`` on the module's device.
        x_val, y_val: Optional validation data; when given, training stops after ``patience``
            epochs without improvement and the best weights are restored.
        config: Optimiser and schedule settings.
        generator: Random source for shuffling and noise (determinism).
        nll_offset: Added to every recorded NLL (the log-Jacobian of the caller's scaling).

    Returns:
        The per-epoch history and how the run ended.

    Raises:
        TrainingDivergedError: The loss became non-finite ``max_rollbacks`` times.
    """
    config = config or TrainingConfig()
    validate = x_val is not None and y_val is not None and len(x_val) > 0
    parameters = [p for p in module.parameters() if p.requires_grad]
    optimizer = _make_optimizer(config, parameters)
    scheduler = (
        None if config.optimizer == "lbfgs"
        else torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.lr_decay_factor, patience=config.lr_decay_patience, min_lr=1e-6,
            threshold=1e-5, threshold_mode="abs",  # relative thresholds misjudge negative NLLs
        )
    )
    n_train = len(x_train)
    batch_size = n_train if config.batch_size is None else min(int(config.batch_size), n_train)
    noisy = config.input_noise > 0 or config.target_noise > 0
    n_members = getattr(module, "n_members", None)
    training_losses = getattr(module, "training_losses", None)

    def perturbed(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # Noise regularisation (Rothfuss et al. 2019): fresh noise on standardised x and y.
        if config.input_noise > 0:
            x = x + config.input_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if config.target_noise > 0:
            y = y + config.target_noise * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
        return x, y

    def gradient_step(x: Tensor, y: Tensor) -> Tensor:
        """One Adam step on a batch; returns its (pre-step) mean NLL."""
        x, y = perturbed(x, y) if noisy else (x, y)
        optimizer.zero_grad(set_to_none=True)
        if training_losses is None:
            loss = reported = _nll(module, x, y)
        else:
            loss, reported = training_losses(x, y)
        loss.backward()
        if config.gradient_clip:
            if n_members is None:
                _clip_grad_norm(parameters, config.gradient_clip)
            else:
                _clip_grad_norm_per_member(parameters, config.gradient_clip, n_members)
        optimizer.step()
        return reported.detach()

    result = TrainingResult()
    best_score, best_state = math.inf, _snapshot(module)
    good_state, candidate_state = best_state, None
    epochs_without_improvement = 0
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

                first_nll: list[Tensor] = []  # an ensemble's mixture NLL at the step's start

                def closure() -> Tensor:
                    optimizer.zero_grad(set_to_none=True)
                    if training_losses is None:
                        loss = reported = _nll(module, x_step, y_step)
                    else:
                        loss, reported = training_losses(x_step, y_step)
                    if not first_nll:
                        first_nll.append(reported.detach())
                    if config.weight_decay:  # L-BFGS has no decoupled decay: penalise instead
                        loss = loss + 0.5 * config.weight_decay * sum(p.square().sum() for p in parameters)
                    loss.backward()
                    return loss

                step_loss = optimizer.step(closure).detach()  # the first closure's value
                train_loss = step_loss if training_losses is None else first_nll[0]
            elif batch_size == n_train:  # no shuffling or indexing: one step on the whole set
                train_loss = gradient_step(x_train, y_train)
            else:
                # One shuffle of the whole set per epoch, then contiguous slices: cheaper than
                # gathering every minibatch (at 256 rows a step is dominated by per-op overhead).
                order = torch.randperm(n_train, generator=generator, device=x_train.device)
                x_epoch, y_epoch = x_train[order], y_train[order]
                losses = [
                    gradient_step(x_batch, y_batch) * len(x_batch)
                    for x_batch, y_batch in zip(x_epoch.split(batch_size), y_epoch.split(batch_size))
                ]
                train_loss = torch.stack(losses).sum() / n_train

            val_loss = None
            if validate:
                module.eval()
                with torch.no_grad():
                    val_loss = _nll(module, x_val, y_val)
                module.train()
            train_value = float(train_loss)
            val_value = float(val_loss) if val_loss is not None else math.nan

            if not math.isfinite(train_value) or (validate and not math.isfinite(val_value)):
                # Roll back to the last finite weights, forget the optimiser's moments, slow down.
                result.rollbacks += 1
                module.load_state_dict(good_state)
                if result.rollbacks >= config.max_rollbacks:
                    progress.close()
                    raise TrainingDivergedError(
                        f"The loss became non-finite {result.rollbacks} times (last at epoch {epoch}) even "
                        f"after lowering the learning rate to {optimizer.param_groups[0]['lr']:.3g}. Try a "
                        "smaller learning_rate, a larger min_scale, gradient_clip, or check the data for "
                        "extreme values."
                    )
                optimizer.state.clear()
                for group in optimizer.param_groups:
                    group["lr"] *= 0.5
                warnings.warn(
                    f"Non-finite loss at epoch {epoch}: rolled back to the last good weights and halved "
                    f"the learning rate to {optimizer.param_groups[0]['lr']:.3g}.",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue

            if candidate_state is not None:
                good_state, candidate_state = candidate_state, None
            monitored = val_value if validate else train_value
            if scheduler is not None:
                scheduler.step(monitored)
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

            if not validate:
                result.best_epoch = epoch  # without validation the last weights are kept
            elif monitored < best_score - 1e-5:  # in nats per row, standardised units
                best_score, result.best_epoch = monitored, epoch
                epochs_without_improvement = 0
                best_state = _snapshot(module)
            else:
                epochs_without_improvement += 1
                if epochs_without_improvement >= config.patience:
                    result.stopped_early = True
                    break
    except KeyboardInterrupt:
        # Ctrl-C ends the fit, not the program: keep the best weights so far (restored below).
        result.interrupted = True
    progress.close()
    if validate:
        module.load_state_dict(best_state)
    module.eval()
    return result


def _progress_bar(config: TrainingConfig):
    from tqdm.auto import tqdm

    return tqdm(total=config.max_epochs, disable=not config.verbose, unit="epoch", desc="fit", leave=False)
