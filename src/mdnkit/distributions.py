"""Batched mixtures of Gaussians: the distribution every mdnkit model returns.

A :class:`GaussianMixture` holds, for each of ``batch_shape`` rows, ``K`` Gaussian components over a
``D``-dimensional target:

.. math:: p(y) = \\sum_k \\pi_k \\, \\mathcal N(y \\mid \\mu_k, \\Sigma_k),
          \\qquad \\pi = \\operatorname{softmax}(\\text{logits}).

The covariance ``Σ_k`` comes in three types, told apart by which argument is given:

* ``"diagonal"``: ``scale`` of shape ``[*B, K, D]``, ``Σ_k = diag(scale_k²)``;
* ``"isotropic"``: ``scale`` of shape ``[*B, K]``, ``Σ_k = scale_k² I`` (Bishop 1994);
* ``"full"``: ``scale_tril`` of shape ``[*B, K, D, D]``, ``Σ_k = L_k L_kᵀ``.

Shapes follow torch: ``sample_shape + batch_shape + event_shape`` with ``event_shape = (D,)``, also
for a 1-D target (``D = 1``).

Example:
    >>> import torch
    >>> mixture = GaussianMixture(
    ...     logits=torch.zeros(2), loc=torch.tensor([[-1.0], [1.0]]), scale=torch.ones(2, 1))
    >>> mixture.log_prob(torch.tensor([0.0])).exp().round(decimals=4)
    tensor(0.2420)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from mdnkit import _modes, _special, _univariate
from mdnkit._modes import Modes
from mdnkit._univariate import HighestDensityIntervals
from mdnkit.mixture import Mixture

__all__ = ["CovarianceType", "GaussianMixture", "HighestDensityIntervals", "Modes"]

CovarianceType = Literal["diagonal", "isotropic", "full"]
_LOG_2PI = math.log(2.0 * math.pi)


class GaussianMixture(Mixture):
    """A batch of Gaussian mixtures over ``D``-dimensional targets.

    Args:
        logits: Unnormalised log mixture weights, ``[*B, K]``.
        loc: Component means, ``[*B, K, D]``.
        scale: Standard deviations, ``[*B, K, D]`` (diagonal) or ``[*B, K]`` (isotropic).
        scale_tril: Lower Cholesky factors with a positive diagonal, ``[*B, K, D, D]`` (full).
        validate_args: Check that scales are positive and finite (off by default: the hot path
            of training builds one of these per step).
    """

    family = "gaussian"

    def __init__(
        self,
        logits: Tensor,
        loc: Tensor,
        scale: Tensor | None = None,
        scale_tril: Tensor | None = None,
        validate_args: bool | None = False,
    ) -> None:
        if (scale is None) == (scale_tril is None):
            raise ValueError("GaussianMixture needs exactly one of `scale` or `scale_tril`.")
        if loc.dim() < 2:
            raise ValueError(f"`loc` must have shape [*batch, K, D], got {tuple(loc.shape)}.")
        n_components, dim = loc.shape[-2:]
        if logits.dim() < 1 or logits.shape[-1] != n_components:
            raise ValueError(
                f"`logits` must have shape [*batch, K={n_components}] to match `loc` "
                f"{tuple(loc.shape)}, got {tuple(logits.shape)}."
            )
        batch_shapes = [logits.shape[:-1], loc.shape[:-2]]
        if scale_tril is not None:
            if scale_tril.dim() < 3 or scale_tril.shape[-3:] != (n_components, dim, dim):
                raise ValueError(
                    f"`scale_tril` must have shape [*batch, K={n_components}, D={dim}, D={dim}], "
                    f"got {tuple(scale_tril.shape)}."
                )
            self._covariance_type: CovarianceType = "full"
            batch_shapes.append(scale_tril.shape[:-3])
        elif scale.dim() == loc.dim() and scale.shape[-2:] == (n_components, dim):
            self._covariance_type = "diagonal"
            batch_shapes.append(scale.shape[:-2])
        elif scale.dim() == loc.dim() - 1 and scale.shape[-1] == n_components:
            self._covariance_type = "isotropic"
            batch_shapes.append(scale.shape[:-1])
        else:
            raise ValueError(
                f"`scale` must have shape [*batch, K={n_components}, D={dim}] (diagonal) or "
                f"[*batch, K={n_components}] (isotropic), got {tuple(scale.shape)}."
            )
        if batch_shapes[0] == batch_shapes[1] == batch_shapes[2]:
            # A network head gives equal shapes: skip broadcasting, a measurable cost per step.
            batch_shape = batch_shapes[0]
        else:
            try:
                batch_shape = _univariate.broadcast_shapes(*batch_shapes)
            except RuntimeError as error:
                raise ValueError(f"Batch shapes do not broadcast: {batch_shapes}.") from error
            logits = logits.expand(*batch_shape, n_components)
            loc = loc.expand(*batch_shape, n_components, dim)
            if scale_tril is not None:
                scale_tril = scale_tril.expand(*batch_shape, n_components, dim, dim)
            else:
                tail = scale.shape[-2:] if self._covariance_type == "diagonal" else scale.shape[-1:]
                scale = scale.expand(*batch_shape, *tail)
        self.logits, self.loc = logits, loc
        self.scale_tril: Tensor | None = scale_tril
        self.scale: Tensor | None = scale if scale_tril is None else None
        positive = self.scale if scale_tril is None else scale_tril.diagonal(dim1=-2, dim2=-1)
        if validate_args and not bool(torch.all(positive > 0) and torch.isfinite(positive).all()):
            raise ValueError("Component scales must be positive and finite.")
        self._finish_init(batch_shape, dim)

    # ------------------------------------------------------------------ description
    @property
    def covariance_type(self) -> CovarianceType:
        """``"diagonal"``, ``"isotropic"`` or ``"full"``."""
        return self._covariance_type

    def __repr__(self) -> str:
        return (
            f"GaussianMixture(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, n_components={self.n_components}, "
            f"covariance_type={self.covariance_type!r})"
        )

    # ------------------------------------------------------------------ densities
    def component_log_prob(self, value: Tensor) -> Tensor:
        """Log density of every component, without the weights.

        Args:
            value: ``[*S, *B, D]`` (``*S`` may be empty; batch dims broadcast).

        Returns:
            ``log N(value | μ_k, Σ_k)`` of shape ``[*S, *B, K]``.
        """
        self._check_event(value)
        dim = self.loc.shape[-1]
        diff = value.unsqueeze(-2) - self.loc  # [*S, *B, K, D]
        if self.scale_tril is not None:
            # Whitened residual z = L⁻¹(y - μ); log|Σ|/2 = Σ log diag(L).
            z = torch.linalg.solve_triangular(
                self.scale_tril, diff.unsqueeze(-1), upper=False
            ).squeeze(-1)
            half_log_det = self.scale_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1)
        elif self._covariance_type == "diagonal":
            z = diff / self.scale
            half_log_det = self.scale.log().sum(-1)
        else:
            z = diff / self.scale.unsqueeze(-1)
            half_log_det = dim * self.scale.log()
        return -0.5 * z.square().sum(-1) - half_log_det - 0.5 * dim * _LOG_2PI

    def component_log_interval(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``log P_k(lower < Y <= upper)`` per component, ``[*S, *B, D]`` each ``-> [*S, *B, K]``:
        a product of 1-D normal cdf differences, so diagonal or isotropic covariance (or ``D = 1``)."""
        self._check_event(lower)
        self._check_event(upper)
        if self.scale_tril is not None:
            if self.loc.shape[-1] != 1:
                raise ValueError(
                    "bin probabilities of a full-covariance mixture over a "
                    f"{self.loc.shape[-1]}-D target are not products of 1-D cdfs; use "
                    "covariance_type='diagonal' (or one target)."
                )
            scale = self.scale_tril[..., 0]  # [*B, K, 1]: the standard deviation of a 1-D target
        else:
            scale = self.scale if self._covariance_type == "diagonal" else self.scale.unsqueeze(-1)
        a = (lower.unsqueeze(-2) - self.loc) / scale  # [*S, *B, K, D]
        b = (upper.unsqueeze(-2) - self.loc) / scale
        return _special.log_interval_symmetric(torch.special.log_ndtr, a, b).sum(-1)

    # ------------------------------------------------------------------ sampling
    def parameters(self) -> dict[str, Tensor]:
        scale = {"scale_tril": self.scale_tril} if self.scale_tril is not None else {"scale": self.scale}
        return {"logits": self.logits, "loc": self.loc, **scale}

    def _with_parameters(self, **parameters: Tensor) -> GaussianMixture:
        return GaussianMixture(**parameters)

    def _draw(self, index: Tensor, shape: torch.Size, temperature: float) -> Tensor:
        dim = self.loc.shape[-1]
        gather_index = index[..., None, None].expand(*shape, 1, dim)
        loc = self.loc.expand(*shape, *self.loc.shape[-2:]).gather(-2, gather_index).squeeze(-2)
        noise = torch.randn(*shape, dim, dtype=self.loc.dtype, device=self.loc.device)
        if self.scale_tril is not None:
            tril = self.scale_tril.expand(*shape, *self.scale_tril.shape[-3:])
            tril = tril.gather(-3, index[..., None, None, None].expand(*shape, 1, dim, dim))
            noise = (tril.squeeze(-3) @ noise.unsqueeze(-1)).squeeze(-1)
        elif self._covariance_type == "diagonal":
            noise = noise * self.scale.expand(*shape, *self.scale.shape[-2:]).gather(
                -2, gather_index
            ).squeeze(-2)
        else:
            noise = noise * self.scale.expand(*shape, self.n_components).gather(-1, index[..., None])
        return loc + math.sqrt(temperature) * noise

    # ------------------------------------------------------------------ moments
    @property
    def component_covariance(self) -> Tensor:
        """Covariance of each component, ``[*B, K, D, D]``."""
        if self.scale_tril is not None:
            return self.scale_tril @ self.scale_tril.mT
        return torch.diag_embed(self.component_variance)

    @property
    def component_mean(self) -> Tensor:
        """``μ_k``, ``[*B, K, D]``."""
        return self.loc

    @property
    def component_variance(self) -> Tensor:
        """Diagonal of each component covariance, ``[*B, K, D]``."""
        if self.scale_tril is not None:
            return self.scale_tril.square().sum(-1)
        if self._covariance_type == "diagonal":
            return self.scale.square()
        return self.scale.square().unsqueeze(-1).expand_as(self.loc)

    @property
    def covariance_matrix(self) -> Tensor:
        """``Σ_k π_k (Σ_k + (μ_k - m)(μ_k - m)ᵀ)``, ``[*B, D, D]``."""
        centred = self.loc - self.mean.unsqueeze(-2)  # [*B, K, D]
        outer = centred.unsqueeze(-1) * centred.unsqueeze(-2)  # [*B, K, D, D]
        weights = self.weights[..., None, None]
        return (weights * (self.component_covariance + outer)).sum(-3)

    # ------------------------------------------------------------------ modes
    def modes(self, max_iter: int = 500, tol: float = 1e-7) -> Modes:
        """Every local maximum of each density (fixed-point search from each component mean).

        See :func:`mdnkit._modes.find_modes`. Returns ``Modes(value [*B, K, D], log_prob [*B, K],
        mask [*B, K])`` sorted by density, NaN / -inf where a row has fewer than ``K`` modes.
        """
        return _modes.find_modes(self, max_iter=max_iter, tol=tol)

    def heaviest_component_mean(self) -> Tensor:
        """Mean of the heaviest component, ``[*B, D]``: PRML's cheap stand-in for the mode."""
        index = self.log_weights.argmax(-1)[..., None, None].expand(*self.batch_shape, 1, self.loc.shape[-1])
        return self.loc.gather(-2, index).squeeze(-2)

    # ------------------------------------------------------------------ univariate
    def _univariate_parts(self, method: str) -> tuple[Tensor, Tensor, Tensor]:
        """``(log_weights, loc, stddev)``, each ``[*B, K]``, for a 1-D target."""
        if self.loc.shape[-1] != 1:
            raise ValueError(
                f"{method} needs a 1-D target (event_shape (1,)), this mixture has event_shape "
                f"{tuple(self.event_shape)}; use marginal([i]) first."
            )
        return self.log_weights, self.loc[..., 0], self.component_variance[..., 0].sqrt()

    def _component_cdf(self, value: Tensor) -> Tensor:
        _, loc, scale = self._univariate_parts("cdf")
        return torch.special.ndtr((value.unsqueeze(-1) - loc) / scale)  # [*S, *B, K]

    def icdf(self, value: Tensor) -> Tensor:
        """Quantiles of a 1-D target: probabilities ``[*S, *B] -> [*S, *B, 1]``.

        Solved by safeguarded Newton iteration inside the bracket of the component quantiles,
        vectorised over every row. Probabilities 0 and 1 give -inf and +inf.
        """
        log_weights, loc, scale = self._univariate_parts("icdf")
        return _univariate.mixture_quantile(log_weights, loc, scale, value).unsqueeze(-1)

    def highest_density_intervals(self, coverage: float = 0.9) -> HighestDensityIntervals:
        """The smallest set of intervals holding probability ``coverage`` (1-D targets).

        Returns ``HighestDensityIntervals(bounds [*B, K, 2], mask [*B, K], level [*B])``: the
        region ``{y : p(y) >= level}``, as up to ``K`` disjoint intervals sorted by lower bound.
        """
        log_weights, loc, scale = self._univariate_parts("highest_density_intervals")
        return _univariate.highest_density_intervals(log_weights, loc, scale, coverage)

    # ------------------------------------------------------------------ marginals, conditionals
    def marginal(self, dims: Sequence[int]) -> GaussianMixture:
        """The exact marginal mixture over ``y[dims]`` (in the order given)."""
        dims = self._dims(dims)
        loc = self.loc[..., dims]
        if self.scale_tril is not None:
            covariance = self.component_covariance[..., dims, :][..., :, dims]
            return GaussianMixture(self.logits, loc, scale_tril=torch.linalg.cholesky(covariance))
        scale = self.scale[..., dims] if self._covariance_type == "diagonal" else self.scale
        return GaussianMixture(self.logits, loc, scale=scale)

    def condition(self, dims: Sequence[int], values: Tensor) -> GaussianMixture:
        """The exact conditional mixture of the other dims given ``y[dims] = values``.

        Each component is conditioned in closed form and re-weighted by how well it explains the
        observed part: ``π_k' ∝ π_k N(values | μ_k,b, Σ_k,bb)``.

        Args:
            dims: Observed dimensions ``b``.
            values: Observed values, ``[*B, len(dims)]`` (broadcast against the batch).

        Returns:
            A mixture over the remaining dimensions, in ascending order.
        """
        observed = self._dims(dims)
        free = [d for d in range(self.loc.shape[-1]) if d not in observed]
        if not free:
            raise ValueError("condition() needs at least one dimension left unobserved.")
        logits = self.log_weights + self.marginal(observed).component_log_prob(values)
        if self.scale_tril is None:  # independent dimensions: only the weights change
            scale = self.scale[..., free] if self._covariance_type == "diagonal" else self.scale
            return GaussianMixture(logits, self.loc[..., free], scale=scale)
        # Cholesky of the covariance with observed dims first, [[L_bb, 0], [L_ab, L_aa]]:
        # then μ_a|b = μ_a + L_ab L_bb⁻¹ (v - μ_b) and Σ_a|b = L_aa L_aaᵀ, without any inverse.
        order = observed + free
        n_observed = len(observed)
        tril = torch.linalg.cholesky(self.component_covariance[..., order, :][..., :, order])
        tril_bb = tril[..., :n_observed, :n_observed]
        tril_ab = tril[..., n_observed:, :n_observed]
        residual = values.unsqueeze(-2) - self.loc[..., observed]  # [*B, K, b]
        whitened = torch.linalg.solve_triangular(tril_bb, residual.unsqueeze(-1), upper=False)
        loc = self.loc[..., free] + (tril_ab @ whitened).squeeze(-1)
        return GaussianMixture(logits, loc, scale_tril=tril[..., n_observed:, n_observed:])

    # ------------------------------------------------------------------ change of units
    def affine(self, shift: Tensor, scale: Tensor) -> GaussianMixture:
        """The distribution of ``shift + scale * Y``, for ``shift, scale`` of shape ``[D]``.

        ``scale`` must be positive (a per-dimension change of units, as when undoing a
        standardisation). An isotropic mixture stays isotropic only if ``scale`` is uniform.
        """
        shift = torch.as_tensor(shift, dtype=self.loc.dtype, device=self.loc.device)
        scale = torch.as_tensor(scale, dtype=self.loc.dtype, device=self.loc.device)
        loc = shift + scale * self.loc
        if self.scale_tril is not None:  # diag(s) L is still lower triangular, positive diagonal
            return GaussianMixture(self.logits, loc, scale_tril=scale.unsqueeze(-1) * self.scale_tril)
        if self._covariance_type == "diagonal":
            return GaussianMixture(self.logits, loc, scale=self.scale * scale)
        if bool((scale == scale[..., :1]).all()):
            return GaussianMixture(self.logits, loc, scale=self.scale * scale[..., 0])
        return GaussianMixture(self.logits, loc, scale=self.scale.unsqueeze(-1) * scale)
