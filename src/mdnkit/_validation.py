"""Input checks that say exactly what is wrong (which column, how many rows) before any training."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from scipy import sparse


def _column_names(data: Any, n_columns: int) -> list[str]:
    columns = getattr(data, "columns", None)
    if columns is not None and len(columns) == n_columns:
        return [repr(str(c)) for c in columns]
    return [str(j) for j in range(n_columns)]


Stage = Literal["fit", "predict", "score"]

# What the user should do about NaN or infinite values depends on the call that met them: at
# predict time the model is already fitted, so "before fitting" would send them the wrong way.
_REMEDY: dict[str, str] = {
    "fit": "drop or impute them before fitting.",
    "predict": "drop or impute them before predicting.",
    "score": "drop or impute them before scoring.",
}


def as_float_matrix(
    data: Any, name: str, *, allow_1d: bool, stage: Stage = "fit", allow_nd: bool = False,
    keep_float32: bool = False,
) -> np.ndarray:
    """Convert ``data`` to a float64 (or, with ``keep_float32``, float32) array of shape
    ``(n, p)`` (or ``(n,)`` when 1-D is allowed).

    ``stage`` names the call being checked (``fit``, ``predict`` or ``score``) for the advice on
    NaN and infinite values. ``allow_nd`` admits rows of any shape, ``(n, *shape)`` (inputs of a
    user's own network: sequences, images). ``keep_float32``: a float32 array stays float32, for
    callers that cast it a chunk at a time (no float64 copy of a large table).

    Raises:
        ValueError: Non-numeric columns (named), NaN or infinite values (rows counted per
            column), an empty array, or an array with more than two dimensions.
    """
    if hasattr(data, "dtypes") and hasattr(data, "columns"):  # a pandas DataFrame
        bad = [str(c) for c, t in zip(data.columns, data.dtypes) if not _is_numeric_dtype(t)]
        if bad:
            raise ValueError(
                f"{name} has non-numeric columns {bad}; encode them as numbers first "
                "(e.g. one-hot with pandas.get_dummies)."
            )
    if data is None:
        role = "the target y" if name == "y" else name
        raise ValueError(f"MDNRegressor requires {name} to be passed, but {role} is None.")
    if sparse.issparse(data):
        raise ValueError(f"{name} is a sparse matrix; MDNRegressor needs dense data: pass {name}.toarray().")
    given = np.asarray(data).dtype
    if given.kind == "c":
        raise ValueError(f"Complex data not supported: {name} contains complex values; mdnkit models real-valued data.")
    try:
        array = np.asarray(data, dtype=np.float32 if keep_float32 and given == np.float32 else np.float64)
    except (TypeError, ValueError) as error:
        raw = np.asarray(data, dtype=object)
        columns = _non_numeric_columns(raw)
        where = f" in columns {columns}" if columns else ""
        raise ValueError(f"{name} contains non-numeric values{where}: {error}") from None
    if array.ndim == 0 or (array.ndim > 2 and not allow_nd):
        raise ValueError(f"{name} must be a 2-D array (rows, columns), got shape {array.shape}.")
    if array.ndim == 1 and not allow_1d:
        raise ValueError(
            f"{name} must be 2-D (rows, features), got a 1-D array of shape {array.shape}. "
            "Reshape your data with X.reshape(-1, 1) for a single feature."
        )
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no rows.")
    if array.ndim == 2 and array.shape[1] == 0:
        raise ValueError(f"{name} has 0 feature(s) (shape={array.shape}) while a minimum of 1 is required.")
    _check_finite(array, data, name, stage)
    return array


def _is_numeric_dtype(dtype: Any) -> bool:
    try:
        return np.issubdtype(np.dtype(dtype), np.number) or np.dtype(dtype) == np.bool_
    except TypeError:  # pandas extension dtypes
        return getattr(dtype, "kind", "O") in "biufc"


def _non_numeric_columns(raw: np.ndarray) -> list[str]:
    if raw.ndim != 2:
        return []
    bad = []
    for j in range(raw.shape[1]):
        try:
            raw[:, j].astype(np.float64)
        except (TypeError, ValueError):
            bad.append(str(j))
    return bad


def _check_finite(array: np.ndarray, original: Any, name: str, stage: Stage) -> None:
    table = array.reshape(len(array), -1)
    if np.isfinite(table).all():  # one pass in the usual case; the counts only for a bad table
        return
    for kind, test in (("NaN", np.isnan), ("infinite", np.isinf)):
        flagged = test(table)
        if flagged.any():
            rows = int(flagged.any(axis=1).sum())
            per_column = flagged.sum(axis=0)
            names = _column_names(original, table.shape[1])
            detail = ", ".join(f"column {names[j]}: {int(c)}" for j, c in enumerate(per_column) if c)
            raise ValueError(
                f"{name} has {kind} values in {rows} of {len(table)} rows ({detail}); {_REMEDY[stage]}"
            )


def check_lengths(X: np.ndarray, y: np.ndarray) -> None:
    if len(X) != len(y):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}; they must match row for row.")


def check_constant_targets(y: np.ndarray) -> None:
    """A constant target column has no density to learn (its scale would be zero)."""
    spread = y.max(axis=0) - y.min(axis=0)
    constant = [j for j, s in enumerate(spread) if s == 0]
    if constant:
        values = ", ".join(f"column {j} = {y[0, j]:g}" for j in constant)
        raise ValueError(
            f"y is constant ({values}): a conditional density needs targets that vary; "
            "drop that target column."
        )
