"""mdnkit.export: ONNX files and torch.export programs of ``params(x)``, against the model itself.

The ONNX files run in onnxruntime on rows the models never saw, and their outputs are turned into
``log p(y | x)`` here with SciPy alone (no mdnkit), which must equal ``score_samples``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.special import logsumexp
from sklearn.exceptions import NotFittedError

import mdnkit
from mdnkit import MDN, MDNRegressor, export

TINY = {"hidden_sizes": (8,), "max_epochs": 3, "n_components": 2, "random_state": 0, "input_noise": 0.0}
CASES = {  # name: (estimator settings, target dimension)
    "diagonal-1d": ({}, 1),
    "diagonal-2d": ({}, 2),
    "isotropic-1d": ({"covariance_type": "isotropic"}, 1),  # uniform target units: scale stays [B, K]
    "isotropic-2d": ({"covariance_type": "isotropic"}, 2),  # unequal units: exported as diagonal
    "full-1d": ({"covariance_type": "full"}, 1),
    "full-2d": ({"covariance_type": "full"}, 2),
    "student_t-1d": ({"family": "student_t"}, 1),
    "student_t-2d": ({"family": "student_t"}, 2),
    "ensemble-2d": ({"n_estimators": 3, "covariance_type": "full"}, 2),
    # One network per noise level, weighted by member_weights_ (unequal weights in the metadata).
    "noise-mixture-1d": ({"input_noise": "mixture", "target_noise": "auto"}, 1),
}


def rows(n: int, seed: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``(n, 3)`` and targets with a shift and unequal scales, ``(n,)`` or ``(n, 2)``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 100.0, -3.0]
    y = np.column_stack([np.sin(X[:, 0]) + 0.3 * rng.normal(size=n), 50 + 10 * X[:, 2] + rng.normal(size=n)])
    return X, (y[:, 0] if dim == 1 else y)


@pytest.fixture(scope="module")
def models() -> dict[str, MDNRegressor]:
    fitted = {}
    for name, (settings, dim) in CASES.items():
        fitted[name] = MDNRegressor(**{**TINY, **settings}).fit(*rows(60, 0, dim))
    return fitted


@pytest.fixture(scope="module")
def onnx_file(models, tmp_path_factory):
    """``onnx_file(case)``: the case's model exported once for every test that reads it."""
    folder, written = tmp_path_factory.mktemp("onnx"), {}

    def path(case: str):
        if case not in written:
            written[case] = export.to_onnx(models[case], folder / f"{case}.onnx")
        return written[case]

    return path


def needs_onnx():
    for name in ("onnx", "onnxscript"):
        pytest.importorskip(name)
    return pytest.importorskip("onnxruntime")


def reference_log_prob(outputs: list[np.ndarray], metadata: dict, y: np.ndarray) -> np.ndarray:
    """``log p(y | x)`` from the graph's outputs by SciPy: logsumexp over members and components."""
    p = dict(zip(metadata["parameter_names"], outputs))
    if metadata["n_members"] == 1:
        p = {name: value[None] for name, value in p.items()}  # a member axis of one
    y = y.reshape(len(y), -1)  # [B, D]
    log_weights = p["logits"] - logsumexp(p["logits"], axis=-1, keepdims=True)  # [M, B, K]
    point = y[None, :, None, :]  # [1, B, 1, D]
    if metadata["family"] == "student_t":
        component = stats.t.logpdf(point, p["df"], p["loc"], p["scale"]).sum(-1)
    elif metadata["covariance_type"] == "full":
        component = np.empty(log_weights.shape)
        for index in np.ndindex(*log_weights.shape):
            tril = p["scale_tril"][index]
            component[index] = stats.multivariate_normal.logpdf(y[index[1]], p["loc"][index], tril @ tril.T)
    else:
        scale = p["scale"] if metadata["covariance_type"] == "diagonal" else p["scale"][..., None]
        component = stats.norm.logpdf(point, p["loc"], scale).sum(-1)
    members = metadata.get("member_weights") or [1.0 / metadata["n_members"]] * metadata["n_members"]
    return logsumexp(log_weights + component + np.log(members)[:, None, None], axis=(0, 2))


# ---------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("case", list(CASES))
def test_onnx_in_onnxruntime_matches_log_prob_on_fresh_rows(models, onnx_file, case):
    onnxruntime = needs_onnx()
    model, dim = models[case], CASES[case][1]
    path = onnx_file(case)
    metadata = export.read_onnx_metadata(path)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == metadata["parameter_names"]
    assert session.get_inputs()[0].type == "tensor(double)" and session.get_inputs()[0].shape == ["batch", 3]
    X, y = rows(25, 1, dim)  # rows the model never saw
    outputs = session.run(None, {"x": X})
    for output, shape in zip(outputs, metadata["shapes"].values()):
        assert output.dtype == np.float64 and list(output.shape) == [25 if s == "batch" else s for s in shape]
    expected = model.score_samples(X, y)
    np.testing.assert_allclose(reference_log_prob(outputs, metadata, y), expected, rtol=0, atol=1e-5)
    rebuilt = export.mixture_from_outputs(outputs, metadata)
    rebuilt_log_prob = rebuilt.log_prob(torch.as_tensor(y.reshape(25, -1))).numpy()
    np.testing.assert_allclose(rebuilt_log_prob, expected, rtol=0, atol=1e-5)


def test_onnx_keeps_components_masked_in_one_member(models, tmp_path):
    onnxruntime = needs_onnx()
    model = copy.deepcopy(models["ensemble-2d"])
    model.module_.head.mask(torch.tensor([[True, False], [False, False], [False, False]]))  # logit -inf
    path = export.to_onnx(model, tmp_path / "masked.onnx")
    X, y = rows(10, 2, 2)
    outputs = onnxruntime.InferenceSession(str(path)).run(None, {"x": X})
    assert np.isneginf(outputs[0][0, :, 0]).all()
    np.testing.assert_allclose(reference_log_prob(outputs, export.read_onnx_metadata(path), y),
                               model.score_samples(X, y), rtol=0, atol=1e-5)


def test_onnx_carries_unequal_member_weights(models, tmp_path):
    onnxruntime = needs_onnx()
    model = copy.deepcopy(models["ensemble-2d"])
    model.module_.set_member_weights([0.6, 0.3, 0.1])
    path = export.to_onnx(model, tmp_path / "weighted.onnx")
    X, y = rows(10, 2, 2)
    outputs = onnxruntime.InferenceSession(str(path)).run(None, {"x": X})
    metadata = export.read_onnx_metadata(path)
    np.testing.assert_allclose(metadata["member_weights"], [0.6, 0.3, 0.1], rtol=1e-6)
    expected = model.score_samples(X, y)
    np.testing.assert_allclose(reference_log_prob(outputs, metadata, y), expected, rtol=0, atol=1e-5)
    rebuilt = export.mixture_from_outputs(outputs, metadata).log_prob(torch.as_tensor(y)).numpy()
    np.testing.assert_allclose(rebuilt, expected, rtol=0, atol=1e-5)


def test_onnx_batch_axis_takes_any_number_of_rows(onnx_file):
    onnxruntime = needs_onnx()
    session = onnxruntime.InferenceSession(str(onnx_file("diagonal-2d")))
    for n in (0, 1, 7):
        logits, loc, scale = session.run(None, {"x": rows(n, 3, 2)[0]})
        assert logits.shape == (n, 2) and loc.shape == scale.shape == (n, 2, 2)


def test_metadata_describes_the_model(models, onnx_file):
    needs_onnx()
    model = models["isotropic-2d"]
    metadata = export.read_onnx_metadata(onnx_file("isotropic-2d"))
    assert metadata == json.loads(json.dumps(export.export_metadata(model)))  # the same document, via JSON
    assert metadata["family"] == "gaussian" and metadata["family_options"] == {"covariance_type": "isotropic"}
    assert metadata["covariance_type"] == "diagonal"  # the target's two units differ
    assert metadata["parameter_names"] == ["logits", "loc", "scale"]
    assert metadata["shapes"] == {"logits": ["batch", 2], "loc": ["batch", 2, 2], "scale": ["batch", 2, 2]}
    sizes = [metadata[key] for key in ("n_components", "n_members", "n_features", "n_outputs")]
    assert sizes == [2, 1, 3, 2]
    units = metadata["units"]
    assert "inside the graph" in units["applied"]
    for key, attribute in (("x_shift", "x_mean_"), ("x_scale", "x_scale_"), ("y_shift", "y_mean_"),
                           ("y_scale", "y_scale_")):
        np.testing.assert_array_equal(units[key], getattr(model, attribute))
    assert metadata["mdnkit_version"] == mdnkit.__version__ and metadata["input"]["dtype"] == "float64"
    assert metadata["feature_names"] is None and metadata["target_names"] is None
    ensemble = export.export_metadata(models["ensemble-2d"])
    assert ensemble["n_members"] == 3 and ensemble["shapes"]["scale_tril"] == [3, "batch", 2, 2, 2]
    assert ensemble["member_weights"] is None and metadata["member_weights"] is None  # equal weights
    mixture = export.export_metadata(models["noise-mixture-1d"])
    np.testing.assert_allclose(mixture["member_weights"], models["noise-mixture-1d"].member_weights_, rtol=1e-6)
    assert mixture["n_members"] == 6 and len(set(mixture["member_weights"])) == 6
    student = export.export_metadata(models["student_t-1d"])
    assert student["parameter_names"] == ["logits", "df", "loc", "scale"]
    assert student["family_options"] == {"min_df": 2.0}


def test_metadata_names_the_columns_of_a_frame():
    X, y = rows(40, 0, 2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = MDNRegressor(**TINY).fit(frame, pd.DataFrame(y, columns=["u", "v"]))
    metadata = export.export_metadata(model)
    assert metadata["feature_names"] == ["a", "b", "c"] and metadata["target_names"] == ["u", "v"]


# ---------------------------------------------------------------------- torch.export
@pytest.mark.parametrize("case", ["diagonal-2d", "isotropic-1d", "isotropic-2d", "full-2d", "student_t-2d",
                                  "ensemble-2d"])
def test_exported_program_equals_params_on_fresh_rows(models, case):
    model = models[case]
    program = export.to_exported_program(model, rows(5, 9, 1)[0])
    x = torch.as_tensor(rows(13, 4, 1)[0])
    with torch.no_grad():
        expected = model.module_.params(x, float64_constraints=False)
        for got, want in zip(program.module()(x), expected, strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
            assert got.dtype == torch.float64


def test_saved_program_loads_with_its_metadata(models, tmp_path):
    model = models["student_t-2d"]
    path = export.save_exported_program(model, tmp_path / "model.pt2")
    extra = {export.METADATA_FILE: ""}
    program = torch.export.load(path, extra_files=extra)
    assert json.loads(extra[export.METADATA_FILE]) == json.loads(json.dumps(export.export_metadata(model)))
    x = torch.as_tensor(rows(6, 5, 2)[0])
    with torch.no_grad():
        for got, want in zip(program.module()(x), model.module_.params(x, float64_constraints=False), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_a_network_without_units_exports_in_its_own_units():
    network = MDN(3, 2, n_components=2, hidden_sizes=(8,)).eval()
    x = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        got = export.to_exported_program(network).module()(x)
        want = network.params(x.float())
    for a, b in zip(got, want, strict=True):
        assert a.dtype == torch.float64
        torch.testing.assert_close(a, b.double(), rtol=0, atol=0)
    assert export.export_metadata(network)["units"] is None


# ---------------------------------------------------------------------- refusals and files
def test_refuses_unfitted_models_and_other_objects(tmp_path):
    with pytest.raises(NotFittedError, match="not fitted"):
        export.to_exported_program(MDNRegressor())
    with pytest.raises(NotFittedError, match="not fitted"):
        export.save(MDNRegressor(), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match="expected a fitted MDNRegressor or an mdnkit DensityNetwork"):
        export.export_metadata(torch.nn.Linear(2, 2))
    assert not list(tmp_path.iterdir())


def test_example_rows_of_the_wrong_shape_are_refused(models):
    with pytest.raises(ValueError, match=r"example_rows must have shape \[N >= 2, F=3\], got \(4, 2\)"):
        export.to_exported_program(models["diagonal-1d"], np.zeros((4, 2)))
    with pytest.raises(ValueError, match="got \\(1, 3\\)"):
        export.to_exported_program(models["diagonal-1d"], np.zeros((1, 3)))


@pytest.mark.parametrize("format", ["torch", "onnx"])
def test_existing_files_are_kept_unless_overwrite(models, tmp_path, format):
    if format == "onnx":
        needs_onnx()
    path = tmp_path / "taken"
    path.write_text("keep me")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        export.save(models["diagonal-1d"], path, format)
    assert path.read_text() == "keep me"
    export.save(models["diagonal-1d"], path, format, overwrite=True)
    assert path.stat().st_size > 1000 and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temp files
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export.save(models["diagonal-1d"], tmp_path / "missing" / "m", format)
    with pytest.raises(ValueError, match="format must be one of"):
        export.save(models["diagonal-1d"], tmp_path / "m", "tflite")


def test_a_missing_onnx_extra_is_named(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'mdnkit\[export\]'"):
        export.to_onnx(models["diagonal-1d"], tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------- command line
def test_cli_export_end_to_end(models, tmp_path):
    onnxruntime = needs_onnx()
    model = models["diagonal-2d"]
    model.save(tmp_path / "model.mdn")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run([sys.executable, "-m", "mdnkit", "export", "model.mdn", "-o", "model.onnx"],
                            cwd=tmp_path, env=env, text=True, capture_output=True, timeout=300, check=False)
    assert result.returncode == 0 and result.stderr.strip() == "wrote model.onnx (onnx)", result.stderr
    X, y = rows(20, 6, 2)
    outputs = onnxruntime.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"x": X})
    metadata = export.read_onnx_metadata(tmp_path / "model.onnx")
    np.testing.assert_allclose(reference_log_prob(outputs, metadata, y), model.score_samples(X, y), rtol=0, atol=1e-5)


def test_cli_export_errors_are_one_line(models, tmp_path, monkeypatch, capsys):
    from mdnkit.cli import main

    models["diagonal-1d"].save(tmp_path / "model.mdn")
    (tmp_path / "taken.onnx").write_text("keep me")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "model.mdn", "-o", "taken.onnx"]) == 2
    assert capsys.readouterr().err == "mdnkit: error: 'taken.onnx' already exists; pass --force to overwrite it\n"
    assert (tmp_path / "taken.onnx").read_text() == "keep me"
    assert main(["export", "model.mdn", "-o", "m.pt2", "--format", "tflite"]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    assert main(["export", "model.mdn", "-o", "m.onnx"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mdnkit: error: ONNX export needs onnx and onnxscript") and err.count("\n") == 1
    assert main(["export", "model.mdn", "-o", "m.pt2", "--format", "torch"]) == 0  # needs torch only
    assert torch.export.load(tmp_path / "m.pt2") is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt2", "model.mdn", "taken.onnx"]
