"""Changes of units that a network owns: per-dimension standardisation kept in float64.

A :class:`Standardize` maps raw values to ``(value - shift) / scale``. Its buffers stay float64
whatever the module is cast to (``.float()``, ``.to(torch.float32)``), because a float32 shift
loses a target like ``1e6 ± 1``: float32 has 7 significant digits. Only device moves apply.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["Standardize"]


class Standardize(nn.Module):
    """``value -> (value - shift) / scale`` per dimension, in float64.

    Args:
        shift, scale: ``[*E]`` (``[D]``, or the shape of one input row); ``scale`` positive.

    Example:
        >>> unit = Standardize(torch.tensor([1e6]), torch.tensor([2.0])).float()
        >>> unit(torch.tensor([[1e6 + 1.0]], dtype=torch.float64))
        tensor([[0.5000]], dtype=torch.float64)
    """

    def __init__(self, shift: Tensor | np.ndarray, scale: Tensor | np.ndarray) -> None:
        super().__init__()
        shift = torch.as_tensor(shift, dtype=torch.float64).clone()
        scale = torch.as_tensor(scale, dtype=torch.float64).clone()
        if shift.shape != scale.shape or not bool((scale > 0).all() and torch.isfinite(scale).all()):
            raise ValueError(f"Standardize needs shift and scale of one shape with scale > 0, got "
                             f"{tuple(shift.shape)} and {scale.flatten().tolist()}.")
        self.register_buffer("shift", shift)
        self.register_buffer("scale", scale)

    def forward(self, value: Tensor) -> Tensor:
        """``[*B, *E] -> [*B, *E]`` standardised, float64."""
        return (value.to(torch.float64) - self.shift) / self.scale

    def log_abs_det_jacobian(self) -> Tensor:
        """``Σ_j log scale_j``: what a standardised-unit NLL gains in original units."""
        return self.scale.log().sum()

    def _apply(self, fn, recurse: bool = True):  # noqa: D401 - torch's hook for .to() and friends
        # Move the buffers to wherever ``fn`` sends a tensor, but never change their dtype.
        for name, buffer in self._buffers.items():
            if buffer is not None:
                device = fn(torch.zeros(0, device=buffer.device)).device
                self._buffers[name] = buffer.to(device)
        return self

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shift.shape)}"
