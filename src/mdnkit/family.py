"""The component-family contract: what a mixture head's flat output means.

A :class:`Family` declares, for ``K`` components over a ``D``-dimensional target, the sizes of
the raw head outputs after the ``K`` logits (each part component-major, so a head can slice out
components), the constraints that turn them into the distribution's parameters (visible here:
``softplus(raw) + floor`` for anything positive), the data-driven starting values, the support
of the target, and the :class:`~mdnkit.mixture.Mixture` built from the parameters. The families
themselves and their registry are in :mod:`mdnkit.families`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.distributions import constraints
from torch.nn import functional as F

from mdnkit.mixture import Mixture


def inverse_softplus(x: Tensor) -> Tensor:
    """``softplus⁻¹(x)`` for ``x > 0``."""
    return x + torch.log(-torch.expm1(-x))


def positive(raw: Tensor, floor: float) -> Tensor:
    """``softplus(raw) + floor``: positive, never below ``floor``, linear where ``raw`` is large."""
    # contiguous(): softplus on a strided slice of the flat head output is ~15x slower on CPU.
    return F.softplus(raw.contiguous()) + floor


class Family:
    """``K`` components of one family over ``D``-dimensional targets (abstract).

    Args:
        n_components: ``K``.
        dim: ``D``.
        min_scale: Floor on every scale parameter (in the units the head models).
    """

    name: ClassVar[str]
    parameter_names: ClassVar[tuple[str, ...]]  # of the mixture, after "logits"
    support: ClassVar[constraints.Constraint] = constraints.real

    def __init__(self, n_components: int, dim: int, min_scale: float = 1e-3) -> None:
        self.n_components, self.dim, self.min_scale = int(n_components), int(dim), float(min_scale)

    def options(self) -> dict:
        """The settings besides ``K``, ``D`` and ``min_scale`` (stored in model files)."""
        return {}

    def with_components(self, n_components: int) -> Family:
        """The same family with another number of components (after pruning)."""
        return type(self)(n_components, self.dim, self.min_scale, **self.options())

    def raw_sizes(self) -> list[int]:
        """Flat sizes of the raw parts after the logits, each ``K × (size / K)`` component-major."""
        raise NotImplementedError

    def constrain(self, raw: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """Raw parts ``[*B, size]`` to the parameters named by :attr:`parameter_names`."""
        raise NotImplementedError

    def mixture(self, logits: Tensor, *parameters: Tensor) -> Mixture:
        """The mixture of ``logits [*B, K]`` and the parameters of :meth:`constrain`."""
        raise NotImplementedError

    def initial_bias(self, centres: Tensor, spread: Tensor) -> list[Tensor]:
        """Float64 biases of the raw parts that start component ``k`` at ``centres [K, D]`` with
        per-dimension spread ``spread [K, D]`` (both in the head's units)."""
        raise NotImplementedError


__all__ = ["Family", "inverse_softplus", "positive"]
