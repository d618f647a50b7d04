"""The ``mdnkit`` command line, end to end through its real entry points.

Every command runs as a subprocess (``python -m mdnkit``, and the installed ``mdnkit`` script
once), on small generated tables in a temporary folder. Starting Python with torch costs a few
seconds, so independent commands are started together and awaited together.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import mdnkit
import mdnkit.metrics

TINY = ["--epochs", "20", "--hidden", "8", "--components", "2", "--random-state", "0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
SCRIPT = pathlib.Path(sys.executable).with_name("mdnkit")


def start(args: list[str], cwd: pathlib.Path, script: bool = False) -> subprocess.Popen:
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "mdnkit"]
    return subprocess.Popen(command + [str(a) for a in args], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def run_many(commands: dict[str, list[str]], cwd: pathlib.Path) -> dict[str, subprocess.CompletedProcess]:
    """Run the commands four at a time (two cores: more only thrash), ``{name: CompletedProcess}``."""
    done = {}
    names = list(commands)
    for first in range(0, len(names), 4):
        running = {name: start(commands[name], cwd) for name in names[first:first + 4]}
        for name, process in running.items():
            stdout, stderr = process.communicate(timeout=600)
            done[name] = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    return done


def faithful(n: int, seed: int) -> pd.DataFrame:
    """An Old Faithful-like table: eruption length given the waiting time (and a season)."""
    rng = np.random.default_rng(seed)
    long = rng.random(n) < 0.64
    waiting = np.where(long, rng.normal(80, 6, n), rng.normal(54.5, 6, n)).round()
    eruptions = np.where(long, rng.normal(4.3, 0.4, n), rng.normal(2.05, 0.28, n)).round(3)
    season = rng.choice(["spring", "summer", "winter"], n)
    return pd.DataFrame({"eruptions": eruptions, "waiting": waiting, "season": season})


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> pathlib.Path:
    """A folder with data files and two models fitted through the two entry points."""
    folder = tmp_path_factory.mktemp("cli")
    table = faithful(160, 0)
    table.to_csv(folder / "train.csv", index=False)
    table.to_parquet(folder / "train.parquet", index=False)
    faithful(40, 1).to_csv(folder / "test.csv", index=False)
    with_gaps = table.copy()
    with_gaps.loc[[3, 7], "waiting"] = np.nan
    with_gaps.to_csv(folder / "gaps.csv", index=False)

    fits = {
        "csv": start(["fit", "train.csv", "--target", "eruptions", "-o", "model.mdn", *TINY], folder),
        "parquet": start(["fit", "train.parquet", "--target", "eruptions", "--features", "waiting",
                          "-o", "waiting.mdn", "--batch-size", "full", "--input-noise", "select", *TINY],
                         folder, script=True),
        "gaps": start(["fit", "gaps.csv", "--target", "eruptions", "-o", "gaps.mdn", "--drop-missing",
                       "--quiet", *TINY], folder),
        # waiting is recorded in whole minutes
        "rounded": start(["fit", "train.csv", "--target", "waiting", "-o", "rounded.mdn", "--target-resolution", "1",
                          *TINY], folder),
    }
    for name, process in fits.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, (name, stderr)
        (folder / f"fit_{name}.out").write_text(stdout + "\n---\n" + stderr)
    return folder


def test_fit_writes_a_loadable_model_with_its_schema(work):
    log = (work / "fit_csv.out").read_text()
    assert "saved model.mdn: 20 epochs" in log
    assert "fit:" in log and "epoch" in log  # the progress bar went to stderr
    model = mdnkit.load(work / "model.mdn")
    assert model.metadata_["schema"] == {
        "features": ["waiting", "season"], "targets": ["eruptions"],
        "categories": {"season": ["spring", "summer", "winter"]},
    }
    assert model.n_features_in_ == 4 and model.n_iter_ == 20
    assert (model.batch_size, model.batch_size_, model.learning_rate) == ("auto", 64, 3e-3)  # the defaults
    waiting = mdnkit.load(work / "waiting.mdn")
    assert waiting.metadata_["schema"]["features"] == ["waiting"] and waiting.batch_size_ is None  # --batch-size full
    assert waiting.input_noise == "select" and not hasattr(waiting, "member_weights_")  # one network
    assert model.input_noise == "auto" and model.member_weights_.shape == (6,)  # the default: the noise mixture, two per level
    gaps = (work / "fit_gaps.out").read_text()
    assert "dropped 2 row(s) with missing values, 158 left" in gaps
    assert "fit:" not in gaps and "saved" not in gaps  # --quiet, but the count is always said


def test_fit_with_a_target_resolution_scores_bins(work):
    log = (work / "fit_rounded.out").read_text()
    assert "train bin NLL" in log and "looks rounded" not in log  # no warning: the resolution is given
    from mdnkit.tabular import Schema

    model = mdnkit.load(work / "rounded.mdn")
    schema = Schema.from_dict(model.metadata_["schema"])
    table = pd.read_csv(work / "test.csv")
    assert model.target_resolution == 1.0 and schema.targets == ["waiting"]
    log_p = model.score_samples(schema.encode(table, "test"), schema.target_values(table, "test"))
    assert (log_p <= 0).all()  # log-probabilities of bins


@pytest.fixture(scope="module")
def outputs(work):
    commands = {
        "predict": ["predict", "model.mdn", "test.csv", "-o", "pred.csv", "--quantiles", "0.1,0.5,0.9",
                    "--interval", "0.9", "--modes", "--chunk-size", "7"],
        "predict_parquet": ["predict", "waiting.mdn", "train.parquet", "-o", "pred.parquet"],
        "sample": ["sample", "model.mdn", "test.csv", "-n", "25", "-o", "samples.parquet", "--temperature", "0.8"],
        "evaluate": ["evaluate", "model.mdn", "test.csv"],
        "evaluate_json": ["evaluate", "waiting.mdn", "test.csv", "--json"],
        "info": ["info", "model.mdn"],
        "report": ["report", "model.mdn", "test.csv", "-o", "report.html"],
        "help": ["--help"],
        "fit_help": ["fit", "--help"],
        "version": ["--version"],
    }
    return run_many(commands, work)


def test_every_command_succeeds(outputs):
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr)
        assert "Traceback" not in result.stderr, name


def test_predict_streams_chunks_into_one_table(work, outputs):
    predictions = pd.read_csv(work / "pred.csv")
    assert len(predictions) == 40 and predictions["row"].tolist() == list(range(40))
    for column in ("eruptions_mean", "eruptions_std", "eruptions_q0.1", "eruptions_q0.9", "eruptions_lower90",
                   "eruptions_upper90", "eruptions_mode1", "eruptions_mode2", "mode1_log_density",
                   "log_likelihood"):
        assert column in predictions.columns, column
    assert (predictions["eruptions_q0.1"] <= predictions["eruptions_q0.9"]).all()
    # The same numbers as the estimator on the whole table at once (chunks of 7 rows changed nothing).
    model = mdnkit.load(work / "model.mdn")
    test = pd.read_csv(work / "test.csv")
    X = np.column_stack([test["waiting"], *(test["season"] == s for s in ("spring", "summer", "winter"))])
    np.testing.assert_allclose(predictions["eruptions_mean"], model.predict(X.astype(float)), rtol=1e-5)
    np.testing.assert_allclose(predictions["log_likelihood"], model.score_samples(X.astype(float), test["eruptions"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predictions["novelty"], model.novelty_score(X.astype(float)), rtol=1e-5)
    parquet = pd.read_parquet(work / "pred.parquet")
    assert len(parquet) == 160 and list(parquet.columns) == ["row", "eruptions_mean", "eruptions_std", "log_likelihood", "novelty"]


def test_sample_writes_one_line_per_draw(work, outputs):
    samples = pd.read_parquet(work / "samples.parquet")
    assert list(samples.columns) == ["row", "draw", "eruptions"] and len(samples) == 40 * 25
    assert np.isfinite(samples["eruptions"]).all()


def test_evaluate_table_and_json(outputs):
    text = outputs["evaluate"].stdout
    for label in ("NLL", "CRPS", "RMSE of the mean", "MAE of the median", "PIT calibration error", "90 %"):
        assert label in text, label
    metrics = json.loads(outputs["evaluate_json"].stdout)
    assert metrics["rows"] == 40
    for key in ("nll", "crps", "rmse_mean", "mae_mean", "rmse_median", "mae_median", "coverage_central_90",
                "width_central_90", "coverage_hdi_50", "pit_calibration_error"):
        assert np.isfinite(metrics[key]), key


def test_info_help_and_version(outputs):
    info = outputs["info"].stdout
    for part in ("MLP 4 + periodic embeddings -> 8 (relu) -> mixture of 2 Gaussians", "backbone.0.weight", "training: 20 epochs",
                 "season", "categorical, 3: spring, summer, winter", "eruptions  target"):
        assert part in info, part
    for command in ("fit", "predict", "sample", "evaluate", "report", "info", "export", "demo"):
        assert f"\n    {command} " in outputs["help"].stdout, command
    assert "--drop-missing" in outputs["fit_help"].stdout and "Ctrl-C" in outputs["fit_help"].stdout
    assert outputs["version"].stdout.strip() == f"mdnkit {mdnkit.__version__}"


def test_report_is_one_self_contained_html_file(work, outputs):
    page = (work / "report.html").read_text()
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) >= 5 and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:)[^"'\s>]""", page)  # nothing to fetch
    assert "http://" not in page and "https://" not in page and "<script" not in page
    metrics = mdnkit.metrics.evaluate(*_labelled(work))
    assert f"{metrics['nll']:.4g}" in page and f"{metrics['crps']:.4g}" in page
    for heading in ("Metrics", "Training", "Calibration", "Features", "Model", "Data schema", "head.linear.weight"):
        assert heading in page, heading


def _labelled(work):
    model = mdnkit.load(work / "model.mdn")
    test = pd.read_csv(work / "test.csv")
    X = np.column_stack([test["waiting"], *(test["season"] == s for s in ("spring", "summer", "winter"))])
    return model, X.astype(float), test["eruptions"].to_numpy()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Chromium (apt-get install chromium)")
def test_report_renders_in_headless_chromium(work, outputs, tmp_path):
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={screenshot}", "--window-size=1200,2000", (work / "report.html").as_uri()],
        capture_output=True, timeout=120, check=False,
    )
    assert screenshot.stat().st_size > 20_000  # a blank page compresses to a few hundred bytes
    from PIL import Image  # matplotlib's dependency

    pixels = np.asarray(Image.open(screenshot).convert("L"), dtype=float)
    assert pixels.std() > 10  # text and figures, not one flat colour


# ---------------------------------------------------------------------- bad input
def _bad_files(work: pathlib.Path) -> None:
    (work / "empty.csv").write_text("")
    (work / "header.csv").write_text("eruptions,waiting,season\n")
    (work / "table.xlsx").write_text("not a spreadsheet")
    (work / "broken.parquet").write_text("this is not parquet")
    (work / "corrupt.mdn").write_bytes(b"\x00garbage" * 50)
    table = faithful(30, 2)
    text = table.astype({"waiting": object})
    text.loc[4, "waiting"] = "soon"
    text.to_csv(work / "text.csv", index=False)
    table.rename(columns={"waiting": "wait"}).to_csv(work / "renamed.csv", index=False)
    table.assign(season="autumn").to_csv(work / "autumn.csv", index=False)
    table.drop(columns="eruptions").to_csv(work / "unlabelled.csv", index=False)
    import safetensors.torch
    import torch

    safetensors.torch.save_file({"w": torch.zeros(1)}, str(work / "future.mdn"), metadata={
        "mdnkit": json.dumps({"format": "mdnkit", "format_version": 99, "mdnkit_version": "9.0"})})
    (work / "taken.csv").write_text("keep me\n")


BAD = {
    "missing file": (["fit", "nowhere.csv", "--target", "eruptions", "-o", "x.mdn"], "'nowhere.csv': no such file"),
    "unknown format": (["fit", "table.xlsx", "--target", "eruptions", "-o", "x.mdn"], "unknown table format '.xlsx'"),
    "unreadable": (["predict", "model.mdn", "broken.parquet", "-o", "x.csv"], "could not be read as PARQUET"),
    "empty file": (["fit", "empty.csv", "--target", "eruptions", "-o", "x.mdn"], "'empty.csv' is empty"),
    "header only": (["evaluate", "model.mdn", "header.csv"], "has a header but no rows"),
    "unknown target": (["fit", "train.csv", "--target", "duration", "-o", "x.mdn"],
                       "has no target column 'duration'; its columns are 'eruptions', 'waiting', 'season'"),
    "no target given": (["fit", "train.csv", "-o", "x.mdn"], "the following arguments are required: --target"),
    "text target": (["fit", "train.csv", "--target", "season", "-o", "x.mdn"], "target column 'season' is not numeric"),
    "non-numeric": (["fit", "text.csv", "--target", "eruptions", "-o", "x.mdn"],
                    "non-numeric values in numeric column(s) 'waiting' (e.g. 'soon')"),
    "missing values": (["fit", "gaps.csv", "--target", "eruptions", "-o", "x.mdn"],
                       "2 row(s) have missing values (in 'waiting' (2)); pass --drop-missing"),
    "missing values at predict": (["predict", "model.mdn", "gaps.csv", "-o", "x.csv"], "pass --drop-missing"),
    "missing model": (["predict", "nothing.mdn", "test.csv", "-o", "x.csv"], "'nothing.mdn' does not exist"),
    "corrupt model": (["info", "corrupt.mdn"], "is not a valid mdnkit model file"),
    "future model": (["evaluate", "future.mdn", "test.csv"], "written by a newer mdnkit"),
    "schema mismatch": (["predict", "model.mdn", "renamed.csv", "-o", "x.csv"],
                        "missing column(s) 'waiting'; it has column(s) the model does not know: 'wait'"),
    "unseen category": (["predict", "model.mdn", "autumn.csv", "-o", "x.csv"],
                        "column 'season' has categories not seen in training: 'autumn'"),
    "no target to evaluate": (["evaluate", "model.mdn", "unlabelled.csv"], "missing column(s) 'eruptions'"),
    "existing output": (["predict", "model.mdn", "test.csv", "-o", "taken.csv"],
                        "'taken.csv' already exists; pass --force to overwrite it"),
    "existing model": (["fit", "train.csv", "--target", "eruptions", "-o", "model.mdn", *TINY],
                       "'model.mdn' already exists; pass --force"),
    "existing report": (["report", "model.mdn", "test.csv", "-o", "taken.csv"], "already exists"),
    "bad option": (["fit", "train.csv", "--target", "eruptions", "-o", "x.mdn", "--hidden", "8,x"],
                   "argument --hidden: expected positive integers"),
    "bad batch size": (["fit", "train.csv", "--target", "eruptions", "-o", "x.mdn", "--batch-size", "some"],
                       "argument --batch-size: expected a positive integer, 'auto' or 'full', got 'some'"),
    "bad noise": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--input-noise", "some"],
                  "argument --input-noise: expected auto, mixture, select or a finite number >= 0, got 'some'"),
    "bad target noise": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--target-noise", "select"],
                         "argument --target-noise: expected auto or a finite number >= 0, got 'select'"),
    "bad patience": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--patience", "0"],
                     "argument --patience: expected a positive integer or 'auto', got '0'"),
    "bad averaging": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--weight-averaging", "1"],
                      "argument --weight-averaging: expected a number in [0, 1), got '1'"),
    "bad weight decay": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--weight-decay", "-1"],
                         "argument --weight-decay: expected a finite number >= 0, got '-1'"),
    "bad resolution": (["fit", "train.csv", "--target", "waiting", "-o", "x.mdn", "--target-resolution", "0"],
                       "argument --target-resolution: expected a positive number, got '0'"),
    "zero draws": (["sample", "model.mdn", "test.csv", "-o", "x.csv", "-n", "0"],
                   "argument -n/--n-samples: expected a positive integer, got '0'"),
    "negative draws": (["sample", "model.mdn", "test.csv", "-o", "x.csv", "-n", "-3"],
                       "argument -n/--n-samples: expected a positive integer, got '-3'"),
    "fractional draws": (["sample", "model.mdn", "test.csv", "-o", "x.csv", "--n-samples", "2.5"],
                         "argument -n/--n-samples: expected a positive integer, got '2.5'"),
}


@pytest.fixture(scope="module")
def bad_results(work):
    _bad_files(work)
    before = (work / "model.mdn").read_bytes()
    results = run_many({name: args for name, (args, _) in BAD.items()}, work)
    assert (work / "model.mdn").read_bytes() == before and (work / "taken.csv").read_text() == "keep me\n"
    assert not list(work.glob("x.*")) and not list(work.glob(".*.tmp"))  # nothing written, no leftovers
    return results


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_exit_status_2(bad_results, case):
    result = bad_results[case]
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mdnkit: error: "), result.stderr
    assert BAD[case][1] in lines[0]


def test_force_replaces_outputs(work, bad_results):
    results = run_many({
        "predict": ["predict", "model.mdn", "test.csv", "-o", "taken.csv", "--force"],
        "predict_dropping": ["predict", "model.mdn", "gaps.csv", "-o", "gaps_pred.jsonl", "--drop-missing"],
    }, work)
    assert all(r.returncode == 0 for r in results.values()), {k: r.stderr for k, r in results.items()}
    assert len(pd.read_csv(work / "taken.csv")) == 40
    kept = pd.read_json(work / "gaps_pred.jsonl", lines=True)
    assert len(kept) == 158 and 3 not in kept["row"].tolist() and 7 not in kept["row"].tolist()
    assert "skipped 2 row(s) with missing features" in results["predict_dropping"].stderr


def test_fit_options_reach_the_estimator():
    """Each training option of ``mdnkit fit`` sets its ``MDNRegressor`` parameter; left out, the
    estimator's own default."""
    from mdnkit.cli import _model, build_parser

    base = ["fit", "train.csv", "--target", "y", "-o", "m.mdn"]
    given = _model(build_parser().parse_args([
        *base, "--target-noise", "auto", "--weight-decay", "0.01", "--patience", "7", "--weight-averaging", "0",
    ])).get_params()
    assert (given["target_noise"], given["weight_decay"], given["patience"], given["weight_averaging"]) \
        == ("auto", 0.01, 7, 0.0)
    other = _model(build_parser().parse_args([*base, "--target-noise", "0.05", "--patience", "auto"])).get_params()
    assert other["target_noise"] == 0.05 and other["patience"] is None
    defaults = mdnkit.MDNRegressor().get_params()
    left_out = _model(build_parser().parse_args(base)).get_params()
    for name in ("target_noise", "weight_decay", "patience", "weight_averaging", "input_noise", "learning_rate",
                 "feature_embedding", "batch_size", "max_epochs", "validation_fraction", "n_components"):
        assert left_out[name] == defaults[name], name


# ---------------------------------------------------------------------- start-up time
LIGHT = {  # argv: exit status; none of them needs a model, a table or the estimator
    ("--help",): 0, ("--version",): 0, ("fit", "--help"): 0, ("predict", "--help"): 0,
    ("sample", "--help"): 0, ("evaluate", "--help"): 0, ("report", "--help"): 0, ("info", "--help"): 0,
    ("export", "--help"): 0, ("demo", "--help"): 0, ("demo", "--list"): 0, ("bogus",): 2, ("fit", "train.csv"): 2,
    ("sample", "m.mdn", "d.csv", "-o", "x.csv", "-n", "0"): 2,
}


def test_help_and_usage_errors_do_not_import_torch(tmp_path):
    """Importing torch takes seconds; --help, --version and argument errors must not wait for it."""
    script = (
        "import sys, mdnkit.cli\n"
        f"codes = [mdnkit.cli.main(list(argv)) for argv in {list(LIGHT)!r}]\n"
        "print(codes, [name for name in ('torch', 'pandas') if name in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=ENV, text=True,
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == f"{list(LIGHT.values())} []"


# ---------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_stops_training_and_saves_the_best_model(work, tmp_path):
    # 4000 rows in batches of 8: early stopping takes some 15 s here, so Ctrl-C reliably comes first
    # (on 400 rows in one batch the fit could end before the signal arrived, under load)
    faithful(4000, 3).to_csv(tmp_path / "data.tsv", sep="\t", index=False)
    args = ["fit", "data.tsv", "--target", "eruptions", "-o", "stopped.mdn", "--epochs", "1000000",
            "--hidden", "8", "--components", "2", "--batch-size", "8"]
    # The child takes Ctrl-C as a terminal would deliver it, whatever the test process inherited:
    # under `make test`'s workers children sometimes ignored SIGINT (the disposition a process
    # inherits when its parent ignores it), and the fit then ran to its early stop.
    launcher = ("import runpy, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
                "signal.signal(signal.SIGINT, signal.default_int_handler); sys.argv = ['mdnkit', *sys.argv[1:]]; "
                "runpy.run_module('mdnkit', run_name='__main__', alter_sys=True)")
    inherited = (signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, []))
    process = subprocess.Popen([sys.executable, "-c", launcher, *args], cwd=tmp_path, env=ENV, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Only the reader thread reads stderr: with communicate() reading it too, the two took turns
    # character by character under load and the log came back interleaved.
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(lambda: process.stderr.read(1), "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not re.search(r": [1-9]\d* epochs \[", "".join(stderr)):  # the fit's bar counts epochs
        assert process.poll() is None and time.monotonic() < deadline, "".join(stderr)
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=300)  # slow under load; the fit prints one line to stdout, which cannot fill its pipe
    reader.join(timeout=30)
    stdout, log = process.stdout.read(), "".join(stderr)
    assert process.returncode == 0, log
    # in the input-noise pass (or the fit after it)
    assert "Training interrupted " in log and "Traceback" not in log, (inherited, log)
    assert "saved stopped.mdn" in stdout
    model = mdnkit.load(tmp_path / "stopped.mdn")
    assert 1 <= model.best_epoch_ <= model.n_iter_ < 1_000_000
    assert np.isfinite(model.predict(np.array([[60.0, 1, 0, 0]]))).all()
    assert not list(tmp_path.glob(".*.tmp"))
