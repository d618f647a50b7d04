"""Tables on disk for the command-line tool: reading, choosing columns, encoding, schema checks.

A :class:`Schema` records what ``mdnkit fit`` learned about the training table: which columns are
features (numeric or categorical, with the category list of each, in order) and which are
targets. It is stored inside the model file, so that ``predict`` encodes a new table exactly as
the training table was encoded and can name any column that is missing or changed type.

Every problem with the data raises :class:`DataError` with a one-line message that names the
file, the columns and the row counts involved.

Formats, by suffix (compressed ``.gz``/``.bz2``/``.xz``/``.zst`` CSV, TSV and JSON lines work too):
``.csv``, ``.tsv``/``.tab``, ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``/``.json`` (JSON lines).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mdnkit.io import create_temp_file

__all__ = ["DataError", "Schema", "TableWriter", "drop_missing", "read_table", "iter_table", "table_format"]

MAX_CATEGORIES = 50  # a text column with more distinct values is refused, not one-hot encoded
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "tsv",
    ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
}


class DataError(ValueError):
    """A data file cannot be used as it is; the message says why in one line."""


def table_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"tsv"``, ``"parquet"`` or ``"jsonl"`` from the file name's suffix."""
    suffixes = [s.lower() for s in pathlib.Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    kind = _FORMATS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DataError(
            f"{str(path)!r}: unknown table format {''.join(suffixes) or '(no suffix)'!r}; "
            "use .csv, .tsv, .parquet or .jsonl"
        )
    return kind


def _check_readable(path: str | os.PathLike) -> pathlib.Path:
    source = pathlib.Path(path)
    if not source.exists():
        raise DataError(f"{str(source)!r}: no such file")
    if source.is_dir():
        raise DataError(f"{str(source)!r} is a directory, not a data file")
    if source.stat().st_size == 0:
        raise DataError(f"{str(source)!r} is empty")
    return source


def iter_table(
    path: str | os.PathLike, chunk_size: int | None = None, text_columns: Sequence[str] = ()
) -> Iterator[pd.DataFrame]:
    """Read a table in chunks of ``chunk_size`` rows (one chunk when ``None``).

    Args:
        path: The file; its format comes from the suffix (:func:`table_format`).
        chunk_size: Rows per chunk; memory stays flat however long the file is.
        text_columns: Columns to read as text whatever they look like (the categorical
            features, so that ``"1"`` in one chunk and ``"1.0"`` in another cannot differ).

    Raises:
        DataError: Missing, empty, unreadable or unknown-format file.
    """
    source = _check_readable(path)
    kind = table_format(source)
    dtype = {name: "string" for name in text_columns} or None
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(source)
            if parquet.metadata.num_rows == 0:
                raise DataError(f"{str(source)!r} has no rows")
            if chunk_size is None:
                yield parquet.read().to_pandas()
            else:
                for batch in parquet.iter_batches(batch_size=chunk_size):
                    yield batch.to_pandas()
            return
        if kind in ("csv", "tsv"):
            reader = pd.read_csv(source, sep="," if kind == "csv" else "\t", chunksize=chunk_size, dtype=dtype)
        else:
            reader = pd.read_json(source, lines=True, chunksize=chunk_size, dtype=dtype)
        if chunk_size is None:
            frame = reader
            if len(frame) == 0:
                raise DataError(f"{str(source)!r} has a header but no rows")
            yield frame
            return
        with reader:
            empty = True
            for frame in reader:
                empty = empty and len(frame) == 0
                yield frame
            if empty:
                raise DataError(f"{str(source)!r} has a header but no rows")
    except DataError:
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{str(source)!r} is empty (no columns)") from None
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        detail = " ".join(str(error).split())[:200]
        raise DataError(f"{str(source)!r} could not be read as {kind.upper()}: {detail}") from None
    except Exception as error:  # pyarrow's ArrowInvalid and friends
        detail = " ".join(str(error).split())[:200]
        raise DataError(f"{str(source)!r} could not be read as {kind.upper()}: {detail}") from None


def read_table(path: str | os.PathLike, text_columns: Sequence[str] = ()) -> pd.DataFrame:
    """The whole table as one DataFrame (see :func:`iter_table`)."""
    return next(iter_table(path, None, text_columns))


def _names(columns: Sequence[Any]) -> str:
    return ", ".join(repr(str(c)) for c in columns)


def _numeric_looking(values: pd.Series) -> bool:
    """Most of a text column parses as numbers: a numeric column with a few bad entries."""
    present = values.dropna()
    if len(present) == 0:
        return False
    return pd.to_numeric(present.astype(str), errors="coerce").notna().mean() >= 0.5


def _bad_numbers(values: pd.Series) -> list[str]:
    present = values.dropna()
    bad = present[pd.to_numeric(present.astype(str), errors="coerce").isna()]
    return [str(v) for v in pd.unique(bad)[:3]]


def drop_missing(frame: pd.DataFrame, columns: Sequence[str], *, drop: bool, what: str) -> tuple[pd.DataFrame, int]:
    """Refuse, or drop, the rows with a missing value in ``columns``.

    Returns:
        ``(frame, n_dropped)``.

    Raises:
        DataError: Missing values and ``drop`` is False (the message counts them per column).
    """
    missing = frame[list(columns)].isna()
    rows = missing.any(axis=1)
    n_missing = int(rows.sum())
    if n_missing == 0:
        return frame, 0
    if not drop:
        counts = missing.sum()
        per_column = ", ".join(f"{str(c)!r} ({int(n)})" for c, n in counts.items() if n)
        raise DataError(
            f"{what}: {n_missing} row(s) have missing values (in {per_column}); "
            "pass --drop-missing to drop them"
        )
    return frame.loc[~rows], n_missing


@dataclass
class Schema:
    """The columns a model was fitted on, and how features are encoded.

    Attributes:
        features: Feature columns of the table, in order.
        targets: Target columns, in order.
        categories: For each categorical feature, its categories (text) in one-hot order.
    """

    features: list[str]
    targets: list[str]
    categories: dict[str, list[str]] = field(default_factory=dict)

    # ------------------------------------------------------------------ building
    @classmethod
    def infer(cls, frame: pd.DataFrame, targets: Sequence[str], features: Sequence[str] | None, what: str) -> Schema:
        """Choose and check the columns of a training table.

        Features default to every column that is not a target. Numeric (and boolean) columns
        are used as they are; text columns with at most :data:`MAX_CATEGORIES` distinct values
        are one-hot encoded.

        Raises:
            DataError: Unknown columns, a column both feature and target, non-numeric targets,
                text columns that look numeric or have too many distinct values.
        """
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        if not targets:
            raise DataError("give the target column with --target COL")
        unknown = [t for t in targets if t not in columns]
        if unknown:
            raise DataError(f"{what} has no target column {_names(unknown)}; its columns are {_names(columns)}")
        if features:
            unknown = [f for f in features if f not in columns]
            if unknown:
                raise DataError(f"{what} has no feature column {_names(unknown)}; its columns are {_names(columns)}")
            both = [f for f in features if f in targets]
            if both:
                raise DataError(f"column {_names(both)} cannot be both a feature and a target")
            features = list(dict.fromkeys(features))
        else:
            features = [c for c in columns if c not in targets]
        if not features:
            raise DataError(f"{what} has no feature columns besides the target(s) {_names(targets)}")

        bad = [t for t in targets if not _is_numeric(frame[t])]
        if bad:
            examples = {t: _bad_numbers(frame[t]) for t in bad}
            detail = "; ".join(f"{t!r}: e.g. {', '.join(map(repr, v))}" for t, v in examples.items() if v)
            raise DataError(f"{what}: target column {_names(bad)} is not numeric ({detail})")
        categories: dict[str, list[str]] = {}
        numeric_looking, too_many = [], []
        for name in features:
            values = frame[name]
            if _is_numeric(values):
                continue
            if _numeric_looking(values):
                numeric_looking.append(f"{name!r} (e.g. {', '.join(map(repr, _bad_numbers(values)))})")
                continue
            levels = sorted({str(v) for v in values.dropna()})
            if len(levels) > MAX_CATEGORIES:
                too_many.append(f"{name!r} ({len(levels)} distinct values)")
            categories[name] = levels
        if numeric_looking:
            raise DataError(f"{what}: non-numeric values in numeric column(s) {', '.join(numeric_looking)}")
        if too_many:
            raise DataError(
                f"{what}: non-numeric column(s) {', '.join(too_many)} have too many distinct values to "
                f"one-hot encode (at most {MAX_CATEGORIES}); drop them with --features or encode them first"
            )
        return cls(list(features), list(targets), categories)

    @classmethod
    def from_dict(cls, document: dict[str, Any]) -> Schema:
        return cls(list(document["features"]), list(document["targets"]),
                   {k: list(v) for k, v in document.get("categories", {}).items()})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (stored in the model file's metadata as ``"schema"``)."""
        return {"features": self.features, "targets": self.targets, "categories": self.categories}

    # ------------------------------------------------------------------ encoding
    @property
    def encoded_names(self) -> list[str]:
        """Column names of the encoded feature matrix (``colour=red`` for a one-hot column)."""
        names = []
        for name in self.features:
            if name in self.categories:
                names.extend(f"{name}={level}" for level in self.categories[name])
            else:
                names.append(name)
        return names

    def check_columns(self, frame: pd.DataFrame, what: str, *, need_targets: bool = False) -> bool:
        """Check the table has every feature (and target, when needed) column.

        Returns:
            Whether every target column is present.

        Raises:
            DataError: Names the missing columns, and the columns the model does not know.
        """
        columns = [str(c) for c in frame.columns]
        frame.columns = columns
        required = self.features + (self.targets if need_targets else [])
        missing = [c for c in required if c not in columns]
        if missing:
            extra = [c for c in columns if c not in self.features + self.targets]
            hint = f"; it has column(s) the model does not know: {_names(extra)}" if extra else ""
            kind = "target" if set(missing) <= set(self.targets) else "model"
            raise DataError(f"{what} does not match the {kind} schema: missing column(s) {_names(missing)}{hint}")
        return all(t in columns for t in self.targets)

    def encode(self, frame: pd.DataFrame, what: str) -> np.ndarray:
        """The feature matrix ``(n, len(encoded_names))``, float64, one-hot for categories.

        Raises:
            DataError: Non-numeric values in numeric columns, categories unseen in training.
        """
        parts = []
        not_numeric = []
        for name in self.features:
            values = frame[name]
            if name in self.categories:
                levels = self.categories[name]
                text = values.astype("string")
                unseen = sorted(set(text.dropna()) - set(levels))
                if unseen:
                    shown = ", ".join(map(repr, unseen[:5]))
                    raise DataError(
                        f"{what}: column {name!r} has categories not seen in training: {shown} "
                        f"(known: {', '.join(map(repr, levels[:10]))})"
                    )
                parts.append(np.stack([(text == level).fillna(False).to_numpy(bool) for level in levels], axis=1))
            elif _is_numeric(values):
                parts.append(values.to_numpy(np.float64, na_value=np.nan)[:, None])
            else:
                not_numeric.append(f"{name!r} (e.g. {', '.join(map(repr, _bad_numbers(values)))})")
        if not_numeric:
            raise DataError(f"{what}: non-numeric values in numeric column(s) {', '.join(not_numeric)}")
        X = np.concatenate(parts, axis=1).astype(np.float64)  # a fresh, writable array
        infinite = ~np.isfinite(X).all(axis=0)
        if infinite.any():
            names = [self.encoded_names[j] for j in np.flatnonzero(infinite)]
            raise DataError(f"{what}: infinite values in column(s) {_names(names)}")
        return X

    def target_values(self, frame: pd.DataFrame, what: str) -> np.ndarray:
        """The targets ``(n,)`` for one target column, else ``(n, d)``, float64."""
        bad = [t for t in self.targets if not _is_numeric(frame[t])]
        if bad:
            raise DataError(f"{what}: target column {_names(bad)} is not numeric")
        y = np.array(frame[self.targets].to_numpy(np.float64, na_value=np.nan))  # writable (copy-on-write)
        return y[:, 0] if len(self.targets) == 1 else y

    def describe(self) -> list[tuple[str, str]]:
        """``(column, role)`` rows for printing."""
        rows = [(t, "target (numeric)") for t in self.targets]
        for name in self.features:
            if name in self.categories:
                levels = self.categories[name]
                shown = ", ".join(levels[:6]) + (", ..." if len(levels) > 6 else "")
                rows.append((name, f"feature (categorical, {len(levels)}: {shown})"))
            else:
                rows.append((name, "feature (numeric)"))
        return rows


def _is_numeric(values: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype)


# ---------------------------------------------------------------------- writing
class TableWriter:
    """Write a table chunk by chunk to a temporary file, renamed over ``path`` on :meth:`commit`.

    A crash or Ctrl-C leaves no half-written output: the temporary file is removed by
    :meth:`abort` (or on leaving a ``with`` block with an exception).

    Raises:
        DataError: Unknown output format, missing directory, or an existing output without
            ``overwrite``.
    """

    def __init__(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        self.path = pathlib.Path(path)
        check_output(self.path, overwrite)
        self.kind = table_format(self.path)
        self.overwrite = overwrite
        handle = create_temp_file(self.path)
        handle.close()
        self._tmp = pathlib.Path(handle.name)
        self._parquet = None
        self._header = True
        self.n_rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.kind == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
        elif self.kind == "jsonl":
            with open(self._tmp, "a", encoding="utf-8") as out:
                frame.to_json(out, orient="records", lines=True)
                if len(frame):
                    out.write("\n")
        else:
            frame.to_csv(self._tmp, sep="," if self.kind == "csv" else "\t", index=False,
                         header=self._header, mode="a", float_format="%.8g")
        self._header = False
        self.n_rows += len(frame)

    def commit(self) -> pathlib.Path:
        if self._parquet is not None:
            self._parquet.close()
        with open(self._tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        check_output(self.path, self.overwrite)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:
                pass
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            self.abort()


def check_output(path: str | os.PathLike, overwrite: bool) -> None:
    """Refuse an output whose directory is missing, or that exists (without ``overwrite``)."""
    target = pathlib.Path(path)
    if not target.parent.is_dir():
        raise DataError(f"cannot write {str(target)!r}: directory {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise DataError(f"cannot write {str(target)!r}: it is a directory")
    if target.exists() and not overwrite:
        raise DataError(f"{str(target)!r} already exists; pass --force to overwrite it")


def write_bytes_atomic(path: str | os.PathLike, data: bytes, overwrite: bool) -> pathlib.Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    target = pathlib.Path(path)
    check_output(target, overwrite)
    handle = create_temp_file(target)
    try:
        with handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        check_output(target, overwrite)
        os.replace(handle.name, target)
    except BaseException:
        pathlib.Path(handle.name).unlink(missing_ok=True)
        raise
    return target
