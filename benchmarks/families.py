"""Component families against the Gaussian on data where each family is the right one.

For every family, rows are drawn from a known 2-component conditional mixture of that family
(``x ~ U(-1, 1)``; weights, locations and scales move with ``x``: the generator of
``tests/test_component_families.py``), and an MDN of that family and a Gaussian MDN are fitted with
the same settings. The table gives the test NLL (nats per row, original units) of both and of the
generating density itself. Not a test; a record for the README.

    python benchmarks/families.py            # 4000 training rows, up to 300 epochs
    python benchmarks/families.py --quick    # 1500 rows, up to 60 epochs (about a minute a family)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from mdnkit import MDNRegressor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_component_families import HIGH, LOW, draw_rows  # the generator, not its tests

FAMILIES = {  # family: (its options, what the target is)
    "student_t": ({}, "real, t(3) tails"),
    "laplace": ({}, "real, exponential tails"),
    "lognormal": ({}, "y > 0"),
    "logit_normal": ({"low": LOW, "high": HIGH}, f"y in ({LOW:g}, {HIGH:g})"),
    "von_mises": ({}, "angle (radians)"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rows and epochs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n_train, epochs = (1500, 60) if args.quick else (4000, 300)
    settings = {"n_components": 2, "hidden_sizes": (32, 32), "max_epochs": epochs, "input_noise": 0.0,
                "batch_size": 256, "random_state": args.seed}
    print(f"{n_train} training rows, 2000 test rows, up to {epochs} epochs, seed {args.seed}\n")
    print("| family | target | test NLL, family | test NLL, gaussian | generating density | seconds |")
    print("|---|---|---:|---:|---:|---:|")
    for family, (options, what) in FAMILIES.items():
        X, y, _ = draw_rows(family, n_train, args.seed)
        X_test, y_test, true_log_p = draw_rows(family, 2000, args.seed + 1)
        scores, start = {}, time.perf_counter()
        for name, extra in ((family, {"family": family, "family_options": options or None}), ("gaussian", {})):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = MDNRegressor(**settings, **extra).fit(X, y)
            scores[name] = -model.score(X_test, y_test)
        seconds = time.perf_counter() - start
        print(f"| {family} | {what} | {scores[family]:.3f} | {scores['gaussian']:.3f} | "
              f"{-true_log_p.mean():.3f} | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
