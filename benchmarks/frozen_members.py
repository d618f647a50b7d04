"""Fit time of the default model with the backward pass on the members still training (since
2026-12-07) and on every member, frozen ones included (before), alternating in one process on
each UCI set's split 0 so that both see the same machine; medians of ``--repeats`` fits, one
thread by default. Both give the same model: the table shows both test NLLs.

    python benchmarks/frozen_members.py --datasets yacht energy concrete bostonHousing kin8nm --repeats 2
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
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete", "bostonHousing", "kin8nm"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from mdnkit import MDNRegressor, training

    torch.set_num_threads(args.threads)
    trained_only = training.TrainState.trained_members
    backward_on = {"every member": lambda state, like: None, "members training": trained_only}
    print("| data set | every member s | members training s | ratio | test NLL every / training |")
    print("|---|---:|---:|---:|---:|")
    try:
        for name in args.datasets:
            X, y, X_test, y_test = load_dataset(args.root, name, 1).split(0)
            seconds: dict[str, list[float]] = {mode: [] for mode in backward_on}
            nll = {}
            for _ in range(args.repeats):
                for mode, members in backward_on.items():  # alternating: both see the same machine
                    training.TrainState.trained_members = members
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = MDNRegressor(random_state=0, device="cpu").fit(X, y)
                    seconds[mode].append(time.perf_counter() - start)
                    nll[mode] = -model.score(X_test, y_test)
            every, trained = (np.median(seconds[mode]) for mode in backward_on)
            print(f"| {name} | {every:.2f} | {trained:.2f} | {trained / every:.2f} | "
                  f"{nll['every member']:.6f} / {nll['members training']:.6f} |", flush=True)
    finally:
        training.TrainState.trained_members = trained_only
    return 0


if __name__ == "__main__":
    sys.exit(main())
