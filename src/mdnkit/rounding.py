"""Rounded and discrete targets: finding the grid, and checking a declared resolution.

A continuous density fitted to values recorded on a grid (integer scores, heights to the
nearest 0.5) is rewarded for spikes at the recorded values: its log-likelihood can climb without
bound while the density between grid points is nonsense. The principled model of such data
scores each recorded value ``y`` by the probability of its bin,

.. math:: P(y) = F(y + h/2) - F(y - h/2),

for the grid step ``h`` and the mixture's cdf ``F`` (:meth:`mdnkit.mixture.Mixture.interval_log_prob`),
which :class:`~mdnkit.MDNRegressor` trains on when given ``target_resolution=h``. This module
finds such grids (:func:`find_grid`), so that ``fit`` can warn (:class:`RoundedTargetWarning`),
and validates ``target_resolution`` (:func:`resolution_per_target`).

Example:
    >>> find_grid(np.array([3.0, 5.0, 4.0, 6.0, 5.0] * 10))
    Grid(step=1.0, origin=0.0, n_values=4)
    >>> find_grid(np.random.default_rng(0).normal(size=100)) is None
    True
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["BINNED_FAMILIES", "Grid", "RoundedTargetWarning", "check_binned_family", "find_grid",
           "resolution_per_target"]

#: Rows per distinct value from which a column counts as rounded. Continuous data in float32 or
#: float64 almost never repeats a value, so five rows per recorded value on average is no
#: accident; and it is where a density starts to profit from spikes (each spike collects
#: several rows). Unlike a fixed cap on the count, it scales with the data: 1000 heights to the
#: nearest 0.5 over 50 units (100 values) are caught as well as six wine scores.
MIN_ROWS_PER_VALUE = 5
#: Fewer rows than this never count as rounded: too little evidence either way.
MIN_ROWS = 20
#: How far from a whole number of steps a value may be, in steps: float round-off only (a value
#: 1e9 steps from the lowest is off by about 1e-7 steps in float64).
_GRID_TOLERANCE = 1e-6
#: Families whose mixtures have :meth:`~mdnkit.mixture.Mixture.interval_log_prob` with a gradient.
BINNED_FAMILIES = ("gaussian", "laplace", "lognormal")


class RoundedTargetWarning(UserWarning):
    """Warned by ``fit`` when a target column holds few distinct values on a regular grid."""


class Grid(NamedTuple):
    """A regular grid a target column lies on: values ``origin + step * k`` for integers ``k``.

    Attributes:
        step: The grid spacing (the largest one that holds every value).
        origin: Where the grid sits, in ``[0, step)``: ``0.25`` for ``0.25, 0.75, 1.25, ...``.
        n_values: How many distinct values the column has.
    """

    step: float
    origin: float
    n_values: int


def find_grid(values: np.ndarray) -> Grid | None:
    """The regular grid a 1-D column of targets was recorded on, or ``None`` if it looks continuous.

    A column counts as rounded when it has at least :data:`MIN_ROWS` rows, at most one distinct
    value per :data:`MIN_ROWS_PER_VALUE` rows, and every value is ``v_min + step * k`` for
    integers ``k`` (to float round-off). The step tried is the smallest gap between distinct
    values, then its ``1/2, 1/3, ..., 1/10``: values ``0, 2, 5`` lie on a grid of 1 though no
    two are 1 apart. A finer common step would be a coincidence of decimals, not a grid.

    Args:
        values: ``(n,)`` finite numbers.

    Returns:
        The :class:`Grid`, with ``step`` rounded to 12 significant digits (``0.1``, not
        ``0.09999999999999964``).
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    distinct = np.unique(values)
    if len(values) < MIN_ROWS or len(distinct) < 2 or len(distinct) * MIN_ROWS_PER_VALUE > len(values):
        return None
    smallest_gap = float(np.diff(distinct).min())
    offsets = distinct - distinct[0]
    for divisor in range(1, 11):
        step = smallest_gap / divisor
        steps = offsets / step
        if np.all(np.abs(steps - np.round(steps)) <= _GRID_TOLERANCE):
            step = float(f"{step:.12g}")
            fraction = (distinct[0] / step) % 1.0  # the grid's offset, in steps
            if min(fraction, 1.0 - fraction) <= _GRID_TOLERANCE:
                fraction = 0.0
            origin = float(f"{fraction * step:.12g}")
            return Grid(step=step, origin=origin, n_values=len(distinct))
    return None


def resolution_per_target(target_resolution: float | Sequence[float] | None, n_outputs: int) -> np.ndarray | None:
    """``target_resolution`` as one bin width per target column, ``(d,)``, or ``None``.

    Raises:
        ValueError: Not a positive finite number, or a sequence of them of the wrong length.
    """
    if target_resolution is None:
        return None

    def valid(value: object) -> bool:
        return (isinstance(value, numbers.Real) and not isinstance(value, bool) and bool(np.isfinite(value))
                and value > 0)

    if valid(target_resolution):
        widths = [target_resolution] * n_outputs
    elif isinstance(target_resolution, np.ndarray) or (
            isinstance(target_resolution, Sequence) and not isinstance(target_resolution, str)):
        widths = list(np.asarray(target_resolution, dtype=object).ravel())
    else:
        raise ValueError(f"target_resolution must be a positive number, one per target column, or None; "
                         f"got {target_resolution!r}.")
    if len(widths) != n_outputs:
        raise ValueError(f"target_resolution has {len(widths)} values for {n_outputs} target column(s); "
                         "give one number (every column) or one per column.")
    bad = [value for value in widths if not valid(value)]
    if bad:
        raise ValueError(f"target_resolution must hold positive finite bin widths, got {bad[0]!r} "
                         f"in {target_resolution!r}.")
    return np.asarray(widths, dtype=np.float64)


def check_binned_family(family: str, covariance_type: str, n_outputs: int) -> None:
    """Refuse a family whose bin probabilities are not available, saying which ones are.

    Raises:
        ValueError: A family without a differentiable cdf in :data:`BINNED_FAMILIES`
            (Student-t, whose incomplete-beta cdf has no usable gradient; von Mises, whose bins
            wrap round the circle; logit-normal, not done yet), or a full covariance over
            several targets, whose boxes are not products of 1-D cdfs.
    """
    if family not in BINNED_FAMILIES:
        raise ValueError(f"target_resolution is available for the families {list(BINNED_FAMILIES)}, "
                         f"not {family!r}; fit without target_resolution.")
    if covariance_type == "full" and n_outputs > 1:
        raise ValueError(f"target_resolution with covariance_type='full' needs one target column, got {n_outputs}: "
                         "the probability of a box under a correlated Gaussian is not a product of 1-D "
                         "cdfs; use covariance_type='diagonal'.")


def warning_text(column: str, grid: Grid) -> str:
    """The message of :class:`RoundedTargetWarning` for one column."""
    return (
        f"target {column} looks rounded: {grid.n_values} distinct values on a grid of step {grid.step:g}"
        f"{f' offset by {grid.origin:g}' if grid.origin else ''}. A continuous density is rewarded for spikes at recorded values, so "
        f"its log-likelihood means little; pass target_resolution={grid.step:g} to train and score on "
        "the probability of each value's bin."
    )
