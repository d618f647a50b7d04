"""Benchmark: ``MDNRegressor.fit`` against a hand-written PyTorch loop on the Edward MDN seed.

Setup of the Edward MDN tutorial (inverted sinusoid, Bishop 1994): N=5000 points from
``make_inverted_sinusoid(5000, random_state=0)``, a 75/25 ``train_test_split`` with
``random_state=42``, K=20 Gaussian components, two hidden layers of 15 ReLU units,
Adam with learning rate 5e-3 and 1000 full-batch epochs.

Both fits run in the same process with the same number of CPU threads, interleaved
(reference, ours, reference, ours, ...) and seeded per repeat, after an untimed 10-epoch
warm-up of each; the median wall time of ``--repeats`` fits is compared. Target:
ours / hand-written <= 1.0 with a test NLL at least as good (median over repeats). The
true conditional density of the generator gives the oracle test NLL, and each method's
gap to it is reported.

Usage::

    PYTHONPATH=src python benchmarks/edward_fit.py [--repeats 3] [--epochs 1000]
        [--threads N] [--json results.json] [--only-reference]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

try:  # runnable from a checkout without installing: put src/ on the path
    import mdnkit  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the script is launched
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid

N_SAMPLES = 5000
N_COMPONENTS = 20
HIDDEN = 15
LEARNING_RATE = 5e-3
DATA_SEED = 0
SPLIT_SEED = 42
WARMUP_EPOCHS = 10


# ------------------------------------------------------------------------ reference loop


class SeedMDN(nn.Module):
    """The Edward tutorial's network: 1 -> 15 -> 15 (ReLU), heads for locs, scales, logits."""

    def __init__(self, n_features: int = 1, hidden: int = HIDDEN, n_components: int = N_COMPONENTS):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
        )
        self.locs = nn.Linear(hidden, n_components)
        self.scales = nn.Linear(hidden, n_components)  # activation=tf.exp in the seed
        self.logits = nn.Linear(hidden, n_components)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.locs(h), torch.exp(self.scales(h)), self.logits(h)


def seed_nll(model: SeedMDN, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of the mixture, in nats."""
    loc, scale, logits = model(x)
    log_prob = torch.distributions.Normal(loc, scale).log_prob(y[:, None])
    return -torch.logsumexp(torch.log_softmax(logits, dim=-1) + log_prob, dim=-1).mean()


def fit_reference(
    X_train: np.ndarray, y_train: np.ndarray, epochs: int, seed: int
) -> tuple[SeedMDN, float]:
    """Hand-written full-batch Adam loop on the raw data, as a user would write it from the seed.

    Returns the fitted model and the wall time of the fit (tensor conversion, model and
    optimiser construction, and the training loop).
    """
    torch.manual_seed(seed)
    start = time.perf_counter()
    x = torch.as_tensor(X_train, dtype=torch.float32)
    y = torch.as_tensor(y_train, dtype=torch.float32)
    model = SeedMDN(n_features=x.shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = seed_nll(model, x, y)
        loss.backward()
        optimizer.step()
    elapsed = time.perf_counter() - start
    return model, elapsed


@torch.no_grad()
def reference_test_nll(model: SeedMDN, X_test: np.ndarray, y_test: np.ndarray) -> float:
    x = torch.as_tensor(X_test, dtype=torch.float32)
    y = torch.as_tensor(y_test, dtype=torch.float32)
    return float(seed_nll(model, x, y))


# ---------------------------------------------------------------------------- our side


def fit_ours(
    X_train: np.ndarray, y_train: np.ndarray, epochs: int, seed: int, full_batch: bool = False
) -> tuple[Any, float, list[str]]:
    """Fit ``MDNRegressor`` with the seed's network, optimiser and epochs, minibatches of 256 (the
    library's default until 2026-11-26; ``"auto"`` now takes 105 here) and its other defaults
    (early stopping on 10% held out), or full batch if asked.

    Returns the fitted estimator, the wall time of ``fit`` and the messages of any
    warnings it raised (e.g. a ConvergenceWarning), which are recorded, not printed.
    """
    from mdnkit import MDNRegressor

    model = MDNRegressor(
        n_components=N_COMPONENTS,
        hidden_sizes=(HIDDEN, HIDDEN),
        activation="relu",
        learning_rate=LEARNING_RATE,
        max_epochs=epochs,
        random_state=seed,
        # One fit, as the hand-written loop: the default input_noise="auto" fits three networks
        # to choose a noise level, which is model selection, not training speed.
        input_noise=0.0,
        batch_size=None if full_batch else 256,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        model.fit(X_train, y_train)
        elapsed = time.perf_counter() - start
    return model, elapsed, [f"{w.category.__name__}: {w.message}" for w in caught]


# ------------------------------------------------------------------------------ driver


def _summary(name: str, times: list[float], nlls: list[float], epochs: list[int], oracle: float) -> dict:
    nll_median = statistics.median(nlls)
    return {
        "method": name,
        "fit_seconds": times,
        "fit_seconds_median": statistics.median(times),
        "fit_seconds_min": min(times),
        "fit_seconds_max": max(times),
        "epochs_run": epochs,
        "test_nll": nlls,
        "test_nll_median": nll_median,
        "gap_to_oracle": nll_median - oracle,
    }


def _fmt_epochs(epochs: list[int]) -> str:
    return "/".join(str(e) for e in epochs)


def _print_table(rows: list[dict], oracle: float) -> None:
    header = (
        f"{'method':<24} {'median s':>9} {'min s':>8} {'max s':>8} {'epochs run':>16} "
        f"{'test NLL':>9} {'gap':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['method']:<24} {r['fit_seconds_median']:>9.3f} {r['fit_seconds_min']:>8.3f} "
            f"{r['fit_seconds_max']:>8.3f} {_fmt_epochs(r['epochs_run']):>16} "
            f"{r['test_nll_median']:>9.4f} {r['gap_to_oracle']:>+8.4f}"
        )
    print(f"{'oracle (true p(y|x))':<24} {'':>9} {'':>8} {'':>8} {'':>16} {oracle:>9.4f} {0.0:>+8.4f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="fits per method (median reported)")
    parser.add_argument("--epochs", type=int, default=1000, help="full-batch epochs (max_epochs for ours)")
    parser.add_argument(
        "--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads for both fits"
    )
    parser.add_argument(
        "--full-batch", action="store_true",
        help="fit ours full batch too (default: minibatches of 256)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="write results as JSON")
    parser.add_argument(
        "--only-reference", action="store_true", help="time only the hand-written loop (no mdnkit estimator)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1 or args.threads < 1:
        parser.error("--repeats, --epochs and --threads must be >= 1")

    torch.set_num_threads(args.threads)

    X, y = make_inverted_sinusoid(N_SAMPLES, random_state=DATA_SEED)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=SPLIT_SEED)
    oracle = float(-inverted_sinusoid_log_density(X_test, y_test).mean())

    if not args.only_reference:
        try:
            from mdnkit import MDNRegressor  # noqa: F401
        except ImportError as exc:
            parser.error(f"cannot import mdnkit.MDNRegressor ({exc}); use --only-reference")

    print(
        f"Edward MDN seed: N={N_SAMPLES} (train {len(y_train)}, test {len(y_test)}), K={N_COMPONENTS}, "
        f"hidden=({HIDDEN}, {HIDDEN}) ReLU, Adam lr={LEARNING_RATE}, {args.epochs} epochs "
        f"(hand-written: full batch; MDNRegressor: {'full batch' if args.full_batch else 'batches of 256'})"
    )
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), {platform.processor() or platform.machine()}, "
        f"repeats={args.repeats}"
    )

    # Untimed warm-up of both code paths (lazy imports, allocator, thread pool start-up).
    fit_reference(X_train, y_train, min(WARMUP_EPOCHS, args.epochs), seed=0)
    if not args.only_reference:
        fit_ours(X_train, y_train, min(WARMUP_EPOCHS, args.epochs), seed=0, full_batch=args.full_batch)

    ref_times: list[float] = []
    ref_nlls: list[float] = []
    our_times: list[float] = []
    our_nlls: list[float] = []
    our_epochs: list[int] = []
    our_warnings: list[list[str]] = []
    for seed in range(args.repeats):
        model, t = fit_reference(X_train, y_train, args.epochs, seed)
        ref_times.append(t)
        ref_nlls.append(reference_test_nll(model, X_test, y_test))
        print(f"  repeat {seed}: hand-written {t:7.3f} s  test NLL {ref_nlls[-1]:.4f}", end="", flush=True)
        if not args.only_reference:
            est, t, caught = fit_ours(X_train, y_train, args.epochs, seed, full_batch=args.full_batch)
            our_times.append(t)
            our_nlls.append(float(-est.score(X_test, y_test)))
            our_epochs.append(int(est.n_iter_))
            our_warnings.append(caught)
            flag = f"  [{len(caught)} warning(s)]" if caught else ""
            print(
                f" | MDNRegressor {t:7.3f} s  test NLL {our_nlls[-1]:.4f}  n_iter_ {our_epochs[-1]}{flag}",
                end="",
            )
        print(flush=True)

    rows = [_summary("hand-written PyTorch", ref_times, ref_nlls, [args.epochs] * args.repeats, oracle)]
    if not args.only_reference:
        rows.append(_summary("MDNRegressor", our_times, our_nlls, our_epochs, oracle))
        rows[-1]["fit_warnings"] = our_warnings
    print()
    _print_table(rows, oracle)
    for message in sorted({m for caught in our_warnings for m in caught}):
        print(f"note: MDNRegressor.fit warned: {message}")

    results: dict[str, Any] = {
        "config": {
            "n_samples": N_SAMPLES,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "n_components": N_COMPONENTS,
            "hidden_sizes": [HIDDEN, HIDDEN],
            "learning_rate": LEARNING_RATE,
            "epochs": args.epochs,
            "ours_full_batch": args.full_batch,
            "repeats": args.repeats,
            "threads": args.threads,
            "torch": torch.__version__,
            "platform": platform.platform(),
        },
        "oracle_test_nll": oracle,
        "methods": rows,
    }
    if not args.only_reference:
        ratio = rows[1]["fit_seconds_median"] / rows[0]["fit_seconds_median"]
        nll_ok = rows[1]["test_nll_median"] <= rows[0]["test_nll_median"]
        passed = ratio <= 1.0 and nll_ok and math.isfinite(rows[1]["test_nll_median"])
        print()
        print(f"time ratio MDNRegressor / hand-written (median): {ratio:.3f}")
        print(
            f"test NLL: MDNRegressor {rows[1]['test_nll_median']:.4f} vs hand-written "
            f"{rows[0]['test_nll_median']:.4f} (oracle {oracle:.4f})"
        )
        print(
            f"{'PASS' if passed else 'FAIL'}: target ratio <= 1.0 ({'ok' if ratio <= 1.0 else 'missed'}) "
            f"and test NLL at least as good ({'ok' if nll_ok else 'missed'})"
        )
        results.update({"time_ratio": ratio, "nll_at_least_as_good": nll_ok, "passed": passed})

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
