"""CRPS of a 1-D mixture of any family, by quadrature of its definition.

``CRPS(F, y) = ∫ (F(z) - 1{z >= y})² dz``. Families other than the Gaussian have no closed
form for the mixture's ``E|X - X'|``, so the integral is taken numerically: Gauss-Legendre with
8 nodes on every cell of a grid that spans each component (9 points over ``±8`` spreads of
each) and follows the mixture's mass (its quantiles at 25 levels from ``Φ(-8)`` to ``Φ(8)``,
which track skewed components such as a log-normal's narrow peak near 0). ``y`` is a
breakpoint, so the indicator is constant on each cell, as is every kink of ``F`` (a Laplace
peak); the two tails beyond the grid map to ``[0, 1)`` by ``z = a ∓ w t / (1 - t)`` with 32
nodes. Accurate to about 1e-9 relative; about 10 ms a row for a 5-component Student-t, whose
cdf is costly. Hand-written because no library integrates batches of mixture cdfs.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from mdnkit.mixture import Mixture

# Breakpoints (chosen by measuring against a 10x finer rule: at most 7e-10 relative on the test
# families): each component at 9 points over ±8 spreads, the mixture's quantiles at 25.
_GRID = torch.linspace(-8.0, 8.0, 9, dtype=torch.float64)
_PROBABILITIES = torch.special.ndtr(torch.linspace(-8.0, 8.0, 25, dtype=torch.float64))
_CELL_NODES, _CELL_WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(8))
_TAIL_NODES, _TAIL_WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(32))
_VALUES_PER_CHUNK = 2**22  # rows x nodes x components of cdf values held at once


def crps_by_quadrature(dist: Mixture, y: Tensor) -> Tensor:
    """``(n,)`` CRPS of 1-D mixtures ``dist`` (batch ``(n,)``, float64) at targets ``y [n, 1]``."""
    n = dist.batch_shape[0]
    per_row = (_GRID.numel() * dist.n_components + _PROBABILITIES.numel() + 1) * _CELL_NODES.numel() * dist.n_components
    step = max(1, _VALUES_PER_CHUNK // per_row)
    return torch.cat([_rows(dist.rows(slice(a, a + step)), y[a:a + step, 0]) for a in range(0, n, step)]
                     or [torch.empty(0, dtype=torch.float64)])


def _rows(dist: Mixture, y: Tensor) -> Tensor:
    centre, spread = dist._bracket()  # [n, K]
    points = (centre.unsqueeze(-1) + spread.unsqueeze(-1) * _GRID).flatten(-2)
    # Also the mixture's own quantiles, which follow skewed components (a log-normal's peak
    # near 0 is narrow beside its spread).
    quantiles = dist.icdf(_PROBABILITIES[:, None].expand(-1, len(y)))[..., 0].T  # [n, 25]
    points = torch.cat([points, quantiles, y[:, None]], -1).sort(-1).values  # [n, P]
    a, b = points[:, :-1], points[:, 1:]  # cells [n, C]
    half = 0.5 * (b - a)
    nodes = (0.5 * (a + b)).unsqueeze(-1) + half.unsqueeze(-1) * _CELL_NODES  # [n, C, 8]
    cells = (_squared_gap(dist, nodes, y) * _CELL_WEIGHTS).sum(-1) * half
    width = spread.amax(-1, keepdim=True)  # [n, 1]
    t = 0.5 * (_TAIL_NODES + 1.0)  # [0, 1]
    stretch = width * t / (1.0 - t)  # [n, 32]
    jacobian = width / (1.0 - t) ** 2 * 0.5 * _TAIL_WEIGHTS
    left = (_squared_gap(dist, (points[:, :1] - stretch).unsqueeze(1), y)[:, 0] * jacobian).sum(-1)
    right = (_squared_gap(dist, (points[:, -1:] + stretch).unsqueeze(1), y)[:, 0] * jacobian).sum(-1)
    return cells.sum(-1) + left + right


def _squared_gap(dist: Mixture, z: Tensor, y: Tensor) -> Tensor:
    """``(F(z) - 1{z >= y})²`` at each row's own points ``z [n, C, Q]``."""
    shape = z.shape
    flat = z.reshape(shape[0], -1).T.unsqueeze(-1)  # [C·Q, n, 1]
    cdf = dist.cdf(flat).T.reshape(shape)
    # On a cell the indicator is that of its midpoint (y is a breakpoint); at a node it is the same.
    return (cdf - (z >= y[:, None, None]).to(cdf.dtype)).square()
