"""``mdnkit.load``: the one place that knows which estimator classes a model file may hold."""

from __future__ import annotations

import os
from typing import Any

from mdnkit.baselines import GaussianNetworkRegressor
from mdnkit.estimator import MDNRegressor
from mdnkit.io import load_estimator

__all__ = ["load"]

# Only these classes are ever built from a file: the name in its header picks one, no import.
FILE_CLASSES: dict[str, type] = {cls.__name__: cls for cls in (MDNRegressor, GaussianNetworkRegressor)}


def load(path: str | os.PathLike, *, device: str | None = None, module: Any = None) -> Any:
    """Read a model written by :meth:`MDNRegressor.save`.

    Args:
        path: The model file.
        device: Where to put the network (default: the saved ``device`` setting, ``"auto"``
            meaning CUDA when present).
        module: For a model fitted with ``MDNRegressor(module=MyNet)``: ``MyNet`` (the file keeps
            the weights and the class's name, never code).

    Returns:
        The fitted estimator; its ``score_samples`` equal the saved model's. What the saver put in
        ``save(..., metadata=...)`` is ``metadata_`` (empty when nothing was).

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Not an mdnkit model, corrupt, truncated, or from an incompatible version.
    """
    return load_estimator(path, FILE_CLASSES, device=device, module=module)
