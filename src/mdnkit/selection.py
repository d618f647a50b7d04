"""``MDNRegressorCV``: choose the number of components and the network size by successive halving.

One seeded hold-out split, not k-fold (k fits of every candidate would cost k times as much): by
default the candidates' own early-stopping rows, so that the winner trains on exactly the rows a
single fit would (for ensembles, whose members hold out rows of their own, rows set apart). Every candidate of the grid trains for a short budget of gradient steps (half
the early-stopping patience of a single fit, ``budget="auto"``); the
worse half by hold-out NLL is dropped; the survivors continue from where they stopped
(``warm_start``) with a doubled budget, until one remains (Jamieson & Talwalkar, 2016). With
``parsimony > 0``, candidates within that many standard errors of the best count as tied and the
smallest network among them ranks first. The winner then trains on to convergence with early
stopping (or, with ``refit=True``, is fitted afresh on every row). The default search (4
candidates) costs about 1.5-4 default fits (median seconds over 3 seeds, one CPU thread, in
``benchmarks/selection_cost.py``: inverted sinusoid 1.6x, UCI concrete, yacht, boston ~2-4x
of their sub-second fits; the earlier 12-candidate grid with 200-step rungs cost 2.5-15x)::

    rung:        0      1
    candidates:  4  ->  2  ->  1 winner, trained on to convergence
    steps each:  b     2b      (cumulative; b = ``budget``)

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (200, 1)); y = X[:, 0] + 0.1 * rng.normal(size=200)
    >>> search = MDNRegressorCV(
    ...     param_grid={"n_components": [1, 2]}, budget=20,
    ...     estimator_params={"hidden_sizes": (8,), "max_epochs": 30}, random_state=0,
    ... ).fit(X, y)
    >>> search.n_candidates_, search.n_components_ in (1, 2), search.predict(X[:3]).shape
    ([2], True, (3,))
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import ParameterGrid
from sklearn.utils.validation import check_is_fitted

from mdnkit.base import ConditionalDensityMixin, seed_from
from mdnkit.distributions import GaussianMixture
from mdnkit.estimator import MDNRegressor
from mdnkit.search import AUTO_N_COMPONENTS, successive_halving

__all__ = ["AUTO_N_COMPONENTS", "DEFAULT_PARAM_GRID", "MDNRegressorCV"]

#: The width is not searched by default: fitted to convergence, (32, 32), (64, 64) and (128, 128)
#: hidden layers differ by about the seed noise on concrete, yacht and boston for every K, while
#: K moves the test NLL by 0.1-0.4 nats; a width axis would triple the cost. Add
#: ``"hidden_sizes"`` to ``param_grid`` to search it.
DEFAULT_PARAM_GRID: dict[str, tuple] = {"n_components": AUTO_N_COMPONENTS}

# Managed by the search itself, so not searchable. (``warm_start`` in estimator_params is the
# setting of the returned best_estimator_; during the search every candidate warm-starts.)
_RESERVED = ("warm_start", "random_state")


class MDNRegressorCV(ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """An :class:`~mdnkit.MDNRegressor` whose ``n_components`` (and any other setting) choose themselves.

    Args:
        param_grid: ``{name: values}`` (or a list of such dicts) of :class:`~mdnkit.MDNRegressor`
            parameters to search; ``None`` uses :data:`DEFAULT_PARAM_GRID` (4 candidates).
        estimator_params: Fixed :class:`~mdnkit.MDNRegressor` settings shared by every candidate
            (``max_epochs``, ``batch_size``, ``device``...); ``None`` keeps its defaults.
        holdout_fraction: ``None`` compares the candidates on their own early-stopping rows (the
            ``validation_fraction`` of every row; all candidates share the seed, hence the rows);
            for ensembles (``n_estimators > 1``), whose members each hold out rows of their own,
            it holds out ``validation_fraction`` of the rows apart.
            A number holds out that share of the rows apart (never trained on, so
            ``validation_nll_`` is unbiased), at the cost of training on fewer rows.
        budget: Gradient steps of every candidate in the first rung, doubled at each rung.
            ``"auto"``: half the early-stopping patience a single fit would use (about 500
            steps for large data, 50 epochs for small), so the search scales with the fit.
        parsimony: At every rung, candidates whose hold-out NLL is within this many standard errors
            of the best count as tied, and the smallest networks among them (fewest weights) rank
            first: one Gaussian where a mixture does not help. ``0`` ranks by NLL alone: on
            concrete, yacht and boston (~100 hold-out rows) it gave 0.005-0.1 nats better median
            test NLL than ``1``, which often picks K=1 there, but it also picks a mixture for
            one-Gaussian data.
        refit: After the search, ``False`` trains the winner on from where it stopped, with early
            stopping, on the same rows; ``True`` fits its parameters afresh on all rows (the
            held-out ones included). Both give the same test NLL on the benchmarks;
            ``False`` is faster.
        n_jobs: Candidates of a rung trained in parallel processes (joblib); ``None`` is one at a
            time, best for the small networks of the default grid on a GPU or a few cores.
        random_state: Seeds the hold-out split and every candidate (all share one seed, so that
            they differ only by their parameters).

    Attributes:
        best_estimator_: The fitted :class:`~mdnkit.MDNRegressor`; every prediction goes to it.
        best_params_: Its grid parameters. ``n_components_``: its number of components.
        best_index_: Row of ``cv_results_`` that selected it (its last rung).
        best_score_: Its hold-out mean log-likelihood at that rung (higher is better).
        validation_nll_: Hold-out NLL of ``best_estimator_`` after the final training (NaN with
            ``refit=True``, whose model has seen those rows; with ``holdout_fraction=None`` and
            single networks, its best early-stopping NLL). ``budget_``: the first rung's steps.
        cv_results_: Dict of lists, one entry per (candidate, rung): ``params``, ``param_<name>``,
            ``candidate`` (index into the grid), ``rung``, ``epochs`` and ``steps`` (cumulative),
            ``seconds`` (cumulative training time) and ``val_nll`` (hold-out NLL in nats per row,
            original units; ``inf`` for a candidate whose training diverged).
        n_candidates_: Candidates per rung, e.g. ``[4, 2]``. ``n_steps_``: their budgets.
        refit_time_: Seconds of the final training. ``n_features_in_``, ``n_outputs_``.

    Example:
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> search = MDNRegressorCV(
        ...     param_grid={"n_components": [1, 3], "hidden_sizes": [(8,)]}, budget=10,
        ...     estimator_params={"max_epochs": 20}, random_state=0,
        ... ).fit(X, y)
        >>> sorted(search.cv_results_)
        ['candidate', 'epochs', 'param_hidden_sizes', 'param_n_components', 'params', 'rung',
         'seconds', 'steps', 'val_nll']
        >>> search.best_estimator_.hidden_sizes
        (8,)
    """

    def __init__(
        self,
        param_grid: Mapping[str, Sequence] | Sequence[Mapping[str, Sequence]] | None = None,
        estimator_params: Mapping[str, Any] | None = None,
        holdout_fraction: float | None = None,
        budget: int | Literal["auto"] = "auto",
        parsimony: float = 1.0,
        refit: bool = False,
        n_jobs: int | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.param_grid = param_grid
        self.estimator_params = estimator_params
        self.holdout_fraction = holdout_fraction
        self.budget = budget
        self.parsimony = parsimony
        self.refit = refit
        self.n_jobs = n_jobs
        self.random_state = random_state

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> MDNRegressorCV:
        """Search the grid on a hold-out split of ``X (n, p)``, ``y (n,)`` or ``(n, d)``.

        Returns:
            ``self``.
        """
        candidates, base = self._check_params()
        seed = seed_from(self.random_state)
        outcome = successive_halving(
            base, candidates, X, y, seed=seed, holdout_fraction=self.holdout_fraction,
            budget_setting=self.budget, parsimony=self.parsimony, refit=self.refit, n_jobs=self.n_jobs,
            warm_start=bool(self._base_params().get("warm_start", False)),
        )
        final = outcome.final
        self.best_index_, self.best_params_ = outcome.best_index, outcome.best_params
        self.best_score_, self.cv_results_ = outcome.best_score, outcome.results
        self.validation_nll_, self.refit_time_ = outcome.validation_nll, outcome.refit_time
        self.n_candidates_, self.n_steps_ = outcome.n_candidates, outcome.n_steps
        self.best_estimator_ = final
        budget = outcome.budget
        self.budget_ = budget
        self.n_components_ = int(final.n_components)
        self.n_features_in_ = final.n_features_in_
        self.n_outputs_ = final.n_outputs_
        self._y_is_1d = final._y_is_1d
        if hasattr(final, "feature_names_in_"):
            self.feature_names_in_ = final.feature_names_in_
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        return self

    def _base_params(self) -> dict[str, Any]:
        return dict(self.estimator_params or {})

    def _check_params(self) -> tuple[list[dict[str, Any]], MDNRegressor]:
        """Validate the settings; returns the candidates' parameters and the shared base estimator."""
        valid = set(MDNRegressor().get_params(deep=False))
        fixed = self._base_params()
        if self.estimator_params is not None and not isinstance(self.estimator_params, Mapping):
            raise ValueError(f"estimator_params must be a dict or None, got {self.estimator_params!r}.")
        _check_names(fixed, valid, "estimator_params")
        if fixed.get("input_noise") == "mixture":
            raise ValueError("MDNRegressorCV continues its candidates with warm starts, which a noise mixture "
                             "(input_noise='mixture') does not have; search with input_noise='auto' or 'select'.")
        if "random_state" in fixed:
            raise ValueError(
                "estimator_params must not set 'random_state': set it on MDNRegressorCV, which "
                "shares one seed between the candidates."
            )
        grid = DEFAULT_PARAM_GRID if self.param_grid is None else self.param_grid
        grids = [grid] if isinstance(grid, Mapping) else grid
        if isinstance(grids, (str, bytes)) or not isinstance(grids, Sequence) or not grids:
            raise ValueError(f"param_grid must be a non-empty dict of lists (or a list of them), got {grid!r}.")
        for part in grids:
            if not isinstance(part, Mapping) or not part:
                raise ValueError(f"param_grid must map parameter names to non-empty lists of values, got {part!r}.")
            _check_names(part, valid, "param_grid")
            for name, values in part.items():
                if name in _RESERVED:
                    raise ValueError(f"param_grid cannot search {name!r}; MDNRegressorCV manages it.")
                if name in fixed:
                    raise ValueError(f"{name!r} is both in param_grid and in estimator_params; keep one.")
                if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
                    raise ValueError(f"param_grid[{name!r}] must be a non-empty list of values, got {values!r}.")
        candidates = list(ParameterGrid([dict(part) for part in grids]))
        budget = self.budget
        if not (budget == "auto" if isinstance(budget, str) else (
                isinstance(budget, numbers.Integral) and not isinstance(budget, bool) and budget >= 1)):
            raise ValueError(f"budget must be 'auto' or an integer >= 1 (gradient steps), got {budget!r}.")
        if not (isinstance(self.parsimony, numbers.Real) and self.parsimony >= 0):
            raise ValueError(f"parsimony must be a number >= 0 (standard errors), got {self.parsimony!r}.")
        if self.holdout_fraction is not None and not (
                isinstance(self.holdout_fraction, numbers.Real) and 0 < self.holdout_fraction < 1):
            raise ValueError(f"holdout_fraction must be None or in (0, 1), got {self.holdout_fraction!r}.")
        base = MDNRegressor(**fixed)
        for params in candidates:  # bad values fail now, not after minutes of search
            candidate = clone(base).set_params(**params)
            candidate._check_params()
            if candidate.n_components == "auto":
                raise ValueError("n_components='auto' cannot be a candidate: MDNRegressorCV searches "
                                 "n_components itself; put the numbers to try in param_grid.")
        if self.holdout_fraction is None and not base.validation_fraction:
            raise ValueError("holdout_fraction=None compares the candidates on their early-stopping rows, "
                             "but estimator_params sets validation_fraction=0; set a holdout_fraction.")
        return candidates, base

    # ------------------------------------------------------------------ predicting
    def predict_dist(self, X: Any) -> GaussianMixture:
        """``best_estimator_.predict_dist(X)``: the conditional distribution of ``y`` per row."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_dist(X)

    def score_samples(self, X: Any, y: Any) -> np.ndarray:
        """``best_estimator_.score_samples(X, y)``: the log-likelihood of each row, ``(n,)``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.score_samples(X, y)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Save ``best_estimator_``; :func:`mdnkit.load` returns it as an :class:`~mdnkit.MDNRegressor`
        (the search itself, ``cv_results_`` included, is not saved)."""
        check_is_fitted(self, "best_estimator_")
        self.best_estimator_.save(path, overwrite=overwrite)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True  # score is a log-likelihood, not R²
        return tags


def _check_names(params: Mapping[str, Any], valid: set[str], where: str) -> None:
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ValueError(
            f"{where} has unknown MDNRegressor parameter(s) {unknown}; valid names: {sorted(valid)}."
        )


