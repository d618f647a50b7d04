"""Data-parallel training (mdnkit.distributed): two gloo processes on this machine train exactly
as one process on the same minibatches, and a fit under a process group gives the same model."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mdnkit.heads import MDN, MDNEnsemble
from mdnkit.training import TrainingConfig, train

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")
WORLD = 2


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, 2, generator=g, dtype=torch.float64)
    y = (x[:, :1] * 2 + 0.3 * torch.randn(96, 1, generator=g, dtype=torch.float64)).sin()
    return x[:64], y[:64], x[64:], y[64:]


def _run(n_members: int) -> tuple[list[dict], dict[str, np.ndarray]]:
    """One training run on this process (or this rank): an MDN (ensemble), float64, batches of 16."""
    torch.manual_seed(1)
    module = (MDN(2, 1, n_components=3, hidden_sizes=(8,)) if n_members == 1
              else MDNEnsemble(2, 1, 3, (8,), n_members=n_members)).double()
    x, y, x_val, y_val = _data()
    config = TrainingConfig(max_epochs=12, batch_size=16, learning_rate=0.01, patience=4)
    result = train(module, x, y, x_val, y_val, config=config, generator=torch.Generator().manual_seed(2))
    return result.history, {k: v.numpy().copy() for k, v in module.state_dict().items()}


def _rank(rank: int, port: int, n_members: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        history, weights = _run(n_members)
        np.savez(f"{out}.{rank}.npz", history=np.array([[h["train_nll"], h["val_nll"]] for h in history]), **weights)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n_members", [1, 3])
def test_two_gloo_ranks_train_as_one_process_on_the_same_batches(tmp_path, n_members):
    out = str(tmp_path / "run")
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_rank, args=(r, port, n_members, out)) for r in range(WORLD)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=240)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    history, weights = _run(n_members)
    expected = np.array([[h["train_nll"], h["val_nll"]] for h in history])
    for rank in range(WORLD):
        got = np.load(f"{out}.{rank}.npz")
        # Sums over two shards instead of one: the same steps up to float64 rounding.
        np.testing.assert_allclose(got["history"], expected, rtol=1e-9)
        for name, value in weights.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-8, atol=1e-10)
