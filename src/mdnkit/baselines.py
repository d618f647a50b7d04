"""Baselines with the MDN's estimator API, so that every comparison is one line.

Each class is a scikit-learn regressor whose ``predict_dist(X)`` returns a
:class:`~mdnkit.distributions.GaussianMixture` in the user's original units (float64, CPU, batch
``(n,)``, event ``(d,)``), so ``predict``, ``predict_std``, ``score_samples``, ``score``, ``sample``,
``predict_quantiles``, ``predict_interval`` and ``predict_modes`` come from
:class:`~mdnkit.base.ConditionalDensityMixin`, as for :class:`~mdnkit.MDNRegressor`. Inputs and
targets are standardised inside; log-densities include the log-Jacobian ``-Σ_j log σ_y,j``.

* :class:`ConditionalGMM`: a Gaussian mixture fitted to the joint ``[x, y]`` and conditioned
  exactly on ``x`` (the TensorFlow 1 tutorial's comparison; no network at all).
* :class:`HomoscedasticGaussianRegressor`: any regressor for the mean plus one constant variance
  per target (linear regression with Gaussian noise by default).
* :class:`GaussianNetworkRegressor`: a network predicting one Gaussian per input, mean and
  variance both depending on ``x`` (an MDN with ``K = 1``).
* :class:`MSENetworkRegressor`: a network trained on squared error, as in most tutorials' first
  experiment: on an inverse problem it predicts the conditional mean, between the branches.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (500, 1)); y = 2 * X[:, 0] + 0.1 * rng.normal(size=500)
    >>> linear = HomoscedasticGaussianRegressor().fit(X, y)
    >>> np.sqrt(linear.variance_).round(1), linear.predict([[0.5]]).round(1)
    (array([0.1]), array([1.]))
    >>> gmm = ConditionalGMM(n_components=3, random_state=0).fit(X, y)
    >>> gmm.predict_dist(X[:4])
    GaussianMixture(batch_shape=(4,), event_shape=(1,), n_components=3, covariance_type='full')
    >>> gmm.predict_input_dist([1.0]).mean.round(decimals=1)
    tensor([[0.5000]], dtype=torch.float64)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from mdnkit import _validation
from mdnkit.base import ConditionalDensityMixin, cuda_devices, resolve_device, seed_from
from mdnkit.distributions import CovarianceType, GaussianMixture
from mdnkit.estimator import MDNRegressor, _feature_names, default_patience, resolve_batch_size
from mdnkit.networks import ACTIVATIONS, MLP, Activation, FeatureEmbedding
from mdnkit.training import TrainingConfig, TrainingInterrupted, train

__all__ = [
    "ConditionalGMM",
    "GaussianNetworkRegressor",
    "HomoscedasticGaussianRegressor",
    "MSENetworkRegressor",
]

_VARIANCE_FLOOR = 1e-12  # in standardised units: a perfect fit still has a finite density


# ---------------------------------------------------------------------- shared input handling
def _fit_data(estimator: Any, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``X (n, p)`` and ``y (n,) | (n, d)``; record shapes, names and scalers.

    Sets ``n_features_in_``, ``n_outputs_``, ``_y_is_1d``, ``feature_names_in_`` (for DataFrames
    with string columns) and ``x_mean_``, ``x_scale_``, ``y_mean_``, ``y_scale_``.

    Returns:
        ``(X, y)`` as float64 arrays ``(n, p)`` and ``(n, d)``, in original units.
    """
    name = type(estimator).__name__
    if y is None:
        raise ValueError(f"{name} requires y to be passed, but the target y is None.")
    feature_names = _feature_names(X)
    X = _validation.as_float_matrix(X, "X", allow_1d=False)
    y = _validation.as_float_matrix(y, "y", allow_1d=True)
    _validation.check_lengths(X, y)
    if len(X) < 2:
        raise ValueError(f"X has 1 sample; fitting {name} needs at least 2 rows.")
    estimator._y_is_1d = y.ndim == 1
    y = y.reshape(len(y), -1)
    _validation.check_constant_targets(y)
    estimator.n_features_in_, estimator.n_outputs_ = X.shape[1], y.shape[1]
    if feature_names is not None:
        estimator.feature_names_in_ = feature_names
    elif hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    estimator.x_mean_ = X.mean(axis=0)
    x_scale = X.std(axis=0)
    estimator.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)  # constant features pass through
    estimator.y_mean_ = y.mean(axis=0)
    estimator.y_scale_ = y.std(axis=0)
    return X, y


def _predict_data(estimator: Any, X: Any, fitted: str) -> np.ndarray:
    """Validate ``X`` at predict time against what ``fit`` saw; ``(n, p)`` float64."""
    check_is_fitted(estimator, fitted)
    name = type(estimator).__name__
    names = _feature_names(X)
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if names is not None and fitted_names is not None and list(names) != list(fitted_names):
        raise ValueError(
            f"X has columns {list(names)}, but {name} was fitted with columns "
            f"{list(fitted_names)} (same names in the same order are needed)."
        )
    X = _validation.as_float_matrix(X, "X", allow_1d=False, stage="predict")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {name} is expecting {estimator.n_features_in_} "
            "features as input (the number it was fitted with)."
        )
    return X


def _single_gaussian(loc: np.ndarray | Tensor, scale: np.ndarray | Tensor) -> GaussianMixture:
    """A one-component mixture with diagonal ``scale``: ``loc (n, d)``, ``scale (n, d) | (d,)``."""
    loc = torch.as_tensor(loc, dtype=torch.float64)
    scale = torch.as_tensor(scale, dtype=torch.float64).expand_as(loc)
    return GaussianMixture(loc.new_zeros(len(loc), 1), loc.unsqueeze(-2), scale=scale.unsqueeze(-2))


def _regressor_tags(tags: Any) -> Any:
    tags.target_tags.single_output = True
    tags.target_tags.multi_output = True
    tags.regressor_tags.poor_score = True  # score is a log-likelihood, not R²
    return tags


# ---------------------------------------------------------------------- conditional GMM
class ConditionalGMM(ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """A Gaussian mixture over the joint ``[x, y]``, conditioned exactly on ``x``.

    scikit-learn's :class:`~sklearn.mixture.GaussianMixture` is fitted by EM to the standardised
    joint ``z = [x, y]``; then, with each component's mean and covariance split into ``x`` and
    ``y`` blocks,

    .. math:: p(y \\mid x) = \\sum_k \\pi_k(x) \\, \\mathcal N\\big(y \\mid
              \\mu_{y,k} + \\Sigma_{yx,k} \\Sigma_{xx,k}^{-1} (x - \\mu_{x,k}),\\;
              \\Sigma_{yy,k} - \\Sigma_{yx,k} \\Sigma_{xx,k}^{-1} \\Sigma_{xy,k}\\big),
              \\qquad \\pi_k(x) \\propto \\pi_k \\, \\mathcal N(x \\mid \\mu_{x,k}, \\Sigma_{xx,k}),

    computed by :meth:`GaussianMixture.condition`. The same joint gives ``p(x | y)``
    (:meth:`predict_input_dist`). Tied, diagonal and spherical covariances are turned into full
    ones; with the last two ``y`` is independent of ``x`` within a component, so only the weights
    depend on ``x``.

    Args:
        n_components: Number of joint components ``K``.
        covariance_type: ``"full"``, ``"tied"``, ``"diag"`` or ``"spherical"`` (scikit-learn's).
        reg_covar: Added to each covariance's diagonal, in standardised units.
        max_iter, n_init, random_state: Passed to scikit-learn's ``GaussianMixture``.

    Attributes:
        gmm_: The fitted :class:`sklearn.mixture.GaussianMixture` on the standardised joint.
        n_iter_, converged_: EM steps of the best initialisation, and whether it converged.
        n_features_in_, n_outputs_: Dimensions of ``x`` and ``y``.
        x_mean_, x_scale_, y_mean_, y_scale_: The standardisation.
    """

    def __init__(
        self,
        n_components: int = 40,
        covariance_type: Literal["full", "tied", "diag", "spherical"] = "full",
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> ConditionalGMM:
        """Fit the joint mixture to rows ``X (n, p)`` and targets ``y (n,)`` or ``(n, d)``.

        Returns:
            ``self``.
        """
        from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

        if self.covariance_type not in ("full", "tied", "diag", "spherical"):
            raise ValueError(
                "covariance_type must be one of ['full', 'tied', 'diag', 'spherical'], "
                f"got {self.covariance_type!r}."
            )
        X, y = _fit_data(self, X, y)
        joint = np.hstack([(X - self.x_mean_) / self.x_scale_, (y - self.y_mean_) / self.y_scale_])
        self.gmm_ = SklearnGaussianMixture(
            n_components=self.n_components, covariance_type=self.covariance_type,
            reg_covar=self.reg_covar, max_iter=self.max_iter, n_init=self.n_init,
            random_state=self.random_state,
        ).fit(joint)
        self.n_iter_, self.converged_ = self.gmm_.n_iter_, self.gmm_.converged_
        return self

    def joint_dist(self) -> GaussianMixture:
        """The fitted joint over standardised ``[x, y]``: batch ``()``, event ``(p + d,)``, full."""
        check_is_fitted(self, "gmm_")
        gmm, dim = self.gmm_, self.n_features_in_ + self.n_outputs_
        k = gmm.n_components
        # Every type as [K, D, D] (scikit-learn: full [K, D, D], tied [D, D], diag [K, D], spherical [K]).
        covariance = {
            "full": lambda c: c,
            "tied": lambda c: np.broadcast_to(c, (k, dim, dim)),
            "diag": lambda c: c[:, :, None] * np.eye(dim),
            "spherical": lambda c: c[:, None, None] * np.eye(dim),
        }[gmm.covariance_type](gmm.covariances_)
        return GaussianMixture(
            torch.as_tensor(np.log(gmm.weights_)),
            torch.as_tensor(gmm.means_),
            scale_tril=torch.linalg.cholesky(torch.as_tensor(np.array(covariance, dtype=np.float64))),
        )

    def predict_dist(self, X: Any) -> GaussianMixture:
        """``p(y | x)`` for each row, in original units: batch ``(n,)``, event ``(d,)``, ``K`` components."""
        X = _predict_data(self, X, "gmm_")
        p = self.n_features_in_
        x = torch.as_tensor((X - self.x_mean_) / self.x_scale_)  # [n, p]
        conditional = self.joint_dist().condition(range(p), x)
        return conditional.affine(torch.as_tensor(self.y_mean_), torch.as_tensor(self.y_scale_))

    def predict_input_dist(self, y: Any) -> GaussianMixture:
        """``p(x | y)`` for each target row (the inverse direction), in ``x``'s original units.

        Args:
            y: Targets ``(m,)`` for a model fitted on 1-D ``y``, else ``(m, d)``.

        Returns:
            A mixture with batch ``(m,)`` and event ``(p,)``.
        """
        check_is_fitted(self, "gmm_")
        y = _validation.as_float_matrix(y, "y", allow_1d=True, stage="predict")
        y = y.reshape(len(y), -1)
        if y.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {y.shape[1]} target columns, ConditionalGMM was fitted with {self.n_outputs_}.")
        p = self.n_features_in_
        targets = torch.as_tensor((y - self.y_mean_) / self.y_scale_)  # [m, d]
        conditional = self.joint_dist().condition(range(p, p + self.n_outputs_), targets)
        return conditional.affine(torch.as_tensor(self.x_mean_), torch.as_tensor(self.x_scale_))

    def __sklearn_tags__(self):
        return _regressor_tags(super().__sklearn_tags__())


# ---------------------------------------------------------------------- homoscedastic
class HomoscedasticGaussianRegressor(ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """A regressor for the mean plus Gaussian noise of one constant variance per target.

    .. math:: p(y \\mid x) = \\mathcal N\\big(y \\mid f(x), \\operatorname{diag}(\\sigma^2)\\big),
              \\qquad \\sigma_j^2 = \\frac1n \\sum_i (y_{ij} - f_j(x_i))^2,

    the maximum-likelihood variance given ``f`` (training residuals). With the default
    :class:`~sklearn.linear_model.LinearRegression` this is ordinary linear-Gaussian regression.

    Args:
        estimator: Any scikit-learn regressor (cloned, fitted on standardised ``x`` and ``y``; a
            1-D target is passed as 1-D). ``None`` means ``LinearRegression()``.

    Attributes:
        estimator_: The fitted clone.
        variance_: ``σ²`` per target, in original units, ``(d,)``.
    """

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any) -> HomoscedasticGaussianRegressor:
        """Fit the mean regressor, then the variance of its training residuals.

        Returns:
            ``self``.
        """
        from sklearn.linear_model import LinearRegression

        X, y = _fit_data(self, X, y)
        x = (X - self.x_mean_) / self.x_scale_
        targets = (y - self.y_mean_) / self.y_scale_  # [n, d]
        self.estimator_ = clone(LinearRegression() if self.estimator is None else self.estimator)
        self.estimator_.fit(x, targets[:, 0] if self._y_is_1d else targets)
        residuals = targets - self._predict_standardised(x)
        variance = np.maximum(np.mean(residuals**2, axis=0), _VARIANCE_FLOOR)
        self.variance_ = variance * self.y_scale_**2
        return self

    def _predict_standardised(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator_.predict(x), dtype=np.float64).reshape(len(x), self.n_outputs_)

    def predict_dist(self, X: Any) -> GaussianMixture:
        """``N(f(x), diag(σ²))`` per row, in original units: batch ``(n,)``, event ``(d,)``, ``K = 1``."""
        X = _predict_data(self, X, "estimator_")
        loc = self._predict_standardised((X - self.x_mean_) / self.x_scale_) * self.y_scale_ + self.y_mean_
        return _single_gaussian(loc, np.sqrt(self.variance_))

    def __sklearn_tags__(self):
        return _regressor_tags(super().__sklearn_tags__())


# ---------------------------------------------------------------------- heteroscedastic network
class GaussianNetworkRegressor(MDNRegressor):
    """A network predicting one Gaussian per input: heteroscedastic regression, an MDN with ``K = 1``.

    The mean and the (diagonal or full) covariance both depend on ``x``. It takes every
    :class:`~mdnkit.MDNRegressor` argument except ``n_components``, ``family`` and ``module``, fixed
    to 1, ``"gaussian"`` and the MLP (class attributes, so ``get_params``, ``clone`` and grid
    searches never see them).

    Example:
        >>> import numpy as np
        >>> X = np.linspace(-1, 1, 200)[:, None]; y = X[:, 0] * (1 + np.cos(9 * X[:, 0]))
        >>> model = GaussianNetworkRegressor(hidden_sizes=(16,), max_epochs=20, validation_fraction=0.0,
        ...                                  random_state=0).fit(X, y)
        >>> model.predict_dist(X[:3]).n_components, "n_components" in model.get_params()
        (1, False)
    """

    n_components = 1
    family = "gaussian"
    family_options = None
    module = module_kwargs = None  # the MLP backbone
    _mixes_noise_levels = False  # "auto" keeps one heteroscedastic Gaussian, not a mixture of networks

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        covariance_type: CovarianceType = "diagonal",
        optimizer: Literal["adam", "lbfgs"] = "adam",
        learning_rate: float = 3e-3,
        batch_size: int | Literal["auto"] | None = "auto",
        max_epochs: int = 2000,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        weight_decay: float = 0.0,
        input_noise: float | Literal["auto", "mixture", "select"] = "auto",
        target_noise: float | Literal["auto"] = 0.0,
        min_scale: float = 1e-3,
        gradient_clip: float | None = 10.0,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        verbose: bool = False,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
        n_estimators: int = 1,
        target_resolution: float | Sequence[float] | None = None,
        feature_embedding: FeatureEmbedding | Literal["auto"] | None = "auto",
        weight_averaging: float = 0.99,
    ) -> None:
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.covariance_type = covariance_type
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.weight_decay = weight_decay
        self.input_noise = input_noise
        self.target_noise = target_noise
        self.min_scale = min_scale
        self.gradient_clip = gradient_clip
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.random_state = random_state
        self.warm_start = warm_start
        self.n_estimators = n_estimators
        self.target_resolution = target_resolution
        self.feature_embedding = feature_embedding
        self.weight_averaging = weight_averaging


# ---------------------------------------------------------------------- squared-error network
class _MeanNetwork(nn.Module):
    """An MLP whose output is read as the mean of a unit-scale Gaussian, ``[*B, F] -> K = 1``.

    With the scale fixed at 1, ``-log p(y | x) = ½‖y - f(x)‖² + (D/2) log 2π``: maximum
    likelihood is least squares, so :func:`mdnkit.training.train` fits it unchanged.
    """

    def __init__(self, in_features: int, out_features: int, hidden_sizes: tuple[int, ...], activation: Activation):
        super().__init__()
        self.backbone = MLP(in_features, hidden_sizes, activation)
        self.linear = nn.Linear(self.backbone.out_features, out_features)

    def forward(self, x: Tensor) -> GaussianMixture:
        loc = self.linear(self.backbone(x)).unsqueeze(-2)  # [*B, 1, D]
        return GaussianMixture(loc.new_zeros(loc.shape[:-1]), loc, scale=loc.new_ones(()).expand(loc.shape))

    def training_losses(self, x: Tensor, y: Tensor, row_weights: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(nll [1], nll)``: a one-member model for :func:`~mdnkit.training.train`."""
        nll = -self(x).log_prob(y).mean()
        return nll.unsqueeze(0), nll.detach()


class MSENetworkRegressor(ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """A network trained on squared error, read as a Gaussian of constant variance.

    ``f(x)`` estimates the conditional mean ``E[y | x]``; on an inverse problem with several
    branches that mean lies between them, where there is hardly any data: the reason for an MDN.
    ``predict_dist`` is ``N(f(x), diag(σ²))`` with ``σ²`` the mean squared residual on the
    validation rows (on the training rows when fewer than 2 are held out).

    Args:
        hidden_sizes, activation, learning_rate, batch_size, max_epochs, validation_fraction,
        patience, weight_decay, gradient_clip, device, dtype, verbose, random_state: As for
            :class:`~mdnkit.MDNRegressor` (Adam; early stopping on the validation squared error).

    Attributes:
        module_: The fitted network (standardised units).
        residual_scale_: ``σ`` per target, in original units, ``(d,)``.
        history_: One dict per epoch: ``epoch``, ``train_mse``, ``val_mse`` (mean squared error
            per target in standardised units), ``learning_rate``, ``time``.
        n_iter_, best_epoch_: Epochs run and the epoch whose weights were kept.
        batch_size_: Rows per gradient step of the fit (``None``: full batch).
    """

    def __init__(
        self,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        learning_rate: float = 3e-3,
        batch_size: int | Literal["auto"] | None = "auto",
        max_epochs: int = 2000,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        weight_decay: float = 0.0,
        gradient_clip: float | None = 10.0,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        verbose: bool = False,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.hidden_sizes = hidden_sizes
        self.activation = activation
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.weight_decay = weight_decay
        self.gradient_clip = gradient_clip
        self.device = device
        self.dtype = dtype
        self.verbose = verbose
        self.random_state = random_state

    def _check_params(self) -> None:
        for name in ("max_epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if name != "max_epochs" and value is None or name == "batch_size" and value == "auto":
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                allowed = {"batch_size": ", 'auto' or None (full batch)", "patience": " or None"}.get(name, "")
                raise ValueError(f"{name} must be an integer >= 1{allowed}, got {value!r}.")
        sizes = self.hidden_sizes
        if isinstance(sizes, numbers.Integral) or not all(isinstance(s, numbers.Integral) and s >= 1 for s in sizes):
            raise ValueError(f"hidden_sizes must be a sequence of positive integers, got {sizes!r}.")
        for name, allowed in (("activation", tuple(ACTIVATIONS)), ("dtype", ("float32", "float64"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}.")
        if not (isinstance(self.learning_rate, numbers.Real) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}.")
        if not (isinstance(self.weight_decay, numbers.Real) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a number >= 0, got {self.weight_decay!r}.")
        clip = self.gradient_clip
        if clip is not None and not (isinstance(clip, numbers.Real) and clip > 0):
            raise ValueError(f"gradient_clip must be a positive number or None, got {clip!r}.")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 <= self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")

    def fit(self, X: Any, y: Any) -> MSENetworkRegressor:
        """Fit the network by least squares, then the residual variance.

        Returns:
            ``self``.
        """
        self._check_params()
        X, y = _fit_data(self, X, y)
        n_val = math.ceil(self.validation_fraction * len(X)) if self.validation_fraction else 0
        if len(X) - n_val < 2:
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {len(X)} rows leaves "
                f"{len(X) - n_val} for training; use more rows or validation_fraction=0."
            )
        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        dtype = torch.float32 if self.dtype == "float32" else torch.float64
        rows = np.random.default_rng(seed).permutation(len(X))
        val_rows, train_rows = rows[:n_val], rows[n_val:]
        x_all = torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=dtype, device=device)
        y_all = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=dtype, device=device)
        with torch.random.fork_rng(devices=cuda_devices()):
            torch.manual_seed(seed)
            self.module_ = _MeanNetwork(
                X.shape[1], y.shape[1], tuple(int(s) for s in self.hidden_sizes), self.activation
            ).to(device=device, dtype=dtype)

        self.batch_size_ = resolve_batch_size(self.batch_size, len(train_rows))
        patience = self.patience or default_patience(self.batch_size_, len(train_rows))
        config = TrainingConfig(
            learning_rate=float(self.learning_rate), batch_size=self.batch_size_,
            max_epochs=int(self.max_epochs), patience=patience, lr_decay_patience=max(1, patience // 2),
            weight_decay=float(self.weight_decay), gradient_clip=self.gradient_clip, verbose=bool(self.verbose),
        )
        d = y.shape[1]
        # With the offset the recorded NLL is ½ Σ_j (squared error)_j; 2 NLL / d is the MSE.
        result = train(
            self.module_,
            x_all[train_rows], y_all[train_rows],
            x_all[val_rows] if n_val else None, y_all[val_rows] if n_val else None,
            config=config, generator=torch.Generator(device=device).manual_seed(seed),
            nll_offset=-0.5 * d * math.log(2 * math.pi),
        )
        self.history_ = [
            {"epoch": r["epoch"], "train_mse": 2 * r["train_nll"] / d, "val_mse": 2 * r["val_nll"] / d,
             "learning_rate": r["learning_rate"], "time": r["time"]}
            for r in result.history
        ]
        self.n_iter_ = result.history[-1]["epoch"] if result.history else 0
        self.best_epoch_ = result.best_epoch

        held_out = val_rows if n_val >= 2 else train_rows
        with torch.no_grad():
            fitted = self.module_(x_all[held_out]).mean.to("cpu", torch.float64).numpy()
        standardised = (y[held_out] - self.y_mean_) / self.y_scale_
        variance = np.maximum(np.mean((standardised - fitted) ** 2, axis=0), _VARIANCE_FLOOR)
        self.residual_scale_ = np.sqrt(variance) * self.y_scale_

        if result.interrupted:
            warnings.warn(f"Training interrupted at epoch {self.n_iter_}.", TrainingInterrupted, stacklevel=2)
        elif n_val and not result.stopped_early and self.n_iter_ - result.best_epoch < patience // 4:
            warnings.warn(
                f"MSENetworkRegressor stopped at max_epochs={self.max_epochs} while the validation error "
                "was still improving; increase max_epochs (or learning_rate).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def predict_dist(self, X: Any) -> GaussianMixture:
        """``N(f(x), diag(σ²))`` per row, in original units: batch ``(n,)``, event ``(d,)``, ``K = 1``."""
        X = _predict_data(self, X, "module_")
        parameter = next(self.module_.parameters())
        x = torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=parameter.dtype, device=parameter.device)
        self.module_.eval()
        with torch.no_grad():
            loc = self.module_(x).mean.to("cpu", torch.float64).numpy()
        return _single_gaussian(loc * self.y_scale_ + self.y_mean_, self.residual_scale_)

    def __sklearn_tags__(self):
        return _regressor_tags(super().__sklearn_tags__())
