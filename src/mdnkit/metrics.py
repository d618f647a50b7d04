"""How good a predicted distribution is: proper scores, calibration and point errors.

Every metric is ``f(dist, y, ...)``: ``dist`` a :class:`~mdnkit.distributions.GaussianMixture`
with batch shape ``(n,)`` (what ``MDNRegressor.predict_dist`` returns) and ``y`` the observed
targets, ``(n,)`` or ``(n, d)``, in the same units. Computations run in float64 on the CPU and
return NumPy values. Lower is better for every score and error here.

Example:
    >>> import torch
    >>> from mdnkit import GaussianMixture
    >>> dist = GaussianMixture(torch.zeros(3, 1), torch.zeros(3, 1, 1), scale=torch.ones(3, 1, 1))
    >>> round(float(crps(dist, [0.0, 0.0, 0.0]).mean()), 4)  # (√2 - 1) / √π for N(0, 1) at 0
    0.2337
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

from mdnkit._univariate import HighestDensityIntervals, highest_density_intervals_at
from mdnkit.distributions import GaussianMixture

__all__ = [
    "calibration_error", "crps", "energy_score", "evaluate", "interval_coverage", "log_likelihood",
    "nll", "pit", "point_errors",
]

_CRPS_CHUNK = 2**21  # rows x K² pair terms per chunk: ~100 MB of temporaries whatever n is
_SAMPLE_CHUNK = 2**22  # draws x rows x D values per chunk in energy_score, likewise
_DEFAULT_LEVELS = np.linspace(0.01, 0.99, 99)


def _prepare(dist: GaussianMixture, y: ArrayLike | Tensor) -> tuple[GaussianMixture, Tensor]:
    """``(dist, y)`` as float64 CPU, ``y`` reshaped to ``[n, D]``; shape errors name both."""
    if len(dist.batch_shape) != 1:
        raise ValueError(f"metrics need a batch of shape (n,), got {tuple(dist.batch_shape)}.")
    n, dim = dist.batch_shape[0], dist.event_shape[0]
    if isinstance(y, Tensor):
        value = y.detach().to("cpu", torch.float64)
    else:
        # A private copy: pandas may hand over read-only arrays, which torch warns about.
        value = torch.from_numpy(np.array(y, dtype=np.float64))
    if value.dim() == 1 and dim == 1:
        value = value.unsqueeze(-1)
    if tuple(value.shape) != (n, dim):
        expected = f"({n},) or ({n}, 1)" if dim == 1 else f"({n}, {dim})"
        raise ValueError(f"y must have shape {expected} to match the distribution, got {tuple(value.shape)}.")
    return dist.to("cpu", torch.float64), value


def _univariate(dist: GaussianMixture, name: str) -> tuple[Tensor, Tensor, Tensor]:
    """``(weights, loc, scale)``, each ``[n, K]``, of a 1-D mixture."""
    if dist.event_shape[0] != 1:
        raise ValueError(f"{name} needs a 1-D target; use energy_score, or dist.marginal([j]) per column.")
    return dist.weights, dist.component_mean[..., 0], dist.component_stddev[..., 0]


def log_likelihood(dist: GaussianMixture, y: ArrayLike | Tensor) -> np.ndarray:
    """``log p(y_i)`` of each row, ``(n,)``."""
    dist, y = _prepare(dist, y)
    return dist.log_prob(y).numpy()


def nll(dist: GaussianMixture, y: ArrayLike | Tensor) -> np.float64:
    """Mean negative log-likelihood, ``-1/n Σ_i log p(y_i)`` (nats, in the units of ``y``)."""
    return np.float64(-log_likelihood(dist, y).mean())


def _crps_kernel(m: Tensor, variance: Tensor) -> Tensor:
    """``A(m, s²) = E|m + sZ| = 2 s φ(m/s) + m (2 Φ(m/s) - 1)`` for ``Z ~ N(0, 1)``."""
    s = variance.sqrt()
    z = m / s
    density = torch.exp(-0.5 * z.square()) / math.sqrt(2.0 * math.pi)
    return 2.0 * s * density + m * (2.0 * torch.special.ndtr(z) - 1.0)


def crps(dist: GaussianMixture, y: ArrayLike | Tensor) -> np.ndarray:
    """Continuous ranked probability score of each row, in closed form (1-D targets), ``(n,)``.

    ``CRPS(F, y) = ∫ (F(x) - 1{x >= y})² dx = E|X - y| - ½ E|X - X'|``. For a Gaussian mixture
    (Grimit et al. 2006) both expectations are sums over components of ``A`` (:func:`_crps_kernel`):

    .. math:: \\sum_k w_k A(y - μ_k, σ_k^2)
              - \\tfrac12 \\sum_{j,k} w_j w_k A(μ_j - μ_k, σ_j^2 + σ_k^2).

    Costs ``n K²`` memory, taken in chunks of rows. Other families integrate the definition
    numerically (:mod:`mdnkit._crps_quadrature`, about 1e-9 relative); von Mises, on the
    circle, has no CRPS here.
    """
    dist, y = _prepare(dist, y)
    if dist.family == "von_mises":
        raise ValueError("crps integrates over the line; for angles (von_mises) it is not defined this way. "
                         "Compare angular models by NLL (score) or by their circular errors.")
    if dist.family != "gaussian":  # no closed form: the definition, integrated numerically
        from mdnkit._crps_quadrature import crps_by_quadrature

        _univariate(dist, "crps")
        return crps_by_quadrature(dist, y).numpy()
    weights, loc, scale = _univariate(dist, "crps")  # [n, K]
    variance = scale.square()
    rows = max(1, _CRPS_CHUNK // dist.n_components**2)
    out = []
    for w, mu, var, obs in zip(weights.split(rows), loc.split(rows), variance.split(rows), y.split(rows)):
        spread = (w * _crps_kernel(obs - mu, var)).sum(-1)
        pair_m = mu.unsqueeze(-1) - mu.unsqueeze(-2)  # [r, K, K]
        pair_var = var.unsqueeze(-1) + var.unsqueeze(-2)
        pair_w = w.unsqueeze(-1) * w.unsqueeze(-2)
        out.append(spread - 0.5 * (pair_w * _crps_kernel(pair_m, pair_var)).sum((-2, -1)))
    return torch.cat(out).numpy()


def pit(dist: GaussianMixture, y: ArrayLike | Tensor) -> np.ndarray:
    """Probability integral transform ``F_i(y_i)`` of each row (1-D targets), ``(n,)``.

    Uniform on [0, 1] when ``y`` is drawn from ``dist``; a U shape means too narrow, a hump too
    wide, a slope biased.
    """
    dist, y = _prepare(dist, y)
    _univariate(dist, "pit")
    return dist.cdf(y).numpy()


def calibration_error(
    dist: GaussianMixture, y: ArrayLike | Tensor, levels: ArrayLike | None = None
) -> np.float64:
    """Mean absolute gap between nominal levels and the empirical cdf of the PIT values.

    ``1/L Σ_l |p_l - 1/n Σ_i 1{PIT_i <= p_l}|`` over ``levels`` (default 0.01, 0.02, ..., 0.99):
    the average miscalibration of the one-sided quantile ``F⁻¹(p)`` (Kuleshov et al. 2018, with
    absolute rather than squared gaps, so the value reads as a probability). 0 is perfect; a
    calibrated model still scores about ``0.31 / √n`` by sampling noise (n rows).
    """
    levels = _DEFAULT_LEVELS if levels is None else np.asarray(levels, dtype=np.float64).ravel()
    if levels.size == 0 or not np.all((levels >= 0) & (levels <= 1)):
        raise ValueError("levels must be a non-empty sequence of probabilities in [0, 1].")
    values = pit(dist, y)
    empirical = (values[:, None] <= levels[None, :]).mean(0)
    return np.float64(np.abs(empirical - levels).mean())


def interval_coverage(
    dist: GaussianMixture,
    y: ArrayLike | Tensor,
    coverage: float,
    kind: Literal["central", "hdi"] = "central",
) -> tuple[np.float64, np.float64]:
    """Fraction of ``y`` inside the predicted ``coverage`` region and its mean width (1-D targets).

    ``kind="central"``: the interval ``[F⁻¹((1-c)/2), F⁻¹((1+c)/2)]``. ``kind="hdi"``: the highest
    density region, a union of up to ``K`` intervals (``dist.highest_density_intervals``); its
    width is their total length, the shortest possible for the coverage.

    Returns:
        ``(covered, width)``: covered should be near ``coverage`` for a calibrated model, and
        among calibrated models the narrower width is the sharper.
    """
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage!r}.")
    dist, y = _prepare(dist, y)
    _univariate(dist, "interval_coverage")
    if kind == "central":
        tail = (1.0 - coverage) / 2.0
        probabilities = torch.tensor([tail, 1.0 - tail], dtype=torch.float64)[:, None]  # [2, 1]
        lower, upper = dist.icdf(probabilities.expand(2, len(y)))[..., 0]  # [n] each
        inside = (lower <= y[:, 0]) & (y[:, 0] <= upper)
        width = upper - lower
    elif kind == "hdi":
        return _region_coverage(dist.highest_density_intervals(coverage), y)
    else:
        raise ValueError(f"kind must be 'central' or 'hdi', got {kind!r}.")
    return np.float64(inside.double().mean()), np.float64(width.mean())


def _region_coverage(region: HighestDensityIntervals, y: Tensor) -> tuple[np.float64, np.float64]:
    """``interval_coverage``'s ``(covered, width)`` of a highest-density region, ``y [n, 1]``."""
    lower, upper = region.bounds.unbind(-1)  # [n, K] each, NaN in padding (compares False)
    inside = (region.mask & (lower <= y) & (y <= upper)).any(-1)
    width = torch.where(region.mask, upper - lower, 0.0).sum(-1)
    return np.float64(inside.double().mean()), np.float64(width.mean())


def _highest_density_regions(dist: Any, coverages: Sequence[float]) -> list[HighestDensityIntervals]:
    """``dist.highest_density_intervals(c)`` for each of ``coverages``; a Gaussian mixture's
    density is tabulated once for all of them, most of one region's cost."""
    if isinstance(dist, GaussianMixture):
        return highest_density_intervals_at(*dist._univariate_parts("highest_density_intervals"), coverages)
    return [dist.highest_density_intervals(coverage) for coverage in coverages]


def energy_score(
    dist: GaussianMixture, y: ArrayLike | Tensor, n_samples: int = 1000, random_state: int | None = None
) -> np.ndarray:
    """Energy score of each row by Monte Carlo (any target dimension), ``(n,)``.

    ``ES(P, y) = E||X - y|| - ½ E||X - X'||`` with ``X, X'`` independent draws from ``P``
    (Gneiting & Raftery 2007); in 1-D it equals the CRPS. Estimated from ``S = n_samples`` draws
    ``x_s`` per row, pairing each draw with the next one (``X' = x_{s+1 mod S}``) for the second
    term: unbiased like the all-pairs estimator, at ``O(n S)`` instead of ``O(n S²)`` cost.

    Args:
        random_state: Seed for the draws (the global torch generator is left untouched); ``None``
            draws from the global generator.
    """
    if int(n_samples) < 2:
        raise ValueError(f"n_samples must be at least 2, got {n_samples!r}.")
    dist, y = _prepare(dist, y)
    rows = max(1, _SAMPLE_CHUNK // (int(n_samples) * y.shape[1]))  # draws held at once: bounded
    out = []
    with torch.random.fork_rng(devices=[], enabled=random_state is not None):
        if random_state is not None:
            torch.manual_seed(int(random_state))
        for start in range(0, len(y), rows):
            part = slice(start, start + rows)
            draws = dist.rows(part).sample((int(n_samples),))  # [S, r, D]
            to_target = (draws - y[part]).norm(dim=-1).mean(0)
            between = (draws - draws.roll(1, dims=0)).norm(dim=-1).mean(0)
            out.append(to_target - 0.5 * between)
    return torch.cat(out).numpy()


def point_errors(dist: GaussianMixture, y: ArrayLike | Tensor) -> dict[str, np.float64]:
    """RMSE and MAE of point predictions taken from ``dist``.

    Point predictions: the mean; the median ``F⁻¹(0.5)`` (1-D targets only); the best mode, the
    mode of highest density (``dist.modes()``). For ``d > 1`` errors are averaged over rows and
    target columns alike: ``rmse = sqrt(mean_ij e_ij²)``, ``mae = mean_ij |e_ij|``.

    Returns:
        ``{"rmse_mean", "mae_mean", ["rmse_median", "mae_median",] "rmse_mode", "mae_mode"}``
        (the mode errors for 1-D targets and Gaussian mixtures; no median for angles). For angles
        (von Mises) the errors are circular: each residual is wrapped into ``[-π, π)``.
    """
    dist, y = _prepare(dist, y)
    circular = dist.family == "von_mises"
    points = {"mean": dist.mean}  # [n, D]
    if dist.event_shape[0] == 1 and not circular:
        points["median"] = dist.icdf(torch.full((len(y),), 0.5, dtype=torch.float64))
    if dist.event_shape[0] == 1 or isinstance(dist, GaussianMixture):  # where modes() searches
        points["mode"] = dist.modes().value[..., 0, :]  # sorted by density: slot 0 is the highest mode
    errors: dict[str, np.float64] = {}
    for name, point in points.items():
        residual = point - y
        if circular:
            residual = torch.remainder(residual + math.pi, 2 * math.pi) - math.pi
        residual = residual.numpy()
        errors[f"rmse_{name}"] = np.float64(np.sqrt(np.mean(residual**2)))
        errors[f"mae_{name}"] = np.float64(np.mean(np.abs(residual)))
    return errors


def _percent(coverage: float) -> str:
    return f"{100.0 * coverage:g}"  # 0.9 -> "90", 0.975 -> "97.5": stable, readable key names


def evaluate(
    model: Any,
    X: ArrayLike,
    y: ArrayLike | Tensor,
    coverages: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
    n_samples: int = 1000,
    random_state: int | None = 0,
) -> dict[str, float]:
    """Every applicable metric of a fitted model (anything with ``predict_dist``) on ``(X, y)``.

    ``predict_dist`` is called once. Keys, with ``P`` each coverage in percent (``"90"``,
    ``"97.5"``):

    * always: ``nll``, ``rmse_mean``, ``mae_mean``, ``rmse_mode``, ``mae_mode``;
    * 1-D targets: ``crps``, ``rmse_median``, ``mae_median``, ``pit_calibration_error``,
      ``coverage_central_P``, ``width_central_P``, ``coverage_hdi_P``, ``width_hdi_P``;
    * multi-D targets: ``energy_score`` (``n_samples`` draws per row, seeded by ``random_state``,
      0 by default so that reports are reproducible).

    Non-Gaussian families integrate the CRPS numerically (:func:`crps`); their multi-D modes are
    left out. Angles (von Mises) have circular point errors and no CRPS or energy score, both
    being distances on the line.

    Scores (``nll``, ``crps``, ``energy_score``) are means over rows.
    """
    dist, y = _prepare(model.predict_dist(X), y)  # convert once; the metrics below then no-op
    results: dict[str, float] = {"nll": float(nll(dist, y))}
    one_d = dist.event_shape[0] == 1
    circular = dist.family == "von_mises"
    if one_d and not circular:
        results["crps"] = float(crps(dist, y).mean())
    elif not circular:
        results["energy_score"] = float(energy_score(dist, y, n_samples, random_state).mean())
    results.update({name: float(value) for name, value in point_errors(dist, y).items()})
    if one_d:
        results["pit_calibration_error"] = float(calibration_error(dist, y))
        central = [interval_coverage(dist, y, coverage, "central") for coverage in coverages]
        hdi = [_region_coverage(region, y) for region in _highest_density_regions(dist, coverages)]
        for kind, found in (("central", central), ("hdi", hdi)):
            for coverage, (covered, width) in zip(coverages, found):
                results[f"coverage_{kind}_{_percent(coverage)}"] = float(covered)
                results[f"width_{kind}_{_percent(coverage)}"] = float(width)
    return results
