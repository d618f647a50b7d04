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
FeatureEmbedding = Literal["periodic"]

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


class PeriodicEmbedding(nn.Module):
    r"""Each input feature as ``d`` learned periodic features (PLR, Gorishniy et al. 2022).

    .. math:: e_j(x) = \operatorname{relu}\big([\cos(2π c_j x_j), \sin(2π c_j x_j)]\, W_j + b_j\big),

    with ``k`` learned frequencies ``c_j`` per feature (initially ``N(0, scale²)``; inputs are
    standardised) and a linear map ``W_j [2k, d]`` per feature; the output is the inputs
    themselves (``with_inputs``) and then the ``F·d`` embeddings, side by side. An MLP on raw
    numbers must bend a few ReLU units into every sharp or repeated-value feature (a concrete's
    age in days); per-feature embeddings give it that shape directly, and the raw inputs keep
    smooth dependences as easy as before (without them, kin8nm's NLL was 0.05 worse and Boston's
    0.08 than without embeddings at all; README, Defaults).

    Args:
        in_features: Number of input features ``F``.
        n_members: ``None`` for one network; ``M`` for ``M`` independent embeddings side by
            side (every parameter ``[M, ...]``, inputs ``[M, *B, F]``).
        n_frequencies, d_embedding: ``k`` and ``d``.
        scale: Standard deviation of the initial frequencies.
        with_inputs: Whether the inputs come first in the output, beside their embeddings.

    Shapes:
        ``[(M,) *B, F] -> [(M,) *B, F·(d + 1)]`` (``F·d`` without the inputs).

    Example:
        >>> PeriodicEmbedding(3)(torch.zeros(5, 3)).shape
        torch.Size([5, 51])
    """

    def __init__(self, in_features: int, n_members: int | None = None, n_frequencies: int = 16,
                 d_embedding: int = 16, scale: float = 1.0, with_inputs: bool = True) -> None:
        super().__init__()
        self.in_features, self.n_members, self.with_inputs = in_features, n_members, with_inputs
        self.out_features = in_features * (d_embedding + with_inputs)
        members = () if n_members is None else (n_members,)
        bound = 1.0 / math.sqrt(2 * n_frequencies)  # nn.Linear's, per feature
        self.frequencies = nn.Parameter(scale * torch.randn(*members, in_features, n_frequencies))
        self.weight = nn.Parameter(torch.empty(*members, in_features, 2 * n_frequencies, d_embedding).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(*members, in_features, d_embedding).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        """``[(M,) *B, F] -> [(M,) *B, F·(d + 1)]`` (``F·d`` without the inputs)."""
        members = 1 if self.n_members is None else self.n_members
        return self.parts(x.reshape(members, -1, self.in_features))[-1].reshape(*x.shape[:-1], self.out_features)

    def parts(self, rows: Tensor) -> tuple[Tensor, ...]:
        """The forward pass on ``rows [M, N, F]`` (``M = 1`` for one embedding) with what its
        backward needs (:mod:`mdnkit._fused_step`), feature-major: ``cos, sin [M, F, N, k]``,
        their concatenation ``[M, F, N, 2k]``, the ReLU's output ``[M, F, N, d]`` and, last, the
        layer's output ``[M, N, F·(d + 1)]``.

        Feature-major because each feature's map is one product of a batch of ``M·F``: laid out
        row-major (``[M, N, F, 2k]``), ``einsum`` copied every operand into this layout and back,
        and the copies took longer than the products (six networks of 256 rows: 40 % of a step).
        """
        frequencies, weight, bias = self.member_parameters()
        members, n_rows, n_features = rows.shape
        k, d = frequencies.shape[-1], weight.shape[-1]
        by_feature = rows.transpose(1, 2).contiguous().unsqueeze(-1)  # [M, F, N, 1]: the products below come out feature-major
        angle = (2 * math.pi) * by_feature * frequencies.unsqueeze(2)  # [M, F, N, k]
        cos, sin = angle.cos(), angle.sin()
        periodic = torch.cat([cos, sin], -1)
        embedded = torch.baddbmm(bias.reshape(-1, 1, d), periodic.view(-1, n_rows, 2 * k),
                                 weight.reshape(-1, 2 * k, d)).relu_().view(members, n_features, n_rows, d)
        flat = embedded.transpose(1, 2).reshape(members, n_rows, n_features * d)  # [M, N, F·d]
        return cos, sin, periodic, embedded, torch.cat([rows, flat], -1) if self.with_inputs else flat

    def member_parameters(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(frequencies [M, F, k], weight [M, F, 2k, d], bias [M, F, d])``, views (``M = 1`` for one embedding)."""
        parameters = (self.frequencies, self.weight, self.bias)
        return parameters if self.n_members is not None else tuple(p.unsqueeze(0) for p in parameters)

    def member(self, index: int) -> PeriodicEmbedding:
        """Member ``index`` as a standalone embedding (a copy)."""
        single = PeriodicEmbedding(self.in_features, None, self.frequencies.shape[-1], self.weight.shape[-1],
                                   with_inputs=self.with_inputs)
        single.to(device=self.weight.device, dtype=self.weight.dtype)
        with torch.no_grad():
            for name, value in single.named_parameters():
                value.copy_(getattr(self, name)[index])
        return single

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, n_frequencies={self.frequencies.shape[-1]}, "
                f"d_embedding={self.weight.shape[-1]}, n_members={self.n_members}")


FEATURE_EMBEDDINGS: dict[str, type[nn.Module]] = {"periodic": PeriodicEmbedding}


def feature_embedding_of(network: nn.Module | None) -> FeatureEmbedding | None:
    """``"periodic"`` when ``network``'s MLP backbone starts with a :class:`PeriodicEmbedding`, else ``None``."""
    backbone = getattr(network, "backbone", None)
    first = backbone[0] if isinstance(backbone, MLP) and len(backbone) else None
    return "periodic" if isinstance(first, PeriodicEmbedding) else None


class MLP(nn.Sequential):
    """Fully connected layers, each followed by the activation.

    Args:
        in_features: Input size ``F``.
        hidden_sizes: Width of each hidden layer; empty gives the identity (a linear MDN).
        activation: Name of the nonlinearity, one of :data:`ACTIVATIONS`.
        n_members: ``None`` for one network ``[*B, F] -> [*B, H]``; ``M`` for ``M`` independent
            networks in :class:`EnsembleLinear` layers, ``[M, *B, F] -> [M, *B, H]``.
        embedding: ``"periodic"`` starts with a :class:`PeriodicEmbedding` of the inputs;
            ``None``, the raw inputs.

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
        embedding: FeatureEmbedding | None = None,
    ) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        if embedding is not None and embedding not in FEATURE_EMBEDDINGS:
            raise ValueError(f"feature_embedding must be None or one of {sorted(FEATURE_EMBEDDINGS)}, got {embedding!r}.")
        layers: list[nn.Module] = []
        width = in_features
        if embedding is not None:
            layers.append(FEATURE_EMBEDDINGS[embedding](in_features, n_members))
            width = layers[-1].out_features
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
