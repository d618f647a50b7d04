"""Every mode of batched 1-D mixtures of any family, by tabulating and polishing the density.

Families without the Gaussian's fixed-point map (:mod:`mdnkit._modes`) still have a
``log_prob`` and, per component, a centre and a spread (``Mixture._bracket``). Their density is
tabulated on a grid that resolves every component (65 points over ``±8`` spreads of each, as
:func:`mdnkit._level_sets.level_set` does); each grid point above both neighbours brackets a
local maximum, which golden-section search then locates to float64 precision. Where a family
has corners (``Mixture._kinks``: a Laplace component's location) each corner is a candidate
too, since the grid can step over a peak there. On the circle (von Mises) the grid is wrapped
into one period and its ends are neighbours. A smooth peak narrower than the grid's spacing (a
quarter of its component's spread) between two grid points can be missed. Hand-written
because no library finds every mode of batched non-Gaussian mixtures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mdnkit._modes import Modes
from mdnkit._univariate import _GOLDEN, golden_maximum

if TYPE_CHECKING:
    from mdnkit.mixture import Mixture

_GRID = torch.linspace(-8.0, 8.0, 65, dtype=torch.float64)  # per component, in its spreads
_STEP = 0.25
_GOLDEN_STEPS = 90  # 0.618^90 of a grid cell: below a float64 ulp of the mode
_ROWS = 512  # rows per pass: the grid holds rows x 65 K points


def grid_modes(dist: Mixture, period: float | None = None) -> Modes:
    """Local maxima of each row's density, sorted by density: ``Modes(value [*B, M, 1],
    log_prob [*B, M], mask [*B, M])``, ``M`` the most any row has, padded with NaN / -inf.

    Args:
        dist: A 1-D mixture (event shape ``(1,)``) of any family.
        period: The circle's length for angles (``2π``: modes are wrapped into ``[-π, π)``).
    """
    dist._require_1d("modes")
    exact = dist.to("cpu", torch.float64)
    batch_shape = exact.batch_shape
    flat = exact if len(batch_shape) == 1 else _flatten(exact)
    n = flat.batch_shape[0]
    found = [_modes_of_rows(flat.rows(slice(a, a + _ROWS)), period) for a in range(0, n, _ROWS)] or [
        (torch.empty(0, 1, dtype=torch.float64), torch.empty(0, 1, dtype=torch.float64))]
    width = max(v.shape[-1] for v, _ in found)
    value = torch.cat([torch.nn.functional.pad(v, (0, width - v.shape[-1]), value=math.nan) for v, _ in found])
    log_prob = torch.cat([torch.nn.functional.pad(p, (0, width - p.shape[-1]), value=-math.inf) for _, p in found])
    mask = torch.isfinite(log_prob)
    return Modes(value.reshape(*batch_shape, width, 1).to(dist.logits.dtype),
                 log_prob.reshape(*batch_shape, width).to(dist.logits.dtype), mask.reshape(*batch_shape, width))


def _flatten(dist: Mixture) -> Mixture:
    """A batch of any shape as one row axis."""
    return dist._map(lambda t, n_batch: t.reshape(-1, *t.shape[n_batch:]))


def _modes_of_rows(dist: Mixture, period: float | None) -> tuple[Tensor, Tensor]:
    """``(value [n, M], log_prob [n, M])`` of rows ``dist`` (batch ``(n,)``), sorted, padded."""
    centre, spread = dist._bracket()  # [n, K]
    # Each component's grid shifted by its own fraction of a step (golden-ratio multiples), so
    # that components with the same centre do not put two points in one place (a false peak).
    shift = torch.remainder(torch.arange(centre.shape[-1], dtype=torch.float64) * _GOLDEN, 1.0) * _STEP
    grid = (centre.unsqueeze(-1) + spread.unsqueeze(-1) * (_GRID + shift.unsqueeze(-1))).flatten(-2)  # [n, G]
    if period is not None:
        grid = torch.remainder(grid + period / 2, period) - period / 2
    grid = grid.sort(-1).values
    log_p = _log_prob(dist, grid)
    if period is not None:  # the circle: the first point's left neighbour is the last one
        left = torch.cat([grid[:, -1:] - period, grid[:, :-1]], -1)
        right = torch.cat([grid[:, 1:], grid[:, :1] + period], -1)
        left_p, right_p = log_p.roll(1, -1), log_p.roll(-1, -1)
    else:
        left, right = grid[:, :-2], grid[:, 2:]
        left_p, right_p = log_p[:, :-2], log_p[:, 2:]
        grid, log_p = grid[:, 1:-1], log_p[:, 1:-1]
    peak = (log_p > left_p) & (log_p >= right_p) & torch.isfinite(log_p)  # [n, C]
    slots = max(1, int(peak.sum(-1).max()) if len(grid) else 1)
    order = (~peak).to(torch.int8).argsort(dim=-1, stable=True)[:, :slots]  # the peaks first
    a, b = left.gather(-1, order), right.gather(-1, order)
    value = _golden_section(dist, a, b)
    candidate = peak.gather(-1, order)
    if period is not None:
        value = torch.remainder(value + period / 2, period) - period / 2
    kinks = dist._kinks()
    if kinks is not None:  # a peak at a corner: checked as it is, once, unless the grid found it already
        kinks = kinks.sort(-1).values
        close = 1e-9 * spread.amin(-1, keepdim=True)
        found = torch.where(candidate, value, math.nan)
        again = ((kinks.unsqueeze(-1) - found.unsqueeze(-2)).abs() <= close.unsqueeze(-1)).any(-1)
        again[:, 1:] |= kinks[:, 1:] - kinks[:, :-1] <= close  # two components at one location
        value, candidate = torch.cat([value, kinks], -1), torch.cat([candidate, ~again], -1)
    # A polished point is a maximum only if it beats both sides (a bracket on a slope ends at its edge).
    # At a maximum the sides fall by O(nudge²), within rounding; on a slope by O(nudge), far more.
    nudge = 1e-6 * spread.amin(-1, keepdim=True)
    here = _log_prob(dist, value)
    slack = 1e-11 * (1.0 + here.abs())
    if kinks is not None:  # at a corner both sides fall by O(nudge): no slack, or a corner on a slope would pass
        slack[:, -kinks.shape[-1]:] = 0.0
    is_peak = (here + slack >= _log_prob(dist, value - nudge)) & (here + slack >= _log_prob(dist, value + nudge))
    density = torch.where(candidate & is_peak, here, -math.inf)
    density, rank = density.sort(-1, descending=True)
    value = torch.where(torch.isfinite(density), value.gather(-1, rank), math.nan)
    width = max(1, int(torch.isfinite(density).sum(-1).max()) if len(density) else 1)  # as many as a row has
    return value[:, :width], density[:, :width]


def _log_prob(dist: Mixture, points: Tensor) -> Tensor:
    """``log p`` of each row at its own points ``[n, P] -> [n, P]``."""
    return dist.log_prob(points.T.unsqueeze(-1)).T


def _golden_section(dist: Mixture, a: Tensor, b: Tensor) -> Tensor:
    """The maximum of ``log p`` in each bracket ``[a, b]`` ``[n, C]`` that holds one."""
    return golden_maximum(lambda points: _log_prob(dist, points), a, b, _GOLDEN_STEPS)
