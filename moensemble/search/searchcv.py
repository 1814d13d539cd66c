"""Optuna search over any scikit-learn / moensemble estimator with a define-by-run space."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, is_classifier
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

from moensemble._validation import IntInterval
from moensemble.search.storage import tag_worker
from moensemble.search.trials import (
    build_estimator,
    check_objectives,
    cross_validate_trial,
    directions_for,
    is_space_change,
    make_study,
    pareto_frame,
    quiet_optuna,
    replay_space,
    space_changed_error,
)

__all__ = ["SearchCV"]


class SearchCV(MetaEstimatorMixin, BaseEstimator):
    """Optuna search over an estimator's parameters with a define-by-run space.

    Each trial asks ``space(trial)`` for parameters, sets them on a clone of
    ``estimator`` and scores it by cross-validation. Estimators that take skorch
    callbacks (the MoE estimators) report their loss after every epoch, so the
    pruner can stop bad trials early; others report the running mean score after
    each fold.

    Parameters
    ----------
    estimator : estimator or None
        The estimator to tune. None when ``space`` returns whole estimators.
    space : callable
        ``space(trial) -> dict`` of parameters for ``estimator.set_params``, or
        ``space(trial) -> estimator``. See :mod:`moensemble.search.spaces`. An error it
        raises fails the trial (see ``error_score``) as a ValueError naming the trial.
        Resuming a study with another space is refused (see ``study_name``).
    n_trials : int or None, default=20
        Trials to run in this fit (on top of those a resumed study holds).
        None runs until ``timeout``.
    timeout : float or None, default=None
        Seconds after which no new trial starts.
    cv : int, cross-validation generator or iterable, default=5
        Folds as in :func:`sklearn.model_selection.check_cv` (stratified for
        classifiers). Each trial uses the same folds.
    scoring : str, callable or None, default=None
        Scorer; None uses the estimator's ``score``.
    study : optuna.Study or None, default=None
        An existing study to add trials to (``storage``, ``study_name``,
        ``sampler`` and ``pruner`` are then ignored).
    storage : str, optuna storage or None, default=None
        None keeps the study in memory. An SQLAlchemy URL (``sqlite:///s.db``,
        ``postgresql://...``) or ``journal:<path>`` (a journal file several
        processes can share) persists it.
    study_name : str or None, default=None
        With a storage, fitting again with the same name resumes the study:
        finished trials are kept and new ones are added. The space must be the one the
        study's trials were drawn from: any changed distribution is a ValueError before
        the first new trial.
    sampler : optuna sampler or None, default=None
        None uses ``TPESampler(seed=random_state)``.
    pruner : optuna pruner or None, default=None
        None uses ``MedianPruner(n_startup_trials=5, n_warmup_steps=2)``.
    n_jobs : int, default=1
        Trials run at once (threads, :meth:`optuna.Study.optimize`); -1 runs as many as
        there are CPUs.
    refit : bool, default=True
        Refit the best configuration on all data as ``best_estimator_``.
    objectives : tuple of str, default=('score',)
        ``('score',)`` or ``('score', cost)`` with cost 'n_params' (parameters a
        row uses at predict time) or 'latency' (predict seconds per row): a
        multi-objective search whose Pareto front is ``pareto_front_``. Pruning
        is off for multi-objective studies (Optuna does not support it).
    error_score : 'raise' or float, default=nan
        'raise' re-raises a failing fit; otherwise the trial is marked failed.
    random_state : int, RandomState or None, default=None
        Seeds the default sampler.
    verbose : int, default=0
        0: silent; 1: progress bar; 2: also Optuna's own logs.

    Attributes
    ----------
    study_ : optuna.Study
    best_trial_ : optuna.trial.FrozenTrial
        The best trial (highest score on the Pareto front when multi-objective).
    best_params_ : dict
        Estimator parameters of the best trial (the space replayed on its values).
    best_score_ : float
        Mean cross-validated score of the best trial.
    best_estimator_ : estimator
        Refit on all data (only when ``refit=True``).
    pareto_front_ : pandas.DataFrame
        Multi-objective only: the Pareto-optimal trials.
    n_features_in_ : int

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from moensemble.search import SearchCV
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> def space(trial):
    ...     return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
    >>> search = SearchCV(LogisticRegression(), space, n_trials=5, cv=3, random_state=0)
    >>> search.fit(X, y).best_score_ > 0.8
    True
    """

    _parameter_constraints: dict = {
        "estimator": [HasMethods(["fit"]), None],
        "space": [callable],
        "n_trials": [IntInterval(1, None, closed="left"), None],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "study": [HasMethods(["ask", "tell", "optimize"]), None],
        "storage": [str, HasMethods(["create_new_study"]), None],
        "study_name": [str, None],
        "sampler": [HasMethods(["sample_independent"]), None],
        "pruner": [HasMethods(["prune"]), None],
        "n_jobs": [IntInterval(1, None, closed="left"), Options(Integral, {-1})],
        "refit": ["boolean"],
        "objectives": [tuple, list],
        "error_score": [StrOptions({"raise"}), Real],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        estimator: BaseEstimator | None,
        space: Callable[[optuna.Trial], Any],
        *,
        n_trials: int | None = 20,
        timeout: float | None = None,
        cv: Any = 5,
        scoring: Any = None,
        study: optuna.Study | None = None,
        storage: Any = None,
        study_name: str | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        n_jobs: int = 1,
        refit: bool = True,
        objectives: Sequence[str] = ("score",),
        error_score: Any = np.nan,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.estimator = estimator
        self.space = space
        self.n_trials = n_trials
        self.timeout = timeout
        self.cv = cv
        self.scoring = scoring
        self.study = study
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.n_jobs = n_jobs
        self.refit = refit
        self.objectives = objectives
        self.error_score = error_score
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any = None, **fit_params: Any) -> SearchCV:
        """Run the search, then refit the best configuration on all of ``X, y``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : SearchCV
        """
        if fit_params:
            raise TypeError(f"SearchCV.fit takes no fit parameters; got {sorted(fit_params)}.")
        objectives = check_objectives(self.objectives)
        for name, kind in (("n_trials", "an int >= 1"), ("timeout", "a float > 0 (seconds)")):
            if isinstance(getattr(self, name), bool | np.bool_):  # bool passes as an int
                raise TypeError(f"`{name}` must be {kind} or None; got {getattr(self, name)!r}.")
        if self.n_trials is None and self.timeout is None:
            raise ValueError("Set `n_trials` or `timeout`; with neither the search never ends.")
        classifier = self._is_classifier(y)
        folds = list(check_cv(self.cv, y, classifier=classifier).split(X, y))
        if self.estimator is None and self.scoring is None:
            raise ValueError("`scoring` is required when `estimator` is None.")
        scorer = check_scoring(self.estimator, scoring=self.scoring)
        with quiet_optuna(self.verbose):
            self.study_ = make_study(
                study=self.study,
                storage=self.storage,
                study_name=self.study_name,
                sampler=self.sampler,
                pruner=self.pruner,
                directions=directions_for(objectives),
                random_state=self.random_state,
                space=self.space,
            )
            self._optimize(X, y, folds, scorer, objectives)
        self._set_best(objectives)
        if self.refit:
            self.best_estimator_ = build_estimator(self.estimator, self.best_params_)
            self.best_estimator_.fit(X, y)
        if hasattr(X, "shape") and len(X.shape) == 2:
            self.n_features_in_ = X.shape[1]
        return self

    def _optimize(self, X, y, folds, scorer, objectives: list[str]) -> None:
        single = len(objectives) == 1

        self._errors: list[Exception] = []
        self._space_error: ValueError | None = None

        def objective(trial: optuna.Trial):
            tag_worker(trial)
            try:
                model = build_estimator(self.estimator, self._draw(trial))
                result = cross_validate_trial(
                    trial, model, X, y, folds, scorer,
                    report_epochs=single, report_folds=single, costs=objectives[1:],
                )
            except optuna.TrialPruned:
                raise
            except Exception as exc:
                if is_space_change(exc):  # a resumed study and a changed space: stop
                    self._space_error = space_changed_error(self.study_, "search space")
                    self.study_.stop()
                    raise self._space_error from exc
                self._errors.append(exc)  # shown if no trial completes
                raise
            values = [result.score] + [result.costs[c] for c in objectives[1:]]
            return values[0] if single else values

        catch: tuple = () if self.error_score == "raise" else (Exception,)
        self.study_.optimize(
            objective,
            n_trials=self.n_trials,
            timeout=self.timeout,
            n_jobs=self.n_jobs,
            catch=catch,
            show_progress_bar=bool(self.verbose) and self.n_trials is not None,
        )
        error, self._space_error = self._space_error, None
        if error is not None:
            raise error

    def _draw(self, trial: optuna.Trial) -> Any:
        """``space(trial)``; its own errors say that they come from the space."""
        try:
            return self.space(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            if is_space_change(exc):
                raise
            raise ValueError(
                f"`space` raised {type(exc).__name__}: {exc} (trial {trial.number}, values "
                f"drawn so far: {trial.params})."
            ) from exc

    def _set_best(self, objectives: list[str]) -> None:
        complete = self.study_.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        errors, self._errors = self._errors, []
        if not complete and errors:
            raise errors[-1]  # every trial failed, most likely for the same reason: show it
        if not complete:
            raise RuntimeError(
                f"No trial of study {self.study_.study_name!r} completed; states: "
                f"{pd.Series([t.state.name for t in self.study_.trials]).value_counts().to_dict()}."
                " Look at `study_.trials` for the errors (error_score='raise' re-raises them)."
            )
        if len(objectives) == 1:
            self.best_trial_ = self.study_.best_trial
        else:
            self.pareto_front_ = pareto_frame(self.study_, objectives)
            best = int(self.pareto_front_["trial"].iloc[0])
            self.best_trial_ = self.study_.trials[best]
        self.best_score_ = float(self.best_trial_.values[0])
        self.best_params_ = replay_space(self.space, self.best_trial_)

    # ------------------------------------------------------------------ helpers
    def _is_classifier(self, y: Any) -> bool:
        if self.estimator is not None:
            return is_classifier(self.estimator)
        return y is not None and type_of_target(y) in ("binary", "multiclass")

    def trials_dataframe(self) -> pd.DataFrame:
        """The study's trials as a pandas DataFrame (see :meth:`optuna.Study.trials_dataframe`)."""
        check_is_fitted(self, "study_")
        return self.study_.trials_dataframe()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.estimator is not None:
            sub = self.estimator.__sklearn_tags__()
            tags.estimator_type = sub.estimator_type
            tags.input_tags.sparse = sub.input_tags.sparse
            tags.input_tags.pairwise = sub.input_tags.pairwise
        return tags

    # ------------------------------------------------------------------ delegation
    def _has(name: str):  # noqa: N805 - decorator factory used in the class body
        def check(self) -> bool:
            if hasattr(self, "best_estimator_"):
                return hasattr(self.best_estimator_, name)
            return self.estimator is None or hasattr(self.estimator, name)

        return check

    @available_if(_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict with ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X)

    @available_if(_has("predict_proba"))
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities from ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X)

    @available_if(_has("decision_function"))
    def decision_function(self, X: Any) -> np.ndarray:
        """Decision function of ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X)

    @available_if(_has("transform"))
    def transform(self, X: Any) -> Any:
        """Transform with ``best_estimator_``."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.transform(X)

    def score(self, X: Any, y: Any) -> float:
        """Score of ``best_estimator_`` with ``scoring``."""
        check_is_fitted(self, "best_estimator_")
        scorer = check_scoring(self.best_estimator_, scoring=self.scoring)
        return float(scorer(self.best_estimator_, X, y))

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.classes_

    del _has
