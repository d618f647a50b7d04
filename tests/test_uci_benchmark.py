"""The UCI benchmark script (benchmarks/uci.py): loader, protocol and table on a tiny synthetic folder."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "uci.py"


@pytest.fixture(scope="module")
def uci():
    spec = importlib.util.spec_from_file_location("uci_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def write_dataset(root: Path, name: str = "toy", n: int = 40, n_splits: int = 3, nested: bool = False,
                  with_count: bool = True) -> np.ndarray:
    """A PBP-format folder: 3 feature columns, an unused column, the target in column 2."""
    rng = np.random.default_rng(0)
    folder = root / name / "data" if nested else root / name
    folder.mkdir(parents=True)
    data = rng.normal(size=(n, 5))
    data[:, 2] = data[:, 0] - 2 * data[:, 3] + 0.1 * rng.normal(size=n)
    np.savetxt(folder / "data.txt", data)
    np.savetxt(folder / "index_features.txt", [0, 1, 3], fmt="%d")
    np.savetxt(folder / "index_target.txt", [2], fmt="%d")
    for i in range(n_splits):
        order = np.random.default_rng(i).permutation(n)
        cut = round(0.9 * n)
        np.savetxt(folder / f"index_train_{i}.txt", order[:cut], fmt="%d")
        np.savetxt(folder / f"index_test_{i}.txt", order[cut:], fmt="%d")
    if with_count:
        np.savetxt(folder / "n_splits.txt", [n_splits], fmt="%d")
    return data


@pytest.mark.parametrize("nested", [False, True])
def test_loader_reads_features_target_and_splits(uci, tmp_path, nested):
    data = write_dataset(tmp_path, nested=nested)
    dataset = uci.load_dataset(tmp_path, "toy")
    assert dataset.n_splits == 3
    np.testing.assert_array_equal(dataset.X, data[:, [0, 1, 3]])
    np.testing.assert_array_equal(dataset.y, data[:, 2])
    for i in range(dataset.n_splits):
        train, test = dataset.train_indices[i], dataset.test_indices[i]
        assert len(train) == 36 and len(test) == 4
        assert np.intersect1d(train, test).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(40))
        X_train, y_train, X_test, y_test = dataset.split(i)
        assert X_train.shape == (36, 3) and X_test.shape == (4, 3)
        np.testing.assert_array_equal(y_train, data[train, 2])
        np.testing.assert_array_equal(y_test, data[test, 2])
        np.testing.assert_array_equal(X_train, data[train][:, [0, 1, 3]])


def test_loader_counts_split_files_and_limits_splits(uci, tmp_path):
    write_dataset(tmp_path, n_splits=4, with_count=False)
    assert uci.load_dataset(tmp_path, "toy").n_splits == 4
    assert uci.load_dataset(tmp_path, "toy", n_splits=2).n_splits == 2


def test_loader_names_a_missing_dataset(uci, tmp_path):
    with pytest.raises(FileNotFoundError, match="no data.txt for 'absent'"):
        uci.load_dataset(tmp_path, "absent")


def test_published_numbers_match_the_brief(uci):
    assert uci.PUBLISHED_NLL["Deep Ensembles"]["Naval"] == -5.63
    assert uci.best_published("Yacht") == (0.20, "NGBoost")
    assert uci.best_published("Concrete") == (2.93, "MC dropout (grid)")
    assert uci.best_published("Kin8nm") == (-1.24, "Deep Evidential")


def test_noise_rule_of_thumb(uci):
    assert uci.noise_bandwidth(100, 1, 0.5) == pytest.approx(0.5 * 100 ** (-1 / 5))
    assert uci.noise_bandwidth(10_000, 9, 0.1) < uci.noise_bandwidth(100, 9, 0.1)


def small_mdn(n_train, n_features, seed):
    from mdnkit import MDNRegressor

    return MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, device="cpu", random_state=seed)


def test_protocol_nll_is_minus_mean_score_samples(uci, tmp_path):
    write_dataset(tmp_path)
    X_train, y_train, X_test, y_test = uci.load_dataset(tmp_path, "toy").split(0)
    fitted = []

    def factory(n_train, n_features, seed):
        assert (n_train, n_features) == (36, 3)
        fitted.append(small_mdn(n_train, n_features, seed))
        return fitted[-1]

    result = uci.evaluate_split(factory, X_train, y_train, X_test, y_test, seed=1)
    model = fitted[0]
    assert result["nll"] == pytest.approx(-model.score_samples(X_test, y_test).mean())
    assert result["rmse"] == pytest.approx(np.sqrt(np.mean((model.predict(X_test) - y_test) ** 2)))
    assert result["seconds"] > 0


def test_ensemble_is_the_average_density(uci, tmp_path):
    write_dataset(tmp_path)
    X_train, y_train, X_test, y_test = uci.load_dataset(tmp_path, "toy").split(0)
    ensemble = uci.MixtureEnsemble([small_mdn(36, 3, seed) for seed in range(3)]).fit(X_train, y_train)
    densities = np.mean([np.exp(m.score_samples(X_test, y_test)) for m in ensemble.members], axis=0)
    np.testing.assert_allclose(np.exp(ensemble.score_samples(X_test, y_test)), densities, rtol=1e-10)
    means = np.mean([m.predict(X_test) for m in ensemble.members], axis=0)
    np.testing.assert_allclose(ensemble.predict(X_test), means, rtol=1e-10)


def test_run_and_table(uci, tmp_path, monkeypatch, capsys):
    write_dataset(tmp_path, name="toy", n_splits=2)
    monkeypatch.setitem(uci.CONFIGS, "tiny", small_mdn)
    results = uci.run(tmp_path, ["toy"], "tiny", n_splits=2, jobs=1, log=None)
    assert [(r["dataset"], r["split"]) for r in results] == [("toy", 0), ("toy", 1)]
    rows = uci.summarise(results)
    assert rows[0]["n_splits"] == 2
    assert rows[0]["nll"] == pytest.approx(np.mean([r["nll"] for r in results]))
    assert rows[0]["nll_se"] == pytest.approx(np.std([r["nll"] for r in results], ddof=1) / math.sqrt(2))
    table = uci.format_table(rows)
    assert table.splitlines()[0].startswith("| dataset | n splits | our NLL ± s.e.")
    assert "| toy | 2 |" in table
    with pytest.raises(ValueError, match="unknown config 'nope'"):
        uci.run(tmp_path, ["toy"], "nope")


def test_main_prints_the_table_and_writes_json(uci, tmp_path, monkeypatch, capsys):
    write_dataset(tmp_path, name="bostonHousing", n_splits=2)
    monkeypatch.setitem(uci.CONFIGS, "mdn-ensemble", small_mdn)
    out = tmp_path / "out.json"
    assert uci.main(["--root", str(tmp_path), "--quick", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| Boston | 2 |" in printed and "2.41" in printed and "2.35 (Deep Evidential)" in printed
    import json

    saved = json.loads(out.read_text())
    assert saved["quick"] and len(saved["results"]) == 2 and saved["summary"][0]["dataset"] == "Boston"


def test_noise_selected_ensemble_picks_the_lowest_validation_nll(uci, tmp_path):
    from mdnkit import MDNRegressor

    write_dataset(tmp_path)
    X_train, y_train, X_test, y_test = uci.load_dataset(tmp_path, "toy").split(0)

    def member(**extra):
        return MDNRegressor(n_components=2, hidden_sizes=(8,), max_epochs=5, device="cpu", **extra)

    model = uci.NoiseSelectedEnsemble(member, candidates=(0.0, 2.0), size=2, seed=0)
    result = uci.evaluate_split(lambda n, p, seed: model, X_train, y_train, X_test, y_test)
    assert set(model.validation_nll_) == {0.0, 2.0}
    assert model.input_c_ == min(model.validation_nll_, key=model.validation_nll_.get)
    assert result["input_c"] == model.input_c_
    assert len(model.members) == 2
    assert model.members[1].input_noise == pytest.approx(uci.noise_bandwidth(36, 4, model.input_c_))


def test_resume_skips_the_splits_already_run(uci, tmp_path, monkeypatch, capsys):
    """A second run with --resume fits only the new splits, and its table covers all of them."""
    import json

    write_dataset(tmp_path, name="yacht", n_splits=3)
    monkeypatch.setitem(uci.CONFIGS, "mdn-ensemble", small_mdn)
    first = tmp_path / "first.json"
    assert uci.main(["--root", str(tmp_path), "--datasets", "yacht", "--splits", "1", "--json", str(first)]) == 0
    fitted = []
    original = uci.evaluate_split
    monkeypatch.setattr(uci, "evaluate_split", lambda *a, **k: fitted.append(1) or original(*a, **k))
    both = tmp_path / "both.json"
    assert uci.main(["--root", str(tmp_path), "--datasets", "yacht", "--resume", str(first),
                     "--json", str(both)]) == 0
    saved = json.loads(both.read_text())
    assert len(fitted) == 2 and [r["split"] for r in saved["results"]] == [0, 1, 2]
    assert saved["results"][0] == json.loads(first.read_text())["results"][0]
    assert "| Yacht | 3 |" in capsys.readouterr().out
