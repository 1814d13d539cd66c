"""``moensemble compare``: a leaderboard of models cross-validated on the same folds.

Without ``--data``, runs on a stratified subset of the bundled WordNet glosses; writes the
leaderboard (CSV, JSON) and its plots (PNG) to ``--output``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from moensemble.cli._output import (
    _prepare_output,
    _routing_models,
    format_leaderboard,
    save_results,
)
from moensemble.cli.common import (
    DEFAULT_N_SAMPLES,
    HelpFormatter,
    UserError,
    _subsample,
    check_folds,
    check_values,
    fold_count,
    load_data,
    n_jobs,
    positive_int,
    printer,
    read_table,
    sample_count,
    seed,
    subset_size,
    target_of,
    text_views,
)

__all__ = ["register", "run", "load_table", "build_models", "select_models",
           "format_leaderboard", "save_results", "embed_text", "with_text_views"]

DEFAULT_OUTPUT = "moensemble-output"
DEFAULT_CV = 3
#: The default board's models (moensemble.leaderboard.default_models), written out so that
#: `--help` imports no torch; a test checks that they agree.
MODEL_NAMES = {
    "classification": ("logreg", "naive_bayes", "extra_trees", "weighted", "stacked", "moe",
                       "gated", "stacked_moe"),
    "regression": ("ridge", "extra_trees", "weighted", "stacked", "moe", "gated",
                   "stacked_moe"),
}
#: --text-views without the option: the views of every TF-IDF text run, at every size (on
#: the main job the ensembles then beat every single model; each view is fitted and
#: transformed once per fold for all the models: docs/guide/compare.md).
DEFAULT_TEXT_VIEWS = ("word", "char")
#: Models that run only when --models names them.
OPTIONAL_MODELS = ("weighted_moe", "mlp")
#: Why a default model is left out of some runs.
LEFT_OUT = {"naive_bayes": "naive Bayes needs non-negative word counts (TF-IDF features), "
                           "so it sits out runs without them"}


def register(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``compare`` subcommand to a ``moensemble`` argument parser; return its parser."""
    compare = commands.add_parser(
        "compare",
        help="leaderboard of single models, ensembles and a mixture of experts",
        description="Cross-validate single models, a weighted, a stacked and a gated ensemble, "
        "a mixture of experts and a stacked ensemble with it as a member on the same folds "
        "(text: members behind a word and a character TF-IDF view); "
        "print the leaderboard and write it (CSV, "
        "JSON) "
        "with PNG plots. Without --data, runs on a subset of the bundled WordNet glosses.",
        formatter_class=HelpFormatter,
    )
    data = compare.add_argument_group("data (default: the bundled WordNet glosses)")
    data.add_argument("--data", type=Path, metavar="FILE",
                      help="a .csv, .tsv or .parquet file with one row per sample")
    data.add_argument("--target", metavar="COL", help="column to predict (needed with --data)")
    data.add_argument("--text-column", metavar="COL",
                      help="treat COL as free text (kinds are detected otherwise; see "
                      "--text-features)")
    data.add_argument("--text-features", choices=["tfidf", "embeddings"], default="tfidf",
                      help="'tfidf': sparse TF-IDF inside every model's pipeline; "
                      "'embeddings': 384-d all-MiniLM-L6-v2 sentence embeddings, computed "
                      "once before the folds (a pretrained encoder learns nothing from the "
                      "rows; needs the 'text' extra)")
    data.add_argument("--text-views", type=text_views, metavar="VIEWS",
                      help="TF-IDF views of the text: 'word' (word 1-2 grams, for every "
                      "model) or 'word,char' (also character 2-5 grams, seen by two more "
                      "members, logreg_char and naive_bayes_char, which the ensembles "
                      f"combine with the others; default: {','.join(DEFAULT_TEXT_VIEWS)})")
    data.add_argument("--features", nargs="+", metavar="COL", default=[],
                      help="use only these columns (default: every column but the target, "
                      "each encoded by its detected kind)")
    data.add_argument("--task", choices=["auto", "classification", "regression"],
                      default="auto", help="'auto': regression when the target is continuous")
    data.add_argument("--n-samples", type=sample_count, metavar="N",
                      help=f"stratified subset of N rows, or 'all' (bundled data: "
                      f"{DEFAULT_N_SAMPLES} of its 117,659; your file: all rows)")
    options = compare.add_argument_group("run")
    options.add_argument("--models", metavar="NAMES",
                     help="comma-separated models to run (default: all the default ones): "
                     f"{', '.join(MODEL_NAMES['classification'])} (naive_bayes on TF-IDF "
                     "only); for a regression target "
                     f"{', '.join(MODEL_NAMES['regression'])}; and, only when named, "
                     "weighted_moe (the weighted ensemble with the MoE as a member) and mlp "
                     "(the MoE's dense peer: one expert of equal active parameters); with "
                     "--text-views word,char also logreg_char and naive_bayes_char "
                     "(ridge_char for a regression target)")
    options.add_argument("--cv", type=fold_count, default=DEFAULT_CV, metavar="K",
                     help="outer cross-validation folds (the ensembles use 3 inner folds; "
                     "above 10,000 rows 2, with fewer epochs and trees: see the compare guide)")
    options.add_argument("--max-features", type=positive_int, default=20000, metavar="N",
                     help="TF-IDF vocabulary size")
    options.add_argument("--n-jobs", type=n_jobs, default=1, metavar="N",
                     help="folds run in parallel (-1: all cores)")
    options.add_argument("--threads", type=positive_int, default=1, metavar="N",
                     help="torch threads of each fold's fits (the MoE, the gated router). "
                     "More than 1 pays only on idle cores: on a busy 2-core machine two "
                     "threads made an MoE fit 3x slower and spent 5x the CPU time "
                     "(spin-waiting); use --n-jobs to parallelise over folds instead")
    options.add_argument("--random-state", type=seed, default=0, metavar="SEED")
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
    _check_text_views(args)  # before the data are read (and embedded)
    output = _prepare_output(args.output)
    dataset = load_data(args) if args.data is None else load_table(args)
    if "kinds" in dataset:
        say(format_kinds(dataset["kinds"]))  # before the embeddings replace the text
    if args.text_features == "embeddings":
        dataset = embed_text(dataset, say)
    dataset = with_text_views(dataset, args)
    X, y, task = dataset["X"], dataset["y"], dataset["task"]
    check_folds(args.cv, y, task)
    check_values(X, y, args.target, allow_nan=True)  # the table encoder fills gaps
    built = build_models(dataset, args)
    models = select_models(built, args.models, left_out=_left_out(built, task),
                           optional=OPTIONAL_MODELS)
    say(f"data: {dataset['description']}")
    say(f"models: {', '.join(name for name, _ in models)}; {args.cv}-fold cross-validation")
    if args.models is None:
        for reason in _left_out(built, task).values():
            say(f"note: {reason}")

    folds = make_folds(args.cv, X, y, task=task, random_state=args.random_state)
    start = time.perf_counter()
    with warnings.catch_warnings(), _torch_threads(args.threads):
        _quiet_known_warnings()
        board, fold_table = compare(
            models, X, y, cv=folds, n_jobs=args.n_jobs, random_state=args.random_state,
            # A bar redraws itself with carriage returns: only on a terminal, not in a log file.
            progress=not args.quiet and sys.stderr.isatty(),
            # Only the model whose routing is plotted: all the fitted forests and
            # ensembles of a 20,000-gloss run held 14 GB.
            return_folds=True, return_estimators=_routing_models(models)[:1],
        )
    seconds = time.perf_counter() - start
    scores = board.filter(like="_mean")
    if scores.isna().all(axis=None):
        raise UserError(f"every model failed on every fold ({', '.join(board.index)}); the "
                        "warnings above give each model's error.")
    print(format_leaderboard(board))
    if board["active_params_per_row"].notna().any():
        say("load violation: (max - mean) / mean expert load on each fold's training rows, "
            "averaged over the folds")
    say(f"\n{len(models)} models x {args.cv} folds in {seconds:.0f} s")
    written = save_results(output, board, fold_table, folds, dataset, args, seconds)
    say(f"wrote {', '.join(path.name for path in written)} to {output}/")
    return 0


@contextlib.contextmanager
def _torch_threads(n: int):
    """``n`` torch threads for the fits in this process and in the fold workers (loky's
    ``inner_max_num_threads``, read by torch when a worker starts), restored afterwards."""
    import joblib
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with joblib.parallel_config(backend="loky", inner_max_num_threads=n):
            yield
    finally:
        torch.set_num_threads(previous)


def load_table(args: argparse.Namespace) -> dict:
    """Read ``--data``: every column but ``--target`` (or the ``--features`` and
    ``--text-column`` given), each with its detected kind (``--text-column``: text)."""
    from moensemble.features import check_target, infer_kinds

    if not args.target:
        raise UserError("--data needs --target COL (the column to predict).")
    frame = read_table(args.data)
    frame.columns = [str(c) for c in frame.columns]
    chosen = list(dict.fromkeys([*([args.text_column] if args.text_column else []),
                                 *args.features]))
    missing = [c for c in dict.fromkeys([args.target, *chosen]) if c not in frame.columns]
    if missing:
        raise UserError(f"column(s) {missing} not in {args.data.name}; available columns: "
                        f"{list(frame.columns)}")
    if args.target in chosen:
        raise UserError(f"the target {args.target!r} is also used as a feature.")
    try:
        check_target(frame[args.target], name=args.target)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    X = frame[chosen or [c for c in frame.columns if c != args.target]]
    kinds = infer_kinds(X, kinds={args.text_column: "text"} if args.text_column else None)
    if all(kind == "drop" for kind in kinds.values()):
        raise UserError(f"no feature column of {args.data.name} has a value.")
    task, y, keep, note = target_of(frame, args)
    X = X.loc[keep]
    if subset_size(args) and subset_size(args) < len(y):
        X, y = _subsample(X, y, subset_size(args), task, args.random_state)
    text = [c for c, kind in kinds.items() if kind == "text"]
    what = f"{np.unique(y).size} classes" if task == "classification" else "regression"
    return {
        "X": X, "y": y, "task": task, "kinds": kinds, "detected_kinds": kinds,
        "text": bool(text),
        "text_column": text[0] if text else None,
        "numeric": [c for c, kind in kinds.items() if kind == "numeric"],
        "description": f"{args.data.name}, {len(y)} rows, {X.shape[1]} columns, {what}{note}",
        "source": str(args.data),
    }


def format_kinds(kinds: dict) -> str:
    """One line per kind: the columns :class:`~moensemble.TableEncoder` encodes that way."""
    lines = ["column kinds:"]
    for kind in ("numeric", "boolean", "categorical", "datetime", "text", "drop"):
        columns = [c for c, k in kinds.items() if k == kind]
        if columns:
            label = "dropped (no value)" if kind == "drop" else kind
            lines.append(f"  {label}: {', '.join(columns)}")
    return "\n".join(lines)


def _quiet_known_warnings() -> None:
    from sklearn.exceptions import ConvergenceWarning

    # Capped iterations are part of the quick configuration; the scores show their effect.
    warnings.simplefilter("ignore", ConvergenceWarning)
    warnings.filterwarnings("ignore", message="The least populated class")
    # loky replaces a fold worker whose memory grew (its leak guard) once the worker's job
    # is done; the jobs queued behind it run on the new one, and every score is kept.
    warnings.filterwarnings("ignore", message="A worker stopped while some jobs were given")
    # joblib times the note it writes beside each cached result; on a loaded machine that
    # can pass its 0.5 s, which says nothing about the results.
    warnings.filterwarnings("ignore", message="Persisting input arguments took")


def embed_text(dataset: dict, say: Callable[[str], None]) -> dict:
    """Replace the text column by its sentence embeddings (numeric columns kept beside them).

    The encoder is pretrained and stateless, so embedding every row once before the folds
    leaks nothing between them, and each model then trains on the same dense features.
    """
    if not dataset["text"]:
        raise UserError("--text-features embeddings needs a text column (--text-column COL).")
    if "kinds" in dataset:
        return _embed_table_text(dataset, say)
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


def _embed_table_text(dataset: dict, say: Callable[[str], None]) -> dict:
    """Each text column of a table replaced by its embedding columns (numeric kind)."""
    X, kinds = dataset["X"], dict(dataset["kinds"])
    text = [c for c, kind in kinds.items() if kind == "text"]
    try:
        from moensemble.text import SentenceEmbedder

        embedder = SentenceEmbedder().fit(["a"])  # loads the model: fails fast without it
    except ImportError as exc:
        raise UserError(f"--text-features embeddings: {exc}") from None
    parts, n_dims, embedded = [X.drop(columns=text)], 0, []
    for col in text:
        say(f"embedding {len(X)} texts of {col!r} with all-MiniLM-L6-v2 ...")
        embeddings = embedder.transform(X[col].fillna("").astype(str).tolist())
        n_dims = embeddings.shape[1]
        columns = [f"{col}_embedding{i}" for i in range(n_dims)]
        parts.append(pd.DataFrame(embeddings, columns=columns, index=X.index))
        embedded += columns
        del kinds[col]
    X = pd.concat(parts, axis=1)
    # The embedding columns bypass the table encoder (build_models): it encodes column by
    # column, 40 ms each, and 384 of them made every fit of every model wait ~15 s.
    return {**dataset, "X": X, "kinds": {c: kinds[c] for c in X.columns if c in kinds},
            "embedding_columns": embedded, "text": False,
            "description": f"{dataset['description']}; text as {n_dims}-d sentence "
                           "embeddings"}


# ---- models ----------------------------------------------------------------------------------


def with_text_views(dataset: dict, args: argparse.Namespace) -> dict:
    """``dataset`` with the TF-IDF views its models use (``"views"``; none without text);
    with several, a 1-d array of texts becomes a one-column frame, ``text``, which
    the ensembles can take (each member picks its view of the column)."""
    _check_text_views(args)
    asked = getattr(args, "text_views", None)
    views = asked or DEFAULT_TEXT_VIEWS
    if asked and len(asked) > 1 and not dataset["text"]:
        raise UserError(f"--text-views {','.join(asked)} needs a text column "
                        "(--text-column COL, or a column detected as text).")
    if not dataset["text"] or len(views) < 2:  # no text left (numbers only, or embeddings)
        return {**dataset, "views": views if dataset["text"] else ()}
    if not isinstance(X := dataset["X"], pd.DataFrame):
        X, dataset = pd.DataFrame({"text": np.asarray(X, dtype=object)}), {
            **dataset, "text_column": "text"}
    return {**dataset, "X": X, "views": views}


def _check_text_views(args: argparse.Namespace) -> None:
    if len(asked := getattr(args, "text_views", None) or ()) > 1 and getattr(
            args, "text_features", "tfidf") != "tfidf":
        raise UserError(f"--text-views {','.join(asked)}: the views are TF-IDF ones; leave "
                        "it out with --text-features embeddings.")


def _view_transformers(dataset: dict, args: argparse.Namespace, main, counts) -> dict:
    """``{view: transformer}`` of ``dataset["views"]``: ``main`` (the word view: the TF-IDF
    or the table encoder), then each further view of the text column(s), counting each
    text once in ``counts`` (a :class:`~moensemble.text.TermCounts`)."""
    from sklearn.pipeline import FeatureUnion

    from moensemble.text import tfidf_view

    columns = ([c for c, kind in dataset["kinds"].items() if kind == "text"]
               if "kinds" in dataset else [dataset["text_column"]])
    views = {dataset["views"][0]: main}
    for view in dataset["views"][1:]:
        parts = [tfidf_view(view, max_features=args.max_features, column=c, counts=counts)
                 for c in columns]
        views[view] = parts[0] if len(parts) == 1 else FeatureUnion(
            [(f"{view}_{c}", part) for c, part in zip(columns, parts, strict=True)])
    return views


def build_models(dataset: dict, args: argparse.Namespace) -> list:
    """Default models behind the features as sklearn pipelines.

    A table (``--data``) goes through a :class:`~moensemble.TableEncoder`; the bundled
    glosses through TF-IDF. Above 10,000 rows the work of each fit is bounded as the rows
    grow (:func:`moensemble.leaderboard.scaled_settings`). The TF-IDF views count each text
    once for all their fits (:class:`~moensemble.text.TermCounts`: each fold and inner fold
    fits a view on other rows of the same texts).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler

    from moensemble.leaderboard import default_models
    from moensemble.text import CountedTfidfVectorizer, TermCounts, tfidf_view

    counts = TermCounts()

    if "kinds" in dataset:
        from moensemble.features import TableEncoder

        # Scaled to [0, 1] so that every member (naive Bayes included) can take them; the
        # kinds are those printed, so every fold encodes the columns the same way.
        encoder = TableEncoder(kinds=dataset["kinds"], scale="minmax",
                               text_max_features=args.max_features,
                               random_state=args.random_state)
        if len(dataset.get("views", ())) > 1:
            return default_models(dataset["task"],
                                  views=_view_transformers(dataset, args, encoder, counts),
                                  quick=True, moe_members=True, mlp=True,
                                  n_rows=_n_rows(dataset), random_state=args.random_state)
        if dataset.get("embedding_columns"):  # one numeric block, scaled as the encoder does
            encoder = ColumnTransformer(
                [("table", encoder, list(dataset["kinds"])),
                 ("embeddings", MinMaxScaler(clip=True), dataset["embedding_columns"])],
                sparse_threshold=0.0)
        return default_models(dataset["task"], features=encoder, sparse=dataset["text"],
                              quick=True, moe_members=True, mlp=True,
                              n_rows=_n_rows(dataset), random_state=args.random_state)
    tfidf = CountedTfidfVectorizer(counts=counts, sublinear_tf=True, min_df=2,
                                   max_features=args.max_features, ngram_range=(1, 2),
                                   dtype=np.float32)
    numeric = make_pipeline(SimpleImputer(), MinMaxScaler(clip=True))
    if len(dataset.get("views", ())) > 1:
        word = tfidf_view("word", max_features=args.max_features, column=dataset["text_column"],
                          counts=counts)
        return default_models(dataset["task"],
                              views=_view_transformers(dataset, args, word, counts),
                              quick=True, moe_members=True, mlp=True, n_rows=_n_rows(dataset),
                              random_state=args.random_state)
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
                          moe_members=True, mlp=True, n_rows=_n_rows(dataset),
                          random_state=args.random_state)


def _n_rows(dataset: dict) -> int | None:
    """Rows of the data (None for a description of the data without its rows)."""
    y = dataset.get("y")
    return None if y is None else len(y)


def select_models(models: list, names: str | None,
                  left_out: dict[str, str] | None = None,
                  optional: tuple[str, ...] = ()) -> list:
    """Keep the comma-separated ``names`` (in their order); without names, every model but
    the ``optional`` ones (those run only when named).

    ``left_out`` maps default models missing from ``models`` to why; asking for one says so.
    """
    if names is None:
        return [(n, m) for n, m in models if n not in optional]
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    available = dict(models)
    if not wanted:  # `--models ''` or `--models ,`: not the default board in disguise
        raise UserError(f"--models {names!r} names no model; give a comma-separated list of "
                        f"{', '.join(available)} (or leave --models out for the default "
                        "board).")
    for name in wanted:
        if name in (left_out or {}):
            raise UserError(f"--models {name}: not in this run: {left_out[name]}; available: "
                            f"{', '.join(available)}")
    unknown = [n for n in wanted if n not in available]
    if unknown:
        raise UserError(f"unknown model(s) {', '.join(unknown)} in --models; "
                        f"available: {', '.join(available)}")
    return [(n, available[n]) for n in dict.fromkeys(wanted)]


def _left_out(models: list, task: str) -> dict[str, str]:
    """The default models of ``task`` that ``models`` lacks, with the reason."""
    names = {name for name, _ in models}
    return {name: LEFT_OUT[name] for name in MODEL_NAMES.get(task, ())
            if name not in names and name in LEFT_OUT}
