"""How MDNRegressor's defaults were chosen: held-out NLL of candidate settings on small problems.

Runs each candidate on the Edward inverted sinusoid (its 75/25 split) and on the first splits of
a few UCI sets, and prints test NLL (original units) and fit seconds. Not a test; a record.

    python benchmarks/defaults_sweep.py --uci ../shared/benchmarks/uci --splits 2
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mdnkit import MDNRegressor
from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid

CANDIDATES = {
    "defaults (K5 64x64 relu, bs auto, lr3e-3)": dict(),
    "earlier defaults (bs256, lr1e-3)": dict(batch_size=256, learning_rate=1e-3),
    "bs256, lr3e-3": dict(batch_size=256),
    "full batch, lr3e-3": dict(batch_size=None),
    "tanh": dict(activation="tanh"),
    "noise 0.05": dict(input_noise=0.05, target_noise=0.05),
    "K10 128x128": dict(n_components=10, hidden_sizes=(128, 128)),
    "weight decay 1e-4": dict(weight_decay=1e-4),
    "patience 50": dict(patience=50),
    "patience 100": dict(patience=100),
}


def problems(uci: Path | None, datasets: list[str], n_splits: int):
    X, y = make_inverted_sinusoid(5000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)
    yield "edward", X_train, y_train, X_test, y_test
    if uci is None:
        return
    for name in datasets:
        folder = uci / name
        data = np.loadtxt(folder / "data.txt")
        features = np.loadtxt(folder / "index_features.txt", dtype=int)
        target = int(np.loadtxt(folder / "index_target.txt"))
        for split in range(n_splits):
            train = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
            test = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
            yield f"{name}:{split}", data[train][:, features], data[train, target], data[test][:, features], data[test, target]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uci", type=Path, default=None)
    parser.add_argument("--datasets", nargs="*", default=["bostonHousing", "concrete", "energy", "wine-quality-red"])
    parser.add_argument("--splits", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="candidate names to run")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    names = args.only or list(CANDIDATES)
    for problem, X_train, y_train, X_test, y_test in problems(args.uci, args.datasets, args.splits):
        for name in names:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MDNRegressor(random_state=0, **CANDIDATES[name]).fit(X_train, y_train)
            seconds = time.perf_counter() - start
            rows.append(dict(problem=problem, candidate=name, nll=-model.score(X_test, y_test),
                             seconds=seconds, epochs=model.n_iter_))
            print(f"{problem:22s} {name:40s} nll {rows[-1]['nll']:8.4f}  {seconds:6.1f}s  {model.n_iter_} ep", flush=True)
        if problem == "edward":
            print(f"{'edward':22s} {'(true density)':28s} nll {-inverted_sinusoid_log_density(X_test, y_test).mean():8.4f}")
    by_candidate = {}
    for row in rows:
        by_candidate.setdefault(row["candidate"], []).append(row["nll"])
    print("\nmean test NLL over problems (lower is better):")
    for name, values in sorted(by_candidate.items(), key=lambda item: np.mean(item[1])):
        print(f"  {name:40s} {np.mean(values):8.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
