"""The ``moensemble`` command line.

``moensemble compare`` with no arguments compares single models, a weighted, a stacked and a
gated ensemble and a mixture of experts on a stratified subset of the bundled WordNet glosses,
prints the leaderboard and writes it (CSV, JSON) with its plots (PNG) to
``moensemble-output/``.
``moensemble compare --data FILE --target COL --text-column COL`` does the same on a CSV or
Parquet file.

User mistakes (a missing file or column, a target with one class, ...) end with a one-line
message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["main"]

EXIT_USAGE = 2
DEFAULT_OUTPUT = "moensemble-output"
#: Quick defaults: the bundled run finishes in a couple of minutes on 2 CPU cores.
DEFAULT_N_SAMPLES = 3000
DEFAULT_CV = 3


class UserError(Exception):
    """A mistake in the command line or the data: reported in one line, without a traceback."""


# ---- entry point -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (0 success, 2 user error, 130 interrupted).

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``None`` reads ``sys.argv[1:]``.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or an argparse usage error (already printed)
        return int(exc.code or 0)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except UserError as exc:
        print(f"moensemble: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("moensemble: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one ``compare`` subcommand for now."""
    from moensemble import __version__

    parser = argparse.ArgumentParser(
        prog="moensemble",
        description="Ensembles and mixtures of experts with a scikit-learn API.",
    )
    parser.add_argument("--version", action="version", version=f"moensemble {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    compare = commands.add_parser(
        "compare",
        help="leaderboard of single models, ensembles and a mixture of experts",
        description="Cross-validate single models, a weighted, a stacked and a gated ensemble "
        "and a mixture of experts on the same folds; print the leaderboard and write it (CSV, "
        "JSON) "
        "with PNG plots. Without --data, runs on a subset of the bundled WordNet glosses.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = compare.add_argument_group("data (default: the bundled WordNet glosses)")
    data.add_argument("--data", type=Path, metavar="FILE",
                      help="a .csv, .tsv or .parquet file with one row per sample")
    data.add_argument("--target", metavar="COL", help="column to predict (needed with --data)")
    data.add_argument("--text-column", metavar="COL",
                      help="text column, turned into features (see --text-features)")
    data.add_argument("--text-features", choices=["tfidf", "embeddings"], default="tfidf",
                      help="'tfidf': sparse TF-IDF inside every model's pipeline; "
                      "'embeddings': 384-d all-MiniLM-L6-v2 sentence embeddings, computed "
                      "once before the folds (a pretrained encoder learns nothing from the "
                      "rows; needs the 'text' extra)")
    data.add_argument("--features", nargs="+", metavar="COL", default=[],
                      help="numeric feature columns (with or without --text-column)")
    data.add_argument("--task", choices=["auto", "classification", "regression"],
                      default="auto", help="'auto': regression when the target is continuous")
    data.add_argument("--n-samples", type=_positive_int, metavar="N",
                      help=f"stratified subset of N rows (bundled data: {DEFAULT_N_SAMPLES}; "
                      "your file: all rows)")
    run = compare.add_argument_group("run")
    run.add_argument("--models", metavar="NAMES",
                     help="comma-separated subset of the default models (see the leaderboard)")
    run.add_argument("--cv", type=_positive_int, default=DEFAULT_CV, metavar="K",
                     help="outer cross-validation folds (the ensembles use 3 inner folds)")
    run.add_argument("--max-features", type=_positive_int, default=20000, metavar="N",
                     help="TF-IDF vocabulary size")
    run.add_argument("--n-jobs", type=int, default=1, metavar="N",
                     help="folds run in parallel (-1: all cores)")
    run.add_argument("--random-state", type=int, default=0, metavar="SEED")
    run.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT), metavar="DIR",
                     help="folder for leaderboard.csv, leaderboard.json and the PNG plots")
    run.add_argument("--quiet", action="store_true",
                     help="print only the leaderboard (no progress bar, no notes)")
    compare.set_defaults(run=run_compare)
    from moensemble.tune import register as register_tune

    register_tune(commands)  # `moensemble tune`: a worker of a shared Optuna study
    return parser


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` that takes integers ``>= low`` (also used by ``moensemble tune``)."""
    what = "a positive integer" if low == 1 else f"an integer >= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = int_at_least(1)


# ---- compare ---------------------------------------------------------------------------------


def run_compare(args: argparse.Namespace) -> int:
    """``moensemble compare``: load data, build models, cross-validate, print and save."""
    from moensemble.leaderboard import compare, make_folds

    say = _printer(args.quiet)
    output = _prepare_output(args.output)
    dataset = load_data(args)
    if args.text_features == "embeddings":
        dataset = embed_text(dataset, say)
    X, y, task = dataset["X"], dataset["y"], dataset["task"]
    if args.cv > len(y) // 2:
        raise UserError(f"--cv {args.cv} is too many folds for {len(y)} rows.")
    models = select_models(build_models(dataset, args), args.models)
    say(f"data: {dataset['description']}")
    say(f"models: {', '.join(name for name, _ in models)}; {args.cv}-fold cross-validation")

    folds = make_folds(args.cv, X, y, task=task, random_state=args.random_state)
    start = time.perf_counter()
    with warnings.catch_warnings():
        _quiet_known_warnings()
        board, fold_table = compare(
            models, X, y, cv=folds, n_jobs=args.n_jobs, random_state=args.random_state,
            progress=not args.quiet, return_folds=True, return_estimators=True,
        )
    seconds = time.perf_counter() - start

    print(format_leaderboard(board))
    say(f"\n{len(models)} models x {args.cv} folds in {seconds:.0f} s")
    written = save_results(output, board, fold_table, folds, dataset, args, seconds)
    say(f"wrote {', '.join(path.name for path in written)} to {output}/")
    return 0


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


def _quiet_known_warnings() -> None:
    from sklearn.exceptions import ConvergenceWarning

    # Capped iterations are part of the quick configuration; the scores show their effect.
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", message="The least populated class")


# ---- data ------------------------------------------------------------------------------------


def load_data(args: argparse.Namespace) -> dict:
    """Read the bundled data set or the user's file into ``X``, ``y`` and a description."""
    if args.data is None:
        if args.target or args.text_column or args.features:
            raise UserError("--target, --text-column and --features need --data FILE.")
        return _bundled(args)
    frame = read_table(args.data)
    return _from_frame(frame, args)


def _bundled(args: argparse.Namespace) -> dict:
    from moensemble.datasets import load_wordnet_glosses

    n_samples = args.n_samples or DEFAULT_N_SAMPLES
    texts, labels = load_wordnet_glosses(n_samples=n_samples, return_X_y=True,
                                         random_state=args.random_state)
    X = np.asarray(texts, dtype=object)
    keep, note = _common_classes(np.asarray(labels), args.cv)
    X, y = X[keep], np.asarray(labels)[keep]
    return {
        "X": X, "y": y, "task": "classification", "text": True, "numeric": [],
        "description": f"bundled WordNet glosses, {len(y)} rows, "
        f"{np.unique(y).size} classes{note}",
        "source": "wordnet_glosses",
    }


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file; every failure becomes a :class:`UserError`."""
    if not path.exists():
        raise UserError(f"data file not found: {path}")
    if path.is_dir():
        raise UserError(f"--data must be a file, but {path} is a folder.")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise UserError(f"cannot read {path.name}: use a .csv, .tsv or .parquet file.")
    except pd.errors.EmptyDataError:
        raise UserError(f"data file is empty: {path}") from None
    except ImportError as exc:
        raise UserError(f"reading {path.name} needs an extra package: {exc}") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if frame.empty:
        raise UserError(f"data file has no rows: {path}")
    return frame


def _from_frame(frame: pd.DataFrame, args: argparse.Namespace) -> dict:
    if not args.target:
        raise UserError("--data needs --target COL (the column to predict).")
    if not args.text_column and not args.features:
        raise UserError("--data needs --text-column COL and/or --features COL [COL ...].")
    columns = [args.target, *([args.text_column] if args.text_column else []), *args.features]
    missing = [c for c in dict.fromkeys(columns) if c not in frame.columns]
    if missing:
        raise UserError(f"column(s) {missing} not in {args.data.name}; available columns: "
                        f"{[str(c) for c in frame.columns]}")
    if args.target in columns[1:]:
        raise UserError(f"the target {args.target!r} is also used as a feature.")
    for col in args.features:
        if not pd.api.types.is_numeric_dtype(frame[col]):
            raise UserError(f"--features column {col!r} is not numeric ({frame[col].dtype}); "
                            "pass text with --text-column.")
    frame = frame.loc[frame[args.target].notna(), list(dict.fromkeys(columns))]
    if frame.empty:
        raise UserError(f"target column {args.target!r} has no values.")
    if args.text_column:
        frame[args.text_column] = frame[args.text_column].fillna("").astype(str)
    task = _task(frame[args.target], args.task)
    y = frame[args.target].to_numpy()
    note = ""
    if task == "classification":
        y = y.astype(str) if y.dtype == object else y
        if np.unique(y).size < 2:
            raise UserError(f"target column {args.target!r} has a single class "
                            f"({np.unique(y)[0]!r}); a classifier needs at least two.")
        keep, note = _common_classes(y, args.cv)
        frame, y = frame.loc[keep], y[keep]
    if args.n_samples and args.n_samples < len(y):
        frame, y = _subsample(frame, y, args.n_samples, task, args.random_state)
    X = frame.drop(columns=args.target)
    if args.text_column and not args.features:
        X = X[args.text_column].to_numpy(dtype=object)
    kind = f"{np.unique(y).size} classes" if task == "classification" else "regression"
    return {
        "X": X, "y": y, "task": task, "text": bool(args.text_column),
        "text_column": args.text_column, "numeric": list(args.features),
        "description": f"{args.data.name}, {len(y)} rows, {kind}{note}",
        "source": str(args.data),
    }


def _task(target: pd.Series, requested: str) -> str:
    from sklearn.utils.multiclass import type_of_target

    if requested != "auto":
        if requested == "regression" and not pd.api.types.is_numeric_dtype(target):
            raise UserError(f"--task regression needs a numeric target; {target.name!r} is "
                            f"{target.dtype}.")
        return requested
    values = target.to_numpy()
    if values.dtype == object:
        values = values.astype(str)
    kind = type_of_target(values)
    return "regression" if kind.startswith("continuous") else "classification"


def _common_classes(y: np.ndarray, cv: int) -> tuple[np.ndarray, str]:
    """Mask of the rows whose class has enough rows for stratified outer and inner folds."""
    classes, counts = np.unique(y, return_counts=True)
    # Each outer training fold must still hold a few rows of a class for the inner folds.
    rare = classes[counts < 2 * cv]
    keep = ~np.isin(y, rare)
    if np.unique(y[keep]).size < 2:
        raise UserError(f"fewer than two classes have at least {2 * cv} rows; lower --cv or "
                        "add rows.")
    if not len(rare):
        return keep, ""
    return keep, (f" (dropped {int((~keep).sum())} rows of {len(rare)} classes with fewer "
                  f"than {2 * cv} rows)")


def _subsample(frame: pd.DataFrame, y: np.ndarray, n: int, task: str,
               seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.model_selection import train_test_split

    stratify = y if task == "classification" and n >= np.unique(y).size else None
    index, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=stratify,
                                random_state=seed)
    index = np.sort(index)
    return frame.iloc[index], y[index]


def embed_text(dataset: dict, say: Callable[[str], None]) -> dict:
    """Replace the text column by its sentence embeddings (numeric columns kept beside them).

    The encoder is pretrained and stateless, so embedding every row once before the folds
    leaks nothing between them, and each model then trains on the same dense features.
    """
    if not dataset["text"]:
        raise UserError("--text-features embeddings needs a text column (--text-column COL).")
    X = dataset["X"]
    texts = list(X[dataset["text_column"]] if isinstance(X, pd.DataFrame) else X)
    try:
        from moensemble.text import SentenceEmbedder

        embedder = SentenceEmbedder().fit(texts)  # loads the model: fails fast without it
    except ImportError as exc:
        raise UserError(f"--text-features embeddings: {exc}") from None
    say(f"embedding {len(texts)} texts with all-MiniLM-L6-v2 ...")
    embeddings = embedder.transform(texts)
    columns = [f"embedding{i}" for i in range(embeddings.shape[1])]
    features = pd.DataFrame(embeddings, columns=columns, index=getattr(X, "index", None))
    if dataset["numeric"]:
        features = pd.concat([features, X[dataset["numeric"]]], axis=1)
    return {**dataset, "X": features.to_numpy(dtype=np.float64), "text": False,
            "numeric": columns + list(dataset["numeric"]),
            "description": f"{dataset['description']}; text as {embeddings.shape[1]}-d "
                           "sentence embeddings"}


# ---- models ----------------------------------------------------------------------------------


def build_models(dataset: dict, args: argparse.Namespace) -> list:
    """Default models behind TF-IDF (+ scaled numeric columns) features as sklearn pipelines."""
    from sklearn.compose import ColumnTransformer
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    from moensemble.leaderboard import default_models

    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=args.max_features,
                            ngram_range=(1, 2), dtype=np.float32)
    numeric = make_pipeline(SimpleImputer(), MinMaxScaler(clip=True))
    if dataset["text"] and not dataset["numeric"]:
        features, sparse = tfidf, True
    elif dataset["text"]:
        # Scaled to [0, 1] so that every member (naive Bayes included) can take them.
        features = ColumnTransformer([("text", tfidf, dataset["text_column"]),
                                      ("numeric", numeric, dataset["numeric"])],
                                     sparse_threshold=1.0)
        sparse = True
    else:
        features, sparse = make_pipeline(SimpleImputer()), False
    return default_models(dataset["task"], features=features, sparse=sparse, quick=True,
                          random_state=args.random_state)


def select_models(models: list, names: str | None) -> list:
    """Keep the comma-separated ``names`` (in their order), or all models when None."""
    if not names:
        return models
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    available = dict(models)
    unknown = [n for n in wanted if n not in available]
    if unknown or not wanted:
        raise UserError(f"unknown model(s) {unknown} in --models; available: {list(available)}")
    return [(n, available[n]) for n in dict.fromkeys(wanted)]


# ---- output ----------------------------------------------------------------------------------


def _prepare_output(folder: Path) -> Path:
    """Create ``folder`` and check that it takes files before hours of work go into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot write to output folder {folder}: {reason}") from None
    return folder


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a fixed-width table: ``mean ± std`` per metric, then the extras."""
    table = pd.DataFrame(index=board.index)
    metrics = [c[: -len("_mean")] for c in board.columns if c.endswith("_mean")]
    for metric in metrics:
        mean, std = board[f"{metric}_mean"], board[f"{metric}_std"]
        table[metric] = [f"{m:.3f} ± {s:.3f}" if np.isfinite(m) else "-"
                         for m, s in zip(mean, std, strict=True)]
    table["fit s"] = board["fit_time_s"].map(lambda v: f"{v:.2f}")
    table["predict s/1k"] = board["predict_time_per_1k_s"].map(lambda v: f"{v:.3f}")
    if board["active_params_per_row"].notna().any():
        table["active params/row"] = board["active_params_per_row"].map(
            lambda v: f"{v:,.0f}" if np.isfinite(v) else "-")
        table["load violation"] = board["expert_load_max_violation"].map(
            lambda v: f"{v:.2f}" if np.isfinite(v) else "-")
    table.index = [str(i) for i in table.index]
    return table.to_string()


def save_results(output: Path, board: pd.DataFrame, fold_table: pd.DataFrame, folds: list,
                 dataset: dict, args: argparse.Namespace, seconds: float) -> list[Path]:
    """Write the CSV, JSON and PNG files, each atomically; return their paths."""
    from moensemble.plotting import plot_expert_load, plot_leaderboard, plot_routing_heatmap

    scores = fold_table.drop(columns=["estimator"], errors="ignore")
    written = [
        _write_atomic(output / "leaderboard.csv", lambda f: board.to_csv(f)),
        _write_atomic(output / "leaderboard.json",
                      lambda f: f.write(_report_json(board, scores, dataset, args, seconds))),
        _save_figure(output / "leaderboard.png", plot_leaderboard(board)),
    ]
    moe = _first_moe(fold_table)
    if moe is not None:
        fold = int(moe["fold"])
        test = folds[fold][1]
        X_test = _rows(dataset["X"], test)
        estimator = moe["estimator"]
        if dataset["task"] == "classification":
            written.append(_save_figure(
                output / "routing_heatmap.png",
                plot_routing_heatmap(estimator, X_test, dataset["y"][test])))
        written.append(_save_figure(output / "expert_load.png",
                                    plot_expert_load(estimator, X_test)))
    return written


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, pd.DataFrame) else X[index]


def _first_moe(fold_table: pd.DataFrame) -> pd.Series | None:
    """The first fold's fitted model among those that route (MoE), if any."""
    from moensemble.plotting import _final_step

    if "estimator" not in fold_table:
        return None
    for _, row in fold_table.sort_values(["fold"], kind="stable").iterrows():
        if hasattr(_final_step(row["estimator"]), "route"):
            return row
    return None


def _report_json(board: pd.DataFrame, scores: pd.DataFrame, dataset: dict,
                 args: argparse.Namespace, seconds: float) -> str:
    report = {
        "task": board.attrs.get("task"),
        "metric": board.attrs.get("metric"),
        "higher_is_better": board.attrs.get("higher_is_better"),
        "data": dataset["description"],
        "cv": args.cv,
        "text_features": args.text_features if args.data is None or args.text_column else None,
        "random_state": args.random_state,
        "seconds": round(seconds, 2),
        "leaderboard": json.loads(board.reset_index().to_json(orient="records")),
        "folds": json.loads(scores.to_json(orient="records")),
    }
    return json.dumps(report, indent=2)


def _write_atomic(path: Path, write: Callable, mode: str = "w") -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash half-way leaves the previous ``path`` intact rather than a truncated file.
    """
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _save_figure(path: Path, figure) -> Path:
    return _write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=110,
                                                        bbox_inches="tight"), mode="wb")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
