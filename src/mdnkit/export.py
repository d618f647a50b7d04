"""Export a fitted network's ``params(x)`` as a ``torch.export`` program or an ONNX file.

What is exported is :meth:`~mdnkit.model.DensityNetwork.params`, tensors only: raw inputs
``x [B, F]`` (float64, original units) to ``(logits, *the family's parameters)`` in original
units (float64), e.g. ``(logits [B, K], loc [B, K, D], scale [B, K, D])`` for diagonal Gaussians,
with a leading member axis ``[M, B, ...]`` for an ensemble. The parameters are constrained in
the network's dtype and cast to float64 after (``params(x, float64_constraints=False)``: ONNX
Runtime has no float64 Softplus), so they differ from ``predict_dist``'s, constrained in float64,
by the float32 rounding of a float32 network (about 1e-7 relative). The input and target scaling are
inside the graph, so a consumer feeds raw rows and reads parameters in the target's units; no
mdnkit or torch is needed to run an ONNX file (``onnxruntime`` is enough). The batch dimension
is dynamic.

Inputs are float64 because the network's units are: a float32 input would round a feature like
``1e6 + 0.5`` before the graph could standardise it (the weights themselves may be float32; the
graph casts between them).

Beside the graph goes a JSON document (:func:`export_metadata`): the family and its options,
the covariance type of the exported parameters, the parameter names and shapes, ``K``, ``M``,
``F`` and ``D``, feature and target names, the units (recorded only: they are already applied in
the graph) and the versions. ONNX files keep it in ``metadata_props`` under the key ``"mdnkit"``;
``torch.export`` archives as the extra file ``mdnkit.json``. The density is rebuilt from the
outputs by logsumexp over components (and members, each weighted by ``member_weights[m]``, or
``1/M`` when it is null): see :func:`mixture_from_outputs`, or the README for NumPy.

Files are written atomically and an existing file is only replaced with ``overwrite=True``.
ONNX export needs the ``export`` extra (``pip install 'mdnkit[export]'``: onnx, onnxscript).

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> from mdnkit import MDNRegressor
    >>> X = np.random.default_rng(0).normal(size=(50, 2)); y = X[:, 0]
    >>> model = MDNRegressor(hidden_sizes=(8,), max_epochs=2, input_noise=0.0).fit(X, y)
    >>> program = to_exported_program(model)
    >>> [t.shape for t in program.module()(torch.zeros(4, 2, dtype=torch.float64))]
    [torch.Size([4, 5]), torch.Size([4, 5, 1]), torch.Size([4, 5, 1])]
"""

from __future__ import annotations

import copy
import io
import json
import os
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from mdnkit.families import make_family
from mdnkit.io import _mdnkit_version, create_temp_file
from mdnkit.mixture import Mixture, mixture_of_members
from mdnkit.model import DensityNetwork
from mdnkit.networks import EnsembleLinear, PeriodicEmbedding

__all__ = [
    "EXPORT_FORMATS", "METADATA_FILE", "METADATA_KEY", "ExportFormat", "ParamsModule", "export_metadata",
    "mixture_from_outputs", "read_onnx_metadata", "save", "save_exported_program", "to_exported_program",
    "to_onnx",
]

ExportFormat = Literal["onnx", "torch"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torch")
METADATA_KEY = "mdnkit"  # the metadata_props key of ONNX files
METADATA_FILE = "mdnkit.json"  # the extra file of torch.export archives
FORMAT_NAME = "mdnkit-export"
# 2: "member_weights" (null: equal weights), the weights of a noise mixture's members.
FORMAT_VERSION = 2
_INSTALL_HINT = "ONNX export needs onnx and onnxscript: pip install 'mdnkit[export]'"


class ParamsModule(nn.Module):
    """``x [B, F]`` float64, original units ``->`` the tuple of :meth:`DensityNetwork.params`.

    Tensors only and free of data-dependent Python control flow, so ``torch.export`` can trace
    it with a dynamic batch. Outputs are float64 (the network's dtype is only used inside).

    Args:
        network: The :class:`~mdnkit.model.DensityNetwork`; kept by reference (the export
            functions pass a CPU copy in eval mode).
    """

    def __init__(self, network: DensityNetwork) -> None:
        super().__init__()
        self.network = network
        family = network.family
        units = network.y_transform
        # GaussianMixture.affine decides whether an isotropic mixture stays isotropic with
        # bool((scale == scale[..., :1]).all()): a data-dependent branch that torch.export cannot
        # trace (the buffer is symbolic there). The answer depends only on the target units,
        # which are fixed once the model is fitted, so it is settled here, before tracing, and
        # forward applies the matching tensors-only affine. Every other family goes through
        # network.params unchanged.
        self._isotropic = units is not None and getattr(family, "covariance_type", None) == "isotropic"
        self.uniform_units = units is None or bool((units.scale == units.scale[0]).all())

    @property
    def covariance_type(self) -> str:
        """How the exported scales read: ``"diagonal"``, ``"isotropic"`` or ``"full"``
        (an isotropic network with unequal target scales exports diagonal scales)."""
        declared = getattr(self.network.family, "covariance_type", "diagonal")
        return "diagonal" if declared == "isotropic" and not self.uniform_units else declared

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        """``x [B, F]`` float64 -> ``(logits, *parameters)``, float64, batch shape ``(B,)``
        (``(M, B)`` for an ensemble)."""
        network = self.network
        if network.x_transform is None:  # no units: the network's own units and dtype
            return tuple(t.to(torch.float64) for t in network.params(x.to(network._dtype)))
        if not self._isotropic:  # constrained in the network's dtype: ONNX Runtime has no float64 Softplus
            return network.params(x, float64_constraints=False)
        z = network.x_transform(x).to(network._dtype)
        logits, loc, scale = (t.to(torch.float64) for t in network.standardized_params(z))
        shift, y_scale = network.y_transform.shift, network.y_transform.scale
        # The same operations as GaussianMixture.affine, so the outputs equal params(x, False) exactly.
        scale = scale * y_scale[0] if self.uniform_units else scale.unsqueeze(-1) * y_scale
        return logits, shift + y_scale * loc, scale


# ---------------------------------------------------------------------- the network and its facts
def _network(model: Any) -> tuple[DensityNetwork, Any]:
    """``(network, estimator or None)`` from a fitted estimator or a :class:`DensityNetwork`."""
    if isinstance(model, DensityNetwork):
        return model, None
    if hasattr(model, "get_params") and hasattr(model, "fit"):
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(model, "module_")
        if isinstance(model.module_, DensityNetwork):
            return model.module_, model
    raise TypeError(
        f"expected a fitted MDNRegressor or an mdnkit DensityNetwork (MDN, MDNEnsemble), got {type(model).__name__}"
    )


def _row_shape(network: DensityNetwork) -> tuple[int, ...]:
    """The shape of one input row: ``(F,)``, or ``(T, F)`` and the like for a custom backbone."""
    if network.x_transform is not None:
        return tuple(network.x_transform.shift.shape)
    first = next(m for m in network.modules() if isinstance(m, (nn.Linear, EnsembleLinear, PeriodicEmbedding)))
    return (int(first.in_features),)  # the backbone's first layer, or the head's for a linear MDN


def _cpu_copy(network: DensityNetwork) -> ParamsModule:
    """A CPU copy in eval mode: exporting never moves or switches the caller's network."""
    return ParamsModule(copy.deepcopy(network).cpu().eval())


def _density(family: str, covariance_type: str) -> str:
    component = {
        ("gaussian", "diagonal"): "prod_d Normal(y_d | loc[..., k, d], scale[..., k, d])",
        ("gaussian", "isotropic"): "prod_d Normal(y_d | loc[..., k, d], scale[..., k])",
        ("gaussian", "full"): "MultivariateNormal(y | loc[..., k, :], scale_tril[..., k] @ scale_tril[..., k].T)",
        ("student_t", "diagonal"): "prod_d StudentT(y_d | df[..., k, d], loc[..., k, d], scale[..., k, d])",
    }.get((family, covariance_type), "see the family's documentation")
    return (f"log p(y|x) = logsumexp over members m and components k of (log_softmax(logits, axis=-1) + "
            f"log p_k(y) + log w_m), with w_m = member_weights[m] (1/n_members when null) and p_k(y) = {component}")


def export_metadata(model: Any) -> dict[str, Any]:
    """The JSON document stored beside an exported graph (see the module docstring).

    Args:
        model: A fitted estimator or a :class:`~mdnkit.model.DensityNetwork`.
    """
    network, estimator = _network(model)
    params = _cpu_copy(network)
    family = network.family
    row = _row_shape(network)
    k, d, m, n_features = family.n_components, family.dim, network.n_members, int(np.prod(row))
    names = ["logits", *family.parameter_names]
    with torch.no_grad():  # the shapes as they come out, the batch axis (after any member axis) named
        outputs = params(torch.zeros(2, *row, dtype=torch.float64))
    batch_axis = 0 if m == 1 else 1
    shapes = {name: ["batch" if axis == batch_axis else size for axis, size in enumerate(t.shape)]
              for name, t in zip(names, outputs, strict=True)}
    units = None
    if network.x_transform is not None:
        units = {
            "applied": "inside the graph: give x in original units; outputs are in original units",
            "x_shift": network.x_transform.shift.tolist(), "x_scale": network.x_transform.scale.tolist(),
            "y_shift": network.y_transform.shift.tolist(), "y_scale": network.y_transform.scale.tolist(),
        }
    document: dict[str, Any] = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "mdnkit_version": _mdnkit_version(), "torch_version": str(torch.__version__),
        "family": family.name, "family_options": family.options(), "covariance_type": params.covariance_type,
        "parameter_names": names, "shapes": shapes,
        "n_components": k, "n_members": m, "n_features": n_features, "n_outputs": d,
        "member_weights": None if getattr(network, "member_log_weights", None) is None
        else network.member_log_weights.double().exp().tolist(),
        "input": {"name": "x", "dtype": "float64", "shape": ["batch", *row]},
        "units": units, "density": _density(family.name, params.covariance_type),
    }
    for key, attribute in (("feature_names", "feature_names_in_"), ("target_names", "target_names_")):
        values = getattr(estimator, attribute, None)
        document[key] = None if values is None else [str(v) for v in values]
    schema = getattr(estimator, "metadata_", {}).get("schema")
    if schema is not None:  # the CLI's columns and one-hot encoding
        document["schema"] = schema
    return document


# ---------------------------------------------------------------------- torch.export
def to_exported_program(model: Any, example_rows: Any = None) -> torch.export.ExportedProgram:
    """``params(x)`` as a :class:`torch.export.ExportedProgram` with a dynamic batch dimension.

    Args:
        model: A fitted estimator or a :class:`~mdnkit.model.DensityNetwork` (on any device;
            the program is traced from a CPU copy).
        example_rows: ``[N, F]`` rows to trace with, ``N >= 2`` (only their shape matters;
            default zeros).

    Returns:
        A program taking ``x [B, F]`` float64 and returning the float64 tuple of
        ``network.params(x, float64_constraints=False)`` (``program.module()(x)`` runs it).

    Raises:
        sklearn.exceptions.NotFittedError: An unfitted estimator.
        ValueError: ``example_rows`` of the wrong shape.
    """
    network, _ = _network(model)
    row = _row_shape(network)
    if example_rows is None:
        example_rows = torch.zeros(2, *row, dtype=torch.float64)
    if isinstance(example_rows, Tensor):
        x = example_rows.detach().to("cpu", torch.float64)
    else:
        x = torch.as_tensor(np.asarray(example_rows, dtype=np.float64))
    if tuple(x.shape[1:]) != row or x.shape[0] < 2:
        # torch.export specialises a dimension of size 0 or 1: it would not stay dynamic.
        expected = f"F={row[0]}" if len(row) == 1 else ", ".join(map(str, row))
        raise ValueError(f"example_rows must have shape [N >= 2, {expected}], got {tuple(x.shape)}")
    batch = torch.export.Dim("batch")
    return torch.export.export(_cpu_copy(network), (x,), dynamic_shapes=({0: batch},))


def save_exported_program(model: Any, path: str | os.PathLike, *, example_rows: Any = None,
                          overwrite: bool = False) -> pathlib.Path:
    """Write :func:`to_exported_program` with :func:`torch.export.save` (``.pt2`` is conventional).

    The metadata is the archive's extra file ``mdnkit.json``: read it back with
    ``torch.export.load(path, extra_files={"mdnkit.json": ""})``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: Its directory does not exist.
    """
    _check_target(path, overwrite)  # before tracing, not after
    program = to_exported_program(model, example_rows)
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={METADATA_FILE: json.dumps(export_metadata(model))})
    return _write_new_file(path, buffer.getvalue(), overwrite)


# ---------------------------------------------------------------------- ONNX
def to_onnx(model: Any, path: str | os.PathLike, *, overwrite: bool = False,
            opset_version: int | None = None) -> pathlib.Path:
    """Write ``params(x)`` as an ONNX file with a dynamic batch axis and its metadata.

    The graph has one input ``x [batch, F]`` (float64) and one output per parameter, named as
    the parameters (``logits``, ``loc``, ``scale`` or ``scale_tril``, ``df``), float64. The
    JSON document of :func:`export_metadata` is ``metadata_props["mdnkit"]``.

    Args:
        model: A fitted estimator or a :class:`~mdnkit.model.DensityNetwork`.
        path: Destination (``.onnx`` is conventional), used exactly as given.
        overwrite: Replace an existing file.
        opset_version: ONNX opset (default: torch's recommended one).

    Raises:
        ImportError: onnx or onnxscript is missing.
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: Its directory does not exist.
    """
    _check_target(path, overwrite)
    try:
        import onnx  # noqa: F401  (torch's exporter needs both; fail before tracing)
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from None
    metadata = export_metadata(model)
    program = torch.onnx.export(
        to_exported_program(model), dynamo=True, input_names=["x"], output_names=metadata["parameter_names"],
        # Given again only to name the ONNX batch axis "batch" (the program calls it s77 or so).
        dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        opset_version=opset_version, external_data=False, verbose=False,
    )
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    return _write_new_file(path, proto.SerializeToString(), overwrite)


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON document of an ONNX file written by :func:`to_onnx`.

    Raises:
        ValueError: The file has no mdnkit metadata.
    """
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            return json.loads(entry.value)
    raise ValueError(f"{str(path)!r} has no {METADATA_KEY!r} metadata: it was not written by mdnkit.export")


def save(model: Any, path: str | os.PathLike, format: ExportFormat = "onnx", *,
         overwrite: bool = False) -> pathlib.Path:
    """:func:`to_onnx` (``format="onnx"``) or :func:`save_exported_program` (``"torch"``)."""
    if format == "onnx":
        return to_onnx(model, path, overwrite=overwrite)
    if format == "torch":
        return save_exported_program(model, path, overwrite=overwrite)
    raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")


# ---------------------------------------------------------------------- consumers
def mixture_from_outputs(outputs: Sequence[Any] | Mapping[str, Any], metadata: Mapping[str, Any]) -> Mixture:
    """The mixture (original units) from an exported graph's outputs and its metadata.

    Args:
        outputs: The graph's outputs in order (as ``onnxruntime``'s ``session.run(None, ...)``
            gives them), or a mapping by parameter name; arrays or tensors.
        metadata: The document of :func:`export_metadata` (e.g. :func:`read_onnx_metadata`).

    Returns:
        Batch shape ``(B,)``: for an ensemble the mixture of the members, weighted by
        ``member_weights`` (equally when it is null or absent: older files), ``M·K`` components,
        as ``module_(x)``.
    """
    names = metadata["parameter_names"]
    if isinstance(outputs, Mapping):
        outputs = [outputs[name] for name in names]
    if len(outputs) != len(names):
        raise ValueError(f"expected {len(names)} outputs ({', '.join(names)}), got {len(outputs)}")
    tensors = [torch.as_tensor(np.asarray(t, dtype=np.float64)) for t in outputs]
    options = {**metadata["family_options"], "covariance_type": metadata["covariance_type"]}
    family = make_family(metadata["family"], metadata["n_components"], metadata["n_outputs"], **options)
    mixture = family.mixture(*tensors)
    if metadata["n_members"] == 1:
        return mixture
    weights = metadata.get("member_weights")
    return mixture_of_members(mixture, None, None if weights is None else torch.tensor(weights, dtype=torch.float64).log())


# ---------------------------------------------------------------------- files
def _check_target(path: str | os.PathLike, overwrite: bool) -> pathlib.Path:
    target = pathlib.Path(path)
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {str(target)!r}: directory {str(target.parent)!r} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {str(target)!r}: it is a directory")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{str(target)!r} already exists; pass overwrite=True to replace it")
    return target


def _write_new_file(path: str | os.PathLike, payload: bytes, overwrite: bool) -> pathlib.Path:
    """``payload`` to ``path`` through :func:`mdnkit.io.create_temp_file` and an atomic rename."""
    target = _check_target(path, overwrite)
    handle = create_temp_file(target)
    try:
        with handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        _check_target(target, overwrite)  # the file may have appeared meanwhile
        os.replace(handle.name, target)
    except BaseException:
        pathlib.Path(handle.name).unlink(missing_ok=True)
        raise
    return target
