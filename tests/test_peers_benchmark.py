"""The peer comparison script (benchmarks/peers.py): its sample-based CRPS, scoring and table."""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "peers.py"


@pytest.fixture(scope="module")
def peers():
    spec = importlib.util.spec_from_file_location("peers_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_sample_crps_matches_the_gaussian_closed_form(peers):
    # 20000 seeded draws: the estimate's sd is about 0.004 scale units, well inside 3%.
    loc, scale, y = np.array([0.0, 2.0, -1.0]), np.array([1.0, 0.5, 3.0]), np.array([0.0, 3.0, 4.0])
    draws = np.random.default_rng(0).normal(loc, scale, size=(20000, 3))  # [S, n]
    exact = peers.gaussian_forecast(loc, scale).crps(y)
    np.testing.assert_allclose(peers.sample_crps(draws, y), exact, rtol=0.03)
    assert exact[0] == pytest.approx((math.sqrt(2) - 1) / math.sqrt(math.pi))


def test_sample_crps_of_two_draws_by_hand(peers):
    # mean(|0-1|, |2-1|) - ½ |0-2| = 1 - 1 = 0
    assert peers.sample_crps(np.array([[0.0], [2.0]]), np.array([1.0]))[0] == pytest.approx(0.0)


def test_score_and_table_mark_the_lowest_mean(peers):
    forecast = peers.gaussian_forecast(np.zeros(4), np.ones(4))
    result = peers.score(forecast, np.zeros(4))
    assert result["nll"] == pytest.approx(0.5 * math.log(2 * math.pi))
    runs = [{"dataset": "yacht", "method": m, "split": s, "nll": v + s, "crps": 1.0, "rmse": 1.0, "seconds": 1.0}
            for m, v in (("mdn", 0.0), ("linear", 1.0)) for s in (0, 1)]
    rows = peers.summarise(runs)
    table = peers.format_table(rows)
    assert "**0.500 ± 0.500**" in table and "| Yacht | linear | 2 | 1.500 ± 0.500 |" in table
    assert peers.winners(rows) == ["Yacht: nll mdn, crps mdn, rmse mdn, seconds mdn"]


def test_table_prints_tiny_columns_in_powers_of_ten(peers):
    # Naval's CRPS is about 5e-5: three decimals would print every method's as 0.000.
    runs = [{"dataset": "naval", "method": m, "split": s, "nll": -8.0, "crps": c * (1 + s), "rmse": 0.5,
             "seconds": 0.004} for m, c in (("mdn", 4e-5), ("catboost", 1e-3)) for s in (0, 1)]
    table = peers.format_table(peers.summarise(runs))
    assert "**6.00e-05 ± 2.00e-05**" in table and "1.50e-03 ± 5.00e-04" in table
    assert "0.500 ± 0.000" in table and "0.0 ± 0.0" in table  # other columns keep their decimals


def test_catboost_forecast_on_a_small_problem(peers):
    pytest.importorskip("catboost")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = X[:, 0] + 0.3 * rng.normal(size=80)
    forecast, seconds = peers.METHODS["catboost"](X[:60], y[:60], X[60:], 0, 200)
    result = peers.score(forecast, y[60:])
    assert forecast.mean.shape == (20,) and seconds > 0
    assert all(np.isfinite(v) for v in result.values())
