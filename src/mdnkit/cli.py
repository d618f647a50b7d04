"""``mdnkit`` on the command line: a thin adapter over :class:`~mdnkit.MDNRegressor`.

Parsing and error mapping live here; reading and encoding tables in :mod:`mdnkit.tabular`, the
HTML report in :mod:`mdnkit.report`, the metrics in :mod:`mdnkit.metrics`.

Every problem with the user's input (a missing or unreadable file, a wrong column, a corrupt model
file, an existing output without ``--force``) ends with one line ``mdnkit: error: ...`` on stderr
and exit status 2, never a traceback. Ctrl-C during ``fit`` ends training early and saves the
best model so far (exit status 0); Ctrl-C anywhere else exits with 130 and leaves no
half-written output.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

# Parsing, --help and usage errors need none of the estimator, torch or pandas (~2 s to import),
# so every command and helper imports what it needs from them itself.
if TYPE_CHECKING:
    from mdnkit.tabular import Schema

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line form as every other error."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: str) -> NoReturn:
    print(f"mdnkit: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _info(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"mdnkit: {message}", file=sys.stderr)


# ---------------------------------------------------------------------- option types
def _hidden(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas (e.g. 64,64), got {text!r}")
    return sizes


def _number_option(kind: type, accept: Callable[[Any], bool], expected: str,
                   words: dict[str, Any] | None = None) -> Callable[[str], Any]:
    """An argparse ``type``: one of ``words`` (any case, mapped to its setting), else a ``kind``
    number that ``accept`` takes; anything else is the error "expected {expected}"."""
    words = words or {}

    def parse(text: str) -> Any:
        if text.lower() in words:
            return words[text.lower()]
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def _finite_at_least_zero(value: float) -> bool:
    return math.isfinite(value) and value >= 0


_positive_int = _number_option(int, lambda value: value >= 1, "a positive integer")
_positive_float = _number_option(float, lambda value: math.isfinite(value) and value > 0, "a positive number")
_nonnegative_float = _number_option(float, _finite_at_least_zero, "a finite number >= 0")  # --weight-decay
_fraction = _number_option(float, lambda value: 0 <= value < 1, "a number in [0, 1)")
_batch_size = _number_option(int, lambda value: value >= 1, "a positive integer, 'auto' or 'full'",
                             {"auto": "auto", "full": None})
# --patience: epochs, or auto (about 1000 gradient steps: patience=None)
_patience = _number_option(int, lambda value: value >= 1, "a positive integer or 'auto'", {"auto": None})
_noise_setting = _number_option(float, _finite_at_least_zero, "auto, mixture, select or a finite number >= 0",
                                {word: word for word in ("auto", "mixture", "select")})
_target_noise_setting = _number_option(float, _finite_at_least_zero, "auto or a finite number >= 0", {"auto": "auto"})


def _bounds(text: str) -> tuple[float, float]:
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        low = high = math.nan
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise argparse.ArgumentTypeError(f"expected LOW,HIGH with LOW < HIGH (e.g. 0,1), got {text!r}")
    return low, high


# The names of mdnkit.families.FAMILY_NAMES, spelled out: parsing must not import torch
# (tests/test_cli.py checks that the two agree).
FAMILY_CHOICES = ("gaussian", "student_t", "laplace", "lognormal", "logit_normal", "von_mises")


def _probabilities(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or not all(0 < v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers strictly between 0 and 1, separated by commas, got {text!r}")
    return values


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The ``mdnkit`` argument parser (one subcommand per verb)."""
    from mdnkit import __version__

    parser = _Parser(
        prog="mdnkit",
        description="Mixture Density Networks for tables: learn the whole distribution of a target "
        "column given the others, then predict, sample, evaluate and report.",
        epilog="Example: mdnkit fit faithful.csv --target eruptions -o faithful.mdn && "
        "mdnkit report faithful.mdn faithful.csv -o report.html. Run 'mdnkit COMMAND --help' for details.",
    )
    parser.add_argument("--version", action="version", version=f"mdnkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    def data_options(command: argparse.ArgumentParser, missing: str) -> None:
        command.add_argument("--drop-missing", action="store_true", help=missing)

    def output_options(command: argparse.ArgumentParser, what: str) -> None:
        command.add_argument("-o", "--output", required=True, metavar="PATH", help=what)
        command.add_argument("--force", action="store_true", help="overwrite PATH if it exists")

    fit = commands.add_parser(
        "fit", help="train a model on a table",
        description="Train an MDN on DATA (.csv, .tsv, .parquet or .jsonl). Features are every column "
        "but the targets unless --features is given; text columns are one-hot encoded. Ctrl-C stops "
        "training early and saves the best model so far.",
    )
    fit.add_argument("data", metavar="DATA", help="training table")
    fit.add_argument("--target", action="append", required=True, metavar="COL",
                     help="target column (repeat for a multivariate target)")
    fit.add_argument("--features", nargs="+", metavar="COL", help="feature columns (default: all others)")
    output_options(fit, "model file to write (e.g. model.mdn)")
    fit.add_argument("--components", type=_positive_int, default=5, help="mixture components per network (default 5)")
    fit.add_argument("--estimators", type=_positive_int, default=1,
                     help="ensemble members, combined as one mixture (default 1)")
    fit.add_argument("--hidden", type=_hidden, default=(64, 64), metavar="SIZES",
                     help="hidden layer widths, comma separated (default 64,64)")
    fit.add_argument("--epochs", type=_positive_int, default=2000, help="maximum epochs (default 2000)")
    fit.add_argument("--batch-size", type=_batch_size, default="auto", metavar="N|auto|full",
                     help="rows per gradient step, 'auto' (64 to 256 by data size; the default) or 'full'")
    fit.add_argument("--covariance", choices=("diagonal", "full", "isotropic"), default="diagonal",
                     help="covariance of each component for multivariate targets (default diagonal)")
    fit.add_argument("--family", choices=FAMILY_CHOICES, default="gaussian",
                     help="component family (default gaussian): student_t and laplace for heavy tails, "
                     "lognormal for targets > 0, logit_normal for targets in --bounds, von_mises for angles "
                     "in radians")
    fit.add_argument("--bounds", type=_bounds, metavar="LOW,HIGH",
                     help="the targets' declared support for --family logit_normal (default 0,1)")
    fit.add_argument("--target-resolution", type=_positive_float, metavar="H",
                     help="the targets were recorded on a grid of step H (e.g. 1 for integer scores): "
                          "train and score on the probability of each value's bin, not the density")
    fit.add_argument("--learning-rate", type=float, default=3e-3, help="Adam step size (default 0.003)")
    fit.add_argument("--input-noise", type=_noise_setting, default="auto", metavar="auto|mixture|select|SD",
                     help="noise on the standardised inputs: 'auto' (the default) trains three levels, two "
                     "networks each, in one pass and keeps all six as a weighted mixture, 'select' keeps the "
                     "best network, a number fixes it")
    fit.add_argument("--target-noise", type=_target_noise_setting, default=0.0, metavar="auto|SD",
                     help="noise on the standardised targets (default 0); 'auto' gives each input-noise "
                     "level the same target noise")
    fit.add_argument("--weight-decay", type=_nonnegative_float, default=0.0, metavar="W",
                     help="decoupled L2 penalty, AdamW (default 0)")
    fit.add_argument("--patience", type=_patience, default=None, metavar="N|auto",
                     help="epochs without validation improvement before stopping (default auto: about "
                     "1000 gradient steps, between 20 and 100 epochs)")
    fit.add_argument("--weight-averaging", type=_fraction, default=0.99, metavar="D",
                     help="decay per step of the weights' moving average, which validation scores and the "
                     "model keeps (default 0.99, about the last 100 steps; 0 keeps the last step's weights)")
    fit.add_argument("--feature-embedding", choices=["auto", "periodic", "none"], default="auto",
                     help="'periodic': learned periodic features of each input beside it; 'none': raw inputs; "
                     "'auto' (the default): periodic from 3 features on")
    fit.add_argument("--validation-fraction", type=_fraction, default=0.1,
                     help="rows held out for early stopping (default 0.1; 0 trains on all for --epochs)")
    fit.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1 ...")
    fit.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    fit.add_argument("--calibrate", action="store_true",
                     help="hold out --calibration-fraction of the rows (a seeded random draw, before the "
                     "validation split) and calibrate the prediction sets on them, for 'predict --calibrated'")
    fit.add_argument("--calibration-fraction", type=_fraction, default=0.25, metavar="F",
                     help="share of the rows kept out of training for --calibrate (default 0.25)")
    fit.add_argument("--calibration-cv", type=int, default=None, metavar="K",
                     help="calibrate by K-fold cross-conformal (CV+) instead, on every row: K more fits, no rows "
                     "held out (for small data); central intervals, for 'predict --interval C --calibrated'")
    data_options(fit, "drop rows with missing values (refused by default) and say how many")
    fit.add_argument("--stream", action="store_true",
                     help="read DATA (.csv, .tsv, a .parquet file or a directory of them) in batches, never all "
                     "in memory: numeric columns only, no missing values, no --calibrate")
    fit.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    fit.set_defaults(handler=cmd_fit)

    predict = commands.add_parser(
        "predict", help="predictive mean, std, quantiles, intervals, modes",
        description="Predict for every row of DATA, in chunks (memory stays flat), into a .csv, .tsv, "
        ".parquet or .jsonl file: the row number, the mean and standard deviation of each target, "
        "optional quantiles, central intervals and modes, and the log-likelihood of the observed "
        "target when DATA has the target column(s).",
    )
    predict.add_argument("model", metavar="MODEL")
    predict.add_argument("data", metavar="DATA")
    output_options(predict, "predictions table to write")
    predict.add_argument("--quantiles", type=_probabilities, default=[], metavar="Q1,Q2,...",
                         help="quantile levels, e.g. 0.1,0.5,0.9")
    predict.add_argument("--interval", type=_probabilities, default=[], metavar="C1,C2,...",
                         help="central interval coverages, e.g. 0.9")
    predict.add_argument("--calibrated", action="store_true",
                         help="conformal intervals from the calibration of 'mdnkit fit --calibrate' (coverage "
                         "guaranteed on average over rows like the calibration rows)")
    predict.add_argument("--modes", action="store_true", help="every mode of p(y|x) with its log-density")
    predict.add_argument("--chunk-size", type=_positive_int, default=50_000, help="rows per chunk (default 50000)")
    data_options(predict, "skip rows with missing features (the row column says which rows remain)")
    predict.set_defaults(handler=cmd_predict)

    sample = commands.add_parser(
        "sample", help="draw from p(y|x) for every row",
        description="Draw N samples of the target(s) for every row of DATA; the output has one line "
        "per draw: row, draw, then the target column(s).",
    )
    sample.add_argument("model", metavar="MODEL")
    sample.add_argument("data", metavar="DATA")
    sample.add_argument("-n", "--n-samples", type=_positive_int, default=100, help="draws per row (default 100)")
    output_options(sample, "samples table to write")
    sample.add_argument("--temperature", type=float, default=1.0, help="sharpen (<1) or flatten (>1) the mixture")
    sample.add_argument("--random-state", type=int, default=0, help="seed (default 0)")
    sample.add_argument("--chunk-size", type=_positive_int, default=10_000, help="rows per chunk (default 10000)")
    data_options(sample, "skip rows with missing features")
    sample.set_defaults(handler=cmd_sample)

    evaluate = commands.add_parser(
        "evaluate", help="scores, errors and calibration on a labelled table",
        description="NLL, CRPS (1-D targets; energy score otherwise), RMSE/MAE of the mean and median, "
        "coverage and width of central and highest-density intervals, PIT calibration error.",
    )
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data", metavar="DATA", help="table with the feature and target columns")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    data_options(evaluate, "drop rows with missing values")
    evaluate.set_defaults(handler=cmd_evaluate)

    report = commands.add_parser(
        "report", help="one self-contained HTML report",
        description="Write one HTML file (pictures embedded) with the model summary, training curves, "
        "calibration, metrics on DATA and p(y|x) along the most important features.",
    )
    report.add_argument("model", metavar="MODEL")
    report.add_argument("data", metavar="DATA", help="table with the feature and target columns (held-out data is best)")
    output_options(report, "HTML file to write")
    data_options(report, "drop rows with missing values")
    report.set_defaults(handler=cmd_report)

    info = commands.add_parser("info", help="architecture, parameters, training history, data schema",
                               description="Describe a model file.")
    info.add_argument("model", metavar="MODEL")
    info.set_defaults(handler=cmd_info)

    exporter = commands.add_parser(
        "export", help="the network as an ONNX file or a torch.export program",
        description="Write MODEL's network for serving without mdnkit: encoded feature rows (float64, "
        "unscaled; text columns one-hot encoded as the model's schema says) to the mixture's parameters in "
        "the target's units (logits, loc, scale, ...), with a dynamic batch axis and the family, units and "
        "columns as JSON metadata. ONNX needs pip install 'mdnkit[export]'.",
    )
    exporter.add_argument("model", metavar="MODEL")
    exporter.add_argument("-o", "--output", required=True, metavar="PATH",
                          help="file to write (e.g. model.onnx, or model.pt2 for --format torch)")
    exporter.add_argument("--format", choices=("onnx", "torch"), default="onnx",
                          help="onnx (default) or torch (a torch.export archive)")
    exporter.add_argument("--force", "--overwrite", dest="force", action="store_true",
                          help="overwrite PATH if it exists")
    exporter.set_defaults(handler=cmd_export)

    commands.add_parser("demo", help="runnable demos (see 'mdnkit demo --help')", add_help=False)
    return parser


# ---------------------------------------------------------------------- entry point
def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":
        return _demo(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        print("mdnkit: interrupted; no output written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `mdnkit info model | head`
        return 0
    except Exception as error:
        if _is_input_error(error):
            return _error(error)
        raise


def _is_input_error(error: Exception) -> bool:
    """Whether ``error`` is the user's input at fault (one line on stderr, no traceback)."""
    if isinstance(error, (FileNotFoundError, FileExistsError, IsADirectoryError, PermissionError)):
        return True
    from mdnkit.io import ModelFileError
    from mdnkit.tabular import DataError

    return isinstance(error, (DataError, ModelFileError))


def _error(error: BaseException) -> int:
    message = str(error.args[0]) if isinstance(error, OSError) and error.args and not error.filename else str(error)
    if isinstance(error, OSError) and error.filename:
        message = f"{error.filename!r}: {error.strerror or message}"
    print(f"mdnkit: error: {' '.join(message.split())}", file=sys.stderr)
    return EXIT_USAGE


def _demo(argv: list[str]) -> int:
    try:
        from mdnkit import demos
    except ModuleNotFoundError as error:
        if error.name not in ("mdnkit.demos",):
            raise
        print("mdnkit: error: the demos are not available in this installation (no mdnkit.demos module)",
              file=sys.stderr)
        return EXIT_USAGE
    return int(demos.main(argv) or 0)


# ---------------------------------------------------------------------- helpers
def _load(path: str) -> tuple[Any, Schema]:
    """The model and its data schema (a numeric one for models saved from Python)."""
    import mdnkit
    from mdnkit.tabular import Schema

    model = mdnkit.load(path)
    document = model.metadata_.get("schema")
    if document is not None:
        try:
            schema = Schema.from_dict(document)
        except (KeyError, TypeError, AttributeError) as error:
            raise mdnkit.ModelFileError(f"{path!r} has an invalid data schema ({error})") from None
    else:
        features = getattr(model, "feature_names_in_", None)
        features = [str(f) for f in features] if features is not None else [f"x{j}" for j in range(model.n_features_in_)]
        targets = getattr(model, "target_names_", None)
        if targets is None:
            targets = ["y"] if model.n_outputs_ == 1 else [f"y{j}" for j in range(model.n_outputs_)]
        schema = Schema(features, [str(t) for t in targets])
    if len(schema.encoded_names) != model.n_features_in_ or len(schema.targets) != model.n_outputs_:
        raise mdnkit.ModelFileError(
            f"{path!r}: its data schema ({len(schema.encoded_names)} encoded features, {len(schema.targets)} "
            f"targets) does not match its network ({model.n_features_in_} and {model.n_outputs_})"
        )
    return model, schema


def _labelled(args: argparse.Namespace, schema: Schema) -> tuple[Any, np.ndarray, np.ndarray]:
    """The whole DATA table with targets: ``(frame, X, y)``, missing rows refused or dropped."""
    from mdnkit.tabular import DataError, drop_missing, read_table

    what = repr(args.data)
    frame = read_table(args.data, text_columns=list(schema.categories))
    schema.check_columns(frame, what, need_targets=True)
    frame, dropped = drop_missing(frame, schema.features + schema.targets, drop=args.drop_missing, what=what)
    if dropped:
        _info(args, f"dropped {dropped} row(s) with missing values")
    if len(frame) == 0:
        raise DataError(f"{what}: no rows left after dropping missing values")
    return frame, schema.encode(frame, what), schema.target_values(frame, what)


def _chunks(args: argparse.Namespace, schema: Schema):
    """``(first_row, frame, X, has_targets)`` chunk by chunk, missing features refused or skipped."""
    from mdnkit.tabular import drop_missing, iter_table

    what = repr(args.data)
    first = 0
    dropped = 0
    has_targets = None
    for frame in iter_table(args.data, args.chunk_size, text_columns=list(schema.categories)):
        frame = frame.reset_index(drop=True)
        frame.index = frame.index + first
        first += len(frame)
        if has_targets is None:
            has_targets = schema.check_columns(frame, what)
        frame, n = drop_missing(frame, schema.features, drop=args.drop_missing, what=what)
        dropped += n
        if len(frame):
            yield frame, schema.encode(frame, what), has_targets
    if dropped:
        _info(args, f"skipped {dropped} row(s) with missing features")


# ---------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> int:
    """``mdnkit fit``; under ``torchrun`` (``WORLD_SIZE > 1``) one data-parallel fit over the
    ranks (:mod:`mdnkit.distributed`), of which rank 0 reports and writes the model file."""
    from mdnkit import distributed

    if not distributed.init_from_environment():
        return _fit_command(args)
    import torch.distributed as dist

    if distributed.world()[0] != 0:
        args.quiet = True
    try:
        return _fit_command(args)
    finally:
        dist.destroy_process_group()


def _fit_command(args: argparse.Namespace) -> int:
    from mdnkit.tabular import DataError, Schema, check_output, drop_missing, read_table

    if args.bounds is not None and args.family != "logit_normal":
        raise DataError(f"--bounds is the support of --family logit_normal, not of {args.family}")
    check_output(args.output, args.force)  # before training, not after an hour of it
    if args.stream:
        return _fit_stream(args)
    what = repr(args.data)
    frame = read_table(args.data)
    schema = Schema.infer(frame, args.target, args.features, what)
    frame, dropped = drop_missing(frame, schema.features + schema.targets, drop=args.drop_missing, what=what)
    if dropped:
        print(f"mdnkit: dropped {dropped} row(s) with missing values, {len(frame)} left", file=sys.stderr)
    if len(frame) == 0:
        raise DataError(f"{what}: no rows left after dropping missing values")
    X, y = schema.encode(frame, what), schema.target_values(frame, what)
    calibration_rows = None
    if args.calibrate and args.calibration_cv is not None:
        raise DataError("--calibrate holds rows out and --calibration-cv K calibrates on every row; choose one")
    if args.calibrate:
        X, y, calibration_rows = _calibration_split(X, y, args.calibration_fraction, args.random_state, what)
    model = _model(args)
    _info(args, f"training on {len(X)} rows: {X.shape[1]} encoded feature(s) -> {', '.join(schema.targets)} "
                f"(Ctrl-C stops early and keeps the best model)")
    _train(args, model, X, y)
    if calibration_rows is not None:
        model.calibrate(*calibration_rows)
        _info(args, f"calibrated on {len(calibration_rows[0])} held-out rows (a 90 % interval needs "
                    "at least 9, a 95 % one 19)")
    if args.calibration_cv is not None:
        _info(args, f"cross-conformal calibration: {args.calibration_cv} more fits, each without one fold")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore" if args.quiet else "default")
                model.calibrate(X, y, cv=args.calibration_cv)
        except ValueError as error:
            raise DataError(str(error)) from None
    _save(args, model, schema)
    return 0


def _model(args: argparse.Namespace) -> Any:
    from mdnkit import MDNRegressor

    return MDNRegressor(
        n_components=args.components, hidden_sizes=args.hidden, covariance_type=args.covariance,
        learning_rate=args.learning_rate, batch_size=args.batch_size, max_epochs=args.epochs,
        validation_fraction=args.validation_fraction, device=args.device, verbose=not args.quiet,
        random_state=args.random_state, n_estimators=args.estimators, family=args.family,
        family_options=None if args.bounds is None else {"low": args.bounds[0], "high": args.bounds[1]},
        target_resolution=args.target_resolution, input_noise=args.input_noise, target_noise=args.target_noise,
        weight_decay=args.weight_decay, patience=args.patience, weight_averaging=args.weight_averaging,
        feature_embedding=None if args.feature_embedding == "none" else args.feature_embedding,
    )


def _train(args: argparse.Namespace, model: Any, X: Any, y: Any = None) -> None:
    """``model.fit(X, y)``, its errors as one line and its warnings (Ctrl-C included) on stderr."""
    from mdnkit.tabular import DataError
    from mdnkit.training import TrainingDivergedError, TrainingInterrupted

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.fit(X, y)
        except (ValueError, TrainingDivergedError) as error:
            raise DataError(str(error)) from None
    for warning in caught:
        if issubclass(warning.category, TrainingInterrupted):
            print(f"mdnkit: {warning.message}", file=sys.stderr)
        elif not args.quiet:
            print(f"mdnkit: warning: {' '.join(str(warning.message).split())}", file=sys.stderr)


def _save(args: argparse.Namespace, model: Any, schema: Schema) -> None:
    from mdnkit import distributed
    from mdnkit.report import kept_weights

    if distributed.world()[0] != 0:  # every rank holds the same model; one file, from rank 0
        return
    model.save(args.output, overwrite=args.force, metadata={"schema": schema.to_dict()})
    if not args.quiet:
        last = model.history_[-1] if model.history_ else {}
        val = last.get("val_nll", math.nan)
        nll = "NLL" if args.target_resolution is None else "bin NLL"  # -log P(bin): no units
        print(
            f"saved {args.output}: {model.n_iter_} epochs, kept {kept_weights(model)}, "
            f"train {nll} {last.get('train_nll', math.nan):.4f}"
            + (f", validation {nll} {_best_val(model):.4f}" if np.isfinite(val) else "")
        )


def _fit_stream(args: argparse.Namespace) -> int:
    """``fit --stream``: DATA read in record batches by pyarrow (:class:`~mdnkit.streaming.TableRows`)."""
    from mdnkit.streaming import TableRows, open_dataset
    from mdnkit.tabular import DataError, Schema

    what = repr(args.data)
    refused = [flag for flag, given in (("--calibrate", args.calibrate), ("--drop-missing", args.drop_missing),
                                        ("--calibration-cv", args.calibration_cv is not None)) if given]
    if refused:
        raise DataError(f"--stream does not take {', '.join(refused)} (a streamed table is read in batches; "
                        "drop missing rows before, calibrate from Python)")
    suffix = "".join(pathlib.Path(args.data).suffixes[-1:]).lower()
    if suffix not in (".csv", ".tsv", ".parquet", ".pq", ""):
        raise DataError(f"{what}: --stream reads .csv, .tsv and .parquet files (or a directory of Parquet files)")
    dataset = open_dataset(args.data)
    columns = list(dataset.schema.names)
    unknown = [t for t in args.target if t not in columns]
    if unknown:
        raise DataError(f"{what} has no target column {unknown}; its columns are {columns}")
    features = list(dict.fromkeys(args.features)) if args.features else [c for c in columns if c not in args.target]
    try:
        rows = TableRows(dataset, features, args.target[0] if len(args.target) == 1 else args.target)
    except ValueError as error:
        raise DataError(f"{what}: {error}".replace("(encode text columns first)",
                                                   "(encode text columns first, or fit without --stream)")) from None
    model = _model(args)
    _info(args, f"training on {what}, read in batches: {len(features)} feature(s) -> {', '.join(rows.targets)} "
                f"(Ctrl-C stops early and keeps the best model)")
    _train(args, model, rows)
    _save(args, model, Schema(features, rows.targets))
    return 0


def _calibration_split(X: np.ndarray, y: np.ndarray, fraction: float, seed: int,
                       what: str) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """``(X_train, y_train, (X_cal, y_cal))``: a seeded random ``fraction`` of the rows held out."""
    from mdnkit.tabular import DataError

    n_cal = math.ceil(fraction * len(X))
    if n_cal < 2 or len(X) - n_cal < 2:
        raise DataError(f"{what}: --calibration-fraction {fraction:g} of {len(X)} rows leaves {n_cal} rows to "
                        f"calibrate on and {len(X) - n_cal} to train on; both need at least 2")
    rows = np.random.default_rng(seed).permutation(len(X))
    cal, train = rows[:n_cal], rows[n_cal:]
    return X[train], y[train], (X[cal], y[cal])


def _best_val(model: Any) -> float:
    """The kept model's validation NLL: a noise mixture's own, else the curve's at the kept epoch."""
    if hasattr(model, "validation_nll_"):
        return float(model.validation_nll_)
    for record in model.history_:
        if record["epoch"] == model.best_epoch_:
            return float(record["val_nll"])
    return math.nan


def _prediction_columns(args: argparse.Namespace, model: Any, schema: Schema, frame: Any, X: np.ndarray,
                        has_targets: bool) -> dict[str, np.ndarray]:
    d = len(schema.targets)

    def per_target(values: np.ndarray) -> np.ndarray:  # (n, ...) or (n, ..., d) -> (n, ..., d)
        return values.reshape(values.shape + (1,)) if d == 1 else values

    columns: dict[str, np.ndarray] = {"row": frame.index.to_numpy()}
    mean, std = per_target(model.predict(X)), per_target(model.predict_std(X))
    for j, target in enumerate(schema.targets):
        columns[f"{target}_mean"] = mean[:, j]
        columns[f"{target}_std"] = std[:, j]
    if args.quantiles:
        values = per_target(model.predict_quantiles(X, args.quantiles))  # (n, Q, d)
        for j, target in enumerate(schema.targets):
            for i, q in enumerate(args.quantiles):
                columns[f"{target}_q{q:g}"] = values[:, i, j]
    for coverage in args.interval:
        bounds = per_target(model.predict_interval(X, coverage, calibrated=args.calibrated))  # (n, 2, d)
        for j, target in enumerate(schema.targets):
            columns[f"{target}_lower{100 * coverage:g}"] = bounds[:, 0, j]
            columns[f"{target}_upper{100 * coverage:g}"] = bounds[:, 1, j]
    if args.modes:
        modes, log_density = model.predict_modes(X)
        modes = per_target(modes)  # (n, K, d)
        n_members = getattr(getattr(model, "module_", None), "n_members", getattr(model, "n_estimators", 1))
        n_slots = getattr(model, "n_components_", model.n_components) * n_members
        for k in range(n_slots):  # a fixed set of columns whatever the chunk holds (an ensemble: M*K)
            for j, target in enumerate(schema.targets):
                columns[f"{target}_mode{k + 1}"] = modes[:, k, j] if k < modes.shape[1] else np.nan
            columns[f"mode{k + 1}_log_density"] = log_density[:, k] if k < log_density.shape[1] else -np.inf
    if has_targets:
        y = schema.target_values(frame, repr(args.data))
        complete = np.isfinite(y.reshape(len(y), -1)).all(axis=1)
        log_likelihood = np.full(len(y), np.nan)
        if complete.any():
            log_likelihood[complete] = model.score_samples(X[complete], y[complete])
        columns["log_likelihood"] = log_likelihood
    return columns


def cmd_predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from mdnkit.novelty import NoveltyWarning
    from mdnkit.tabular import DataError, TableWriter

    model, schema = _load(args.model)
    if args.calibrated and not args.interval:
        raise DataError("--calibrated applies to --interval; give the coverages, e.g. --interval 0.9")
    if args.calibrated and getattr(model, "calibration_", None) is None:
        raise DataError(f"{args.model!r} is not calibrated; refit it with 'mdnkit fit --calibrate' "
                        "(or leave out --calibrated)")
    n_novel = 0
    with TableWriter(args.output, overwrite=args.force) as writer, warnings.catch_warnings():
        # One summary line instead of a warning per chunk and per prediction method.
        warnings.simplefilter("ignore", NoveltyWarning)
        for frame, X, has_targets in _chunks(args, schema):
            columns = _prediction_columns(args, model, schema, frame, X, has_targets)
            if getattr(model, "novelty_", None) is not None:
                columns["novelty"] = model.novelty_score(X)
                n_novel += int((columns["novelty"] > model.novelty_.threshold).sum())
            writer.write(pd.DataFrame(columns))
        writer.commit()
    print(f"wrote {writer.n_rows} rows to {args.output}", file=sys.stderr)
    if n_novel:
        print(f"mdnkit: warning: {n_novel} row(s) lie far outside the training inputs (novelty > "
              f"{model.novelty_.threshold:g}); their densities are extrapolations", file=sys.stderr)
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    import pandas as pd

    from mdnkit.tabular import DataError, TableWriter

    model, schema = _load(args.model)
    if not args.temperature > 0:
        raise DataError(f"--temperature must be positive, got {args.temperature}")
    n = args.n_samples
    with TableWriter(args.output, overwrite=args.force) as writer:
        for chunk, (frame, X, _) in enumerate(_chunks(args, schema)):
            draws = model.sample(X, n, temperature=args.temperature, random_state=args.random_state + chunk)
            draws = draws.reshape(len(X), n, len(schema.targets))  # (rows, draws, d)
            columns = {"row": np.repeat(frame.index.to_numpy(), n), "draw": np.tile(np.arange(n), len(X))}
            for j, target in enumerate(schema.targets):
                columns[target] = draws[:, :, j].ravel()
            writer.write(pd.DataFrame(columns))
        writer.commit()
    print(f"wrote {writer.n_rows} draws to {args.output}", file=sys.stderr)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from mdnkit.metrics import evaluate

    model, schema = _load(args.model)
    _, X, y = _labelled(args, schema)
    results = evaluate(model, X, y)
    if args.json:
        print(json.dumps({"rows": len(X), **results}, indent=2))
    else:
        print(format_metrics(results, len(X)))
    return 0


def format_metrics(results: dict[str, float], n_rows: int) -> str:
    """The metrics of :func:`mdnkit.metrics.evaluate` as a plain-text table."""
    labels = {
        "nll": "NLL (nats per row)", "crps": "CRPS", "energy_score": "energy score",
        "rmse_mean": "RMSE of the mean", "mae_mean": "MAE of the mean",
        "rmse_median": "RMSE of the median", "mae_median": "MAE of the median",
        "rmse_mode": "RMSE of the mode", "mae_mode": "MAE of the mode",
        "pit_calibration_error": "PIT calibration error",
    }
    lines = [f"{n_rows} rows", ""]
    for key, label in labels.items():
        if key in results:
            lines.append(f"  {label:<24} {results[key]:>10.4f}")
    levels = sorted({key.rsplit("_", 1)[1] for key in results if key.startswith("coverage_central_")}, key=float)
    if levels:
        lines += ["", "  interval   central coverage   width   HDI coverage   width"]
        for level in levels:
            lines.append(
                f"  {level + ' %':<9}  {results[f'coverage_central_{level}']:>16.3f} {results[f'width_central_{level}']:>7.3g}"
                f"  {results[f'coverage_hdi_{level}']:>13.3f} {results[f'width_hdi_{level}']:>7.3g}"
            )
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from mdnkit.metrics import evaluate
    from mdnkit.report import build_report
    from mdnkit.tabular import DataError, check_output, write_bytes_atomic

    check_output(args.output, args.force)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise DataError("mdnkit report draws with matplotlib, which is not installed: pip install 'mdnkit[plot]'") from None
    model, schema = _load(args.model)
    frame, X, y = _labelled(args, schema)
    html = build_report(model, schema, frame, X, y, evaluate(model, X, y), model_path=args.model, data_path=args.data)
    write_bytes_atomic(args.output, html.encode("utf-8"), overwrite=args.force)
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from mdnkit.report import describe_model

    model, schema = _load(args.model)
    print(describe_model(model, schema, args.model))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import logging

    from mdnkit.tabular import DataError, check_output

    check_output(args.output, args.force)
    from mdnkit import export

    model, _ = _load(args.model)
    # Without torchvision, torch's ONNX exporter logs a warning per torchvision operator: noise here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    try:
        path = export.save(model, args.output, args.format, overwrite=args.force)
    except ImportError as error:
        raise DataError(str(error)) from None
    print(f"wrote {path} ({args.format})", file=sys.stderr)
    return 0
