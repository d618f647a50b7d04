"""``MDNRegressor``: a scikit-learn estimator of conditional densities p(y | x).

NumPy (or pandas) in, NumPy out, in the user's units: inputs and targets are standardised
inside, and every density, log-likelihood, quantile and sample is mapped back, the
log-densities including the log-Jacobian ``-Σ_j log σ_y,j`` of the target scaling.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import check_is_fitted

from mdnkit import _validation, distributed, rounding
from mdnkit._progress import fit_progress, stage
from mdnkit.base import ConditionalDensityMixin, cuda_devices, resolve_device, seed_from
from mdnkit.conformal import RecalibratedDistribution
from mdnkit.file_state import FileStateMixin
from mdnkit.io import save_estimator
from mdnkit.distributions import CovarianceType, GaussianMixture
from mdnkit.families import FAMILY_NAMES, FamilyName, make_family
from mdnkit.heads import COVARIANCE_TYPES, MDN, MDNEnsemble
from mdnkit.mixture import cat
from mdnkit.networks import ACTIVATIONS, FEATURE_EMBEDDINGS, Activation, FeatureEmbedding, build_backbone
from mdnkit.novelty import InputNovelty
from mdnkit.search import AUTO_N_COMPONENTS, successive_halving
from mdnkit.training import Optimizer, TrainingConfig, TrainingInterrupted, train

# Factor of the noise rule of thumb h = c n^(-1/(4+dims)) (Rothfuss et al. 2019 use c = 0.5 and 1;
# in benchmarks/uci.py c = 0.25 beat 0.1 and 0.5 on most sets, see the README).
NOISE_RULE_OF_THUMB = 0.25
# A searched input_noise (a word) with a validation split trains these multiples of
# n^(-1/(4+dims)) and keeps all of them as a mixture or the one with the best validation NLL: on
# UCI, 0.25 helped most sets, 0.1 was best on yacht, and any noise ruined naval (a smooth
# deterministic map: -7.2 nats without, -3.3 with 0.25), so no single level suits all.
NOISE_FACTORS = (0.0, 0.1, 0.25)
# A noise mixture weighs the levels' networks by their held-out likelihood, each credited
# this many pseudo-rows (a Dirichlet prior): weights fitted freely on 12 validation rows overfit
# (iris: 0.94 nats against 0.67 for equal weights), and equal weights cost yacht, whose targets
# are nearly deterministic, 0.5 nats. Of 0 to 50 pseudo-rows, 1 had the least mean excess over
# the best choice per set on ten small sets (0.01 nats; README, "Tiny data").
MIXTURE_PRIOR_ROWS = 1.0
# batch_size="auto": about this many gradient steps per epoch, within AUTO_BATCH_RANGE rows. On
# the small UCI sets (250-1300 training rows) batches of 64 beat 256 by 0.1-0.4 nats on concrete,
# energy and yacht, and lost 0.03 on Boston (more, and noisier, steps before early stopping);
# on large sets 256 keeps an epoch cheap.
AUTO_BATCH_STEPS = 32
AUTO_BATCH_RANGE = (64, 256)
_PREDICT_CHUNK = 65_536  # rows per forward pass at predict time: memory stays flat
DEAD_WEIGHT = 1e-3  # a component whose weight stays below this on every training input is dead


# feature_embedding="auto" embeds the inputs of tables with at least this many features.
AUTO_EMBEDDING_MIN_FEATURES = 3


class MDNRegressor(FileStateMixin, ConditionalDensityMixin, RegressorMixin, BaseEstimator):
    """Mixture Density Network regressor (Bishop, 1994): the whole distribution of ``y`` given ``x``.

    Args:
        n_components: Number of Gaussian components ``K``, or ``"auto"``: ``fit`` tries
            ``K`` in :data:`~mdnkit.search.AUTO_N_COMPONENTS` (1, 3, 5, 10) by successive
            halving on the early-stopping rows (:class:`~mdnkit.MDNRegressorCV` with every other
            setting as given, ``hidden_sizes`` included) and keeps the winner, trained on to
            convergence (for an ensemble, the search runs single networks and the ensemble is
            then fitted with the chosen ``K``); about 1.5-4 times the time of a fit with a fixed ``K`` (1.6x on the
            inverted sinusoid, 2-4x on three small UCI sets in ``benchmarks/selection_cost.py``). The
            chosen ``K`` is ``n_components_``, the search ``selection_results_``.
        hidden_sizes: Widths of the hidden layers of the MLP.
        activation: Hidden nonlinearity: ``"relu"``, ``"tanh"``, ``"elu"``, ``"gelu"``, ``"silu"``...
        covariance_type: ``"diagonal"``, ``"full"`` (Cholesky factor) or ``"isotropic"``; the same
            for 1-D targets.
        optimizer: ``"adam"`` (AdamW) or ``"lbfgs"`` (full batch, as the GPflow tutorial).
        learning_rate: Step size (for L-BFGS, its ``lr``, usually 1). ``3e-3`` did better than
            ``1e-3`` or as well on the seven UCI sets tried (one MDN, 1-3 splits each; README).
        batch_size: Rows per gradient step (shuffled each epoch); ``None`` uses the whole training
            set each step (full batch, as most MDN tutorials do). ``"auto"``: about 32 steps per
            epoch, between 64 and 256 rows (64 below 2080 training rows after the validation
            split, 256 from 8192); the size used is ``batch_size_``. L-BFGS always uses the full batch.
        max_epochs: Upper bound on passes over the training data.
        validation_fraction: Share of the rows held out for early stopping, which restores the
            best weights; ``0.0`` trains on everything for ``max_epochs``.
        patience: Epochs without validation improvement before stopping; the learning rate is
            halved after half as many (a shorter wait starved fits in the defaults sweep).
            ``None`` waits about 1000 gradient steps, between 20 and 100 epochs: long in epochs
            for small data (few steps each), short for large data (many steps each).
        weight_decay: Decoupled L2 penalty (AdamW).
        input_noise, target_noise: Standard deviation of the Gaussian noise added to the
            standardised inputs and targets at every step (noise regularisation, Rothfuss et
            al., 2019), scaled by the rule of thumb ``r = n^(-1 / (4 + p + d))`` for ``n``
            training rows, ``p`` inputs and ``d`` targets (0.63 for 1000 rows, 10 inputs, 1 target).
            A word searches the noise: networks at the levels ``0, 0.1 r, 0.25 r``, trained in one
            batched pass (``noise_selection_``), since on UCI sets
            noise gained up to 0.3 nats on small sets and lost 4 nats on naval, a deterministic
            map, so no single level suits all. ``"select"`` keeps the network with the best
            validation NLL (an ensemble is then fitted at that level). ``"mixture"`` trains two
            networks per level, six in one batched pass, each pair of levels' networks on its own
            validation rows, and keeps all six as one mixture (``member_weights_``, from each
            network's likelihood of its own validation rows by :func:`mixture_weights`), at six
            networks' prediction cost: it needs ``n_estimators=1``, a fixed ``n_components`` and a
            validation split.
            ``"auto"`` is ``"mixture"`` where that applies and ``warm_start`` is off, else
            ``"select"``; without a validation split ``"auto"`` and ``"select"`` are ``0.25 r``
            (``"mixture"`` refuses). ``target_noise="auto"``
            with a searched input noise and a validation split joins that search: each level is
            both the input and the target noise of one network, so 0 stays a choice (a fixed
            ``0.25 r`` of target noise cost 1.7 nats on yacht, whose targets are nearly
            deterministic); otherwise it is ``0.25 r``, and 0 for a family whose support noise
            would leave. The levels used are ``input_noise_`` and ``target_noise_``.
        min_scale: Floor on every component's standard deviation, in standardised target units.
        gradient_clip: Maximum gradient norm (``None`` to turn clipping off).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        dtype: ``"float32"`` or ``"float64"`` for the network.
        verbose: Show a progress bar with the train / validation NLL.
        random_state: Seed for the weights, the split, the shuffling and the noise.
        warm_start: Continue from the current weights when ``fit`` is called again (one
            network or an ensemble; not a noise mixture, which ``"auto"`` then does not make).
        n_estimators: Number ``M`` of MDNs in a deep ensemble (Lakshminarayanan et al. 2017).
            The members start from independent random weights (and the same data-driven head
            start), each is trained on its own NLL, all together in batched layers (one optimiser
            step updates every member; gradients are clipped member by member). Each member
            holds out its own ``validation_fraction`` of the rows (member 0 those of a single
            fit with the same seed) and trains on the rest, so every row trains most members;
            it keeps its own best weights, learning-rate schedule and early stopping on its own
            validation NLL, as if trained alone (exactly so with full batches; minibatches are
            one shuffle of all rows, each member taking its own rows of each). ``history_``
            records the ensemble's NLL, the validation one out of bag (each held-out row scored
            by the members that held it out). The ensemble predicts the equally weighted mixture
            of its members' mixtures (``M·K`` components, weights ``π_mk / M``). ``1`` is a
            single MDN.
        family: The components' family: ``"gaussian"`` (with ``covariance_type``),
            ``"student_t"`` (heavy tails: learned degrees of freedom above 2 per component and
            dimension), ``"laplace"`` (exponential tails), ``"lognormal"`` (targets ``> 0``),
            ``"logit_normal"`` (targets in the declared ``(low, high)`` of ``family_options``,
            ``(0, 1)`` by default) or ``"von_mises"`` (angles in radians; ``predict`` gives the
            circular mean, ``predict_std`` the circular standard deviation). All but Gaussian have
            independent dimensions. Each family standardises the target only as far as its
            support allows (:attr:`~mdnkit.family.Family.target_transform`: positive targets
            are scaled, never shifted; bounded ones mapped onto ``(0, 1)`` by their declared
            bounds; angles left alone), and ``fit`` refuses targets outside the support, naming
            the rows. Modes, highest-density intervals and the closed-form CRPS are Gaussian only
            so far; other families raise a clear error there.
        family_options: The family's own settings, e.g. ``{"low": 0, "high": 100}`` for
            ``"logit_normal"`` (numbers, or one per target), ``{"min_df": 2.0}`` for
            ``"student_t"``; ``None`` for the defaults.
        module: Your own backbone instead of the MLP: an ``nn.Module`` class (or any factory)
            called as ``module(**module_kwargs)``, mapping standardised inputs ``[N, *shape]`` to
            features ``[N, H]`` (``H`` is found by a dry run); ``X`` may then have any shape
            ``(n, *shape)``, e.g. windows of a time series ``(n, T, F)`` for a GRU. Each input
            element is standardised by its mean and spread over the rows. ``hidden_sizes`` and
            ``activation`` are then unused. Ensembles hold ``M`` independent copies (vmapped
            where torch can, otherwise called one by one). The model file keeps the weights and
            the class's name only: ``mdnkit.load(path, module=MyNet)`` rebuilds it.
        module_kwargs: Keyword arguments of ``module`` (JSON values, so the file can keep them).
        target_resolution: For targets recorded on a grid (integer scores, values rounded to
            0.5): the grid step ``h``, one number or one per target column. Training, early
            stopping, ``history_`` and :meth:`score` then use the probability of each recorded
            value's bin, ``P(y) = F(y + h/2) - F(y - h/2)`` for the mixture's cdf ``F`` (a product
            over columns within each component), not the density at ``y``, which a continuous model
            of rounded data can raise without bound by spiking at the recorded values.
            :meth:`predict_dist` still returns the continuous mixture. Gaussian (diagonal or
            isotropic covariance, or full for one target), Laplace and log-normal families. With
            ``None`` (the default) ``fit`` warns (:class:`~mdnkit.rounding.RoundedTargetWarning`)
            when a target column has at most one distinct value per 5 rows, all on a regular grid
            (:func:`~mdnkit.rounding.find_grid`).

        feature_embedding: ``"periodic"``: each standardised input enters the MLP beside 16
            learned periodic features of it (:class:`~mdnkit.networks.PeriodicEmbedding`, PLR of
            Gorishniy et al. 2022), which let it fit sharp or repeated-value features as trees
            do; ``None``: the raw standardised inputs alone. ``"auto"`` (the default) is
            ``"periodic"`` for tables of at least :data:`AUTO_EMBEDDING_MIN_FEATURES` (3) features
            and ``None`` for one or two (on UCI sets of 4-13 features the embedding gained
            0.1-0.4 nats on yacht, energy, concrete and power, at about the same fit time; on
            real sets of 150-400 rows and one or two features it lost 0.04-0.13 nats on four of
            six; README, Defaults). Only for the built-in MLP: with ``module``, ``"auto"`` is
            ``None``.
        weight_averaging: Decay per gradient step of an exponential moving average of the
            weights (Polyak averaging), which validation scores, early stopping keeps and the
            model holds in the end; it spans about ``1 / (1 - weight_averaging)`` steps (100 by
            default). ``0.0``: the weights of the last step, as before 2026-12-08. Noise and
            small batches make the weights jitter from step to step; on UCI splits 0-4 the
            average gained 0.015-0.085 nats of mean test NLL on each of seven sets and 0.19 on
            naval, lost 0.007 on protein, at about the same fit time (README, Defaults). Adam only: L-BFGS ignores it.

    Attributes:
        module_: The fitted :class:`~mdnkit.heads.MDN`, or :class:`~mdnkit.heads.MDNEnsemble` for
            ``n_estimators > 1`` or a noise mixture (the default; works on standardised data).
        history_: One dict per epoch: ``epoch``, ``train_nll``, ``val_nll``, ``learning_rate``,
            ``time`` (NLLs in nats per row, original units; for ``n_estimators > 1`` of the
            mixture of the members that train on each row, on the batches before each step,
            and of those that hold it out for ``val_nll``).
        n_iter_: Epochs run. ``best_epoch_``: the epoch whose weights were kept.
        train_state_: The training loop's :class:`~mdnkit.training.TrainState` (optimiser moments,
            schedules, early-stopping record, random stream): ``warm_start=True`` continues it
            exactly. Not saved by :meth:`save`; a loaded model's warm start begins a new run.
        batch_size_: Rows per gradient step of the last fit (``None``: full batch).
        n_features_in_, n_outputs_: Input and target dimensions.
        novelty_: :class:`~mdnkit.novelty.InputNovelty` fitted on the standardised inputs of the
            last ``fit`` (``None`` for a model loaded from a file saved without one); see
            :meth:`novelty_score`.
        n_components_: Components per member now (``n_components``, or the chosen number for
            ``"auto"``, until :meth:`prune_components` removes some).
        selection_results_: With ``n_components="auto"``: the search's
            :attr:`~mdnkit.MDNRegressorCV.cv_results_` (not saved by :meth:`save`).
        noise_selection_: With a searched ``input_noise`` (a word) and a validation split:
            ``{level: best validation NLL}`` of the trial fits (not saved by :meth:`save`).
        member_weights_: For a noise mixture: ``[M]``, the weight of each network in the model's
            mixture (its noise level in ``input_noise_``, a tuple: two networks per level by default).
        validation_nll_: For a noise mixture: the weighted mixture's NLL of its validation rows
            (each network at its own best epoch; the weights were fitted on these rows, so it is
            optimistic; with several networks per level, the mean over the replicates of each
            one's mixture on its own rows). The curve in ``history_`` is the search's, its
            networks equally weighted.
        validation_rows_: ``(X_val, y_val)``, the rows a single network held out for early
            stopping, as checked arrays; :meth:`calibrate` without rows uses them (not saved). Not
            kept for the default noise mixture, whose two networks per level hold out different rows.
        component_weight_mean_, component_weight_max_: Mean and maximum over the rows given to
            ``fit`` (validation rows included) of each component's weight ``π_k(x)``: ``(K,)``,
            or ``(M, K)`` for an ensemble or a noise mixture of ``M`` networks.
        dead_components_: Booleans of the same shape: components whose weight stays below
            ``1e-3`` on every row (see :meth:`prune_components`).
        calibration_: After :meth:`calibrate`: the :class:`~mdnkit.conformal.Calibration` record
            (sorted conformity scores of the calibration rows and the PIT recalibration map)
            behind ``calibrated=True``; saved with the model, dropped by a new fit or a pruning.
        calibration_modules_: After ``calibrate(X, y, cv=K)``: the ``K`` fold networks behind the
            CV+ intervals, each fitted without one fold (saved with the model).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.uniform(-1, 1, (300, 1)); y = np.sin(3 * X[:, 0]) + 0.1 * rng.normal(size=300)
        >>> model = MDNRegressor(n_components=3, max_epochs=50, random_state=0).fit(X, y)
        >>> model.predict(X[:2]).shape, model.sample(X[:2], n_samples=5).shape
        ((2,), (2, 5))
    """

    # Whether input_noise="auto" keeps the noise search's networks as a mixture (a subclass whose
    # model must stay one network, such as a Gaussian baseline, turns it off).
    _mixes_noise_levels = True
    # Networks per noise level in a noise mixture, each replicate with its own initial weights and
    # validation rows (shared by its levels). 2 since 2026-12-07: with the periodic embeddings it
    # beat one per level on 11 of 13 sets measured (lost Boston and engel by under 0.01 nats), at
    # 1.1-2.3 times the fit time (README, Defaults); benchmarks/uci.py and tiny_data.py set other counts by a subclass.
    _noise_replicates = 2

    def __init__(
        self,
        n_components: int | Literal["auto"] = 5,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: Activation = "relu",
        covariance_type: CovarianceType = "diagonal",
        optimizer: Optimizer = "adam",
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
        family: FamilyName = "gaussian",
        module: type[nn.Module] | Callable[..., nn.Module] | None = None,
        module_kwargs: dict | None = None,
        family_options: dict | None = None,
        target_resolution: float | Sequence[float] | None = None,
        feature_embedding: FeatureEmbedding | Literal["auto"] | None = "auto",
        weight_averaging: float = 0.99,
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
        self.n_estimators = n_estimators
        self.family = family
        self.module = module
        self.module_kwargs = module_kwargs
        self.family_options = family_options
        self.target_resolution = target_resolution
        self.feature_embedding = feature_embedding
        self.weight_averaging = weight_averaging

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> MDNRegressor:
        """Fit the network to rows ``X (n, p)`` and targets ``y (n,)`` or ``(n, d)``.

        With ``verbose=True`` one progress bar covers the whole fit, searches included, and
        names what is being chosen.

        ``X`` may instead be a table on disk, read in batches and never all in memory: a
        :class:`~mdnkit.streaming.TableRows` (a Parquet file or directory, a CSV file or a
        ``pyarrow.dataset.Dataset``, with its feature and target columns), and ``y`` ``None``::

            model.fit(TableRows("big.parquet", features=["x0", "x1"], target="y"))

        The fitted model, and its file, are those of an in-memory fit, but scalers come from one
        streaming pass, the head's start and the novelty index from a uniform sample of 20 000
        rows, validation rows from a hash of each row's position (a binomial share
        ``validation_fraction``; an ensemble's members all hold out those rows), and
        ``input_noise="auto"`` is the rule of thumb ``0.25 r``, without the three-level search
        (see :mod:`mdnkit._table_fit`). ``n_components="auto"`` and ``warm_start`` need arrays.
        Minibatches are shuffled within a window of 262 144 rows, not over the whole table.

        Returns:
            ``self``.
        """
        with fit_progress(bool(self.verbose)):
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> MDNRegressor:
        from mdnkit.streaming import TableRows

        self._check_params()
        if self.input_noise == "mixture":
            self._check_noise_mixture(isinstance(X, TableRows))
        if isinstance(X, TableRows):
            if y is not None:
                raise ValueError("A TableRows source carries its targets (its target columns); y must be None.")
            from mdnkit._table_fit import fit_table

            return fit_table(self, X)
        X_in, y_in = X, y
        feature_names = _feature_names(X)
        X = _validation.as_float_matrix(X, "X", allow_1d=False, allow_nd=self.module is not None)
        y = _validation.as_float_matrix(y, "y", allow_1d=True)
        _validation.check_lengths(X, y)
        if len(X) < 2:
            raise ValueError("X has 1 sample; fitting a conditional density needs at least 2 rows.")
        _validation.check_constant_targets(y.reshape(len(y), -1))
        self._target_family(y.reshape(len(y), -1)).check_targets(y.reshape(len(y), -1))
        self._check_rounding(y.reshape(len(y), -1), y_in)
        warm = self.warm_start and hasattr(self, "module_")
        searching = not warm
        if searching:
            self._reset_fitted()
        if isinstance(self.n_components, str) and searching:
            return self._fit_auto(X_in, y_in)
        if isinstance(self.input_noise, str) and self.validation_fraction > 0 and searching:
            self._n_validation(len(X))  # too few rows: say so once, not from a trial fit
            return self._fit_noise_search(X_in, y_in)
        return self._fit_network(X, y, X_in, y_in, feature_names)

    def _fit_network(
        self, X: np.ndarray, y: np.ndarray, X_in: Any, y_in: Any, feature_names: np.ndarray | None,
        member_noise: tuple[float, ...] | None = None, novelty: bool = True, noisy_targets: bool = False,
        replicates: int = 1,
    ) -> MDNRegressor:
        """The fit itself, on checked ``X (n, *shape)`` and ``y (n,)`` or ``(n, d)``.

        ``member_noise``: a noise search, one input-noise level per member (``n_estimators`` of
        them), every member on the same validation rows; level-major with ``replicates``
        networks per level, replicate r of every level holding out replicate r's own rows
        (replicate 0's are a single fit's); with ``noisy_targets`` each member's target noise
        is its input noise too. ``novelty=False`` skips the novelty index (a search's trial fits: the kept model
        builds it once).
        """
        warm = self.warm_start and hasattr(self, "module_")
        self._y_is_1d = y.ndim == 1
        y = y.reshape(len(y), -1)
        if hasattr(y_in, "columns"):
            self.target_names_ = [str(c) for c in y_in.columns]
        elif hasattr(self, "target_names_") and not self.warm_start:
            del self.target_names_
        n_val = self._n_validation(len(X))
        if self.warm_start and hasattr(self, "module_"):
            if X.shape[1:] != self._input_shape or y.shape[1] != self.n_outputs_:
                raise ValueError(
                    f"warm_start: the model was fitted on {self.n_features_in_} features and "
                    f"{self.n_outputs_} targets, got {X.shape[1]} and {y.shape[1]}."
                )
            if hasattr(self, "member_weights_") or self.input_noise == "mixture":
                raise ValueError("warm_start does not continue a noise mixture (the default input_noise='auto', or "
                                 "'mixture') nor turn a network into one; refit with warm_start=False, or fit with "
                                 "input_noise='select' for one network that warm starts continue.")
            if getattr(self.module_, "n_members", 1) != self.n_estimators:
                raise ValueError(
                    f"warm_start: the model was fitted with n_estimators="
                    f"{getattr(self.module_, 'n_members', 1)}, got n_estimators={self.n_estimators}."
                )
        else:
            self._fit_scalers(X, y)
            if feature_names is not None:
                self.feature_names_in_ = feature_names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        if y.shape[1] > 1 and not isinstance(self.n_components, str) and self.n_components > len(X) - n_val:
            raise ValueError(
                f"n_components={self.n_components} is more than the {len(X) - n_val} training rows; "
                "use fewer components."
            )

        seed = seed_from(self.random_state)
        device = resolve_device(self.device)
        dtype = torch.float32 if self.dtype == "float32" else torch.float64
        rows = np.random.default_rng(seed).permutation(len(X))
        val_rows, train_rows = rows[:n_val], rows[n_val:]
        x_all = _standardized(X, self.x_mean_, self.x_scale_, dtype, device)
        if novelty and not getattr(self, "_trial", False):
            self._fit_novelty(X, seed)
        y_all = _standardized(y, self.y_mean_, self.y_scale_, dtype, device)
        train_index = torch.as_tensor(train_rows, device=device)
        val_index = torch.as_tensor(val_rows, device=device)

        if not (self.warm_start and hasattr(self, "module_")):
            with torch.random.fork_rng(devices=cuda_devices()):
                torch.manual_seed(seed)
                self.module_ = self._build_module(X.shape[1], y.shape[1]).to(device=device, dtype=dtype)
            if member_noise is not None and len(member_noise) > replicates:
                # Common random numbers: every level starts from the same weights (replicate r of
                # each level from replicate r's), so that the levels' scores differ by their
                # noise, not by the luck of an initialisation.
                with torch.no_grad():
                    for value in self.module_.parameters():
                        repeats = (len(member_noise) // replicates, *[1] * (value.dim() - 1))
                        value.copy_(value[:replicates].repeat(*repeats))
            self.module_.set_units(self.x_mean_, self.x_scale_, self.y_mean_, self.y_scale_)
            self.module_.initialize(y_all[train_index], random_state=seed)
            self.history_: list[dict[str, float]] = []
        before = next(self.module_.parameters())
        moved = (before.dtype, before.device) != (dtype, device)
        self.module_.to(device=device, dtype=dtype)
        if warm:  # a warm start trains on this call's target_resolution
            widths = self._bin_widths
            self.module_.set_bin_half_width(None if widths is None else widths / (2.0 * self.y_scale_))

        self.batch_size_ = self._batch_size(len(train_rows))
        patience = self._patience(len(train_rows))
        # A warm start continues at the levels already chosen ("auto" chose them once).
        self.input_noise_, self.target_noise_ = (
            getattr(self, name + "_") if warm and isinstance(getattr(self, name), str) and hasattr(self, name + "_")
            else self._noise(setting, len(train_rows), math.prod(X.shape[1:]) + y.shape[1])
            for name, setting in (("input_noise", self.input_noise), ("target_noise", self._target_noise_setting(y.shape[1])))
        )
        # A warm start continues the run itself: optimiser moments, schedules, early-stopping
        # record and the random stream, so 20 epochs and 20 more are one run of 40.
        state = getattr(self, "train_state_", None) if warm else None
        if state is not None and (moved or state.module is not self.module_ or state.config.optimizer != self.optimizer):
            state = None  # a new dtype or device, another optimiser: its moments no longer fit
        generator = state.generator if state is not None else torch.Generator(device=device).manual_seed(seed)
        config = self._training_config(patience)
        if member_noise is not None:
            self.input_noise_ = config.input_noise = tuple(member_noise)
            if noisy_targets:
                self.target_noise_ = config.target_noise = tuple(member_noise)
        replicated = member_noise is not None and replicates > 1  # each replicate on its own rows
        if self.n_estimators > 1 and n_val and (member_noise is None or replicated):
            holdout = self._member_holdout(len(X), n_val, seed)
            if replicated:  # replicate r of every level holds out replicate r's rows
                holdout = holdout[np.arange(len(member_noise)) % replicates]
            holdout = torch.as_tensor(holdout, device=device)
            result = train(self.module_, x_all, y_all, config=config, generator=generator,
                           nll_offset=self._nll_offset, holdout=holdout, state=state)
        else:
            result = train(
                self.module_,
                x_all[train_index], y_all[train_index],
                x_all[val_index] if n_val else None, y_all[val_index] if n_val else None,
                config=config, generator=generator, nll_offset=self._nll_offset, state=state,
            )
        self.train_state_ = result.state
        if n_val and (self.n_estimators == 1 or member_noise is not None):
            # For calibrate() without rows. An ensemble's members hold out different rows.
            self.validation_rows_ = (X[val_rows], y[val_rows])
        if member_noise is not None:
            self._member_history = result.member_history  # each member's own curve
        offset = self.history_[-1]["epoch"] if self.history_ else 0
        for record in result.history:
            record["epoch"] += offset
        self.history_ = self.history_ + result.history
        # Epochs of this call, rolled-back ones included (history's numbering skips those).
        self.n_iter_ = result.history[-1]["epoch"] - offset if result.history else 0
        self.best_epoch_ = result.best_epoch + offset
        self._record_component_usage(x_all)
        self._warn_unfinished(
            result.interrupted, bool(n_val) and not result.stopped_early and self.n_iter_ - result.best_epoch < patience // 4,
            kept_epoch=self.best_epoch_ if n_val else self.n_iter_,
        )
        return self

    def _check_rounding(self, y: np.ndarray, y_in: Any) -> None:
        """Check ``target_resolution`` against ``y [N, D]``; without one, warn about columns that
        look rounded (not in a search's trial fits: the search itself has warned)."""
        widths = rounding.resolution_per_target(self.target_resolution, y.shape[1])
        if widths is not None:
            rounding.check_binned_family(self.family, self.covariance_type, y.shape[1])
            return
        if getattr(self, "_trial", False):
            return
        names = [str(c) for c in y_in.columns] if hasattr(y_in, "columns") else None
        for j in range(y.shape[1]):
            grid = rounding.find_grid(y[:, j])
            if grid is not None:
                column = repr(names[j]) if names else ("y" if y.shape[1] == 1 else f"column {j}")
                warnings.warn(rounding.warning_text(column, grid), rounding.RoundedTargetWarning, stacklevel=4)

    @property
    def _networks_per_level(self) -> int:
        """Networks per noise level: a fitted noise mixture's own (one in files from before
        2026-12-07), else what a fit of this class trains."""
        if not hasattr(self, "member_weights_"):
            return self._noise_replicates
        return len(self.input_noise_) // len(set(self.input_noise_))

    @property
    def _bin_widths(self) -> np.ndarray | None:
        """``target_resolution`` as one bin width per target, ``(d,)``, in the user's units."""
        return rounding.resolution_per_target(self.target_resolution, self.n_outputs_)

    @property
    def _nll_offset(self) -> float:
        """What turns a training NLL into one in the user's units: the log-Jacobian of the target
        scaling for a density; nothing for bin probabilities, which have no units."""
        return 0.0 if self.target_resolution is not None else self._log_jacobian

    def _training_config(self, patience: int) -> TrainingConfig:
        """The loop's settings, from the parameters and the resolved ``batch_size_`` and noise levels."""
        return TrainingConfig(
            optimizer=self.optimizer,
            learning_rate=float(self.learning_rate),
            batch_size=self.batch_size_,
            max_epochs=int(self.max_epochs),
            patience=patience,
            lr_decay_patience=max(1, patience // 2),
            weight_decay=float(self.weight_decay),
            gradient_clip=self.gradient_clip,
            input_noise=self.input_noise_,
            target_noise=self.target_noise_,
            verbose=bool(self.verbose),
            weight_averaging=float(self.weight_averaging),
        )

    def _warn_unfinished(self, interrupted: bool, still_improving: bool, kept_epoch: int) -> None:
        """Say so when Ctrl-C ended the fit, or when ``max_epochs`` did while it still improved."""
        if interrupted:
            warnings.warn(f"Training interrupted at epoch {self.n_iter_}; kept the weights of epoch {kept_epoch}.",
                          TrainingInterrupted, stacklevel=5)
        elif still_improving:
            warnings.warn(
                f"{type(self).__name__} stopped at max_epochs={self.max_epochs} while the validation NLL was "
                "still improving; increase max_epochs (or learning_rate).",
                ConvergenceWarning,
                stacklevel=5,
            )

    def _held_out_rows(self) -> tuple[np.ndarray, np.ndarray]:
        check_is_fitted(self, "module_")
        rows = getattr(self, "validation_rows_", None)
        if rows is None:
            replicated = hasattr(self, "member_weights_") and self._networks_per_level > 1
            why = (
                "an ensemble's members hold out different rows"
                if getattr(self.module_, "n_members", 1) > 1 and not hasattr(self, "member_weights_")
                else "the noise mixture's networks (several per noise level) hold out different rows, so no row "
                     "is unseen by all of them; calibrate(X, y, cv=K) uses every row" if replicated
                else "it was fitted with validation_fraction=0" if self.validation_fraction == 0
                else "a loaded model, or one fitted on a TableRows source, does not keep its training rows"
            )
            raise ValueError(f"calibrate() without rows uses the last fit's validation rows, but {why}; "
                             "pass calibration rows: calibrate(X_cal, y_cal).")
        return rows

    def _fit_novelty(self, X: np.ndarray, seed: int) -> None:
        # Where the training inputs lie, so predictions far from them can warn (NoveltyWarning).
        # Rebuilt by every fit, warm starts included: it describes the data the model last saw.
        novelty = InputNovelty(random_state=seed)
        if len(X) > novelty.max_reference:  # its own subsample, drawn here: standardise only those rows
            X = X[np.sort(np.random.default_rng(seed).choice(len(X), novelty.max_reference, replace=False))]
        self.novelty_ = novelty.fit(self._standardized_rows(X))

    def _fit_rung(self, X: Any, y: Any) -> MDNRegressor:
        """``fit`` for a search's trial (a rung of successive halving): without the novelty index,
        which only the kept model needs."""
        self._trial = True
        stage(f"choosing n_components: K={self.n_components}")
        try:
            return self.fit(X, y)
        finally:
            del self._trial

    def _check_params(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")

        if not (isinstance(self.n_components, str) and self.n_components == "auto"):
            try:
                positive_int("n_components")
            except ValueError:
                raise ValueError(f"n_components must be an integer >= 1, got {self.n_components!r} "
                                 "(or 'auto' to choose it on held-out rows).") from None
        for name in ("max_epochs", "n_estimators"):
            positive_int(name)
        for name in ("batch_size", "patience"):
            if getattr(self, name) is not None and not (name == "batch_size" and self.batch_size == "auto"):
                try:
                    positive_int(name)
                except ValueError:
                    allowed = ", 'auto' or None (full batch)" if name == "batch_size" else " or None"
                    raise ValueError(f"{name} must be an integer >= 1{allowed}, got {getattr(self, name)!r}.") from None
        sizes = self.hidden_sizes
        if isinstance(sizes, numbers.Integral) or not all(
            isinstance(s, numbers.Integral) and s >= 1 for s in sizes
        ):
            raise ValueError(f"hidden_sizes must be a sequence of positive integers, got {sizes!r}.")
        choices = {
            "activation": tuple(ACTIVATIONS), "covariance_type": COVARIANCE_TYPES, "family": FAMILY_NAMES,
            "optimizer": get_args(Optimizer), "dtype": ("float32", "float64"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}.")
        for name in ("learning_rate", "min_scale"):
            if not (isinstance(getattr(self, name), numbers.Real) and getattr(self, name) > 0):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}.")
        words = {"weight_decay": (), "input_noise": ("auto", "mixture", "select"), "target_noise": ("auto",)}
        for name, allowed_words in words.items():
            value = getattr(self, name)
            if isinstance(value, str) and value in allowed_words:
                continue
            if not (isinstance(value, numbers.Real) and value >= 0):
                allowed = "a number >= 0" + "".join(f" or {word!r}" for word in allowed_words)
                raise ValueError(f"{name} must be {allowed}, got {value!r}.")
        embedding = getattr(self, "feature_embedding", None)
        if embedding not in (None, "auto", *FEATURE_EMBEDDINGS):
            raise ValueError(f"feature_embedding must be 'auto', None or one of {list(FEATURE_EMBEDDINGS)}, "
                             f"got {embedding!r}.")
        if embedding not in (None, "auto") and self.module is not None:
            raise ValueError("feature_embedding applies to the built-in MLP; with module=, embed the inputs in your module.")
        if self.module is not None and not callable(self.module):
            raise ValueError(f"module must be an nn.Module class or a factory returning one, got {self.module!r}.")
        if self.family_options is not None and not isinstance(self.family_options, dict):
            raise ValueError(f"family_options must be a dict or None, got {self.family_options!r}.")
        if self.module_kwargs is not None and not isinstance(self.module_kwargs, dict):
            raise ValueError(f"module_kwargs must be a dict or None, got {self.module_kwargs!r}.")
        clip = self.gradient_clip
        if clip is not None and not (isinstance(clip, numbers.Real) and clip > 0):
            raise ValueError(f"gradient_clip must be a positive number or None, got {clip!r}.")
        if not (isinstance(self.validation_fraction, numbers.Real) and 0 <= self.validation_fraction < 1):
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction!r}.")
        averaging = self.weight_averaging
        if isinstance(averaging, bool) or not (isinstance(averaging, numbers.Real) and 0 <= averaging < 1):
            raise ValueError(f"weight_averaging must be a decay in [0, 1) (0: no averaging), got {averaging!r}.")

    def _reset_fitted(self) -> None:
        """Forget every learned attribute, so nothing of a previous fit survives a fresh one."""
        for name in [name for name in vars(self) if name.endswith("_") or name == "_y_is_1d"]:
            delattr(self, name)

    def _adopt(self, fitted: MDNRegressor) -> None:
        """Take over the learned state of ``fitted`` (a search's winner); keep this model's settings."""
        params = self.get_params(deep=False)
        self._reset_fitted()
        self.__dict__.update({name: value for name, value in vars(fitted).items() if name not in params})

    def _fit_noise_search(self, X: Any, y: Any) -> MDNRegressor:
        """A searched ``input_noise``: the levels of :data:`NOISE_FACTORS` trained in one batched pass,
        as the members of one ensemble, each with its own input noise (and, with
        ``target_noise="auto"``, the same target noise), schedule and early stopping, all on the
        validation rows a single fit with this seed holds out (a noise mixture's replicates after
        the first, on their own rows); then the level with the best validation NLL.

        A noise mixture (:meth:`_keeps_noise_mixture`) keeps every member (:meth:`_adopt_mixture`);
        otherwise a single model is the winning member itself (its weights, curve and training
        state), and an ensemble is then fitted at that level.
        """
        from sklearn.base import clone

        X_checked = _validation.as_float_matrix(X, "X", allow_1d=False, allow_nd=self.module is not None)
        y_checked = _validation.as_float_matrix(y, "y", allow_1d=True)
        n_targets = 1 if y_checked.ndim == 1 else y_checked.shape[1]
        n_dims = math.prod(X_checked.shape[1:]) + n_targets
        n_train = len(X_checked) - self._n_validation(len(X_checked))
        seed = seed_from(self.random_state)
        replicates = self._noise_replicates if self._keeps_noise_mixture() else 1
        levels = tuple(factor * n_train ** (-1.0 / (4 + n_dims)) for factor in NOISE_FACTORS for _ in range(replicates))
        noisy_targets = isinstance(self._target_noise_setting(n_targets), str)
        kept = "keeping all, weighted" if self._keeps_noise_mixture() else "keeping the best"
        each = f" x {replicates} networks" if replicates > 1 else ""
        noised = "input and target" if noisy_targets else "input"
        stage(f"{noised} noise: {len(NOISE_FACTORS)} levels{each} in one pass, {kept}")
        search = clone(self).set_params(n_estimators=len(levels), input_noise=0.0, random_state=seed,
                                        target_noise=0.0 if noisy_targets else self.target_noise)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            search._fit_network(X_checked, y_checked, X, y, _feature_names(X), member_noise=levels, novelty=False,
                                noisy_targets=noisy_targets, replicates=replicates)
        curves = search._member_history
        member_scores = [float(np.nanmin([epoch["val_nll"][m] for epoch in curves] or [np.nan]))
                         for m in range(len(levels))]
        scores = {level: _best_of(member_scores[i:i + replicates])  # a level's best network
                  for i, level in zip(range(0, len(levels), replicates), levels[::replicates])}
        index = int(np.nanargmin(member_scores))
        interrupted = any(issubclass(w.category, TrainingInterrupted) for w in caught)
        for warning in caught:  # a rollback's warning; the search's own convergence is the winner's
            if not issubclass(warning.category, (ConvergenceWarning, TrainingInterrupted)):
                warnings.warn(warning.message, warning.category, stacklevel=4)
        if self._keeps_noise_mixture():
            self._adopt_mixture(search, X_checked, y_checked, seed, interrupted)
        elif self.n_estimators > 1 and not interrupted:
            stage(f"fitting {self.n_estimators} members at noise {levels[index]:.3g}")
            chosen = {"input_noise": levels[index], **({"target_noise": levels[index]} if noisy_targets else {})}
            with _quiet_rounding():  # fit has warned once already
                self._adopt(clone(self).set_params(**chosen, random_state=seed).fit(X, y))
        else:
            self._adopt_member(search, index, X_checked, seed)
            stopped = not search.train_state_.active[index]
            self._warn_unfinished(interrupted, not stopped and self.n_iter_ - self.best_epoch_ < self._patience(n_train) // 4,
                                  kept_epoch=self.best_epoch_)
        self.noise_selection_ = scores
        return self

    def _keeps_noise_mixture(self) -> bool:
        """Whether the noise search keeps every level: asked for, or ``"auto"`` where a mixture applies."""
        if self.input_noise == "mixture":
            return True
        return (self.input_noise == "auto" and self._mixes_noise_levels and not self.warm_start
                and self._noise_mixture_needs(table=False) is None)

    def _noise_mixture_needs(self, table: bool) -> str | None:
        """What a noise mixture needs and these settings (or a table source) lack; ``None``: nothing."""
        return ("in-memory arrays (a table is not searched)" if table
                else "validation rows to weigh the levels by; set validation_fraction > 0" if self.validation_fraction == 0
                else "n_estimators=1 (it is already an ensemble: two networks per noise level)" if self.n_estimators != 1
                else "a fixed n_components" if isinstance(self.n_components, str) else None)

    def _check_noise_mixture(self, table: bool) -> None:
        """What ``input_noise="mixture"`` needs, said before any training."""
        needs = self._noise_mixture_needs(table)
        if needs is not None:
            raise ValueError(f"input_noise='mixture' needs {needs}.")

    def _adopt_mixture(self, search: MDNRegressor, X: np.ndarray, y: np.ndarray, seed: int, interrupted: bool) -> None:
        """Keep every level of a noise search, each member weighted by :func:`mixture_weights`
        of the members' log-likelihoods of the validation rows they were all stopped on (their
        bins' log-probabilities for rounded targets, as :meth:`score_samples` scores them); with
        several replicates per level, each replicate's levels on that replicate's own rows."""
        self._adopt(search)
        del self._member_history
        X_val, y_val = self.validation_rows_
        device = next(self.module_.parameters()).device
        widths = self._bin_widths
        half = None if widths is None else torch.as_tensor(widths / 2.0, dtype=torch.float64, device=device)

        def member_scores(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # [M, rows]
            members = self.module_.members(x)
            return members.log_prob(y) if half is None else members.interval_log_prob(y - half, y + half)

        def held_out_scores(X_rows: np.ndarray, y_rows: np.ndarray) -> torch.Tensor:  # [M, rows], float64
            with torch.no_grad():
                return torch.cat([member_scores(x, y).double().cpu() for x, y in zip(
                    torch.as_tensor(X_rows, dtype=torch.float64, device=device).split(_PREDICT_CHUNK),
                    torch.as_tensor(y_rows.reshape(len(y_rows), -1), dtype=torch.float64, device=device)
                    .split(_PREDICT_CHUNK))], dim=1)

        self.module_.eval()
        # Each replicate's levels weighed on the rows it held out (replicate 0's are
        # validation_rows_), the replicates equally.
        replicates = self._noise_replicates
        holdout = search._member_holdout(len(X), len(X_val), seed) if replicates > 1 else None
        weights, nlls = np.zeros(search.n_estimators), []
        for r in range(replicates):
            X_own, y_own = (X_val, y_val) if r == 0 else (X[holdout[r]], y[holdout[r]])
            own = np.arange(r, search.n_estimators, replicates)  # replicate r of every level
            held_out = held_out_scores(X_own, y_own)[own]
            replicate_weights = mixture_weights(held_out.numpy())
            weights[own] = replicate_weights / replicates
            nlls.append(_mixture_nll(held_out, replicate_weights))
        self.member_weights_, self.validation_nll_ = weights, float(np.mean(nlls))
        self.module_.set_member_weights(self.member_weights_)
        if replicates > 1:  # replicate 1 trained on replicate 0's rows: none is unseen by all networks
            del self.validation_rows_
        state = self.train_state_
        improving = any(active and self.n_iter_ - best < self._patience(len(X) - len(X_val)) // 4
                        for active, best in zip(state.active, state.best_epochs))
        self._warn_unfinished(interrupted, improving, kept_epoch=self.best_epoch_)
        if not getattr(self, "_trial", False):
            self._fit_novelty(X, seed)

    def _adopt_member(self, search: MDNRegressor, index: int, X: np.ndarray, seed: int) -> None:
        """Take over member ``index`` of a noise search as this single model: its weights, its
        own training curve (the epochs it trained), noise level and training state."""
        self._adopt(search)
        del self._member_history
        state = self.train_state_
        if len(search.input_noise_) > 1:
            self.module_ = self.module_.member(index)
            self.train_state_ = state.member(index, self.module_, lambda: search.module_.member(index))
        self.input_noise_ = float(search.input_noise_[index])
        if isinstance(search.target_noise_, tuple):
            self.target_noise_ = float(search.target_noise_[index])
        self.history_ = [
            {**record, "train_nll": member["train_nll"][index], "val_nll": member["val_nll"][index],
             "learning_rate": member["learning_rate"][index]}
            for record, member in zip(search.history_, search._member_history) if member["active"][index]
        ]
        self.n_iter_ = self.history_[-1]["epoch"] if self.history_ else 0
        self.best_epoch_ = int(state.best_epochs[index])
        self.train_state_.epoch = self.n_iter_  # the member's own epochs, not the whole search's
        x = _standardized(X, self.x_mean_, self.x_scale_, next(self.module_.parameters()).dtype,
                          next(self.module_.parameters()).device)
        self._record_component_usage(x)
        if not getattr(self, "_trial", False):
            self._fit_novelty(X, seed)

    def _fit_auto(self, X: Any, y: Any) -> MDNRegressor:
        """``n_components="auto"``: search ``K`` with :class:`~mdnkit.MDNRegressorCV`, then take over
        the winner's fitted state (it is an MDNRegressor with the same settings but ``K``)."""
        from sklearn.base import clone

        if self.validation_fraction == 0:
            raise ValueError("n_components='auto' compares K on the validation rows; set validation_fraction > 0.")
        params = self.get_params(deep=False)
        fixed = {name: value for name, value in params.items()
                 if name not in ("n_components", "random_state", "warm_start")}
        seed = seed_from(self.random_state)
        noise_selection = None
        if isinstance(self.input_noise, str):
            # Choose the noise once, with one mid-sized network, then search K at that level
            # ("select": a mixture has no single level to pass on).
            probe = clone(self).set_params(n_components=5, n_estimators=1, input_noise="select", random_state=seed,
                                           verbose=False)
            probe._trial = True  # only its noise level is kept
            probe._fit_noise_search(X, y)
            fixed["input_noise"], noise_selection = probe.input_noise_, probe.noise_selection_
            fixed["target_noise"] = probe.target_noise_
        ensemble = self.n_estimators > 1
        if ensemble:  # search single networks (M times cheaper), then fit the ensemble on every row
            fixed["n_estimators"] = 1
        base = type(self)(**fixed)
        with _quiet_rounding():  # its rungs and its winner's continued fit: fit has warned already
            outcome = successive_halving(base, [{"n_components": k} for k in AUTO_N_COMPONENTS], X, y, seed=seed,
                                         warm_start=False)
        winner = outcome.final
        if ensemble:
            stage(f"fitting {self.n_estimators} members with K={int(winner.n_components)}")
            with _quiet_rounding():
                winner = clone(self).set_params(
                    n_components=int(winner.n_components), input_noise=fixed["input_noise"],
                    target_noise=fixed["target_noise"], random_state=seed,
                ).fit(X, y)
        self._adopt(winner)
        self.selection_results_ = outcome.results
        if noise_selection is not None:
            self.noise_selection_ = noise_selection
        return self

    def _patience(self, n_train: int) -> int:
        """Early-stopping patience in epochs; by default about 1000 gradient steps."""
        if self.patience is not None:
            return int(self.patience)
        return default_patience(self._batch_size(n_train), n_train)

    def _batch_size(self, n_train: int) -> int | None:
        """Rows per gradient step on ``n_train`` training rows; ``None`` for full batches."""
        return None if self.optimizer == "lbfgs" else resolve_batch_size(self.batch_size, n_train)

    @staticmethod
    def _noise(setting: float | str, n_train: int, n_dims: int) -> float:
        """Noise standard deviation in standardised units; ``"auto"``: ``0.25 n^(-1/(4+dims))``."""
        if isinstance(setting, str):
            return NOISE_RULE_OF_THUMB * n_train ** (-1.0 / (4 + n_dims))
        return float(setting)

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

    def _member_holdout(self, n_rows: int, n_val: int, seed: int) -> np.ndarray:
        """Each ensemble member's own validation rows, booleans ``(n_estimators, n_rows)``.

        Member 0 holds out the rows a single fit with this seed would; every other member draws
        its own. Members trained on different rows differ more, and almost every row trains
        some member (all but a share ``validation_fraction ** n_estimators`` of them).
        """
        holdout = np.zeros((self.n_estimators, n_rows), dtype=bool)
        for member in range(self.n_estimators):
            rng = np.random.default_rng(seed if member == 0 else [seed, member])
            holdout[member, rng.permutation(n_rows)[:n_val]] = True
        return holdout

    def _fit_scalers(self, X: np.ndarray, y: np.ndarray) -> None:
        self.n_features_in_ = X.shape[1]
        self.input_shape_ = tuple(X.shape[1:])
        self.n_outputs_ = y.shape[1]
        # Torch, not NumPy: one pass on every core, where NumPy's std makes three (2.2 s for 1e7 x 8).
        x_scale, x_mean = (t.numpy() for t in torch.std_mean(
            torch.from_numpy(np.ascontiguousarray(X, dtype=np.float64)), dim=0, correction=0))
        self.x_mean_ = x_mean
        self.x_scale_ = np.where(x_scale > 0, x_scale, 1.0)  # constant features pass through
        # The family's own change of units (shift and scale, or scale only, or the declared bounds).
        self.y_mean_, self.y_scale_ = self._target_family(y).target_units(y)

    def _target_noise_setting(self, n_targets: int) -> float | str:
        """``target_noise``, where ``"auto"`` is 0 for a family whose support noise would leave."""
        if isinstance(self.target_noise, str) and self._target_family(np.zeros((1, n_targets))).target_transform != "affine":
            return 0.0
        return self.target_noise

    def _target_family(self, y: np.ndarray):
        """The family for targets ``y [N, D]``, refusing target noise where it would leave the support."""
        family = make_family(self.family, 1, y.shape[1], **(self.family_options or {}))
        if family.target_transform != "affine" and not (isinstance(self.target_noise, str)
                                                        or self.target_noise == 0):
            raise ValueError(f"target_noise must be 0 for the {self.family} family: noise would move targets "
                             f"outside its support; got {self.target_noise!r}.")
        return family

    @property
    def _log_jacobian(self) -> float:
        """Shift from a standardised-unit NLL to an original-unit NLL: ``Σ_j log σ_y,j``."""
        return float(np.log(self.y_scale_).sum())

    def _build_module(self, n_features: int, n_outputs: int, n_components: int | None = None) -> MDN | MDNEnsemble:
        """A fresh network; ``n_components`` overrides the parameter (a pruned model's file)."""
        arguments = (
            n_features, n_outputs, int(self.n_components if n_components is None else n_components),
            tuple(int(s) for s in self.hidden_sizes), self.activation, self.covariance_type,
            float(self.min_scale),
        )
        # A noise mixture has one member per network (two per noise level by default).
        n_members = len(self.member_weights_) if hasattr(self, "member_weights_") else int(self.n_estimators)
        members = None if n_members == 1 else n_members
        backbone = None if self.module is None else build_backbone(
            self.module, self.module_kwargs, self._input_shape, members)
        embedding = self._embedding_for(n_features)
        if members is None:
            module = MDN(*arguments, family=self.family, family_options=self.family_options, backbone=backbone,
                         feature_embedding=embedding)
        else:
            module = MDNEnsemble(*arguments, n_members=members, family=self.family,
                                 family_options=self.family_options, backbone=backbone, feature_embedding=embedding)
        widths = self._bin_widths
        # Bins of width h in the user's units are h / σ_y wide in the network's.
        module.set_bin_half_width(None if widths is None else widths / (2.0 * self.y_scale_))
        return module

    def _embedding_for(self, n_features: int) -> str | None:
        """The feature embedding of a network on ``n_features`` inputs: ``"auto"`` is
        ``"periodic"`` from :data:`AUTO_EMBEDDING_MIN_FEATURES` inputs on (the built-in MLP
        only); a model file says which its network has."""
        if hasattr(self, "_embedding_in_file_"):
            return self._embedding_in_file_
        value = getattr(self, "feature_embedding", None)  # absent from a subclass without it
        if value == "auto":
            return "periodic" if self.module is None and n_features >= AUTO_EMBEDDING_MIN_FEATURES else None
        return value

    @property
    def _input_shape(self) -> tuple[int, ...]:
        """The shape of one input row (files before custom modules: ``(n_features_in_,)``)."""
        return tuple(getattr(self, "input_shape_", (self.n_features_in_,)))

    def _standardized_rows(self, X: np.ndarray) -> np.ndarray:
        """Standardised inputs as a table ``(n, prod(shape))``, as the novelty index sees them."""
        shift, scale = (torch.as_tensor(np.asarray(v), dtype=torch.float64) for v in (self.x_mean_, self.x_scale_))
        # Torch, not NumPy: every core; one float64 copy, then in place, from float32 rows too.
        rows = torch.from_numpy(np.ascontiguousarray(X)).to(torch.float64, copy=True)
        return rows.sub_(shift).div_(scale).reshape(len(X), -1).numpy()

    @torch.no_grad()
    def _record_component_usage(self, x: torch.Tensor | Iterable[torch.Tensor], across_ranks: bool = False) -> None:
        """Mean and max of every component's weight over the standardised inputs ``x [N, F]``
        (or an iterable of such chunks, a streamed table's); ``across_ranks``: ``x`` is this
        data-parallel rank's share of the rows, and the others hold the rest."""
        self.module_.eval()
        total, peak, n_rows = 0.0, None, 0
        for chunk in (x.split(_PREDICT_CHUNK) if isinstance(x, torch.Tensor) else x):
            n_rows += len(chunk)
            weights = self.module_.component_weights(chunk)  # [(M,) K, n]
            total = total + weights.sum(-1, dtype=torch.float64)
            chunk_peak = weights.amax(-1)
            peak = chunk_peak if peak is None else torch.maximum(peak, chunk_peak)
        if across_ranks:  # every rank has rows (_table_fit refuses fewer row groups than ranks)
            total, n_rows = distributed.summed(total, torch.tensor(float(n_rows)))
            peak = distributed.largest(peak)
        self.n_components_ = int(self.module_.head.n_components)
        self.component_weight_mean_ = (total / n_rows).cpu().numpy()
        self.component_weight_max_ = peak.double().cpu().numpy()
        self._flag_dead_components()

    def _flag_dead_components(self) -> None:
        alive = np.ones(self.component_weight_max_.shape, dtype=bool)
        if isinstance(self.module_, MDNEnsemble):  # components masked by an earlier pruning
            alive = ~self.module_.head.logit_mask.isinf().cpu().numpy()
        self.dead_components_ = (self.component_weight_max_ < DEAD_WEIGHT) & alive

    def prune_components(self, threshold: float = DEAD_WEIGHT) -> MDNRegressor:
        """Remove the components whose weight stays below ``threshold`` on every training input.

        The weights are those recorded at the end of ``fit`` (:attr:`component_weight_max_`).
        With a single MDN, the head's output rows of those components are sliced out:
        ``n_components_`` shrinks and the rest renormalise, so every log-density changes by at
        most ``-log(1 - r(x))`` upwards, ``r(x)`` the removed weight at ``x`` (below
        ``K·threshold`` on the training inputs). In an ensemble a component is removed from the
        member where it is dead: components dead in every member are sliced out, the others
        masked (weight exactly zero in that member, left out of :meth:`predict_dist`), as the
        members' layers must keep one shape.

        Args:
            threshold: Weight below which a component counts as dead, in ``(0, 1)``.

        Returns:
            ``self``, with ``dead_components_`` all False and the removed components gone from
            ``component_weight_mean_`` and ``component_weight_max_`` (zero where masked).

        Raises:
            ValueError: A bad ``threshold``, one that would leave a member with no component,
                or a model loaded from a file that predates the usage record (refit it).
        """
        check_is_fitted(self, "module_")
        if not (isinstance(threshold, numbers.Real) and 0 < threshold < 1):
            raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}.")
        if not hasattr(self, "component_weight_max_"):
            raise ValueError("This model has no record of its component weights (saved by an older "
                             "mdnkit); refit it to prune components.")
        peak = np.atleast_2d(self.component_weight_max_)  # [M, K]
        ensemble = isinstance(self.module_, MDNEnsemble)
        masked = self.module_.head.logit_mask.isinf().cpu().numpy() if ensemble else np.zeros(peak.shape, bool)
        dead = (peak < threshold) | masked
        if dead.all(axis=1).any():
            raise ValueError(f"threshold={threshold} would remove every component of a member; use a smaller one.")
        everywhere = dead.all(axis=0)  # [K]
        if everywhere.any() or (ensemble and dead.any()):
            self.__dict__.pop("train_state_", None)  # its optimiser holds the old layers
            for name in ("calibration_", "calibration_modules_"):  # scored by the model before the pruning
                self.__dict__.pop(name, None)
        if everywhere.any():
            self.module_.head.prune(torch.as_tensor(~everywhere))
            dead, peak = dead[:, ~everywhere], peak[:, ~everywhere]
            self.component_weight_mean_ = np.atleast_2d(self.component_weight_mean_)[:, ~everywhere]
        if ensemble and dead.any():
            self.module_.head.mask(torch.as_tensor(dead & ~self.module_.head.logit_mask.isinf().cpu().numpy()))
        mean = np.where(dead, 0.0, np.atleast_2d(self.component_weight_mean_))
        peak = np.where(dead, 0.0, peak)
        squeeze = (lambda a: a[0]) if not ensemble else (lambda a: a)
        self.component_weight_mean_, self.component_weight_max_ = squeeze(mean), squeeze(peak)
        self.n_components_ = int(self.module_.head.n_components)
        self._flag_dead_components()
        return self

    # ------------------------------------------------------------------ predicting
    def _check_X(self, X: Any, keep_float32: bool = False) -> np.ndarray:
        check_is_fitted(self, "module_")
        names = _feature_names(X)
        fitted_names = getattr(self, "feature_names_in_", None)
        if names is not None and fitted_names is not None and list(names) != list(fitted_names):
            raise ValueError(
                f"X has columns {list(names)}, but {type(self).__name__} was fitted with columns "
                f"{list(fitted_names)} (same names in the same order are needed)."
            )
        X = _validation.as_float_matrix(X, "X", allow_1d=False, stage="predict", allow_nd=self.module is not None,
                                        keep_float32=keep_float32)
        if X.shape[1:] != self._input_shape:
            if self.module is not None:
                raise ValueError(f"X has rows of shape {X.shape[1:]}, but {type(self).__name__} was fitted "
                                 f"on rows of shape {self._input_shape}.")
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input (the number it was fitted with)."
            )
        return X

    def predict_dist(self, X: Any, calibrated: bool = False) -> GaussianMixture | RecalibratedDistribution:
        """The conditional distribution of ``y`` for each row, in original units (float64, CPU).

        ``calibrated=True`` (after :meth:`calibrate`, 1-D targets): the distribution with its
        PIT recalibrated on the calibration rows (Kuleshov et al. 2018), a
        :class:`~mdnkit.conformal.RecalibratedDistribution` with ``cdf``, ``icdf``, ``log_prob``
        and ``sample``: its quantiles are calibrated on average, without a finite-sample bound.

        Returns:
            A :class:`~mdnkit.distributions.GaussianMixture` with batch shape ``(n,)`` and event
            shape ``(d,)`` (``(1,)`` for a 1-D target).

        Warns:
            NoveltyWarning: Some rows lie far outside the training inputs (``novelty_score``
                above ``novelty_.threshold``, 2 by default); the count is in the message.
        """
        X = self._check_X(X)
        if getattr(self, "novelty_", None) is not None:
            self.novelty_.warn_if_novel(self._standardized_rows(X), stacklevel=2)
        dist = self._module_dist(self.module_, X)
        return self._checked_calibration(0.5).recalibrate(dist) if calibrated else dist

    def _module_dist(self, module: nn.Module, X: np.ndarray) -> GaussianMixture:
        """``module``'s distributions at checked rows ``X``, in original units, float64 on the CPU."""
        x = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float64, device=next(module.parameters()).device)
        module.eval()
        with torch.no_grad():  # the module maps in and out of its units itself, in float64
            return cat([module(chunk).to("cpu") for chunk in x.split(_PREDICT_CHUNK)])

    def _scored_in_chunks(self, X: np.ndarray, values: torch.Tensor) -> np.ndarray:
        """The log-density of ``values [n, D]`` (float64, original units) at checked rows ``X``,
        ``(n,)``, for a head with the hot path: each chunk standardised once, for the novelty
        check and the network, never the whole table at once (whole float64 copies of a large
        table cost more in page faults than they save); one novelty warning for all the chunks."""
        module, novelty = self.module_, getattr(self, "novelty_", None)
        device = next(module.parameters()).device
        module.eval()
        scores, n_novel, largest = [], 0, -math.inf
        for start in range(0, len(X), _PREDICT_CHUNK):
            rows = self._standardized_rows(X[start:start + _PREDICT_CHUNK])
            if novelty is not None:
                novel, top = novelty.flag_novel(rows)
                n_novel, largest = n_novel + int(novel.sum()), max(largest, top)
            inputs = torch.as_tensor(rows.reshape(-1, *X.shape[1:]), device=device)
            with torch.no_grad():
                scores.append(module.log_prob(inputs, values[start:start + _PREDICT_CHUNK].to(device),
                                              standardized_inputs=True).cpu())
        if novelty is not None:  # warns at the caller of score_samples
            novelty.warn_about(n_novel, len(X), largest, stacklevel=3)
        return torch.cat(scores).numpy()  # _check_X refuses zero rows

    def _cross_calibrate(self, X: Any, y: Any, cv: int) -> None:
        from mdnkit._cross_conformal import fit_folds

        self.calibration_modules_, self._calibration_components, self.calibration_ = fit_folds(self, X, y, cv)

    def _fold_dists(self, X: Any) -> list[GaussianMixture]:
        X = self._check_X(X)
        return [self._module_dist(module, X) for module in self.calibration_modules_]

    def predict_members_dist(self, X: Any) -> GaussianMixture:
        """Each ensemble member's own conditional distribution, in original units.

        :meth:`predict_dist` is their mixture, equally weighted (a noise mixture:
        ``member_weights_``). A component pruned from one member only has weight zero (logit
        ``-inf``) there.

        Returns:
            A :class:`~mdnkit.distributions.GaussianMixture` with batch shape ``(M, n)``
            (``M = n_estimators``, or 3 for a noise mixture; ``(1, n)`` for a single MDN) and
            event shape ``(d,)``.

        Warns:
            NoveltyWarning: As :meth:`predict_dist`: far from the training inputs the members'
                disagreement is no more trustworthy than their mixture.
        """
        X = self._check_X(X)
        if getattr(self, "novelty_", None) is not None:
            self.novelty_.warn_if_novel(self._standardized_rows(X), stacklevel=2)
        x = torch.as_tensor(np.ascontiguousarray(X), dtype=torch.float64, device=next(self.module_.parameters()).device)
        self.module_.eval()
        with torch.no_grad():
            if isinstance(self.module_, MDNEnsemble):
                parts = [self.module_.members(chunk).to("cpu") for chunk in x.split(_PREDICT_CHUNK)]
            else:
                parts = [self.module_(chunk).to("cpu").expand((1, len(chunk))) for chunk in x.split(_PREDICT_CHUNK)]
        return cat(parts, dim=1)

    def predict_epistemic_std(self, X: Any) -> np.ndarray:
        """Disagreement of the ensemble members: the standard deviation of their means.

        With member means ``μ_m(x)`` and variances ``σ²_m(x)``, the ensemble's variance splits as
        ``predict_std² = mean_m σ²_m + var_m μ_m`` (law of total variance, ``var_m`` over the
        ``M`` members with divisor ``M``, or weighted by ``member_weights_``); this returns
        ``sqrt(var_m μ_m)``, the epistemic part, which grows away from the training data. Zero
        for a single network; for a noise mixture, whose networks share their initial weights,
        the spread between noise levels, a narrower measure than an ensemble's.

        Returns:
            ``(n,)`` for 1-D ``y``, else ``(n, d)``.
        """
        means = self.predict_members_dist(X).mean.numpy()  # [M, n, d]
        log_weights = getattr(self.module_, "member_log_weights", None)
        weights = (np.full(len(means), 1.0 / len(means)) if log_weights is None
                   else torch.softmax(log_weights.double(), 0).cpu().numpy())[:, None, None]
        centre = (weights * means).sum(axis=0)
        return self._shape_targets(np.sqrt((weights * (means - centre) ** 2).sum(axis=0)))

    def novelty_score(self, X: Any) -> np.ndarray:
        """How far each row of ``X (n, p)`` lies from the training inputs, ``(n,)``.

        In standardised input units, with ``d(x)`` the distance to the 5th nearest training row
        and ``c_i`` the same distance for each training row ``i`` (leaving itself out)::

            score(x) = #{i : c_i < d(x)} / m    if d(x) <= max c_i   (share, in [0, 1))
            score(x) = d(x) / max c_i           otherwise            (ratio, > 1)

        Fresh rows from the training distribution score about uniformly on ``[0, 1]``; a score of
        ``4`` is four times as isolated as the most isolated training row. ``predict_dist`` warns
        (:class:`~mdnkit.novelty.NoveltyWarning`) for rows above ``novelty_.threshold`` (2).

        Example:
            >>> rng = np.random.default_rng(0)
            >>> X = rng.normal(size=(300, 2)); y = X[:, 0] + 0.1 * rng.normal(size=300)
            >>> model = MDNRegressor(n_components=2, max_epochs=5, random_state=0).fit(X, y)
            >>> scores = model.novelty_score(np.array([[0.0, 0.0], [20.0, 20.0]]))
            >>> bool(scores[0] < 0.5), bool(scores[1] > 2)
            (True, True)
        """
        X = self._check_X(X)
        if getattr(self, "novelty_", None) is None:
            raise ValueError(
                "This model has no record of its training inputs (it was saved by an mdnkit without "
                "novelty scores); refit it to get novelty_score."
            )
        return self.novelty_.score(self._standardized_rows(X))

    def score_samples(self, X: Any, y: Any) -> np.ndarray:
        """Log-likelihood of each row, ``(n,)``: with ``target_resolution`` a discrete one.

        Without ``target_resolution``: the log-density ``log p(y_i | x_i)`` in the user's units
        (nats per unit of ``y``). With it: the log-probability of the recorded value's bin,
        ``log P(y_i - h/2 < Y <= y_i + h/2 | x_i)`` (a product over target columns within each
        component), unit-free and ``<= 0``; :meth:`score` is then the mean discrete
        log-probability, the quantity the model was trained on.
        """
        X = self._check_X(X, keep_float32=True)  # every path below casts to float64, a chunk at a time
        values = torch.from_numpy(self._check_y(y, len(X)).astype(np.float64))
        widths = self._bin_widths
        half = None if widths is None else torch.from_numpy(widths / 2.0)
        if half is None and self.module_.head.has_hot_path:
            return self._scored_in_chunks(X, values)
        if getattr(self, "novelty_", None) is not None:
            self.novelty_.warn_if_novel(self._standardized_rows(X), stacklevel=2)
        if half is None:
            return torch.cat([self._module_dist(self.module_, X[start:start + _PREDICT_CHUNK])
                              .log_prob(values[start:start + _PREDICT_CHUNK])
                              for start in range(0, len(X), _PREDICT_CHUNK)]).numpy()
        scores = []
        for start in range(0, len(X), _PREDICT_CHUNK):  # one chunk's mixture at a time: flat memory
            rows = slice(start, start + _PREDICT_CHUNK)
            mixture, value = self._module_dist(self.module_, X[rows]), values[rows]
            scores.append(mixture.interval_log_prob(value - half, value + half))
        return torch.cat(scores).numpy()  # _check_X refuses zero rows

    def predict_bin_probabilities(self, X: Any, values: Any, resolution: float | None = None) -> np.ndarray:
        """The probability of the bin of each grid value for each row, for a 1-D target.

        ``P(v_j - h/2 < Y <= v_j + h/2 | x_i)`` from the continuous mixture's cdf, with ``h``
        the model's ``target_resolution`` or ``resolution`` (which also serves a model fitted
        without one: the same discrete scale for both). Over a grid that covers the data the
        rows sum to nearly 1; the rest is the mass outside the grid's bins.

        Args:
            X: ``(n, p)`` rows.
            values: ``(m,)`` grid values, e.g. ``np.arange(3, 9)`` for integer scores.
            resolution: The bin width; ``None`` for ``target_resolution``.

        Returns:
            ``(n, m)`` probabilities.

        Example:
            >>> rng = np.random.default_rng(0)
            >>> X = rng.uniform(-1, 1, (200, 1)); y = np.round(3 * X[:, 0] + rng.normal(size=200))
            >>> model = MDNRegressor(n_components=2, max_epochs=30, target_resolution=1, random_state=0).fit(X, y)
            >>> probabilities = model.predict_bin_probabilities(X[:2], np.arange(-20, 21))
            >>> probabilities.shape, bool(np.allclose(probabilities.sum(1), 1, atol=1e-3))
            ((2, 41), True)
        """
        check_is_fitted(self, "module_")
        if self.n_outputs_ != 1:
            raise ValueError(f"predict_bin_probabilities is for one target column; this model has {self.n_outputs_}.")
        if resolution is None:
            if self.target_resolution is None:
                raise ValueError("this model was fitted without target_resolution: pass resolution=<bin width>.")
            width = float(self._bin_widths[0])
        else:
            width = float(rounding.resolution_per_target(resolution, 1)[0])
        grid = np.asarray(values, dtype=np.float64)
        if grid.ndim != 1 or not np.isfinite(grid).all():
            raise ValueError(f"values must be a 1-D array of finite grid values, got shape {grid.shape}.")
        mixture = self.predict_dist(X)
        points = torch.from_numpy(grid).view(-1, 1, 1)  # [m, 1, 1] against batch (n,): [m, n]
        log_p = mixture.interval_log_prob(points - width / 2, points + width / 2)
        return log_p.exp().T.numpy()

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False, metadata: dict | None = None) -> None:
        """Write the fitted model to one safetensors file (weights + JSON), atomically.

        ``metadata``: a JSON-able record of the caller's own, given back by :func:`mdnkit.load`
        as ``metadata_`` (the command line keeps its data columns there).
        """
        save_estimator(self, path, overwrite=overwrite, metadata=metadata)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = True
        tags.regressor_tags.poor_score = True  # score is a log-likelihood, not R²
        return tags


def mixture_weights(log_likelihood: np.ndarray, prior_rows: float = MIXTURE_PRIOR_ROWS,
                    tolerance: float = 1e-10, max_iterations: int = 10_000) -> np.ndarray:
    """Weights ``w [M]`` of a mixture of ``M`` fitted densities from their log-likelihoods of
    held-out rows, ``[M, N]``: the most probable weights under a Dirichlet prior that credits each
    density ``prior_rows`` pseudo-rows, found by EM (stacking of predictive distributions, Yao et
    al. 2018, shrunk towards ``1/M``): ``w_m <- (Σ_i r_im + prior_rows) / (N + M prior_rows)``
    with responsibilities ``r_im ∝ w_m p_m(y_i)``.

    On a dozen rows the weights stay near ``1/M``; on thousands they follow the rows. A NaN
    (a diverged member) counts as ``-inf``, and rows no member can explain are left out.

    Args:
        log_likelihood: ``[M, N]``, ``log p_m(y_i)`` of each density at each held-out row.
        prior_rows: Pseudo-rows credited to each density (``0``: plain stacking).

    Returns:
        ``[M]``, non-negative, summing to 1.

    Example:
        >>> mixture_weights(np.log([[0.5, 0.5, 0.5], [0.1, 0.1, 0.1]]), prior_rows=1.0).round(3)
        array([0.765, 0.235])
    """
    log_likelihood = np.asarray(log_likelihood, dtype=np.float64)
    log_likelihood = np.where(np.isnan(log_likelihood), -np.inf, log_likelihood)
    log_likelihood = log_likelihood[:, np.isfinite(log_likelihood).any(axis=0)]
    n_members, n_rows = log_likelihood.shape
    weights = np.full(n_members, 1.0 / n_members)
    if n_rows == 0:
        return weights
    for _ in range(max_iterations):
        joint = np.log(weights)[:, None] + log_likelihood
        responsibility = np.exp(joint - np.logaddexp.reduce(joint, axis=0))
        updated = (responsibility.sum(axis=1) + prior_rows) / (n_rows + n_members * prior_rows)
        converged = np.abs(updated - weights).max() < tolerance
        weights = updated
        if converged:
            break
    return weights


def _mixture_nll(log_likelihoods: torch.Tensor, weights: np.ndarray) -> float:
    """Mean negative log-likelihood of the mixture of members weighted by ``weights [M]``, from
    each member's float64 ``log_likelihoods [M, n]`` of ``n`` rows (NaN: no density there)."""
    log_weights = torch.as_tensor(weights, dtype=torch.float64).log()  # a weight of 0: -inf
    return float(-torch.logsumexp(log_likelihoods.nan_to_num(nan=-math.inf) + log_weights[:, None], dim=0).mean())


def _best_of(scores: Sequence[float]) -> float:
    """The lowest of ``scores`` that is not NaN (NaN if all are), without NumPy's all-NaN warning."""
    return min((score for score in scores if not math.isnan(score)), default=math.nan)


def default_patience(batch_size: int | None, n_train: int) -> int:
    """Epochs of about 1000 gradient steps of ``batch_size`` rows (``None``: one step), in [20, 100]."""
    steps_per_epoch = 1 if batch_size is None else math.ceil(n_train / batch_size)
    return int(np.clip(math.ceil(1000 / steps_per_epoch), 20, 100))


def resolve_batch_size(setting: int | Literal["auto"] | None, n_train: int) -> int | None:
    """Rows per step for a ``batch_size`` setting on ``n_train`` rows (``None``: full batch)."""
    if setting is None:
        return None
    if isinstance(setting, str):  # "auto"
        return int(np.clip(n_train // AUTO_BATCH_STEPS, *AUTO_BATCH_RANGE))
    return int(setting)


@contextlib.contextmanager
def _quiet_rounding() -> Iterator[None]:
    """No :class:`~mdnkit.rounding.RoundedTargetWarning` inside: for the fits a search makes
    inside ``fit``, which has warned once already."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", rounding.RoundedTargetWarning)
        yield


def _feature_names(X: Any) -> np.ndarray | None:
    """Column names of a DataFrame whose columns are all strings, as scikit-learn records them."""
    columns = getattr(X, "columns", None)
    if columns is None or not all(isinstance(c, str) for c in columns):
        return None
    return np.asarray(columns, dtype=object)


def _standardized(values: np.ndarray, shift: np.ndarray, scale: np.ndarray, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """``(values - shift) / scale`` in float64 then ``dtype`` on ``device``, a chunk at a time: no
    float64 copy of the whole table (640 MB for 1e7 rows of 8 features)."""
    out = torch.empty(values.shape, dtype=dtype)
    for start in range(0, len(values), _PREDICT_CHUNK):
        rows = slice(start, start + _PREDICT_CHUNK)
        out[rows] = torch.from_numpy((values[rows] - shift) / scale)
    return out.to(device)
