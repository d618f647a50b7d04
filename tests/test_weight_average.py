"""The weights' moving average (``weight_averaging``): its recurrence against a float64 NumPy
reference, the swap that freezes stopped members, and the fit loop keeping the average."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mdnkit import MDN, MDNRegressor
from mdnkit._weight_average import WeightAverage
from mdnkit.training import TrainingConfig, train


def _numpy_average(trajectory: list[np.ndarray], decay: float, warm_up: int = 10) -> np.ndarray:
    """``a_t = d_t a_{t-1} + (1 - d_t) w_t``, ``d_t = min(decay, (1 + t) / (warm_up + t))``, from
    ``a_0 = w_0``, in float64."""
    average = trajectory[0].astype(np.float64)
    for t, weights in enumerate(trajectory[1:], start=1):
        d = min(decay, (1 + t) / (warm_up + t))
        average = d * average + (1 - d) * weights
    return average


def test_the_average_follows_the_recurrence_with_its_warm_up():
    rng = np.random.default_rng(0)
    trajectory = [rng.normal(size=(3, 4)) for _ in range(60)]
    parameter = torch.nn.Parameter(torch.tensor(trajectory[0]))
    average = WeightAverage([parameter], decay=0.95, n_members=1)
    for weights in trajectory[1:]:
        with torch.no_grad():
            parameter.copy_(torch.tensor(weights))
        average.update()
    np.testing.assert_allclose(average.average[0].numpy(), _numpy_average(trajectory, 0.95), rtol=1e-12, atol=1e-14)


def test_a_bad_decay_is_refused():
    parameter = torch.nn.Parameter(torch.zeros(2))
    for decay in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="decay must be in"):
            WeightAverage([parameter], decay=decay, n_members=1)


def test_the_swap_restores_training_members_and_freezes_stopped_ones():
    """Inside, the parameters hold the average; outside, the training members get their trained
    weights back, and a member that stopped inside keeps what the caller put there (its best),
    which becomes its average."""
    trained = torch.arange(12.0).view(3, 4)  # 3 members
    parameter = torch.nn.Parameter(trained.clone())
    average = WeightAverage([parameter], decay=0.5, n_members=3)
    with torch.no_grad():
        parameter.add_(100.0)
    average.update()  # decay min(0.5, 2/11): the average moves most of the way
    expected_average = average.average[0].clone()
    active = [True, True, True]
    with average.swapped_in(active):
        torch.testing.assert_close(parameter.detach(), expected_average, rtol=0, atol=0)
        with torch.no_grad():
            parameter[1] = -7.0  # the caller freezes member 1 at its best
        active[1] = False
    torch.testing.assert_close(parameter[[0, 2]].detach(), trained[[0, 2]] + 100.0, rtol=0, atol=0)
    assert parameter[1].eq(-7.0).all() and average.average[0][1].eq(-7.0).all()
    torch.testing.assert_close(average.average[0][[0, 2]], expected_average[[0, 2]], rtol=0, atol=0)
    average.update()  # a frozen member's weights do not move, so neither does its average
    assert average.average[0][1].eq(-7.0).all()


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g, dtype=torch.float64)
    y = torch.sin(2 * x) + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, (y - y.mean()) / y.std()


def _module(y: torch.Tensor) -> MDN:
    torch.manual_seed(0)
    module = MDN(1, 1, n_components=3, hidden_sizes=(16,)).double()
    module.initialize(y, random_state=0)
    return module


def test_without_validation_the_fit_ends_on_the_average_of_its_own_trajectory():
    """Averaging changes no step: the trajectory is the one of a fit without it (recorded step by
    step, one full batch per epoch), and the weights kept are its NumPy float64 average."""
    x, y = _data(128, seed=0)
    config = TrainingConfig(learning_rate=0.02, max_epochs=1, input_noise=0.1)
    plain, generator = _module(y), torch.Generator().manual_seed(4)
    trajectory = [np.concatenate([p.detach().numpy().ravel() for p in plain.parameters()])]
    state = None
    for _ in range(40):
        state = train(plain, x, y, config=config, generator=generator, state=state).state
        trajectory.append(np.concatenate([p.detach().numpy().ravel() for p in plain.parameters()]))
    averaged = _module(y)
    train(averaged, x, y, config=TrainingConfig(learning_rate=0.02, max_epochs=40, input_noise=0.1, weight_averaging=0.9),
          generator=torch.Generator().manual_seed(4))
    kept = np.concatenate([p.detach().numpy().ravel() for p in averaged.parameters()])
    np.testing.assert_allclose(kept, _numpy_average(trajectory, 0.9), rtol=1e-10, atol=1e-12)
    assert np.abs(kept - trajectory[-1]).max() > 1e-3  # the average is not the last step's weights


def test_with_validation_the_kept_weights_are_the_average_at_the_best_epoch():
    x, y = _data(160, seed=0)
    x_val, y_val = _data(60, seed=1)
    module = _module(y)
    config = TrainingConfig(learning_rate=0.02, batch_size=32, max_epochs=200, patience=8, input_noise=0.2,
                            weight_averaging=0.95)
    result = train(module, x, y, x_val, y_val, config=config, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        kept = float(-module(x_val).log_prob(y_val).mean())
    assert result.stopped_early
    assert result.history[result.best_epoch - 1]["val_nll"] == pytest.approx(kept, abs=1e-12)
    assert min(r["val_nll"] for r in result.history) == pytest.approx(kept, abs=1e-12)
    # the same seeds with the last step's weights: another curve and another model
    plain = _module(y)
    last = train(plain, x, y, x_val, y_val, config=TrainingConfig(**{**vars(config), "weight_averaging": 0.0}),
                 generator=torch.Generator().manual_seed(0))
    assert [r["val_nll"] for r in last.history[:5]] != [r["val_nll"] for r in result.history[:5]]
    assert any(not torch.equal(a, b) for a, b in zip(plain.parameters(), module.parameters()))


def test_a_validated_continuation_of_an_unvalidated_run_keeps_weights_it_scored():
    """A run without validation ends on its average; continued with validation, the first score
    is that average's, and whatever is kept in the end scores what was recorded for it. The
    validation rows follow the opposite relation, so training on makes them worse and the start
    is what is kept."""
    x, y = _data(160, seed=0)
    x_val, y_val = _data(60, seed=1)
    y_val = -y_val
    module = _module(y)
    config = TrainingConfig(learning_rate=0.02, batch_size=16, max_epochs=80, input_noise=0.1, weight_averaging=0.95)
    state = train(module, x, y, config=config, generator=torch.Generator().manual_seed(0)).state

    def val_nll() -> float:
        module.eval()
        with torch.no_grad():
            return float(-module(x_val).log_prob(y_val).mean())

    start = val_nll()  # the average handed over
    more = train(module, x, y, x_val, y_val, config=TrainingConfig(**{**vars(config), "max_epochs": 30, "patience": 3}),
                 state=state)
    assert min(r["val_nll"] for r in more.history) > start  # no epoch beat the start
    assert val_nll() == pytest.approx(start, abs=1e-12)


def test_averaging_improves_a_noisy_small_batch_fit():
    """Seeded: the average of a jittery Adam trajectory (large rate, batches of 16) scores better
    on held-out rows than the last step's weights (a margin this seed clears by far)."""
    x, y = _data(400, seed=0)
    x_test, y_test = _data(2000, seed=2)
    scores = []
    for averaging in (0.0, 0.98):
        module = _module(y)
        train(module, x, y, config=TrainingConfig(learning_rate=0.03, batch_size=16, max_epochs=30,
                                                  weight_averaging=averaging),
              generator=torch.Generator().manual_seed(0))
        module.eval()
        with torch.no_grad():
            scores.append(float(-module(x_test).log_prob(y_test).mean()))
    assert scores[1] < scores[0] - 0.01


def test_the_estimator_validates_and_records_the_setting(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=120)
    for bad in (1.0, -0.5, "yes", True):
        with pytest.raises(ValueError, match="weight_averaging must be a decay in"):
            MDNRegressor(weight_averaging=bad, max_epochs=2).fit(X, y)
    assert MDNRegressor().get_params()["weight_averaging"] == 0.99
    model = MDNRegressor(weight_averaging=0.9, max_epochs=3, input_noise=0.0, random_state=0).fit(X, y)
    assert model.train_state_.config.weight_averaging == 0.9
    path = tmp_path / "model.mdn"
    model.save(path)
    from mdnkit import load

    assert load(path).get_params()["weight_averaging"] == 0.9


def test_files_from_before_averaging_load_with_it_off():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(100, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=100)
    model = MDNRegressor(hidden_sizes=(8,), max_epochs=3, input_noise=0.0, random_state=0)
    with pytest.warns(Warning):  # max_epochs reached while improving
        model.fit(X, y)
    fitted, tensors = model._file_state()
    params = {k: v for k, v in model.get_params(deep=False).items() if k != "weight_averaging"}  # an older file
    loaded = MDNRegressor._from_file_state(params, fitted, tensors)
    assert loaded.weight_averaging == 0.0  # how that model was trained
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12, atol=1e-12)
