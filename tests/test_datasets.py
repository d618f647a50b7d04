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


# ===================================================================== the other seeds' data sets

from sklearn.datasets import make_moons  # noqa: E402

from mdnkit.datasets import (  # noqa: E402
    SHAPES,
    gpflow_sinusoid_log_density,
    make_gpflow_sinusoid,
    make_moons_conditional,
    make_prml_inverse,
    make_robot_arm,
    make_shape,
    moons_conditional_log_density,
    prml_inverse_log_density,
    robot_arm_log_density,
    shape_log_density,
)

GENERATORS = {
    "gpflow": (make_gpflow_sinusoid, (200, 1), (200,)),
    "moons": (make_moons_conditional, (200, 1), (200,)),
    "prml": (make_prml_inverse, (4000, 1), (4000,)),
    "robot": (make_robot_arm, (1000, 2), (1000, 2)),
}


@pytest.mark.parametrize("key", list(GENERATORS))
def test_default_shapes_dtypes_and_reproducibility(key):
    make, x_shape, y_shape = GENERATORS[key]
    X, y = make(random_state=3)
    assert X.shape == x_shape and y.shape == y_shape
    assert X.dtype == np.float64 and y.dtype == np.float64
    X2, y2 = make(random_state=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert not np.array_equal(X, make(random_state=4)[0])
    with pytest.raises(ValueError, match="noise"):
        make(10, noise=-1.0)
    with pytest.raises(ValueError, match="n_samples"):
        make(-1)


def test_gpflow_sinusoid_reproduces_the_notebook_bit_for_bit():
    np.random.seed(1)  # the notebook's recipe, verbatim
    Y = np.linspace(-2, 2, 200)[:, None]
    X = np.sin(4 * Y) * 2.0 + Y * 0.5
    X += np.random.randn(200, 1) * 0.05
    Y += np.random.randn(200, 1) * 0.05
    X_ours, y_ours = make_gpflow_sinusoid(200, 0.05, random_state=np.random.RandomState(1))
    np.testing.assert_array_equal(X_ours, X)
    np.testing.assert_array_equal(y_ours, Y[:, 0])
    X0, y0 = make_gpflow_sinusoid(50, noise=0.0)
    np.testing.assert_array_equal(y0, np.linspace(-2, 2, 50))
    np.testing.assert_allclose(X0[:, 0], 2 * np.sin(4 * y0) + 0.5 * y0, atol=1e-15)


def test_moons_are_the_notebooks_columns():
    data, _ = make_moons(n_samples=200, shuffle=True, noise=0.05, random_state=7)
    X, y = make_moons_conditional(200, 0.05, random_state=7)
    np.testing.assert_array_equal(X, data[:, :1])
    np.testing.assert_array_equal(y, data[:, 1])
    X, y = make_moons_conditional(random_state=np.random.default_rng(0))  # Generator accepted
    assert X.shape == (200, 1)


def test_moons_design_matches_sklearn_without_noise():
    data, _ = make_moons(n_samples=201, shuffle=False, noise=0.0)
    a, b = datasets._moons_design(201)
    np.testing.assert_allclose(np.column_stack([a, b]), data, atol=1e-15)


def test_prml_inverse_formula_range_and_inversion():
    X, y = make_prml_inverse(4000, noise=0.0, random_state=0)
    assert np.all((y >= 0) & (y <= 1))
    np.testing.assert_allclose(X[:, 0], y + 0.3 * np.sin(2 * np.pi * y), atol=1e-15)
    X, y = make_prml_inverse(20_000, noise=0.1, random_state=1)
    resid = X[:, 0] - (y + 0.3 * np.sin(2 * np.pi * y))
    assert np.all(np.abs(resid) <= 0.1) and resid.min() < -0.099 and resid.max() > 0.099
    # The seed's draw order: all x, then all the noise.
    legacy = np.random.RandomState(5)
    t = legacy.uniform(0.0, 1.0, (100, 1))
    u = t + 0.3 * np.sin(2 * np.pi * t) + legacy.uniform(-0.1, 0.1, size=(100, 1))
    X, y = make_prml_inverse(100, random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(X, u)
    np.testing.assert_array_equal(y, t[:, 0])


def test_robot_arm_forward_kinematics_and_two_solutions():
    X, y = make_robot_arm(2000, noise=0.0, random_state=0)
    assert np.all((y[:, 0] >= 0.3) & (y[:, 0] <= 1.2))
    assert np.all((y[:, 1] >= np.pi / 2) & (y[:, 1] <= 1.5 * np.pi))
    l1, l2 = 0.8, 0.2
    np.testing.assert_allclose(X[:, 0], l1 * np.cos(y[:, 0]) + l2 * np.cos(y[:, 0] + y[:, 1]), atol=1e-15)
    np.testing.assert_allclose(X[:, 1], l1 * np.sin(y[:, 0]) + l2 * np.sin(y[:, 0] + y[:, 1]), atol=1e-15)
    # The mirrored elbow theta2' = 2 pi - theta2 (and its theta1') reaches the same hand position.
    r = np.hypot(X[:, 0], X[:, 1])
    theta2 = 2 * np.pi - y[:, 1]
    theta1 = np.arctan2(X[:, 1], X[:, 0]) - np.arctan2(l2 * np.sin(theta2), l1 + l2 * np.cos(theta2))
    np.testing.assert_allclose(l1 * np.cos(theta1) + l2 * np.cos(theta1 + theta2), X[:, 0], atol=1e-12)
    both = (theta1 >= 0.3) & (theta1 <= 1.2)
    assert both.mean() > 0.3  # a large share of hand positions has two solutions in the box
    assert np.all((r >= 0.6 - 1e-12) & (r <= math.sqrt(0.68) + 1e-12))


@pytest.mark.parametrize("name", SHAPES)
def test_shapes(name):
    X, y = make_shape(name, 500, random_state=0)
    assert X.shape == (500, 1) and y.shape == (500,)
    np.testing.assert_array_equal(X, make_shape(name, 500, random_state=0)[0])
    X0, y0 = make_shape(name, 2000, noise=0.0, random_state=1)
    x = X0[:, 0]
    if name == "ring":
        np.testing.assert_allclose(x**2 + y0**2, 1.0)
    elif name == "crossing":
        np.testing.assert_allclose(np.abs(y0), np.abs(x))
        assert 0.4 < np.mean(y0 * x > 0) < 0.6
    elif name == "fan":
        np.testing.assert_array_equal(y0, x)
        resid = make_shape(name, 20_000, noise=0.05, random_state=2)
        r = resid[1] - resid[0][:, 0]
        assert abs(np.std(r[resid[0][:, 0] > 0.9]) / np.std(r[resid[0][:, 0] < 0.1]) - 9.5 / 1.5) < 1.0
    else:
        assert np.all(np.abs(x) >= 0.3) and np.all(np.abs(x) <= 1.0)
        np.testing.assert_allclose(y0, np.sin(4 * x))
    with pytest.raises(ValueError, match="unknown shape"):
        make_shape("square")
    with pytest.raises(ValueError, match="unknown shape"):
        shape_log_density("square", [0.0], [0.0])


# ------------------------------------------------------------------ true conditional densities


def _integral(log_density, x0: float, lo: float, hi: float, n: int = 40_001) -> float:
    grid = np.linspace(lo, hi, n)
    p = np.exp(log_density(np.full(n, x0), grid))
    return float(np.trapezoid(p, grid) if hasattr(np, "trapezoid") else np.trapz(p, grid))


@pytest.mark.parametrize("x0", [-2.5, -1.0, 0.0, 0.3, 1.7])
def test_gpflow_and_moons_densities_integrate_to_one(x0):
    assert _integral(gpflow_sinusoid_log_density, x0, -4, 4) == pytest.approx(1.0, abs=1e-6)
    assert _integral(moons_conditional_log_density, x0 / 2 + 0.5, -2, 3) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("x0", [0.05, 0.3, 0.5, 0.62, 0.9])
def test_prml_density_integrates_to_one_and_is_uniform_on_branches(x0):
    assert _integral(prml_inverse_log_density, x0, -0.1, 1.1, 1_200_001) == pytest.approx(1.0, abs=1e-4)
    grid = np.linspace(0, 1, 10_001)
    lp = prml_inverse_log_density(np.full(grid.size, x0), grid)
    finite = lp[np.isfinite(lp)]
    np.testing.assert_allclose(finite, finite[0])  # uniform on its support
    inside = np.abs(x0 - (grid + 0.3 * np.sin(2 * np.pi * grid))) <= 0.1
    np.testing.assert_array_equal(np.isfinite(lp), inside)
    assert prml_inverse_log_density([[5.0]], [0.5])[0] == -np.inf  # unreachable input


@pytest.mark.parametrize("name", SHAPES)
@pytest.mark.parametrize("x0", [-0.8, 0.05, 0.5, 0.95])
def test_shape_densities_integrate_to_one(name, x0):
    x0 = abs(x0) if name == "fan" else x0  # the fan's support is x in [0, 1]
    assert _integral(lambda x, y: shape_log_density(name, x, y), x0, -6, 6, 120_001) == pytest.approx(1.0, abs=1e-6)


def test_design_densities_match_bayes_on_samples():
    """Mixture-over-design densities agree with the generators' samples (rows at a fixed x)."""
    xs, ys = [], []
    for seed in range(300):
        X, y = make_moons_conditional(200, 0.05, random_state=seed)
        xs.append(X[:, 0]); ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    sel = np.abs(x - 0.5) < 0.02
    mean_log_p = moons_conditional_log_density(x[sel], y[sel]).mean()
    # The average log density at the data exceeds that at shuffled targets (a wrong density would not).
    shuffled = moons_conditional_log_density(x[sel], np.random.default_rng(0).permutation(y)[: sel.sum()])
    assert mean_log_p > shuffled.mean() + 1.0


def test_robot_arm_density_integrates_to_one_and_is_bimodal():
    hand = np.array([0.55, 0.45])
    t1 = np.linspace(0.3, 1.2, 181)
    t2 = np.linspace(np.pi / 2, 1.5 * np.pi, 629)
    g1, g2 = np.meshgrid(t1, t2, indexing="ij")
    theta = np.column_stack([g1.ravel(), g2.ravel()])
    lp = robot_arm_log_density(np.tile(hand, (len(theta), 1)), theta, noise=0.05)
    p = np.exp(lp).reshape(g1.shape)
    total = np.trapezoid(np.trapezoid(p, t2, axis=1), t1) if hasattr(np, "trapezoid") else np.trapz(
        np.trapz(p, t2, axis=1), t1)
    assert total == pytest.approx(1.0, abs=2e-3)
    # Two separated peaks: elbow up and elbow down, mirrored about theta2 = pi.
    peak = np.unravel_index(np.argmax(p), p.shape)
    mirrored = p[:, t2 > np.pi].max() if t2[peak[1]] < np.pi else p[:, t2 < np.pi].max()
    assert mirrored > 0.3 * p.max()
    assert robot_arm_log_density([[0.5, 0.5]], [[0.1, 3.0]])[0] == -np.inf
    with pytest.raises(ValueError, match="shape"):
        robot_arm_log_density([[0.5, 0.5]], [0.1, 3.0])


def test_robot_arm_normaliser_is_resolution_independent(monkeypatch):
    X, y = make_robot_arm(50, random_state=4)
    coarse = robot_arm_log_density(X, y)
    monkeypatch.setattr(datasets, "_GL8_POINTS", 16)
    datasets._robot_arm_nodes.cache_clear()
    try:
        fine = robot_arm_log_density(X, y)
    finally:
        datasets._robot_arm_nodes.cache_clear()
    np.testing.assert_allclose(coarse, fine, atol=1e-6)
