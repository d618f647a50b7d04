"""Tests for mdnkit.training.train: convergence, early stopping, divergence recovery, batching,
L-BFGS, the NLL offset, noise regularisation and gradient clipping, on tiny standardised data."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

import mdnkit
from mdnkit import MDN
from mdnkit.training import TrainingConfig, train

HISTORY_KEYS = {"epoch", "train_nll", "val_nll", "learning_rate", "time"}


def _data(n: int = 200, seed: int = 0, sign: float = 1.0):
    """Standardised ``x [n, 1]``, ``y [n, 1]`` with y = sign * sin(2x) + noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    y = sign * torch.sin(2 * x) + 0.3 * torch.randn(n, 1, generator=g)
    return x, (y - y.mean()) / y.std()


def _module(y: torch.Tensor, seed: int = 0) -> MDN:
    torch.manual_seed(seed)
    module = MDN(1, 1, n_components=3, hidden_sizes=(16,))
    module.initialize(y, random_state=seed)
    return module


def _nll(module: nn.Module, x, y) -> float:
    module.eval()
    with torch.no_grad():
        return float(-module(x).log_prob(y).mean())


def _without_time(history):
    return [{k: v for k, v in record.items() if k != "time"} for record in history]


def _same_history(a, b) -> bool:
    """Records equal, NaN equal to NaN, ignoring wall-clock time."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(_without_time(a), _without_time(b)):
        if ra.keys() != rb.keys():
            return False
        for key in ra:
            va, vb = ra[key], rb[key]
            if not (va == vb or (math.isnan(va) and math.isnan(vb))):
                return False
    return True


# ---------------------------------------------------------------------------- basics
def test_loss_decreases_and_history_has_one_record_per_epoch():
    x, y = _data()
    module = _module(y)
    initial = _nll(copy.deepcopy(module), x, y)
    config = TrainingConfig(learning_rate=0.01, max_epochs=40)
    result = train(module, x, y, config=config, generator=torch.Generator().manual_seed(0))

    history = result.history
    assert len(history) == 40
    assert [r["epoch"] for r in history] == list(range(1, 41))
    for record in history:
        assert set(record) == HISTORY_KEYS
        assert math.isnan(record["val_nll"])  # no validation data
        assert record["learning_rate"] == pytest.approx(0.01)
    times = [r["time"] for r in history]
    assert times == sorted(times) and times[0] >= 0
    # The first record is the loss of the starting weights (computed before the first step).
    assert history[0]["train_nll"] == pytest.approx(initial, abs=1e-5)
    final = _nll(module, x, y)
    assert final < initial - 0.1, (initial, final)
    assert history[-1]["train_nll"] < history[0]["train_nll"] - 0.1
    assert not result.stopped_early and result.rollbacks == 0
    assert not module.training  # left in eval mode


def test_early_stopping_restores_best_weights():
    x, y = _data(seed=0)
    # Validation data from the opposite relation: fitting the training data makes it worse, so
    # the validation NLL has an early minimum and training must stop and roll back.
    x_val, y_val = _data(n=100, seed=1, sign=-1.0)
    module = _module(y)
    offset = 0.7
    config = TrainingConfig(learning_rate=0.03, max_epochs=300, patience=5)
    result = train(module, x, y, x_val, y_val, config=config,
                   generator=torch.Generator().manual_seed(0), nll_offset=offset)
    history = result.history
    assert result.stopped_early
    assert len(history) < 300
    val = [r["val_nll"] for r in history]
    best = min(val)
    assert result.best_epoch == val.index(best) + 1
    assert len(history) - result.best_epoch == config.patience
    restored = _nll(module, x_val, y_val)
    assert restored == pytest.approx(best - offset, abs=1e-6)
    assert val[-1] - offset > restored + 1e-4  # the last weights were worse, and were discarded


# ---------------------------------------------------------------------------- divergence
class _NaNMixture:
    """Stands in for a mixture whose log_prob is NaN (but still depends on the parameters)."""

    def __init__(self, mixture):
        self.mixture = mixture

    def log_prob(self, y):
        return self.mixture.log_prob(y) * torch.tensor(math.nan)


class _Flaky(nn.Module):
    """Wraps an MDN; its forward calls listed in ``bad_calls`` (1-based) give a NaN log_prob."""

    def __init__(self, inner: nn.Module, bad_calls) -> None:
        super().__init__()
        self.inner = inner
        self.bad_calls = bad_calls
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        mixture = self.inner(x)
        bad = self.bad_calls == "always" or self.calls in self.bad_calls
        return _NaNMixture(mixture) if bad else mixture


@pytest.mark.parametrize("weight_averaging", [0.0, 0.9])
def test_non_finite_loss_once_rolls_back_halves_lr_and_continues(weight_averaging):
    x, y = _data()
    module = _Flaky(_module(y), bad_calls={3})  # full batch, no validation: call 3 = epoch 3
    lr = 0.01
    config = TrainingConfig(learning_rate=lr, max_epochs=8, weight_averaging=weight_averaging)
    with pytest.warns(RuntimeWarning, match=r"Non-finite loss at epoch 3.*halved the learning rate") as record:
        result = train(module, x, y, config=config, generator=torch.Generator().manual_seed(0))
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 1
    assert result.rollbacks == 1
    epochs = [r["epoch"] for r in result.history]
    assert epochs == [1, 2, 4, 5, 6, 7, 8]  # the bad epoch is not recorded, training goes on
    rates = [r["learning_rate"] for r in result.history]
    assert rates[:2] == pytest.approx([lr, lr])
    assert rates[2:] == pytest.approx([lr / 2] * 5)
    for name, parameter in module.named_parameters():
        assert torch.isfinite(parameter).all(), name
    assert all(math.isfinite(r["train_nll"]) for r in result.history)
    # the last good weights were restored, then training went on and improved on them
    assert result.history[-1]["train_nll"] < result.history[0]["train_nll"]


def test_always_non_finite_raises_training_diverged():
    x, y = _data()
    module = _Flaky(_module(y), bad_calls="always")
    config = TrainingConfig(learning_rate=0.01, max_epochs=50, max_rollbacks=4)
    with pytest.warns(RuntimeWarning, match="Non-finite loss") as record:
        with pytest.raises(mdnkit.TrainingDivergedError, match=r"non-finite 4 times.*learning_rate"):
            train(module, x, y, config=config, generator=torch.Generator().manual_seed(0))
    assert len([w for w in record if issubclass(w.category, RuntimeWarning)]) == 3
    assert module.calls == 4  # gave up after max_rollbacks epochs, not max_epochs
    for name, parameter in module.named_parameters():  # rolled back to finite weights first
        assert torch.isfinite(parameter).all(), name


def test_training_diverged_error_is_a_runtime_error():
    assert issubclass(mdnkit.TrainingDivergedError, RuntimeError)


# ---------------------------------------------------------------------------- modes and offset
@pytest.mark.parametrize(
    "config",
    [
        TrainingConfig(learning_rate=0.01, batch_size=32, max_epochs=10),
        TrainingConfig(optimizer="lbfgs", learning_rate=1.0, max_epochs=5),
    ],
    ids=["minibatch-adam", "lbfgs"],
)
def test_minibatch_and_lbfgs_reduce_the_loss(config):
    x, y = _data()
    module = _module(y)
    initial = _nll(copy.deepcopy(module), x, y)
    result = train(module, x, y, config=config, generator=torch.Generator().manual_seed(0))
    assert len(result.history) == config.max_epochs
    final = _nll(module, x, y)
    assert final < initial - 0.1, (initial, final)
    # the recorded train NLL follows the same trend
    assert result.history[-1]["train_nll"] < result.history[0]["train_nll"]


@pytest.mark.parametrize(
    "config",
    [
        TrainingConfig(learning_rate=0.01, max_epochs=8),
        TrainingConfig(learning_rate=0.01, batch_size=50, max_epochs=5),
        TrainingConfig(optimizer="lbfgs", learning_rate=1.0, max_epochs=3),
    ],
    ids=["fullbatch", "minibatch", "lbfgs"],
)
def test_nll_offset_is_added_to_every_recorded_nll_and_changes_nothing_else(config):
    x, y = _data()
    x_val, y_val = _data(n=60, seed=5)
    start = _module(y)
    runs = {}
    for offset in (0.0, 2.5):
        module = copy.deepcopy(start)
        result = train(module, x, y, x_val, y_val, config=config,
                       generator=torch.Generator().manual_seed(0), nll_offset=offset)
        runs[offset] = (module, result)
    (m0, r0), (m1, r1) = runs[0.0], runs[2.5]
    assert len(r0.history) == len(r1.history) > 0
    for a, b in zip(r0.history, r1.history):
        assert b["train_nll"] - a["train_nll"] == pytest.approx(2.5, abs=1e-9)
        assert b["val_nll"] - a["val_nll"] == pytest.approx(2.5, abs=1e-9)
    # the unshifted record is the plain NLL: the final validation record of the restored weights
    assert min(r["val_nll"] for r in r0.history) == pytest.approx(_nll(m0, x_val, y_val), abs=1e-6)
    for p0, p1 in zip(m0.parameters(), m1.parameters()):
        assert torch.equal(p0, p1)


# ---------------------------------------------------------------------------- noise
def _noisy_run(start, x, y, seed, input_noise=0.2, target_noise=0.2):
    module = copy.deepcopy(start)
    config = TrainingConfig(learning_rate=0.01, max_epochs=10, input_noise=input_noise,
                            target_noise=target_noise)
    result = train(module, x, y, config=config, generator=torch.Generator().manual_seed(seed))
    return module, result.history


def test_noise_regularisation_changes_trajectory_and_is_seeded():
    x, y = _data()
    start = _module(y)
    _, clean = _noisy_run(start, x, y, 0, input_noise=0.0, target_noise=0.0)
    m_a, noisy_a = _noisy_run(start, x, y, 0)
    m_b, noisy_b = _noisy_run(start, x, y, 0)
    _, noisy_c = _noisy_run(start, x, y, 1)
    _, input_only = _noisy_run(start, x, y, 0, target_noise=0.0)
    _, target_only = _noisy_run(start, x, y, 0, input_noise=0.0)
    assert _same_history(noisy_a, noisy_b)
    for a, b in zip(m_a.parameters(), m_b.parameters()):
        assert torch.equal(a, b)
    assert not _same_history(noisy_a, clean)
    assert not _same_history(noisy_a, noisy_c)
    assert not _same_history(input_only, clean)
    assert not _same_history(target_only, clean)
    # The noise-free first record is the clean data's NLL; the noisy one differs from it.
    assert noisy_a[0]["train_nll"] != clean[0]["train_nll"]


# ---------------------------------------------------------------------------- clipping
@pytest.mark.parametrize("batch_size", [None, 50], ids=["fullbatch", "minibatch"])
def test_gradient_clip_bounds_the_adam_step(batch_size):
    """Adam's step is lr * m / (sqrt(v) + eps): about lr per parameter for gradients >> eps = 1e-8,
    but at most lr * |g| / eps once the gradient norm is clipped to 1e-12."""
    x, y = _data()
    start = _module(y)
    lr = 0.01
    steps = 1 if batch_size is None else math.ceil(len(x) / batch_size)
    changes = {}
    for clip in (None, 1e-12):
        module = copy.deepcopy(start)
        config = TrainingConfig(learning_rate=lr, max_epochs=1, batch_size=batch_size, gradient_clip=clip)
        train(module, x, y, config=config, generator=torch.Generator().manual_seed(0))
        changes[clip] = max(
            float((p - q).detach().abs().max()) for p, q in zip(module.parameters(), start.parameters())
        )
    assert changes[None] > 0.5 * lr  # unclipped: an lr-sized first step
    assert 0 < changes[1e-12] <= steps * lr * 1e-12 / 1e-8 * 1.01  # clipped: tiny but not zero


# ---------------------------------------------------------------------------- Ctrl-C
class _InterruptAt(nn.Module):
    """Wraps a module; its training forward raises KeyboardInterrupt on the given call."""

    def __init__(self, inner: nn.Module, call: int) -> None:
        super().__init__()
        self.inner, self.call, self.calls = inner, call, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls == self.call:
                raise KeyboardInterrupt
        return self.inner(x)


def test_keyboard_interrupt_ends_training_with_the_best_weights_so_far():
    x, y = _data(seed=0)
    x_val, y_val = _data(n=100, seed=1)
    module = _InterruptAt(_module(y), call=40)
    result = train(module, x, y, x_val, y_val, config=TrainingConfig(learning_rate=0.03, max_epochs=500),
                   generator=torch.Generator().manual_seed(0))
    assert result.interrupted and not result.stopped_early
    assert len(result.history) == 39  # the 40th epoch never finished
    best = min(r["val_nll"] for r in result.history)
    assert _nll(module.inner, x_val, y_val) == pytest.approx(best, abs=1e-6)
    assert not module.training  # left in eval mode, ready to predict


def test_estimator_fit_interrupted_warns_and_stays_usable(monkeypatch):
    import numpy as np

    from mdnkit import estimator as estimator_module

    real_train = estimator_module.train

    def interrupted_train(module, *args, **kwargs):
        return real_train(_InterruptAt(module, call=5), *args, **kwargs)

    monkeypatch.setattr(estimator_module, "train", interrupted_train)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 1))
    y = X[:, 0] + 0.1 * rng.normal(size=100)
    with pytest.warns(mdnkit.TrainingInterrupted, match="interrupted at epoch 4"):
        model = mdnkit.MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=100, batch_size=None, input_noise=0.0,
                                    random_state=0).fit(X, y)  # per epoch: one step, one validation (one fit)
    assert model.n_iter_ == 4
    assert np.isfinite(model.score(X, y))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_ctrl_c_during_the_noise_search_keeps_the_best_level_so_far(monkeypatch):
    """input_noise="auto" trains its levels in one pass: Ctrl-C in it keeps, of the levels'
    members, the one with the best validation NLL so far, and says that training was interrupted."""
    import numpy as np

    from mdnkit.training import TrainState

    real_step = TrainState.gradient_step
    calls = []

    def interrupted_step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(TrainState, "gradient_step", interrupted_step)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 1))
    y = X[:, 0] + 0.1 * rng.normal(size=100)
    with pytest.warns(mdnkit.TrainingInterrupted, match="interrupted at epoch 5"):
        model = mdnkit.MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=30, batch_size=None,
                                    input_noise="select", random_state=0).fit(X, y)
    assert len(calls) == 6 and len(model.noise_selection_) == 3  # one pass trained every level
    assert model.n_iter_ == 5 and len(model.history_) == 5
    assert model.input_noise_ == min(model.noise_selection_, key=model.noise_selection_.get)
    assert type(model.module_).__name__ == "MDN" and np.isfinite(model.score(X, y))
    calls.clear()
    with pytest.warns(mdnkit.TrainingInterrupted, match="interrupted at epoch 5"):  # the default: all levels kept
        mixture = mdnkit.MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=30, batch_size=None,
                                      random_state=0).fit(X, y)
    assert len(calls) == 6 and mixture.member_weights_.shape == (6,) and np.isfinite(mixture.score(X, y))


def test_ctrl_c_while_setting_up_the_noise_search_propagates(monkeypatch):
    import numpy as np

    from mdnkit import estimator as estimator_module

    def interrupt_setup(*args, **kwargs):
        raise KeyboardInterrupt  # as if Ctrl-C came before the first epoch: nothing to keep

    monkeypatch.setattr(estimator_module, "train", interrupt_setup)
    X = np.random.default_rng(0).normal(size=(100, 1))
    with pytest.raises(KeyboardInterrupt):
        mdnkit.MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=10, random_state=0).fit(X, X[:, 0])


class _NaNGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose step poisons the weights."""

    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        return grad * math.nan


class _PoisonStep(nn.Module):
    def __init__(self, inner: nn.Module, call: int) -> None:
        super().__init__()
        self.inner, self.call, self.calls = inner, call, 0

    def forward(self, x):
        mixture = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls == self.call:
                return mdnkit.GaussianMixture(mixture.logits, _NaNGradient.apply(mixture.loc), scale=mixture.scale)
        return mixture


@pytest.mark.parametrize("poisoned_epoch, weight_averaging", [(10, 0.0), (11, 0.0), (10, 0.9), (11, 0.9)])
def test_rollback_never_restores_weights_no_loss_has_checked(poisoned_epoch, weight_averaging):
    """Without validation, weights snapshotted after a step are unchecked; a finite-loss step with
    NaN gradients must not become the state that rollbacks restore (nor the average's restart)."""
    x, y = _data(seed=0)
    module = _PoisonStep(_module(y), call=poisoned_epoch)
    with pytest.warns(RuntimeWarning, match="Non-finite loss"):
        config = TrainingConfig(learning_rate=0.01, max_epochs=40, weight_averaging=weight_averaging)
        result = train(module, x, y, config=config,
                       generator=torch.Generator().manual_seed(0))
    assert result.rollbacks == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert math.isfinite(_nll(module.inner, x, y))


# ---------------------------------------------------------------------------- per-member noise levels
def _ensemble(y: torch.Tensor, n_members: int = 3, seed: int = 0) -> mdnkit.MDNEnsemble:
    torch.manual_seed(seed)
    module = mdnkit.MDNEnsemble(1, 1, n_components=2, hidden_sizes=(8,), n_members=n_members).double()
    module.initialize(y, random_state=seed)
    return module


def test_per_member_noise_draws_each_members_own_inputs_at_its_own_level():
    from mdnkit.training import _perturbed

    x = torch.zeros(20_000, 2, dtype=torch.float64)
    config = TrainingConfig(input_noise=(0.0, 0.1, 0.5))
    noisy, _ = _perturbed(x, torch.zeros(20_000, 1, dtype=torch.float64), config, torch.Generator().manual_seed(0))
    assert noisy.shape == (3, 20_000, 2)
    assert torch.equal(noisy[0], x)
    # The sample sd of 40,000 normals is within 2% of sigma with probability 1 - 1e-9.
    for member, sigma in ((1, 0.1), (2, 0.5)):
        assert float(noisy[member].std()) == pytest.approx(sigma, rel=0.02)
    assert abs(float(torch.corrcoef(torch.stack([noisy[1].flatten(), noisy[2].flatten()]))[0, 1])) < 0.03


def test_per_member_target_noise_draws_each_members_own_targets_at_its_own_level():
    from mdnkit.training import _perturbed

    x, y = torch.zeros(20_000, 2, dtype=torch.float64), torch.zeros(20_000, 1, dtype=torch.float64)
    config = TrainingConfig(input_noise=0.0, target_noise=(0.0, 0.1, 0.5))
    same_x, noisy = _perturbed(x, y, config, torch.Generator().manual_seed(0))
    assert same_x is x and noisy.shape == (3, 20_000, 1)
    assert torch.equal(noisy[0], y)
    # The sample sd of 20,000 normals is within 3% of sigma with probability 1 - 1e-9.
    for member, sigma in ((1, 0.1), (2, 0.5)):
        assert float(noisy[member].std()) == pytest.approx(sigma, rel=0.03)
    assert abs(float(torch.corrcoef(torch.stack([noisy[1].flatten(), noisy[2].flatten()]))[0, 1])) < 0.04


def test_a_member_without_noise_trains_as_in_a_noise_free_run():
    """Members are trained as if alone: the level-0 member of a (0, 0.2, 0.5) run follows exactly
    the path it takes when no member has noise (full batch: the generator only draws noise),
    while the noisy members' paths change."""
    x, y = _data(seed=0)
    x, y = x.double(), y.double()
    x_val, y_val = (t.double() for t in _data(n=60, seed=1))
    start = _ensemble(y)
    runs = []
    for noise in ((0.0, 0.2, 0.5), 0.0):
        module = copy.deepcopy(start)
        config = TrainingConfig(learning_rate=0.01, max_epochs=15, input_noise=noise, target_noise=noise, patience=100)
        result = train(module, x, y, x_val, y_val, config=config, generator=torch.Generator().manual_seed(0))
        runs.append((module, result))
    (searched, result), (plain, _) = runs
    plain_parameters = dict(plain.named_parameters())
    for name, value in searched.named_parameters():
        torch.testing.assert_close(value[0], plain_parameters[name][0], rtol=1e-12, atol=1e-12)
        assert not torch.allclose(value[2], plain_parameters[name][2])
    assert len(result.member_history) == len(result.history) == 15
    assert all(len(epoch["val_nll"]) == 3 and all(epoch["active"]) for epoch in result.member_history)


def test_one_noise_level_per_member_or_a_clear_error():
    x, y = _data(n=40)
    with pytest.raises(ValueError, match="input_noise has 2 levels for 3 members"):
        train(_ensemble(y.double()), x.double(), y.double(), config=TrainingConfig(max_epochs=1, input_noise=(0.1, 0.2)))
    with pytest.raises(ValueError, match="target_noise has 4 levels for 3 members"):
        train(_ensemble(y.double()), x.double(), y.double(),
              config=TrainingConfig(max_epochs=1, target_noise=(0.0, 0.1, 0.2, 0.3)))


def test_a_members_state_continues_as_that_member_alone():
    """TrainState.member gives member m's optimiser moments in the single network's layout (the
    same map as its weights), its learning rate and early-stopping record."""
    x, y = (t.double() for t in _data(seed=0))
    x_val, y_val = (t.double() for t in _data(n=60, seed=1))
    ensemble = _ensemble(y)
    config = TrainingConfig(learning_rate=0.01, max_epochs=8, input_noise=(0.0, 0.1, 0.3))
    state = train(ensemble, x, y, x_val, y_val, config=config, generator=torch.Generator().manual_seed(0)).state
    single = ensemble.member(1)
    alone = state.member(1, single, lambda: ensemble.member(1))
    first_layer = ensemble.backbone[0].weight  # [M, in, out]; an nn.Linear keeps [out, in]
    for key in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(alone.optimizer.state[single.backbone[0].weight][key],
                                   state.optimizer.state[first_layer][key][1].T, rtol=0, atol=0)
    torch.testing.assert_close(first_layer[1].T, single.backbone[0].weight, rtol=0, atol=0)  # weights restored
    assert alone.config.input_noise == 0.1 and alone.config.target_noise == 0.0 and alone.learning_rates == [state.learning_rates[1]]
    assert alone.best_scores == [state.best_scores[1]] and alone.epoch == state.epoch == 8
    more = train(single, x, y, x_val, y_val, config=replace_config(alone.config, max_epochs=3), state=alone)
    assert len(more.history) == 3 and math.isfinite(more.history[-1]["val_nll"])


def replace_config(config: TrainingConfig, **changes) -> TrainingConfig:
    import dataclasses

    return dataclasses.replace(config, **changes)


# ---------------------------------------------------------------------------- batch sources
def test_a_dataloader_trains_as_the_same_batches_in_memory():
    """Any re-iterable of (x, y) batches is a batch source: a DataLoader without shuffling gives
    exactly the run of a source that yields the same slices, and its recorded train NLL is the
    row-weighted mean of its batches' NLLs; validation through an iterable of chunks equals
    validation on the tensors."""
    from torch.utils.data import DataLoader, TensorDataset

    x, y = (t.double() for t in _data(n=150, seed=0))
    x_val, y_val = (t.double() for t in _data(n=70, seed=1))
    start = _module(y).double()

    class Slices:  # the loop's own protocol: epoch(generator) -> batches
        def epoch(self, generator):
            yield from ((x[i:i + 64], y[i:i + 64], None) for i in range(0, len(x), 64))

    config = TrainingConfig(learning_rate=0.01, max_epochs=6, patience=100)
    runs = []
    for source, validation in ((DataLoader(TensorDataset(x, y), batch_size=64), [(x_val[:30], y_val[:30]), (x_val[30:], y_val[30:])]),
                               (Slices(), x_val)):
        module = copy.deepcopy(start)
        runs.append((module, train(module, source, None, validation, None if validation is not x_val else y_val,
                                   config=config)))
    (loaded, a), (sliced, b) = runs
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, sliced.state_dict()[name], rtol=1e-10, atol=1e-12)
    for ra, rb in zip(a.history, b.history):
        assert ra["train_nll"] == pytest.approx(rb["train_nll"], abs=1e-10)
        assert ra["val_nll"] == pytest.approx(rb["val_nll"], abs=1e-10)
    assert b.history[-1]["val_nll"] == pytest.approx(_nll(sliced, x_val, y_val), abs=1e-10)


def test_a_float32_loader_is_moved_to_the_modules_dtype():
    from torch.utils.data import DataLoader, TensorDataset

    x, y = _data(n=64)
    module = _module(y.double()).double()
    result = train(module, DataLoader(TensorDataset(x, y), batch_size=32), config=TrainingConfig(max_epochs=2))
    assert len(result.history) == 2 and math.isfinite(result.history[-1]["train_nll"])


@pytest.mark.parametrize("source, config, message", [
    ([(torch.zeros(4, 1),)], TrainingConfig(max_epochs=1), r"A batch must be \(x, y\) or \(x, y, row_weights\)"),
    ([], TrainingConfig(max_epochs=1), "gave no batches"),
    ([(torch.zeros(4, 1), torch.zeros(4, 1))] * 2, TrainingConfig(max_epochs=1, optimizer="lbfgs"), "full batches"),
])
def test_bad_batch_sources_say_what_is_wrong(source, config, message):
    module = _module(_data(n=8)[1])
    with pytest.raises(ValueError, match=message):
        train(module, source, config=config)


def test_targets_come_in_the_batches_or_with_tensors():
    x, y = _data(n=20)
    with pytest.raises(ValueError, match="y is missing"):
        train(_module(y), x, config=TrainingConfig(max_epochs=1))
    with pytest.raises(ValueError, match="y must be None"):
        train(_module(y), [(x, y)], y, config=TrainingConfig(max_epochs=1))


def test_the_loss_module_can_be_wrapped_by_distributed_data_parallel(tmp_path):
    """TrainStep is the seam for DDP: wrapped (one gloo process), its loss and gradients are
    those of the bare module, and the member count is read from the module, not the wrapper."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from mdnkit.training import TrainStep

    x, y = (t.double() for t in _data(n=50))
    bare, wrapped_module = _ensemble(y), _ensemble(y)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(TrainStep(wrapped_module))
        assert TrainStep(wrapped_module).n_members == 3
        losses = []
        for step in (TrainStep(bare), wrapped):
            member_nll, reported = step(x, y)
            member_nll.sum().backward()
            losses.append((member_nll.detach(), reported))
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(losses[0][0], losses[1][0], rtol=0, atol=0)
    for (name, p), q in zip(bare.named_parameters(), wrapped_module.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12, msg=name)
