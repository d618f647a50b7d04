"""What a fitted network estimator keeps in its model file, owned by the estimator.

:class:`FileStateMixin` gives :class:`~mdnkit.MDNRegressor` (and the baselines built on it)
``_file_state()`` for :func:`mdnkit.io.save_estimator` and ``_from_file_state()`` for
:func:`mdnkit.io.load_estimator`: the learned attributes by name, the network's weights and its
units, the novelty record and the conformal calibration record. Older files keep loading: attributes added since are optional, and
files written before the network owned its units keep those in the JSON document only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from mdnkit.base import resolve_device
from mdnkit.conformal import Calibration, CrossCalibration
from mdnkit.io import ModelFileError
from mdnkit.networks import feature_embedding_of
from mdnkit.novelty import InputNovelty

_ARRAYS = ("x_mean_", "x_scale_", "y_mean_", "y_scale_")
_VALUES = ("n_features_in_", "n_outputs_", "n_iter_", "best_epoch_", "_y_is_1d")
_NAMES = ("feature_names_in_", "target_names_")
# Absent from older files: the noise levels a fit used; the component-usage record.
_NOISE = ("input_noise_", "target_noise_")
_USAGE = ("component_weight_mean_", "component_weight_max_", "dead_components_")
# Tensors of the input-novelty detector sit beside the weights under this prefix.
_NOVELTY_PREFIX = "novelty_."
# The conformal calibration record (absent from older files and from uncalibrated models).
_CALIBRATION_PREFIX = "calibration_."
# A CV+ calibration's fold networks, one state dict each: "calibration_model.<k>.<name>".
_FOLD_PREFIX = "calibration_model."


class FileStateMixin:
    """``_file_state`` / ``_from_file_state`` for an estimator with a fitted ``module_``."""

    def _file_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(fitted, tensors)``: the learned attributes as JSON values, and every tensor."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "module_")
        fitted: dict[str, Any] = {name: np.asarray(getattr(self, name)).tolist() for name in _ARRAYS}
        fitted.update({name: getattr(self, name) for name in _VALUES})
        fitted["history_"] = [
            {key: (None if isinstance(value, float) and not math.isfinite(value) else value)
             for key, value in record.items()}
            for record in self.history_
        ]
        fitted.update({name: [str(v) for v in getattr(self, name)] for name in _NAMES if hasattr(self, name)})
        # A noise mixture keeps one level per member.
        fitted.update({name: np.asarray(getattr(self, name), dtype=float).tolist() for name in _NOISE if hasattr(self, name)})
        if hasattr(self, "member_weights_"):
            fitted["member_weights_"] = np.asarray(self.member_weights_, dtype=float).tolist()
        if hasattr(self, "validation_nll_"):  # files from before 2026-12-03 have none
            fitted["validation_nll_"] = float(self.validation_nll_)
        fitted.update({name: np.asarray(getattr(self, name)).tolist() for name in _USAGE if hasattr(self, name)})
        if hasattr(self, "n_components_"):
            fitted["n_components_"] = int(self.n_components_)
        # The embedding the network has, whatever rule "auto" followed when it was fitted.
        fitted["feature_embedding_used"] = feature_embedding_of(self.module_)
        if hasattr(self, "input_shape_"):
            fitted["input_shape_"] = list(self.input_shape_)
        if hasattr(self, "batch_size_"):  # rows per step the fit used (None: full batch)
            fitted["batch_size_"] = self.batch_size_
        tensors = dict(self.module_.state_dict())
        if getattr(self, "novelty_", None) is not None:
            tensors.update({_NOVELTY_PREFIX + name: t for name, t in self.novelty_.to_tensors().items()})
        if getattr(self, "calibration_", None) is not None and self._calibration_stamp == self._fit_stamp():
            tensors.update({_CALIBRATION_PREFIX + name: t for name, t in self.calibration_.to_tensors().items()})
            if isinstance(self.calibration_, CrossCalibration):  # CV+: its fold networks too
                for k, module in enumerate(self.calibration_modules_):
                    tensors.update({f"{_FOLD_PREFIX}{k}.{name}": t for name, t in module.state_dict().items()})
                fitted["calibration_components"] = list(self._calibration_components)
        return fitted, tensors

    @classmethod
    def _from_file_state(cls, params: dict[str, Any], fitted: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
        """The fitted estimator that :meth:`_file_state` described."""
        params = dict(params, hidden_sizes=tuple(params["hidden_sizes"]))  # JSON has lists
        if "feature_embedding" in cls._get_param_names():  # files from before embeddings: raw inputs
            params.setdefault("feature_embedding", None)
        if "weight_averaging" in cls._get_param_names():  # files from before averaging: the last weights
            params.setdefault("weight_averaging", 0.0)
        estimator = cls(**params)
        for name in _ARRAYS:  # x_mean_ and x_scale_ have the shape of an input row
            setattr(estimator, name, np.asarray(fitted[name], dtype=np.float64))
        for name in _VALUES:
            setattr(estimator, name, fitted[name])
        estimator.history_ = [
            {key: (math.nan if value is None else value) for key, value in record.items()}
            for record in fitted["history_"]
        ]
        for name in (n for n in _NAMES if n in fitted):
            setattr(estimator, name, np.asarray(fitted[name], dtype=object))
        for name in (n for n in _NOISE if n in fitted):
            value = fitted[name]
            setattr(estimator, name, tuple(float(v) for v in value) if isinstance(value, list) else float(value))
        if "member_weights_" in fitted:
            estimator.member_weights_ = np.asarray(fitted["member_weights_"], dtype=np.float64)
        if "validation_nll_" in fitted:
            estimator.validation_nll_ = float(fitted["validation_nll_"])
        for name in (n for n in _USAGE if n in fitted):
            setattr(estimator, name, np.asarray(fitted[name], dtype=bool if name == "dead_components_" else np.float64))
        estimator.n_components_ = int(fitted.get("n_components_", estimator.n_components))
        if "feature_embedding_used" in fitted:
            estimator._embedding_in_file_ = fitted["feature_embedding_used"]
        if "input_shape_" in fitted:
            estimator.input_shape_ = tuple(fitted["input_shape_"])
        if "batch_size_" in fitted:
            estimator.batch_size_ = None if fitted["batch_size_"] is None else int(fitted["batch_size_"])
        novelty = {name[len(_NOVELTY_PREFIX):]: tensors.pop(name) for name in list(tensors)
                   if name.startswith(_NOVELTY_PREFIX)}
        try:  # files saved before novelty scores existed have none: predictions then do not warn
            estimator.novelty_ = InputNovelty.from_tensors(novelty) if novelty else None
        except ValueError as error:
            raise ModelFileError(f"has an unreadable novelty record: {error}") from None
        folds = _pop_fold_tensors(tensors)
        calibration = {name[len(_CALIBRATION_PREFIX):]: tensors.pop(name) for name in list(tensors)
                       if name.startswith(_CALIBRATION_PREFIX)}
        if calibration:
            try:
                estimator.calibration_ = Calibration.from_tensors(calibration)
            except ValueError as error:
                raise ModelFileError(f"has an unreadable calibration record: {error}") from None
            estimator._calibration_stamp = estimator._fit_stamp()
        if isinstance(getattr(estimator, "calibration_", None), CrossCalibration):
            components = fitted.get("calibration_components", [])
            if len(folds) != estimator.calibration_.n_folds or len(components) != len(folds):
                raise ModelFileError(f"has a CV+ calibration of {estimator.calibration_.n_folds} folds but "
                                     f"{len(folds)} fold networks")
            estimator._calibration_components = [int(c) for c in components]
            estimator.calibration_modules_ = [estimator._module_from_tensors(folds[k], int(c))
                                              for k, c in enumerate(components)]
        estimator.module_ = estimator._module_from_tensors(tensors)
        return estimator

    def _module_from_tensors(self, tensors: dict[str, torch.Tensor], n_components: int | None = None) -> torch.nn.Module:
        """The network, cast before its weights are copied in (a float64 model keeps every digit)."""
        n_components = self.n_components_ if n_components is None else n_components
        module = self._build_module(self.n_features_in_, self.n_outputs_, n_components)
        module.to(dtype=torch.float32 if self.dtype == "float32" else torch.float64)
        module.set_units(self.x_mean_, self.x_scale_, self.y_mean_, self.y_scale_)
        if "member_log_weights" in tensors:  # a weighted mixture of members: the slot its weights load into
            module.set_member_weights(np.ones(module.n_members))
        # Files written before the network owned its units keep them in the header only.
        own_units = {name: value for name, value in module.state_dict().items() if "_transform." in name}
        module.load_state_dict({**own_units, **tensors}, strict=True)
        return module.to(device=resolve_device(self.device)).eval()


def _pop_fold_tensors(tensors: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
    """Take a CV+ calibration's fold networks out of ``tensors``: one state dict per fold, in order."""
    folds: dict[int, dict[str, torch.Tensor]] = {}
    for name in [n for n in tensors if n.startswith(_FOLD_PREFIX)]:
        index, _, key = name[len(_FOLD_PREFIX):].partition(".")
        folds.setdefault(int(index), {})[key] = tensors.pop(name)
    return [folds[k] for k in sorted(folds)]
