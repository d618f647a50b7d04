"""Reading and writing mdnkit model files.

A model file is a single `safetensors <https://huggingface.co/docs/safetensors>`_
file (``.mdn`` is the conventional suffix, but the path is always used exactly
as given). The tensors are the model weights; everything else (configuration,
scalers, versions) is a JSON document stored as a string under the key
``"mdnkit"`` in the header's ``__metadata__`` map. The document always carries
``format``, ``format_version``, ``mdnkit_version`` and ``torch_version``.

Safetensors was chosen because loading it never executes code: unlike
``torch.load``/pickle, a hostile file can at worst fail to parse. Files are
written atomically (temporary file in the same directory, fsync, rename), so a
crash leaves either the old file or the new one, never a mixture, and an
existing file is only replaced when ``overwrite=True`` is passed. The temporary
file a killed writer leaves behind is removed by the next write of the same
file (see :func:`remove_stale_temps`).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import pathlib
import re
import socket
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import safetensors
import safetensors.torch
import numpy as np
import torch

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "ModelFileError", "load_estimator", "read_model_file", "save_estimator",
    "write_model_file",
]

FORMAT_NAME = "mdnkit"
# 2: the network keeps its own units (x_transform.* and y_transform.* tensors) and the document may
# hold the saver's metadata. Files of version 1 still load; a release that reads only version 1
# says the file is newer instead of failing on its tensors.
# 3: a noise mixture (input_noise="mixture"): one noise level per member and member weights.
# 4: the feature_embedding parameter and the embedding the network has ("feature_embedding_used").
# 5: the weight_averaging parameter.
FORMAT_VERSION = 5
_METADATA_KEY = "mdnkit"


class ModelFileError(ValueError):
    """A file is not a readable, compatible mdnkit model file."""


def _mdnkit_version() -> str:
    # Imported lazily: this module is part of mdnkit and must not depend on
    # the package's __init__ having finished importing.
    try:
        import mdnkit

        return str(mdnkit.__version__)
    except Exception:
        try:
            from importlib.metadata import version

            return version("mdnkit")
        except Exception:
            return "unknown"


def _check_json(value: Any, where: str) -> None:
    # Walk the document ourselves so the error names the offending key,
    # which json.dumps does not do.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is not a string; JSON object keys must be strings")
            _check_json(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise TypeError(f"{where} is {value!r}, which is not valid JSON")
    elif value is not None and not isinstance(value, (str, int, float, bool)):
        raise TypeError(f"{where} has type {type(value).__name__}, which is not JSON-serialisable")


def give_new_file_permissions(path: pathlib.Path) -> None:
    """Give a temporary file the permissions a new file would get (tempfile makes it 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


# Temporary names are ``.NAME.PID-OWNER.RANDOM.tmp``: the PID says which process writes the file,
# OWNER which machine and PID namespace that PID belongs to.
_TEMP_TAIL = re.compile(r"(?P<pid>[0-9]+)-(?P<owner>[0-9a-f]{8})\.[^.]+\.tmp")


def _owner_tag() -> str:
    """8 hex digits naming this host and PID namespace (a PID means nothing outside them)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # differs between containers on one host
    except OSError:
        namespace = ""
    return hashlib.sha1(f"{socket.gethostname()}\0{namespace}".encode()).hexdigest()[:8]


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (EPERM), or a number no process has: keep its file
    return True  # an unreaped zombie counts as alive too: its file goes at a later save


def remove_stale_temps(target: pathlib.Path) -> list[pathlib.Path]:
    """Remove the temporary files of ``target`` whose writers died before renaming them.

    A writer killed between creating its temporary file and the rename (SIGKILL, power loss, the
    OOM killer) leaves a full-size ``.NAME.PID-OWNER.RANDOM.tmp`` behind; each later save of the
    same target removes those. Only names that :func:`create_temp_file` makes for this very target
    count, and only those whose PID, on this host and in this PID namespace, no longer runs. The
    age of a file cannot tell the same: a live writer's file can be hours old (a stopped process,
    a slow network disk, a long ``mdnkit predict`` streaming rows). Files from other hosts sharing
    the folder, from older mdnkit versions (no PID in the name), of other targets, and of this
    process (another thread may be writing) are never touched. Not done on Windows, where
    ``os.kill(pid, 0)`` would terminate the process.

    Returns:
        The files removed.
    """
    if os.name != "posix":
        return []
    prefix, owner, removed = f".{target.name}.", _owner_tag(), []
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []  # cleaning up is a courtesy: it never makes a save fail
    for name in names:
        match = _TEMP_TAIL.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
        if match is None or match["owner"] != owner:
            continue
        pid = int(match["pid"])
        if pid == os.getpid() or _is_alive(pid):
            continue
        try:
            (target.parent / name).unlink()
        except OSError:
            continue  # removed by another writer meanwhile, or not ours to remove
        removed.append(target.parent / name)
    return removed


def create_temp_file(target: pathlib.Path) -> Any:
    """Open a new temporary file beside ``target`` for an atomic write (see :func:`remove_stale_temps`).

    Returns:
        An open binary ``NamedTemporaryFile`` (``delete=False``) with the permissions a new file
        would get; the caller renames or removes it.
    """
    remove_stale_temps(target)
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.{os.getpid()}-{_owner_tag()}.", suffix=".tmp", delete=False
    )
    try:
        give_new_file_permissions(pathlib.Path(handle.name))
    except BaseException:
        handle.close()
        pathlib.Path(handle.name).unlink(missing_ok=True)
        raise
    return handle


def write_model_file(
    path: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    document: Mapping[str, Any],
    *,
    overwrite: bool = False,
) -> pathlib.Path:
    """Atomically write weights and a JSON document to a model file.

    Args:
        path: Destination, used exactly as given (``.mdn`` is conventional).
        tensors: Weights by name; copied to contiguous CPU tensors.
        document: JSON-serialisable configuration. Format and version keys
            (``format``, ``format_version``, ``mdnkit_version``,
            ``torch_version``) are added, replacing any given values.
        overwrite: Replace an existing file. Without it, an existing file is
            never touched.

    Returns:
        The path written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: The parent directory does not exist.
        TypeError: A document value is not JSON-serialisable, or a tensor is
            not a ``torch.Tensor``.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.mdn"
        >>> write_model_file(path, {"w": torch.ones(2)}, {"n_components": 3}).name
        'model.mdn'
    """
    target = pathlib.Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: directory {str(parent)!r} does not exist")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
    _check_json(document, "document")
    full = dict(document)
    full.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        mdnkit_version=_mdnkit_version(),
        torch_version=str(torch.__version__),
    )
    cpu: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor {name!r} has type {type(tensor).__name__}, expected torch.Tensor")
        # A private contiguous copy: safetensors rejects views and tensors
        # sharing storage (e.g. tied weights), and must not see later edits.
        cpu[name] = tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    payload = safetensors.torch.save(cpu, metadata={_METADATA_KEY: json.dumps(full, sort_keys=True)})

    # Same directory as the target so that os.replace is an atomic rename.
    tmp = create_temp_file(target)
    try:
        with tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        # Check again just before replacing: the file may have appeared meanwhile.
        if target.exists() and not overwrite:
            raise FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
        os.replace(tmp.name, target)
    except BaseException:
        pathlib.Path(tmp.name).unlink(missing_ok=True)
        raise
    if os.name == "posix":
        # Persist the rename itself; not every filesystem supports this.
        try:
            fd = os.open(parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass
    return target


def read_model_file(
    path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a model file written by :func:`write_model_file`.

    Never unpickles or executes anything from the file.

    Args:
        path: The model file.
        device: Device to place the tensors on.

    Returns:
        ``(tensors, document)``; the document includes the format and version keys.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: The file is corrupt, truncated, not an mdnkit model,
            or written by a newer, incompatible mdnkit.

    Example:
        >>> import tempfile, pathlib
        >>> path = write_model_file(pathlib.Path(tempfile.mkdtemp()) / "m.mdn", {"w": torch.ones(2)}, {})
        >>> tensors, document = read_model_file(path)
        >>> document["format_version"], tensors["w"].tolist()
        (5, [1.0, 1.0])
    """
    source = pathlib.Path(path)
    if not source.exists():
        raise FileNotFoundError(f"model file {str(source)!r} does not exist")
    if source.is_dir():
        raise ModelFileError(f"{str(source)!r} is a directory, not an mdnkit model file")
    try:
        with safetensors.safe_open(str(source), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            if _METADATA_KEY not in metadata:
                raise ModelFileError(
                    f"{str(source)!r} is a safetensors file but not an mdnkit model (no {_METADATA_KEY!r} metadata)"
                )
            raw = metadata[_METADATA_KEY]
            # Load every tensor now so that no memory map outlives the handle.
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except safetensors.SafetensorError as exc:
        raise ModelFileError(f"{str(source)!r} is not a valid mdnkit model file (corrupt or truncated): {exc}") from exc
    try:
        document = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{str(source)!r} has an invalid mdnkit document (bad JSON): {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ModelFileError(f"{str(source)!r} has format {found!r}, expected {FORMAT_NAME!r}")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{str(source)!r} has an invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{str(source)!r} was written by a newer mdnkit (file format version {version}, this mdnkit "
            f"reads up to version {FORMAT_VERSION}, written by mdnkit {document.get('mdnkit_version')}); "
            "upgrade mdnkit to read it"
        )
    return tensors, document


# ---------------------------------------------------------------------- estimators
def _json_native(value: Any) -> Any:
    """numpy scalars and sequences (e.g. from a GridSearchCV grid) as plain JSON values."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_json_native(v) for v in value]
    return value


def save_estimator(
    estimator: Any, path: str | os.PathLike, *, overwrite: bool = False, metadata: Mapping[str, Any] | None = None,
) -> pathlib.Path:
    """Write a fitted estimator to ``path`` (see :func:`write_model_file`).

    The estimator owns what is saved: ``estimator._file_state()`` gives ``(fitted, tensors)``,
    a JSON-ready record of its learned attributes and its tensors; ``get_params`` its settings.
    ``metadata`` is the caller's own JSON record (the command line keeps its data columns there),
    given back as ``metadata_`` by :func:`load_estimator`.
    """
    params = {name: _json_native(value) for name, value in estimator.get_params(deep=False).items()}
    if callable(params.get("module")):  # a user's network class: its name, for display only
        factory = params["module"]
        params["module"] = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', type(factory).__name__)}"
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None  # a RandomState object has no JSON form; refits will differ
    fitted, tensors = estimator._file_state()
    if metadata is None:  # a loaded model saved again keeps what its file held
        metadata = getattr(estimator, "metadata_", None)
    document = {"estimator": type(estimator).__name__, "params": params, "fitted": fitted}
    if metadata:
        _check_json(dict(metadata), "metadata")
        document["metadata"] = dict(metadata)
    return write_model_file(path, tensors, document, overwrite=overwrite)


def load_estimator(
    path: str | os.PathLike, classes: Mapping[str, type], *, device: str | None = None, module: Any = None,
) -> Any:
    """Read an estimator written by :func:`save_estimator`.

    Args:
        path: The model file.
        classes: The estimator classes a file may name, by class name: only these are ever built
            (nothing named in a file is imported). Each has ``_from_file_state(params, fitted,
            tensors, device)``.
        device: Where to put the network (default: the saved ``device`` setting).
        module: The class (or factory) of a model fitted with ``module=``: the file keeps only
            its name, and nothing named in a file is imported.

    Raises:
        FileNotFoundError: No such file.
        ModelFileError: Not an mdnkit model, corrupt, truncated, or from an incompatible version.
    """
    tensors, document = read_model_file(path)
    name = document.get("estimator")
    if name not in classes:
        raise ModelFileError(f"{str(path)!r} holds a {name!r}, not one of {sorted(classes)}.")
    try:
        params, fitted = dict(document["params"]), dict(document["fitted"])
        metadata = dict(document.get("metadata", {}))
        if "schema_" in fitted:  # files before metadata kept the command line's columns here
            metadata.setdefault("schema", fitted.pop("schema_"))
        if device is not None:
            params["device"] = device
        elif str(params.get("device", "auto")).startswith("cuda") and not torch.cuda.is_available():
            warnings.warn(
                f"{str(path)!r} was saved with device={params['device']!r}, which is not available "
                "here; loading it on the CPU.",
                UserWarning,
                stacklevel=3,
            )
            params["device"] = "cpu"
        if isinstance(params.get("module"), str):
            if module is None:
                raise ModelFileError(
                    f"was fitted with the custom module {params['module']!r}, which a file does not hold; "
                    "rebuild it with mdnkit.load(path, module=TheClass)."
                )
            params["module"] = module
        elif module is not None:
            raise ModelFileError("holds a model with the built-in network; load it without module=.")
        estimator = classes[name]._from_file_state(params, fitted, tensors)
    except ModelFileError as error:
        raise ModelFileError(f"{str(path)!r} {error}") from None
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ModelFileError(
            f"{str(path)!r} is an mdnkit file but its contents do not match this version of "
            f"{name} ({type(error).__name__}: {error})."
        ) from None
    estimator.metadata_ = metadata
    return estimator
