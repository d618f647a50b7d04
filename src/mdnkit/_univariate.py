"""Root finding for 1-D mixtures: quantiles (any family) and highest-density intervals (Gaussian).

Both are vectorised over the whole batch (no Python loop over rows) and run in float64. Hand-
written because torch has no batched root finder and SciPy's would loop over rows on the CPU.
Parameters arrive as ``(log_weights, loc, scale)``, each of shape ``[*B, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def broadcast_shapes(*shapes: Sequence[int]) -> torch.Size:
    """``torch.broadcast_shapes``, without its first call's import of sympy (0.7 s, torch 2.13,
    through ``torch.fx.experimental.symbolic_shapes``): a process's first quantile paid for it.
    Raises ``RuntimeError``, as torch's does, when the shapes do not broadcast."""
    result = [1] * max((len(shape) for shape in shapes), default=0)
    for shape in shapes:
        for axis, size in enumerate(shape, start=len(result) - len(shape)):
            if size != 1:
                if result[axis] not in (1, size):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                result[axis] = size
    return torch.Size(result)


class HighestDensityIntervals(NamedTuple):
    """The region ``{y : p(y) >= level}`` of a batch of 1-D densities, as disjoint intervals.

    Attributes:
        bounds: ``[*B, K, 2]`` (lower, upper) sorted by lower bound, NaN in padding.
        mask: ``[*B, K]`` True where the slot holds an interval.
        level: ``[*B]`` the density threshold.
    """

    bounds: Tensor
    mask: Tensor
    level: Tensor


def _mixture_terms(x: Tensor, weights: Tensor, loc: Tensor, scale: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mixture cdf, pdf and pdf' at ``x [*S, *B]`` for parameters ``[*B, K]``; each ``[*S, *B]``."""
    z = (x.unsqueeze(-1) - loc) / scale
    cdf = (weights * torch.special.ndtr(z)).sum(-1)
    return (cdf, *_density_and_slope(z, weights, scale))


def _mixture_density_and_slope(x: Tensor, weights: Tensor, loc: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """Mixture pdf and pdf' at ``x``, as :func:`_mixture_terms` without the cdf: the Newton steps
    on a density's crossings need no cdf, the costliest of the three (``ndtr``)."""
    return _density_and_slope((x.unsqueeze(-1) - loc) / scale, weights, scale)


def _density_and_slope(z: Tensor, weights: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    component_pdf = weights * torch.exp(-0.5 * z.square()) / (scale * _SQRT_2PI)
    return component_pdf.sum(-1), (-z / scale * component_pdf).sum(-1)


def _solve_bracketed(
    residual_and_slope: Callable[[Tensor], tuple[Tensor, Tensor]],
    lower: Tensor,
    upper: Tensor,
    x_scale: Tensor,
    max_iter: int = 200,
    tol: float = 1e-13,
) -> Tensor:
    """Vectorised safeguarded Newton: a root of an increasing function inside [lower, upper].

    ``residual_and_slope(x)`` returns ``(f(x), f'(x))`` with ``f(lower) <= 0 <= f(upper)``.
    A Newton step is taken when it lands inside the current bracket, otherwise a bisection.
    Converged when steps fall below ``tol * (x_scale + |x|)``: relative to the problem's own
    scale, so targets in tiny units are solved as accurately as any others.
    """
    x = 0.5 * (lower + upper)
    for _ in range(max_iter):
        x_next, lower, upper = _safeguarded_step(x, *residual_and_slope(x), lower, upper)
        converged = (x_next - x).abs() <= tol * (x_scale + x.abs())
        x = x_next
        if bool(converged.all()):
            break
    return x


def _safeguarded_step(x: Tensor, residual: Tensor, slope: Tensor, lower: Tensor, upper: Tensor
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """One step of the bracketed root finders: the bracket shrunk to ``x`` on the side its residual
    is, then the Newton step if it lands inside, else the bracket's midpoint; ``(x_next, lower, upper)``."""
    below = residual < 0
    lower = torch.where(below, x, lower)
    upper = torch.where(below, upper, x)
    newton = x - residual / slope
    inside = (newton > lower) & (newton < upper)
    return torch.where(inside, newton, 0.5 * (lower + upper)), lower, upper


def _solve_bracketed_elementwise(
    residual_and_slope: Callable[..., tuple[Tensor, Tensor]],
    lower: Tensor,
    upper: Tensor,
    x_scale: Tensor,
    params: Sequence[Tensor],
    max_iter: int = 200,
    tol: float = 1e-13,
) -> Tensor:
    """:func:`_solve_bracketed` for roots that are each their own problem: converged elements drop
    out, so that a few slow ones no longer keep every element iterating.

    ``residual_and_slope(x [E], *params [E, n])`` works on any subset of the flattened elements;
    each of ``params`` broadcasts to ``(*lower.shape, n)`` (``n``: the components ``K``, or 1).
    Most roots converge in about 7 steps, the slowest of 9000 (a highest-density region's
    crossings) in 45, and every element used to take all 45.
    """
    shape = broadcast_shapes(lower.shape, upper.shape)
    lower, upper = lower.expand(shape).reshape(-1), upper.expand(shape).reshape(-1)
    x_scale = x_scale.expand(shape).reshape(-1)
    params = [p.expand(*shape, p.shape[-1]).reshape(-1, p.shape[-1]) for p in params]
    x = 0.5 * (lower + upper)
    solved = x.clone()
    index = torch.arange(len(x), device=x.device)
    done = torch.zeros_like(x, dtype=torch.bool)
    for _ in range(max_iter):
        x_next, lower, upper = _safeguarded_step(x, *residual_and_slope(x, *params), lower, upper)
        newly = ((x_next - x).abs() <= tol * (x_scale + x.abs())) & ~done
        x = x_next
        solved[index[newly]] = x[newly]
        done |= newly
        n_done = int(done.sum())
        if n_done == len(x):
            return solved.view(shape)
        if 2 * n_done >= len(x):  # copying the rest costs about a step: only when it halves the work
            going = ~done
            index, x, lower, upper, x_scale = index[going], x[going], lower[going], upper[going], x_scale[going]
            params, done = [p[going] for p in params], done[going]
    solved[index[~done]] = x[~done]
    return solved.view(shape)


def mixture_quantile(log_weights: Tensor, loc: Tensor, scale: Tensor, q: Tensor | float) -> Tensor:
    """Quantiles ``F⁻¹(q)`` of 1-D mixtures.

    The root lies between the smallest and largest component quantile (each component's cdf is
    below ``q`` at the former, above it at the latter), which gives a bracket for every row.

    Args:
        log_weights, loc, scale: ``[*B, K]``.
        q: Probabilities broadcastable to ``[*S, *B]``; 0 and 1 give -inf and +inf.

    Returns:
        ``[*S, *B]`` in the dtype of ``loc``.
    """
    out_dtype = loc.dtype
    q = torch.as_tensor(q, dtype=torch.float64, device=loc.device)
    if torch.isnan(q).any() or (q < 0).any() or (q > 1).any():
        raise ValueError("Quantile probabilities must lie in [0, 1].")
    weights, loc, scale = log_weights.double().exp(), loc.double(), scale.double()
    batch_shape = loc.shape[:-1]
    q = q.expand(broadcast_shapes(q.shape, batch_shape))
    inner = q.clamp(1e-300, 1 - 1e-16)
    component_quantiles = loc + scale * torch.special.ndtri(inner).unsqueeze(-1)  # [*S, *B, K]
    lower = component_quantiles.amin(-1)
    upper = component_quantiles.amax(-1)

    def residual_and_slope(x: Tensor, weights: Tensor, loc: Tensor, scale: Tensor, inner: Tensor) -> tuple[Tensor, Tensor]:
        cdf, pdf, _ = _mixture_terms(x, weights, loc, scale)
        return cdf - inner[:, 0], pdf

    x = _solve_bracketed_elementwise(residual_and_slope, lower, upper, scale.amin(-1),
                                     (weights, loc, scale, inner.unsqueeze(-1)))
    x = torch.where(q == 0, -math.inf, torch.where(q == 1, math.inf, x))
    return x.to(out_dtype)


def quantile_by_bracketing(
    cdf_and_pdf: Callable[[Tensor], tuple[Tensor, Tensor]],
    lower: Tensor,
    upper: Tensor,
    x_scale: Tensor,
    q: Tensor | float,
) -> Tensor:
    """Quantiles ``F⁻¹(q)`` of any 1-D density from its cdf and pdf, for families with no
    closed-form component quantiles.

    The starting bracket ``[lower, upper]`` (``[*B]``) is widened, doubling its width on the
    side that does not yet hold the root (heavy tails need many widths), then the root is
    polished by :func:`_solve_bracketed`.

    Args:
        cdf_and_pdf: ``x [*S, *B] -> (F(x), p(x))``, both ``[*S, *B]``, float64.
        lower, upper: A first guess of the bracket, ``[*B]``.
        x_scale: The problem's scale for the convergence test, ``[*B]``.
        q: Probabilities broadcastable to ``[*S, *B]``; 0 and 1 give -inf and +inf.
    """
    q = torch.as_tensor(q, dtype=torch.float64, device=lower.device)
    if torch.isnan(q).any() or (q < 0).any() or (q > 1).any():
        raise ValueError("Quantile probabilities must lie in [0, 1].")
    q = q.expand(broadcast_shapes(q.shape, lower.shape))
    inner = q.clamp(1e-300, 1 - 1e-16)
    width = (upper - lower).clamp_min(1e-300).expand_as(inner)
    lower, upper = lower.double().expand_as(inner), upper.double().expand_as(inner)
    for _ in range(1100):  # doubling from any width reaches the float64 range by then
        low_cdf, _ = cdf_and_pdf(lower)
        high_cdf, _ = cdf_and_pdf(upper)
        widen_low, widen_high = low_cdf > inner, high_cdf < inner
        if not bool((widen_low | widen_high).any()):
            break
        lower = torch.where(widen_low, lower - width, lower)
        upper = torch.where(widen_high, upper + width, upper)
        width = 2 * width

    def residual_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
        cdf, pdf = cdf_and_pdf(x)
        return cdf - inner, pdf

    x = _solve_bracketed(residual_and_slope, lower, upper, x_scale.double())
    return torch.where(q == 0, -math.inf, torch.where(q == 1, math.inf, x))


def _uphill_points(weights: Tensor, loc: Tensor, scale: Tensor, n_iter: int = 60) -> Tensor:
    """Fixed-point (mean-shift) iteration from every component mean towards a local maximum.

    ``x <- Σ_k r_k(x) μ_k / σ_k² / Σ_k r_k(x) / σ_k²`` with ``r_k ∝ π_k N(x; μ_k, σ_k)`` climbs the
    density monotonically (Carreira-Perpiñán, 2000); ``[*B, K]`` starts give ``[*B, K]`` points.
    """
    x = loc.clone()
    log_weights = weights.log().unsqueeze(-2)  # [*B, 1, K]
    precision = scale.square().reciprocal().unsqueeze(-2)
    for _ in range(n_iter):
        z = (x.unsqueeze(-1) - loc.unsqueeze(-2)) * scale.reciprocal().unsqueeze(-2)  # [*B, K, K]
        pull = (log_weights - scale.log().unsqueeze(-2) - 0.5 * z.square()).softmax(-1) * precision
        x = (pull * loc.unsqueeze(-2)).sum(-1) / pull.sum(-1)
    return x


def _lowest_between(a: Tensor, b: Tensor, weights: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
    """Golden-section search for the density's minimum on ``[a, b]`` (two neighbouring maxima,
    so the density falls then rises there); ``a, b [*B, M]`` for parameters ``[*B, K]``."""
    weights, loc, scale = weights.unsqueeze(-2), loc.unsqueeze(-2), scale.unsqueeze(-2)  # [*B, 1, K]

    def minus_density(x: Tensor) -> Tensor:  # up to a constant factor, which the comparison ignores
        return -(weights / scale * torch.exp(-0.5 * ((x.unsqueeze(-1) - loc) / scale).square())).sum(-1)

    # 50 steps shrink the bracket 3e10-fold: a dip missed by that little holds no visible mass.
    return golden_maximum(minus_density, a, b, 50)


def golden_maximum(f: Callable[[Tensor], Tensor], a: Tensor, b: Tensor, steps: int) -> Tensor:
    """Golden-section search for the maximum of an elementwise ``f`` in each bracket ``[a, b]``
    (any shape; one new evaluation per step), where ``f`` rises then falls."""
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        left = fc >= fd  # the maximum lies in [a, d]
        a, b = torch.where(left, a, c), torch.where(left, d, b)
        c, d = torch.where(left, b - _GOLDEN * (b - a), d), torch.where(left, c, a + _GOLDEN * (b - a))
        new = f(torch.where(left, c, d))
        fc, fd = torch.where(left, new, fd), torch.where(left, fc, new)
    return 0.5 * (a + b)


def highest_density_intervals(
    log_weights: Tensor, loc: Tensor, scale: Tensor, coverage: float, points_per_component: int = 48
) -> HighestDensityIntervals:
    """Highest-density region of probability ``coverage`` of 1-D mixtures, as intervals.

    The density is tabulated on a grid that resolves every component (``points_per_component``
    points over its ±8σ) and holds every local maximum and minimum; the level is first found by
    bisection on the tabulated mass above it, then refined by safeguarded Newton steps on the
    exact mass ``Σ_i F(b_i) - F(a_i)`` between the polished crossings ``p(a_i) = p(b_i) = level``,
    using ``d mass / d level = -level Σ 1/|p'(end)|``.
    """
    return highest_density_intervals_at(log_weights, loc, scale, [coverage], points_per_component)[0]


def highest_density_intervals_at(
    log_weights: Tensor, loc: Tensor, scale: Tensor, coverages: Sequence[float], points_per_component: int = 48
) -> list[HighestDensityIntervals]:
    """:func:`highest_density_intervals` at each of ``coverages``, the density tabulated once.

    The table (modes, dips and the grid's cdf and pdf) is most of one region's cost, and the
    same for every coverage: ``metrics.evaluate`` asks for four.

    Args:
        log_weights, loc, scale: ``[*B, K]``.
        coverages: Each in ``(0, 1)``.

    Returns:
        One :class:`HighestDensityIntervals` per coverage, in their order: ``bounds [*B, K, 2]``,
        ``mask [*B, K]``, ``level [*B]``, the same as :func:`highest_density_intervals` gives.
    """
    for coverage in coverages:
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"coverage must be in (0, 1), got {coverage}.")
    batch_shape, n_components = loc.shape[:-1], loc.shape[-1]
    # Rows are solved independently (and the slow ones alone), so work on a flat batch [N, K].
    table = _tabulate(log_weights.double().exp().reshape(-1, n_components), loc.double().reshape(-1, n_components),
                      scale.double().reshape(-1, n_components), points_per_component)
    regions = []
    for coverage in coverages:
        level = _exact_level(table, _tabulated_level(table, coverage), coverage)
        start, stop, found, _, _ = _crossings(table, level, torch.arange(len(level), device=level.device))
        padding = n_components - found.shape[-1]  # the result keeps K slots, NaN where empty
        found = torch.nn.functional.pad(found, (0, padding), value=False)
        bounds = torch.nn.functional.pad(torch.stack([start, stop], -1), (0, 0, 0, padding))
        bounds = bounds.masked_fill(~found.unsqueeze(-1), math.nan)
        regions.append(HighestDensityIntervals(
            bounds.to(loc.dtype).reshape(*batch_shape, n_components, 2),
            found.reshape(*batch_shape, n_components),
            level.to(loc.dtype).reshape(batch_shape),
        ))
    return regions


class _Table(NamedTuple):
    """A flat batch of 1-D Gaussian mixtures (``weights, loc, scale [N, K]``, float64) and their
    density tabulated on ``grid [N, G]``: ``cdf`` and ``pdf`` there."""

    weights: Tensor
    loc: Tensor
    scale: Tensor
    grid: Tensor
    cdf: Tensor
    pdf: Tensor


def _tabulate(weights: Tensor, loc: Tensor, scale: Tensor, points_per_component: int) -> _Table:
    """The grid of :func:`highest_density_intervals` with the mixture's cdf and pdf on it."""
    offsets = torch.linspace(-8.0, 8.0, points_per_component, dtype=torch.float64, device=loc.device)
    # The grid also holds every local maximum and minimum, so the density is monotone between
    # neighbouring grid points and each cell holds at most one crossing: a narrow peak above the
    # level or a narrow dip below it can no longer hide between grid points.
    peaks = _uphill_points(weights, loc, scale).sort(-1).values  # [N, K]
    dips = _lowest_between(peaks[:, :-1], peaks[:, 1:], weights, loc, scale)  # [N, K-1]
    grid = torch.cat([(loc.unsqueeze(-1) + scale.unsqueeze(-1) * offsets).flatten(-2), peaks, dips], -1)
    grid = grid.sort(-1).values  # [N, G]
    cdf = torch.zeros_like(grid)
    pdf = torch.zeros_like(grid)
    for k in range(loc.shape[-1]):  # one component at a time: memory [N, G], not [N, G, K]
        weight, component_scale = weights[:, k, None], scale[:, k, None]
        z = (grid - loc[:, k, None]) / component_scale
        cdf += weight * torch.special.ndtr(z)
        pdf += weight * torch.exp(-0.5 * z.square()) / (component_scale * _SQRT_2PI)
    return _Table(weights, loc, scale, grid, cdf, pdf)


def _tabulated_level(table: _Table, coverage: float) -> Tensor:
    """The level ``[N]`` whose tabulated mass above is ``coverage``, by bisection, the density
    taken as linear across each cell of the grid."""
    cell_mass = table.cdf[:, 1:] - table.cdf[:, :-1]  # [N, G-1]
    left, right = table.pdf[:, :-1], table.pdf[:, 1:]
    higher, slope = torch.maximum(left, right), (right - left).abs().clamp_min(1e-300)
    low, high = torch.zeros_like(higher[:, 0]), table.pdf.amax(-1)
    for _ in range(60):
        middle = 0.5 * (low + high)
        too_low = (((higher - middle.unsqueeze(-1)) / slope).clamp(0.0, 1.0) * cell_mass).sum(-1) > coverage
        low, high = torch.where(too_low, middle, low), torch.where(too_low, high, middle)
    return 0.5 * (low + high)


def _exact_level(table: _Table, level: Tensor, coverage: float) -> Tensor:
    """``level`` refined by safeguarded Newton steps until the exact mass between its crossings is
    ``coverage`` (to 1e-11)."""
    # The mass falls as the level rises: a step that leaves the bracket [mass > coverage, mass <
    # coverage] is replaced by bisection, because the mass has kinks (infinite slope) where an
    # interval appears or two merge. Converged rows drop out.
    level = level.clone()
    below, above = torch.zeros_like(level), table.pdf.amax(-1)
    rows = torch.arange(len(level), device=level.device)
    for _ in range(100):
        _, _, _, mass, sensitivity = _crossings(table, level[rows], rows)
        active = (mass - coverage).abs() > 1e-11
        if not bool(active.any()):
            break
        rows, mass, sensitivity = rows[active], mass[active], sensitivity[active]
        row_level = level[rows]
        below[rows] = torch.where(mass > coverage, row_level, below[rows])
        above[rows] = torch.where(mass < coverage, row_level, above[rows])
        new_level = row_level + (mass - coverage) / (row_level * sensitivity)
        inside = torch.isfinite(new_level) & (new_level > below[rows]) & (new_level < above[rows])
        level[rows] = torch.where(inside, new_level, 0.5 * (below[rows] + above[rows]))
    return level


def _crossings(table: _Table, level: Tensor, rows: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Crossings of ``level [R]`` in ``rows [R]``: start, stop, found ``[R, I]`` for the most
    intervals ``I <= K`` any of these rows has; mass and ``Σ 1/|p'(end)|`` ``[R]``."""
    params = (table.weights[rows, None], table.loc[rows, None], table.scale[rows, None])  # [R, 1, K]
    lvl = level.unsqueeze(-1)
    row_pdf, row_grid = table.pdf[rows], table.grid[rows]
    row_left, row_right = row_pdf[:, :-1], row_pdf[:, 1:]
    starts, stops = (row_left < lvl) & (row_right >= lvl), (row_left >= lvl) & (row_right < lvl)
    # A 1-D mixture of K Gaussians has at most K modes, hence at most K intervals; most rows
    # have one or two, and each slot costs a Newton solve over all K components.
    n_slots = max(1, int(torch.maximum(starts.sum(-1), stops.sum(-1)).max()) if len(rows) else 1)
    x_scale = table.scale[rows].amin(-1, keepdim=True)

    def crossing(is_crossing: Tensor, sign: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cell = (~is_crossing).to(torch.int8).argsort(dim=-1, stable=True)[:, :n_slots]
        found = is_crossing.gather(-1, cell)
        lower = row_grid.gather(-1, cell)
        # Empty slots get an empty bracket, so they converge at once.
        upper = torch.where(found, row_grid.gather(-1, cell + 1), lower)

        def residual_and_slope(x: Tensor, weights: Tensor, loc: Tensor, scale: Tensor, lvl: Tensor) -> tuple[Tensor, Tensor]:
            density, slope = _mixture_density_and_slope(x, weights, loc, scale)
            return sign * (density - lvl[:, 0]), sign * slope

        x = _solve_bracketed_elementwise(residual_and_slope, lower, upper, x_scale, (*params, lvl.unsqueeze(-1)),
                                         max_iter=100)
        cdf_x, _, slope = _mixture_terms(x, *params)
        # The mass adds F(stop) and subtracts F(start): sign -1 at starts, +1 at stops.
        return x, found, torch.where(found, -sign * cdf_x, 0.0), torch.where(found, 1.0 / slope.abs(), 0.0)

    start, found, start_term, start_sensitivity = crossing(starts, 1.0)
    stop, _, stop_term, stop_sensitivity = crossing(stops, -1.0)
    mass = (start_term + stop_term).sum(-1)
    sensitivity = (start_sensitivity + stop_sensitivity).sum(-1)
    return start, stop, found, mass, sensitivity
