"""``predict_hdi`` of a default model (six networks of five components: 30 per row) with the
Newton steps on the density's crossings computing the mixture cdf too (before 2026-12-08) and
without it, alternating in one process, medians of ``--repeats``, one thread; both give the same
intervals, which the script checks.

    python benchmarks/hdi.py --rows 300 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    from mdnkit import MDNRegressor, _univariate

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 2))
    y = np.sin(X[:, 0]) + 0.3 * rng.normal(size=args.rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MDNRegressor(random_state=0, max_epochs=30).fit(X, y)
    without_cdf = _univariate._mixture_density_and_slope
    variants = {"with the cdf (before)": lambda x, *parameters: _univariate._mixture_terms(x, *parameters)[1:],
                "without (today)": without_cdf}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    intervals = {}
    model.predict_hdi(X[:20])  # warm-up
    try:
        for _ in range(args.repeats):
            for name, density_and_slope in variants.items():  # alternating: both see the same machine
                _univariate._mixture_density_and_slope = density_and_slope
                start = time.perf_counter()
                intervals[name] = model.predict_hdi(X)
                seconds[name].append(time.perf_counter() - start)
    finally:
        _univariate._mixture_density_and_slope = without_cdf
    before, after = (np.median(seconds[name]) for name in variants)
    same = np.array_equal(*intervals.values(), equal_nan=True)
    print("| rows | components per row | with the cdf s | without s | ratio | same intervals |")
    print("|---:|---:|---:|---:|---:|---|")
    print(f"| {args.rows} | {model.predict_dist(X[:1]).n_components} | {before:.2f} | {after:.2f} | "
          f"{after / before:.2f} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
