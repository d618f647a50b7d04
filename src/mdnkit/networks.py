"""Backbones: networks from inputs ``[*B, F]`` to features ``[*B, H]`` for a mixture head.

With ``n_members=M`` the same layers hold ``M`` independent networks side by side (weights
``[M, in, out]``), mapping ``[M, *B, F]`` to ``[M, *B, H]``: one batched matrix product per layer
trains a deep ensemble as fast as one wide network, instead of ``M`` small ones in turn.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
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


_IN_PLACE = {"relu", "leaky_relu"}  # inplace, with the same gradients as out of place


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
            # In place where torch allows it (the linear output is not kept for its gradient):
            # no fresh [N, H] tensor per layer, whose pages cost as much to fault in as ReLU.
            nonlinearity = ACTIVATIONS[activation]
            layers += [linear, nonlinearity(inplace=True) if activation in _IN_PLACE else nonlinearity()]
            width = int(size)
        super().__init__(*layers)
        self.out_features = width


def _feature_size(module: nn.Module, input_shape: Sequence[int]) -> int:
    """``H`` of a backbone mapping ``[N, *input_shape]`` to ``[N, H]``, by one dry run on 2 rows
    (of a copy in eval mode: the module's own batch-norm statistics must not move)."""
    parameter = next(module.parameters(), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    with torch.no_grad():
        out = copy.deepcopy(module).eval()(torch.zeros(2, *input_shape, dtype=dtype))
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"The module must map inputs [N, {', '.join(map(str, input_shape))}] to features [N, H]; "
            f"on 2 rows it returned {shape}."
        )
    return int(out.shape[1])


class StackedBackbone(nn.Module):
    """``M`` independently initialised copies of any backbone, their weights stacked member-first.

    ``[M, N, *shape] -> [M, N, H]``: ``torch.func.vmap`` over the members where every operation
    of the backbone has a batching rule (linear and convolutional layers), otherwise one
    ``functional_call`` per member (``aten::gru`` has none in torch 2.13, so a GRU loops). Either
    way every parameter and buffer has the member first, as the training loop needs for per-member
    clipping, learning rates and best weights.

    Args:
        modules: The ``M`` members, each ``[N, *shape] -> [N, H]``.
        input_shape: ``shape`` of one input row.
    """

    def __init__(self, modules: Sequence[nn.Module], input_shape: Sequence[int]) -> None:
        super().__init__()
        from torch.func import stack_module_state

        self.n_members = len(modules)
        self.out_features = _feature_size(modules[0], input_shape)
        parameters, buffers = stack_module_state(list(modules))
        self._names = sorted(parameters)
        self._buffer_names = sorted(buffers)
        for name in self._names:  # "." is not allowed in a parameter's name
            self.register_parameter(name.replace(".", "__"), nn.Parameter(parameters[name].detach().clone()))
        for name in self._buffer_names:
            self.register_buffer(name.replace(".", "__"), buffers[name].clone())
        # The skeleton the members' weights are called through; it holds no weights of its own.
        self._skeleton = [modules[0].to("meta")]
        self._vmap = self._vmap_works(input_shape)

    def train(self, mode: bool = True) -> StackedBackbone:
        # The skeleton is hidden from the module tree (it holds no weights), so pass the mode on:
        # dropout and batch norm must behave as the members' mode says.
        super().train(mode)
        self._skeleton[0].train(mode)
        return self

    def _stacked(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        return ({name: getattr(self, name.replace(".", "__")) for name in self._names},
                {name: getattr(self, name.replace(".", "__")) for name in self._buffer_names})

    def _vmap_works(self, input_shape: Sequence[int]) -> bool:
        """Whether vmap has forward and backward batching rules for every op of the backbone."""
        try:
            out = self._vmapped(torch.zeros(self.n_members, 2, *input_shape, dtype=self._dtype()))
            torch.autograd.grad(out.sum(), [p for p in self.parameters() if p.requires_grad], allow_unused=True)
            return True
        except (RuntimeError, NotImplementedError, ValueError):
            return False

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def _vmapped(self, x: Tensor) -> Tensor:
        from torch.func import functional_call, vmap

        skeleton = self._skeleton[0]
        call = vmap(lambda p, b, rows: functional_call(skeleton, (p, b), (rows,)), randomness="different")
        return call(*self._stacked(), x)

    @torch.no_grad()
    def member(self, index: int) -> nn.Module:
        """Member ``index`` as a standalone module ``[N, *shape] -> [N, H]`` (a copy)."""
        parameters, buffers = self._stacked()
        reference = next(iter(parameters.values()))
        module = copy.deepcopy(self._skeleton[0]).to_empty(device=reference.device).to(dtype=reference.dtype)
        for name, value in [*module.named_parameters(), *module.named_buffers()]:
            value.copy_((parameters | buffers)[name][index])
        module.out_features = self.out_features
        return module.train(self.training)

    def forward(self, x: Tensor) -> Tensor:
        """``[M, N, *shape] -> [M, N, H]``."""
        if self._vmap:
            return self._vmapped(x)
        from torch.func import functional_call

        parameters, buffers = self._stacked()
        return torch.stack([
            functional_call(self._skeleton[0], ({k: v[m] for k, v in parameters.items()},
                                                {k: v[m] for k, v in buffers.items()}), (x[m],))
            for m in range(self.n_members)
        ])


def build_backbone(
    factory: type[nn.Module] | Callable[..., nn.Module], kwargs: dict | None, input_shape: Sequence[int],
    n_members: int | None = None,
) -> nn.Module:
    """A user's backbone from its class or factory: ``factory(**kwargs)``, ``[N, *shape] -> [N, H]``
    with ``out_features = H`` found by a dry run; ``M`` independent copies for ``n_members=M``."""
    def make() -> nn.Module:
        module = factory(**(kwargs or {}))
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must build a torch.nn.Module, got {type(module).__name__}.")
        return module

    if n_members is None:
        module = make()
        module.out_features = _feature_size(module, input_shape)
        return module
    return StackedBackbone([make() for _ in range(n_members)], input_shape)
