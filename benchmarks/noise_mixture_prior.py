"""How many pseudo-rows the weights of ``input_noise="mixture"`` should credit each network.

For each set and split, three networks are fitted at input and target noise ``0``, ``0.1 r`` and
``0.25 r`` (separate fits with the same seed, so the same validation rows and starting weights),
and their log-densities of the validation and the test rows are kept. Each rule then combines
them: ``best`` (the network with the best validation NLL), ``equal`` (weights ``1/3``) and
``prior=c`` (:func:`mdnkit.estimator.mixture_weights` with ``c`` pseudo-rows, ``0`` being plain
stacking). The table gives the mean test NLL per set and rule, and each rule's mean excess over
the best rule of each set.

    python benchmarks/noise_mixture_prior.py --uci ../shared/benchmarks/uci --splits 10 --uci-splits 5
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

PRIORS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
TINY_SETS = ("iris", "iris2", "cars", "cars2", "engel", "cancer")
UCI_SETS = ("yacht", "energy", "concrete", "bostonHousing")


def _splits(name: str, uci_root: Path | None, n_splits: int):
    """``(X_train, y_train, X_test, y_test)`` of each split: the PBP splits, or tiny_data's."""
    if name in UCI_SETS:
        import uci

        data = uci.load_dataset(uci_root, name, n_splits)
        return [data.split(i) for i in range(data.n_splits)]
    import tiny_data

    X, y = tiny_data.SETS[name]()
    for split in range(n_splits):
        rows = np.random.default_rng(split).permutation(len(y))
        test, train = rows[: len(y) // 5], rows[len(y) // 5:]
        yield X[train], y[train], X[test], y[test]


def _levels(split: tuple[np.ndarray, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation and test log-densities ``[3, n]`` of the three levels' networks on one split."""
    from mdnkit import MDNRegressor

    X_train, y_train, X_test, y_test = split
    n_train = len(X_train) - int(np.ceil(0.1 * len(X_train)))
    rule = n_train ** (-1.0 / (4 + X_train.shape[1] + 1))
    validation, test = [], []
    for factor in (0.0, 0.1, 0.25):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = MDNRegressor(input_noise=factor * rule, target_noise=factor * rule, random_state=seed,
                                 device="cpu").fit(X_train, y_train)
            validation.append(model.score_samples(*model.validation_rows_))
            test.append(model.score_samples(X_test, y_test))
    return np.array(validation), np.array(test)


def _rules(validation: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Test NLL of each way of combining the three networks."""
    from mdnkit.estimator import mixture_weights

    def mixed(weights: np.ndarray) -> float:
        return float(-np.mean(np.logaddexp.reduce(test + np.log(np.maximum(weights, 1e-300))[:, None], axis=0)))

    scores = {"best": float(-test[np.argmax(validation.mean(axis=1))].mean()), "equal": mixed(np.full(3, 1 / 3))}
    scores.update({f"prior={prior:g}": mixed(mixture_weights(validation, prior)) for prior in PRIORS})
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uci", type=Path, help="folder of the PBP UCI sets (without it: the tiny sets only)")
    parser.add_argument("--splits", type=int, default=10, help="random splits of each tiny set")
    parser.add_argument("--uci-splits", type=int, default=5, help="PBP splits of each UCI set")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    sets = [*TINY_SETS, *(UCI_SETS if args.uci else ())]
    table: dict[str, dict[str, float]] = {}
    for name in sets:
        n_splits = args.uci_splits if name in UCI_SETS else args.splits
        runs = [_rules(*_levels(split, seed)) for seed, split in enumerate(_splits(name, args.uci, n_splits))]
        table[name] = {rule: float(np.mean([run[rule] for run in runs])) for rule in runs[0]}
        print(f"{name} done", file=sys.stderr, flush=True)
    rules = list(next(iter(table.values())))
    print("| set | " + " | ".join(rules) + " |")
    print("|---|" + "---:|" * len(rules))
    for name, scores in table.items():
        print(f"| {name} | " + " | ".join(f"{scores[rule]:.3f}" for rule in rules) + " |")
    excess = {rule: np.mean([scores[rule] - min(scores.values()) for scores in table.values()]) for rule in rules}
    print("| mean excess | " + " | ".join(f"{excess[rule]:.3f}" for rule in rules) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
