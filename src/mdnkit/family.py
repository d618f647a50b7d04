"""The component-family contract: what a mixture head's flat output means.

A :class:`Family` declares, for ``K`` components over a ``D``-dimensional target, the sizes of
the raw head outputs after the ``K`` logits (each part component-major, so a head can slice out
components), the constraints that turn them into the distribution's parameters (visible here:
``softplus(raw) + floor`` for anything positive), the data-driven starting values, the support
of the target, and the :class:`~mdnkit.mixture.Mixture` built from the parameters. The families
themselves and their registry are in :mod:`mdnkit.families`.

The target's units are the family's too. A network standardises ``y`` by an affine map
``(y - shift) / scale`` and maps its mixture back with ``Mixture.affine(shift, scale)``; that is
right for a target on the whole real line and wrong for one with a restricted support (a shift
moves the support, and a log-normal is not closed under shifts). So each family declares the
map it accepts, :attr:`Family.target_transform`, and computes it from the training targets
(:meth:`Family.target_units`), which the estimator uses:

* ``"affine"``: ``y`` on the real line, ``shift`` the mean and ``scale`` the spread;
* ``"scale"``: ``y > 0``, ``shift = 0`` and ``scale`` the geometric mean (``log y`` centred);
* ``"bounds"``: ``y`` in a declared ``(low, high)``, mapped onto ``(0, 1)``: ``shift = low``,
  ``scale = high - low``, fixed by the bounds, not by the data;
* ``"none"``: angles, left as they are (``shift = 0, scale = 1``): radians stay radians.

:meth:`Family.check_targets` refuses targets outside the support and names the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import numpy as np
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
    #: The change of target units the family's mixtures are closed under (see the module doc).
    target_transform: ClassVar[Literal["affine", "scale", "bounds", "none"]] = "affine"

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

    def check_targets(self, y: np.ndarray) -> None:
        """Raise ``ValueError`` naming the rows of ``y [N, D]`` outside the support (none here)."""

    def target_units(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shift, scale)``, each ``[D]``, of the map ``(y - shift) / scale`` from the user's
        units into the head's, for training targets ``y [N, D]`` (checked first)."""
        self.check_targets(y)
        return y.mean(axis=0), y.std(axis=0)


__all__ = ["Family", "inverse_softplus", "positive"]
