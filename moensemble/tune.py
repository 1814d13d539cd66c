"""Distributed search workers: any number of processes or machines share one Optuna study.

``moensemble tune --storage URL --study-name NAME --n-trials N`` starts one worker; start as
many as you like, on one machine or many, with the same storage and study name. Each worker
joins the study (``create_study(load_if_exists=True)``), runs ``N`` trials of one family's
search space (the spaces of :mod:`moensemble.search`) scored by cross-validation, and stops.
``moensemble tune --refit-best --output model.moe`` then refits the best trial on all the data
and saves it with :func:`moensemble.save`.

**Storages.** Pick one by where the workers run:

- ``postgresql+psycopg://user:password@host:5432/db`` (or any SQLAlchemy URL) for workers on
  many machines;
- ``journal:/path/study.log`` (Optuna's ``JournalStorage`` on a file) for processes on one
  machine;
- ``sqlite:///study.db`` for a quick single-machine run.

**Faults.** Finished trials are stored as they finish, so killing a worker never loses them.
A trial whose worker died is retried:

- with a database URL every running trial sends a heartbeat; a trial whose worker died
  (SIGKILL, a lost machine) is marked FAIL once its heartbeat is older than the grace
  period, and :class:`optuna.storages.RetryHeartbeatStaleTrialCallback` queues it again with
  the same parameters (at most ``max_retry`` times); the next worker to ask for a trial
  runs it;
- journal files have no heartbeat: a worker starting on the same machine fails and queues
  again the running trials whose worker process no longer exists.

:class:`~moensemble.search.SearchCV` and the AutoML estimators open a ``storage`` given as a
URL string the same way (:func:`open_storage`, :func:`recover_trials`), so resuming their
study after a crash retries the trial that was running.
"""

from __future__ import annotations

import argparse
import functools
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from moensemble.cli import _printer, int_at_least

if TYPE_CHECKING:  # optuna is imported where used: `moensemble --help` stays fast
    import optuna

__all__ = ["Problem", "open_storage", "join_study", "run_worker", "make_objective", "refit_best",
           "recover_trials", "requeue_dead_local_trials", "register", "run", "main"]

#: Seconds between heartbeats of a running trial (database storages).
HEARTBEAT_INTERVAL = 30
#: A running trial whose heartbeat is older than this is taken as dead.
GRACE_PERIOD = 120
#: How many times a trial killed with its worker is queued again.
MAX_RETRY = 2
CONFIG_ATTR = "moensemble_tune"
WORKER_ATTR = "worker"


# ---- storage and study -----------------------------------------------------------------------


def open_storage(
    url: str | optuna.storages.BaseStorage,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL,
    grace_period: int | None = GRACE_PERIOD,
    max_retry: int = MAX_RETRY,
) -> optuna.storages.BaseStorage:
    """Open a storage for workers: heartbeats and retries on databases, a journal on a file.

    Parameters
    ----------
    url : str or optuna storage
        ``journal:<path>`` for a journal file; any other string is an SQLAlchemy URL
        (``postgresql+psycopg://...``, ``sqlite:///...``). A storage object is returned as is.
    heartbeat_interval : int, default=30
        Seconds between the heartbeats of a running trial (database storages).
    grace_period : int or None, default=120
        Age of the last heartbeat after which a running trial is taken as dead; None uses
        Optuna's default (twice the interval).
    max_retry : int, default=2
        Times a dead worker's trial is queued again.

    Returns
    -------
    storage : optuna.storages.BaseStorage

    Raises
    ------
    ValueError
        When the storage cannot be opened; the message masks any password in ``url``.
    """
    import optuna

    from moensemble.search._search import _password, mask_url
    from moensemble.search._search import open_storage as open_plain

    if not isinstance(url, str) or url.startswith("journal:"):
        return open_plain(url)
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    retry = retry or optuna.storages.RetryFailedTrialCallback  # Optuna < 5
    kwargs: dict[str, Any] = {"heartbeat_interval": heartbeat_interval,
                              "grace_period": grace_period}
    key = "heartbeat_stale_trial_callback"
    if key not in optuna.storages.RDBStorage.__init__.__code__.co_varnames:
        key = "failed_trial_callback"  # Optuna < 5
    with warnings.catch_warnings():  # stable in practice since Optuna 2.8, still "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        kwargs[key] = retry(max_retry=max_retry)
    try:
        return _open_rdb(url, kwargs)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        secret = _password(url)
        if secret:
            message = message.replace(secret, "***")
        raise ValueError(f"Could not open the Optuna storage {mask_url(url)!r}: {message}") \
            from None


def _open_rdb(url: str, kwargs: dict, attempts: int = 5) -> optuna.storages.RDBStorage:
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                # pool_pre_ping: a worker outlives database restarts and idle timeouts.
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True}, **kwargs
                )
        except (IntegrityError, ProgrammingError):
            # Workers started together on an empty database race to create Optuna's tables;
            # the losers find them created on the next attempt.
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def join_study(
    storage: optuna.storages.BaseStorage, study_name: str, *, seed: int | None = None
) -> optuna.Study:
    """Create the study, or load it when another worker already did (a maximised score).

    Each worker's sampler gets its own seed (``seed`` plus the process id): equal seeds
    would make workers that start together propose the same first trials.
    """
    import optuna

    worker_seed = None if seed is None else (seed + os.getpid()) % (2**31)
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=worker_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
        load_if_exists=True,
    )


def worker_id() -> str:
    """``host:pid`` of this process, stored on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"


def requeue_dead_local_trials(study: optuna.Study, *, max_retry: int = MAX_RETRY) -> list[int]:
    """Fail and queue again the RUNNING trials of dead processes on this machine.

    For storages without heartbeats (journal files, which serve one machine): a trial whose
    worker process no longer exists will never finish.

    Parameters
    ----------
    study : optuna.Study
        A study whose trials carry their worker (``host:pid`` in the ``worker`` user
        attribute, see :func:`worker_id`); trials without it are left alone.
    max_retry : int, default=2
        A trial is queued again at most this many times (a configuration that kills its
        process is then only failed).

    Returns
    -------
    numbers : list of int
        Numbers of the trials that were failed.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if is_heartbeat_enabled(study._storage):
        return []  # the storage's heartbeat handles it, across machines
    host = socket.gethostname()
    failed = []
    trials = study.get_trials(deepcopy=False)
    for trial in trials:
        if trial.state != optuna.trial.TrialState.RUNNING:
            continue
        owner_host, _, pid = str(trial.user_attrs.get(WORKER_ATTR, "")).rpartition(":")
        if owner_host != host or not pid.isdigit() or _alive(int(pid)):
            continue
        # Only one worker wins the RUNNING -> FAIL transition, so the trial is queued once.
        try:
            study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        except UpdateFinishedTrialError:  # another worker got there first
            continue
        failed.append(trial.number)
        if _retries(trial, trials) < max_retry:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
    return failed


def _retries(trial: optuna.trial.FrozenTrial, trials: list[optuna.trial.FrozenTrial]) -> int:
    """How many times ``trial``'s configuration was queued again before it (``retry_of``)."""
    by_number = {t.number: t for t in trials}
    count, seen = 0, set()
    while "retry_of" in trial.user_attrs and trial.number not in seen:
        seen.add(trial.number)
        count += 1
        trial = by_number.get(trial.user_attrs["retry_of"])
        if trial is None:
            break
    return count


def recover_trials(study: optuna.Study, *, max_retry: int = MAX_RETRY) -> list[int]:
    """Fail (and queue again) the trials left RUNNING by dead workers.

    With a heartbeat (database storages opened by :func:`open_storage`), the trials whose
    heartbeat is older than the grace period go through Optuna's
    :func:`optuna.storages.fail_stale_trials` and the storage's retry callback; without one
    (journal files), :func:`requeue_dead_local_trials`. Cheap: call it before asking for a
    trial outside :meth:`optuna.Study.optimize` (which calls it itself).

    Parameters
    ----------
    study : optuna.Study
    max_retry : int, default=2
        Journal storages only: see :func:`requeue_dead_local_trials` (database storages
        retry as their callback says).

    Returns
    -------
    numbers : list of int
        Journal storages: the failed trials' numbers; database storages: an empty list.
    """
    import optuna
    from optuna.storages._heartbeat import is_heartbeat_enabled

    if not is_heartbeat_enabled(study._storage):
        return requeue_dead_local_trials(study, max_retry=max_retry)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return []


def heartbeat(study: optuna.Study, trial: optuna.Trial):
    """Context manager: send ``trial``'s heartbeat while it runs (when the storage has one).

    :meth:`optuna.Study.optimize` does this itself; ask-and-tell loops need it, or other
    processes take their running trials for dead ones.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def run_worker(
    storage: str | optuna.storages.BaseStorage,
    study_name: str,
    objective: Callable[[optuna.Trial], float],
    *,
    n_trials: int | None = None,
    timeout: float | None = None,
    config: dict | None = None,
    seed: int | None = None,
    catch: tuple[type[Exception], ...] = (Exception,),
    max_retry: int = MAX_RETRY,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> list[int]:
    """Join ``study_name`` in ``storage`` and run ``n_trials`` trials of ``objective``.

    Parameters
    ----------
    storage : str or optuna storage
        See :func:`open_storage`.
    study_name : str
        The shared study; created by the first worker.
    objective : callable
        ``objective(trial) -> float`` to maximise (e.g. from :func:`make_objective`).
    n_trials, timeout : int or float, default=None
        This worker's share: trials to run, seconds after which no new trial starts.
    config : dict, default=None
        Settings stored on the study by the first worker; a later worker whose settings
        differ is refused, so that all trials of a study are comparable.
    seed : int, default=None
        Base seed of this worker's sampler.
    catch : tuple of exception types, default=(Exception,)
        Errors that fail one trial without stopping the worker.
    max_retry : int, default=2
        Times a trial whose worker died is queued again (when ``storage`` is a URL: a
        storage object keeps its own retry callback; journal files always use it).
    callbacks : sequence of callables, default=()
        ``callback(study, frozen_trial)`` after each of this worker's trials (as in
        :meth:`optuna.Study.optimize`).

    Returns
    -------
    numbers : list of int
        Numbers of the trials this worker ran.
    """

    if n_trials is None and timeout is None:
        raise ValueError("Give `n_trials` or `timeout`: a worker without either never stops.")
    opened = open_storage(storage, max_retry=max_retry)
    study = join_study(opened, study_name, seed=seed)
    if config is not None:
        _check_config(study, config)
    recover_trials(study, max_retry=max_retry)
    mine: list[int] = []
    me = worker_id()

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER_ATTR, me)
        mine.append(trial.number)
        return objective(trial)

    study.optimize(tagged, n_trials=n_trials, timeout=timeout, catch=catch, gc_after_trial=True,
                   callbacks=list(callbacks))
    return mine


def _check_config(study: optuna.Study, config: dict, *, store: bool = True) -> None:
    """Refuse ``config`` when it differs from the study's; the first worker stores its own.

    ``store=False`` (read-only use, e.g. a refit) checks only when the study has settings.
    """
    stored = study.user_attrs.get(CONFIG_ATTR)
    if stored is None and not store:
        return
    if stored is None:
        study.set_user_attr(CONFIG_ATTR, config)
        stored = study.user_attrs.get(CONFIG_ATTR, config)  # another worker may have won
    if stored != config:
        differ = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
        raise ValueError(
            f"Study {study.study_name!r} was started with other settings ({', '.join(differ)}): "
            f"{ {k: stored.get(k) for k in differ} }; this worker has "
            f"{ {k: config.get(k) for k in differ} }. Use the same options, or a new study name."
        )


# ---- objective -------------------------------------------------------------------------------


@dataclass
class Problem:
    """Data, family and scoring to tune: what every worker of a study must agree on.

    :func:`make_objective` scores trials on it and :func:`refit_best` refits the best trial
    on all of it; :meth:`config` is the fingerprint a study stores, so that workers given
    other data or settings are refused.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or sequence of str
        Features, or raw texts when ``text`` is true.
    y : ndarray of shape (n_samples,)
        Target.
    task : {'classification', 'regression'}
    text : bool
        ``X`` holds raw texts: TF-IDF features are fitted inside each fold, in front of the
        family's estimator.
    family : str, default='weighted'
        A name from :data:`moensemble.search.auto.FAMILIES` whose space is searched.
    cv : int, default=3
        Outer folds every trial is scored on (stratified for classification, shuffled and
        seeded by ``random_state``).
    inner_cv : int, default=3
        Folds of the ensembles' own out-of-fold fits.
    random_state : int or None, default=0
        Seeds the folds and the members.
    scoring : str or None, default=None
        A scikit-learn scorer name (:func:`sklearn.metrics.get_scorer_names`); None is
        accuracy for classification and R² for regression.

    Examples
    --------
    >>> import numpy as np
    >>> from moensemble.tune import Problem
    >>> problem = Problem(X=np.zeros((6, 2)), y=np.array([0, 1] * 3),
    ...                   task="classification", text=False, cv=2)
    >>> len(problem.folds())
    2
    """

    X: Any
    y: np.ndarray
    task: str  # 'classification' | 'regression'
    text: bool  # X holds raw texts (TF-IDF features are fitted inside each fold)
    family: str = "weighted"
    cv: int = 3
    inner_cv: int = 3
    random_state: int | None = 0
    scoring: str | None = None

    def make(self) -> tuple[Any, Callable[[optuna.Trial], dict]]:
        """The family's estimator (behind TF-IDF for text) and its space.

        Returns
        -------
        estimator : estimator
            The family's estimator with its fixed settings.
        space : callable
            ``space(trial) -> dict`` of parameters for ``estimator.set_params``.
        """
        from sklearn.pipeline import Pipeline

        from moensemble.search.auto import FAMILIES, SearchContext, default_members

        if self.family not in FAMILIES:
            raise ValueError(f"Unknown family {self.family!r}; known: {sorted(FAMILIES)}.")
        family = FAMILIES[self.family]
        context = SearchContext(
            task=self.task,
            members=default_members(self.task, sparse=self.text, random_state=self.random_state,
                                    non_negative=True),
            inner_cv=self.inner_cv, memory=None, n_jobs=None, random_state=self.random_state,
            sparse=self.text, n_samples=len(self.y), n_features=0,
        )
        estimator = family.make(context)
        space = functools.partial(family.space, context=context, prefix="")
        if not self.text:
            return estimator, space
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, dtype=np.float32)

        def text_space(trial: optuna.Trial) -> dict:
            return {f"model__{k}": v for k, v in space(trial).items()}

        return Pipeline([("features", tfidf), ("model", estimator)]), text_space

    def folds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The outer folds, as ``(train, test)`` index arrays; the same for every worker."""
        from sklearn.model_selection import KFold, StratifiedKFold

        splitter = StratifiedKFold if self.task == "classification" else KFold
        return list(splitter(self.cv, shuffle=True, random_state=self.random_state)
                    .split(np.zeros(len(self.y)), self.y))

    def scoring_name(self) -> str:
        """``scoring``, or the task's default scorer name ('accuracy' or 'r2')."""
        return self._default_scoring() if self.scoring is None else self.scoring

    def _default_scoring(self) -> str:
        return "accuracy" if self.task == "classification" else "r2"

    def config(self) -> dict:
        """The settings a study stores: family, task, folds, seed, scoring, data fingerprint.

        Returns
        -------
        config : dict
            JSON-serialisable; the data enter as a hash, so that workers given another
            file or subset are refused.
        """
        import joblib

        config = {"family": self.family, "task": self.task, "cv": self.cv,
                  "inner_cv": self.inner_cv, "random_state": self.random_state,
                  "n_samples": int(len(self.y)), "data": joblib.hash((self.X, self.y))}
        if self.scoring_name() != self._default_scoring():  # older studies have no key
            config["scoring"] = self.scoring_name()
        return config


def make_objective(problem: Problem) -> Callable[[optuna.Trial], float]:
    """The objective of a study's trials: draw parameters, cross-validate, report for pruning.

    Parameters
    ----------
    problem : Problem
        Data, family, folds and scoring.

    Returns
    -------
    objective : callable
        ``objective(trial) -> float``, the mean score over ``problem``'s folds (higher is
        better); MoE trials report their validation loss per epoch, others their running
        score per fold, so that the pruner can stop them early.
    """
    from sklearn.metrics import check_scoring

    from moensemble.search._search import build_estimator, cross_validate_trial

    estimator, space = problem.make()
    folds = problem.folds()
    scorer = check_scoring(estimator, scoring=problem.scoring_name())

    def objective(trial: optuna.Trial) -> float:
        model = build_estimator(estimator, space(trial))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes of capped members
            result = cross_validate_trial(trial, model, problem.X, problem.y, folds, scorer,
                                          report_epochs=True, report_folds=True)
        return result.score

    return objective


def refit_best(storage: str | optuna.storages.BaseStorage, study_name: str, problem: Problem):
    """Refit the study's best trial on all of ``problem``'s data; return the fitted model.

    Read-only on the study: nothing is written to it.

    Parameters
    ----------
    storage : str or optuna storage
        See :func:`open_storage`.
    study_name : str
        A study whose trials searched ``problem.family``'s space.
    problem : Problem
        The data and settings the trials were scored on; refused when the study stored
        other settings (a study without stored settings, e.g. one made by
        :class:`~moensemble.search.SearchCV`, is not checked).

    Returns
    -------
    model : estimator
        The best trial's configuration fitted on all rows.

    Raises
    ------
    ValueError
        No such study, other settings, or no complete trial yet.
    """
    import optuna

    from moensemble.search._search import build_estimator, replay_space

    opened = open_storage(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=opened)
    except KeyError:
        raise ValueError(f"No study named {study_name!r} in this storage.") from None
    # Refit on the data the trials were scored on; never write: a refit only reads.
    _check_config(study, problem.config(), store=False)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"Study {study_name!r} has no complete trial to refit yet.")
    estimator, space = problem.make()
    model = build_estimator(estimator, replay_space(space, study.best_trial))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(problem.X, problem.y)


# ---- command line ----------------------------------------------------------------------------


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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    study = tune.add_argument_group("study")
    study.add_argument("--storage", required=True, metavar="URL",
                       help="postgresql+psycopg://user:pw@host/db (many machines), "
                       "journal:/path/study.log (one machine) or sqlite:///study.db")
    study.add_argument("--study-name", required=True, metavar="NAME")
    study.add_argument("--n-trials", type=_positive_int, metavar="N",
                       help="trials this worker runs")
    study.add_argument("--timeout", type=float, metavar="SECONDS",
                       help="no new trial starts after this many seconds")
    study.add_argument("--family", default="weighted", metavar="NAME",
                       help="the model family whose space is searched: weighted, stacking, moe "
                       "or gated (moensemble.search.auto.FAMILIES)")
    study.add_argument("--heartbeat", type=_positive_int, default=HEARTBEAT_INTERVAL,
                       metavar="SECONDS", help="heartbeat interval of running trials (database)")
    study.add_argument("--grace-period", type=_positive_int, default=GRACE_PERIOD,
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
    data.add_argument("--n-samples", type=_positive_int, metavar="N", default=None,
                      help="stratified subset of N rows (bundled data: 1000)")
    data.add_argument("--cv", type=_positive_int, default=3, metavar="K",
                      help="cross-validation folds every trial is scored on (stratified for "
                      "classification)")
    data.add_argument("--scoring", metavar="NAME", default=None,
                      help="a scikit-learn scorer name (sklearn.metrics.get_scorer_names()), "
                      "e.g. f1_macro, neg_mean_absolute_error (default: accuracy for "
                      "classification, r2 for regression)")
    data.add_argument("--random-state", type=int, default=0, metavar="SEED",
                      help="seeds the folds, the subset, the members and the sampler (each "
                      "worker adds its process id to the sampler's seed)")
    data.add_argument("--quiet", action="store_true",
                      help="print only the final summary line (default: also a line about "
                      "the data and one per finished trial)")
    tune.set_defaults(run=run)
    return tune


_non_negative_int = int_at_least(0)
_positive_int = int_at_least(1)


def run(args: argparse.Namespace) -> int:
    """``moensemble tune``: run trials as a worker, or refit the best trial and save it."""
    import optuna

    from moensemble.cli import UserError
    from moensemble.search.auto import FAMILIES

    if args.family not in FAMILIES:
        raise UserError(f"unknown --family {args.family!r}; known: {', '.join(FAMILIES)}.")
    if args.scoring is not None:
        from sklearn.metrics import get_scorer_names

        if args.scoring not in get_scorer_names():
            raise UserError(f"unknown --scoring {args.scoring!r}; known: "
                            f"{', '.join(get_scorer_names())}.")
    problem = _problem(args)
    try:
        storage = open_storage(args.storage, heartbeat_interval=args.heartbeat,
                               grace_period=args.grace_period, max_retry=args.max_retry)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    say = _printer(args.quiet)
    if args.refit_best:
        return _run_refit(args, storage, problem)
    if args.n_trials is None and args.timeout is None:
        raise UserError("give --n-trials N or --timeout SECONDS (or --refit-best).")
    objective = make_objective(problem)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    say(f"worker {worker_id()}: family {problem.family}, {problem.task} on "
        f"{len(problem.y)} rows, {problem.cv}-fold {problem.scoring_name()}; study "
        f"{args.study_name!r}")

    def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        value = "" if trial.value is None else f" {trial.value:.4f}"
        say(f"trial {trial.number} {trial.state.name.lower()}{value} {trial.params}")

    try:
        mine = run_worker(storage, args.study_name, objective, n_trials=args.n_trials,
                          timeout=args.timeout, config=problem.config(), seed=args.random_state,
                          max_retry=args.max_retry, callbacks=[report])
    except ValueError as exc:
        raise UserError(str(exc)) from None
    study = optuna.load_study(study_name=args.study_name, storage=storage)
    states = _state_counts(study)
    best = f"; best score {study.best_value:.4f}" if states.get("COMPLETE") else ""
    print(f"worker {worker_id()} ran {len(mine)} trials; study {args.study_name!r}: "
          f"{', '.join(f'{n} {s.lower()}' for s, n in sorted(states.items()))}{best}",
          flush=True)
    return 0


def _run_refit(args: argparse.Namespace, storage, problem: Problem) -> int:
    from moensemble.cli import UserError
    from moensemble.persist import save

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


def _state_counts(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def _problem(args: argparse.Namespace) -> Problem:
    from moensemble.cli import load_data

    args.n_samples = args.n_samples or (1000 if args.data is None else None)
    dataset = load_data(args)
    X = dataset["X"]
    if dataset["text"] and dataset.get("numeric"):
        from moensemble.cli import UserError

        raise UserError("tune takes either --text-column or --features, not both.")
    if not dataset["text"]:
        X = np.asarray(X, dtype=np.float64)
    return Problem(X=X, y=np.asarray(dataset["y"]), task=dataset["task"], text=dataset["text"],
                   family=args.family, cv=args.cv, random_state=args.random_state,
                   scoring=args.scoring)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m moensemble.tune ...``: the ``tune`` subcommand on its own."""
    from moensemble.cli import EXIT_USAGE, UserError

    parser = argparse.ArgumentParser(prog="moensemble")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["tune", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.run(args)
    except UserError as exc:
        print(f"moensemble: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
