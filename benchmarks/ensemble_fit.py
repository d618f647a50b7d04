"""Benchmark: a deep ensemble of 5 MDNs fitted at once (batched) against 5 separate fits.

``MDNRegressor(n_estimators=5)`` trains its members together in batched layers (one optimiser
step for all); the alternative is five ``MDNRegressor(n_estimators=1)`` fits with different seeds
whose predictions are mixed by hand, ``log p(y|x) = logsumexp_m log p_m(y|x) - log 5``. Both use
the same settings and data; every member, batched or not, early-stops on its own validation NLL.
The separate fits differ in seed, so each holds out different validation rows; so do the
batched members (member 0 the rows of a single fit with the ensemble's seed). With the defaults
(``input_noise="auto"``, ``"select"`` for a separate fit, so that it is one network) both sides
choose the noise inside ``fit``: once for the batched ensemble, once per separate fit.

Data: the Edward MDN seed (inverted sinusoid, N=5000, 75/25 split, K=20, two hidden layers of 15
ReLU units, learning rate 5e-3, batches of 256, at most 1000 epochs) and the UCI ``concrete``
table (1030 rows, 8 features, PBP split 0, the estimator's defaults), when its folder is found. Each repeat is
seeded; the two methods alternate; medians over ``--repeats`` are reported with the ratio of
wall times (batched / separate; below 1 means batching is faster) and both test NLLs.

Usage::

    PYTHONPATH=src python benchmarks/ensemble_fit.py [--repeats 3] [--threads 1] [--members 5]
        [--uci-root PATH] [--json results.json]
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
from scipy.special import logsumexp
from sklearn.model_selection import train_test_split

try:  # runnable from a checkout without installing: put src/ on the path
    import mdnkit  # noqa: F401
except ImportError:  # pragma: no cover - depends on how the script is launched
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mdnkit import MDNRegressor
from mdnkit.datasets import make_inverted_sinusoid

UCI_ROOT = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "uci"
EDWARD = dict(n_components=20, hidden_sizes=(15, 15), learning_rate=5e-3, batch_size=256, max_epochs=1000)


def edward_data() -> tuple[np.ndarray, ...]:
    X, y = make_inverted_sinusoid(5000, random_state=0)
    return tuple(train_test_split(X, y, test_size=0.25, random_state=42))


def concrete_data(root: Path) -> tuple[np.ndarray, ...] | None:
    folder = root / "concrete"
    if not (folder / "data.txt").exists():
        folder = folder / "data"
    if not (folder / "data.txt").exists():
        return None
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt", dtype=int)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    train = np.loadtxt(folder / "index_train_0.txt", dtype=int)
    test = np.loadtxt(folder / "index_test_0.txt", dtype=int)
    X, y = data[:, features], data[:, target]
    return X[train], X[test], y[train], y[test]


def timed_fit(model: MDNRegressor, X: np.ndarray, y: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_epochs: recorded via n_iter_
        start = time.perf_counter()
        model.fit(X, y)
        return time.perf_counter() - start


def run_batched(data, params: dict, members: int, seed: int) -> dict[str, Any]:
    X_train, X_test, y_train, y_test = data
    model = MDNRegressor(**params, n_estimators=members, random_state=seed)
    seconds = timed_fit(model, X_train, y_train)
    member_log_prob = model.predict_members_dist(X_test).log_prob(
        torch.as_tensor(y_test.reshape(len(y_test), -1))).numpy()  # [M, n]
    return {
        "seconds": seconds, "epochs": model.n_iter_,
        "test_nll": -model.score(X_test, y_test),
        "member_test_nll": float(-member_log_prob.mean()),
    }


def run_separate(data, params: dict, members: int, seed: int) -> dict[str, Any]:
    X_train, X_test, y_train, y_test = data
    seconds, epochs, log_probs = 0.0, [], []
    for m in range(members):
        model = MDNRegressor(**params, input_noise="select", random_state=seed * 1000 + m)  # one network each
        seconds += timed_fit(model, X_train, y_train)
        epochs.append(model.n_iter_)
        log_probs.append(model.score_samples(X_test, y_test))
    log_probs = np.stack(log_probs)  # [M, n]
    return {
        "seconds": seconds, "epochs": int(np.median(epochs)),
        "test_nll": float(-(logsumexp(log_probs, axis=0) - np.log(members)).mean()),
        "member_test_nll": float(-log_probs.mean()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--uci-root", type=Path, default=UCI_ROOT)
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    problems = [("edward N=5000", edward_data(), EDWARD)]
    concrete = concrete_data(args.uci_root)
    if concrete is not None:
        problems.append(("uci concrete", concrete, {}))
    else:
        print(f"(UCI concrete not found under {args.uci_root}; skipped)")
    print(f"torch {torch.__version__}, {args.threads} thread(s), M={args.members}, repeats={args.repeats}")

    results = []
    for name, data, params in problems:
        runs: dict[str, list[dict]] = {"batched": [], "separate": []}
        for repeat in range(args.repeats):
            # Alternate which goes first, so that drifting machine load hits both alike.
            order = ("batched", "separate") if repeat % 2 == 0 else ("separate", "batched")
            for method in order:
                run = (run_batched if method == "batched" else run_separate)(data, params, args.members, repeat)
                runs[method].append(run)
                print(f"  {name} repeat {repeat} {method:<9} {run['seconds']:7.2f} s  epochs {run['epochs']:5d}  "
                      f"test NLL {run['test_nll']:.4f} (members {run['member_test_nll']:.4f})", flush=True)
        summary = {"problem": name}
        for method, method_runs in runs.items():
            summary[method] = {
                key: statistics.median(r[key] for r in method_runs)
                for key in ("seconds", "epochs", "test_nll", "member_test_nll")
            }
        summary["ratio"] = summary["batched"]["seconds"] / summary["separate"]["seconds"]
        results.append(summary)

    header = (f"{'problem':<16} {'batched s':>10} {'separate s':>11} {'ratio':>7} {'epochs b/s':>11} "
              f"{'NLL batched':>12} {'NLL separate':>13} {'NLL 1 member':>13}")
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        b, s = r["batched"], r["separate"]
        print(f"{r['problem']:<16} {b['seconds']:>10.2f} {s['seconds']:>11.2f} {r['ratio']:>7.3f} "
              f"{b['epochs']:>5.0f}/{s['epochs']:<5.0f} {b['test_nll']:>12.4f} {s['test_nll']:>13.4f} "
              f"{s['member_test_nll']:>13.4f}")
    print("(medians; ratio = batched / separate wall time; NLL 1 member: mean test NLL of the separate fits)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
