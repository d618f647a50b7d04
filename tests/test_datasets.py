"""Tests for mdnkit.datasets: the inverted-sinusoid generator and its true log density."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.integrate import quad
from sklearn.model_selection import train_test_split

from mdnkit import datasets
from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid

Y_MAX = 10.5


def f(u):
    return 7.0 * np.sin(0.75 * u) + 0.5 * u


def _quad_breakpoints(x: float) -> list[float]:
    """Roots of f(u) = x and a 0.25 grid: where the integrand in u has its peaks."""
    u = np.linspace(-Y_MAX, Y_MAX, 200_001)
    g = f(u) - x
    roots = u[:-1][np.sign(g[:-1]) != np.sign(g[1:])]
    return sorted(set(roots.tolist()) | set(np.arange(-10.25, Y_MAX, 0.25).tolist()))


def quad_log_normaliser(x: float, noise: float) -> float:
    """log Z(x) = log ∫ N(x; f(u), noise^2) du over [-10.5, 10.5] by adaptive quadrature.

    The integrand is rescaled by its largest value so that Z does not underflow.
    """
    u = np.linspace(-Y_MAX, Y_MAX, 200_001)
    shift = 0.5 * (np.min(np.abs(f(u) - x)) / noise) ** 2
    z, _ = quad(
        lambda v: math.exp(-0.5 * ((x - f(v)) / noise) ** 2 + shift),
        -Y_MAX,
        Y_MAX,
        points=_quad_breakpoints(x),
        limit=2000,
        epsabs=0.0,
        epsrel=1e-13,
    )
    return math.log(z) - shift - math.log(noise) - 0.5 * math.log(2.0 * math.pi)


# ----------------------------------------------------------------------------- generator


def test_shapes_and_dtypes():
    X, y = make_inverted_sinusoid(123, random_state=0)
    assert X.shape == (123, 1)
    assert y.shape == (123,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    X, y = make_inverted_sinusoid(random_state=0)
    assert X.shape == (5000, 1) and y.shape == (5000,)
    X, y = make_inverted_sinusoid(0, random_state=0)
    assert X.shape == (0, 1) and y.shape == (0,)


def test_y_range_is_uniform_on_support():
    _, y = make_inverted_sinusoid(20_000, random_state=1)
    assert np.all(np.abs(y) <= Y_MAX)
    assert y.min() < -10.4 and y.max() > 10.4
    # U(-10.5, 10.5): mean 0, variance 21^2 / 12 = 36.75
    assert abs(y.mean()) < 0.15
    assert abs(y.var() - 36.75) < 1.0


@pytest.mark.parametrize("seed", [0, 7])
def test_noise_zero_gives_the_curve_exactly(seed):
    X, y = make_inverted_sinusoid(1000, noise=0.0, random_state=seed)
    np.testing.assert_array_equal(X[:, 0], np.sin(0.75 * y) * 7.0 + y * 0.5)
    np.testing.assert_allclose(X[:, 0], f(y), rtol=0, atol=1e-12)


def test_noise_residuals_have_the_requested_scale():
    X, y = make_inverted_sinusoid(20_000, noise=0.5, random_state=3)
    resid = X[:, 0] - f(y)
    assert abs(resid.mean()) < 0.02
    assert abs(resid.std() - 0.5) < 0.01


def test_reproducible_with_random_state():
    X1, y1 = make_inverted_sinusoid(500, random_state=42)
    X2, y2 = make_inverted_sinusoid(500, random_state=42)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    X3, y3 = make_inverted_sinusoid(500, random_state=43)
    assert not np.array_equal(y1, y3)
    # Generator passed in is used as is; int seeds default_rng.
    X4, y4 = make_inverted_sinusoid(500, random_state=np.random.default_rng(42))
    np.testing.assert_array_equal(X1, X4)
    np.testing.assert_array_equal(y1, y4)


def test_random_state_instance_reproduces_the_seed_recipe():
    """A RandomState reproduces the Edward tutorial's np.random draws bit for bit."""
    n = 5000
    legacy = np.random.RandomState(0)
    y_data = legacy.uniform(-10.5, 10.5, n)
    r_data = legacy.normal(size=n)
    x_data = np.sin(0.75 * y_data) * 7.0 + y_data * 0.5 + r_data * 1.0
    X, y = make_inverted_sinusoid(n, random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(y, y_data)
    np.testing.assert_array_equal(X, x_data.reshape(n, 1))


@pytest.mark.parametrize("kwargs", [{"noise": -1.0}, {"noise": float("nan")}, {"n_samples": -1}])
def test_generator_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_inverted_sinusoid(**{"n_samples": 10, **kwargs})


# --------------------------------------------------------------------------- log density


@pytest.mark.parametrize("noise", [1.0, 0.3])
@pytest.mark.parametrize("x", [-13.0, -4.2, 0.0, 2.0, 9.5, 15.0])
def test_log_density_integrates_to_one(x, noise):
    def density(v: float) -> float:
        return float(np.exp(inverted_sinusoid_log_density([[x]], [v], noise=noise)[0]))

    total, _ = quad(density, -Y_MAX, Y_MAX, points=_quad_breakpoints(x), limit=500)
    assert total == pytest.approx(1.0, rel=1e-8)


@pytest.mark.parametrize("noise", [1.0, 0.3, 0.05, 3.0])
def test_normaliser_matches_quad(noise):
    xs = np.array([-20.0, -12.5, -5.0, 0.0, 0.3, 7.7, 12.248, 14.0, 17.0])
    ys = np.linspace(-9.0, 9.0, xs.size)
    got = inverted_sinusoid_log_density(xs[:, None], ys, noise=noise)
    log_lik = -0.5 * ((xs - f(ys)) / noise) ** 2 - math.log(noise) - 0.5 * math.log(2 * math.pi)
    want = log_lik - np.array([quad_log_normaliser(float(x), noise) for x in xs])
    # relative accuracy of Z (and so of p) to 1e-8  <=>  absolute accuracy of log p
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-8)


def test_log_density_outside_support_and_broadcasting():
    out = inverted_sinusoid_log_density([[0.0], [1.0], [2.0]], [10.6, -11.0, 10.5])
    assert out[0] == -np.inf and out[1] == -np.inf
    assert np.isfinite(out[2])
    # one x against a grid of y; 1-D X accepted
    grid = np.linspace(-10, 10, 7)
    a = inverted_sinusoid_log_density([[2.0]], grid)
    b = inverted_sinusoid_log_density(np.full(7, 2.0), grid)
    c = inverted_sinusoid_log_density(np.full((7, 1), 2.0), grid)
    assert a.shape == (7,)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)
    # finite far from the curve, where Z(x) itself underflows
    assert np.all(np.isfinite(inverted_sinusoid_log_density([[60.0], [-60.0]], [10.0, -10.0])))


def test_log_density_rejects_bad_arguments():
    with pytest.raises(ValueError):
        inverted_sinusoid_log_density([[0.0]], [0.0], noise=0.0)
    with pytest.raises(ValueError):
        inverted_sinusoid_log_density(np.zeros((3, 2)), np.zeros(3))


def test_log_density_matches_bayes_on_samples():
    """Histogram of y in a thin slab of x agrees with p(y | x) (the generator is right)."""
    X, y = make_inverted_sinusoid(400_000, random_state=5)
    x0 = 2.0
    sel = np.abs(X[:, 0] - x0) < 0.05
    edges = np.linspace(-Y_MAX, Y_MAX, 22)
    hist, _ = np.histogram(y[sel], bins=edges, density=True)
    fine = np.linspace(-Y_MAX, Y_MAX, 21 * 200 + 1)
    dens = np.exp(inverted_sinusoid_log_density([[x0]], fine))
    expected = np.array([dens[(fine >= lo) & (fine < hi)].mean() for lo, hi in zip(edges[:-1], edges[1:])])
    assert sel.sum() > 2000
    assert np.max(np.abs(hist - expected)) < 0.03


def test_oracle_nll_on_the_seed_split(capsys):
    X, y = make_inverted_sinusoid(5000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)
    assert X_train.shape == (3750, 1) and X_test.shape == (1250, 1)
    oracle_nll = float(-inverted_sinusoid_log_density(X_test, y_test).mean())
    with capsys.disabled():
        print(f"\noracle test NLL (inverted sinusoid, seed split): {oracle_nll:.4f} nats")
    assert 1.0 < oracle_nll < 1.6
    # Much better than any single Gaussian for the y marginal (the MLE one is the best of them).
    mu, sigma = y_test.mean(), y_test.std()
    gauss_nll = float(np.mean(0.5 * ((y_test - mu) / sigma) ** 2 + np.log(sigma) + 0.5 * math.log(2 * math.pi)))
    assert oracle_nll < gauss_nll - 1.0
    # Also better than the true marginal U(-10.5, 10.5) itself: log(21) ≈ 3.04 nats.
    assert oracle_nll < math.log(21.0)


def test_docstring_examples():
    result = doctest.testmod(datasets, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
