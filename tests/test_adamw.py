"""mdnkit's AdamW holder against torch.optim.AdamW: the same update, bit for bit."""

import pytest
import torch

from mdnkit._adamw import AdamW


def _parameters(seed: int, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator, dtype=dtype)) for shape in ((4, 3), (3,), (2, 5, 2))]


def _run(optimizer, parameters, steps: int, seed: int) -> None:
    """Steps on seeded gradients, with the rate and decay changed half way, a parameter left
    without a gradient on one step, and the state cleared once (as a rollback does)."""
    generator = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        for index, p in enumerate(parameters):
            if not (step == 3 and index == 1):
                p.grad = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        if step == steps // 2:
            optimizer.param_groups[0]["lr"] *= 0.5
            optimizer.param_groups[0]["weight_decay"] = 0.1
        if step == steps - 3:
            optimizer.state.clear()
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [True, False])
def test_same_updates_as_torch_adamw(dtype, fused):
    ours, theirs = _parameters(0, dtype), _parameters(0, dtype)
    mine = AdamW(ours, lr=3e-3, weight_decay=0.01)
    if not fused:
        mine.fused = False  # torch's single-tensor path, as on a torch without the fused CPU kernel
    elif not mine.fused:
        pytest.skip("no fused AdamW kernel on this torch and device")
    reference = torch.optim.AdamW(theirs, lr=3e-3, weight_decay=0.01, fused=True if fused else None)
    _run(mine, ours, 12, seed=5)
    _run(reference, theirs, 12, seed=5)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)
    for a, b in zip(ours, theirs):
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(mine.state[a][key], reference.state[b][key]), key


def test_closure_loss_is_returned_and_zero_grad_keeps_tensors():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = AdamW([p], lr=0.1, weight_decay=0.0)

    def closure():
        p.grad = None
        loss = (p ** 2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == pytest.approx(5.0)
    assert torch.all(p.detach().abs() < torch.tensor([1.0, 2.0]))  # moved towards 0
    optimizer.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        AdamW([], lr=0.1)
