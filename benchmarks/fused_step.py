"""Benchmark: fit time with the written-out training step (``mdnkit._fused_step``) against autograd.

The same fits, in one process, alternating: ``MDNRegressor()`` (the default noise mixture, three
networks in one batched pass) and ``MDNRegressor(n_estimators=5)`` on PBP split 0 of the small
UCI sets, once with the written-out step and once with it turned off (every step then goes
through autograd, as before it existed). Medians of ``--repeats`` fit times, their ratio
(written-out / autograd; below 1 is faster), epochs and test NLL of both: the two paths compute
the same gradients, so the NLLs agree to float32 rounding carried through training.

Usage::

    python benchmarks/fused_step.py [--repeats 3] [--threads 1] [--datasets yacht concrete]
        [--uci-root PATH] [--json benchmarks/results/fused_step.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, load_dataset  # noqa: E402

import mdnkit.training as training  # noqa: E402
from mdnkit import MDNRegressor  # noqa: E402

CONFIGS = {"default": {}, "ensemble5": {"n_estimators": 5}}
WRITTEN_OUT = training.FusedStep.supports


def _fit(X: np.ndarray, y: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, written_out: bool,
         params: dict[str, Any]) -> dict[str, float]:
    training.FusedStep.supports = WRITTEN_OUT if written_out else staticmethod(lambda module: False)
    try:
        model = MDNRegressor(random_state=0, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
    finally:
        training.FusedStep.supports = WRITTEN_OUT
    used = model.train_state_ is not None and model.train_state_.fused_step is not None
    assert used == written_out, "the written-out step was not used as asked"
    return {"seconds": seconds, "epochs": model.n_iter_, "nll": float(-model.score_samples(X_test, y_test).mean())}


def run(datasets: list[str], configs: list[str], repeats: int, root: Path) -> list[dict[str, Any]]:
    rows = []
    for name in datasets:
        X, y, X_test, y_test = load_dataset(root, name, 1).split(0)
        for config in configs:
            runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
            for _ in range(repeats):
                for written_out in (False, True):
                    runs[written_out].append(_fit(X, y, X_test, y_test, written_out, CONFIGS[config]))
            median = {w: statistics.median(r["seconds"] for r in runs[w]) for w in runs}
            rows.append({
                "dataset": name, "config": config, "rows": len(X),
                "autograd_s": median[False], "written_out_s": median[True], "ratio": median[True] / median[False],
                "autograd_nll": runs[False][0]["nll"], "written_out_nll": runs[True][0]["nll"],
                "autograd_epochs": runs[False][0]["epochs"], "written_out_epochs": runs[True][0]["epochs"],
                "runs": {str(w): runs[w] for w in runs},
            })
            print(_format([rows[-1]], header=len(rows) == 1), flush=True)
    return rows


def _format(rows: list[dict[str, Any]], header: bool = True) -> str:
    lines = ["| data (rows) | config | autograd s | written-out s | ratio | epochs | test NLL autograd / written-out |",
             "|---|---|---:|---:|---:|---:|---:|"] if header else []
    for r in rows:
        lines.append(f"| {r['dataset']} ({r['rows']}) | {r['config']} | {r['autograd_s']:.2f} | {r['written_out_s']:.2f} | "
                     f"{r['ratio']:.2f} | {r['autograd_epochs']} / {r['written_out_epochs']} | "
                     f"{r['autograd_nll']:.4f} / {r['written_out_nll']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["yacht", "bostonHousing", "energy", "concrete"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--uci-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = run(args.datasets, args.configs, args.repeats, args.uci_root)
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
