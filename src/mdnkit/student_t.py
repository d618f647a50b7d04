"""Student-t mixtures: heavy-tailed components, each dimension its own Student-t.

Component ``k`` has, in each target dimension ``j`` independently, ``ν_kj`` degrees of freedom,
location ``μ_kj`` and scale ``σ_kj``:

.. math:: p_k(y) = \\prod_j \\frac{Γ(\\frac{ν+1}{2})}{Γ(\\frac{ν}{2}) \\sqrt{νπ}\\,σ}
          \\Big(1 + \\frac{z^2}{ν}\\Big)^{-\\frac{ν+1}{2}}, \\qquad z = \\frac{y_j - μ_{kj}}{σ_{kj}}.

Its mean is ``μ`` (for ``ν > 1``) and its variance ``σ² ν / (ν - 2)`` (for ``ν > 2``); the head
keeps ``ν > min_df = 2`` by default, so both exist. The cdf is the regularised incomplete beta
function (:mod:`mdnkit._special`); quantiles come from the generic bracketed Newton solver.

Example:
    >>> import torch
    >>> t = StudentTMixture(torch.zeros(1), df=torch.full((1, 1), 3.0), loc=torch.zeros(1, 1),
    ...                     scale=torch.ones(1, 1))
    >>> round(float(t.cdf(torch.tensor([1.0]))), 4)  # scipy.stats.t(3).cdf(1) = 0.8045
    0.8045
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.distributions import StudentT, constraints

from mdnkit._independent import IndependentMixture
from mdnkit._special import student_t_cdf
from mdnkit.family import Family, inverse_softplus, positive

__all__ = ["StudentTFamily", "StudentTMixture"]

_LOG_PI = math.log(math.pi)


class StudentTMixture(IndependentMixture):
    """A batch of mixtures of independent-dimension Student-t components.

    Args:
        logits: Unnormalised log mixture weights, ``[*B, K]``.
        df: Degrees of freedom ``ν > 0``, ``[*B, K, D]``.
        loc: Locations, ``[*B, K, D]``.
        scale: Scales ``σ > 0``, ``[*B, K, D]``.
    """

    family = "student_t"

    component_parameters = ("df", "loc", "scale")

    def __init__(self, logits: Tensor, df: Tensor, loc: Tensor, scale: Tensor) -> None:
        super().__init__(logits, df=df, loc=loc, scale=scale)

    def component_log_prob(self, value: Tensor) -> Tensor:
        """``[*S, *B, D] -> [*S, *B, K]``."""
        self._check_event(value)
        z = (value.unsqueeze(-2) - self.loc) / self.scale  # [*S, *B, K, D]
        half_df = 0.5 * self.df
        log_norm = (torch.lgamma(half_df + 0.5) - torch.lgamma(half_df)
                    - 0.5 * (self.df.log() + _LOG_PI) - self.scale.log())
        return (log_norm - (half_df + 0.5) * torch.log1p(z.square() / self.df)).sum(-1)

    def _draw(self, index: Tensor, shape: torch.Size, temperature: float) -> Tensor:
        df, loc, scale = (self._gather(t, index, shape) for t in (self.df, self.loc, self.scale))
        z = StudentT(df, validate_args=False).sample()
        return loc + math.sqrt(temperature) * scale * z

    @property
    def component_mean(self) -> Tensor:
        """``μ`` where ``ν > 1``, else NaN; ``[*B, K, D]``."""
        return torch.where(self.df > 1, self.loc, math.nan)

    @property
    def component_variance(self) -> Tensor:
        """``σ² ν / (ν - 2)`` where ``ν > 2``, ``inf`` for ``1 < ν <= 2``, NaN below; ``[*B, K, D]``."""
        variance = self.scale.square() * self.df / (self.df - 2)
        return torch.where(self.df > 2, variance, torch.where(self.df > 1, math.inf, math.nan))

    def _component_cdf(self, value: Tensor) -> Tensor:
        z = (value.unsqueeze(-1) - self.loc[..., 0]) / self.scale[..., 0]  # [*S, *B, K]
        return student_t_cdf(z, self.df[..., 0])

    def _bracket(self) -> tuple[Tensor, Tensor]:
        return self.loc[..., 0], self.scale[..., 0]  # the moments may be infinite

    def affine(self, shift: Tensor, scale: Tensor) -> StudentTMixture:
        """The distribution of ``shift + scale * Y`` for positive ``scale``, both ``[D]``."""
        shift = torch.as_tensor(shift, dtype=self.loc.dtype, device=self.loc.device)
        scale = torch.as_tensor(scale, dtype=self.loc.dtype, device=self.loc.device)
        return StudentTMixture(self.logits, self.df, shift + scale * self.loc, self.scale * scale)


class StudentTFamily(Family):
    """Student-t components with learned degrees of freedom ``ν = min_df + softplus(raw)``.

    Raw parts: ``df [K·D]``, ``loc [K·D]``, ``scale [K·D]``. Components start at ``ν = 10``.

    Args:
        n_components, dim, min_scale: As for :class:`~mdnkit.family.Family`.
        min_df: Lower bound on every ``ν`` (2: the variance exists).
    """

    name = "student_t"
    parameter_names = ("df", "loc", "scale")
    support = constraints.real
    initial_df = 10.0

    def __init__(self, n_components: int, dim: int, min_scale: float = 1e-3, min_df: float = 2.0) -> None:
        super().__init__(n_components, dim, min_scale)
        if not min_df > 0:
            raise ValueError(f"min_df must be positive, got {min_df!r}.")
        self.min_df = float(min_df)

    def options(self) -> dict:
        return {"min_df": self.min_df}

    def raw_sizes(self) -> list[int]:
        return [self.n_components * self.dim] * 3

    def constrain(self, raw: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        shape = (self.n_components, self.dim)
        df_raw, loc_raw, scale_raw = raw
        df = positive(df_raw, self.min_df).unflatten(-1, shape)
        return df, loc_raw.unflatten(-1, shape), positive(scale_raw, self.min_scale).unflatten(-1, shape)

    def mixture(self, logits: Tensor, *parameters: Tensor) -> StudentTMixture:
        return StudentTMixture(logits, *parameters)

    def initial_bias(self, centres: Tensor, spread: Tensor) -> list[Tensor]:
        raw_df = inverse_softplus(torch.tensor(max(self.initial_df - self.min_df, 1.0), dtype=torch.float64))
        raw_scale = inverse_softplus((spread - self.min_scale).clamp_min(1e-6)).flatten()
        return [raw_df.expand(centres.numel()).clone(), centres.flatten(), raw_scale]
