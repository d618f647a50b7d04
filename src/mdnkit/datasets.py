"""Synthetic conditional-density data sets with known ground truth.

Generators follow the scikit-learn ``make_*`` convention: they take ``n_samples``,
a noise level and ``random_state`` and return ``(X, y)`` as NumPy arrays with ``X`` of
shape ``(n_samples, n_features)``. Where the true conditional density ``p(y | x)`` of a
generator can be computed, a companion ``*_log_density(X, y)`` function returns it, so
that a fitted model's test negative log-likelihood can be compared with the oracle's.

Available generators:

* :func:`make_inverted_sinusoid` -- the one-dimensional inverse problem of Bishop (1994)
  as used by David Ha's MDN blog post and the Edward MDN tutorial; its exact conditional
  log density is :func:`inverted_sinusoid_log_density`.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "make_inverted_sinusoid",
    "inverted_sinusoid_log_density",
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
