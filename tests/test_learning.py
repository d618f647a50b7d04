"""Slow: a fitted MDN learns a known conditional density to a stated NLL bound."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from mdnkit import MDNRegressor
from mdnkit.datasets import inverted_sinusoid_log_density, make_inverted_sinusoid


@pytest.mark.slow
def test_learns_edward_inverted_sinusoid_to_within_005_nats_of_truth():
    """Edward seed: N=5000, 75/25 split (random_state=42). The oracle is the true generating
    process's conditional NLL, computed by quadrature; the fit must come within 0.05 nats.

    This configuration (all training rows, 1500 full-batch epochs) gave gaps of 0.035-0.042 over
    seeds 0-4, so float rounding differences between machines leave a margin."""
    X, y = make_inverted_sinusoid(5000, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)
    oracle_nll = -inverted_sinusoid_log_density(X_test, y_test).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # would not change the bound
        model = MDNRegressor(
            n_components=10, activation="tanh", batch_size=None, learning_rate=3e-3,
            validation_fraction=0.0, max_epochs=1500, random_state=0).fit(X_train, y_train)
    test_nll = -model.score(X_test, y_test)
    assert np.isfinite(test_nll)
    assert test_nll - oracle_nll < 0.05, f"test NLL {test_nll:.4f}, oracle {oracle_nll:.4f}"
    # The branches are learned, not just the spread: the true y lies in the 90% highest-density
    # region roughly 90% of the time (binomial sd at n=1250 is 0.85%; 4 sd margin).
    intervals = model.predict_dist(X_test).highest_density_intervals(0.9)
    bounds = intervals.bounds.numpy()
    inside = ((bounds[..., 0] <= y_test[:, None]) & (y_test[:, None] <= bounds[..., 1])).any(axis=1)
    assert abs(inside.mean() - 0.9) < 0.035
