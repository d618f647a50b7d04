"""Rounded targets: grid detection, bin probabilities against references, and fits on them.

References are independent of the code: SciPy's cdfs in the body of the distributions, and
mpmath at 60 digits in the tails, where a float64 difference of cdfs rounds to 0 or 1.
"""

from __future__ import annotations

import math
import warnings

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats

import mdnkit
from mdnkit import MDNRegressor, RoundedTargetWarning, find_grid
from mdnkit import io as mio
from mdnkit.distributions import GaussianMixture
from mdnkit.laplace import LaplaceMixture
from mdnkit.lognormal import LogNormalMixture

TINY = {"n_components": 2, "hidden_sizes": (8,), "max_epochs": 5, "input_noise": 0.0, "random_state": 0}
mpmath.mp.dps = 60


def rounded_rows(n: int, seed: int, noise: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``x ~ U(-2, 2)``, latent ``y* = x + noise·ε``, recorded ``y = round(y*)``: ``(X, y, x)``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    return x[:, None], np.round(x + noise * rng.normal(size=n)), x


# ============================================================================ grid detection
def test_integer_scores_are_a_grid_of_one():
    y = np.random.default_rng(0).integers(3, 9, 400).astype(float)
    assert find_grid(y) == (1.0, 0.0, 6)


def test_half_unit_grid_with_an_offset():
    heights = np.round(np.random.default_rng(1).normal(170, 10, 1000) * 2) / 2 + 0.25  # 100-odd values
    grid = find_grid(heights)
    assert grid.step == 0.5 and grid.origin == 0.25 and grid.n_values == len(np.unique(heights))


def test_grid_step_is_the_common_divisor_not_the_smallest_gap():
    assert find_grid(np.array([0.0, 2.0, 5.0] * 10)).step == 1.0  # no two values are 1 apart
    assert find_grid(np.round(np.random.default_rng(2).normal(size=500), 1)).step == 0.1


def test_continuous_and_scarce_data_are_not_grids():
    rng = np.random.default_rng(3)
    assert find_grid(rng.normal(size=1000)) is None
    assert find_grid(rng.normal(size=1000).astype(np.float32)) is None  # float32 ties are rare too
    assert find_grid(np.arange(19.0) % 2) is None  # 19 rows: too few to tell
    assert find_grid(np.arange(100.0)) is None  # a grid, but every value once: nothing to spike on
    assert find_grid(np.r_[np.zeros(30), np.ones(30), [0.5 + 1e-3]]) is None  # one value off the grid


# ============================================================================ warning in fit
def test_fit_warns_once_with_the_grid_and_not_with_a_resolution():
    X, y, _ = rounded_rows(200, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # an ensemble after a noise search, and a search of K: their inner fits must not warn again
        MDNRegressor(**{**TINY, "input_noise": "auto", "n_estimators": 2, "max_epochs": 2}).fit(X, y)
        MDNRegressor(**{**TINY, "n_components": "auto", "max_epochs": 2}).fit(X, y)  # a search of K: once more
    messages = [str(w.message) for w in caught if issubclass(w.category, RoundedTargetWarning)]
    assert len(messages) == 2 and messages[0] == messages[1]
    assert "target y looks rounded" in messages[0] and "grid of step 1" in messages[0]
    assert "target_resolution=1" in messages[0] and f"{len(np.unique(y))} distinct values" in messages[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RoundedTargetWarning)
        MDNRegressor(**TINY, target_resolution=1).fit(X, y)
        MDNRegressor(**TINY).fit(X, y + 1e-3 * np.random.default_rng(0).normal(size=len(y)))  # continuous


def test_warning_names_the_column_of_a_frame():
    pd = pytest.importorskip("pandas")
    X, y, _ = rounded_rows(200, 0)
    targets = pd.DataFrame({"score": y / 2, "weight": np.linspace(0, 1, len(y)) ** 2})
    with pytest.warns(RoundedTargetWarning, match=r"target 'score' looks rounded: .* grid of step 0.5"):
        MDNRegressor(**TINY).fit(X, targets)


# ============================================================================ bin probabilities
def _random_gaussian(k: int, d: int, seed: int, dtype=torch.float64) -> GaussianMixture:
    g = torch.Generator().manual_seed(seed)
    return GaussianMixture(torch.randn(5, k, generator=g, dtype=dtype), 3 * torch.randn(5, k, d, generator=g, dtype=dtype),
                           scale=0.2 + torch.rand(5, k, d, generator=g, dtype=dtype))


def test_gaussian_bin_probability_matches_scipy():
    mixture = _random_gaussian(3, 2, 0)
    y = torch.round(mixture.sample((4,)) * 2) / 2  # [4, 5, 2] on a grid of 0.5
    got = mixture.interval_log_prob(y - 0.25, y + 0.25).numpy()
    w, loc, scale = (t.numpy() for t in (mixture.weights, mixture.loc, mixture.scale))
    yy = y.numpy()[..., None, :]  # [4, 5, 1, 2]
    per_dim = stats.norm.cdf(yy + 0.25, loc, scale) - stats.norm.cdf(yy - 0.25, loc, scale)  # [4, 5, 3, 2]
    expected = np.log((w * per_dim.prod(-1)).sum(-1))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def _mp_normal_interval(a: float, b: float) -> mpmath.mpf:
    """``Φ(b) - Φ(a)`` at 60 digits from mpmath's ``erfc``, which keeps relative accuracy in the
    far tail (exponents beyond float64's range included): upper tails as ``(erfc(a/√2) -
    erfc(b/√2)) / 2``, others as the mirror image, so no difference of two numbers near 1."""
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a + b < 0:
        a, b = -b, -a
    return (mpmath.erfc(a / mpmath.sqrt(2)) - mpmath.erfc(b / mpmath.sqrt(2))) / 2


@pytest.mark.parametrize("lower, upper", [(30.0, 31.0), (-41.0, -40.0), (200.0, 200.5), (-0.5, 0.5), (8.0, 8.0 + 1e-6)])
def test_gaussian_bin_far_in_the_tails_matches_mpmath(lower, upper):
    """Naive ``cdf(b) - cdf(a)`` gives 0 (log -inf) in the upper tail from z = 9 on; this does not."""
    loc, scale = torch.tensor([[[0.0]], [[1.0]]], dtype=torch.float64), torch.tensor([[[1.0]], [[2.0]]], dtype=torch.float64)
    logits = torch.tensor([[0.0], [0.0]], dtype=torch.float64)
    got = GaussianMixture(logits, loc, scale=scale).interval_log_prob(torch.tensor([[lower]] * 2, dtype=torch.float64),
                                                                    torch.tensor([[upper]] * 2, dtype=torch.float64))
    expected = [float(mpmath.log(_mp_normal_interval((lower - m) / s, (upper - m) / s))) for m, s in ((0, 1), (1, 2))]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10)


def test_gaussian_bin_mixes_components_by_weight_in_the_tail():
    logits = torch.log(torch.tensor([0.3, 0.7], dtype=torch.float64))
    loc = torch.tensor([[0.0], [5.0]], dtype=torch.float64)
    scale = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    got = float(GaussianMixture(logits, loc, scale=scale).interval_log_prob(torch.tensor([40.0]).double(),
                                                                            torch.tensor([41.0]).double()))
    expected = mpmath.log(0.3 * _mp_normal_interval(40, 41) + 0.7 * _mp_normal_interval(70, 72))
    assert got == pytest.approx(float(expected), rel=1e-10)


def test_isotropic_and_one_dimensional_full_covariance_give_the_diagonal_bins():
    diagonal = _random_gaussian(3, 1, 1)
    y = torch.randn(5, 1, dtype=torch.float64)
    expected = diagonal.interval_log_prob(y - 0.3, y + 0.3)
    isotropic = GaussianMixture(diagonal.logits, diagonal.loc, scale=diagonal.scale[..., 0])
    full = GaussianMixture(diagonal.logits, diagonal.loc, scale_tril=diagonal.scale.unsqueeze(-1))
    for other in (isotropic, full):
        torch.testing.assert_close(other.interval_log_prob(y - 0.3, y + 0.3), expected, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="full-covariance mixture over a 2-D target"):
        GaussianMixture(torch.zeros(2), torch.zeros(2, 2), scale_tril=torch.eye(2).expand(2, 2, 2)).interval_log_prob(
            torch.zeros(2), torch.ones(2))


def test_laplace_and_lognormal_bins_match_scipy():
    g = torch.Generator().manual_seed(4)
    logits, loc, scale = torch.randn(6, 3, generator=g).double(), torch.randn(6, 3, 1, generator=g).double(), \
        (0.3 + torch.rand(6, 3, 1, generator=g)).double()
    y = torch.tensor([-30.0, -1.0, 0.0, 0.5, 2.0, 30.0], dtype=torch.float64)[:, None]  # far tails included
    w = torch.softmax(logits, -1).numpy()
    m, s = loc[..., 0].numpy(), scale[..., 0].numpy()
    got = LaplaceMixture(logits, loc, scale).interval_log_prob(y - 0.5, y + 0.5).numpy()
    # the Laplace tails are exponential: a log-space reference from SciPy's logcdf / logsf
    lo, hi = y.numpy() - 0.5, y.numpy() + 0.5
    upper = (lo + hi) / 2 > m
    with np.errstate(divide="ignore"):  # in the branch np.where drops
            log_terms = np.where(
            upper, stats.laplace.logsf(lo, m, s) + np.log1p(-np.exp(stats.laplace.logsf(hi, m, s) - stats.laplace.logsf(lo, m, s))),
            stats.laplace.logcdf(hi, m, s) + np.log1p(-np.exp(stats.laplace.logcdf(lo, m, s) - stats.laplace.logcdf(hi, m, s))))
    np.testing.assert_allclose(got, np.log((w * np.exp(log_terms)).sum(-1)), rtol=1e-10)

    positive = torch.tensor([0.2, 0.5, 1.0, 3.0, 10.0, 1e3], dtype=torch.float64)[:, None]
    got = LogNormalMixture(logits, loc, scale).interval_log_prob(positive - 0.5, positive + 0.5).numpy()
    lo, hi = positive.numpy() - 0.5, positive.numpy() + 0.5  # bins reaching below 0 start at 0
    lognormal = stats.lognorm(s, scale=np.exp(m))
    lo = np.maximum(lo, 0)
    mass = np.where(lo > np.exp(m), lognormal.sf(lo) - lognormal.sf(hi), lognormal.cdf(hi) - lognormal.cdf(lo))
    np.testing.assert_allclose(got, np.log((w * mass).sum(-1)), rtol=1e-9)


def test_bins_over_a_grid_sum_to_one():
    mixture = _random_gaussian(4, 1, 5)
    grid = torch.arange(-40.0, 40.0, 0.5, dtype=torch.float64).view(-1, 1, 1)
    total = mixture.interval_log_prob(grid - 0.25, grid + 0.25).exp().sum(0)
    torch.testing.assert_close(total, torch.ones(5, dtype=torch.float64), rtol=1e-12, atol=0)


@pytest.mark.parametrize("centre", [0.0, 12.0, -60.0, 1e3])
def test_bin_gradient_is_finite_and_matches_the_analytic_one(centre):
    """``d/dμ log(Φ(b) - Φ(a)) = (φ(a) - φ(b)) / (σ (Φ(b) - Φ(a)))`` for ``a, b = (y ± h/2 - μ)/σ``."""
    loc = torch.zeros(1, 1, dtype=torch.float64, requires_grad=True)
    scale = torch.ones(1, 1, dtype=torch.float64)
    y = torch.tensor([centre], dtype=torch.float64)
    GaussianMixture(torch.zeros(1, dtype=torch.float64), loc, scale=scale).interval_log_prob(y - 0.5, y + 0.5).backward()
    a, b = mpmath.mpf(centre) - 0.5, mpmath.mpf(centre) + 0.5
    expected = (mpmath.npdf(a) - mpmath.npdf(b)) / _mp_normal_interval(a, b)
    assert math.isfinite(float(loc.grad)) and float(loc.grad) == pytest.approx(float(expected), rel=1e-8)


def test_families_without_bins_say_so():
    from mdnkit.student_t import StudentTMixture

    t = StudentTMixture(torch.zeros(2), torch.full((2, 1), 5.0), torch.zeros(2, 1), torch.ones(2, 1))
    with pytest.raises(NotImplementedError, match="not available for the student_t family"):
        t.interval_log_prob(torch.zeros(1), torch.ones(1))


# ============================================================================ the estimator
def test_training_validation_and_score_use_the_bin_probability():
    X, y, _ = rounded_rows(300, 1)
    model = MDNRegressor(**{**TINY, "max_epochs": 20}, target_resolution=1).fit(X, y)
    n_val = math.ceil(0.1 * len(X))
    val = np.random.default_rng(0).permutation(len(X))[:n_val]  # the rows fit holds out (seed 0)
    best = next(r for r in model.history_ if r["epoch"] == model.best_epoch_)
    assert best["val_nll"] == pytest.approx(-model.score(X[val], y[val]), abs=1e-5)
    # score is the mean log P(bin), which a SciPy mixture of the predicted components reproduces
    dist = model.predict_dist(X[:50])
    w, loc, scale = dist.weights.numpy(), dist.loc[..., 0].numpy(), dist.scale[..., 0].numpy()
    yy = y[:50, None]
    reference = np.log((w * (stats.norm.cdf(yy + 0.5, loc, scale) - stats.norm.cdf(yy - 0.5, loc, scale))).sum(-1))
    np.testing.assert_allclose(model.score_samples(X[:50], y[:50]), reference, rtol=1e-9)
    assert (model.score_samples(X, y) <= 0).all()


def test_predict_bin_probabilities():
    X, y, _ = rounded_rows(200, 2)
    model = MDNRegressor(**TINY, target_resolution=1).fit(X, y)
    grid = np.arange(-15.0, 16.0)
    probabilities = model.predict_bin_probabilities(X[:7], grid)
    assert probabilities.shape == (7, len(grid))
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-6)
    column = np.searchsorted(grid, y[:7])
    np.testing.assert_allclose(np.log(probabilities[np.arange(7), column]), model.score_samples(X[:7], y[:7]), rtol=1e-9)
    continuous = MDNRegressor(**TINY).fit(X, y + 0.01 * np.random.default_rng(0).normal(size=len(y)))
    with pytest.raises(ValueError, match="fitted without target_resolution: pass resolution"):
        continuous.predict_bin_probabilities(X[:2], grid)
    assert continuous.predict_bin_probabilities(X[:2], grid, resolution=1.0).shape == (2, len(grid))


def test_ensembles_and_noise_searches_keep_the_bins():
    X, y, _ = rounded_rows(200, 3)
    ensemble = MDNRegressor(**{**TINY, "n_estimators": 2}, target_resolution=1).fit(X, y)
    searched = MDNRegressor(**{**TINY, "input_noise": "auto"}, target_resolution=1).fit(X, y)  # member(index) kept
    for model in (ensemble, searched):
        assert model.module_.bin_half_width is not None
        assert all(r["val_nll"] > 0 for r in model.history_)  # -log P >= 0; a density's NLL here is not bound


def test_two_targets_with_one_resolution_each():
    X, y, _ = rounded_rows(200, 4)
    targets = np.c_[y, np.round(X[:, 0] * 4) / 4]
    model = MDNRegressor(**TINY, target_resolution=[1.0, 0.25]).fit(X, targets)
    dist = model.predict_dist(X[:20])
    w, loc, scale = dist.weights.numpy(), dist.loc.numpy(), dist.scale.numpy()
    half = np.array([0.5, 0.125])
    yy = targets[:20, None, :]
    boxes = (stats.norm.cdf(yy + half, loc, scale) - stats.norm.cdf(yy - half, loc, scale)).prod(-1)
    np.testing.assert_allclose(model.score_samples(X[:20], targets[:20]), np.log((w * boxes).sum(-1)), rtol=1e-9)


def test_save_and_load_keep_the_resolution_and_old_files_load(tmp_path):
    X, y, _ = rounded_rows(200, 5)
    model = MDNRegressor(**TINY, target_resolution=1.0).fit(X, y)
    model.save(tmp_path / "rounded.mdn")
    loaded = mdnkit.load(tmp_path / "rounded.mdn")
    assert loaded.target_resolution == 1.0
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12)
    # A file from before target_resolution existed: its settings lack the key.
    continuous = MDNRegressor(**TINY).fit(X, y + 0.01 * np.random.default_rng(0).normal(size=len(y)))
    continuous.save(tmp_path / "old.mdn")
    tensors, document = mio.read_model_file(tmp_path / "old.mdn")
    del document["params"]["target_resolution"]
    mio.write_model_file(tmp_path / "old.mdn", tensors, document, overwrite=True)
    old = mdnkit.load(tmp_path / "old.mdn")
    assert old.target_resolution is None and old.module_.bin_half_width is None
    np.testing.assert_allclose(old.score_samples(X, y), continuous.score_samples(X, y), rtol=1e-12)


@pytest.mark.parametrize("value, message", [
    (0, "positive number"), (-1.0, "positive number"), (math.nan, "positive number"), ("1", "positive number"),
    ([1.0, 1.0], "has 2 values for 1 target column"), ([math.inf], "positive finite bin widths"),
])
def test_bad_resolutions_are_refused(value, message):
    X, y, _ = rounded_rows(60, 6)
    with pytest.raises(ValueError, match=message):
        MDNRegressor(**TINY, target_resolution=value).fit(X, y)


@pytest.mark.parametrize("settings, message", [
    ({"family": "student_t"}, "not 'student_t'"),
    ({"family": "von_mises"}, "not 'von_mises'"),
    ({"covariance_type": "full"}, "needs one target column, got 2"),
])
def test_families_without_bin_probabilities_are_refused(settings, message):
    X, y, _ = rounded_rows(60, 7)
    targets = np.c_[y, y] if "covariance_type" in settings else np.abs(y) % 3
    with pytest.raises(ValueError, match=message):
        MDNRegressor(**TINY, **settings, target_resolution=1).fit(X, targets)


# ============================================================================ learning
@pytest.mark.slow
def test_learns_the_bin_probabilities_of_rounded_data():
    """``y = round(x + 0.5 ε)``: the fitted bins are within 0.03 nats of the true ones on test rows
    (0.009 measured), and the continuous mixture under them recovers the latent ``N(x, 0.5²)``
    (mean within 0.1, standard deviation within 15 %; 0.06 and 7 % measured). A density fitted to
    the rounded values instead has the variance of the rounded values, ``0.5² + 1/12`` (the
    rounding's uniform error; 2 % off measured). Seeded."""
    X, y, _ = rounded_rows(3000, 8)
    X_test, y_test, x_test = rounded_rows(2000, 9)
    settings = {"n_components": 2, "hidden_sizes": (32, 32), "input_noise": 0.0, "max_epochs": 300, "random_state": 0}
    model = MDNRegressor(**settings, target_resolution=1).fit(X, y)
    truth = np.log(stats.norm.cdf(y_test + 0.5, x_test, 0.5) - stats.norm.cdf(y_test - 0.5, x_test, 0.5))
    assert -model.score(X_test, y_test) == pytest.approx(-truth.mean(), abs=0.03)
    inside = np.abs(x_test) < 1.5  # away from the edges of the inputs
    assert np.abs(model.predict(X_test[inside]) - x_test[inside]).mean() < 0.1
    assert np.median(model.predict_std(X_test[inside])) == pytest.approx(0.5, rel=0.15)
    continuous = MDNRegressor(**settings).fit(X, y)
    assert np.median(continuous.predict_std(X_test[inside])) == pytest.approx(math.sqrt(0.25 + 1 / 12), rel=0.1)
