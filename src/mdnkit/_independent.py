"""Shared plumbing of mixtures whose components are products of 1-D distributions.

Student-t, Laplace, log-normal, logit-normal and von Mises components all have independent
target dimensions and parameters of shape ``[*B, K, D]``; :class:`IndependentMixture` holds them
and gives the exact marginals and conditionals that independence allows. Each family subclass
names its parameters (:attr:`IndependentMixture.component_parameters`) and supplies the 1-D
maths. :class:`LocScaleFamily` is the head side of the families with one location and one
scale per component and dimension (Laplace, log-normal). The family helpers here check targets
against a declared support and name the rows that fail.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from mdnkit import _univariate
from mdnkit.family import Family, positive
from mdnkit.mixture import Mixture

__all__ = ["IndependentMixture", "LocScaleFamily", "check_rows", "units_fixed"]


class IndependentMixture(Mixture):
    """A batch of mixtures of components with independent dimensions (abstract).

    Args:
        logits: Unnormalised log mixture weights, ``[*B, K]``.
        **parameters: Each named in :attr:`component_parameters`, ``[*B, K, D]``.
    """

    component_parameters: ClassVar[tuple[str, ...]]

    def __init__(self, logits: Tensor, **parameters: Tensor) -> None:
        names = self.component_parameters
        if set(parameters) != set(names):
            raise TypeError(f"{type(self).__name__} takes logits and {list(names)}, got {sorted(parameters)}.")
        first = parameters[names[0]]
        if first.dim() < 2 or logits.shape[-1:] != first.shape[-2:-1]:
            raise ValueError(
                f"`logits` [*batch, K] and `{names[0]}` [*batch, K, D] must agree on K, got "
                f"{tuple(logits.shape)} and {tuple(first.shape)}."
            )
        if any(parameters[name].shape[-2:] != first.shape[-2:] for name in names):
            shapes = {name: tuple(parameters[name].shape) for name in names}
            raise ValueError(f"every parameter must end in [K, D] = {tuple(first.shape[-2:])}, got {shapes}.")
        batch_shape = _univariate.broadcast_shapes(logits.shape[:-1], *(parameters[n].shape[:-2] for n in names))
        k, d = first.shape[-2:]
        self.logits = logits.expand(*batch_shape, k)
        for name in names:
            setattr(self, name, parameters[name].expand(*batch_shape, k, d))
        self._finish_init(batch_shape, d)

    def parameters(self) -> dict[str, Tensor]:
        return {"logits": self.logits, **{name: getattr(self, name) for name in self.component_parameters}}

    def _with_parameters(self, **parameters: Tensor) -> IndependentMixture:
        return type(self)(**parameters)

    def _gathered(self, index: Tensor, shape: torch.Size) -> list[Tensor]:
        """Every component parameter at component ``index [*S, *B]``: ``[*S, *B, D]`` each."""
        return [self._gather(getattr(self, name), index, shape) for name in self.component_parameters]

    def marginal(self, dims: Sequence[int]) -> IndependentMixture:
        """The exact marginal over ``y[dims]``: the components' dimensions are independent."""
        dims = self._dims(dims)
        return type(self)(self.logits, **{n: getattr(self, n)[..., dims] for n in self.component_parameters})

    def condition(self, dims: Sequence[int], values: Tensor) -> IndependentMixture:
        """The exact conditional of the other dims given ``y[dims] = values [*B, len(dims)]``:
        each component keeps its parameters, re-weighted by how well it explains ``values``."""
        observed = self._dims(dims)
        free = [d for d in range(self.event_shape[0]) if d not in observed]
        if not free:
            raise ValueError("condition() needs at least one dimension left unobserved.")
        logits = self.log_weights + self.marginal(observed).component_log_prob(values)
        return type(self)(logits, **{n: getattr(self, n)[..., free] for n in self.component_parameters})


class LocScaleFamily(Family):
    """Families whose components have a location and a scale per dimension (abstract).

    Raw parts: ``loc [K·D]`` as it is, ``scale [K·D]`` as ``softplus(raw) + min_scale``; the
    mixture is :attr:`mixture_class` of ``(logits, loc, scale)``.
    """

    parameter_names = ("loc", "scale")
    mixture_class: ClassVar[type[IndependentMixture]]

    def raw_sizes(self) -> list[int]:
        return [self.n_components * self.dim] * 2

    def constrain(self, raw: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        shape = (self.n_components, self.dim)
        loc_raw, scale_raw = raw
        return loc_raw.unflatten(-1, shape), positive(scale_raw, self.min_scale).unflatten(-1, shape)

    def mixture(self, logits: Tensor, *parameters: Tensor) -> IndependentMixture:
        return self.mixture_class(logits, *parameters)


def _tracing() -> bool:
    """True inside ``torch.export`` / ``torch.compile``, where a data-dependent check cannot run."""
    return bool(torch.compiler.is_compiling())


def units_fixed(family: str, shift: Tensor, scale: Tensor, *, shift_allowed: bool, scale_allowed: bool) -> None:
    """Refuse a change of units the family is not closed under (a shift of a positive target,
    a rescaling of an angle), with a message that says what would be right."""
    if _tracing():
        return
    if not shift_allowed and bool((torch.as_tensor(shift) != 0).any()):
        raise ValueError(
            f"the {family} family is not closed under shifts (its support would move): affine() "
            f"needs shift 0, got {torch.as_tensor(shift).flatten().tolist()}; scale the target only."
        )
    if not scale_allowed and bool((torch.as_tensor(scale) != 1).any()):
        raise ValueError(
            f"the {family} family models angles in radians (period 2π): affine() needs scale 1, got "
            f"{torch.as_tensor(scale).flatten().tolist()}; a shift (a rotation) is allowed."
        )


def check_rows(y: np.ndarray, inside: np.ndarray, family: str, support: str) -> None:
    """Raise if any row of ``y [N, D]`` has a value outside the support (``inside [N, D]`` False).

    The message names the family, the support, how many rows fail and the first of them.
    """
    bad = np.flatnonzero(~np.asarray(inside).all(axis=1))
    if len(bad):
        first = ", ".join(str(int(i)) for i in bad[:5])
        example = y[bad[0]].tolist()
        raise ValueError(
            f"the {family} family needs every target in {support}; {len(bad)} of {len(y)} rows are "
            f"not (first rows, counting from 0: {first}; row {int(bad[0])} is {example})."
        )
