"""What every conditional density estimator offers once it has ``predict_dist``.

:class:`ConditionalDensityMixin` turns one method, ``predict_dist(X)`` (a
:class:`~mdnkit.distributions.GaussianMixture` in original units), into the whole prediction
API: mean, standard deviation, log-likelihood, samples, quantiles, intervals and modes. The
MDN, its ensembles and the baselines share it, so every comparison is one line.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from mdnkit import _validation, conformal
from mdnkit.distributions import GaussianMixture


class ConditionalDensityMixin:
    """Prediction methods built on ``predict_dist``; needs ``n_outputs_`` and ``_y_is_1d``."""

    def predict_dist(self, X: Any) -> GaussianMixture:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_y(self, y: Any, n_rows: int) -> np.ndarray:
        y = _validation.as_float_matrix(y, "y", allow_1d=True, stage="score").reshape(len(np.asarray(y)), -1)
        if len(y) != n_rows:
            raise ValueError(f"X has {n_rows} rows but y has {len(y)}; they must match row for row.")
        if y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} target columns, the model was fitted with {self.n_outputs_}.")
        return y

    def _shape_targets(self, values: np.ndarray) -> np.ndarray:
        """``[..., d]`` -> drop the last axis for a model fitted on 1-D ``y``."""
        return values[..., 0] if getattr(self, "_y_is_1d", False) else values

    def predict(self, X: Any) -> np.ndarray:
        """Conditional mean, ``(n,)`` or ``(n, d)``."""
        return self._shape_targets(self.predict_dist(X).mean.numpy())

    def predict_std(self, X: Any) -> np.ndarray:
        """Conditional standard deviation (law of total variance), ``(n,)`` or ``(n, d)``."""
        return self._shape_targets(self.predict_dist(X).stddev.numpy())

    def score_samples(self, X: Any, y: Any) -> np.ndarray:
        """Log-likelihood ``log p(y_i | x_i)`` of each row, in original units, ``(n,)``."""
        mixture = self.predict_dist(X)
        y = self._check_y(y, mixture.batch_shape[0])
        return mixture.log_prob(torch.from_numpy(np.array(y, dtype=np.float64))).numpy()

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean log-likelihood per row (higher is better), in original units."""
        return float(np.average(self.score_samples(X, y), weights=sample_weight))

    def sample(
        self, X: Any, n_samples: int = 1, temperature: float = 1.0, random_state: int | None = None
    ) -> np.ndarray:
        """Draw from ``p(y | x)``: ``(n, n_samples)`` for 1-D ``y``, else ``(n, n_samples, d)``.

        ``n_samples=0`` gives an empty array of that shape.

        Raises:
            ValueError: ``n_samples`` is negative or not an integer.
        """
        n_samples = _check_n_samples(n_samples)
        mixture = self.predict_dist(X)
        with torch.random.fork_rng(devices=cuda_devices()):
            if random_state is not None:
                torch.manual_seed(seed_from(random_state))
            draws = mixture.sample((n_samples,), temperature=temperature)  # [S, n, d]
        return self._shape_targets(draws.movedim(0, 1).numpy())

    def predict_quantiles(self, X: Any, q: float | Sequence[float]) -> np.ndarray:
        """Conditional quantiles: ``(n, len(q))`` for 1-D ``y``, else per-target ``(n, len(q), d)``."""
        mixture = self.predict_dist(X)
        levels = torch.as_tensor(np.atleast_1d(np.asarray(q, dtype=np.float64)))
        if levels.ndim != 1 or ((levels < 0) | (levels > 1)).any() or levels.isnan().any():
            raise ValueError(f"q must be probabilities in [0, 1], got {q!r}.")
        columns = []
        for j in range(self.n_outputs_):
            marginal = mixture if self.n_outputs_ == 1 else mixture.marginal([j])
            probabilities = levels[:, None].expand(len(levels), mixture.batch_shape[0])
            columns.append(marginal.icdf(probabilities)[..., 0].T.numpy())  # (n, Q)
        return self._shape_targets(np.stack(columns, axis=-1))

    def predict_interval(self, X: Any, coverage: float = 0.9, calibrated: bool = False) -> np.ndarray:
        """Central interval holding ``coverage``: ``(n, 2)`` for 1-D ``y``, else ``(n, 2, d)``.

        ``calibrated=False``: the model's own ``[F⁻¹((1-c)/2), F⁻¹((1+c)/2)]``, right only if the
        model is. ``calibrated=True`` (after :meth:`calibrate`): the split-conformal interval
        ``[F⁻¹(½ - q̂), F⁻¹(½ + q̂)]``, ``q̂`` from the calibration rows' ``|F(y|x) - ½|``, which
        holds a new row's target with probability between ``c`` and ``c + 1/(n_cal + 1)``
        (marginally, over exchangeable calibration and test rows; per target column for a
        multi-D ``y``). Not for each ``x`` separately: see :func:`mdnkit.conformal.coverage_by_bin`.
        """
        if not calibrated:
            conformal._check_coverage(coverage)
            tail = (1.0 - coverage) / 2.0
            return self.predict_quantiles(X, [tail, 1.0 - tail])
        calibration = self._checked_calibration(coverage)
        if isinstance(calibration, conformal.CrossCalibration):
            bounds = calibration.interval(self.predict_dist(X), coverage, self._fold_dists(X))
        else:
            bounds = calibration.interval(self.predict_dist(X), coverage)
        return self._shape_targets(bounds.numpy())

    def predict_hdi(self, X: Any, coverage: float = 0.9, calibrated: bool = False) -> np.ndarray:
        """Highest-density set holding ``coverage``, as intervals, for a 1-D ``y``: ``(n, M, 2)``.

        Each row's set ``{y : p(y|x) >= t(x)}`` is a union of up to ``M`` disjoint intervals
        (lower, upper), sorted, NaN where a row has fewer (``M`` is the largest count in ``X``).
        ``calibrated=True`` (after :meth:`calibrate`): the model's highest-density set at the mass
        ``q̂`` for which calibration rows fell inside at the conformal rate (HPD-split, Izbicki
        et al. 2022), with the guarantee of :meth:`predict_interval`.
        """
        if self.n_outputs_ != 1:
            raise ValueError("predict_hdi needs a 1-D target; use predict_set for a multi-D one.")
        if calibrated:
            region = self._checked_calibration(coverage).hdi(self.predict_dist(X), coverage)
        else:
            region = conformal.hpd_region(self.predict_dist(X), conformal._check_coverage(coverage))
        count = max(1, int(region.mask.sum(-1).max()))
        order = (~region.mask).to(torch.int8).argsort(dim=-1, stable=True)[:, :count]  # intervals first
        bounds = region.bounds.gather(-2, order.unsqueeze(-1).expand(*order.shape, 2))
        return bounds.double().numpy()

    def predict_set(
        self, X: Any, coverage: float = 0.9, score: Literal["density", "hpd"] = "density"
    ) -> conformal.DensityRegion:
        """Calibrated density sets ``{y : p(y|x) >= t(x)}``, for any target dimension.

        ``score="density"``: one threshold ``t`` for every row, from the calibration rows'
        ``-log p(y|x)`` (the smallest sets on average; rows with wide distributions may get
        small or empty sets, so coverage varies with ``x``). ``score="hpd"`` (1-D): each row's
        highest-density set at the calibrated mass. Coverage as in :meth:`predict_interval`.

        Returns:
            A :class:`~mdnkit.conformal.DensityRegion`: ``contains(y)``, ``volume()`` and, for a
            1-D target, ``intervals()``.
        """
        return self._checked_calibration(coverage).region(self.predict_dist(X), coverage, score)

    def calibrate(self, X: Any = None, y: Any = None, cv: int | None = None) -> Any:
        """Calibrate the prediction sets on held-out rows ``X (n, p)``, ``y (n,)`` or ``(n, d)``.

        The rows must not have been used to fit the model (nor to choose it), and should be
        exchangeable with the rows to predict: then ``predict_interval``, ``predict_hdi`` and
        ``predict_set`` with ``calibrated=True`` cover at least the nominal share of new rows,
        and at most ``1/(n + 1)`` more (see :mod:`mdnkit.conformal`). A 90 % set needs 9 rows,
        95 % 19; a few hundred keep the sets stable. Stored in ``calibration_`` (saved with
        the model); refitting the model drops it.

        Without rows, the model's own validation rows of the last ``fit`` (where it keeps them: a
        single network with ``validation_fraction > 0``; not an ensemble nor the default noise
        mixture, whose networks hold out different rows). Those rows chose the
        kept epoch (and the noise level, or the mixture's weights), so the guarantee is no longer exact; the slight optimism that selection
        leaves in their scores can only shrink the sets. Rows the model never saw are safer.

        ``cv=K`` (cross-conformal, CV+; Barber et al. 2021), for data too scarce to set rows
        aside: ``X, y`` are then the training rows themselves. ``K`` copies of the model are
        fitted, each without one fold, and every row is scored by the copy that did not see it;
        ``predict_interval(calibrated=True)`` combines the copies' intervals. Coverage is at least
        :func:`~mdnkit.conformal.cv_plus_guarantee` (``1 - 2α`` less a small term), and close
        to ``1 - α`` in practice. Costs ``K`` fits; the copies are saved with the model. Central
        intervals and the recalibrated distribution only (not highest-density sets).

        Returns:
            ``self``.

        Raises:
            ValueError: only one of ``X`` and ``y``, no validation rows to fall back on, NaN or
                infinite values, ``y`` not matching ``X`` or the model, or fewer than 2 rows.
        """
        if (X is None) != (y is None):
            raise ValueError("calibrate takes both X and y, or neither (then the validation rows of the last fit).")
        if X is None:
            if cv is not None:
                raise ValueError("calibrate(cv=K) refits the model on its training rows: pass them, calibrate(X, y, cv=K).")
            X, y = self._held_out_rows()
        if cv is not None:
            self._cross_calibrate(X, y, cv)
        else:
            dist = self.predict_dist(X)
            y = self._check_y(y, dist.batch_shape[0])
            self.calibration_ = conformal.calibrate(dist, y)
            self.__dict__.pop("calibration_modules_", None)  # a former CV+ calibration's fold models
        self._calibration_stamp = self._fit_stamp()
        return self

    def _cross_calibrate(self, X: Any, y: Any, cv: int) -> None:
        raise ValueError(f"{type(self).__name__} does not support calibrate(cv=K); pass held-out rows instead.")

    def _fold_dists(self, X: Any) -> list[Any]:
        """Each CV+ fold model's distributions at the rows ``X``."""
        raise NotImplementedError

    def _held_out_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows the last fit held out (``calibrate()`` without rows), where a model keeps them."""
        raise ValueError(f"{type(self).__name__} keeps no held-out rows; pass calibration rows: calibrate(X_cal, y_cal).")

    def _fit_stamp(self) -> int | None:
        """What changes with every fit, warm starts included: the epochs in ``history_``."""
        history = getattr(self, "history_", None)
        return None if history is None else len(history)

    def _checked_calibration(self, coverage: float) -> conformal.Calibration:
        conformal._check_coverage(coverage)
        calibration = getattr(self, "calibration_", None)
        if calibration is None:
            raise ValueError(
                f"{type(self).__name__} is not calibrated; call calibrate(X_cal, y_cal) on held-out rows "
                "first, or pass calibrated=False for the model's own sets."
            )
        if getattr(self, "_calibration_stamp", None) != self._fit_stamp():
            raise ValueError(f"{type(self).__name__} was fitted again after calibrate(); calibrate it again.")
        return calibration

    def predict_modes(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Every local maximum of ``p(y | x)``, sorted by density.

        Returns:
            ``(modes, log_density)``: modes ``(n, M)`` for 1-D ``y`` or ``(n, M, d)``, NaN where a
            row has fewer than ``M`` modes; log densities ``(n, M)``, ``-inf`` there. ``M`` is the
            number of components ``K`` for the Gaussian family, and the most modes any row has
            for the others (whose search is on a grid).
        """
        found = self.predict_dist(X).modes()
        return self._shape_targets(found.value.numpy()), found.log_prob.numpy()


def _check_n_samples(n_samples: Any) -> int:
    # int() would silently truncate 2.5 and accept True; both are more likely mistakes than intent.
    if isinstance(n_samples, bool) or not isinstance(n_samples, numbers.Integral) or n_samples < 0:
        raise ValueError(f"n_samples must be a non-negative integer, got {n_samples!r}.")
    return int(n_samples)


def cuda_devices() -> list[int]:
    """Every CUDA device, so that seeding inside ``fork_rng`` leaves the user's generators as they were."""
    return list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []


def seed_from(random_state: int | np.random.RandomState | None) -> int:
    """An integer seed from a scikit-learn style ``random_state``."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**31 - 1))
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(2**31 - 1))
    raise ValueError(f"random_state must be None, an int or a numpy RandomState, got {random_state!r}.")




def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when present, else the CPU; any other name as torch reads it."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; use device='auto' or 'cpu'.")
    return resolved
