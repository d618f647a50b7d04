"""mdnkit: Mixture Density Networks and conditional density estimation on PyTorch.

Example:
    >>> import numpy as np
    >>> import mdnkit
    >>> X = np.random.default_rng(0).uniform(size=(200, 1)); y = 2 * X[:, 0]
    >>> model = mdnkit.MDNRegressor(max_epochs=20, random_state=0).fit(X, y + 0.1)
    >>> model.predict_dist(X[:3])  # the noise search's six networks, 5 components each
    GaussianMixture(batch_shape=(3,), event_shape=(1,), n_components=30, covariance_type='diagonal')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# The public names load on first use (PEP 562): they all import torch (~2 s), which the
# command line's --help and argument errors (`mdnkit.cli` imports this package first) never need.
_SOURCES = {
    "ConditionalGMM": "mdnkit.baselines",
    "GaussianNetworkRegressor": "mdnkit.baselines",
    "HomoscedasticGaussianRegressor": "mdnkit.baselines",
    "MSENetworkRegressor": "mdnkit.baselines",
    "GaussianMixture": "mdnkit.distributions",
    "HighestDensityIntervals": "mdnkit.distributions",
    "Modes": "mdnkit.distributions",
    "MDNRegressor": "mdnkit.estimator",
    "Mixture": "mdnkit.mixture",
    "StudentTMixture": "mdnkit.student_t",
    "MDN": "mdnkit.heads",
    "MDNEnsemble": "mdnkit.heads",
    "MixtureHead": "mdnkit.heads",
    "ModelFileError": "mdnkit.io",
    "load": "mdnkit.loading",
    "MLP": "mdnkit.networks",
    "InputNovelty": "mdnkit.novelty",
    "NoveltyWarning": "mdnkit.novelty",
    "MDNRegressorCV": "mdnkit.selection",
    "RoundedTargetWarning": "mdnkit.rounding",
    "find_grid": "mdnkit.rounding",
    "TableRows": "mdnkit.streaming",
    "TrainingDivergedError": "mdnkit.training",
    "TrainingInterrupted": "mdnkit.training",
}

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
    "Mixture",
    "MixtureHead",
    "ModelFileError",
    "Modes",
    "NoveltyWarning",
    "RoundedTargetWarning",
    "StudentTMixture",
    "TableRows",
    "TrainingDivergedError",
    "TrainingInterrupted",
    "__version__",
    "find_grid",
    "load",
]

if TYPE_CHECKING:  # type checkers and IDEs see the names without the lazy loading
    from mdnkit.baselines import (
        ConditionalGMM,
        GaussianNetworkRegressor,
        HomoscedasticGaussianRegressor,
        MSENetworkRegressor,
    )
    from mdnkit.distributions import GaussianMixture, HighestDensityIntervals, Modes
    from mdnkit.estimator import MDNRegressor
    from mdnkit.heads import MDN, MDNEnsemble, MixtureHead
    from mdnkit.mixture import Mixture
    from mdnkit.student_t import StudentTMixture
    from mdnkit.io import ModelFileError
    from mdnkit.loading import load
    from mdnkit.networks import MLP
    from mdnkit.novelty import InputNovelty, NoveltyWarning
    from mdnkit.rounding import RoundedTargetWarning, find_grid
    from mdnkit.selection import MDNRegressorCV
    from mdnkit.streaming import TableRows
    from mdnkit.training import TrainingDivergedError, TrainingInterrupted


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module 'mdnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(source), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
