"""Every plot runs headless on a fitted model and draws what it says it draws."""

from __future__ import annotations

import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")  # before pyplot: no display needed

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

from mdnkit import MDNRegressor  # noqa: E402
from mdnkit import plotting  # noqa: E402
from mdnkit.datasets import make_inverted_sinusoid  # noqa: E402

K = 3
GRID = np.linspace(-12.0, 12.0, 120)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_inverted_sinusoid(400, random_state=0)


@pytest.fixture(scope="module")
def model(data) -> MDNRegressor:
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # 60 epochs is short on purpose
        return MDNRegressor(n_components=K, hidden_sizes=(16,), max_epochs=60, input_noise="select",
                            random_state=0).fit(X, y)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- densities
def test_plot_density_image_covers_the_grid_and_each_column_integrates_to_one(model, data) -> None:
    X, y = data
    x_range, y_range, resolution = (-8.0, 8.0), (-16.0, 16.0), 120
    ax = plotting.plot_density(model, X, y, x_range=x_range, y_range=y_range, resolution=resolution)
    (image,) = ax.images
    assert tuple(image.get_extent()) == (*x_range, *y_range)
    density = np.asarray(image.get_array())
    assert density.shape == (resolution, resolution)  # rows y, columns x
    cell_height = (y_range[1] - y_range[0]) / resolution
    # A midpoint rule over ±16 holds the mass of y in [-10.5, 10.5]; loose for the tails.
    np.testing.assert_allclose(density.sum(axis=0) * cell_height, 1.0, atol=0.02)
    assert ax.get_xlim() == x_range and ax.get_ylim() == y_range
    assert len(ax.collections[-1].get_offsets()) == len(y)  # the data on top
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"


def test_plot_density_default_ranges_follow_the_data_or_the_model(model, data) -> None:
    X, y = data
    ax = plotting.plot_density(model, X, y, resolution=20)
    x_low, x_high, y_low, y_high = ax.images[0].get_extent()
    assert x_low < X.min() and x_high > X.max() and y_low < y.min() and y_high > y.max()
    ax = plotting.plot_density(model, x_range=(-5, 5), resolution=20, colorbar=False)
    y_low, y_high = ax.images[0].get_extent()[2:]
    assert y_low < -10 and y_high > 10  # the components' mass, with no y given
    with pytest.raises(ValueError, match="needs X or x_range"):
        plotting.plot_density(model)


def test_plot_samples_draws_n_samples_per_input(model, data) -> None:
    X, y = data
    ax = plotting.plot_samples(model, X[:50], y[:50], n_samples=3, random_state=0)
    assert len(ax.collections) == 2  # data, then samples
    assert ax.collections[-1].get_offsets().shape == (150, 2)
    np.testing.assert_array_equal(ax.collections[-1].get_offsets()[:3, 0], X[0, 0])
    again = plotting.plot_samples(model, X[:50], n_samples=3, random_state=0)
    np.testing.assert_array_equal(again.collections[-1].get_offsets(), ax.collections[-1].get_offsets())


# ---------------------------------------------------------------------------- components
def test_plot_components_draws_one_line_and_one_ribbon_per_component(model, data) -> None:
    ax = plotting.plot_components(model, GRID, data=data)
    lines = [c for c in ax.collections if isinstance(c, LineCollection)]
    ribbons = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(lines) == K and len(ribbons) == K
    assert [c.get_gid() for c in lines] == [f"component {k}" for k in range(K)]
    mixture = model.predict_dist(GRID.reshape(-1, 1))
    for k, line in enumerate(lines):
        segments = line.get_segments()
        assert len(segments) == len(GRID) - 1
        np.testing.assert_allclose([s[0, 1] for s in segments], mixture.loc[:-1, k, 0].numpy())
        # Width follows the weight: the widest segment is where π_k is largest.
        segment_weight = 0.5 * (mixture.weights[1:, k] + mixture.weights[:-1, k]).numpy()
        assert np.argmax(line.get_linewidths()) == np.argmax(segment_weight)
    assert len(ax.get_legend().get_texts()) == K


def test_plot_weights_and_scales_two_panels_k_lines_log_sigma(model) -> None:
    axes = plotting.plot_weights_and_scales(model, GRID)
    assert isinstance(axes, np.ndarray) and axes.shape == (2,)
    top, bottom = axes
    assert len(top.lines) == K and len(bottom.lines) == K
    assert bottom.get_yscale() == "log" and top.get_yscale() == "linear"
    mixture = model.predict_dist(GRID.reshape(-1, 1))
    np.testing.assert_allclose(np.sum([line.get_ydata() for line in top.lines], axis=0), 1.0, rtol=1e-6)
    sigma = mixture.component_covariance[..., 0, 0].sqrt().numpy()  # [n, K]
    for k, line in enumerate(bottom.lines):
        np.testing.assert_allclose(line.get_ydata(), sigma[:, k])


def test_plot_conditional_one_panel_per_x_with_the_true_value_marked(model, data) -> None:
    X, y = data
    rows = [3, 10, 42]
    axes = plotting.plot_conditional(model, X[rows, 0], y_true=y[rows])
    assert len(axes) == len(rows)
    for ax, truth, row in zip(axes, y[rows], rows):
        vertical = [line for line in ax.lines if line.get_label() == "true y"]
        assert len(vertical) == 1 and np.allclose(vertical[0].get_xdata(), truth)
        assert len(ax.lines) == 1 + K + 1  # mixture, components, truth
        ys, density = ax.lines[0].get_data()
        expected = np.exp(model.score_samples(np.full((len(ys), 1), X[row, 0]), ys))
        # A float32 network scores a batch of one row and one of 400 with products rounded
        # differently (1e-7), which far tails (1e-127 here) amplify: compare what is drawn.
        np.testing.assert_allclose(density, expected, rtol=1e-4, atol=1e-9 * expected.max())
        # The weighted components add up to the mixture.
        np.testing.assert_allclose(np.sum([line.get_ydata() for line in ax.lines[1:1 + K]], axis=0), density,
                                   rtol=1e-6, atol=1e-12)
        assert ax.get_title(loc="left").startswith("x = ")


def test_plot_modes_draws_every_mode_and_the_heaviest_mean(model, data) -> None:
    ax = plotting.plot_modes(model, GRID, data=data, min_relative_density=0.0)
    modes, log_density = model.predict_modes(GRID.reshape(-1, 1))
    by_gid = {c.get_gid(): c for c in ax.collections}
    assert len(by_gid["modes"].get_offsets()) == np.isfinite(modes).sum()
    # By default only modes at least 1% as dense as the row's highest one.
    default = {c.get_gid(): c for c in plotting.plot_modes(model, GRID).collections}
    kept = (np.exp(log_density) >= 0.01 * np.exp(log_density.max(axis=1, keepdims=True))).sum()
    assert len(default["modes"].get_offsets()) == kept
    assert np.isfinite(modes).sum() > len(GRID)  # the inverted sinusoid has several modes per x
    sizes = by_gid["modes"].get_sizes()
    assert sizes.min() < sizes.max()  # sized by density
    assert len(by_gid["heaviest component mean"].get_offsets()) == len(GRID)
    no_overlay = plotting.plot_modes(model, GRID, show_heaviest=False)
    assert [c.get_gid() for c in no_overlay.collections] == ["modes"]


# ---------------------------------------------------------------------------- training
def test_plot_history_draws_training_and_validation_nll(model) -> None:
    ax = plotting.plot_history(model)
    assert len(ax.lines) == 2
    train, val = ax.lines
    np.testing.assert_array_equal(train.get_xdata(), [r["epoch"] for r in model.history_])
    np.testing.assert_array_equal(train.get_ydata(), [r["train_nll"] for r in model.history_])
    np.testing.assert_array_equal(val.get_ydata(), [r["val_nll"] for r in model.history_])
    assert ax.get_xlabel() == "epoch"
    # A bare history works too; without validation only the training curve is drawn.
    history = [{"epoch": e, "train_nll": 1.0 / e, "val_nll": float("nan")} for e in range(1, 4)]
    assert len(plotting.plot_history(history).lines) == 1
    with pytest.raises(ValueError, match="empty history"):
        plotting.plot_history([])


# ---------------------------------------------------------------------------- calibration
@pytest.mark.parametrize("bins", [5, 10])
def test_plot_pit_bars_are_a_density_over_the_pit_values(model, data, bins) -> None:
    X, y = data
    ax = plotting.plot_pit(model, X, y, bins=bins)
    heights = np.array([bar.get_height() for bar in ax.patches])
    assert len(heights) == bins
    np.testing.assert_allclose(heights.sum(), bins)  # density: heights × width 1/bins sum to 1
    pit = model.predict_dist(X).cdf(torch.as_tensor(y).reshape(-1, 1)).numpy()
    counts, _ = np.histogram(pit, bins=bins, range=(0, 1))
    np.testing.assert_allclose(heights, counts * bins / len(y))
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.lines)  # the uniform line


def test_plot_calibration_curve_runs_from_0_to_1(model, data) -> None:
    X, y = data
    ax = plotting.plot_calibration(model, X, y, bins=4)
    diagonal, curve = ax.lines
    np.testing.assert_allclose(diagonal.get_xydata(), [[0, 0], [1, 1]])
    np.testing.assert_allclose(curve.get_xdata(), [0, 0.25, 0.5, 0.75, 1.0])
    observed = curve.get_ydata()
    assert observed[-1] == 1.0 and np.all(np.diff(observed) >= 0)
    assert np.max(np.abs(observed - curve.get_xdata())) < 0.2  # a fitted model is roughly calibrated


# ---------------------------------------------------------------------------- common contract
def _draw_all(model, data, ax_factory) -> dict[str, object]:
    X, y = data
    return {
        "density": plotting.plot_density(model, X, y, resolution=30, ax=ax_factory(1)),
        "samples": plotting.plot_samples(model, X, y, ax=ax_factory(1), random_state=0),
        "components": plotting.plot_components(model, GRID, ax=ax_factory(1)),
        "weights_and_scales": plotting.plot_weights_and_scales(model, GRID, axes=ax_factory(2)),
        "conditional": plotting.plot_conditional(model, X[:2, 0], y_true=y[:2], axes=ax_factory(2)),
        "modes": plotting.plot_modes(model, GRID, ax=ax_factory(1)),
        "history": plotting.plot_history(model, ax=ax_factory(1)),
        "pit": plotting.plot_pit(model, X, y, ax=ax_factory(1)),
        "calibration": plotting.plot_calibration(model, X, y, ax=ax_factory(1)),
    }


def test_every_function_draws_on_the_axes_it_is_given(model, data) -> None:
    given: dict[int, object] = {}

    def factory(n):
        _, axes = plt.subplots(1, n, squeeze=False)
        result = axes[0, 0] if n == 1 else axes[0]
        given[len(given)] = result
        return result

    drawn = _draw_all(model, data, factory)
    for index, (name, result) in enumerate(drawn.items()):
        expected = given[index]
        if isinstance(expected, np.ndarray):
            assert list(result) == list(expected), name
        else:
            assert result is expected, name
            assert result.has_data(), name


def test_every_function_saves_a_valid_png(model, data, tmp_path) -> None:
    drawn = _draw_all(model, data, lambda n: None)
    assert len(drawn) == len(plotting.__all__)
    for name, result in drawn.items():
        figure = np.ravel(result)[0].figure
        path = tmp_path / f"{name}.png"
        figure.savefig(path, dpi=60)
        header = path.read_bytes()[:8]
        assert header == b"\x89PNG\r\n\x1a\n", name
        image = plt.imread(path)
        assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50, name
        assert image[..., :3].std() > 0.01, f"{name} is blank"


# ---------------------------------------------------------------------------- errors and import
@pytest.fixture(scope="module")
def model_2d_target() -> MDNRegressor:
    X, y = make_inverted_sinusoid(60, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MDNRegressor(n_components=2, hidden_sizes=(4,), max_epochs=2, random_state=0).fit(
            X, np.column_stack([y, -y]))


@pytest.mark.parametrize("name", ["plot_density", "plot_components", "plot_weights_and_scales", "plot_modes"])
def test_a_2d_target_model_is_refused_clearly(model_2d_target, name) -> None:
    with pytest.raises(ValueError, match=r"1-D target y, but the model was fitted on a 2-D target"):
        getattr(plotting, name)(model_2d_target, GRID)


def test_2d_target_arrays_are_refused_clearly(model, data) -> None:
    X, y = data
    y_2d = np.column_stack([y, y])
    with pytest.raises(ValueError, match=r"needs a 1-D y \(shape \(n,\) or \(n, 1\)\), got shape \(400, 2\)"):
        plotting.plot_density(model, X, y_2d)
    with pytest.raises(ValueError, match=r"needs a 1-D y"):
        plotting.plot_pit(model, X, y_2d)
    with pytest.raises(ValueError, match=r"needs a 1-D y"):
        plotting.plot_samples(model, X, y_2d)


def test_a_model_with_several_inputs_is_refused_for_x_plots(data) -> None:
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        wide = MDNRegressor(n_components=2, hidden_sizes=(4,), max_epochs=2, random_state=0).fit(
            np.column_stack([X, X]), y)
    with pytest.raises(ValueError, match="against a 1-D input x, but the model was fitted on 2 input features"):
        plotting.plot_density(wide, X, y)
    # PIT and calibration only need the 1-D target.
    assert len(plotting.plot_pit(wide, np.column_stack([X, X]), y).patches) == 10


def test_wrong_number_of_axes_is_refused(model) -> None:
    _, ax = plt.subplots()
    with pytest.raises(ValueError, match="needs 2 axes, got 1"):
        plotting.plot_weights_and_scales(model, GRID, axes=[ax])


def test_importing_plotting_does_not_import_matplotlib() -> None:
    code = "import sys, mdnkit.plotting; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
