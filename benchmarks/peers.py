"""mdnkit's defaults against the tools practitioners compare it with, on the UCI splits (issue 13).

Every method is fitted on the training rows of a split only; any early stopping uses a seeded
validation part of those rows (10%), never the test rows. Scored on the test rows in the target's
original units:

- NLL: mean ``-log p(y | x)`` (not for treeffuser, which has no density).
- CRPS: closed form for Gaussians and Gaussian mixtures (:func:`mdnkit.metrics.crps`); for
  sampling methods (treeffuser, the flow) the energy form ``E|X - y| - ½ E|X - X'|`` from
  ``--samples`` draws per row (200), the pair term over distinct pairs (unbiased).
- RMSE of the predicted mean (the sample mean for sampling methods).
- Fit seconds: ``fit`` alone, not prediction.

Methods (``--methods``): ``mdn`` (``MDNRegressor(feature_embedding=None)``, the default from
2026-12-03 to 2026-12-07), ``mdn-select`` (one network, ``input_noise="select"``, the default until
2026-12-03), ``mdn-ens5`` (``MDNRegressor(n_estimators=5, feature_embedding=None)``),
``mdn-periodic`` and ``mdn-ens5-periodic`` (the same with ``feature_embedding="periodic"``, what the
defaults give every UCI set since 2026-12-07), ``mdn-periodic-x2`` (two networks per noise level,
the default from 2026-12-07 to 2026-12-08), all these with the last step's weights
(``weight_averaging=0.0``); ``mdn-averaged`` and ``mdn-ens5-averaged`` (the default since
2026-12-08, ``weight_averaging=0.99``, and five members with it),
``ngboost`` (``NGBRegressor(Dist=Normal)``, 500 stages), ``ngboost-es`` (up to 2000 stages, the
NGBoost paper's UCI budget, best stage on validation rows, patience 50), ``catboost``
(``loss_function="RMSEWithUncertainty"``, 1000 iterations, best iteration on validation rows,
patience 50), ``treeffuser`` (its defaults, which early-stop on 10% of the training rows),
``flow`` (zuko conditional NSF, Adam 1e-3, batches of 256, patience 1000 steps and at least 20
epochs, at most 20000 steps) and ``linear``
(least squares, residual sd). A peer that is not installed is skipped with a note.

    pip install -e ".[bench]"
    python benchmarks/peers.py --quick                          # smoke run: 1 split of yacht
    python benchmarks/peers.py --datasets yacht energy --splits 5 --json benchmarks/results/peers.json
    python benchmarks/peers.py --report                         # reprint the table of the results file
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from uci import DEFAULT_ROOT, SHORT_NAMES, load_dataset  # noqa: E402

SMALL_DATASETS = ["yacht", "energy", "concrete", "bostonHousing", "wine-quality-red"]
ALL_DATASETS = SMALL_DATASETS + ["kin8nm", "power-plant", "naval-propulsion-plant", "protein-tertiary-structure"]
VALIDATION_FRACTION = 0.1
RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"


# ---------------------------------------------------------------- forecasts and scores
@dataclass
class Forecast:
    """A predicted distribution for each test row, in original units.

    Attributes:
        mean: Predicted means, ``(n,)``.
        crps: ``y (n,) -> (n,)`` scores.
        log_prob: ``y (n,) -> (n,)`` log-densities, or ``None`` where a method has none.
    """

    mean: np.ndarray
    crps: Callable[[np.ndarray], np.ndarray]
    log_prob: Callable[[np.ndarray], np.ndarray] | None = None


def mixture_forecast(dist: Any) -> Forecast:
    """A :class:`~mdnkit.distributions.GaussianMixture` with batch shape ``(n,)``, event ``(1,)``."""
    from mdnkit.metrics import crps, log_likelihood

    return Forecast(dist.mean.numpy()[:, 0], lambda y: crps(dist, y), lambda y: log_likelihood(dist, y))


def gaussian_forecast(loc: np.ndarray, scale: np.ndarray) -> Forecast:
    """``N(loc, scale²)`` per row (``(n,)`` each), scored as a one-component mixture."""
    import torch

    from mdnkit import GaussianMixture

    loc_t = torch.as_tensor(np.asarray(loc, dtype=np.float64)).reshape(-1, 1, 1)  # [n, 1, 1]
    scale_t = torch.as_tensor(np.asarray(scale, dtype=np.float64)).reshape(-1, 1, 1)
    return mixture_forecast(GaussianMixture(torch.zeros(len(loc_t), 1, dtype=torch.float64), loc_t, scale=scale_t))


def sample_crps(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Energy-form CRPS from draws: ``mean|X - y| - ½ mean_{i≠j}|X_i - X_j|``.

    Args:
        samples: Draws ``(S, n)``, ``S >= 2``.
        y: Observations ``(n,)``.

    Returns:
        ``(n,)`` scores. The pair term uses the sorted draws: ``Σ_{i,j}|x_i - x_j| =
        2 Σ_k (2k - S - 1) x_(k)``, ``O(S log S)`` instead of ``O(S²)``.
    """
    s = samples.shape[0]
    spread = np.abs(samples - y[None, :]).mean(0)
    ordered = np.sort(samples, axis=0)
    rank = 2.0 * np.arange(1, s + 1) - s - 1  # [S]
    pairs = 2.0 * (rank[:, None] * ordered).sum(0) / (s * (s - 1))  # mean over distinct pairs
    return spread - 0.5 * pairs


def sample_forecast(samples: np.ndarray, log_prob: Callable[[np.ndarray], np.ndarray] | None = None) -> Forecast:
    """Draws ``(S, n)``: the sample mean, sample CRPS, and an exact ``log_prob`` where there is one."""
    return Forecast(samples.mean(0), lambda y: sample_crps(samples, y), log_prob)


def score(forecast: Forecast, y: np.ndarray) -> dict[str, float]:
    """``nll`` (NaN without a density), ``crps`` and ``rmse`` on the test rows."""
    nll = -float(np.mean(forecast.log_prob(y))) if forecast.log_prob is not None else math.nan
    return {"nll": nll, "crps": float(np.mean(forecast.crps(y))),
            "rmse": float(np.sqrt(np.mean((forecast.mean - y) ** 2)))}


def validation_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(fit rows, validation rows)`` of ``n`` training rows, ``VALIDATION_FRACTION`` held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(VALIDATION_FRACTION * n)))
    return order[n_val:], order[:n_val]


# ---------------------------------------------------------------- methods
# Each: (X_train, y_train, X_test, seed, n_samples) -> (Forecast, fit seconds).
Method = Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], tuple[Forecast, float]]


def _timed(fit: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and deprecation chatter is not the result
        out = fit()
    return out, time.perf_counter() - start


def _mdn(n_estimators: int, replicates: int | None = None, **settings: Any) -> Method:
    """``MDNRegressor(n_estimators=..., **settings)``; ``replicates``: networks per noise level of
    the noise mixture (``MDNRegressor._noise_replicates``; ``None``: today's default)."""
    def method(X, y, X_test, seed, n_samples):
        from mdnkit import MDNRegressor

        model_class = MDNRegressor if replicates is None else type(
            "ReplicatedMixture", (MDNRegressor,), {"_noise_replicates": replicates})
        model, seconds = _timed(lambda: model_class(n_estimators=n_estimators, random_state=seed, **settings).fit(X, y))
        return mixture_forecast(model.predict_dist(X_test)), seconds

    return method


def _ngboost(early_stopping: bool) -> Method:
    def method(X, y, X_test, seed, n_samples):
        from ngboost import NGBRegressor
        from ngboost.distns import Normal

        if not early_stopping:
            model, seconds = _timed(lambda: NGBRegressor(Dist=Normal, verbose=False, random_state=seed).fit(X, y))
            dist = model.pred_dist(X_test)
        else:
            fit, val = validation_split(len(X), seed)
            model = NGBRegressor(Dist=Normal, n_estimators=2000, verbose=False, random_state=seed)
            model, seconds = _timed(lambda: model.fit(X[fit], y[fit], X_val=X[val], Y_val=y[val],
                                                      early_stopping_rounds=50))
            dist = model.pred_dist(X_test, max_iter=model.best_val_loss_itr)  # pred_dist uses all stages otherwise
        return gaussian_forecast(dist.params["loc"], dist.params["scale"]), seconds

    return method


def _catboost(X, y, X_test, seed, n_samples):
    from catboost import CatBoostRegressor

    fit, val = validation_split(len(X), seed)
    model = CatBoostRegressor(loss_function="RMSEWithUncertainty", random_seed=seed, thread_count=1, verbose=False,
                              early_stopping_rounds=50, allow_writing_files=False)
    model, seconds = _timed(lambda: model.fit(X[fit], y[fit], eval_set=(X[val], y[val])))  # use_best_model
    raw = model.predict(X_test, prediction_type="RawFormulaVal")  # [n, 2]: mean, log sd
    return gaussian_forecast(raw[:, 0], np.exp(raw[:, 1])), seconds


def _treeffuser(X, y, X_test, seed, n_samples):
    from treeffuser import Treeffuser

    model, seconds = _timed(lambda: Treeffuser(seed=seed, n_jobs=1).fit(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        samples = model.sample(X_test, n_samples=n_samples, seed=seed)  # [S, n] (or [S, n, 1])
    return sample_forecast(np.asarray(samples, dtype=np.float64).reshape(n_samples, len(X_test))), seconds


def _fit_flow(flow: Any, x: Any, z: Any, fit: np.ndarray, val: np.ndarray, seed: int,
              batch_size: int = 256, patience_steps: int = 1000, max_steps: int = 20000) -> Any:
    """Adam 1e-3 on ``-log p(z | x)``; keeps the weights of the best validation epoch.

    Patience is ``patience_steps`` gradient steps and at least 20 epochs, as mdnkit's default
    counts it: 20 epochs alone are 40 steps on yacht (2 batches an epoch), which stopped the
    flow long before it fitted the mean (energy RMSE 2.0 against 0.4 for the others).
    """
    import copy

    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    fit_t, val_t = torch.as_tensor(fit), torch.as_tensor(val)
    steps_per_epoch = math.ceil(len(fit) / batch_size)
    patience = max(20, math.ceil(patience_steps / steps_per_epoch))  # in epochs
    best, best_state, waited = math.inf, copy.deepcopy(flow.state_dict()), 0
    for _ in range(math.ceil(max_steps / steps_per_epoch)):
        for rows in fit_t[torch.randperm(len(fit_t), generator=generator)].split(batch_size):
            loss = -flow(x[rows]).log_prob(z[rows]).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_nll = -flow(x[val_t]).log_prob(z[val_t]).mean().item()
        if val_nll < best:
            best, best_state, waited = val_nll, copy.deepcopy(flow.state_dict()), 0
        elif (waited := waited + 1) >= patience:
            break
    flow.load_state_dict(best_state)
    return flow


def _flow(X, y, X_test, seed, n_samples):
    import torch
    import zuko

    torch.manual_seed(seed)
    fit, val = validation_split(len(X), seed)
    # Standardise on the fitting rows; log p(y) = log p(z) - log y_scale maps back to original units.
    x_loc, x_scale = X[fit].mean(0), X[fit].std(0) + 1e-12
    y_loc, y_scale = y[fit].mean(), y[fit].std()
    x = torch.as_tensor((X - x_loc) / x_scale, dtype=torch.float32)  # [n, p]
    z = torch.as_tensor((y - y_loc) / y_scale, dtype=torch.float32).reshape(-1, 1)  # [n, 1]
    flow = zuko.flows.NSF(features=1, context=X.shape[1], transforms=3, hidden_features=(64, 64))
    flow, seconds = _timed(lambda: _fit_flow(flow, x, z, fit, val, seed))
    x_test = torch.as_tensor((X_test - x_loc) / x_scale, dtype=torch.float32)
    with torch.no_grad():
        dist = flow(x_test)
        samples = dist.sample((n_samples,))[..., 0].double().numpy() * y_scale + y_loc  # [S, n]

    def log_prob(y_test: np.ndarray) -> np.ndarray:
        z_test = torch.as_tensor((y_test - y_loc) / y_scale, dtype=torch.float32).reshape(-1, 1)
        with torch.no_grad():
            return dist.log_prob(z_test).double().numpy() - math.log(y_scale)

    return sample_forecast(samples, log_prob), seconds


def _linear(X, y, X_test, seed, n_samples):
    def fit():
        design = np.column_stack([np.ones(len(X)), X])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        dof = max(1, len(y) - design.shape[1])
        return coef, math.sqrt(np.sum((y - design @ coef) ** 2) / dof)

    (coef, sd), seconds = _timed(fit)
    mean = np.column_stack([np.ones(len(X_test)), X_test]) @ coef
    return gaussian_forecast(mean, np.full(len(mean), sd)), seconds


METHODS: dict[str, Method] = {
    # Measured before 2026-12-07 with the defaults of then: no feature embedding, one network
    # per noise level, the last step's weights.
    "mdn": _mdn(1, 1, feature_embedding=None, weight_averaging=0.0),
    "mdn-select": _mdn(1, input_noise="select", feature_embedding=None, weight_averaging=0.0),
    "mdn-ens5": _mdn(5, feature_embedding=None, weight_averaging=0.0),
    "mdn-periodic": _mdn(1, 1, feature_embedding="periodic", weight_averaging=0.0),
    # The default from 2026-12-07 to 2026-12-08: periodic embeddings, two networks per noise level.
    "mdn-periodic-x2": _mdn(1, 2, feature_embedding="periodic", weight_averaging=0.0),
    "mdn-ens5-periodic": _mdn(5, feature_embedding="periodic", weight_averaging=0.0),
    # The default since 2026-12-08: the same with the weights' moving average.
    "mdn-averaged": _mdn(1, 2, feature_embedding="periodic", weight_averaging=0.99),
    "mdn-ens5-averaged": _mdn(5, feature_embedding="periodic", weight_averaging=0.99),
    "ngboost": _ngboost(False), "ngboost-es": _ngboost(True),
    "catboost": _catboost, "treeffuser": _treeffuser, "flow": _flow, "linear": _linear,
}
# The import each method needs: a missing one skips that method, not the script.
REQUIRES = {"ngboost": "ngboost", "ngboost-es": "ngboost", "catboost": "catboost", "treeffuser": "treeffuser",
            "flow": "zuko"}


def available(methods: Sequence[str]) -> list[str]:
    """The methods whose peer imports; prints a note for each one skipped."""
    import importlib.util

    kept = []
    for name in methods:
        module = REQUIRES.get(name)
        if module and importlib.util.find_spec(module) is None:
            print(f"note: skipping {name}: `{module}` is not installed (pip install -e '.[bench]')")
        else:
            kept.append(name)
    return kept


# ---------------------------------------------------------------- protocol and report
def evaluate(method: str, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
             seed: int, n_samples: int = 200) -> dict[str, float]:
    """Fit one method on a training split and score it on the test rows.

    ``seconds`` is the fit; ``predict_seconds`` the rest of the method's time (the test rows'
    distributions, with the draws of the sampling methods).
    """
    start = time.perf_counter()
    forecast, seconds = METHODS[method](X_train, y_train, X_test, seed, n_samples)
    predict_seconds = time.perf_counter() - start - seconds
    return {**score(forecast, y_test), "seconds": seconds, "predict_seconds": predict_seconds}


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return float(values.mean()), float(se)


COLUMNS = ("nll", "crps", "rmse", "seconds")


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, method): mean and s.e. of each column over its splits."""
    rows = []
    for name in dict.fromkeys(r["dataset"] for r in results):
        for method in dict.fromkeys(r["method"] for r in results if r["dataset"] == name):
            mine = [r for r in results if r["dataset"] == name and r["method"] == method]
            row = {"dataset": name, "method": method, "n_splits": len(mine)}
            for column in COLUMNS:
                row[column], row[column + "_se"] = _mean_se([r[column] for r in mine])
            rows.append(row)
    return rows


def _number(value: float, digits: int, scientific: bool) -> str:
    return f"{value:.2e}" if scientific else f"{value:.{digits}f}"


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown, mean ± s.e.; the lowest mean of each column within a data set in bold."""
    lines = ["| data set | method | splits | NLL | CRPS | RMSE | fit s |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        best = {c: np.nanmin([r[c] for r in mine]) if any(np.isfinite(r[c]) for r in mine) else math.nan
                for c in COLUMNS}
        for r in mine:
            cells = []
            for c in COLUMNS:
                if not np.isfinite(r[c]):
                    cells.append("–")
                    continue
                digits = 1 if c == "seconds" else 3
                # Powers of ten where three decimals would print zeros: naval's CRPS is about 5e-5.
                scientific = c != "seconds" and 0 < abs(best[c]) < 0.01
                text = _number(r[c], digits, scientific)
                if np.isfinite(r[c + "_se"]):
                    text += " ± " + _number(r[c + "_se"], digits, scientific)
                cells.append(f"**{text}**" if r[c] == best[c] else text)
            lines.append(f"| {SHORT_NAMES.get(name, name)} | {r['method']} | {r['n_splits']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def winners(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One line per data set: which method has the lowest mean in each column."""
    out = []
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        parts = []
        for c in COLUMNS:
            scored = [r for r in mine if np.isfinite(r[c])]
            if scored:
                parts.append(f"{c} {min(scored, key=lambda r: r[c])['method']}")
        out.append(f"{SHORT_NAMES.get(name, name)}: " + ", ".join(parts))
    return out


def _write(path: Path, results: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "results": results, "summary": summarise(results)}, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="folder of the UCI data sets")
    parser.add_argument("--datasets", nargs="+", default=SMALL_DATASETS, help="default: the five small sets")
    parser.add_argument("--splits", type=int, default=5, help="the first N splits (default: %(default)s)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--samples", type=int, default=200, help="draws per row for sample-based CRPS")
    parser.add_argument("--quick", action="store_true", help="smoke run: split 0 of yacht")
    parser.add_argument("--json", type=Path, default=None, help=f"per-split results (default: {RESULTS}; none with --quick)")
    parser.add_argument("--resume", action="store_true", help="keep the results already in --json, run the rest")
    parser.add_argument("--report", action="store_true", help="print the table of --json and fit nothing")
    args = parser.parse_args(argv)
    if args.report:
        report(json.loads((args.json or RESULTS).read_text())["results"])
        return 0
    import torch

    torch.set_num_threads(1)  # small models on a shared 2-core machine
    names, n_splits = (["yacht"], 1) if args.quick else (args.datasets, args.splits)
    path = args.json or (None if args.quick else RESULTS)
    methods = available(args.methods)
    results = json.loads(path.read_text())["results"] if args.resume and path and path.exists() else []
    done = {(r["dataset"], r["split"], r["method"]) for r in results}
    meta = {"samples": args.samples, "validation_fraction": VALIDATION_FRACTION,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    for name in names:
        data = load_dataset(args.root, name, n_splits)
        for split in range(data.n_splits):
            X_train, y_train, X_test, y_test = data.split(split)
            for method in methods:
                if (name, split, method) in done:
                    continue
                result = evaluate(method, X_train, y_train, X_test, y_test, seed=split, n_samples=args.samples)
                result.update(dataset=name, split=split, method=method, load_average=os.getloadavg()[0])
                results.append(result)
                print(f"{name:18s} {split:2d} {method:11s} nll {result['nll']:8.3f}  crps {result['crps']:8.4f}  "
                      f"rmse {result['rmse']:8.4f}  {result['seconds']:6.1f}s  load {result['load_average']:.1f}",
                      flush=True)
                if path:
                    _write(path, results, {**meta, "load_average_1min_last": os.getloadavg()[0]})
    report(results)
    return 0


def report(results: Sequence[dict[str, Any]]) -> None:
    """Print the table and the winners, data sets and methods in a fixed order."""
    order = {n: i for i, n in enumerate(ALL_DATASETS)}
    rows = summarise(sorted(results, key=lambda r: (order.get(r["dataset"], 99), list(METHODS).index(r["method"]))))
    print("\n" + format_table(rows) + "\n\nlowest mean per column:\n" + "\n".join(winners(rows)))


if __name__ == "__main__":
    sys.exit(main())
