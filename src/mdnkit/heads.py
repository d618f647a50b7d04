"""Mixture heads: features ``[*B, H]`` to a :class:`~mdnkit.mixture.Mixture` of any family.

The head is one linear layer whose flat output is split, by a declared list of sizes, into
logits, means and scale parameters. Constraints are made here, visibly: scales are
``softplus(raw) + min_scale`` (so a component cannot collapse to a point and give NaN, the
Edward tutorial's failure mode, and grows only linearly where the raw value is large), and a full
covariance is a Cholesky factor with that positive diagonal and a free strictly-lower part.

:class:`MDNEnsemble` holds ``M`` independently initialised MDNs in batched layers (a deep
ensemble, Lakshminarayanan et al. 2017) and predicts their equally weighted mixture of mixtures.
"""

from __future__ import annotations

import math
import warnings
from typing import get_args

import numpy as np
import torch
from torch import Tensor, nn

from mdnkit._gaussian_hot_path import component_major_log_prob
from mdnkit.distributions import CovarianceType
from mdnkit.families import FamilyName, make_family
from mdnkit.mixture import Mixture, mixture_of_members
from mdnkit.model import DensityNetwork
from mdnkit.networks import MLP, Activation, EnsembleLinear, FeatureEmbedding

COVARIANCE_TYPES: tuple[str, ...] = get_args(CovarianceType)
_HOT_PATH_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


class MixtureHead(nn.Module):
    """Linear layer from features to a ``K``-component mixture over ``D``-dimensional targets.

    Args:
        in_features: Feature size ``H``.
        out_features: Target dimension ``D``.
        n_components: Number of components ``K``.
        covariance_type: ``"diagonal"``, ``"isotropic"`` or ``"full"`` (Gaussian only).
        min_scale: Floor added to every scale (in the units of the target).
        n_members: ``None`` for one head; ``M`` for ``M`` independent heads in one
            :class:`~mdnkit.networks.EnsembleLinear`, features ``[M, *B, H]`` to mixtures with
            batch shape ``(M, *B)``. Such a head also keeps ``logit_mask [M, K]`` (0, or ``-inf``
            for a component pruned from one member only, see :meth:`mask`).
        family: The component family, one of :data:`~mdnkit.families.FAMILY_NAMES`.
        family_options: The family's own settings (e.g. ``{"min_df": 2.0}`` for Student-t).

    The flat output is the ``K`` logits, then the family's raw parts
    (:meth:`~mdnkit.family.Family.raw_sizes`), each component-major, so :meth:`prune` can
    slice rows; the constraints are the family's (:meth:`~mdnkit.family.Family.constrain`).

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
        n_members: int | None = None,
        family: FamilyName = "gaussian",
        family_options: dict | None = None,
    ) -> None:
        super().__init__()
        if covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got {covariance_type!r}.")
        k, d = n_components, out_features
        self.family = make_family(family, k, d, min_scale, covariance_type=covariance_type, **(family_options or {}))
        self.n_components, self.out_features = k, d
        self.covariance_type = covariance_type
        self.min_scale = float(min_scale)
        self.n_members = n_members
        self.split_sizes = [k, *self.family.raw_sizes()]
        if n_members is None:
            self.linear: nn.Module = nn.Linear(in_features, sum(self.split_sizes))
        else:
            self.linear = EnsembleLinear(in_features, sum(self.split_sizes), n_members)
            self.register_buffer("logit_mask", torch.zeros(n_members, k))

    def params(self, features: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """``[*B, H] ->`` ``(logits [*B, K], *the family's parameters)``: tensors only, the path
        for export and ``vmap`` (``[M, *B, H]`` and a leading ``M`` for an ensemble head).

        ``dtype``: cast the linear layer's outputs to it before the family's constraints, e.g.
        float64 for reported distributions; :meth:`log_prob` scores from the same outputs.
        """
        if dtype is None:
            logits, *raw = self.linear(features).split(self.split_sizes, dim=-1)
            if self.n_members is not None:  # pruned components of single members: weight exactly 0
                logits = logits + self.logit_mask.view(self.n_members, *[1] * (logits.dim() - 2), self.n_components)
        else:
            logits, *raw = self._outputs_by_row(features).to(dtype).split(self.split_sizes, dim=-1)
        return (logits, *self.family.constrain(raw))

    def _outputs_by_row(self, features: Tensor) -> Tensor:
        """:meth:`_component_major` for any batch shape, seen row-major: ``[*B, H] -> [*B, S]``
        (``[M, *B, H] -> [M, *B, S]``), ``S = sum(split_sizes)``, a transposed view of the same
        product, not a copy. Pruned members' logits are ``-inf`` here too, as in :meth:`params`."""
        rows = features.reshape(-1, features.shape[-1]) if self.n_members is None \
            else features.reshape(self.n_members, -1, features.shape[-1])
        return self._component_major(rows).transpose(-1, -2).reshape(*features.shape[:-1], sum(self.split_sizes))

    def forward(self, features: Tensor) -> Mixture:
        """``[*B, H] ->`` the family's mixture with batch shape ``B`` (``[M, *B, H]`` and
        ``(M, *B)`` for an ensemble head)."""
        return self.family.mixture(*self.params(features))

    def component_weights(self, features: Tensor) -> Tensor:
        """Mixture weights ``π``, component-major: ``features [N, H]`` -> ``[K, N]`` (``[M, N, H]``
        -> ``[M, K, N]`` for an ensemble head); a softmax over a leading ``K``, fast on CPUs."""
        return self._component_major(features, self.n_components).softmax(dim=-2)

    def _component_major(self, features: Tensor, n_outputs: int | None = None) -> Tensor:
        """The linear layer's first ``n_outputs`` outputs (all by default) as ``[(M,) n, N]``:
        ``W hᵀ + b`` in one product; pruned members' logits ``-inf``."""
        n = n_outputs or sum(self.split_sizes)
        if self.n_members is None:
            return torch.addmm(self.linear.bias[:n, None], self.linear.weight[:n], features.t())
        raw = torch.baddbmm(self.linear.bias[:, :n, None], self.linear.weight[..., :n].transpose(1, 2),
                            features.transpose(1, 2))  # the weights are [M, H, 3K]
        raw[:, :self.n_components].add_(self.logit_mask.unsqueeze(-1))
        return raw

    @property
    def has_hot_path(self) -> bool:
        """Whether :meth:`log_prob` has a component-major path: a Gaussian over one target."""
        return self.family.name == "gaussian" and self.out_features == 1

    def log_prob(self, features: Tensor, y: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """``log p(y)`` in the head's units: ``features [N, H]`` (``[M, N, H]`` for an ensemble
        head) and ``y [N, D]`` (an ensemble head also takes each member's own ``[M, N, D]``, a
        target-noise search) -> ``[N]`` (``[M, N]``), what training and scoring spend their time on.

        A Gaussian mixture over one target takes the component-major hot path
        (:mod:`mdnkit._gaussian_hot_path`); any other head is ``self(features).log_prob(y)``.
        ``dtype``: compute the density in this dtype (the head's output is cast), e.g. float64
        for reported scores of a float32 network.
        """
        ensemble = self.n_members is not None
        # float16's exponent range is too short for the hot path's floor; targets with a
        # gradient (a learned target) need autograd's gradient for y.
        if not (self.has_hot_path and y.dim() in (2, 2 + ensemble) and features.dim() == 2 + ensemble
                and features.dtype in _HOT_PATH_DTYPES and not y.requires_grad):
            mixture = self(features)
            return (mixture if dtype is None else mixture.to(dtype)).log_prob(y if dtype is None else y.to(dtype))
        if dtype is not None:
            # Scores: the outputs params(features, dtype) constrains, component-major and cast to
            # ``dtype`` first, so the same numbers as self.params(features, dtype)'s mixture to
            # the precision of ``dtype``. One cast of the contiguous [3K, N] product, not three
            # transposing casts of its parts.
            raw = self._component_major(features).to(dtype)
            return component_major_log_prob(raw, _rows_last(y).to(dtype), self.min_scale, self.n_components)
        return component_major_log_prob(self._component_major(features), _rows_last(y), self.min_scale, self.n_components)

    @torch.no_grad()
    def initialize(self, y: Tensor, random_state: int | None = None) -> None:
        """Data-driven start: component centres spread over the targets, uniform weights.

        Centres are k-means centres of ``y`` (quantiles in 1-D), scales the spread of each
        cluster, and the weight matrix is shrunk so the starting mixture barely depends on the input.

        Args:
            y: Targets ``[N, D]`` in the units the head will model (standardised, in mdnkit).
        """
        k, d = self.n_components, self.out_features
        targets = y.detach().double().cpu().numpy().reshape(-1, d)
        centres, spread = _spread_centres(targets, k, random_state)
        floor = max(2.0 * self.min_scale, 1e-2 * float(targets.std(axis=0).mean()) if len(targets) > 1 else 1e-2)
        spread = np.maximum(spread, floor)
        raw = self.family.initial_bias(torch.as_tensor(centres), torch.as_tensor(spread))
        bias = torch.cat([torch.zeros(k, dtype=torch.float64), *raw])
        self.linear.bias.copy_(bias)  # broadcast over the members of an ensemble head
        self.linear.weight.mul_(0.1)

    @torch.no_grad()
    def prune(self, keep: Tensor) -> None:
        """Remove components for good: slice their rows out of the linear layer.

        Args:
            keep: ``[K]`` booleans, True for the components to keep (at least one).
        """
        keep = torch.as_tensor(keep, dtype=torch.bool, device="cpu")
        if keep.shape != (self.n_components,) or not bool(keep.any()):
            raise ValueError(f"keep must be {self.n_components} booleans with at least one True.")
        k, kept = self.n_components, int(keep.sum())
        rows, offset = [], 0
        for size in self.split_sizes:  # each part is component-major: [K, size // K]
            per_component = size // k
            index = torch.arange(offset, offset + size).view(k, per_component)
            rows.append(index[keep].flatten())
            offset += size
        rows_index = torch.cat(rows).to(self.linear.bias.device)
        with torch.random.fork_rng(devices=[]):  # the new layer's throwaway init must not move the user's RNG
            linear = self._pruned_layer(rows_index, keep)
        linear.bias = nn.Parameter(self.linear.bias[..., rows_index].clone())
        self.linear = linear
        self.n_components = kept
        self.family = self.family.with_components(kept)
        self.split_sizes = [kept, *self.family.raw_sizes()]

    def _pruned_layer(self, rows_index: Tensor, keep: Tensor) -> nn.Module:
        """The output layer with only the rows ``rows_index`` of the current one (bias set by the caller)."""
        if self.n_members is None:
            linear = nn.Linear(self.linear.in_features, len(rows_index))
            linear.weight = nn.Parameter(self.linear.weight[rows_index].clone())
        else:
            linear = EnsembleLinear(self.linear.in_features, len(rows_index), self.n_members)
            linear.weight = nn.Parameter(self.linear.weight[..., rows_index].clone())
            self.logit_mask = self.logit_mask[:, keep.to(self.logit_mask.device)].clone()
        return linear

    @torch.no_grad()
    def mask(self, dead: Tensor) -> None:
        """Give components of single ensemble members weight zero (logit ``-inf``) for good.

        Args:
            dead: ``[M, K]`` booleans; every member must keep at least one component.
        """
        if self.n_members is None:
            raise ValueError("mask() is for ensemble heads; prune() a single head.")
        dead = torch.as_tensor(dead, dtype=torch.bool).to(self.logit_mask.device)
        if dead.shape != self.logit_mask.shape or bool((dead | self.logit_mask.isinf()).all(1).any()):
            raise ValueError(f"dead must be {tuple(self.logit_mask.shape)} booleans leaving each member a component.")
        self.logit_mask[dead] = -math.inf


def _spread_centres(y: np.ndarray, k: int, random_state: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``k`` centres over the rows of ``y [N, D]`` and each one's per-dimension spread, ``[k, D]``.

    Works on at most 5000 rows: a starting point needs no more, and k-means stays fast.
    """
    n, d = y.shape
    rng = np.random.default_rng(random_state)
    # choice, not a permutation of every row, beyond 5000: 0.7 s for 1e7 rows.
    sample = y[rng.permutation(n)] if n <= 5000 else y[rng.choice(n, 5000, replace=False)]
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


class MDN(DensityNetwork):
    """A Mixture Density Network: backbone MLP then a mixture head; ``forward`` returns the mixture.

    Usable as a plain PyTorch module, e.g. as the output layer of a larger model: train it with
    ``loss = -mdn(x).log_prob(y).mean()``. Given units (:meth:`set_units`, as
    :class:`~mdnkit.MDNRegressor` does) it standardises inputs and maps the mixture back itself.

    Args:
        in_features: Input size ``F``.
        out_features: Target dimension ``D``.
        n_components: Number of mixture components ``K``.
        hidden_sizes: Hidden layer widths of the backbone.
        activation: Backbone nonlinearity.
        covariance_type: ``"diagonal"``, ``"isotropic"`` or ``"full"`` (Gaussian only).
        min_scale: Floor on every component scale.
        family: Component family, one of :data:`~mdnkit.families.FAMILY_NAMES`.
        family_options: The family's own settings.
        backbone: Any module ``[*B, *shape] -> [*B, H]`` with an ``out_features = H`` attribute
            (:func:`~mdnkit.networks.build_backbone` sets it) instead of the MLP; then
            ``in_features``, ``hidden_sizes`` and ``activation`` are not used.
        feature_embedding: ``"periodic"``: the MLP starts with a
            :class:`~mdnkit.networks.PeriodicEmbedding` of each input; ``None``: raw inputs.

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
        family: FamilyName = "gaussian",
        family_options: dict | None = None,
        backbone: nn.Module | None = None,
        feature_embedding: FeatureEmbedding | None = None,
    ) -> None:
        super().__init__()
        _check_backbone(backbone, feature_embedding)
        self.backbone = MLP(in_features, hidden_sizes, activation, embedding=feature_embedding) if backbone is None \
            else backbone
        self.head = MixtureHead(self.backbone.out_features, out_features, n_components, covariance_type,
                                min_scale, family=family, family_options=family_options)
        self._init_units()

    def standardized_params(self, x: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """``x [*B, F] ->`` ``(logits [*B, K], *parameters)`` in the network's units (in
        ``dtype``: :meth:`MixtureHead.params`)."""
        return self.head.params(self.backbone(x), dtype)

    def training_losses(self, x: Tensor, y: Tensor, row_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(nll [1], nll)``: the mean NLL of standardised ``y [N, D]`` given ``x [N, F]`` (of
        the density, or of the bins: :meth:`target_log_prob`), as a one-member ensemble; with
        ``row_weights [1, N]`` a weighted mean."""
        return self.losses(self.target_log_prob(self.head, self.backbone(x), y), row_weights)

    def losses(self, log_prob: Tensor, row_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`training_losses` from ``log p(y_i | x_i) [N]``."""
        if row_weights is None:
            nll = -log_prob.mean()
        else:
            nll = -(log_prob * row_weights[0]).sum() / row_weights[0].sum().clamp(min=1e-12)
        return nll.unsqueeze(0), nll.detach()

    def initialize(self, y: Tensor, random_state: int | None = None) -> None:
        """Start the head's mixture over the targets ``y [N, D]`` (see :meth:`MixtureHead.initialize`)."""
        self.head.initialize(y, random_state)


class MDNEnsemble(DensityNetwork):
    r"""``M`` independently initialised MDNs in batched layers; ``forward`` returns their mixture.

    The prediction is the mixture of mixtures with ``M·K`` components and weights ``π_mk / M``
    (``π_mk w_m`` with member weights, :meth:`set_member_weights`):

    .. math:: p(y \mid x) = \frac1M \sum_{m=1}^{M} \sum_{k=1}^{K} \pi_{mk}(x)\,
              \mathcal N(y \mid \mu_{mk}(x), \Sigma_{mk}(x)),

    components ordered member-major (``m·K + k``). Training minimises the sum of the members' own
    mean NLLs (:meth:`training_losses`): the gradient of each member's weights is that of its own
    NLL, so with Adam (per-weight updates) the members train as if apart (deep ensembles,
    Lakshminarayanan et al. 2017), in one batched step; :func:`~mdnkit.training.train` also
    stops each member, and keeps its best weights, by its own validation NLL.

    Args:
        in_features, out_features, n_components, hidden_sizes, activation, covariance_type,
        min_scale, family, family_options, feature_embedding: As for :class:`MDN`, per member.
        n_members: Number of members ``M``.
        backbone: Instead of the batched MLP, a module ``[M, *B, *shape] -> [M, *B, H]`` whose
            parameters all have the member first (:class:`~mdnkit.networks.StackedBackbone`).

    Example:
        >>> ensemble = MDNEnsemble(1, 1, n_components=3, hidden_sizes=(16,), n_members=4)
        >>> ensemble.members(torch.randn(10, 1)).batch_shape, ensemble(torch.randn(10, 1)).n_components
        (torch.Size([4, 10]), 12)
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
        n_members: int = 5,
        family: FamilyName = "gaussian",
        family_options: dict | None = None,
        backbone: nn.Module | None = None,
        feature_embedding: FeatureEmbedding | None = None,
    ) -> None:
        super().__init__()
        _check_backbone(backbone, feature_embedding)
        self.n_members = int(n_members)
        self.config = dict(
            in_features=in_features, out_features=out_features, hidden_sizes=tuple(hidden_sizes),
            activation=activation, covariance_type=covariance_type, min_scale=min_scale,
            family=family, family_options=family_options, feature_embedding=feature_embedding,
        )
        # EnsembleLinear layers for the MLP; any other backbone as a StackedBackbone of M copies.
        self.backbone = MLP(in_features, hidden_sizes, activation, n_members=self.n_members,
                            embedding=feature_embedding) if backbone is None \
            else backbone
        self.custom_backbone = backbone is not None
        self.head = MixtureHead(
            self.backbone.out_features, out_features, n_components, covariance_type, min_scale, self.n_members,
            family=family, family_options=family_options,
        )
        self.register_buffer("member_log_weights", None)  # None: every member weighs 1/M
        self._init_units()

    @torch.no_grad()
    def set_member_weights(self, weights: Tensor | np.ndarray | None) -> None:
        """Weigh member ``m`` by ``weights[m]`` (``[M]``, non-negative, normalised here) in every
        mixture of the members; ``None``: equal weights. Kept in the state dict when set."""
        if weights is None:
            self.member_log_weights = None
            return
        weights = torch.as_tensor(np.asarray(weights, dtype=np.float64))
        if weights.shape != (self.n_members,) or not bool(torch.isfinite(weights).all() and (weights >= 0).all()) \
                or float(weights.sum()) <= 0:
            raise ValueError(f"member weights must be {self.n_members} non-negative numbers, not all 0; got {weights.tolist()}")
        like = self.head.linear.weight
        self.member_log_weights = (weights / weights.sum()).log().to(device=like.device, dtype=like.dtype)

    def standardized_params(self, x: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """``x [*B, F] ->`` the members' ``(logits [M, *B, K], *parameters)`` in the network's
        units (in ``dtype``: :meth:`MixtureHead.params`)."""
        return self.head.params(self.backbone(x.expand(self.n_members, *x.shape)), dtype)

    def members(self, x: Tensor) -> Mixture:
        """Each member's mixture, ``x [*B, F]`` -> batch shape ``(M, *B)``, in original units.

        Components pruned from one member only (:meth:`MixtureHead.mask`) have logit ``-inf``.
        """
        return self.family.mixture(*self.params(x))

    def _combine(self, mixture: Mixture) -> Mixture:
        return mixture_of_members(mixture, self.head.logit_mask, self.member_log_weights)

    def forward(self, x: Tensor) -> Mixture:
        """``x [*B, F] ->`` the mixture with batch shape ``B`` and ``M·K`` components (fewer
        when components were pruned from single members), in original units."""
        return super().forward(x)

    def training_losses(
        self, x: Tensor, y: Tensor, row_weights: Tensor | None = None, member_inputs: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``(member_nll [M], ensemble_nll)`` on a batch ``x [N, F]``, ``y [N, D]``; with
        ``member_inputs`` ``x [M, N, F]`` holds each member's own inputs (its own input noise).

        ``member_nll[m] = mean_i -log p_m(y_i | x_i)``, whose sum is what training minimises and
        by which each member is stopped; ``ensemble_nll`` is the mean NLL of the mixture of
        members, ``-mean_i log (Σ_m w_m p_m(y_i | x_i))`` with ``w_m = 1/M`` or the member weights
        (detached), what is reported.

        With ``row_weights [M, N]`` (``w_mi >= 0``, e.g. 1 where row ``i`` is one of member
        ``m``'s own rows) both are weighted: ``member_nll[m] = -Σ_i w_mi log p_m / Σ_i w_mi`` (0
        for a member without rows), and each row is scored by the mixture of its members,
        ``-log(Σ_m w_mi p_m / Σ_m w_mi)``, averaged over the rows of some member (a deep
        ensemble's holdouts; member weights do not enter there).
        """
        features = self.backbone(x if member_inputs else x.expand(self.n_members, *x.shape))
        log_prob = self.target_log_prob(self.head, features, y).reshape(self.n_members, -1)  # [M, N]
        return self.losses(log_prob, row_weights)

    def losses(self, log_prob: Tensor, row_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """:meth:`training_losses` from the members' ``log p_m(y_i | x_i) [M, N]``."""
        if row_weights is None:
            member_nll = -log_prob.mean(1)
            ensemble_nll = -self.mixed(log_prob.detach()).mean()
            return member_nll, ensemble_nll
        weighted = row_weights > 0
        member_nll = -torch.where(weighted, log_prob * row_weights, 0).sum(1) / row_weights.sum(1).clamp(min=1e-12)
        row_total = row_weights.sum(0)
        scored = row_total > 0
        mixture = torch.logsumexp(torch.where(weighted, log_prob.detach() + row_weights.log(), -math.inf), 0)
        # A masked mean, not boolean indexing: no device sync at every step on a GPU.
        ensemble_nll = -torch.where(scored, mixture - row_total.log(), 0).sum() / scored.sum().clamp(min=1)
        return member_nll, ensemble_nll

    def mixed(self, log_prob: Tensor) -> Tensor:
        """The members' mixture from each member's ``log p_m [M, N]``: ``log Σ_m w_m p_m -> [N]``."""
        if self.member_log_weights is None:
            return torch.logsumexp(log_prob, 0) - math.log(self.n_members)
        # Renormalised in log_prob's dtype: weights stored in float32 sum to 1 only to float32, and
        # the members' mixture (a softmax over its logits) renormalises them too.
        log_weights = self.member_log_weights.to(log_prob)
        return torch.logsumexp(log_prob + (log_weights - log_weights.logsumexp(0)).unsqueeze(-1), 0)

    def initialize(self, y: Tensor, random_state: int | None = None) -> None:
        """The same data-driven head start for every member (:meth:`MixtureHead.initialize`);
        the backbones keep their independent random weights, so the members still differ."""
        self.head.initialize(y, random_state)

    @torch.no_grad()
    def member(self, index: int) -> MDN:
        """Member ``index`` as a standalone :class:`MDN` (a copy, without its masked components)."""
        config = self.config
        mdn = MDN(
            config["in_features"], config["out_features"], self.head.n_components, config["hidden_sizes"],
            config["activation"], config["covariance_type"], config["min_scale"], config["family"],
            config["family_options"], backbone=self.backbone.member(index) if self.custom_backbone else None,
            feature_embedding=config["feature_embedding"],
        )
        weight = self.head.linear.weight
        mdn.to(device=weight.device, dtype=weight.dtype)
        single_backbone = [] if self.custom_backbone else [m for m in mdn.backbone if isinstance(m, nn.Linear)]
        batched_backbone = [] if self.custom_backbone else [m for m in self.backbone if isinstance(m, EnsembleLinear)]
        for single, batched in zip([*single_backbone, mdn.head.linear], [*batched_backbone, self.head.linear]):
            single.weight.copy_(batched.weight[index].T)
            single.bias.copy_(batched.bias[index])
        if config["feature_embedding"] is not None:
            mdn.backbone[0] = self.backbone[0].member(index)
        masked = self.head.logit_mask[index].isinf()
        if bool(masked.any()):
            mdn.head.prune(~masked.cpu())
        if self.x_transform is not None:
            mdn.set_units(self.x_transform.shift, self.x_transform.scale, self.y_transform.shift,
                          self.y_transform.scale)
        if self.bin_half_width is not None:
            mdn.set_bin_half_width(self.bin_half_width.cpu().numpy())
        return mdn


def _check_backbone(backbone: nn.Module | None, feature_embedding: str | None) -> None:
    if backbone is not None and feature_embedding is not None:
        raise ValueError("feature_embedding applies to the built-in MLP; with backbone=, embed the inputs in it.")


def _rows_last(y: Tensor) -> Tensor:
    """One target ``[N, 1]`` as ``[N]``, or each member's ``[M, N, 1]`` as ``[M, 1, N]``: the
    shapes that broadcast against component-major parameters ``[(M,) K, N]``."""
    return y[:, 0] if y.dim() == 2 else y[..., 0].unsqueeze(-2)


__all__ = ["COVARIANCE_TYPES", "MDN", "MDNEnsemble", "MixtureHead", "mixture_of_members"]
