"""Fit time of the noise mixture with one and with two networks per noise level (the default
since 2026-12-07), alternating in one process on each UCI set's split 0, so that both see the
same machine; medians of ``--repeats`` fits, one thread by default.

    python benchmarks/noise_replicates.py --datasets yacht energy concrete bostonHousing --repeats 2
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, load_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete", "bostonHousing"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from mdnkit import MDNRegressor

    torch.set_num_threads(args.threads)
    per_level = {count: type(f"Replicates{count}", (MDNRegressor,), {"_noise_replicates": count}) for count in (1, 2)}
    print("| data set | one per level s | two per level s | ratio | test NLL one / two |")
    print("|---|---:|---:|---:|---:|")
    for name in args.datasets:
        X, y, X_test, y_test = load_dataset(args.root, name, 1).split(0)
        seconds: dict[int, list[float]] = {1: [], 2: []}
        nll = {}
        for _ in range(args.repeats):
            for count, model_class in per_level.items():  # alternating: both see the same machine
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = model_class(random_state=0, device="cpu").fit(X, y)
                seconds[count].append(time.perf_counter() - start)
                nll[count] = -model.score(X_test, y_test)
        one, two = np.median(seconds[1]), np.median(seconds[2])
        print(f"| {name} | {one:.2f} | {two:.2f} | {two / one:.2f} | {nll[1]:.3f} / {nll[2]:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
