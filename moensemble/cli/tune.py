"""``moensemble tune``: run search trials as one worker of a shared Optuna study.

``moensemble tune --storage URL --study-name NAME --n-trials N`` starts one worker; start as
many as you like, on one machine or many, with the same storage and study name. Each worker
joins the study, runs ``N`` trials of one family's search space scored by cross-validation,
and stops (:mod:`moensemble.search.worker`). ``moensemble tune --refit-best --output
model.moe`` then refits the best trial on all the data and saves it with
:func:`moensemble.save`. Storages and fault tolerance: :mod:`moensemble.search.storage`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from moensemble.cli.common import (
    EXIT_USAGE,
    HelpFormatter,
    OneLineParser,
    UserError,
    check_folds,
    check_values,
    fold_count,
    int_at_least,
    load_data,
    positive_int,
    positive_seconds,
    printer,
    sample_count,
    seed,
)

__all__ = ["register", "run", "main"]

# The storage defaults (moensemble.search.storage), repeated here so that building the parser
# (`moensemble --help`) imports no optuna; a test checks that they agree.
HEARTBEAT_INTERVAL = 30
GRACE_PERIOD = 120
MAX_RETRY = 2


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``tune`` subcommand to a ``moensemble`` argument parser.

    Parameters
    ----------
    subparsers : argparse subparsers action
        From ``parser.add_subparsers()``.

    Returns
    -------
    parser : argparse.ArgumentParser
        The ``tune`` parser (its ``run`` default is :func:`run`).
    """
    tune = subparsers.add_parser(
        "tune",
        help="run search trials as one worker of a shared Optuna study",
        description="Join an Optuna study (created by the first worker) and run trials; start "
        "any number of workers on the same --storage and --study-name. --refit-best refits "
        "the best trial on all the data and saves it.",
        formatter_class=HelpFormatter,
    )
    study = tune.add_argument_group("study")
    study.add_argument("--storage", required=True, metavar="URL",
                       help="postgresql+psycopg://user:pw@host/db (many machines), "
                       "journal:/path/study.log (one machine) or sqlite:///study.db")
    study.add_argument("--study-name", required=True, metavar="NAME")
    study.add_argument("--n-trials", type=positive_int, metavar="N",
                       help="trials this worker runs")
    study.add_argument("--timeout", type=positive_seconds, metavar="SECONDS",
                       help="no new trial starts after this many seconds")
    study.add_argument("--family", default="weighted", metavar="NAME",
                       help="the model family whose space is searched: an ensemble (weighted, "
                       "stacking, gated), moe, or one kind of single model (hist_gb, lightgbm, "
                       "xgboost, catboost, extra_trees, random_forest, linear, knn, mlp); "
                       "moensemble.search.auto.FAMILIES")
    study.add_argument("--heartbeat", type=positive_int, default=HEARTBEAT_INTERVAL,
                       metavar="SECONDS", help="heartbeat interval of running trials (database)")
    study.add_argument("--grace-period", type=positive_int, default=GRACE_PERIOD,
                       metavar="SECONDS", help="a trial silent this long is failed and retried")
    study.add_argument("--max-retry", type=_non_negative_int, default=MAX_RETRY, metavar="N",
                       help="times a trial whose worker died is queued again (0: only failed)")
    study.add_argument("--refit-best", action="store_true",
                       help="instead of running trials, refit the best one and save it")
    study.add_argument("--output", type=Path, default=Path("model.moe"), metavar="FILE",
                       help="where --refit-best saves the model (moensemble.save)")
    data = tune.add_argument_group("data (default: the bundled WordNet glosses)")
    data.add_argument("--data", type=Path, metavar="FILE", help="a .csv, .tsv or .parquet file")
    data.add_argument("--target", metavar="COL")
    data.add_argument("--text-column", metavar="COL")
    data.add_argument("--features", nargs="+", metavar="COL", default=[])
    data.add_argument("--task", choices=["auto", "classification", "regression"],
                      default="auto")
    data.add_argument("--n-samples", type=sample_count, metavar="N", default=None,
                      help="stratified subset of N rows, or 'all' (bundled data: 1000)")
    data.add_argument("--cv", type=fold_count, default=3, metavar="K",
                      help="cross-validation folds every trial is scored on (stratified for "
                      "classification)")
    data.add_argument("--scoring", metavar="NAME", default=None,
                      help="a scikit-learn scorer name (sklearn.metrics.get_scorer_names()), "
                      "e.g. f1_macro, neg_mean_absolute_error (default: accuracy for "
                      "classification, r2 for regression)")
    data.add_argument("--random-state", type=seed, default=0, metavar="SEED",
                      help="seeds the folds, the subset, the members and the sampler (each "
                      "worker adds its process id to the sampler's seed)")
    data.add_argument("--quiet", action="store_true",
                      help="print only the final summary line (default: also a line about "
                      "the data and one per finished trial)")
    tune.set_defaults(run=run)
    return tune


_non_negative_int = int_at_least(0)


def run(args: argparse.Namespace) -> int:
    """``moensemble tune``: run trials as a worker, or refit the best trial and save it."""
    import optuna

    from moensemble.search import storage
    from moensemble.search.auto import FAMILIES
    from moensemble.search.worker import make_objective, run_worker

    if not args.study_name.strip():
        raise UserError("--study-name must not be empty: workers find each other's study by "
                        "its name.")
    if args.family not in FAMILIES:
        raise UserError(f"unknown --family {args.family!r}; known: {', '.join(FAMILIES)}.")
    if args.scoring is not None:
        from sklearn.metrics import get_scorer_names

        if args.scoring not in get_scorer_names():
            raise UserError(f"unknown --scoring {args.scoring!r}; known: "
                            f"{', '.join(get_scorer_names())}.")
    problem, description = _problem(args)
    try:
        opened = storage.open_storage(args.storage, heartbeat_interval=args.heartbeat,
                                      grace_period=args.grace_period,
                                      max_retry=args.max_retry)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    say = printer(args.quiet)
    if args.refit_best:
        return _run_refit(args, opened, problem)
    if args.n_trials is None and args.timeout is None:
        raise UserError("give --n-trials N or --timeout SECONDS (or --refit-best).")
    objective = make_objective(problem)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # The data's description says what was dropped (rows with an empty target, rare classes).
    say(f"worker {storage.worker_id()}: family {problem.family}, {problem.task} on "
        f"{description}; {problem.cv}-fold {problem.scoring_name()}; study "
        f"{args.study_name!r}")

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = "" if trial.value is None else f" {trial.value:.4f}"
        say(f"trial {trial.number} {trial.state.name.lower()}{value} {trial.params}")

    try:
        mine = run_worker(opened, args.study_name, objective, n_trials=args.n_trials,
                          timeout=args.timeout, config=problem.config(), seed=args.random_state,
                          max_retry=args.max_retry, callbacks=[report])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    study = optuna.load_study(study_name=args.study_name, storage=opened)
    states = _state_counts(study)
    best = f"; best score {study.best_value:.4f}" if states.get("COMPLETE") else ""
    print(f"worker {storage.worker_id()} ran {len(mine)} trials; study {args.study_name!r}: "
          f"{', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()))}{best}",
          flush=True)
    return 0


def _run_refit(args: argparse.Namespace, storage, problem) -> int:
    from moensemble.persist import save
    from moensemble.search.worker import refit_best

    output: Path = args.output
    if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
        raise UserError(f"cannot write {output}: folder {output.parent} is missing or not "
                        "writable.")
    try:
        model = refit_best(storage, args.study_name, problem)
        save(model, output)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:  # disk full, permissions: save() left any earlier file intact
        raise UserError(f"cannot write {output}: {exc.strerror or exc}; the study is "
                        "unchanged and any earlier file there is intact.") from None
    print(f"refit the best trial of {args.study_name!r} on {len(problem.y)} rows; "
          f"saved {output}", flush=True)  # the summary line: printed with --quiet too
    return 0


def _state_counts(study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _problem(args: argparse.Namespace) -> tuple:
    """The worker's ``Problem`` and a line describing the data (with what was dropped)."""
    from moensemble.search.worker import Problem

    args.n_samples = args.n_samples or (1000 if args.data is None else None)
    dataset = load_data(args)
    X = dataset["X"]
    if dataset["text"] and dataset.get("numeric"):
        raise UserError("tune takes either --text-column or --features, not both.")
    check_folds(args.cv, np.asarray(dataset["y"]), dataset["task"])
    if not dataset["text"]:
        check_values(X, dataset["y"], args.target, allow_nan=False)  # trials get X as it is
        X = np.asarray(X, dtype=np.float64)
    problem = Problem(X=X, y=np.asarray(dataset["y"]), task=dataset["task"],
                      text=dataset["text"], family=args.family, cv=args.cv,
                      random_state=args.random_state, scoring=args.scoring)
    return problem, dataset["description"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m moensemble.cli.tune ...``: the ``tune`` subcommand on its own."""

    parser = OneLineParser(prog="moensemble")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tune", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except UserError as exc:
        print(f"moensemble tune: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
