"""``moensemble compare``: a leaderboard of models cross-validated on the same folds.

Without ``--data``, runs on a stratified subset of the bundled WordNet glosses; writes the
leaderboard (CSV, JSON) and its plots (PNG) to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from moensemble.cli.common import (
    DEFAULT_N_SAMPLES,
    UserError,
    load_data,
    positive_int,
    printer,
)

__all__ = ["register", "run", "build_models", "select_models", "format_leaderboard",
           "save_results", "embed_text"]

DEFAULT_OUTPUT = "moensemble-output"
DEFAULT_CV = 3


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to a ``moensemble`` argument parser; return its parser."""
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
    data.add_argument("--n-samples", type=positive_int, metavar="N",
                      help=f"stratified subset of N rows (bundled data: {DEFAULT_N_SAMPLES}; "
                      "your file: all rows)")
    options = compare.add_argument_group("run")
    options.add_argument("--models", metavar="NAMES",
                     help="comma-separated subset of the default models (see the leaderboard)")
    options.add_argument("--cv", type=positive_int, default=DEFAULT_CV, metavar="K",
                     help="outer cross-validation folds (the ensembles use 3 inner folds)")
    options.add_argument("--max-features", type=positive_int, default=20000, metavar="N",
                     help="TF-IDF vocabulary size")
    options.add_argument("--n-jobs", type=int, default=1, metavar="N",
                     help="folds run in parallel (-1: all cores)")
    options.add_argument("--random-state", type=int, default=0, metavar="SEED")
    options.add_argument("--output", type=Path, default=Path(DEFAULT_OUTPUT), metavar="DIR",
                     help="folder for leaderboard.csv, leaderboard.json and the PNG plots")
    options.add_argument("--quiet", action="store_true",
                     help="print only the leaderboard (no progress bar, no notes)")
    compare.set_defaults(run=run)
    return compare


def run(args: argparse.Namespace) -> int:
    """``moensemble compare``: load data, build models, cross-validate, print and save."""
    from moensemble.leaderboard import compare, make_folds

    say = printer(args.quiet)
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



def _quiet_known_warnings() -> None:
    from sklearn.exceptions import ConvergenceWarning

    # Capped iterations are part of the quick configuration; the scores show their effect.
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", message="The least populated class")



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
    from moensemble.folds import final_step

    if "estimator" not in fold_table:
        return None
    for _, row in fold_table.sort_values(["fold"], kind="stable").iterrows():
        if hasattr(final_step(row["estimator"]), "route"):
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
