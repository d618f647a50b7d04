"""Tables larger than memory: rows read in record batches by ``pyarrow.dataset``.

:class:`TableRows` names a Parquet file or directory, a CSV file, or any ``pyarrow.dataset``
``Dataset``, with its feature and target columns; ``MDNRegressor().fit(TableRows(...))`` trains on
it without ever holding all rows. What a fit needs from the whole table is gathered in one pass,
:func:`scan_table`: the row count, every column's mean and variance (:class:`Moments`, merged
batch by batch in float64), non-finite values, and a seeded uniform :class:`Reservoir` sample
of rows (for the head's start and the novelty index). Validation rows are chosen by a hash of
each row's position in the table (:func:`validation_mask`), so every epoch, and every run with the
same seed, holds out the same rows without a list of them. :class:`ShuffledBatches` and
:class:`ValidationChunks` are the batch sources :func:`~mdnkit.training.train` reads.

Reading is pyarrow's (its scanners, in the table's order); only what no library offers is
written here: the moment merge, the reservoir and the hash.

Example:
    >>> import tempfile, pathlib, numpy as np, pyarrow as pa, pyarrow.parquet as pq
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rows.parquet"
    >>> rng = np.random.default_rng(0)
    >>> pq.write_table(pa.table({"x": rng.normal(size=500), "y": rng.normal(size=500)}), path)
    >>> stats = scan_table(TableRows(path, features=["x"], target="y"), reservoir_size=100)
    >>> stats.n_rows, stats.sample_x.shape
    (500, (100, 1))
"""

from __future__ import annotations

import copy
import itertools
import os
import pathlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.csv  # for pa.csv.ParseOptions
import pyarrow.dataset as ds
import torch
from torch import Tensor

__all__ = ["Moments", "Reservoir", "ShuffledBatches", "StandardizedRows", "Standardizer", "TableRows",
           "TablePart", "TableStatistics", "ValidationChunks", "merged_statistics", "open_dataset", "scan_part",
           "scan_table", "validation_mask"]

READ_BATCH = 65_536  # rows per record batch read: a few MB per column batch
SHUFFLE_BUFFER = 262_144  # rows shuffled together: ~10 MB of float32 for 9 columns
RESERVOIR_SIZE = 20_000  # rows kept for the head's start and the novelty index (it keeps 10_000)
# Reading ahead: pyarrow's threaded scan decodes ahead of a slower consumer (a training loop)
# without bound: 308 MiB of Arrow buffers over a 10⁷-row file read in 0.05 s steps, against 98 MiB
# read on the calling thread with one batch ahead (pyarrow 26), at the same speed there.
_BATCH_READAHEAD, _FRAGMENT_READAHEAD, _READ_THREADS = 1, 1, False


class TableRows:
    """Rows of a table on disk, read in record batches: ``features`` as inputs, ``target`` as targets.

    Args:
        data: A Parquet file or a directory of them, a ``.csv`` file (or a directory with
            ``format="csv"``), or a ``pyarrow.dataset.Dataset``.
        features: Feature columns, in order (numeric or boolean).
        target: The target column, or a list of them for a multivariate target.
        format: ``"parquet"`` or ``"csv"``; by default from the file's suffix (``.csv``, ``.tsv``
            as CSV, else Parquet). Ignored for a ``Dataset``.
        batch_size: Rows per record batch read (smaller batches can come at file or row-group ends).

    Raises:
        ValueError: A missing column, a column both feature and target, a non-numeric column.
    """

    def __init__(
        self,
        data: str | os.PathLike | ds.Dataset,
        features: Sequence[str],
        target: str | Sequence[str],
        format: Literal["parquet", "csv"] | None = None,
        batch_size: int = READ_BATCH,
    ) -> None:
        self.dataset = data if isinstance(data, ds.Dataset) else open_dataset(data, format)
        self.features = [str(name) for name in features]
        self.targets = [str(target)] if isinstance(target, str) else [str(name) for name in target]
        self.target_is_1d = isinstance(target, str)
        self.batch_size = int(batch_size)
        self.row_groups = None  # all of them; a shard's own (RowGroup list) after shard()
        self._check_columns()

    def __repr__(self) -> str:
        return f"TableRows(features={self.features}, target={self.targets if not self.target_is_1d else self.targets[0]!r})"

    def _check_columns(self) -> None:
        schema = self.dataset.schema
        if not self.features or not self.targets:
            raise ValueError("TableRows needs at least one feature column and one target column.")
        missing = [name for name in self.features + self.targets if schema.get_field_index(name) < 0]
        if missing:
            raise ValueError(f"The table has no column {missing}; its columns are {schema.names}.")
        both = sorted(set(self.features) & set(self.targets))
        if both:
            raise ValueError(f"Column {both} cannot be both a feature and a target.")
        for name in self.features + self.targets:
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
                    or pa.types.is_decimal(kind)):
                raise ValueError(f"Column {name!r} is {kind}, not numeric: streamed tables take numeric and "
                                 "boolean columns only (encode text columns first).")

    def shard(self, groups: list) -> TableRows:
        """These rows restricted to some of the table's Parquet row groups
        (:class:`~mdnkit._table_shards.RowGroup`, from :func:`~mdnkit._table_shards.row_groups`):
        what one data-parallel rank reads. Row positions stay those of the whole table."""
        shard = copy.copy(self)
        shard.row_groups = list(groups)
        return shard

    def batches(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """``(first_row, x (n, p), y (n, d))`` in float64, record batch by record batch, in the
        table's order (pyarrow's ordered scan: ``first_row`` counts rows from the table's start);
        a shard reads only its own row groups."""
        options = {}
        if isinstance(getattr(self.dataset, "format", None), ds.ParquetFileFormat):
            # Pre-buffering reads whole row groups ahead: 114 MiB of buffers against 43 MiB without,
            # reading a table of 262 144-row groups (pyarrow 26).
            options["fragment_scan_options"] = ds.ParquetFragmentScanOptions(pre_buffer=False)
        if self.row_groups is None:
            yield from self._decoded(self.dataset, 0, options)
            return
        for group in self.row_groups:
            yield from self._decoded(group.fragment, group.first_row, options)

    def _decoded(self, source: ds.Dataset | ds.Fragment, first: int,
                 options: dict) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """The record batches of a dataset or one fragment as float64 ``(first_row, x, y)``."""
        columns = self.features + self.targets
        read = dict(columns=columns, batch_size=self.batch_size, batch_readahead=_BATCH_READAHEAD, **options)
        if isinstance(source, ds.Dataset):
            read.update(fragment_readahead=_FRAGMENT_READAHEAD, use_threads=_READ_THREADS)
        else:
            read["schema"] = self.dataset.schema  # a fragment alone reads its file's own schema
            read["use_threads"] = _READ_THREADS
        for batch in source.to_batches(**read):
            if batch.num_rows == 0:
                continue
            values = np.column_stack([_as_float(batch.column(j)) for j in range(len(columns))])  # [n, p + d]
            yield first, values[:, :len(self.features)], values[:, len(self.features):]
            first += batch.num_rows


def open_dataset(path: str | os.PathLike, format: Literal["parquet", "csv"] | None = None) -> ds.Dataset:
    """A lazy ``pyarrow.dataset`` over a Parquet file or directory, or a CSV (``.tsv``: tab) file;
    ``format`` by default from the suffix (``.csv`` and ``.tsv`` are CSV, anything else Parquet)."""
    location = pathlib.Path(path)
    if not location.exists():
        raise FileNotFoundError(f"No such file or directory: {str(path)!r}")
    if format is None:
        format = "csv" if location.suffix.lower() in (".csv", ".tsv") else "parquet"
    if format == "csv" and location.suffix.lower() == ".tsv":
        return ds.dataset(location, format=ds.CsvFileFormat(parse_options=pa.csv.ParseOptions(delimiter="\t")))
    return ds.dataset(location, format=format)


def _as_float(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numeric column as float64, nulls as NaN (refused later, by name)."""
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)


# ---------------------------------------------------------------------- one statistics pass
@dataclass
class Moments:
    """Count, mean and sum of squared deviations of columns, merged batch by batch in float64.

    Each batch's own mean and squares come from NumPy; merging two sets of moments is Chan,
    Golub and LeVeque's (1979) pairwise rule, written here because NumPy and pyarrow have
    mean and variance of one array, not a merge of partial ones. It is as accurate as a
    two-pass variance, where summing ``x²`` over 10⁷ rows would cancel digits.
    """

    count: int = 0
    mean: np.ndarray | float = 0.0  # [p]
    m2: np.ndarray | float = 0.0  # [p], Σ (x - mean)²

    def update(self, values: np.ndarray) -> None:
        """Add the rows of ``values (n, p)``."""
        if len(values) == 0:
            return
        values = np.asarray(values, dtype=np.float64)
        mean = values.mean(axis=0)
        self.merge(Moments(len(values), mean, np.square(values - mean).sum(axis=0)))

    def merge(self, other: Moments) -> None:
        """Add the rows ``other`` summarises (another batch's, or another rank's)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + np.square(delta) * (self.count * other.count / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation ``(p,)`` (divisor ``count``, as ``np.std``)."""
        return np.sqrt(np.asarray(self.m2) / max(self.count, 1))


class Reservoir:
    """A uniform sample of up to ``size`` rows from a stream, without knowing its length.

    Vitter's Algorithm R: row ``i`` (from 0) enters the first ``size`` slots directly, and
    later replaces slot ``j ~ U{0..i}`` when ``j < size``, so every row ends in the sample with
    probability ``size / n``. Vectorised over a batch: a slot hit twice keeps the later row,
    exactly as row by row. No library streams a sample of a table (pyarrow samples nothing,
    NumPy's ``choice`` needs all rows). ``stream``: another random stream for the same seed
    (one per data-parallel rank; 0 on one process).
    """

    def __init__(self, size: int, width: int, seed: int, stream: int = 0) -> None:
        self.size, self.seen = int(size), 0
        self.rows = np.empty((self.size, width))  # [size, p]
        self.index = np.empty(self.size, dtype=np.int64)  # each kept row's position in the table
        self.rng = np.random.default_rng([seed, 0x5EED] + ([stream] if stream else []))

    def update(self, rows: np.ndarray, first: int) -> None:
        """Offer ``rows (n, p)``, the table's rows ``first, first + 1, ...`` (a rank's rows need
        not start at 0 nor follow on: ``i`` above counts the rows offered so far)."""
        offered = np.arange(self.seen, self.seen + len(rows))  # i, row by row
        positions = np.arange(first, first + len(rows))
        fill = offered < self.size
        self.rows[offered[fill]], self.index[offered[fill]] = rows[fill], positions[fill]
        later = np.flatnonzero(~fill)
        if len(later):
            slots = self.rng.integers(0, offered[later] + 1)  # j ~ U{0..i}, one per row
            hit = slots < self.size
            slots, later = slots[hit], later[hit]
            # The last row to hit a slot keeps it: unique over the reversed order.
            keep = len(slots) - 1 - np.unique(slots[::-1], return_index=True)[1]
            self.rows[slots[keep]], self.index[slots[keep]] = rows[later[keep]], positions[later[keep]]
        self.seen += len(rows)

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows (m, p), positions (m,))``, ``m = min(size, seen)``, in slot order."""
        m = min(self.size, self.seen)
        return self.rows[:m].copy(), self.index[:m].copy()


@dataclass
class TableStatistics:
    """What one pass over a table learned: moments, and a uniform sample of its rows."""

    n_rows: int
    x: Moments
    y: Moments
    log_y: Moments | None  # moments of log y, for families scaled by the geometric mean
    sample_x: np.ndarray  # [m, p]
    sample_y: np.ndarray  # [m, d]
    sample_index: np.ndarray  # [m], positions in the table


@dataclass
class TablePart:
    """One pass over some of a table's rows (one rank's), before the parts are merged: what
    :class:`TableStatistics` holds, plus what is wrong with the rows, to be raised once merged."""

    n_rows: int
    x: Moments
    y: Moments
    log_y: Moments | None
    sample: np.ndarray  # [m, p + d], the reservoir's rows in slot order
    sample_index: np.ndarray  # [m]
    bad: np.ndarray  # [p + d], non-finite values per column
    target_error: tuple[int, str] | None  # (first row of its batch, message) of the first refused batch


def scan_table(
    rows: TableRows,
    reservoir_size: int = RESERVOIR_SIZE,
    seed: int = 0,
    check_targets: Callable[[np.ndarray], None] | None = None,
    log_targets: bool = False,
) -> TableStatistics:
    """One pass over ``rows``: row count, moments of every column, a seeded reservoir sample.

    Args:
        check_targets: Called on every batch's targets ``(n, d)``, e.g. a family's support check.
        log_targets: Also the moments of ``log y`` (positive targets).

    Raises:
        ValueError: Non-finite or missing values (naming each column and its count of bad rows),
            fewer than 2 rows, or what ``check_targets`` raises (with the batch's first row).
    """
    part = scan_part(rows, reservoir_size, seed, check_targets, log_targets)
    return merged_statistics([part], rows, seed)


def scan_part(
    rows: TableRows,
    reservoir_size: int = RESERVOIR_SIZE,
    seed: int = 0,
    check_targets: Callable[[np.ndarray], None] | None = None,
    log_targets: bool = False,
    stream: int = 0,
) -> TablePart:
    """:func:`scan_table`'s pass over ``rows`` (a whole table, or one rank's row groups), which
    records bad values instead of raising; ``stream``: the reservoir's random stream (the rank + 1)."""
    names = rows.features + rows.targets
    part = TablePart(0, Moments(), Moments(), Moments() if log_targets else None, np.empty((0, len(names))),
                     np.empty(0, dtype=np.int64), np.zeros(len(names), dtype=np.int64), None)
    reservoir = Reservoir(reservoir_size, len(names), seed, stream)
    for first, x, y in rows.batches():
        part.n_rows += len(x)
        values = np.concatenate([x, y], axis=1)
        finite = np.isfinite(values)
        if not finite.all():
            part.bad += (~finite).sum(axis=0)
            continue  # counted, to name every bad column at the end
        if part.bad.any():
            continue  # the fit is refused: only the bad values are still counted
        if check_targets is not None:
            try:
                check_targets(y)
            except ValueError as error:
                part.target_error = (first, str(error))
                break  # refused: no need to read on
        part.x.update(x)
        part.y.update(y)
        if part.log_y is not None:
            part.log_y.update(np.log(y))
        reservoir.update(values, first)
    part.sample, part.sample_index = reservoir.sample()
    return part


def merged_statistics(parts: Sequence[TablePart], rows: TableRows, seed: int,
                      reservoir_size: int = RESERVOIR_SIZE) -> TableStatistics:
    """The statistics of the whole table from the passes over its parts (each rank's, in rank
    order; the same result on every rank).

    Moments merge exactly (Chan's rule). The samples merge into one uniform sample of
    ``min(reservoir_size, rows)`` rows: how many come from each part is multivariate
    hypergeometric in the parts' row counts, and each part gives a uniform subset of its own
    uniform sample (its slot order is not random: a part of fewer rows than the reservoir holds
    them in table order). One part is returned as it is.

    Raises:
        ValueError: As :func:`scan_table`, naming every bad column with its count over all parts.
    """
    names = rows.features + rows.targets
    bad = np.sum([part.bad for part in parts], axis=0)
    if bad.any():
        detail = ", ".join(f"{name!r} ({count} rows)" for name, count in zip(names, bad) if count)
        raise ValueError(f"The table has missing or non-finite values in column {detail}; "
                         "drop or fill those rows first.")
    errors = sorted(part.target_error for part in parts if part.target_error is not None)
    if errors:
        first, message = errors[0]
        raise ValueError(f"{message} (rows counted from the record batch that starts at row {first} of the table)")
    n_rows = sum(part.n_rows for part in parts)
    if n_rows < 2:
        raise ValueError(f"The table has {n_rows} row(s); fitting a conditional density needs at least 2.")
    merged = TablePart(0, Moments(), Moments(), None if parts[0].log_y is None else Moments(),
                       parts[0].sample, parts[0].sample_index, bad, None)
    for part in parts:
        merged.x.merge(part.x)
        merged.y.merge(part.y)
        if merged.log_y is not None:
            merged.log_y.merge(part.log_y)
    if len(parts) > 1:
        merged.sample, merged.sample_index = _merged_samples(parts, min(reservoir_size, n_rows), seed)
    p = len(rows.features)
    return TableStatistics(n_rows, merged.x, merged.y, merged.log_y, merged.sample[:, :p], merged.sample[:, p:],
                           merged.sample_index)


def _merged_samples(parts: Sequence[TablePart], size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A uniform sample of ``size`` rows of all parts, from each part's uniform sample."""
    rng = np.random.default_rng([seed, 0x5EED, 0x3E46E])
    counts = rng.multivariate_hypergeometric([part.n_rows for part in parts], size)
    picks = [rng.choice(len(part.sample_index), count, replace=False) for part, count in zip(parts, counts)]
    return (np.concatenate([part.sample[pick] for part, pick in zip(parts, picks)]),
            np.concatenate([part.sample_index[pick] for part, pick in zip(parts, picks)]))


# ---------------------------------------------------------------------- the validation split
def validation_mask(positions: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Booleans ``(n,)``: which of the table's rows at ``positions (n,)`` are validation rows.

    Row ``i`` is held out when ``u(i) < fraction``, ``u`` the top 53 bits of the splitmix64
    finaliser (Steele et al. 2014) of ``i`` and ``seed``, as a number in ``[0, 1)``. A hash, not
    a permutation: it needs no list of rows, gives the same rows every epoch and every run, and
    each row is held out independently with probability ``fraction`` (a binomial share).
    NumPy's generators cannot be addressed by row number, so the mixer is written here.
    """
    if fraction <= 0:
        return np.zeros(len(positions), dtype=bool)
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps, as the hash intends
        z = np.asarray(positions, dtype=np.uint64) + np.uint64(seed % 2**64) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53 < fraction


# ---------------------------------------------------------------------- batch sources for train()
@dataclass
class Standardizer:
    """``(x - x_shift) / x_scale`` and ``(y - y_shift) / y_scale``: the network's units."""

    x_shift: np.ndarray
    x_scale: np.ndarray
    y_shift: np.ndarray
    y_scale: np.ndarray

    def __call__(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (x - self.x_shift) / self.x_scale, (y - self.y_shift) / self.y_scale


class StandardizedRows:
    """The standardised training or validation rows of a table, record batch by record batch.

    Args:
        rows: The table.
        units: The network's units (the fitted scalers).
        fraction, seed: The hash split of :func:`validation_mask`.
        validation: Keep the validation rows (else the training rows; with ``fraction=0``, all).
        device, dtype: Where and how the tensors are made.
    """

    def __init__(self, rows: TableRows, units: Standardizer, fraction: float, seed: int, validation: bool,
                 device: torch.device | str, dtype: torch.dtype) -> None:
        self.rows, self.units, self.fraction, self.seed = rows, units, fraction, seed
        self.validation, self.device, self.dtype = validation, torch.device(device), dtype

    @property
    def sharded(self) -> bool:
        """Whether these are one data-parallel rank's own rows (a :meth:`TableRows.shard`): then
        :func:`~mdnkit.training.train` takes its batches whole instead of a share of each."""
        return self.rows.row_groups is not None

    def tensors(self) -> Iterator[tuple[Tensor, Tensor]]:
        """``(x [n, p], y [n, d])`` per record batch, on the device, in the network's units."""
        for first, x, y in self.rows.batches():
            held_out = validation_mask(np.arange(first, first + len(x)), self.fraction, self.seed)
            keep = held_out if self.validation else ~held_out
            if not keep.any():
                continue
            x, y = self.units(x[keep], y[keep])
            yield (torch.as_tensor(x, dtype=self.dtype).to(self.device),
                   torch.as_tensor(y, dtype=self.dtype).to(self.device))


class ShuffledBatches(StandardizedRows):
    """Training minibatches of a table: ``epoch(generator)`` for :func:`~mdnkit.training.train`.

    Each epoch reads the table once, drops the validation rows, fills a buffer of
    ``buffer_rows`` rows, permutes it with ``generator`` and cuts it into ``batch_size`` rows
    (a remainder waits for the next buffer; the epoch's last batch may be short). A shuffle
    within a bounded window, not of all rows: rows from far apart in the table meet only across
    buffers, so a table sorted by its target should be shuffled on disk first.
    ``batch_size=None`` gives every training row as one batch (full batch: all in memory).
    ``max_batches``: end every epoch after that many batches (data-parallel ranks must all take
    the same number of steps, :func:`~mdnkit._table_shards.steps_per_epoch`).
    """

    def __init__(self, rows: TableRows, units: Standardizer, fraction: float, seed: int, batch_size: int | None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 buffer_rows: int = SHUFFLE_BUFFER, max_batches: int | None = None) -> None:
        super().__init__(rows, units, fraction, seed, False, device, dtype)
        self.batch_size, self.buffer_rows = batch_size, max(int(buffer_rows), batch_size or 1)
        self.max_batches = max_batches

    def epoch(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor, None]]:
        batches = self._batches(generator)
        yield from batches if self.max_batches is None else itertools.islice(batches, self.max_batches)

    def _batches(self, generator: torch.Generator | None) -> Iterator[tuple[Tensor, Tensor, None]]:
        if self.batch_size is None:
            parts = list(self.tensors())
            yield torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts]), None
            return
        buffer: list[tuple[Tensor, Tensor]] = []
        held = 0
        for x, y in self.tensors():
            buffer.append((x, y))
            held += len(x)
            if held >= self.buffer_rows:
                buffer = list(self._drain(buffer, generator, final=False))
                *full, rest = buffer
                yield from full
                buffer, held = ([rest], len(rest[0])) if len(rest[0]) else ([], 0)
        if held:
            yield from self._drain(buffer, generator, final=True)

    def _drain(self, buffer: list[tuple[Tensor, Tensor]], generator: torch.Generator | None,
               final: bool) -> Iterator[tuple[Tensor, Tensor, None]]:
        """The buffer permuted and cut into batches; unless ``final``, the last item is the
        remainder (short of a batch, maybe empty) to carry on."""
        x = torch.cat([part[0] for part in buffer])
        y = torch.cat([part[1] for part in buffer])
        order = torch.randperm(len(x), generator=generator, device=x.device)
        x, y = x[order], y[order]
        n_full = len(x) if final else len(x) - len(x) % self.batch_size
        for start in range(0, n_full, self.batch_size):
            yield x[start:start + self.batch_size], y[start:start + self.batch_size], None
        if not final:
            yield x[n_full:], y[n_full:], None


class ValidationChunks(StandardizedRows):
    """The validation rows of a table, in chunks of at most one record batch: a re-iterable
    of ``(x, y)`` for :func:`~mdnkit.training.train`'s ``x_val`` (scored chunk by chunk)."""

    def __init__(self, rows: TableRows, units: Standardizer, fraction: float, seed: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__(rows, units, fraction, seed, True, device, dtype)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.tensors()

    def epoch(self, generator: Any = None) -> Iterator[tuple[Tensor, Tensor, None]]:
        for x, y in self.tensors():
            yield x, y, None
