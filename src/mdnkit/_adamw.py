"""AdamW for the fit loop: torch's own update, without ``torch.optim.Optimizer``'s first-call cost.

``torch.optim.Optimizer`` imports ``torch._dynamo`` the first time it adds parameters or steps
(its methods are wrapped so that ``torch.compile`` skips them). On this project's 2-core machine
that import takes 1.3-2 s, once per process: more than a whole fit of a few hundred rows, and
most of the 2 s that issue 13 allows for a fit. This class keeps the optimiser's state in
``torch.optim.AdamW``'s layout (``state[p]["step" | "exp_avg" | "exp_avg_sq"]``, one parameter
group with ``"lr"`` and ``"weight_decay"``) and steps with torch's functional
``torch.optim.adamw.adamw``, the same kernel ``AdamW(fused=True)`` runs, so the update is
torch's, bit for bit (``tests/test_adamw.py``), and the import never happens.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.adamw import adamw


class AdamW:
    """Decoupled-weight-decay Adam over ``parameters``, stepped on their ``.grad``.

    Args:
        parameters: The tensors to update, all on one device with one dtype (a network's).
        lr: Learning rate; later changes go through ``param_groups[0]["lr"]``, as for torch's.
        weight_decay: Decoupled weight decay (``0`` is Adam).
        betas, eps: As ``torch.optim.AdamW``'s.
    """

    def __init__(self, parameters: list[nn.Parameter], lr: float, weight_decay: float = 0.01,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.parameters = list(parameters)
        if not self.parameters:
            raise ValueError("AdamW got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [
            {"params": self.parameters, "lr": lr, "weight_decay": weight_decay, "betas": betas, "eps": eps}]
        self.state: defaultdict[Tensor, dict[str, Tensor]] = defaultdict(dict)
        self.fused = _fused_kernel_runs(self.parameters[0])

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        """One update of every parameter that has a gradient; ``closure`` as for torch's."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        params = [p for p in self.parameters if p.grad is not None]
        if not params:
            return loss
        states = [self._state(p) for p in params]
        beta1, beta2 = group["betas"]
        adamw(params, [p.grad for p in params], [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states],
              [], [s["step"] for s in states], fused=True if self.fused else None,
              amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"], weight_decay=group["weight_decay"],
              eps=group["eps"], maximize=False)
        return loss

    def _state(self, p: Tensor) -> dict[str, Tensor]:
        """``p``'s moments and step count, made as ``torch.optim.AdamW`` makes them on first use."""
        state = self.state[p]
        if not state:
            # torch keeps the fused kernel's step count in float32 on the parameter's device.
            state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if self.fused
                             else torch.tensor(0.0, dtype=_scalar_dtype()))
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def _fused_kernel_runs(like: Tensor) -> bool:
    """Whether torch has the fused AdamW kernel for ``like``'s device and dtype (CPU from torch
    2.4): tried on a one-element copy, as a failed call would already have counted a step."""
    if not like.is_floating_point():
        return False
    probe = torch.zeros(1, dtype=like.dtype, device=like.device)
    try:
        adamw([probe], [torch.zeros_like(probe)], [torch.zeros_like(probe)], [torch.zeros_like(probe)], [],
              [torch.zeros((), dtype=torch.float32, device=like.device)], fused=True, amsgrad=False, beta1=0.9,
              beta2=0.999, lr=1e-3, weight_decay=0.0, eps=1e-8, maximize=False)
    except (RuntimeError, TypeError):
        return False
    return True
