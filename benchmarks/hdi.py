"""``predict_hdi`` (90% highest-density intervals) against ``predict_quantiles`` (the equal-tailed
90% interval, a root finder over the same mixtures) on the same rows, for a default model (six
networks of five components: 30 per row) and one network (five), and ``metrics.evaluate`` (what
``mdnkit evaluate`` and the report compute: four central and four highest-density intervals,
modes, CRPS); medians of ``--repeats``, alternating, one thread.

    python benchmarks/hdi.py --rows 300 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np


def _median_seconds(calls: list, repeats: int) -> list[float]:
    """Median seconds of each call, the calls alternating so that all see the same machine."""
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    return [float(np.median(spent)) for spent in times]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    import torch

    from mdnkit import MDNRegressor, metrics

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(max(args.rows), 2))
    y = np.sin(3 * X[:, 0]) * (X[:, 1] > 0) + 0.3 * rng.normal(size=len(X))  # bimodal where x1 > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = {"default": MDNRegressor(random_state=0, max_epochs=40).fit(X, y),
                  "one network": MDNRegressor(random_state=0, max_epochs=40, input_noise=0.0).fit(X, y)}
    print("| model | components | rows | predict_hdi s | predict_quantiles s | ratio | evaluate s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, model in models.items():
        model.predict_hdi(X[:20])  # warm-up
        for rows in args.rows:
            hdi, quantiles, evaluated = _median_seconds([
                lambda: model.predict_hdi(X[:rows]), lambda: model.predict_quantiles(X[:rows], [0.05, 0.95]),
                lambda: metrics.evaluate(model, X[:rows], y[:rows])], args.repeats)
            print(f"| {name} | {model.predict_dist(X[:1]).n_components} | {rows} | {hdi:.3f} | {quantiles:.3f} | "
                  f"{hdi / quantiles:.1f} | {evaluated:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
