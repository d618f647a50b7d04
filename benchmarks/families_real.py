"""Component families against the Gaussian on real data where a user would pick each family.

Each set ships inside a package (the ``bench`` extra: ``pip install -e ".[bench]"``), so nothing
is downloaded:

* heavy tails (``student_t``, ``laplace``): monthly log returns of five stocks, 2000-2010
  (``vega_datasets`` "stocks"), from the stock and its previous month's return;
* positive (``lognormal``): a car's fuel economy in miles per gallon from its engine, weight, year
  and origin (``vega_datasets`` "cars", rows with every value), and household food expenditure
  from income (Engel's data, ``statsmodels``);
* bounded (``logit_normal`` on ``(0, 1)``): the share of a California school's students above the
  national median in maths, from its demographics and spending (``statsmodels`` "star98").

* angles (``von_mises``): the time of year as an angle from the day's weather in Seattle,
  2012-2015 (``vega_datasets`` "seattle-weather"): a cyclic target, bimodal where spring and
  autumn weather look alike.

Every model is ``MDNRegressor``
with its defaults but the family; each set is split at random 80/20 ``--splits`` times (seeded);
the table gives the mean test NLL (nats per row, original units) ± its standard error over the
splits and the mean paired difference to the Gaussian (negative: the family is better).

    python benchmarks/families_real.py --splits 10
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd

DataSet = tuple[np.ndarray, np.ndarray]


def stocks() -> DataSet:
    from vega_datasets import local_data

    frame = local_data.stocks().sort_values(["symbol", "date"])
    frame["ret"] = frame.groupby("symbol")["price"].transform(lambda p: np.log(p).diff())
    frame["previous"] = frame.groupby("symbol")["ret"].shift(1)
    frame = frame.dropna()
    symbols = pd.get_dummies(frame["symbol"], dtype=float).to_numpy()
    return np.column_stack([frame["previous"].to_numpy(), symbols]), frame["ret"].to_numpy()


def cars() -> DataSet:
    from vega_datasets import local_data

    frame = local_data.cars().dropna()
    numbers = frame[["Cylinders", "Displacement", "Horsepower", "Weight_in_lbs", "Acceleration"]].to_numpy(float)
    year = pd.to_datetime(frame["Year"]).dt.year.to_numpy(float)[:, None]
    origin = pd.get_dummies(frame["Origin"], dtype=float).to_numpy()
    return np.column_stack([numbers, year, origin]), frame["Miles_per_Gallon"].to_numpy(float)


def seasons() -> DataSet:
    """The time of year as an angle (1 January at -π, 31 December near π) from the day's weather:
    cyclic, and bimodal where spring and autumn weather look alike."""
    from vega_datasets import local_data

    frame = local_data.seattle_weather()
    day = frame["date"].dt.dayofyear.to_numpy(float) - 1
    angle = 2 * np.pi * day / 366 - np.pi
    weather = pd.get_dummies(frame["weather"], dtype=float).to_numpy()
    return np.column_stack([frame[["precipitation", "temp_max", "temp_min", "wind"]].to_numpy(float), weather]), angle


def engel() -> DataSet:
    import statsmodels.api as sm

    frame = sm.datasets.engel.load_pandas().data
    return frame[["income"]].to_numpy(float), frame["foodexp"].to_numpy(float)


def star98() -> DataSet:
    import statsmodels.api as sm

    frame = sm.datasets.star98.load_pandas().data
    share = frame["NABOVE"] / (frame["NABOVE"] + frame["NBELOW"])
    features = ["LOWINC", "PERASIAN", "PERBLACK", "PERHISP", "PERMINTE", "AVYRSEXP", "AVSALK", "PERSPENK",
                "PTRATIO", "PCTAF", "PCTCHRT", "PCTYRRND"]
    return frame[features].to_numpy(float), share.to_numpy(float)


# data set: (loader, what the target is, [(family, options)])
SETS: dict[str, tuple[Callable[[], DataSet], str, list[tuple[str, dict | None]]]] = {
    "stocks": (stocks, "monthly log return", [("student_t", None), ("laplace", None)]),
    "cars": (cars, "miles per gallon > 0", [("lognormal", None)]),
    "engel": (engel, "food expenditure > 0", [("lognormal", None)]),
    "star98": (star98, "share in (0, 1)", [("logit_normal", {"low": 0.0, "high": 1.0})]),
    "seasons": (seasons, "day of year, radians", [("von_mises", None)]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10, help="random 80/20 splits per set (default 10)")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args(argv)
    import torch

    from mdnkit import MDNRegressor

    torch.set_num_threads(1)
    print("| data (rows) | target | family | test NLL, family | test NLL, gaussian | family - gaussian | seconds |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.sets:
        load, what, families = SETS[name]
        X, y = load()
        nll: dict[str, list[float]] = {"gaussian": []}
        seconds: dict[str, float] = {}
        for split in range(args.splits):
            rows = np.random.default_rng(split).permutation(len(y))
            test, train = rows[: len(y) // 5], rows[len(y) // 5:]
            for family, options in [("gaussian", None), *families]:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = MDNRegressor(family=family, family_options=options, random_state=split).fit(X[train], y[train])
                nll.setdefault(family, []).append(-model.score(X[test], y[test]))
                seconds[family] = seconds.get(family, 0.0) + time.perf_counter() - start
            print(f"{name} split {split} done", file=sys.stderr)
        gaussian = np.array(nll["gaussian"])
        for family, _ in families:
            mine = np.array(nll[family])
            gap = mine - gaussian
            se = lambda v: v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")  # noqa: E731
            print(f"| {name} ({len(y)}) | {what} | {family} | {mine.mean():.3f} ± {se(mine):.3f} | "
                  f"{gaussian.mean():.3f} ± {se(gaussian):.3f} | {gap.mean():+.3f} ± {se(gap):.3f} | "
                  f"{seconds[family] / args.splits:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
