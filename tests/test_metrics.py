"""Reference tests for mdnkit.metrics.

Expected values come from the mixture *parameters* through NumPy/SciPy (closed forms,
quadrature, root finding) or from Monte Carlo draws made with NumPy, never from the code under
test. Every random draw is seeded, so the suite is deterministic; each statistical check states
its nominal failure rate, i.e. how often it would fail for an unlucky seed if the code were right.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats
import torch

from mdnkit import GaussianMixture, MDNRegressor, metrics


def _params(n: int, n_components: int, seed: int, spread: float = 3.0):
    """Seeded 1-D mixture parameters: log weights, means, standard deviations, each (n, K)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, n_components))
    log_weights = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    loc = spread * rng.normal(size=(n, n_components))
    scale = rng.uniform(0.2, 1.5, size=(n, n_components))
    return log_weights, loc, scale


def _mixture(log_weights, loc, scale) -> GaussianMixture:
    """The 1-D GaussianMixture of numpy parameters (n, K)."""
    return GaussianMixture(torch.as_tensor(log_weights), torch.as_tensor(loc)[..., None],
                           scale=torch.as_tensor(scale)[..., None])


def _draw(log_weights, loc, scale, rng, size=None):
    """NumPy draws from each row's mixture: (n,) or (size, n)."""
    shape = (size, *loc.shape[:1]) if size else loc.shape[:1]
    cumulative = np.exp(log_weights).cumsum(-1)
    component = (rng.uniform(size=(*shape, 1)) > cumulative).sum(-1).clip(max=loc.shape[1] - 1)
    rows = np.arange(loc.shape[0])
    return loc[rows, component] + scale[rows, component] * rng.normal(size=shape)


def _cdf(x, w, mu, sigma):
    return float(np.sum(w * scipy.stats.norm.cdf((x - mu) / sigma)))


# ---------------------------------------------------------------------------------- CRPS
def test_crps_single_gaussian_matches_known_formula() -> None:
    loc = np.array([0.0, 1.0, -3.0, 10.0, 0.5])
    scale = np.array([1.0, 0.3, 2.0, 5.0, 1e-3])
    y = np.array([0.0, 2.0, -3.5, -4.0, 0.5005])
    dist = _mixture(np.zeros((5, 1)), loc[:, None], scale[:, None])
    z = (y - loc) / scale
    expected = scale * (z * (2 * scipy.stats.norm.cdf(z) - 1) + 2 * scipy.stats.norm.pdf(z) - 1 / math.sqrt(math.pi))
    np.testing.assert_allclose(metrics.crps(dist, y), expected, rtol=1e-12, atol=1e-15)


def test_crps_matches_quadrature_of_its_definition() -> None:
    log_weights, loc, scale = _params(5, 3, seed=1)
    y = np.array([0.0, -2.0, 4.0, 1.5, -7.0])
    expected = []
    for i in range(5):  # ∫_{-∞}^{y} F² + ∫_{y}^{∞} (1 - F)²
        w, mu, sigma = np.exp(log_weights[i]), loc[i], scale[i]
        below = scipy.integrate.quad(lambda x: _cdf(x, w, mu, sigma) ** 2, -np.inf, y[i], epsabs=1e-12)[0]
        above = scipy.integrate.quad(lambda x: (1 - _cdf(x, w, mu, sigma)) ** 2, y[i], np.inf, epsabs=1e-12)[0]
        expected.append(below + above)
    np.testing.assert_allclose(metrics.crps(_mixture(log_weights, loc, scale), y), expected, atol=1e-8)


def test_crps_matches_monte_carlo() -> None:
    log_weights, loc, scale = _params(6, 4, seed=2)
    rng = np.random.default_rng(3)
    y = _draw(log_weights, loc, scale, rng) + rng.normal(size=6)  # near, not from, each mixture
    n_draws = 200_000
    x, x_prime = _draw(log_weights, loc, scale, rng, n_draws), _draw(log_weights, loc, scale, rng, n_draws)
    terms = np.abs(x - y) - 0.5 * np.abs(x - x_prime)  # i.i.d. over draws, mean = CRPS
    estimate, standard_error = terms.mean(0), terms.std(0, ddof=1) / math.sqrt(n_draws)
    # 5 standard errors: two-sided normal tail 5.7e-7 per row, < 4e-6 for the six rows.
    assert np.all(np.abs(metrics.crps(_mixture(log_weights, loc, scale), y) - estimate) < 5 * standard_error)


def test_crps_is_batched_equivariant_and_chunk_independent(monkeypatch) -> None:
    log_weights, loc, scale = _params(50, 3, seed=4)
    y = np.random.default_rng(5).normal(size=50)
    dist = _mixture(log_weights, loc, scale)
    whole = metrics.crps(dist, y)
    one_by_one = [metrics.crps(_mixture(log_weights[i:i + 1], loc[i:i + 1], scale[i:i + 1]), y[i:i + 1])[0]
                  for i in range(50)]
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-12)
    monkeypatch.setattr(metrics, "_CRPS_CHUNK", 7 * 9)  # 7 rows per chunk, the last one partial
    np.testing.assert_allclose(metrics.crps(dist, y), whole, rtol=1e-12)
    # CRPS has the units of y: for a + b Y it scales by b.
    moved = dist.affine(torch.tensor([2.0]), torch.tensor([3.0]))
    np.testing.assert_allclose(metrics.crps(moved, 2.0 + 3.0 * y), 3.0 * whole, rtol=1e-12)


def test_crps_accepts_float32_and_torch_targets() -> None:
    log_weights, loc, scale = _params(10, 2, seed=6)
    y = np.linspace(-3, 3, 10)
    dist = _mixture(log_weights, loc, scale)
    reference = metrics.crps(dist, y)
    assert reference.dtype == np.float64 and reference.shape == (10,)
    np.testing.assert_allclose(metrics.crps(dist.to(torch.float32), torch.as_tensor(y[:, None])), reference,
                               rtol=1e-5)


# ---------------------------------------------------------------------------------- likelihood
def test_log_likelihood_and_nll_match_scipy_in_2d() -> None:
    rng = np.random.default_rng(7)
    n, n_components = 8, 3
    logits = rng.normal(size=(n, n_components))
    loc = rng.normal(size=(n, n_components, 2))
    tril = np.tril(rng.normal(size=(n, n_components, 2, 2)), -1)
    tril += np.eye(2) * rng.uniform(0.5, 1.5, size=(n, n_components, 1, 2))
    y = rng.normal(size=(n, 2))
    dist = GaussianMixture(torch.as_tensor(logits), torch.as_tensor(loc), scale_tril=torch.as_tensor(tril))
    log_weights = logits - scipy.special.logsumexp(logits, axis=1, keepdims=True)
    expected = [scipy.special.logsumexp([log_weights[i, k] + scipy.stats.multivariate_normal.logpdf(
        y[i], loc[i, k], tril[i, k] @ tril[i, k].T) for k in range(n_components)]) for i in range(n)]
    np.testing.assert_allclose(metrics.log_likelihood(dist, y), expected, rtol=1e-12)
    assert metrics.nll(dist, y) == pytest.approx(-np.mean(expected), rel=1e-12)


# ---------------------------------------------------------------------------------- PIT, calibration
def test_pit_matches_scipy_cdf() -> None:
    log_weights, loc, scale = _params(6, 3, seed=8)
    y = np.linspace(-4, 4, 6)
    expected = [_cdf(y[i], np.exp(log_weights[i]), loc[i], scale[i]) for i in range(6)]
    dist = _mixture(log_weights, loc, scale)
    np.testing.assert_allclose(metrics.pit(dist, y), expected, rtol=1e-12)
    np.testing.assert_allclose(metrics.pit(dist, y[:, None]), expected, rtol=1e-12)


def _dkw_epsilon(n: int, failure_rate: float = 1e-6) -> float:
    """Dvoretzky-Kiefer-Wolfowitz: P(sup_p |F_n(p) - F(p)| > ε) <= 2 exp(-2 n ε²) = failure_rate."""
    return math.sqrt(math.log(2 / failure_rate) / (2 * n))


def test_calibration_error_small_on_own_samples_large_when_shifted() -> None:
    n = 2000
    log_weights, loc, scale = _params(n, 3, seed=9)
    y = _draw(log_weights, loc, scale, np.random.default_rng(10))
    # PIT of the dist's own draws is exactly uniform, and the error is a mean of |F_n(p) - p|, so
    # DKW bounds it by ε = 0.060 with failure rate <= 1e-6 (typical value ~0.31/√n = 0.007).
    assert metrics.calibration_error(_mixture(log_weights, loc, scale), y) < _dkw_epsilon(n)

    # N(0, 1) data against N(1, 1): P(PIT <= p) = Φ(Φ⁻¹(p) + 1), a population error of ~0.29;
    # the empirical error is within the same DKW ε of it (failure rate <= 1e-6).
    y = np.random.default_rng(11).normal(size=n)
    shifted = _mixture(np.zeros((n, 1)), np.ones((n, 1)), np.ones((n, 1)))
    levels = np.linspace(0.01, 0.99, 99)
    population = np.abs(scipy.stats.norm.cdf(scipy.stats.norm.ppf(levels) + 1) - levels).mean()
    assert population > 0.25
    assert abs(metrics.calibration_error(shifted, y, levels) - population) < _dkw_epsilon(n)


def test_calibration_error_rejects_bad_levels() -> None:
    dist = _mixture(*_params(3, 2, seed=12))
    with pytest.raises(ValueError, match="probabilities in"):
        metrics.calibration_error(dist, np.zeros(3), levels=[0.5, 1.5])


# ---------------------------------------------------------------------------------- intervals
@pytest.mark.parametrize("kind", ["central", "hdi"])
def test_interval_coverage_is_nominal_on_own_samples(kind: str) -> None:
    n = 2000
    log_weights, loc, scale = _params(n, 3, seed=13)
    dist = _mixture(log_weights, loc, scale)
    y = _draw(log_weights, loc, scale, np.random.default_rng(14))
    for coverage in (0.5, 0.9):
        covered, width = metrics.interval_coverage(dist, y, coverage, kind=kind)
        # Covered rows ~ Binomial(n, coverage): 4.5 sd is a two-sided 6.8e-6 per check.
        assert abs(covered - coverage) < 4.5 * math.sqrt(coverage * (1 - coverage) / n)
        assert width > 0


def test_hdi_is_never_wider_than_central() -> None:
    dist = _mixture(*_params(300, 3, seed=15))
    y = np.zeros(300)
    for coverage in (0.5, 0.9):
        _, central = metrics.interval_coverage(dist, y, coverage, kind="central")
        _, hdi = metrics.interval_coverage(dist, y, coverage, kind="hdi")
        assert hdi <= central + 1e-9


@pytest.mark.parametrize("coverage", [0.5, 0.8, 0.95])
def test_interval_widths_of_a_gaussian_match_scipy(coverage: float) -> None:
    scale = np.array([[0.5], [1.0], [3.0]])
    dist = _mixture(np.zeros((3, 1)), np.array([[0.0], [5.0], [-2.0]]), scale)
    expected = 2 * scipy.stats.norm.ppf(0.5 + coverage / 2) * scale.mean()  # mean of 2 z σ
    y = np.array([0.0, 5.0, -2.0])  # each at its mean: always covered
    for kind in ("central", "hdi"):
        covered, width = metrics.interval_coverage(dist, y, coverage, kind=kind)
        assert covered == 1.0
        assert width == pytest.approx(expected, rel=1e-8)


def test_hdi_of_two_separated_modes_is_a_union() -> None:
    # Equal components at ±10 (tail overlap Φ(-10) ~ 1e-23): two intervals of 2 z σ each.
    dist = _mixture(np.log([[0.5, 0.5]] * 2), np.array([[-10.0, 10.0]] * 2), np.ones((2, 2)))
    z = scipy.stats.norm.ppf(0.5 + 0.9 / 2)
    covered, width = metrics.interval_coverage(dist, np.array([10.0, -10.0 + 0.99 * z]), 0.9, kind="hdi")
    assert covered == 1.0 and width == pytest.approx(4 * z, rel=1e-8)
    covered, _ = metrics.interval_coverage(dist, np.array([0.0, 10.0 + 1.01 * z]), 0.9, kind="hdi")
    assert covered == 0.0
    covered, _ = metrics.interval_coverage(dist, np.array([0.0, 0.0]), 0.9, kind="central")
    assert covered == 1.0  # the central interval spans the empty middle


def test_interval_coverage_rejects_bad_arguments() -> None:
    dist = _mixture(*_params(3, 2, seed=16))
    with pytest.raises(ValueError, match="kind must be"):
        metrics.interval_coverage(dist, np.zeros(3), 0.9, kind="equal-tailed")
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\)"):
        metrics.interval_coverage(dist, np.zeros(3), 1.0)


# ---------------------------------------------------------------------------------- energy score
@pytest.mark.parametrize("chunk", [None, 3 * 2000])  # default, or 3 rows of draws at a time
def test_energy_score_reduces_to_crps_in_1d(chunk: int | None, monkeypatch) -> None:
    if chunk is not None:
        monkeypatch.setattr(metrics, "_SAMPLE_CHUNK", chunk)
    n = 400
    log_weights, loc, scale = _params(n, 3, seed=17)
    dist = _mixture(log_weights, loc, scale)
    y = _draw(log_weights, loc, scale, np.random.default_rng(18))
    difference = metrics.energy_score(dist, y, n_samples=2000, random_state=0) - metrics.crps(dist, y)
    # Rows are independent unbiased estimates: |mean| < 5 standard errors, failure rate ~6e-7.
    assert abs(difference.mean()) < 5 * difference.std(ddof=1) / math.sqrt(n)


def test_energy_score_is_lowest_at_the_truth_in_2d() -> None:
    n = 2000
    logits = torch.tensor([0.0, 0.5]).expand(n, 2)
    loc = torch.tensor([[-1.0, 0.5], [1.5, -0.5]]).expand(n, 2, 2)
    tril = torch.tensor([[[1.0, 0.0], [0.6, 0.8]], [[0.5, 0.0], [-0.2, 0.7]]]).expand(n, 2, 2, 2)
    truth = GaussianMixture(logits, loc, scale_tril=tril)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(20)
        y = truth.sample().numpy()
    best = metrics.energy_score(truth, y, n_samples=200, random_state=0)
    # Same seed: alternatives reuse the truth's draws, shifted or scaled (common random numbers),
    # so row-wise differences are precise. Each must be worse by more than 5 paired standard
    # errors over the independent rows (observed: 13-22 SE over seeds 0-4).
    alternatives = [GaussianMixture(logits, loc + shift, scale_tril=tril) for shift in (-0.5, 0.5)]
    alternatives += [GaussianMixture(logits, loc, scale_tril=factor * tril) for factor in (0.6, 1.6)]
    for alternative in alternatives:
        difference = metrics.energy_score(alternative, y, n_samples=200, random_state=0) - best
        assert difference.mean() > 5 * difference.std(ddof=1) / math.sqrt(n)


def test_energy_score_is_seeded_and_leaves_global_rng_alone() -> None:
    dist = _mixture(*_params(20, 2, seed=21))
    state = torch.random.get_rng_state()
    first = metrics.energy_score(dist, np.zeros(20), n_samples=50, random_state=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    np.testing.assert_array_equal(first, metrics.energy_score(dist, np.zeros(20), n_samples=50, random_state=3))
    with pytest.raises(ValueError, match="n_samples must be at least 2"):
        metrics.energy_score(dist, np.zeros(20), n_samples=1)


# ---------------------------------------------------------------------------------- point errors
def _reference_points(w, mu, sigma):
    """Mean, median (brentq) and highest mode (bounded search near each mean) of one 1-D mixture."""
    density = lambda x: np.sum(w * scipy.stats.norm.pdf(x, mu, sigma))  # noqa: E731
    median = scipy.optimize.brentq(lambda x: _cdf(x, w, mu, sigma) - 0.5, -50, 50, xtol=1e-13)
    peaks = [scipy.optimize.minimize_scalar(lambda x: -density(x), bounds=(m - s, m + s), method="bounded",
                                            options={"xatol": 1e-10}).x for m, s in zip(mu, sigma)]
    return np.sum(w * mu), median, max(peaks, key=density)


def test_point_errors_match_numpy_references() -> None:
    log_weights, loc, scale = _params(15, 3, seed=22)
    y = np.random.default_rng(23).normal(size=15)
    points = np.array([_reference_points(np.exp(log_weights[i]), loc[i], scale[i]) for i in range(15)])
    errors = metrics.point_errors(_mixture(log_weights, loc, scale), y)
    for j, name in enumerate(("mean", "median", "mode")):
        residual = points[:, j] - y
        assert errors[f"rmse_{name}"] == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-6)
        assert errors[f"mae_{name}"] == pytest.approx(np.mean(np.abs(residual)), rel=1e-6)


def test_point_errors_in_2d_average_over_rows_and_columns() -> None:
    loc = torch.tensor([[[0.0, 0.0], [4.0, 4.0]]]).expand(3, 2, 2)
    dist = GaussianMixture(torch.tensor([[0.0, 1.0]]).expand(3, 2), loc, scale=torch.ones(3, 2, 2))
    y = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    errors = metrics.point_errors(dist, y)
    assert set(errors) == {"rmse_mean", "mae_mean", "rmse_mode", "mae_mode"}  # no median in 2-D
    mean = 4.0 * math.e / (1 + math.e)  # both coordinates
    assert errors["mae_mean"] == pytest.approx(np.mean(np.abs(y - mean)), rel=1e-12)
    assert errors["rmse_mean"] == pytest.approx(np.sqrt(np.mean((y - mean) ** 2)), rel=1e-12)
    # Components 4√2 ≈ 5.7 σ apart: the heavier one's peak sits within 1e-6 of its mean.
    assert errors["mae_mode"] == pytest.approx(np.mean(np.abs(y - 4.0)), abs=1e-5)


def test_metrics_reject_mismatched_shapes() -> None:
    dist = _mixture(*_params(4, 2, seed=24))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\) or \(4, 1\)"):
        metrics.nll(dist, np.zeros(5))
    with pytest.raises(ValueError, match="needs a 1-D target"):
        metrics.crps(GaussianMixture(torch.zeros(4, 1), torch.zeros(4, 1, 2), scale=torch.ones(4, 1)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"batch of shape \(n,\)"):
        metrics.nll(dist.expand((2, 4)), np.zeros((2, 4)))


# ---------------------------------------------------------------------------------- evaluate
class _Fixed:
    """A stand-in model whose predict_dist returns a given distribution, counting calls."""

    def __init__(self, dist: GaussianMixture) -> None:
        self.dist, self.calls = dist, 0

    def predict_dist(self, X):
        self.calls += 1
        return self.dist


def test_evaluate_1d_keys_and_values() -> None:
    log_weights, loc, scale = _params(200, 3, seed=25)
    dist = _mixture(log_weights, loc, scale)
    y = _draw(log_weights, loc, scale, np.random.default_rng(26))
    model = _Fixed(dist)
    results = metrics.evaluate(model, None, y)
    assert model.calls == 1
    expected_keys = {"nll", "crps", "rmse_mean", "mae_mean", "rmse_median", "mae_median", "rmse_mode",
                     "mae_mode", "pit_calibration_error"}
    expected_keys |= {f"{stat}_{kind}_{p}" for stat in ("coverage", "width") for kind in ("central", "hdi")
                      for p in ("50", "80", "90", "95")}
    assert set(results) == expected_keys
    assert all(type(value) is float for value in results.values())
    assert results["crps"] == pytest.approx(metrics.crps(dist, y).mean(), rel=1e-12)
    assert results["nll"] == pytest.approx(metrics.nll(dist, y), rel=1e-12)
    assert (results["coverage_hdi_80"], results["width_hdi_80"]) == pytest.approx(
        metrics.interval_coverage(dist, y, 0.8, kind="hdi"), rel=1e-12)
    assert set(metrics.evaluate(model, None, y, coverages=(0.975,))) >= {"coverage_central_97.5", "width_hdi_97.5"}


def test_evaluate_2d_keys() -> None:
    dist = GaussianMixture(torch.zeros(30, 2), torch.randn(30, 2, 2, generator=torch.Generator().manual_seed(0)),
                           scale=torch.ones(30, 2))
    results = metrics.evaluate(_Fixed(dist), None, np.zeros((30, 2)), n_samples=100)
    assert set(results) == {"nll", "energy_score", "rmse_mean", "mae_mean", "rmse_mode", "mae_mode"}
    assert results == metrics.evaluate(_Fixed(dist), None, np.zeros((30, 2)), n_samples=100)  # seeded


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 5 epochs on purpose
def test_evaluate_on_a_fitted_estimator() -> None:
    rng = np.random.default_rng(27)
    X = rng.uniform(-1, 1, size=(150, 1))
    y = 3.0 * X[:, 0] + 0.3 * rng.normal(size=150) + 100.0  # far from 0: original units matter
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0).fit(X, y)
    results = metrics.evaluate(model, X, y)
    assert results["nll"] == pytest.approx(-model.score(X, y), rel=1e-10)
    assert results["rmse_mean"] == pytest.approx(np.sqrt(np.mean((model.predict(X) - y) ** 2)), rel=1e-10)
    lower, upper = model.predict_interval(X, 0.9).T
    assert results["coverage_central_90"] == pytest.approx(np.mean((lower <= y) & (y <= upper)))
