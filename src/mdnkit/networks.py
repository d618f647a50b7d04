"""Backbones: networks from inputs ``[*B, F]`` to features ``[*B, H]`` for a mixture head.

With ``n_members=M`` the same layers hold ``M`` independent networks side by side (weights
``[M, in, out]``), mapping ``[M, *B, F]`` to ``[M, *B, H]``: one batched matrix product per layer
trains a deep ensemble as fast as one wide network, instead of ``M`` small ones in turn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

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


class EnsembleLinear(nn.Module):
    """``M`` independent linear layers applied at once: ``y[m] = x[m] @ weight[m] + bias[m]``.

    Each member is initialised as :class:`torch.nn.Linear` would be (uniform in
    ``±1/sqrt(in_features)``), independently, so members start from different weights.

    Args:
        in_features, out_features: Sizes of each member's layer.
        n_members: Number of members ``M``.

    Shapes:
        ``weight [M, in, out]``, ``bias [M, out]``; input ``[M, *B, in]``, output ``[M, *B, out]``.

    Example:
        >>> layer = EnsembleLinear(3, 2, n_members=4)
        >>> layer(torch.zeros(4, 5, 3)).shape
        torch.Size([4, 5, 2])
    """

    def __init__(self, in_features: int, out_features: int, n_members: int) -> None:
        super().__init__()
        self.in_features, self.out_features, self.n_members = in_features, out_features, n_members
        bound = 1.0 / math.sqrt(in_features) if in_features > 0 else 0.0
        self.weight = nn.Parameter(torch.empty(n_members, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, out_features).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """``[M, *B, in] -> [M, *B, out]``: one batched matrix product over the members."""
        batch = x.shape[1:-1]
        rows = x.reshape(self.n_members, -1, self.in_features)  # [M, N, in]
        out = torch.baddbmm(self.bias.unsqueeze(1), rows, self.weight)  # [M, N, out]
        return out.reshape(self.n_members, *batch, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, n_members={self.n_members}"


class MLP(nn.Sequential):
    """Fully connected layers, each followed by the activation.

    Args:
        in_features: Input size ``F``.
        hidden_sizes: Width of each hidden layer; empty gives the identity (a linear MDN).
        activation: Name of the nonlinearity, one of :data:`ACTIVATIONS`.
        n_members: ``None`` for one network ``[*B, F] -> [*B, H]``; ``M`` for ``M`` independent
            networks in :class:`EnsembleLinear` layers, ``[M, *B, F] -> [M, *B, H]``.

    Example:
        >>> import torch
        >>> MLP(3, (16, 8))(torch.zeros(5, 3)).shape
        torch.Size([5, 8])
        >>> MLP(3, (16, 8), n_members=4)(torch.zeros(4, 5, 3)).shape
        torch.Size([4, 5, 8])
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        n_members: int | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            linear = (
                nn.Linear(width, int(size)) if n_members is None
                else EnsembleLinear(width, int(size), n_members)
            )
            layers += [linear, ACTIVATIONS[activation]()]
            width = int(size)
        super().__init__(*layers)
        self.out_features = width
