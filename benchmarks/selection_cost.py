"""What automatic selection costs: MDNRegressorCV against single MDNRegressor fits.

Fits on the Edward inverted sinusoid (N=5000, its 75/25 split) and the first split of a UCI set;
prints the median over seeds of fit seconds, the validation NLL each model saw (the CV's hold-out,
a single fit's early-stopping rows; both original units) and the test NLL. Not a test; a record.

    python benchmarks/selection_cost.py --uci ../shared/benchmarks/uci --datasets concrete --seeds 3
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from mdnkit import MDNRegressor
from mdnkit.datasets import make_inverted_sinusoid
from mdnkit.selection import MDNRegressorCV

METHODS = {
    "MDNRegressorCV()": lambda seed: MDNRegressorCV(random_state=seed),
    "MDNRegressorCV(refit=True)": lambda seed: MDNRegressorCV(refit=True, random_state=seed),
    "MDNRegressor()": lambda seed: MDNRegressor(random_state=seed),
    "MDNRegressor(n_components='auto')": lambda seed: MDNRegressor(n_components="auto", random_state=seed),
    "MDNRegressor(n_components=10)": lambda seed: MDNRegressor(n_components=10, random_state=seed),
}


def problems(uci: Path | None, datasets: list[str]):
    X, y = make_inverted_sinusoid(5000, random_state=0)
    yield "sinusoid", *train_test_split(X, y, random_state=42)
    for name in datasets if uci else []:
        folder = uci / name
        data = np.loadtxt(folder / "data.txt")
        features = np.loadtxt(folder / "index_features.txt", dtype=int)
        target = int(np.loadtxt(folder / "index_target.txt"))
        train = np.loadtxt(folder / "index_train_0.txt", dtype=int)
        test = np.loadtxt(folder / "index_test_0.txt", dtype=int)
        yield f"{name}:0", data[train][:, features], data[test][:, features], data[train, target], data[test, target]


def validation_nll(model) -> float:
    if isinstance(model, MDNRegressorCV):
        return model.validation_nll_
    return min(r["val_nll"] for r in model.history_)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uci", type=Path, default=None)
    parser.add_argument("--datasets", nargs="*", default=["concrete"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--no-sinusoid", action="store_true", help="only the UCI sets")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    print(f"| data | method | seconds | val NLL | test NLL | chosen (K, hidden) |\n|---|---|---|---|---|---|")
    for name, X_train, X_test, y_train, y_test in problems(args.uci, args.datasets):
        if name == "sinusoid" and args.no_sinusoid:
            continue
        for method in args.methods:
            make = METHODS[method]
            runs = []
            for seed in range(args.seeds):
                start = time.perf_counter()
                model = make(seed).fit(X_train, y_train)
                seconds = time.perf_counter() - start
                runs.append((seconds, validation_nll(model), -model.score(X_test, y_test)))
                fitted = model.best_estimator_ if isinstance(model, MDNRegressorCV) else model
                chosen = (fitted.n_components_, fitted.hidden_sizes[0])
                print(f"  # {name} {method} seed {seed}: {runs[-1]} {chosen}", flush=True)
            s, v, t = np.median(np.asarray(runs), axis=0)
            print(f"| {name} | {method} | {s:.1f} | {v:.3f} | {t:.3f} | {chosen} (seed {args.seeds - 1}) |", flush=True)


if __name__ == "__main__":
    main()
