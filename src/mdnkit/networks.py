"""Backbones: networks from inputs ``[*B, F]`` to features ``[*B, H]`` for a mixture head."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from torch import nn

Activation = Literal["relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus", "sigmoid"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}


class MLP(nn.Sequential):
    """Fully connected layers, each followed by the activation.

    Args:
        in_features: Input size ``F``.
        hidden_sizes: Width of each hidden layer; empty gives the identity (a linear MDN).
        activation: Name of the nonlinearity, one of :data:`ACTIVATIONS`.

    Example:
        >>> import torch
        >>> MLP(3, (16, 8))(torch.zeros(5, 3)).shape
        torch.Size([5, 8])
    """

    def __init__(self, in_features: int, hidden_sizes: Sequence[int] = (64, 64), activation: Activation = "relu") -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, int(size)), ACTIVATIONS[activation]()]
            width = int(size)
        super().__init__(*layers)
        self.out_features = width
