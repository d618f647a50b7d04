"""Root finding for 1-D Gaussian mixtures: quantiles and highest-density intervals.

Both are vectorised over the whole batch (no Python loop over rows) and run in float64. Hand-
written because torch has no batched root finder and SciPy's would loop over rows on the CPU.
Parameters arrive as ``(log_weights, loc, scale)``, each of shape ``[*B, K]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

_SQRT_2PI = math.sqrt(2.0 * math.pi)


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
    component_pdf = weights * torch.exp(-0.5 * z.square()) / (scale * _SQRT_2PI)
    cdf = (weights * torch.special.ndtr(z)).sum(-1)
    return cdf, component_pdf.sum(-1), (-z / scale * component_pdf).sum(-1)


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
        residual, slope = residual_and_slope(x)
        below = residual < 0
        lower = torch.where(below, x, lower)
        upper = torch.where(below, upper, x)
        newton = x - residual / slope
        inside = (newton > lower) & (newton < upper)
        x_next = torch.where(inside, newton, 0.5 * (lower + upper))
        converged = (x_next - x).abs() <= tol * (x_scale + x.abs())
        x = x_next
        if bool(converged.all()):
            break
    return x


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
    q = q.expand(torch.broadcast_shapes(q.shape, batch_shape))
    inner = q.clamp(1e-300, 1 - 1e-16)
    component_quantiles = loc + scale * torch.special.ndtri(inner).unsqueeze(-1)  # [*S, *B, K]
    lower = component_quantiles.amin(-1)
    upper = component_quantiles.amax(-1)

    def residual_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
        cdf, pdf, _ = _mixture_terms(x, weights, loc, scale)
        return cdf - inner, pdf

    x = _solve_bracketed(residual_and_slope, lower, upper, scale.amin(-1))
    x = torch.where(q == 0, -math.inf, torch.where(q == 1, math.inf, x))
    return x.to(out_dtype)


def highest_density_intervals(
    log_weights: Tensor, loc: Tensor, scale: Tensor, coverage: float, points_per_component: int = 48
) -> HighestDensityIntervals:
    """Highest-density region of probability ``coverage`` of 1-D mixtures, as intervals.

    The density is tabulated on a grid that resolves every component (``points_per_component``
    points over its ±8σ); the level is first found by bisection on the tabulated mass above it,
    then refined by Newton steps on the exact mass ``Σ_i F(b_i) - F(a_i)`` between the polished
    crossings ``p(a_i) = p(b_i) = level``, using ``d mass / d level = -level Σ 1/|p'(end)|``.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}.")
    out_dtype = loc.dtype
    weights, loc, scale = log_weights.double().exp(), loc.double(), scale.double()
    n_components = loc.shape[-1]
    offsets = torch.linspace(-8.0, 8.0, points_per_component, dtype=torch.float64, device=loc.device)
    grid = (loc.unsqueeze(-1) + scale.unsqueeze(-1) * offsets).flatten(-2).sort(-1).values  # [*B, G]
    cdf = torch.zeros_like(grid)
    pdf = torch.zeros_like(grid)
    for k in range(n_components):  # one component at a time: memory [*B, G], not [*B, G, K]
        cdf_k, pdf_k, _ = _mixture_terms(grid, weights[..., k, None, None], loc[..., k, None, None],
                                         scale[..., k, None, None])
        cdf += cdf_k
        pdf += pdf_k
    cell_mass = cdf[..., 1:] - cdf[..., :-1]  # [*B, G-1]
    left, right = pdf[..., :-1], pdf[..., 1:]
    peak = pdf.amax(-1)

    def tabulated_mass(level: Tensor) -> Tensor:
        """Mass above ``level`` with the density taken as linear across each cell."""
        lvl = level.unsqueeze(-1)
        partial = (torch.maximum(left, right) - lvl) / (right - left).abs().clamp_min(1e-300)
        return (partial.clamp(0.0, 1.0) * cell_mass).sum(-1)

    low, high = torch.zeros_like(peak), peak
    for _ in range(60):
        middle = 0.5 * (low + high)
        too_low = tabulated_mass(middle) > coverage
        low, high = torch.where(too_low, middle, low), torch.where(too_low, high, middle)
    level = 0.5 * (low + high)

    slot_params = (weights.unsqueeze(-2), loc.unsqueeze(-2), scale.unsqueeze(-2))  # [*B, 1, K]

    def crossing(level: Tensor, is_crossing: Tensor, sign: float) -> tuple[Tensor, Tensor]:
        """Polished crossings in the first K flagged cells of each row: (x [*B, K], found)."""
        # A 1-D mixture of K Gaussians has at most K modes, hence at most K intervals.
        cell = (~is_crossing).to(torch.int8).argsort(dim=-1, stable=True)[..., :n_components]

        def residual_and_slope(x: Tensor) -> tuple[Tensor, Tensor]:
            _, density, slope = _mixture_terms(x, *slot_params)
            return sign * (density - level.unsqueeze(-1)), sign * slope

        x = _solve_bracketed(residual_and_slope, grid.gather(-1, cell), grid.gather(-1, cell + 1),
                             scale.amin(-1, keepdim=True), max_iter=100)
        return x, is_crossing.gather(-1, cell)

    def intervals(level: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        lvl = level.unsqueeze(-1)
        start, found = crossing(level, (left < lvl) & (right >= lvl), 1.0)
        stop, _ = crossing(level, (left >= lvl) & (right < lvl), -1.0)
        return start, stop, found

    for _ in range(4):
        start, stop, found = intervals(level)
        start_cdf, _, start_slope = _mixture_terms(start, *slot_params)
        stop_cdf, _, stop_slope = _mixture_terms(stop, *slot_params)
        mass = torch.where(found, stop_cdf - start_cdf, 0.0).sum(-1)
        sensitivity = torch.where(found, 1.0 / start_slope.abs() + 1.0 / stop_slope.abs(), 0.0)
        derivative = -level * sensitivity.sum(-1)
        new_level = level - (mass - coverage) / derivative
        level = torch.where(
            torch.isfinite(new_level) & (new_level > 0) & (new_level < peak), new_level, level
        )

    start, stop, found = intervals(level)
    bounds = torch.stack([start, stop], -1).masked_fill(~found.unsqueeze(-1), math.nan)
    return HighestDensityIntervals(bounds.to(out_dtype), found, level.to(out_dtype))
