"""All the modes of batched Gaussian mixtures.

Fixed-point search of Carreira-Perpiñán (2000), *Mode-finding for mixtures of Gaussian
distributions*: a stationary point of ``p`` satisfies

.. math:: x = \\Big(\\sum_k r_k(x) P_k\\Big)^{-1} \\sum_k r_k(x) P_k \\mu_k,

with ``P_k = Σ_k⁻¹`` and ``r_k(x)`` the posterior responsibilities. Iterating this map climbs the
density monotonically; started from every component mean it reaches every mode (the modes lie in
the hull of the means, each within reach of some mean). Candidates are then kept if the Hessian
of ``log p`` is negative definite there (a maximum, not a saddle), and merged when they are the
same peak. Hand-written because no library finds all modes of batched mixtures.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from mdnkit.distributions import GaussianMixture


_CHUNK = 256  # rows per pass


class Modes(NamedTuple):
    """Local maxima of a batch of densities, sorted by density, padded where a row has fewer.

    Attributes:
        value: ``[*B, K, D]`` mode locations, NaN in padding.
        log_prob: ``[*B, K]`` log density at each mode, -inf in padding.
        mask: ``[*B, K]`` True where the entry is a mode.
    """

    value: Tensor
    log_prob: Tensor
    mask: Tensor


def find_modes(mixture: GaussianMixture, max_iter: int = 500, tol: float = 1e-7) -> Modes:
    """Find every local maximum of each mixture density in the batch.

    Args:
        mixture: The batch of mixtures, ``batch_shape`` B, ``K`` components, ``D`` dims.
        max_iter: Maximum fixed-point iterations.
        tol: Stop once no candidate moves by more than ``tol`` times its local scale.

    Returns:
        :class:`Modes` with ``K`` slots per row (a mixture of ``K`` Gaussians in 1-D has at most
        ``K`` modes; in more dimensions more are possible but not reachable by this search).
    """
    out_dtype = mixture.loc.dtype
    batch_shape, (n_components, dim) = mixture.batch_shape, mixture.loc.shape[-2:]
    log_weights = mixture.log_weights.double().reshape(-1, n_components)  # [R, K]
    loc = mixture.loc.double().reshape(-1, n_components, dim)  # [R, K, D]
    covariance = mixture.component_covariance.double().reshape(-1, n_components, dim, dim)
    full = mixture.covariance_type == "full"
    # Memory grows as rows x K^3 (the pairwise merge test): bound it by working in chunks.
    parts = [
        _modes_of_rows(log_weights[i : i + _CHUNK], loc[i : i + _CHUNK], covariance[i : i + _CHUNK], full, max_iter, tol)
        for i in range(0, loc.shape[0], _CHUNK)
    ] or [(loc.new_zeros(0, n_components, dim), loc.new_zeros(0, n_components), loc.new_zeros(0, n_components, dtype=torch.bool))]
    value, log_prob, keep = (torch.cat(part) for part in zip(*parts))
    return Modes(
        value.reshape(*batch_shape, n_components, dim).to(out_dtype),
        log_prob.reshape(*batch_shape, n_components).to(out_dtype),
        keep.reshape(*batch_shape, n_components),
    )


def _modes_of_rows(
    log_weights: Tensor, loc: Tensor, covariance: Tensor, full: bool, max_iter: int, tol: float
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`find_modes` on flattened rows: ``[R, K]``, ``[R, K, D]``, ``[R, K, D, D]`` in float64.

    Returns (value ``[R, K, D]``, log_prob ``[R, K]``, mask ``[R, K]``).
    """
    n_components, dim = loc.shape[-2:]
    # Candidates flattened to [R * K, D] so that only the ones still moving are iterated (most
    # converge in a few steps, a few on flat tops take hundreds).
    tril = torch.linalg.cholesky(covariance)
    precision = torch.cholesky_inverse(tril)  # [R, K, D, D]
    log_norm = (
        log_weights - tril.diagonal(dim1=-2, dim2=-1).log().sum(-1) - 0.5 * dim * math.log(2 * math.pi)
    )  # [R, K]: log π_k - log|Σ_k|/2 - D/2 log 2π
    precision_loc = (precision @ loc.unsqueeze(-1)).squeeze(-1)  # [R, K, D]
    inverse_variance = 1.0 / covariance.diagonal(dim1=-2, dim2=-1)  # [R, K, D]
    mean_variance = covariance.diagonal(dim1=-2, dim2=-1).mean(-1)  # [R, K]

    def joint_terms(x: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Candidates x [N, D] of rows [N]: (log π_k N_k(x) [N, K], P_k (x - μ_k) [N, K, D])."""
        diff = x.unsqueeze(-2) - loc[rows]  # [N, K, D]
        if full:
            whitened = (precision[rows] @ diff.unsqueeze(-1)).squeeze(-1)
        else:  # elementwise: batched 1x1 or DxD matmuls are far slower
            whitened = diff * inverse_variance[rows]
        return log_norm[rows] - 0.5 * (diff * whitened).sum(-1), whitened

    n_rows = loc.shape[0]
    rows = torch.arange(n_rows, device=loc.device).repeat_interleave(n_components)  # [N]
    x = loc.reshape(-1, dim).clone()  # [N, D]: one candidate per component mean
    active = torch.arange(x.shape[0], device=loc.device)
    for _ in range(max_iter):
        if active.numel() == 0:
            break
        x_active, active_rows = x[active], rows[active]
        log_joint, _ = joint_terms(x_active, active_rows)
        resp = torch.softmax(log_joint, dim=-1)  # [A, K]
        target = (resp.unsqueeze(-1) * precision_loc[active_rows]).sum(-2)  # [A, D]
        if full:
            system = (resp[..., None, None] * precision[active_rows]).sum(-3)
            x_next = torch.linalg.solve(system, target)
        else:
            x_next = target / (resp.unsqueeze(-1) * inverse_variance[active_rows]).sum(-2)
        local_scale = (resp * mean_variance[active_rows]).sum(-1).sqrt()  # [A]
        moved = (x_next - x_active).abs().amax(-1) / local_scale
        x[active] = x_next
        active = active[moved > tol]

    log_joint, whitened = joint_terms(x, rows)
    log_density = torch.logsumexp(log_joint, dim=-1)  # [N]
    resp = torch.softmax(log_joint, dim=-1)  # [N, K]
    local_variance = (resp * mean_variance[rows]).sum(-1)  # [N]
    # Hessian of log p: Σ_k r_k (P_k d_k d_kᵀ P_k - P_k) - g gᵀ, with g = -Σ_k r_k P_k d_k.
    grad = -(resp.unsqueeze(-1) * whitened).sum(-2)  # [N, D]
    outer = whitened.unsqueeze(-1) * whitened.unsqueeze(-2)  # [N, K, D, D]
    hessian = (resp[..., None, None] * (outer - precision[rows])).sum(-3)
    hessian = hessian - grad.unsqueeze(-1) * grad.unsqueeze(-2)
    curvature = torch.linalg.eigvalsh(hessian).amax(-1) * local_variance  # dimensionless
    is_maximum = (curvature < 1e-6).reshape(n_rows, n_components)

    # Same peak: sorted by density, a candidate duplicates a higher maximum when the two are
    # within half a local scale and the density does not dip at their midpoint (robust to slow
    # convergence on flat tops; the distance bound keeps apart two modes whose midpoint happens
    # to sit on a third, higher one).
    x = x.reshape(n_rows, n_components, dim)
    log_density = log_density.reshape(n_rows, n_components)
    order = log_density.argsort(dim=-1, descending=True)
    x = x.gather(-2, order.unsqueeze(-1).expand_as(x))
    log_density = log_density.gather(-1, order)
    is_maximum = is_maximum.gather(-1, order)
    midpoints = 0.5 * (x.unsqueeze(-2) + x.unsqueeze(-3))  # [R, J, J, D]
    mid_rows = torch.arange(n_rows, device=loc.device).repeat_interleave(n_components**2)
    mid_joint, _ = joint_terms(midpoints.reshape(-1, dim), mid_rows)
    mid_density = torch.logsumexp(mid_joint, -1).reshape(n_rows, n_components, n_components)
    lower = torch.minimum(log_density.unsqueeze(-1), log_density.unsqueeze(-2))
    local_scale = local_variance.reshape(n_rows, n_components).gather(-1, order).sqrt()  # [R, J]
    distance = (x.unsqueeze(-2) - x.unsqueeze(-3)).abs().amax(-1)  # [R, J, J]
    close = distance < 0.5 * torch.maximum(local_scale.unsqueeze(-1), local_scale.unsqueeze(-2))
    same_peak = close & (mid_density >= lower - 1e-9 * lower.abs().clamp_min(1.0))
    earlier = torch.ones(n_components, n_components, dtype=torch.bool, device=x.device).tril(-1)
    duplicate = (same_peak & earlier & is_maximum.unsqueeze(-2)).any(-1)
    keep = is_maximum & ~duplicate

    # Move kept modes to the front, still in descending density.
    front = (~keep).to(torch.int8).argsort(dim=-1, stable=True)
    keep = keep.gather(-1, front)
    value = x.gather(-2, front.unsqueeze(-1).expand_as(x)).masked_fill(~keep.unsqueeze(-1), math.nan)
    log_prob = log_density.gather(-1, front).masked_fill(~keep, -math.inf)
    return value, log_prob, keep
