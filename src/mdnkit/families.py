"""The component families a head can use, by name: Gaussian (here), Student-t, Laplace,
log-normal (``y > 0``), logit-normal (``y`` in a declared ``(low, high)``) and von Mises (angles).

Each family is a :class:`~mdnkit.family.Family` (raw sizes, constraints, starting values) and a
:class:`~mdnkit.mixture.Mixture` subclass. Adding one is one module (as :mod:`mdnkit.student_t`)
and one entry in :func:`make_family`'s table.

Example:
    >>> family = make_family("gaussian", n_components=3, dim=2, covariance_type="full")
    >>> family.raw_sizes()
    [6, 6, 3]
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor
from torch.distributions import constraints

from mdnkit.distributions import GaussianMixture
from mdnkit.family import Family, inverse_softplus, positive
from mdnkit.laplace import LaplaceFamily
from mdnkit.logit_normal import LogitNormalFamily
from mdnkit.lognormal import LogNormalFamily
from mdnkit.student_t import StudentTFamily
from mdnkit.von_mises import VonMisesFamily

FamilyName = Literal["gaussian", "student_t", "laplace", "lognormal", "logit_normal", "von_mises"]


class GaussianFamily(Family):
    """Gaussian components, ``"diagonal"``, ``"isotropic"`` (Bishop's) or ``"full"`` (Cholesky).

    Raw parts: ``loc [K·D]``, scales ``[K·D]`` (``[K]`` isotropic), and for ``"full"`` the strictly
    lower triangle ``[K·D(D-1)/2]`` of a Cholesky factor whose diagonal is the scales.
    """

    name = "gaussian"
    support = constraints.real

    def __init__(
        self, n_components: int, dim: int, min_scale: float = 1e-3,
        covariance_type: Literal["diagonal", "isotropic", "full"] = "diagonal",
    ) -> None:
        super().__init__(n_components, dim, min_scale)
        if covariance_type not in ("diagonal", "isotropic", "full"):
            raise ValueError(
                f"covariance_type must be one of ('diagonal', 'isotropic', 'full'), got {covariance_type!r}."
            )
        self.covariance_type = covariance_type
        self.parameter_names = ("loc", "scale_tril" if covariance_type == "full" else "scale")
        self._tril_index = torch.tril_indices(dim, dim, offset=-1)

    def options(self) -> dict:
        return {"covariance_type": self.covariance_type}

    def raw_sizes(self) -> list[int]:
        k, d = self.n_components, self.dim
        n_scales = k if self.covariance_type == "isotropic" else k * d
        n_off_diagonal = k * d * (d - 1) // 2 if self.covariance_type == "full" else 0
        return [k * d, n_scales, n_off_diagonal]

    def constrain(self, raw: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        k, d = self.n_components, self.dim
        loc_raw, scale_raw, off_diagonal = raw
        loc = loc_raw.unflatten(-1, (k, d))  # [*B, K, D]
        scale = positive(scale_raw, self.min_scale)
        if self.covariance_type == "isotropic":
            return loc, scale  # [*B, K]
        scale = scale.unflatten(-1, (k, d))  # [*B, K, D]
        if self.covariance_type == "diagonal":
            return loc, scale
        strictly_lower = scale.new_zeros(*scale.shape, d)  # [*B, K, D, D]
        if d > 1:  # none for a 1-D target; its empty part would become an ONNX Reshape of 0 elements
            if self._tril_index.device != scale.device:  # once per device, not a copy per step
                self._tril_index = self._tril_index.to(scale.device)
            rows, cols = self._tril_index
            strictly_lower[..., rows, cols] = off_diagonal.unflatten(-1, (k, -1))
        return loc, strictly_lower + torch.diag_embed(scale)

    def mixture(self, logits: Tensor, *parameters: Tensor) -> GaussianMixture:
        loc, scale = parameters
        if self.covariance_type == "full":
            return GaussianMixture(logits, loc, scale_tril=scale)
        return GaussianMixture(logits, loc, scale=scale)

    def initial_bias(self, centres: Tensor, spread: Tensor) -> list[Tensor]:
        if self.covariance_type == "isotropic":
            spread = spread.mean(dim=1)
        raw_scale = inverse_softplus((spread - self.min_scale).clamp_min(1e-6)).flatten()
        return [centres.flatten(), raw_scale, torch.zeros(self.raw_sizes()[2], dtype=torch.float64)]


FAMILIES: dict[str, type[Family]] = {
    "gaussian": GaussianFamily, "student_t": StudentTFamily, "laplace": LaplaceFamily,
    "lognormal": LogNormalFamily, "logit_normal": LogitNormalFamily, "von_mises": VonMisesFamily,
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def make_family(name: str, n_components: int, dim: int, min_scale: float = 1e-3, **options) -> Family:
    """The family called ``name`` (one of :data:`FAMILY_NAMES`) with its ``options``.

    ``covariance_type`` is a Gaussian option; other families take ``"diagonal"`` (independent
    dimensions) and refuse the rest with a clear error.
    """
    if name not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}, got {name!r}.")
    family = FAMILIES[name]
    if family is not GaussianFamily:
        covariance_type = options.pop("covariance_type", "diagonal")
        if covariance_type != "diagonal":
            raise ValueError(
                f"covariance_type={covariance_type!r} is only available for the gaussian family; "
                f"the {name} family has independent dimensions (covariance_type='diagonal')."
            )
    accepted = [p for p in inspect.signature(family.__init__).parameters if p not in
                ("self", "n_components", "dim", "min_scale")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"the {name} family takes the options {accepted}, got unknown {unknown}.")
    return family(n_components, dim, min_scale, **options)


__all__ = ["FAMILIES", "FAMILY_NAMES", "FamilyName", "GaussianFamily", "make_family"]
