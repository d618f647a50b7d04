"""Tables read in batches (mdnkit.streaming) and the fits made from them: the moment merge and the
reservoir against NumPy, the hash split, a streamed fit against the in-memory fit on the same
rows, errors, save/load and ``mdnkit fit --stream``."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from scipy import stats

import mdnkit
from mdnkit import MDNRegressor, TableRows
from mdnkit.streaming import (
    Moments,
    Reservoir,
    ShuffledBatches,
    Standardizer,
    scan_table,
    validation_mask,
)


def _table(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``x (n, 2)``, ``y (n,)``: y = sin(2 x0) + 0.3 noise, x1 irrelevant."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    return x, np.sin(2 * x[:, 0]) + 0.3 * rng.normal(size=n)


def _write(path, x: np.ndarray, y: np.ndarray, row_group_size: int = 128, **extra) -> str:
    columns = {"a": x[:, 0], "b": x[:, 1], "y": y, **extra}
    if str(path).endswith(".csv"):
        pyarrow.csv.write_csv(pa.table(columns), path)
    else:
        pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return str(path)


@pytest.fixture
def table(tmp_path):
    x, y = _table()
    return _write(tmp_path / "rows.parquet", x, y), x, y


# ---------------------------------------------------------------------------- one statistics pass
def test_moments_merged_over_batches_equal_numpy_in_float64():
    rng = np.random.default_rng(1)
    # Offsets 10-1000x the spread, where a one-pass sum of squares would lose half its digits.
    values = rng.normal(loc=[100.0, -3.0, 1e3], scale=[0.1, 1.0, 50.0], size=(5003, 3))
    moments = Moments()
    for part in np.array_split(values, [1, 700, 701, 2500, 4999]):
        moments.update(part)
    assert moments.count == len(values)
    np.testing.assert_allclose(moments.mean, values.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(moments.std, values.std(axis=0), rtol=1e-12, atol=0)


def test_scan_table_counts_rows_and_matches_numpy(table):
    path, x, y = table
    rows = TableRows(path, features=["a", "b"], target="y", batch_size=100)
    result = scan_table(rows, reservoir_size=50, seed=3)
    assert result.n_rows == len(x)
    np.testing.assert_allclose(result.x.mean, x.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(result.x.std, x.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.y.std, [y.std()], rtol=1e-12)
    assert result.sample_x.shape == (50, 2) and result.sample_y.shape == (50, 1)
    # Each kept row is the table's row at its recorded position.
    np.testing.assert_array_equal(result.sample_x, x[result.sample_index])
    assert len(set(result.sample_index.tolist())) == 50


def test_reservoir_keeps_every_row_below_its_size():
    reservoir = Reservoir(size=10, width=1, seed=0)
    reservoir.update(np.arange(7.0)[:, None], first=0)
    rows, index = reservoir.sample()
    np.testing.assert_array_equal(index, np.arange(7))
    np.testing.assert_array_equal(rows[:, 0], np.arange(7.0))


def test_reservoir_sample_is_uniform():
    """1000 seeded reservoirs of 10 of 100 rows offered in uneven batches: each row's inclusion count
    is Binomial(1000, 0.1) if the sample is uniform. Pearson's chi-square over the 100 rows (99
    degrees of freedom) fails at level 1e-4: one seed in 10 000, and the seeds are fixed."""
    counts = np.zeros(100)
    for seed in range(1000):
        reservoir = Reservoir(size=10, width=1, seed=seed)
        for start, stop in ((0, 3), (3, 40), (40, 41), (41, 100)):
            reservoir.update(np.arange(start, stop, dtype=float)[:, None], first=start)
        _, index = reservoir.sample()
        assert len(index) == 10 and len(set(index.tolist())) == 10
        counts[index] += 1
    statistic = ((counts - 100) ** 2 / 100).sum()
    assert stats.chi2.sf(statistic, df=99) > 1e-4


def test_nan_and_infinite_values_are_refused_by_column(tmp_path):
    x, y = _table(300)
    x[[5, 200], 1] = np.nan
    y[7] = np.inf
    path = _write(tmp_path / "bad.parquet", x, y)
    with pytest.raises(ValueError, match=r"non-finite values in column 'b' \(2 rows\), 'y' \(1 rows\)"):
        MDNRegressor(max_epochs=1).fit(TableRows(path, features=["a", "b"], target="y"))


def test_a_noise_mixture_needs_in_memory_rows(table):
    path, _, _ = table
    with pytest.raises(ValueError, match="input_noise='mixture' needs in-memory arrays"):
        MDNRegressor(input_noise="mixture", max_epochs=1).fit(TableRows(path, features=["a", "b"], target="y"))


def test_missing_text_and_doubled_columns_are_refused(table):
    path, x, y = table
    with pytest.raises(ValueError, match=r"no column \['c'\]"):
        TableRows(path, features=["a", "c"], target="y")
    with pytest.raises(ValueError, match=r"both a feature and a target"):
        TableRows(path, features=["a", "y"], target="y")
    text = _write(os.path.join(os.path.dirname(path), "text.parquet"), x, y, kind=np.array(["u", "v"] * 300))
    with pytest.raises(ValueError, match=r"'kind' is string, not numeric"):
        TableRows(text, features=["a", "kind"], target="y")
    with pytest.raises(ValueError, match=r"y must be None"):
        MDNRegressor().fit(TableRows(path, features=["a"], target="y"), y)


def test_family_support_is_checked_while_scanning(table):
    path, _, _ = table
    with pytest.raises(ValueError, match=r"lognormal family needs every target in \(0, inf\).*record batch"):
        MDNRegressor(family="lognormal", max_epochs=1).fit(TableRows(path, features=["a"], target="y"))


# ---------------------------------------------------------------------------- the hash split
def test_hash_split_holds_out_the_requested_share_and_is_stable():
    """The share of 10⁶ rows held out at 0.1 is Binomial(10⁶, 0.1) / 10⁶: sd 3e-4, so 0.1 ± 0.0015 is a
    5-sigma bound (fails with probability ~6e-7 for a seed; this one is fixed)."""
    positions = np.arange(1_000_000)
    held_out = validation_mask(positions, 0.1, seed=7)
    assert abs(held_out.mean() - 0.1) < 0.0015
    np.testing.assert_array_equal(held_out[123_456:123_999], validation_mask(positions[123_456:123_999], 0.1, 7))
    assert (held_out != validation_mask(positions, 0.1, seed=8)).any()
    assert not validation_mask(positions[:100], 0.0, 7).any()


def test_every_epoch_trains_on_the_same_rows_in_another_order(table):
    path, _x, y = table
    import torch

    rows = TableRows(path, features=["a", "b"], target="y", batch_size=50)
    units = Standardizer(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    batches = ShuffledBatches(rows, units, 0.2, seed=0, batch_size=32, buffer_rows=100, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    epochs = [[(bx, by) for bx, by, _ in batches.epoch(generator)] for _ in range(2)]
    expected = np.sort(y[~validation_mask(np.arange(len(y)), 0.2, 0)])
    firsts = []
    for epoch in epochs:
        assert all(len(bx) == 32 for bx, _ in epoch[:-1])
        seen = torch.cat([by for _, by in epoch]).numpy()[:, 0]
        np.testing.assert_array_equal(np.sort(seen), expected)
        firsts.append(seen[:32])
    assert not np.array_equal(*firsts)  # reshuffled each epoch


# ---------------------------------------------------------------------------- fits
def test_full_batch_streamed_fit_equals_the_in_memory_fit(table):
    """Full batches, no validation split, no noise, float64: the in-memory fit trains on the same rows
    in another order (a permutation), so the two runs differ only by float64 rounding in the loss's
    sum, grown over 30 Adam steps (measured: 1.3e-15 on the log-densities); 1e-10 leaves room."""
    path, x, y = table
    settings = dict(n_components=3, hidden_sizes=(16,), batch_size=None, max_epochs=30, validation_fraction=0.0,
                    input_noise=0.0, dtype="float64", random_state=0, device="cpu")
    streamed = MDNRegressor(**settings).fit(TableRows(path, features=["a", "b"], target="y"))
    in_memory = MDNRegressor(**settings).fit(x, y)
    np.testing.assert_allclose(streamed.x_mean_, in_memory.x_mean_, rtol=1e-12)
    np.testing.assert_allclose(streamed.y_scale_, in_memory.y_scale_, rtol=1e-12)
    np.testing.assert_allclose(streamed.score_samples(x, y), in_memory.score_samples(x, y), atol=1e-10)
    np.testing.assert_allclose(streamed.novelty_score(x[:20]), in_memory.novelty_score(x[:20]), atol=1e-12)
    np.testing.assert_allclose(streamed.component_weight_max_, in_memory.component_weight_max_, atol=1e-8)
    assert set(vars(streamed)) - set(vars(in_memory)) == {"feature_names_in_", "target_names_"}


def test_minibatch_streamed_fit_is_close_to_the_in_memory_fit(tmp_path):
    """Minibatches of 64 on 3000 rows for 40 epochs: the runs differ in their validation rows (a hash
    share vs a permutation) and batch order, so their test NLLs differ as two seeds do: over seeds
    0-2 the streamed and in-memory fits differed by 0.005, 0.001 and 0.007 nats, the in-memory fits
    of the three seeds spanned 0.019. 0.05 leaves room and still catches a wrong scaling (~1 nat)."""
    x, y = _table(3000, seed=1)
    x_test, y_test = _table(2000, seed=2)
    path = _write(tmp_path / "train.parquet", x, y, row_group_size=500)
    settings = dict(n_components=3, hidden_sizes=(32,), batch_size=64, max_epochs=40, input_noise=0.0,
                    random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        streamed = MDNRegressor(**settings).fit(TableRows(path, features=["a", "b"], target="y"))
        in_memory = MDNRegressor(**settings).fit(x, y)
    assert abs(streamed.score(x_test, y_test) - in_memory.score(x_test, y_test)) < 0.05
    assert streamed.batch_size_ == 64 and len(streamed.history_) == streamed.n_iter_


def test_streamed_model_saves_loads_and_predicts_from_frames(table, tmp_path):
    import pandas as pd

    path, x, y = table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=3, random_state=0, device="cpu").fit(
            TableRows(path, features=["a", "b"], target="y"))
    assert model.n_iter_ == 3 and model.input_noise_ > 0  # "auto": the rule of thumb 0.25 r
    frame = pd.DataFrame(x, columns=["a", "b"])
    model.save(tmp_path / "model.mdn")
    loaded = mdnkit.load(tmp_path / "model.mdn")
    np.testing.assert_array_equal(loaded.score_samples(frame, y), model.score_samples(x, y))
    assert list(loaded.feature_names_in_) == ["a", "b"] and loaded.predict(x[:4]).shape == (4,)


def test_dataset_directory_csv_and_multivariate_targets(tmp_path):
    x, y = _table(400)
    folder = tmp_path / "parts"
    folder.mkdir()
    _write(folder / "part-0.parquet", x[:150], y[:150])
    _write(folder / "part-1.parquet", x[150:], y[150:])
    csv = _write(tmp_path / "rows.csv", x, y)
    settings = dict(n_components=2, hidden_sizes=(8,), max_epochs=2, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parts = MDNRegressor(**settings).fit(TableRows(ds.dataset(folder), features=["a"], target="y"))
        text = MDNRegressor(**settings).fit(TableRows(csv, features=["a"], target="y"))
        both = MDNRegressor(**settings).fit(TableRows(csv, features=["a"], target=["b", "y"]))
    np.testing.assert_allclose(parts.score_samples(x[:, :1], y), text.score_samples(x[:, :1], y), atol=1e-5)
    assert both.predict(x[:3, :1]).shape == (3, 2) and both.target_names_ == ["b", "y"]


def test_unsupported_settings_are_refused(table):
    path, _, _ = table
    rows = TableRows(path, features=["a"], target="y")
    with pytest.raises(ValueError, match="n_components='auto' needs in-memory arrays"):
        MDNRegressor(n_components="auto").fit(rows)


@pytest.mark.slow
def test_command_line_fit_stream(table, tmp_path):
    path, _x, _y = table
    output = tmp_path / "cli.mdn"
    command = [sys.executable, "-m", "mdnkit", "fit", path, "--target", "y", "--stream", "-o", output,
               "--epochs", "3", "--hidden", "8", "--components", "2", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([str(c) for c in command], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    model = mdnkit.load(output)
    assert list(model.feature_names_in_) == ["a", "b"] and model.metadata_["schema"]["targets"] == ["y"]
    refused = subprocess.run([str(c) for c in command[:-1] + ["--calibrate", "--force"]], env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--stream does not take --calibrate" in refused.stderr


def test_a_stream_refuses_bins_for_now(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mdnkit import MDNRegressor, TableRows

    pq.write_table(pa.table({"x": np.arange(40.0), "y": np.arange(40.0) % 4}), tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="target_resolution .* needs in-memory arrays"):
        MDNRegressor(target_resolution=1.0).fit(TableRows(tmp_path / "t.parquet", features=["x"], target="y"))


# ---------------------------------------------------------------------------- shards for data-parallel ranks
def _parts(tmp_path, sizes=(700, 1300, 450), row_group_size=100) -> tuple[str, np.ndarray]:
    """A directory of Parquet files of uneven sizes; column ``a`` is each row's position."""
    folder = tmp_path / "parts"
    folder.mkdir()
    start, rng = 0, np.random.default_rng(3)
    for i, n in enumerate(sizes):
        positions = np.arange(start, start + n, dtype=np.float64)
        pq.write_table(pa.table({"a": positions, "b": rng.normal(size=n), "y": rng.normal(size=n)}),
                       folder / f"part-{i}.parquet", row_group_size=row_group_size)
        start += n
    return str(folder), np.arange(start)


@pytest.mark.parametrize("n_ranks", [2, 3])
def test_row_group_shards_cover_the_table_once_with_positions_kept(tmp_path, n_ranks):
    from mdnkit._table_shards import assign_row_groups, row_groups

    folder, positions = _parts(tmp_path)
    rows = TableRows(folder, features=["a", "b"], target="y", batch_size=64)
    groups = row_groups(rows.dataset)
    assert [g.n_rows for g in groups] == [100] * 7 + [100] * 13 + [100] * 4 + [50]
    shares = assign_row_groups(groups, n_ranks)
    seen = []
    for share in shares:
        for first, x, _ in rows.shard(share).batches():
            # Column a holds the position: every row arrives with its place in the whole table.
            np.testing.assert_array_equal(x[:, 0], np.arange(first, first + len(x)))
            seen.append(x[:, 0])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), positions)  # each row once
    sizes = [sum(g.n_rows for g in share) for share in shares]
    assert max(sizes) - min(sizes) <= 100  # balanced to within one row group


def test_steps_per_epoch_is_the_fewest_full_local_batches_and_a_starved_rank_is_refused(tmp_path):
    from mdnkit._table_shards import assign_row_groups, row_groups, steps_per_epoch, training_rows

    folder, positions = _parts(tmp_path)
    groups = row_groups(TableRows(folder, features=["a", "b"], target="y").dataset)
    shares = assign_row_groups(groups, 2)
    counts = [training_rows(share, 0.1, 5) for share in shares]
    held_out = validation_mask(positions, 0.1, 5)
    assert sum(counts) == int((~held_out).sum())
    assert steps_per_epoch(counts, 32, len(groups)) == min(counts) // 32
    one_group = row_groups(TableRows(_write(tmp_path / "one.parquet", *_table(300), row_group_size=1000),
                                     features=["a", "b"], target="y").dataset)
    lonely = assign_row_groups(one_group, 2)
    with pytest.raises(ValueError, match="Rank 1 of 2 gets 0 training rows.*1 row groups for 2 ranks"):
        steps_per_epoch([training_rows(s, 0.1, 0) for s in lonely], 32, len(one_group))


def test_shuffled_batches_stop_after_max_batches(table):
    path, x, y = table
    units = Standardizer(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    rows = TableRows(path, features=["a", "b"], target="y")
    import torch

    full = list(ShuffledBatches(rows, units, 0.1, 0, 50).epoch(torch.Generator().manual_seed(0)))
    capped = list(ShuffledBatches(rows, units, 0.1, 0, 50, max_batches=4).epoch(torch.Generator().manual_seed(0)))
    assert len(full) > 4 and len(capped) == 4
    for (a, _, _), (b, _, _) in zip(full, capped):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- one pass per rank, merged
def _scanned_part(values: np.ndarray, runs, seed: int, stream: int, size: int):
    """What :func:`scan_part` gives for the rows of ``values`` in ``runs`` (``(start, stop)``
    position ranges, one rank's row groups), offered in batches of at most 7 rows."""
    from mdnkit.streaming import TablePart

    reservoir, x, y = Reservoir(size, values.shape[1], seed, stream), Moments(), Moments()
    n = 0
    for start, stop in runs:
        for first in range(start, stop, 7):
            batch = values[first:min(first + 7, stop)]
            x.update(batch[:, :-1])
            y.update(batch[:, -1:])
            reservoir.update(batch, first)
            n += len(batch)
    sample, index = reservoir.sample()
    return TablePart(n, x, y, None, sample, index, np.zeros(values.shape[1], dtype=np.int64), None)


_NAMES = type("Names", (), {"features": ["a", "b"], "targets": ["y"]})()
# Three ranks' rows of a 60-row table: not contiguous, not from 0, one exactly the reservoir's size
# (a reservoir that never replaced anything holds its rows in table order).
_RANK_RUNS = [[(0, 10), (30, 45)], [(10, 18)], [(18, 30), (45, 60)]]


def test_moments_of_rank_parts_merge_to_numpy_in_float64():
    from mdnkit.streaming import merged_statistics

    values = np.random.default_rng(2).normal(loc=[50.0, -1.0, 7.0], scale=[0.1, 2.0, 3.0], size=(60, 3))
    parts = [_scanned_part(values, runs, 0, rank + 1, 8) for rank, runs in enumerate(_RANK_RUNS)]
    merged = merged_statistics(parts, _NAMES, seed=0, reservoir_size=8)
    assert merged.n_rows == 60
    np.testing.assert_allclose(merged.x.mean, values[:, :2].mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(merged.x.std, values[:, :2].std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged.y.std, values[:, 2:].std(axis=0), rtol=1e-12)
    assert len(merged.sample_index) == 8
    np.testing.assert_array_equal(merged.sample_x, values[merged.sample_index, :2])  # rows keep their positions


def test_samples_of_rank_parts_merge_to_a_uniform_sample():
    """3000 seeded merges of three ranks' reservoirs of 8 rows (60 rows in all): each row's
    inclusion count is Binomial(3000, 8/60) if the merged sample is uniform. Pearson's chi-square
    over the 60 rows (59 degrees of freedom) fails at level 1e-4: one seed set in 10 000, and the
    seeds are fixed. Taking each part's first slots instead of a random subset of them, or running
    the reservoir on table positions instead of the rows it has seen, fails it by far."""
    from mdnkit.streaming import merged_statistics

    values = np.column_stack([np.arange(60.0)] * 3)
    counts = np.zeros(60)
    for seed in range(3000):
        parts = [_scanned_part(values, runs, seed, rank + 1, 8) for rank, runs in enumerate(_RANK_RUNS)]
        index = merged_statistics(parts, _NAMES, seed=seed, reservoir_size=8).sample_index
        assert len(set(index.tolist())) == 8
        counts[index] += 1
    expected = 3000 * 8 / 60
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(statistic, df=59) > 1e-4


def test_errors_of_rank_parts_are_merged_into_one():
    from mdnkit.streaming import merged_statistics

    values = np.random.default_rng(0).normal(size=(60, 3))
    parts = [_scanned_part(values, runs, 0, rank + 1, 8) for rank, runs in enumerate(_RANK_RUNS)]
    parts[0].bad, parts[2].bad = np.array([0, 2, 0]), np.array([0, 3, 1])
    with pytest.raises(ValueError, match=r"non-finite values in column 'b' \(5 rows\), 'y' \(1 rows\)"):
        merged_statistics(parts, _NAMES, seed=0)
    parts[0].bad = parts[2].bad = np.zeros(3, dtype=np.int64)
    parts[1].target_error, parts[2].target_error = (14, "second"), (7, "first")
    with pytest.raises(ValueError, match=r"^first \(rows counted from the record batch that starts at row 7"):
        merged_statistics(parts, _NAMES, seed=0)


def test_a_table_with_fewer_row_groups_than_ranks_is_refused_before_reading(tmp_path, monkeypatch):
    from mdnkit import distributed

    path = _write(tmp_path / "one.parquet", *_table(300), row_group_size=1000)
    monkeypatch.setattr(distributed, "world", lambda: (0, 3))  # as if rank 0 of 3
    with pytest.raises(ValueError, match="has 1 row groups for 3 ranks.*row_group_size"):
        MDNRegressor(max_epochs=1).fit(TableRows(path, features=["a", "b"], target="y"))
