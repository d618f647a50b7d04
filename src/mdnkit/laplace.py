"""Laplace mixtures: heavy-ish (exponential) tails, each dimension its own Laplace.

Component ``k`` has, in each target dimension ``j`` independently, location ``μ_kj`` and scale
``b_kj``:

.. math:: p_k(y) = \\prod_j \\frac{1}{2 b_{kj}} \\exp\\Big(-\\frac{|y_j - μ_{kj}|}{b_{kj}}\\Big).

Mean ``μ``, variance ``2 b²``, cdf ``½ e^{z}`` for ``z = (y - μ) / b < 0`` and ``1 - ½ e^{-z}``
above; the mixture's quantiles come from the generic bracketed Newton solver.

Example:
    >>> import torch
    >>> m = LaplaceMixture(torch.zeros(1), loc=torch.zeros(1, 1), scale=torch.ones(1, 1))
    >>> round(float(m.cdf(torch.tensor([1.0]))), 4)  # scipy.stats.laplace.cdf(1) = 0.8161
    0.8161
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Laplace, constraints

from mdnkit._independent import IndependentMixture, LocScaleFamily
from mdnkit._special import laplace_log_cdf, log_interval_symmetric
from mdnkit.family import inverse_softplus

__all__ = ["LaplaceFamily", "LaplaceMixture"]

_LOG_2 = math.log(2.0)


class LaplaceMixture(IndependentMixture):
    """A batch of mixtures of independent-dimension Laplace components.

    Args:
        logits: Unnormalised log mixture weights, ``[*B, K]``.
        loc: Locations ``μ``, ``[*B, K, D]``.
        scale: Scales ``b > 0``, ``[*B, K, D]``.
    """

    family = "laplace"
    component_parameters = ("loc", "scale")

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor) -> None:
        super().__init__(logits, loc=loc, scale=scale)

    def component_log_prob(self, value: Tensor) -> Tensor:
        """``[*S, *B, D] -> [*S, *B, K]``."""
        self._check_event(value)
        z = (value.unsqueeze(-2) - self.loc) / self.scale  # [*S, *B, K, D]
        return (-z.abs() - self.scale.log() - _LOG_2).sum(-1)

    def _draw(self, index: Tensor, shape: torch.Size, temperature: float) -> Tensor:
        loc, scale = self._gathered(index, shape)
        z = Laplace(torch.zeros_like(loc), torch.ones_like(loc), validate_args=False).sample()
        return loc + math.sqrt(temperature) * scale * z

    @property
    def component_mean(self) -> Tensor:
        """``μ``, ``[*B, K, D]``."""
        return self.loc

    @property
    def component_variance(self) -> Tensor:
        """``2 b²``, ``[*B, K, D]``."""
        return 2.0 * self.scale.square()

    def _kinks(self) -> Tensor:
        """Each component's location, where its density has a corner, ``[*B, K]``."""
        return self.loc[..., 0]

    def _component_cdf(self, value: Tensor) -> Tensor:
        z = (value.unsqueeze(-1) - self.loc[..., 0]) / self.scale[..., 0]  # [*S, *B, K]
        # Each branch evaluated where it does not overflow: exp of a non-positive number only.
        tail = 0.5 * torch.exp(-z.abs())
        return torch.where(z < 0, tail, 1.0 - tail)

    def component_log_interval(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``log P_k(lower < Y <= upper)``, ``[*S, *B, D]`` each ``-> [*S, *B, K]``."""
        a = (lower.unsqueeze(-2) - self.loc) / self.scale  # [*S, *B, K, D]
        b = (upper.unsqueeze(-2) - self.loc) / self.scale
        return log_interval_symmetric(laplace_log_cdf, a, b).sum(-1)

    def affine(self, shift: Tensor, scale: Tensor) -> LaplaceMixture:
        """The distribution of ``shift + scale * Y`` for positive ``scale``, both ``[D]``."""
        shift = torch.as_tensor(shift, dtype=self.loc.dtype, device=self.loc.device)
        scale = torch.as_tensor(scale, dtype=self.loc.dtype, device=self.loc.device)
        return LaplaceMixture(self.logits, shift + scale * self.loc, self.scale * scale)


class LaplaceFamily(LocScaleFamily):
    """Laplace components. Raw parts: ``loc [K·D]``, ``scale [K·D]`` (``b = softplus + floor``)."""

    name = "laplace"
    mixture_class = LaplaceMixture
    support = constraints.real
    target_transform = "affine"

    def initial_bias(self, centres: Tensor, spread: Tensor) -> list[Tensor]:
        # A Laplace with standard deviation s has b = s / √2.
        b = spread / math.sqrt(2.0)
        return [centres.flatten(), inverse_softplus((b - self.min_scale).clamp_min(1e-6)).flatten()]
