"""Describing a fitted model: the text of ``mdnkit info`` and the HTML of ``mdnkit report``.

The report is one self-contained HTML file: inline CSS, every picture a base64 PNG in a
``data:`` URL, no scripts and no external links, so it can be mailed or archived as it is.

Feature importance is permutation importance on the NLL (Breiman 2001): how much the mean
negative log-likelihood on the report's data rises when one column is shuffled (categorical
columns shuffled before encoding), on at most 2000 rows with a fixed seed. The most important
features get a picture of ``p(y | x)`` along that feature with every other feature held at its
median (numeric) or most frequent value (categorical).
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import math
from typing import Any

import numpy as np

from mdnkit.networks import feature_embedding_of
from mdnkit.tabular import Schema

__all__ = ["build_report", "calibrated_coverage", "describe_model", "parameter_table", "permutation_importance"]

_IMPORTANCE_ROWS = 2000
_TOP_FEATURES = 3


# ---------------------------------------------------------------------- model description
def parameter_table(model: Any) -> list[dict[str, Any]]:
    """One row per parameter tensor of the network: name, shape, count, dtype, mean, std
    (GPflow's ``print_summary``, for a network)."""
    rows = []
    for name, parameter in model.module_.named_parameters():
        values = parameter.detach().double().cpu()
        rows.append({
            "name": name, "shape": tuple(parameter.shape), "count": parameter.numel(),
            "dtype": str(parameter.dtype).replace("torch.", ""), "trainable": parameter.requires_grad,
            "mean": float(values.mean()), "std": float(values.std()) if values.numel() > 1 else 0.0,
        })
    return rows


def _architecture(model: Any) -> str:
    sizes = " -> ".join(str(s) for s in [model.n_features_in_, *model.hidden_sizes])
    if feature_embedding_of(getattr(model, "module_", None)) == "periodic":
        sizes = sizes.replace(" -> ", " + periodic embeddings -> ", 1) if model.hidden_sizes \
            else f"{sizes} + periodic embeddings"
    kind = f"{model.n_outputs_}-D target" if model.n_outputs_ > 1 else "1-D target"
    covariance = f", {model.covariance_type} covariance" if model.n_outputs_ > 1 else ""
    n_components = getattr(model, "n_components_", model.n_components)
    n_members = getattr(getattr(model, "module_", None), "n_members", getattr(model, "n_estimators", 1))
    mixture = f"mixture of {n_components} Gaussians ({kind}{covariance})"
    if hasattr(model, "member_weights_"):
        levels = ", ".join(f"{level:.3g}" for level in model.input_noise_)
        weights = ", ".join(f"{weight:.2f}" for weight in model.member_weights_)
        return (f"mixture of {n_members} x (MLP {sizes} ({model.activation}) -> {mixture}), "
                f"noise levels {levels} weighted {weights}")
    if n_members > 1:
        return f"ensemble of {n_members} x (MLP {sizes} ({model.activation}) -> {mixture})"
    return f"MLP {sizes} ({model.activation}) -> {mixture}"


def kept_weights(model: Any) -> str:
    """Which weights a fit kept: ``"epoch 98"``; a noise mixture's networks each keep their own best."""
    if hasattr(model, "member_weights_"):
        return f"each network's best epoch, the last {model.best_epoch_}"
    return f"epoch {model.best_epoch_}"


def _history_summary(model: Any) -> dict[str, Any]:
    """The training's figures; for a noise mixture, whose networks each keep their own best epoch,
    ``kept`` says so and the validation NLL is the weighted mixture's (``validation_nll_``)."""
    history = model.history_
    last = history[-1] if history else {}
    best = next((r for r in history if r["epoch"] == model.best_epoch_), {})
    return {
        "epochs": len(history), "best_epoch": model.best_epoch_, "kept": kept_weights(model),
        "final_train_nll": last.get("train_nll", math.nan), "final_val_nll": last.get("val_nll", math.nan),
        "best_val_nll": getattr(model, "validation_nll_", best.get("val_nll", math.nan)),
        "seconds": last.get("time", math.nan),
    }


def _settings(model: Any) -> list[tuple[str, str]]:
    used = getattr(model, "batch_size_", model.batch_size)
    batch = "full" if used is None else str(used) + (" (auto)" if model.batch_size == "auto" else "")
    rows = [
        ("components", str(getattr(model, "n_components_", model.n_components))
         + (" (auto)" if model.n_components == "auto" else "")), ("hidden sizes", ",".join(map(str, model.hidden_sizes))),
        ("activation", model.activation), ("covariance", model.covariance_type),
        ("optimizer", model.optimizer), ("learning rate", f"{model.learning_rate:g}"),
        ("batch size", batch), ("max epochs", str(model.max_epochs)),
        ("validation fraction", f"{model.validation_fraction:g}"),
        ("patience", "auto" if model.patience is None else str(model.patience)),
        ("weight decay", f"{model.weight_decay:g}"), ("dtype", model.dtype),
        ("random state", str(model.random_state)),
    ]
    if model.weight_averaging and model.optimizer != "lbfgs":
        rows.insert(-2, ("weight averaging", f"{model.weight_averaging:g}"))
    for name, label in (("input_noise_", "input noise"), ("target_noise_", "target noise")):
        if hasattr(model, name) and (getattr(model, name) or getattr(model, name.rstrip("_")) == "auto"):
            setting = getattr(model, name.rstrip("_"))
            levels = ", ".join(f"{level:.3g}" for level in np.atleast_1d(getattr(model, name)))
            rows.append((label, levels + (f" ({setting})" if isinstance(setting, str) else "")))
    return rows


def describe_model(model: Any, schema: Schema, path: str) -> str:
    """The text of ``mdnkit info``."""
    from mdnkit import __version__

    params = parameter_table(model)
    width = max(len(r["name"]) for r in params)
    lines = [f"model: {path} (read by mdnkit {__version__})", f"architecture: {_architecture(model)}",
             "settings: " + ", ".join(f"{k} {v}" for k, v in _settings(model)), "",
             f"parameters: {sum(r['count'] for r in params)} in {len(params)} tensors",
             f"  {'name':<{width}}  {'shape':<10} {'count':>7}  {'dtype':<8} {'mean':>9} {'std':>9}"]
    for r in params:
        shape = "x".join(map(str, r["shape"]))
        lines.append(f"  {r['name']:<{width}}  {shape:<10} {r['count']:>7}  {r['dtype']:<8} {r['mean']:>9.4f} {r['std']:>9.4f}")
    h = _history_summary(model)
    lines += ["", f"training: {h['epochs']} epochs in {h['seconds']:.1f} s, kept {h['kept']}",
              f"  final train NLL {h['final_train_nll']:.4f}, final validation NLL {h['final_val_nll']:.4f}, "
              f"validation NLL of the kept model {h['best_val_nll']:.4f}"]
    dead = np.asarray(getattr(model, "dead_components_", []), dtype=bool)
    if dead.any():
        where = ", ".join(map(str, np.argwhere(dead).tolist())) if dead.ndim > 1 else ", ".join(map(str, np.flatnonzero(dead)))
        lines.append(f"  dead components (weight below 1e-3 on every training row): {where}; "
                     "model.prune_components() removes them")
    calibration = getattr(model, "calibration_", None)
    if calibration is not None:
        lines.append(f"  {calibration_summary(calibration)} ('predict --calibrated')")
    lines += ["", "data schema:"]
    width = max(len(name) for name, _ in schema.describe())
    lines += [f"  {name:<{width}}  {role}" for name, role in schema.describe()]
    return "\n".join(lines)


# ---------------------------------------------------------------------- feature importance
def _mean_nll(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    return float(-model.score_samples(X, y).mean())


def permutation_importance(model: Any, schema: Schema, frame: Any, y: np.ndarray,
                           random_state: int = 0) -> dict[str, float]:
    """Rise of the mean NLL when each feature column is shuffled (nats per row; larger matters more)."""
    rng = np.random.default_rng(random_state)
    if len(frame) > _IMPORTANCE_ROWS:
        rows = np.sort(rng.choice(len(frame), _IMPORTANCE_ROWS, replace=False))
        frame, y = frame.iloc[rows], y[rows]
    baseline = _mean_nll(model, schema.encode(frame, "data"), y)
    importance = {}
    for name in schema.features:
        shuffled = frame.copy()
        shuffled[name] = frame[name].to_numpy()[rng.permutation(len(frame))]
        importance[name] = _mean_nll(model, schema.encode(shuffled, "data"), y) - baseline
    return dict(sorted(importance.items(), key=lambda item: -item[1]))


# ---------------------------------------------------------------------- pictures
def _pyplot():
    import matplotlib

    if "matplotlib.pyplot" not in __import__("sys").modules:
        matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _base_row(schema: Schema, frame: Any) -> Any:
    """One row: numeric features at their median, categorical ones at their most frequent value."""
    row = frame[schema.features].iloc[:1].copy()
    for name in schema.features:
        if name in schema.categories:
            row[name] = frame[name].astype("string").mode().iloc[0]
        else:
            row[name] = float(frame[name].median())
    return row


def _target_grid(y: np.ndarray, n: int = 200) -> np.ndarray:
    low, high = np.quantile(y, [0.005, 0.995])
    pad = 0.15 * (high - low or 1.0)
    return np.linspace(low - pad, high + pad, n)


def _feature_figure(model: Any, schema: Schema, frame: Any, y: np.ndarray, feature: str) -> str:
    import pandas as pd
    import torch

    plt = _pyplot()
    target = schema.targets[0]
    y0 = y if y.ndim == 1 else y[:, 0]
    y_grid = _target_grid(y0)
    base = _base_row(schema, frame)
    figure, ax = plt.subplots(figsize=(7.0, 3.8))
    if feature in schema.categories:
        levels = [str(v) for v in frame[feature].astype("string").value_counts().index[:8]]
        rows = pd.concat([base] * len(levels), ignore_index=True)
        rows[feature] = pd.array(levels, dtype="string")
        dist = model.predict_dist(schema.encode(rows, "data"))
        if model.n_outputs_ > 1:
            dist = dist.marginal([0])
        density = dist.log_prob(torch.as_tensor(y_grid)[:, None, None]).exp().numpy()  # [Y, L]
        for j, level in enumerate(levels):
            ax.plot(y_grid, density[:, j], linewidth=1.6, label=f"{feature} = {level}")
        ax.set_xlabel(target)
        ax.set_ylabel("density")
        ax.legend(frameon=False, fontsize="small")
    else:
        values = frame[feature].to_numpy(np.float64)
        low, high = np.quantile(values, [0.01, 0.99])
        if high <= low:
            low, high = low - 1.0, high + 1.0
        grid = np.linspace(low, high, 150)
        rows = pd.concat([base] * len(grid), ignore_index=True)
        rows[feature] = grid
        dist = model.predict_dist(schema.encode(rows, "data"))
        if model.n_outputs_ > 1:
            dist = dist.marginal([0])
        density = dist.log_prob(torch.as_tensor(y_grid)[:, None, None]).exp().numpy()  # [Y, G]
        image = ax.imshow(density, origin="lower", aspect="auto", cmap="Blues",
                          extent=(grid[0], grid[-1], y_grid[0], y_grid[-1]), interpolation="bilinear")
        figure.colorbar(image, ax=ax, label="density", fraction=0.046, pad=0.02)
        shown = np.random.default_rng(0).permutation(len(values))[:1500]
        ax.scatter(values[shown], y0[shown], s=5, color="#d95f02", alpha=0.45, linewidths=0, label="data")
        ax.plot(grid, dist.mean.numpy()[:, 0], color="k", linewidth=1.2, linestyle="--", label="mean")
        ax.set_xlim(grid[0], grid[-1])
        ax.set_ylim(y_grid[0], y_grid[-1])
        ax.set_xlabel(feature)
        ax.set_ylabel(target)
        ax.legend(frameon=False, fontsize="small", loc="upper left")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title(f"p({target} | {feature}), other features at their median / most frequent value", fontsize=10)
    return _png(figure)


def _coverage_figure(metrics: dict[str, float]) -> str | None:
    levels = sorted({k.rsplit("_", 1)[1] for k in metrics if k.startswith("coverage_central_")}, key=float)
    if not levels:
        return None
    plt = _pyplot()
    nominal = np.array([float(v) / 100 for v in levels])
    figure, ax = plt.subplots(figsize=(5.2, 3.8))
    ax.plot([0, 1], [0, 1], color="0.5", linestyle="--", linewidth=1.0, label="ideal")
    ax.plot(nominal, [metrics[f"coverage_central_{v}"] for v in levels], "o-", label="central interval")
    ax.plot(nominal, [metrics[f"coverage_hdi_{v}"] for v in levels], "s-", label="highest-density region")
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage")
    ax.legend(frameon=False, fontsize="small")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return _png(figure)


def calibration_summary(calibration: Any) -> str:
    """One line on how a model was calibrated: held-out rows, or cross-conformal folds."""
    if getattr(calibration, "folds", None) is not None:
        return f"cross-conformal (CV+) calibration on {calibration.n_cal} rows in {calibration.n_folds} folds"
    return f"conformal calibration on {calibration.n_cal} held-out rows"


def calibrated_coverage(model: Any, X: np.ndarray, y: np.ndarray,
                        levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)) -> list[list[Any]]:
    """Rows ``[nominal, raw coverage, raw width, calibrated coverage, calibrated width]`` of the
    central intervals on ``(X, y)`` for a calibrated model with a 1-D target (else no rows)."""
    if getattr(model, "calibration_", None) is None or model.n_outputs_ != 1:
        return []
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    rows = []
    for level in levels:
        row: list[Any] = [f"{100 * level:g} %"]
        for calibrated in (False, True):
            bounds = model.predict_interval(X, level, calibrated=calibrated)
            row += [float(((bounds[:, 0] <= y) & (y <= bounds[:, 1])).mean()), float((bounds[:, 1] - bounds[:, 0]).mean())]
        rows.append(row)
    return rows


def _calibration_promise(calibration: Any) -> str:
    """What the calibrated central intervals guarantee, in a sentence for the report."""
    from mdnkit.conformal import cv_plus_guarantee

    if getattr(calibration, "folds", None) is not None:
        return (f"Calibrated by cross-conformal CV+ on {calibration.n_cal} rows in {calibration.n_folds} folds: the "
                "90 % intervals are guaranteed to hold at least "
                f"{cv_plus_guarantee(calibration.n_cal, calibration.n_folds, 0.9):.3f} of new rows like those (and "
                "usually about 90 %), on average over rows (not for each x).")
    return (f"Calibrated on {calibration.n_cal} held-out rows: the calibrated central intervals hold at least the "
            f"nominal share of new rows like those, and at most {1 / (calibration.n_cal + 1):.3g} more, on average "
            "over rows (not for each x).")


def _plot(function, *args) -> str:
    axes = function(*args)
    return _png(axes.figure)


# ---------------------------------------------------------------------- HTML
_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#222;
background:#f6f7f9;margin:0;line-height:1.45}
main{max-width:1040px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:1.7em;margin:0 0 4px} h2{font-size:1.25em;margin:0 0 12px;color:#1f3b5a}
.sub{color:#666;margin:0 0 22px}
section{background:#fff;border:1px solid #e2e5ea;border-radius:8px;padding:18px 22px;margin:0 0 18px}
table{border-collapse:collapse;font-size:0.9em;margin:4px 0 10px}
th,td{padding:4px 12px;border-bottom:1px solid #eceef2;text-align:left}
th{background:#f0f3f7;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:12px}
.card{flex:1 1 150px;border:1px solid #e2e5ea;border-radius:6px;padding:10px 14px;background:#fafbfc}
.card b{display:block;font-size:1.35em;color:#1f3b5a} .card span{color:#666;font-size:0.85em}
.figs{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start} img{max-width:100%;height:auto}
p.note{color:#555;font-size:0.9em;margin:6px 0}
code{background:#f0f3f7;padding:1px 4px;border-radius:3px}
"""


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f'<td class="num">{value:.4g}</td>'
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f'<td class="num">{value}</td>'
        return f"<td>{html.escape(str(value))}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src: str, alt: str) -> str:
    return f'<img src="{src}" alt="{html.escape(alt)}">'


def build_report(model: Any, schema: Schema, frame: Any, X: np.ndarray, y: np.ndarray,
                 metrics: dict[str, float], model_path: str, data_path: str) -> str:
    """The whole HTML report as a string (see the module docstring)."""
    from mdnkit import __version__, plotting

    one_d = model.n_outputs_ == 1
    esc = html.escape
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>mdnkit report</h1><p class='sub'>model <code>{esc(model_path)}</code> on "
             f"<code>{esc(data_path)}</code> ({len(X)} rows) · {esc(_architecture(model))} · "
             f"mdnkit {esc(__version__)} · {when}</p>"]

    # metrics
    cards = [("NLL", "nll", "nats per row, lower is better"), ("CRPS", "crps", "lower is better"),
             ("energy score", "energy_score", "lower is better"), ("RMSE (mean)", "rmse_mean", "point error"),
             ("PIT calibration error", "pit_calibration_error", "0 is perfectly calibrated")]
    card_html = "".join(f"<div class='card'><b>{metrics[k]:.4g}</b>{esc(label)}<br><span>{esc(note)}</span></div>"
                        for label, k, note in cards if k in metrics)
    point = [[name, metrics[name]] for name in
             ("nll", "crps", "energy_score", "rmse_mean", "mae_mean", "rmse_median", "mae_median",
              "rmse_mode", "mae_mode", "pit_calibration_error") if name in metrics]
    levels = sorted({k.rsplit("_", 1)[1] for k in metrics if k.startswith("coverage_central_")}, key=float)
    coverage = [[f"{lv} %", metrics[f"coverage_central_{lv}"], metrics[f"width_central_{lv}"],
                 metrics[f"coverage_hdi_{lv}"], metrics[f"width_hdi_{lv}"]] for lv in levels]
    parts.append("<section><h2>Metrics</h2>" + f"<div class='cards'>{card_html}</div><div class='figs'><div>"
                 + _table(["metric", "value"], point) + "</div><div>"
                 + (_table(["nominal", "central coverage", "central width", "HDI coverage", "HDI width"], coverage)
                    if coverage else "") + "</div></div></section>")

    # training
    h = _history_summary(model)
    parts.append(
        "<section><h2>Training</h2>"
        f"<p class='note'>{h['epochs']} epochs in {h['seconds']:.1f} s; the weights of {h['kept']} were kept "
        f"(validation NLL {h['best_val_nll']:.4f}); final training NLL {h['final_train_nll']:.4f}.</p>"
        + (_img(_plot(plotting.plot_history, model), "training curves") if model.history_ else "")
        + "</section>"
    )

    # calibration
    if one_d:
        figures = [_img(_plot(plotting.plot_pit, model, X, y), "PIT histogram"),
                   _img(_plot(plotting.plot_calibration, model, X, y), "quantile calibration")]
        coverage_png = _coverage_figure(metrics)
        if coverage_png:
            figures.append(_img(coverage_png, "coverage against nominal"))
        conformal_rows = calibrated_coverage(model, X, y)
        conformal_html = "" if not conformal_rows else (
            f"<h2>Conformal calibration</h2><p class='note'>{_calibration_promise(model.calibration_)} On this "
            "data (if it was not the calibration data):</p>"
            + _table(["nominal", "coverage before", "width before", "coverage after", "width after"], conformal_rows))
        parts.append("<section><h2>Calibration</h2><p class='note'>A calibrated model has a flat PIT histogram "
                     "and its curves on the diagonal.</p><div class='figs'>" + "".join(figures) + "</div>"
                     + conformal_html + "</section>")
    else:
        parts.append("<section><h2>Calibration</h2><p class='note'>PIT and interval calibration are defined "
                     "for 1-D targets; this model has a multivariate target (see the energy score).</p></section>")

    # features
    importance = permutation_importance(model, schema, frame, y)
    top = [name for name, value in importance.items()][:_TOP_FEATURES]
    rows = [[name, value, "categorical" if name in schema.categories else "numeric"] for name, value in importance.items()]
    pictures = "".join(_img(_feature_figure(model, schema, frame, y, name), f"p(y | {name})") for name in top)
    parts.append(
        "<section><h2>Features</h2><p class='note'>Permutation importance: rise of the mean NLL (nats per row) "
        f"when the column is shuffled, on up to {_IMPORTANCE_ROWS} rows. Below, p({esc(schema.targets[0])} | x) along "
        f"the {len(top)} most important feature(s), every other feature at its median (numeric) or most "
        "frequent value (categorical); dots are the data (whose other features vary).</p>"
        + _table(["feature", "NLL rise", "kind"], rows) + f"<div class='figs'>{pictures}</div></section>"
    )

    # model
    params = parameter_table(model)
    param_rows = [[r["name"], "×".join(map(str, r["shape"])), r["count"], r["dtype"], str(r["trainable"]),
                   r["mean"], r["std"]] for r in params]
    parts.append(
        "<section><h2>Model</h2>" + f"<p class='note'>{esc(_architecture(model))}; "
        f"{sum(r['count'] for r in params)} parameters.</p><div class='figs'><div>"
        + _table(["setting", "value"], [list(s) for s in _settings(model)]) + "</div><div>"
        + _table(["parameter", "shape", "count", "dtype", "trainable", "mean", "std"], param_rows)
        + "</div></div><h2>Data schema</h2>" + _table(["column", "role"], [list(r) for r in schema.describe()])
        + "</section>"
    )
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>mdnkit report: {esc(model_path)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")
