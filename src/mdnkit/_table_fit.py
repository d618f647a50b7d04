"""``MDNRegressor.fit(TableRows(...))``: the fit of a table read in batches, never all in memory.

The same model as an in-memory fit, attribute for attribute, with what needs every row gathered
by passes over the table instead:

* scalers: the moments of one streaming pass (:func:`~mdnkit.streaming.scan_table`, float64);
  the family's checks of the targets run on every batch of that pass;
* the head's start and the novelty index: the pass's reservoir sample (uniform, 20 000 rows;
  its validation rows left out of the head's start, as in memory);
* validation rows: a hash of each row's position (:func:`~mdnkit.streaming.validation_mask`), a
  binomial share ``validation_fraction`` instead of exactly ``ceil(fraction · n)`` rows, scored
  chunk by chunk every epoch;
* component usage (``component_weight_mean_``, ``_max_``): one more pass over every row, so dead
  components are judged on all of them, as in memory;
* under ``torchrun``, every pass over a Parquet table reads only this rank's row groups
  (:mod:`mdnkit._table_shards`): the statistics pass's parts are gathered and merged alike on
  every rank (:func:`~mdnkit.streaming.merged_statistics`), the component usage is summed over
  the ranks, and training takes the same number of steps on every rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from mdnkit import distributed
from mdnkit._table_shards import RowGroup, assign_row_groups, row_groups, steps_per_epoch, training_rows
from mdnkit.base import cuda_devices, resolve_device, seed_from
from mdnkit.novelty import InputNovelty
from mdnkit.streaming import (
    ShuffledBatches,
    StandardizedRows,
    Standardizer,
    TableRows,
    TableStatistics,
    ValidationChunks,
    merged_statistics,
    scan_part,
    scan_table,
    validation_mask,
)
from mdnkit.training import train

if TYPE_CHECKING:
    from mdnkit.estimator import MDNRegressor

_HASH_CHUNK = 1_000_000  # positions hashed at a time when counting validation rows
_USAGE_CHUNK = 16_384  # rows per forward pass when recording component usage


def fit_table(model: MDNRegressor, rows: TableRows) -> MDNRegressor:
    """Fit ``model`` afresh on the table ``rows``; returns ``model``."""
    _check_settings(model)
    model._reset_fitted()
    seed = seed_from(model.random_state)
    d = len(rows.targets)
    family = model._target_family(np.zeros((1, d)))
    shares = _row_group_shares(rows)
    own_rows = rows if shares is None else rows.shard(shares[distributed.world()[0]])
    stats = _statistics(rows, own_rows, seed, family)
    _set_units(model, rows, stats, family)
    fraction = float(model.validation_fraction)
    n_val = _count_validation(stats.n_rows, fraction, seed)
    n_train = stats.n_rows - n_val
    if n_train < 2 or (fraction > 0 and n_val == 0):
        raise ValueError(f"validation_fraction={fraction} of {stats.n_rows} rows holds out {n_val} and leaves "
                         f"{n_train} for training; each needs rows (at least 2 to train on).")

    device = resolve_device(model.device)
    dtype = torch.float32 if model.dtype == "float32" else torch.float64
    units = Standardizer(model.x_mean_, model.x_scale_, model.y_mean_, model.y_scale_)
    with torch.random.fork_rng(devices=cuda_devices()):
        torch.manual_seed(seed)
        model.module_ = model._build_module(len(rows.features), d).to(device=device, dtype=dtype)
    model.module_.set_units(model.x_mean_, model.x_scale_, model.y_mean_, model.y_scale_)
    start_rows = ~validation_mask(stats.sample_index, fraction, seed)  # the sample's training rows
    y_start = units(stats.sample_x[start_rows], stats.sample_y[start_rows])[1]
    model.module_.initialize(torch.as_tensor(y_start, dtype=dtype, device=device), random_state=seed)
    model.history_ = []

    model.batch_size_ = model._batch_size(n_train)
    patience = model._patience(n_train)
    # "auto" input noise is the rule of thumb 0.25 r: the in-memory search fits three levels,
    # three times the passes over a table this large.
    model.input_noise_, model.target_noise_ = (
        model._noise(setting, n_train, len(rows.features) + d)
        for setting in (model.input_noise, model._target_noise_setting(d)))
    config = model._training_config(patience)
    generator = torch.Generator(device=device).manual_seed(seed)
    train_rows, local_batch, steps = _training_share(rows, shares, model.batch_size_, fraction, seed)
    batches = ShuffledBatches(train_rows, units, fraction, seed, local_batch, device, dtype, max_batches=steps)
    validation = ValidationChunks(train_rows, units, fraction, seed, device, dtype) if n_val else None
    result = train(model.module_, batches, None, validation, config=config, generator=generator,
                   nll_offset=model._log_jacobian)

    model.train_state_ = result.state
    model.history_ = result.history
    model.n_iter_ = result.history[-1]["epoch"] if result.history else 0
    model.best_epoch_ = result.best_epoch
    every_row = StandardizedRows(own_rows, units, 0.0, seed, False, device, dtype)
    # Record batches cut to 16 384 rows: a forward pass of 65 536 rows held ~90 MiB more at its peak.
    model._record_component_usage((piece for x, _ in every_row.tensors() for piece in x.split(_USAGE_CHUNK)),
                                  across_ranks=shares is not None)
    model.novelty_ = InputNovelty(random_state=seed).fit(model._standardized_rows(stats.sample_x))
    model._warn_unfinished(
        result.interrupted, bool(n_val) and not result.stopped_early and model.n_iter_ - result.best_epoch < patience // 4,
        kept_epoch=model.best_epoch_ if n_val else model.n_iter_,
    )
    return model


def _row_group_shares(rows: TableRows) -> list[list[RowGroup]] | None:
    """Each rank's row groups of a Parquet table under a process group; ``None`` (every rank
    reads every row) on one process or for other formats.

    Raises:
        ValueError: Fewer row groups than ranks (some rank would get none).
    """
    n_ranks = distributed.world()[1]
    groups = row_groups(rows.dataset) if n_ranks > 1 else None
    if groups is None:
        return None
    if len(groups) < n_ranks:
        raise ValueError(f"The table has {len(groups)} row groups for {n_ranks} ranks, and each rank reads its own: "
                         "write it with smaller row groups (pyarrow.parquet.write_table(..., row_group_size=...)) "
                         "or use fewer ranks.")
    return assign_row_groups(groups, n_ranks)


def _statistics(rows: TableRows, own_rows: TableRows, seed: int, family) -> TableStatistics:
    """The statistics pass: over every row on one process; else over this rank's row groups
    ``own_rows``, the parts gathered from every rank and merged alike on each (errors too, so
    every rank raises the same one)."""
    options = dict(seed=seed, check_targets=family.check_targets, log_targets=family.target_transform == "scale")
    if own_rows.row_groups is None:
        return scan_table(rows, **options)
    part = scan_part(own_rows, stream=distributed.world()[0] + 1, **options)
    return merged_statistics(distributed.gathered(part), rows, seed)


def _training_share(rows: TableRows, shares: list[list[RowGroup]] | None, batch_size: int | None,
                    fraction: float, seed: int) -> tuple[TableRows, int | None, int | None]:
    """``(rows this rank trains on, rows per local batch, steps per epoch)``.

    On one process: every row, whole batches, no step limit. Under a process group, for a
    Parquet table with minibatches: this rank's row groups, ``batch_size / ranks`` rows per
    local batch, so that a step is still one of ``batch_size`` rows, and the steps every rank
    can take. Otherwise (CSV, full batches) every rank reads every row and training takes its
    share of each batch, as for in-memory data.
    """
    if shares is None or batch_size is None:
        return rows, batch_size, None
    local_batch = max(1, batch_size // len(shares))
    counts = [training_rows(share, fraction, seed) for share in shares]
    own_rows = rows.shard(shares[distributed.world()[0]])
    return own_rows, local_batch, steps_per_epoch(counts, local_batch, sum(map(len, shares)))


def _check_settings(model: MDNRegressor) -> None:
    """Refuse what a streamed fit does not do (yet), before any pass over the table."""
    if model.warm_start and hasattr(model, "module_"):
        raise ValueError("warm_start=True does not continue on a TableRows source yet; fit it afresh "
                         "(warm_start=False) or continue on in-memory arrays.")
    if isinstance(model.n_components, str):
        raise ValueError("n_components='auto' needs in-memory arrays (its search refits many times); "
                         "give a number of components to fit a TableRows source.")
    if model.target_resolution is not None:
        raise ValueError("target_resolution (bin probabilities) needs in-memory arrays for now; "
                         "fit a TableRows source without it.")


def _set_units(model: MDNRegressor, rows: TableRows, stats: TableStatistics, family) -> None:
    """Scalers, shapes and names, as ``MDNRegressor._fit_scalers`` sets them from arrays."""
    p, d = len(rows.features), len(rows.targets)
    std = stats.y.std
    constant = [name for name, s in zip(rows.targets, std) if s == 0]
    if constant:
        raise ValueError(f"y is constant (column {constant}): a conditional density needs targets that vary; "
                         "drop that target column.")
    model.n_features_in_, model.input_shape_, model.n_outputs_ = p, (p,), d
    model._y_is_1d = rows.target_is_1d
    model.x_mean_ = np.asarray(stats.x.mean, dtype=np.float64)
    x_scale = stats.x.std
    model.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)  # constant features pass through
    if family.target_transform == "affine":
        model.y_mean_, model.y_scale_ = np.asarray(stats.y.mean, dtype=np.float64), std
    elif family.target_transform == "scale":  # shift 0, scale the geometric mean
        model.y_mean_, model.y_scale_ = np.zeros(d), np.exp(stats.log_y.mean)
    else:  # fixed by the family's declared bounds or none: the data do not enter
        model.y_mean_, model.y_scale_ = family.target_units(stats.sample_y)
    model.feature_names_in_ = np.asarray(rows.features, dtype=object)
    model.target_names_ = list(rows.targets)


def _count_validation(n_rows: int, fraction: float, seed: int) -> int:
    """How many of rows ``0..n_rows-1`` the hash holds out (hashed in chunks: memory stays flat)."""
    return sum(int(validation_mask(np.arange(start, min(start + _HASH_CHUNK, n_rows)), fraction, seed).sum())
               for start in range(0, n_rows, _HASH_CHUNK))
