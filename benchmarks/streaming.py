"""Data larger than memory: a streamed fit's peak memory and test NLL against an in-memory fit.

Writes the T3 task as Parquet, row group by row group (never all rows in memory): ``x`` 8-D
standard normal; ``y`` bimodal and heteroscedastic, the upper mode ``2 + tanh(x·a)`` with
probability ``sigmoid(1.5 x·b)``, else the lower mode ``-2 + 0.5 x0 x1``, noise sd
``0.2 + 0.3 sigmoid(x2)``; ``a``, ``b`` fixed standard-normal vectors / √8. Then fits
``MDNRegressor(n_components=10, hidden_sizes=(64, 64), batch_size=4096)`` on it, each fit in a fresh
subprocess so that peak resident memory (``ru_maxrss``) is its own, and scores it on 200 000
held-out rows drawn in memory. ``--in-memory`` also fits the same model on the whole table read
into arrays. One CPU thread; not a test, a record.

    python benchmarks/streaming.py --rows 1000000 --max-epochs 3 --in-memory
    python benchmarks/streaming.py --rows 10000000 --max-epochs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROW_GROUP = 262_144
N_TEST = 200_000
COLUMNS = [f"x{j}" for j in range(8)] + ["y"]
SETTINGS = dict(n_components=10, hidden_sizes=(64, 64), batch_size=4096, input_noise=0.0, device="cpu",
                random_state=0)


def t3(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of the T3 task: ``x (n, 8)``, ``y (n,)``."""
    directions = np.random.default_rng(2024).normal(size=(2, 8)) / np.sqrt(8)  # a, b: fixed
    x = rng.normal(size=(n, 8))
    upper = rng.random(n) < 1 / (1 + np.exp(-1.5 * x @ directions[1]))
    loc = np.where(upper, 2 + np.tanh(x @ directions[0]), -2 + 0.5 * x[:, 0] * x[:, 1])
    scale = 0.2 + 0.3 / (1 + np.exp(-x[:, 2]))
    return x, loc + scale * rng.normal(size=n)


def write_table(path: Path, n: int, seed: int = 0) -> None:
    """T3 as a Parquet file of ``n`` rows, one row group of 262 144 rows generated at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, pa.float64()) for name in COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        for group, start in enumerate(range(0, n, ROW_GROUP)):
            x, y = t3(min(ROW_GROUP, n - start), np.random.default_rng([seed, group]))
            writer.write_table(pa.table({**{c: x[:, j] for j, c in enumerate(COLUMNS[:8])}, "y": y}, schema=schema))


def measure(mode: str, path: str, max_epochs: int) -> dict:
    """One fit (``stream``, ``memory``) or just the imports (``baseline``), in this process."""
    import warnings

    import pyarrow as pa
    import torch

    torch.set_num_threads(1)
    pa.set_cpu_count(1)
    from mdnkit import MDNRegressor, TableRows

    record: dict = {"mode": mode}
    if mode != "baseline":
        model = MDNRegressor(max_epochs=max_epochs, **SETTINGS)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a few epochs do not converge, by design
            if mode == "stream":
                model.fit(TableRows(path, features=COLUMNS[:8], target="y"))
            else:
                import pyarrow.parquet as pq

                table = pq.read_table(path)
                X = np.column_stack([table.column(c).to_numpy() for c in COLUMNS[:8]])
                y = table.column("y").to_numpy()
                del table
                model.fit(X, y)
        record["fit_seconds"] = time.perf_counter() - start
        record["epochs"] = model.n_iter_
        record["val_nll"] = min(epoch["val_nll"] for epoch in model.history_)
    record["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    if mode != "baseline":
        x_test, y_test = t3(N_TEST, np.random.default_rng(10**6))
        record["test_nll"] = -model.score(x_test, y_test)
    return record


def run(mode: str, path: Path, max_epochs: int) -> dict:
    """:func:`measure` in a fresh interpreter: peaks of different fits do not mix."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, __file__, "--measure", mode, "--path", str(path),
                           "--max-epochs", str(max_epochs)], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} fit failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=float, default=1e6, help="rows of the table (default 1e6)")
    parser.add_argument("--max-epochs", type=int, default=3)
    parser.add_argument("--in-memory", action="store_true", help="also fit on the whole table in memory")
    parser.add_argument("--data", type=Path, default=Path("output/streaming"), help="folder of the table")
    parser.add_argument("--measure", choices=("stream", "memory", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.path, args.max_epochs)))
        return
    n = int(args.rows)
    args.data.mkdir(parents=True, exist_ok=True)
    path = args.data / f"t3_{n}.parquet"
    if not path.exists():
        start = time.perf_counter()
        write_table(path, n)
        print(f"wrote {path} in {time.perf_counter() - start:.0f} s")
    print(f"{path}: {n} rows x {len(COLUMNS)} float64 columns; {path.stat().st_size / 2**20:.0f} MiB on disk, "
          f"{n * len(COLUMNS) * 8 / 2**20:.0f} MiB in memory as float64; max_epochs={args.max_epochs}")
    modes = ["baseline", "stream"] + (["memory"] if args.in_memory else [])
    print(f"{'fit':<10}{'peak RSS MiB':>14}{'seconds':>10}{'epochs':>8}{'val NLL':>10}{'test NLL':>10}")
    for mode in modes:
        r = run(mode, path, args.max_epochs)
        print(f"{mode:<10}{r['peak_rss_mib']:>14.0f}{r.get('fit_seconds', float('nan')):>10.0f}"
              f"{r.get('epochs', 0):>8}{r.get('val_nll', float('nan')):>10.4f}{r.get('test_nll', float('nan')):>10.4f}",
              flush=True)


if __name__ == "__main__":
    main()
