"""The fitted network owns its units: the module alone gives densities in the user's units."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from mdnkit import MDN, MDNRegressor, load
from mdnkit.transforms import Standardize

TINY = dict(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0)


def _data(n=200, seed=0, offset=0.0, d_out=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 100.0, 0.01] + [0.0, 5e3, -2.0]
    y = np.sin(X[:, :1]) + 0.2 * rng.standard_t(3, size=(n, d_out)) + offset
    return X, (y[:, 0] if d_out == 1 else y)


@pytest.mark.parametrize("n_estimators", [1, 3])
@pytest.mark.parametrize("family", ["gaussian", "student_t"])
def test_module_alone_gives_the_estimators_densities(n_estimators, family):
    X, y = _data()
    model = MDNRegressor(family=family, n_estimators=n_estimators, **TINY).fit(X, y)
    module = model.module_
    with torch.no_grad():
        log_prob = module(torch.as_tensor(X)).log_prob(torch.as_tensor(y)[:, None]).numpy()
    np.testing.assert_allclose(log_prob, model.score_samples(X, y), rtol=1e-12)
    parameters = module.params(torch.as_tensor(X[:4]))
    assert all(isinstance(t, torch.Tensor) for t in parameters)
    assert parameters[0].shape[-1] == model.n_components_


def test_units_stay_float64_through_casts_and_keep_large_offsets():
    """Targets near 1e8 vary by about 1: a float32 shift would be off by ~4 (its resolution there
    is 8), so the mean would lose the signal. The mixture's locations must match a float64
    change of units of the network's own output to float64 precision."""
    X, y = _data(offset=1e8)
    model = MDNRegressor(**TINY, input_noise="select").fit(X, y)
    module = model.module_.float()
    assert module.y_transform.shift.dtype == torch.float64 and module.y_transform.shift == pytest.approx(y.mean())
    x = torch.as_tensor(X[:5])
    with torch.no_grad():
        loc = module(x).loc[..., 0]
        x_std = ((x - module.x_transform.shift) / module.x_transform.scale).float()
        own = module.family.mixture(*module.standardized_params(x_std)).loc[..., 0].double()
    expected = model.y_mean_[0] + model.y_scale_[0] * own
    np.testing.assert_allclose(loc.numpy(), expected.numpy(), rtol=0, atol=1e-6)
    assert np.abs(model.predict(X) - 1e8).max() < 10  # not rounded to a multiple of 8


def test_log_jacobian_is_in_the_module():
    """Scaling y by c shifts every log density by -log c, with the same network weights."""
    X, y = _data()
    model = MDNRegressor(**TINY).fit(X, y)
    module = model.module_
    x, target = torch.as_tensor(X), torch.as_tensor(y)[:, None]
    with torch.no_grad():
        before = module(x).log_prob(target)
        module.y_transform = Standardize(module.y_transform.shift * 10, module.y_transform.scale * 10)
        after = module(x).log_prob(target * 10)
    np.testing.assert_allclose(after.numpy(), before.numpy() - np.log(10), rtol=1e-10)


def test_a_bare_mdn_works_in_the_units_it_is_given():
    torch.manual_seed(0)
    mdn = MDN(2, 1, n_components=3, hidden_sizes=(8,)).requires_grad_(False)
    x = torch.randn(5, 2)
    mixture = mdn(x)
    assert mixture.logits.dtype == torch.float32  # no transforms: no casts
    mdn.set_units(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    np.testing.assert_allclose(mdn(x).log_prob(torch.zeros(5, 1)).numpy(),
                               mixture.log_prob(torch.zeros(5, 1)).numpy(), rtol=1e-6)


def test_standardize_refuses_bad_scales():
    with pytest.raises(ValueError, match="scale > 0"):
        Standardize(np.zeros(2), np.array([1.0, 0.0]))


@pytest.mark.slow
def test_student_t_family_fits_heavy_tails_better_than_gaussian(tmp_path):
    """Noise t(2.5): the Student-t family's held-out NLL beats the Gaussian's by a margin far
    above the run-to-run spread, and it survives a save and load."""
    rng = np.random.default_rng(1)
    X = rng.uniform(-2, 2, size=(3000, 1))
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.standard_t(2.5, size=3000)
    X_test = rng.uniform(-2, 2, size=(3000, 1))
    y_test = np.sin(2 * X_test[:, 0]) + 0.3 * rng.standard_t(2.5, size=3000)
    settings = dict(n_components=1, hidden_sizes=(32, 32), input_noise=0.0, random_state=0, max_epochs=300)
    t_model = MDNRegressor(family="student_t", **settings).fit(X, y)
    gaussian = MDNRegressor(family="gaussian", **settings).fit(X, y)
    truth = stats.t(2.5, np.sin(2 * X_test[:, 0]), 0.3).logpdf(y_test).mean()
    assert t_model.score(X_test, y_test) > gaussian.score(X_test, y_test) + 0.05
    assert t_model.score(X_test, y_test) > truth - 0.05
    t_model.save(tmp_path / "t.mdn")
    loaded = load(tmp_path / "t.mdn")
    np.testing.assert_array_equal(loaded.score_samples(X_test, y_test), t_model.score_samples(X_test, y_test))
    modes, _ = loaded.predict_modes(X_test[:2])  # one component: its location is the only mode
    np.testing.assert_allclose(modes[:, 0], loaded.predict_dist(X_test[:2]).loc[:, 0, 0].numpy(), atol=1e-6)


def test_student_t_estimator_predictions_and_errors():
    X, y = _data()
    model = MDNRegressor(family="student_t", **TINY).fit(X, y)
    quantiles = model.predict_quantiles(X[:5], [0.1, 0.5, 0.9])
    assert quantiles.shape == (5, 3) and bool((np.diff(quantiles, axis=1) > 0).all())
    assert model.sample(X[:5], n_samples=4, random_state=0).shape == (5, 4)
    with pytest.raises(ValueError, match="family must be one of"):
        MDNRegressor(family="cauchy", **TINY).fit(X, y)
    with pytest.raises(ValueError, match="only available for the gaussian family"):
        MDNRegressor(family="student_t", covariance_type="full", **TINY).fit(X, np.column_stack([y, y]))
