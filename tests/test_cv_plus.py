"""Cross-conformal (CV+) calibration: the intervals against a brute-force SciPy reference, the
coverage of a misspecified model over seeded repetitions, and ``MDNRegressor.calibrate(cv=K)``:
fold models trained without their fold, files, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import optimize, stats
from sklearn.base import clone

import mdnkit
from mdnkit import MDNRegressor, conformal
from mdnkit.distributions import GaussianMixture
from mdnkit.io import ModelFileError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _mixture(weights: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> GaussianMixture:
    """Rows of 1-D mixtures from ``(n, K)`` weights, means and scales."""
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
    return GaussianMixture(as_t(weights).log(), as_t(loc)[..., None], scale=as_t(scale)[..., None])


def _scipy_icdf(p: float, w: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> float:
    cdf = lambda y: float(np.sum(w * stats.norm.cdf(y, loc, scale))) - p  # noqa: E731
    return optimize.brentq(cdf, loc.min() - 40 * scale.max(), loc.max() + 40 * scale.max(), xtol=1e-13)


def test_cv_plus_interval_against_every_end_inverted_by_scipy():
    rng = np.random.default_rng(0)
    n_new, sizes = 4, (7, 6, 8)
    params = [(rng.dirichlet([1, 1], n_new), rng.normal(0, 2, (n_new, 2)), rng.uniform(0.3, 2, (n_new, 2))) for _ in sizes]
    scores = [rng.uniform(0, 0.499, (1, n_k)) for n_k in sizes]
    total = sum(sizes)
    for coverage in (0.5, 0.8, 0.9):
        got = conformal.cv_plus_interval([_mixture(*p) for p in params], scores, coverage).numpy()
        low_rank, high_rank = math.floor((1 - coverage) * (total + 1)), math.ceil(coverage * (total + 1))
        for row in range(n_new):
            lower = np.sort([_scipy_icdf(0.5 - s, *(a[row] for a in p)) for p, fold in zip(params, scores) for s in fold[0]])
            upper = np.sort([_scipy_icdf(0.5 + s, *(a[row] for a in p)) for p, fold in zip(params, scores) for s in fold[0]])
            expected_low = lower[low_rank - 1] if low_rank >= 1 else -np.inf
            expected_high = upper[high_rank - 1] if high_rank <= total else np.inf
            np.testing.assert_allclose(got[row, :, 0], [expected_low, expected_high], rtol=0, atol=1e-9)


def test_cv_plus_interval_is_infinite_with_too_few_rows():
    scores = [np.full((1, 3), 0.1), np.full((1, 3), 0.2)]  # 6 rows: 90 % needs rank 7
    dist = _mixture(np.ones((2, 1)), np.zeros((2, 1)), np.ones((2, 1)))
    bounds = conformal.cv_plus_interval([dist, dist], scores, 0.9).numpy()
    assert np.all(bounds[:, 0] == -np.inf) and np.all(bounds[:, 1] == np.inf)


def test_cv_plus_guarantee_is_barber_et_al_theorem_4():
    # 1 - 2α - min(2(1 - 1/K)/(n/K + 1), (1 - K/n)/(K + 1)), by hand for n = 100, K = 5, α = 0.1.
    assert conformal.cv_plus_guarantee(100, 5, 0.9) == pytest.approx(0.8 - min(1.6 / 21, 0.95 / 6))
    assert conformal.cv_plus_guarantee(10, 10, 0.5) == 0.0  # never below zero


def test_cv_plus_covers_a_misspecified_fitted_model():
    """Fold models: least squares on the other folds with a spread half the truth, far too narrow.
    Over 200 seeded repetitions (60 rows, 5 folds, 200 new rows each) the mean coverage of the
    CV+ 90 % interval has a Monte Carlo standard error of about 0.004: it must reach the
    theorem's bound, and lie within 0.03 of 90 % (about 8 standard errors: fails only if CV+
    itself is off); the raw intervals cover about 59 %."""
    rng = np.random.default_rng(1)
    coverage, n, n_folds, n_new = 0.9, 60, 5, 200
    raw, calibrated = [], []
    for _ in range(200):
        x, x_new = rng.uniform(-2, 2, n), rng.uniform(-2, 2, n_new)
        y, y_new = 1.0 + 2.0 * x + rng.normal(size=n), 1.0 + 2.0 * x_new + rng.normal(size=n_new)
        folds = rng.permutation(n) % n_folds
        fits = [np.polyfit(x[folds != k], y[folds != k], 1) for k in range(n_folds)]
        model = lambda fit, at: _mixture(np.ones((len(at), 1)), np.polyval(fit, at)[:, None], np.full((len(at), 1), 0.5))  # noqa: E731
        rows = [np.flatnonzero(folds == k) for k in range(n_folds)]
        record = conformal.cross_calibrate([model(f, x[r]) for f, r in zip(fits, rows)], [y[r] for r in rows], rows)
        bounds = conformal.cv_plus_interval([model(f, x_new) for f in fits], record.scores_by_fold(), coverage).numpy()
        calibrated.append(np.mean((bounds[:, 0, 0] <= y_new) & (y_new <= bounds[:, 1, 0])))
        whole = np.polyfit(x, y, 1)
        raw.append(np.mean(np.abs(y_new - np.polyval(whole, x_new)) <= 0.5 * stats.norm.ppf(0.95)))
    assert np.mean(raw) < 0.65
    assert np.mean(calibrated) >= conformal.cv_plus_guarantee(n, n_folds, coverage)
    assert abs(np.mean(calibrated) - coverage) < 0.03


def test_cross_calibrate_needs_every_row_once():
    dist = _mixture(np.ones((2, 1)), np.zeros((2, 1)), np.ones((2, 1)))
    with pytest.raises(ValueError, match="cover rows 0..3 once each"):
        conformal.cross_calibrate([dist, dist], [np.zeros(2), np.zeros(2)], [np.array([0, 1]), np.array([1, 3])])


# ---------------------------------------------------------------------- the estimator
def _data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, (n, 1))
    return X, np.sin(2 * X[:, 0]) + 0.3 * rng.normal(size=n)


@pytest.fixture(scope="module")
def cross():
    X, y = _data(90, 0)
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=30, input_noise=0.0, random_state=3).fit(X, y)
    return model.calibrate(X, y, cv=3), X, y


def test_each_fold_model_is_the_model_refitted_without_its_fold(cross):
    model, X, y = cross
    record = model.calibration_
    assert isinstance(record, conformal.CrossCalibration) and record.n_folds == 3 and record.n_cal == 90
    assert sorted(np.bincount(record.folds)) == [30, 30, 30]
    for k, module in enumerate(model.calibration_modules_):
        held = record.folds == k
        again = clone(model).fit(X[~held], y[~held])  # deterministic on the CPU with the same seed
        for mine, theirs in zip(module.state_dict().values(), again.module_.state_dict().values()):
            torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
        scores = conformal.pit_scores(model._module_dist(module, X[held]), y[held]).T.numpy()
        np.testing.assert_array_equal(record.fold_pit[:, held], scores)


def test_cv_plus_intervals_through_the_estimator_and_its_file(cross, tmp_path):
    model, X, y = cross
    X_new = np.linspace(-2, 2, 25)[:, None]
    bounds = model.predict_interval(X_new, 0.8, calibrated=True)
    expected = conformal.cv_plus_interval(model._fold_dists(X_new), model.calibration_.scores_by_fold(), 0.8)
    np.testing.assert_array_equal(bounds, expected[..., 0].numpy())
    assert np.all(bounds[:, 0] < bounds[:, 1])
    model.save(tmp_path / "cv.mdn")
    loaded = mdnkit.load(tmp_path / "cv.mdn")
    np.testing.assert_array_equal(loaded.predict_interval(X_new, 0.8, calibrated=True), bounds)
    np.testing.assert_allclose(loaded.predict_dist(X_new, calibrated=True).cdf(torch.zeros(25, 1)),
                               model.predict_dist(X_new, calibrated=True).cdf(torch.zeros(25, 1)), rtol=0, atol=0)
    from mdnkit.report import _calibration_promise, describe_model
    from mdnkit.tabular import Schema

    assert "cross-conformal (CV+) calibration on 90 rows in 3 folds" in describe_model(loaded, Schema(["x0"], ["y"]), "cv")
    assert f"at least {conformal.cv_plus_guarantee(90, 3, 0.9):.3f} of new rows" in _calibration_promise(loaded.calibration_)
    for call in (lambda: loaded.predict_hdi(X_new, 0.8, calibrated=True), lambda: loaded.predict_set(X_new, 0.8)):
        with pytest.raises(ValueError, match="central intervals only; for highest-density sets calibrate on held-out"):
            call()


def test_a_file_missing_its_fold_networks_is_refused(cross, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    model, _, _ = cross
    path = tmp_path / "cv.mdn"
    model.save(path)
    with safe_open(str(path), framework="pt") as file:
        metadata = file.metadata()
        tensors = {k: file.get_tensor(k) for k in file.keys() if not k.startswith("calibration_model.2.")}
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ModelFileError, match="3 folds but 2 fold networks"):
        mdnkit.load(path)


def test_cv_calibration_errors(cross):
    model, X, y = cross
    for cv in (1, 91, 2.5, True):
        with pytest.raises(ValueError, match="cv must be an integer number of folds from 2 to the 90 rows"):
            clone(model).fit(X, y).calibrate(X, y, cv=cv)
    with pytest.raises(ValueError, match=r"pass them, calibrate\(X, y, cv=K\)"):
        model.calibrate(cv=3)


def test_fold_models_are_the_kind_of_model_calibrated():
    """A noise mixture's folds are noise mixtures; a single network continued by a warm start
    (input_noise="auto" with warm_start=True keeps one level) has single-network folds."""
    from mdnkit.heads import MDN, MDNEnsemble

    X, y = _data(60, 2)
    settings = dict(n_components=1, hidden_sizes=(4,), max_epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mixture = MDNRegressor(**settings).fit(X, y).calibrate(X, y, cv=2)
        single = MDNRegressor(**settings, warm_start=True).fit(X, y).calibrate(X, y, cv=2)
    assert all(isinstance(m, MDNEnsemble) and m.n_members == 6 for m in mixture.calibration_modules_)
    assert type(single.module_) is MDN and all(type(m) is MDN for m in single.calibration_modules_)


def test_fold_models_keep_the_models_networks_per_level(tmp_path, monkeypatch):
    """A mixture of one network per level (a file from before 2026-12-07) gets folds of one
    network per level, which its file then loads as it does the model's own network."""
    X, y = _data(60, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with monkeypatch.context() as before:  # the default of then
            before.setattr(MDNRegressor, "_noise_replicates", 1)
            MDNRegressor(n_components=1, hidden_sizes=(4,), max_epochs=3, random_state=0).fit(X, y).save(tmp_path / "old.mdn")
        loaded = mdnkit.load(tmp_path / "old.mdn")  # an MDNRegressor with three networks
        loaded.calibrate(X, y, cv=2)
    assert loaded.module_.n_members == 3 and all(m.n_members == 3 for m in loaded.calibration_modules_)
    loaded.save(tmp_path / "calibrated.mdn")
    again = mdnkit.load(tmp_path / "calibrated.mdn")
    np.testing.assert_allclose(again.predict_interval(X[:5], 0.8, calibrated=True),
                               loaded.predict_interval(X[:5], 0.8, calibrated=True), rtol=1e-12)


def test_a_split_calibration_replaces_a_cross_one():
    X, y = _data(60, 1)
    model = MDNRegressor(n_components=1, hidden_sizes=(4,), max_epochs=3, random_state=0).fit(X, y)
    model.calibrate(X, y, cv=2)
    model.calibrate(X[:30], y[:30])
    assert not hasattr(model, "calibration_modules_")
    assert not isinstance(model.calibration_, conformal.CrossCalibration)
