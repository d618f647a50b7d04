"""Tests for ``MDNRegressor``: scikit-learn compliance and integration, units, shapes, the maths
of every predict method against independent NumPy/SciPy computations, input errors, determinism,
save/load and warm starts. Every model is tiny; the fitted ones are cached per configuration."""

from __future__ import annotations

import copy
import functools
import math
import re
import time
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import mdnkit
import mdnkit.estimator
from mdnkit import MDNRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

COVARIANCE_TYPES = ("diagonal", "isotropic", "full")
TINY = dict(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0)


def _data(n: int = 120, d_out: int = 1, seed: int = 0):
    """X (n, 2); y (n,) or (n, 2) with columns on very different scales."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y1 = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    if d_out == 1:
        return X, y1
    y2 = 20.0 * (X[:, 0] - 0.3 * X[:, 1] ** 2) + 4.0 * rng.normal(size=n) + 100.0
    return X, np.c_[y1, y2]


@functools.lru_cache(maxsize=None)
def _fitted(covariance_type: str, d_out: int) -> MDNRegressor:
    """A fitted tiny model per (covariance type, target dimension); tests must not modify it."""
    X, y = _data(d_out=d_out)
    params = dict(TINY, n_components=3, max_epochs=15, learning_rate=0.02, input_noise="select")  # one network
    return MDNRegressor(covariance_type=covariance_type, **params).fit(X, y)


cov_and_dim = pytest.mark.parametrize(
    "covariance_type, d_out", [(c, d) for c in COVARIANCE_TYPES for d in (1, 2)]
)


def _component_covariances(mixture) -> np.ndarray:
    """Each component's covariance, ``(n, K, D, D)``, from the raw parameters."""
    loc = mixture.loc.numpy()
    if mixture.scale_tril is not None:
        tril = mixture.scale_tril.numpy()
        return tril @ np.swapaxes(tril, -1, -2)
    scale = mixture.scale.numpy()
    if scale.ndim == loc.ndim:  # diagonal [n, K, D]
        return np.einsum("nkd,de->nkde", scale**2, np.eye(loc.shape[-1]))
    return scale[..., None, None] ** 2 * np.eye(loc.shape[-1])  # isotropic [n, K]


def _as_rows(y: np.ndarray) -> np.ndarray:
    return y.reshape(len(y), -1)


# ============================================================================ scikit-learn checks
EXPECTED_FAILED_CHECKS = {
    "check_methods_sample_order_invariance": (
        "score_samples is log p(y | x) and needs y; scikit-learn calls score_samples(X). predict's "
        "invariance is tested in test_predict_is_invariant_to_row_order_and_subsets."
    ),
    "check_methods_subset_invariance": (
        "score_samples(X, y) needs y (conditional density); see "
        "test_predict_is_invariant_to_row_order_and_subsets."
    ),
    "check_dtype_object": (
        "non-numeric values raise ValueError naming the column (the library's one error type for "
        "bad input); scikit-learn expects a TypeError."
    ),
}


@parametrize_with_checks([MDNRegressor(**TINY)], expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.slow  # the same checks again through the no-validation code path (~10 s)
@parametrize_with_checks(
    [MDNRegressor(**TINY, validation_fraction=0.0)],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_without_validation(estimator, check):
    check(estimator)


@pytest.mark.slow  # the same checks through the noise mixture (an ensemble of three levels)
@parametrize_with_checks(
    [MDNRegressor(**TINY, input_noise="mixture", target_noise="auto")],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible_noise_mixture(estimator, check):
    check(estimator)


# ============================================================================ sklearn integration
def test_clone_keeps_params_and_drops_fitted_state():
    model = _fitted("diagonal", 1)
    copy_ = clone(model)
    assert copy_.get_params() == model.get_params()
    assert not hasattr(copy_, "module_") and not hasattr(copy_, "history_")
    with pytest.raises(NotFittedError, match="not fitted"):
        copy_.predict(np.zeros((1, 2)))


def test_pipeline_with_standard_scaler():
    X, y = _data()
    bare = MDNRegressor(**TINY).fit(X, y)
    pipe = make_pipeline(StandardScaler(), MDNRegressor(**TINY)).fit(X, y)
    Xs = pipe[0].transform(X)
    # the pipeline scores with the MDN's mean log-likelihood on scaled inputs
    assert pipe.score(X, y) == pytest.approx(pipe[-1].score(Xs, y), rel=1e-12)
    assert pipe.predict(X).shape == (len(X),)
    # MDNRegressor standardises X itself, so an outer scaler changes nothing
    np.testing.assert_allclose(pipe[-1].score_samples(Xs, y), bare.score_samples(X, y), atol=1e-5)
    np.testing.assert_allclose(pipe.predict(X), bare.predict(X), atol=1e-5)


def _manual_cv(params, X, y, n_splits):
    scores = []
    for train, test in KFold(n_splits).split(X):
        model = MDNRegressor(**params).fit(X[train], y[train])
        # the mean log-likelihood of the held-out rows, from the per-row values
        scores.append(float(np.mean(model.score_samples(X[test], y[test]))))
    return np.array(scores)


def test_cross_val_score_is_held_out_mean_log_likelihood():
    X, y = _data(n=90)
    got = cross_val_score(MDNRegressor(**TINY), X, y, cv=KFold(3))
    np.testing.assert_allclose(got, _manual_cv(TINY, X, y, 3), rtol=1e-10)


def test_grid_search_over_n_components():
    X, y = _data(n=80)
    search = GridSearchCV(MDNRegressor(**TINY), {"n_components": [1, 3]}, cv=KFold(2)).fit(X, y)
    means = search.cv_results_["mean_test_score"]
    assert search.best_index_ == int(np.argmax(means))
    assert search.best_estimator_.n_components == [1, 3][search.best_index_]
    for i, k in enumerate([1, 3]):
        expected = _manual_cv(dict(TINY, n_components=k), X, y, 2).mean()
        assert means[i] == pytest.approx(expected, rel=1e-10)


def test_predict_is_invariant_to_row_order_and_subsets():
    model = _fitted("full", 2)
    X, y = _data(d_out=2, seed=3)
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(model.predict(X[order]), model.predict(X)[order], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.score_samples(X[order], y[order]), model.score_samples(X, y)[order],
                               rtol=1e-6, atol=1e-6)
    one_by_one = np.concatenate([model.score_samples(X[i:i + 1], y[i:i + 1]) for i in range(10)])
    np.testing.assert_allclose(one_by_one, model.score_samples(X[:10], y[:10]), rtol=1e-6, atol=1e-6)


# ============================================================================ units
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_change_of_target_units_1d(covariance_type):
    X, y = _data()
    params = dict(TINY, covariance_type=covariance_type, max_epochs=10, learning_rate=0.02)
    a = MDNRegressor(**params).fit(X, y)
    b = MDNRegressor(**params).fit(X, 10 * y + 3)
    # change of variables: p_b(10y + 3) = p_a(y) / 10, per row
    np.testing.assert_allclose(a.score_samples(X, y) - b.score_samples(X, 10 * y + 3), np.log(10), atol=1e-9)
    assert a.score(X, y) - b.score(X, 10 * y + 3) == pytest.approx(np.log(10), abs=1e-9)
    np.testing.assert_allclose(b.predict(X), 10 * a.predict(X) + 3, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.predict_std(X), 10 * a.predict_std(X), rtol=1e-9)
    q = [0.1, 0.5, 0.9]
    # quantiles are solved iteratively: equal up to the solver's tolerance
    np.testing.assert_allclose(b.predict_quantiles(X, q), 10 * a.predict_quantiles(X, q) + 3, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(b.predict_interval(X), 10 * a.predict_interval(X) + 3, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(b.sample(X, 3, random_state=5), 10 * a.sample(X, 3, random_state=5) + 3,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.predict_modes(X)[0], 10 * a.predict_modes(X)[0] + 3, rtol=1e-5, atol=1e-5)
    # the recorded NLLs are in the units of each fit
    np.testing.assert_allclose([r["train_nll"] - np.log(10) for r in b.history_],
                               [r["train_nll"] for r in a.history_], atol=1e-9)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_change_of_target_units_per_column(covariance_type):
    X, y = _data(d_out=2)
    scale, shift = np.array([10.0, 0.5]), np.array([3.0, -1.0])
    params = dict(TINY, covariance_type=covariance_type, max_epochs=10, learning_rate=0.02)
    a = MDNRegressor(**params).fit(X, y)
    b = MDNRegressor(**params).fit(X, y * scale + shift)
    np.testing.assert_allclose(a.score_samples(X, y) - b.score_samples(X, y * scale + shift),
                               np.log(scale).sum(), atol=1e-9)
    np.testing.assert_allclose(b.predict(X), a.predict(X) * scale + shift, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.predict_std(X), a.predict_std(X) * scale, rtol=1e-9)
    q = [0.2, 0.7]
    np.testing.assert_allclose(b.predict_quantiles(X, q), a.predict_quantiles(X, q) * scale + shift,
                               rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(b.sample(X, 2, random_state=1), a.sample(X, 2, random_state=1) * scale + shift,
                               rtol=1e-9, atol=1e-9)


def test_scaling_x_leaves_densities_unchanged():
    X, y = _data()
    a = MDNRegressor(**TINY).fit(X, y)
    b = MDNRegressor(**TINY).fit(7.0 * X - 1.0, y)
    np.testing.assert_allclose(b.score_samples(7.0 * X - 1.0, y), a.score_samples(X, y), atol=1e-6)
    np.testing.assert_allclose(b.predict(7.0 * X - 1.0), a.predict(X), atol=1e-6)


# ============================================================================ shapes
@cov_and_dim
def test_shapes_of_every_predict_method(covariance_type, d_out):
    model = _fitted(covariance_type, d_out)
    X, y = _data(n=7, d_out=d_out, seed=1)
    n, k = len(X), model.n_components
    tail = () if d_out == 1 else (d_out,)
    assert model.n_features_in_ == 2 and model.n_outputs_ == d_out
    assert model.predict(X).shape == (n, *tail)
    assert model.predict_std(X).shape == (n, *tail)
    dist = model.predict_dist(X)
    assert dist.batch_shape == (n,) and dist.event_shape == (d_out,)
    assert dist.n_components == k
    assert model.score_samples(X, y).shape == (n,)
    assert isinstance(model.score(X, y), float)
    assert model.sample(X).shape == (n, 1, *tail)
    assert model.sample(X, n_samples=4, temperature=0.5).shape == (n, 4, *tail)
    assert model.predict_quantiles(X, [0.1, 0.5, 0.9]).shape == (n, 3, *tail)
    assert model.predict_quantiles(X, 0.5).shape == (n, 1, *tail)
    assert model.predict_interval(X, 0.8).shape == (n, 2, *tail)
    modes, log_density = model.predict_modes(X)
    assert modes.shape == (n, k, *tail) and log_density.shape == (n, k)


@cov_and_dim
def test_sampling_reproducible_and_tempered(covariance_type, d_out):
    model = _fitted(covariance_type, d_out)
    X, _ = _data(n=6, d_out=d_out, seed=2)
    a = model.sample(X, n_samples=5, random_state=1)
    np.testing.assert_array_equal(a, model.sample(X, n_samples=5, random_state=1))
    assert not np.array_equal(a, model.sample(X, n_samples=5, random_state=2))
    # T -> 0: the heaviest component only, with vanishing spread
    dist = model.predict_dist(X)
    heaviest = dist.heaviest_component_mean().numpy().reshape(len(X), 1, d_out)
    cold = model.sample(X, n_samples=3, temperature=1e-10, random_state=0).reshape(len(X), 3, d_out)
    np.testing.assert_allclose(cold, np.broadcast_to(heaviest, cold.shape), atol=1e-3 * float(np.max(model.y_scale_)))
    # sampling leaves torch's global random state alone
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    model.sample(X, n_samples=2, random_state=4)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("d_out", (1, 2))
def test_sample_zero_draws_is_empty(d_out):
    model = _fitted("diagonal", d_out)
    X, _ = _data(n=6, d_out=d_out, seed=2)
    draws = model.sample(X, n_samples=0)
    assert draws.shape == ((6, 0) if d_out == 1 else (6, 0, d_out))
    assert draws.dtype == model.sample(X, n_samples=1).dtype


@pytest.mark.parametrize("n_samples", (-1, 2.5, "3", True, None))
def test_sample_rejects_bad_n_samples(n_samples):
    model = _fitted("diagonal", 1)
    X, _ = _data(n=6, seed=2)
    message = rf"n_samples must be a non-negative integer, got {re.escape(repr(n_samples))}"
    with pytest.raises(ValueError, match=message):
        model.sample(X, n_samples=n_samples)


@cov_and_dim
def test_sample_mean_matches_predict(covariance_type, d_out):
    """Seeded: with 4000 draws the sample mean is within 5 standard errors of the predicted mean
    (a false alarm rate below 1e-5 per value for a fresh seed)."""
    model = _fitted(covariance_type, d_out)
    X, _ = _data(n=5, d_out=d_out, seed=4)
    draws = model.sample(X, n_samples=4000, random_state=0)
    mean = _as_rows(model.predict(X))
    standard_error = _as_rows(model.predict_std(X)) / math.sqrt(4000)
    got = draws.mean(axis=1).reshape(mean.shape)
    assert (np.abs(got - mean) < 5 * standard_error).all()


@cov_and_dim
def test_quantiles_invert_the_independent_cdf(covariance_type, d_out):
    model = _fitted(covariance_type, d_out)
    X, _ = _data(n=8, d_out=d_out, seed=5)
    levels = np.array([0.05, 0.25, 0.5, 0.9, 0.99])
    quantiles = model.predict_quantiles(X, levels).reshape(len(X), len(levels), d_out)
    dist = model.predict_dist(X)
    weights = dist.weights.numpy()  # [n, K]
    loc = dist.loc.numpy()  # [n, K, D]
    std = np.sqrt(np.diagonal(_component_covariances(dist), axis1=-2, axis2=-1))  # [n, K, D]
    for j in range(d_out):
        z = (quantiles[:, :, j][:, :, None] - loc[:, None, :, j]) / std[:, None, :, j]  # [n, Q, K]
        cdf = (weights[:, None, :] * stats.norm.cdf(z)).sum(-1)
        np.testing.assert_allclose(cdf, np.broadcast_to(levels, cdf.shape), atol=1e-6)
        assert (np.diff(quantiles[:, :, j], axis=1) > 0).all()
    interval = model.predict_interval(X, 0.8).reshape(len(X), 2, d_out)
    assert (interval[:, 0] <= interval[:, 1]).all()
    # Same levels, solved in a different batch (the root finder stops on a batch-wide test):
    # equal to well within the solver's tolerance, relative to the targets' spread.
    np.testing.assert_allclose(interval, model.predict_quantiles(X, [0.1, 0.9]).reshape(interval.shape),
                               rtol=0, atol=1e-12 * np.abs(interval).max())


@cov_and_dim
def test_modes_are_sorted_local_maxima(covariance_type, d_out):
    model = _fitted(covariance_type, d_out)
    X, _ = _data(n=6, d_out=d_out, seed=6)
    modes, log_density = model.predict_modes(X)
    modes = modes.reshape(len(X), model.n_components, d_out)
    found = np.isfinite(log_density)
    assert found[:, 0].all()  # every density has a mode
    assert (np.isnan(modes).any(-1) == ~found).all()
    assert (np.diff(np.where(found, log_density, -1e300), axis=1) <= 1e-9).all()  # sorted by density
    best = modes[:, 0] if d_out > 1 else modes[:, 0, 0]
    # the reported log density is the density at that point ...
    np.testing.assert_allclose(model.score_samples(X, best), log_density[:, 0], atol=1e-6)
    # ... and the point is a local maximum: small moves in any direction lower the density
    step = 1e-3 * model.y_scale_
    for j in range(d_out):
        for sign in (-1, 1):
            moved = _as_rows(best).copy()
            moved[:, j] += sign * step[j]
            moved = moved if d_out > 1 else moved[:, 0]
            assert (model.score_samples(X, moved) <= log_density[:, 0] + 1e-9).all()


def test_interval_coverage_on_gaussian_data():
    """Seeded: y = 2 x0 - x1 + 1 + N(0, 0.5^2). The 0.9 interval's held-out coverage over 2000
    rows has a binomial standard error of 0.0067; the bound 0.9 +- 0.05 also allows for fit error.
    No input noise: noise regularisation widens the intervals by design (0.93-0.96 here)."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (2600, 2))
    y = 2 * X[:, 0] - X[:, 1] + 1 + 0.5 * rng.normal(size=len(X))
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), learning_rate=0.05, max_epochs=50,
                         validation_fraction=0.0, input_noise=0.0, random_state=0).fit(X[:600], y[:600])
    interval = model.predict_interval(X[600:], 0.9)
    covered = np.mean((interval[:, 0] <= y[600:]) & (y[600:] <= interval[:, 1]))
    assert 0.85 <= covered <= 0.95, covered


@pytest.mark.slow
def test_learns_a_bimodal_conditional_density():
    """y = +-sin(3x) + N(0, 0.1^2), each sign with probability 1/2: the mean is 0 everywhere, only
    a mixture can fit it. The held-out NLL must come within 0.1 nats of the true density's."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (3000, 1))
    centre = np.sin(3 * X[:, 0])
    y = rng.choice([-1.0, 1.0], len(X)) * centre + 0.1 * rng.normal(size=len(X))
    true_log_density = np.log(0.5 * stats.norm.pdf(y, centre, 0.1) + 0.5 * stats.norm.pdf(y, -centre, 0.1))
    model = MDNRegressor(n_components=3, hidden_sizes=(32,), learning_rate=0.01, max_epochs=400,
                         patience=30, random_state=0).fit(X[:2000], y[:2000])
    held_out_nll = -model.score(X[2000:], y[2000:])
    assert held_out_nll < -true_log_density[2000:].mean() + 0.1
    # and the modes found are the two branches where they are well apart
    apart = np.abs(centre[2000:]) > 0.5
    modes, _ = model.predict_modes(X[2000:][apart])
    top_two = np.sort(modes[:, :2], axis=1)
    np.testing.assert_allclose(top_two[:, 0], -np.abs(centre[2000:][apart]), atol=0.1)
    np.testing.assert_allclose(top_two[:, 1], np.abs(centre[2000:][apart]), atol=0.1)


# ============================================================================ maths vs SciPy
@cov_and_dim
def test_score_samples_equals_independent_mixture_density(covariance_type, d_out):
    """Reference built from the raw network on standardised data, with SciPy and the change of
    variables done by hand: checks the scaling, the log-Jacobian and predict_dist's mapping."""
    model = _fitted(covariance_type, d_out)
    X, y = _data(n=10, d_out=d_out, seed=7)
    with torch.no_grad():
        # The network in its own (standardised) units; module_(X) itself maps in and out.
        x = torch.as_tensor((X - model.x_mean_) / model.x_scale_, dtype=torch.float32)
        raw = model.module_.family.mixture(*model.module_.standardized_params(x))
    logits = raw.logits.double().numpy()
    log_weights = logits - logsumexp(logits, axis=-1, keepdims=True)
    loc = raw.loc.double().numpy() * model.y_scale_ + model.y_mean_
    scale_matrix = np.diag(model.y_scale_)
    covariances = scale_matrix @ _component_covariances(raw).astype(np.float64) @ scale_matrix
    rows = _as_rows(y)
    expected = np.empty(len(X))
    for i in range(len(X)):
        component = [
            stats.multivariate_normal(loc[i, k], covariances[i, k]).logpdf(rows[i])
            for k in range(model.n_components)
        ]
        expected[i] = logsumexp(log_weights[i] + np.array(component))
    np.testing.assert_allclose(model.score_samples(X, y), expected, rtol=1e-5, atol=1e-5)  # float32 net
    assert model.score(X, y) == pytest.approx(expected.mean(), rel=1e-5)
    weights = np.exp(log_weights)
    # predict / predict_std: mixture mean and the law of total variance
    mean = (weights[..., None] * loc).sum(1)
    variance = (weights[..., None] * (np.diagonal(covariances, axis1=-2, axis2=-1)
                                      + (loc - mean[:, None]) ** 2)).sum(1)
    np.testing.assert_allclose(_as_rows(model.predict(X)), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_as_rows(model.predict_std(X)), np.sqrt(variance), rtol=1e-5)


# ============================================================================ input errors
@pytest.fixture
def no_training(monkeypatch):
    """Any call into the training loop fails the test: errors must come before training."""
    def forbidden(*args, **kwargs):
        raise AssertionError("training started before the input was rejected")

    monkeypatch.setattr(mdnkit.estimator, "train", forbidden)


def _with(array, index, value):
    array = np.array(array, dtype=float)
    array[index] = value
    return array


X0, Y0 = _data(n=40)
_OBJECT_X = X0.astype(object)
_OBJECT_X[5, 1] = "abc"

FIT_ERRORS = [
    ("nan-in-X", {}, _with(X0, ([3, 7, 9], [1, 1, 0]), np.nan), Y0,
     r"X has NaN values in 3 of 40 rows \(column 0: 1, column 1: 2\)"),
    ("inf-in-y", {}, X0, _with(Y0, 4, np.inf), r"y has infinite values in 1 of 40 rows"),
    ("-inf-in-y", {}, X0, _with(Y0, 4, -np.inf), r"y has infinite values in 1 of 40 rows"),
    ("length-mismatch", {}, X0, Y0[:-1], r"X has 40 rows but y has 39"),
    ("1-D-X", {}, X0[:, 0], Y0, r"X must be 2-D .*reshape\(-1, 1\)"),
    ("3-D-X", {}, X0[:, :, None], Y0, r"X must be a 2-D array .*got shape \(40, 2, 1\)"),
    ("empty-X", {}, np.empty((0, 2)), np.empty(0), r"X has no rows"),
    ("no-columns", {}, np.empty((40, 0)), Y0, r"X has 0 feature\(s\)"),
    ("too-few-rows-for-validation", {"validation_fraction": 0.5}, X0[:3], Y0[:3],
     r"validation_fraction=0.5 of 3 rows leaves 1 for training"),
    ("string-in-object-X", {}, _OBJECT_X, Y0, r"X contains non-numeric values in columns \['1'\]"),
    ("constant-target", {}, X0, np.c_[Y0, np.full(40, 5.0)], r"y is constant \(column 1 = 5\)"),
    ("n_components=0", {"n_components": 0}, X0, Y0, r"n_components must be an integer >= 1, got 0"),
    ("n_components=2.5", {"n_components": 2.5}, X0, Y0, r"n_components must be an integer >= 1, got 2.5"),
    ("max_epochs=0", {"max_epochs": 0}, X0, Y0, r"max_epochs must be an integer >= 1"),
    ("batch_size=0", {"batch_size": 0}, X0, Y0, r"batch_size must be an integer >= 1, 'auto' or None"),
    ("batch_size=big", {"batch_size": "big"}, X0, Y0, r"batch_size must be an integer >= 1, 'auto' or None \(full batch\), got 'big'"),
    ("hidden-0", {"hidden_sizes": (8, 0)}, X0, Y0, r"hidden_sizes must be a sequence of positive integers"),
    ("hidden-int", {"hidden_sizes": 8}, X0, Y0, r"hidden_sizes must be a sequence of positive integers"),
    ("activation", {"activation": "swish"}, X0, Y0, r"activation must be one of .*got 'swish'"),
    ("covariance_type", {"covariance_type": "spherical"}, X0, Y0,
     r"covariance_type must be one of \['diagonal', 'isotropic', 'full'\], got 'spherical'"),
    ("optimizer", {"optimizer": "sgd"}, X0, Y0, r"optimizer must be one of \['adam', 'lbfgs'\], got 'sgd'"),
    ("dtype", {"dtype": "float16"}, X0, Y0, r"dtype must be one of"),
    ("learning_rate=0", {"learning_rate": 0.0}, X0, Y0, r"learning_rate must be a positive number, got 0.0"),
    ("learning_rate<0", {"learning_rate": -1e-3}, X0, Y0, r"learning_rate must be a positive number"),
    ("min_scale=0", {"min_scale": 0}, X0, Y0, r"min_scale must be a positive number"),
    ("input_noise<0", {"input_noise": -0.1}, X0, Y0, r"input_noise must be a number >= 0"),
    ("validation_fraction=1", {"validation_fraction": 1.0}, X0, Y0, r"validation_fraction must be in \[0, 1\)"),
    ("validation_fraction<0", {"validation_fraction": -0.1}, X0, Y0, r"validation_fraction must be in \[0, 1\)"),
    ("random_state", {"random_state": "seed"}, X0, Y0, r"random_state must be None, an int or a numpy RandomState"),
]


@pytest.mark.parametrize("kwargs, X, y, match", [c[1:] for c in FIT_ERRORS], ids=[c[0] for c in FIT_ERRORS])
def test_fit_rejects_bad_input_before_training(no_training, kwargs, X, y, match):
    params = dict(TINY, max_epochs=10**9, validation_fraction=0.0)
    params.update(kwargs)
    model = MDNRegressor(**params)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        model.fit(X, y)
    assert time.perf_counter() - start < 5.0
    assert not hasattr(model, "module_")


def _nan_message(name: str, advice: str) -> str:
    return rf"{name} has NaN values in 1 of 40 rows \(.*\); drop or impute them before {advice}\.$"


def test_nan_advice_at_fit_speaks_of_fitting(no_training):
    with pytest.raises(ValueError, match=_nan_message("X", "fitting")):
        MDNRegressor(**TINY).fit(_with(X0, (3, 1), np.nan), Y0)
    with pytest.raises(ValueError, match=_nan_message("y", "fitting")):
        MDNRegressor(**TINY).fit(X0, _with(Y0, 3, np.nan))


def test_nan_advice_at_predict_does_not_speak_of_fitting():
    model = MDNRegressor(**dict(TINY, max_epochs=2)).fit(X0, Y0)
    with pytest.raises(ValueError, match=_nan_message("X", "predicting")):
        model.predict(_with(X0, (3, 1), np.nan))
    with pytest.raises(ValueError, match=_nan_message("y", "scoring")):
        model.score_samples(X0, _with(Y0, 3, np.nan))


def test_complex_input_is_rejected(no_training):
    """Casting complex numbers to float drops the imaginary part; that must be an error."""
    with pytest.raises(ValueError, match=r"[Cc]omplex"):
        MDNRegressor(**TINY).fit(X0 + 1j * X0, Y0)
    with pytest.raises(ValueError, match=r"[Cc]omplex"):
        MDNRegressor(**TINY).fit(X0, Y0 + 1j)


@pytest.mark.parametrize("kind", ["csr_matrix", "csr_array"])
def test_sparse_input_error_says_sparse(no_training, kind):
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises((ValueError, TypeError), match=r"[Ss]parse"):
        MDNRegressor(**TINY).fit(getattr(sparse, kind)(X0), Y0)


def test_missing_y_error_says_y_is_missing(no_training):
    with pytest.raises(ValueError, match=r"y.*(None|required|missing)"):
        MDNRegressor(**TINY).fit(X0, None)


def test_pandas_string_column_is_named():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"height": X0[:, 0], "colour": ["red"] * 40})
    with pytest.raises(ValueError, match=r"X has non-numeric columns \['colour'\]"):
        MDNRegressor(**TINY).fit(frame, Y0)


def test_pandas_nan_message_names_the_column():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"height": _with(X0[:, 0], [1, 2], np.nan), "width": X0[:, 1]})
    with pytest.raises(ValueError, match=r"X has NaN values in 2 of 40 rows \(column 'height': 2\)"):
        MDNRegressor(**TINY).fit(frame, Y0)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_too_few_rows_message_states_the_true_minimum(no_training, fraction):
    """The message says how many rows are needed; that many must be enough, one fewer not."""
    def minimum_rows(f):  # smallest n leaving >= 2 training rows after ceil(f * n) validation rows
        return next(n for n in range(1, 100) if n - math.ceil(f * n) >= 2)

    needed = minimum_rows(fraction)
    model = MDNRegressor(**dict(TINY, validation_fraction=fraction))
    with pytest.raises(ValueError, match=r"at least (\d+) rows are needed") as error:
        model.fit(X0[:needed - 1], Y0[:needed - 1])
    stated = int(error.value.args[0].split("at least ")[1].split(" rows")[0])
    assert stated == needed, f"message says {stated} rows are needed, {needed} are enough"


def test_predict_errors():
    model = _fitted("diagonal", 1)
    X, y = _data(n=10)
    with pytest.raises(ValueError, match=r"X has 3 features, but MDNRegressor is expecting 2 features as input"):
        model.predict(np.c_[X, X[:, 0]])
    with pytest.raises(ValueError, match=r"X has 3 features"):
        model.score_samples(np.c_[X, X[:, 0]], y)
    with pytest.raises(ValueError, match=r"X must be 2-D"):
        model.predict(X[:, 0])
    with pytest.raises(ValueError, match=r"X has NaN values in 1 of 10 rows \(column 1: 1\)"):
        model.predict(_with(X, (2, 1), np.nan))
    with pytest.raises(ValueError, match=r"y has 2 target columns, the model was fitted with 1"):
        model.score_samples(X, np.c_[y, y])
    with pytest.raises(ValueError, match=r"y has 2 target columns, the model was fitted with 1"):
        model.score(X, np.c_[y, y])
    with pytest.raises(ValueError, match=r"X has 10 rows but y has 9"):
        model.score_samples(X, y[:9])
    with pytest.raises(ValueError, match=r"y has infinite values"):
        model.score_samples(X, _with(y, 0, np.inf))
    with pytest.raises(ValueError, match=r"q must be probabilities in \[0, 1\]"):
        model.predict_quantiles(X, [0.5, 1.5])
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\)"):
        model.predict_interval(X, 1.0)
    with pytest.raises(ValueError, match=r"temperature must be positive"):
        model.sample(X, temperature=0.0)


def test_two_d_model_rejects_one_column_y():
    model = _fitted("full", 2)
    X, y = _data(n=10, d_out=2)
    with pytest.raises(ValueError, match=r"y has 1 target columns, the model was fitted with 2"):
        model.score_samples(X, y[:, 0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present here")
def test_cuda_device_without_cuda(no_training):
    with pytest.raises(ValueError, match=r"device='cuda' was asked for, but CUDA is not available"):
        MDNRegressor(**dict(TINY, device="cuda")).fit(X0, Y0)


@pytest.mark.parametrize("method", ["predict", "predict_std", "predict_dist", "sample", "predict_modes"])
def test_not_fitted(method):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        getattr(MDNRegressor(), method)(X0)


def test_not_fitted_score_and_save(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted yet"):
        MDNRegressor().score(X0, Y0)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        MDNRegressor().save(tmp_path / "m.mdn")
    assert not (tmp_path / "m.mdn").exists()


# ============================================================================ determinism
def _history_without_time(model):
    return [{k: v for k, v in r.items() if k != "time"} for r in model.history_]


def _assert_same_history(a, b):
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert ra.keys() == rb.keys()
        for key in ra:
            if key == "time":
                continue
            assert ra[key] == rb[key] or (math.isnan(ra[key]) and math.isnan(rb[key])), (key, ra, rb)


@pytest.mark.parametrize("extra", [{}, {"batch_size": 16, "input_noise": 0.1, "target_noise": 0.1}],
                         ids=["fullbatch", "minibatch-noise"])
def test_same_seed_same_model_different_seed_different_model(extra):
    X, y = _data()
    params = dict(TINY, **extra)
    a = MDNRegressor(**params).fit(X, y)
    b = MDNRegressor(**params).fit(X, y)
    c = MDNRegressor(**dict(params, random_state=1)).fit(X, y)
    assert _history_without_time(a) == _history_without_time(b)
    np.testing.assert_array_equal(a.score_samples(X, y), b.score_samples(X, y))
    assert not np.array_equal(a.score_samples(X, y), c.score_samples(X, y))
    assert _history_without_time(a) != _history_without_time(c)


def test_fit_leaves_global_torch_random_state_alone():
    X, y = _data()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    MDNRegressor(**dict(TINY, input_noise=0.1)).fit(X, y)
    assert torch.equal(torch.rand(3), expected)


# ============================================================================ save / load
@cov_and_dim
def test_save_load_round_trip(covariance_type, d_out, tmp_path):
    model = _fitted(covariance_type, d_out)
    X, y = _data(n=12, d_out=d_out, seed=8)
    path = tmp_path / "model.mdn"
    model.save(path)
    loaded = mdnkit.load(path)
    assert type(loaded) is MDNRegressor
    params = loaded.get_params()
    assert tuple(params.pop("hidden_sizes")) == tuple(model.hidden_sizes)
    assert params == {k: v for k, v in model.get_params().items() if k != "hidden_sizes"}
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_quantiles(X, [0.3]), model.predict_quantiles(X, [0.3]))
    np.testing.assert_array_equal(loaded.sample(X, 3, random_state=0), model.sample(X, 3, random_state=0))
    _assert_same_history(loaded.history_, model.history_)
    assert loaded.n_iter_ == model.n_iter_ and loaded.best_epoch_ == model.best_epoch_
    assert loaded.predict(X).shape == model.predict(X).shape


def test_save_load_without_validation_keeps_nan_history(tmp_path):
    X, y = _data()
    model = MDNRegressor(**dict(TINY, validation_fraction=0.0)).fit(X, y)
    assert all(math.isnan(r["val_nll"]) for r in model.history_)
    model.save(tmp_path / "m.mdn")
    loaded = mdnkit.load(tmp_path / "m.mdn")
    _assert_same_history(loaded.history_, model.history_)
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))


def test_save_refuses_to_overwrite_and_overwrite_replaces(tmp_path):
    X, y = _data(n=12)
    first = _fitted("diagonal", 1)
    second = _fitted("isotropic", 1)
    path = tmp_path / "model.mdn"
    first.save(path)
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        second.save(path)
    assert path.read_bytes() == before
    np.testing.assert_array_equal(mdnkit.load(path).score_samples(X, y), first.score_samples(X, y))
    second.save(path, overwrite=True)
    np.testing.assert_array_equal(mdnkit.load(path).score_samples(X, y), second.score_samples(X, y))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mdn"]  # no temporary files left


@pytest.mark.parametrize("keep", [0.5, 0.999, 5], ids=["half", "all-but-a-few-bytes", "5-bytes"])
def test_load_truncated_file_raises_model_file_error(tmp_path, keep):
    path = tmp_path / "model.mdn"
    _fitted("full", 2).save(path)
    data = path.read_bytes()
    cut = keep if isinstance(keep, int) else int(len(data) * keep)
    assert cut < len(data)
    path.write_bytes(data[:cut])
    with pytest.raises(mdnkit.ModelFileError, match="corrupt or truncated"):
        mdnkit.load(path)


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mdnkit.load(tmp_path / "nothing.mdn")


# ============================================================================ warm start
def test_warm_start_continues_training():
    X, y = _data()
    model = MDNRegressor(**dict(TINY, warm_start=True, validation_fraction=0.0, learning_rate=0.03))
    model.fit(X, y)
    module = model.module_
    first = copy.deepcopy(model.history_)
    weights = copy.deepcopy(module.state_dict())
    model.fit(X, y)
    assert model.module_ is module
    assert len(model.history_) == 2 * len(first) == 10
    assert [r["epoch"] for r in model.history_] == list(range(1, 11))
    _assert_same_history(model.history_[:5], first)
    # the second fit started where the first ended, not from a fresh initialisation
    assert model.history_[5]["train_nll"] < first[0]["train_nll"]
    assert model.history_[5]["train_nll"] != pytest.approx(first[0]["train_nll"], abs=1e-6)
    assert model.n_iter_ == 5
    assert any(not torch.equal(weights[k], v) for k, v in module.state_dict().items())
    # without warm_start a refit starts over and repeats the first run
    cold = MDNRegressor(**dict(TINY, validation_fraction=0.0, learning_rate=0.03)).fit(X, y)
    cold_module = cold.module_
    cold.fit(X, y)
    assert cold.module_ is not cold_module
    _assert_same_history(cold.history_, first)


@pytest.mark.parametrize("n_estimators, batch_size", [(1, 16), (1, None), (3, 16)])
def test_warm_start_is_an_exact_continuation(n_estimators, batch_size):
    """Fixed seed, no validation: 20 epochs then 20 more (warm) give the weights and history of
    one fit of 40, with minibatches and noise (the random stream continues, not replayed), the
    optimiser's moments and the learning-rate schedule carried over."""
    X, y = _data()
    settings = dict(TINY, validation_fraction=0.0, batch_size=batch_size, input_noise=0.1,
                    n_estimators=n_estimators)
    once = MDNRegressor(**dict(settings, max_epochs=40)).fit(X, y)
    twice = MDNRegressor(**dict(settings, max_epochs=20, warm_start=True)).fit(X, y)
    twice.fit(X, y)
    for name, value in once.module_.state_dict().items():
        torch.testing.assert_close(twice.module_.state_dict()[name], value, rtol=0, atol=0)
    _assert_same_history(twice.history_, once.history_)
    np.testing.assert_array_equal(twice.score_samples(X, y), once.score_samples(X, y))


def test_warm_start_with_other_shapes_raises():
    X, y = _data()
    model = MDNRegressor(**dict(TINY, warm_start=True)).fit(X, y)
    with pytest.raises(ValueError, match=r"warm_start: the model was fitted on 2 features and 1 targets, got 3 and 1"):
        model.fit(np.c_[X, X[:, 0]], y)
    with pytest.raises(ValueError, match=r"fitted on 2 features and 1 targets, got 2 and 2"):
        model.fit(X, np.c_[y, X[:, 0]])


# ============================================================================ GPU
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_cuda_fit_matches_cpu_copy(covariance_type, tmp_path):
    X, y = _data(d_out=2)
    model = MDNRegressor(**dict(TINY, covariance_type=covariance_type, device="cuda")).fit(X, y)
    assert next(model.module_.parameters()).is_cuda
    on_cpu = copy.deepcopy(model)
    on_cpu.module_.to("cpu")
    on_cpu.device = "cpu"
    np.testing.assert_allclose(on_cpu.score_samples(X, y), model.score_samples(X, y), atol=1e-4, rtol=1e-4)
    model.save(tmp_path / "gpu.mdn")
    loaded = mdnkit.load(tmp_path / "gpu.mdn", device="cpu")
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), atol=1e-4, rtol=1e-4)


def test_metadata_survives_save_and_load(tmp_path):
    """The CLI records its data columns as file metadata; it must round-trip through the file,
    and a file of the earlier format (columns in a ``schema_`` attribute) gives the same."""
    from mdnkit.io import read_model_file, write_model_file

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=60)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0).fit(X, y)
    schema = {"features": ["a", "b"], "targets": ["t"], "categories": {"c": ["x", "y"]}}
    model.save(tmp_path / "m.mdn", metadata={"schema": schema})
    assert mdnkit.load(tmp_path / "m.mdn").metadata_ == {"schema": schema}
    assert not hasattr(model, "metadata_") and not hasattr(model, "schema_")
    assert mdnkit.load(_saved_without_schema(tmp_path)).metadata_ == {}
    tensors, document = read_model_file(tmp_path / "m.mdn")
    document["fitted"]["schema_"] = document.pop("metadata")["schema"]
    for name in [n for n in tensors if "_transform." in n]:  # nor did the network keep its units
        del tensors[name]
    write_model_file(tmp_path / "old.mdn", tensors, document)
    old = mdnkit.load(tmp_path / "old.mdn")
    assert old.metadata_ == {"schema": schema}
    np.testing.assert_array_equal(old.score_samples(X, y), model.score_samples(X, y))


def _saved_without_schema(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 1))
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0).fit(X, X[:, 0])
    path = tmp_path / "plain.mdn"
    model.save(path)
    return path


def test_numpy_scalar_parameters_save_and_load(tmp_path):
    """GridSearchCV grids built with numpy give numpy scalars; the file must still be JSON."""
    X, y = _data()
    model = MDNRegressor(n_components=np.int64(2), hidden_sizes=(np.int64(8),), learning_rate=np.float32(0.01),
                         max_epochs=np.int64(3), random_state=np.int64(0)).fit(X, y)
    model.save(tmp_path / "m.mdn")
    loaded = mdnkit.load(tmp_path / "m.mdn")
    assert loaded.get_params()["n_components"] == 2 and loaded.get_params()["random_state"] == 0
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))


@pytest.mark.parametrize("clip", [0, -1.0, "big"])
def test_gradient_clip_must_be_positive(clip):
    X, y = _data()
    with pytest.raises(ValueError, match="gradient_clip must be a positive number or None"):
        MDNRegressor(**dict(TINY, gradient_clip=clip)).fit(X, y)


def test_more_components_than_rows_for_a_multivariate_target():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(8, 1)), rng.normal(size=(8, 2))
    with pytest.raises(ValueError, match="n_components=10 is more than the 8 training rows"):
        MDNRegressor(n_components=10, validation_fraction=0.0, max_epochs=10**9).fit(X, Y)


def test_dataframe_feature_names_are_recorded_and_checked():
    pd = pytest.importorskip("pandas")
    X, y = _data()
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    model = MDNRegressor(**TINY).fit(frame, y)
    assert list(model.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="fitted with columns"):
        model.predict(frame[frame.columns[::-1]])
    refit = model.fit(X, y)  # numpy data: the names no longer apply
    assert not hasattr(refit, "feature_names_in_")


# ---------------------------------------------------------------------------- input_noise="auto"
def test_auto_input_noise_keeps_the_level_with_the_best_validation_nll():
    """Three single-member fits at 0, 0.1 r and 0.25 r (r = n^(-1/(4+p+d)), computed here by
    hand); the kept level is their validation-NLL argmin, and a near-deterministic smooth map
    (where input noise only blurs) keeps no noise at all."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(400, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1] + 1e-3 * rng.normal(size=400)
    model = MDNRegressor(n_components=2, hidden_sizes=(32, 32), max_epochs=200, batch_size=None,
                         learning_rate=1e-2, input_noise="select", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    n_train = 400 - 40
    rule = n_train ** (-1.0 / (4 + 3))
    np.testing.assert_allclose(sorted(model.noise_selection_), [0.0, 0.1 * rule, 0.25 * rule], rtol=1e-12)
    best = min(model.noise_selection_, key=model.noise_selection_.get)
    assert model.input_noise_ == best == 0.0
    assert model.get_params()["input_noise"] == "select"
    best_val = np.nanmin([r["val_nll"] for r in model.history_])
    assert best_val == pytest.approx(model.noise_selection_[best])


def test_auto_input_noise_without_validation_is_the_rule_of_thumb():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3)); y = X[:, 0] + rng.normal(size=200)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, validation_fraction=0.0,
                         random_state=0).fit(X, y)
    assert model.input_noise_ == pytest.approx(0.25 * 200 ** (-1.0 / (4 + 4)), rel=1e-12)
    assert not hasattr(model, "noise_selection_")


def test_auto_input_noise_fits_an_ensemble_at_the_chosen_level():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 2)); y = X[:, 0] ** 2 + 0.3 * rng.normal(size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=20, n_estimators=2,
                             random_state=0).fit(X, y)
        chosen = min(model.noise_selection_, key=model.noise_selection_.get)
        assert model.input_noise_ == chosen
        same = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=20, n_estimators=2,
                            input_noise=chosen, random_state=0).fit(X, y)
    np.testing.assert_allclose(model.score_samples(X, y), same.score_samples(X, y), rtol=1e-6)


def test_auto_target_noise_joins_the_search_at_each_level(monkeypatch):
    """target_noise="auto" with input_noise="auto": one pass in which each member's level is
    both its input and its target noise; the kept network has the winner's level for both, and
    an ensemble is fitted at it. Without target_noise="auto" the search leaves targets clean."""
    configs = []
    real_train = mdnkit.estimator.train

    def recorded(module, *args, **kwargs):
        configs.append(kwargs["config"])
        return real_train(module, *args, **kwargs)

    monkeypatch.setattr(mdnkit.estimator, "train", recorded)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 2)); y = X[:, 0] + 0.3 * rng.normal(size=300)
    settings = dict(n_components=2, hidden_sizes=(8,), max_epochs=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MDNRegressor(target_noise="auto", input_noise="select", **settings).fit(X, y)
        levels = tuple(model.noise_selection_)
        assert len(configs) == 1 and configs[0].input_noise == configs[0].target_noise == levels
        assert levels[0] == 0.0 and len(levels) == 3
        chosen = min(model.noise_selection_, key=model.noise_selection_.get)
        assert model.input_noise_ == model.target_noise_ == model.train_state_.config.target_noise == chosen
        configs.clear()
        ensemble = MDNRegressor(target_noise="auto", n_estimators=2, **settings).fit(X, y)
        assert configs[-1].target_noise == ensemble.target_noise_ == ensemble.input_noise_ == configs[-1].input_noise
        assert ensemble.target_noise_ in ensemble.noise_selection_
        configs.clear()
        MDNRegressor(**settings).fit(X, y)
    assert configs[0].target_noise == 0.0 and len(configs[0].input_noise) == 6  # two networks per level


# ---------------------------------------------------------------------------- input_noise="mixture"
def _stacking_optimum(log_likelihood: np.ndarray, prior_rows: float) -> np.ndarray:
    """The weights maximising ``Σ_i log Σ_m w_m p_m(y_i) + prior_rows Σ_m log w_m`` by SciPy's
    optimiser over softmax coordinates: an independent reference for the EM of mixture_weights."""
    from scipy.optimize import minimize

    def negative(z):
        log_w = z - logsumexp(z)
        return -(logsumexp(log_w[:, None] + log_likelihood, axis=0).sum() + prior_rows * log_w.sum())

    z = minimize(negative, np.zeros(len(log_likelihood)), method="BFGS", options={"gtol": 1e-10}).x
    return np.exp(z - logsumexp(z))


def test_mixture_weights_are_the_dirichlet_posterior_mode():
    rng = np.random.default_rng(0)
    for n_rows, prior_rows in ((12, 1.0), (500, 1.0), (40, 0.0), (40, 5.0)):
        log_likelihood = rng.normal(size=(3, n_rows)) + np.array([[0.5], [0.0], [-1.0]])
        np.testing.assert_allclose(mdnkit.estimator.mixture_weights(log_likelihood, prior_rows),
                                   _stacking_optimum(log_likelihood, prior_rows), atol=1e-6)
    same = mdnkit.estimator.mixture_weights(np.zeros((4, 10)))
    np.testing.assert_allclose(same, 0.25, rtol=1e-12)  # nothing tells the members apart
    # A member far better on many rows takes nearly all the weight; on 3 rows the prior holds it near 1/M.
    clear = np.vstack([np.zeros(3000), np.full(3000, -5.0)])
    assert mdnkit.estimator.mixture_weights(clear)[0] > 0.999
    assert 0.5 < mdnkit.estimator.mixture_weights(clear[:, :3])[0] < 0.85


class OnePerLevel(MDNRegressor):
    """The noise mixture with one network per level (the default until 2026-12-07), all three on
    the same validation rows, where its weighting can be checked row for row."""

    _noise_replicates = 1


def _mixture_model(model_class: type[MDNRegressor] = MDNRegressor, **settings) -> tuple[MDNRegressor, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.uniform(-2, 2, size=(300, 2)); y = np.sin(2 * X[:, 0]) + (0.1 + 0.2 * (X[:, 1] > 0)) * rng.normal(size=300)
    model = model_class(input_noise="mixture", target_noise="auto", n_components=2, hidden_sizes=(16,),
                         max_epochs=30, random_state=0, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, y), X, y


def test_noise_mixture_keeps_every_level_weighted_by_its_validation_likelihood():
    """input_noise="mixture" with one network per level: the search's three networks are the
    model, each weighted by the posterior mode of its likelihood of the validation rows; its
    density is their weighted mixture (two per level: test_a_replicated_noise_mixture...)."""
    model, X, y = _mixture_model(OnePerLevel)
    assert isinstance(model.module_, mdnkit.MDNEnsemble) and model.module_.n_members == 3
    assert model.input_noise_ == model.target_noise_ == tuple(model.noise_selection_) and model.input_noise_[0] == 0.0
    members = [model.module_.member(m) for m in range(3)]
    X_val, y_val = model.validation_rows_
    with torch.no_grad():
        held_out = np.stack([member.log_prob(torch.as_tensor(X_val), torch.as_tensor(y_val.reshape(len(y_val), -1))).numpy()
                             for member in members])
        fresh = np.stack([member.log_prob(torch.as_tensor(X), torch.as_tensor(y[:, None])).numpy() for member in members])
    np.testing.assert_allclose(model.member_weights_, _stacking_optimum(held_out, 1.0), atol=1e-5)
    expected = logsumexp(fresh + np.log(model.member_weights_)[:, None], axis=0)
    np.testing.assert_allclose(model.score_samples(X, y), expected, rtol=1e-5)
    np.testing.assert_allclose(model.predict_dist(X).log_prob(torch.as_tensor(y[:, None])).numpy(), expected, rtol=1e-5)
    means = model.predict_members_dist(X).mean.numpy()[..., 0]  # [3, n]
    weights = model.member_weights_[:, None]
    spread = np.sqrt((weights * (means - (weights * means).sum(0)) ** 2).sum(0))
    np.testing.assert_allclose(model.predict_epistemic_std(X), spread, rtol=1e-6)


@cov_and_dim
def test_default_noise_mixture_equals_an_independent_weighted_mixture(covariance_type, d_out):
    """The default model is the noise search's six networks weighted by member_weights_: its
    density, mean and std against SciPy from each member's raw parameters, and score_samples
    equal to predict_dist's density to float64 precision (both renormalise the stored weights)."""
    X, y = _data(d_out=d_out)
    params = dict(TINY, n_components=3, max_epochs=15, learning_rate=0.02)
    model = MDNRegressor(covariance_type=covariance_type, **params).fit(X, y)
    assert model.get_params()["input_noise"] == "auto" and model.member_weights_.shape == (6,)
    X_test, y_test = _data(n=10, d_out=d_out, seed=7)
    rows = _as_rows(y_test)
    x = torch.as_tensor((X_test - model.x_mean_) / model.x_scale_, dtype=torch.float32)
    with torch.no_grad():
        parameters = model.module_.standardized_params(x)  # each [M, n, K, ...]
    scale_matrix = np.diag(model.y_scale_)
    log_weights, locs, covariances = [], [], []
    for member, member_weight in enumerate(model.member_weights_):
        raw = model.module_.family.mixture(*(t[member] for t in parameters))
        logits = raw.logits.double().numpy()
        log_weights.append(logits - logsumexp(logits, axis=-1, keepdims=True) + np.log(member_weight))
        locs.append(raw.loc.double().numpy() * model.y_scale_ + model.y_mean_)
        covariances.append(scale_matrix @ _component_covariances(raw).astype(np.float64) @ scale_matrix)
    log_weights, loc, covariance = (np.concatenate(parts, axis=1) for parts in (log_weights, locs, covariances))
    expected = np.array([logsumexp([log_weights[i, k] + stats.multivariate_normal(loc[i, k], covariance[i, k]).logpdf(rows[i])
                                    for k in range(loc.shape[1])]) for i in range(len(X_test))])
    scores = model.score_samples(X_test, y_test)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)  # float32 networks
    dist = model.predict_dist(X_test)
    np.testing.assert_allclose(scores, dist.log_prob(torch.as_tensor(rows)).numpy(), rtol=1e-12, atol=1e-12)
    weights = np.exp(log_weights)
    mean = (weights[..., None] * loc).sum(1)
    variance = (weights[..., None] * (np.diagonal(covariance, axis1=-2, axis2=-1) + (loc - mean[:, None]) ** 2)).sum(1)
    np.testing.assert_allclose(_as_rows(model.predict(X_test)), mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_as_rows(model.predict_std(X_test)), np.sqrt(variance), rtol=1e-5)


def test_auto_noise_is_a_mixture_where_one_applies():
    """input_noise="auto" keeps the search's six networks for one network with a validation split
    and a fixed K; a warm start, an ensemble, n_components="auto" and the Gaussian baseline keep one
    level (as "select"), and without a validation split it is the rule of thumb."""
    from mdnkit.baselines import GaussianNetworkRegressor

    rng = np.random.default_rng(11)
    X = rng.normal(size=(120, 2)); y = X[:, 0] + 0.3 * rng.normal(size=120)
    settings = dict(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mixture = MDNRegressor(**settings).fit(X, y)
        assert mixture.member_weights_.shape == (6,)  # two networks per level
        assert mixture.input_noise_ == tuple(level for level in mixture.noise_selection_ for _ in range(2))
        for other in ({"warm_start": True}, {"n_estimators": 2}, {"n_components": "auto"}, {"validation_fraction": 0.0}):
            model = MDNRegressor(**{**settings, **other}).fit(X, y)
            assert not hasattr(model, "member_weights_") and isinstance(model.input_noise_, float), other
        baseline = GaussianNetworkRegressor(hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X, y)
    assert not hasattr(baseline, "member_weights_") and baseline.predict_dist(X[:2]).n_components == 1
    single = MDNRegressor(**settings, input_noise="select")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        single.fit(X, y)
    assert type(single.module_).__name__ == "MDN" and single.input_noise_ in single.noise_selection_


def test_a_noise_mixture_reports_its_own_validation_nll(tmp_path):
    """A noise mixture's networks each keep their own best epoch, so the curve's value at one epoch
    is not the kept model's: validation_nll_ is the weighted mixture's NLL of the validation rows,
    as score() computes it by another path, kept in the file and shown by mdnkit info."""
    from mdnkit.report import describe_model
    from mdnkit.tabular import Schema

    one_per_level, _, _ = _mixture_model(OnePerLevel)  # two per level: test_a_replicated_noise_mixture...
    assert abs(one_per_level.validation_nll_ + one_per_level.score(*one_per_level.validation_rows_)) < 1e-9
    model, X, y = _mixture_model()
    model.save(tmp_path / "mixture.mdn")
    loaded = mdnkit.load(tmp_path / "mixture.mdn")
    assert loaded.validation_nll_ == model.validation_nll_
    text = describe_model(loaded, Schema(["a", "b"], ["y"]), "mixture.mdn")
    assert f"kept each network's best epoch, the last {model.best_epoch_}" in text
    assert f"validation NLL of the kept model {model.validation_nll_:.4f}" in text


def test_a_noise_mixture_file_keeps_its_weights(tmp_path):
    model, X, y = _mixture_model()
    model.save(tmp_path / "mixture.mdn")
    loaded = mdnkit.load(tmp_path / "mixture.mdn")
    np.testing.assert_array_equal(loaded.member_weights_, model.member_weights_)
    assert loaded.input_noise_ == model.input_noise_ and loaded.target_noise_ == model.target_noise_
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12)


@pytest.mark.parametrize("settings, message", [
    ({"n_estimators": 2}, "needs n_estimators=1"),
    ({"validation_fraction": 0.0}, "needs validation rows"),
    ({"n_components": "auto"}, "needs a fixed n_components"),
])
def test_a_noise_mixture_says_what_it_needs(settings, message):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2)); y = X[:, 0] + rng.normal(size=50)
    with pytest.raises(ValueError, match=message):
        MDNRegressor(input_noise="mixture", max_epochs=2, **settings).fit(X, y)


def test_a_noise_mixture_is_not_continued_by_warm_start():
    model, X, y = _mixture_model()
    with pytest.raises(ValueError, match="warm_start does not continue a noise mixture"):
        model.set_params(warm_start=True).fit(X, y)
    single = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, input_noise=0.0, random_state=0).fit(X, y)
    with pytest.raises(ValueError, match="nor turn a network into one"):
        single.set_params(warm_start=True, input_noise="mixture").fit(X, y)


def test_unequal_member_weights_reach_every_prediction(tmp_path):
    """Weights 0.7, 0.3, 0 set on a three-member ensemble: densities, the saved file and the
    epistemic spread all follow them, against the members' own densities and the law of total
    variance."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(200, 2)); y = X[:, 0] + 0.5 * rng.normal(size=200)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, n_estimators=3, input_noise=0.0,
                         random_state=0).fit(X, y)
    weights = np.array([0.7, 0.3, 0.0])
    model.module_.set_member_weights(weights)
    members = model.predict_members_dist(X)
    member_log_prob = members.log_prob(torch.as_tensor(y[:, None])).numpy()  # [3, n]
    with np.errstate(divide="ignore"):
        expected = logsumexp(member_log_prob + np.log(weights)[:, None], axis=0)
    np.testing.assert_allclose(model.score_samples(X, y), expected, rtol=1e-6)
    np.testing.assert_allclose(model.predict_dist(X).log_prob(torch.as_tensor(y[:, None])).numpy(), expected, rtol=1e-6)
    model.save(tmp_path / "weighted.mdn")
    np.testing.assert_allclose(mdnkit.load(tmp_path / "weighted.mdn").score_samples(X, y), expected, rtol=1e-6)
    within = (weights[:, None] * members.variance.numpy()[..., 0]).sum(0)
    np.testing.assert_allclose(model.predict_epistemic_std(X) ** 2, model.predict_std(X) ** 2 - within,
                               rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="member weights must be 3 non-negative numbers"):
        model.module_.set_member_weights([1.0, -1.0, 0.5])


def test_mixture_weights_ignore_what_no_member_explains():
    """A NaN (a diverged member) counts as -inf, and a row no member explains carries no weight."""
    log_likelihood = np.array([[0.0, np.nan, -1.0, -np.inf], [-1.0, -1.0, 0.0, -np.inf]])
    expected = mdnkit.estimator.mixture_weights(np.array([[0.0, -np.inf, -1.0], [-1.0, -1.0, 0.0]]))
    np.testing.assert_allclose(mdnkit.estimator.mixture_weights(log_likelihood), expected, rtol=1e-12)
    np.testing.assert_allclose(mdnkit.estimator.mixture_weights(np.full((2, 3), -np.inf)), 0.5)


def test_an_unfinished_noise_mixture_warns_and_reports_its_levels():
    from mdnkit.report import _settings

    rng = np.random.default_rng(9)
    X = rng.normal(size=(200, 2)); y = X[:, 0] + 0.3 * rng.normal(size=200)
    with pytest.warns(ConvergenceWarning, match="still improving"):
        model = MDNRegressor(input_noise="mixture", n_components=2, hidden_sizes=(8,), max_epochs=3,
                             random_state=0).fit(X, y)
    rows = dict(_settings(model))
    assert rows["input noise"] == ", ".join(f"{level:.3g}" for level in model.input_noise_) + " (mixture)"
    assert (rows["patience"], rows["weight decay"], rows["weight averaging"]) == ("auto", "0", "0.99")
    rows = dict(_settings(model.set_params(weight_averaging=0.0, patience=7)))
    assert "weight averaging" not in rows and rows["patience"] == "7"


def test_auto_noise_is_one_batched_pass_with_one_novelty_index(monkeypatch):
    """The levels train together, as members of one ensemble (one call of train), and the novelty
    index is built once, for the kept model; n_components="auto" builds it once too."""
    calls = {"train": [], "novelty": 0}
    real_train, real_novelty = mdnkit.estimator.train, mdnkit.estimator.InputNovelty.fit

    def counted_train(module, *args, **kwargs):
        calls["train"].append(getattr(module, "n_members", 1))
        return real_train(module, *args, **kwargs)

    def counted_novelty(self, *args, **kwargs):
        calls["novelty"] += 1
        return real_novelty(self, *args, **kwargs)

    monkeypatch.setattr(mdnkit.estimator, "train", counted_train)
    monkeypatch.setattr(mdnkit.estimator.InputNovelty, "fit", counted_novelty)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 2)); y = X[:, 0] + 0.3 * rng.normal(size=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, input_noise="select",
                             random_state=0).fit(X, y)
        assert calls == {"train": [3], "novelty": 1}
        assert type(model.module_).__name__ == "MDN" and model.n_estimators == 1
        calls.update(train=[], novelty=0)
        mixture = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0).fit(X, y)
        assert calls == {"train": [6], "novelty": 1} and type(mixture.module_).__name__ == "MDNEnsemble"
        calls.update(train=[], novelty=0)
        MDNRegressor(n_components="auto", hidden_sizes=(8,), max_epochs=5, random_state=0).fit(X, y)
    assert calls["train"][0] == 3 and set(calls["train"][1:]) == {1} and calls["novelty"] == 1


def test_auto_noise_keeps_the_winners_own_curve_and_weights():
    """The kept member's history is its own (its validation NLLs, its epochs), its best epoch's
    weights are the model's, and its validation NLL is what the search recorded for its level."""
    rng = np.random.default_rng(5)
    X = rng.uniform(-2, 2, size=(300, 1)); y = np.sin(2 * X[:, 0]) + 0.2 * rng.normal(size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MDNRegressor(n_components=2, hidden_sizes=(16,), max_epochs=40, batch_size=None, learning_rate=1e-2,
                             input_noise="select", random_state=0).fit(X, y)
    best = model.noise_selection_[model.input_noise_]
    assert best == min(model.noise_selection_.values())
    assert min(r["val_nll"] for r in model.history_) == pytest.approx(best, abs=1e-12)
    validation = np.random.default_rng(0).permutation(300)[:30]  # the rows a fit with seed 0 holds out
    assert -model.score(X[validation], y[validation]) == pytest.approx(best, abs=1e-5)
    assert model.n_iter_ == model.history_[-1]["epoch"] and model.best_epoch_ <= model.n_iter_
    model.set_params(warm_start=True, max_epochs=3).fit(X, y)  # its training state goes on
    assert model.train_state_.n == 1 and model.train_state_.epoch == model.history_[-1]["epoch"]


def test_warm_start_keeps_the_chosen_noise_and_a_fresh_fit_forgets_the_search(monkeypatch):
    """A warm refit continues at the level "auto" chose (here forced to 0 by a one-level search);
    a fresh fit with other settings leaves no trace of the previous search."""
    monkeypatch.setattr(mdnkit.estimator, "NOISE_FACTORS", (0.0,))
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2)); y = X[:, 0] + 0.2 * rng.normal(size=200)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, input_noise="select",
                         random_state=0).fit(X, y)
    assert model.input_noise_ == 0.0 and set(model.noise_selection_) == {0.0}
    model.set_params(warm_start=True).fit(X, y)
    assert model.input_noise_ == 0.0
    model.set_params(warm_start=False, input_noise=0.05).fit(X, y)
    assert model.input_noise_ == 0.05 and not hasattr(model, "noise_selection_")


def test_auto_components_need_a_validation_split():
    X = np.random.default_rng(0).normal(size=(50, 1))
    with pytest.raises(ValueError, match="validation_fraction > 0"):
        MDNRegressor(n_components="auto", validation_fraction=0.0).fit(X, X[:, 0])


@pytest.mark.parametrize("n_rows, expected", [(100, 64), (2000, 64), (4000, 112), (9000, 253), (50_000, 256)])
def test_auto_batch_size_takes_about_32_steps_per_epoch(n_rows, expected):
    """``batch_size="auto"``: ``n_train // 32`` rows within [64, 256], ``n_train`` after the
    10% validation split; patience (about 1000 steps) follows the steps it makes per epoch."""
    model = MDNRegressor()
    n_train = n_rows - math.ceil(0.1 * n_rows)
    assert model._batch_size(n_train) == expected
    assert model._patience(n_train) == int(np.clip(math.ceil(1000 / math.ceil(n_train / expected)), 20, 100))
    assert MDNRegressor(batch_size=None)._batch_size(n_train) is None
    assert MDNRegressor(batch_size=32, optimizer="lbfgs")._batch_size(n_train) is None


def test_fit_records_the_batch_size_it_used():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=300)
    settings = dict(n_components=2, hidden_sizes=(8,), max_epochs=3, input_noise=0.0, random_state=0)
    assert MDNRegressor(**settings).fit(X, y).batch_size_ == 64
    assert MDNRegressor(**settings, batch_size=100).fit(X, y).batch_size_ == 100
    assert MDNRegressor(**settings, batch_size=None).fit(X, y).batch_size_ is None


def test_warm_start_after_a_dtype_change_or_on_new_rows_trains(tmp_path):
    """A new dtype drops the old optimiser state (its moments no longer fit); new validation
    rows are judged from where the weights start, not against the old rows' best score."""
    X, y = _data()
    model = MDNRegressor(**dict(TINY, warm_start=True)).fit(X, y)
    model.set_params(dtype="float64").fit(X, y)
    assert next(model.module_.parameters()).dtype == torch.float64 and model.n_iter_ == 5
    X_new, y_new = _data(seed=3)
    shifted = MDNRegressor(**dict(TINY, warm_start=True, max_epochs=30, patience=3)).fit(X, y)
    before = shifted.score(X_new, y_new + 1.0)
    shifted.fit(X_new, y_new + 1.0)  # worse than anything seen: the old best would stop it at once
    assert shifted.score(X_new, y_new + 1.0) > before


def test_a_loaded_model_saved_again_keeps_its_metadata(tmp_path):
    X, y = _data()
    model = MDNRegressor(**TINY).fit(X, y)
    model.save(tmp_path / "a.mdn", metadata={"schema": {"features": ["x"]}})
    mdnkit.load(tmp_path / "a.mdn").save(tmp_path / "b.mdn")
    assert mdnkit.load(tmp_path / "b.mdn").metadata_ == {"schema": {"features": ["x"]}}


def test_score_samples_is_the_same_in_chunks(monkeypatch):
    import mdnkit.estimator as estimator_module

    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 2))
    y = X[:, 0] + 0.1 * rng.normal(size=50)
    # float64: a float32 network's sums depend on the batch size at the 1e-7 level
    model = MDNRegressor(n_components=2, hidden_sizes=(4,), max_epochs=3, random_state=0, dtype="float64").fit(X, y)
    whole = model.score_samples(X, y)
    np.testing.assert_allclose(whole, model.predict_dist(X).log_prob(torch.as_tensor(y)[:, None]).numpy(), rtol=1e-12)
    monkeypatch.setattr(estimator_module, "_PREDICT_CHUNK", 7)  # 8 chunks, the last of 1 row
    np.testing.assert_allclose(model.score_samples(X, y), whole, rtol=1e-12)


def test_a_noise_mixture_of_rounded_targets_weighs_its_members_by_bin_probabilities():
    """With target_resolution the members are weighted by the probability each gives the
    validation rows' bins (SciPy's normal cdf of their components here), as the model is scored."""
    rng = np.random.default_rng(10)
    X = rng.normal(size=(300, 1)); y = np.round(2 * X[:, 0] + rng.normal(size=300))
    model = OnePerLevel(input_noise="mixture", target_resolution=1.0, n_components=2, hidden_sizes=(8,),
                         max_epochs=10, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    X_val, y_val = model.validation_rows_
    members = model.predict_members_dist(X_val)
    weights = torch.softmax(members.logits, -1).numpy()  # [M, n, K]
    loc, scale = members.loc.numpy()[..., 0], members.scale.numpy()[..., 0]
    value = y_val.reshape(-1)[None, :, None]
    bins = (weights * (stats.norm.cdf(value + 0.5, loc, scale) - stats.norm.cdf(value - 0.5, loc, scale))).sum(-1)
    np.testing.assert_allclose(model.member_weights_, _stacking_optimum(np.log(bins), 1.0), atol=1e-5)


@pytest.mark.parametrize("d_out", [1, 2])
def test_float32_rows_score_as_their_float64_values_and_stay_untouched(d_out) -> None:
    """score_samples keeps a float32 table float32 and casts it a chunk at a time: the scores are
    those of the same values in float64, exactly, and neither array is modified."""
    model = _fitted("diagonal", d_out)
    X, y = _data(n=300, d_out=d_out, seed=5)
    X32 = X.astype(np.float32)
    X64, before = X32.astype(np.float64), X32.copy()
    np.testing.assert_array_equal(model.score_samples(X32, y), model.score_samples(X64, y))
    np.testing.assert_array_equal(X32, before)
    np.testing.assert_array_equal(X64, before.astype(np.float64))


def test_a_replicated_noise_mixture_has_its_networks_per_level(monkeypatch):
    """The default noise mixture trains two networks per level in one pass: replicate r of every
    level starts from the same weights and holds out the same rows (replicate 0 a single fit's),
    the two replicates differ in both; a level's score is its better network's; each replicate's
    levels share half the weight, and validation_nll_ is the mean of the replicates' own
    mixtures' NLLs of their own rows; no row is held out by all, so calibrate() asks for rows.
    With one network per level (``_noise_replicates = 1``) all start from the same weights."""
    starts, results, holdouts = [], [], []
    real_train = mdnkit.estimator.train

    def recording_train(module, *args, **kwargs):
        starts.append([p.detach().clone() for p in module.parameters()])
        holdouts.append(kwargs.get("holdout"))
        results.append(real_train(module, *args, **kwargs))
        return results[-1]

    monkeypatch.setattr(mdnkit.estimator, "train", recording_train)

    rng = np.random.default_rng(12)
    X = rng.normal(size=(120, 2))
    y = X[:, 0] + 0.3 * rng.normal(size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X, y)
    levels = sorted(model.noise_selection_)
    assert model.input_noise_ == (levels[0], levels[0], levels[1], levels[1], levels[2], levels[2])
    assert model.member_weights_.shape == (6,) and abs(model.member_weights_.sum() - 1) < 1e-12
    first = starts[0][0]  # the backbone's first weight, [M, in, out]
    assert all(torch.equal(first[m], first[m % 2]) for m in range(6)) and not torch.equal(first[0], first[1])
    curves = results[0].member_history
    for i, level in enumerate(levels):
        assert model.noise_selection_[level] == min(epoch["val_nll"][m] for epoch in curves for m in (2 * i, 2 * i + 1))
    holdout = holdouts[0].cpu().numpy()  # [6, 120] booleans
    assert all((holdout[m] == holdout[m % 2]).all() for m in range(6)) and (holdout[0] != holdout[1]).any()
    assert not hasattr(model, "validation_rows_")
    with pytest.raises(ValueError, match="several per noise level"):
        model.calibrate()
    np.testing.assert_allclose([model.member_weights_[r::2].sum() for r in range(2)], [0.5, 0.5], rtol=1e-12)
    own = []
    for r in range(2):  # each replicate's weighted mixture of its three networks, on its own rows
        members = model.predict_members_dist(X[holdout[r]])
        log_p = members.log_prob(torch.as_tensor(y[holdout[r]])[:, None]).numpy()[r::2]  # [3, rows]
        weights = 2 * model.member_weights_[r::2]
        own.append(-np.mean(np.log(np.exp(log_p).T @ weights)))
    assert abs(model.validation_nll_ - np.mean(own)) < 1e-9
    plain = OnePerLevel(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plain.fit(X, y)
    X_val, y_val = plain.validation_rows_  # a single fit's rows: replicate 0's above
    np.testing.assert_array_equal(np.sort(X[holdout[0]][:, 0]), np.sort(X_val[:, 0]))
    assert plain.member_weights_.shape == (3,) and len(set(plain.input_noise_)) == 3
    first = starts[-1][0]  # one network per level, all from the same weights
    assert all(torch.equal(first[m], first[0]) for m in range(3))
    curves = results[-1].member_history
    assert [plain.noise_selection_[level] for level in plain.input_noise_] == \
        [min(epoch["val_nll"][m] for epoch in curves) for m in range(3)]
