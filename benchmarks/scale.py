"""Throughput at scale: ``MDNRegressor`` against a plain PyTorch loop on the T3 task.

T3: ``x`` 8-D standard normal; ``y`` bimodal and heteroscedastic: the upper mode
``2 + tanh(x·a)`` with probability ``sigmoid(1.5 x·b)``, else the lower ``-2 + 0.5 x0 x1``; noise
sd ``0.2 + 0.3 sigmoid(x2)``; ``a, b`` fixed standard-normal vectors / √8. Both models: K = 10
Gaussian components, two hidden layers of 64 ReLU, Adam 1e-3, batches of 4096, float32, on the
CPU. The plain loop is what a user would write: a random permutation per epoch, contiguous
slices of the permuted rows, softplus scales and ``logsumexp``. ``MDNRegressor`` runs with
``validation_fraction=0`` and ``input_noise=0`` so that both do the same work per epoch.

Every measurement runs in a fresh process (so peak resident memory is its own), the two methods
alternating ``--repeats`` times, and the table shows medians: training rows per second (median
over epochs after the first), log-density rows per second (no gradient, all rows;
``score_samples`` for mdnkit, with its input checks and novelty warning), peak resident memory,
and the seconds outside the epochs: for mdnkit all of ``fit`` but its epochs (set-up,
initialisation, novelty index, statistics), for the plain loop the network and optimiser (the
first optimiser in a process imports ``torch._dynamo``, about 3 s here, for both). The matmul bound
is the rows per second the three layers' matrix products alone allow (forward and backward:
3 times the forward FLOPs), timed on this machine in the same process.

    python benchmarks/scale.py --sizes 100000 1000000 --epochs 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES, N_COMPONENTS, HIDDEN, BATCH, LEARNING_RATE = 8, 10, 64, 4096, 1e-3
RESULTS = Path(__file__).resolve().parent / "results"


def t3(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(X [n, 8], y [n])`` float32 rows of the T3 task."""
    fixed = np.random.default_rng(12345)
    a, b = fixed.normal(size=N_FEATURES) / np.sqrt(8), fixed.normal(size=N_FEATURES) / np.sqrt(8)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, N_FEATURES), dtype=np.float32)
    sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    upper = rng.random(n, dtype=np.float32) < sigmoid(1.5 * X @ b)
    mode = np.where(upper, 2.0 + np.tanh(X @ a), -2.0 + 0.5 * X[:, 0] * X[:, 1])
    noise = 0.2 + 0.3 * sigmoid(X[:, 2])
    return X, (mode + noise * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---------------------------------------------------------------------- the plain loop
def plain(n: int, epochs: int) -> dict[str, Any]:
    import torch
    from torch import nn

    X, y = t3(n)
    start = time.perf_counter()
    x_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                         nn.Linear(HIDDEN, 3 * N_COMPONENTS))

    def log_density(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        loc, raw_scale, logits = body(xb).chunk(3, dim=-1)
        scale = nn.functional.softplus(raw_scale) + 1e-4
        z = (yb[:, None] - loc) / scale
        log_p = -0.5 * z * z - scale.log() - 0.5 * np.log(2 * np.pi)
        return torch.logsumexp(log_p + logits.log_softmax(-1), -1)

    optimizer = torch.optim.Adam(body.parameters(), lr=LEARNING_RATE)  # its first use imports torch._dynamo
    setup_seconds = time.perf_counter() - start
    epoch_seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(n)
        xs, ys = x_t[order], y_t[order]
        for i in range(0, n, BATCH):
            loss = -log_density(xs[i:i + BATCH], ys[i:i + BATCH]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        epoch_seconds.append(time.perf_counter() - start)
    start = time.perf_counter()
    with torch.no_grad():
        total = sum(float(log_density(x_t[i:i + 65536], y_t[i:i + 65536]).sum()) for i in range(0, n, 65536))
    score_seconds = time.perf_counter() - start
    return {"train_rows_per_s": n / statistics.median(epoch_seconds[1:] or epoch_seconds),
            "log_density_rows_per_s": n / score_seconds, "mean_log_density": total / n,
            "outside_epochs_s": setup_seconds, "peak_gib": _peak_gib()}


# ---------------------------------------------------------------------- mdnkit
def ours(n: int, epochs: int) -> dict[str, Any]:
    import warnings

    from mdnkit import MDNRegressor

    X, y = t3(n)
    model = MDNRegressor(n_components=N_COMPONENTS, hidden_sizes=(HIDDEN, HIDDEN), learning_rate=LEARNING_RATE,
                         batch_size=BATCH, max_epochs=epochs, validation_fraction=0.0, input_noise=0.0,
                         dtype="float32", device="cpu", random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    fit_seconds = time.perf_counter() - start
    ends = [0.0] + [record["time"] for record in model.history_]
    epoch_seconds = np.diff(ends).tolist()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log_density = model.score_samples(X, y)
    score_seconds = time.perf_counter() - start
    return {"train_rows_per_s": n / statistics.median(epoch_seconds[1:] or epoch_seconds),
            "log_density_rows_per_s": n / score_seconds, "mean_log_density": float(log_density.mean()),
            "outside_epochs_s": fit_seconds - ends[-1], "peak_gib": _peak_gib()}


def matmul_bound(threads: int) -> dict[str, float]:
    """Rows per second the layers' matrix products allow: forward, and forward plus backward."""
    import torch

    torch.set_num_threads(threads)
    shapes = [(N_FEATURES, HIDDEN), (HIDDEN, HIDDEN), (HIDDEN, 3 * N_COMPONENTS)]
    weights = [torch.randn(i, o) for i, o in shapes]
    x = torch.randn(BATCH, N_FEATURES)

    def products() -> torch.Tensor:
        h = x
        for w in weights:
            h = h @ w
        return h

    for _ in range(20):  # warm-up
        products()
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(200):
            products()
        runs.append((time.perf_counter() - start) / 200)
    forward = BATCH / statistics.median(runs)
    return {"forward_rows_per_s": forward, "train_rows_per_s": forward / 3}


def _worker(method: str, n: int, epochs: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return {"plain": plain, "mdnkit": ours}[method](n, epochs)


def _in_fresh_process(method: str, n: int, epochs: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", method, str(n), str(epochs), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per fit (default 3; the first is not timed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="pairs of fresh processes per size (medians)")
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, n, epochs, threads = args.worker
        print(json.dumps(_worker(method, int(n), int(epochs), int(threads))))
        return 0
    bound = matmul_bound(args.threads)
    rows = []
    print(f"{args.threads} threads; matmul bound {bound['train_rows_per_s'] / 1e6:.2f} M training rows/s, "
          f"{bound['forward_rows_per_s'] / 1e6:.2f} M forward rows/s\n")
    print("| N | train rows/s plain | mdnkit | ratio | log-density rows/s plain | mdnkit | ratio | "
          "peak GiB plain / mdnkit | outside epochs (s) plain / mdnkit |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        n = int(size)
        # Alternate the two, a fresh process each, and take medians: on a shared 2-core VM one
        # process's speed varies by a third from run to run.
        runs = [(_in_fresh_process("plain", n, args.epochs, args.threads),
                 _in_fresh_process("mdnkit", n, args.epochs, args.threads)) for _ in range(args.repeats)]
        reference, mine = ({key: statistics.median(run[side][key] for run in runs) for key in runs[0][side]}
                           for side in (0, 1))
        ratios = {key: statistics.median(b[key] / a[key] for a, b in runs)
                  for key in ("train_rows_per_s", "log_density_rows_per_s")}
        rows.append({"n": n, "plain": reference, "mdnkit": mine, "median_ratios": ratios, "runs": runs})
        print(f"| {n:.0e} | {reference['train_rows_per_s'] / 1e6:.2f} M | {mine['train_rows_per_s'] / 1e6:.2f} M | "
              f"{ratios['train_rows_per_s']:.2f} | "
              f"{reference['log_density_rows_per_s'] / 1e6:.2f} M | {mine['log_density_rows_per_s'] / 1e6:.2f} M | "
              f"{ratios['log_density_rows_per_s']:.2f} | "
              f"{reference['peak_gib']:.2f} / {mine['peak_gib']:.2f} | "
              f"{reference['outside_epochs_s']:.2f} / {mine['outside_epochs_s']:.2f} |", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "bound": bound,
                                     "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
