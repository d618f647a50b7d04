"""How far an input lies from the training inputs: a per-row out-of-distribution score.

An MDN's mixture weights always sum to one, so for an input far from every training row it still
returns a confident-looking density, extrapolated from nothing. :class:`InputNovelty` measures how
isolated a row is, in the standardised input space, against the training rows themselves.

With ``d(x)`` the Euclidean distance from ``x`` to its ``k``-th nearest reference (training) row
and ``c_1, ..., c_m`` the leave-one-out ``k``-th neighbour distances of the ``m`` reference rows
(each measured without the row itself), ``c_max = max_i c_i``::

    score(x) = #{i : c_i < d(x)} / m     if d(x) <= c_max   (a share, in [0, 1))
    score(x) = d(x) / c_max              if d(x) >  c_max   (a ratio, > 1)

Read it as: a score of ``0.3`` means 30% of the training rows are less isolated than ``x``; a
score of ``4`` means ``x`` is four times as far from its neighbours as the most isolated training
row. For fresh rows from the training distribution the score is close to uniform on ``[0, 1]``
(a conformal rank), and it never decreases as ``d(x)`` grows. A row is *novel* when its score
exceeds ``threshold`` (default 2: more than twice as isolated as any training row), a rule that a
typical in-distribution test set does not trip while inputs well outside the data do.

Everything is plain tensors (:meth:`InputNovelty.to_tensors`), so a model file stores it without
pickle.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import NearestNeighbors

__all__ = ["InputNovelty", "NoveltyWarning"]

_TREE_DIMS = 5  # most input dimensions for which the k-NN index is a k-d tree
_N_SPREAD_ANCHORS = 256  # reference rows that clear inputs before the k-NN search (warn_if_novel)


class NoveltyWarning(UserWarning):
    """Some inputs lie far from the training inputs: the predicted densities there are guesses."""


class InputNovelty:
    """k-nearest-neighbour novelty of inputs, calibrated on the training inputs.

    Args:
        n_neighbors: ``k``, the neighbour whose distance is used; more is smoother and slower.
            Capped at ``m - 1`` when fitted on fewer than ``k + 1`` rows.
        threshold: Score above which a row is novel (see the module docstring): ``2`` flags rows
            more than twice as isolated as the most isolated training row.
        max_reference: Most training rows kept as the reference set (a seeded subsample beyond
            that), which bounds memory, query time and the size of a saved model.
        random_state: Seed of that subsample.

    Attributes (after :meth:`fit`):
        reference_: ``(m, p)`` float64, the reference rows.
        calibration_: ``(m,)`` float64, sorted leave-one-out ``k``-th neighbour distances.
        n_neighbors_: The ``k`` in use.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> novelty = InputNovelty().fit(rng.normal(size=(500, 2)))
        >>> scores = novelty.score(np.array([[0.0, 0.0], [0.5, -0.5], [8.0, 8.0]]))
        >>> scores.shape, bool(scores[0] < 0.5), bool(scores[2] > novelty.threshold)
        ((3,), True, True)
        >>> novelty.is_novel(np.array([[0.0, 0.0], [8.0, 8.0]])).tolist()
        [False, True]
    """

    def __init__(
        self,
        n_neighbors: int = 5,
        threshold: float = 2.0,
        max_reference: int = 10_000,
        random_state: int | None = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.threshold = threshold
        self.max_reference = max_reference
        self.random_state = random_state

    def __repr__(self) -> str:
        if not hasattr(self, "reference_"):
            return f"InputNovelty(n_neighbors={self.n_neighbors}, threshold={self.threshold}, unfitted)"
        m, p = self.reference_.shape
        return f"InputNovelty(n_neighbors={self.n_neighbors_}, threshold={self.threshold}, reference=({m}, {p}))"

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any) -> InputNovelty:
        """Keep (a subsample of) the rows ``X (n, p)`` and their leave-one-out distances.

        Returns:
            ``self``.

        Raises:
            ValueError: ``X`` is not a finite 2-D array of at least 2 rows, or a parameter is
                out of range.
        """
        for name in ("n_neighbors", "max_reference"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if self.max_reference < 2:
            raise ValueError(f"max_reference must be at least 2, got {self.max_reference!r}.")
        _check_threshold(self.threshold)
        X = _as_rows(X, "X")
        if len(X) < 2:
            raise ValueError(f"X has {len(X)} row; InputNovelty needs at least 2 training rows.")
        if len(X) > self.max_reference:
            keep = np.random.default_rng(self.random_state).choice(len(X), self.max_reference, replace=False)
            X = X[np.sort(keep)]
        self.n_neighbors_ = int(min(self.n_neighbors, len(X) - 1))
        self.reference_ = np.array(X, dtype=np.float64)
        self._nn = self._anchor_cache = None  # a refit rebuilds the index and the anchors
        index = self._index()
        # kneighbors() without X leaves each row out of its own neighbours (duplicates stay in).
        distances, _ = index.kneighbors(n_neighbors=self.n_neighbors_)  # [m, k]
        self.calibration_ = np.sort(distances[:, -1])  # [m]
        return self

    def _index(self) -> NearestNeighbors:
        if getattr(self, "_nn", None) is None:
            # A k-d tree wins in few dimensions; from about 6 brute force is faster (10,000 rows:
            # 3x in 8-D, 10x in 16-D, where scikit-learn's "auto" still picks the tree).
            algorithm = "kd_tree" if self.reference_.shape[1] <= _TREE_DIMS else "brute"
            self._nn = NearestNeighbors(n_neighbors=self.n_neighbors_, algorithm=algorithm).fit(self.reference_)
        return self._nn

    def _check_fitted(self) -> None:
        if not hasattr(self, "reference_"):
            raise ValueError("This InputNovelty is not fitted yet; call fit(X) or from_tensors(...) first.")

    # ------------------------------------------------------------------ scoring
    def kneighbors_distance(self, X: Any) -> np.ndarray:
        """``d(x)``: Euclidean distance from each row of ``X (n, p)`` to its ``k``-th nearest
        reference row, ``(n,)`` float64."""
        self._check_fitted()
        X = _as_rows(X, "X", n_features=self.reference_.shape[1])
        distances, _ = self._index().kneighbors(X, n_neighbors=self.n_neighbors_)  # [n, k]
        return distances[:, -1]

    def score(self, X: Any) -> np.ndarray:
        """Novelty of each row of ``X (n, p)``, ``(n,)`` float64: the share of training rows less
        isolated than the row (``[0, 1)``), or beyond all of them its distance over the largest
        training distance (``> 1``; ``inf`` when every training distance is 0)."""
        return self._score_from_distance(self.kneighbors_distance(X))

    def _score_from_distance(self, distance: np.ndarray) -> np.ndarray:
        c = self.calibration_
        share = np.searchsorted(c, distance, side="left") / len(c)  # #{c_i < d} / m
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = distance / c[-1]
        return np.where(distance > c[-1], ratio, share)

    def is_novel(self, X: Any) -> np.ndarray:
        """``score(X) > threshold``, ``(n,)`` bool."""
        return self.score(X) > self.threshold

    def warn_if_novel(self, X: Any, *, stacklevel: int = 2) -> np.ndarray:
        """Raise a :class:`NoveltyWarning` if any row of ``X (n, p)`` is novel.

        Every prediction calls this, so most rows are cleared without the k-NN search: ``d`` is
        1-Lipschitz, so a row within ``threshold · c_max - d(a)`` of one of a few hundred
        reference rows ``a`` has ``d(x) <= threshold · c_max`` and cannot be novel (:meth:`_anchors`).
        Only the others are scored by the k-NN search.

        Returns:
            ``(n,)`` bool, True for the novel rows.
        """
        self._check_fitted()
        X = _as_rows(X, "X", n_features=self.reference_.shape[1])
        novel, largest = self.flag_novel(X)
        self.warn_about(int(novel.sum()), len(X), largest, stacklevel=stacklevel + 1)
        return novel

    def flag_novel(self, X: np.ndarray) -> tuple[np.ndarray, float]:
        """``(novel (n,) bool, largest novel score or -inf)`` for finite rows ``X (n, p)``, without
        warning; for callers that check their rows a chunk at a time and warn once with
        :meth:`warn_about`. Only the shape is checked: the caller has checked the values."""
        self._check_fitted()
        X = np.asarray(X, dtype=np.float64)  # no copy for float64 rows
        if X.ndim != 2 or X.shape[1] != self.reference_.shape[1]:
            raise ValueError(f"X must have shape (n, {self.reference_.shape[1]}), got {X.shape}.")
        novel = np.zeros(len(X), dtype=bool)
        unclear = ~self._surely_familiar(X)
        if not unclear.any():
            return novel, -math.inf
        scores = self.score(X[unclear])
        novel[unclear] = scores > self.threshold
        return novel, float(scores.max()) if novel.any() else -math.inf

    def warn_about(self, n_novel: int, n_rows: int, largest: float, *, stacklevel: int = 2) -> None:
        """The :class:`NoveltyWarning` for ``n_novel`` novel rows of ``n_rows`` (none: no warning)."""
        if n_novel:
            warnings.warn(
                f"{n_novel} of {n_rows} input rows lie far outside the training inputs "
                f"(novelty score above {self.threshold:g}, largest {largest:.3g}: "
                "that many times as far from their nearest training rows as any training row is); "
                "the predicted densities there are extrapolations. See novelty_score(X) for each row.",
                NoveltyWarning,
                stacklevel=stacklevel + 1,
            )

    def _surely_familiar(self, X: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """Rows within ``threshold · c_max - d(a)`` of an anchor ``a`` (:meth:`_anchors`)."""
        limit = float(self.threshold) * self.calibration_[-1]
        if self.threshold < 1 or not np.isfinite(limit) or limit <= 0:  # below 1 the score is a rank
            return np.zeros(len(X), dtype=bool)
        anchors, reach = self._anchors()
        room = limit - reach  # [A]; an anchor whose own d(a) exceeds the limit vouches for nothing
        bound = torch.where(room > 0, room.square() * (1 - 1e-7), -1.0)  # squared radii, d(a)'s rounding
        anchor_norms = anchors.square().sum(1)
        rows = torch.from_numpy(np.ascontiguousarray(X))
        row_norms = torch.linalg.vector_norm(rows, dim=1).square_()  # [n], without an [n, p] temporary
        # |x|² - 2 x·a + |a|² rounds with an error up to about (p + 2) eps (|x|² + |a|²), large
        # against a small radius far from the origin: a row must clear its bound by that much.
        rounding = 2 * (rows.shape[1] + 2) * torch.finfo(rows.dtype).eps
        # Nearly every row lies within reach of the most central anchor (one matrix-vector
        # product), most others within that of one of 16 or 64 spread ones: all only for the
        # rest. Torch, not NumPy: its float64 products use every core.
        norms = row_norms + anchor_norms[0]
        familiar = norms - 2 * (rows @ anchors[0]) + rounding * norms <= bound[0]
        spread = torch.arange(1, len(anchors))
        for chosen in (spread[:: max(1, len(spread) // 16)], spread[:: max(1, len(spread) // 64)], spread):
            unclear = (~familiar).nonzero().squeeze(1)
            for index in unclear.split(chunk):  # memory [chunk, anchors], not [n, anchors]
                norms = row_norms[index, None] + anchor_norms[chosen]
                squared = torch.addmm(norms, rows[index], anchors[chosen].T, alpha=-2)
                familiar[index] = (squared + rounding * norms <= bound[chosen]).any(1)
            if bool(familiar.all()):
                break
        return familiar.numpy()

    def _anchors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(anchors [A, p], reach [A])``: the most central reference row, then up to 256
        spread ones, and each one's own ``d(a)`` (its ``k``-th nearest reference row, itself
        included, as for any input), once per fitted detector.

        ``d`` is 1-Lipschitz, so ``d(x) <= |x - a| + d(a)``: a row within ``threshold · c_max -
        d(a)`` of an anchor has ``d(x) <= threshold · c_max`` and cannot be novel. A central
        anchor's ``d(a)`` is small, so its ball is nearly ``threshold · c_max`` wide.
        """
        if getattr(self, "_anchor_cache", None) is None:
            reference = self.reference_
            central = int(np.square(reference - reference.mean(0)).sum(1).argmin())
            spread = np.unique(np.linspace(0, len(reference) - 1, _N_SPREAD_ANCHORS).astype(int))
            anchors = reference[np.concatenate([[central], spread[spread != central]])]
            distances, _ = self._index().kneighbors(anchors, n_neighbors=self.n_neighbors_)
            self._anchor_cache = (torch.from_numpy(anchors), torch.from_numpy(np.ascontiguousarray(distances[:, -1])))
        return self._anchor_cache

    # ------------------------------------------------------------------ persistence
    def to_tensors(self) -> dict[str, torch.Tensor]:
        """The fitted state as CPU tensors (for a safetensors file).

        Returns:
            ``reference`` ``(m, p)`` float64, ``calibration`` ``(m,)`` float64, ``n_neighbors``
            ``()`` int64, ``threshold`` ``()`` float64.
        """
        self._check_fitted()
        return {
            "reference": torch.from_numpy(self.reference_.copy()),
            "calibration": torch.from_numpy(self.calibration_.copy()),
            "n_neighbors": torch.tensor(self.n_neighbors_, dtype=torch.int64),
            "threshold": torch.tensor(float(self.threshold), dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor | np.ndarray]) -> InputNovelty:
        """Rebuild a fitted detector from :meth:`to_tensors` output (no refit, identical scores).

        Raises:
            ValueError: A key is missing or the shapes do not fit together.
        """
        missing = {"reference", "calibration", "n_neighbors", "threshold"} - set(tensors)
        if missing:
            raise ValueError(f"InputNovelty.from_tensors is missing {sorted(missing)}.")
        reference = np.array(_numpy(tensors["reference"]), dtype=np.float64)
        calibration = np.array(_numpy(tensors["calibration"]), dtype=np.float64)
        n_neighbors = int(_numpy(tensors["n_neighbors"]))
        threshold = float(_numpy(tensors["threshold"]))
        if reference.ndim != 2 or len(reference) < 2 or calibration.shape != (len(reference),):
            raise ValueError(
                f"InputNovelty.from_tensors needs reference (m, p) with m >= 2 and calibration (m,), "
                f"got {tuple(reference.shape)} and {tuple(calibration.shape)}."
            )
        if not 1 <= n_neighbors < len(reference):
            raise ValueError(f"n_neighbors must be in [1, {len(reference) - 1}], got {n_neighbors}.")
        _check_threshold(threshold)
        novelty = cls(n_neighbors=n_neighbors, threshold=threshold, max_reference=max(len(reference), 2))
        novelty.reference_, novelty.calibration_, novelty.n_neighbors_ = reference, np.sort(calibration), n_neighbors
        return novelty


def _numpy(value: torch.Tensor | np.ndarray) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def _check_threshold(threshold: Any) -> None:
    if not (isinstance(threshold, numbers.Real) and not isinstance(threshold, bool) and 0 < threshold < math.inf):
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}.")


def _as_rows(X: Any, name: str, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite float64 ``(n, p)`` array, with errors that say what is wrong."""
    X = _numpy(X) if isinstance(X, torch.Tensor) else np.asarray(X)
    if X.ndim != 2:
        hint = " (reshape a single feature with X.reshape(-1, 1))" if X.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array (rows, features), got shape {X.shape}{hint}.")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one feature, got shape {X.shape}.")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but InputNovelty was fitted with {n_features}.")
    X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return X
