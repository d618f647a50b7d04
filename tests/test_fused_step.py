"""The written-out training step of mdnkit's own batched network against autograd through the
row-major mixture (torch.distributions-style, no hot path), in float64, and the fits it drives
against the same fits through autograd."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from torch import nn

import mdnkit.training as training
from mdnkit import MDNRegressor
from mdnkit._fused_step import FusedStep
from mdnkit.heads import MDN, MDNEnsemble
from mdnkit.networks import EnsembleLinear

M, N, F = 3, 37, 4


def _ensemble(hidden: tuple[int, ...], k: int, seed: int = 0, **kwargs) -> MDNEnsemble:
    """A float64 ensemble of ``M`` members; ``hidden`` may start with "periodic" (the embedding)."""
    alone = False
    if hidden and isinstance(hidden[0], str):
        alone = hidden[0] == "periodic-alone"  # the embeddings without the inputs beside them
        hidden, kwargs = hidden[1:], dict(kwargs, feature_embedding="periodic")
    torch.manual_seed(seed)
    module = MDNEnsemble(F, 1, n_components=k, hidden_sizes=hidden, n_members=M, **kwargs).double()
    if alone:
        module.backbone[0].with_inputs, module.backbone[0].out_features = False, 16 * F
        module.backbone[1] = EnsembleLinear(16 * F, module.backbone[1].out_features, M).double()
    with torch.no_grad():  # away from the zero-initialised start, so every gradient is non-trivial
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


def _reference(module: MDNEnsemble, x, y, row_weights, member_inputs, loss_weights):
    """The same loss by autograd through the head's row-major mixture (no hot path, no written-out gradient)."""
    module.zero_grad(set_to_none=True)
    inputs = x if member_inputs else x.expand(M, *x.shape)
    log_prob = module.head(module.backbone(inputs)).log_prob(y)  # [M, N]
    member_nll, reported = module.losses(log_prob, row_weights)
    coefficients = torch.ones_like(member_nll) if loss_weights is None else loss_weights
    (member_nll @ coefficients).backward()
    return member_nll.detach(), reported.detach(), {name: p.grad.clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("hidden", [(), (16,), (8, 6), ("periodic",), ("periodic", 8), ("periodic-alone", 8)])
@pytest.mark.parametrize("member_inputs", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_losses_and_gradients_match_autograd(hidden, member_inputs, weighted):
    module = _ensemble(hidden, k=3)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(*((M,) if member_inputs else ()), N, F, generator=generator, dtype=torch.float64)
    y = 2 * torch.randn(*((M,) if member_inputs else ()), N, 1, generator=generator, dtype=torch.float64)
    row_weights = None
    if weighted:  # a deep ensemble's holdouts: each member trains on its own rows, some on none of a batch's
        row_weights = (torch.rand(M, N, generator=generator) > 0.3).double()
        row_weights[2, :5] = 0.5
    loss_weights = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64) if weighted else None
    expected_nll, expected_reported, expected_grads = _reference(module, x, y, row_weights, member_inputs, loss_weights)
    module.zero_grad(set_to_none=True)
    member_nll, reported = FusedStep(module)(x, y, row_weights, member_inputs, loss_weights)
    torch.testing.assert_close(member_nll, expected_nll, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reported, expected_reported, rtol=1e-12, atol=1e-12)
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-9, atol=1e-12, msg=name)
    if loss_weights is not None:  # a frozen member gets no gradient at all
        assert all(float(p.grad[1].abs().max()) == 0 for p in module.parameters())
        # ... also when the backward pass runs on the trained members alone
        module.zero_grad(set_to_none=True)
        trained = torch.tensor([0, 2])
        member_nll, reported = FusedStep(module)(x, y, row_weights, member_inputs, loss_weights, trained)
        torch.testing.assert_close(member_nll, expected_nll, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(reported, expected_reported, rtol=1e-12, atol=1e-12)
        for name, p in module.named_parameters():
            assert p.grad.shape == p.shape and float(p.grad[1].abs().max()) == 0, name
            torch.testing.assert_close(p.grad, expected_grads[name], rtol=1e-9, atol=1e-12, msg=name)


def test_a_member_pruned_component_gets_no_real_gradient_and_matches_autograd():
    module = _ensemble((8,), k=3, seed=2)
    module.head.mask(torch.tensor([[False, True, False], [False, False, False], [False, False, False]]))
    x = torch.randn(N, F, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.randn(N, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _, _, expected = _reference(module, x, y, None, False, None)
    module.zero_grad(set_to_none=True)
    FusedStep(module)(x, y, None, False, None)
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12, msg=name)
    # Member 0's pruned logit: only the hot path's exponent floor (a share of e^-354 in float64).
    assert float(module.head.linear.bias.grad[0, 1].abs()) < 1e-100


def test_float32_gradients_match_autograd_to_float32_precision():
    module = _ensemble((16, 16), k=5).float()
    generator = torch.Generator().manual_seed(6)
    x, y = torch.randn(N, F, generator=generator), torch.randn(N, 1, generator=generator)
    _, _, expected = _reference(module, x, y, None, False, None)
    module.zero_grad(set_to_none=True)
    FusedStep(module)(x, y, None, False, None)
    for name, p in module.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("hidden", [(), (16, 8), ("periodic", 8)])
@pytest.mark.parametrize("weighted", [False, True])
def test_one_network_matches_autograd(hidden, weighted):
    torch.manual_seed(5)
    embedding = "periodic" if hidden and hidden[0] == "periodic" else None
    module = MDN(F, 1, n_components=4, hidden_sizes=hidden[bool(embedding):], feature_embedding=embedding).double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(N, F, dtype=torch.float64)
    y = 2 * torch.randn(N, 1, dtype=torch.float64)
    row_weights = torch.rand(1, N, dtype=torch.float64) if weighted else None
    loss_weights = torch.tensor([0.5], dtype=torch.float64) if weighted else None
    nll, reported = module.losses(module.head(module.backbone(x)).log_prob(y), row_weights)
    (nll @ (torch.ones(1, dtype=torch.float64) if loss_weights is None else loss_weights)).backward()
    expected = {name: p.grad.clone() for name, p in module.named_parameters()}
    module.zero_grad(set_to_none=True)
    assert FusedStep.supports(module)
    ours, ours_reported = FusedStep(module)(x, y, row_weights, False, loss_weights)
    torch.testing.assert_close(ours, nll.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ours_reported, reported, rtol=1e-12, atol=1e-12)
    for name, p in module.named_parameters():
        assert p.grad.shape == p.shape and p.grad.is_contiguous(), name
        torch.testing.assert_close(p.grad, expected[name], rtol=1e-9, atol=1e-12, msg=name)


@pytest.mark.parametrize("make", [
    lambda: MDNEnsemble(F, 1, n_components=3, n_members=M, activation="tanh"),
    lambda: MDNEnsemble(F, 2, n_components=3, n_members=M),  # two targets: no hot path
    lambda: MDNEnsemble(F, 1, n_components=3, n_members=M, family="student_t"),
    lambda: MDN(F, 1, n_components=3, activation="gelu"),
], ids=["tanh", "two-targets", "student-t", "single-gelu"])
def test_other_networks_are_left_to_autograd(make):
    assert not FusedStep.supports(make())


def test_frozen_or_hooked_parameters_are_left_to_autograd():
    module = MDNEnsemble(F, 1, n_components=3, n_members=M)
    module.head.linear.bias.requires_grad_(False)
    assert not FusedStep.supports(module)
    module = MDNEnsemble(F, 1, n_components=3, n_members=M)
    module.backbone[0].weight.register_hook(lambda grad: grad)
    assert not FusedStep.supports(module)


def test_a_warm_start_with_new_bins_leaves_the_written_out_step():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 2)), np.round(rng.normal(size=200), 1)
    model = MDNRegressor(hidden_sizes=(8,), max_epochs=2, input_noise=0.0, random_state=0, warm_start=True)
    with pytest.warns(Warning):  # unconverged; the targets look rounded
        model.fit(X, y)
    assert model.train_state_.fused_step is not None
    with pytest.warns(ConvergenceWarning):
        model.set_params(target_resolution=0.1).fit(X, y)
    assert model.train_state_.fused_step is None  # the bins' probabilities go through autograd


def test_binned_targets_and_hooks_are_left_to_autograd():
    module = MDNEnsemble(F, 1, n_components=3, n_members=M)
    assert FusedStep.supports(module)
    module.set_bin_half_width(np.array([0.5]))
    assert not FusedStep.supports(module)
    module = MDNEnsemble(F, 1, n_components=3, n_members=M)
    module.head.register_forward_hook(lambda *args: None)
    assert not FusedStep.supports(module)


def _fit(monkeypatch, fused: bool, **params) -> MDNRegressor:
    if not fused:
        monkeypatch.setattr(training.FusedStep, "supports", staticmethod(lambda module: False))
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (300, 2))
    y = np.sin(2 * X[:, 0]) + 0.2 * X[:, 1] * rng.normal(size=300)
    model = MDNRegressor(n_components=3, hidden_sizes=(16, 16), max_epochs=15, dtype="float64", random_state=0, **params)
    with pytest.warns(ConvergenceWarning):  # unconverged after 15 epochs
        model.fit(X, y)
    monkeypatch.undo()
    assert (model.train_state_.fused_step is not None) == fused
    return model


@pytest.mark.parametrize("params", [{}, {"n_estimators": 3, "input_noise": 0.1}, {"input_noise": 0.1},
                                    {"feature_embedding": "periodic"}],
                         ids=["noise-mixture", "ensemble", "one-network", "periodic-embedding"])
def test_a_fit_through_the_written_out_step_is_the_autograd_fit(monkeypatch, params):
    fused, plain = _fit(monkeypatch, True, **params), _fit(monkeypatch, False, **params)
    assert [round(h["train_nll"], 9) for h in fused.history_] == [round(h["train_nll"], 9) for h in plain.history_]
    X = np.linspace(-2, 2, 20)[:, None].repeat(2, 1)
    np.testing.assert_allclose(fused.score_samples(X, np.sin(2 * X[:, 0])), plain.score_samples(X, np.sin(2 * X[:, 0])),
                               rtol=1e-9, atol=1e-9)
    assert math.isfinite(fused.history_[-1]["val_nll"])
