"""mdnkit: Mixture Density Networks and conditional density estimation on PyTorch.

Example:
    >>> import numpy as np
    >>> import mdnkit
    >>> X = np.random.default_rng(0).uniform(size=(200, 1)); y = 2 * X[:, 0]
    >>> model = mdnkit.MDNRegressor(max_epochs=20, random_state=0).fit(X, y + 0.1)
    >>> model.predict_dist(X[:3])
    GaussianMixture(batch_shape=(3,), event_shape=(1,), n_components=5, covariance_type='diagonal')
"""

from mdnkit.baselines import (
    ConditionalGMM,
    GaussianNetworkRegressor,
    HomoscedasticGaussianRegressor,
    MSENetworkRegressor,
)
from mdnkit.distributions import GaussianMixture, HighestDensityIntervals, Modes
from mdnkit.estimator import MDNRegressor
from mdnkit.heads import MDN, MDNEnsemble, MixtureHead
from mdnkit.io import ModelFileError, load
from mdnkit.networks import MLP
from mdnkit.novelty import InputNovelty, NoveltyWarning
from mdnkit.selection import MDNRegressorCV
from mdnkit.training import TrainingDivergedError, TrainingInterrupted

__version__ = "0.1.0"

__all__ = [
    "ConditionalGMM",
    "GaussianMixture",
    "GaussianNetworkRegressor",
    "HighestDensityIntervals",
    "HomoscedasticGaussianRegressor",
    "InputNovelty",
    "MDN",
    "MDNEnsemble",
    "MDNRegressor",
    "MDNRegressorCV",
    "MLP",
    "MSENetworkRegressor",
    "MixtureHead",
    "ModelFileError",
    "Modes",
    "NoveltyWarning",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "__version__",
    "load",
]
