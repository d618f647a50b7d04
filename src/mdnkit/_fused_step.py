"""One training step of mdnkit's own batched network, its backward written out: the hot path of small fits.

A default fit on a thousand rows is thousands of steps on batches of 64 rows, and at that size a
step is per-operation overhead, not arithmetic: autograd recording and replaying its graph cost
0.7 ms of a 1.1 ms step (concrete, three networks of two layers of 64), where the products
themselves take a tenth of that. For the network :class:`~mdnkit.MDNRegressor` builds itself, an
:class:`~mdnkit.heads.MDNEnsemble` (or one :class:`~mdnkit.heads.MDN`) of linear layers and ReLU
with a Gaussian head over one target, the gradients are a handful of batched products: with
``h_l = relu(h_{l-1} W_l + b_l)`` and ``δ_l = ∂loss/∂(h_{l-1} W_l + b_l)``,

    ∂loss/∂W_l = h_{l-1}ᵀ δ_l,   ∂loss/∂b_l = Σ_rows δ_l,   δ_{l-1} = (δ_l W_lᵀ) ⊙ [h_{l-1} > 0],

and the head's ``δ`` is the mixture's closed form (:func:`~mdnkit._gaussian_hot_path.raw_gradient`);
a :class:`~mdnkit.networks.PeriodicEmbedding` in front adds its own few products.
:class:`FusedStep` computes them straight into each parameter's ``.grad``; every other network
(a user's backbone, other activations or families, binned targets, several processes) goes
through autograd. Tests compare every gradient with autograd's.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mdnkit._gaussian_hot_path import log_prob_and_parts, raw_gradient
from mdnkit.heads import MDN, MDNEnsemble, _rows_last
from mdnkit.networks import MLP, EnsembleLinear, PeriodicEmbedding

__all__ = ["FusedStep"]


class FusedStep:
    """``(x, y, row_weights, member_inputs, loss_weights) -> (member_nll [M], reported_nll)`` with
    the gradient of ``Σ_m c_m member_nll[m]`` (``c = loss_weights``, or ones) left in every
    parameter's ``.grad``: the module's ``training_losses`` and its backward in one call.

    A single :class:`~mdnkit.heads.MDN` is worked as an ensemble of one (its ``nn.Linear``
    weights seen as ``[1, in, out]``). Build it only for a module :meth:`supports` accepts.
    """

    def __init__(self, module: MDN | MDNEnsemble) -> None:
        self.module = module
        self.batched = isinstance(module, MDNEnsemble)
        first = module.backbone[0] if len(module.backbone) else None
        self.embedding = first if isinstance(first, PeriodicEmbedding) else None
        self.layers = [layer for layer in module.backbone if isinstance(layer, (EnsembleLinear, nn.Linear))]

    @staticmethod
    def supports(module: nn.Module) -> bool:
        """Whether ``module`` is the network this step writes out: an :class:`MDN` or
        :class:`MDNEnsemble` of linear and ReLU layers (after a periodic embedding or not) whose
        head takes the Gaussian hot path on unbinned targets, every parameter trained, and no
        hooks anywhere (autograd would run them; this step does not)."""
        if type(module) not in (MDN, MDNEnsemble) or getattr(module, "custom_backbone", False) \
                or module.bin_half_width is not None or type(module.backbone) is not MLP:
            return False
        head = module.head
        if not head.has_hot_path or head.linear.weight.dtype not in (torch.float32, torch.float64):
            return False
        layers = list(module.backbone)
        embedding = layers.pop(0) if layers and type(layers[0]) is PeriodicEmbedding else None
        linear = EnsembleLinear if isinstance(module, MDNEnsemble) else nn.Linear
        if not all(type(layer) in (linear, nn.ReLU) for layer in layers):
            return False
        written = [p for layer in [*layers, head.linear] if type(layer) is linear for p in (layer.weight, layer.bias)]
        if embedding is not None:
            written += [embedding.frequencies, embedding.weight, embedding.bias]
        return {id(p) for p in module.parameters()} == {id(p) for p in written} \
            and all(p.requires_grad and not _has_hooks(p) for p in written) \
            and not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in module.modules())

    def __call__(
        self, x: Tensor, y: Tensor, row_weights: Tensor | None, member_inputs: bool, loss_weights: Tensor | None,
        trained: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``x [N, F]`` (``[M, N, F]`` with ``member_inputs``), ``y [N, 1]`` or each member's
        ``[M, N, 1]``, ``row_weights [M, N]`` or ``None``, ``loss_weights [M]`` or ``None``;
        ``trained``, the indices of the members whose loss weight is not zero, when some are: the
        backward pass runs on those alone and the others' gradients are zeros. Every member's
        forward pass still runs, for the NLLs returned."""
        module, head = self.module, self.module.head
        n_members = module.n_members if self.batched else 1
        with torch.no_grad():
            inputs = x if member_inputs else x.expand(n_members, *x.shape)  # [M, N, F]
            embedded = None if self.embedding is None else self.embedding.parts(inputs)
            activations = [inputs if embedded is None else embedded[-1]]
            for layer in self.layers:
                weight, bias = self._batched(layer)
                activations.append(torch.baddbmm(bias, activations[-1], weight).relu_())  # [M, N, H]
            features = activations[-1]
            raw = head._component_major(features if self.batched else features[0]).view(n_members, -1, x.shape[-2])
            log_prob, parts = log_prob_and_parts(raw, _rows_last(y), head.min_scale, head.n_components)  # [M, N]
            member_nll, reported = module.losses(log_prob if self.batched else log_prob[0], row_weights)
            d_raw = raw_gradient(parts, _log_prob_gradient(log_prob, row_weights, loss_weights))  # [M, 3K, N]
            if trained is not None:
                # Frozen members (early-stopped, waiting for the others) take most of a noise
                # mixture's steps, and a step's products grow with the members: with 4 and 2 of
                # 6 networks of 256 rows training, a step took 0.91 and 0.66 of the time; at 64
                # rows the copies eat the gain until half are frozen (frozen_members.py --steps).
                d_raw, inputs = d_raw.index_select(0, trained), inputs.index_select(0, trained)
                activations = [a.index_select(0, trained) for a in activations]
                embedded = None if embedded is None else tuple(t.index_select(0, trained) for t in embedded[:-1])
                features = activations[-1]
            self._set_grad(head.linear, features, d_raw.transpose(1, 2), trained)
            delta = torch.bmm(d_raw.transpose(1, 2), self._batched(head.linear, trained)[0].transpose(1, 2))  # [M, N, H]
            for depth in range(len(self.layers) - 1, -1, -1):
                # Through the ReLU with autograd's own kernel for it: one pass, where a mask
                # (``> 0``, then a multiply or a fill) takes 7-30 times longer at 4096 rows.
                delta = torch.ops.aten.threshold_backward(delta, activations[depth + 1], 0)
                self._set_grad(self.layers[depth], activations[depth], delta, trained)
                if depth or embedded is not None:
                    delta = torch.bmm(delta, self._batched(self.layers[depth], trained)[0].transpose(1, 2))
            if embedded is not None:
                self._embedding_grad(inputs, embedded, delta, trained)
        return member_nll, reported

    def _embedding_grad(self, inputs: Tensor, embedded: tuple[Tensor, ...], delta: Tensor, trained: Tensor | None) -> None:
        """The embedding's ``.grad`` from ``delta [M, N, F·d]`` at its output: with ``a = 2π c x``
        and ``u = [cos a, sin a]``, ``∂/∂W = uᵀ δ'``, ``∂/∂b = Σ δ'`` and ``∂/∂c = 2π x (cos a ∂/∂sin
        - sin a ∂/∂cos)`` for ``δ'`` through the ReLU; each a product over the ``M·F`` features
        in the embedding's feature-major layout (:meth:`~mdnkit.networks.PeriodicEmbedding.parts`)."""
        cos, sin, periodic, out = embedded[:4]
        members, n_features, n_rows, d = out.shape
        k = cos.shape[-1]
        weight = self.embedding.member_parameters()[1]
        weight = (weight if trained is None else weight.index_select(0, trained)).reshape(-1, 2 * k, d)  # [M·F, 2k, d]
        if self.embedding.with_inputs:  # the raw inputs' share of delta comes first and needs no gradient
            delta = delta[..., n_features:]
        delta = delta.reshape(members, n_rows, n_features, d).transpose(1, 2).contiguous()  # [M, F, N, d]
        delta = torch.ops.aten.threshold_backward(delta, out, 0).view(-1, n_rows, d)
        d_cos, d_sin = torch.bmm(delta, weight.transpose(1, 2)).split(k, -1)  # [M·F, N, k] each
        d_angle = d_sin.mul_(cos.view(-1, n_rows, k)).sub_(d_cos.mul_(sin.view(-1, n_rows, k)))
        scaled_inputs = ((2 * math.pi) * inputs).transpose(1, 2).reshape(-1, 1, n_rows)  # [M·F, 1, N]
        grads = (torch.bmm(scaled_inputs, d_angle).view(members, n_features, k),
                 torch.bmm(periodic.view(-1, n_rows, 2 * k).transpose(1, 2), delta).view(members, n_features, 2 * k, d),
                 delta.sum(1).view(members, n_features, d))
        for parameter, grad in zip((self.embedding.frequencies, self.embedding.weight, self.embedding.bias), grads):
            parameter.grad = self._every_member(grad, trained) if self.batched else grad[0]

    def _batched(self, layer: nn.Module, trained: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A layer's ``(weight [M, in, out], bias [M, 1, out])``, views of its parameters (copies
        of the ``trained`` members' alone, when given)."""
        if self.batched:
            if trained is not None:
                return layer.weight.index_select(0, trained), layer.bias.index_select(0, trained).unsqueeze(1)
            return layer.weight, layer.bias.unsqueeze(1)
        return layer.weight.t().unsqueeze(0), layer.bias.view(1, 1, -1)

    def _every_member(self, grad: Tensor, trained: Tensor | None) -> Tensor:
        """The ``trained`` members' gradient ``[T, ...]`` as every member's ``[M, ...]``, zeros for the others."""
        if trained is None:
            return grad
        return grad.new_zeros((self.module.n_members, *grad.shape[1:])).index_copy_(0, trained, grad)

    def _set_grad(self, layer: nn.Module, below: Tensor, delta: Tensor, trained: Tensor | None = None) -> None:
        """``.grad`` of ``layer`` from its input ``below [M, N, in]`` and ``delta [M, N, out]``,
        in its own layout (``nn.Linear`` keeps ``[out, in]``); ``M`` counts the ``trained`` members alone."""
        if self.batched:
            layer.weight.grad = self._every_member(torch.bmm(below.transpose(1, 2), delta), trained)  # [M, in, out]
            layer.bias.grad = self._every_member(delta.sum(1), trained)
        else:
            layer.weight.grad = torch.mm(delta[0].t(), below[0])  # [out, in]
            layer.bias.grad = delta[0].sum(0)


def _has_hooks(parameter: nn.Parameter) -> bool:
    """Whether a parameter has tensor hooks (gradient or post-accumulation), which autograd would call."""
    return bool(parameter._backward_hooks or getattr(parameter, "_post_accumulate_grad_hooks", None))


def _log_prob_gradient(log_prob: Tensor, row_weights: Tensor | None, loss_weights: Tensor | None) -> Tensor:
    """``∂(Σ_m c_m member_nll[m]) / ∂ log p_m(y_i) [M, N]`` for :meth:`MDNEnsemble.losses`'
    means: ``-c_m / N``, or ``-c_m w_mi / Σ_i w_mi`` over a member's own rows."""
    scale = torch.ones(len(log_prob), dtype=log_prob.dtype, device=log_prob.device) if loss_weights is None \
        else loss_weights.to(log_prob)
    if row_weights is None:
        return (-scale / log_prob.shape[1]).unsqueeze(1).expand_as(log_prob)
    own = torch.where(row_weights > 0, row_weights, 0).to(log_prob)
    return own * (-scale / row_weights.sum(1).clamp(min=1e-12).to(log_prob)).unsqueeze(1)
