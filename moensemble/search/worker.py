"""The distributed worker behind ``moensemble tune``: any number of processes share one study.

Each worker joins the study (``create_study(load_if_exists=True)``, :func:`join_study`),
runs trials of one family's search space (the spaces of :mod:`moensemble.search`) scored by
cross-validation on a :class:`Problem` (:func:`make_objective`, :func:`run_worker`), and
stops. :func:`refit_best` then refits the best trial on all the data. Storages, heartbeats
and the recovery of dead workers' trials are in :mod:`moensemble.search.storage`.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from moensemble.search.storage import (
    MAX_RETRY,
    WORKER_ATTR,
    open_storage,
    recover_trials,
    worker_id,
)

if TYPE_CHECKING:  # optuna is imported where used
    import optuna

__all__ = ["Problem", "join_study", "run_worker", "make_objective", "refit_best",
           "CONFIG_ATTR"]

CONFIG_ATTR = "moensemble_tune"


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
    >>> from moensemble.search.worker import Problem
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

    from moensemble.search.trials import build_estimator, cross_validate_trial

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

    from moensemble.search.trials import build_estimator, replay_space

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
