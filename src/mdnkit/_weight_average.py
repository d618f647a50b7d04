"""An exponential moving average of the trained weights (Polyak averaging), member by member.

The fit loop validates, keeps and early-stops on the average, not on the last step's weights:
noise regularisation and small batches make the weights jitter from step to step, and their
average both scores better and makes the validation curve smoother.

The update is the one of ``torch.optim.swa_utils.get_ema_multi_avg_fn`` (one ``_foreach_lerp_``
over every parameter), with TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` warm-up,
so that the first steps are not averaged with the initial weights. ``AveragedModel`` itself is not
used: it averages a deep copy of the whole module, where the loop needs each member of an
ensemble frozen at its best weights while the others go on, and the average swapped into the one
module the validation pass, the early-stopping record and the model file all read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


class WeightAverage:
    """The moving average ``a <- d a + (1 - d) w`` of ``parameters`` after each optimiser step.

    ``average`` holds one tensor per parameter, of its shape.

    Args:
        parameters: The trained parameters; for an ensemble of ``n_members``, each with the
            member first (``[M, ...]``).
        decay: ``d``, per step, in ``(0, 1)``; the average spans about ``1 / (1 - d)`` steps.
        n_members: ``M``.
    """

    WARM_UP = 10  # the decay of step t is min(decay, (1 + t) / (WARM_UP + t))

    def __init__(self, parameters: list[nn.Parameter], decay: float, n_members: int) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay!r}.")
        self.parameters, self.decay, self.n = parameters, decay, n_members
        self.average: list[Tensor] = []
        self._trained: list[Tensor] = []  # the weights as trained, while the average is swapped in
        self._handed_over: list[Tensor] = []  # the weights as trained, once the run ended on the average
        self.reset()

    @torch.no_grad()
    def reset(self) -> None:
        """Start again from the parameters as they are (a new run, or after a rollback)."""
        self.average = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold in the parameters after one optimiser step."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (self.WARM_UP + self.updates))
        torch._foreach_lerp_(self.average, self.parameters, 1 - decay)  # under no_grad: no detached copies per step

    @contextmanager
    def swapped_in(self, active: list[bool]) -> Iterator[None]:
        """The parameters hold the average inside; outside, the trained weights again.

        ``active`` (``[M]``, read on the way out) says which members still train: a member that
        stopped inside (its best weights copied into the parameters by the caller) or before keeps
        what the parameters hold, and its average becomes that, so it stays frozen.
        """
        with torch.no_grad():
            self._trained = [p.detach().clone() for p in self.parameters]
            torch._foreach_copy_(self.parameters, self.average)
        try:
            yield
        finally:
            self._swap_out(active)

    @torch.no_grad()
    def _swap_out(self, active: list[bool]) -> None:
        if all(active):
            torch._foreach_copy_(self.parameters, self._trained)
        elif any(active):
            mask = torch.tensor(active, device=self.parameters[0].device)  # [M], one copy to the device
            for p, trained, average in zip(self.parameters, self._trained, self.average):
                training = mask.view(self.n, *[1] * (p.dim() - 1))
                p.copy_(torch.where(training, trained, p))
                average.copy_(torch.where(training, average, p))
        else:  # every member stopped: the parameters hold their best, and so does the average
            torch._foreach_copy_(self.average, self.parameters)
        self._trained = []

    @torch.no_grad()
    def hand_over(self) -> None:
        """A run without validation ends: the parameters take the average, and the trained weights
        are kept so that a continued run (:meth:`take_back`) goes on exactly."""
        self._handed_over = [p.detach().clone() for p in self.parameters]
        torch._foreach_copy_(self.parameters, self.average)

    @torch.no_grad()
    def take_back(self) -> bool:
        """A continued run: when the parameters still hold the average handed over, the trained
        weights come back and the average goes on (True); otherwise nothing changes (False)."""
        handed_over, self._handed_over = self._handed_over, []
        if not handed_over or not all(torch.equal(p, a) for p, a in zip(self.parameters, self.average)):
            return False
        torch._foreach_copy_(self.parameters, handed_over)
        return True

    @torch.no_grad()
    def restart_from_parameters(self) -> None:
        """After a rollback inside :meth:`swapped_in`: the restored weights are both the trained
        weights to go on from and the new average."""
        self.reset()
        self._trained = [p.detach().clone() for p in self.parameters]
