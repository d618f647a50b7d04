"""Tests for the baselines: each density against an independent NumPy/SciPy computation (the
conditional GMM from the joint and its marginal, the homoscedastic variance from a hand-made
least-squares fit), original units through the change of variables, the shared prediction API,
scikit-learn compliance, and the squared-error network's failure on an inverse problem."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

from mdnkit import MDNRegressor
from mdnkit.baselines import (
    ConditionalGMM,
    GaussianNetworkRegressor,
    HomoscedasticGaussianRegressor,
    MSENetworkRegressor,
)
from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid
from mdnkit.distributions import GaussianMixture

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

GMM_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
TINY_NET = {"hidden_sizes": (8,), "max_epochs": 5, "random_state": 0}


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS thread: EM's many 3x3 solves are ~30x slower when OpenBLAS threads compete for
    the cores with other test workers."""
    with threadpool_limits(1):
        yield


def _data(n: int = 150, d_out: int = 1, seed: int = 0):
    """X (n, 2); y (n,) or (n, 2), dependent on X, columns on different scales."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y1 = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    if d_out == 1:
        return X, y1
    y2 = 20.0 * (X[:, 0] - 0.3 * X[:, 1] ** 2) + 4.0 * rng.normal(size=n) + 100.0
    return X, np.c_[y1, y2]


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


# ============================================================================ scikit-learn checks
EXPECTED_FAILED_CHECKS = {
    "check_methods_sample_order_invariance": (
        "score_samples is log p(y | x) and needs y; scikit-learn calls score_samples(X)."
    ),
    "check_methods_subset_invariance": "score_samples(X, y) needs y (conditional density).",
    "check_dtype_object": (
        "non-numeric values raise ValueError naming the column (the library's one error type for "
        "bad input); scikit-learn expects a TypeError."
    ),
}


@parametrize_with_checks(
    [
        ConditionalGMM(n_components=2, max_iter=20, random_state=0),
        HomoscedasticGaussianRegressor(),
        GaussianNetworkRegressor(**TINY_NET),
        MSENetworkRegressor(**TINY_NET),
    ],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_CHECKS,
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ============================================================================ conditional GMM
def _full_covariances(gmm) -> np.ndarray:
    """scikit-learn's covariances as ``(K, D, D)``, whatever the type."""
    k, dim = gmm.means_.shape
    c = gmm.covariances_
    if gmm.covariance_type == "full":
        return c
    if gmm.covariance_type == "tied":
        return np.stack([c] * k)
    if gmm.covariance_type == "diag":
        return np.stack([np.diag(row) for row in c])
    return np.stack([v * np.eye(dim) for v in c])


def _log_marginal(gmm, z: np.ndarray, dims: list[int]) -> np.ndarray:
    """``log Σ_k π_k N(z[:, dims] | μ_k[dims], Σ_k[dims, dims])`` with SciPy, ``(n,)``."""
    covariances = _full_covariances(gmm)
    terms = [
        np.log(w) + stats.multivariate_normal(m[dims], c[np.ix_(dims, dims)]).logpdf(z[:, dims]).reshape(len(z))
        for w, m, c in zip(gmm.weights_, gmm.means_, covariances)
    ]
    return logsumexp(np.stack(terms, axis=1), axis=1)


def _standardise(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = _rows(a)
    return (a - a.mean(axis=0)) / a.std(axis=0), np.log(a.std(axis=0)).sum()


@functools.cache
def _gmm(covariance_type: str, d_out: int) -> ConditionalGMM:
    X, y = _data(d_out=d_out)
    return ConditionalGMM(n_components=3, covariance_type=covariance_type, random_state=0).fit(X, y)


@pytest.mark.parametrize("d_out", [1, 2])
@pytest.mark.parametrize("covariance_type", GMM_COVARIANCE_TYPES)
def test_conditional_gmm_is_joint_minus_marginal(covariance_type, d_out):
    model = _gmm(covariance_type, d_out)
    X, y = _data(d_out=d_out)
    X_new, y_new = _data(n=40, d_out=d_out, seed=5)
    x_std, x_log_jacobian = _standardise(X)
    y_std, y_log_jacobian = _standardise(y)
    # the same standardisation, applied to new rows
    x_new = (X_new - X.mean(axis=0)) / X.std(axis=0)
    y_new_std = (_rows(y_new) - _rows(y).mean(axis=0)) / _rows(y).std(axis=0)
    z = np.hstack([x_new, y_new_std])
    x_dims, y_dims = [0, 1], list(range(2, 2 + d_out))
    log_joint = model.gmm_.score_samples(z)
    # p(y | x) = p(x, y) / p(x), in y's original units
    expected = log_joint - _log_marginal(model.gmm_, z, x_dims) - y_log_jacobian
    np.testing.assert_allclose(model.score_samples(X_new, y_new), expected, rtol=1e-9, atol=1e-9)
    # p(x | y) = p(x, y) / p(y), in x's original units
    expected_inverse = log_joint - _log_marginal(model.gmm_, z, y_dims) - x_log_jacobian
    got_inverse = model.predict_input_dist(y_new).log_prob(torch.as_tensor(X_new)).numpy()
    np.testing.assert_allclose(got_inverse, expected_inverse, rtol=1e-9, atol=1e-9)
    # the joint was fitted to the standardised data
    np.testing.assert_allclose(model.gmm_.score(np.hstack([x_std, y_std])),
                               ConditionalGMM(n_components=3, covariance_type=covariance_type, random_state=0)
                               .fit(X, y).gmm_.score(np.hstack([x_std, y_std])), rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_conditional_gmm_mean_is_the_regression_formula(covariance_type):
    model = _gmm(covariance_type, 1)
    X, y = _data()
    X_new, _ = _data(n=20, seed=7)
    x = (X_new - X.mean(axis=0)) / X.std(axis=0)
    gmm = model.gmm_
    covariances = _full_covariances(gmm)
    log_weights, means = [], []
    for w, m, c in zip(gmm.weights_, gmm.means_, covariances):
        c_xx, c_yx = c[:2, :2], c[2:, :2]
        log_weights.append(np.log(w) + stats.multivariate_normal(m[:2], c_xx).logpdf(x))
        means.append(m[2] + (c_yx @ np.linalg.solve(c_xx, (x - m[:2]).T))[0])
    weights = np.exp(np.array(log_weights) - logsumexp(log_weights, axis=0))  # (K, n)
    expected = (weights * np.array(means)).sum(axis=0) * y.std() + y.mean()
    np.testing.assert_allclose(model.predict(X_new), expected, rtol=1e-9, atol=1e-9)


def test_conditional_gmm_original_units():
    X, y = _data()
    params = {"n_components": 3, "random_state": 0}
    a = ConditionalGMM(**params).fit(X, y)
    b = ConditionalGMM(**params).fit(X, 1000.0 * y)
    # the standardised data, hence the joint fit, are the same: only the Jacobian moves
    np.testing.assert_allclose(b.score_samples(X, 1000.0 * y), a.score_samples(X, y) - np.log(1000.0), atol=1e-6)
    np.testing.assert_allclose(b.predict(X), 1000.0 * a.predict(X), rtol=1e-6)
    c = ConditionalGMM(**params).fit(7.0 * X - 1.0, y)
    np.testing.assert_allclose(c.score_samples(7.0 * X - 1.0, y), a.score_samples(X, y), atol=1e-6)
    # the inverse direction carries x's Jacobian, one log 7 per input column
    np.testing.assert_allclose(
        c.predict_input_dist(y).log_prob(torch.as_tensor(7.0 * X - 1.0)).numpy(),
        a.predict_input_dist(y).log_prob(torch.as_tensor(X)).numpy() - 2 * np.log(7.0),
        atol=1e-6,
    )


def test_conditional_gmm_input_dist_shapes():
    model = _gmm("full", 2)
    _, y = _data(n=5, d_out=2, seed=3)
    dist = model.predict_input_dist(y)
    assert dist.batch_shape == (5,) and dist.event_shape == (2,) and dist.n_components == 3
    assert dist.loc.dtype == torch.float64
    with pytest.raises(ValueError, match="y has 1 target columns, ConditionalGMM was fitted with 2"):
        model.predict_input_dist(y[:, 0])
    with pytest.raises(NotFittedError):
        ConditionalGMM().predict_input_dist(y)


# ============================================================================ homoscedastic
@pytest.mark.parametrize("d_out", [1, 2])
def test_homoscedastic_variance_is_the_residual_mle(d_out):
    X, y = _data(d_out=d_out)
    model = HomoscedasticGaussianRegressor().fit(X, y)
    design = np.c_[np.ones(len(X)), X]
    coefficients, *_ = np.linalg.lstsq(design, _rows(y), rcond=None)
    residuals = _rows(y) - design @ coefficients
    variance = (residuals**2).mean(axis=0)  # maximum likelihood: divide by n
    np.testing.assert_allclose(model.variance_, variance, rtol=1e-9)
    X_new, y_new = _data(n=30, d_out=d_out, seed=4)
    mean = np.c_[np.ones(len(X_new)), X_new] @ coefficients
    np.testing.assert_allclose(_rows(model.predict(X_new)), mean, rtol=1e-9, atol=1e-9)
    expected = stats.norm(mean, np.sqrt(variance)).logpdf(_rows(y_new)).sum(axis=1)
    np.testing.assert_allclose(model.score_samples(X_new, y_new), expected, rtol=1e-9)
    dist = model.predict_dist(X_new)
    assert dist.n_components == 1 and dist.batch_shape == (30,) and dist.event_shape == (d_out,)


def test_homoscedastic_clones_any_regressor():
    X, y = _data()
    knn = KNeighborsRegressor(n_neighbors=5)
    model = HomoscedasticGaussianRegressor(knn).fit(X, y)
    assert not hasattr(knn, "n_features_in_")  # the user's instance stays unfitted
    # KNN on standardised inputs: the same neighbours as scaling the columns by hand
    x_std = (X - X.mean(axis=0)) / X.std(axis=0)
    reference = KNeighborsRegressor(n_neighbors=5).fit(x_std, y)
    residuals = y - reference.predict(x_std)
    np.testing.assert_allclose(model.variance_, [np.mean(residuals**2)], rtol=1e-9)


# ============================================================================ Gaussian network
def test_gaussian_network_is_an_mdn_with_one_component():
    X, y = _data()
    model = GaussianNetworkRegressor(**TINY_NET).fit(X, y)
    reference = MDNRegressor(n_components=1, input_noise="select", **TINY_NET).fit(X, y)  # one network too
    assert model.n_components == 1 and model.predict_dist(X).n_components == 1
    np.testing.assert_allclose(model.score_samples(X, y), reference.score_samples(X, y), rtol=1e-6)
    params = model.get_params()
    assert "n_components" not in params
    # the same arguments with the same defaults as MDNRegressor, less n_components, family and module
    defaults = MDNRegressor().get_params()
    for fixed in ("n_components", "family", "family_options", "module", "module_kwargs"):  # a Gaussian MLP: fixed
        del defaults[fixed]
    assert GaussianNetworkRegressor().get_params() == defaults
    copy_ = clone(model)
    assert copy_.get_params() == params and not hasattr(copy_, "module_")
    with pytest.raises(ValueError, match="Invalid parameter 'n_components'"):
        model.set_params(n_components=3)


def test_gaussian_network_full_covariance_two_targets():
    X, y = _data(d_out=2)
    model = GaussianNetworkRegressor(covariance_type="full", **TINY_NET).fit(X, y)
    dist = model.predict_dist(X[:4])
    assert dist.n_components == 1 and dist.covariance_type == "full" and dist.event_shape == (2,)


def test_gaussian_network_save_load_round_trip(tmp_path):
    from mdnkit import load

    X, y = _data()
    model = GaussianNetworkRegressor(**TINY_NET).fit(X, y)
    model.save(tmp_path / "m.mdn")
    loaded = load(tmp_path / "m.mdn")
    assert type(loaded) is GaussianNetworkRegressor
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))


# ============================================================================ squared-error network
@functools.cache
def _sinusoid_fits():
    X, y = make_inverted_sinusoid(1000, random_state=0)
    params = {"hidden_sizes": (32, 32), "learning_rate": 0.01, "batch_size": None, "max_epochs": 100,
              "random_state": 0}
    mse = MSENetworkRegressor(**params).fit(X, y)
    mdn = MDNRegressor(n_components=5, **params).fit(X, y)
    return mse, mdn


def _true_conditional(x0: float, grid: np.ndarray) -> np.ndarray:
    """Unnormalised ``log p(y | x0)`` on a grid of ``y`` in the support: ``x = f(y) + N(0, 1)``,
    ``y`` uniform, so ``p(y | x) ∝ N(x | f(y), 1)``."""
    return -0.5 * (x0 - (7.0 * np.sin(0.75 * grid) + 0.5 * grid)) ** 2


def test_mse_network_predicts_the_mean_between_the_branches():
    mse, _ = _sinusoid_fits()
    grid = np.linspace(-10.5, 10.5, 2001)
    # E[y | x] by quadrature of the true density: the least-squares target. 1000 rows with a
    # spread of ~4 leave ~0.5 of sampling error in a fitted mean, against branches ~4 apart.
    xs = np.linspace(-8, 8, 17)
    true_mean = []
    for x0 in xs:
        density = np.exp(_true_conditional(x0, grid))
        true_mean.append((density * grid).sum() / density.sum())
    assert np.abs(mse.predict(xs[:, None]) - np.array(true_mean)).mean() < 1.0
    for x0 in (-1.5, 1.5):
        log_density = _true_conditional(x0, grid)
        peaks = np.where((log_density[1:-1] > log_density[:-2]) & (log_density[1:-1] > log_density[2:]))[0] + 1
        assert len(peaks) >= 3  # several branches at this x
        prediction = mse.predict([[x0]])[0]
        assert grid[peaks].min() < prediction < grid[peaks].max()
        # ...in a gap, where the true density is e^5 times below every branch
        assert np.interp(prediction, grid, log_density) < log_density[peaks].min() - 5


def test_mse_network_nll_is_far_worse_than_an_mdn():
    mse, mdn = _sinusoid_fits()
    X_test, y_test = make_inverted_sinusoid(500, random_state=1)
    oracle = inverted_sinusoid_log_density(X_test, y_test).mean()
    assert mdn.score(X_test, y_test) > oracle - 0.3
    assert mse.score(X_test, y_test) < mdn.score(X_test, y_test) - 1.0
    # σ is the root mean squared validation residual: here the spread of y given x, about 4
    assert 3.0 < mse.residual_scale_[0] < 6.0


def test_mse_network_recovers_a_slope():
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 1))
    y = 2.0 * X[:, 0] + 0.1 * rng.normal(size=400) + 5.0
    model = MSENetworkRegressor(hidden_sizes=(16,), learning_rate=0.01, batch_size=None, max_epochs=300,
                                random_state=0).fit(X, y)
    grid = np.linspace(-0.8, 0.8, 9)[:, None]
    slope = np.polyfit(grid[:, 0], model.predict(grid), 1)[0]
    assert slope == pytest.approx(2.0, abs=0.1)
    assert model.residual_scale_[0] == pytest.approx(0.1, rel=0.3)
    history = model.history_[-1]
    assert set(history) == {"epoch", "train_mse", "val_mse", "learning_rate", "time"}
    # the recorded error is the MSE in standardised units: (0.1 / std(y))² at the optimum
    assert history["train_mse"] == pytest.approx((0.1 / y.std()) ** 2, rel=0.5)


def test_mse_network_variance_from_training_rows_without_validation():
    X, y = _data()
    model = MSENetworkRegressor(**TINY_NET, validation_fraction=0.0).fit(X, y)
    residuals = y - model.predict(X)
    np.testing.assert_allclose(model.residual_scale_, [np.sqrt(np.mean(residuals**2))], rtol=1e-5)


# ============================================================================ the shared API
@functools.cache
def _fitted(name: str, d_out: int):
    X, y = _data(d_out=d_out)
    estimators = {
        "gmm": ConditionalGMM(n_components=3, random_state=0),
        "homoscedastic": HomoscedasticGaussianRegressor(),
        "gaussian_network": GaussianNetworkRegressor(**TINY_NET),
        "mse_network": MSENetworkRegressor(**TINY_NET),
    }
    return estimators[name].fit(X, y)


@pytest.mark.parametrize("d_out", [1, 2])
@pytest.mark.parametrize("name", ["gmm", "homoscedastic", "gaussian_network", "mse_network"])
def test_every_predict_method(name, d_out):
    model = _fitted(name, d_out)
    X, y = _data(n=7, d_out=d_out, seed=1)
    n, tail = len(X), (() if d_out == 1 else (d_out,))
    assert model.n_features_in_ == 2 and model.n_outputs_ == d_out
    dist = model.predict_dist(X)
    assert isinstance(dist, GaussianMixture) and dist.loc.dtype == torch.float64 and dist.loc.device.type == "cpu"
    assert dist.batch_shape == (n,) and dist.event_shape == (d_out,)
    assert model.predict(X).shape == (n, *tail)
    np.testing.assert_allclose(_rows(model.predict(X)), dist.mean.numpy())
    assert model.predict_std(X).shape == (n, *tail)
    assert model.score_samples(X, y).shape == (n,) and isinstance(model.score(X, y), float)
    assert model.sample(X, n_samples=4, random_state=0).shape == (n, 4, *tail)
    assert model.predict_quantiles(X, [0.1, 0.5, 0.9]).shape == (n, 3, *tail)
    assert model.predict_interval(X, 0.8).shape == (n, 2, *tail)
    modes, log_density = model.predict_modes(X)
    assert modes.shape == (n, dist.n_components, *tail) and log_density.shape == (n, dist.n_components)


@pytest.mark.parametrize("name", ["homoscedastic", "mse_network"])
def test_single_gaussian_quantiles_match_scipy(name):
    model = _fitted(name, 1)
    X, _ = _data(n=5, seed=2)
    q = [0.05, 0.5, 0.9]
    dist = model.predict_dist(X)
    loc, scale = dist.loc[:, 0, 0].numpy(), dist.scale[:, 0, 0].numpy()
    expected = stats.norm(loc[:, None], scale[:, None]).ppf(q)
    np.testing.assert_allclose(model.predict_quantiles(X, q), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict_std(X), scale)


# ============================================================================ errors
@pytest.mark.parametrize("name", ["gmm", "homoscedastic", "gaussian_network", "mse_network"])
def test_bad_input_raises_clear_errors(name):
    model = clone(_fitted(name, 1))
    X, y = _data(n=20)
    with pytest.raises(ValueError, match="requires y to be passed"):
        model.fit(X, None)
    with pytest.raises(ValueError, match="X must be 2-D"):
        model.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="X has 20 rows but y has 19"):
        model.fit(X, y[:-1])
    bad = y.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="y has NaN values in 1 of 20 rows"):
        model.fit(X, bad)
    with pytest.raises(ValueError, match="y is constant"):
        model.fit(X, np.ones(20))
    with pytest.raises(ValueError, match="X has 1 sample"):
        model.fit(X[:1], y[:1])
    with pytest.raises(NotFittedError):
        model.predict(X)
    fitted = _fitted(name, 1)
    # (GaussianNetworkRegressor inherits MDNRegressor's message, which names MDNRegressor)
    with pytest.raises(ValueError, match=r"X has 3 features, but \w+ is expecting 2 features"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"X has NaN values in 1 of 2 rows .*before predicting\.$"):
        fitted.predict(np.array([[0.0, np.nan], [0.0, 0.0]]))
    with pytest.raises(ValueError, match="y has 2 target columns, the model was fitted with 1"):
        fitted.score_samples(X, np.c_[y, y])


@pytest.mark.parametrize(
    "params, match",
    [
        ({"hidden_sizes": (8, -1)}, "hidden_sizes must be a sequence of positive integers"),
        ({"activation": "swish"}, "activation must be one of"),
        ({"learning_rate": 0.0}, "learning_rate must be a positive number"),
        ({"max_epochs": 0}, "max_epochs must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer >= 1, 'auto' or None"),
        ({"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ({"gradient_clip": -1.0}, "gradient_clip must be a positive number or None"),
    ],
)
def test_mse_network_bad_params(params, match):
    X, y = _data(n=20)
    with pytest.raises(ValueError, match=match):
        MSENetworkRegressor(**params).fit(X, y)


def test_conditional_gmm_bad_params():
    X, y = _data(n=20)
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        ConditionalGMM(covariance_type="diagonal").fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        ConditionalGMM(n_components=40).fit(X, y)  # more components than rows


def test_mse_network_validation_leaves_too_few_rows():
    X, y = _data(n=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="leaves 1 for training"):
            MSENetworkRegressor(validation_fraction=0.5).fit(X, y)


def test_mse_network_shares_the_mdn_batch_size_rule():
    X, y = _data(n=300)
    model = MSENetworkRegressor(hidden_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    assert (model.batch_size, model.batch_size_, model.learning_rate) == ("auto", 64, 3e-3)
    assert MDNRegressor()._batch_size(270) == model.batch_size_
