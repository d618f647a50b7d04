"""Data-parallel training (mdnkit.distributed): two gloo processes on this machine train exactly
as one process on the same minibatches, and a fit under a process group gives the same model."""

from __future__ import annotations

import copy
import os
import socket
import warnings

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.exceptions import ConvergenceWarning

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


# ---------------------------------------------------------------------- a lost rank, and torchrun
def _rank_that_dies(rank: int, port: int, out: str) -> None:
    """Rank 1 dies in its third epoch; rank 0 is fitting an MDNRegressor it would then save."""
    from datetime import timedelta

    from mdnkit import MDNRegressor
    from mdnkit.training import TrainState

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=60))
    if rank == 1:
        original, calls = TrainState.train_epoch, []

        def dying(self, batches):
            calls.append(1)
            if len(calls) == 3:
                os._exit(17)  # no clean-up: as if killed
            return original(self, batches)

        TrainState.train_epoch = dying
    x, y, _, _ = _data()
    model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=50, batch_size=16, input_noise=0.0,
                         random_state=0).fit(x.numpy(), y.numpy()[:, 0])
    if rank == 0:
        model.save(out)


@pytest.mark.slow  # two processes that import torch, and gloo noticing a lost peer: 10-60 s
def test_a_lost_rank_ends_the_run_with_an_error_and_no_model_file(tmp_path):
    out = tmp_path / "model.mdn"
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_rank_that_dies, args=(r, port, str(out))) for r in range(WORLD)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=240)
    assert processes[1].exitcode == 17
    assert processes[0].exitcode not in (0, None), "rank 0 should fail once its peer is gone"
    assert not out.exists() and not list(tmp_path.glob("*.tmp*"))


@pytest.mark.slow  # torchrun with two ranks, and a single-process fit to compare with: 20-90 s
def test_torchrun_fits_one_model_and_rank_0_writes_it(tmp_path):
    import subprocess
    import sys

    import pandas as pd

    import mdnkit

    x, y, _, _ = _data()
    pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "y": y[:, 0]}).to_csv(tmp_path / "d.csv", index=False)
    fit = ["fit", "d.csv", "--target", "y", "--epochs", "8", "--hidden", "8", "--components", "2",
           "--batch-size", "16", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(__import__("pathlib").Path(mdnkit.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    parallel = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                               str(_free_port()), "-m", "mdnkit", *fit, "-o", "ddp.mdn"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert parallel.returncode == 0, parallel.stderr[-2000:]
    single = subprocess.run([sys.executable, "-m", "mdnkit", *fit, "-o", "one.mdn"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp, one = mdnkit.load(tmp_path / "ddp.mdn"), mdnkit.load(tmp_path / "one.mdn")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.csv", "ddp.mdn", "one.mdn"]  # one file, from rank 0
    # The command line's input noise is drawn per rank, so the runs differ by their noise (the exact
    # equality without noise is the first test's): the same data, the same quality.
    assert len(ddp.history_) == len(one.history_) == 8
    assert abs(ddp.score(x.numpy(), y.numpy()[:, 0]) - one.score(x.numpy(), y.numpy()[:, 0])) < 0.1


# ---------------------------------------------------------------------- a streamed table, sharded
def _write_parts(folder) -> None:
    """Three Parquet files of uneven sizes (row groups of 100): the ranks' shares differ."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, n in enumerate([900, 1500, 650]):
        x = rng.normal(size=(n, 2))
        y = np.sin(2 * x[:, 0]) + 0.3 * rng.normal(size=n)
        pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "y": y}), folder / f"part-{i}.parquet", row_group_size=100)


_STREAM_SETTINGS = dict(n_components=3, hidden_sizes=(16,), batch_size=64, max_epochs=6, input_noise=0.0,
                        random_state=0, device="cpu")
_SCALERS = ("x_mean_", "x_scale_", "y_mean_", "y_scale_")
_FITTED = _SCALERS + ("component_weight_mean_", "component_weight_max_")


def _streaming_rank(rank: int, port: int, folder: str, out: str, n_estimators: int) -> None:
    from mdnkit import MDNRegressor, TableRows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    read, whole, original = [], [], TableRows.batches

    def recording(self):  # the row groups of every pass over the table: statistics, epochs, usage
        if self.row_groups is None:
            whole.append(1)
        read.extend((g.first_row, g.n_rows) for g in self.row_groups or [])
        return original(self)

    TableRows.batches = recording
    try:
        model = MDNRegressor(**_STREAM_SETTINGS, n_estimators=n_estimators).fit(
            TableRows(folder, features=["a", "b"], target="y"))
        fitted = {name: getattr(model, name) for name in _FITTED}
        np.savez(f"{out}.{rank}.npz", groups=np.array(sorted(set(read))), whole_reads=len(whole),
                 history=np.array([[h["train_nll"], h["val_nll"]] for h in model.history_]),
                 **fitted, **{k: v.numpy() for k, v in model.module_.state_dict().items()})
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("n_estimators", [1, 2])
def test_two_ranks_read_their_own_row_groups_of_a_parquet_table_and_agree(tmp_path, n_estimators):
    """Unequal shares (row groups of 3050 rows given to 2 ranks) still take equal steps (else DDP
    would hang here), every row group is read by exactly one rank, and the ranks end with one model
    whose test NLL is that of a single-process fit to within 0.1 nats (they differ by batch order
    and the rows each epoch leaves out: 0.011 nats for one network, 0.032 for two members, when
    written). An ensemble's members train together under DDP as on one process."""
    from mdnkit import MDNRegressor, TableRows

    folder = tmp_path / "parts"
    _write_parts(folder)
    out = str(tmp_path / "run")
    context = mp.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=_streaming_rank, args=(r, port, str(folder), out, n_estimators))
                 for r in range(WORLD)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=240)
        assert p.exitcode == 0, f"rank exited with {p.exitcode}"
    ranks = [np.load(f"{out}.{r}.npz") for r in range(WORLD)]
    groups = [set(map(tuple, r["groups"].tolist())) for r in ranks]
    assert not groups[0] & groups[1]
    assert sorted(first for first, _ in groups[0] | groups[1]) == list(range(0, 3050, 100))
    assert [int(r["whole_reads"]) for r in ranks] == [0, 0]  # no pass read the whole table
    np.testing.assert_array_equal(ranks[0]["history"], ranks[1]["history"])
    for name in ranks[0].files:
        if name not in ("groups", "history"):
            np.testing.assert_array_equal(ranks[0][name], ranks[1][name])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 6 epochs: short on purpose
        single = MDNRegressor(**_STREAM_SETTINGS, n_estimators=n_estimators).fit(
            TableRows(str(folder), features=["a", "b"], target="y"))
    for name in _SCALERS:  # the ranks' moments merge to those of one pass over every row
        np.testing.assert_allclose(ranks[0][name], getattr(single, name), rtol=1e-12)
    ddp = copy.deepcopy(single)  # the same scalers; rank 0's weights
    ddp.module_.load_state_dict({k: torch.as_tensor(ranks[0][k]) for k in ddp.module_.state_dict()})
    # Component usage summed over the ranks equals the usage of those weights over every row.
    import pyarrow.parquet as pq

    x_all = np.concatenate([np.column_stack([pq.read_table(part)[name].to_numpy() for name in ("a", "b")])
                            for part in sorted(folder.iterdir())])
    ddp._record_component_usage(torch.as_tensor(ddp._standardized_rows(x_all), dtype=torch.float32))
    for name in ("component_weight_mean_", "component_weight_max_"):
        np.testing.assert_allclose(ranks[0][name], getattr(ddp, name), rtol=1e-5, atol=1e-7)
    rng = np.random.default_rng(9)
    x_test = rng.normal(size=(2000, 2))
    y_test = np.sin(2 * x_test[:, 0]) + 0.3 * rng.normal(size=2000)
    assert abs(ddp.score(x_test, y_test) - single.score(x_test, y_test)) < 0.1
