"""Pictures of a fitted conditional density: what the MDN tutorials draw, drawn with care.

Every function takes ``ax=None`` (or ``axes=None`` for several panels), creates a figure when none
is given, draws on the one given otherwise, and returns what it drew on. matplotlib is imported
inside the functions, so ``import mdnkit.plotting`` works (and stays cheap) without it; install it
with ``pip install mdnkit[plot]``.

Most functions picture ``p(y | x)`` over a line of inputs, so they need a model with one input
feature and a 1-D target; :func:`plot_conditional`, :func:`plot_pit` and :func:`plot_calibration`
only need the 1-D target. The model is anything with ``predict_dist`` (an
:class:`~mdnkit.MDNRegressor`).

Example:
    >>> from mdnkit import MDNRegressor
    >>> from mdnkit.datasets import make_inverted_sinusoid
    >>> X, y = make_inverted_sinusoid(300, random_state=0)
    >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
    ...                      validation_fraction=0.0, random_state=0).fit(X, y)
    >>> ax = plot_density(model, X, y)
    >>> ax.get_xlabel(), ax.get_ylabel()
    ('x', 'y')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:  # pragma: no cover - typing only: matplotlib stays an optional dependency
    from matplotlib.axes import Axes

__all__ = [
    "plot_calibration",
    "plot_components",
    "plot_conditional",
    "plot_density",
    "plot_history",
    "plot_modes",
    "plot_pit",
    "plot_samples",
    "plot_weights_and_scales",
]

# One palette for the whole module, so that figures placed side by side read the same.
_DATA_COLOR = "0.35"  # observed data: neutral grey, under the model's colours
_ACCENT = "#d95f02"  # samples, true values: a dark orange that stays visible on "Blues"
_DENSITY_CMAP = "Blues"  # sequential, monotone in lightness: prints well in grey
_DENSITY_LINE = "#08519c"  # dark end of "Blues"
_DENSITY_FILL = "#c6dbef"  # light end of "Blues"
_MODE_CMAP = "viridis_r"  # light (yellow) for faint modes, dark for strong ones
_FIGSIZE = (6.4, 4.4)


# ---------------------------------------------------------------------------- helpers
def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mdnkit.plotting needs matplotlib; install it with `pip install matplotlib` "
            "(or `pip install mdnkit[plot]`)."
        ) from error
    return plt


def _axes(ax: Axes | None, figsize: tuple[float, float] = _FIGSIZE) -> Axes:
    """``ax``, or the axes of a new figure when ``ax`` is None."""
    if ax is not None:
        return ax
    _, ax = _pyplot().subplots(figsize=figsize, layout="constrained")
    return ax


def _axes_array(axes: Any, n: int, name: str, figsize: tuple[float, float], sharex: bool) -> np.ndarray:
    """``n`` axes as a 1-D object array: the ones given, or a new column of panels."""
    if axes is None:
        _, created = _pyplot().subplots(n, 1, figsize=figsize, sharex=sharex, layout="constrained", squeeze=False)
        return created[:, 0]
    array = np.asarray(axes, dtype=object).ravel()
    if len(array) != n:
        raise ValueError(f"{name} needs {n} axes, got {len(array)}.")
    return array


def _style(ax: Axes, xlabel: str | None = None, ylabel: str | None = None, title: str | None = None,
           grid: bool = True) -> None:
    """The house style: labels, no top/right spines, a faint grid behind the data."""
    if xlabel is not None:
        ax.set_xlabel(xlabel)
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, fontsize="medium")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if grid:
        ax.grid(True, color="0.9", linewidth=0.8)
        ax.set_axisbelow(True)


def _component_colors(n: int) -> list:
    """Distinct colours for ``n`` components: tab10 up to 10, else evenly spaced viridis."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](k) for k in range(n)]
    return [colormaps["viridis"](t) for t in np.linspace(0.0, 0.95, n)]


def _check_model(model: Any, function: str, *, univariate_input: bool = True) -> None:
    """A fitted model with a 1-D target (and, if asked, one input feature), or a clear error."""
    if not hasattr(model, "predict_dist"):
        raise TypeError(f"{function} needs a fitted model with predict_dist (an MDNRegressor), got {type(model).__name__}.")
    if not hasattr(model, "n_outputs_"):
        raise ValueError(f"{function} needs a fitted model; call fit(X, y) first.")
    n_outputs = int(model.n_outputs_)
    n_features = int(model.n_features_in_)
    if n_outputs != 1:
        raise ValueError(
            f"{function} draws a 1-D target y, but the model was fitted on a {n_outputs}-D target; "
            "fit one model per target column to plot it."
        )
    if univariate_input and n_features != 1:
        raise ValueError(
            f"{function} draws p(y | x) against a 1-D input x, but the model was fitted on "
            f"{n_features} input features."
        )


def _as_vector(values: Any, name: str, function: str) -> np.ndarray:
    """A 1-D float array from ``(n,)`` or ``(n, 1)``; anything wider is an error."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"{function} needs a 1-D {name} (shape (n,) or (n, 1)), got shape {array.shape}; "
            "it draws one input against one target."
        )
    return array


def _rows(model: Any, values: Any, name: str, function: str) -> np.ndarray:
    """Model inputs ``(n, p)``; a vector is read as ``n`` values of a single feature."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim <= 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != int(model.n_features_in_):
        raise ValueError(
            f"{function}: {name} has shape {np.shape(values)}, the model expects rows of "
            f"{int(model.n_features_in_)} feature(s)."
        )
    return array


def _predict_dist(model: Any, X: Any) -> Any:
    """``model.predict_dist(X)`` without the novelty warning: a plot's grid reaches past the data
    on purpose, and the picture itself shows where the data is."""
    import warnings

    from mdnkit.novelty import NoveltyWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoveltyWarning)
        return model.predict_dist(X)


def _parts(model: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and standard deviations of every component at ``x (n,)``, each ``(n, K)``."""
    mixture = _predict_dist(model, x.reshape(-1, 1))
    weights = mixture.weights.numpy()  # [n, K]
    loc = mixture.component_mean[..., 0].numpy()  # [n, K]
    scale = mixture.component_stddev[..., 0].numpy()  # [n, K]
    return weights, loc, scale


def _span(weights: np.ndarray, loc: np.ndarray, scale: np.ndarray, width: float = 3.0) -> tuple[float, float]:
    """A y range holding every component that carries weight, ``loc ± width σ``.

    Components under 1 % weight are left out: an unused component may have a huge σ, which
    would otherwise squash the picture.
    """
    used = weights >= 0.01
    low = float(np.min(np.where(used, loc - width * scale, np.inf)))
    high = float(np.max(np.where(used, loc + width * scale, -np.inf)))
    return low, high


def _padded(values: np.ndarray, fraction: float = 0.05) -> tuple[float, float]:
    low, high = float(np.min(values)), float(np.max(values))
    pad = fraction * (high - low) if high > low else 1.0
    return low - pad, high + pad


def _scatter_data(ax: Axes, x: np.ndarray, y: np.ndarray, *, color: str = _DATA_COLOR, label: str = "data",
                  zorder: float = 2.0, max_alpha: float = 0.6) -> None:
    """Observed points: small and translucent, so that thousands of them do not hide the model."""
    alpha = float(np.clip(30.0 / math.sqrt(max(len(x), 1)), 0.08, max_alpha))
    ax.scatter(x, y, s=6, color=color, alpha=alpha, linewidths=0, label=label, zorder=zorder, rasterized=len(x) > 5000)


def _history(model_or_history: Any) -> list[Mapping[str, float]]:
    history = getattr(model_or_history, "history_", model_or_history)
    if not isinstance(history, Sequence) or not all(isinstance(r, Mapping) for r in history):
        raise TypeError(
            "plot_history needs a fitted model (with history_) or its history: a list of dicts "
            f"with 'epoch', 'train_nll' and 'val_nll'; got {type(model_or_history).__name__}."
        )
    if not history:
        raise ValueError("plot_history got an empty history: fit the model first.")
    return list(history)


def _pit_values(model: Any, X: Any, y: Any, function: str) -> np.ndarray:
    """``F(y_i | x_i)`` for each row: uniform on [0, 1] when the model is calibrated."""
    _check_model(model, function, univariate_input=False)
    y = _as_vector(y, "y", function)
    mixture = _predict_dist(model, X)
    if mixture.batch_shape[0] != len(y):
        raise ValueError(f"{function}: X has {mixture.batch_shape[0]} rows but y has {len(y)}.")
    return mixture.cdf(torch.as_tensor(y).reshape(-1, 1)).numpy()


# ---------------------------------------------------------------------------- densities
def plot_density(
    model: Any,
    X: Any = None,
    y: Any = None,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    resolution: int = 200,
    ax: Axes | None = None,
    *,
    cmap: str = _DENSITY_CMAP,
    gamma: float = 0.5,
    colorbar: bool = True,
) -> Axes:
    """Heatmap of the conditional density ``p(y | x)`` over a grid, with the data on top.

    The image covers exactly ``x_range × y_range`` (its ``extent``), split into
    ``resolution × resolution`` cells, each coloured by the density at its centre; a column of the
    image is therefore a density in ``y`` and sums to about 1 (times the cell height) when
    ``y_range`` holds the mass. This is the GPflow tutorial's picture.

    Args:
        model: A fitted model with one input feature and a 1-D target.
        X, y: Data to draw on top (optional); they also set the default ranges.
        x_range: ``(low, high)`` of the inputs; defaults to the range of ``X`` plus 5 %.
        y_range: ``(low, high)`` of the targets; defaults to the range of ``y`` plus 5 %, or
            without ``y`` to where the components with weight above 1 % put their mass.
        resolution: Cells along each axis.
        ax: Axes to draw on; a new figure when None.
        cmap: A sequential colour map.
        gamma: Colour by ``density ** gamma`` (the image data stay densities): the default 0.5
            keeps faint branches visible next to sharp peaks; 1 is linear.
        colorbar: Add a colour bar labelled ``p(y | x)``.

    Returns:
        The axes; the heatmap is ``ax.images[0]`` (rows are ``y``, columns ``x``).

    Raises:
        ValueError: For a model with several inputs or targets, or without ``X`` nor
            ``x_range``.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_density(model, X, y, x_range=(-10, 10), y_range=(-12, 12), resolution=50)
        >>> ax.images[0].get_extent(), ax.images[0].get_array().shape
        ([-10.0, 10.0, -12.0, 12.0], (50, 50))
    """
    _check_model(model, "plot_density")
    if not (isinstance(resolution, (int, np.integer)) and resolution >= 2):
        raise ValueError(f"resolution must be an integer >= 2, got {resolution!r}.")
    x_data = None if X is None else _as_vector(X, "X", "plot_density")
    y_data = None if y is None else _as_vector(y, "y", "plot_density")
    if x_data is not None and y_data is not None and len(x_data) != len(y_data):
        raise ValueError(f"plot_density: X has {len(x_data)} rows but y has {len(y_data)}.")
    if x_range is None:
        if x_data is None:
            raise ValueError("plot_density needs X or x_range to know where to draw the density.")
        x_range = _padded(x_data)
    x_low, x_high = map(float, x_range)
    # Cell centres, so that the image extent is exactly the requested ranges.
    x_cells = x_low + (np.arange(resolution) + 0.5) * (x_high - x_low) / resolution
    mixture = _predict_dist(model, x_cells.reshape(-1, 1))
    if y_range is None:
        if y_data is not None:
            y_range = _padded(y_data)
        else:
            y_range = _span(mixture.weights.numpy(), mixture.component_mean[..., 0].numpy(),
                            mixture.component_stddev[..., 0].numpy())
    y_low, y_high = map(float, y_range)
    if not (x_high > x_low and y_high > y_low):
        raise ValueError(f"x_range and y_range must be increasing, got {x_range!r} and {y_range!r}.")
    y_cells = y_low + (np.arange(resolution) + 0.5) * (y_high - y_low) / resolution
    value = torch.as_tensor(y_cells).reshape(-1, 1, 1)  # [R_y, 1, 1]: broadcasts over the R_x rows
    density = mixture.log_prob(value).exp().numpy()  # [R_y, R_x]

    from matplotlib.colors import PowerNorm

    ax = _axes(ax)
    image = ax.imshow(density, origin="lower", extent=(x_low, x_high, y_low, y_high), aspect="auto",
                      cmap=cmap, interpolation="nearest", norm=PowerNorm(gamma, vmin=0.0))
    if colorbar:
        ax.figure.colorbar(image, ax=ax, label="p(y | x)", pad=0.02)
    if x_data is not None and y_data is not None:
        _scatter_data(ax, x_data, y_data, color=_ACCENT, max_alpha=0.35)
    ax.set_xlim(x_low, x_high)
    ax.set_ylim(y_low, y_high)
    _style(ax, "x", "y", grid=False)
    return ax


def plot_samples(
    model: Any,
    X: Any,
    y: Any = None,
    n_samples: int = 1,
    ax: Axes | None = None,
    random_state: int | None = None,
) -> Axes:
    """Draws ``y ~ p(y | x)`` at each input, over the data: where the model puts its mass.

    Args:
        model: A fitted model with one input feature and a 1-D target.
        X: Inputs to sample at, ``(n,)`` or ``(n, 1)``.
        y: Observed targets at ``X`` to draw underneath (optional).
        n_samples: Draws per input.
        ax: Axes to draw on; a new figure when None.
        random_state: Seed for the draws.

    Returns:
        The axes; the samples are the last collection (``n * n_samples`` points).

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_samples(model, X, y, n_samples=2, random_state=0)
        >>> ax.collections[-1].get_offsets().shape
        (600, 2)
    """
    _check_model(model, "plot_samples")
    x = _as_vector(X, "X", "plot_samples")
    draws = model.sample(x.reshape(-1, 1), n_samples=n_samples, random_state=random_state)  # (n, S)
    ax = _axes(ax)
    if y is not None:
        y_data = _as_vector(y, "y", "plot_samples")
        if len(y_data) != len(x):
            raise ValueError(f"plot_samples: X has {len(x)} rows but y has {len(y_data)}.")
        _scatter_data(ax, x, y_data)
    x_rep = np.repeat(x, draws.shape[1])
    alpha = float(np.clip(30.0 / math.sqrt(max(draws.size, 1)), 0.1, 0.7))
    ax.scatter(x_rep, draws.ravel(), s=6, color=_ACCENT, alpha=alpha, linewidths=0, label="samples",
               zorder=3, rasterized=draws.size > 5000)
    _style(ax, "x", "y")
    ax.legend(loc="best", frameon=False, markerscale=2.5)
    return ax


# ---------------------------------------------------------------------------- components
def plot_components(
    model: Any,
    x_grid: Any,
    ax: Axes | None = None,
    *,
    data: tuple[Any, Any] | None = None,
) -> Axes:
    """Each component's mean ``μ_k(x)`` with a ``±σ_k(x)`` ribbon, faded by its weight ``π_k(x)``.

    Line width and opacity follow ``π_k(x)``, so a component that the mixture does not use at
    some ``x`` fades out there instead of drawing a confident line through empty space (the Flux
    tutorial's picture, where every component looks equally important).

    Args:
        model: A fitted model with one input feature and a 1-D target.
        x_grid: Inputs, ``(n,)`` or ``(n, 1)``; sorted before drawing.
        ax: Axes to draw on; a new figure when None.
        data: ``(X, y)`` to draw underneath (optional).

    Returns:
        The axes; component ``k`` is one ``LineCollection`` (the mean) and one
        ``PolyCollection`` (the ribbon), both with ``gid == f"component {k}"``.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_components(model, np.linspace(-10, 10, 100))
        >>> sorted({c.get_gid() for c in ax.collections})
        ['component 0', 'component 1', 'component 2']
    """
    from matplotlib.collections import LineCollection, PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    _check_model(model, "plot_components")
    x = np.sort(_as_vector(x_grid, "x_grid", "plot_components"))
    weights, loc, scale = _parts(model, x)  # each [n, K]
    ax = _axes(ax)
    if data is not None:
        _scatter_data(ax, _as_vector(data[0], "X", "plot_components"), _as_vector(data[1], "y", "plot_components"),
                      zorder=1.0)
    # Each segment / ribbon cell takes the mean weight of its two ends.
    segment_weight = 0.5 * (weights[1:] + weights[:-1])  # [n-1, K]
    handles = []
    for k, color in enumerate(_component_colors(weights.shape[1])):
        gid = f"component {k}"
        w = segment_weight[:, k]
        low, high = loc[:, k] - scale[:, k], loc[:, k] + scale[:, k]
        cells = np.stack([  # [n-1, 4, 2]: one quadrilateral per grid interval
            np.column_stack([x[:-1], low[:-1]]), np.column_stack([x[1:], low[1:]]),
            np.column_stack([x[1:], high[1:]]), np.column_stack([x[:-1], high[:-1]]),
        ], axis=1)
        ribbon = PolyCollection(cells, facecolors=[to_rgba(color, 0.22 * v) for v in w], edgecolors="none",
                                gid=gid, zorder=2)
        ax.add_collection(ribbon)
        points = np.column_stack([x, loc[:, k]])
        segments = np.stack([points[:-1], points[1:]], axis=1)  # [n-1, 2, 2]
        line = LineCollection(segments, colors=[to_rgba(color, 0.1 + 0.9 * v) for v in w],
                              linewidths=0.6 + 2.4 * w, gid=gid, zorder=3, capstyle="round")
        ax.add_collection(line)
        handles.append(Line2D([], [], color=color, linewidth=2.0, label=f"$k={k}$"))
    ax.autoscale_view()
    if data is None:  # without data, frame the components that carry weight
        ax.set_ylim(*_span(weights, loc, scale, width=1.5))
    _style(ax, "x", "y  (mean ± σ of each component)")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize="small",
              ncol=1 + (len(handles) > 12), title="width and\nopacity ∝ π_k(x)", title_fontsize="small")
    return ax


def plot_weights_and_scales(model: Any, x_grid: Any, axes: Any = None) -> np.ndarray:
    """Two panels against ``x``: the weights ``π_k(x)`` and the scales ``σ_k(x)`` (log axis).

    The σ axis is logarithmic, so a component with a huge σ where its weight is tiny (a symptom
    the TF1 tutorial names) shows as a climbing curve rather than flattening all the others.

    Args:
        model: A fitted model with one input feature and a 1-D target.
        x_grid: Inputs, ``(n,)`` or ``(n, 1)``; sorted before drawing.
        axes: Two axes to draw on (weights, scales); a new figure with two rows when None.

    Returns:
        A NumPy object array of the two axes; each holds one line per component of
        ``predict_dist`` (``K``, or ``M·K`` for an ensemble or the default noise mixture),
        component ``k`` labelled ``f"k={k}"`` in the same colour on both.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> top, bottom = plot_weights_and_scales(model, np.linspace(-10, 10, 100))
        >>> len(top.lines), len(bottom.lines), bottom.get_yscale()
        (3, 3, 'log')
    """
    _check_model(model, "plot_weights_and_scales")
    x = np.sort(_as_vector(x_grid, "x_grid", "plot_weights_and_scales"))
    weights, _, scale = _parts(model, x)
    top, bottom = _axes_array(axes, 2, "plot_weights_and_scales", figsize=(6.4, 5.6), sharex=True)
    for k, color in enumerate(_component_colors(weights.shape[1])):
        top.plot(x, weights[:, k], color=color, linewidth=1.8, label=f"k={k}")
        bottom.plot(x, scale[:, k], color=color, linewidth=1.8, label=f"k={k}")
    top.set_ylim(-0.02, 1.02)
    from matplotlib.ticker import FuncFormatter

    bottom.set_yscale("log")

    def minor_label(value: float, _: int) -> str:
        # Label 2 and 5 of each decade when the view spans few decades, nothing otherwise.
        low, high = bottom.get_ylim()
        lead = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:g}" if math.log10(high / low) < 2.5 and lead in (2, 5) else ""

    # Plain numbers (0.2, 0.5, 1) rather than 2×10⁻¹.
    bottom.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    bottom.yaxis.set_minor_formatter(FuncFormatter(minor_label))
    _style(top, None, "weight  π_k(x)")
    _style(bottom, "x", "scale  σ_k(x)  (log)")
    bottom.grid(True, which="minor", color="0.95", linewidth=0.5)
    top.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize="small")
    return np.array([top, bottom], dtype=object)


def plot_conditional(
    model: Any,
    x_values: Any,
    y_true: Any = None,
    axes: Any = None,
    y_range: tuple[float, float] | None = None,
    *,
    resolution: int = 400,
) -> np.ndarray:
    """The density ``p(y | x)`` at a few chosen inputs, one panel each, with the true ``y`` marked.

    Each panel fills the mixture density and draws each weighted component ``π_k N(y | μ_k, σ_k)``
    as a thin dashed line, so that one sees which component makes which bump (the Edward
    tutorial's picture); the true value is a vertical line.

    Args:
        model: A fitted model with a 1-D target.
        x_values: ``m`` inputs: ``(m,)`` for a one-feature model, else ``(m, p)``.
        y_true: ``m`` observed targets to mark (optional).
        axes: ``m`` axes to draw on; a new figure with ``m`` rows when None.
        y_range: ``(low, high)`` shared by every panel; defaults to where the components with weight
            above 1 % put their mass (and the true values).
        resolution: Points along ``y``.

    Returns:
        A NumPy object array of the ``m`` axes. In each, ``lines[0]`` is the mixture density, then
        one line per component, then (with ``y_true``) the vertical line labelled ``"true y"``.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> axes = plot_conditional(model, X[:2], y_true=y[:2])
        >>> len(axes), axes[0].lines[-1].get_label()
        (2, 'true y')
    """
    _check_model(model, "plot_conditional", univariate_input=False)
    rows = _rows(model, x_values, "x_values", "plot_conditional")
    m = len(rows)
    truth = None if y_true is None else _as_vector(y_true, "y_true", "plot_conditional")
    if truth is not None and len(truth) != m:
        raise ValueError(f"plot_conditional: {m} x_values but {len(truth)} y_true values.")
    mixture = _predict_dist(model, rows)
    weights = mixture.weights.numpy()  # [m, K]
    loc = mixture.component_mean[..., 0].numpy()  # [m, K]
    scale = mixture.component_stddev[..., 0].numpy()  # [m, K]
    if y_range is None:
        low, high = _span(weights, loc, scale)
        if truth is not None:
            low, high = min(low, float(truth.min())), max(high, float(truth.max()))
        y_range = (low, high)
    ys = np.linspace(float(y_range[0]), float(y_range[1]), resolution)
    density = mixture.log_prob(torch.as_tensor(ys).reshape(-1, 1, 1)).exp().numpy()  # [R, m]
    z = (ys[:, None, None] - loc) / scale  # [R, m, K]
    parts = weights * np.exp(-0.5 * z**2) / (math.sqrt(2 * math.pi) * scale)  # [R, m, K]

    axes = _axes_array(axes, m, "plot_conditional", figsize=(6.4, 1.2 + 1.5 * m), sharex=True)
    colors = _component_colors(weights.shape[1])
    for i, ax in enumerate(axes):
        ax.fill_between(ys, density[:, i], color=_DENSITY_FILL, linewidth=0, zorder=1)
        ax.plot(ys, density[:, i], color=_DENSITY_LINE, linewidth=2.0, label="p(y | x)", zorder=2)
        for k, color in enumerate(colors):  # on top of the total, which hides a lone component
            ax.plot(ys, parts[:, i, k], color=color, linewidth=1.0, linestyle=(0, (4, 2)), zorder=3,
                    label="weighted components" if k == 0 else "_nolegend_")
        if truth is not None:
            ax.axvline(truth[i], color="k", linewidth=1.5, label="true y", zorder=4)
        x_text = ", ".join(f"{v:.3g}" for v in rows[i])
        ax.set_ylim(bottom=0.0)
        ax.set_xlim(ys[0], ys[-1])
        _style(ax, "y" if i == m - 1 else None, "density")
        ax.set_title(f"x = {x_text}", loc="left", fontsize="medium")
    axes[0].legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=3, frameon=False, fontsize="small",
                   borderaxespad=0.1)
    return axes


def plot_modes(
    model: Any,
    x_grid: Any,
    ax: Axes | None = None,
    data: tuple[Any, Any] | None = None,
    *,
    show_heaviest: bool = True,
    min_relative_density: float = 0.01,
) -> Axes:
    """Every mode of ``p(y | x)`` against ``x``, sized and coloured by the density there.

    These are the exact local maxima (:meth:`~mdnkit.MDNRegressor.predict_modes`), not only the
    heaviest component's mean that PRML (and the TF2 tutorial) use as a stand-in; with
    ``show_heaviest`` that stand-in is overlaid as small crosses, to show where it goes wrong.

    Args:
        model: A fitted model with one input feature and a 1-D target.
        x_grid: Inputs, ``(n,)`` or ``(n, 1)``.
        ax: Axes to draw on; a new figure when None.
        data: ``(X, y)`` to draw underneath (optional).
        show_heaviest: Overlay the heaviest component's mean.
        min_relative_density: Leave out modes whose density is below this fraction of the
            highest mode at the same ``x``: a component with almost no weight still makes a
            (true, but invisible) local maximum far from the data. ``0`` draws them all.

    Returns:
        The axes; the modes are the collection with ``gid == "modes"`` (one point per mode), the
        heaviest-component means the one with ``gid == "heaviest component mean"``.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_modes(model, np.linspace(-10, 10, 50), data=(X, y))
        >>> [c.get_gid() for c in ax.collections][-2:]
        ['modes', 'heaviest component mean']
    """
    _check_model(model, "plot_modes")
    x = _as_vector(x_grid, "x_grid", "plot_modes")
    modes, log_density = model.predict_modes(x.reshape(-1, 1))  # (n, K) each, NaN / -inf padding
    found = np.isfinite(modes)
    if min_relative_density > 0:  # log_density is sorted, highest first, per row
        found &= log_density >= log_density[:, :1] + np.log(min_relative_density)
    xs = np.broadcast_to(x[:, None], modes.shape)[found]
    values, density = modes[found], np.exp(log_density[found])
    ax = _axes(ax)
    if data is not None:
        _scatter_data(ax, _as_vector(data[0], "X", "plot_modes"), _as_vector(data[1], "y", "plot_modes"), zorder=1.0)
    relative = density / density.max() if density.size else density
    order = np.argsort(density)  # densest on top
    points = ax.scatter(xs[order], values[order], s=6 + 40 * relative[order], c=density[order], cmap=_MODE_CMAP,
                        vmin=0.0, linewidths=0, label="modes", gid="modes", zorder=3)
    ax.figure.colorbar(points, ax=ax, label="p(mode | x)", pad=0.02)
    if show_heaviest:
        heaviest = _predict_dist(model, x.reshape(-1, 1)).heaviest_component_mean()[:, 0].numpy()
        ax.scatter(x, heaviest, s=14, marker="x", color=_ACCENT, linewidths=0.9,
                   label="heaviest component's mean", gid="heaviest component mean", zorder=4)
    _style(ax, "x", "y")
    ax.legend(loc="best", frameon=False, fontsize="small")
    return ax


# ---------------------------------------------------------------------------- training
def plot_history(model_or_history: Any, ax: Axes | None = None) -> Axes:
    """Training and validation NLL (nats per row) against the epoch.

    Args:
        model_or_history: A fitted model (its ``history_``) or that list of dicts with ``epoch``,
            ``train_nll`` and ``val_nll``.
        ax: Axes to draw on; a new figure when None.

    Returns:
        The axes; ``lines[0]`` is the training NLL and ``lines[1]`` the validation NLL (left out
        when no validation set was held out). The epoch whose weights were kept, when the model
        says so (``best_epoch_``), is a marker (a collection, not a line).

    Example:
        >>> history = [{"epoch": e, "train_nll": 2.0 / e, "val_nll": 2.2 / e} for e in range(1, 6)]
        >>> ax = plot_history(history)
        >>> [line.get_label() for line in ax.lines]
        ['training', 'validation']
    """
    history = _history(model_or_history)
    epochs = np.array([r["epoch"] for r in history], dtype=float)
    train = np.array([r["train_nll"] for r in history], dtype=float)
    val = np.array([np.nan if r.get("val_nll") is None else r["val_nll"] for r in history], dtype=float)
    ax = _axes(ax, figsize=(6.4, 3.6))
    colors = _component_colors(2)
    ax.plot(epochs, train, color=colors[0], linewidth=1.6, label="training")
    if np.isfinite(val).any():
        ax.plot(epochs, val, color=colors[1], linewidth=1.6, label="validation")
        best = getattr(model_or_history, "best_epoch_", None)
        if best is not None and best in epochs:
            index = int(np.flatnonzero(epochs == best)[0])
            ax.scatter([best], [val[index]], s=40, facecolors="none", edgecolors="k", linewidths=1.2, zorder=4,
                       label=f"kept (epoch {int(best)})")
    _style(ax, "epoch", "NLL (nats per row)")
    ax.legend(loc="upper right", frameon=False)
    return ax


# ---------------------------------------------------------------------------- calibration
def plot_pit(model: Any, X: Any, y: Any, ax: Axes | None = None, bins: int = 10) -> Axes:
    """Histogram of the probability integral transform ``u_i = F(y_i | x_i)`` on held-out data.

    A calibrated model gives uniform ``u``: a flat histogram at density 1. A U shape means the
    predicted distributions are too narrow, a hump too wide, a slope biased. The grey band is the
    95 % range of a bin's height for truly uniform ``u`` (binomial, normal approximation).

    Args:
        model: A fitted model with a 1-D target (any number of input features).
        X: Held-out inputs ``(n, p)``.
        y: Held-out targets ``(n,)``.
        ax: Axes to draw on; a new figure when None.
        bins: Equal-width bins on [0, 1].

    Returns:
        The axes; the bars (``ax.patches``) are densities: their heights sum to ``bins``
        (heights times the bin width ``1 / bins`` sum to 1).

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_pit(model, X, y, bins=5)
        >>> round(float(sum(bar.get_height() for bar in ax.patches)), 6)
        5.0
    """
    if not (isinstance(bins, (int, np.integer)) and bins >= 1):
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}.")
    pit = _pit_values(model, X, y, "plot_pit")
    n = len(pit)
    ax = _axes(ax, figsize=(5.2, 3.8))
    heights, _, _ = ax.hist(pit, bins=bins, range=(0.0, 1.0), density=True, color="#6baed6", edgecolor="white",
                            linewidth=1.0, label=f"PIT of {n} rows", zorder=1)
    p = 1.0 / bins
    half_width = 1.96 * math.sqrt(n * p * (1 - p)) / (n * p) if n else 0.0
    # A filled band (a collection), so that ax.patches holds exactly the histogram's bars.
    ax.fill_between([0.0, 1.0], max(0.0, 1 - half_width), 1 + half_width, color="0.3", alpha=0.15, linewidth=0,
                    zorder=2, label="95 % band if calibrated")
    ax.axhline(1.0, color="k", linewidth=1.2, linestyle="--", label="uniform", zorder=3)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.3 * max(float(np.max(heights, initial=0.0)), 1 + half_width))  # room for the legend
    _style(ax, "PIT  $F(y \\mid x)$", "density")
    ax.legend(loc="upper center", frameon=False, fontsize="small", ncol=3, handlelength=1.5, columnspacing=1.0)
    return ax


def plot_calibration(model: Any, X: Any, y: Any, ax: Axes | None = None, bins: int = 10) -> Axes:
    """Calibration curve: how often ``y`` falls below each predicted quantile, against its level.

    For levels ``τ = 0, 1/bins, ..., 1`` it plots the observed share of rows with
    ``F(y_i | x_i) <= τ`` (i.e. ``y_i`` below the predicted ``τ``-quantile) against ``τ``. A
    calibrated model lies on the diagonal; above it, the predicted quantiles are too high.

    Args:
        model: A fitted model with a 1-D target (any number of input features).
        X: Held-out inputs ``(n, p)``.
        y: Held-out targets ``(n,)``.
        ax: Axes to draw on; a new figure when None.
        bins: Number of intervals between the levels (``bins + 1`` points).

    Returns:
        The axes; ``lines[0]`` is the diagonal, ``lines[1]`` the observed frequencies.

    Example:
        >>> from mdnkit import MDNRegressor
        >>> from mdnkit.datasets import make_inverted_sinusoid
        >>> X, y = make_inverted_sinusoid(300, random_state=0)
        >>> model = MDNRegressor(n_components=3, hidden_sizes=(8,), max_epochs=5,
        ...                      validation_fraction=0.0, random_state=0).fit(X, y)
        >>> ax = plot_calibration(model, X, y, bins=4)
        >>> ax.lines[1].get_xdata().tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    if not (isinstance(bins, (int, np.integer)) and bins >= 1):
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}.")
    pit = _pit_values(model, X, y, "plot_calibration")
    levels = np.linspace(0.0, 1.0, bins + 1)
    observed = (pit[None, :] <= levels[:, None]).mean(axis=1)
    ax = _axes(ax, figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="0.4", linewidth=1.0, linestyle="--", label="calibrated")
    ax.plot(levels, observed, color=_pyplot().get_cmap(_DENSITY_CMAP)(0.8), linewidth=1.8, marker="o",
            markersize=4, label="model")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_aspect("equal")
    _style(ax, r"predicted quantile level $\tau$", r"observed frequency $P(y \leq q_\tau)$")
    ax.legend(loc="upper left", frameon=False)
    return ax
