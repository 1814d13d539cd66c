"""What the ``moensemble`` subcommands share: user errors, printing, argparse types, data.

User mistakes (a missing file or column, a target with one class, ...) raise
:class:`UserError`; :func:`moensemble.cli.main` reports them in one line on stderr with exit
code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["UserError", "EXIT_USAGE", "DEFAULT_N_SAMPLES", "HelpFormatter", "int_at_least",
           "positive_int", "fold_count", "n_jobs", "positive_seconds", "seed", "text_views",
           "OneLineParser",
           "check_folds", "check_values", "printer", "load_data", "read_table", "target_of"]

EXIT_USAGE = 2
#: Quick defaults: the bundled run finishes in a couple of minutes on 2 CPU cores.
DEFAULT_N_SAMPLES = 3000


class UserError(Exception):
    """A mistake in the command line or the data: reported in one line, without a traceback."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help only where it tells something: not for
    ``None`` / ``False`` defaults, and not where the help already says its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == argparse.SUPPRESS or (
                "default" in text):
            return text
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line on stderr (exit code 2), like
    :class:`UserError`s, instead of the usage block and then the error."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type`` that takes integers ``>= low`` ."""
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



positive_int = int_at_least(1)

#: ``--n-samples all``: every row (the whole bundled set: 117,659 glosses).
ALL_ROWS = "all"


def sample_count(text: str) -> int | str:
    """``--n-samples``: a positive integer, or 'all' for every row."""
    if text.strip().lower() == ALL_ROWS:
        return ALL_ROWS
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'all', got {text!r}") from None


def subset_size(args: argparse.Namespace) -> int | None:
    """The rows ``--n-samples`` asks for; None for every row (not given, or 'all')."""
    return None if args.n_samples in (None, ALL_ROWS) else args.n_samples
#: Folds: a cross-validation needs at least two.
fold_count = int_at_least(2)


def n_jobs(text: str) -> int:
    """An argparse ``type`` for joblib's ``n_jobs``: a non-zero integer (-1: every core)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-zero integer, got {text!r}") from None
    if value == 0:
        raise argparse.ArgumentTypeError("expected a non-zero integer (1: one process, -1: "
                                         "every core), got 0")
    return value


#: The values ``--text-views`` takes: the word view first (every member's but the extra
#: views' own), then the views whose members it adds.
TEXT_VIEW_CHOICES = ("word", "word,char")


def text_views(text: str) -> tuple[str, ...]:
    """``--text-views``: ``word`` or ``word,char`` (the TF-IDF views of the text)."""
    views = tuple(v.strip().lower() for v in text.split(","))
    if ",".join(views) not in TEXT_VIEW_CHOICES:
        raise argparse.ArgumentTypeError(
            f"expected {' or '.join(TEXT_VIEW_CHOICES)} (comma-separated TF-IDF views, word "
            f"first), got {text!r}")
    return views


def seed(text: str) -> int:
    """An argparse ``type`` for a random seed: an integer in [0, 2**32 - 1] (what numpy takes)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer seed, got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected a seed between 0 and 2**32 - 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse ``type`` for a duration: a finite number of seconds > 0 (not nan/inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a finite number of seconds > 0, got {text}")
    return value


def check_folds(cv: int, y: np.ndarray, task: str) -> None:
    """Enough rows (and rows of each class) for ``cv`` folds, else a :class:`UserError`."""
    if cv > len(y) // 2:
        raise UserError(f"--cv {cv} is too many folds for {len(y)} rows.")
    if task == "classification":
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() < cv:
            raise UserError(f"--cv {cv} is too many folds: class {classes[counts.argmin()]!r} "
                            f"has only {counts.min()} rows; lower --cv or add rows.")


def check_values(X, y, target: str | None, *, allow_nan: bool) -> None:
    """Refuse a target with inf and feature columns with inf (or NaN unless ``allow_nan``)."""
    y = np.asarray(y)
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        rows = np.flatnonzero(~np.isfinite(y))
        raise UserError(f"target {target or ''!r} has infinite values in {len(rows)} row(s) (the "
                        f"first at row {int(rows[0])}); drop or fix them.")
    if hasattr(X, "select_dtypes"):
        numeric = X.select_dtypes("number")
        names, values = list(numeric.columns), numeric.to_numpy(dtype=np.float64)
    else:
        values = np.asarray(X)
        if values.dtype.kind not in "fc" or values.ndim != 2:
            return
        names = list(range(values.shape[1]))
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    if bad.any():
        columns = [names[j] for j in np.flatnonzero(bad.any(axis=0))]
        what = "infinite" if allow_nan else "infinite or missing (NaN)"
        raise UserError(f"feature column(s) {columns} hold {what} values in "
                        f"{int(bad.any(axis=1).sum())} row(s); drop or fix them.")


def printer(quiet: bool) -> Callable[[str], None]:
    """``say(message)``: print and flush, unless ``quiet``."""
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


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

    n_samples = None if args.n_samples == ALL_ROWS else args.n_samples or DEFAULT_N_SAMPLES
    try:
        texts, labels = load_wordnet_glosses(n_samples=n_samples, return_X_y=True,
                                             random_state=args.random_state)
    except ValueError as exc:  # e.g. too few rows for any class to keep its minimum
        raise UserError(f"--n-samples {n_samples}: {exc}") from None
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
    labelled = frame[args.target].notna()
    frame = frame.loc[labelled, list(dict.fromkeys(columns))]
    if frame.empty:
        raise UserError(f"target column {args.target!r} has no values.")
    unlabelled = int((~labelled).sum())
    notes = [f"dropped {unlabelled} row{'s' if unlabelled != 1 else ''} with an empty "
             f"{args.target!r}"] if unlabelled else []
    if args.text_column:
        frame[args.text_column] = frame[args.text_column].fillna("").astype(str)
    task, y, keep, rare = target_of(frame, args)
    frame = frame.loc[keep]
    notes += [rare.strip(" ()")] if rare else []
    if subset_size(args) and subset_size(args) < len(y):
        frame, y = _subsample(frame, y, subset_size(args), task, args.random_state)
    X = frame.drop(columns=args.target)
    if args.text_column and not args.features:
        X = X[args.text_column].to_numpy(dtype=object)
    kind = f"{np.unique(y).size} classes" if task == "classification" else "regression"
    return {
        "X": X, "y": y, "task": task, "text": bool(args.text_column),
        "text_column": args.text_column, "numeric": list(args.features),
        "description": f"{args.data.name}, {len(y)} rows, {kind}"
                       + (f" ({'; '.join(notes)})" if notes else ""),
        "source": str(args.data),
    }


def target_of(frame: pd.DataFrame, args: argparse.Namespace):
    """``(task, y, keep, note)`` of ``frame[args.target]``: a classification target with one
    class is an error; ``keep`` (a row mask) drops classes too rare for ``args.cv`` folds."""
    task = _task(frame[args.target], args.task)
    y = frame[args.target].to_numpy()
    keep, note = np.ones(len(y), dtype=bool), ""
    if task == "classification":
        y = y.astype(str) if y.dtype == object else y
        if np.unique(y).size < 2:
            only = np.unique(y)[0].item()  # a Python value: 'same', not np.str_('same')
            raise UserError(f"target column {args.target!r} has a single class "
                            f"({only!r}); a classifier needs at least two.")
        keep, note = _common_classes(y, args.cv)
        y = y[keep]
    return task, y, keep, note


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

