"""Rounded targets on UCI red wine (integer quality scores 3-8): a density versus bin probabilities.

On each split, a default ``MDNRegressor(random_state=split)`` (continuous density) and the same
with ``target_resolution=1`` (trained on ``P(y) = F(y + 1/2) - F(y - 1/2)``) are fitted on the
training rows. For the test rows the table gives

* the continuous NLL ``-mean log p(y)`` (nats per row; what published UCI tables report, and
  meaningless here: a density can spike at the integers and push it down without bound);
* the discrete NLL ``-mean log P(bin of y)`` of both models, the continuous one's bins taken from
  its own cdf, so both are compared on the same scale (a model that predicts the score's
  frequencies in the training set, ignoring ``x``, is the floor to beat);
* the probability each model puts on the bins of the six observed scores, and on all integers
  from -20 to 30 (a sanity check: that should be 1).

Not a test; a record for the README:

    python benchmarks/rounded.py --splits 3
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from mdnkit import MDNRegressor, RoundedTargetWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import load_dataset  # (the benchmark's own loader, beside this script)

DEFAULT_ROOT = Path("/work/shared/benchmarks/uci")


def discrete_nll(model: MDNRegressor, X: np.ndarray, y: np.ndarray) -> float:
    """``-mean log P(y - 1/2 < Y <= y + 1/2 | x)`` from the model's continuous mixture."""
    mixture = model.predict_dist(X)
    values = torch.from_numpy(y.reshape(-1, 1))
    return float(-mixture.interval_log_prob(values - 0.5, values + 0.5).mean())


def continuous_nll(model: MDNRegressor, X: np.ndarray, y: np.ndarray) -> float:
    """``-mean log p(y | x)``, the density at the recorded value (nats per unit of quality)."""
    return float(-model.predict_dist(X).log_prob(torch.from_numpy(y.reshape(-1, 1))).mean())


def frequency_nll(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """The discrete NLL of the training frequencies of each score (add-one smoothed), ignoring ``x``."""
    grid = np.arange(y_train.min(), y_train.max() + 1)
    counts = np.array([(y_train == v).sum() for v in grid]) + 1.0
    probabilities = dict(zip(grid, counts / counts.sum()))
    return float(-np.mean([np.log(probabilities.get(v, 1.0 / counts.sum())) for v in y_test]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.root, "wine-quality-red", n_splits=args.splits)
    observed = np.unique(data.y)
    wide = np.arange(-20, 31)
    print(f"wine-quality-red: {len(data.y)} rows, scores {observed.astype(int).tolist()}")
    rows = []
    for split, (train, test) in enumerate(zip(data.train_indices, data.test_indices)):
        X_train, y_train, X_test, y_test = data.X[train], data.y[train], data.X[test], data.y[test]
        record = {"split": split, "frequencies": frequency_nll(y_train, y_test)}
        for name, resolution in (("continuous", None), ("rounded", 1.0)):
            start = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = MDNRegressor(random_state=split, target_resolution=resolution).fit(X_train, y_train)
            rounded_warnings = [str(w.message) for w in caught if issubclass(w.category, RoundedTargetWarning)]
            if split == 0 and rounded_warnings:
                print(f"  fit warned: {rounded_warnings[0]}")
            record[f"{name}_seconds"] = time.perf_counter() - start
            record[f"{name}_continuous"] = continuous_nll(model, X_test, y_test)
            record[f"{name}_discrete"] = discrete_nll(model, X_test, y_test)
            record[f"{name}_mass_observed"] = float(model.predict_bin_probabilities(X_test, observed, 1.0).sum(1).mean())
            record[f"{name}_mass_wide"] = float(model.predict_bin_probabilities(X_test, wide, 1.0).sum(1).mean())
            if resolution is not None:  # score is the discrete log-probability
                assert abs(-model.score(X_test, y_test) - record[f"{name}_discrete"]) < 1e-9
        rows.append(record)
        print(f"  split {split}: " + ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k != "split"), flush=True)

    def mean(key: str) -> str:
        values = np.array([r[key] for r in rows])
        return f"{values.mean():.3f} ± {values.std(ddof=1) / np.sqrt(len(values)):.3f}" if len(values) > 1 \
            else f"{values.mean():.3f}"

    print(f"\nmean ± standard error over {len(rows)} splits (test rows)\n")
    print("| model | continuous NLL (nats) | discrete NLL of the score | mass on scores 3-8 | mass on -20..30 | fit (s) |")
    print("|---|---|---|---|---|---|")
    for name, label in (("continuous", "MDNRegressor()"), ("rounded", "MDNRegressor(target_resolution=1)")):
        print(f"| `{label}` | {mean(name + '_continuous')} | {mean(name + '_discrete')} | "
              f"{mean(name + '_mass_observed')} | {mean(name + '_mass_wide')} | {mean(name + '_seconds')} |")
    print(f"| training frequencies of each score (no x) | - | {mean('frequencies')} | 1 | 1 | - |")


if __name__ == "__main__":
    main()
