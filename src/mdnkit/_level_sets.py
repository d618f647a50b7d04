"""Level sets ``{y : p(y | x) >= t}`` and highest-density sets of batched 1-D mixtures of any family.

The log-density is tabulated on a grid that resolves every component (65 points over the ±8
spreads of each) and holds its local maxima and minima, each crossing of the level polished by
bisection; the highest-density set of a given mass bisects on the level. Used by
:meth:`mdnkit.mixture.Mixture.highest_density_intervals` and by the conformal sets of
:mod:`mdnkit.conformal`. Hand-written because no library finds the level sets of batched
non-Gaussian mixtures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from mdnkit._univariate import HighestDensityIntervals, _lowest_between, _uphill_points, golden_maximum

if TYPE_CHECKING:
    from mdnkit.mixture import Mixture

_GRID = torch.linspace(-8.0, 8.0, 65, dtype=torch.float64)  # per component, in its spreads; odd: holds 0


def _check_coverage(coverage: float) -> float:
    if isinstance(coverage, bool) or not isinstance(coverage, (int, float, np.floating)) or not 0 < coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
    return float(coverage)


def _widened_ends(dist: Mixture, log_level: Tensor, lower: Tensor, upper: Tensor) -> tuple[Tensor, Tensor]:
    """Move ``lower`` and ``upper`` ``[n]`` outwards until the density there is below the level."""
    width = (upper - lower).clamp_min(1e-300)
    for _ in range(1100):  # doubling from any width reaches the float64 range by then
        low = dist.log_prob(lower.unsqueeze(-1)) >= log_level
        high = dist.log_prob(upper.unsqueeze(-1)) >= log_level
        if not bool((low | high).any()):
            break
        lower, upper = torch.where(low, lower - width, lower), torch.where(high, upper + width, upper)
        width = 2 * width
    return lower, upper


def _extrema(dist: Mixture) -> Tensor:
    """Each row's local maxima and the minima between neighbouring ones, ``[n, E]`` (repeats
    where a row has fewer), for a 1-D density on the line; for families other than the Gaussian,
    candidates for them (a minimum between two points that are not both peaks may be an end)."""
    if dist.family == "gaussian":  # its mean-shift modes and golden-section dips, as its own solver's grid
        log_weights, loc, scale = dist._univariate_parts("level_set")
        weights = log_weights.exp()
        peaks = _uphill_points(weights, loc, scale).sort(-1).values
        return torch.cat([peaks, _lowest_between(peaks[:, :-1], peaks[:, 1:], weights, loc, scale)], -1)
    # The grid's modes, and each component's centre besides: a peak at a kink (a Laplace
    # component's) can escape the modes' grid search.
    modes = dist.modes()
    centre = dist._bracket()[0]  # [n, K]
    peaks = torch.cat([torch.where(modes.mask, modes.value[..., 0], centre[:, :1]), centre], -1).sort(-1).values
    dips = golden_maximum(lambda points: -dist.log_prob(points.T.unsqueeze(-1)).T, peaks[:, :-1], peaks[:, 1:], 50)
    return torch.cat([peaks, dips], -1)


def _refine(dist: Mixture, log_level: Tensor, a: Tensor, b: Tensor, rising: bool) -> Tensor:
    """Bisection for ``log p = level`` in cells ``[a, b]`` ``[n, C]`` where it crosses once."""
    for _ in range(44):  # cells are below a third of a spread wide: 2^-44 of that is 1e-14 spreads
        middle = 0.5 * (a + b)
        above = dist.log_prob(middle.T.unsqueeze(-1)).T >= log_level.unsqueeze(-1)  # [n, C]
        if rising:
            a, b = torch.where(above, a, middle), torch.where(above, middle, b)
        else:
            a, b = torch.where(above, middle, a), torch.where(above, b, middle)
    return 0.5 * (a + b)


def level_set(dist: Mixture, log_level: ArrayLike | Tensor, extrema: Tensor | None = None) -> HighestDensityIntervals:
    """The set ``{y : log p(y | x) >= log_level}`` of each row of a 1-D mixture, as intervals.

    The log-density is tabulated on a grid that resolves every component (65 points over the
    ±8 spreads of each, widened until the density at both ends is below the level) and holds
    every local maximum and the minimum between each two (on the line; ``modes()`` for families
    other than the Gaussian), so each cell holds at most one crossing; each crossing of the
    level is then polished by bisection. Any family with a ``log_prob`` works. On the circle
    (von Mises) the grid has no extrema: a peak narrower than a quarter of its component's
    spread that rises above the level only between two grid points is missed there, which
    needs a level within a hair of that peak's top.

    Args:
        dist: Batch shape ``(n,)``, event shape ``(1,)``.
        log_level: ``[n]`` or a scalar; ``-inf`` gives the whole line.
        extrema: The density's local maxima and minima, ``[n, E]``, when already known (they do
            not depend on the level, and a bisection on it asks 50 times); ``None``: found here.

    Returns:
        :class:`~mdnkit.distributions.HighestDensityIntervals`: ``bounds [n, M, 2]`` sorted,
        NaN in padding, ``mask [n, M]``, ``level [n]`` (the density, not its log), with ``M`` the
        largest number of intervals of any row (at least 1).
    """
    dist._require_1d("level_set")
    dist = dist.to("cpu", torch.float64)
    n = dist.batch_shape[0]
    log_level = torch.as_tensor(log_level, dtype=torch.float64).expand(n).clone()
    whole = log_level == -math.inf
    log_level = torch.where(whole, 0.0, log_level)  # any finite stand-in; those rows are overwritten
    centre, spread = dist._bracket()  # [n, K]
    grid = (centre.unsqueeze(-1) + spread.unsqueeze(-1) * _GRID).flatten(-2)  # [n, G]
    period = dist._period
    if period is None:
        # Every local maximum and minimum on the grid too, so the density is monotone between
        # neighbouring grid points: a bump just above the level (or a dip just below it) can no
        # longer hide between two of them (it did: hpd_scores off by 0.04 on 3 components).
        grid = torch.cat([grid, _extrema(dist) if extrema is None else extrema], -1).sort(-1).values
        lower, upper = _widened_ends(dist, log_level, grid[:, 0] - spread.amax(-1), grid[:, -1] + spread.amax(-1))
        grid = torch.cat([lower[:, None], grid, upper[:, None]], -1)
    else:  # one turn of the circle, [-π, π]; a set through ±π is two intervals, one at each end
        ends = torch.tensor([-period / 2, period / 2], dtype=torch.float64).expand(n, 2)
        grid = torch.cat([ends, torch.remainder(grid + period / 2, period) - period / 2], -1).sort(-1).values
        grid = torch.cat([grid[:, :1], grid, grid[:, -1:]], -1)  # zero-width end cells: a crossing there is the end
    above = dist.log_prob(grid.T.unsqueeze(-1)).T >= log_level.unsqueeze(-1)  # [n, G]
    if period is not None:
        above[:, 0] = above[:, -1] = False
    starts, stops = ~above[:, :-1] & above[:, 1:], above[:, :-1] & ~above[:, 1:]  # [n, G-1] cells
    slots = max(1, int(starts.sum(-1).max()) if n else 1)

    def crossings(cells: Tensor, rising: bool) -> Tensor:
        index = (~cells).to(torch.int8).argsort(dim=-1, stable=True)[:, :slots]  # the crossing cells first
        return _refine(dist, log_level, grid.gather(-1, index), grid.gather(-1, index + 1), rising)

    found = starts.sum(-1, keepdim=True) > torch.arange(slots)  # [n, M]
    bounds = torch.stack([crossings(starts, True), crossings(stops, False)], -1)
    bounds = bounds.masked_fill(~found.unsqueeze(-1), math.nan)
    bounds[whole] = torch.tensor([-math.inf, math.inf], dtype=torch.float64).expand(slots, 2).masked_fill(
        torch.arange(slots)[:, None] > 0, math.nan)
    found[whole] = torch.arange(slots) == 0
    return HighestDensityIntervals(bounds, found, torch.where(whole, 0.0, log_level.exp()))


def _mass(dist: Mixture, region: HighestDensityIntervals) -> Tensor:
    """``Σ_i F(b_i) - F(a_i)`` over each row's intervals, ``[n]``."""
    lower, upper = region.bounds.nan_to_num(0.0).unbind(-1)  # [n, M]
    cdf = dist.cdf(torch.stack([lower, upper]).transpose(-1, -2).unsqueeze(-1))  # [2, M, n]
    return torch.where(region.mask.T, cdf[1] - cdf[0], 0.0).sum(0)


def hpd_region(dist: Mixture, mass: ArrayLike | Tensor) -> HighestDensityIntervals:
    """The highest-density set of probability ``mass`` (``[n]`` or a scalar) of each row, 1-D.

    The set of ``y`` with :func:`hpd_scores` at most ``mass``; ``mass >= 1`` gives the whole line.
    Gaussian mixtures use their own solver (:meth:`~mdnkit.GaussianMixture.highest_density_intervals`);
    other families bisect on the level (:func:`level_set`, 50 steps).
    """
    dist._require_1d("hpd_region")
    dist = dist.to("cpu", torch.float64)
    n = dist.batch_shape[0]
    mass = torch.as_tensor(mass, dtype=torch.float64).expand(n)
    whole = mass >= 1
    inner = mass.clamp(1e-12, 1 - 1e-12)
    if dist.family == "gaussian" and bool((inner == inner[0]).all()):
        region = dist.highest_density_intervals(float(inner[0]))
        if not bool(whole.any()):
            return region
        log_level = region.level.log()
    else:  # bisect on log p: the mass above a level falls as the level rises
        peak = dist.log_prob(dist.component_mean.transpose(0, 1)).amax(0)  # [K, n] -> [n]: near the top
        low, high = peak - 80.0, peak + 1.0
        extrema = None if dist._period is not None else _extrema(dist)
        for _ in range(50):
            middle = 0.5 * (low + high)
            too_low = _mass(dist, level_set(dist, middle, extrema)) > inner
            low, high = torch.where(too_low, middle, low), torch.where(too_low, high, middle)
        log_level = 0.5 * (low + high)
        return level_set(dist, torch.where(whole, -math.inf, log_level), extrema)
    return level_set(dist, torch.where(whole, -math.inf, log_level))
