"""Component families: the Student-t mixture against SciPy, and one contract over every family.

Statistical tests are seeded; each states its chance of failing for a correct implementation
(KS at alpha = 1e-4; moment checks at 6 standard errors, below 1e-8 per check).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from scipy.special import logsumexp

from mdnkit.families import FAMILY_NAMES, make_family
from mdnkit.heads import MixtureHead
from mdnkit.mixture import cat, mixture_of_members
from mdnkit.student_t import StudentTMixture

KS_ALPHA = 1e-4


def _student_t(batch=(4,), k=3, d=1, seed=0) -> StudentTMixture:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*batch, k, generator=g, dtype=torch.float64)
    df = 2.2 + 10 * torch.rand(*batch, k, d, generator=g, dtype=torch.float64)
    loc = 3 * torch.randn(*batch, k, d, generator=g, dtype=torch.float64)
    scale = 0.3 + torch.rand(*batch, k, d, generator=g, dtype=torch.float64)
    return StudentTMixture(logits, df, loc, scale)


def _scipy_parts(mixture: StudentTMixture, row: int):
    weights = mixture.weights[row].numpy()
    df, loc, scale = (t[row].numpy() for t in (mixture.df, mixture.loc, mixture.scale))
    return weights, df, loc, scale


# ============================================================================ Student-t vs SciPy
@pytest.mark.parametrize("d", [1, 2])
def test_student_t_log_prob_matches_scipy(d):
    mixture = _student_t(d=d)
    y = torch.randn(5, 4, d, dtype=torch.float64) * 4  # [S, B, D]
    got = mixture.log_prob(y).numpy()
    for row in range(4):
        weights, df, loc, scale = _scipy_parts(mixture, row)
        for s in range(5):
            terms = [np.log(weights[k]) + stats.t(df[k], loc[k], scale[k]).logpdf(y[s, row].numpy()).sum()
                     for k in range(3)]
            assert got[s, row] == pytest.approx(logsumexp(terms), rel=1e-12, abs=1e-12)


def test_student_t_density_integrates_to_one():
    mixture = _student_t(batch=(1,))
    total, error = integrate.quad(lambda v: float(mixture.log_prob(torch.tensor([[v]], dtype=torch.float64)).exp()),
                                  -np.inf, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)


def test_student_t_cdf_and_quantiles_match_scipy():
    mixture = _student_t()
    y = torch.linspace(-30, 30, 61, dtype=torch.float64)[:, None].expand(61, 4)  # [S, B]
    got = mixture.cdf(y.unsqueeze(-1)).numpy()
    q = torch.tensor([1e-6, 0.01, 0.3, 0.5, 0.9, 1 - 1e-6], dtype=torch.float64)[:, None].expand(6, 4)
    quantiles = mixture.icdf(q)[..., 0].numpy()
    for row in range(4):
        weights, df, loc, scale = _scipy_parts(mixture, row)

        def cdf(v):
            return sum(weights[k] * stats.t(df[k, 0], loc[k, 0], scale[k, 0]).cdf(v) for k in range(3))

        np.testing.assert_allclose(got[:, row], cdf(y[:, row].numpy()), rtol=1e-10, atol=1e-14)
        for i, level in enumerate(q[:, row].tolist()):
            reference = optimize.brentq(lambda v: cdf(v) - level, -1e6, 1e6, xtol=1e-14, rtol=1e-14)
            assert quantiles[i, row] == pytest.approx(reference, rel=1e-9, abs=1e-9)


def test_student_t_quantile_ends_and_heavy_tails():
    mixture = StudentTMixture(torch.zeros(1, dtype=torch.float64), torch.full((1, 1), 2.001, dtype=torch.float64),
                              torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    got = mixture.icdf(torch.tensor([0.0, 1e-9, 1.0], dtype=torch.float64))[..., 0]
    assert got[0] == -np.inf and got[2] == np.inf
    assert float(got[1]) == pytest.approx(stats.t(2.001).ppf(1e-9), rel=1e-8)


def test_student_t_moments_match_scipy():
    mixture = _student_t(d=2)
    for row in range(4):
        weights, df, loc, scale = _scipy_parts(mixture, row)
        means = np.array([[stats.t(df[k, j], loc[k, j], scale[k, j]).mean() for j in range(2)] for k in range(3)])
        variances = np.array([[stats.t(df[k, j], loc[k, j], scale[k, j]).var() for j in range(2)] for k in range(3)])
        mean = weights @ means
        variance = weights @ (variances + (means - mean) ** 2)
        np.testing.assert_allclose(mixture.mean[row].numpy(), mean, rtol=1e-12)
        np.testing.assert_allclose(mixture.variance[row].numpy(), variance, rtol=1e-12)


def test_student_t_undefined_moments_are_nan_or_inf():
    df = torch.tensor([[[0.8]], [[1.5]]], dtype=torch.float64)  # batch (2,), K=1, D=1
    mixture = StudentTMixture(torch.zeros(2, 1), df, torch.zeros(2, 1, 1), torch.ones(2, 1, 1))
    assert torch.isnan(mixture.mean[0]).all() and torch.isfinite(mixture.mean[1]).all()
    assert torch.isnan(mixture.variance[0]).all() and torch.isinf(mixture.variance[1]).all()


def test_student_t_samples_follow_the_mixture():
    """KS test at alpha = 1e-4 on 20,000 draws of each of 4 rows: false alarms below 4e-4 in all."""
    mixture = _student_t()
    torch.manual_seed(0)
    draws = mixture.sample((20_000,))  # [S, B, 1]
    assert draws.shape == (20_000, 4, 1)
    for row in range(4):
        weights, df, loc, scale = _scipy_parts(mixture, row)
        cdf = lambda v: sum(weights[k] * stats.t(df[k, 0], loc[k, 0], scale[k, 0]).cdf(v) for k in range(3))  # noqa: E731
        assert stats.kstest(draws[:, row, 0].numpy(), cdf).pvalue > KS_ALPHA


def test_student_t_temperature_sharpens():
    mixture = _student_t(batch=(1,), k=1)
    torch.manual_seed(0)
    cold, warm = mixture.sample((20_000,), temperature=0.25), mixture.sample((20_000,), temperature=1.0)
    iqr = lambda a: np.subtract(*np.quantile(a.numpy().ravel(), [0.75, 0.25]))  # noqa: E731
    # Temperature T scales each draw's spread by sqrt(T): the interquartile range halves.
    assert iqr(cold) / iqr(warm) == pytest.approx(0.5, rel=0.05)


def test_student_t_marginal_and_condition_are_exact():
    mixture = _student_t(d=2)
    y = torch.randn(4, 2, dtype=torch.float64)
    marginal = mixture.marginal([1])
    joint = mixture.component_log_prob(y)  # [B, K]; independent dims: sum of the marginals
    np.testing.assert_allclose(
        joint.numpy(),
        (mixture.marginal([0]).component_log_prob(y[:, :1]) + marginal.component_log_prob(y[:, 1:])).numpy(),
        rtol=1e-12,
    )
    conditional = mixture.condition([0], y[:, :1])
    # p(y1 | y0) = p(y0, y1) / p(y0)
    expected = mixture.log_prob(y) - mixture.marginal([0]).log_prob(y[:, :1])
    np.testing.assert_allclose(conditional.log_prob(y[:, 1:]).numpy(), expected.numpy(), rtol=1e-10)


def test_student_t_affine_is_the_change_of_variables():
    mixture = _student_t(d=2)
    shift, scale = torch.tensor([1e6, -3.0], dtype=torch.float64), torch.tensor([2.0, 0.5], dtype=torch.float64)
    y = torch.randn(4, 2, dtype=torch.float64)
    moved = mixture.affine(shift, scale)
    expected = mixture.log_prob(y) - scale.log().sum()
    np.testing.assert_allclose(moved.log_prob(shift + scale * y).numpy(), expected.numpy(), rtol=1e-10)


def test_mixture_plumbing_is_generic():
    """cat, rows, expand, to and the mixture of members work the same for every family."""
    mixture = _student_t(batch=(4,))
    joined = cat([mixture.rows(slice(0, 1)), mixture.rows(slice(1, 4))])
    y = torch.randn(4, 1, dtype=torch.float64)
    np.testing.assert_array_equal(joined.log_prob(y).numpy(), mixture.log_prob(y).numpy())
    assert mixture.expand((2, 4)).batch_shape == (2, 4)
    assert mixture.to(torch.float32).log_prob(y.float()).dtype == torch.float32
    members = mixture_of_members(mixture)  # the 4 rows as members of one mixture
    expected = logsumexp(mixture.log_prob(y[:1].expand(4, 1)).numpy()) - np.log(4)
    assert float(members.log_prob(y[0])) == pytest.approx(expected, rel=1e-12)


def test_student_t_refuses_shapes_that_do_not_match():
    with pytest.raises(ValueError, match=r"must end in \[K, D\]"):
        StudentTMixture(torch.zeros(3), torch.ones(3, 2), torch.zeros(3, 1), torch.ones(3, 1))
    with pytest.raises(ValueError, match="agree on K"):
        StudentTMixture(torch.zeros(2), torch.ones(3, 1), torch.zeros(3, 1), torch.ones(3, 1))


# ============================================================================ every family's head
FAMILY_GRID = [("gaussian", c) for c in ("diagonal", "isotropic", "full")] + [
    (name, "diagonal") for name in FAMILY_NAMES if name != "gaussian"
]


def _targets_in_support(family: str, d: int) -> tuple[torch.Tensor, float, float]:
    """``(y [500, d], where the starting mixture's mean should be, tolerance)`` for a family."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, d, generator=g, dtype=torch.float64)
    if family == "lognormal":
        y = torch.exp(0.3 * z + 1.0)
    elif family == "logit_normal":
        y = torch.sigmoid(0.5 * z + 0.5)
    elif family == "von_mises":
        y = 0.4 * z + 1.0
    else:
        y = 2 * z + 10
    return y, float(y.mean()), 0.05 * float(y.std()) * 10


@pytest.mark.parametrize("family, covariance_type", FAMILY_GRID)
@pytest.mark.parametrize("d", [1, 3])
@pytest.mark.parametrize("n_members", [None, 2])
def test_head_contract_over_every_family(family, covariance_type, d, n_members):
    """Shapes, gradients reaching every output unit, the scale floor, initialisation, pruning."""
    torch.manual_seed(0)
    head = MixtureHead(6, d, n_components=4, covariance_type=covariance_type, min_scale=0.05,
                       n_members=n_members, family=family).double()
    lead = () if n_members is None else (n_members,)
    features = torch.randn(*lead, 7, 6, dtype=torch.float64)
    mixture = head(features)
    assert mixture.batch_shape == (*lead, 7) and mixture.event_shape == (d,)
    assert mixture.family == family
    assert mixture.sample((2, 5)).shape == (2, 5, *lead, 7, d)
    params = head.params(features)
    assert all(isinstance(t, torch.Tensor) for t in params)
    assert all(t.shape[:len(lead) + 2] == (*lead, 7, 4) for t in params)
    # The floor on the family's scale parameter (the circular scale 1/√κ for von Mises).
    floored = params[head.family.parameter_names.index("concentration") + 1].rsqrt() if family == "von_mises" \
        else params[1 + head.family.parameter_names.index("scale" if "scale" in head.family.parameter_names
                                                          else "scale_tril")]
    if covariance_type != "full":
        assert float(floored.min()) >= 0.05 * (1 - 1e-12)
    else:
        assert float(mixture.component_stddev.min()) >= 0.05
    # Every output unit of the head moves the log-likelihood.
    mixture.log_prob(_targets_in_support(family, d)[0][:7].expand(*lead, 7, d)).sum().backward()
    gradient = head.linear.bias.grad.reshape(-1, head.linear.bias.shape[-1])
    assert bool((gradient.abs().sum(0) > 0).all())
    # Data-driven start: the starting components sit at the quantiles / k-means centres, with
    # targets inside the family's support (in the head's units: (0, 1) for a bounded family).
    y, centre, tolerance = _targets_in_support(family, d)
    head.initialize(y, random_state=0)
    with torch.no_grad():
        start = head(torch.zeros(*lead, 1, 6, dtype=torch.float64))
    assert float(start.mean.mean()) == pytest.approx(centre, abs=tolerance)
    np.testing.assert_allclose(start.weights.numpy(), 0.25, atol=0.05)
    head.prune(torch.tensor([True, False, True, True]))
    assert head(features).n_components == 3


def test_make_family_names_what_is_wrong():
    with pytest.raises(ValueError, match="family must be one of"):
        make_family("cauchy", 3, 1)
    with pytest.raises(ValueError, match="only available for the gaussian family"):
        make_family("student_t", 3, 2, covariance_type="full")
    with pytest.raises(ValueError, match="min_df must be positive"):
        make_family("student_t", 3, 1, min_df=0)
