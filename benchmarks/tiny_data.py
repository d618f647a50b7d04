"""Tiny real data (100-400 rows, one or two features): mdnkit's defaults against a joint
Gaussian mixture with a BIC-chosen number of components (issue 13, goal 4).

Each set ships inside a package (the ``bench`` extra), so nothing is downloaded:

* ``engel``: household food expenditure from income (235 rows; ``statsmodels``), heteroscedastic;
* ``iris``: petal length from sepal length (150 rows; ``vega_datasets``), bimodal where setosa
  and the other species overlap in sepal length; ``iris2`` adds sepal width;
* ``cars``: miles per gallon from horsepower (392 rows with every value; ``vega_datasets``);
  ``cars2`` adds weight;
* ``cancer``: cancer deaths from a county's population (301 rows; ``statsmodels``), counts whose
  spread grows with the mean.

Methods: ``MDNRegressor()`` (the defaults: the noise search's six networks, two per level, as one
mixture), the noise mixture with one network per level (the default until 2026-12-07),
one network at the best noise level (``input_noise="select"``), ``MDNRegressor(n_estimators=5)``,
target noise searched too (``target_noise="auto"``, with either), the mixture with three
networks per level (``mdnkit mixture x3``, a candidate default), and
``ConditionalGMM`` (``mdnkit.baselines``: a full-covariance mixture over the joint ``[x, y]``,
conditioned on ``x``) with ``K`` from 1 to 8 chosen by BIC on the training rows. Each set is split
at random 80/20 ``--splits`` times (seeded); the table gives the mean test NLL (nats per row,
original units) ± its standard error over the splits, each method's mean paired difference to the
GMM (negative: better than the GMM) with the number of splits it wins, and the mean fit seconds.

    python benchmarks/tiny_data.py --splits 10 --json benchmarks/results/tiny_data.json
    python benchmarks/tiny_data.py --report benchmarks/results/tiny_data.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

DataSet = tuple[np.ndarray, np.ndarray]
MAX_GMM_COMPONENTS = 8


def engel() -> DataSet:
    import statsmodels.api as sm

    frame = sm.datasets.engel.load_pandas().data
    return frame[["income"]].to_numpy(float), frame["foodexp"].to_numpy(float)


def _iris(features: list[str]) -> DataSet:
    from vega_datasets import local_data

    frame = local_data.iris()
    return frame[features].to_numpy(float), frame["petalLength"].to_numpy(float)


def _cars(features: list[str]) -> DataSet:
    from vega_datasets import local_data

    frame = local_data.cars().dropna(subset=[*features, "Miles_per_Gallon"])
    return frame[features].to_numpy(float), frame["Miles_per_Gallon"].to_numpy(float)


def cancer() -> DataSet:
    import statsmodels.api as sm

    frame = sm.datasets.cancer.load_pandas().data
    return frame[["population"]].to_numpy(float), frame["cancer"].to_numpy(float)


SETS: dict[str, Callable[[], DataSet]] = {
    "engel": engel,
    "iris": lambda: _iris(["sepalLength"]),
    "iris2": lambda: _iris(["sepalLength", "sepalWidth"]),
    "cars": lambda: _cars(["Horsepower"]),
    "cars2": lambda: _cars(["Horsepower", "Weight_in_lbs"]),
    "cancer": cancer,
}


def bic_gmm(X: np.ndarray, y: np.ndarray, seed: int):
    """``ConditionalGMM`` with the ``K`` in ``1..8`` of the lowest BIC of its joint fit."""
    from mdnkit.baselines import ConditionalGMM

    best, best_bic = None, np.inf
    for k in range(1, MAX_GMM_COMPONENTS + 1):
        model = ConditionalGMM(n_components=k, random_state=seed).fit(X, y)
        joint = np.column_stack([(X - model.x_mean_) / model.x_scale_, (y[:, None] - model.y_mean_) / model.y_scale_])
        bic = model.gmm_.bic(joint)
        if bic < best_bic:
            best, best_bic = model, bic
    return best


METHODS: dict[str, Callable[[np.ndarray, np.ndarray, int], object]] = {
    "mdnkit default": lambda X, y, seed: _mdn(X, y, seed),
    # The default with the last step's weights (until 2026-12-08), not their moving average.
    "mdnkit last weights": lambda X, y, seed: _mdn(X, y, seed, weight_averaging=0.0),
    "mdnkit one per level": lambda X, y, seed: _mdn(X, y, seed, replicates=1),
    # One network at the best of the three noise levels (the default until 2026-12-03).
    "mdnkit input_noise=select": lambda X, y, seed: _mdn(X, y, seed, input_noise="select"),
    "mdnkit 5 members": lambda X, y, seed: _mdn(X, y, seed, n_estimators=5),
    "mdnkit target_noise=auto": lambda X, y, seed: _mdn(X, y, seed, target_noise="auto"),
    "mdnkit select, target_noise=auto": lambda X, y, seed: _mdn(X, y, seed, input_noise="select",
                                                                target_noise="auto"),
    # Three networks per noise level, nine in one pass (MDNRegressor._noise_replicates; a candidate).
    "mdnkit mixture x3": lambda X, y, seed: _mdn(X, y, seed, replicates=3),
    # Periodic feature embeddings before the MLP (feature_embedding="periodic"; issue 13).
    "mdnkit periodic": lambda X, y, seed: _mdn(X, y, seed, feature_embedding="periodic"),
    "ConditionalGMM (BIC)": bic_gmm,
}


def _mdn(X: np.ndarray, y: np.ndarray, seed: int, replicates: int | None = None, **settings):
    """``MDNRegressor(**settings)``; ``replicates``: networks per noise level (``None``: the default)."""
    from mdnkit import MDNRegressor

    model = MDNRegressor if replicates is None else type("ReplicatedMixture", (MDNRegressor,), {"_noise_replicates": replicates})
    return model(random_state=seed, **settings).fit(X, y)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10, help="random 80/20 splits per set (default 10)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every split's NLL and seconds here")
    parser.add_argument("--report", type=Path, metavar="JSON", help="only reprint the table of a --json file")
    args = parser.parse_args(argv)
    print("| data (rows, features) | method | test NLL | − GMM (wins) | fit s |")
    print("|---|---|---:|---:|---:|")
    if args.report:
        for name, runs in json.loads(args.report.read_text()).items():
            _print_rows(name, SETS[name]()[0].shape, runs)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for name in args.sets:
        X, y = SETS[name]()
        runs = results[name] = {method: {"nll": [], "seconds": []} for method in args.methods}
        for split in range(args.splits):
            rows = np.random.default_rng(split).permutation(len(y))
            test, train = rows[: len(y) // 5], rows[len(y) // 5:]
            for method in args.methods:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = METHODS[method](X[train], y[train], split)
                    runs[method]["seconds"].append(time.perf_counter() - start)
                    runs[method]["nll"].append(-float(model.score(X[test], y[test])))
            print(f"{name} split {split} done", file=sys.stderr)
        _print_rows(name, X.shape, runs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _print_rows(name: str, shape: tuple[int, int], runs: dict[str, dict[str, list[float]]]) -> None:
    """One table row per method: mean NLL ± s.e., the paired difference to the GMM and its wins."""
    reference = "ConditionalGMM (BIC)"
    for method, run in runs.items():
        nll = np.array(run["nll"])
        line = f"| {name} {shape} | {method} | {nll.mean():.3f} ± {_se(nll):.3f} | "
        if method != reference and reference in runs:
            gap = nll - np.array(runs[reference]["nll"])
            line += f"{gap.mean():+.3f} ± {_se(gap):.3f} ({int((gap < 0).sum())}/{len(gap)}) | "
        else:
            line += "| "
        print(line + f"{np.mean(run['seconds']):.1f} |", flush=True)


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


if __name__ == "__main__":
    sys.exit(main())
