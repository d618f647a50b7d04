"""Reference tests for mdnkit.distributions.GaussianMixture.

Every expected value here is computed independently in float64 with NumPy/SciPy from the
*parameters* handed to the distribution (never from the code under test). The parameter tensors
are float64 and seeded, and every random draw uses a fixed seed, so the suite is deterministic;
where a statistical test is involved its nominal failure rate is stated next to it.

Notation for the numpy reference: for one batch element, ``logw [K]`` log mixture weights
(log-softmax of the logits), ``mu [K, D]`` means, ``cov [K, D, D]`` component covariances.
"""

from __future__ import annotations

import importlib.util
import math
import pathlib

import numpy as np
import pytest
import scipy.integrate
import scipy.optimize
import scipy.special
import scipy.stats
import torch

try:
    from mdnkit.distributions import GaussianMixture
except ImportError:  # package __init__ not importable yet: load the module by path
    _spec = importlib.util.spec_from_file_location(
        "mdnkit_distributions_standalone",
        pathlib.Path(__file__).parents[1] / "src" / "mdnkit" / "distributions.py",
    )
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
    GaussianMixture = _mod.GaussianMixture

F64 = torch.float64
COV_TYPES = ("diagonal", "isotropic", "full")
BATCH_SHAPES = ((), (4,))
SAMPLE_SHAPE = (2, 7)
# Two-sided 6-sigma bands: P(|Z| > 6) = 2.0e-9 per compared number; no test compares more
# than ~50 numbers this way, so each such test fails by chance with probability < 1e-7.
N_SIGMA = 6.0


# ----------------------------------------------------------------------------------------------
# Parameter factories and the numpy reference
# ----------------------------------------------------------------------------------------------
def make_params(cov_type, D, batch_shape=(), K=3, seed=0, spread=2.0):
    """Seeded float64 parameters for a K-component mixture of the given covariance type."""
    g = torch.Generator().manual_seed(seed)
    B = tuple(batch_shape)
    logits = torch.randn(*B, K, generator=g, dtype=F64)
    loc = spread * torch.randn(*B, K, D, generator=g, dtype=F64)
    if cov_type == "diagonal":
        scale = 0.5 + torch.rand(*B, K, D, generator=g, dtype=F64)
        return dict(logits=logits, loc=loc, scale=scale)
    if cov_type == "isotropic":
        scale = 0.5 + torch.rand(*B, K, generator=g, dtype=F64)
        return dict(logits=logits, loc=loc, scale=scale)
    if cov_type == "full":
        off = 0.5 * torch.randn(*B, K, D, D, generator=g, dtype=F64)
        diag = 0.5 + torch.rand(*B, K, D, generator=g, dtype=F64)
        scale_tril = torch.tril(off, -1) + torch.diag_embed(diag)
        return dict(logits=logits, loc=loc, scale_tril=scale_tril)
    raise AssertionError(cov_type)


def params_1d(weights, means, sds, cov_type="isotropic"):
    """Torch parameters of a 1-D mixture given plain weights / means / std devs (batch ())."""
    w = torch.tensor(weights, dtype=F64)
    loc = torch.tensor(means, dtype=F64).reshape(-1, 1)
    sd = torch.tensor(sds, dtype=F64)
    logits = torch.log(w)
    if cov_type == "isotropic":
        return dict(logits=logits, loc=loc, scale=sd)
    if cov_type == "diagonal":
        return dict(logits=logits, loc=loc, scale=sd.reshape(-1, 1))
    return dict(logits=logits, loc=loc, scale_tril=sd.reshape(-1, 1, 1))


def np_params(params):
    """(logw [*B,K], mu [*B,K,D], cov [*B,K,D,D]) in numpy float64 from the torch parameters."""
    logits = params["logits"].detach().numpy().astype(np.float64)
    mu = params["loc"].detach().numpy().astype(np.float64)
    D = mu.shape[-1]
    logw = scipy.special.log_softmax(logits, axis=-1)
    if "scale_tril" in params:
        L = np.tril(params["scale_tril"].detach().numpy())
        cov = L @ np.swapaxes(L, -1, -2)
    else:
        s = params["scale"].detach().numpy()
        if s.shape == mu.shape:  # diagonal
            cov = np.eye(D) * (s**2)[..., None, :]
        else:  # isotropic
            cov = np.eye(D) * (s**2)[..., None, None]
    return logw, mu, cov


def np_component_logpdf(y, mu, cov):
    """log N(y | mu_k, cov_k) for y [N, D] -> [N, K] (scipy.stats, one component at a time)."""
    y = np.asarray(y, dtype=np.float64).reshape(-1, mu.shape[-1])
    out = np.empty((y.shape[0], mu.shape[0]))
    for k in range(mu.shape[0]):
        if mu.shape[-1] == 1:
            out[:, k] = scipy.stats.norm.logpdf(y[:, 0], mu[k, 0], np.sqrt(cov[k, 0, 0]))
        else:
            out[:, k] = np.reshape(scipy.stats.multivariate_normal(mu[k], cov[k]).logpdf(y), -1)
    return out


def np_logpdf(y, logw, mu, cov):
    """Mixture log density for y [N, D] -> [N] via scipy.special.logsumexp."""
    return scipy.special.logsumexp(logw + np_component_logpdf(y, mu, cov), axis=-1)


def np_grad_logpdf(y, logw, mu, cov):
    """Gradient of the mixture log density at y [N, D] -> [N, D]."""
    y = np.atleast_2d(y)
    lc = logw + np_component_logpdf(y, mu, cov)  # [N, K]
    r = np.exp(lc - scipy.special.logsumexp(lc, axis=-1, keepdims=True))
    prec = np.linalg.inv(cov)  # [K, D, D]
    diff = mu[None, :, :] - y[:, None, :]  # [N, K, D]
    return np.einsum("nk,kij,nkj->ni", r, prec, diff)


def np_cdf_1d(y, logw, mu, cov):
    """Mixture cdf of a 1-D mixture: sum_k w_k Phi((y - mu_k) / sd_k)."""
    y = np.asarray(y, dtype=np.float64)
    w = np.exp(logw)
    sd = np.sqrt(cov[:, 0, 0])
    return np.sum(w * scipy.stats.norm.cdf(y[..., None], mu[:, 0], sd), axis=-1)


def np_quantile_1d(q, logw, mu, cov):
    """Reference quantile by root-finding the SciPy mixture cdf (xtol 1e-13)."""
    sd = np.sqrt(cov[:, 0, 0])
    lo, hi = np.min(mu[:, 0] - 12 * sd), np.max(mu[:, 0] + 12 * sd)
    return np.array(
        [
            scipy.optimize.brentq(lambda t: np_cdf_1d(t, logw, mu, cov) - qi, lo, hi, xtol=1e-13, rtol=1e-15)
            for qi in np.ravel(q)
        ]
    ).reshape(np.shape(q))


def np_moments(logw, mu, cov):
    """Mixture mean [D] and covariance [D, D] by the law of total variance."""
    w = np.exp(logw)
    mean = w @ mu
    d = mu - mean
    total = np.einsum("k,kij->ij", w, cov) + np.einsum("k,ki,kj->ij", w, d, d)
    return mean, total


def batch_index(batch_shape):
    """Every index tuple of a batch shape ([()] for the empty batch)."""
    return list(np.ndindex(*batch_shape))


def np_log_prob_batched(value, logw, mu, cov):
    """Reference for log_prob(value [*S, *B, D]) -> [*S, *B] by looping over the batch."""
    B = logw.shape[:-1]
    value = np.asarray(value)
    D = mu.shape[-1]
    S = value.shape[: value.ndim - len(B) - 1]
    out = np.empty(S + B)
    for b in batch_index(B):
        sel = (Ellipsis,) + b + (slice(None),)
        yb = value[sel].reshape(-1, D)
        out[(Ellipsis,) + b] = np_logpdf(yb, logw[b], mu[b], cov[b]).reshape(S)
    return out


def row_params(params, b):
    """The parameters of batch element b (a tuple index) as a new unbatched parameter dict."""
    return {k: v[b] for k, v in params.items()}


def random_points(params, sample_shape, seed=1, widen=2.0):
    """Seeded evaluation points [*S, *B, D] spread around the components."""
    logw, mu, cov = np_params(params)
    B = logw.shape[:-1]
    D = mu.shape[-1]
    rng = np.random.default_rng(seed)
    centre = mu.mean(axis=-2)  # [*B, D]
    span = np.abs(mu).max() + 2 * np.sqrt(cov.diagonal(axis1=-2, axis2=-1).max())
    return centre + widen * span * rng.standard_normal(tuple(sample_shape) + B + (D,)) / 2


# ----------------------------------------------------------------------------------------------
# 0. Construction and basic properties
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_properties_match_numpy(cov_type, D, batch_shape):
    """Shapes, covariance_type, weights and covariances equal the numpy transforms of the inputs."""
    params = make_params(cov_type, D, batch_shape, K=3, seed=11)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    assert isinstance(dist, torch.distributions.Distribution)
    assert dist.covariance_type == cov_type
    assert dist.n_components == 3
    assert tuple(dist.batch_shape) == batch_shape
    assert tuple(dist.event_shape) == (D,)
    np.testing.assert_allclose(dist.log_weights.detach().numpy(), logw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dist.weights.detach().numpy(), np.exp(logw), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dist.component_covariance.detach().numpy(), cov, rtol=1e-12, atol=1e-14)
    assert tuple(dist.component_covariance.shape) == batch_shape + (3, D, D)


# ----------------------------------------------------------------------------------------------
# 1. log_prob against SciPy
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_matches_scipy(cov_type, D, batch_shape):
    """log_prob([2, 7, *B, D]) equals logsumexp_k(log w_k + scipy logpdf_k) to rtol 1e-10."""
    params = make_params(cov_type, D, batch_shape, K=3, seed=1)
    dist = GaussianMixture(**params)
    y = random_points(params, SAMPLE_SHAPE, seed=2)
    got = dist.log_prob(torch.from_numpy(y))
    assert tuple(got.shape) == SAMPLE_SHAPE + batch_shape
    assert got.dtype == F64
    ref = np_log_prob_batched(y, *np_params(params))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_component_log_prob_matches_scipy(cov_type, D, batch_shape):
    """component_log_prob gives the unweighted per-component scipy log densities, [*S, *B, K]."""
    params = make_params(cov_type, D, batch_shape, K=3, seed=3)
    dist = GaussianMixture(**params)
    y = random_points(params, SAMPLE_SHAPE, seed=4)
    got = dist.component_log_prob(torch.from_numpy(y)).numpy()
    assert got.shape == SAMPLE_SHAPE + batch_shape + (3,)
    _, mu, cov = np_params(params)
    for b in batch_index(batch_shape):
        yb = y[(Ellipsis,) + b + (slice(None),)].reshape(-1, D)
        ref = np_component_logpdf(yb, mu[b], cov[b]).reshape(SAMPLE_SHAPE + (3,))
        np.testing.assert_allclose(got[(Ellipsis,) + b + (slice(None),)], ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_far_from_all_components(cov_type, D):
    """At ~1e3 std devs from every component log_prob is finite and still matches SciPy.

    A naive log(sum w_k N_k) underflows to -inf here; the contract asks for logsumexp.
    """
    params = make_params(cov_type, D, (), K=3, seed=5)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    max_sd = np.sqrt(cov.diagonal(axis1=-2, axis2=-1).max())
    rng = np.random.default_rng(6)
    directions = rng.standard_normal((5, D))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    y = mu.mean(axis=0) + 1e3 * max_sd * np.concatenate([directions, -directions])  # [10, D]
    got = dist.log_prob(torch.from_numpy(y)).numpy()
    ref = np_logpdf(y, logw, mu, cov)
    assert np.all(np.isfinite(got))
    assert np.all(ref < -1e5)  # really far away: every component density underflows
    np.testing.assert_allclose(got, ref, rtol=1e-10)


# ----------------------------------------------------------------------------------------------
# 2. The TF2 seed's loss check
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ("row_per_target", "shared_params"))
@pytest.mark.parametrize("zero_logit", (-math.inf, -1e30), ids=("minus_inf", "minus_1e30"))
def test_tf2_seed_loss_value(zero_logit, layout):
    """Seed 002's check: pi=[1,0,0], mu=[0,.1,.2], var=[1,2.2,3.3], y=[3,1.1] -> mean NLL 3.4714.

    Given as logits = log(pi), i.e. [0, -inf, -inf]: a zero weight is a legitimate mixture and
    must not turn the loss into NaN. The -1e30 variant is the finite stand-in for log(0).
    The seed has one parameter row per target (batch_shape (2,)); also run with one shared
    parameter set (batch_shape (), sample_shape (2,)).
    """
    logits = torch.tensor([0.0, zero_logit, zero_logit], dtype=F64)
    loc = torch.tensor([0.0, 0.1, 0.2], dtype=F64).unsqueeze(-1)  # [3, 1]
    scale = torch.tensor([1.0, 2.2, 3.3], dtype=F64).sqrt()  # isotropic [3]
    if layout == "row_per_target":
        logits, loc, scale = logits.expand(2, 3), loc.expand(2, 3, 1), scale.expand(2, 3)
    y = torch.tensor([[3.0], [1.1]], dtype=F64)  # [2, 1]
    log_prob = GaussianMixture(logits, loc, scale=scale).log_prob(y)
    assert log_prob.shape == (2,)
    nll = -log_prob.mean().item()
    assert abs(nll - 3.4714) < 1e-4
    # With pi = [1, 0, 0] only N(0, 1) counts: 0.5 log(2 pi) + (3^2 + 1.1^2) / 4.
    assert nll == pytest.approx(0.5 * math.log(2 * math.pi) + (9.0 + 1.21) / 4, rel=1e-12)


# ----------------------------------------------------------------------------------------------
# 3. The density integrates to one
# ----------------------------------------------------------------------------------------------
MIXTURES_1D = {
    "three_overlapping": ([0.2, 0.5, 0.3], [-1.0, 0.5, 2.0], [0.7, 1.2, 0.4]),
    "narrow_and_wide": ([0.6, 0.4], [0.0, 3.0], [0.01, 10.0]),
    "separated": ([0.5, 0.5], [-20.0, 20.0], [1.0, 2.0]),
}


@pytest.mark.parametrize("mixture", sorted(MIXTURES_1D))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_density_integrates_to_one_1d(cov_type, mixture):
    """Integral of exp(log_prob) over the real line (scipy quad, in 3 pieces) is 1 to 1e-8."""
    params = params_1d(*MIXTURES_1D[mixture], cov_type=cov_type)
    dist = GaussianMixture(**params)
    means = np.array(MIXTURES_1D[mixture][1])
    sds = np.array(MIXTURES_1D[mixture][2])
    a, b = np.min(means - 10 * sds), np.max(means + 10 * sds)

    def pdf(t):
        with torch.no_grad():
            return math.exp(dist.log_prob(torch.tensor([[t]], dtype=F64)).item())

    # Breakpoints at the means so quad sees narrow peaks; infinite tails integrated separately.
    middle = scipy.integrate.quad(pdf, a, b, points=np.sort(means), limit=500, epsabs=1e-13, epsrel=1e-12)[0]
    left = scipy.integrate.quad(pdf, -np.inf, a, epsabs=1e-14)[0]
    right = scipy.integrate.quad(pdf, b, np.inf, epsabs=1e-14)[0]
    assert left + middle + right == pytest.approx(1.0, abs=1e-8)


def defensive_proposal(logw, mu, cov):
    """Importance proposal q = 0.5 t5(mean, Sigma) + 0.5 sum_k w_k t8(mu_k, 1.5 S_k), as
    (parts, log_weights): Student-t tails dominate every Gaussian tail, so p/q is bounded
    (by ~2 max_k N_k/t_k) and the importance-sampling estimator has finite, small variance."""
    mean, total = np_moments(logw, mu, cov)
    parts = [scipy.stats.multivariate_t(loc=mean, shape=total, df=5)]
    parts += [scipy.stats.multivariate_t(loc=mu[k], shape=1.5 * cov[k], df=8) for k in range(mu.shape[0])]
    return parts, np.log(np.concatenate([[0.5], 0.5 * np.exp(logw)]))


@pytest.mark.parametrize("D", (2, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_density_integrates_to_one_monte_carlo(cov_type, D):
    """Importance-sampling estimate of the integral of p over R^D is 1.

    N = 100k draws from the heavy-tailed defensive proposal above. Tolerance: 6 standard errors
    of the estimate (estimated from the weights; chance failure ~2e-9), and the standard error
    itself must be < 0.4% so the check has power: a density normalised wrongly by more than
    ~2.5% cannot pass (a missing 2*pi or determinant factor is off by far more).
    """
    params = make_params(cov_type, D, (), K=3, seed=7)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    parts, log_mix = defensive_proposal(logw, mu, cov)
    rng = np.random.default_rng(8)
    counts = rng.multinomial(100_000, np.exp(log_mix))
    x = np.concatenate([q.rvs(size=c, random_state=rng).reshape(c, D) for q, c in zip(parts, counts)])
    logq = scipy.special.logsumexp(log_mix + np.stack([q.logpdf(x) for q in parts], -1), axis=-1)
    with torch.no_grad():
        logp = dist.log_prob(torch.from_numpy(x)).numpy()
    ratio = np.exp(logp - logq)
    estimate = ratio.mean()
    stderr = ratio.std(ddof=1) / math.sqrt(ratio.size)
    assert stderr < 4e-3
    assert abs(estimate - 1.0) < N_SIGMA * stderr, (estimate, stderr)


# ----------------------------------------------------------------------------------------------
# 4. Moments: closed form and seeded sample moments
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_moments_match_closed_form(cov_type, D, batch_shape):
    """mean, variance, stddev and covariance_matrix equal the law of total variance in numpy."""
    params = make_params(cov_type, D, batch_shape, K=3, seed=9)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    assert tuple(dist.mean.shape) == batch_shape + (D,)
    assert tuple(dist.variance.shape) == batch_shape + (D,)
    assert tuple(dist.stddev.shape) == batch_shape + (D,)
    assert tuple(dist.covariance_matrix.shape) == batch_shape + (D, D)
    for b in batch_index(batch_shape):
        mean, total = np_moments(logw[b], mu[b], cov[b])
        np.testing.assert_allclose(dist.mean[b].detach().numpy(), mean, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dist.covariance_matrix[b].detach().numpy(), total, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(dist.variance[b].detach().numpy(), np.diag(total), rtol=1e-12)
        np.testing.assert_allclose(dist.stddev[b].detach().numpy(), np.sqrt(np.diag(total)), rtol=1e-12)


def assert_sample_moments(samples, mean, total):
    """Sample mean and sample covariance of samples [N, D] lie within N_SIGMA standard errors.

    Standard errors are estimated from the samples: se(mean_i) = sd_i / sqrt(N) and
    se(cov_ij) = sd((x_i - m_i)(x_j - m_j)) / sqrt(N).
    """
    n = samples.shape[0]
    m = samples.mean(axis=0)
    c = samples - m
    prods = c[:, :, None] * c[:, None, :]  # [N, D, D]
    sample_cov = prods.mean(axis=0)
    se_mean = samples.std(axis=0, ddof=1) / math.sqrt(n)
    se_cov = prods.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(m - mean) < N_SIGMA * se_mean), (m, mean, se_mean)
    assert np.all(np.abs(sample_cov - total) < N_SIGMA * se_cov), (sample_cov, total, se_cov)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_sample_moments_match_closed_form(cov_type, D, batch_shape):
    """Seeded sample mean/covariance (N=100k) agree with the numpy closed form within 6 s.e.

    Chance failure: at most 12 numbers per batch element, 4 elements -> < 1e-7 (see N_SIGMA).
    """
    params = make_params(cov_type, D, batch_shape, K=3, seed=10)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    torch.manual_seed(12345)
    x = dist.sample((100_000,)).numpy()
    assert x.shape == (100_000,) + batch_shape + (D,)
    for b in batch_index(batch_shape):
        mean, total = np_moments(logw[b], mu[b], cov[b])
        assert_sample_moments(x[(slice(None),) + b], mean, total)


# ----------------------------------------------------------------------------------------------
# 5. Sampling: KS test, shapes, temperature
# ----------------------------------------------------------------------------------------------
KS_ALPHA = 1e-4  # a correct sampler fails a KS test at level alpha with probability alpha


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_samples_pass_ks_test(cov_type, batch_shape):
    """1-D samples (N=20k per batch element) pass a KS test against the SciPy mixture cdf.

    Failure rate alpha = 1e-4 per element for a correct sampler; seeded, so deterministic.
    """
    params = make_params(cov_type, 1, batch_shape, K=3, seed=13)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    torch.manual_seed(2024)
    x = dist.sample((20_000,)).numpy()
    for b in batch_index(batch_shape):
        xb = x[(slice(None),) + b + (0,)]
        pvalue = scipy.stats.kstest(xb, lambda t: np_cdf_1d(t, logw[b], mu[b], cov[b])).pvalue
        assert pvalue > KS_ALPHA


@pytest.mark.parametrize("sample_shape", ((), (0,), (5,), SAMPLE_SHAPE))
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_sample_shape_grid(cov_type, D, batch_shape, sample_shape):
    """sample(S) has shape S + batch_shape + (D,), float64, finite (empty for S = (0,)); rsample-free path."""
    dist = GaussianMixture(**make_params(cov_type, D, batch_shape, seed=14))
    torch.manual_seed(0)
    x = dist.sample(sample_shape)
    assert tuple(x.shape) == tuple(sample_shape) + batch_shape + (D,)
    assert x.dtype == F64
    assert torch.isfinite(x).all()
    x_t = dist.sample(sample_shape, temperature=0.5)
    assert tuple(x_t.shape) == tuple(sample_shape) + batch_shape + (D,)


def tempered(logits, cov, T):
    """Reference tempering: weights from logits / T, covariances times T."""
    return scipy.special.log_softmax(logits / T, axis=-1), cov * T


@pytest.mark.parametrize("T", (0.25, 2.0))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_temperature_ks_1d(cov_type, T):
    """1-D samples at temperature T pass a KS test against the mixture (logits/T, var*T).

    alpha = 1e-4. Also the untempered mixture must be rejected, so the check has power.
    """
    params = make_params(cov_type, 1, (), K=3, seed=15)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    logw_t, cov_t = tempered(params["logits"].numpy(), cov, T)
    torch.manual_seed(77)
    x = dist.sample((20_000,), temperature=T).numpy()[:, 0]
    assert scipy.stats.kstest(x, lambda t: np_cdf_1d(t, logw_t, mu, cov_t)).pvalue > KS_ALPHA
    assert scipy.stats.kstest(x, lambda t: np_cdf_1d(t, logw, mu, cov)).pvalue < KS_ALPHA


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("T", (0.25, 2.0))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_temperature_sample_moments(cov_type, T, batch_shape):
    """D=3 samples at temperature T have the moments of (logits/T, cov*T), within 6 s.e."""
    params = make_params(cov_type, 3, batch_shape, K=3, seed=16)
    dist = GaussianMixture(**params)
    _, mu, cov = np_params(params)
    logw_t, cov_t = tempered(params["logits"].numpy(), cov, T)
    torch.manual_seed(78)
    x = dist.sample((100_000,), temperature=T).numpy()
    for b in batch_index(batch_shape):
        mean, total = np_moments(logw_t[b], mu[b], cov_t[b])
        assert_sample_moments(x[(slice(None),) + b], mean, total)


# ----------------------------------------------------------------------------------------------
# 6. cdf and icdf
# ----------------------------------------------------------------------------------------------
Q_GRID = np.array([1e-6, 1e-4, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1 - 1e-4, 1 - 1e-6])


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_cdf_matches_scipy(cov_type, batch_shape):
    """cdf(value [2, 7, *B, 1]) -> [2, 7, *B] equals sum_k w_k norm.cdf(y; mu_k, sd_k)."""
    params = make_params(cov_type, 1, batch_shape, K=3, seed=17)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    y = random_points(params, SAMPLE_SHAPE, seed=18)
    got = dist.cdf(torch.from_numpy(y)).numpy()
    assert got.shape == SAMPLE_SHAPE + batch_shape
    for b in batch_index(batch_shape):
        ref = np_cdf_1d(y[(Ellipsis,) + b + (0,)], logw[b], mu[b], cov[b])
        np.testing.assert_allclose(got[(Ellipsis,) + b], ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_icdf_matches_scipy_quantile(cov_type, batch_shape):
    """icdf(q) equals the brentq root of the SciPy cdf to 1e-6, for q from 1e-6 to 1 - 1e-6.

    Also cdf(icdf(q)) == q up to (max density) * 1e-6, the q-error a 1e-6 y-error can cause.
    """
    params = make_params(cov_type, 1, batch_shape, K=3, seed=19)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    q = np.broadcast_to(Q_GRID.reshape(-1, *([1] * len(batch_shape))), (Q_GRID.size,) + batch_shape).copy()
    got = dist.icdf(torch.from_numpy(q))
    assert tuple(got.shape) == (Q_GRID.size,) + batch_shape + (1,)
    back = dist.cdf(got).numpy()
    got = got.numpy()
    for b in batch_index(batch_shape):
        ref = np_quantile_1d(Q_GRID, logw[b], mu[b], cov[b])
        np.testing.assert_allclose(got[(slice(None),) + b + (0,)], ref, rtol=0, atol=1e-6)
        pmax = np.exp(np_logpdf(np.linspace(ref[0], ref[-1], 2001)[:, None], logw[b], mu[b], cov[b])).max()
        np.testing.assert_allclose(back[(slice(None),) + b], Q_GRID, rtol=0, atol=1e-6 * pmax)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_icdf_inverts_cdf(cov_type, batch_shape):
    """icdf(cdf(y)) == y (atol 1e-6) at points whose cdf lies in [1e-6, 1 - 1e-6]."""
    params = make_params(cov_type, 1, batch_shape, K=3, seed=20)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    y = random_points(params, (50,), seed=21, widen=1.0)
    for b in batch_index(batch_shape):  # keep only points inside the stated q range (scipy cdf)
        col = (slice(None),) + b + (0,)
        c = np_cdf_1d(y[col], logw[b], mu[b], cov[b])
        y[col] = np.where((c > 1e-6) & (c < 1 - 1e-6), y[col], mu[b][0, 0])
    yt = torch.from_numpy(y)
    back = dist.icdf(dist.cdf(yt))
    assert tuple(back.shape) == (50,) + batch_shape + (1,)
    np.testing.assert_allclose(back.numpy(), y, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_icdf_batched_equals_row_by_row(cov_type):
    """icdf on batch (4,) with q [9, 4] and with broadcast q [9, 1] equals each row's own icdf."""
    params = make_params(cov_type, 1, (4,), K=3, seed=22)
    dist = GaussianMixture(**params)
    q = np.random.default_rng(23).uniform(1e-3, 1 - 1e-3, size=(9, 4))
    got = dist.icdf(torch.from_numpy(q)).numpy()
    q_col = np.linspace(0.05, 0.95, 9)[:, None]
    got_bcast = dist.icdf(torch.from_numpy(q_col)).numpy()
    assert got.shape == (9, 4, 1)
    assert got_bcast.shape == (9, 4, 1)
    for i in range(4):
        row = GaussianMixture(**row_params(params, (i,)))
        row_q = row.icdf(torch.from_numpy(q[:, i])).numpy()
        row_q_col = row.icdf(torch.from_numpy(q_col[:, 0])).numpy()
        np.testing.assert_allclose(got[:, i], row_q, rtol=0, atol=1e-7)
        np.testing.assert_allclose(got_bcast[:, i], row_q_col, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# 7. Modes
# ----------------------------------------------------------------------------------------------
def np_modes_1d(logw, mu, cov):
    """All local maxima of a 1-D mixture density: local maxima of a fine grid, each refined to
    the root of d/dy log p between its grid neighbours (brentq, xtol 1e-13)."""
    sd = np.sqrt(cov[:, 0, 0])
    grid = np.linspace(np.min(mu[:, 0] - 6 * sd), np.max(mu[:, 0] + 6 * sd), 20001)
    lp = np_logpdf(grid[:, None], logw, mu, cov)
    peaks = np.flatnonzero((lp[1:-1] > lp[:-2]) & (lp[1:-1] >= lp[2:])) + 1
    grad = lambda t: np_grad_logpdf(np.array([[t]]), logw, mu, cov)[0, 0]  # noqa: E731
    modes = np.array([[scipy.optimize.brentq(grad, grid[i - 1], grid[i + 1], xtol=1e-13)] for i in peaks])
    return modes[np.argsort(-np_logpdf(modes, logw, mu, cov))]


def np_modes_nd(logw, mu, cov, n_grid=301):
    """All local maxima of a 2-D mixture density: grid local maxima refined by BFGS on -log p."""
    sd = np.sqrt(cov.diagonal(axis1=-2, axis2=-1))
    lo, hi = np.min(mu - 5 * sd, axis=0), np.max(mu + 5 * sd, axis=0)
    axes = [np.linspace(lo[d], hi[d], n_grid) for d in range(2)]
    gx, gy = np.meshgrid(*axes, indexing="ij")
    lp = np_logpdf(np.stack([gx.ravel(), gy.ravel()], -1), logw, mu, cov).reshape(gx.shape)
    inner = lp[1:-1, 1:-1]
    is_max = np.ones_like(inner, dtype=bool)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            if dx or dy:
                is_max &= inner >= lp[1 + dx : n_grid - 1 + dx, 1 + dy : n_grid - 1 + dy]
    modes = []
    for i, j in zip(*np.nonzero(is_max)):
        res = scipy.optimize.minimize(
            lambda z: -np_logpdf(z[None], logw, mu, cov)[0],
            np.array([axes[0][i + 1], axes[1][j + 1]]),
            jac=lambda z: -np_grad_logpdf(z[None], logw, mu, cov)[0],
            method="BFGS",
            options={"gtol": 1e-11},
        )
        if not any(np.linalg.norm(res.x - m) < 1e-6 for m in modes):
            modes.append(res.x)
    modes = np.array(modes)
    return modes[np.argsort(-np_logpdf(modes, logw, mu, cov))]


def check_modes(result, logw, mu, cov, ref_modes):
    """Shared assertions for one batch element's Modes against a numpy reference."""
    K, D = mu.shape
    value = result.value.detach().numpy()
    log_prob = result.log_prob.detach().numpy()
    mask = result.mask.numpy()
    assert value.shape == (K, D) and log_prob.shape == (K,) and mask.shape == (K,)
    n = len(ref_modes)
    found = f"modes {value[mask].tolist()}, mask {mask.tolist()}, reference {ref_modes.tolist()}"
    assert mask.sum() == n, found
    # valid modes first; padding NaN / -inf
    assert mask[:n].all() and not mask[n:].any()
    assert np.isnan(value[~mask]).all() and np.all(log_prob[~mask] == -np.inf)
    # sorted by log_prob, descending
    assert np.all(np.diff(log_prob[:n]) <= 0)
    np.testing.assert_allclose(value[:n], ref_modes, rtol=0, atol=1e-5)
    # reported log_prob is the log density at the reported location
    np.testing.assert_allclose(log_prob[:n], np_logpdf(value[:n], logw, mu, cov), rtol=1e-10)
    # stationary: the gradient of log p vanishes there (|grad log p| <= 1e-4, curvature ~ 1)
    assert np.all(np.linalg.norm(np_grad_logpdf(value[:n], logw, mu, cov), axis=-1) < 1e-4)


MODE_CASES_1D = {
    # name: (weights, means, sds, expected number of modes)
    "two_separated": ([0.5, 0.5], [-3.0, 3.0], [1.0, 1.0], 2),
    "two_close_unimodal": ([0.5, 0.5], [-0.8, 0.8], [1.0, 1.0], 1),  # distance 1.6 < 2 sd
    "duplicate_components": ([0.3, 0.3, 0.4], [0.0, 0.0, 5.0], [1.0, 1.0, 0.5], 2),
    "unequal_three": ([0.6, 0.3, 0.1], [-4.0, 0.0, 4.0], [1.0, 0.7, 0.5], 3),
}


@pytest.mark.parametrize("case", sorted(MODE_CASES_1D))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_modes_1d(cov_type, case):
    """modes() on known 1-D mixtures matches the grid + scipy.optimize maxima of the numpy density.

    Separated components give one mode each (near the means); two unit-variance components
    1.6 apart give exactly one mode at the midpoint; identical components merge into one mode.
    """
    weights, means, sds, n_expected = MODE_CASES_1D[case]
    params = params_1d(weights, means, sds, cov_type=cov_type)
    logw, mu, cov = np_params(params)
    ref = np_modes_1d(logw, mu, cov)
    assert len(ref) == n_expected  # the reference itself agrees with the textbook count
    if case == "two_close_unimodal":
        np.testing.assert_allclose(ref, [[0.0]], atol=1e-8)
    result = GaussianMixture(**params).modes()
    check_modes(result, logw, mu, cov, ref)


MODE_LAYOUTS_2D = {
    # name: (weights, means); both have 3 separated components, hence 3 modes
    "triangle": ([0.5, 0.3, 0.2], [[-4.0, 0.0], [4.0, 0.5], [0.0, 5.0]]),
    # the middle mode lies between the outer two: a "same peak" test along the segment joining
    # two modes must not merge the outer ones
    "collinear": ([0.6, 0.3, 0.1], [[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]]),
}


@pytest.mark.parametrize("layout", sorted(MODE_LAYOUTS_2D))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_modes_2d_three_separated(cov_type, layout):
    """A 2-D mixture of 3 well-separated components has exactly 3 modes, matching BFGS refinement."""
    weights, means = MODE_LAYOUTS_2D[layout]
    logits = torch.log(torch.tensor(weights, dtype=F64))
    loc = torch.tensor(means, dtype=F64)
    if cov_type == "diagonal":
        scale = torch.tensor([[1.0, 0.6], [0.8, 1.2], [0.7, 0.7]], dtype=F64)
        params = dict(logits=logits, loc=loc, scale=scale)
    elif cov_type == "isotropic":
        params = dict(logits=logits, loc=loc, scale=torch.tensor([1.0, 0.8, 0.7], dtype=F64))
    else:
        tril = torch.tensor(
            [[[1.0, 0.0], [0.5, 0.7]], [[0.8, 0.0], [-0.4, 0.9]], [[0.7, 0.0], [0.2, 0.6]]], dtype=F64
        )
        params = dict(logits=logits, loc=loc, scale_tril=tril)
    logw, mu, cov = np_params(params)
    ref = np_modes_nd(logw, mu, cov)
    assert len(ref) == 3
    check_modes(GaussianMixture(**params).modes(), logw, mu, cov, ref)


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_heaviest_component_mean(cov_type, D, batch_shape):
    """heaviest_component_mean() is mu of the component with the largest weight (numpy argmax)."""
    params = make_params(cov_type, D, batch_shape, K=4, seed=24)
    logw, mu, _ = np_params(params)
    got = GaussianMixture(**params).heaviest_component_mean().detach().numpy()
    ref = np.take_along_axis(mu, np.argmax(logw, axis=-1)[..., None, None], axis=-2)[..., 0, :]
    assert got.shape == batch_shape + (D,)
    np.testing.assert_array_equal(got, ref)


# ----------------------------------------------------------------------------------------------
# 8. Marginals
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dims", ([0], [2], [2, 0], [0, 1, 2]), ids=str)
@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_marginal_matches_numpy(cov_type, batch_shape, dims):
    """marginal(dims) of a D=3 mixture: same weights, mu[dims], cov[dims][:, dims]; checked via
    log_prob against the scipy logpdf of that marginal mixture, and its moments."""
    params = make_params(cov_type, 3, batch_shape, K=3, seed=25)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    marg = dist.marginal(dims)
    assert tuple(marg.batch_shape) == batch_shape
    assert tuple(marg.event_shape) == (len(dims),)
    sel = np.array(dims)
    mu_m = mu[..., sel]
    cov_m = cov[..., sel[:, None], sel[None, :]]
    y = random_points(params, SAMPLE_SHAPE, seed=26)[..., sel]
    got = marg.log_prob(torch.from_numpy(y)).detach().numpy()
    ref = np_log_prob_batched(y, logw, mu_m, cov_m)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)
    for b in batch_index(batch_shape):
        mean, total = np_moments(logw[b], mu_m[b], cov_m[b])
        np.testing.assert_allclose(marg.mean[b].detach().numpy(), mean, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(marg.covariance_matrix[b].detach().numpy(), total, rtol=1e-12, atol=1e-13)


# ----------------------------------------------------------------------------------------------
# 9. Conditioning
# ----------------------------------------------------------------------------------------------
def np_condition(logw, mu, cov, dims, values):
    """Exact Gaussian-mixture conditioning for one batch element, in numpy.

    b = dims (in the given order, matching values), a = remaining dims ascending. Per component:
    mu_a|b = mu_a + S_ab S_bb^-1 (v - mu_b), S_a|b = S_aa - S_ab S_bb^-1 S_ba, and new log
    weights log w_k + log N(v | mu_b, S_bb), renormalised.
    """
    D = mu.shape[-1]
    b = np.array(dims)
    a = np.array([d for d in range(D) if d not in dims])
    new_logw, new_mu, new_cov = [], [], []
    for k in range(mu.shape[0]):
        S = cov[k]
        Saa, Sab, Sbb = S[np.ix_(a, a)], S[np.ix_(a, b)], S[np.ix_(b, b)]
        gain = Sab @ np.linalg.inv(Sbb)
        new_mu.append(mu[k, a] + gain @ (values - mu[k, b]))
        new_cov.append(Saa - gain @ Sab.T)
        new_logw.append(logw[k] + scipy.stats.multivariate_normal(mu[k, b], Sbb).logpdf(values))
    new_logw = np.array(new_logw)
    return new_logw - scipy.special.logsumexp(new_logw), np.array(new_mu), np.array(new_cov)


CONDITION_CASES = [
    ("full", [1]),
    ("full", [0, 2]),
    ("full", [2, 0]),  # unsorted dims: values follow dims' order
    ("diagonal", [1]),
    ("diagonal", [2, 0]),
    ("isotropic", [0]),
]


@pytest.mark.parametrize("batch_shape", BATCH_SHAPES)
@pytest.mark.parametrize("cov_type, dims", CONDITION_CASES, ids=lambda v: str(v))
def test_condition_matches_numpy(cov_type, dims, batch_shape):
    """condition(dims, values) on D=3: log_prob of the conditional at random points, its
    weights and moments equal the per-component Gaussian conditioning done in numpy."""
    params = make_params(cov_type, 3, batch_shape, K=3, seed=27)
    dist = GaussianMixture(**params)
    logw, mu, cov = np_params(params)
    rng = np.random.default_rng(28)
    values = rng.normal(size=batch_shape + (len(dims),))
    cond = dist.condition(dims, torch.from_numpy(values))
    n_rest = 3 - len(dims)
    assert tuple(cond.batch_shape) == batch_shape
    assert tuple(cond.event_shape) == (n_rest,)
    y = rng.normal(scale=2.0, size=SAMPLE_SHAPE + batch_shape + (n_rest,))
    got = cond.log_prob(torch.from_numpy(y)).detach().numpy()
    for b in batch_index(batch_shape):
        lw_c, mu_c, cov_c = np_condition(logw[b], mu[b], cov[b], dims, values[b])
        yb = y[(Ellipsis,) + b + (slice(None),)].reshape(-1, n_rest)
        ref = np_logpdf(yb, lw_c, mu_c, cov_c).reshape(SAMPLE_SHAPE)
        np.testing.assert_allclose(got[(Ellipsis,) + b], ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cond.log_weights[b].detach().numpy(), lw_c, rtol=1e-10, atol=1e-12)
        mean, total = np_moments(lw_c, mu_c, cov_c)
        np.testing.assert_allclose(cond.mean[b].detach().numpy(), mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cond.covariance_matrix[b].detach().numpy(), total, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dims", ([1], [2, 0]), ids=str)
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_condition_bayes_identity(cov_type, dims):
    """log p(y_a | y_b) == log p(y) - log p_b(y_b), using log_prob and marginal of the class.

    Independent of the numpy reference: a wrong weight update or conditional covariance breaks it.
    """
    batch_shape = (4,)
    params = make_params(cov_type, 3, batch_shape, K=3, seed=29)
    dist = GaussianMixture(**params)
    rng = np.random.default_rng(30)
    values = torch.from_numpy(rng.normal(size=batch_shape + (len(dims),)))
    rest = [d for d in range(3) if d not in dims]
    y_a = torch.from_numpy(rng.normal(scale=2.0, size=(6,) + batch_shape + (len(rest),)))
    y = torch.empty((6,) + batch_shape + (3,), dtype=F64)
    y[..., rest] = y_a
    y[..., dims] = values.expand((6,) + batch_shape + (len(dims),))
    lhs = dist.condition(dims, values).log_prob(y_a)
    rhs = dist.log_prob(y) - dist.marginal(dims).log_prob(values)
    np.testing.assert_allclose(lhs.detach().numpy(), rhs.detach().numpy(), rtol=1e-9, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# 10. Highest density intervals
# ----------------------------------------------------------------------------------------------
def np_hdr_grid(logw, mu, cov, coverage, n_grid=100_001):
    """Brute-force HDR on a fine grid: the level lambda is the density at which the grid mass
    of {p >= lambda} first reaches `coverage`; intervals are the runs of the grid where
    p >= lambda, with endpoints refined by brentq on p(y) - lambda."""
    sd = np.sqrt(cov[:, 0, 0])
    grid = np.linspace(np.min(mu[:, 0] - 9 * sd), np.max(mu[:, 0] + 9 * sd), n_grid)
    dx = grid[1] - grid[0]
    p = np.exp(np_logpdf(grid[:, None], logw, mu, cov))
    order = np.argsort(-p)
    mass = np.cumsum(p[order]) * dx
    level = p[order][np.searchsorted(mass, coverage)]
    inside = p >= level
    edges = np.flatnonzero(np.diff(inside.astype(int)))
    assert len(edges) % 2 == 0
    f = lambda t: math.exp(np_logpdf(np.array([[t]]), logw, mu, cov)[0]) - level  # noqa: E731
    roots = [scipy.optimize.brentq(f, grid[i], grid[i + 1], xtol=1e-12) for i in edges]
    return level, np.array(roots).reshape(-1, 2)


HDI_CASES = {
    # name: (weights, means, sds, coverage, expected number of intervals or None)
    "single_0.9": ([1.0], [1.5], [2.0], 0.9, 1),
    "single_0.5": ([1.0], [-0.3], [0.4], 0.5, 1),
    "bimodal_separated_0.9": ([0.5, 0.5], [-5.0, 5.0], [1.0, 1.0], 0.9, 2),
    "asymmetric_0.5": ([0.7, 0.3], [0.0, 3.0], [1.0, 0.5], 0.5, None),
    "asymmetric_0.9": ([0.7, 0.3], [0.0, 3.0], [1.0, 0.5], 0.9, None),
    "asymmetric_0.99": ([0.7, 0.3], [0.0, 3.0], [1.0, 0.5], 0.99, None),
    "three_0.8": ([0.45, 0.35, 0.2], [-4.0, 0.0, 4.5], [1.0, 0.8, 0.6], 0.8, 3),
    "unequal_three_0.9": ([0.6, 0.3, 0.1], [-4.0, 0.0, 4.0], [1.0, 0.7, 0.5], 0.9, 3),
    # bimodal (3 sd apart) but the 0.9 region dips below the saddle: one interval; at 0.3, two
    "bimodal_merged_0.9": ([0.5, 0.5], [-1.5, 1.5], [1.0, 1.0], 0.9, 1),
    "bimodal_split_0.3": ([0.5, 0.5], [-1.5, 1.5], [1.0, 1.0], 0.3, 2),
    # A fitted model's density (values rounded): a local maximum near 211 lies barely above the
    # 0.5 level, inside an interval narrower than the grid's spacing (once found 0.478, not 0.5).
    "shoulder_peak_0.5": (
        [0.0232, 0.0308, 0.0871, 0.2508, 0.6081], [78.0288, 122.2971, 156.9894, 204.2628, 270.2094],
        [6.0911, 20.1869, 11.4482, 21.1674, 27.9902], 0.5, None,
    ),
}


@pytest.mark.parametrize("case", sorted(HDI_CASES))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_highest_density_intervals(cov_type, case):
    """HDIs: union has scipy-cdf probability = coverage (1e-3), p(endpoints) = level (rel 1e-3),
    and the intervals and level match a brute-force 100k-point grid HDR computed in numpy."""
    weights, means, sds, coverage, n_expected = HDI_CASES[case]
    params = params_1d(weights, means, sds, cov_type=cov_type)
    logw, mu, cov = np_params(params)
    K = len(weights)
    hdi = GaussianMixture(**params).highest_density_intervals(coverage)
    bounds, mask, level = hdi.bounds.detach().numpy(), hdi.mask.numpy(), float(hdi.level)
    assert bounds.shape == (K, 2) and mask.shape == (K,)
    n = int(mask.sum())
    assert mask[:n].all() and np.isnan(bounds[~mask]).all()
    intervals = bounds[:n]
    assert np.all(intervals[:, 0] < intervals[:, 1]) and np.all(np.diff(intervals[:, 0]) > 0)
    ref_level, ref_intervals = np_hdr_grid(logw, mu, cov, coverage)
    if n_expected is not None:
        assert len(ref_intervals) == n_expected
    assert n == len(ref_intervals), (intervals, ref_intervals)
    prob = np.sum(np_cdf_1d(intervals[:, 1], logw, mu, cov) - np_cdf_1d(intervals[:, 0], logw, mu, cov))
    assert prob == pytest.approx(coverage, abs=1e-3)
    edge_density = np.exp(np_logpdf(intervals.reshape(-1, 1), logw, mu, cov))
    np.testing.assert_allclose(edge_density, level, rtol=1e-3)
    assert level == pytest.approx(ref_level, rel=1e-3)
    np.testing.assert_allclose(intervals, ref_intervals, rtol=0, atol=1e-3 * max(1.0, *sds))
    if K == 1:  # a single Gaussian: the central interval mu +- z sigma, z = Phi^-1((1 + c) / 2)
        z = scipy.stats.norm.ppf(0.5 + coverage / 2)
        central = [means[0] - z * sds[0], means[0] + z * sds[0]]
        np.testing.assert_allclose(intervals[0], central, rtol=0, atol=1e-3 * sds[0])
        assert level == pytest.approx(scipy.stats.norm.pdf(z) / sds[0], rel=1e-3)


def test_highest_density_intervals_hold_their_mass_on_random_mixtures():
    """200 random 8-component mixtures (scales over two decades) at four coverages: the
    intervals' probability, by scipy's normal cdf, equals the coverage within 1e-6."""
    rng = np.random.default_rng(5)
    weights = rng.dirichlet(np.full(8, 0.7), size=200)
    loc = rng.normal(0, 3, size=(200, 8))
    scale = np.exp(rng.uniform(np.log(0.05), np.log(5), size=(200, 8)))
    mixture = GaussianMixture(
        torch.from_numpy(np.log(weights)), torch.from_numpy(loc[..., None]), scale=torch.from_numpy(scale[..., None])
    )
    for coverage in (0.3, 0.5, 0.8, 0.95):
        hdi = mixture.highest_density_intervals(coverage)
        lower, upper = hdi.bounds[..., 0].numpy(), hdi.bounds[..., 1].numpy()
        per_slot = scipy.stats.norm.cdf((upper[..., None] - loc[:, None]) / scale[:, None]) - scipy.stats.norm.cdf(
            (lower[..., None] - loc[:, None]) / scale[:, None]
        )  # [200, slots, 8]
        mass = np.nansum((per_slot * weights[:, None]).sum(-1), axis=-1)
        np.testing.assert_allclose(mass, coverage, atol=1e-6)


def test_highest_density_intervals_at_several_coverages_equal_one_at_a_time():
    """``highest_density_intervals_at`` tabulates the density once for all coverages; each region
    is the single-coverage call's, bit for bit (same grid, same iterations)."""
    from mdnkit._univariate import highest_density_intervals, highest_density_intervals_at

    rng = np.random.default_rng(6)
    log_weights = torch.from_numpy(np.log(rng.dirichlet(np.full(6, 0.5), size=(40, 3))))
    loc = torch.from_numpy(rng.normal(0, 3, size=(40, 3, 6)))
    scale = torch.from_numpy(np.exp(rng.uniform(np.log(0.05), np.log(3), size=(40, 3, 6))))
    coverages = (0.95, 0.3, 0.8)
    together = highest_density_intervals_at(log_weights, loc, scale, coverages)
    assert len(together) == 3 and int(together[0].mask.sum(-1).max()) >= 2  # some regions are unions
    for coverage, region in zip(coverages, together):
        alone = highest_density_intervals(log_weights, loc, scale, coverage)
        assert region.bounds.shape == (40, 3, 6, 2) and torch.equal(region.mask, alone.mask)
        assert torch.equal(region.level, alone.level)
        assert torch.equal(region.bounds.nan_to_num(123.0), alone.bounds.nan_to_num(123.0))
    with pytest.raises(ValueError, match="coverage must be in"):
        highest_density_intervals_at(log_weights, loc, scale, [0.5, 1.0])


def test_elementwise_root_finder_gives_each_element_its_root():
    """Roots of x³ = a + s for a over 12 decades (some take many more steps than others, so
    converged elements drop out mid-way) and a shift s ``[4, 1]`` broadcast to ``[4, 5]``: each
    equals NumPy's cube root, in the input's shape. One element's residual is NaN: it never
    converges, runs to ``max_iter``, and the others are still solved."""
    from mdnkit._univariate import _solve_bracketed_elementwise

    a = torch.from_numpy(np.geomspace(1e-6, 1e6, 20).reshape(4, 5))
    a[2, 3] = math.nan
    shift = torch.tensor([[0.0], [1.0], [7.0], [0.5]], dtype=torch.float64)

    def residual_and_slope(x, target, shift):
        return x ** 3 - (target[:, 0] + shift[:, 0]), 3 * x ** 2

    lower, upper = torch.zeros_like(a), torch.full_like(a, 200.0)
    roots = _solve_bracketed_elementwise(residual_and_slope, lower, upper, torch.zeros_like(a),  # relative steps
                                         (a.unsqueeze(-1), shift.unsqueeze(-1)))
    assert roots.shape == (4, 5)
    expected = np.cbrt((a + shift).numpy())
    solved = ~np.isnan(expected)
    assert solved.sum() == 19
    np.testing.assert_allclose(roots.numpy()[solved], expected[solved], rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# 11. Batched == one at a time
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_batched_equals_one_at_a_time(cov_type, D):
    """log_prob, component_log_prob, moments, modes (and for D=1 cdf, icdf, HDIs) of a batch
    (4,) equal those of each row's own unbatched distribution; per-row sample shapes agree."""
    params = make_params(cov_type, D, (4,), K=3, seed=31)
    dist = GaussianMixture(**params)
    # Iterative searches (modes, icdf, HDI) may stop on a batch-wide criterion, so a row can get
    # a few extra iterations: require agreement well inside their accuracy tests (1e-5, 1e-6).
    iter_atol = 1e-7
    y = torch.from_numpy(random_points(params, (5,), seed=32))  # [5, 4, D]
    lp = dist.log_prob(y)
    clp = dist.component_log_prob(y)
    modes = dist.modes()
    if D == 1:
        cdf = dist.cdf(y)
        q = torch.from_numpy(np.random.default_rng(33).uniform(0.01, 0.99, size=(5, 4)))
        icdf = dist.icdf(q)
        hdi = dist.highest_density_intervals(0.8)
    torch.manual_seed(0)
    assert tuple(dist.sample(SAMPLE_SHAPE).shape) == SAMPLE_SHAPE + (4, D)
    for i in range(4):
        row = GaussianMixture(**row_params(params, (i,)))
        assert tuple(row.sample(SAMPLE_SHAPE).shape) == SAMPLE_SHAPE + (D,)
        torch.testing.assert_close(lp[:, i], row.log_prob(y[:, i]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(clp[:, i], row.component_log_prob(y[:, i]), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(dist.covariance_matrix[i], row.covariance_matrix, rtol=1e-12, atol=1e-12)
        row_modes = row.modes()
        assert torch.equal(modes.mask[i], row_modes.mask)
        torch.testing.assert_close(modes.value[i], row_modes.value, rtol=0, atol=iter_atol, equal_nan=True)
        torch.testing.assert_close(modes.log_prob[i], row_modes.log_prob, rtol=1e-10, atol=1e-10)
        if D == 1:
            torch.testing.assert_close(cdf[:, i], row.cdf(y[:, i]), rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(icdf[:, i], row.icdf(q[:, i]), rtol=0, atol=iter_atol)
            row_hdi = row.highest_density_intervals(0.8)
            assert torch.equal(hdi.mask[i], row_hdi.mask)
            torch.testing.assert_close(hdi.bounds[i], row_hdi.bounds, rtol=0, atol=iter_atol, equal_nan=True)
            torch.testing.assert_close(hdi.level[i], row_hdi.level, rtol=1e-8, atol=0)


# ----------------------------------------------------------------------------------------------
# 12. Gradients
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D", (1, 3))
@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_gradients_reach_every_parameter(cov_type, D):
    """log_prob(...).sum().backward() gives finite, non-zero gradients to logits, loc and
    scale / scale_tril (lower triangle), including at points 1e3 std devs away."""
    params = make_params(cov_type, D, (4,), K=3, seed=34)
    params = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    y = random_points(params, (5,), seed=35)
    far = y + 1e3 * np.sign(y) * 2.0
    value = torch.from_numpy(np.concatenate([y, far]))
    GaussianMixture(**params).log_prob(value).sum().backward()
    for name, p in params.items():
        assert p.grad is not None, name
        g = p.grad
        if name == "scale_tril":
            rows, cols = torch.tril_indices(D, D)
            g = g[..., rows, cols]
        assert torch.isfinite(g).all(), name
        assert (g != 0).all(), (name, g)


@pytest.mark.parametrize("cov_type", COV_TYPES)
def test_log_prob_gradcheck(cov_type):
    """Autograd gradients of log_prob agree with finite differences (torch gradcheck, float64)."""
    params = make_params(cov_type, 2, (2,), K=2, seed=36)
    names = list(params)
    y = torch.from_numpy(random_points(params, (3,), seed=37))

    def f(*tensors):
        return GaussianMixture(**dict(zip(names, tensors))).log_prob(y)

    inputs = tuple(params[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# 13. Errors
# ----------------------------------------------------------------------------------------------
def test_cdf_icdf_hdi_reject_multivariate():
    """cdf, icdf and highest_density_intervals are 1-D only: ValueError for D = 3."""
    dist = GaussianMixture(**make_params("diagonal", 3, (), seed=38))
    with pytest.raises(ValueError, match=r"(?i)dim|univariate|1|event"):
        dist.cdf(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match=r"(?i)dim|univariate|1|event"):
        dist.icdf(torch.tensor(0.5, dtype=F64))
    with pytest.raises(ValueError, match=r"(?i)dim|univariate|1|event"):
        dist.highest_density_intervals(0.9)


def test_scale_and_scale_tril_are_exclusive():
    """Passing both scale and scale_tril, or neither, is a ValueError naming the scale arguments."""
    p = make_params("full", 2, (), seed=39)
    scale = torch.ones(3, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"(?i)scale"):
        GaussianMixture(p["logits"], p["loc"], scale=scale, scale_tril=p["scale_tril"])
    with pytest.raises(ValueError, match=r"(?i)scale"):
        GaussianMixture(p["logits"], p["loc"])


# Base: K=3, D=2, diagonal (logits [3], loc [3, 2], scale [3, 2]). Each case is inconsistent under
# every reading of the contract (a [4, 2] scale is neither [K, D] = [3, 2] nor [*B, K] = [..., 3]).
SHAPE_MISMATCHES = {
    "loc_K": lambda p: dict(p, loc=p["loc"][..., :2, :]),
    "logits_K": lambda p: dict(p, logits=p["logits"][..., :2]),
    "scale_D": lambda p: dict(p, scale=torch.ones(3, 4, dtype=F64)),
    "scale_K": lambda p: dict(p, scale=torch.ones(4, 2, dtype=F64)),
    "batch": lambda p: dict(
        logits=torch.zeros(5, 3, dtype=F64),
        loc=torch.zeros(4, 3, 2, dtype=F64),
        scale=torch.ones(4, 3, 2, dtype=F64),
    ),
    "scale_tril_D": lambda p: dict(
        logits=p["logits"], loc=p["loc"], scale_tril=torch.eye(4, dtype=F64).expand(3, 4, 4)
    ),
    "scale_tril_not_square": lambda p: dict(
        logits=p["logits"], loc=p["loc"], scale_tril=torch.ones(3, 2, 3, dtype=F64)
    ),
}


@pytest.mark.parametrize("case", sorted(SHAPE_MISMATCHES))
def test_shape_mismatch_raises(case):
    """Inconsistent K, D or batch shapes between logits / loc / scale(_tril) raise ValueError."""
    p = make_params("diagonal", 2, (), K=3, seed=40)
    with pytest.raises(ValueError, match=r"(?i)shape|size|dim|match|component|compatible"):
        GaussianMixture(**SHAPE_MISMATCHES[case](p))
