"""Log-normal mixtures for positive targets: ``log y_j`` of component ``k`` is ``N(μ_kj, σ_kj²)``.

.. math:: p_k(y) = \\prod_j \\frac{1}{y_j σ_{kj} \\sqrt{2π}}
          \\exp\\Big(-\\frac{(\\log y_j - μ_{kj})^2}{2σ_{kj}^2}\\Big), \\qquad y_j > 0.

Mean ``exp(μ + σ²/2)``, variance ``(exp(σ²) - 1) exp(2μ + σ²)``, cdf ``Φ((log y - μ) / σ)``; the
mixture's quantiles are ``exp`` of the quantiles of the Gaussian mixture of ``log y`` (the same
monotone map for every component). The family is closed under ``y -> c y`` (``μ + log c``) but
not under shifts, so the network scales the target and never shifts it
(``target_transform = "scale"``); ``affine`` with a non-zero shift raises. ``min_scale``
floors ``σ``, a spread of ``log y`` (a relative spread of ``y``), whatever the units of ``y``.

Example:
    >>> import torch
    >>> m = LogNormalMixture(torch.zeros(1), loc=torch.zeros(1, 1), scale=torch.ones(1, 1))
    >>> round(float(m.cdf(torch.tensor([2.0]))), 4)  # scipy.stats.lognorm(1).cdf(2) = 0.7559
    0.7559
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.distributions import constraints

from mdnkit import _univariate
from mdnkit._independent import (
    IndependentMixture,
    LocScaleFamily,
    check_rows,
    units_fixed,
)
from mdnkit._special import FAR_BELOW, log_interval_symmetric
from mdnkit.family import inverse_softplus

__all__ = ["LogNormalFamily", "LogNormalMixture"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


class LogNormalMixture(IndependentMixture):
    """A batch of mixtures of independent-dimension log-normal components (``y > 0``).

    Args:
        logits: Unnormalised log mixture weights, ``[*B, K]``.
        loc: Means ``μ`` of ``log y``, ``[*B, K, D]``.
        scale: Standard deviations ``σ > 0`` of ``log y``, ``[*B, K, D]``.
    """

    family = "lognormal"
    component_parameters = ("loc", "scale")
    support = constraints.positive

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor) -> None:
        super().__init__(logits, loc=loc, scale=scale)

    def component_log_prob(self, value: Tensor) -> Tensor:
        """``[*S, *B, D] -> [*S, *B, K]``; ``-inf`` where some ``y_j <= 0``."""
        self._check_event(value)
        positive_value = value > 0
        log_y = torch.where(positive_value, value, 1.0).log().unsqueeze(-2)  # no NaN in the gradient
        z = (log_y - self.loc) / self.scale  # [*S, *B, K, D]
        log_p = -0.5 * z.square() - self.scale.log() - _HALF_LOG_2PI - log_y
        return torch.where(positive_value.unsqueeze(-2), log_p, -math.inf).sum(-1)

    def _draw(self, index: Tensor, shape: torch.Size, temperature: float) -> Tensor:
        loc, scale = self._gathered(index, shape)
        return torch.exp(loc + math.sqrt(temperature) * scale * torch.randn_like(loc))

    @property
    def component_mean(self) -> Tensor:
        """``exp(μ + σ²/2)``, ``[*B, K, D]``."""
        return torch.exp(self.loc + 0.5 * self.scale.square())

    @property
    def component_variance(self) -> Tensor:
        """``(exp(σ²) - 1) exp(2μ + σ²)``, ``[*B, K, D]``."""
        s2 = self.scale.square()
        return torch.expm1(s2) * torch.exp(2.0 * self.loc + s2)

    def _component_cdf(self, value: Tensor) -> Tensor:
        positive_value = value > 0
        log_y = torch.where(positive_value, value, 1.0).log().unsqueeze(-1)
        cdf = torch.special.ndtr((log_y - self.loc[..., 0]) / self.scale[..., 0])  # [*S, *B, K]
        return torch.where(positive_value.unsqueeze(-1), cdf, 0.0)

    def component_log_interval(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``log P_k(lower < Y <= upper)``, ``[*S, *B, D]`` each ``-> [*S, *B, K]``: normal cdf
        differences of ``log y``; a bound at or below 0 counts from the bottom of the support."""

        def standardised(bound: Tensor) -> Tensor:
            inside = (bound > 0).unsqueeze(-2)
            log_bound = torch.where(bound > 0, bound, 1.0).log().unsqueeze(-2)  # no NaN in the gradient
            return torch.where(inside, (log_bound - self.loc) / self.scale, FAR_BELOW)

        return log_interval_symmetric(torch.special.log_ndtr, standardised(lower), standardised(upper)).sum(-1)

    def icdf(self, value: Tensor) -> Tensor:
        """Quantiles, ``[*S, *B] -> [*S, *B, 1]``: ``exp`` of those of ``log y``'s Gaussian mixture
        (0 and 1 give 0 and ``inf``)."""
        self._require_1d("icdf")
        log_quantile = _univariate.mixture_quantile(self.log_weights, self.loc[..., 0], self.scale[..., 0], value)
        return log_quantile.exp().unsqueeze(-1)

    def affine(self, shift: Tensor, scale: Tensor) -> LogNormalMixture:
        """The distribution of ``scale * Y`` (``shift`` must be 0), ``scale [D]`` positive."""
        units_fixed(self.family, shift, scale, shift_allowed=False, scale_allowed=True)
        scale = torch.as_tensor(scale, dtype=self.loc.dtype, device=self.loc.device)
        return LogNormalMixture(self.logits, self.loc + scale.log(), self.scale)


class LogNormalFamily(LocScaleFamily):
    """Log-normal components for ``y > 0``. Raw parts: ``loc [K·D]``, ``scale [K·D]`` (of ``log y``)."""

    name = "lognormal"
    mixture_class = LogNormalMixture
    support = constraints.positive
    target_transform = "scale"

    def initial_bias(self, centres: Tensor, spread: Tensor) -> list[Tensor]:
        # Moment matching: a log-normal with mean c and standard deviation s has
        # σ² = log(1 + s²/c²) and μ = log c - σ²/2.
        centres = centres.clamp_min(1e-12)
        sigma2 = torch.log1p((spread / centres).square())
        loc = centres.log() - 0.5 * sigma2
        return [loc.flatten(), inverse_softplus((sigma2.sqrt() - self.min_scale).clamp_min(1e-6)).flatten()]

    def check_targets(self, y: np.ndarray) -> None:
        check_rows(y, y > 0, self.name, "(0, inf)")

    def target_units(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``shift 0``, ``scale`` the geometric mean: ``log(y / scale)`` has mean 0."""
        self.check_targets(y)
        return np.zeros(y.shape[1]), np.exp(np.log(y).mean(axis=0))
