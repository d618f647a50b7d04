"""Synthetic conditional-density data sets with known ground truth.

Generators follow the scikit-learn ``make_*`` convention: they take ``n_samples``,
a noise level and ``random_state`` and return ``(X, y)`` as NumPy arrays with ``X`` of
shape ``(n_samples, n_features)``. Where the true conditional density ``p(y | x)`` of a
generator can be computed, a companion ``*_log_density(X, y)`` function returns it, so
that a fitted model's test negative log-likelihood can be compared with the oracle's.

Available generators:

* :func:`make_inverted_sinusoid` -- the one-dimensional inverse problem of Bishop (1994)
  as used by David Ha's MDN blog post and the Edward MDN tutorial (``n_samples=5000``) and
  the Flux tutorial (``n_samples=1000``); its exact conditional log density is
  :func:`inverted_sinusoid_log_density`.
* :func:`make_gpflow_sinusoid` and :func:`make_moons_conditional` -- the two data sets of the
  GPflow MDN notebook: a fixed design with Gaussian noise on both coordinates, so the exact
  conditional density is a mixture over the design points
  (:func:`gpflow_sinusoid_log_density`, :func:`moons_conditional_log_density`).
* :func:`make_prml_inverse` -- the inverse problem of Bishop's PRML (section 5.6) used by the
  TensorFlow 2 tutorial; uniform noise makes ``p(y | x)`` uniform on a union of intervals
  (:func:`prml_inverse_log_density`).
* :func:`make_robot_arm` -- inverse kinematics of a two-link arm (Bishop, 1994): joint angles
  from the hand's position, two solutions (elbow up / down); :func:`robot_arm_log_density`
  by 2-D quadrature.
* :func:`make_shape` -- odd 2-D shapes like the TensorFlow 1 tutorial's ("ring",
  "crossing", "fan", "gap"), with :func:`shape_log_density`.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "SHAPES",
    "gpflow_sinusoid_log_density",
    "inverted_sinusoid_log_density",
    "make_gpflow_sinusoid",
    "make_inverted_sinusoid",
    "make_moons_conditional",
    "make_prml_inverse",
    "make_robot_arm",
    "make_shape",
    "moons_conditional_log_density",
    "prml_inverse_log_density",
    "robot_arm_log_density",
    "shape_log_density",
]

# Support of y in the inverted-sinusoid problem: y ~ U(-10.5, 10.5).
_SINUSOID_Y_LOW = -10.5
_SINUSOID_Y_HIGH = 10.5
# max_u |f'(u)| = 7 * 0.75 + 0.5 for f(u) = 7 sin(0.75 u) + 0.5 u.
_SINUSOID_MAX_SLOPE = 5.75
# Composite Gauss-Legendre rule used for the normalising constant Z(x).
_GL_POINTS_PER_PANEL = 16
_GL_MIN_PANELS = 256
# Largest (number of x values) x (number of nodes) block evaluated at once.
_BLOCK_ELEMENTS = 1 << 22


def _sinusoid(y: np.ndarray) -> np.ndarray:
    """The forward map ``f(y) = 7 sin(0.75 y) + 0.5 y`` (same operation order as the seed)."""
    return np.sin(0.75 * y) * 7.0 + y * 0.5


def _check_random_state(
    random_state: int | np.random.Generator | np.random.RandomState | None,
) -> np.random.Generator | np.random.RandomState:
    """Return a NumPy random generator for ``random_state``.

    A :class:`numpy.random.RandomState` or :class:`numpy.random.Generator` is used as is
    (a ``RandomState`` reproduces the legacy ``np.random.*`` stream of the original
    tutorials); anything else (``None``, an int, a ``SeedSequence``) seeds
    :func:`numpy.random.default_rng`.
    """
    if isinstance(random_state, (np.random.RandomState, np.random.Generator)):
        return random_state
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(f"random_state must be None, an int or a NumPy generator, got {random_state!r}")
    return np.random.default_rng(random_state)


def make_inverted_sinusoid(
    n_samples: int = 5000,
    noise: float = 1.0,
    random_state: int | np.random.Generator | np.random.RandomState | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate the inverted-sinusoid inverse problem (Bishop, 1994; Edward MDN tutorial).

    The target is drawn first and the input is a noisy sinusoid of it::

        y ~ U(-10.5, 10.5)
        x = 7 sin(0.75 y) + 0.5 y + noise * eps,    eps ~ N(0, 1)

    so ``p(y | x)`` is multi-modal (up to ~5 branches for a given ``x``): a single
    Gaussian regression of ``y`` on ``x`` fails while a mixture density network fits it.
    The exact conditional log density is :func:`inverted_sinusoid_log_density`.

    The random draws are made in the tutorial's order (all of ``y`` with ``.uniform``,
    then all of the noise with ``.normal``), so passing
    ``random_state=np.random.RandomState(seed)`` reproduces the tutorial's
    ``np.random.seed(seed)`` data bit for bit.

    Args:
        n_samples: Number of samples ``n``.
        noise: Standard deviation of the additive Gaussian noise on ``x`` (``>= 0``);
            ``noise=0`` gives points exactly on the curve.
        random_state: ``None``, an int or a :class:`numpy.random.SeedSequence` (seeds
            :func:`numpy.random.default_rng`), or a :class:`numpy.random.Generator` /
            :class:`numpy.random.RandomState` used as is.

    Returns:
        ``(X, y)``: ``X`` of shape ``(n_samples, 1)`` (the input ``x``) and ``y`` of
        shape ``(n_samples,)``, both float64.

    Raises:
        ValueError: If ``n_samples`` is negative or ``noise`` is negative or not finite.

    Example:
        >>> X, y = make_inverted_sinusoid(1000, random_state=0)
        >>> X.shape, y.shape
        ((1000, 1), (1000,))
        >>> bool(np.all(np.abs(y) <= 10.5))
        True
        >>> X0, y0 = make_inverted_sinusoid(3, noise=0.0, random_state=0)
        >>> np.allclose(X0[:, 0], 7 * np.sin(0.75 * y0) + 0.5 * y0)
        True
    """
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, (bool, np.bool_)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0.0):
        raise ValueError(f"noise must be a finite number >= 0, got {noise}")
    rng = _check_random_state(random_state)
    n = int(n_samples)
    y = rng.uniform(_SINUSOID_Y_LOW, _SINUSOID_Y_HIGH, n)
    eps = rng.normal(size=n)
    x = _sinusoid(y) + eps * noise
    return x.reshape(n, 1), y


@functools.lru_cache(maxsize=16)
def _gauss_legendre_nodes(n_panels: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and log weights of a composite Gauss-Legendre rule on [-10.5, 10.5].

    Returns ``(f(u_j), log w_j)`` (the forward map at the nodes, not the nodes), as
    read-only arrays of length ``n_panels * 16``.
    """
    t, w = np.polynomial.legendre.leggauss(_GL_POINTS_PER_PANEL)
    edges = np.linspace(_SINUSOID_Y_LOW, _SINUSOID_Y_HIGH, n_panels + 1)
    half = 0.5 * np.diff(edges)
    mid = 0.5 * (edges[:-1] + edges[1:])
    nodes = (mid[:, None] + half[:, None] * t[None, :]).ravel()
    log_weights = np.log((half[:, None] * w[None, :]).ravel())
    f_nodes = _sinusoid(nodes)
    f_nodes.setflags(write=False)
    log_weights.setflags(write=False)
    return f_nodes, log_weights


def _inverted_sinusoid_log_normaliser(x: np.ndarray, noise: float) -> np.ndarray:
    """``log Z(x) = log ∫_{-10.5}^{10.5} N(x; f(u), noise^2) du`` for a 1-D array ``x``.

    Composite Gauss-Legendre quadrature evaluated in log space (log-sum-exp over the
    nodes), so ``log Z`` stays finite and accurate even where ``Z`` underflows. The
    panels are at most ``noise / max|f'|`` wide: the integrand's narrowest peak.
    """
    n_panels = max(
        _GL_MIN_PANELS,
        math.ceil((_SINUSOID_Y_HIGH - _SINUSOID_Y_LOW) * _SINUSOID_MAX_SLOPE / noise),
    )
    f_nodes, log_weights = _gauss_legendre_nodes(n_panels)
    out = np.empty(x.shape, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // f_nodes.size)
    for start in range(0, x.size, block):
        xb = x[start : start + block, None]
        a = -0.5 * np.square((xb - f_nodes[None, :]) / noise) + log_weights[None, :]
        m = a.max(axis=1, keepdims=True)
        out[start : start + block] = (m + np.log(np.exp(a - m).sum(axis=1, keepdims=True)))[:, 0]
    return out - math.log(noise) - 0.5 * math.log(2.0 * math.pi)


def inverted_sinusoid_log_density(X: ArrayLike, y: ArrayLike, noise: float = 1.0) -> np.ndarray:
    """True conditional log density ``log p(y | x)`` of :func:`make_inverted_sinusoid`.

    With ``f(y) = 7 sin(0.75 y) + 0.5 y``, Bayes' rule on the generator gives::

        p(y | x) = N(x; f(y), noise^2) 1[|y| <= 10.5] / Z(x),
        Z(x)     = ∫_{-10.5}^{10.5} N(x; f(u), noise^2) du

    (the uniform prior density 1/21 cancels). ``Z(x)`` has no closed form; it is
    computed with a fixed composite Gauss-Legendre rule (at least 4096 nodes, more for
    small ``noise``) in log space, accurate to ~1e-12 relative for inputs within the
    data's range. The result is ``-inf`` outside the support ``|y| > 10.5``.

    Args:
        X: Inputs ``x``, shape ``(n_samples, 1)`` or ``(n_samples,)`` (or anything that
            broadcasts with ``y`` once flattened to 1-D, e.g. a single ``x`` with a grid
            of ``y`` values).
        y: Targets, shape ``(n_samples,)``.
        noise: The generator's noise standard deviation (``> 0``).

    Returns:
        Array of shape ``(n_samples,)`` (the broadcast shape of ``x`` and ``y``) with
        ``log p(y | x)`` in nats.

    Raises:
        ValueError: If ``noise`` is not a finite positive number or ``X`` has more than
            one column.

    Example:
        >>> X, y = make_inverted_sinusoid(2000, random_state=0)
        >>> log_p = inverted_sinusoid_log_density(X, y)
        >>> log_p.shape
        (2000,)
        >>> grid = np.linspace(-10.5, 10.5, 20001)
        >>> density = np.exp(inverted_sinusoid_log_density([[2.0]], grid))
        >>> round(float(density.sum() * (grid[1] - grid[0])), 3)  # integrates to 1
        1.0
        >>> float(inverted_sinusoid_log_density([[2.0]], [11.0])[0])
        -inf
    """
    noise = float(noise)
    if not (math.isfinite(noise) and noise > 0.0):
        raise ValueError(f"noise must be a finite number > 0, got {noise}")
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim == 2:
        if X.shape[1] != 1:
            raise ValueError(f"X must have exactly one feature, got shape {X.shape}")
        x = X[:, 0]
    elif X.ndim <= 1:
        x = X.reshape(-1) if X.ndim == 1 else X
    else:
        raise ValueError(f"X must be 1-D or 2-D, got shape {X.shape}")
    log_z = _inverted_sinusoid_log_normaliser(np.atleast_1d(x).reshape(-1), noise).reshape(x.shape)
    z = (x - _sinusoid(y)) / noise
    log_lik = -0.5 * np.square(z) - math.log(noise) - 0.5 * math.log(2.0 * math.pi)
    out = np.asarray(log_lik - log_z, dtype=np.float64)
    return np.where(np.abs(y) > _SINUSOID_Y_HIGH, -np.inf, out)


# ----------------------------------------------------------------------------- shared checks

RandomState = int | np.random.Generator | np.random.RandomState | None


def _check_n_samples(n_samples: int) -> int:
    if not isinstance(n_samples, numbers.Integral) or isinstance(n_samples, (bool, np.bool_)):
        raise TypeError(f"n_samples must be an int, got {type(n_samples).__name__}")
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    return int(n_samples)


def _check_noise(noise: float, strictly_positive: bool = False) -> float:
    noise = float(noise)
    ok = noise > 0.0 if strictly_positive else noise >= 0.0
    if not (math.isfinite(noise) and ok):
        raise ValueError(f"noise must be a finite number {'>' if strictly_positive else '>='} 0, got {noise}")
    return noise


def _input_column(X: ArrayLike, n_features: int = 1) -> np.ndarray:
    """``X`` as float64 ``(n, n_features)``; a 1-D array is read as one feature."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim <= 1 and n_features == 1:
        return X.reshape(-1, 1)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise ValueError(f"X must have shape (n_samples, {n_features}), got {X.shape}")
    return X


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return np.squeeze(m, axis=axis) + np.log(np.sum(np.exp(a - m), axis=axis))


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def _design_log_density(
    x: np.ndarray, y: np.ndarray, design_x: np.ndarray, design_y: np.ndarray, noise: float
) -> np.ndarray:
    """``log p(y | x)`` when ``(x, y) = (a_i, b_i) + noise * (e1, e2)`` for a design point ``i``
    drawn uniformly and independent ``N(0, 1)`` errors::

        p(y | x) = sum_i w_i(x) N(y; b_i, noise^2),   w_i(x) ∝ N(x; a_i, noise^2)

    ``x`` and ``y`` are 1-D of equal length; evaluated in blocks in log space.
    """
    out = np.empty(x.shape, dtype=np.float64)
    block = max(1, _BLOCK_ELEMENTS // max(1, design_x.size))
    for start in range(0, x.size, block):
        xb, yb = x[start : start + block, None], y[start : start + block, None]
        log_wx = -0.5 * np.square((xb - design_x[None, :]) / noise)  # [B, n_design]
        log_wy = -0.5 * np.square((yb - design_y[None, :]) / noise)
        out[start : start + block] = _logsumexp(log_wx + log_wy, axis=1) - _logsumexp(log_wx, axis=1)
    return out - math.log(noise) - _LOG_SQRT_2PI


# ------------------------------------------------------------------ GPflow notebook's data sets


def _gpflow_sinusoid_design(n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(-2.0, 2.0, n_samples)
    return np.sin(4.0 * t) * 2.0 + t * 0.5, t


def make_gpflow_sinusoid(
    n_samples: int = 200, noise: float = 0.05, random_state: RandomState = None
) -> tuple[np.ndarray, np.ndarray]:
    """Generate the sinusoid of the GPflow MDN notebook: a fixed grid with noise on both axes.

    ::

        t_i = linspace(-2, 2, n_samples)
        x_i = 2 sin(4 t_i) + 0.5 t_i + noise * e_i,     e_i ~ N(0, 1)
        y_i = t_i + noise * d_i,                        d_i ~ N(0, 1)

    The noise on ``x`` is drawn first, then the noise on ``y``, as in the notebook, so
    ``random_state=np.random.RandomState(1)`` reproduces its ``np.random.seed(1)`` data.

    Args:
        n_samples: Number of grid points ``n``.
        noise: Standard deviation of the Gaussian noise on both coordinates (``>= 0``).
        random_state: Seed or NumPy generator (see :func:`make_inverted_sinusoid`).

    Returns:
        ``(X, y)``: ``X`` ``(n_samples, 1)`` and ``y`` ``(n_samples,)``, float64.

    Example:
        >>> X, y = make_gpflow_sinusoid(random_state=0)
        >>> X.shape, y.shape
        ((200, 1), (200,))
        >>> X0, y0 = make_gpflow_sinusoid(5, noise=0.0)
        >>> y0.tolist()
        [-2.0, -1.0, 0.0, 1.0, 2.0]
    """
    n = _check_n_samples(n_samples)
    noise = _check_noise(noise)
    rng = _check_random_state(random_state)
    design_x, design_y = _gpflow_sinusoid_design(n)
    x = design_x[:, None] + rng.standard_normal((n, 1)) * noise
    y = design_y[:, None] + rng.standard_normal((n, 1)) * noise
    return x, y[:, 0]


def gpflow_sinusoid_log_density(
    X: ArrayLike, y: ArrayLike, noise: float = 0.05, n_samples: int = 200
) -> np.ndarray:
    """True ``log p(y | x)`` of :func:`make_gpflow_sinusoid` (a row drawn at a random grid point).

    The grid point ``i`` is unknown given ``x``; Bayes' rule over the ``n_samples`` grid
    points gives the exact mixture::

        p(y | x) = sum_i w_i(x) N(y; t_i, noise^2),   w_i(x) ∝ N(x; f(t_i), noise^2)

    Args:
        X: Inputs ``(n, 1)`` or ``(n,)``.
        y: Targets ``(n,)``.
        noise: The generator's noise (``> 0``).
        n_samples: The generator's ``n_samples`` (it sets the grid).

    Returns:
        ``log p(y | x)`` of shape ``(n,)``.

    Example:
        >>> grid = np.linspace(-3, 3, 6001)
        >>> p = np.exp(gpflow_sinusoid_log_density(np.full(grid.size, 0.5), grid))
        >>> round(float(p.sum() * (grid[1] - grid[0])), 4)
        1.0
    """
    noise = _check_noise(noise, strictly_positive=True)
    x, y = np.broadcast_arrays(_input_column(X)[:, 0], np.asarray(y, dtype=np.float64).reshape(-1))
    design_x, design_y = _gpflow_sinusoid_design(_check_n_samples(n_samples))
    return _design_log_density(np.ascontiguousarray(x), np.ascontiguousarray(y), design_x, design_y, noise)


def _sklearn_seed(random_state: RandomState) -> int | np.random.RandomState | None:
    """scikit-learn takes ints and ``RandomState``; a ``Generator`` gives an int seed."""
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**31 - 1))
    return random_state


def _moons_design(n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The noise-free points of :func:`sklearn.datasets.make_moons`, before shuffling."""
    n_out = n_samples // 2
    n_in = n_samples - n_out
    theta_out = np.linspace(0.0, np.pi, n_out)
    theta_in = np.linspace(0.0, np.pi, n_in)
    a = np.concatenate([np.cos(theta_out), 1.0 - np.cos(theta_in)])
    b = np.concatenate([np.sin(theta_out), 1.0 - np.sin(theta_in) - 0.5])
    return a, b


def make_moons_conditional(
    n_samples: int = 200, noise: float = 0.05, random_state: RandomState = None
) -> tuple[np.ndarray, np.ndarray]:
    """The GPflow notebook's half moons: the first coordinate of ``make_moons`` as input, the second as target.

    Calls :func:`sklearn.datasets.make_moons` with ``shuffle=True`` as the notebook does, so
    the same integer ``random_state`` gives scikit-learn's points exactly.

    Args:
        n_samples: Number of points.
        noise: Standard deviation of the Gaussian noise on both coordinates (``>= 0``).
        random_state: Int, :class:`numpy.random.RandomState`, ``None``, or a
            :class:`numpy.random.Generator` (which draws an int seed for scikit-learn).

    Returns:
        ``(X, y)``: ``X`` ``(n_samples, 1)`` and ``y`` ``(n_samples,)``, float64.

    Example:
        >>> X, y = make_moons_conditional(random_state=0)
        >>> X.shape, y.shape
        ((200, 1), (200,))
    """
    from sklearn.datasets import make_moons

    n = _check_n_samples(n_samples)
    noise = _check_noise(noise)
    data, _ = make_moons(n_samples=n, shuffle=True, noise=noise, random_state=_sklearn_seed(random_state))
    return data[:, :1].astype(np.float64), data[:, 1].astype(np.float64)


def moons_conditional_log_density(
    X: ArrayLike, y: ArrayLike, noise: float = 0.05, n_samples: int = 200
) -> np.ndarray:
    """True ``log p(y | x)`` of :func:`make_moons_conditional`: a mixture over make_moons' design points.

    Example:
        >>> grid = np.linspace(-2, 3, 5001)
        >>> p = np.exp(moons_conditional_log_density(np.full(grid.size, 0.5), grid))
        >>> round(float(p.sum() * (grid[1] - grid[0])), 4)
        1.0
    """
    noise = _check_noise(noise, strictly_positive=True)
    x, y = np.broadcast_arrays(_input_column(X)[:, 0], np.asarray(y, dtype=np.float64).reshape(-1))
    design_x, design_y = _moons_design(_check_n_samples(n_samples))
    return _design_log_density(np.ascontiguousarray(x), np.ascontiguousarray(y), design_x, design_y, noise)


# ------------------------------------------------------------------ PRML inverse problem


def _prml_curve(t: np.ndarray) -> np.ndarray:
    """``g(t) = t + 0.3 sin(2 pi t)`` (the seed's operation order)."""
    return t + 0.3 * np.sin(2 * np.pi * t)


# g'(t) = 1 + 0.6 pi cos(2 pi t) vanishes at t1 and 1 - t1: g rises, falls, rises on [0, 1].
_PRML_T1 = math.acos(-1.0 / (0.6 * math.pi)) / (2.0 * math.pi)
_PRML_SEGMENTS = ((0.0, _PRML_T1), (_PRML_T1, 1.0 - _PRML_T1), (1.0 - _PRML_T1, 1.0))


def make_prml_inverse(
    n_samples: int = 4000, noise: float = 0.1, random_state: RandomState = None
) -> tuple[np.ndarray, np.ndarray]:
    """The inverse problem of Bishop's PRML (section 5.6), as the TensorFlow 2 tutorial inverts it.

    The tutorial's forward problem, then swapped::

        t ~ U(0, 1)
        u = t + 0.3 sin(2 pi t) + e,   e ~ U(-noise, noise)
        X = u (input),  y = t (target)

    For ``u`` near 0.5, three values of ``t`` fit: ``p(y | x)`` has up to three branches.
    Draws in the tutorial's order (all ``t``, then all ``e``); the tutorial's float32 cast
    is not applied.

    Args:
        n_samples: Number of points.
        noise: Half-width of the uniform noise (``>= 0``).
        random_state: Seed or NumPy generator (see :func:`make_inverted_sinusoid`).

    Returns:
        ``(X, y)``: ``X`` ``(n_samples, 1)`` and ``y`` ``(n_samples,)`` in ``[0, 1]``, float64.

    Example:
        >>> X, y = make_prml_inverse(noise=0.0, random_state=0)
        >>> X.shape, bool(np.allclose(X[:, 0], y + 0.3 * np.sin(2 * np.pi * y)))
        ((4000, 1), True)
    """
    n = _check_n_samples(n_samples)
    noise = _check_noise(noise)
    rng = _check_random_state(random_state)
    t = rng.uniform(0.0, 1.0, (n, 1))
    u = _prml_curve(t) + rng.uniform(-noise, noise, (n, 1))
    return u, t[:, 0]


def _prml_inverse_on_segment(level: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Solve ``g(t) = level`` for ``t`` in the monotone piece ``[lo, hi]`` (bisection, levels clipped)."""
    g_lo, g_hi = float(_prml_curve(np.float64(lo))), float(_prml_curve(np.float64(hi)))
    increasing = g_hi > g_lo
    level = np.clip(level, min(g_lo, g_hi), max(g_lo, g_hi))
    a = np.full(level.shape, lo)
    b = np.full(level.shape, hi)
    for _ in range(60):  # 2^-60 of a unit interval: exact to float64 rounding
        mid = 0.5 * (a + b)
        below = (_prml_curve(mid) < level) == increasing
        a = np.where(below, mid, a)
        b = np.where(below, b, mid)
    return 0.5 * (a + b)


def prml_inverse_log_density(X: ArrayLike, y: ArrayLike, noise: float = 0.1) -> np.ndarray:
    """True ``log p(y | x)`` of :func:`make_prml_inverse`, exactly, by summing over the branches.

    With a uniform prior on ``t`` and uniform noise, Bayes' rule gives a *uniform* conditional
    on the set of ``t`` whose curve value lies within ``noise`` of ``u``::

        p(t | u) = 1[0 <= t <= 1, |u - g(t)| <= noise] / Z(u),
        Z(u)     = |{t in [0, 1] : |u - g(t)| <= noise}|

    ``Z(u)`` is the summed length of that set on each of the three monotone pieces of ``g``,
    found by inverting ``g`` on each. The result is ``-inf`` outside the set (and everywhere
    for ``u`` no data can reach, where ``Z(u) = 0``).

    Example:
        >>> grid = np.linspace(0, 1, 100001)
        >>> p = np.exp(prml_inverse_log_density(np.full(grid.size, 0.5), grid))
        >>> round(float(p.sum() * (grid[1] - grid[0])), 3)
        1.0
    """
    noise = _check_noise(noise, strictly_positive=True)
    u, t = np.broadcast_arrays(_input_column(X)[:, 0], np.asarray(y, dtype=np.float64).reshape(-1))
    # Z depends on u alone: solve once per distinct u.
    u_unique, inverse = np.unique(u, return_inverse=True)
    z_unique = np.zeros(u_unique.shape)
    for lo, hi in _PRML_SEGMENTS:
        ends = [_prml_inverse_on_segment(u_unique + s * noise, lo, hi) for s in (-1.0, 1.0)]
        z_unique += np.abs(ends[1] - ends[0])
    z = z_unique[inverse.reshape(u.shape)]
    inside = (t >= 0.0) & (t <= 1.0) & (np.abs(u - _prml_curve(t)) <= noise) & (z > 0)
    with np.errstate(divide="ignore"):
        return np.where(inside, -np.log(np.where(z > 0, z, 1.0)), -np.inf)


# ------------------------------------------------------------------ robot arm


# Bishop (1994) and PRML figure 5.18: link lengths and the joint-angle box whose inverse is
# two-valued (elbow up / elbow down are theta2 and 2 pi - theta2, both inside the box).
ROBOT_ARM_LENGTHS = (0.8, 0.2)
ROBOT_ARM_THETA1 = (0.3, 1.2)
ROBOT_ARM_THETA2 = (0.5 * math.pi, 1.5 * math.pi)


def _robot_arm_forward(theta1: np.ndarray, theta2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    l1, l2 = ROBOT_ARM_LENGTHS
    return (
        l1 * np.cos(theta1) + l2 * np.cos(theta1 + theta2),
        l1 * np.sin(theta1) + l2 * np.sin(theta1 + theta2),
    )


def make_robot_arm(
    n_samples: int = 1000, noise: float = 0.02, random_state: RandomState = None
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse kinematics of a two-link planar arm (Bishop, 1994): joint angles from the hand's position.

    ::

        theta1 ~ U(0.3, 1.2),  theta2 ~ U(pi/2, 3 pi/2)
        hand   = (0.8 cos theta1 + 0.2 cos(theta1 + theta2),
                  0.8 sin theta1 + 0.2 sin(theta1 + theta2)) + noise * e,   e ~ N(0, I_2)

    Most hand positions are reached by two configurations (elbow up / down), so ``p(y | x)``
    is bimodal in 2-D. Draws: all ``theta1``, all ``theta2``, then the noise.

    Args:
        n_samples: Number of arm configurations.
        noise: Standard deviation of the Gaussian noise on the hand position (``>= 0``).
        random_state: Seed or NumPy generator (see :func:`make_inverted_sinusoid`).

    Returns:
        ``(X, y)``: hand positions ``X`` ``(n_samples, 2)`` and joint angles ``y``
        ``(n_samples, 2)``, float64.

    Example:
        >>> X, y = make_robot_arm(random_state=0)
        >>> X.shape, y.shape
        ((1000, 2), (1000, 2))
    """
    n = _check_n_samples(n_samples)
    noise = _check_noise(noise)
    rng = _check_random_state(random_state)
    theta1 = rng.uniform(*ROBOT_ARM_THETA1, n)
    theta2 = rng.uniform(*ROBOT_ARM_THETA2, n)
    hand = np.stack(_robot_arm_forward(theta1, theta2), axis=1) + rng.standard_normal((n, 2)) * noise
    return hand, np.stack([theta1, theta2], axis=1)


_GL8_POINTS = 8


@functools.lru_cache(maxsize=8)
def _robot_arm_nodes(noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Hand positions and log weights of a 2-D composite Gauss-Legendre rule over the angle box.

    Panels are at most ``noise / slope`` wide along each angle, ``slope`` the largest
    rate of change of the hand position: the narrowest peak of the integrand.
    """
    t, w = np.polynomial.legendre.leggauss(_GL8_POINTS)
    axes = []
    for (lo, hi), slope in ((ROBOT_ARM_THETA1, sum(ROBOT_ARM_LENGTHS)), (ROBOT_ARM_THETA2, ROBOT_ARM_LENGTHS[1])):
        edges = np.linspace(lo, hi, max(8, math.ceil((hi - lo) * slope / noise)) + 1)
        half, mid = 0.5 * np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
        axes.append(((mid[:, None] + half[:, None] * t).ravel(), (half[:, None] * w).ravel()))
    (n1, w1), (n2, w2) = axes
    theta1, theta2 = np.meshgrid(n1, n2, indexing="ij")
    hand = np.stack(_robot_arm_forward(theta1.ravel(), theta2.ravel()), axis=1)
    return hand, np.log(np.outer(w1, w2).ravel())


def robot_arm_log_density(X: ArrayLike, y: ArrayLike, noise: float = 0.02) -> np.ndarray:
    """True ``log p(theta | hand)`` of :func:`make_robot_arm`, the normaliser by 2-D quadrature.

    ::

        p(theta | x) = 1[theta in box] N(x; f(theta), noise^2 I) / Z(x),
        Z(x)         = ∫_box N(x; f(theta'), noise^2 I) d theta'

    ``Z`` has no closed form; a composite 8-point Gauss-Legendre rule with panels narrower
    than the integrand's peaks computes it in log space (about 1e-6 relative). Cost grows
    as ``1 / noise^2``; ``noise`` must be ``> 0`` (without noise there is no density).

    Args:
        X: Hand positions ``(n, 2)``.
        y: Joint angles ``(n, 2)``.
        noise: The generator's noise (``> 0``).

    Returns:
        ``log p(y | x)`` of shape ``(n,)``; ``-inf`` outside the angle box.
    """
    noise = _check_noise(noise, strictly_positive=True)
    X = _input_column(X, 2)
    y = np.asarray(y, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != 2 or len(y) != len(X):
        raise ValueError(f"y must have shape ({len(X)}, 2), got {y.shape}")
    hand, log_weights = _robot_arm_nodes(noise)
    # Z depends on the hand position alone: integrate once per distinct row.
    X_unique, inverse = np.unique(X, axis=0, return_inverse=True)
    log_z = np.empty(len(X_unique))
    block = max(1, _BLOCK_ELEMENTS // len(hand))
    for start in range(0, len(X_unique), block):
        xb = X_unique[start : start + block]
        # |x - h|^2 expanded: one matrix product instead of a [B, nodes, 2] temporary.
        sq = np.sum(xb**2, axis=1)[:, None] - 2.0 * xb @ hand.T + np.sum(hand**2, axis=1)[None, :]
        a = -0.5 * np.maximum(sq, 0.0) / noise**2 + log_weights[None]
        log_z[start : start + block] = _logsumexp(a, axis=1)
    fx = np.stack(_robot_arm_forward(y[:, 0], y[:, 1]), axis=1)
    log_lik = -0.5 * np.sum(np.square((X - fx) / noise), axis=1)
    inside = (
        (y[:, 0] >= ROBOT_ARM_THETA1[0]) & (y[:, 0] <= ROBOT_ARM_THETA1[1])
        & (y[:, 1] >= ROBOT_ARM_THETA2[0]) & (y[:, 1] <= ROBOT_ARM_THETA2[1])
    )
    return np.where(inside, log_lik - log_z[inverse.reshape(-1)], -np.inf)


# ------------------------------------------------------------------ odd 2-D shapes

SHAPES = ("ring", "crossing", "fan", "gap")


def make_shape(
    name: str, n_samples: int = 1000, noise: float = 0.05, random_state: RandomState = None
) -> tuple[np.ndarray, np.ndarray]:
    """Odd 2-D data sets like the TensorFlow 1 tutorial's, each testing one thing an MDN must do.

    * ``"ring"`` (two branches that merge at the edges): ``phi ~ U(0, 2 pi)``,
      ``r = 1 + noise * e``, ``(x, y) = (r cos phi, r sin phi)``.
    * ``"crossing"`` (two branches that cross): ``x ~ U(-1, 1)``, ``s = ±1`` with equal
      probability, ``y = s x + noise * e``.
    * ``"fan"`` (heteroscedastic): ``x ~ U(0, 1)``, ``y = x + noise (1 + 10 x) e``.
    * ``"gap"`` (no data for ``|x| < 0.3``): ``x = ±U(0.3, 1)``, ``y = sin(4 x) + noise * e``.

    Draws in the order listed (``e ~ N(0, 1)`` last).

    Args:
        name: One of :data:`SHAPES`.
        n_samples: Number of points.
        noise: Noise scale (``>= 0``).
        random_state: Seed or NumPy generator (see :func:`make_inverted_sinusoid`).

    Returns:
        ``(X, y)``: ``X`` ``(n_samples, 1)`` and ``y`` ``(n_samples,)``, float64.

    Raises:
        ValueError: For an unknown ``name``.

    Example:
        >>> X, y = make_shape("ring", 500, noise=0.0, random_state=0)
        >>> bool(np.allclose(X[:, 0] ** 2 + y ** 2, 1.0))
        True
    """
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {list(SHAPES)}")
    n = _check_n_samples(n_samples)
    noise = _check_noise(noise)
    rng = _check_random_state(random_state)
    if name == "ring":
        phi = rng.uniform(0.0, 2.0 * np.pi, n)
        r = 1.0 + noise * rng.standard_normal(n)
        x, y = r * np.cos(phi), r * np.sin(phi)
    elif name == "crossing":
        x = rng.uniform(-1.0, 1.0, n)
        sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
        y = sign * x + noise * rng.standard_normal(n)
    elif name == "fan":
        x = rng.uniform(0.0, 1.0, n)
        y = x + noise * (1.0 + 10.0 * x) * rng.standard_normal(n)
    else:  # gap
        sign = np.where(rng.uniform(size=n) < 0.5, -1.0, 1.0)
        x = sign * rng.uniform(0.3, 1.0, n)
        y = np.sin(4.0 * x) + noise * rng.standard_normal(n)
    return x.reshape(n, 1), y


def _normal_log_pdf(z: np.ndarray, loc: np.ndarray | float, scale: np.ndarray | float) -> np.ndarray:
    return -0.5 * np.square((z - loc) / scale) - np.log(scale) - _LOG_SQRT_2PI


def _ring_log_joint(x: np.ndarray, y: np.ndarray, noise: float) -> np.ndarray:
    """``log p(x, y)`` of the ring: polar change of variables; ``r < 0`` lands opposite, hence two terms."""
    r = np.hypot(x, y)
    with np.errstate(divide="ignore"):
        return np.logaddexp(_normal_log_pdf(r, 1.0, noise), _normal_log_pdf(-r, 1.0, noise)) - np.log(2 * np.pi * r)


def shape_log_density(name: str, X: ArrayLike, y: ArrayLike, noise: float = 0.05) -> np.ndarray:
    """True ``log p(y | x)`` of :func:`make_shape`.

    Closed form for ``"crossing"`` (two Gaussians), ``"fan"`` and ``"gap"`` (one Gaussian; for
    ``"gap"`` the formula is returned also inside the gap, where no data lies; for ``"fan"``
    it is NaN for ``x < 0``, where its scale would be negative). For ``"ring"``
    the joint density is exact and the marginal ``p(x)`` is a 1-D Gauss-Legendre quadrature.

    Args:
        name: One of :data:`SHAPES`.
        X: Inputs ``(n, 1)`` or ``(n,)``.
        y: Targets ``(n,)``.
        noise: The generator's noise (``> 0``).

    Returns:
        ``log p(y | x)`` of shape ``(n,)``.

    Example:
        >>> grid = np.linspace(-2, 2, 40001)
        >>> p = np.exp(shape_log_density("ring", np.full(grid.size, 0.3), grid))
        >>> round(float(p.sum() * (grid[1] - grid[0])), 4)
        1.0
    """
    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; choose one of {list(SHAPES)}")
    noise = _check_noise(noise, strictly_positive=True)
    x, y = np.broadcast_arrays(_input_column(X)[:, 0], np.asarray(y, dtype=np.float64).reshape(-1))
    if name == "crossing":
        return np.logaddexp(_normal_log_pdf(y, x, noise), _normal_log_pdf(y, -x, noise)) - math.log(2.0)
    if name == "fan":
        # Defined for x >= 0 only (the generator's support is [0, 1]); NaN below.
        scale = noise * (1.0 + 10.0 * x)
        return np.where(x >= 0.0, _normal_log_pdf(y, x, np.where(x >= 0.0, scale, 1.0)), np.nan)
    if name == "gap":
        return _normal_log_pdf(y, np.sin(4.0 * x), noise)
    # ring: log p(y | x) = log p(x, y) - log ∫ p(x, v) dv, p(x, v) even in v.
    reach = 1.0 + 12.0 * noise
    n_panels = max(64, math.ceil(reach / (0.25 * noise)))
    t, w = np.polynomial.legendre.leggauss(16)
    edges = np.linspace(0.0, reach, n_panels + 1)
    half, mid = 0.5 * np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    v = (mid[:, None] + half[:, None] * t).ravel()
    log_w = np.log(2.0 * (half[:, None] * w).ravel())
    # p(x) depends on x alone: integrate once per distinct x (a grid of y at one x is one integral).
    xs, inverse = np.unique(x, return_inverse=True)
    log_px = np.empty(xs.shape)
    block = max(1, _BLOCK_ELEMENTS // v.size)
    for start in range(0, xs.size, block):
        xb = xs[start : start + block, None]
        log_px[start : start + block] = _logsumexp(_ring_log_joint(xb, v[None, :], noise) + log_w[None], axis=1)
    return _ring_log_joint(x, y, noise) - log_px[inverse.reshape(x.shape)]
