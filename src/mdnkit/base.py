"""What every conditional density estimator offers once it has ``predict_dist``.

:class:`ConditionalDensityMixin` turns one method, ``predict_dist(X)`` (a
:class:`~mdnkit.distributions.GaussianMixture` in original units), into the whole prediction
API: mean, standard deviation, log-likelihood, samples, quantiles, intervals and modes. The
MDN, its ensembles and the baselines share it, so every comparison is one line.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mdnkit import _validation
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

    def predict_interval(self, X: Any, coverage: float = 0.9) -> np.ndarray:
        """Central interval holding ``coverage``: ``(n, 2)`` for 1-D ``y``, else ``(n, 2, d)``."""
        if not 0 < coverage < 1:
            raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
        tail = (1.0 - coverage) / 2.0
        return self.predict_quantiles(X, [tail, 1.0 - tail])

    def predict_modes(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Every local maximum of ``p(y | x)``, sorted by density.

        Returns:
            ``(modes, log_density)``: modes ``(n, K)`` for 1-D ``y`` or ``(n, K, d)``, NaN where a
            row has fewer than ``K`` modes; log densities ``(n, K)``, ``-inf`` there.
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
