"""Trials of other defaults for small data (issue 13): a 5-member ensemble on the small UCI sets.

Each trial is ``MDNRegressor(n_estimators=5, random_state=split, **settings)`` on the PBP training
rows of a split, scored on its test rows (NLL, CRPS and RMSE of the mean, original units), with
the fit's wall time. ``quantile`` first maps every feature through scikit-learn's
``QuantileTransformer(output_distribution="normal")`` fitted on the training rows (the
preprocessing of Gorishniy et al. 2021), so trees' invariance to monotone feature transforms is
given to the network. One fit per process first pays torch's optimiser import, outside the timing.

    python benchmarks/small_data_trials.py --trials default full-batch quantile --splits 5
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, SHORT_NAMES, load_dataset  # noqa: E402

TRIALS = {
    "default": {},
    "full-batch": {"batch_size": None, "learning_rate": 1e-2},  # one step per epoch, a larger rate
    "quantile": {},  # the default model on quantile-normalised features
}
DATASETS = ["yacht", "energy", "concrete", "bostonHousing", "wine-quality-red"]


def _features(trial: str, X: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if trial != "quantile":
        return X, X_test
    from sklearn.preprocessing import QuantileTransformer

    transform = QuantileTransformer(output_distribution="normal", n_quantiles=min(1000, len(X)),
                                    subsample=10**9, random_state=0).fit(X)
    return transform.transform(X), transform.transform(X_test)


def run(trial: str, name: str, split: int, data) -> dict[str, float]:
    """One fit and its test scores."""
    from mdnkit import MDNRegressor
    from mdnkit.metrics import crps

    train, test = data.train_indices[split], data.test_indices[split]
    X, X_test = _features(trial, data.X[train], data.X[test])
    y, y_test = data.y[train], data.y[test]
    model = MDNRegressor(n_estimators=5, random_state=split, **TRIALS[trial])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
        seconds = time.perf_counter() - start
        dist = model.predict_dist(X_test)
        nll = -float(np.mean(model.score_samples(X_test, y_test)))
    mean = dist.mean.numpy()[:, 0]
    return {"nll": nll, "crps": float(np.mean(crps(dist, y_test))),
            "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2))), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", nargs="+", default=list(TRIALS), choices=list(TRIALS))
    parser.add_argument("--datasets", nargs="+", default=DATASETS)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from mdnkit import MDNRegressor

    with warnings.catch_warnings():  # torch's first-optimiser import, outside every timing
        warnings.simplefilter("ignore")
        MDNRegressor(max_epochs=2, input_noise=0.0).fit(np.random.default_rng(0).normal(size=(50, 2)), np.arange(50.0))
    print("| set | trial | NLL | CRPS | RMSE | fit s |\n|---|---|---:|---:|---:|---:|")
    for name in args.datasets:
        data = load_dataset(args.root, name, args.splits)
        for trial in args.trials:
            rows = [run(trial, name, split, data) for split in range(len(data.train_indices))]
            cells = []
            for key in ("nll", "crps", "rmse", "seconds"):
                values = np.array([row[key] for row in rows])
                error = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
                cells.append(f"{values.mean():.3f} ± {error:.3f}")
            print(f"| {SHORT_NAMES.get(name, name)} | {trial} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
