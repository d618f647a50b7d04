"""Benchmark: the cost of ``input_noise="select"`` against fitting its three levels one by one.

``MDNRegressor(input_noise="select")`` trains the levels ``0``, ``0.1 r`` and
``0.25 r`` as the members of one batched ensemble. The reference, in the same process and
interleaved with it, is what the search cost before: three single fits, one at each level, with
the same seed and settings. Reported per data set: the median wall time of ``--repeats`` runs of
each, their ratio, and the test NLL of the kept model next to the best of the three single fits
(chosen, as the search chooses, by validation NLL).

Data: the UCI sets named by ``--datasets`` (first split of the standard PBP splits) and a
synthetic heteroscedastic sine of 1,000 rows.

Usage::

    PYTHONPATH=src python benchmarks/noise_search.py [--repeats 3] [--threads 1]
        [--datasets yacht bostonHousing] [--uci-root ../shared/benchmarks/uci]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

try:  # runnable from a checkout without installing: put src/ on the path
    import mdnkit  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mdnkit import MDNRegressor
from mdnkit.estimator import NOISE_FACTORS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, load_dataset  # noqa: E402


def _sine(n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(n, 1))
    y = np.sin(2 * x[:, 0]) + (0.1 + 0.2 * np.abs(x[:, 0])) * rng.normal(size=n)
    cut = int(0.8 * n)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def _levels(n_rows: int, n_dims: int, validation_fraction: float = 0.1) -> list[float]:
    n_train = n_rows - math.ceil(validation_fraction * n_rows)
    return [factor * n_train ** (-1.0 / (4 + n_dims)) for factor in NOISE_FACTORS]


def _search(X, y, seed: int) -> tuple[float, MDNRegressor]:
    start = time.perf_counter()
    model = MDNRegressor(random_state=seed, device="cpu", input_noise="select").fit(X, y)
    return time.perf_counter() - start, model


def _three_fits(X, y, seed: int) -> tuple[float, MDNRegressor]:
    start = time.perf_counter()
    fits = [MDNRegressor(random_state=seed, device="cpu", input_noise=level).fit(X, y)
            for level in _levels(len(X), X.shape[1] + 1)]
    best = min(fits, key=lambda m: min(r["val_nll"] for r in m.history_))
    return time.perf_counter() - start, best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--datasets", nargs="*", default=["yacht", "bostonHousing"])
    parser.add_argument("--uci-root", type=Path, default=DEFAULT_ROOT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    sets = {"sine (800 rows)": _sine()}
    for name in args.datasets:
        sets[f"{name} split 0"] = load_dataset(args.uci_root, name, 1).split(0)
    print(f"| data | auto (one pass) s | three fits s | ratio | test NLL auto | test NLL best of three |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (X, y, X_test, y_test) in sets.items():
        times = {"auto": [], "three": []}
        nlls = {"auto": [], "three": []}
        for repeat in range(args.repeats):  # interleaved: load changes hit both alike
            for key, run in (("three", _three_fits), ("auto", _search)):
                seconds, model = run(X, y, repeat)
                times[key].append(seconds)
                nlls[key].append(-model.score(X_test, y_test))
        auto, three = statistics.median(times["auto"]), statistics.median(times["three"])
        print(f"| {name} | {auto:.1f} | {three:.1f} | {auto / three:.2f} | "
              f"{statistics.median(nlls['auto']):.3f} | {statistics.median(nlls['three']):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
