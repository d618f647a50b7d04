"""Throughput at scale: ``MDNRegressor`` against a plain PyTorch loop on the T3 task.

T3: ``x`` 8-D standard normal; ``y`` bimodal and heteroscedastic: the upper mode
``2 + tanh(x·a)`` with probability ``sigmoid(1.5 x·b)``, else the lower ``-2 + 0.5 x0 x1``; noise
sd ``0.2 + 0.3 sigmoid(x2)``; ``a, b`` fixed standard-normal vectors / √8. Both models: K = 10
Gaussian components, two hidden layers of 64 ReLU, Adam 1e-3, batches of 4096, float32, on the
CPU. The plain loop is what a user would write: a random permutation per epoch, contiguous
slices of the permuted rows, softplus scales and ``logsumexp``. ``MDNRegressor`` runs with
``validation_fraction=0`` and ``input_noise=0`` so that both do the same work per epoch.

Speed: both methods in one fresh process, alternating epoch by epoch and pass by pass
(``--rounds`` of each after an untimed first epoch), because on a shared VM a process's speed
drifts by a third within minutes and pairs cancel the drift. The table shows training rows per
second (median epoch), log-density rows per second (no gradient, all rows; ``score_samples``
for mdnkit, with its input checks and novelty warning) and, for each, the median of the paired
ratios mdnkit / plain (above 1: mdnkit is faster). Each ``MDNRegressor`` epoch is a warm-started
``fit`` of one epoch, timed by its history. Memory and set-up: each method alone in a fresh
process (one epoch, one pass): peak resident memory, and the seconds outside the epochs: for
mdnkit all of its first ``fit`` but the epoch (checks, scalers, initialisation, novelty index,
component statistics), for the plain loop the network and optimiser. The first optimiser in a
process imports ``torch._dynamo`` (about 2 s here), so both pay that. The matmul bound is the
rows per second the three layers' matrix products alone allow (forward and backward: 3 times
the forward FLOPs), timed on this machine in the same process.

    python benchmarks/scale.py --sizes 100000 1000000 --rounds 5 --threads 2
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


# ---------------------------------------------------------------------- the two methods
class Plain:
    """The hand-written loop: a random permutation per epoch, contiguous slices, softplus scales,
    ``logsumexp``."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        import torch
        from torch import nn

        start = time.perf_counter()
        self.x, self.y = torch.from_numpy(X), torch.from_numpy(y)
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(N_FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
                                  nn.Linear(HIDDEN, 3 * N_COMPONENTS))
        self.optimizer = torch.optim.Adam(self.body.parameters(), lr=LEARNING_RATE)  # imports torch._dynamo
        self.setup_seconds = time.perf_counter() - start

    def log_density(self, xb, yb):
        import torch

        loc, raw_scale, logits = self.body(xb).chunk(3, dim=-1)
        scale = torch.nn.functional.softplus(raw_scale) + 1e-4
        z = (yb[:, None] - loc) / scale
        log_p = -0.5 * z * z - scale.log() - 0.5 * np.log(2 * np.pi)
        return torch.logsumexp(log_p + logits.log_softmax(-1), -1)

    def epoch(self) -> float:
        import torch

        start, n = time.perf_counter(), len(self.x)
        order = torch.randperm(n)
        xs, ys = self.x[order], self.y[order]
        for i in range(0, n, BATCH):
            loss = -self.log_density(xs[i:i + BATCH], ys[i:i + BATCH]).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - start

    def score(self) -> float:
        import torch

        start, n = time.perf_counter(), len(self.x)
        with torch.no_grad():
            sum(float(self.log_density(self.x[i:i + 65536], self.y[i:i + 65536]).sum()) for i in range(0, n, 65536))
        return time.perf_counter() - start


class Ours:
    """``MDNRegressor`` doing the same work per epoch: no validation rows, no input noise. Each
    epoch is a warm-started ``fit`` of one epoch (the run continues: optimiser, schedule and
    random stream), timed by its history, so its epochs can alternate with the plain loop's."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        from mdnkit import MDNRegressor

        self.X, self.y = X, y
        self.model = MDNRegressor(n_components=N_COMPONENTS, hidden_sizes=(HIDDEN, HIDDEN),
                                  learning_rate=LEARNING_RATE, batch_size=BATCH, max_epochs=1,
                                  validation_fraction=0.0, input_noise=0.0, dtype="float32", device="cpu",
                                  random_state=0, warm_start=True)
        start = time.perf_counter()
        self._fit()
        self.setup_seconds = time.perf_counter() - start - self.model.history_[-1]["time"]

    def _fit(self) -> None:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.fit(self.X, self.y)

    def epoch(self) -> float:
        self._fit()
        return self.model.history_[-1]["time"]  # the epoch, without the fit's set-up around it

    def score(self) -> float:
        import warnings

        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model.score_samples(self.X, self.y)  # with its input checks and novelty warning
        return time.perf_counter() - start


def _paired(n: int, rounds: int) -> dict[str, Any]:
    """Both methods in one process, alternating epoch by epoch and pass by pass: on a shared VM
    a process's speed drifts by a third within minutes, and pairs cancel that drift."""
    X, y = t3(n)
    plain, ours = Plain(X, y), Ours(X, y)  # Ours' first fit is its first epoch
    plain.epoch()  # the plain loop's first epoch, not timed either
    epochs = [(plain.epoch(), ours.epoch()) for _ in range(rounds)]
    scores = [(plain.score(), ours.score()) for _ in range(rounds)]
    median = statistics.median
    return {"train_rows_per_s": {"plain": n / median(a for a, _ in epochs), "mdnkit": n / median(b for _, b in epochs)},
            "log_density_rows_per_s": {"plain": n / median(a for a, _ in scores), "mdnkit": n / median(b for _, b in scores)},
            "train_ratio": median(a / b for a, b in epochs), "log_density_ratio": median(a / b for a, b in scores),
            "epochs_s": epochs, "scores_s": scores}


def _alone(method: str, n: int) -> dict[str, Any]:
    """One method alone in a process: one training epoch after its set-up, one log-density pass;
    its peak resident memory and its seconds outside the epoch."""
    X, y = t3(n)
    model = {"plain": Plain, "mdnkit": Ours}[method](X, y)
    if method == "plain":
        model.epoch()
    model.score()
    return {"peak_gib": _peak_gib(), "outside_epochs_s": model.setup_seconds}


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


def _worker(job: str, n: int, rounds: int, threads: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    return _paired(n, rounds) if job == "paired" else _alone(job, n)


def _in_fresh_process(job: str, n: int, rounds: int, threads: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", job, str(n), str(rounds), str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6])
    parser.add_argument("--rounds", type=int, default=5, help="timed epochs (and log-density passes) per method")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=RESULTS / "scale.json")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        job, n, rounds, threads = args.worker
        print(json.dumps(_worker(job, int(n), int(rounds), int(threads))))
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
        paired = _in_fresh_process("paired", n, args.rounds, args.threads)
        alone = {method: _in_fresh_process(method, n, args.rounds, args.threads) for method in ("plain", "mdnkit")}
        rows.append({"n": n, "paired": paired, "alone": alone})
        train, score = paired["train_rows_per_s"], paired["log_density_rows_per_s"]
        print(f"| {n:.0e} | {train['plain'] / 1e6:.2f} M | {train['mdnkit'] / 1e6:.2f} M | {paired['train_ratio']:.2f} | "
              f"{score['plain'] / 1e6:.2f} M | {score['mdnkit'] / 1e6:.2f} M | {paired['log_density_ratio']:.2f} | "
              f"{alone['plain']['peak_gib']:.2f} / {alone['mdnkit']['peak_gib']:.2f} | "
              f"{alone['plain']['outside_epochs_s']:.2f} / {alone['mdnkit']['outside_epochs_s']:.2f} |", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "bound": bound,
                                     "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
