"""``mdnkit demo NAME``: each seed tutorial's experiment, reproduced with one command.

One demo per tutorial in the project's ``seeds`` folder (and Bishop's robot arm). Each draws
the tutorial's data with :mod:`mdnkit.datasets`, trains an :class:`~mdnkit.MDNRegressor` with
the tutorial's architecture and optimiser, writes its figures (PNG, via
:mod:`mdnkit.plotting`) and a ``metrics.json`` to ``OUTPUT/NAME/``, and prints a table of the
tutorial's reported number next to ours.

``metrics.json`` holds ``metric`` (its name), ``seed_reported`` (the tutorial's number, or
``null``), ``ours``, ``higher_is_better``, ``seconds`` (the whole demo, figures included),
``fit_seconds`` and demo-specific ``details``. Units follow the tutorial: GPflow reports the
*sum* of the training log-likelihood, the others a *mean* negative log-likelihood (nats).

Example:
    >>> main(["--list"])  # doctest: +ELLIPSIS
    gpflow-sinusoid ...
    0
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mdnkit import datasets

# The estimator (and so torch, ~2 s) loads inside each demo: `mdnkit demo --help` and `--list` need neither.
if TYPE_CHECKING:
    from mdnkit.estimator import MDNRegressor

__all__ = ["DEMOS", "Demo", "DemoResult", "main", "run_demo"]


@dataclass
class DemoResult:
    """What a demo measured; ``details`` holds its secondary numbers."""

    metric: str
    seed_reported: float | None
    ours: float
    higher_is_better: bool
    fit_seconds: float
    details: dict[str, Any] = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Demo:
    """A named experiment: ``run(directory, random_state, quick) -> DemoResult``."""

    name: str
    summary: str
    run: Callable[[Path, int, bool], DemoResult]


# ----------------------------------------------------------------------------- helpers



# The seeds train without noise regularisation; the demos keep to their recipes.
SEED_RECIPE = {"input_noise": 0.0}

def _fit(model: MDNRegressor, X: np.ndarray, y: np.ndarray) -> tuple[MDNRegressor, float]:
    """Fit and time, silencing warnings: the demo's numbers say how well it converged."""
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X, y)
    return model, time.perf_counter() - start


def _pyplot() -> Any:
    """pyplot on the Agg backend: demos only write files, also on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(ax_or_axes: Any, directory: Path, name: str, figures: list[str]) -> None:
    axes = np.atleast_1d(ax_or_axes)
    figure = axes.flat[0].figure
    path = directory / f"{name}.png"
    figure.savefig(path, dpi=110)
    _pyplot().close(figure)
    figures.append(path.name)


def _gpflow_mdn(max_epochs: int, random_state: int) -> MDNRegressor:
    """The GPflow notebook's network: K=5, two hidden layers of 100 ReLU, full-batch L-BFGS.

    One epoch of our L-BFGS runs 20 iterations, so ``max_epochs`` is the notebook's
    ``maxiter / 20``.
    """
    from mdnkit.estimator import MDNRegressor

    return MDNRegressor(
        n_components=5, hidden_sizes=(100, 100), activation="relu", optimizer="lbfgs", learning_rate=1.0,
        batch_size=None, validation_fraction=0.0, max_epochs=max_epochs, dtype="float32",
        random_state=random_state, **SEED_RECIPE,
    )


def _conditioned_gmm_log_density(gmm: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p(y | x)`` of a scikit-learn ``GaussianMixture`` fitted on the joint ``(x, y)``, exactly.

    Each full-covariance component conditions in closed form; the weights become the
    components' responsibilities for ``x`` alone::

        p(y | x) = Σ_k w_k(x) N(y; μ_y + Σ_yx / Σ_xx (x - μ_x), Σ_yy - Σ_yx² / Σ_xx),
        w_k(x) ∝ π_k N(x; μ_x, Σ_xx)
    """
    mu_x, mu_y = gmm.means_[:, 0], gmm.means_[:, 1]  # [K]
    s_xx, s_xy, s_yy = gmm.covariances_[:, 0, 0], gmm.covariances_[:, 0, 1], gmm.covariances_[:, 1, 1]
    x, y = x[:, None], y[:, None]  # [n, 1]

    def log_normal(z: np.ndarray, loc: np.ndarray, var: np.ndarray) -> np.ndarray:
        return -0.5 * (np.square(z - loc) / var + np.log(2.0 * math.pi * var))

    log_w = np.log(gmm.weights_) + log_normal(x, mu_x, s_xx)  # [n, K]
    log_w -= _logsumexp(log_w)[:, None]
    log_component = log_normal(y, mu_y + s_xy / s_xx * (x - mu_x), s_yy - s_xy**2 / s_xx)
    return _logsumexp(log_w + log_component)


def _logsumexp(a: np.ndarray) -> np.ndarray:
    m = a.max(axis=1, keepdims=True)
    return m[:, 0] + np.log(np.exp(a - m).sum(axis=1))


# ----------------------------------------------------------------------------- the demos


def _gpflow(
    make: Callable[..., tuple[np.ndarray, np.ndarray]],
    log_density: Callable[..., np.ndarray],
    epochs: int,
    seed_iterations: int,
    seed_reported: float,
    limits: tuple[tuple[float, float], tuple[float, float]],
) -> Callable[[Path, int, bool], DemoResult]:
    def run(directory: Path, random_state: int, quick: bool) -> DemoResult:
        from mdnkit import plotting

        X, y = make(200, noise=0.05, random_state=random_state)
        model, seconds = _fit(_gpflow_mdn(2 if quick else epochs, random_state), X, y)
        ours = float(model.score_samples(X, y).sum())
        # Fresh draws from the same generator show how much of the training score is overfitting.
        X_test, y_test = make(200, noise=0.05, random_state=random_state + 10_000)
        details = {
            "lbfgs_iterations": 20 * model.n_iter_,
            "seed_lbfgs_iterations": seed_iterations,
            "true_train_log_likelihood_sum": float(log_density(X, y).sum()),
            "test_log_likelihood_sum": float(model.score_samples(X_test, y_test).sum()),
            "true_test_log_likelihood_sum": float(log_density(X_test, y_test).sum()),
        }
        figures: list[str] = []
        x_range, y_range = limits
        _save(plotting.plot_density(model, X, y, x_range=x_range, y_range=y_range), directory, "density", figures)
        _save(plotting.plot_samples(model, X, y, n_samples=3, random_state=random_state), directory, "samples",
              figures)
        return DemoResult("train_log_likelihood_sum", seed_reported, ours, True, seconds, details, figures)

    return run


def _run_edward(directory: Path, random_state: int, quick: bool) -> DemoResult:
    from sklearn.model_selection import train_test_split

    from mdnkit import plotting
    from mdnkit.estimator import MDNRegressor

    X, y = datasets.make_inverted_sinusoid(5000, random_state=random_state)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=42)  # the tutorial's split
    # Not the tutorial's K=20, 2x15 ReLU, Adam 5e-3 for 1000 epochs: this configuration (ten tanh
    # components, 64x64) is the one measured to land within 0.05 nats of the truth on every seed.
    model = MDNRegressor(
        n_components=10, activation="tanh", batch_size=None, learning_rate=3e-3, validation_fraction=0.0,
        max_epochs=20 if quick else 1500, random_state=random_state, **SEED_RECIPE,
    )
    model, seconds = _fit(model, X_train, y_train)
    test_nll = -model.score(X_test, y_test)
    true_nll = float(-datasets.inverted_sinusoid_log_density(X_test, y_test).mean())
    details = {
        "test_nll": test_nll, "true_test_nll": true_nll, "train_nll": -model.score(X_train, y_train),
        "epochs": model.n_iter_, "seed_epochs": 1000,
    }
    figures: list[str] = []
    _save(plotting.plot_history(model), directory, "history", figures)
    _save(plotting.plot_conditional(model, X_test[[0, 4, 6], 0], y_test[[0, 4, 6]]), directory, "conditional",
          figures)
    _save(plotting.plot_samples(model, X_test, y_test, random_state=random_state), directory, "samples", figures)
    return DemoResult("test_nll_minus_true_nll", None, test_nll - true_nll, False, seconds, details, figures)


def _run_tf2_prml(directory: Path, random_state: int, quick: bool) -> DemoResult:
    from mdnkit import plotting
    from mdnkit.estimator import MDNRegressor

    X, y = datasets.make_prml_inverse(4000, random_state=random_state)
    # The tutorial's K=26, one tanh layer of 50, Adam, full batch; 6000 epochs at Adam's default
    # 1e-3 there, 600 at 2e-2 here.
    model = MDNRegressor(
        n_components=26, hidden_sizes=(50,), activation="tanh", covariance_type="isotropic",
        learning_rate=2e-2, batch_size=None, validation_fraction=0.0, max_epochs=20 if quick else 600,
        random_state=random_state, **SEED_RECIPE,
    )
    model, seconds = _fit(model, X, y)
    X_test, y_test = datasets.make_prml_inverse(4000, random_state=random_state + 10_000)
    train_nll = -model.score(X, y)
    details = {
        "train_nll": train_nll, "test_nll": -model.score(X_test, y_test),
        "true_train_nll": float(-datasets.prml_inverse_log_density(X, y).mean()),
        "true_test_nll": float(-datasets.prml_inverse_log_density(X_test, y_test).mean()),
        "epochs": model.n_iter_, "seed_epochs": 6000,
        "note": "ours (like the tutorial's number) is the mean training NLL; test_nll is on 4000 fresh draws",
    }
    figures: list[str] = []
    grid = np.linspace(X.min(), X.max(), 200)
    _save(plotting.plot_modes(model, grid, data=(X, y)), directory, "modes", figures)
    _save(plotting.plot_samples(model, X, y, random_state=random_state), directory, "samples", figures)
    _save(plotting.plot_history(model), directory, "history", figures)
    return DemoResult("train_nll", -1.0590, train_nll, False, seconds, details, figures)


def _run_flux(directory: Path, random_state: int, quick: bool) -> DemoResult:
    from mdnkit import plotting
    from mdnkit.estimator import MDNRegressor

    X, y = datasets.make_inverted_sinusoid(1000, random_state=random_state)
    # The tutorial's K=5 and one tanh layer of 20, full-batch Adam; 8000 epochs at 1e-3 there,
    # 3000 at 1e-2 here.
    model = MDNRegressor(
        n_components=5, hidden_sizes=(20,), activation="tanh", learning_rate=1e-2, batch_size=None,
        validation_fraction=0.0, max_epochs=20 if quick else 3000, random_state=random_state, **SEED_RECIPE,
    )
    model, seconds = _fit(model, X, y)
    X_test, y_test = datasets.make_inverted_sinusoid(1000, random_state=random_state + 10_000)
    train_nll = -model.score(X, y)
    details = {
        "train_nll": train_nll, "test_nll": -model.score(X_test, y_test),
        "true_train_nll": float(-datasets.inverted_sinusoid_log_density(X, y).mean()),
        "true_test_nll": float(-datasets.inverted_sinusoid_log_density(X_test, y_test).mean()),
        "epochs": model.n_iter_, "seed_epochs": 8000,
        "note": "ours (like the tutorial's number) is the mean training NLL; test_nll is on 1000 fresh draws",
    }
    figures: list[str] = []
    grid = np.linspace(-15, 15, 300)
    _save(plotting.plot_components(model, grid, data=(X, y)), directory, "components", figures)
    _save(plotting.plot_weights_and_scales(model, grid), directory, "weights_and_scales", figures)
    _save(plotting.plot_samples(model, X, y, random_state=random_state), directory, "samples", figures)
    return DemoResult("train_nll", 1.2857, train_nll, False, seconds, details, figures)


def _run_tf1_shapes(directory: Path, random_state: int, quick: bool) -> DemoResult:
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    from mdnkit import plotting
    from mdnkit.estimator import MDNRegressor

    n = 300 if quick else 1000
    per_shape: dict[str, dict[str, float]] = {}
    figures: list[str] = []
    seconds = 0.0
    for offset, name in enumerate(datasets.SHAPES):
        seed = random_state + 100 * offset
        X, y = datasets.make_shape(name, n, random_state=seed)
        X_test, y_test = datasets.make_shape(name, n, random_state=seed + 10_000)
        # The tutorial's K=10 and tanh layers of 25 and 10; Adam at its RMSProp's rate 0.01. Full
        # batch overfits 1000 points (0.3 nats on "fan"): minibatches and early stopping on a
        # 10% validation split do not.
        model = MDNRegressor(
            n_components=10, hidden_sizes=(25, 10), activation="tanh", learning_rate=1e-2, batch_size=128,
            validation_fraction=0.1, max_epochs=5 if quick else 1000, random_state=seed, **SEED_RECIPE,
        )
        model, fit_seconds = _fit(model, X, y)
        seconds += fit_seconds
        # One BLAS thread: its thousands of 2x2 solves run ~100x slower when threads contend.
        with threadpool_limits(1):
            gmm = GaussianMixture(40, covariance_type="full", random_state=seed).fit(np.column_stack([X, y]))
        per_shape[name] = {
            "mdn_test_nll": -model.score(X_test, y_test),
            "gmm_test_nll": float(-_conditioned_gmm_log_density(gmm, X_test[:, 0], y_test).mean()),
            "true_test_nll": float(-datasets.shape_log_density(name, X_test, y_test).mean()),
        }
        plt = _pyplot()
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
        plotting.plot_samples(model, X, y, random_state=seed, ax=axes[0])
        axes[0].set_title(f"{name}: MDN samples")
        grid = np.linspace(X.min(), X.max(), 200)
        plotting.plot_components(model, grid, ax=axes[1])
        gmm_draws = _sample_conditioned_gmm(gmm, X[:, 0], np.random.default_rng(seed))
        axes[2].scatter(X[:, 0], y, s=5, color="0.6", label="data")
        axes[2].scatter(X[:, 0], gmm_draws, s=5, color="C1", label="samples")
        axes[2].set(title="GaussianMixture(40, full) conditioned on x", xlabel="x", ylabel="y")
        axes[2].legend(frameon=False)
        _save(axes, directory, f"{name}", figures)
    wins = sum(v["mdn_test_nll"] < v["gmm_test_nll"] for v in per_shape.values())
    details = {"shapes": per_shape, "n_shapes": len(per_shape)}
    return DemoResult("shapes_where_mdn_beats_conditioned_gmm", None, float(wins), True, seconds, details, figures)


def _sample_conditioned_gmm(gmm: Any, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw of ``y | x`` per row from the conditioned joint mixture (see ``_conditioned_gmm_log_density``)."""
    mu_x, mu_y = gmm.means_[:, 0], gmm.means_[:, 1]
    s_xx, s_xy, s_yy = gmm.covariances_[:, 0, 0], gmm.covariances_[:, 0, 1], gmm.covariances_[:, 1, 1]
    log_w = np.log(gmm.weights_) - 0.5 * (np.square(x[:, None] - mu_x) / s_xx + np.log(s_xx))
    w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    k = (w.cumsum(axis=1) < rng.uniform(size=(len(x), 1))).sum(axis=1).clip(max=len(mu_x) - 1)
    loc = mu_y[k] + s_xy[k] / s_xx[k] * (x - mu_x[k])
    return loc + np.sqrt(s_yy[k] - s_xy[k] ** 2 / s_xx[k]) * rng.standard_normal(len(x))


def _run_robot_arm(directory: Path, random_state: int, quick: bool) -> DemoResult:
    from mdnkit.estimator import MDNRegressor

    n = 300 if quick else 1000
    X, y = datasets.make_robot_arm(n, random_state=random_state)
    X_test, y_test = datasets.make_robot_arm(n, random_state=random_state + 10_000)
    # No tutorial: Bishop (1994) used a small network; full covariances let each of the two
    # branches (elbow up / down) be one tilted Gaussian. 1000 rows overfit in full batch (test
    # NLL 1.1 nats above the truth), so minibatches with early stopping (0.25 nats).
    model = MDNRegressor(
        n_components=4, hidden_sizes=(32, 32), activation="tanh", covariance_type="full", learning_rate=3e-3,
        batch_size=128, validation_fraction=0.1, max_epochs=5 if quick else 1500, random_state=random_state, **SEED_RECIPE,
    )
    model, seconds = _fit(model, X, y)
    test_nll = -model.score(X_test, y_test)
    true_nll = float(-datasets.robot_arm_log_density(X_test, y_test).mean())
    details = {"test_nll": test_nll, "true_test_nll": true_nll, "train_nll": -model.score(X, y)}
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    draws = model.sample(X_test[:300], n_samples=1, random_state=random_state)[:, 0]  # [300, 2]
    axes[0].scatter(y_test[:300, 0], y_test[:300, 1], s=6, color="0.6", label="true angles")
    axes[0].scatter(draws[:, 0], draws[:, 1], s=6, color="C0", label="MDN samples")
    axes[0].set(xlabel="θ1", ylabel="θ2", title="joint angles given the hand position")
    axes[0].legend(frameon=False)
    _draw_arms(axes[1], X_test[:3], model, random_state)
    figures: list[str] = []
    _save(axes, directory, "angles", figures)
    return DemoResult("test_nll_minus_true_nll", None, test_nll - true_nll, False, seconds, details, figures)


def _draw_arms(ax: Any, hands: np.ndarray, model: MDNRegressor, random_state: int) -> None:
    """Both predicted arm configurations (the two largest modes) for a few hand positions."""
    l1, l2 = datasets.ROBOT_ARM_LENGTHS
    modes, _ = model.predict_modes(hands)  # [n, K, 2]
    for i, hand in enumerate(hands):
        for theta in modes[i][:2]:
            if np.any(np.isnan(theta)):
                continue
            elbow = l1 * np.array([math.cos(theta[0]), math.sin(theta[0])])
            tip = elbow + l2 * np.array([math.cos(theta.sum()), math.sin(theta.sum())])
            ax.plot([0, elbow[0], tip[0]], [0, elbow[1], tip[1]], "-o", color=f"C{i}", alpha=0.8, markersize=3)
        ax.plot(*hand, "x", color=f"C{i}", markersize=10, markeredgewidth=2)
    ax.set(aspect="equal", xlabel="x1", ylabel="x2", title="arm configurations at the modes (x: target)")


DEMOS: dict[str, Demo] = {
    demo.name: demo
    for demo in (
        Demo("gpflow-sinusoid", "GPflow: sinusoid, K=5 [100,100] ReLU, L-BFGS (train log-lik sum)",
             _gpflow(datasets.make_gpflow_sinusoid, datasets.gpflow_sinusoid_log_density,
                     25, 1500, -131.58, ((-4.0, 4.0), (-3.0, 3.0)))),
        Demo("gpflow-moons", "GPflow: half moons, K=5 [100,100] ReLU, L-BFGS (train log-lik sum)",
             _gpflow(datasets.make_moons_conditional, datasets.moons_conditional_log_density,
                     100, 10_000, 183.91, ((-2.0, 3.0), (-1.5, 2.0)))),
        Demo("edward", "Edward: inverted sinusoid N=5000, test NLL against the truth", _run_edward),
        Demo("tf2-prml", "TF2: PRML inverse problem, K=26 [50] tanh (train mean NLL)", _run_tf2_prml),
        Demo("flux", "Flux: inverted sinusoid n=1000, K=5 [20] tanh (train mean NLL)", _run_flux),
        Demo("tf1-shapes", "TF1: odd 2-D shapes, MDN against a conditioned GaussianMixture(40)", _run_tf1_shapes),
        Demo("robot-arm", "Bishop: two-link robot arm inverse kinematics, test NLL against the truth",
             _run_robot_arm),
    )
}


# ----------------------------------------------------------------------------- running


def run_demo(name: str, output: str | Path = "mdnkit-demos", random_state: int = 0, quick: bool = False
             ) -> dict[str, Any]:
    """Run one demo, write ``OUTPUT/NAME/metrics.json`` and its figures, return the metrics.

    Args:
        name: A key of :data:`DEMOS`.
        output: Folder under which ``NAME/`` is created.
        random_state: Seed of the data and the network.
        quick: A few epochs only (a smoke test; the numbers mean nothing).

    Returns:
        The dict written to ``metrics.json``.
    """
    if name not in DEMOS:
        raise ValueError(f"unknown demo {name!r}; choose from {', '.join(DEMOS)}")
    directory = Path(output) / name
    directory.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = DEMOS[name].run(directory, int(random_state), bool(quick))
    metrics = {
        "demo": name,
        "metric": result.metric,
        "seed_reported": result.seed_reported,
        "ours": result.ours,
        "higher_is_better": result.higher_is_better,
        "seconds": time.perf_counter() - start,
        "fit_seconds": result.fit_seconds,
        "random_state": int(random_state),
        "quick": bool(quick),
        "figures": result.figures,
        "details": result.details,
    }
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("demo", "metric", "seed", "ours", "seconds")
    lines = [
        (m["demo"], m["metric"] + (" ↑" if m["higher_is_better"] else " ↓"), _format(m["seed_reported"]),
         _format(m["ours"]), f"{m['seconds']:.1f}")
        for m in rows
    ]
    widths = [max(len(str(r[i])) for r in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *lines])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mdnkit demo", description="Reproduce the seed tutorials' experiments.",
        epilog="Demos: " + ", ".join(DEMOS),
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="demos to run")
    parser.add_argument("--all", action="store_true", help="run every demo")
    parser.add_argument("--output", default="mdnkit-demos", help="folder for NAME/ (default: %(default)s)")
    parser.add_argument("--random-state", type=int, default=0, help="seed of data and networks (default: 0)")
    parser.add_argument("--quick", action="store_true", help="a few epochs only, for smoke tests")
    parser.add_argument("--list", action="store_true", help="list the demos and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``[demo] NAME [NAME...] | --all [--output DIR] [--random-state N] [--quick] | --list``.

    Returns:
        ``0`` on success, ``2`` for a usage error (an unknown demo name, nothing to run).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["demo"]:  # tolerate the subcommand word when called with the full command line
        argv = argv[1:]
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits on --help (0) and on errors (2): return the code
        return int(exit_.code or 0)
    if args.list:
        width = max(map(len, DEMOS))
        for demo in DEMOS.values():
            print(f"{demo.name.ljust(width)}  {demo.summary}")
        return 0
    unknown = [name for name in args.names if name not in DEMOS]
    if unknown:
        print(f"mdnkit demo: unknown demo {', '.join(map(repr, unknown))}; choose from {', '.join(DEMOS)}",
              file=sys.stderr)
        return 2
    names = list(DEMOS) if args.all else list(dict.fromkeys(args.names))
    if not names:
        parser.print_usage(sys.stderr)
        print("mdnkit demo: give a demo NAME, --all or --list", file=sys.stderr)
        return 2
    rows = []
    for name in names:
        rows.append(run_demo(name, args.output, args.random_state, args.quick))
        print(f"{name}: done in {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(_table(rows))
    return 0
