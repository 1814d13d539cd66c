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
           "stored_distributions", "space_changed_error", "SpaceChange", "describe_distribution",
           "space_changes", "check_space", "seed_from", "ReportEpochs", "count_params",
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
    space: Callable | None = None,
) -> optuna.Study:
    """Create, or load to resume, a study; defaults chosen here only.

    A ``storage`` given as a URL string is opened as the ``moensemble tune`` workers open
    it (:func:`moensemble.search.storage.open_storage`: heartbeats and retries of dead
    trials on databases), and the trials a dead process left RUNNING are failed and queued
    again (:func:`moensemble.search.storage.recover_trials`). A storage object is used as
    given. With a ``space``, a resumed study whose trials were drawn from another space is
    refused (:func:`check_space`) before anything is written to it.
    """
    if study is not None:
        found = [d.name.lower() for d in study.directions]
        if found != directions:
            raise ValueError(
                f"`study` optimises directions {found} but this search needs {directions}."
            )
        if space is not None:
            check_space(study, space, advice="pass another `study`")
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
    if space is not None:
        check_space(created, space)
    if isinstance(storage, str):
        recover_trials(created)
    return created



# Optuna's refusals of a parameter drawn from another distribution than the study holds.
_INCOMPATIBLE = ("does not support dynamic value space", "different log configuration",
                 "different distribution kind")


def is_space_change(exc: BaseException) -> bool:
    """Whether ``exc`` is Optuna refusing a parameter's distribution (other choices, ``log``
    or kind than the study holds for that name)."""
    return isinstance(exc, ValueError) and any(text in str(exc) for text in _INCOMPATIBLE)


def stored_choices(study: optuna.Study) -> dict[str, tuple]:
    """The choices of each categorical parameter in the study's trials."""
    return {name: tuple(dist.choices) for name, dist in stored_distributions(study).items()
            if isinstance(dist, optuna.distributions.CategoricalDistribution)}


def stored_distributions(study: optuna.Study) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each parameter's distribution in the study's trials (the earliest trial's)."""
    found: dict[str, optuna.distributions.BaseDistribution] = {}
    for trial in study.get_trials(deepcopy=False):
        for name, dist in trial.distributions.items():
            found.setdefault(name, dist)
    return found


def space_changed_error(study: optuna.Study, what: str) -> ValueError:
    """A clear error for Optuna refusing, during a trial, a parameter's distribution.

    The fallback for what :func:`check_space` cannot see before the first trial: a
    parameter name that a branch no stored trial went through draws from another
    distribution than the study holds for it.
    """
    stored = "; ".join(f"{name!r}: {describe_distribution(dist)}" for name, dist in
                       sorted(stored_distributions(study).items()))
    return ValueError(
        f"The {what} asks for a parameter with another distribution (choices, log or kind) "
        f"than study {study.study_name!r} (`study_name`) holds for that name, which Optuna "
        f"refuses; the study holds {stored or 'no parameter'}. Draw each parameter name from "
        "one distribution throughout the space (the study's, to resume it), or give a new "
        "`study_name`."
    )


# --------------------------------------------------------------------------- resuming a space
@dataclass(frozen=True)
class SpaceChange:
    """One parameter whose distribution differs between a stored trial and the space now.

    ``stored`` is None for a parameter the space now adds, ``now`` None for one it no
    longer asks for.
    """

    name: str
    trial: int
    stored: optuna.distributions.BaseDistribution | None
    now: optuna.distributions.BaseDistribution | None

    def __str__(self) -> str:
        if self.stored is None:
            return f"parameter {self.name!r} is new ({describe_distribution(self.now)})"
        if self.now is None:
            return (f"parameter {self.name!r} is no longer asked for (trial {self.trial} drew "
                    f"it from {describe_distribution(self.stored)})")
        return (f"parameter {self.name!r} changed from {describe_distribution(self.stored)} "
                f"(trial {self.trial}) to {describe_distribution(self.now)}")


def describe_distribution(dist: optuna.distributions.BaseDistribution) -> str:
    """``float in [0.001, 100.0], log``, ``int in [1, 9], step 2``, ``categorical ['a', 'b']``."""
    distributions = optuna.distributions
    if isinstance(dist, distributions.CategoricalDistribution):
        return f"categorical {list(dist.choices)}"
    if isinstance(dist, distributions.FloatDistribution | distributions.IntDistribution):
        kind = "float" if isinstance(dist, distributions.FloatDistribution) else "int"
        text = f"{kind} in [{dist.low}, {dist.high}]"
        if dist.log:
            text += ", log"
        if dist.step is not None and not (kind == "int" and dist.step == 1):
            text += f", step {dist.step}"
        return text
    return repr(dist)


class _ReplayTrial(optuna.trial.FixedTrial):
    """Replays a stored trial's values through a space, recording what the space asks for.

    A parameter the trial does not hold gets a placeholder (the low end, the first choice),
    so that the rest of the space still runs.
    """

    def _suggest(self, name: str, distribution: optuna.distributions.BaseDistribution) -> Any:
        self._distributions[name] = distribution
        if name in self._params:
            value = self._params[name]
        elif isinstance(distribution, optuna.distributions.CategoricalDistribution):
            value = distribution.choices[0]
        else:
            value = distribution.low
        self._suggested_params[name] = value
        return value


def space_changes(study: optuna.Study, space: Callable) -> list[SpaceChange]:
    """How ``space`` differs from the space the study's finished trials were drawn from.

    Each finished trial's values are replayed through ``space`` (so conditional parameters
    and ranges that depend on earlier values are compared trial by trial), and every
    distribution it asks for is compared with the stored one: bounds, ``log``, ``step``, the
    kind (float, int, categorical) and the choices in their order. Complete trials must ask
    for exactly the stored parameters (none added, none gone); pruned and failed trials may
    have stopped before their last parameter, so only those they hold are compared. A
    space that raises on a replay is compared up to where it raised.

    Returns
    -------
    changes : list of SpaceChange
        At most one per parameter (the earliest trial that shows it), in trial order.
    """
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                optuna.trial.TrialState.FAIL)
    changes: dict[str, SpaceChange] = {}
    for trial in sorted(study.get_trials(deepcopy=False, states=finished),
                        key=lambda t: t.number):
        if not trial.distributions:
            continue
        replay = _ReplayTrial(dict(trial.params), number=trial.number)
        complete = trial.state == optuna.trial.TrialState.COMPLETE
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a stored value outside the new range
            try:
                space(replay)
            except Exception:  # the space's own error shows in a real trial
                complete = False
        asked = replay._distributions
        for name in sorted(set(asked) | set(trial.distributions)):
            stored, now = trial.distributions.get(name), asked.get(name)
            if name in changes or (not complete and (stored is None or now is None)):
                continue
            if stored != now:
                changes[name] = SpaceChange(name, trial.number, stored, now)
    return list(changes.values())


def check_space(
    study: optuna.Study,
    space: Callable,
    *,
    what: str = "search space",
    advice: str = "give a new `study_name` to start a new study",
) -> None:
    """Refuse to resume ``study`` with a ``space`` other than its trials were drawn from.

    Optuna would fail every new trial (other choices, ``log`` or kind) or run them in the
    new ranges while the best trial keeps values outside them. Call it before the first
    new trial; see :func:`space_changes` for what is compared.

    Raises
    ------
    ValueError
        Naming each changed parameter, from what to what, and how to proceed
        (``advice``).
    """
    changes = space_changes(study, space)
    if not changes:
        return
    raise ValueError(
        f"The {what} differs from the one study {study.study_name!r} was searched with, "
        f"which Optuna cannot resume: {'; '.join(str(c) for c in changes)}. Resume with the "
        f"study's space, or {advice}."
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
