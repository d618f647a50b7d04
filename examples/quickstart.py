"""Fit an MDN to the Edward tutorial's inverted sinusoid; write a figure and metrics.json.

    python examples/quickstart.py --output output/quickstart
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from mdnkit import MDNRegressor
from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("output/quickstart"))
    parser.add_argument("--random-state", type=int, default=0)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)

    X, y = make_inverted_sinusoid(5000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = MDNRegressor(
            n_components=10, activation="tanh", batch_size=None, learning_rate=3e-3,
            validation_fraction=0.0, max_epochs=1500, random_state=args.random_state)
        model.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    oracle = float(-inverted_sinusoid_log_density(X_test, y_test).mean())
    interval = model.predict_interval(X_test, coverage=0.9)
    metrics = {
        "problem": "Edward inverted sinusoid, N=5000, 75/25 split (random_state=42)",
        "metric": "test NLL (nats per row)",
        "ours": float(-model.score(X_test, y_test)),
        "true_density": oracle,
        "higher_is_better": False,
        "central_90_interval_coverage": float(np.mean((interval[:, 0] <= y_test) & (y_test <= interval[:, 1]))),
        "epochs": int(model.n_iter_),
        "seconds": round(seconds, 2),
        "warnings": [str(w.message) for w in caught],
    }
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    model.save(args.output / "model.mdn", overwrite=True)
    _plot(model, X_train, y_train, args.output / "samples_and_modes.png")
    print(f"test NLL {metrics['ours']:.4f} (true density {oracle:.4f}) in {seconds:.1f}s, "
          f"{metrics['epochs']} epochs; wrote {args.output}/metrics.json, model.mdn, samples_and_modes.png")
    return metrics


def _plot(model: MDNRegressor, X: np.ndarray, y: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(X.min(), X.max(), 400)[:, None]
    samples = model.sample(grid, n_samples=3, random_state=0)
    modes, _ = model.predict_modes(grid)
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.scatter(X[:, 0], y, s=3, alpha=0.25, color="0.6", label="training data")
    ax.scatter(np.repeat(grid[:, 0], 3), samples.ravel(), s=3, alpha=0.5, color="tab:blue", label="samples from p(y|x)")
    ax.scatter(np.repeat(grid[:, 0], modes.shape[1]), modes.ravel(), s=2, color="tab:red", label="modes of p(y|x)")
    ax.set(xlabel="x", ylabel="y", title="MDN on the inverted sinusoid")
    ax.legend(loc="upper left", markerscale=4, frameon=False)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
