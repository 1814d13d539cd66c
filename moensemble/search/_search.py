"""Optuna search over any scikit-learn / moensemble estimator with a define-by-run space.

The pieces shared with the AutoML estimators live here too: opening a storage,
the per-trial cross-validation loop, the skorch callbacks that report epochs to
the trial and stop training at a deadline, cost measures, and quiet logging.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, MetaEstimatorMixin, _fit_context, clone, is_classifier
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import check_is_fitted

__all__ = ["SearchCV"]

#: Cost measures usable as a second objective, all minimised.
COSTS = ("n_params", "latency")


# --------------------------------------------------------------------------- logging
@contextlib.contextmanager
def quiet_optuna(verbose: int) -> Iterator[None]:
    """Set Optuna's verbosity for the duration of a fit, then restore it."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO if verbose > 1 else optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


# --------------------------------------------------------------------------- storage
def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not an SQLAlchemy URL (journal:, a typo): mask by pattern
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def open_storage(storage: Any) -> optuna.storages.BaseStorage | None:
    """Open ``storage``: None (in memory), a storage object, an RDB URL or ``journal:<path>``.

    ``journal:<path>`` (or ``journal:///abs/path``) opens a
    :class:`optuna.storages.JournalStorage` on a file, which several processes on
    one machine can share; an SQLAlchemy URL (``sqlite:///search.db``,
    ``postgresql://user:pw@host/db``) opens an :class:`optuna.storages.RDBStorage`.

    Raises
    ------
    ValueError
        When the storage cannot be opened; the message names the URL with its
        password masked.
    """
    if storage is None or isinstance(storage, optuna.storages.BaseStorage):
        return storage
    url = str(storage)
    try:
        if url.startswith("journal:"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            path = re.sub(r"^journal:(//)?", "", url)
            if not path:
                raise ValueError("no file path after 'journal:'")
            return JournalStorage(JournalFileBackend(path))
        return optuna.storages.RDBStorage(url)
    except Exception as exc:
        secret = _password(url)
        message = f"{type(exc).__name__}: {exc}"
        if secret:
            message = message.replace(secret, "***")
        raise ValueError(
            f"Could not open the Optuna storage {mask_url(url)!r} (`storage`): {message}"
        ) from None


def _password(url: str) -> str | None:
    match = re.search(r"://[^:/@]*:([^@]*)@", url)
    return match.group(1) if match and match.group(1) else None


def make_study(
    *,
    study: optuna.Study | None,
    storage: Any,
    study_name: str | None,
    sampler: optuna.samplers.BaseSampler | None,
    pruner: optuna.pruners.BasePruner | None,
    directions: list[str],
    random_state: Any,
) -> optuna.Study:
    """Create, or load to resume, a study; defaults chosen here only.

    A ``storage`` given as a URL string is opened as the ``moensemble tune`` workers open
    it (:func:`moensemble.tune.open_storage`: heartbeats and retries of dead trials on
    databases), and the trials a dead process left RUNNING are failed and queued again
    (:func:`moensemble.tune.recover_trials`). A storage object is used as given.
    """
    if study is not None:
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            raise ValueError(
                f"`study` optimises directions {found} but this search needs {directions}."
            )
        return study
    seed = _seed(random_state)
    sampler = sampler or optuna.samplers.TPESampler(seed=seed)
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    from moensemble import tune  # not at import time: tune imports this module's helpers

    opened = tune.open_storage(storage)  # its own clear error for a URL it cannot open
    try:
        created = optuna.create_study(
            storage=opened,
            sampler=sampler,
            pruner=pruner,
            study_name=study_name,
            directions=directions,
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. the stored study has other directions
        raise ValueError(f"Cannot resume study {study_name!r}: {exc}") from None
    if isinstance(storage, str):
        tune.recover_trials(created)
    return created


def tag_worker(trial: optuna.Trial) -> None:
    """Store ``host:pid`` on a persisted trial, so that a later run can tell it was orphaned."""
    if not isinstance(trial.study._storage, optuna.storages.InMemoryStorage):
        from moensemble import tune

        trial.set_user_attr(tune.WORKER_ATTR, tune.worker_id())


def is_space_change(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing other choices for a stored categorical parameter."""
    return isinstance(exc, ValueError) and "does not support dynamic value space" in str(exc)


def stored_choices(study: optuna.Study) -> dict[str, tuple]:
    """The choices of each categorical parameter in the study's trials."""
    found: dict[str, tuple] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            if isinstance(dist, optuna.distributions.CategoricalDistribution):
                found.setdefault(name, tuple(dist.choices))
    return found


def space_changed_error(study: optuna.Study, what: str) -> ValueError:
    """A clear error for a resumed study whose space now has other categorical choices."""
    stored = ", ".join(f"{name}: {list(choices)}" for name, choices in
                       sorted(stored_choices(study).items()))
    return ValueError(
        f"The {what} asks for categorical choices other than those stored in study "
        f"{study.study_name!r} (`study_name`), which Optuna cannot resume: the stored study "
        f"uses {stored or 'no categorical parameter'}. Resume it with the same choices (in "
        "the same order), or give a new `study_name`."
    )


def _seed(random_state: Any) -> int | None:
    if random_state is None or isinstance(random_state, Integral):
        return random_state
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# --------------------------------------------------------------------------- skorch callbacks
# Trials are looked up by a token so that cloning or deep-copying an estimator
# that holds the callbacks never copies the trial (and its storage).
_ACTIVE_TRIALS: dict[str, optuna.Trial] = {}
_ACTIVE_LOCK = threading.Lock()


class _CallbackBase:
    """Duck-typed skorch callback (skorch's own base would import torch here)."""

    def initialize(self):
        return self

    def on_train_begin(self, net, **kwargs):
        pass

    def on_train_end(self, net, **kwargs):
        pass

    def on_epoch_begin(self, net, **kwargs):
        pass

    def on_epoch_end(self, net, **kwargs):
        pass

    def on_batch_begin(self, net, **kwargs):
        pass

    def on_batch_end(self, net, **kwargs):
        pass

    def on_grad_computed(self, net, named_parameters, **kwargs):
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def set_params(self, **params: Any):
        for key, value in params.items():
            setattr(self, key, value)
        return self


class ReportEpochs(_CallbackBase):
    """Report ``-valid_loss`` (else ``-train_loss``) after every epoch; prune when told.

    The loss is negated because the studies maximise the score.
    """

    def __init__(self, token: str) -> None:
        self.token = token

    def on_epoch_end(self, net, **kwargs) -> None:
        trial = _ACTIVE_TRIALS.get(self.token)
        if trial is None or not len(net.history):
            return
        row = net.history[-1]
        loss = row.get("valid_loss", row.get("train_loss"))
        if loss is None or not np.isfinite(loss):
            return
        epoch = len(net.history) - 1
        trial.report(-float(loss), epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (loss {loss:.4g})")


class StopAtDeadline(_CallbackBase):
    """Stop training (as skorch's early stopping does) once ``time.monotonic() > deadline``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def on_epoch_end(self, net, **kwargs) -> None:
        # Checked per epoch, not per batch: estimators record epoch statistics in their
        # own epoch-end callbacks and may expect every history row to be complete.
        if time.monotonic() > self.deadline:
            raise KeyboardInterrupt  # skorch ends `fit` cleanly on it


def callback_owner(estimator: BaseEstimator) -> BaseEstimator | None:
    """The estimator, or the last step of a pipeline, that takes skorch ``callbacks``."""
    if "callbacks" in estimator.get_params(deep=False):
        return estimator
    steps = getattr(estimator, "steps", None)
    return callback_owner(steps[-1][1]) if steps else None


def accepts_callbacks(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` (or its final pipeline step) takes skorch callbacks."""
    return callback_owner(estimator) is not None


def with_callbacks(estimator: BaseEstimator, extra: list) -> BaseEstimator:
    """Append ``extra`` to the skorch callbacks of ``estimator`` (or its final step)."""
    owner = callback_owner(estimator)
    if extra and owner is not None:
        existing = list(owner.get_params(deep=False)["callbacks"] or [])
        owner.set_params(callbacks=existing + extra)
    return estimator


# --------------------------------------------------------------------------- costs
def count_params(estimator: Any) -> int:
    """Parameters a row uses at predict time (an estimate outside MoE).

    ``n_active_params_`` when the estimator has it (MoE: the router plus the
    ``top_k`` experts a row goes through); otherwise linear models count
    ``coef_`` and ``intercept_``, trees their nodes, k-NN the stored training
    data, and ensembles the sum over their fitted members.
    """
    if hasattr(estimator, "n_active_params_"):
        return int(estimator.n_active_params_)
    if hasattr(estimator, "steps"):  # Pipeline
        return sum(count_params(step) for _, step in estimator.steps)
    if hasattr(estimator, "tree_"):
        return int(estimator.tree_.node_count)
    if hasattr(estimator, "_fit_X"):  # k-NN keeps its training data
        return int(np.prod(estimator._fit_X.shape))
    total = 0
    for name in ("coef_", "intercept_", "coefs_", "intercepts_", "theta_", "var_"):
        value = getattr(estimator, name, None)
        if isinstance(value, np.ndarray):
            total += value.size
        elif isinstance(value, list):
            total += sum(np.asarray(v).size for v in value)
    for name in ("estimators_", "final_estimator_", "_predictors"):
        members = getattr(estimator, name, None)
        if members is None:
            continue
        if not isinstance(members, list | tuple | np.ndarray):
            members = [members]
        for member in np.ravel(np.asarray(members, dtype=object)):
            if isinstance(member, tuple | list):
                member = member[-1]
            if hasattr(member, "fit") or hasattr(member, "predict"):
                total += count_params(member)
    return total


def predict_latency(estimator: Any, X: Any) -> float:
    """Seconds per row of the estimator's main predict method on ``X``."""
    method = getattr(estimator, "predict_proba", None) or estimator.predict
    start = time.perf_counter()
    method(X)
    return (time.perf_counter() - start) / max(_num_rows(X), 1)


def _num_rows(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


# --------------------------------------------------------------------------- one trial
class TrialOutOfTime(Exception):
    """The trial could not finish its folds before its deadline."""

    def __init__(self, message: str, fold_times: Sequence[float] = ()) -> None:
        super().__init__(message)
        self.fold_times = list(fold_times)


@dataclass
class Evaluation:
    """What one trial measured over its folds."""

    fold_scores: list[float] = field(default_factory=list)
    fold_times: list[float] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores))


def cross_validate_trial(
    trial: optuna.Trial,
    estimator: BaseEstimator,
    X: Any,
    y: Any,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    scorer: Callable,
    *,
    report_epochs: bool,
    report_folds: bool,
    costs: Sequence[str] = (),
    deadline: float | None = None,
    fold_estimate: float = 0.0,
) -> Evaluation:
    """Fit and score ``estimator`` on each fold; report to ``trial`` for pruning.

    Estimators with a skorch ``callbacks`` parameter report their per-epoch loss
    on the first fold (``report_epochs``), and stop training when the fold's
    share of ``deadline`` is used up. Others report the running mean score after
    each fold (``report_folds``). For estimators that cannot be stopped, a fold
    predicted to end after ``deadline`` (from the slowest fold so far, or
    ``fold_estimate`` before the first) raises :class:`TrialOutOfTime` before it
    starts.
    """
    result = Evaluation()
    interruptible = accepts_callbacks(estimator)  # its training stops at the fold deadline
    token = uuid.uuid4().hex
    with _ACTIVE_LOCK:
        _ACTIVE_TRIALS[token] = trial
    start = time.monotonic()
    try:
        for k, (train, test) in enumerate(folds):
            fold_deadline = None
            if deadline is not None:
                now = time.monotonic()
                expected = max(result.fold_times, default=fold_estimate)
                if now >= deadline or (not interruptible and now + expected > deadline):
                    raise TrialOutOfTime(
                        f"{k} of {len(folds)} folds done at the deadline", result.fold_times
                    )
                fold_deadline = start + (deadline - start) * (k + 1) / len(folds)
            model = clone(estimator)
            callbacks: list = []
            if report_epochs and k == 0:
                callbacks.append(ReportEpochs(token))
            if fold_deadline is not None:
                callbacks.append(StopAtDeadline(fold_deadline))
            with_callbacks(model, callbacks)
            X_train, X_test = _safe_indexing(X, train), _safe_indexing(X, test)
            tic = time.perf_counter()
            model.fit(X_train, _safe_indexing(y, train))
            result.fold_times.append(time.perf_counter() - tic)
            result.fold_scores.append(float(scorer(model, X_test, _safe_indexing(y, test))))
            if k == 0:
                if "n_params" in costs:
                    result.costs["n_params"] = float(count_params(model))
                if "latency" in costs:
                    result.costs["latency"] = predict_latency(model, X_test)
            last = k == len(folds) - 1  # pruning after the last fold would save nothing
            if report_folds and not last and not accepts_callbacks(model):
                trial.report(result.score, k)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after fold {k}")
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TRIALS.pop(token, None)
    trial.set_user_attr("fold_scores", result.fold_scores)
    trial.set_user_attr("fit_time", float(np.sum(result.fold_times)))
    trial.set_user_attr("max_fold_time", float(np.max(result.fold_times)))
    for name, value in result.costs.items():
        trial.set_user_attr(name, value)
    return result


def build_estimator(estimator: BaseEstimator | None, proposal: Any) -> BaseEstimator:
    """Turn what a space returned (params dict or estimator) into an unfitted estimator."""
    if isinstance(proposal, dict):
        if estimator is None:
            raise ValueError(
                "The space returned parameters but `estimator` is None; pass an estimator or "
                "let the space return one."
            )
        return clone(estimator).set_params(**proposal)
    if hasattr(proposal, "fit"):
        return proposal
    raise TypeError(
        f"The search space must return a dict of parameters or an estimator; got {proposal!r}."
    )


def directions_for(objectives: Sequence[str]) -> list[str]:
    return ["maximize" if o == "score" else "minimize" for o in objectives]


def pareto_frame(study: optuna.Study, objectives: Sequence[str]) -> pd.DataFrame:
    """One row per Pareto-optimal complete trial, best score first."""
    rows = [
        {"trial": t.number, **dict(zip(objectives, t.values, strict=True)), "params": t.params}
        for t in study.best_trials
    ]
    frame = pd.DataFrame(rows, columns=["trial", *objectives, "params"])
    return frame.sort_values("score", ascending=False, ignore_index=True)


# --------------------------------------------------------------------------- the estimator
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
        ``space(trial) -> estimator``. See :mod:`moensemble.search.spaces`.
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
        finished trials are kept and new ones are added.
    sampler : optuna sampler or None, default=None
        None uses ``TPESampler(seed=random_state)``.
    pruner : optuna pruner or None, default=None
        None uses ``MedianPruner(n_startup_trials=5, n_warmup_steps=2)``.
    n_jobs : int, default=1
        Trials run at once (threads, :meth:`optuna.Study.optimize`).
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
        "n_trials": [Interval(Integral, 1, None, closed="left"), None],
        "timeout": [Interval(Real, 0, None, closed="neither"), None],
        "cv": ["cv_object"],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "study": [HasMethods(["ask", "tell", "optimize"]), None],
        "storage": [str, HasMethods(["create_new_study"]), None],
        "study_name": [str, None],
        "sampler": [HasMethods(["sample_independent"]), None],
        "pruner": [HasMethods(["prune"]), None],
        "n_jobs": [Integral],
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
        objectives = _check_objectives(self.objectives)
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
                model = build_estimator(self.estimator, self.space(trial))
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


def replay_space(space: Callable, trial: optuna.trial.FrozenTrial) -> Any:
    """Run ``space`` on a trial's recorded values to get the estimator parameters back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return space(optuna.trial.FixedTrial(trial.params, number=trial.number))


def _check_objectives(objectives: Sequence[str]) -> list[str]:
    objectives = list(objectives)
    if not objectives or objectives[0] != "score" or any(o not in COSTS for o in objectives[1:]):
        raise ValueError(
            f"`objectives` must be ('score',) or ('score', cost) with cost in {list(COSTS)}; "
            f"got {tuple(objectives)!r}."
        )
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"`objectives` has duplicates: {tuple(objectives)!r}.")
    return objectives
