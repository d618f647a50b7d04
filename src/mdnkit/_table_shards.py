"""A streamed table split among data-parallel ranks: each rank reads only its own row groups.

Under ``torchrun`` every rank of a streamed fit would otherwise read (and decode) the whole table
in every pass and keep its share of each minibatch. A Parquet table is made of row groups, which
pyarrow can read one by one from their metadata alone; :func:`assign_row_groups` gives them out
so that every rank gets about the same number of rows (each next group to the rank with the
fewest rows so far), and a rank reads only its groups (:meth:`TableRows.shard
<mdnkit.streaming.TableRows.shard>`), keeping every row's position in the whole table so that the
hash validation split holds out the same rows as on one process. The statistics pass runs on
each rank's groups and the parts are merged (:func:`~mdnkit.streaming.merged_statistics`).

DDP needs every rank to take the same number of steps (a rank that stops early leaves the others
waiting in an all-reduce): :func:`steps_per_epoch` counts each rank's training rows from the
row-group sizes and the hash split, without reading any data, and every rank stops each epoch
after the fewest full local batches any rank has. A rank's extra rows are then left out of that
epoch's steps (a different few each epoch, by the shuffle), as a data loader's ``drop_last``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.dataset as ds

_HASH_CHUNK = 1_000_000  # positions hashed at a time when counting validation rows


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group as a fragment of its own, with where its rows sit in the table.

    Attributes:
        fragment: A ``ParquetFileFragment`` holding this row group only.
        first_row: Position of its first row in the whole table (the ordered scan's count).
        n_rows: Its number of rows.
    """

    fragment: ds.ParquetFileFragment
    first_row: int
    n_rows: int


def row_groups(dataset: ds.Dataset) -> list[RowGroup] | None:
    """Every row group of a Parquet ``dataset``, in the order an ordered scan reads them;
    ``None`` for other formats (CSV has no row groups to hand out)."""
    if not isinstance(getattr(dataset, "format", None), ds.ParquetFileFormat):
        return None
    groups, first = [], 0
    for fragment in dataset.get_fragments():
        for piece in fragment.split_by_row_group():
            n_rows = int(piece.row_groups[0].num_rows)
            if n_rows:
                groups.append(RowGroup(piece, first, n_rows))
                first += n_rows
    return groups


def assign_row_groups(groups: list[RowGroup], n_ranks: int) -> list[list[RowGroup]]:
    """The row groups of each of ``n_ranks`` ranks, in table order, about equal in rows: each
    group, in turn, to the rank with the fewest rows so far (the lowest rank on ties)."""
    shares: list[list[RowGroup]] = [[] for _ in range(n_ranks)]
    rows = [0] * n_ranks
    for group in groups:
        rank = min(range(n_ranks), key=lambda r: rows[r])
        shares[rank].append(group)
        rows[rank] += group.n_rows
    return shares


def training_rows(share: list[RowGroup], fraction: float, seed: int) -> int:
    """How many rows of ``share`` are training rows (not held out by the hash split)."""
    from mdnkit.streaming import validation_mask

    total = 0
    for group in share:
        end = group.first_row + group.n_rows
        for start in range(group.first_row, end, _HASH_CHUNK):
            positions = np.arange(start, min(start + _HASH_CHUNK, end))
            total += len(positions) - int(validation_mask(positions, fraction, seed).sum())
    return total


def steps_per_epoch(counts: list[int], local_batch: int, n_row_groups: int) -> int:
    """Full local batches of ``local_batch`` rows that the rank with the fewest training rows
    has (``counts``: each rank's, :func:`training_rows`): the steps every rank takes per epoch.

    Raises:
        ValueError: Some rank has not one full batch (too few row groups, or rows, for the ranks).
    """
    steps = min(count // local_batch for count in counts)
    if steps == 0:
        rank = int(np.argmin(counts))
        raise ValueError(
            f"Rank {rank} of {len(counts)} gets {counts[rank]} training rows, not one batch of {local_batch}: "
            f"the table has {n_row_groups} row groups for {len(counts)} ranks. Write it with smaller row "
            "groups (pyarrow.parquet.write_table(..., row_group_size=...)), or use a smaller batch_size "
            "or fewer ranks."
        )
    return steps
