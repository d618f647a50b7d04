"""The written-out backward pass on every member, frozen (early-stopped) ones included, against
the backward on the members still training (since 2026-12-07): for whole default fits, and for
one step.

Fits: each UCI set's split 0, the two alternating in one process so that both see the same
machine, medians of ``--repeats`` fits, one thread. Both give the same model: the table shows
the test NLLs.

Steps (``--steps F N``): the fused step alone on six networks of ``N`` rows and ``F`` features
(periodic embeddings, five components), with 5 to 1 of them trained, both ways, medians of 5
timings of 300 steps each.

    python benchmarks/frozen_members.py --datasets yacht energy concrete bostonHousing kin8nm --repeats 2
    python benchmarks/frozen_members.py --steps 8 64
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


def fits(root: Path, datasets: list[str], repeats: int) -> None:
    from mdnkit import MDNRegressor, training

    trained_only = training.TrainState.trained_members
    backward_on = {"every member": lambda state, like: None, "members training": trained_only}
    print("| data set | every member s | members training s | ratio | test NLL every / training |")
    print("|---|---:|---:|---:|---:|")
    try:
        for name in datasets:
            X, y, X_test, y_test = load_dataset(root, name, 1).split(0)
            seconds: dict[str, list[float]] = {mode: [] for mode in backward_on}
            nll = {}
            for _ in range(repeats):
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


def steps(n_features: int, n_rows: int, n_members: int = 6, reps: int = 300) -> None:
    import torch

    from mdnkit._fused_step import FusedStep
    from mdnkit.heads import MDNEnsemble

    module = MDNEnsemble(n_features, 1, n_components=5, n_members=n_members, feature_embedding="periodic")
    step = FusedStep(module)
    x, y = torch.randn(n_members, n_rows, n_features), torch.randn(n_rows, 1)
    print(f"| trained of {n_members} | every member ms | members training ms | ratio |")
    print("|---:|---:|---:|---:|")
    for trained in range(n_members - 1, 0, -1):
        weights = torch.tensor([1.0] * trained + [0.0] * (n_members - trained))
        indices = torch.arange(trained)
        timings: dict[bool, list[float]] = {False: [], True: []}
        for gathered in (False, True):  # warm-up
            for _ in range(30):
                step(x, y, None, True, weights, indices if gathered else None)
        for _ in range(5):
            for gathered in (False, True):  # alternating
                start = time.perf_counter()
                for _ in range(reps):
                    step(x, y, None, True, weights, indices if gathered else None)
                timings[gathered].append((time.perf_counter() - start) / reps * 1e3)
        every, gathered = np.median(timings[False]), np.median(timings[True])
        print(f"| {trained} | {every:.3f} | {gathered:.3f} | {gathered / every:.2f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete", "bostonHousing", "kin8nm"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs=2, metavar=("F", "N"), help="time one step instead of fits")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.steps:
        steps(*args.steps)
    else:
        fits(args.root, args.datasets, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
