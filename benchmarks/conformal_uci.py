"""Conformal calibration on the UCI splits: coverage and width of raw and calibrated sets.

For each split (the fixed PBP train/test splits, see ``uci.py``) the training rows are split once
more, by a seeded draw: ``1 - calibration_fraction`` to fit an ``MDNRegressor`` (defaults, but
one network per noise level, so that its three networks share their early-stopping rows inside
these), the rest to ``calibrate`` it. On the test rows it reports, at
50/80/90/95 %, the coverage and mean width of the model's own central interval and highest-
density set ("raw") and of their conformal versions: calibrated on the held-out rows ("cal") and,
with ``calibrate()`` and no rows, on the model's own early-stopping rows ("val": they chose the
epoch and noise level, so the guarantee is not exact), and the test NLL of the model and of its
PIT-recalibrated distribution. The model sees fewer training rows than in ``uci.py``, so its
NLL is not comparable with the published figures.

``--cv K`` adds cross-conformal (CV+) intervals ("cv"): a second model fitted on all the training
rows, calibrated by ``calibrate(X_train, y_train, cv=K)`` (K more fits), central intervals only;
its test NLL is reported too (``nll_full``: no rows set aside).

    python benchmarks/conformal_uci.py --datasets yacht --splits 1 --max-epochs 300
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, load_dataset

LEVELS = (0.5, 0.8, 0.9, 0.95)
TAGS = ("raw", "cal", "val")
RESULTS = Path(__file__).resolve().parent / "results"


def _coverage_width(bounds: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Share of ``y`` inside and mean total length: ``bounds (n, 2)`` or ``(n, M, 2)`` NaN-padded."""
    if bounds.ndim == 2:
        bounds = bounds[:, None, :]
    inside = ((bounds[..., 0] <= y[:, None]) & (y[:, None] <= bounds[..., 1])).any(-1)
    return float(inside.mean()), float(np.nansum(bounds[..., 1] - bounds[..., 0], axis=-1).mean())


def evaluate_split(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, seed: int,
                   calibration_fraction: float, max_epochs: int, cv: int | None = None) -> dict[str, Any]:
    import torch

    from mdnkit import MDNRegressor

    start = time.perf_counter()
    rows = np.random.default_rng(seed).permutation(len(X_train))
    n_cal = int(np.ceil(calibration_fraction * len(rows)))
    cal, fit = rows[:n_cal], rows[n_cal:]
    # One network per noise level (the default until 2026-12-07), all three on the same validation
    # rows, which calibrate() without rows needs; the default's two per level hold out different rows.
    one_per_level = type("OnePerLevel", (MDNRegressor,), {"_noise_replicates": 1})
    model = one_per_level(device="cpu", random_state=seed, max_epochs=max_epochs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X_train[fit], y_train[fit]).calibrate(X_train[cal], y_train[cal])
    on_validation = copy.copy(model).calibrate()  # the same network, its own validation rows
    y = torch.as_tensor(y_test, dtype=torch.float64)[:, None]
    result: dict[str, Any] = {
        "n_fit": len(fit), "n_cal": n_cal, "n_val": on_validation.calibration_.n_cal, "n_test": len(y_test),
        "nll_raw": float(-model.predict_dist(X_test).log_prob(y).mean()),
        "nll_recalibrated": float(-model.predict_dist(X_test, calibrated=True).log_prob(y).mean()),
    }
    for level in LEVELS:
        key = f"{100 * level:g}"
        for tag, fitted, calibrated in (("raw", model, False), ("cal", model, True), ("val", on_validation, True)):
            for kind, method in (("central", fitted.predict_interval), ("hdi", fitted.predict_hdi)):
                covered, width = _coverage_width(method(X_test, level, calibrated=calibrated), y_test)
                result[f"{kind}_{tag}_coverage_{key}"], result[f"{kind}_{tag}_width_{key}"] = covered, width
    if cv:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = one_per_level(device="cpu", random_state=seed, max_epochs=max_epochs).fit(X_train, y_train)
            full.calibrate(X_train, y_train, cv=cv)
        result["nll_full"] = float(-full.predict_dist(X_test).log_prob(y).mean())
        for level in LEVELS:
            key = f"{100 * level:g}"
            covered, width = _coverage_width(full.predict_interval(X_test, level, calibrated=True), y_test)
            result[f"central_cv_coverage_{key}"], result[f"central_cv_width_{key}"] = covered, width
    result["seconds"] = time.perf_counter() - start
    return result


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per data set and level: means over splits."""
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in results):
        mine = [r for r in results if r["dataset"] == name]
        for level in LEVELS:
            key = f"{100 * level:g}"
            row = {"dataset": name, "level": level, "n_splits": len(mine)}
            for kind in ("central", "hdi"):
                for tag in TAGS + ("cv",):
                    for what in ("coverage", "width"):
                        values = [r[f"{kind}_{tag}_{what}_{key}"] for r in mine if f"{kind}_{tag}_{what}_{key}" in r]
                        row[f"{kind}_{tag}_{what}"] = float(np.mean(values)) if values else float("nan")
            rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    columns = [("central", t) for t in TAGS] + [("hdi", t) for t in TAGS]
    if any("nll_full" in r for r in results):
        columns.insert(len(TAGS), ("central", "cv"))
    label = {"central": "central", "hdi": "HDI"}
    header = "| dataset | level | " + " | ".join(f"{label[k]} {t} cov / width" for k, t in columns) + " |"
    lines = [header, "|---|---:|" + "---:|" * len(columns)]
    for r in rows:
        cells = [f"{r[f'{k}_{t}_coverage']:.3f} / {r[f'{k}_{t}_width']:.3g}" for k, t in columns]
        lines.append(f"| {r['dataset']} | {100 * r['level']:g} % | " + " | ".join(cells) + " |")
    lines += ["", "Mean coverage over the data sets (each set's mean over its splits):", "",
              "| level | " + " | ".join(f"{label[k]} {t}" for k, t in columns) + " |", "|---:|" + "---:|" * len(columns)]
    for level in LEVELS:
        mine = [r for r in rows if r["level"] == level]
        cells = [f"{np.nanmean([r[f'{k}_{t}_coverage'] for r in mine]):.3f}" for k, t in columns]
        lines.append(f"| {100 * level:g} % | " + " | ".join(cells) + " |")
    lines += ["", "| dataset | splits | fit / cal / val / test rows | NLL raw | NLL recalibrated | NLL, all rows | "
              "seconds per split |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["dataset"] for r in results):
        mine = [r for r in results if r["dataset"] == name]
        lines.append(f"| {name} | {len(mine)} | {mine[0]['n_fit']} / {mine[0]['n_cal']} / {mine[0]['n_val']} / "
                     f"{mine[0]['n_test']} | {np.mean([r['nll_raw'] for r in mine]):.3f} | "
                     f"{np.mean([r['nll_recalibrated'] for r in mine]):.3f} | "
                     f"{np.mean([r.get('nll_full', np.nan) for r in mine]):.3f} | "
                     f"{np.mean([r['seconds'] for r in mine]):.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder of the data sets (default: %(default)s)")
    parser.add_argument("--datasets", nargs="+", default=["yacht"], help="folder names (default: yacht)")
    parser.add_argument("--splits", type=int, default=1, help="use the first N splits (default 1)")
    parser.add_argument("--max-epochs", type=int, default=2000, help="MDNRegressor max_epochs (default 2000)")
    parser.add_argument("--calibration-fraction", type=float, default=0.2,
                        help="share of each training split held out to calibrate (default 0.2)")
    parser.add_argument("--cv", type=int, default=None, metavar="K",
                        help="also fit on every training row and calibrate by K-fold CV+ (K more fits)")
    parser.add_argument("--json", type=Path, default=RESULTS / "conformal_uci.json", help="where to write results")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    results: list[dict[str, Any]] = []
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        data = load_dataset(args.root, name, args.splits)
        for split in range(data.n_splits):
            result = evaluate_split(*data.split(split), seed=split, calibration_fraction=args.calibration_fraction,
                                    max_epochs=args.max_epochs, cv=args.cv)
            results.append({"dataset": name, "split": split, **result})
            print(f"{name} split {split}: {result['seconds']:.1f} s", file=sys.stderr)
            _write(args, results)  # after every split: a long run stopped early keeps what it did
    print(format_table(summarise(results), results))
    return 0


def _write(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    document = {"args": {k: str(v) for k, v in vars(args).items()}, "results": results, "summary": summarise(results)}
    temporary = args.json.with_suffix(".tmp")
    temporary.write_text(json.dumps(document, indent=1))
    temporary.replace(args.json)


if __name__ == "__main__":
    sys.exit(main())
