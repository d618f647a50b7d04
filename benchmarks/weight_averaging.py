"""The default fit with and without the weights' moving average (``weight_averaging=0.99``, the
default since 2026-12-08, against ``0.0``), alternating in one process on the same UCI splits,
so that both see the same machine: test NLL, CRPS and RMSE (original units) per split, and
the median fit seconds and epochs over the splits, one thread.

    python benchmarks/weight_averaging.py --datasets yacht energy concrete bostonHousing --splits 5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import mixture_forecast, score  # noqa: E402
from uci import DEFAULT_ROOT, load_dataset  # noqa: E402

SETTINGS = {"last weights": 0.0, "averaged": 0.99}


def fit_and_score(X, y, X_test, y_test, seed: int, averaging: float) -> dict[str, float]:
    """One default fit (seeded as ``benchmarks/peers.py`` seeds split ``seed``) and its test scores."""
    from mdnkit import MDNRegressor

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MDNRegressor(random_state=seed, device="cpu", weight_averaging=averaging).fit(X, y)
    seconds = time.perf_counter() - start
    return {**score(mixture_forecast(model.predict_dist(X_test)), y_test), "seconds": seconds, "epochs": model.n_iter_}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete", "bostonHousing"])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        data = load_dataset(args.root, name, args.splits)
        runs: dict[str, list[dict[str, float]]] = {label: [] for label in SETTINGS}
        for split in range(data.n_splits):
            X, y, X_test, y_test = data.split(split)
            for label, averaging in SETTINGS.items():  # alternating: both see the same machine
                runs[label].append(fit_and_score(X, y, X_test, y_test, split, averaging))
                print(f"{name} {split} {label}: " + "  ".join(f"{k} {v:.4g}" for k, v in runs[label][-1].items()),
                      flush=True)
        rows.append((name, runs))
    print("\n| data set | setting | NLL | CRPS | RMSE | fit s (median) | epochs (median) | time ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, runs in rows:
        reference = np.median([r["seconds"] for r in runs["last weights"]])
        for label, results in runs.items():
            mean = {key: np.mean([r[key] for r in results]) for key in ("nll", "crps", "rmse")}
            seconds = np.median([r["seconds"] for r in results])
            print(f"| {name} | {label} | {mean['nll']:.3f} | {mean['crps']:.4g} | {mean['rmse']:.4g} | {seconds:.2f} | "
                  f"{np.median([r['epochs'] for r in results]):.0f} | {seconds / reference:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
