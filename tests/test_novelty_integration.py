"""MDNRegressor's input novelty: built by fit, scored, warned about in predictions, saved and loaded."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import safetensors.torch
import torch

from mdnkit import MDNRegressor, ModelFileError, load
from mdnkit.io import read_model_file
from mdnkit.novelty import InputNovelty, NoveltyWarning

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAR = np.array([[0.0, 0.0], [40.0, 0.0], [0.0, -40.0]])  # one row inside, two far outside


def _data(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, X[:, 0] - X[:, 1] + 0.1 * rng.normal(size=n)


@pytest.fixture(scope="module")
def model() -> MDNRegressor:
    X, y = _data()
    return MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0).fit(X, y)


def test_fit_builds_the_detector_on_standardised_inputs(model: MDNRegressor) -> None:
    X, _ = _data()
    assert isinstance(model.novelty_, InputNovelty)
    assert model.novelty_.reference_.shape == (300, 2)  # every row, validation rows included
    np.testing.assert_allclose(model.novelty_.reference_, (X - model.x_mean_) / model.x_scale_)
    scores = model.novelty_score(FAR)
    assert scores.shape == (3,) and scores[0] < 0.5 and (scores[1:] > model.novelty_.threshold).all()


def test_novelty_score_does_not_depend_on_feature_units() -> None:
    X, y = _data()
    queries = np.vstack([_data(50, seed=1)[0], FAR])
    units = np.array([1000.0, 0.001])
    a = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=2, random_state=0).fit(X, y)
    b = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=2, random_state=0).fit(X * units, y)
    np.testing.assert_allclose(a.novelty_score(queries), b.novelty_score(queries * units), rtol=1e-9)


def test_in_distribution_predictions_do_not_warn(model: MDNRegressor) -> None:
    X_test, _ = _data(1000, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoveltyWarning)
        model.predict_dist(X_test)
        model.predict(X_test)
        model.predict_members_dist(X_test)


def test_far_inputs_warn_with_a_count(model: MDNRegressor) -> None:
    with pytest.warns(NoveltyWarning, match=r"^2 of 3 input rows lie far outside the training inputs"):
        model.predict_dist(FAR)
    with pytest.warns(NoveltyWarning, match="2 of 3"):  # every prediction goes through predict_dist
        model.predict_quantiles(FAR, [0.1, 0.9])
    with pytest.warns(NoveltyWarning, match="2 of 3"):  # and the members' own predictions
        model.predict_members_dist(FAR)
    with pytest.warns(NoveltyWarning, match="2 of 3"):
        model.predict_epistemic_std(FAR)


def test_scores_warn_once_for_novel_rows_in_several_chunks(model: MDNRegressor) -> None:
    """score_samples checks its rows a chunk (65 536 rows) at a time: one warning, with the count
    over all chunks, at the caller's line, and the scores equal those of predict_dist."""
    X, y = _data(70_000, seed=3)
    X[[5, 69_000]] = FAR[1:]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scores = model.score_samples(X, y)
    novelty = [w for w in caught if issubclass(w.category, NoveltyWarning)]
    assert len(novelty) == 1 and str(novelty[0].message).startswith("2 of 70000 input rows")
    assert novelty[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoveltyWarning)
        expected = model.predict_dist(X).log_prob(torch.as_tensor(y).reshape(-1, 1)).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-12, atol=1e-12)


def test_novelty_score_checks_X(model: MDNRegressor) -> None:
    with pytest.raises(ValueError, match="X has 3 features, but MDNRegressor is expecting 2"):
        model.novelty_score(np.zeros((4, 3)))


def test_save_load_keeps_the_detector(model: MDNRegressor, tmp_path) -> None:
    path = tmp_path / "model.mdn"
    model.save(path)
    tensors, _ = read_model_file(path)
    assert {"novelty_.reference", "novelty_.calibration", "novelty_.n_neighbors", "novelty_.threshold"} <= set(tensors)
    loaded = load(path)
    queries = np.vstack([_data(20, seed=3)[0], FAR])
    np.testing.assert_array_equal(loaded.novelty_score(queries), model.novelty_score(queries))
    with pytest.warns(NoveltyWarning, match="2 of 3"):
        loaded.predict_dist(FAR)


def test_file_without_detector_loads_and_does_not_warn(model: MDNRegressor, tmp_path) -> None:
    path = tmp_path / "model.mdn"
    model.save(path)
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    old = tmp_path / "old.mdn"  # as written before novelty scores existed
    safetensors.torch.save_file({k: v for k, v in tensors.items() if not k.startswith("novelty_.")}, old, metadata)
    loaded = load(old)
    assert loaded.novelty_ is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoveltyWarning)
        loaded.predict_dist(FAR)
    with pytest.raises(ValueError, match="refit it to get novelty_score"):
        loaded.novelty_score(FAR)


def test_corrupt_detector_is_a_model_file_error(model: MDNRegressor, tmp_path) -> None:
    path = tmp_path / "model.mdn"
    model.save(path)
    tensors = safetensors.torch.load_file(path)
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors["novelty_.calibration"] = tensors["novelty_.calibration"][:-1].clone()
    bad = tmp_path / "bad.mdn"
    safetensors.torch.save_file(tensors, bad, metadata)
    with pytest.raises(ModelFileError, match="unreadable novelty record"):
        load(bad)


def test_large_training_sets_keep_a_bounded_reference() -> None:
    X, y = _data(12_000, seed=4)
    model = MDNRegressor(n_components=1, hidden_sizes=(4,), max_epochs=1, batch_size=None,
                         validation_fraction=0.0, random_state=0).fit(X, y)
    assert model.novelty_.reference_.shape == (10_000, 2)
