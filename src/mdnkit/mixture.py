"""Mixtures generic over their component family: the base of every distribution mdnkit returns.

A :class:`Mixture` holds, for each of ``batch_shape`` rows, ``K`` components over a
``D``-dimensional target, with weights ``π = softmax(logits)``:

.. math:: p(y) = \\sum_k \\pi_k \\, p_k(y).

A family (:class:`~mdnkit.distributions.GaussianMixture`,
:class:`~mdnkit.student_t.StudentTMixture`) subclasses it and supplies the component maths:
``component_log_prob``, the component moments, a 1-D component cdf and a sampler. Everything
else comes from here: ``log_prob`` by logsumexp, total mean and variance, the 1-D mixture cdf and
quantiles (safeguarded Newton in a bracket, :mod:`mdnkit._univariate`), and the plumbing that
only moves parameters around (``expand``, ``to``, :func:`cat`, row selection, the mixture of
ensemble members). Every parameter tensor has the batch dimensions first and the component
dimension ``K`` right after them (as torch's ``MixtureSameFamily`` keeps ``K`` rightmost in the
components' batch shape), which is what makes that plumbing generic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.distributions import Categorical, Distribution

from mdnkit import _univariate

__all__ = ["Mixture", "cat", "mixture_of_members"]


class Mixture(Distribution):
    """A batch of ``K``-component mixtures over ``D``-dimensional targets (abstract).

    Subclasses set ``logits [*B, K]`` and their component parameters (each ``[*B, K, ...]``),
    call :meth:`_finish_init`, and implement :meth:`parameters`, :meth:`_with_parameters`,
    :meth:`component_log_prob`, :attr:`component_mean`, :attr:`component_variance`,
    :meth:`_component_cdf`, :meth:`_draw` and :meth:`affine` (which a network's change of
    units needs).
    """

    arg_constraints: dict = {}  # checked by each family, with messages that name the shape
    has_rsample = False
    family: str = "mixture"

    def _finish_init(self, batch_shape: torch.Size, dim: int) -> None:
        self.log_weights = torch.log_softmax(self.logits, dim=-1)  # [*B, K]
        super().__init__(batch_shape, torch.Size([dim]), validate_args=False)

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> dict[str, Tensor]:
        """Every parameter tensor by name, logits first; each ``[*B, K, ...]``."""
        raise NotImplementedError

    def _with_parameters(self, **parameters: Tensor) -> Mixture:
        """A mixture of the same family and type from :meth:`parameters`-style tensors."""
        raise NotImplementedError

    def _map(self, function: Callable[[Tensor, int], Tensor]) -> Mixture:
        """Apply ``function(tensor, n_batch_dims)`` to every parameter and rebuild."""
        n_batch = len(self.batch_shape)
        return self._with_parameters(**{name: function(t, n_batch) for name, t in self.parameters().items()})

    # ------------------------------------------------------------------ description
    @property
    def n_components(self) -> int:
        return self.logits.shape[-1]

    @property
    def weights(self) -> Tensor:
        """Mixture weights ``π``, ``[*B, K]``."""
        return self.log_weights.exp()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, n_components={self.n_components})"
        )

    # ------------------------------------------------------------------ densities
    def component_log_prob(self, value: Tensor) -> Tensor:
        """Log density of every component, ``[*S, *B, D] -> [*S, *B, K]``."""
        raise NotImplementedError

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density, ``[*S, *B, D] -> [*S, *B]``, by logsumexp over components (finite for any
        finite ``value``, however far from every component)."""
        return torch.logsumexp(self.component_log_prob(value) + self.log_weights, dim=-1)

    def component_log_interval(self, lower: Tensor, upper: Tensor) -> Tensor:
        """``log P_k(lower < Y <= upper)`` of every component for the box between two corners,
        ``[*S, *B, D]`` each ``-> [*S, *B, K]`` (families with independent dimensions and a cdf)."""
        raise NotImplementedError(
            f"bin probabilities are not available for the {self.family} family: they need each "
            "component's cdf in every dimension (gaussian with diagonal or isotropic covariance, "
            "laplace, lognormal)."
        )

    def interval_log_prob(self, lower: Tensor, upper: Tensor) -> Tensor:
        """Log-probability of the box ``lower < Y <= upper``, ``[*S, *B, D]`` each ``-> [*S, *B]``.

        .. math:: \\log P = \\operatorname{logsumexp}_k \\big(\\log π_k + \\textstyle\\sum_j
                  \\log(F_{kj}(u_j) - F_{kj}(l_j))\\big),

        each cdf difference computed in log space (:func:`mdnkit._special.log_interval_symmetric`),
        so a bin far in a tail keeps its tiny probability instead of rounding to 0. This is what a
        model of rounded targets is trained and scored on (``MDNRegressor(target_resolution=h)``).
        """
        return torch.logsumexp(self.component_log_interval(lower, upper) + self.log_weights, dim=-1)

    def responsibilities(self, value: Tensor) -> Tensor:
        """Posterior component probabilities ``p(k | y)``, ``[*S, *B, D] -> [*S, *B, K]``."""
        return torch.softmax(self.component_log_prob(value) + self.log_weights, dim=-1)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, sample_shape: torch.Size | Sequence[int] = (), temperature: float = 1.0) -> Tensor:
        """Draw ``[*sample_shape, *B, D]`` samples on the distribution's device.

        ``temperature`` T sharpens (T < 1) or flattens (T > 1) the mixture as in sketch-rnn: the
        weights become ``softmax(logits / T)`` and each component's scale ``√T`` times wider.
        """
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}.")
        sample_shape = torch.Size(sample_shape)
        shape = sample_shape + self.batch_shape
        if shape.numel() == 0:  # Categorical.sample refuses to draw zero samples
            return self.logits.new_empty(*shape, self.event_shape[0])
        index = Categorical(logits=self.log_weights / temperature, validate_args=False).sample(
            sample_shape
        )  # [*S, *B]
        return self._draw(index, shape, temperature)

    def _draw(self, index: Tensor, shape: torch.Size, temperature: float) -> Tensor:
        """One draw from component ``index [*S, *B]`` of each row, ``[*S, *B, D]``."""
        raise NotImplementedError

    def _gather(self, tensor: Tensor, index: Tensor, shape: torch.Size) -> Tensor:
        """``tensor [*B, K, *E]`` at component ``index [*S, *B]``: ``[*S, *B, *E]``."""
        tail = tensor.shape[len(self.batch_shape) + 1:]
        expanded = tensor.expand(*shape, *tensor.shape[len(self.batch_shape):])
        position = index.view(*shape, 1, *[1] * len(tail)).expand(*shape, 1, *tail)
        return expanded.gather(len(shape), position).squeeze(len(shape))

    # ------------------------------------------------------------------ moments
    @property
    def component_mean(self) -> Tensor:
        """Mean of each component, ``[*B, K, D]``."""
        raise NotImplementedError

    @property
    def component_variance(self) -> Tensor:
        """Variance of each component, per dimension, ``[*B, K, D]``."""
        raise NotImplementedError

    @property
    def component_stddev(self) -> Tensor:
        """``[*B, K, D]``."""
        return self.component_variance.sqrt()

    @property
    def mean(self) -> Tensor:
        """``Σ_k π_k m_k``, ``[*B, D]``."""
        return (self.weights.unsqueeze(-1) * self.component_mean).sum(-2)

    @property
    def variance(self) -> Tensor:
        """Law of total variance, per dimension: ``Σ_k π_k (σ_k² + (m_k - m)²)``, ``[*B, D]``."""
        spread = (self.component_mean - self.mean.unsqueeze(-2)).square()
        return (self.weights.unsqueeze(-1) * (self.component_variance + spread)).sum(-2)

    @property
    def stddev(self) -> Tensor:
        return self.variance.sqrt()

    # ------------------------------------------------------------------ univariate
    def _require_1d(self, method: str) -> None:
        if self.event_shape[0] != 1:
            raise ValueError(
                f"{method} needs a 1-D target (event_shape (1,)), this mixture has event_shape "
                f"{tuple(self.event_shape)}; use marginal([i]) first."
            )

    def _component_cdf(self, value: Tensor) -> Tensor:
        """Each component's cdf for a 1-D target: ``value [*S, *B] -> [*S, *B, K]``."""
        raise NotImplementedError

    def _bracket(self) -> tuple[Tensor, Tensor]:
        """Each component's centre and spread for a 1-D target, ``[*B, K]`` each: where the
        quantile search starts (the mean and standard deviation, when both are finite)."""
        return self.component_mean[..., 0], self.component_stddev[..., 0]

    def _kinks(self) -> Tensor | None:
        """Where a 1-D density may peak without being smooth, ``[*B, J]`` (``None``: nowhere):
        the mode search's grid can step over a peak at a kink, and polishing assumes smoothness."""
        return None

    def cdf(self, value: Tensor) -> Tensor:
        """``P(Y <= value)`` for a 1-D target: ``[*S, *B, 1] -> [*S, *B]``."""
        self._require_1d("cdf")
        self._check_event(value)
        return (self.weights * self._component_cdf(value[..., 0])).sum(-1)

    def icdf(self, value: Tensor) -> Tensor:
        """Quantiles of a 1-D target: probabilities ``[*S, *B] -> [*S, *B, 1]``.

        Safeguarded Newton on ``F(y) - q`` with slope ``p(y)``, inside a bracket found by
        widening ``[min_k c_k - s_k, max_k c_k + s_k]`` (centres and spreads of :meth:`_bracket`) until it holds the quantile, solved in
        float64 for every row at once. Probabilities 0 and 1 give -inf and +inf.
        """
        self._require_1d("icdf")
        exact = self.to(dtype=torch.float64)

        def cdf_and_pdf(x: Tensor) -> tuple[Tensor, Tensor]:
            y = x.unsqueeze(-1)
            return exact.cdf(y), exact.log_prob(y).exp()

        centre, spread = exact._bracket()
        quantile = _univariate.quantile_by_bracketing(
            cdf_and_pdf, (centre - spread).amin(-1), (centre + spread).amax(-1), spread.amin(-1), value
        )
        return quantile.to(self.logits.dtype).unsqueeze(-1)

    def highest_density_intervals(self, coverage: float = 0.9) -> _univariate.HighestDensityIntervals:
        """The smallest set holding ``coverage`` of each 1-D density, as intervals: bisection on
        the density's level over its tabulated level sets (:func:`mdnkit.conformal.hpd_region`;
        on the circle for angles, where a set through ±π is two intervals)."""
        from mdnkit._level_sets import _check_coverage, hpd_region

        return hpd_region(self, _check_coverage(coverage))

    def modes(self, max_iter: int = 500, tol: float = 1e-7):
        """Every local maximum of each 1-D density, by a grid search polished by golden-section
        steps (:func:`mdnkit._grid_modes.grid_modes`; ``max_iter`` and ``tol`` are the Gaussian
        search's). Returns ``Modes(value [*B, M, 1], log_prob [*B, M], mask [*B, M])``."""
        if self.event_shape[0] != 1:
            raise NotImplementedError(
                f"modes() of a {self.event_shape[0]}-D {self.family} mixture is not available; "
                "take each column's marginal([j]).modes(), or use the Gaussian family.")
        from mdnkit._grid_modes import grid_modes

        return grid_modes(self, period=self._period)

    _period: float | None = None  # the circle's length, for angles

    # ------------------------------------------------------------------ plumbing
    def to(self, *args, **kwargs) -> Mixture:
        """A copy with every parameter passed through ``Tensor.to(*args, **kwargs)``."""
        return self._map(lambda t, _: t.to(*args, **kwargs))

    def expand(self, batch_shape: Sequence[int], _instance=None) -> Mixture:
        batch_shape = torch.Size(batch_shape)
        return self._map(lambda t, n_batch: t.expand(*batch_shape, *t.shape[n_batch:]))

    def rows(self, index: slice | Tensor) -> Mixture:
        """The mixtures of the rows ``index`` of the first batch dimension."""
        return self._map(lambda t, _: t[index])

    def affine(self, shift: Tensor, scale: Tensor) -> Mixture:
        """The distribution of ``shift + scale * Y`` for positive ``scale [D]`` (a change of units)."""
        raise NotImplementedError

    def _dims(self, dims: Sequence[int]) -> list[int]:
        """Distinct indices into the target's dimensions, made non-negative."""
        dim = self.event_shape[0]
        dims = [int(d) for d in dims]
        if not dims or len(set(dims)) != len(dims) or not all(-dim <= d < dim for d in dims):
            raise ValueError(f"dims must be distinct indices into a {dim}-D target, got {dims}.")
        return [d % dim for d in dims]

    def _check_event(self, value: Tensor) -> None:
        if value.dim() < 1 or value.shape[-1] != self.event_shape[0]:
            raise ValueError(
                f"value must end in the event dimension D={self.event_shape[0]}, got shape "
                f"{tuple(value.shape)}."
            )


def cat(parts: Sequence[Mixture], dim: int = 0) -> Mixture:
    """Join mixtures of one family and type along batch dimension ``dim`` (``>= 0``)."""
    if len(parts) == 1:
        return parts[0]
    names = parts[0].parameters().keys()
    tensors = [part.parameters() for part in parts]
    return parts[0]._with_parameters(**{name: torch.cat([t[name] for t in tensors], dim) for name in names})


def mixture_of_members(
    members: Mixture, logit_mask: Tensor | None = None, member_log_weights: Tensor | None = None,
) -> Mixture:
    """The mixture of a batch of mixtures over its leading dimension, equally weighted by default.

    Args:
        members: Batch shape ``(M, *B)`` with ``K`` components each.
        logit_mask: Optional ``[M, K]``; components where it is ``-inf`` are left out.
        member_log_weights: Optional ``[M]``, ``log w_m`` with ``Σ w_m = 1``; ``None``: ``w_m = 1/M``.

    Returns:
        Batch shape ``B``, ``M·K`` components (member-major), log-weights ``log π_mk + log w_m``.
    """
    n_members = members.batch_shape[0]
    position = len(members.batch_shape) - 1  # where the member axis goes: just before K
    keep = None
    if logit_mask is not None and bool(logit_mask.isinf().any()):
        keep = torch.nonzero(~logit_mask.isinf().flatten()).flatten().to(members.logits.device)

    def merge(tensor: Tensor, _: int) -> Tensor:  # [M, *B, K, *E] -> [*B, M·K, *E]
        merged = tensor.movedim(0, position).flatten(position, position + 1)
        return merged if keep is None else merged.index_select(position, keep)

    parameters = {name: merge(t, 0) for name, t in members.parameters().items()}
    if member_log_weights is None:
        parameters["logits"] = merge(members.log_weights, 0) - math.log(n_members)
    else:
        shift = member_log_weights.to(members.log_weights).view(n_members, *[1] * (members.log_weights.dim() - 1))
        parameters["logits"] = merge(members.log_weights + shift, 0)
    return members._with_parameters(**parameters)
