"""Successive halving over candidate estimators: the search behind ``n_components="auto"``
and :class:`~mdnkit.MDNRegressorCV`.

It works on any estimator with ``MDNRegressor``'s settings and warm starts (passed in as a
``base`` to clone), so neither the estimator nor the wrapper is imported here: both call in.
One seeded hold-out split, not k-fold (k fits of every candidate would cost k times as much):
by default the candidates' own early-stopping rows, so that the winner trains on exactly the rows
a single fit would (for ensembles, whose members hold out rows of their own, rows set apart).
Every candidate trains for a short budget of gradient steps; the worse half by hold-out NLL is
dropped; the survivors continue from where they stopped (a warm start continues each one's
training state exactly) with a doubled budget, until one remains (Jamieson & Talwalkar, 2016).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

from mdnkit import _validation
from mdnkit.training import TrainingDivergedError

__all__ = ["AUTO_BUDGET_PATIENCE", "AUTO_N_COMPONENTS", "SearchOutcome", "successive_halving"]

#: Components from one Gaussian (heteroscedastic regression) to ten (up to ~5 branches per x, as
#: the inverted sinusoid): the numbers ``MDNRegressor(n_components="auto")`` tries.
AUTO_N_COMPONENTS: tuple[int, ...] = (1, 3, 5, 10)

#: ``budget="auto"``: the first rung trains this share of the candidates' early-stopping patience.
AUTO_BUDGET_PATIENCE = 0.5


@dataclass
class SearchOutcome:
    """What :func:`successive_halving` found; ``final`` is the winner, trained on."""

    final: Any
    results: dict[str, list]
    best_index: int
    best_params: dict[str, Any]
    best_score: float
    validation_nll: float
    n_candidates: list[int]
    n_steps: list[int]
    budget: int
    refit_time: float


def successive_halving(
    base: Any, candidates: list[dict[str, Any]], X: Any, y: Any, *, seed: int,
    holdout_fraction: float | None = None, budget_setting: int | str = "auto", parsimony: float = 1.0,
    refit: bool = False, n_jobs: int | None = None, warm_start: bool = False,
) -> SearchOutcome:
    """Search ``candidates`` (settings of clones of ``base``) on a hold-out split of ``(X, y)``.

    Args:
        base: An unfitted estimator with every shared setting (cloned for each candidate).
        candidates: Each candidate's own settings.
        X, y: The data, as given to ``fit``.
        seed: The seed of the split and of every candidate.
        holdout_fraction, budget_setting, parsimony, refit, n_jobs: As for
            :class:`~mdnkit.MDNRegressorCV`.
        warm_start: The ``warm_start`` setting the returned winner keeps.
    """
    X_checked = _validation.as_float_matrix(X, "X", allow_1d=False, allow_nd=getattr(base, "module", None) is not None)
    y_checked = _validation.as_float_matrix(y, "y", allow_1d=True)
    _validation.check_lengths(X_checked, y_checked)
    rows = np.random.default_rng(seed).permutation(len(X_checked))
    ensembles = any(int(clone(base).set_params(**params).n_estimators) > 1 for params in candidates)
    if holdout_fraction is None and not ensembles:
        # The candidates' own early-stopping rows: every candidate shares the seed, hence the
        # split (MDNRegressor.fit draws the same permutation), and the winner goes on training
        # on exactly the rows a single fit would use.
        n_holdout = base._n_validation(len(X_checked))
        holdout, train = np.sort(rows[:n_holdout]), np.arange(len(X_checked))
    else:
        # An ensemble's members each hold out their own rows, so every row trains some
        # member: the comparison needs rows apart (validation_fraction of them by default).
        fraction = base.validation_fraction if holdout_fraction is None else holdout_fraction
        n_holdout = math.ceil(fraction * len(X_checked))
        if len(X_checked) - n_holdout < 3:
            raise ValueError(
                f"holdout_fraction={fraction} of {len(X_checked)} rows leaves "
                f"{len(X_checked) - n_holdout} to train the candidates; at least 3 are needed."
            )
        holdout, train = np.sort(rows[:n_holdout]), np.sort(rows[n_holdout:])
    X_train, y_train = _take(X, train), _take(y, train)
    X_val, y_val = _take(X, holdout), _take(y, holdout)

    base.set_params(random_state=seed, warm_start=True)
    if base.input_noise == "auto":  # candidates continue by warm starts: one network each, refit included
        base.set_params(input_noise="select")
    steps_per_epoch = _steps_per_epoch(base, len(train))
    budget = _auto_budget(base, len(train)) if budget_setting == "auto" else int(budget_setting)
    if np.ndim(y) > 1 and np.shape(y)[1] > 1:
        # MDNRegressor refuses more components than training rows for a multi-dimensional target.
        n_rows = len(train) - base._n_validation(len(train))
        candidates = [c for c in candidates if int(c.get("n_components", base.n_components)) <= n_rows]
        if not candidates:
            raise ValueError(f"every candidate has more components than the {n_rows} training rows.")
    models = [clone(base).set_params(**params) for params in candidates]
    alive = list(range(len(candidates)))
    epochs_done = [0] * len(candidates)
    seconds = [0.0] * len(candidates)
    results: dict[str, list] = {"params": [], "candidate": [], "rung": [], "epochs": [], "steps": [],
                                "seconds": [], "val_nll": []}
    for name in sorted({name for params in candidates for name in params}):
        results[f"param_{name}"] = []
    n_candidates, n_steps = [], []
    rung = 0
    while True:
        steps = budget * 2**rung
        # An epoch is the smallest unit MDNRegressor trains; never go past its max_epochs.
        target_epochs = min(math.ceil(steps / steps_per_epoch), int(base.max_epochs))
        jobs = [(models[i], X_train, y_train, X_val, y_val, target_epochs - epochs_done[i]) for i in alive]
        row_nlls = []
        for i, (model, row_nll, elapsed, epochs) in zip(alive, _run(jobs, n_jobs)):
            models[i] = model
            row_nlls.append(row_nll)
            nll = math.inf if row_nll is None or not np.isfinite(row_nll).all() else float(row_nll.mean())
            epochs_done[i] += epochs
            seconds[i] += elapsed
            results["params"].append(dict(candidates[i]))
            results["candidate"].append(i)
            results["rung"].append(rung)
            results["epochs"].append(epochs_done[i])
            results["steps"].append(epochs_done[i] * steps_per_epoch)
            results["seconds"].append(seconds[i])
            results["val_nll"].append(nll)
            for name in results:
                if name.startswith("param_"):
                    results[name].append(candidates[i].get(name[len("param_"):]))
        n_candidates.append(len(alive))
        n_steps.append(steps)
        scores = results["val_nll"][-len(alive):]
        if all(not math.isfinite(s) for s in scores):
            raise TrainingDivergedError(
                "Every candidate's training diverged; try a smaller learning_rate in estimator_params."
            )
        order = _rank(scores, row_nlls, [_n_parameters(models[i]) for i in alive], parsimony)
        keep = len(alive) // 2
        if keep <= 1 or target_epochs >= int(base.max_epochs):
            best = order[0]
            break
        alive = [alive[j] for j in sorted(order[:keep])]
        for i in set(range(len(candidates))) - set(alive):
            models[i] = None  # free the dropped networks
        rung += 1

    winner = alive[best]
    best_index = len(results["val_nll"]) - len(alive) + best
    best_params = dict(candidates[winner])
    start = time.perf_counter()
    if refit:
        final = clone(base).set_params(**best_params, warm_start=False).fit(X, y)
        validation_nll = math.nan
    else:
        final = models[winner]
        final.set_params(max_epochs=max(1, int(base.max_epochs) - epochs_done[winner]))
        final.fit(X_train, y_train)  # warm start: early stopping on its own validation rows
        validation_nll = -final.score(X_val, y_val)
    # The rungs shortened max_epochs; the model handed over keeps the user's setting.
    final.set_params(max_epochs=int(base.max_epochs), warm_start=warm_start)
    return SearchOutcome(
        final=final, results=results, best_index=best_index, best_params=best_params,
        best_score=-results["val_nll"][best_index], validation_nll=validation_nll,
        n_candidates=n_candidates, n_steps=n_steps, budget=budget,
        refit_time=time.perf_counter() - start,
    )



def _run(jobs: list[tuple], n_jobs: int | None) -> list[tuple[Any, np.ndarray | None, float, int]]:
    if n_jobs is None or n_jobs == 1 or len(jobs) == 1:
        return [_train_candidate(*job) for job in jobs]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=n_jobs)(delayed(_train_candidate)(*job) for job in jobs)


def _train_candidate(
    model: Any, X: Any, y: Any, X_val: Any, y_val: Any, epochs: int
) -> tuple[Any, np.ndarray | None, float, int]:
    """Train ``model`` ``epochs`` more epochs; returns it, its hold-out NLL per row (``None`` if
    training diverged), seconds and epochs."""
    start = time.perf_counter()
    if epochs > 0:
        model.set_params(max_epochs=epochs)
        try:
            with warnings.catch_warnings():
                # A short budget stops while still improving: that is the point, not a problem.
                warnings.simplefilter("ignore", ConvergenceWarning)
                # A trial skips what only the kept model needs (its novelty index).
                getattr(model, "_fit_rung", model.fit)(X, y)
        except TrainingDivergedError:
            return model, None, time.perf_counter() - start, epochs
    row_nll = -model.score_samples(X_val, y_val)  # [n_holdout]
    return model, row_nll, time.perf_counter() - start, epochs


def _rank(scores: list[float], row_nlls: list[np.ndarray | None], sizes: list[int], parsimony: float) -> list[int]:
    """Order of the candidates, best first: by hold-out NLL, except that those within
    ``parsimony`` standard errors of the best come first, the smallest network first.

    The standard error is that of the mean per-row NLL difference to the best candidate, paired on
    the same hold-out rows (the one-standard-error rule of Breiman et al., 1984).
    """
    best = min(range(len(scores)), key=lambda j: scores[j])

    def tied(j: int) -> bool:
        if not math.isfinite(scores[j]):
            return False
        difference = row_nlls[j] - row_nlls[best]  # [n_holdout]
        standard_error = difference.std(ddof=1) / math.sqrt(len(difference)) if len(difference) > 1 else 0.0
        return difference.mean() <= parsimony * standard_error

    # Stable sorts keep grid order among equals, so the search is deterministic.
    return sorted(range(len(scores)), key=lambda j: (0, sizes[j]) if tied(j) else (1, scores[j]))


def _n_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.module_.parameters()) if hasattr(model, "module_") else 0


def _auto_budget(model: Any, n_rows: int) -> int:
    """First-rung budget in gradient steps: half the early-stopping patience ``model`` would use
    on ``n_rows`` (a single fit trains for its best epoch plus that patience)."""
    n_train = n_rows - (model._n_validation(n_rows) if model.validation_fraction else 0)
    return max(1, math.ceil(AUTO_BUDGET_PATIENCE * model._patience(n_train))) * _steps_per_epoch(model, n_rows)


def _steps_per_epoch(model: Any, n_rows: int) -> int:
    """Gradient steps per epoch of ``model`` on ``n_rows`` (it holds out its own validation rows)."""
    n_train = n_rows - (math.ceil(model.validation_fraction * n_rows) if model.validation_fraction else 0)
    batch_size = model._batch_size(n_train)
    return 1 if batch_size is None else max(1, math.ceil(n_train / batch_size))


def _take(data: Any, rows: np.ndarray) -> Any:
    """Rows of an array or a DataFrame (kept a DataFrame, so that feature names reach the model)."""
    return data.iloc[rows] if hasattr(data, "iloc") else np.asarray(data)[rows]
