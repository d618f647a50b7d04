"""``MDNRegressor``: a scikit-learn estimator of conditional densities p(y | x).

NumPy (or pandas) in, NumPy out, in the user's units: inputs and targets are standardised
inside, and every density, log-likelihood, quantile and sample is mapped back, the
log-densities including the log-Jacobian ``-Σ_j log σ_y,j`` of the target scaling.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from mdnkit import _validation
from mdnkit.base import ConditionalDensityMixin, cuda_devices, seed_from
from mdnkit.distributions import CovarianceType, GaussianMixture
from mdnkit.heads import COVARIANCE_TYPES, MDN
from mdnkit.networks import ACTIVATIONS, Activation
from mdnkit.training import Optimizer, TrainingConfig, TrainingInterrupted, train

_PREDICT_CHUNK = 65_536  # rows per forward pass at predict time: memory stays flat


class MDNRegressor(ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """Mixture Density Network regressor (Bishop, 1994): the whole distribution of ``y`` given ``x``.

    Args:
        n_components: Number of Gaussian components ``K``.
        hidden_sizes: Widths of the hidden layers of the MLP.
        activation: Hidden nonlinearity: ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``, ``"silu"``...
        covariance_type: ``"diagonal"``, ``"full"`` (Cholesky factor) or ``"isotropic"``; the same
            for 1-D targets.
        optimizer: ``"adam"`` (AdamW) or ``"lbfgs"`` (full batch, as the GPflow tutorial).
        learning_rate: Step size (for L-BFGS, its ``lr``, usually 1).
        batch_size: Rows per gradient step (shuffled each epoch); ``None`` uses the whole training
            set each step (full batch, as most MDN tutorials do). L-BFGS always uses the full batch.
        max_epochs: Upper bound on passes over the training data.
        validation_fraction: Share of the rows held out for early stopping, which restores the
            best weights; ``0.0`` trains on everything for ``max_epochs``.
        patience: Epochs without validation improvement before stopping; the learning rate is
            halved after half as many (a shorter wait starved fits in the defaults sweep).
            ``None`` waits about 1000 gradient steps, between 20 and 100 epochs: long in epochs
            for small data (one step each), short for large data (many steps each).
        weight_decay: Decoupled L2 penalty (AdamW).
        input_noise, target_noise: Standard deviation of the Gaussian noise added to the
            standardised inputs and targets at every step (noise regularisation).
        min_scale: Floor on every component's standard deviation, in standardised target units.
        gradient_clip: Maximum gradient norm (``None`` to turn clipping off).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"float32"`` or ``"float64"`` for the network.
        verbose: Show a progress bar with the train / validation NLL.
        random_state: Seed for the weights, the split, the shuffling and the noise.
        warm_start: Continue from the current weights when ``fit`` is called again.

    Attributes:
        module_: The fitted :class:`~mdnkit.heads.MDN` (works on standardised data).
        history_: One dict per epoch: ``epoch``, ``train_nll``, ``val_nll``, ``learning_rate``,
            ``time`` (NLLs in nats per row, original units).
        n_iter_: Epochs run. ``best_epoch_``: the epoch whose weights were kept.
        n_features_in_, n_outputs_: Input and target dimensions.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.uniform(-1, 1, (300, 1)); y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=300)
        >>> model = MDNRegressor(n_components=3, max_epochs=50, random_state=0).fit(X, y)
        >>> model.predict(X[:2]).shape, model.sample(X[:2], n_samples=5).shape
        ((2,), (2, 5))
    """

    def __init__(
        self,
        n_components: int = 5,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        covariance_type: CovarianceType = "diagonal",
        optimizer: Optimizer = "adam",
        learning_rate: float = 1e-3,
        batch_size: int | None = 256,
        max_epochs: int = 2000,
        validation_fraction: float = 0.1,
        patience: int | None = None,
        weight_decay: float = 0.0,
        input_noise: float = 0.0,
        target_noise: float = 0.0,
        min_scale: float = 1e-3,
        gradient_clip: float | None = 10.0,
        device: str = "auto",
        dtype: Literal["float32", "float64"] = "float32",
        verbose: bool = False,
        random_state: int | np.random.RandomState | None = None,
        warm_start: bool = False,
    ) -> None:
        self.n_components = n_components
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

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any) -> MDNRegressor:
        """Fit the network to rows ``X (n, p)`` and targets ``y (n,)`` or ``(n, d)``.

        Returns:
            ``self``.
        """
        self._check_params()
        feature_names = _feature_names(X)
        X = _validation.as_float_matrix(X, "X", allow_1d=False)
        y_in = y
        y = _validation.as_float_matrix(y, "y", allow_1d=True)
        _validation.check_lengths(X, y)
        if len(X) < 2:
            raise ValueError("X has 1 sample; fitting a conditional density needs at least 2 rows.")
        self._y_is_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        _validation.check_constant_targets(y)
        if hasattr(y_in, "columns"):
            self.target_names_ = [str(c) for c in y_in.columns]
        elif hasattr(self, "target_names_") and not self.warm_start:
            del self.target_names_
        n_val = self._n_validation(len(X))
        if self.warm_start and hasattr(self, "module_"):
            if X.shape[1] != self.n_features_in_ or y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"warm_start: the model was fitted on {self.n_features_in_} features and "
                    f"{self.n_outputs_} targets, got {X.shape[1]} and {y.shape[1]}."
                )
        else:
            self._fit_scalers(X, y)
            if feature_names is not None:
                self.feature_names_in_ = feature_names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        if y.shape[1] > 1 and self.n_components > len(X) - n_val:
            raise ValueError(
                f"n_components={self.n_components} is more than the {len(X) - n_val} training rows; "
                "use fewer components."
            )

        seed = seed_from(self.random_state)
        device = _resolve_device(self.device)
        dtype = torch.float32 if self.dtype == "float32" else torch.float64
        rows = np.random.default_rng(seed).permutation(len(X))
        val_rows, train_rows = rows[:n_val], rows[n_val:]
        x_all = torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=dtype, device=device)
        y_all = torch.as_tensor((y - self.y_mean_) / self.y_scale_, dtype=dtype, device=device)
        train_index = torch.as_tensor(train_rows, device=device)
        val_index = torch.as_tensor(val_rows, device=device)

        if not (self.warm_start and hasattr(self, "module_")):
            with torch.random.fork_rng(devices=cuda_devices()):
                torch.manual_seed(seed)
                self.module_ = self._build_module(X.shape[1], y.shape[1]).to(device=device, dtype=dtype)
            self.module_.initialize(y_all[train_index], random_state=seed)
            self.history_: list[dict[str, float]] = []
        self.module_.to(device=device, dtype=dtype)

        patience = self._patience(len(train_rows))
        generator = torch.Generator(device=device).manual_seed(seed)
        config = TrainingConfig(
            optimizer=self.optimizer,
            learning_rate=float(self.learning_rate),
            batch_size=self.batch_size,
            max_epochs=int(self.max_epochs),
            patience=patience,
            lr_decay_patience=max(1, patience // 2),
            weight_decay=float(self.weight_decay),
            gradient_clip=self.gradient_clip,
            input_noise=float(self.input_noise),
            target_noise=float(self.target_noise),
            verbose=bool(self.verbose),
        )
        result = train(
            self.module_,
            x_all[train_index], y_all[train_index],
            x_all[val_index] if n_val else None, y_all[val_index] if n_val else None,
            config=config, generator=generator, nll_offset=self._log_jacobian,
        )
        offset = self.history_[-1]["epoch"] if self.history_ else 0
        for record in result.history:
            record["epoch"] += offset
        self.history_ = self.history_ + result.history
        # Epochs of this call, rolled-back ones included (history's numbering skips those).
        self.n_iter_ = result.history[-1]["epoch"] - offset if result.history else 0
        self.best_epoch_ = result.best_epoch + offset
        if result.interrupted:
            warnings.warn(
                f"Training interrupted at epoch {self.n_iter_}; kept the weights of epoch "
                f"{self.best_epoch_ if n_val else self.n_iter_}.",
                TrainingInterrupted,
                stacklevel=2,
            )
        elif n_val and not result.stopped_early and self.n_iter_ - result.best_epoch < patience // 4:
            warnings.warn(
                f"MDNRegressor stopped at max_epochs={self.max_epochs} while the validation NLL was "
                "still improving; increase max_epochs (or learning_rate).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _check_params(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")

        for name in ("n_components", "max_epochs"):
            positive_int(name)
        for name in ("batch_size", "patience"):
            if getattr(self, name) is not None:
                positive_int(name)
        sizes = self.hidden_sizes
        if isinstance(sizes, numbers.Integral) or not all(
            isinstance(s, numbers.Integral) and s >= 1 for s in sizes
        ):
            raise ValueError(f"hidden_sizes must be a sequence of positive integers, got {sizes!r}.")
        choices = {
            "activation": tuple(ACTIVATIONS), "covariance_type": COVARIANCE_TYPES,
            "optimizer": get_args(Optimizer), "dtype": ("float32", "float64"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}.")
        for name in ("learning_rate", "min_scale"):
            if not (isinstance(getattr(self, name), numbers.Real) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}.")
        for name in ("weight_decay", "input_noise", "target_noise"):
            if not (isinstance(getattr(self, name), numbers.Real) and getattr(self, name) >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {getattr(self, name)!r}.")
        clip = self.gradient_clip
        if clip is not None and not (isinstance(clip, numbers.Real) and clip > 0):
            raise ValueError(f"gradient_clip must be a positive number or None, got {clip!r}.")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 <= self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")

    def _patience(self, n_train: int) -> int:
        """Early-stopping patience in epochs; by default about 1000 gradient steps."""
        if self.patience is not None:
            return int(self.patience)
        full_batch = self.batch_size is None or self.optimizer == "lbfgs"
        steps_per_epoch = 1 if full_batch else math.ceil(n_train / self.batch_size)
        return int(np.clip(math.ceil(1000 / steps_per_epoch), 20, 100))

    def _n_validation(self, n_rows: int) -> int:
        if self.validation_fraction == 0:
            return 0
        n_val = math.ceil(self.validation_fraction * n_rows)
        if n_rows - n_val < 2:
            minimum = next(n for n in range(3, 10**9) if n - math.ceil(self.validation_fraction * n) >= 2)
            raise ValueError(
                f"validation_fraction={self.validation_fraction} of {n_rows} rows leaves "
                f"{n_rows - n_val} for training; at least {minimum} rows are needed, or set "
                "validation_fraction=0."
            )
        return n_val

    def _fit_scalers(self, X: np.ndarray, y: np.ndarray) -> None:
        self.n_features_in_ = X.shape[1]
        self.n_outputs_ = y.shape[1]
        self.x_mean_ = X.mean(axis=0)
        x_scale = X.std(axis=0)
        self.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)  # constant features pass through
        self.y_mean_ = y.mean(axis=0)
        self.y_scale_ = y.std(axis=0)

    @property
    def _log_jacobian(self) -> float:
        """Shift from a standardised-unit NLL to an original-unit NLL: ``Σ_j log σ_y,j``."""
        return float(np.log(self.y_scale_).sum())

    def _build_module(self, n_features: int, n_outputs: int) -> MDN:
        return MDN(
            n_features, n_outputs, int(self.n_components), tuple(int(s) for s in self.hidden_sizes),
            self.activation, self.covariance_type, float(self.min_scale),
        )

    # ------------------------------------------------------------------ predicting
    def _check_X(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "module_")
        names = _feature_names(X)
        fitted_names = getattr(self, "feature_names_in_", None)
        if names is not None and fitted_names is not None and list(names) != list(fitted_names):
            raise ValueError(
                f"X has columns {list(names)}, but MDNRegressor was fitted with columns "
                f"{list(fitted_names)} (same names in the same order are needed)."
            )
        X = _validation.as_float_matrix(X, "X", allow_1d=False)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but MDNRegressor is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted with)."
            )
        return X

    def predict_dist(self, X: Any) -> GaussianMixture:
        """The conditional distribution of ``y`` for each row, in original units (float64, CPU).

        Returns:
            A :class:`~mdnkit.distributions.GaussianMixture` with batch shape ``(n,)`` and event
            shape ``(d,)`` (``(1,)`` for a 1-D target).
        """
        X = self._check_X(X)
        parameter = next(self.module_.parameters())
        x = torch.as_tensor((X - self.x_mean_) / self.x_scale_, dtype=parameter.dtype, device=parameter.device)
        self.module_.eval()
        with torch.no_grad():
            parts = [self.module_(chunk).to("cpu", torch.float64) for chunk in x.split(_PREDICT_CHUNK)]
        mixture = parts[0] if len(parts) == 1 else _concatenate(parts)
        return mixture.affine(torch.as_tensor(self.y_mean_), torch.as_tensor(self.y_scale_))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the fitted model to one safetensors file (weights + JSON), atomically."""
        from mdnkit.io import save_estimator

        save_estimator(self, path, overwrite=overwrite)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True  # score is a log-likelihood, not R²
        return tags


def _feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame whose columns are all strings, as scikit-learn records them."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(columns, dtype=object)


def _concatenate(parts: list[GaussianMixture]) -> GaussianMixture:
    logits = torch.cat([p.logits for p in parts])
    loc = torch.cat([p.loc for p in parts])
    if parts[0].scale_tril is not None:
        return GaussianMixture(logits, loc, scale_tril=torch.cat([p.scale_tril for p in parts]))
    return GaussianMixture(logits, loc, scale=torch.cat([p.scale for p in parts]))


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; use device='auto' or 'cpu'.")
    return resolved
