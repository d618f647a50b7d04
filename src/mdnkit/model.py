"""The contract of a density network that owns its units.

A :class:`DensityNetwork` works inside in its own (standardised) units and maps in and out by
its own float64 :class:`~mdnkit.transforms.Standardize` transforms, so the module alone gives
densities in the user's units (the log-Jacobian of the target scaling comes with the scales):

* :meth:`~DensityNetwork.params` ``x -> tensors`` (the logits and the family's parameters in
  original units): the path for ``torch.export``, ONNX and ``vmap``;
* ``forward(x)`` the :class:`~mdnkit.mixture.Mixture` built from those tensors;
* :meth:`~DensityNetwork.training_losses` on standardised batches: ``(member_nll [M],
  reported)``, the loss of any model, a single network being an ensemble of one.

Without transforms (``set_units`` never called) it works in the units it is given, as a plain
output layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from mdnkit.mixture import Mixture
from mdnkit.transforms import Standardize

if TYPE_CHECKING:  # annotations only
    from mdnkit.family import Family
    from mdnkit.heads import MixtureHead

__all__ = ["DensityNetwork"]


class DensityNetwork(nn.Module):
    """Base of :class:`~mdnkit.heads.MDN` and :class:`~mdnkit.heads.MDNEnsemble`.

    Subclasses implement :meth:`standardized_params` (inputs and parameters in the network's
    units), :meth:`_combine` (parameters to the returned mixture) and :meth:`training_losses`.
    """

    n_members: int = 1
    x_transform: Standardize | None
    y_transform: Standardize | None

    def _init_units(self) -> None:
        self.x_transform = None
        self.y_transform = None
        # Not persistent: files keep target_resolution in the estimator's settings, and files
        # written before rounded targets load without it.
        self.register_buffer("bin_half_width", None, persistent=False)

    @property
    def family(self) -> Family:
        return self.head.family

    def set_units(
        self, x_shift: np.ndarray, x_scale: np.ndarray, y_shift: np.ndarray, y_scale: np.ndarray
    ) -> None:
        """Give the network its input and target units: inputs are standardised by
        ``(x - x_shift) / x_scale`` and predictions mapped back by ``y_shift + y_scale * y``.

        Shapes: ``x_shift, x_scale`` those of one input row (``[F]``, or ``[*shape]`` for a
        custom backbone); ``y_shift, y_scale`` ``[D]``.
        """
        device = next(self.parameters()).device
        self.x_transform = Standardize(x_shift, x_scale).to(device)
        self.y_transform = Standardize(y_shift, y_scale).to(device)

    def standardized_params(self, x: Tensor, dtype: torch.dtype | None = None) -> tuple[Tensor, ...]:
        """``x [*B, F]`` in the network's units -> ``(logits, *parameters)`` in its units, the
        head's outputs cast to ``dtype`` (when given) before they are constrained."""
        raise NotImplementedError

    def _combine(self, mixture: Mixture) -> Mixture:
        """The mixture :meth:`forward` returns from the one of :meth:`params`."""
        return mixture

    def params(self, x: Tensor, float64_constraints: bool = True) -> tuple[Tensor, ...]:
        """``x [*B, F]`` in original units -> ``(logits, *the family's parameters)`` in original
        units (float64 when the network has units), each with batch shape ``B`` (``(M, *B)``
        for an ensemble's members).

        ``float64_constraints``: a network with units casts its head's outputs to float64 before
        the family's constraints (a softplus, say), so these are the numbers :meth:`log_prob`
        scores; False constrains in the network's dtype and casts after, as the exports do (ONNX
        Runtime has no float64 Softplus).
        """
        if self.x_transform is not None:
            x = self.x_transform(x).to(self._dtype)
        if self.y_transform is None:
            return self.standardized_params(x)
        parameters = self.standardized_params(x, torch.float64 if float64_constraints else None)
        mixture = self.family.mixture(*parameters).to(torch.float64)
        return tuple(mixture.affine(self.y_transform.shift, self.y_transform.scale).parameters().values())

    def forward(self, x: Tensor) -> Mixture:
        """``x [*B, F]`` in original units -> the mixture of ``y`` in original units."""
        return self._combine(self.family.mixture(*self.params(x)))

    def component_weights(self, x: Tensor) -> Tensor:
        """Each component's weight at standardised inputs ``x [N, *shape]``, component-major:
        ``[K, N]``, or ``[M, K, N]`` for an ensemble's members."""
        ensemble = self.head.n_members is not None
        return self.head.component_weights(self.backbone(x.expand(self.n_members, *x.shape) if ensemble else x))

    def log_prob(self, x: Tensor, y: Tensor, standardized_inputs: bool = False) -> Tensor:
        """``log p(y | x)`` in original units and float64, ``x [N, *shape]``, ``y [N, D]`` -> ``[N]``:
        ``self(x).log_prob(y)`` without building the mixture where the head has its hot path
        (:meth:`~mdnkit.heads.MixtureHead.log_prob`), by the change of variables
        ``log p(y) = log p_net((y - shift) / scale) - Σ log scale``.

        ``standardized_inputs``: ``x`` is already in the network's input units (float64), as
        ``x_transform`` would make it (the estimator standardises once for its novelty check
        too); only for a head with the hot path.
        """
        if not self.head.has_hot_path:
            if standardized_inputs:
                raise ValueError("standardized_inputs needs a head with the hot path (a Gaussian over one target).")
            return self(x).to(torch.float64).log_prob(y.to(torch.float64))
        if standardized_inputs:
            x = x.to(self._dtype)
        elif self.x_transform is not None:
            x = self.x_transform(x).to(self._dtype)
        if self.y_transform is not None:
            y = self.y_transform(y)
        ensemble = self.head.n_members is not None
        features = self.backbone(x.expand(self.n_members, *x.shape) if ensemble else x)
        log_prob = self.head.log_prob(features, y, dtype=torch.float64)  # [(M,) N]
        if ensemble:  # the members' mixture
            log_prob = self.mixed(log_prob)
        return log_prob - self.log_jacobian()

    def set_bin_half_width(self, half_width: np.ndarray | None) -> None:
        """Train on the probability of each target's bin ``y ± half_width`` (``[D]``, in the
        network's standardised units) instead of the density at ``y``; ``None`` for the density."""
        self.bin_half_width = None if half_width is None else torch.as_tensor(
            np.asarray(half_width, dtype=np.float64), device=next(self.parameters()).device)

    def target_log_prob(self, head: MixtureHead, features: Tensor, y: Tensor) -> Tensor:
        """What training maximises for targets ``y [N, D]`` in the head's units, ``[(M,) N]``:
        ``log p(y)``, or with a bin half-width ``w`` the bin's ``log(F(y + w) - F(y - w))``."""
        if self.bin_half_width is None:
            return head.log_prob(features, y)
        # In float64: a bin narrow against a component's scale is a difference of close cdfs.
        exact, value = head(features).to(torch.float64), y.to(torch.float64)
        width = self.bin_half_width.to(device=value.device, dtype=torch.float64)
        return exact.interval_log_prob(value - width, value + width).to(y.dtype)

    def log_jacobian(self) -> float:
        """``Σ_j log σ_y,j``: from a standardised-unit NLL to an original-unit one (0 without units)."""
        return 0.0 if self.y_transform is None else float(self.y_transform.log_abs_det_jacobian())

    def training_losses(self, x: Tensor, y: Tensor, row_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(member_nll [M], reported_nll)`` on standardised ``x [N, F]``, ``y [N, D]``."""
        raise NotImplementedError

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype
