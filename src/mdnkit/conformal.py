"""Split conformal calibration of predicted distributions: sets with guaranteed coverage.

A model's ``90 %`` interval holds the truth 90 % of the time only if the model is right.
Split conformal prediction (Vovk et al. 2005; Lei et al. 2018) repairs that from ``n`` held-out
*calibration* rows: score how badly each row's target fits its predicted distribution, take the
``⌈(n + 1)(1 - α)⌉``-th smallest score ``q̂`` (:func:`conformal_quantile`), and predict every
``y`` scoring at most ``q̂``. If the calibration rows and a new row are exchangeable (e.g. i.i.d.),

.. math:: 1 - α \\;\\le\\; P\\big(Y_{n+1} \\in C(X_{n+1})\\big) \\;\\le\\; 1 - α + \\frac{1}{n + 1},

the upper bound for continuous scores without ties. The probability is *marginal*: over the
calibration rows and the new row together. Nothing is promised for a given ``x`` (conditional
coverage), which no finite-sample method can promise; :func:`coverage_by_bin` shows how far it
is off, bin by bin. Neither bound holds under a shift between calibration and test data.

Scores, each a function of one predicted distribution and one target (larger: fits worse):

* :func:`pit_scores` ``|F(y|x) - ½|``, for central intervals ``[F⁻¹(½ - q̂), F⁻¹(½ + q̂)]``
  (distributional conformal prediction, Chernozhukov et al. 2021; any family, 1-D per target);
* :func:`hpd_scores` the mass of ``{y' : p(y'|x) > p(y|x)}``, for highest-density sets: the
  model's own HDI at mass ``q̂`` (HPD-split, Izbicki et al. 2022; 1-D);
* :func:`density_scores` ``-log p(y|x)``, for the level set ``{y : p(y|x) >= exp(-q̂)}`` (CD-split
  without its partition; any dimension: :class:`DensityRegion` tests membership and estimates
  volumes by Monte Carlo).

When rows are too few to set some aside, :func:`cv_plus_interval` gives CV+ intervals (Barber
et al. 2021) from ``K`` models each fitted without one fold, every row scored by the model that
did not see it (:class:`CrossCalibration`): coverage at least ``1 - 2α`` less a small term
(:func:`cv_plus_guarantee`), and close to ``1 - α`` in practice, with no row lost to training.

:func:`recalibration_map` and :class:`RecalibratedDistribution` recalibrate the whole
distribution instead (Kuleshov et al. 2018): ``F̃ = R ∘ F`` with ``R`` the (smoothed) cdf of the
calibration PIT values, so that ``F̃(Y|X)`` is about uniform; its quantiles are calibrated on
average, without the finite-sample guarantee.

Every function takes a :class:`~mdnkit.mixture.Mixture` with batch shape ``(n,)`` (what
``predict_dist`` returns) and works in float64.

Example:
    >>> import torch
    >>> from mdnkit.distributions import GaussianMixture
    >>> too_narrow = GaussianMixture(torch.zeros(500, 1), torch.zeros(500, 1, 1), scale=torch.ones(500, 1, 1))
    >>> y = 2.0 * torch.randn(500, generator=torch.Generator().manual_seed(0))  # twice as wide
    >>> calibration = calibrate(too_narrow, y)
    >>> raw = too_narrow.icdf(torch.full((500,), 0.95))[0, 0]  # the 90 % interval's upper end
    >>> fixed = calibration.interval(too_narrow, 0.9)[0, 1]  # about 2 · 1.64
    >>> round(float(raw), 2), 3.0 < float(fixed) < 3.6
    (1.64, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from mdnkit._level_sets import _check_coverage, _mass, hpd_region, level_set
from mdnkit._univariate import HighestDensityIntervals
from mdnkit.mixture import Mixture

__all__ = [
    "Calibration", "CoverageByBin", "CrossCalibration", "DensityRegion", "RecalibratedDistribution", "calibrate",
    "central_interval", "conformal_quantile", "coverage_by_bin", "cross_calibrate", "cv_plus_guarantee",
    "cv_plus_interval", "density_scores", "hpd_region",
    "hpd_scores", "level_set", "min_calibration_rows", "pit_scores", "recalibration_map",
]

RegionScore = Literal["hpd", "density"]
# (n + 1)(1 - α) is often an integer that floating point misses by one ulp (10 * 0.7 = 7.000...01).
_RANK_TOLERANCE = 1e-9
_SAMPLE_CHUNK = 2**22  # draws x rows x components held at once by DensityRegion.volume
_BISECTIONS = 64  # halvings of a CV+ end's bracket: far below a float64 ulp of any bracket


# ---------------------------------------------------------------------- the conformal quantile


def conformal_rank(n: int, coverage: float) -> int:
    """``k = ⌈(n + 1) · coverage⌉``: the rank of the calibration score that bounds the set."""
    return math.ceil((n + 1) * _check_coverage(coverage) - _RANK_TOLERANCE)


def min_calibration_rows(coverage: float) -> int:
    """The fewest calibration rows that give a finite set at ``coverage``: ``⌈c / (1 - c)⌉``."""
    coverage = _check_coverage(coverage)
    n = max(1, math.floor(coverage / (1 - coverage)) - 1)
    while conformal_rank(n, coverage) > n:
        n += 1
    return n


def conformal_quantile(scores: ArrayLike, coverage: float) -> np.ndarray:
    """The split-conformal threshold: the ``⌈(n + 1) · coverage⌉``-th smallest of ``n`` scores.

    ``+inf`` when that rank exceeds ``n`` (fewer than :func:`min_calibration_rows` rows): only
    the whole space is then guaranteed to cover.

    Args:
        scores: ``[..., n]`` calibration scores; the quantile is taken along the last axis.
        coverage: ``1 - α`` in ``(0, 1)``.

    Returns:
        ``[...]`` float64 (a 0-d array for 1-D scores).

    Example:
        >>> float(conformal_quantile([3.0, 1.0, 2.0, 5.0, 4.0], 0.5))  # rank ⌈6 · 0.5⌉ = 3
        3.0
        >>> float(conformal_quantile([3.0, 1.0, 2.0], 0.9))  # 3 rows cannot give 90 %
        inf
    """
    scores = np.sort(np.asarray(scores, dtype=np.float64), axis=-1)
    n = scores.shape[-1]
    rank = conformal_rank(n, coverage)
    if rank > n:
        return np.full(scores.shape[:-1], np.inf)
    return scores[..., rank - 1]


# ---------------------------------------------------------------------- scores
def _as_targets(dist: Mixture, y: ArrayLike | Tensor) -> tuple[Mixture, Tensor]:
    """``(dist, y)`` in float64 on the CPU, ``y`` as ``[n, D]``; shape errors name both."""
    if len(dist.batch_shape) != 1:
        raise ValueError(f"conformal scores need a batch of shape (n,), got {tuple(dist.batch_shape)}.")
    n, dim = dist.batch_shape[0], dist.event_shape[0]
    value = torch.as_tensor(np.array(y, dtype=np.float64)) if not isinstance(y, Tensor) else y.double().cpu()
    if value.dim() == 1 and dim == 1:
        value = value.unsqueeze(-1)
    if tuple(value.shape) != (n, dim):
        expected = f"({n},) or ({n}, 1)" if dim == 1 else f"({n}, {dim})"
        raise ValueError(f"y must have shape {expected} to match the distribution, got {tuple(value.shape)}.")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"y holds {int((~torch.isfinite(value)).any(-1).sum())} row(s) with NaN or infinite "
                         "values; calibration needs observed targets.")
    return dist.to("cpu", torch.float64), value


def _marginals(dist: Mixture) -> list[Mixture]:
    dim = dist.event_shape[0]
    return [dist] if dim == 1 else [dist.marginal([j]) for j in range(dim)]


def pit_scores(dist: Mixture, y: ArrayLike | Tensor) -> Tensor:
    """``|F_j(y_j | x) - ½|`` of each row and target column, ``[n, D]`` in ``[0, ½]``.

    ``F_j`` is the marginal cdf of column ``j``: each column is calibrated on its own, so the
    guarantee holds per column (not for all columns at once).
    """
    dist, y = _as_targets(dist, y)
    return torch.stack([(m.cdf(y[:, j:j + 1]) - 0.5).abs() for j, m in enumerate(_marginals(dist))], -1)


def density_scores(dist: Mixture, y: ArrayLike | Tensor) -> Tensor:
    """``-log p(y | x)`` of each row, ``[n]`` (any target dimension, the units of ``y``)."""
    dist, y = _as_targets(dist, y)
    return -dist.log_prob(y)


def hpd_scores(dist: Mixture, y: ArrayLike | Tensor) -> Tensor:
    """``P(p(Y | x) >= p(y | x))`` for ``Y`` drawn from ``dist``: the mass of the smallest
    highest-density set that holds ``y``, ``[n]`` in ``[0, 1]`` (1-D targets)."""
    dist, y = _as_targets(dist, y)
    dist._require_1d("hpd_scores")
    return _mass(dist, level_set(dist, dist.log_prob(y)))


# ---------------------------------------------------------------------- sets from thresholds
def central_interval(dist: Mixture, q: ArrayLike | Tensor) -> Tensor:
    """``[F⁻¹(½ - q), F⁻¹(½ + q)]`` of a 1-D mixture, ``[n, 2]``; ``q >= ½`` gives ``(-inf, inf)``.

    The set of ``y`` with :func:`pit_scores` at most ``q``, for ``q`` broadcastable to ``[n]``.
    """
    dist._require_1d("central_interval")
    q = torch.as_tensor(q, dtype=torch.float64).clamp(0.0, 0.5).expand(dist.batch_shape)
    levels = torch.stack([0.5 - q, 0.5 + q])  # [2, n]
    return dist.to("cpu", torch.float64).icdf(levels)[..., 0].T


@dataclass(frozen=True)
class DensityRegion:
    """The set ``{y : log p(y | x) >= log_level}`` of each row: any target dimension.

    Attributes:
        dist: The predicted distributions, batch shape ``(n,)``.
        log_level: ``[n]`` threshold on the log-density (``-inf``: the whole space).
    """

    dist: Mixture
    log_level: Tensor

    def contains(self, y: ArrayLike | Tensor) -> np.ndarray:
        """Whether each row's target lies in its set: ``y (n,)`` or ``(n, D)`` -> booleans ``(n,)``."""
        dist, y = _as_targets(self.dist, y)
        return (dist.log_prob(y) >= self.log_level).numpy()

    def volume(self, n_samples: int = 1000, random_state: int | None = 0) -> np.ndarray:
        """Lebesgue measure of each row's set (length in 1-D, area in 2-D...), ``(n,)``.

        Importance sampling from the distribution itself: ``vol = E_Y[1{p(Y) >= t} / p(Y)]``,
        unbiased, with ``n_samples`` draws per row (relative error about ``1/√n_samples`` when
        the set holds most of the mass). Infinite for the whole space.
        """
        dist = self.dist.to("cpu", torch.float64)
        n, rows = dist.batch_shape[0], max(1, _SAMPLE_CHUNK // (int(n_samples) * dist.n_components))
        parts = []
        with torch.random.fork_rng(devices=[], enabled=random_state is not None):
            if random_state is not None:
                torch.manual_seed(int(random_state))
            for start in range(0, n, rows):  # memory S x rows x K at a time, whatever n is
                part = dist.rows(slice(start, start + rows))
                log_density = part.log_prob(part.sample((int(n_samples),)))  # [S, r]
                inside = log_density >= self.log_level[start:start + rows]
                parts.append(torch.where(inside, (-log_density).exp(), 0.0).mean(0))
        volume = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
        return torch.where(self.log_level == -math.inf, math.inf, volume).numpy()

    def intervals(self) -> HighestDensityIntervals:
        """The sets of a 1-D target as unions of intervals (:func:`level_set`)."""
        return level_set(self.dist, self.log_level)


# ---------------------------------------------------------------------- recalibration
def recalibration_map(pit: ArrayLike, n_knots: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A continuous, strictly increasing ``R: [0, 1] -> [0, 1]`` with ``R(F(Y|X))`` about uniform.

    Piecewise linear through ``(u_j, j/m)``, ``j = 0..m``, with ``u_j`` the ``j/m`` quantile of the
    calibration PIT values shrunk towards ``j/m`` by ``ε = 1/(n + 1)`` (so that ``R`` is strictly
    increasing even with ties), and ``m = ⌊√n⌋`` (at most 100) segments: each holds about ``√n``
    calibration values, a smoothed version of Kuleshov et al.'s (2018) isotonic fit whose slope,
    the density factor, stays finite.

    Args:
        pit: ``(n,)`` PIT values ``F(y_i | x_i)`` of the calibration rows.
        n_knots: ``m``; the default as above.

    Returns:
        ``(u, r)``: knots ``(m + 1,)`` in PIT space and their values, both from 0 to 1.
    """
    pit = np.clip(np.asarray(pit, dtype=np.float64).ravel(), 0.0, 1.0)
    n = len(pit)
    m = int(n_knots or min(100, max(1, math.isqrt(n))))
    levels = np.linspace(0.0, 1.0, m + 1)
    quantiles = np.quantile(pit, levels) if n else levels
    quantiles[0], quantiles[-1] = 0.0, 1.0
    shrink = 1.0 / (n + 1)
    return (1 - shrink) * quantiles + shrink * levels, levels


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> tuple[Tensor, Tensor]:
    """Piecewise-linear interpolation of increasing knots: ``(f(x), f'(x))``, for ``x`` in ``[xp_0, xp_-1]``."""
    segment = (torch.searchsorted(xp, x.contiguous(), right=True) - 1).clamp(0, len(xp) - 2)
    slope = (fp[1:] - fp[:-1]) / (xp[1:] - xp[:-1])
    return fp[segment] + slope[segment] * (x - xp[segment]), slope[segment]


class RecalibratedDistribution:
    """A 1-D predicted distribution with its PIT recalibrated: ``F̃(y) = R(F(y))``.

    ``R`` from :func:`recalibration_map`; quantiles ``F̃⁻¹(p) = F⁻¹(R⁻¹(p))``, density
    ``p̃(y) = R'(F(y)) p(y)``, samples ``F̃⁻¹(U)``. Shapes as the wrapped mixture's (batch
    ``(n,)``, event ``(1,)``).
    """

    def __init__(self, base: Mixture, knots: ArrayLike | Tensor, values: ArrayLike | Tensor) -> None:
        base._require_1d("RecalibratedDistribution")
        self.base = base.to("cpu", torch.float64)
        self.knots = torch.as_tensor(np.asarray(knots, dtype=np.float64))
        self.values = torch.as_tensor(np.asarray(values, dtype=np.float64))
        self.batch_shape, self.event_shape = self.base.batch_shape, self.base.event_shape

    def __repr__(self) -> str:
        return f"RecalibratedDistribution({self.base!r}, {len(self.knots) - 1} segments)"

    def cdf(self, value: Tensor) -> Tensor:
        """``R(F(value))``: ``[*S, n, 1] -> [*S, n]``."""
        return _interp(self.base.cdf(value.double()).clamp(0.0, 1.0), self.knots, self.values)[0]

    def icdf(self, value: Tensor) -> Tensor:
        """``F⁻¹(R⁻¹(p))``: probabilities ``[*S, n] -> [*S, n, 1]``."""
        p = torch.as_tensor(value, dtype=torch.float64)
        return self.base.icdf(_interp(p.clamp(0.0, 1.0), self.values, self.knots)[0])

    def log_prob(self, value: Tensor) -> Tensor:
        """``log R'(F(y)) + log p(y)``: ``[*S, n, 1] -> [*S, n]``."""
        value = value.double()
        _, slope = _interp(self.base.cdf(value).clamp(0.0, 1.0), self.knots, self.values)
        return slope.log() + self.base.log_prob(value)

    def sample(self, sample_shape: Sequence[int] = ()) -> Tensor:
        """``[*sample_shape, n, 1]`` draws (inverse transform of uniforms from torch's generator)."""
        return self.icdf(torch.rand(*sample_shape, *self.batch_shape, dtype=torch.float64))

    @property
    def mean(self) -> Tensor:
        """``∫ F̃⁻¹(p) dp`` by the midpoint rule on 512 levels, ``[n, 1]``."""
        levels = (torch.arange(512, dtype=torch.float64) + 0.5) / 512
        return self.icdf(levels[:, None].expand(512, *self.batch_shape)).mean(0)


# ---------------------------------------------------------------------- the calibration record
@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` learns from the calibration rows: sorted scores and the PIT map.

    Attributes:
        n_cal: Calibration rows.
        pit: ``(D, n)`` sorted :func:`pit_scores` per target column.
        density: ``(n,)`` sorted :func:`density_scores`.
        hpd: ``(n,)`` sorted :func:`hpd_scores` (1-D targets; else None).
        knots, values: :func:`recalibration_map` of the PIT values (1-D targets; else None).
    """

    n_cal: int
    pit: np.ndarray
    density: np.ndarray
    hpd: np.ndarray | None = None
    knots: np.ndarray | None = None
    values: np.ndarray | None = None

    def threshold(self, scores: np.ndarray, coverage: float) -> np.ndarray:
        """:func:`conformal_quantile` of ``scores``; warns when too few rows give a finite one."""
        q = conformal_quantile(scores, coverage)
        if not np.all(np.isfinite(q)):
            import warnings

            warnings.warn(
                f"coverage={coverage:g} needs at least {min_calibration_rows(coverage)} calibration rows "
                f"for a bounded set; this calibration has {self.n_cal}, so the set is the whole space "
                "(the only one guaranteed to cover). Calibrate on more rows or ask for less coverage.",
                UserWarning, stacklevel=4,
            )
        return q

    def interval(self, dist: Mixture, coverage: float) -> Tensor:
        """Conformal central intervals, ``[n, 2, D]``: each target column on its own."""
        q = self.threshold(self.pit, coverage)  # [D]
        return torch.stack([central_interval(m, float(q[j])) for j, m in enumerate(_marginals(dist))], -1)

    def hdi(self, dist: Mixture, coverage: float) -> HighestDensityIntervals:
        """Conformal highest-density sets (HPD-split) of a 1-D target."""
        if self.hpd is None:
            raise ValueError("highest-density sets need a 1-D target; use region(..., score='density').")
        return hpd_region(dist, float(self.threshold(self.hpd, coverage)))

    def region(self, dist: Mixture, coverage: float, score: RegionScore = "density") -> DensityRegion:
        """Conformal density sets, any dimension: a global threshold on ``p(y|x)`` (``"density"``)
        or each row's HDI at the calibrated mass (``"hpd"``, 1-D)."""
        if score == "density":
            q = float(self.threshold(self.density, coverage))
            return DensityRegion(dist.to("cpu", torch.float64), torch.full(dist.batch_shape, -q, dtype=torch.float64))
        if score == "hpd":
            level = self.hdi(dist, coverage).level
            return DensityRegion(dist.to("cpu", torch.float64), torch.where(level > 0, level.log(), -math.inf))
        raise ValueError(f"score must be 'density' or 'hpd', got {score!r}.")

    def recalibrate(self, dist: Mixture) -> RecalibratedDistribution:
        """``dist`` with its PIT recalibrated (1-D targets)."""
        if self.knots is None:
            raise ValueError("recalibrating the distribution needs a 1-D target (the PIT is 1-D).")
        return RecalibratedDistribution(dist, self.knots, self.values)

    # ---------------------------------------------------------------- files
    def to_tensors(self) -> dict[str, Tensor]:
        """The record as float64 CPU tensors (for a safetensors file); ``n_cal`` is ``density``'s length."""
        fields = {"pit": self.pit, "density": self.density, "hpd": self.hpd, "knots": self.knots, "values": self.values}
        return {name: torch.from_numpy(np.array(value, dtype=np.float64)) for name, value in fields.items()
                if value is not None}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any]) -> Calibration:
        """Rebuild from :meth:`to_tensors` output.

        Raises:
            ValueError: A key is missing or the shapes do not fit together.
        """
        arrays = {name: np.asarray(t, dtype=np.float64) for name, t in tensors.items()}
        if not {"pit", "density"} <= set(arrays):
            raise ValueError(f"a calibration record needs 'pit' and 'density', got {sorted(arrays)}.")
        n = len(arrays["density"])
        ok = arrays["pit"].ndim == 2 and arrays["pit"].shape[1] == n and arrays["density"].ndim == 1
        ok &= "hpd" not in arrays or arrays["hpd"].shape == (n,)
        ok &= ("knots" in arrays) == ("values" in arrays)
        ok &= "knots" not in arrays or arrays["knots"].shape == arrays["values"].shape
        if not ok:
            raise ValueError(f"calibration arrays of inconsistent shapes: {({k: v.shape for k, v in arrays.items()})}.")
        args = (n, arrays["pit"], arrays["density"], arrays.get("hpd"), arrays.get("knots"), arrays.get("values"))
        if "folds" not in arrays:
            return Calibration(*args)
        folds = arrays["folds"].astype(np.int64)
        if folds.shape != (n,) or arrays.get("fold_pit", np.empty(0)).shape != arrays["pit"].shape or folds.min() < 0:
            raise ValueError("a cross-conformal record needs 'folds' (n,) and 'fold_pit' shaped like 'pit'.")
        return CrossCalibration(*args, folds, arrays["fold_pit"])


def calibrate(dist: Mixture, y: ArrayLike | Tensor) -> Calibration:
    """Score ``n`` calibration rows: their predicted distributions ``dist`` (batch ``(n,)``) and
    observed targets ``y`` (``(n,)`` or ``(n, D)``), not used to fit the model.

    Raises:
        ValueError: ``y`` of the wrong shape, NaN or infinite targets, or fewer than 2 rows.
    """
    dist, y = _as_targets(dist, y)
    if len(y) < 2:
        raise ValueError(f"calibration needs at least 2 rows, got {len(y)} (a 90 % set needs "
                         f"{min_calibration_rows(0.9)}, a 95 % one {min_calibration_rows(0.95)}).")
    pit = pit_scores(dist, y).T.sort(-1).values.numpy()  # [D, n]
    density = density_scores(dist, y).sort().values.numpy()
    if dist.event_shape[0] != 1:
        return Calibration(len(y), pit, density)
    knots, values = recalibration_map(dist.cdf(y).numpy())
    return Calibration(len(y), pit, density, hpd_scores(dist, y).sort().values.numpy(), knots, values)


# ---------------------------------------------------------------------- CV+ (cross-conformal)
def cv_plus_guarantee(n: int, n_folds: int, coverage: float) -> float:
    """The least marginal coverage of ``K``-fold CV+ at nominal ``1 - α`` on ``n`` rows:
    ``1 - 2α - min(2(1 - 1/K) / (n/K + 1), (1 - K/n) / (K + 1))`` (Barber et al. 2021, Theorem 4)."""
    alpha = 1.0 - _check_coverage(coverage)
    slack = min(2 * (1 - 1 / n_folds) / (n / n_folds + 1), (1 - n_folds / n) / (n_folds + 1))
    return max(0.0, 1.0 - 2 * alpha - slack)


def cv_plus_interval(fold_dists: Sequence[Mixture], fold_scores: Sequence[ArrayLike], coverage: float) -> Tensor:
    """CV+ central intervals of ``n`` new rows from ``K`` fold models, ``[n, 2, D]``.

    Each calibration row ``i`` of fold ``k(i)`` gives, at a new ``x``, the ends
    ``F_k(i)⁻¹(½ ∓ s_i | x)`` of the fold model that did not see it, ``s_i`` its
    :func:`pit_scores`. The interval runs from the ``⌊α(N + 1)⌋``-th smallest lower end to the
    ``⌈(1 - α)(N + 1)⌉``-th smallest upper end over all ``N`` rows (infinite where that rank
    falls outside ``1..N``), each target column on its own.

    Args:
        fold_dists: ``K`` mixtures with batch shape ``(n,)``: fold model ``k`` at the new rows.
        fold_scores: ``K`` arrays ``(D, n_k)``: PIT scores of fold ``k``'s rows under model ``k``.
        coverage: ``1 - α``.
    """
    coverage = _check_coverage(coverage)
    scores = [torch.as_tensor(np.asarray(s, dtype=np.float64)).sort(-1).values for s in fold_scores]
    total = sum(s.shape[-1] for s in scores)
    low_rank = math.floor((1 - coverage) * (total + 1) + _RANK_TOLERANCE)
    high_rank = conformal_rank(total, coverage)
    columns = []
    for j in range(fold_dists[0].event_shape[0]):
        marginals = [_marginals(d.to("cpu", torch.float64))[j] for d in fold_dists]
        column = [s[j] for s in scores]
        columns.append(torch.stack([_cv_plus_end(marginals, column, low_rank, upper=False),
                                    _cv_plus_end(marginals, column, high_rank, upper=True)], -1))
    return torch.stack(columns, -1)


def _cv_plus_end(marginals: list[Mixture], scores: list[Tensor], rank: int, upper: bool) -> Tensor:
    """The ``rank``-th smallest of every calibration row's lower (or upper) end, ``[n]``.

    The ends are ``F_k⁻¹(½ ∓ s)``: rather than invert ``N`` cdfs per new row, bisect on ``y``
    for the least value with ``rank`` ends at or below it; that count needs each fold's cdf
    once per step (``#{s : ½ - s <= F_k(y)}`` below, ``#{s : ½ + s <= F_k(y)}`` above).
    """
    n = marginals[0].batch_shape[0]
    total = sum(len(s) for s in scores)
    if rank < 1 or rank > total:
        return torch.full((n,), -math.inf if rank < 1 else math.inf, dtype=torch.float64)
    sign = 1.0 if upper else -1.0
    # Every end lies between the folds' ends at their smallest and largest scores.
    extremes = torch.stack([0.5 + sign * torch.stack([s[0], s[-1]]) for s in scores]).clamp(1e-15, 1 - 1e-15)
    ends = torch.stack([d.icdf(e[:, None].expand(2, n))[..., 0] for d, e in zip(marginals, extremes)])  # [K, 2, n]
    low, high = ends.amin((0, 1)), ends.amax((0, 1))

    def count(y: Tensor) -> Tensor:
        found = torch.zeros(n, dtype=torch.int64)
        for dist, s in zip(marginals, scores):
            u = dist.cdf(y[:, None]) - 0.5  # [n]
            found += torch.searchsorted(s, u, right=True) if upper else len(s) - torch.searchsorted(s, -u)
        return found

    for _ in range(_BISECTIONS):
        middle = 0.5 * (low + high)
        enough = count(middle) >= rank
        high, low = torch.where(enough, middle, high), torch.where(enough, low, middle)
    return high


@dataclass(frozen=True)
class CrossCalibration(Calibration):
    """A ``K``-fold cross-conformal calibration (:func:`cross_calibrate`): every row scored
    out of fold. The fold models themselves live with the estimator that made them.

    Attributes (besides :class:`Calibration`'s, all out of fold):
        folds: ``(n,)`` the fold of each calibration row.
        fold_pit: ``(D, n)`` PIT scores in row order (``pit`` holds them sorted).
    """

    folds: np.ndarray | None = None
    fold_pit: np.ndarray | None = None

    @property
    def n_folds(self) -> int:
        return int(self.folds.max()) + 1

    def scores_by_fold(self) -> list[np.ndarray]:
        """``K`` arrays ``(D, n_k)``: each fold's PIT scores, for :func:`cv_plus_interval`."""
        return [self.fold_pit[:, self.folds == k] for k in range(self.n_folds)]

    def interval(self, dist: Mixture, coverage: float, fold_dists: Sequence[Mixture] | None = None) -> Tensor:
        """CV+ intervals ``[n, 2, D]``; ``fold_dists``: each fold model at the new rows."""
        if fold_dists is None or len(fold_dists) != self.n_folds:
            raise ValueError(f"a CV+ calibration needs its {self.n_folds} fold models' distributions at the new rows.")
        if math.floor((1 - coverage) * (self.n_cal + 1) + _RANK_TOLERANCE) < 1:
            self.threshold(self.pit, coverage)  # the same warning: too few rows for a bounded set
        return cv_plus_interval(fold_dists, self.scores_by_fold(), coverage)

    def hdi(self, dist: Mixture, coverage: float) -> HighestDensityIntervals:
        raise ValueError("a cross-conformal (CV+) calibration gives central intervals only; for highest-density "
                         "sets calibrate on held-out rows: calibrate(X_cal, y_cal).")

    def region(self, dist: Mixture, coverage: float, score: RegionScore = "density") -> DensityRegion:
        return self.hdi(dist, coverage)  # type: ignore[return-value]

    def to_tensors(self) -> dict[str, Tensor]:
        tensors = super().to_tensors()
        tensors["folds"] = torch.from_numpy(np.asarray(self.folds, dtype=np.float64))
        tensors["fold_pit"] = torch.from_numpy(np.asarray(self.fold_pit, dtype=np.float64))
        return tensors


def cross_calibrate(fold_dists: Sequence[Mixture], fold_targets: Sequence[ArrayLike | Tensor],
                    fold_rows: Sequence[ArrayLike]) -> CrossCalibration:
    """Score every row out of fold, for CV+.

    Args:
        fold_dists: ``K`` mixtures: fold model ``k`` at its own held-out rows (batch ``(n_k,)``).
        fold_targets: ``K`` arrays ``(n_k,)`` or ``(n_k, D)``: those rows' targets.
        fold_rows: ``K`` integer arrays: where those rows sit among the ``n`` calibration rows.
    """
    n = sum(len(r) for r in fold_rows)
    folds = np.full(n, -1)
    fold_pit, density, cdf = None, np.empty(n), np.empty(n)
    for k, (dist, y, rows) in enumerate(zip(fold_dists, fold_targets, fold_rows)):
        dist, y = _as_targets(dist, y)
        rows = np.asarray(rows)
        folds[rows] = k
        scores = pit_scores(dist, y).T.numpy()  # [D, n_k]
        fold_pit = np.empty((scores.shape[0], n)) if fold_pit is None else fold_pit
        fold_pit[:, rows] = scores
        density[rows] = density_scores(dist, y).numpy()
        if dist.event_shape[0] == 1:
            cdf[rows] = dist.cdf(y).numpy()
    if (folds < 0).any() or n < 2:
        raise ValueError(f"the folds must cover rows 0..{n - 1} once each, with at least 2 rows.")
    one_d = fold_pit.shape[0] == 1
    knots, values = recalibration_map(cdf) if one_d else (None, None)
    return CrossCalibration(n, np.sort(fold_pit, -1), np.sort(density), None, knots, values, folds, fold_pit)


# ---------------------------------------------------------------------- diagnostics
class CoverageByBin(NamedTuple):
    """Empirical coverage within bins of a per-row quantity (conditional coverage, roughly).

    Attributes:
        edges: ``(B + 1,)`` bin edges (quantiles of the quantity: bins of about equal counts).
        count: ``(B,)`` rows per bin.
        coverage: ``(B,)`` share of covered rows per bin (NaN for an empty bin).
        lower, upper: ``(B,)`` 95 % Wilson interval of each bin's coverage.
    """

    edges: np.ndarray
    count: np.ndarray
    coverage: np.ndarray
    lower: np.ndarray
    upper: np.ndarray


def coverage_by_bin(covered: ArrayLike, by: ArrayLike, n_bins: int = 5) -> CoverageByBin:
    """Coverage of a set within bins of ``by``: the predicted spread, a feature, the fitted mean.

    Marginal coverage can hide bins far below the nominal level and others above it; a good
    model keeps every bin's interval around the nominal coverage.

    Args:
        covered: ``(n,)`` booleans: whether each row's target lay in its set.
        by: ``(n,)`` the quantity to bin by.
        n_bins: Number of quantile bins.

    Example:
        >>> table = coverage_by_bin([True, True, False, True], [0.1, 0.2, 0.9, 1.0], n_bins=2)
        >>> table.count.tolist(), table.coverage.tolist()
        ([2, 2], [1.0, 0.5])
    """
    covered = np.asarray(covered, dtype=bool).ravel()
    by = np.asarray(by, dtype=np.float64).ravel()
    if covered.shape != by.shape or not len(by) or not np.isfinite(by).all():
        raise ValueError(f"covered and by must be finite and of one length, got {covered.shape} and {by.shape}.")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}.")
    edges = np.quantile(by, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, by, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    hits = np.bincount(which, weights=covered, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = hits / count
        z = 1.959963984540054
        centre = (share + z**2 / (2 * count)) / (1 + z**2 / count)
        half = z * np.sqrt(share * (1 - share) / count + z**2 / (4 * count**2)) / (1 + z**2 / count)
    return CoverageByBin(edges, count, share, centre - half, centre + half)
