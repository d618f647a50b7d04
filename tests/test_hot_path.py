"""The component-major Gaussian log-density (training's and scoring's hot path) against SciPy and
against autograd through the row-major mixture, in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from mdnkit._gaussian_hot_path import component_major_density, component_major_log_prob
from mdnkit.distributions import GaussianMixture
from mdnkit.heads import MDN, MDNEnsemble, MixtureHead

K, FLOOR = 4, 1e-3


def _raw(batch: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(*batch, 3 * K, n, generator=generator, dtype=torch.float64)).requires_grad_()


def _reference(raw: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """log Σ_k softmax(logits)_k N(y | μ_k, softplus(raw_k) + floor) by SciPy, in float64."""
    logits, loc, raw_scale = np.split(raw.detach().numpy(), 3, axis=-2)
    scale = np.logaddexp(0.0, raw_scale) + FLOOR
    log_weights = logits - special.logsumexp(logits, axis=-2, keepdims=True)
    return special.logsumexp(log_weights + stats.norm.logpdf(y, loc, scale), axis=-2)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_log_density_matches_scipy(batch):
    raw = _raw(batch, 50)
    y = np.random.default_rng(1).normal(scale=3.0, size=50)
    ours = component_major_log_prob(raw, torch.from_numpy(y), FLOOR, K)
    np.testing.assert_allclose(ours.detach().numpy(), _reference(raw, y), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [(), (3,)])
def test_gradient_matches_autograd_through_the_row_major_mixture(batch):
    raw = _raw(batch, 40, seed=2)
    y = torch.from_numpy(np.random.default_rng(3).normal(scale=3.0, size=40))
    upstream = torch.randn(*batch, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    (component_major_log_prob(raw, y, FLOOR, K) * upstream).sum().backward()
    ours, raw.grad = raw.grad.clone(), None
    logits, loc, raw_scale = raw.transpose(-1, -2).split(K, dim=-1)  # [*B, N, K]
    scale = torch.nn.functional.softplus(raw_scale) + FLOOR
    reference = GaussianMixture(logits, loc.unsqueeze(-1), scale=scale.unsqueeze(-1)).log_prob(y[:, None])
    (reference * upstream).sum().backward()
    torch.testing.assert_close(ours, raw.grad, rtol=1e-10, atol=1e-12)


def test_gradient_matches_finite_differences():
    y = torch.linspace(-4, 4, 6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda raw: component_major_log_prob(raw, y, FLOOR, K), (_raw((2,), 6, seed=5),))


def test_far_rows_and_masked_components_stay_finite():
    """A row 1e4 scales from every component keeps a finite log-density and gradient, and a
    component with logit -inf (pruned from an ensemble member) gets no weight: its share is
    floored at e^-354 = 2.6e-154 (float64), so its gradients, that times (z² - 1) / σ at most
    for rows 1e4 away, are below 1e-140."""
    raw = _raw((), 3, seed=6).detach()
    raw[0] = -math.inf  # component 0 pruned
    raw.requires_grad_()
    y = torch.tensor([1e4, 0.0, -3.0], dtype=torch.float64)
    log_p = component_major_log_prob(raw, y, FLOOR, K)
    log_p.sum().backward()
    assert torch.isfinite(log_p).all() and torch.isfinite(raw.grad).all()
    assert (raw.grad[[0, K, 2 * K]].abs() < 1e-140).all()  # the pruned component's logit, mean, scale
    kept = raw.detach()[[k for k in range(3 * K) if k % K != 0]]
    np.testing.assert_allclose(log_p.detach().numpy(), _reference(kept, y.numpy()), rtol=1e-12)


def test_density_of_constrained_parameters_matches_scipy():
    rng = np.random.default_rng(7)
    logits, loc = rng.normal(size=(2, K, 30))
    scale = rng.uniform(0.1, 2.0, size=(K, 30))
    y = rng.normal(size=30)
    ours = component_major_density(*(torch.from_numpy(t) for t in (logits, loc, scale, y)))
    expected = special.logsumexp(logits - special.logsumexp(logits, axis=0) + stats.norm.logpdf(y, loc, scale), axis=0)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", ["diagonal", "isotropic", "full"])
@pytest.mark.parametrize("n_members", [None, 3])
def test_head_log_prob_equals_its_mixture(covariance_type, n_members):
    """Training's (component-major product) and scoring's (float64) paths give the head's own
    mixture's log-density, with and without gradients, also with a masked component."""
    torch.manual_seed(0)
    head = MixtureHead(6, 1, K, covariance_type, FLOOR, n_members).double()
    if n_members is not None:
        head.mask(torch.tensor([[True] + [False] * (K - 1)] + [[False] * K] * (n_members - 1)))
    features = torch.randn(*(() if n_members is None else (n_members,)), 25, 6, dtype=torch.float64)
    y = torch.randn(25, 1, dtype=torch.float64)
    expected = head(features).log_prob(y)
    torch.testing.assert_close(head.log_prob(features, y), expected, rtol=1e-12, atol=1e-12)
    # Scoring a float32 head in float64: the mixture of params(features, float64), the outputs
    # cast before they are constrained, and to float32 precision the head's own float32 mixture.
    head, features = head.float(), features.float()
    scores = head.log_prob(features, y, dtype=torch.float64)
    torch.testing.assert_close(scores, head.family.mixture(*head.params(features, torch.float64)).log_prob(y),
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scores, head(features).to(torch.float64).log_prob(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("covariance_type", ["diagonal", "full"])
def test_each_member_scores_its_own_targets(covariance_type):
    """Targets ``[M, N, 1]`` (a target-noise search: each member its own noisy copy): member
    ``m``'s log-density and gradient are those of its own mixture at its own targets."""
    torch.manual_seed(0)
    head = MixtureHead(6, 1, K, covariance_type, FLOOR, n_members=3).double()
    features = torch.randn(3, 25, 6, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 25, 1, dtype=torch.float64)
    ours = head.log_prob(features, y)
    # Member m at its own targets, through the shared-target path (tested against the mixture above).
    expected = torch.stack([head(features).log_prob(y[m])[m] for m in range(3)])
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(head(features).log_prob(y), expected, rtol=1e-12, atol=1e-12)
    (ours_grad,) = torch.autograd.grad(ours.sum(), features)
    (expected_grad,) = torch.autograd.grad(expected.sum(), features)
    torch.testing.assert_close(ours_grad, expected_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("network", [MDN(2, 1, K, (8,)), MDNEnsemble(2, 1, K, (8,), n_members=3)], ids=["mdn", "ensemble"])
def test_network_log_prob_in_original_units(network):
    network.set_units(np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([100.0]), np.array([20.0]))
    x = torch.randn(30, 2, dtype=torch.float64) * 3 + 1
    y = 100 + 20 * torch.randn(30, 1, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(network.log_prob(x, y), network(x).log_prob(y), rtol=1e-12, atol=1e-12)


def test_other_families_take_the_general_path():
    torch.manual_seed(0)
    head = MixtureHead(5, 1, K, family="laplace").double()
    features, y = torch.randn(10, 5, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    assert not head.has_hot_path
    torch.testing.assert_close(head.log_prob(features, y), head(features).log_prob(y), rtol=0, atol=0)


@pytest.mark.parametrize("n_members", [None, 3])
def test_component_weights_are_the_softmax_of_the_logits(n_members):
    torch.manual_seed(1)
    head = MixtureHead(6, 1, K, n_members=n_members).double()
    features = torch.randn(*(() if n_members is None else (n_members,)), 20, 6, dtype=torch.float64)
    expected = head.params(features)[0].softmax(-1).transpose(-1, -2)  # [(M,) K, N]
    torch.testing.assert_close(head.component_weights(features), expected, rtol=1e-12, atol=1e-14)


def test_targets_with_a_gradient_get_it():
    """A learned target (the MDN as an output layer) is differentiated through autograd."""
    torch.manual_seed(2)
    head = MixtureHead(5, 1, K).double()
    features = torch.randn(10, 5, dtype=torch.float64)
    y = torch.randn(10, 1, dtype=torch.float64, requires_grad=True)
    head.log_prob(features, y).sum().backward()
    expected = torch.autograd.grad(head(features).log_prob(y).sum(), y)[0]
    torch.testing.assert_close(y.grad, expected, rtol=1e-12, atol=1e-12)


def test_reversed_and_read_only_inputs_fit_and_score():
    from mdnkit import MDNRegressor

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 2)), rng.normal(size=300)
    X.setflags(write=False)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X[::-1], y[::-1])
    scores = model.score_samples(X[::-1], y[::-1])
    np.testing.assert_allclose(scores, model.predict_dist(X[::-1]).log_prob(torch.from_numpy(y[::-1].copy())[:, None]).numpy(),
                               rtol=1e-12)


@pytest.mark.parametrize("n_members", [None, 3])
def test_float64_parameters_of_no_rows_are_empty(n_members):
    """params(features, float64) on zero rows gives empty parameters of the right shapes, as the
    float32 path does (a reshape of an empty product must name its sizes)."""
    head = MixtureHead(6, 1, K, "diagonal", FLOOR, n_members)
    features = torch.zeros(*(() if n_members is None else (n_members,)), 0, 6)
    for exact, rounded in zip(head.params(features, torch.float64), head.params(features), strict=True):
        assert exact.shape == rounded.shape and exact.numel() == 0 and exact.dtype == torch.float64
