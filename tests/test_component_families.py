"""Laplace, log-normal, logit-normal and von Mises mixtures: maths against SciPy, and end to end.

Statistical tests are seeded; each states its chance of failing for a correct implementation:
KS tests at alpha = 1e-4 per row (4 rows per family: below 4e-4 per test).

SciPy has no logit-normal: its reference is SciPy's normal pushed through the logistic map (the
density with its Jacobian, the cdf, the quantiles) and ``scipy.integrate.quad`` for the moments.
SciPy's von Mises cdf uses a normal approximation for large concentrations, off by up to ~1e-6
(checked below), so from ``κ >= 50`` the reference is ``quad`` of the density.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, optimize, stats
from scipy.special import expit, i0e, logit, logsumexp

import mdnkit
from mdnkit import MDNRegressor
from mdnkit.families import FAMILY_NAMES, make_family
from mdnkit.laplace import LaplaceMixture
from mdnkit.logit_normal import LogitNormalMixture
from mdnkit.lognormal import LogNormalMixture
from mdnkit.metrics import evaluate
from mdnkit.student_t import StudentTMixture
from mdnkit.von_mises import VonMisesMixture, von_mises_cdf

KS_ALPHA = 1e-4
NEW = ["laplace", "lognormal", "logit_normal", "von_mises"]
F64 = torch.float64
LOW, HIGH = -2.0, 3.0  # the logit-normal's interval in these tests


def build(family: str, batch=(4,), k=3, d=1, seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.rand(*batch, *shape, generator=g, dtype=F64)

    logits = torch.randn(*batch, k, generator=g, dtype=F64)
    loc = 2 * torch.randn(*batch, k, d, generator=g, dtype=F64)
    scale = 0.3 + rand(k, d)
    if family == "laplace":
        return LaplaceMixture(logits, loc, scale)
    if family == "student_t":  # ν from 2.5 to 7.5
        return StudentTMixture(logits, 2.5 + 5 * rand(k, d), loc, scale)
    if family == "lognormal":
        return LogNormalMixture(logits, 0.5 * loc, scale)
    if family == "logit_normal":
        return LogitNormalMixture(logits, 0.5 * loc, 2 * scale, torch.full_like(loc, LOW), torch.full_like(loc, HIGH))
    # κ from nearly uniform to concentrated, 0.1 to 30
    return VonMisesMixture(logits, loc, 0.1 + 30 * rand(k, d) ** 2)


def components(mixture, row: int, dim: int = 0) -> list:
    """The SciPy-side components of row ``row``, dimension ``dim``: objects with logpdf/cdf/ppf."""
    p = {name: t[row, :, dim].numpy() for name, t in mixture.parameters().items() if name != "logits"}
    k = mixture.n_components
    if mixture.family == "laplace":
        return [stats.laplace(p["loc"][i], p["scale"][i]) for i in range(k)]
    if mixture.family == "student_t":
        return [stats.t(p["df"][i], p["loc"][i], p["scale"][i]) for i in range(k)]
    if mixture.family == "lognormal":
        return [stats.lognorm(p["scale"][i], scale=np.exp(p["loc"][i])) for i in range(k)]
    if mixture.family == "logit_normal":
        return [LogitNormalReference(p["loc"][i], p["scale"][i], p["low"][i], p["high"][i]) for i in range(k)]
    return [stats.vonmises(p["concentration"][i], loc=p["loc"][i]) for i in range(k)]


class LogitNormalReference:
    """SciPy's normal through ``y = low + (high - low) expit(z)``."""

    def __init__(self, loc, scale, low, high):
        self.z, self.low, self.high = stats.norm(loc, scale), low, high
        self.loc, self.scale = float(loc), float(scale)

    def logpdf(self, y):
        u = (y - self.low) / (self.high - self.low)
        if np.ndim(y) == 0:  # quad calls with scalars: the formula, without a frozen distribution's overhead
            z = (math.log(u / (1 - u)) - self.loc) / self.scale
            return -0.5 * z * z - math.log(self.scale * math.sqrt(2 * math.pi) * u * (1 - u) * (self.high - self.low))
        return self.z.logpdf(logit(u)) - np.log(u * (1 - u)) - np.log(self.high - self.low)

    def cdf(self, y):
        return self.z.cdf(logit((y - self.low) / (self.high - self.low)))

    def ppf(self, q):
        return self.low + (self.high - self.low) * expit(self.z.ppf(q))

    def mean(self):
        return integrate.quad(lambda y: y * np.exp(self.logpdf(y)), self.low, self.high, limit=200)[0]

    def var(self):
        m = self.mean()
        return integrate.quad(lambda y: (y - m) ** 2 * np.exp(self.logpdf(y)), self.low, self.high, limit=200)[0]


def support_points(family: str, n: int, rng) -> np.ndarray:
    """Points inside each family's support, spread over where the test mixtures have mass."""
    if family == "laplace":
        return rng.normal(size=n) * 4
    if family == "lognormal":
        return np.exp(rng.normal(size=n) * 1.5)
    if family == "logit_normal":
        return LOW + (HIGH - LOW) * rng.uniform(0.001, 0.999, n)
    return rng.uniform(-np.pi, np.pi, n)


def lower_end(family):
    return {"laplace": -np.inf, "lognormal": 0.0, "logit_normal": LOW, "von_mises": -np.pi}[family]


def upper_end(family):
    return {"laplace": np.inf, "lognormal": np.inf, "logit_normal": HIGH, "von_mises": np.pi}[family]


def reference_cdf(family, parts, weights, y):
    if family == "von_mises":  # from the origin -π
        return sum(w * (c.cdf(y) - c.cdf(-np.pi)) for w, c in zip(weights, parts))
    return sum(w * c.cdf(y) for w, c in zip(weights, parts))


# ============================================================================ maths vs SciPy
@pytest.mark.parametrize("family", NEW)
@pytest.mark.parametrize("d", [1, 2])
def test_log_prob_matches_scipy(family, d):
    mixture = build(family, d=d)
    rng = np.random.default_rng(1)
    y = torch.as_tensor(support_points(family, 5 * 4 * d, rng).reshape(5, 4, d))  # [S, B, D]
    got = mixture.log_prob(y).numpy()
    for row in range(4):
        parts = [components(mixture, row, j) for j in range(d)]
        log_w = mixture.log_weights[row].numpy()
        for s in range(5):
            terms = [log_w[k] + sum(parts[j][k].logpdf(float(y[s, row, j])) for j in range(d)) for k in range(3)]
            assert got[s, row] == pytest.approx(logsumexp(terms), rel=1e-11, abs=1e-11)


@pytest.mark.parametrize("family", NEW)
def test_density_integrates_to_one(family):
    mixture = build(family, batch=(1,))

    def density(v):
        return float(mixture.log_prob(torch.tensor([[v]], dtype=F64)).exp())

    lo, hi = lower_end(family), upper_end(family)
    total, _ = integrate.quad(density, lo, hi, limit=400)
    assert total == pytest.approx(1.0, abs=1e-7)
    if family == "von_mises":  # periodic: any other period holds the same mass
        other, _ = integrate.quad(density, 1.0, 1.0 + 2 * np.pi, limit=400)
        assert other == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("family", NEW)
def test_cdf_and_quantiles_match_scipy(family):
    mixture = build(family)
    y_grid = np.linspace(lower_end(family) if np.isfinite(lower_end(family)) else -12,
                         upper_end(family) if np.isfinite(upper_end(family)) else 12, 41)
    y = torch.as_tensor(y_grid)[:, None].expand(41, 4)
    got = mixture.cdf(y.unsqueeze(-1)).numpy()
    q = torch.tensor([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6], dtype=F64)[:, None].expand(6, 4)
    quantiles = mixture.icdf(q)[..., 0].numpy()
    for row in range(4):
        parts, weights = components(mixture, row), mixture.weights[row].numpy()
        kappa_ok = family != "von_mises" or bool((mixture.concentration[row] < 50).all())
        if kappa_ok:
            np.testing.assert_allclose(got[:, row], reference_cdf(family, parts, weights, y_grid), rtol=1e-9, atol=1e-11)
        lo = -1e3 if not np.isfinite(lower_end(family)) else lower_end(family)
        hi = 1e6 if not np.isfinite(upper_end(family)) else upper_end(family)
        for i, level in enumerate(q[:, row].tolist()):
            def residual(v, level=level, parts=parts, weights=weights):
                return reference_cdf(family, parts, weights, v) - level

            reference = optimize.brentq(residual, lo, hi, xtol=1e-14, rtol=1e-13)
            assert quantiles[i, row] == pytest.approx(reference, rel=1e-8, abs=1e-9)


@pytest.mark.parametrize("kappa", [1e-8, 0.01, 0.7, 5.0, 30.0, 49.9, 50.0, 200.0, 1e4, 1e6])
def test_von_mises_cdf_against_scipy_and_quadrature(kappa):
    loc = 0.7
    x = np.linspace(-np.pi, np.pi, 25)
    got = von_mises_cdf(torch.tensor(x), torch.tensor(loc, dtype=F64), torch.tensor(kappa, dtype=F64)).numpy()
    assert got[0] == 0.0 and got[-1] == pytest.approx(1.0, abs=1e-14)
    if kappa < 50:
        frozen = stats.vonmises(kappa, loc=loc)
        np.testing.assert_allclose(got, frozen.cdf(x) - frozen.cdf(-np.pi), rtol=1e-10, atol=1e-12)
    else:
        def density(t):
            return np.exp(kappa * (np.cos(t - loc) - 1)) / (2 * np.pi * i0e(kappa))

        for value, expected_point in zip(got[1:-1], x[1:-1]):
            width = 40 / np.sqrt(kappa)  # the mass sits within a few 1/√κ of loc
            a, b = max(-np.pi, loc - width), min(expected_point, loc + width)
            below = 0.0 if b <= a else integrate.quad(density, a, b, epsabs=1e-15, epsrel=1e-13, limit=200)[0]
            expected = below if expected_point < loc + width else 1.0
            assert value == pytest.approx(expected, abs=1e-12)


def test_scipy_von_mises_cdf_is_approximate_for_large_concentration():
    """Why the large-κ reference is quadrature: SciPy is ~1e-7 off at κ = 200, ours to rounding."""
    kappa, loc, x = 200.0, 0.5, 0.45

    def density(t):
        return np.exp(kappa * (np.cos(t - loc) - 1)) / (2 * np.pi * i0e(kappa))

    exact = integrate.quad(density, -np.pi, x, epsabs=1e-16, epsrel=1e-14, limit=400, points=[x - 0.5])[0]
    ours = float(von_mises_cdf(torch.tensor(x, dtype=F64), torch.tensor(loc, dtype=F64), torch.tensor(kappa, dtype=F64)))
    scipy_value = stats.vonmises(kappa, loc=loc).cdf(x) - stats.vonmises(kappa, loc=loc).cdf(-np.pi)
    assert abs(ours - exact) < 1e-13
    assert abs(scipy_value - exact) > 1e-9


def test_cdf_wraps_angles_outside_one_period():
    mixture = build("von_mises", batch=(1,))
    inside = torch.tensor([[-2.0]], dtype=F64)
    np.testing.assert_allclose(mixture.cdf(inside + 2 * np.pi).numpy(), mixture.cdf(inside).numpy(), rtol=1e-12)


@pytest.mark.parametrize("family", ["laplace", "lognormal", "logit_normal"])
def test_moments_match_scipy(family):
    mixture = build(family, d=2)
    for row in range(4):
        weights = mixture.weights[row].numpy()
        means, variances = np.empty((3, 2)), np.empty((3, 2))
        for j in range(2):
            parts = components(mixture, row, j)
            means[:, j] = [c.mean() for c in parts]
            variances[:, j] = [c.var() for c in parts]
        mean = weights @ means
        np.testing.assert_allclose(mixture.mean[row].numpy(), mean, rtol=1e-9)
        np.testing.assert_allclose(mixture.variance[row].numpy(), weights @ (variances + (means - mean) ** 2),
                                   rtol=1e-8)


def test_von_mises_circular_moments_by_quadrature():
    mixture = build("von_mises", batch=(4,))
    for row in range(4):
        parts, weights = components(mixture, row), mixture.weights[row].numpy()

        def density(t, weights=weights, parts=parts):
            return sum(w * c.pdf(t) for w, c in zip(weights, parts))

        c = integrate.quad(lambda t: np.cos(t) * density(t), -np.pi, np.pi, limit=400)[0]
        s = integrate.quad(lambda t: np.sin(t) * density(t), -np.pi, np.pi, limit=400)[0]
        resultant = np.hypot(c, s)
        assert float(mixture.mean[row, 0]) == pytest.approx(np.arctan2(s, c), abs=1e-8)
        assert float(mixture.variance[row, 0]) == pytest.approx(1 - resultant, abs=1e-8)
        assert float(mixture.stddev[row, 0]) == pytest.approx(np.sqrt(-2 * np.log(resultant)), rel=1e-7)
    # SciPy's circular statistics of many draws agree too (a loose, sampling-error check).
    torch.manual_seed(0)
    draws = mixture.sample((50_000,))[:, 0, 0].numpy()
    assert stats.circmean(draws, high=np.pi, low=-np.pi) == pytest.approx(float(mixture.mean[0, 0]), abs=0.05)


@pytest.mark.parametrize("family", NEW)
def test_samples_follow_the_mixture(family):
    """KS test at alpha = 1e-4 on 20,000 draws of each of 4 rows: false alarms below 4e-4 in all."""
    mixture = build(family)
    torch.manual_seed(0)
    draws = mixture.sample((20_000,))
    assert draws.shape == (20_000, 4, 1)
    lo, hi = lower_end(family), upper_end(family)
    assert bool(((draws >= lo) & (draws <= hi)).all())
    for row in range(4):
        parts, weights = components(mixture, row), mixture.weights[row].numpy()
        def cdf(v, parts=parts, weights=weights):
            return reference_cdf(family, parts, weights, v)

        assert stats.kstest(draws[:, row, 0].numpy(), cdf).pvalue > KS_ALPHA


@pytest.mark.parametrize("family", NEW)
def test_temperature_sharpens(family):
    mixture = build(family, batch=(1,), k=1)
    if family == "von_mises":  # concentrated enough that the angle's spread is σ = 1/√κ
        mixture = VonMisesMixture(mixture.logits, mixture.loc, torch.full_like(mixture.loc, 400.0))
    torch.manual_seed(0)
    cold, warm = mixture.sample((20_000,), temperature=0.25), mixture.sample((20_000,), temperature=1.0)
    transform = {"lognormal": np.log, "logit_normal": lambda v: logit((v - LOW) / (HIGH - LOW))}.get(family, np.asarray)
    def iqr(a):
        return np.subtract(*np.quantile(transform(a.numpy().ravel()), [0.75, 0.25]))

    # T scales each component's spread (of log y, logit u, the angle) by √T: the IQR halves.
    assert iqr(cold) / iqr(warm) == pytest.approx(0.5, rel=0.05)


# ============================================================================ units and supports
@pytest.mark.parametrize("family", ["laplace", "logit_normal"])
def test_affine_is_the_change_of_variables(family):
    mixture = build(family, d=2)
    shift, scale = torch.tensor([1e3, -3.0], dtype=F64), torch.tensor([2.0, 0.5], dtype=F64)
    y = torch.as_tensor(support_points(family, 8, np.random.default_rng(0)).reshape(4, 2))
    moved = mixture.affine(shift, scale)
    np.testing.assert_allclose(moved.log_prob(shift + scale * y).numpy(),
                               (mixture.log_prob(y) - scale.log().sum()).numpy(), rtol=1e-10)


def test_lognormal_scales_but_refuses_a_shift():
    mixture = build("lognormal", d=2)
    scale = torch.tensor([3.0, 0.1], dtype=F64)
    y = torch.as_tensor(support_points("lognormal", 8, np.random.default_rng(0)).reshape(4, 2))
    np.testing.assert_allclose(mixture.affine(torch.zeros(2), scale).log_prob(scale * y).numpy(),
                               (mixture.log_prob(y) - scale.log().sum()).numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match="lognormal family is not closed under shifts"):
        mixture.affine(torch.tensor([1.0, 0.0]), scale)


def test_von_mises_rotates_but_refuses_a_scale():
    mixture = build("von_mises")
    y = torch.as_tensor(support_points("von_mises", 4, np.random.default_rng(0)).reshape(4, 1))
    rotated = mixture.affine(torch.tensor([0.5], dtype=F64), torch.ones(1, dtype=F64))
    np.testing.assert_allclose(rotated.log_prob(y + 0.5).numpy(), mixture.log_prob(y).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="angles in radians"):
        mixture.affine(torch.zeros(1), torch.tensor([2.0]))


@pytest.mark.parametrize("family", NEW)
def test_marginal_condition_and_plumbing(family):
    mixture = build(family, d=2)
    y = torch.as_tensor(support_points(family, 8, np.random.default_rng(2)).reshape(4, 2))
    expected = mixture.log_prob(y) - mixture.marginal([0]).log_prob(y[:, :1])  # p(y1 | y0)
    np.testing.assert_allclose(mixture.condition([0], y[:, :1]).log_prob(y[:, 1:]).numpy(), expected.numpy(),
                               rtol=1e-10)
    joined = mdnkit.mixture.cat([mixture.rows(slice(0, 1)), mixture.rows(slice(1, 4))])
    np.testing.assert_array_equal(joined.log_prob(y).numpy(), mixture.log_prob(y).numpy())
    assert mixture.expand((2, 4)).batch_shape == (2, 4)


@pytest.mark.parametrize("family", NEW)
def test_log_prob_outside_the_support(family):
    mixture = build(family)
    outside = {"laplace": None, "lognormal": -1.0, "logit_normal": HIGH + 1, "von_mises": None}[family]
    if outside is None:  # the real line, or the circle: every finite value has a finite density
        assert bool(torch.isfinite(mixture.log_prob(torch.full((4, 1), 1e3, dtype=F64))).all())
    else:
        assert bool((mixture.log_prob(torch.full((4, 1), outside, dtype=F64)) == -np.inf).all())
        # and no NaN gradient leaks from the masked branch
        loc = mixture.loc.clone().requires_grad_()
        parts = {**mixture.parameters(), "loc": loc}
        rebuilt = type(mixture)(**parts)
        y = torch.as_tensor(support_points(family, 4, np.random.default_rng(0)).reshape(4, 1))
        rebuilt.log_prob(torch.cat([y, torch.full((4, 1), outside, dtype=F64)], 0).view(2, 4, 1))[0].sum().backward()
        assert bool(torch.isfinite(loc.grad).all())


def test_family_options_are_checked():
    with pytest.raises(ValueError, match="low < high"):
        make_family("logit_normal", 2, 1, low=1.0, high=0.0)
    with pytest.raises(ValueError, match="takes the options"):
        make_family("lognormal", 2, 1, low=1.0)
    with pytest.raises(ValueError, match="only available for the gaussian family"):
        make_family("von_mises", 2, 2, covariance_type="full")


def test_cli_family_choices_are_the_registry():
    from mdnkit.cli import FAMILY_CHOICES

    assert FAMILY_CHOICES == FAMILY_NAMES


# ============================================================================ the estimator
def draw_rows(family: str, n: int, seed: int):
    """Rows from a known conditional mixture of the family: ``(X, y, true log p(y | x))``."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    weights = np.stack([expit(2 * x), 1 - expit(2 * x)], -1)  # [n, 2]
    loc = np.stack([x, -1 + 0.5 * x], -1)
    scale = np.stack([0.2 + 0.1 * (1 + x), 0.4 * np.ones(n)], -1)
    if family == "logit_normal":
        loc, scale = 2 * loc, 2 * scale
    logits = torch.as_tensor(np.log(weights))
    parts = (torch.as_tensor(loc)[..., None], torch.as_tensor(scale)[..., None])
    if family == "laplace":
        mixture = LaplaceMixture(logits, *parts)
    elif family == "lognormal":
        mixture = LogNormalMixture(logits, *parts)
    elif family == "student_t":  # 3 degrees of freedom: tails a Gaussian mixture cannot follow
        mixture = StudentTMixture(logits, torch.full_like(parts[0], 3.0), *parts)
    elif family == "logit_normal":
        ones = torch.ones_like(parts[0])
        mixture = LogitNormalMixture(logits, *parts, LOW * ones, HIGH * ones)
    else:
        mixture = VonMisesMixture(logits, 2 * parts[0], 1 / parts[1] ** 2)
    torch.manual_seed(seed)
    y = mixture.sample()  # [n, 1]
    return x[:, None], y[:, 0].numpy(), mixture.log_prob(y).numpy()


OPTIONS = {"logit_normal": {"low": LOW, "high": HIGH}}
TINY = {"n_components": 2, "hidden_sizes": (16,), "max_epochs": 15, "random_state": 0, "input_noise": 0.0}


@pytest.fixture(scope="module")
def fitted():
    models = {}
    for family in NEW:
        X, y, _ = draw_rows(family, 300, 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            models[family] = MDNRegressor(family=family, family_options=OPTIONS.get(family), **TINY).fit(X, y)
    return models


@pytest.mark.parametrize("family", NEW)
def test_estimator_end_to_end(fitted, family, tmp_path):
    model = fitted[family]
    X, y, _ = draw_rows(family, 50, 1)
    dist = model.predict_dist(X)
    assert dist.family == family and dist.batch_shape == (50,)
    lo, hi = lower_end(family), upper_end(family)
    draws = model.sample(X, 20, random_state=0)
    assert draws.shape == (50, 20) and bool(((draws >= lo) & (draws <= hi)).all())
    mean = model.predict(X)
    assert mean.shape == (50,) and bool(((mean >= lo) & (mean <= hi)).all())
    assert bool((model.predict_std(X) > 0).all())
    quantiles = model.predict_quantiles(X, [0.1, 0.5, 0.9])
    assert bool((np.diff(quantiles, axis=1) > 0).all())
    assert np.isfinite(model.score(X, y))
    # the scalers are the family's: positive targets only scaled, bounded ones mapped by the bounds
    expected_shift = {"laplace": None, "lognormal": 0.0, "logit_normal": LOW, "von_mises": 0.0}[family]
    if expected_shift is not None:
        assert model.y_mean_.tolist() == [expected_shift]
    if family == "logit_normal":
        assert model.y_scale_.tolist() == [HIGH - LOW]
    path = tmp_path / "model.mdn"
    model.save(path)
    loaded = mdnkit.load(path)
    assert loaded.family_options == model.family_options
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))
    results = evaluate(model, X, y, n_samples=50)
    assert np.isfinite(results["nll"]) and {"coverage_central_90", "coverage_hdi_90", "rmse_mode"} <= set(results)
    assert ("crps" in results) == (family != "von_mises")  # a distance on the line, not the circle
    assert all(np.isfinite(v) for v in results.values())


@pytest.mark.slow  # an ONNX export takes 10-40 s here
@pytest.mark.parametrize("family", NEW)
def test_estimator_ensemble_and_export(family):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime

    from mdnkit import export

    X, y, _ = draw_rows(family, 80, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ensemble = MDNRegressor(family=family, family_options=OPTIONS.get(family), n_estimators=2,
                                **{**TINY, "max_epochs": 3}).fit(X, y)
    for model in (ensemble,):  # members, their mixture and the family's units all in one graph
        path = export.to_onnx(model, os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fam-{family}-{os.getpid()}.onnx"),
                              overwrite=True)
        metadata = export.read_onnx_metadata(path)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = session.run(None, {"x": X[:20]})
        rebuilt = export.mixture_from_outputs(outputs, metadata)
        np.testing.assert_allclose(rebuilt.log_prob(torch.as_tensor(y[:20, None])).numpy(),
                                   model.score_samples(X[:20], y[:20]), rtol=1e-5, atol=1e-5)  # float32 weights
        os.remove(path)


@pytest.mark.parametrize("family, bad, match", [
    ("lognormal", 0.0, r"needs every target in \(0, inf\); 2 of 300 rows are not \(first rows, counting from 0: 3, 17"),
    ("logit_normal", HIGH, r"needs every target in the open interval .*-2.0, 3.0.*2 of 300 rows .* 3, 17"),
    ("von_mises", 200.0, r"\[-2π, 2π\] \(angles in radians\); 2 of 300 rows .* 3, 17"),
])
def test_fit_refuses_targets_outside_the_support(family, bad, match):
    X, y, _ = draw_rows(family, 300, 0)
    y = y.copy()
    y[[3, 17]] = bad
    with pytest.raises(ValueError, match=match):
        MDNRegressor(family=family, family_options=OPTIONS.get(family), **TINY).fit(X, y)


def test_fit_refuses_target_noise_for_a_restricted_support():
    X, y, _ = draw_rows("lognormal", 50, 0)
    with pytest.raises(ValueError, match="target_noise must be 0 for the lognormal family"):
        MDNRegressor(family="lognormal", target_noise=0.1, **TINY).fit(X, y)
    # "auto" is whatever noise suits the family: none here.
    assert MDNRegressor(family="lognormal", target_noise="auto", **TINY).fit(X, y).target_noise_ == 0.0
    with pytest.raises(ValueError, match="family_options must be a dict"):
        MDNRegressor(family="lognormal", family_options=[0, 1], **TINY).fit(X, y)


@pytest.mark.slow
@pytest.mark.parametrize("family", NEW)
def test_fit_recovers_the_generating_density(family):
    """Trained on 4000 rows of the family's own 2-component conditional mixture, the test NLL on
    2000 fresh rows is within 0.05 nats of the generating density's (the bound of the issue)."""
    X, y, _ = draw_rows(family, 4000, 0)
    X_test, y_test, true_log_p = draw_rows(family, 2000, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MDNRegressor(family=family, family_options=OPTIONS.get(family), n_components=2, hidden_sizes=(32, 32),
                             max_epochs=300, random_state=0, input_noise=0.0, batch_size=256).fit(X, y)
    gap = -model.score(X_test, y_test) - (-true_log_p.mean())
    assert gap < 0.05, gap


def test_cli_fit_with_each_family(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"x": rng.uniform(-1, 1, 120)})
    table["positive"] = np.exp(table["x"] + 0.3 * rng.normal(size=120))
    table["share"] = expit(table["x"] + 0.5 * rng.normal(size=120))
    table["angle"] = rng.vonmises(table["x"], 4.0)
    table["real"] = table["x"] + rng.laplace(size=120) * 0.2
    table.to_csv(tmp_path / "train.csv", index=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    tiny = ["--epochs", "5", "--hidden", "8", "--components", "2", "--quiet"]
    runs = {
        "laplace": ["--target", "real", "--features", "x"],
        "lognormal": ["--target", "positive", "--features", "x"],
        "logit_normal": ["--target", "share", "--features", "x", "--bounds", "0,1"],
        "von_mises": ["--target", "angle", "--features", "x"],
        "bad_bounds": ["--target", "real", "--features", "x", "--bounds", "0,1"],
        "outside": ["--target", "real", "--features", "x"],
    }
    processes = {
        name: subprocess.Popen(
            [sys.executable, "-m", "mdnkit", "fit", "train.csv", "-o", f"{name}.mdn", *tiny, *args, "--family",
             {"bad_bounds": "lognormal", "outside": "lognormal"}.get(name, name)],
            cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for name, args in runs.items()
    }
    done = {name: (p.wait(timeout=300), p.stderr.read()) for name, p in processes.items()}
    for family in NEW:
        assert done[family][0] == 0, done[family]
        assert mdnkit.load(tmp_path / f"{family}.mdn").family == family
    assert mdnkit.load(tmp_path / "logit_normal.mdn").family_options == {"low": 0.0, "high": 1.0}
    assert done["bad_bounds"][0] == 2 and "--bounds is the support of --family logit_normal" in done["bad_bounds"][1]
    assert done["outside"][0] == 2 and "needs every target in (0, inf)" in done["outside"][1]


# ---------------------------------------------------------------------- modes of every family
def _reference_modes(parts, weights, family: str) -> np.ndarray:
    """Local maxima of the SciPy mixture density: a 400 001-point grid, each polished by a
    bounded scalar search between its grid neighbours (on the circle for von Mises)."""
    from scipy import optimize

    if family == "von_mises":
        grid = np.linspace(-np.pi, np.pi, 400_001)[:-1]
    else:
        low = min(float(p.ppf(1e-9)) for p in parts)
        high = max(float(p.ppf(1 - 1e-9)) for p in parts)
        grid = np.linspace(low, high, 400_001)

    def density(y):
        return sum(w * np.exp(p.logpdf(y)) for w, p in zip(weights, parts))

    values = density(grid)
    left, right = np.roll(values, 1), np.roll(values, -1)
    peaks = np.flatnonzero((values > left) & (values > right))
    if family != "von_mises":
        peaks = peaks[(peaks > 0) & (peaks < len(grid) - 1)]
    step = grid[1] - grid[0]
    found = [optimize.minimize_scalar(lambda y: -density(y), bounds=(grid[i] - step, grid[i] + step), method="bounded",
                                      options={"xatol": 1e-12}).x for i in peaks]
    if family == "von_mises":
        found = [(y + np.pi) % (2 * np.pi) - np.pi for y in found]
    return np.sort(found)


@pytest.mark.parametrize("family", ["student_t", *NEW])
def test_modes_of_every_family_against_a_scipy_grid(family):
    mixture = build(family, batch=(6,), seed=5)
    found = mixture.modes()
    for row in range(6):
        parts = components(mixture, row)
        weights = torch.softmax(mixture.logits[row], -1).numpy()
        expected = _reference_modes(parts, weights, family)
        mine = np.sort(found.value[row, found.mask[row], 0].numpy())
        assert len(mine) == len(expected), (row, mine, expected)
        gap = np.abs(mine - expected)
        if family == "von_mises":
            gap = np.minimum(gap, 2 * np.pi - gap)
        assert gap.max() < 1e-6, (row, mine, expected)
        np.testing.assert_allclose(found.log_prob[row, found.mask[row]].numpy(),
                                   mixture.rows(slice(row, row + 1)).log_prob(found.value[row:row + 1, found.mask[row]].transpose(0, 1)).flatten().numpy())


def test_laplace_modes_sit_on_component_locations():
    # Between its kinks a Laplace mixture's density is a sum of exponentials, convex: every mode is a location.
    mixture = LaplaceMixture(torch.zeros(1, 3, dtype=F64), torch.tensor([[[-3.0], [0.0], [0.4]]], dtype=F64),
                             torch.tensor([[[0.5], [0.5], [0.5]]], dtype=F64))
    found = mixture.modes()
    values = np.sort(found.value[0, found.mask[0], 0].numpy())
    # Between 0 and 0.4 the density (equal weights and scales) is convex and even about 0.2: a
    # dip, so both kinks are peaks, as is -3.
    np.testing.assert_allclose(values, [-3.0, 0.0, 0.4], rtol=0, atol=1e-9)


def test_laplace_modes_find_a_small_peak_at_a_kink():
    """20 random 3-component Laplace mixtures against the SciPy grid. The grid's search stepped
    over a peak at a location that rises little above its neighbourhood (rows 2, 5, 6, 7 and 8
    here; row 6's at -0.599); the locations are now candidates of their own
    (``Mixture._kinks``), and without that 52 of 600 such rows lost a mode."""
    from scipy import stats

    rng = np.random.default_rng(3)
    logits = torch.randn(20, 3, dtype=F64, generator=torch.Generator().manual_seed(258))
    loc, scale = rng.normal(0, 3, (20, 3)), rng.uniform(0.3, 2, (20, 3))
    found = LaplaceMixture(logits, torch.as_tensor(loc[..., None]), torch.as_tensor(scale[..., None])).modes()
    weights = torch.softmax(logits, -1).numpy()
    for row in range(20):
        expected = _reference_modes([stats.laplace(m, b) for m, b in zip(loc[row], scale[row])], weights[row], "laplace")
        mine = np.sort(found.value[row, found.mask[row], 0].numpy())
        assert len(mine) == len(expected) and np.abs(mine - expected).max() < 1e-6, (row, mine, expected)
    assert -0.599 in np.round(found.value[6, :, 0].numpy(), 3)


def test_von_mises_modes_wrap_across_pi():
    mixture = VonMisesMixture(torch.zeros(1, 1, dtype=F64), torch.tensor([[[3.1]]], dtype=F64) + 2 * math.pi,
                              torch.tensor([[[20.0]]], dtype=F64))
    found = mixture.modes()
    assert found.mask.sum() == 1 and found.value[0, 0, 0].item() == pytest.approx(3.1, abs=1e-7)


def test_multivariate_modes_of_a_new_family_say_what_to_do():
    with pytest.raises(NotImplementedError, match=r"2-D laplace mixture.*marginal\(\[j\]\)\.modes\(\)"):
        build("laplace", d=2).modes()


@pytest.mark.parametrize("family", ["student_t", *NEW])
def test_highest_density_sets_of_every_family_against_scipy(family):
    """An HDI is the level set holding the mass: the SciPy mass of its intervals is the
    coverage, the density is the same level at every end (but ±π, the circle's seam), above it
    inside each interval and below it in each gap."""
    mixture = build(family, batch=(5,), seed=7)
    region = mixture.highest_density_intervals(0.8)
    for row in range(5):
        parts = components(mixture, row)
        weights = torch.softmax(mixture.logits[row], -1).numpy()
        cdf = lambda y: sum(w * p.cdf(y) for w, p in zip(weights, parts))  # noqa: E731
        pdf = lambda y: sum(w * np.exp(p.logpdf(y)) for w, p in zip(weights, parts))  # noqa: E731
        bounds = region.bounds[row, region.mask[row]].numpy()
        if family == "von_mises":  # SciPy's cdf on [-π, π]: from -π
            cdf = lambda y, c=cdf: c(y) - c(-np.pi)  # noqa: E731
        assert sum(cdf(b) - cdf(a) for a, b in bounds) == pytest.approx(0.8, abs=1e-7)
        level = region.level[row].item()
        ends = [e for e in bounds.ravel() if not (family == "von_mises" and abs(abs(e) - np.pi) < 1e-12)]
        np.testing.assert_allclose([pdf(e) for e in ends], level, rtol=1e-6)
        assert all(pdf(0.5 * (a + b)) > level for a, b in bounds)
        assert all(pdf(0.5 * (bounds[i, 1] + bounds[i + 1, 0])) < level for i in range(len(bounds) - 1))


# ---------------------------------------------------------------------- CRPS of every family
def test_crps_quadrature_equals_the_gaussian_closed_form():
    from mdnkit._crps_quadrature import crps_by_quadrature
    from mdnkit.distributions import GaussianMixture
    from mdnkit.metrics import crps

    g = torch.Generator().manual_seed(3)
    mixture = GaussianMixture(torch.randn(40, 3, generator=g, dtype=F64), 3 * torch.randn(40, 3, 1, generator=g, dtype=F64),
                              scale=0.05 + torch.rand(40, 3, 1, generator=g, dtype=F64))
    y = 4 * torch.randn(40, 1, generator=g, dtype=F64)
    np.testing.assert_allclose(crps_by_quadrature(mixture, y).numpy(), crps(mixture, y), rtol=1e-9)


@pytest.mark.parametrize("family", ["student_t", "laplace", "lognormal", "logit_normal"])
def test_crps_of_every_family_against_scipy_quad(family):
    from scipy import integrate

    from mdnkit.metrics import crps

    mixture = build(family, batch=(4,), seed=11)
    y = support_points(family, 4, np.random.default_rng(11))
    got = crps(mixture, y)
    for row in range(4):
        parts = components(mixture, row)
        weights = torch.softmax(mixture.logits[row], -1).numpy()
        cdf = lambda z: sum(w * float(p.cdf(z)) for w, p in zip(weights, parts))  # noqa: E731
        low, high = (LOW, HIGH) if family == "logit_normal" else (0.0, np.inf) if family == "lognormal" else (-np.inf, np.inf)
        below = integrate.quad(lambda z: cdf(z) ** 2, low, y[row], limit=500, epsabs=1e-13, epsrel=1e-11)[0]
        above = integrate.quad(lambda z: (1 - cdf(z)) ** 2, y[row], high, limit=500, epsabs=1e-13, epsrel=1e-11)[0]
        assert got[row] == pytest.approx(below + above, rel=1e-7)


def test_crps_of_angles_says_it_is_not_defined_on_the_circle():
    from mdnkit.metrics import crps

    with pytest.raises(ValueError, match="not defined this way"):
        crps(build("von_mises"), np.zeros(4))


def test_errors_of_angles_are_circular():
    from mdnkit.metrics import point_errors

    # One component at 3.1 rad and targets at -3.1 rad: 0.083 rad apart around the circle, not 6.2.
    mixture = VonMisesMixture(torch.zeros(2, 1, dtype=F64), torch.full((2, 1, 1), 3.1, dtype=F64),
                              torch.full((2, 1, 1), 50.0, dtype=F64))
    errors = point_errors(mixture, np.full(2, -3.1))
    gap = 2 * math.pi - 6.2
    assert errors["mae_mean"] == pytest.approx(gap, abs=1e-9) and errors["rmse_mode"] == pytest.approx(gap, abs=1e-7)
