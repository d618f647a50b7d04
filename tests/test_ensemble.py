"""Deep ensembles (``n_estimators``) and dead-component pruning: the ensemble density against a
NumPy/SciPy forward pass of each member's own weights, batched training against members trained
alone, save/load, validation, and pruning's bound on the change of every log-density."""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import mdnkit
from mdnkit import MDNRegressor
from mdnkit.heads import MDN, MDNEnsemble, MixtureHead
from mdnkit.io import read_model_file, write_model_file
from mdnkit.networks import EnsembleLinear
from mdnkit.training import TrainingConfig, _clip_grad_norm_per_member, train

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

COVARIANCE_TYPES = ("diagonal", "isotropic", "full")
TINY = dict(n_components=3, hidden_sizes=(8,), max_epochs=15, learning_rate=0.02, batch_size=None, random_state=0)


def _data(n: int = 120, d_out: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y1 = np.sin(X[:, 0]) + 0.5 * X[:, 1] + 0.3 * rng.normal(size=n)
    if d_out == 1:
        return X, y1
    y2 = 20.0 * (X[:, 0] - 0.3 * X[:, 1] ** 2) + 4.0 * rng.normal(size=n) + 100.0
    return X, np.c_[y1, y2]


@functools.lru_cache(maxsize=None)
def _fitted(covariance_type: str, d_out: int, n_estimators: int = 3) -> MDNRegressor:
    """A fitted tiny ensemble per configuration; tests must not modify it (copy it first)."""
    X, y = _data(d_out=d_out)
    return MDNRegressor(covariance_type=covariance_type, n_estimators=n_estimators, **TINY).fit(X, y)


cov_and_dim = pytest.mark.parametrize("covariance_type, d_out", [(c, d) for c in COVARIANCE_TYPES for d in (1, 2)])


def _member_log_density(model: MDNRegressor, member: int, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p_m(y | x)`` in original units from member ``m``'s weights alone: a float64 NumPy
    forward pass (ReLU MLP, then the head's component-major split) and SciPy densities."""
    parameters = {name: p.detach().double().numpy() for name, p in model.module_.named_parameters()}
    h = (X - model.x_mean_) / model.x_scale_
    for i in range(len(model.hidden_sizes)):
        h = np.maximum(h @ parameters[f"backbone.{2 * i}.weight"][member] + parameters[f"backbone.{2 * i}.bias"][member], 0)
    out = h @ parameters["head.linear.weight"][member] + parameters["head.linear.bias"][member]
    k, d = model.n_components_, model.n_outputs_
    logits, out = out[:, :k], out[:, k:]
    loc, out = out[:, : k * d].reshape(-1, k, d), out[:, k * d:]
    n_scales = k if model.covariance_type == "isotropic" else k * d
    scale = np.logaddexp(0.0, out[:, :n_scales]) + model.min_scale
    off_diagonal = out[:, n_scales:].reshape(len(X), k, -1)
    tril = np.zeros((len(X), k, d, d))
    if model.covariance_type == "isotropic":
        tril[..., np.arange(d), np.arange(d)] = scale[..., None]
    else:
        tril[..., np.arange(d), np.arange(d)] = scale.reshape(-1, k, d)
    if model.covariance_type == "full":
        rows, cols = np.tril_indices(d, -1)
        tril[..., rows, cols] = off_diagonal
    logits = logits + model.module_.head.logit_mask[member].double().numpy()
    log_weights = logits - logsumexp(logits, axis=1, keepdims=True)
    units = np.diag(model.y_scale_)
    y = y.reshape(len(y), -1)
    result = np.empty(len(X))
    for i in range(len(X)):
        terms = [
            stats.multivariate_normal(loc[i, j] * model.y_scale_ + model.y_mean_,
                                      units @ tril[i, j] @ tril[i, j].T @ units).logpdf(y[i])
            for j in range(k)
        ]
        result[i] = logsumexp(log_weights[i] + np.array(terms))
    return result


# ============================================================================ the ensemble density
@cov_and_dim
def test_ensemble_log_likelihood_is_log_mean_exp_of_the_members(covariance_type, d_out):
    model = _fitted(covariance_type, d_out)
    X, y = _data(n=10, d_out=d_out, seed=7)
    members = np.stack([_member_log_density(model, m, X, y) for m in range(3)])  # [M, n]
    expected = logsumexp(members, axis=0) - math.log(3)
    np.testing.assert_allclose(model.score_samples(X, y), expected, rtol=1e-5, atol=1e-5)  # float32 net
    members_dist = model.predict_members_dist(X)
    assert members_dist.batch_shape == (3, 10)
    np.testing.assert_allclose(members_dist.log_prob(torch.as_tensor(y.reshape(10, -1))).numpy(), members,
                               rtol=1e-5, atol=1e-5)
    mixture = model.predict_dist(X)
    assert mixture.n_components == 3 * model.n_components
    np.testing.assert_allclose(mixture.weights.sum(-1).numpy(), 1.0, rtol=1e-12)


def test_members_differ_and_their_spread_is_the_epistemic_std():
    model = _fitted("diagonal", 1)
    first, second = (model.module_.member(m) for m in (0, 1))
    assert not torch.equal(first.backbone[0].weight, second.backbone[0].weight)
    X, _ = _data(n=20, seed=3)
    members = model.predict_members_dist(X)
    means = members.mean[..., 0].numpy()  # [M, n]
    assert np.all(np.ptp(means, axis=0) > 0)
    epistemic = model.predict_epistemic_std(X)
    np.testing.assert_allclose(epistemic, means.std(axis=0), rtol=1e-12)
    # law of total variance: ensemble variance = mean member variance + variance of member means
    total = model.predict_std(X) ** 2
    np.testing.assert_allclose(total, members.variance[..., 0].numpy().mean(0) + epistemic**2, rtol=1e-6)  # float32 weights
    # far from the data the members disagree more than on it
    with pytest.warns(mdnkit.NoveltyWarning):  # and are warned about
        assert model.predict_epistemic_std(np.full((1, 2), 30.0))[0] > np.median(epistemic)


def test_single_estimator_is_one_plain_mdn():
    X, y = _data()
    default = MDNRegressor(**TINY, input_noise="select").fit(X, y)
    single = MDNRegressor(**TINY, input_noise="select", n_estimators=1).fit(X, y)
    assert type(single.module_) is MDN
    np.testing.assert_array_equal(single.score_samples(X, y), default.score_samples(X, y))
    members = single.predict_members_dist(X[:5])
    assert members.batch_shape == (1, 5)
    np.testing.assert_allclose(members.log_prob(torch.as_tensor(y[:5, None])).numpy()[0],
                               single.score_samples(X[:5], y[:5]), rtol=1e-12)  # float64 rounding
    np.testing.assert_array_equal(single.predict_epistemic_std(X[:5]), np.zeros(5))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_batched_training_equals_members_trained_alone(covariance_type):
    """Adam's updates are per weight and clipping is per member, so each member of the batched
    fit follows exactly the path it would alone (no validation: no shared early stop)."""
    torch.manual_seed(0)
    x, y = torch.randn(64, 2, dtype=torch.float64), torch.randn(64, 2, dtype=torch.float64)
    ensemble = MDNEnsemble(2, 2, 3, (8, 8), covariance_type=covariance_type, n_members=3).double()
    ensemble.initialize(y, random_state=0)
    alone = [ensemble.member(m) for m in range(3)]
    config = TrainingConfig(batch_size=None, max_epochs=20, learning_rate=0.01, gradient_clip=0.5)
    train(ensemble, x, y, config=config)
    for m, member in enumerate(alone):
        train(member, x, y, config=config)
        for trained, expected in zip(ensemble.member(m).parameters(), member.parameters()):
            torch.testing.assert_close(trained, expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("covariance_type, weight_averaging", [(c, 0.0) for c in COVARIANCE_TYPES] + [("diagonal", 0.9)])
def test_batched_early_stopping_equals_members_stopped_alone(covariance_type, weight_averaging):
    """With validation each member keeps its own best weights, decays its own learning rate and
    stops on its own NLL: the batched fit ends with the weights of separate early-stopped fits,
    though the members stop (and decay) at different epochs. Minibatches and target noise draw
    the same random numbers epoch by epoch, alone or batched. With the weights averaged, each
    member validates, keeps and is frozen at its own average."""
    torch.manual_seed(0)
    x = torch.randn(96, 2, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + 0.3 * torch.randn(96, 2, dtype=torch.float64)
    (x_train, x_val), (y_train, y_val) = x.split([64, 32]), y.split([64, 32])
    ensemble = MDNEnsemble(2, 2, 3, (8, 8), covariance_type=covariance_type, n_members=3).double()
    ensemble.initialize(y_train, random_state=0)
    alone = [ensemble.member(m) for m in range(3)]
    config = TrainingConfig(batch_size=32, max_epochs=300, learning_rate=0.005, patience=10, lr_decay_patience=3,
                            gradient_clip=0.5, target_noise=0.05, weight_averaging=weight_averaging)
    batched = train(ensemble, x_train, y_train, x_val, y_val, config=config, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        member_val = -ensemble.members(x_val).log_prob(y_val).mean(1)  # [M]
    runs = []
    for m, member in enumerate(alone):
        runs.append(train(member, x_train, y_train, x_val, y_val, config=config,
                          generator=torch.Generator().manual_seed(3)))
        for trained, expected in zip(ensemble.member(m).parameters(), member.parameters()):
            torch.testing.assert_close(trained, expected, rtol=1e-9, atol=1e-10)
        # the kept weights are those of the member's own best epoch
        assert runs[m].history[runs[m].best_epoch - 1]["val_nll"] == pytest.approx(float(member_val[m]), abs=1e-12)
    assert batched.member_best_epochs == [run.best_epoch for run in runs]
    assert len(batched.history) == max(len(run.history) for run in runs) and batched.stopped_early
    assert len({len(run.history) for run in runs}) > 1  # the members stopped at different epochs
    decays = [next((r["epoch"] for r in run.history if r["learning_rate"] < config.learning_rate), None) for run in runs]
    assert any(decays)


@pytest.mark.parametrize("gradient_clip", [None, 0.5])
def test_members_with_their_own_validation_rows_equal_members_trained_alone(gradient_clip):
    """``holdout``: each member early-stops on its own rows and trains on the rest of the pool;
    with Adam in full batch that is exactly the fit of that member alone on its own split."""
    torch.manual_seed(0)
    x = torch.randn(80, 2, dtype=torch.float64)
    y = torch.sin(2 * x[:, :1]) + 0.3 * torch.randn(80, 1, dtype=torch.float64)
    holdout = torch.zeros(3, 80, dtype=torch.bool)
    for m, rows in enumerate([range(0, 20), range(15, 35), range(60, 80)]):
        holdout[m, list(rows)] = True
    ensemble = MDNEnsemble(2, 1, 3, (8,), n_members=3).double()
    ensemble.initialize(y, random_state=0)
    alone = [ensemble.member(m) for m in range(3)]
    config = TrainingConfig(batch_size=None, max_epochs=150, learning_rate=0.02, patience=8, lr_decay_patience=4,
                            gradient_clip=gradient_clip)
    batched = train(ensemble, x, y, config=config, holdout=holdout)
    runs = []
    for m, member in enumerate(alone):
        own = holdout[m]
        runs.append(train(member, x[~own], y[~own], x[own], y[own], config=config))
        for trained, expected in zip(ensemble.member(m).parameters(), member.parameters()):
            torch.testing.assert_close(trained, expected, rtol=1e-8, atol=1e-9)
    assert batched.member_best_epochs == [run.best_epoch for run in runs]
    assert len({run.best_epoch for run in runs}) > 1  # they did stop apart


def test_row_weighted_losses_are_each_members_mean_and_the_out_of_bag_mixture():
    torch.manual_seed(2)
    ensemble = MDNEnsemble(2, 1, 2, (8,), n_members=3).double()
    x, y = torch.randn(10, 2, dtype=torch.float64), torch.randn(10, 1, dtype=torch.float64)
    weights = torch.zeros(3, 10, dtype=torch.float64)
    weights[0, :4], weights[1, 2:7], weights[2, 9] = 1.0, 1.0, 2.0  # row 8: no member's
    with torch.no_grad():
        member_nll, nll = ensemble.training_losses(x, y, weights)
        log_prob = ensemble.members(x).log_prob(y).numpy()  # [M, 10]
    expected_members = [-log_prob[0, :4].mean(), -log_prob[1, 2:7].mean(), -log_prob[2, 9]]
    np.testing.assert_allclose(member_nll.numpy(), expected_members, rtol=1e-12)
    w = weights.numpy()
    rows = [i for i in range(10) if w[:, i].sum() > 0]
    expected = -np.mean([np.log((w[:, i] * np.exp(log_prob[:, i])).sum() / w[:, i].sum()) for i in rows])
    assert float(nll) == pytest.approx(expected, rel=1e-12)
    with torch.no_grad():  # all-ones weights are the unweighted losses
        unweighted = ensemble.training_losses(x, y)
        ones = ensemble.training_losses(x, y, torch.ones(3, 10, dtype=torch.float64))
    torch.testing.assert_close(ones, unweighted, rtol=1e-12, atol=1e-12)


def test_holdout_needs_an_ensemble_its_shape_and_rows_for_every_member():
    x, y = torch.randn(10, 1), torch.randn(10, 1)
    ensemble = MDNEnsemble(1, 1, 2, (4,), n_members=2)
    with pytest.raises(ValueError, match=r"holdout must be booleans \[n_members, rows\] = \[2, 10\]"):
        train(ensemble, x, y, holdout=torch.zeros(3, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match="holdout must be"):
        train(MDN(1, 1, 2, (4,)), x, y, holdout=torch.zeros(1, 10, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"got torch.int64 of shape \(2, 10\)"):  # ~ would be a bitwise not
        train(ensemble, x, y, holdout=torch.zeros(2, 10, dtype=torch.long))
    holdout = torch.zeros(2, 10, dtype=torch.bool)
    holdout[0, :3] = True
    with pytest.raises(ValueError, match=r"holdout leaves member\(s\) \[1\] no rows to validate on"):
        train(ensemble, x, y, holdout=holdout)
    holdout[1] = True
    with pytest.raises(ValueError, match=r"holdout leaves member\(s\) \[1\] no rows to train on"):
        train(ensemble, x, y, holdout=holdout)


def test_minibatches_with_holdout_step_each_member_on_its_own_rows_of_each_batch():
    """One shuffle of the rows some member trains on, cut in slices; member m's step on a slice is
    Adam on the mean NLL of its own rows there (a zero gradient where it has none)."""
    torch.manual_seed(4)
    x, y = torch.randn(40, 2, dtype=torch.float64), torch.randn(40, 1, dtype=torch.float64)
    holdout = torch.zeros(2, 40, dtype=torch.bool)
    holdout[0, :10], holdout[1, 5:20] = True, True  # rows 5-9: held out by both, trained by none
    ensemble = MDNEnsemble(2, 1, 2, (8,), n_members=2).double()
    ensemble.initialize(y, random_state=0)
    alone = [ensemble.member(m) for m in range(2)]
    config = TrainingConfig(batch_size=7, max_epochs=3, learning_rate=0.01, gradient_clip=None,
                            patience=100, lr_decay_patience=100)
    result = train(ensemble, x, y, config=config, generator=torch.Generator().manual_seed(9), holdout=holdout)
    pool = torch.cat([torch.arange(5), torch.arange(10, 40)])  # in row order
    generator = torch.Generator().manual_seed(9)
    orders = [pool[torch.randperm(len(pool), generator=generator)] for _ in range(3)]
    for m, member in enumerate(alone):
        optimizer = torch.optim.AdamW(member.parameters(), lr=0.01, weight_decay=0.0)
        epochs = []  # the member's weights after each epoch; it keeps those of its best one
        for order in orders:
            for batch in order.split(7):
                own = batch[~holdout[m, batch]]
                optimizer.zero_grad()
                if len(own):
                    (-member(x[own]).log_prob(y[own]).mean()).backward()
                else:
                    for p in member.parameters():
                        p.grad = torch.zeros_like(p)
                optimizer.step()
            epochs.append([p.detach().clone() for p in member.parameters()])
        for trained, expected in zip(ensemble.member(m).parameters(), epochs[result.member_best_epochs[m] - 1]):
            torch.testing.assert_close(trained, expected, rtol=1e-8, atol=1e-9)


def test_history_is_the_nll_of_the_ensemble_as_it_is_at_each_epoch():
    """The recorded validation NLL is that of the mixture of the members' weights of that epoch;
    the kept model is each member at its own best epoch."""
    torch.manual_seed(1)
    x, y = torch.randn(48, 1, dtype=torch.float64), torch.randn(48, 1, dtype=torch.float64)
    ensemble = MDNEnsemble(1, 1, 2, (8,), n_members=3).double()
    ensemble.initialize(y, random_state=0)
    unfitted = copy.deepcopy(ensemble)
    config = TrainingConfig(max_epochs=12, learning_rate=0.05, lr_decay_patience=100, patience=100)
    result = train(ensemble, x[:32], y[:32], x[32:], y[32:], config=config)
    train(unfitted, x[:32], y[:32], config=config)  # same steps; keeps its last weights
    with torch.no_grad():
        last = -unfitted(x[32:]).log_prob(y[32:]).mean()
        last_members = -unfitted.members(x[32:]).log_prob(y[32:]).mean(1)  # [M]
        kept = -ensemble.members(x[32:]).log_prob(y[32:]).mean(1)
    assert result.history[-1]["val_nll"] == pytest.approx(float(last), abs=1e-12)
    assert result.best_epoch == max(result.member_best_epochs)
    assert min(result.member_best_epochs) < 12  # some member was best before the end...
    for m, epoch in enumerate(result.member_best_epochs):
        if epoch == 12:
            assert float(kept[m]) == pytest.approx(float(last_members[m]), abs=1e-12)
        else:  # ...and kept its earlier, better weights
            assert float(kept[m]) < float(last_members[m]) - 1e-5


def test_gradient_clipping_is_per_member():
    grads = [torch.randn(3, 4, 5) * torch.tensor([0.01, 1.0, 100.0]).view(3, 1, 1), torch.randn(3, 5)]
    parameters = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
    for p, g in zip(parameters, grads):
        p.grad = g.clone()
    _clip_grad_norm_per_member(parameters, 1.0, 3)
    for m in range(3):
        alone = [torch.nn.Parameter(torch.zeros_like(g[m])) for g in grads]
        for p, g in zip(alone, grads):
            p.grad = g[m].clone()
        torch.nn.utils.clip_grad_norm_(alone, 1.0)
        for p, q in zip(parameters, alone):
            torch.testing.assert_close(p.grad[m], q.grad, rtol=1e-5, atol=1e-7)


def test_ensemble_linear_is_independent_linear_layers():
    layer = EnsembleLinear(3, 2, n_members=4)
    x = torch.randn(4, 5, 7, 3)
    out = layer(x)
    assert out.shape == (4, 5, 7, 2)
    for m in range(4):
        torch.testing.assert_close(out[m], x[m] @ layer.weight[m] + layer.bias[m])


def test_history_reports_the_ensemble_nll():
    model = _fitted("diagonal", 1)
    assert len(model.history_) == model.n_iter_
    X, y = _data()  # here every member improves to the end (best_epoch_ == n_iter_): the kept
    # weights are the last ones, whose mixture the last record describes
    assert model.best_epoch_ == model.n_iter_
    best = next(r for r in model.history_ if r["epoch"] == model.best_epoch_)
    # Out of bag: each member holds out its own 10% (member 0 a single fit's), and every
    # held-out row is scored by the mixture of the members that held it out.
    n_val = math.ceil(0.1 * len(X))
    held = np.zeros((3, len(X)), dtype=bool)
    for m in range(3):
        held[m, np.random.default_rng(0 if m == 0 else [0, m]).permutation(len(X))[:n_val]] = True
    members = np.stack([_member_log_density(model, m, X, y) for m in range(3)])  # [M, n]
    scored = held.any(0)
    out_of_bag = logsumexp(np.where(held, members, -np.inf), axis=0)[scored] - np.log(held.sum(0)[scored])
    assert scored.sum() > n_val  # the members' rows differ
    assert best["val_nll"] == pytest.approx(-out_of_bag.mean(), rel=1e-5)


# ============================================================================ estimator plumbing
@pytest.mark.parametrize("value", [0, -1, 2.5, True, "3", None])
def test_n_estimators_must_be_a_positive_integer(value):
    X, y = _data(n=40)
    with pytest.raises(ValueError, match=r"n_estimators must be an integer >= 1, got "):
        MDNRegressor(**TINY, n_estimators=value).fit(X, y)


def test_clone_and_get_params_keep_n_estimators():
    model = MDNRegressor(n_estimators=4)
    assert model.get_params()["n_estimators"] == 4
    assert clone(model).n_estimators == 4
    assert MDNRegressor().get_params()["n_estimators"] == 1
    assert clone(_fitted("diagonal", 1)).set_params(n_estimators=2).n_estimators == 2


def test_warm_start_with_another_n_estimators_raises():
    X, y = _data()
    model = MDNRegressor(**TINY, n_estimators=2, warm_start=True).fit(X, y)
    model.fit(X, y)  # same size: continues
    with pytest.raises(ValueError, match="fitted with n_estimators=2, got n_estimators=3"):
        model.set_params(n_estimators=3).fit(X, y)


@cov_and_dim
def test_ensemble_save_load_round_trip(covariance_type, d_out, tmp_path):
    model = _fitted(covariance_type, d_out)
    X, y = _data(n=12, d_out=d_out, seed=8)
    model.save(tmp_path / "ensemble.mdn")
    loaded = mdnkit.load(tmp_path / "ensemble.mdn")
    assert loaded.n_estimators == 3 and type(loaded.module_) is MDNEnsemble
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))
    np.testing.assert_array_equal(loaded.predict_epistemic_std(X), model.predict_epistemic_std(X))
    np.testing.assert_array_equal(loaded.component_weight_max_, model.component_weight_max_)
    np.testing.assert_array_equal(loaded.dead_components_, model.dead_components_)


def test_loads_a_file_written_before_ensembles(tmp_path):
    """A file of the previous version: no n_estimators parameter, no usage record."""
    X, y = _data()
    model = MDNRegressor(**TINY).fit(X, y)
    model.save(tmp_path / "new.mdn")
    tensors, document = read_model_file(tmp_path / "new.mdn")
    del document["params"]["n_estimators"]
    for name in ("n_components_", "component_weight_mean_", "component_weight_max_", "dead_components_"):
        del document["fitted"][name]
    write_model_file(tmp_path / "old.mdn", tensors, document)
    loaded = mdnkit.load(tmp_path / "old.mdn")
    assert loaded.n_estimators == 1 and loaded.n_components_ == 3
    np.testing.assert_array_equal(loaded.score_samples(X, y), model.score_samples(X, y))
    with pytest.raises(ValueError, match="refit it to prune"):
        loaded.prune_components()


@pytest.mark.slow  # scikit-learn's estimator checks on an ensemble (~10 s)
@parametrize_with_checks(
    [MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, random_state=0, n_estimators=2)],
    expected_failed_checks=lambda estimator: {
        "check_methods_sample_order_invariance": "score_samples(X, y) needs y; see test_estimator.py",
        "check_methods_subset_invariance": "score_samples(X, y) needs y; see test_estimator.py",
        "check_dtype_object": "non-numeric values raise ValueError naming the column",
    },
)
def test_sklearn_compatible_ensemble(estimator, check):
    check(estimator)


# ============================================================================ dead components
def _with_forced_dead(model: MDNRegressor, X, y, dead: dict[int | None, int]) -> MDNRegressor:
    """A copy of ``model`` whose component ``k`` has logit bias -30 in member ``m`` (``None``: the
    single head), then one tiny warm-start epoch so that fit records the component weights."""
    import copy

    model = copy.deepcopy(model)
    with torch.no_grad():
        for member, k in dead.items():
            bias = model.module_.head.linear.bias
            (bias if member is None else bias[member])[k] = -30.0
    return model.set_params(warm_start=True, max_epochs=1, learning_rate=1e-9).fit(X, y)


def _removed_weight_bound(before, after, removed_weight):
    """log p_after - log p_before lies in [-tol, -log(1 - r)]: the survivors are renormalised."""
    change = after - before
    assert np.all(change <= -np.log1p(-removed_weight) + 1e-5)
    return change


@pytest.mark.parametrize("covariance_type, d_out", [("diagonal", 1), ("full", 2), ("isotropic", 2)])
def test_single_mdn_dead_component_is_flagged_and_pruned(covariance_type, d_out):
    X, y = _data(d_out=d_out)
    model = MDNRegressor(covariance_type=covariance_type, input_noise="select", **TINY)
    model = _with_forced_dead(model.fit(X, y), X, y, {None: 1})
    np.testing.assert_array_equal(model.dead_components_, [False, True, False])
    assert model.component_weight_max_[1] < 1e-10 and model.component_weight_mean_.shape == (3,)
    X_test, y_test = _data(n=30, d_out=d_out, seed=5)
    before_dist = model.predict_dist(X_test)
    before = model.score_samples(X_test, y_test)
    assert model.prune_components() is model
    assert model.n_components_ == 2 and model.n_components == 3
    after_dist = model.predict_dist(X_test)
    assert after_dist.n_components == 2
    torch.testing.assert_close(after_dist.loc, before_dist.loc[:, [0, 2]], rtol=1e-5, atol=1e-5)
    change = _removed_weight_bound(before, model.score_samples(X_test, y_test), before_dist.weights[:, 1].numpy())
    np.testing.assert_allclose(change, 0.0, atol=1e-5)
    assert not model.dead_components_.any() and model.component_weight_max_.shape == (2,)


def test_pruning_live_components_keeps_the_renormalisation_bound(tmp_path):
    X, y = _data()
    model = MDNRegressor(**TINY, input_noise="select").fit(X, y)
    peak = model.component_weight_max_.copy()
    threshold = float(np.sort(peak)[1]) + 1e-9  # the two lightest go, though not dead
    X_test, y_test = _data(n=50, seed=6)
    before_dist = model.predict_dist(X_test)
    before = model.score_samples(X_test, y_test)
    model.prune_components(threshold)
    removed = before_dist.weights[:, peak < threshold].sum(-1).numpy()
    assert model.n_components_ == 1 and removed.max() > 0.01
    _removed_weight_bound(before, model.score_samples(X_test, y_test), removed)
    model.save(tmp_path / "pruned.mdn")  # a pruned model round-trips with its smaller head
    loaded = mdnkit.load(tmp_path / "pruned.mdn")
    assert loaded.n_components_ == 1
    np.testing.assert_array_equal(loaded.score_samples(X_test, y_test), model.score_samples(X_test, y_test))


def test_ensemble_pruning_slices_common_and_masks_single_member_components(tmp_path):
    X, y = _data()
    model = _with_forced_dead(_fitted("diagonal", 1), X, y, {0: 0, 1: 2, 2: 2})
    model.module_.head.linear.bias.data[0, 2] = -30.0  # component 2 dead in every member...
    model = _with_forced_dead(model, X, y, {})  # ...recorded by one more warm-start epoch
    expected = np.zeros((3, 3), bool)
    expected[0, 0] = expected[:, 2] = True
    np.testing.assert_array_equal(model.dead_components_, expected)
    X_test, y_test = _data(n=30, seed=5)
    before_dist = model.predict_dist(X_test)
    before = model.score_samples(X_test, y_test)
    model.prune_components()
    assert model.n_components_ == 2  # component 2 sliced out of every member
    assert model.predict_dist(X_test).n_components == 3 * 2 - 1  # member 0's component 0 masked
    removed = before_dist.weights[:, [0, 2, 5, 8]].sum(-1).numpy()
    change = _removed_weight_bound(before, model.score_samples(X_test, y_test), removed)
    np.testing.assert_allclose(change, 0.0, atol=1e-5)
    assert model.component_weight_max_.shape == (3, 2) and model.component_weight_max_[0, 0] == 0
    assert not model.dead_components_.any()
    members = np.stack([_member_log_density(model, m, X_test, y_test) for m in range(3)])
    np.testing.assert_allclose(model.score_samples(X_test, y_test), logsumexp(members, 0) - math.log(3),
                               rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "pruned.mdn")
    loaded = mdnkit.load(tmp_path / "pruned.mdn")
    np.testing.assert_array_equal(loaded.score_samples(X_test, y_test), model.score_samples(X_test, y_test))
    assert model.module_.member(0).head.n_components == 1


@pytest.mark.parametrize("threshold, match", [(0, "threshold must be a number in"), (1.0, "in \\(0, 1\\)"),
                                              (0.999, "every component of a member")])
def test_prune_components_errors(threshold, match):
    import copy

    model = copy.deepcopy(_fitted("diagonal", 1))
    with pytest.raises(ValueError, match=match):
        model.prune_components(threshold)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_head_prune_keeps_the_other_components_exactly(covariance_type):
    torch.manual_seed(0)
    head = MixtureHead(4, 3, n_components=4, covariance_type=covariance_type).double()
    features = torch.randn(6, 4, dtype=torch.float64)
    before = head(features)
    head.prune(torch.tensor([True, False, True, True]))
    after = head(features)
    kept = [0, 2, 3]
    torch.testing.assert_close(after.loc, before.loc[:, kept])
    torch.testing.assert_close(after.log_weights, torch.log_softmax(before.logits[:, kept], -1))
    if covariance_type == "full":
        torch.testing.assert_close(after.scale_tril, before.scale_tril[:, kept])
    else:
        torch.testing.assert_close(after.scale, before.scale[:, kept])


@pytest.mark.parametrize("extra", [
    dict(optimizer="lbfgs", learning_rate=1.0, max_epochs=3),
    dict(batch_size=None, input_noise=0.1, target_noise=0.1, validation_fraction=0.0, gradient_clip=None),
])
def test_ensemble_fits_with_every_optimiser_and_schedule(extra):
    X, y = _data()
    model = MDNRegressor(**{**TINY, **extra}, n_estimators=2).fit(X, y)
    assert len(model.history_) == model.n_iter_ > 0
    assert all(math.isfinite(r["train_nll"]) for r in model.history_)
    assert np.isfinite(model.score(X, y))
