"""Variants of the periodic feature embedding (``feature_embedding="periodic"``) on the UCI splits.

Each configuration is ``base`` (no embedding) or comma-separated ``key=value`` settings of
:class:`mdnkit.networks.PeriodicEmbedding`: ``s`` the initial frequencies' spread (1.0), ``k``
frequencies per feature (16), ``d`` embedding width per feature (16), ``raw`` whether the inputs
come beside their embeddings (1), ``autograd=1`` to train through autograd instead of the
written-out step. Every fit is the default ``MDNRegressor(random_state=split)`` otherwise, one
thread, two processes at a time; printed: mean test NLL, CRPS, RMSE and fit seconds per set.

    python benchmarks/embedding_variants.py --configs base "s=1.0,raw=0" "s=0.3,raw=0" \\
        --datasets yacht energy concrete bostonHousing --splits 5
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, load_dataset  # noqa: E402


def run(name: str, split: int, config: str, root: str) -> dict:
    import torch

    import mdnkit.networks as networks
    import mdnkit.training as training
    from mdnkit import MDNRegressor
    from mdnkit.metrics import crps

    torch.set_num_threads(1)
    params: dict = {"feature_embedding": None}
    if config != "base":
        parts = dict(part.split("=") for part in config.split(","))
        networks.PeriodicEmbedding.__init__.__defaults__ = (  # this worker process only
            None, int(parts.get("k", 16)), int(parts.get("d", 16)), float(parts.get("s", 1.0)),
            bool(int(parts.get("raw", 1))))
        params["feature_embedding"] = "periodic"
        if parts.get("autograd"):
            training.FusedStep.supports = staticmethod(lambda module: False)
    X, y, X_test, y_test = load_dataset(root, name, split + 1).split(split)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = MDNRegressor(random_state=split, **params).fit(X, y)
        seconds = time.perf_counter() - start
    mean = model.predict(X_test)
    return {"dataset": name, "split": split, "config": config, "seconds": seconds,
            "nll": float(-model.score_samples(X_test, y_test).mean()),
            "crps": float(np.mean(crps(model.predict_dist(X_test), y_test))),
            "rmse": float(np.sqrt(np.mean((mean - y_test) ** 2)))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["base", "s=1.0"])
    parser.add_argument("--datasets", nargs="+", default=["yacht", "energy", "concrete", "bostonHousing"])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    work = [(n, s, c, str(args.root)) for n in args.datasets for s in range(args.splits) for c in args.configs]
    with ProcessPoolExecutor(args.jobs, max_tasks_per_child=1) as pool:  # a fresh process per fit
        results = list(pool.map(run, *zip(*work)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    groups = collections.defaultdict(list)
    for r in results:
        groups[(r["dataset"], r["config"])].append(r)
    print("| data set | config | NLL | CRPS | RMSE | fit s |\n|---|---|---:|---:|---:|---:|")
    for (name, config), rows in groups.items():
        print(f"| {name} | {config} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.3f}"
                                                    for k in ("nll", "crps", "rmse", "seconds")) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
