"""Contract tests for the mixture heads, the MDN module and the MLP backbone.

One grid over covariance type x target dimension D x batch shape: shapes, gradients reaching every
parameter, the ``min_scale`` floor, the data-driven initialisation, batched == one-at-a-time, and a
state-dict round trip through the model-file format. Plus the MDN used as a plain output layer of
a recurrent model.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from mdnkit import MDN, MLP, MixtureHead
from mdnkit.io import read_model_file, write_model_file

COVARIANCE_TYPES = ("diagonal", "isotropic", "full")
DIMS = (1, 3)
BATCH_SHAPES = ((), (4,))
N_FEATURES, K = 5, 3

grid = pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
dims = pytest.mark.parametrize("d", DIMS)
batches = pytest.mark.parametrize("batch_shape", BATCH_SHAPES, ids=["batch()", "batch(4,)"])


def _mdn(d: int, covariance_type: str, seed: int = 0, **kwargs) -> MDN:
    torch.manual_seed(seed)
    return MDN(N_FEATURES, d, K, hidden_sizes=kwargs.pop("hidden_sizes", (8,)),
               covariance_type=covariance_type, **kwargs)


def _inputs(batch_shape, d, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch_shape, N_FEATURES, generator=g)
    y = torch.randn(*batch_shape, d, generator=g)
    return x, y


def _component_std(mixture) -> torch.Tensor:
    """Per-dimension standard deviation of every component, ``[*B, K, D]``, from the raw parameters."""
    if mixture.scale_tril is not None:
        covariance = mixture.scale_tril @ mixture.scale_tril.mT
        return covariance.diagonal(dim1=-2, dim2=-1).sqrt()
    if mixture.scale.shape == mixture.loc.shape:
        return mixture.scale
    return mixture.scale.unsqueeze(-1).expand_as(mixture.loc)


# ---------------------------------------------------------------------------- shapes
@grid
@dims
@batches
def test_mdn_shapes(covariance_type, d, batch_shape):
    mdn = _mdn(d, covariance_type)
    x, y = _inputs(batch_shape, d)
    mixture = mdn(x)
    assert mixture.batch_shape == torch.Size(batch_shape)
    assert mixture.event_shape == torch.Size([d])
    assert mixture.covariance_type == covariance_type
    assert mixture.logits.shape == (*batch_shape, K)
    assert mixture.loc.shape == (*batch_shape, K, d)
    assert mixture.sample((2, 7)).shape == (2, 7, *batch_shape, d)
    assert mixture.log_prob(y).shape == torch.Size(batch_shape)
    assert mixture.mean.shape == (*batch_shape, d)


@grid
@dims
@batches
def test_mixture_head_shapes_and_parameter_count(covariance_type, d, batch_shape):
    h = 6
    torch.manual_seed(0)
    head = MixtureHead(h, d, K, covariance_type=covariance_type)
    features = torch.randn(*batch_shape, h)
    mixture = head(features)
    assert mixture.batch_shape == torch.Size(batch_shape)
    assert mixture.event_shape == torch.Size([d])
    assert mixture.sample((2, 7)).shape == (2, 7, *batch_shape, d)
    # Outputs counted by hand: K logits, K*D means, scales, and the strictly-lower Cholesky part.
    n_scales = {"diagonal": K * d, "isotropic": K, "full": K * d}[covariance_type]
    n_tril = K * d * (d - 1) // 2 if covariance_type == "full" else 0
    assert head.linear.out_features == K + K * d + n_scales + n_tril


@grid
@dims
def test_batched_equals_one_at_a_time(covariance_type, d):
    mdn = _mdn(d, covariance_type)
    x, y = _inputs((4,), d)
    batched = mdn(x).log_prob(y)
    single = torch.stack([mdn(x[i]).log_prob(y[i]) for i in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- gradients
@grid
@dims
@batches
def test_gradients_reach_every_parameter(covariance_type, d, batch_shape):
    mdn = _mdn(d, covariance_type)
    x, y = _inputs(batch_shape, d)
    loss = -mdn(x).log_prob(y).mean()
    loss.backward()
    for name, parameter in mdn.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # Every output unit of the head (logits, means, scales, off-diagonals) is used by log_prob.
    bias_grad = mdn.head.linear.bias.grad
    assert (bias_grad != 0).all(), bias_grad


# ---------------------------------------------------------------------------- min_scale
@grid
@dims
@batches
def test_scales_respect_min_scale_for_hugely_negative_raw_outputs(covariance_type, d, batch_shape):
    min_scale = 0.05
    mdn = _mdn(d, covariance_type, min_scale=min_scale)
    with torch.no_grad():
        mdn.head.linear.weight.zero_()
        mdn.head.linear.bias.fill_(-1e4)
    x, y = _inputs(batch_shape, d)
    mixture = mdn(x)
    std = _component_std(mixture)
    assert (std >= min_scale * (1 - 1e-6)).all()
    if covariance_type == "full":
        diagonal = mixture.scale_tril.diagonal(dim1=-2, dim2=-1)
        assert (diagonal >= min_scale * (1 - 1e-6)).all()
        torch.testing.assert_close(diagonal, torch.full_like(diagonal, min_scale))
    else:
        # softplus(-1e4) is 0: the floor is exactly what is left.
        torch.testing.assert_close(std, torch.full_like(std, min_scale))
    log_prob = mixture.log_prob(y)
    assert torch.isfinite(log_prob).all()
    # Every component is the same (equal raw outputs), so right on the common mean the density is
    # the floor's own: log N(0 | 0, min_scale^2) per dimension.
    if covariance_type != "full":
        at_mean = mixture.log_prob(mixture.loc[..., 0, :])
        expected = -d * (math.log(min_scale) + 0.5 * math.log(2 * math.pi))
        torch.testing.assert_close(at_mean, torch.full_like(at_mean, expected), rtol=1e-4, atol=1e-3)


# ---------------------------------------------------------------------------- initialize
def _targets(d: int, n: int = 500, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # independent dimensions with different spreads and offsets
    return torch.randn(n, d, generator=g) * torch.linspace(0.5, 2.0, d) + torch.arange(d) - 1.0


@grid
@dims
def test_initialize_spreads_means_over_targets(covariance_type, d):
    mdn = _mdn(d, covariance_type)
    y = _targets(d)
    mdn.initialize(y, random_state=0)
    bias = mdn.head.linear.bias.detach().double()
    centres = bias[K:K + K * d].reshape(K, d).numpy()
    data = y.double().numpy()
    if d == 1:
        levels = (np.arange(K) + 0.5) / K
        np.testing.assert_allclose(centres[:, 0], np.quantile(data[:, 0], levels), rtol=1e-5, atol=1e-5)
    else:
        lower, upper = data.min(axis=0), data.max(axis=0)
        assert ((centres >= lower) & (centres <= upper)).all(), (centres, lower, upper)
        # spread out: no two centres coincide
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[np.triu_indices(K, 1)]
        assert gaps.min() > 0.1 * data.std(axis=0).mean()
    # logits bias zero: uniform weights before the input's (shrunken) contribution
    torch.testing.assert_close(bias[:K], torch.zeros(K, dtype=torch.float64))


@grid
@dims
def test_initialize_gives_uniform_weights_for_any_input(covariance_type, d):
    mdn = _mdn(d, covariance_type)
    mdn.initialize(_targets(d), random_state=0)
    g = torch.Generator().manual_seed(3)
    x = 3.0 * torch.randn(200, N_FEATURES, generator=g)  # inputs well outside the unit range
    with torch.no_grad():
        weights = mdn(x).weights
    assert (weights - 1.0 / K).abs().max() < 0.1


@grid
@dims
def test_initial_nll_close_to_best_single_gaussian(covariance_type, d):
    mdn = _mdn(d, covariance_type)
    y = _targets(d)
    mdn.initialize(y, random_state=0)
    x = torch.randn(len(y), N_FEATURES, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        nll = float(-mdn(x).log_prob(y).mean())
    # Maximum-likelihood Gaussian of the same covariance family: NLL per row is
    # 0.5 * log det(2 pi e Sigma_ML), Sigma_ML full, its diagonal, or (trace / d) * I.
    data = y.double().numpy()
    sigma = np.atleast_2d(np.cov(data, rowvar=False, bias=True))
    if covariance_type == "diagonal":
        sigma = np.diag(np.diag(sigma))
    elif covariance_type == "isotropic":
        sigma = np.trace(sigma) / d * np.eye(d)
    gaussian_nll = 0.5 * np.linalg.slogdet(2 * np.pi * np.e * sigma)[1]
    assert abs(nll - gaussian_nll) < 0.5, (nll, gaussian_nll)


# ---------------------------------------------------------------------------- save / load
@grid
@dims
@batches
def test_state_dict_round_trip_through_model_file(covariance_type, d, batch_shape, tmp_path):
    mdn = _mdn(d, covariance_type)
    mdn.initialize(_targets(d), random_state=0)
    x, y = _inputs(batch_shape, d)
    path = write_model_file(tmp_path / "head.mdn", mdn.state_dict(), {"covariance_type": covariance_type})
    tensors, document = read_model_file(path)
    other = _mdn(d, covariance_type, seed=123)
    assert not torch.equal(other(x).log_prob(y), mdn(x).log_prob(y))  # a different network first
    other.load_state_dict(tensors, strict=True)
    assert document["covariance_type"] == covariance_type
    assert torch.equal(other(x).log_prob(y), mdn(x).log_prob(y))


# ---------------------------------------------------------------------------- as a plain module
class _GRUMixture(nn.Module):
    def __init__(self, n_in: int, d: int, covariance_type: str) -> None:
        super().__init__()
        self.gru = nn.GRU(n_in, 8)
        self.mdn = MDN(8, d, K, hidden_sizes=(), covariance_type=covariance_type)

    def forward(self, x):
        features, _ = self.gru(x)  # [T, B, 8]
        return self.mdn(features)


@grid
@pytest.mark.parametrize("d", (1, 2))
def test_mdn_as_output_layer_of_a_gru(covariance_type, d, tmp_path):
    t, b, f = 6, 4, 3
    torch.manual_seed(0)
    model = _GRUMixture(f, d, covariance_type)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(t, b, f, generator=g), torch.randn(t, b, d, generator=g)
    mixture = model(x)
    assert mixture.batch_shape == (t, b) and mixture.event_shape == (d,)
    loss = -mixture.log_prob(y).mean()
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name
    # one optimiser step lowers the loss on this batch (the gradient points the right way)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter -= 1e-3 * parameter.grad
        assert -model(x).log_prob(y).mean() < loss

    write_model_file(tmp_path / "gru.mdn", model.state_dict(), {"kind": "gru+mdn"})
    tensors, document = read_model_file(tmp_path / "gru.mdn")
    assert document["kind"] == "gru+mdn" and document["format"] == "mdnkit"
    torch.manual_seed(99)
    copy = _GRUMixture(f, d, covariance_type)
    copy.load_state_dict(tensors, strict=True)
    with torch.no_grad():
        assert torch.equal(copy(x).log_prob(y), model(x).log_prob(y))


# ---------------------------------------------------------------------------- MLP and errors
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh"])
@pytest.mark.parametrize("n_members", [None, 3])
def test_in_place_activations_give_the_same_values_and_gradients(activation, n_members):
    """The MLP applies ReLU and leaky ReLU in place; outputs and every parameter's gradient are
    those of the same layers applied out of place (torch's own modules, inplace=False)."""
    torch.manual_seed(0)
    network = MLP(4, (8, 8), activation, n_members=n_members).double()
    assert any(getattr(layer, "inplace", False) for layer in network) == (activation != "tanh")
    reference = copy.deepcopy(network)
    for layer in reference:
        if hasattr(layer, "inplace"):
            layer.inplace = False
    x = torch.randn(*(() if n_members is None else (n_members,)), 5, 4, dtype=torch.float64)
    ours, theirs = network(x), reference(x)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    assert torch.equal(ours, theirs)
    for a, b in zip(network.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


def test_mlp_without_hidden_layers_is_identity():
    mlp = MLP(4, ())
    x = torch.randn(3, 4)
    assert mlp.out_features == 4
    assert list(mlp.parameters()) == []
    assert torch.equal(mlp(x), x)


def test_mlp_layers_and_width():
    mlp = MLP(3, (16, 8), "tanh")
    assert mlp.out_features == 8
    assert [type(m) for m in mlp] == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh]
    assert mlp(torch.zeros(5, 3)).shape == (5, 8)
    assert (mlp(100 * torch.randn(5, 3)).abs() <= 1).all()  # ends in the activation


def test_mlp_unknown_activation():
    with pytest.raises(ValueError, match=r"activation must be one of .*got 'swishy'"):
        MLP(3, (4,), "swishy")
    with pytest.raises(ValueError, match=r"activation must be one of"):
        MDN(3, 1, 2, hidden_sizes=(4,), activation="swishy")


def test_head_unknown_covariance_type():
    with pytest.raises(ValueError, match=r"covariance_type must be one of .*got 'spherical'"):
        MixtureHead(4, 2, 3, covariance_type="spherical")
