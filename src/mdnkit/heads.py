"""Mixture heads: features ``[*B, H]`` to a :class:`~mdnkit.distributions.GaussianMixture`.

The head is one linear layer whose flat output is split, by a declared list of sizes, into
logits, means and scale parameters. Constraints are made here, visibly: scales are
``softplus(raw) + min_scale`` (so a component cannot collapse to a point and give NaN, the
Edward tutorial's failure mode, and grows only linearly where the raw value is large), and a full
covariance is a Cholesky factor with that positive diagonal and a free strictly-lower part.
"""

from __future__ import annotations

import warnings
from typing import get_args

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from mdnkit.distributions import CovarianceType, GaussianMixture
from mdnkit.networks import MLP, Activation

COVARIANCE_TYPES: tuple[str, ...] = get_args(CovarianceType)


def _inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


class MixtureHead(nn.Module):
    """Linear layer from features to a ``K``-component mixture over ``D``-dimensional targets.

    Args:
        in_features: Feature size ``H``.
        out_features: Target dimension ``D``.
        n_components: Number of components ``K``.
        covariance_type: ``"diagonal"``, ``"isotropic"`` or ``"full"``.
        min_scale: Floor added to every standard deviation (in the units of the target).

    Example:
        >>> head = MixtureHead(8, 2, n_components=3, covariance_type="full")
        >>> head(torch.zeros(5, 8)).sample((4,)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        n_components: int,
        covariance_type: CovarianceType = "diagonal",
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
        k, d = n_components, out_features
        self.n_components, self.out_features = k, d
        self.covariance_type = covariance_type
        self.min_scale = float(min_scale)
        n_scales = k if covariance_type == "isotropic" else k * d
        n_off_diagonal = k * d * (d - 1) // 2 if covariance_type == "full" else 0
        self.split_sizes = [k, k * d, n_scales, n_off_diagonal]  # logits, loc, scale, tril
        self.linear = nn.Linear(in_features, sum(self.split_sizes))
        self.register_buffer("_tril_index", torch.tril_indices(d, d, offset=-1), persistent=False)

    def forward(self, features: Tensor) -> GaussianMixture:
        """``[*B, H] -> GaussianMixture`` with batch shape ``B``."""
        k, d = self.n_components, self.out_features
        logits, loc, raw_scale, off_diagonal = self.linear(features).split(self.split_sizes, dim=-1)
        loc = loc.unflatten(-1, (k, d))  # [*B, K, D]
        # contiguous(): softplus on a strided slice of the flat output is ~15x slower on CPU.
        scale = F.softplus(raw_scale.contiguous()) + self.min_scale
        if self.covariance_type == "isotropic":
            return GaussianMixture(logits, loc, scale=scale)  # scale [*B, K]
        scale = scale.unflatten(-1, (k, d))  # [*B, K, D]
        if self.covariance_type == "diagonal":
            return GaussianMixture(logits, loc, scale=scale)
        strictly_lower = scale.new_zeros(*scale.shape, d)  # [*B, K, D, D]
        rows, cols = self._tril_index
        strictly_lower[..., rows, cols] = off_diagonal.unflatten(-1, (k, -1))
        scale_tril = strictly_lower + torch.diag_embed(scale)
        return GaussianMixture(logits, loc, scale_tril=scale_tril)

    @torch.no_grad()
    def initialize(self, y: Tensor, random_state: int | None = None) -> None:
        """Data-driven start: component means spread over the targets, uniform weights.

        Means are k-means centres of ``y`` (quantiles in 1-D), scales the spread of each cluster,
        and the weight matrix is shrunk so the starting mixture barely depends on the input.

        Args:
            y: Targets ``[N, D]`` in the units the head will model (standardised, in mdnkit).
        """
        k, d = self.n_components, self.out_features
        targets = y.detach().double().cpu().numpy().reshape(-1, d)
        centres, spread = _spread_centres(targets, k, random_state)
        floor = max(2.0 * self.min_scale, 1e-2 * float(targets.std(axis=0).mean()) if len(targets) > 1 else 1e-2)
        spread = np.maximum(spread, floor)
        if self.covariance_type == "isotropic":
            spread = spread.mean(axis=1)
        raw_scale = _inverse_softplus(torch.as_tensor(spread - self.min_scale).clamp_min(1e-6)).flatten()
        bias = torch.cat([
            torch.zeros(k, dtype=torch.float64),
            torch.as_tensor(centres).flatten(),
            raw_scale,
            torch.zeros(self.split_sizes[3], dtype=torch.float64),
        ])
        self.linear.bias.copy_(bias)
        self.linear.weight.mul_(0.1)


def _spread_centres(y: np.ndarray, k: int, random_state: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``k`` centres over the rows of ``y [N, D]`` and each one's per-dimension spread, ``[k, D]``.

    Works on at most 5000 rows: a starting point needs no more, and k-means stays fast.
    """
    n, d = y.shape
    sample = y[np.random.default_rng(random_state).permutation(n)[:5000]]
    if d == 1:
        centres = np.quantile(sample[:, 0], (np.arange(k) + 0.5) / k)[:, None]
    else:
        from sklearn.cluster import KMeans

        with warnings.catch_warnings():  # fewer distinct points than k: duplicates are fine here
            warnings.simplefilter("ignore")
            centres = KMeans(k, n_init=1, random_state=random_state).fit(sample).cluster_centers_
    nearest = ((sample[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    overall = sample.std(axis=0) if len(sample) > 1 else np.ones(d)
    spread = np.stack([
        sample[nearest == j].std(axis=0) if (nearest == j).sum() > 1 else overall / k for j in range(k)
    ])
    return centres, spread


class MDN(nn.Module):
    """A Mixture Density Network: backbone MLP then a mixture head; ``forward`` returns the mixture.

    Usable as a plain PyTorch module, e.g. as the output layer of a larger model: train it with
    ``loss = -mdn(x).log_prob(y).mean()``.

    Args:
        in_features: Input size ``F``.
        out_features: Target dimension ``D``.
        n_components: Number of mixture components ``K``.
        hidden_sizes: Hidden layer widths of the backbone.
        activation: Backbone nonlinearity.
        covariance_type: ``"diagonal"``, ``"isotropic"`` or ``"full"``.
        min_scale: Floor on every component standard deviation.

    Example:
        >>> mdn = MDN(1, 1, n_components=3, hidden_sizes=(16,))
        >>> mixture = mdn(torch.randn(10, 1))
        >>> mixture.batch_shape, mixture.event_shape
        (torch.Size([10]), torch.Size([1]))
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 1,
        n_components: int = 5,
        hidden_sizes: tuple[int, ...] = (64, 64),
        activation: Activation = "relu",
        covariance_type: CovarianceType = "diagonal",
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__()
        self.backbone = MLP(in_features, hidden_sizes, activation)
        self.head = MixtureHead(self.backbone.out_features, out_features, n_components, covariance_type, min_scale)

    def forward(self, x: Tensor) -> GaussianMixture:
        """``x [*B, F] -> GaussianMixture`` with batch shape ``B`` and event shape ``(D,)``."""
        return self.head(self.backbone(x))

    def initialize(self, y: Tensor, random_state: int | None = None) -> None:
        """Start the head's mixture over the targets ``y [N, D]`` (see :meth:`MixtureHead.initialize`)."""
        self.head.initialize(y, random_state)


__all__ = ["COVARIANCE_TYPES", "MDN", "MixtureHead"]
