"""Trial machinery shared by :class:`~moensemble.search.SearchCV` and the AutoML estimators.

Creating or resuming a study, the per-trial cross-validation (on the fold engine,
:func:`moensemble.folds.evaluate_folds`), the skorch callback that reports epochs to the
trial, cost measures, replaying a trial's space, and quiet logging.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from numbers import Integral
from typing import Any

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils import check_random_state

from moensemble.folds import SkorchCallback, accepts_callbacks, evaluate_folds
from moensemble.search.storage import open_storage, recover_trials

__all__ = ["COSTS", "quiet_optuna", "make_study", "is_space_change", "stored_choices",
           "space_changed_error", "seed_from", "ReportEpochs", "count_params",
           "predict_latency", "Evaluation", "cross_validate_trial", "build_estimator",
           "directions_for", "pareto_frame", "replay_space", "check_objectives"]

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
    it (:func:`moensemble.search.storage.open_storage`: heartbeats and retries of dead
    trials on databases), and the trials a dead process left RUNNING are failed and queued
    again (:func:`moensemble.search.storage.recover_trials`). A storage object is used as
    given.
    """
    if study is not None:
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            raise ValueError(
                f"`study` optimises directions {found} but this search needs {directions}."
            )
        return study
    seed = seed_from(random_state)
    sampler = sampler or optuna.samplers.TPESampler(seed=seed)
    pruner = pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2)
    opened = open_storage(storage)  # its own clear error for a URL it cannot open
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
        recover_trials(created)
    return created



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


def seed_from(random_state: Any) -> int | None:
    """An int seed (or None) from an int, a RandomState or None."""
    if random_state is None or isinstance(random_state, Integral):
        return random_state
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# --------------------------------------------------------------------------- epochs to the trial
# Trials are looked up by a token so that cloning or deep-copying an estimator
# that holds the callbacks never copies the trial (and its storage).
_ACTIVE_TRIALS: dict[str, optuna.Trial] = {}
_ACTIVE_LOCK = threading.Lock()


class ReportEpochs(SkorchCallback):
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
@dataclass
class Evaluation:
    """What one trial measured over its folds (``oof`` only with ``keep_oof=True``)."""

    fold_scores: list[float] = field(default_factory=list)
    fold_times: list[float] = field(default_factory=list)
    costs: dict[str, float] = field(default_factory=dict)
    oof: np.ndarray | None = None

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
    keep_oof: bool = False,
) -> Evaluation:
    """Fit and score ``estimator`` on each fold; report to ``trial`` for pruning.

    Estimators with a skorch ``callbacks`` parameter report their per-epoch loss
    on the first fold (``report_epochs``), and stop training when the fold's
    share of ``deadline`` is used up. Others report the running mean score after
    each fold (``report_folds``). For estimators that cannot be stopped, a fold
    predicted to end after ``deadline`` (from the slowest fold so far, or
    ``fold_estimate`` before the first) raises
    :class:`~moensemble.folds.TrialOutOfTime` before it starts. ``keep_oof`` keeps
    the out-of-fold predictions (see :func:`moensemble.folds.evaluate_folds`).
    """
    measured: dict[str, float] = {}
    token = uuid.uuid4().hex
    with _ACTIVE_LOCK:
        _ACTIVE_TRIALS[token] = trial

    def callbacks(k: int) -> list:
        return [ReportEpochs(token)] if report_epochs and k == 0 else []

    def after_fold(k: int, model, X_test, y_test, result) -> None:
        if k == 0:
            if "n_params" in costs:
                measured["n_params"] = float(count_params(model))
            if "latency" in costs:
                measured["latency"] = predict_latency(model, X_test)
        last = k == len(folds) - 1  # pruning after the last fold would save nothing
        if report_folds and not last and not accepts_callbacks(model):
            trial.report(result.score, k)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after fold {k}")

    try:
        folded = evaluate_folds(
            estimator, X, y, folds, scoring=scorer, method="auto" if keep_oof else None,
            deadline=deadline, fold_estimate=fold_estimate, fold_callbacks=callbacks,
            on_fold_end=after_fold,
        )
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE_TRIALS.pop(token, None)
    result = Evaluation(fold_scores=folded.fold_scores, fold_times=folded.fit_times,
                        costs=measured, oof=folded.oof)
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


def replay_space(space: Callable, trial: optuna.trial.FrozenTrial) -> Any:
    """Run ``space`` on a trial's recorded values to get the estimator parameters back."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return space(optuna.trial.FixedTrial(trial.params, number=trial.number))


def check_objectives(objectives: Sequence[str]) -> list[str]:
    objectives = list(objectives)
    if not objectives or objectives[0] != "score" or any(o not in COSTS for o in objectives[1:]):
        raise ValueError(
            f"`objectives` must be ('score',) or ('score', cost) with cost in {list(COSTS)}; "
            f"got {tuple(objectives)!r}."
        )
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"`objectives` has duplicates: {tuple(objectives)!r}.")
    return objectives
