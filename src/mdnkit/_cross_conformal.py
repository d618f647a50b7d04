"""The fold models of a cross-conformal (CV+) calibration: ``MDNRegressor.calibrate(X, y, cv=K)``.

Each fold model is a fresh copy of the estimator (its settings, searches included) fitted on
every row but one fold, so that each row's score comes from a model that never saw it. CV+'s
guarantee needs the copies trained the way the model was, which is why they rerun any search.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
from torch import nn

from mdnkit import conformal
from mdnkit.base import seed_from


def fit_folds(model: Any, X: Any, y: Any, n_folds: Any) -> tuple[list[nn.Module], list[int], conformal.CrossCalibration]:
    """``(modules, n_components, calibration)`` of ``n_folds`` copies of the fitted ``model``.

    Args:
        model: A fitted :class:`~mdnkit.MDNRegressor`.
        X: ``(n, p)`` the rows the model was fitted on; ``y``: ``(n,)`` or ``(n, d)``.
        n_folds: ``K >= 2``, at most ``n``.

    Warnings of the copies' fits are shown once each, marked as coming from a fold model.
    """
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    X = model._check_X(X)
    y = model._check_y(y, len(X))  # [n, d]
    if isinstance(n_folds, bool) or not isinstance(n_folds, numbers.Integral) or not 2 <= n_folds <= len(X):
        raise ValueError(f"cv must be an integer number of folds from 2 to the {len(X)} rows, got {n_folds!r}.")
    targets = y[:, 0] if model._y_is_1d else y
    template = clone(model).set_params(verbose=False, warm_start=False)
    if model.input_noise == "auto":  # each fold the kind of model this one is, whatever made it
        template.set_params(input_noise="mixture" if hasattr(model, "member_weights_") else "select")
    splits = KFold(int(n_folds), shuffle=True, random_state=seed_from(model.random_state)).split(X)
    modules, components, dists, held_out = [], [], [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for train, held in splits:
            fold = clone(template)
            fold._noise_replicates = model._networks_per_level  # a file rebuilds folds with the model's count
            fold.fit(X[train], targets[train])
            modules.append(fold.module_)
            components.append(int(fold.n_components_))
            dists.append(fold.predict_dist(X[held]))
            held_out.append(held)
    for message in dict.fromkeys((w.category, str(w.message)) for w in caught):
        warnings.warn(f"a CV+ fold model: {message[1]}", message[0], stacklevel=4)
    calibration = conformal.cross_calibrate(dists, [y[rows] for rows in held_out], held_out)
    return modules, components, calibration
