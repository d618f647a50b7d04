"""Tests for mdnkit.novelty: calibration, monotonicity, persistence and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from mdnkit.novelty import InputNovelty, NoveltyWarning


def _data(n: int, p: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, p))


def _brute_force_kth(reference: np.ndarray, X: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    distances = np.sqrt(((X[:, None, :] - reference[None, :, :]) ** 2).sum(-1))  # [n, m]
    if leave_one_out:
        np.fill_diagonal(distances, np.inf)
    return np.sort(distances, axis=1)[:, k - 1]


@pytest.mark.parametrize("p", [1, 3])
def test_in_distribution_scores_are_uniform(p: int) -> None:
    # Fresh rows from the training distribution are (nearly) exchangeable with the reference rows,
    # so their score is a conformal rank: uniform on [0, 1]. A KS test at alpha = 1e-3 on fresh
    # seeds would fail about 0.1% of the time, plus the small bias of ranking against m = 2000
    # rows whose distances exclude themselves; the seeds here are fixed, so the test is stable.
    novelty = InputNovelty().fit(_data(2000, p, seed=1))
    scores = novelty.score(_data(1000, p, seed=2))
    assert stats.kstest(np.minimum(scores, 1.0), "uniform").pvalue > 1e-3
    assert novelty.is_novel(_data(1000, p, seed=3)).sum() == 0  # a typical test set does not warn


def test_far_points_score_above_threshold() -> None:
    novelty = InputNovelty().fit(_data(1000))
    far = np.array([[10.0, 0.0], [-8.0, 8.0], [0.0, 50.0]])
    scores = novelty.score(far)
    assert (scores > novelty.threshold).all()
    assert novelty.is_novel(far).all()
    # Beyond the data the score is the ratio to the largest training distance.
    np.testing.assert_allclose(scores, novelty.kneighbors_distance(far) / novelty.calibration_[-1])


def test_score_is_monotone_along_a_ray() -> None:
    X = _data(500, 3)
    novelty = InputNovelty().fit(X)
    direction = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    # From the centre outwards the score ends far above the threshold; from the point past every
    # training row's projection onwards every distance grows, so d(x) strictly increases and the
    # score never decreases (a step function below 1, strictly increasing ratio above).
    t = np.linspace(0, 20, 200)
    scores = novelty.score(t[:, None] * direction)
    assert scores[0] < 0.5 and scores[-1] > novelty.threshold
    start = (X @ direction).max()
    ray = (start + np.linspace(0.01, 20, 100))[:, None] * direction
    outside = novelty.score(ray)
    assert (np.diff(novelty.kneighbors_distance(ray)) > 0).all()
    assert (np.diff(outside) >= 0).all()
    assert (np.diff(outside[outside > 1]) > 0).all() and (outside > 1).sum() > 90


def test_score_is_monotone_in_distance() -> None:
    novelty = InputNovelty().fit(_data(300))
    distance = np.linspace(0, 3 * novelty.calibration_[-1], 1000)
    assert (np.diff(novelty._score_from_distance(distance)) >= 0).all()


def test_score_is_invariant_to_row_order() -> None:
    X, queries = _data(400), _data(50, seed=5)
    order = np.random.default_rng(0).permutation(len(X))
    a, b = InputNovelty().fit(X), InputNovelty().fit(X[order])
    np.testing.assert_allclose(a.calibration_, b.calibration_, rtol=1e-12)
    np.testing.assert_allclose(a.score(queries), b.score(queries), rtol=1e-12)
    flip = np.random.default_rng(1).permutation(len(queries))
    np.testing.assert_array_equal(a.score(queries)[flip], a.score(queries[flip]))


def test_kneighbors_distance_matches_brute_force() -> None:
    X, queries = _data(300, 4), _data(40, 4, seed=7)
    novelty = InputNovelty(n_neighbors=3).fit(X)
    np.testing.assert_allclose(novelty.kneighbors_distance(queries), _brute_force_kth(X, queries, 3), rtol=1e-9)
    np.testing.assert_allclose(
        novelty.calibration_, np.sort(_brute_force_kth(X, X, 3, leave_one_out=True)), rtol=1e-9
    )
    # A training row's own k-NN distance includes itself (distance 0), so it is the (k-1)-th
    # leave-one-out one: training rows score at most their calibration rank.
    assert (novelty.score(X) < 1).all()


def test_reference_is_a_seeded_bounded_subsample() -> None:
    X = _data(3000)
    a = InputNovelty(max_reference=500, random_state=3).fit(X)
    b = InputNovelty(max_reference=500, random_state=3).fit(X)
    assert a.reference_.shape == (500, 2) and a.calibration_.shape == (500,)
    np.testing.assert_array_equal(a.reference_, b.reference_)
    assert stats.kstest(np.minimum(a.score(_data(500, seed=9)), 1.0), "uniform").pvalue > 1e-3


def test_tiny_training_set_caps_k() -> None:
    novelty = InputNovelty(n_neighbors=5).fit(np.array([[0.0], [1.0], [3.0]]))
    assert novelty.n_neighbors_ == 2
    np.testing.assert_allclose(novelty.calibration_, [2.0, 3.0, 3.0])
    np.testing.assert_allclose(novelty.score(np.array([[1.0], [12.0]])), [0.0, 11.0 / 3.0])


def test_duplicate_training_rows_give_infinite_ratio() -> None:
    novelty = InputNovelty(n_neighbors=2).fit(np.zeros((10, 2)))
    np.testing.assert_array_equal(novelty.score(np.array([[0.0, 0.0], [1.0, 0.0]])), [0.0, np.inf])


def test_round_trip_through_tensors_is_exact(tmp_path) -> None:
    import safetensors.torch

    novelty = InputNovelty(n_neighbors=4, threshold=3.5).fit(_data(200, 3))
    tensors = novelty.to_tensors()
    assert {k: (tuple(v.shape), v.dtype) for k, v in tensors.items()} == {
        "reference": ((200, 3), torch.float64), "calibration": ((200,), torch.float64),
        "n_neighbors": ((), torch.int64), "threshold": ((), torch.float64),
    }
    path = tmp_path / "novelty.safetensors"
    safetensors.torch.save_file(tensors, path)
    restored = InputNovelty.from_tensors(safetensors.torch.load_file(path))
    queries = np.vstack([_data(30, 3, seed=4), [[9.0, 9.0, 9.0]]])
    np.testing.assert_array_equal(restored.score(queries), novelty.score(queries))
    np.testing.assert_array_equal(restored.reference_, novelty.reference_)
    assert (restored.n_neighbors_, restored.threshold) == (4, 3.5)
    tensors["reference"][0, 0] = 123.0  # to_tensors hands out copies
    assert novelty.reference_[0, 0] != 123.0


def test_warn_if_novel_counts_rows() -> None:
    novelty = InputNovelty().fit(_data(500))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        novelty.warn_if_novel(_data(20, seed=1))  # nothing novel: no warning
    with pytest.warns(NoveltyWarning, match=r"^2 of 5 input rows lie far outside"):
        novel = novelty.warn_if_novel(np.vstack([_data(3, seed=1), [[30.0, 0.0], [0.0, -30.0]]]))
    assert novel.tolist() == [False, False, False, True, True]
    assert issubclass(NoveltyWarning, UserWarning)


def test_errors() -> None:
    with pytest.raises(ValueError, match="not fitted"):
        InputNovelty().score(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"2-D array.*reshape"):
        InputNovelty().fit(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2 training rows"):
        InputNovelty().fit(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        InputNovelty().fit(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="n_neighbors must be an integer >= 1"):
        InputNovelty(n_neighbors=0).fit(np.zeros((5, 1)))
    with pytest.raises(ValueError, match="threshold must be a positive finite number"):
        InputNovelty(threshold=-1).fit(np.zeros((5, 1)))
    novelty = InputNovelty().fit(_data(50, 2))
    with pytest.raises(ValueError, match="X has 3 features, but InputNovelty was fitted with 2"):
        novelty.score(np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2\)"):
        novelty.score(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="at least one row"):
        novelty.score(np.zeros((0, 2)))
    with pytest.raises(ValueError, match=r"missing \['threshold'\]"):
        InputNovelty.from_tensors({k: v for k, v in novelty.to_tensors().items() if k != "threshold"})
    bad = novelty.to_tensors()
    bad["calibration"] = bad["calibration"][:-1]
    with pytest.raises(ValueError, match=r"calibration \(m,\)"):
        InputNovelty.from_tensors(bad)


@pytest.mark.parametrize("dim", [2, 9])
def test_the_quick_clearance_never_misses_a_novel_row(dim) -> None:
    """warn_if_novel clears most rows without the k-NN search; it must flag exactly the rows that
    the full score puts above the threshold, on rows from near to far (brute-force reference)."""
    rng = np.random.default_rng(dim)
    novelty = InputNovelty().fit(rng.normal(size=(2000, dim)))
    X = rng.normal(size=(3000, dim)) * rng.uniform(0.5, 4.0, size=(3000, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoveltyWarning)
        novel = novelty.warn_if_novel(X)
    np.testing.assert_array_equal(novel, novelty.score(X) > novelty.threshold)
    assert 0 < novel.sum() < len(X)
    assert novelty._surely_familiar(X).mean() > 0.3  # the shortcut does clear rows


@pytest.mark.parametrize("threshold", [0.5, 1.0, 1.3, 2.0, 4.0])
@pytest.mark.parametrize("dim", [3, 8])
def test_every_quickly_cleared_row_is_within_the_threshold(threshold, dim) -> None:
    """The shortcut's certificate against a brute-force k-th neighbour distance (SciPy's cdist,
    independent of the index): every row it clears has ``d(x) <= threshold · c_max``, with
    ``c_max`` recomputed leave-one-out the same way; below a threshold of 1 (a rank) it clears
    none. The threshold is changed after fitting, as a user may."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(7)
    reference = rng.normal(size=(600, dim))
    novelty = InputNovelty(n_neighbors=5).fit(reference)
    novelty.threshold = threshold
    X = rng.normal(size=(4000, dim)) * rng.uniform(0.5, 3.0, size=(4000, 1))
    cleared = novelty._surely_familiar(X)
    d_x = np.sort(cdist(X, reference), axis=1)[:, 4]  # the 5th nearest reference row
    leave_one_out = np.sort(cdist(reference, reference), axis=1)[:, 5]  # column 0 is the row itself
    if threshold < 1:
        assert not cleared.any()
        return
    assert (d_x[cleared] <= threshold * leave_one_out.max() * (1 + 1e-12)).all()
    assert cleared.mean() > 0.1  # and it does clear rows


def test_the_shortcut_allows_for_rounding_far_from_the_origin() -> None:
    """Far from the origin |x|² - 2 x·a + |a|² rounds by about 1e-6 here, as much as the squared
    radius: rows just outside the central anchor's certified ball (a tight cluster 1e4 from the
    origin; six rows far away set c_max) must not be cleared, by SciPy's direct distances."""
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(8)
    cluster = 1e-9 * rng.normal(size=(50, 8))
    far_group = np.zeros((6, 8))
    far_group[:, 0] = 10.0 + 1e-3 * np.arange(6)
    novelty = InputNovelty(n_neighbors=5).fit(1e4 + np.vstack([cluster, far_group]))
    anchor, reach = novelty._anchors()
    room = novelty.threshold * novelty.calibration_[-1] - float(reach[0])
    directions = rng.normal(size=(2000, 8))
    directions[:, 0] = -np.abs(directions[:, 0])  # away from the far group
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    X = anchor[0].numpy() + directions * room * (1 + rng.uniform(1e-4, 1e-2, size=(2000, 1)))
    d_x = np.sort(cdist(X - 1e4, novelty.reference_ - 1e4), axis=1)[:, 4]  # exact differences
    outside = d_x > novelty.threshold * novelty.calibration_[-1]
    assert outside.all()  # every row is novel in truth
    assert not novelty._surely_familiar(X)[outside].any()
