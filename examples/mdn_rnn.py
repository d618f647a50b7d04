"""An MDN-RNN: a GRU reads a window of a time series, the mixture gives the next value's density.

The series moves up or down by about 0.5 per step and keeps its direction with probability 0.8,
so the next value is bimodal: near ``last + 0.5`` or ``last - 0.5``, weighted by how long the
current run has lasted, which only the window shows. A GRU backbone learns that; a Gaussian
fitted to the same windows cannot put its mass on two places.

    python examples/mdn_rnn.py --output output/mdn_rnn
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mdnkit import MDNRegressor, load


class GRUFeatures(nn.Module):
    """``[N, T, 1] -> [N, H]``: the last hidden state of a GRU over the window."""

    def __init__(self, hidden_size: int = 32) -> None:
        super().__init__()
        self.gru = nn.GRU(1, hidden_size, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gru(x)[1][-1]


def momentum_windows(n: int, length: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X (n, length, 1)``: windows of increments of the series; ``y (n,)``: the next increment."""
    rng = np.random.default_rng(seed)
    steps = np.empty((n, length + 1))
    direction = rng.choice([-1.0, 1.0], size=n)
    for t in range(length + 1):
        direction = np.where(rng.uniform(size=n) < 0.8, direction, -direction)
        steps[:, t] = 0.5 * direction + 0.1 * rng.normal(size=n)
    return steps[:, :-1, None], steps[:, -1]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("output/mdn_rnn"))
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--max-epochs", type=int, default=200)
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    X, y = momentum_windows(args.rows)
    X_test, y_test = momentum_windows(2000, seed=1)
    start = time.perf_counter()
    settings = dict(module=GRUFeatures, module_kwargs={"hidden_size": 32}, max_epochs=args.max_epochs,
                    input_noise=0.0, random_state=0)
    model = MDNRegressor(n_components=3, **settings).fit(X, y)
    seconds = time.perf_counter() - start
    gaussian = MDNRegressor(n_components=1, **settings).fit(X, y)
    model.save(args.output / "mdn_rnn.mdn", overwrite=True)
    reloaded = load(args.output / "mdn_rnn.mdn", module=GRUFeatures)  # the file holds weights, never code
    metrics = {
        "problem": "next increment of a momentum series from a 16-step window (bimodal: +-0.5)",
        "test_nll_mdn_rnn": float(-model.score(X_test, y_test)),
        "test_nll_gru_gaussian": float(-gaussian.score(X_test, y_test)),
        "reloaded_equal": bool(np.array_equal(reloaded.score_samples(X_test, y_test), model.score_samples(X_test, y_test))),
        "modes_of_first_row": [round(float(m), 3) for m in model.predict_modes(X_test[:1])[0][0] if np.isfinite(m)],
        "seconds": round(seconds, 1),
    }
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
