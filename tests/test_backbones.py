"""A user's own backbone: a GRU over windows of a time series (an MDN-RNN, as in David Ha's
world-model write-ups that the Edward tutorial builds on), single and as an ensemble."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mdnkit import MDNRegressor, ModelFileError, load
from mdnkit.networks import StackedBackbone, build_backbone


class GRUFeatures(nn.Module):
    """``[N, T, 1] -> [N, H]``: the GRU's last hidden state."""

    def __init__(self, hidden_size: int = 16) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[1][-1]


class Conv1DFeatures(nn.Module):
    """``[N, T, 1] -> [N, 8]``: a convolution and a mean over time (vmap has rules for these)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, kernel_size=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x.transpose(1, 2))).mean(-1)


def _windows(n: int, length: int = 12, seed: int = 0):
    """Noisy sine waves of random phase and frequency: the next value given the last ``length``."""
    rng = np.random.default_rng(seed)
    t = np.arange(length + 1)
    phase, frequency = rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0.3, 0.6, (n, 1))
    series = np.sin(frequency * t + phase) + 0.1 * rng.normal(size=(n, length + 1))
    return series[:, :-1, None], series[:, -1]  # X (n, T, 1), y (n,)


def test_gru_backbone_learns_the_next_value_and_survives_save_and_load(tmp_path):
    X, y = _windows(800)
    X_test, y_test = _windows(300, seed=1)
    model = MDNRegressor(module=GRUFeatures, module_kwargs={"hidden_size": 16}, n_components=2,
                         max_epochs=60, input_noise=0.0, random_state=0).fit(X, y)
    assert model.predict_dist(X_test).batch_shape == (300,)
    # Far better than the marginal distribution of the next value (the GRU reads the window).
    marginal = -0.5 * np.log(2 * np.pi * np.e * y.var())
    assert model.score(X_test, y_test) > marginal + 0.5
    model.save(tmp_path / "rnn.mdn")
    with pytest.raises(ModelFileError, match=r"custom module '.*GRUFeatures'.*module=TheClass"):
        load(tmp_path / "rnn.mdn")
    loaded = load(tmp_path / "rnn.mdn", module=GRUFeatures)
    np.testing.assert_array_equal(loaded.score_samples(X_test, y_test), model.score_samples(X_test, y_test))
    with pytest.raises(ValueError, match=r"rows of shape \(11, 1\)"):
        model.predict(X_test[:, 1:])


@pytest.mark.parametrize("factory", [GRUFeatures, Conv1DFeatures])
def test_ensembles_of_a_custom_backbone_train_members_apart(factory):
    X, y = _windows(200)
    model = MDNRegressor(module=factory, n_components=2, n_estimators=3, max_epochs=3, random_state=0).fit(X, y)
    assert isinstance(model.module_.backbone, StackedBackbone)
    assert model.module_.backbone._vmap == (factory is Conv1DFeatures)  # aten::gru has no batching rule
    members = model.predict_members_dist(X[:5])
    assert members.batch_shape == (3, 5)
    spread = members.mean[..., 0].std(0)  # the members started apart and stay apart
    assert bool((spread > 0).all())


def test_stacked_backbone_equals_its_members():
    torch.manual_seed(0)
    members = [Conv1DFeatures() for _ in range(2)]
    expected = [m(torch.ones(4, 6, 1)) for m in members]
    stacked = StackedBackbone(members, (6, 1))
    out = stacked(torch.ones(2, 4, 6, 1))
    for m in range(2):
        torch.testing.assert_close(out[m], expected[m])


@pytest.mark.parametrize("factory", [GRUFeatures, Conv1DFeatures])
def test_a_custom_backbone_ensembles_member_stands_alone(factory):
    """MDNEnsemble.member copies a custom backbone's member too (the noise search keeps one):
    the standalone MDN gives that member's mixture, in float64 as trained."""
    X, y = _windows(120)
    model = MDNRegressor(module=factory, n_components=2, n_estimators=3, max_epochs=2, dtype="float64",
                         input_noise=0.0, random_state=0).fit(X, y)
    x, target = torch.as_tensor(X[:7]), torch.as_tensor(y[:7]).reshape(7, 1)
    members = model.module_.members(x).log_prob(target)  # [3, 7]
    for index in range(3):
        single = model.module_.member(index)
        assert next(single.parameters()).dtype == torch.float64
        torch.testing.assert_close(single(x).log_prob(target), members[index], rtol=1e-12, atol=1e-12)


def test_noise_search_with_a_custom_backbone_keeps_one_member_or_all():
    X, y = _windows(150)
    model = MDNRegressor(module=Conv1DFeatures, n_components=2, max_epochs=4, input_noise="select",
                         random_state=0).fit(X, y)
    assert len(model.noise_selection_) == 3 and not isinstance(model.module_.backbone, StackedBackbone)
    assert np.isfinite(model.score(X, y))
    mixture = MDNRegressor(module=Conv1DFeatures, n_components=2, max_epochs=4, random_state=0).fit(X, y)
    assert isinstance(mixture.module_.backbone, StackedBackbone) and mixture.member_weights_.shape == (6,)  # two per level
    assert np.isfinite(mixture.score(X, y))


def test_backbone_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"to features \[N, H\]; on 2 rows it returned \(2, 12, 1\)"):
        build_backbone(nn.Identity, None, (12, 1))
    with pytest.raises(ValueError, match="on 2 rows it returned tuple"):
        build_backbone(lambda: nn.GRU(1, 16, batch_first=True), None, (12, 1))  # (output, hidden)
    with pytest.raises(ValueError, match="must build a torch.nn.Module"):
        build_backbone(lambda: 3, None, (12, 1))
    X, y = _windows(50)
    with pytest.raises(ValueError, match="module must be an nn.Module class"):
        MDNRegressor(module="gru").fit(X, y)
    with pytest.raises(ValueError, match="2-D array"):
        MDNRegressor().fit(X, y)  # the MLP needs a table


def test_the_mdn_rnn_example_finds_both_next_steps(tmp_path):
    """examples/mdn_rnn.py: the next increment is bimodal; the GRU MDN puts its modes at about
    +-0.5 and beats a GRU Gaussian on held-out windows (a margin of ~0.9 nats at these settings)."""
    import runpy

    example = runpy.run_path(str(__import__("pathlib").Path(__file__).parents[1] / "examples" / "mdn_rnn.py"))
    metrics = example["main"](["--output", str(tmp_path), "--rows", "1500", "--max-epochs", "60"])
    assert metrics["test_nll_mdn_rnn"] < metrics["test_nll_gru_gaussian"] - 0.3
    assert metrics["reloaded_equal"]
    assert sorted(abs(m) for m in metrics["modes_of_first_row"])[-1] == pytest.approx(0.5, abs=0.1)


def test_custom_backbones_search_k_export_and_keep_their_modes(tmp_path):
    """n_components='auto' and export take rows of any shape; eval() reaches the members'
    dropout; the dry run that sizes a backbone leaves its batch-norm statistics alone."""
    from mdnkit.export import to_exported_program

    X, y = _windows(120)
    model = MDNRegressor(module=Conv1DFeatures, n_components="auto", max_epochs=2, random_state=0).fit(X, y)
    assert model.n_components_ in (1, 3, 5, 10)
    program = to_exported_program(model)
    x = torch.as_tensor(X[:5])
    for got, expected in zip(program.module()(x), model.module_.params(x, float64_constraints=False)):
        torch.testing.assert_close(got, expected.detach())

    class Dropped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Dropout(0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    ensemble = MDNRegressor(module=Dropped, n_estimators=2, max_epochs=2, random_state=0).fit(X, y)
    np.testing.assert_array_equal(ensemble.score_samples(X[:5], y[:5]), ensemble.score_samples(X[:5], y[:5]))
    norm = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(12))
    build_backbone(lambda: norm, None, (12, 1))
    assert int(norm[1].num_batches_tracked) == 0
