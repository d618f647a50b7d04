"""Tests for ``MDNRegressorCV``: it picks mixtures where the data need them, the successive-halving
bookkeeping, parameter handling and errors, and delegation to the selected ``MDNRegressor``.
Every search is tiny (few candidates, small networks, a budget of tens of steps)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

import mdnkit
from mdnkit import MDNRegressor
from mdnkit.datasets import make_inverted_sinusoid
from mdnkit.heads import MDNEnsemble
from mdnkit.search import _rank
from mdnkit.selection import AUTO_N_COMPONENTS, DEFAULT_PARAM_GRID, MDNRegressorCV

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TINY = {"hidden_sizes": (8,), "max_epochs": 40, "learning_rate": 0.01}


def _data(n: int = 200, d_out: int = 1, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 2))
    y = np.sin(X[:, :1]) + 0.5 * X[:, 1:] + 0.3 * rng.normal(size=(n, d_out))
    return X, (y[:, 0] if d_out == 1 else y)


@functools.lru_cache(maxsize=None)
def _search(d_out: int = 1, parsimony: float = 0.0) -> MDNRegressorCV:
    """8 candidates (rungs of 8, 4, 2) on 200 rows; tests must not modify it."""
    X, y = _data(d_out=d_out)
    grid = {"n_components": [1, 2, 3, 4], "hidden_sizes": [(4,), (8,)]}
    return MDNRegressorCV(
        param_grid=grid, budget=5, parsimony=parsimony, random_state=0,
        estimator_params={"max_epochs": 40, "learning_rate": 0.01},
    ).fit(X, y)


# ============================================================================ selection
def test_picks_more_components_for_multimodal_data():
    X_multi, y_multi = make_inverted_sinusoid(1500, random_state=0)
    rng = np.random.default_rng(0)
    X_uni = rng.uniform(-10, 10, (1500, 1))
    y_uni = X_uni[:, 0] + rng.normal(size=1500)
    search = MDNRegressorCV(
        param_grid={"n_components": [1, 3, 6]}, budget=150, random_state=0,
        estimator_params={"hidden_sizes": (32, 32), "max_epochs": 100, "learning_rate": 3e-3},
    )
    multi = clone(search).fit(X_multi, y_multi)
    uni = clone(search).fit(X_uni, y_uni)
    assert multi.n_components_ > uni.n_components_
    # the mixture is much better than one Gaussian on the multimodal set (nats per row)
    nll = dict(zip(multi.cv_results_["param_n_components"], multi.cv_results_["val_nll"]))
    assert nll[1] - nll[multi.n_components_] > 0.3


# ============================================================================ successive halving
def test_successive_halving_bookkeeping():
    search = _search()
    results = search.cv_results_
    assert search.n_candidates_ == [8, 4, 2]
    assert search.n_steps_ == [5, 10, 20]
    rungs = np.asarray(results["rung"])
    assert [int((rungs == r).sum()) for r in range(3)] == search.n_candidates_
    assert len({len(values) for values in results.values()}) == 1  # every column has every row
    assert sorted(results["candidate"][:8]) == list(range(8))
    for rung in (1, 2):
        before = [i for i, r in enumerate(results["rung"]) if r == rung - 1]
        after = [results["candidate"][i] for i, r in enumerate(results["rung"]) if r == rung]
        # parsimony=0: the survivors are the better half by hold-out NLL
        ranked = sorted(before, key=lambda i: results["val_nll"][i])
        assert sorted(after) == sorted(results["candidate"][i] for i in ranked[: len(after)])
        # and they continued where they stopped: more epochs and seconds than at the rung before
        for candidate in after:
            rows = [i for i, c in enumerate(results["candidate"]) if c == candidate]
            assert results["epochs"][rows[rung]] > results["epochs"][rows[rung - 1]]
            assert results["seconds"][rows[rung]] > results["seconds"][rows[rung - 1]]
    last = [i for i, r in enumerate(results["rung"]) if r == 2]
    best = min(last, key=lambda i: results["val_nll"][i])
    assert search.best_index_ == best
    assert search.best_params_ == results["params"][best]
    assert search.best_score_ == -results["val_nll"][best]
    assert search.n_components_ == search.best_params_["n_components"] == search.best_estimator_.n_components
    assert search.best_estimator_.hidden_sizes == search.best_params_["hidden_sizes"]
    for name in ("n_components", "hidden_sizes"):
        assert results[f"param_{name}"] == [params[name] for params in results["params"]]


def test_winner_trains_on_from_where_it_stopped():
    search = _search()
    model = search.best_estimator_
    epochs = search.cv_results_["epochs"][search.best_index_]
    # the history spans the rungs and the final training: it was never restarted
    assert len(model.history_) >= epochs
    assert [r["epoch"] for r in model.history_] == list(range(1, len(model.history_) + 1))
    assert model.warm_start is False  # the returned model refits afresh, like any MDNRegressor
    assert model.max_epochs == 40 and len(model.history_) <= 40  # the user's setting, and it held overall
    assert math.isfinite(search.validation_nll_) and search.refit_time_ > 0


def test_candidates_and_the_refit_winner_are_single_networks():
    """input_noise="auto" would make a fresh single fit a noise mixture; the search compares and
    returns single networks (its candidates continue by warm starts), with refit too."""
    X, y = _data()
    for refit in (False, True):
        search = MDNRegressorCV(param_grid={"n_components": [1, 2]}, budget=5, refit=refit, random_state=0,
                                estimator_params={"max_epochs": 10, "hidden_sizes": (4,)}).fit(X, y)
        model = search.best_estimator_
        assert model.input_noise == "select" and not hasattr(model, "member_weights_"), refit


def test_refit_fits_the_winner_afresh_on_every_row():
    X, y = _data()
    params = _search().get_params()
    search = MDNRegressorCV(**dict(params, refit=True)).fit(X, y)
    assert search.best_params_ == _search().best_params_  # the search itself does not change
    assert search.cv_results_["val_nll"] == _search().cv_results_["val_nll"]
    model = search.best_estimator_
    reference = MDNRegressor(**dict(model.get_params())).fit(X, y)
    np.testing.assert_allclose(model.score_samples(X, y), reference.score_samples(X, y), rtol=1e-6)
    assert math.isnan(search.validation_nll_)


def test_parsimony_prefers_the_smallest_tied_network():
    rng = np.random.default_rng(0)
    base = rng.normal(size=400)
    row_nlls = [base + 0.001 * rng.normal(size=400), base, base + 1.0, base + 0.5 * rng.normal(size=400)]
    scores = [float(r.mean()) for r in row_nlls]
    sizes = [50, 10, 5, 1]
    # 0 is within noise of 1 (the best), 3 is noisy enough to tie, 2 is far worse though smallest
    assert _rank(scores, row_nlls, sizes, parsimony=1.0)[:3] == [3, 1, 0]
    assert _rank(scores, row_nlls, sizes, parsimony=1.0)[3] == 2
    by_nll = _rank(scores, row_nlls, sizes, parsimony=0.0)
    assert by_nll == sorted(range(4), key=lambda j: scores[j])
    # a diverged candidate (inf) ranks last
    assert _rank([math.inf, *scores[1:]], [None, *row_nlls[1:]], sizes, parsimony=1.0)[-1] == 0


def test_same_seed_same_search():
    X, y = _data()
    again = MDNRegressorCV(**_search().get_params()).fit(X, y)
    assert again.cv_results_["val_nll"] == _search().cv_results_["val_nll"]
    assert again.best_params_ == _search().best_params_


# ============================================================================ parameters
def test_param_grid_override_and_list_of_grids():
    X, y = _data(100)
    grid = [{"n_components": [1, 2]}, {"n_components": [3], "activation": ["tanh"]}]
    search = MDNRegressorCV(param_grid=grid, budget=3, estimator_params=TINY, random_state=0).fit(X, y)
    first_rung = [p for p, r in zip(search.cv_results_["params"], search.cv_results_["rung"]) if r == 0]
    assert first_rung == [{"n_components": 1}, {"n_components": 2}, {"activation": "tanh", "n_components": 3}]
    assert search.cv_results_["param_activation"][:3] == [None, None, "tanh"]
    assert search.n_candidates_ == [3]  # 3 -> 1: one rung
    assert search.best_estimator_.hidden_sizes == (8,)  # estimator_params reach every candidate
    assert search.best_estimator_.learning_rate == 0.01


def test_defaults():
    search = MDNRegressorCV()
    assert (search.param_grid, search.budget, search.holdout_fraction) == (None, "auto", None)
    assert DEFAULT_PARAM_GRID == {"n_components": AUTO_N_COMPONENTS} == {"n_components": (1, 3, 5, 10)}


def test_auto_budget_is_half_the_patience():
    X, y = _data()  # 180 training rows in full batch: one step per epoch, so a patience of 100 epochs (steps)
    search = MDNRegressorCV(param_grid={"n_components": [1, 2, 3, 4]}, random_state=0,
                            estimator_params=dict(TINY, max_epochs=200, batch_size=None)).fit(X, y)
    assert search.budget_ == 50 and search.n_steps_ == [50, 100] and search.n_candidates_ == [4, 2]
    assert search.cv_results_["epochs"] == [50] * 4 + [100] * 2


def test_holdout_is_the_early_stopping_rows_by_default():
    search = _search()
    model = search.best_estimator_
    best = next(r for r in model.history_ if r["epoch"] == model.best_epoch_)
    # the search's hold-out NLL is the winner's early-stopping NLL: same rows, same weights
    np.testing.assert_allclose(search.validation_nll_, best["val_nll"], rtol=1e-5)


def test_separate_holdout_fraction():
    X, y = _data()
    search = MDNRegressorCV(param_grid={"n_components": [1, 2]}, holdout_fraction=0.25, budget=5,
                            estimator_params=TINY, random_state=0).fit(X, y)
    assert search.n_candidates_ == [2] and math.isfinite(search.validation_nll_)
    assert search.best_estimator_.n_features_in_ == 2


def test_ensembles_are_compared_on_rows_apart():
    """An ensemble's members hold out rows of their own, so together they train on every row:
    the search keeps ``validation_fraction`` of the rows away from every candidate."""
    X, y = _data()
    search = MDNRegressorCV(param_grid={"n_components": [1, 2]}, budget=5, random_state=0,
                            estimator_params=dict(TINY, n_estimators=2)).fit(X, y)
    held = np.zeros(len(X), dtype=bool)
    held[np.random.default_rng(0).permutation(len(X))[:20]] = True
    model = search.best_estimator_
    np.testing.assert_allclose(model.x_mean_, X[~held].mean(0), rtol=1e-12)  # fitted without them
    np.testing.assert_allclose(search.validation_nll_, -model.score(X[held], y[held]), rtol=1e-12)


def test_ensembles_in_the_grid_are_compared_on_rows_apart():
    X, y = _data()
    search = MDNRegressorCV(param_grid={"n_estimators": [1, 2]}, budget=5, random_state=0,
                            estimator_params=TINY).fit(X, y)
    held = np.zeros(len(X), dtype=bool)
    held[np.random.default_rng(0).permutation(len(X))[:20]] = True
    np.testing.assert_allclose(search.best_estimator_.x_mean_, X[~held].mean(0), rtol=1e-12)


def test_clone_and_get_params():
    search = MDNRegressorCV(param_grid={"n_components": [1, 2]}, estimator_params={"max_epochs": 7}, budget=9)
    params = search.get_params()
    assert params == {
        "param_grid": {"n_components": [1, 2]}, "estimator_params": {"max_epochs": 7}, "holdout_fraction": None,
        "budget": 9, "parsimony": 1.0, "refit": False, "n_jobs": None, "random_state": None,
    }
    copy = clone(search)
    assert copy is not search and copy.get_params() == params
    assert clone(_search()).get_params() == _search().get_params()
    assert not hasattr(clone(_search()), "best_estimator_")
    assert search.set_params(budget=3).budget == 3


@pytest.mark.parametrize(
    "params, match",
    [
        ({"param_grid": {}}, r"param_grid must map parameter names to non-empty lists"),
        ({"param_grid": []}, r"param_grid must be a non-empty dict"),
        ({"param_grid": {"n_components": []}}, r"param_grid\['n_components'\] must be a non-empty list"),
        ({"param_grid": {"n_component": [1, 2]}}, r"param_grid has unknown MDNRegressor parameter\(s\) \['n_component'\]"),
        ({"param_grid": {"activation": "relu"}}, r"param_grid\['activation'\] must be a non-empty list"),
        ({"param_grid": {"random_state": [0, 1]}}, r"param_grid cannot search 'random_state'"),
        ({"param_grid": {"warm_start": [True]}}, r"param_grid cannot search 'warm_start'"),
        ({"param_grid": {"n_components": [0, 2]}}, r"n_components must be an integer >= 1, got 0"),
        ({"estimator_params": {"epochs": 3}}, r"estimator_params has unknown MDNRegressor parameter\(s\) \['epochs'\]"),
        ({"estimator_params": {"random_state": 0}}, r"estimator_params must not set 'random_state'"),
        ({"estimator_params": {"n_components": 2}}, r"'n_components' is both in param_grid and in estimator_params"),
        ({"estimator_params": [("max_epochs", 3)]}, r"estimator_params must be a dict or None"),
        ({"budget": 0}, r"budget must be 'auto' or an integer >= 1"),
        ({"budget": "lots"}, r"budget must be 'auto' or an integer >= 1"),
        ({"holdout_fraction": 1.0}, r"holdout_fraction must be None or in \(0, 1\)"),
        ({"estimator_params": {"validation_fraction": 0.0}}, r"holdout_fraction=None compares the candidates"),
        ({"param_grid": {"hidden_sizes": [(4,)]}, "estimator_params": {"n_components": "auto"}},
         r"n_components='auto' cannot be a candidate"),
        ({"parsimony": -1}, r"parsimony must be a number >= 0"),
    ],
)
def test_bad_settings_raise_before_training(params, match):
    X, y = _data(50)
    with pytest.raises(ValueError, match=match):
        MDNRegressorCV(**params).fit(X, y)


def test_too_few_rows_raises():
    with pytest.raises(ValueError, match=r"leaves 2 to train the candidates; at least 3 are needed"):
        MDNRegressorCV(holdout_fraction=0.5).fit(np.zeros((4, 1)), np.arange(4.0))


# ============================================================================ delegation
@pytest.mark.parametrize("d_out", [1, 2])
def test_predictions_delegate_to_best_estimator(d_out):
    search = _search(d_out)
    model = search.best_estimator_
    X, y = _data(d_out=d_out, seed=1)
    ours, theirs = search.predict_dist(X), model.predict_dist(X)
    for name in ("logits", "loc", "scale"):
        torch.testing.assert_close(getattr(ours, name), getattr(theirs, name), rtol=0, atol=0)
    np.testing.assert_array_equal(search.predict(X), model.predict(X))
    np.testing.assert_array_equal(search.score_samples(X, y), model.score_samples(X, y))
    assert search.score(X, y) == model.score(X, y)
    np.testing.assert_array_equal(search.sample(X, 3, random_state=0), model.sample(X, 3, random_state=0))
    np.testing.assert_array_equal(search.predict_interval(X), model.predict_interval(X))
    assert search.predict(X).shape == ((len(X),) if d_out == 1 else (len(X), 2))
    assert (search.n_features_in_, search.n_outputs_) == (2, d_out)


def test_feature_names_pass_through():
    pd = pytest.importorskip("pandas")
    X, y = _data(100)
    frame = pd.DataFrame(X, columns=["a", "b"])
    search = MDNRegressorCV(param_grid={"n_components": [1, 2]}, budget=3, estimator_params=TINY, random_state=0)
    search.fit(frame, pd.Series(y))
    assert list(search.feature_names_in_) == ["a", "b"]
    with pytest.raises(ValueError, match="fitted with columns"):
        search.predict(frame[["b", "a"]])


def test_save_writes_the_best_estimator(tmp_path):
    search = _search()
    X, y = _data(seed=1)
    search.save(tmp_path / "model.mdn")
    loaded = mdnkit.load(tmp_path / "model.mdn")
    assert type(loaded) is MDNRegressor
    np.testing.assert_allclose(loaded.score_samples(X, y), search.score_samples(X, y), rtol=1e-12)


def test_unfitted_raises():
    search = MDNRegressorCV()
    with pytest.raises(NotFittedError):
        search.predict(np.zeros((2, 2)))
    with pytest.raises(NotFittedError):
        search.save("unused.mdn")


# ============================================================================ MDNRegressor(n_components="auto")
AUTO = {"n_components": "auto", "hidden_sizes": (8,), "max_epochs": 40, "learning_rate": 0.01, "random_state": 0}


@functools.lru_cache(maxsize=None)
def _auto_model() -> MDNRegressor:
    """An ensemble of two with a fixed input noise: every setting must reach the candidates."""
    X, y = _data()
    return MDNRegressor(**AUTO, n_estimators=2, input_noise=0.05).fit(X, y)


def test_auto_picks_more_components_for_multimodal_data():
    X_multi, y_multi = make_inverted_sinusoid(1000, random_state=0)
    rng = np.random.default_rng(0)
    X_uni = rng.uniform(-10, 10, (1000, 1))
    y_uni = X_uni[:, 0] + rng.normal(size=1000)
    model = MDNRegressor(n_components="auto", hidden_sizes=(32, 32), max_epochs=60, learning_rate=3e-3, random_state=0)
    multi = clone(model).fit(X_multi, y_multi)
    uni = clone(model).fit(X_uni, y_uni)
    assert multi.n_components_ > uni.n_components_
    assert multi.module_.head.n_components == multi.n_components_
    assert multi.get_params()["n_components"] == "auto"  # the parameter is never overwritten


def test_auto_adopts_the_winner():
    """For an ensemble, K is searched with single networks (same settings otherwise), then the
    ensemble is fitted with the winning K on every row."""
    X, y = _data()
    model = _auto_model()
    results = model.selection_results_
    assert sorted(set(results["param_n_components"])) == list(AUTO_N_COMPONENTS)
    settings = {k: v for k, v in clone(model).get_params().items() if k not in ("n_components", "random_state", "warm_start")}
    search = MDNRegressorCV(param_grid={"n_components": AUTO_N_COMPONENTS}, random_state=0,
                            estimator_params=dict(settings, n_estimators=1)).fit(X, y)
    assert {k: v for k, v in results.items() if k != "seconds"} == {
        k: v for k, v in search.cv_results_.items() if k != "seconds"}
    assert model.n_components_ == search.n_components_
    ensemble = MDNRegressor(**dict(settings, n_components=search.n_components_), random_state=0).fit(X, y)
    np.testing.assert_array_equal(model.score_samples(X, y), ensemble.score_samples(X, y))
    np.testing.assert_allclose(model.x_mean_, X.mean(0), rtol=1e-12)  # fitted on every row
    assert isinstance(model.module_, MDNEnsemble) and model.module_.n_members == 2
    assert model.input_noise_ == 0.05 and model.hidden_sizes == (8,)
    untimed = lambda history: [{k: v for k, v in r.items() if k != "time"} for r in history]  # noqa: E731
    assert untimed(model.history_) == untimed(ensemble.history_)
    assert (model.n_features_in_, model.n_outputs_, model._y_is_1d) == (2, 1, True)


def test_auto_refit_starts_afresh():
    pd = pytest.importorskip("pandas")
    X, y = _data()
    model = MDNRegressor(**AUTO).fit(pd.DataFrame(X, columns=["a", "b"]), pd.DataFrame({"t": y}))
    assert list(model.feature_names_in_) == ["a", "b"] and model.target_names_ == ["t"]
    model.fit(X, y)
    assert not hasattr(model, "feature_names_in_") and not hasattr(model, "target_names_")


def test_auto_save_load_round_trip(tmp_path):
    X, y = _data(seed=1)
    model = _auto_model()
    model.save(tmp_path / "auto.mdn")
    loaded = mdnkit.load(tmp_path / "auto.mdn")
    assert loaded.get_params() == model.get_params() and loaded.n_components == "auto"
    assert loaded.n_components_ == model.n_components_ == loaded.module_.head.n_components
    np.testing.assert_allclose(loaded.score_samples(X, y), model.score_samples(X, y), rtol=1e-12)
    assert not hasattr(loaded, "selection_results_")  # the search is not saved


def test_auto_clone_and_get_params():
    model = MDNRegressor(n_components="auto", hidden_sizes=(8,))
    assert model.get_params()["n_components"] == "auto"
    assert clone(model).get_params() == model.get_params()
    copy = clone(_auto_model())
    assert copy.get_params() == _auto_model().get_params()
    assert not hasattr(copy, "selection_results_") and not hasattr(copy, "module_")


@pytest.mark.parametrize("value", ["many", "AUTO", 0])
def test_auto_bad_n_components(value):
    X, y = _data(50)
    with pytest.raises(ValueError, match=rf"n_components must be an integer >= 1, got {value!r} \(or 'auto'"):
        MDNRegressor(n_components=value).fit(X, y)


def test_best_estimator_keeps_the_users_max_epochs():
    """The rungs shorten max_epochs while searching; the model handed over must not."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 1)); y = X[:, 0] + 0.1 * rng.normal(size=120)
    search = MDNRegressorCV(param_grid={"n_components": (1, 2)},
                            estimator_params={"hidden_sizes": (8,), "max_epochs": 10, "input_noise": 0.0},
                            random_state=0).fit(X, y)
    assert search.best_estimator_.get_params()["max_epochs"] == 10


def test_a_search_refuses_noise_mixtures_before_training():
    X, y = np.zeros((20, 1)), np.arange(20.0)
    with pytest.raises(ValueError, match="MDNRegressorCV continues its candidates with warm starts"):
        MDNRegressorCV(estimator_params={"input_noise": "mixture"}).fit(X, y)
