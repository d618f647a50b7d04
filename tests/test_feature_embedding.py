"""Periodic feature embeddings (PLR): the formula against NumPy, members against their batched
layer, and the estimator's option through fits, member extraction and model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

import mdnkit
from mdnkit import MDNRegressor
from mdnkit.export import export_metadata, to_exported_program
from mdnkit.heads import MDN, MDNEnsemble
from mdnkit.networks import MLP, PeriodicEmbedding


def _reference(x: np.ndarray, frequencies: np.ndarray, weight: np.ndarray, bias: np.ndarray,
               with_inputs: bool = True) -> np.ndarray:
    """x, then relu([cos 2πcx, sin 2πcx] W_j + b_j) per feature j, side by side, in float64 NumPy."""
    out = [x] if with_inputs else []
    for j in range(x.shape[1]):
        angle = 2 * np.pi * x[:, j:j + 1] * frequencies[j]  # [N, k]
        periodic = np.concatenate([np.cos(angle), np.sin(angle)], axis=1)  # [N, 2k]
        out.append(np.maximum(periodic @ weight[j] + bias[j], 0.0))
    return np.concatenate(out, axis=1)


@pytest.mark.parametrize("with_inputs", [True, False])
def test_one_embedding_matches_numpy(with_inputs):
    torch.manual_seed(0)
    layer = PeriodicEmbedding(3, n_frequencies=4, d_embedding=5, with_inputs=with_inputs).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    parameters = (p.detach().numpy() for p in (layer.frequencies, layer.weight, layer.bias))
    expected = _reference(x.numpy(), *parameters, with_inputs=with_inputs)
    np.testing.assert_allclose(layer(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    assert layer(x.reshape(7, 1, 3)).shape == (7, 1, 18 if with_inputs else 15)  # any batch shape


def test_each_member_is_its_own_embedding():
    torch.manual_seed(1)
    layer = PeriodicEmbedding(2, n_members=3, n_frequencies=4, d_embedding=3).double()
    x = torch.randn(3, 6, 2, dtype=torch.float64)  # each member its own rows
    out = layer(x)
    for m in range(3):
        expected = _reference(x[m].numpy(), *(p[m].detach().numpy() for p in (layer.frequencies, layer.weight, layer.bias)))
        np.testing.assert_allclose(out[m].detach().numpy(), expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(layer.member(m).double()(x[m]), out[m])


def test_the_mlp_starts_with_it_and_gradients_reach_every_parameter():
    mlp = MLP(4, (8,), embedding="periodic", n_members=2)
    assert isinstance(mlp[0], PeriodicEmbedding) and mlp[1].in_features == 4 + 4 * 16
    mlp(torch.randn(2, 5, 4)).square().sum().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in mlp.parameters())
    with pytest.raises(ValueError, match="feature_embedding must be None or one of"):
        MLP(4, (8,), embedding="fourier")


def test_an_ensemble_member_alone_predicts_as_inside_the_ensemble():
    torch.manual_seed(2)
    ensemble = MDNEnsemble(3, 1, n_components=2, hidden_sizes=(8,), n_members=3, feature_embedding="periodic")
    x = torch.randn(5, 3)
    inside = ensemble.members(x)
    alone = ensemble.member(1)(x)
    torch.testing.assert_close(alone.log_prob(torch.zeros(5, 1)), inside.log_prob(torch.zeros(1, 5, 1))[1])


def _data(n: int = 200):
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (n, 2))
    return X, np.sin(2 * X[:, 0]) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("params", [{}, {"input_noise": "select"}, {"n_estimators": 2, "input_noise": 0.1}],
                         ids=["noise-mixture", "selected-member", "ensemble"])
def test_the_estimator_fits_saves_and_loads_with_embeddings(tmp_path, params):
    X, y = _data()
    model = MDNRegressor(feature_embedding="periodic", hidden_sizes=(16,), max_epochs=20, random_state=0, **params)
    with pytest.warns(ConvergenceWarning):  # unconverged after 20 epochs
        model.fit(X, y)
    assert isinstance(model.module_.backbone[0], PeriodicEmbedding)
    path = tmp_path / "model.mdnkit"
    model.save(path)
    loaded = mdnkit.load(path)
    assert loaded.feature_embedding == "periodic"
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12, atol=1e-12)


def test_files_from_before_embeddings_load_as_raw_inputs():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(150, 4))  # enough features for "auto" to embed them, were the rule asked
    y = X[:, 0] + 0.1 * rng.normal(size=150)
    model = MDNRegressor(hidden_sizes=(8,), max_epochs=3, input_noise=0.0, random_state=0, feature_embedding=None)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    fitted, tensors = model._file_state()
    del fitted["feature_embedding_used"]  # as an older mdnkit wrote it: no parameter, no record
    params = {k: v for k, v in model.get_params(deep=False).items() if k != "feature_embedding"}
    loaded = MDNRegressor._from_file_state(params, fitted, tensors)
    assert loaded.feature_embedding is None
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12, atol=1e-12)


def test_bad_settings_are_named():
    X, y = _data(50)
    with pytest.raises(ValueError, match="feature_embedding must be 'auto', None or one of"):
        MDNRegressor(feature_embedding="fourier").fit(X, y)
    with pytest.raises(ValueError, match="embed the inputs in your module"):
        MDNRegressor(feature_embedding="periodic", module=torch.nn.Identity).fit(X, y)


@pytest.mark.parametrize("n_features, expected", [(1, None), (2, None), (3, "periodic"), (8, "periodic")])
def test_auto_embeds_tables_of_three_features_or_more(tmp_path, n_features, expected):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, n_features))
    y = X[:, 0] + 0.1 * rng.normal(size=120)
    model = MDNRegressor(hidden_sizes=(8,), max_epochs=3, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    assert model.feature_embedding == "auto"
    assert isinstance(model.module_.backbone[0], PeriodicEmbedding) == (expected == "periodic")
    path = tmp_path / "model.mdnkit"
    model.save(path)
    loaded = mdnkit.load(path)  # the file says which network it holds, whatever "auto" will mean later
    assert loaded._embedding_for(n_features) == expected
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12, atol=1e-12)


def test_auto_leaves_a_custom_module_alone():
    model = MDNRegressor(module=torch.nn.Linear, module_kwargs={"in_features": 4, "out_features": 8})
    assert model._embedding_for(4) is None


def test_a_loaded_model_refits_with_the_embedding_it_is_given_now(tmp_path):
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(120, 4)), rng.normal(size=120)
    model = MDNRegressor(hidden_sizes=(8,), max_epochs=2, random_state=0)
    with pytest.warns(ConvergenceWarning):
        model.fit(X, y)
    model.save(tmp_path / "model.mdnkit")
    loaded = mdnkit.load(tmp_path / "model.mdnkit").set_params(feature_embedding=None)
    with pytest.warns(ConvergenceWarning):
        loaded.fit(X, y)
    assert not isinstance(loaded.module_.backbone[0], PeriodicEmbedding)


def test_a_network_with_an_embedding_exports():
    network = MDN(3, 1, n_components=2, hidden_sizes=(8,), feature_embedding="periodic").eval()
    assert export_metadata(network) is not None
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        got, want = to_exported_program(network).module()(x), network.params(x.float())
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b.double(), rtol=0, atol=0)


def test_a_custom_backbone_takes_no_embedding():
    with pytest.raises(ValueError, match="embed the inputs in it"):
        MDN(3, 1, backbone=torch.nn.Linear(3, 8), feature_embedding="periodic")
