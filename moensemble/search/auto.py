"""AutoML across the families: one fit searches weighted, stacked and MoE models in a time budget.

One Optuna study holds every trial; its first parameter is the ``family``, and each
family's space (prefixed ``<family>__``) follows, so the sampler learns both which
family and which configuration work. Every trial is scored on the same outer
folds. The ensembles' inner out-of-fold fits go through one shared
``joblib.Memory``, so after the first ensemble trial the bases are never fit
again for the same fold: later ensemble trials only learn a new combiner.

Budget: trials start only while the remaining time (less a reserve for the final
refit, estimated from the best trial's fold times) exceeds the median duration
of the family's finished trials; a trial stops between folds when its next fold
would end past the deadline, and MoE training stops at the deadline through a
skorch callback (MoE trials also report their validation loss per epoch so the
pruner stops bad ones early).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

import numpy as np
import optuna
import pandas as pd
import scipy.sparse as sp
from joblib import Memory
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from moensemble.folds import StopAtDeadline, TrialOutOfTime, callback_owner, with_callbacks
from moensemble.search.spaces import gated_space, moe_space, stacking_space, weighted_space
from moensemble.search.storage import heartbeat, recover_trials, tag_worker
from moensemble.search.trials import (
    COSTS,
    cross_validate_trial,
    directions_for,
    is_space_change,
    make_study,
    quiet_optuna,
    seed_from,
    space_changed_error,
    stored_choices,
)

__all__ = ["AutoClassifier", "AutoRegressor", "Family", "FAMILIES", "SearchContext"]


# --------------------------------------------------------------------------- families
@dataclass
class SearchContext:
    """What a family needs to build its estimator and space for one fit."""

    task: str  # 'classification' | 'regression'
    members: list[tuple[str, BaseEstimator]]
    inner_cv: int
    memory: Any
    n_jobs: int | None
    random_state: int | None
    sparse: bool
    n_samples: int
    n_features: int


@dataclass(frozen=True)
class Family:
    """One family the AutoML estimators search: how to build it and its space.

    Parameters
    ----------
    name : str
        Family name; its Optuna parameters are prefixed ``<name>__``.
    make : callable
        ``make(context) -> estimator`` with the family's fixed settings.
    space : callable
        ``space(trial, context, prefix) -> dict`` of parameters for ``make``'s
        estimator.
    first : dict or callable
        Unprefixed Optuna values of a cheap, sensible first trial, run before the
        sampler takes over (parameters not given are sampled); or
        ``first(context) -> dict``.
    tasks : tuple of str
        Tasks the family supports.
    """

    name: str
    make: Callable[[SearchContext], BaseEstimator]
    space: Callable[[optuna.Trial, SearchContext, str], dict]
    first: dict | Callable[[SearchContext], dict] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("classification", "regression")


def _kind(context: SearchContext) -> str:
    return "Classifier" if context.task == "classification" else "Regressor"


def _ensemble_kwargs(est: BaseEstimator, context: SearchContext) -> BaseEstimator:
    # The fold models of the inner CV are kept as a bag (refit=False) when the ensemble
    # allows it: the bases are then fit only on inner folds, which the memory shares.
    wanted = {"cv": context.inner_cv, "memory": context.memory, "n_jobs": context.n_jobs,
              "refit": False, "random_state": context.random_state}
    known = est.get_params(deep=False)
    return est.set_params(**{k: v for k, v in wanted.items() if k in known})


def _make_weighted(context: SearchContext) -> BaseEstimator:
    from moensemble import ensemble

    cls = getattr(ensemble, f"WeightedEnsemble{_kind(context)}")
    return _ensemble_kwargs(cls(list(context.members)), context)


def _weighted_space(trial: optuna.Trial, context: SearchContext, prefix: str) -> dict:
    return weighted_space(
        trial, context.members, weighting=("greedy", "optimize", "uniform"), prefix=prefix
    )


def _make_stacking(context: SearchContext) -> BaseEstimator:
    from moensemble import ensemble

    cls = getattr(ensemble, f"StackingEnsemble{_kind(context)}")
    return _ensemble_kwargs(cls(list(context.members)), context)


def _stacking_space(trial: optuna.Trial, context: SearchContext, prefix: str) -> dict:
    layers = (1, 2) if "layers" in _make_stacking(context).get_params(deep=False) else 1
    return stacking_space(
        trial,
        task=context.task,
        layers=layers,
        random_state=context.random_state,
        prefix=prefix,
    )


def _make_moe(context: SearchContext) -> BaseEstimator:
    from sklearn.preprocessing import StandardScaler

    from moensemble import moe

    cls = getattr(moe, f"MoE{_kind(context)}")
    # A validation split gives the per-epoch `valid_loss` the pruner reads.
    net = cls(early_stopping=True, n_iter_no_change=8, random_state=context.random_state)
    if context.sparse:
        return Pipeline([("moe", net)])
    return Pipeline([("scale", StandardScaler()), ("moe", net)])


def _moe_space(trial: optuna.Trial, context: SearchContext, prefix: str) -> dict:
    params = moe_space(
        trial, n_experts=(2, 16), expert_width=(16, 128), max_epochs=(10, 80), prefix=prefix
    )
    return {f"moe__{k}": v for k, v in params.items()}


def _make_gated(context: SearchContext) -> BaseEstimator:
    from moensemble import gated

    cls = getattr(gated, f"GatedEnsemble{_kind(context)}")
    est = _ensemble_kwargs(cls(list(context.members)), context)
    known = est.get_params(deep=False)
    return est.set_params(**{k: v for k, v in {"early_stopping": True}.items() if k in known})


def _gated_space(trial: optuna.Trial, context: SearchContext, prefix: str) -> dict:
    return gated_space(trial, n_members=len(context.members), prefix=prefix)


FAMILIES: dict[str, Family] = {
    "weighted": Family(
        "weighted",
        _make_weighted,
        _weighted_space,
        first=lambda context: {
            "weighting": "greedy", "n_iter": 50, **{f"use_{n}": True for n, _ in context.members}
        },
    ),
    "stacking": Family(
        "stacking",
        _make_stacking,
        _stacking_space,
        first={"final_estimator": "linear", "regularization": 1.0, "passthrough": False,
               "layers": 1},
    ),
    "moe": Family(
        "moe",
        _make_moe,
        _moe_space,
        first={"n_experts": 4, "router": "topk", "top_k": 2, "expert_width": 64,
               "expert_depth": 1, "dropout": 0.1, "lr": 3e-3, "batch_size": 64,
               "aux_loss_coef": 1e-2, "max_epochs": 40},
    ),
    # Not searched by default: opt in with families=(..., "gated").
    "gated": Family(
        "gated",
        _make_gated,
        _gated_space,
        first={"router": "topk", "top_k": 1, "router_width": 0, "features": "input",
               "lr": 1e-2, "max_epochs": 40},
    ),
}
"""Registry of the searchable families; adding one is one entry."""


def default_members(task: str, *, sparse: bool, random_state: int | None, non_negative: bool):
    """Fast, diverse base models for the ensembles (dense or sparse input).

    Gradient boosting is left out on purpose: with many classes it costs ten times
    the others per fit, and every ensemble trial pays for ``cv * inner_cv`` fits.
    """
    from sklearn import ensemble as sk_ensemble
    from sklearn import linear_model, naive_bayes, neighbors
    from sklearn.preprocessing import StandardScaler

    def scaled(est: BaseEstimator) -> BaseEstimator:
        return est if sparse else Pipeline([("scale", StandardScaler()), ("model", est)])

    rs = random_state
    if task == "classification":
        members = [
            ("logistic", scaled(linear_model.LogisticRegression(C=10.0 if sparse else 1.0,
                                                                max_iter=1000))),
            ("knn", scaled(neighbors.KNeighborsClassifier(n_neighbors=10, weights="distance"))),
        ]
        if sparse and non_negative:
            members.append(("naive_bayes", naive_bayes.ComplementNB(alpha=0.3)))
        if not sparse:
            members += [
                ("naive_bayes", naive_bayes.GaussianNB()),
                ("random_forest", sk_ensemble.RandomForestClassifier(50, random_state=rs)),
                ("extra_trees", sk_ensemble.ExtraTreesClassifier(50, random_state=rs)),
            ]
        return members
    members = [
        ("ridge", scaled(linear_model.RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        ("knn", scaled(neighbors.KNeighborsRegressor(n_neighbors=10, weights="distance"))),
    ]
    if not sparse:
        members += [
            ("random_forest", sk_ensemble.RandomForestRegressor(50, random_state=rs)),
            ("extra_trees", sk_ensemble.ExtraTreesRegressor(50, random_state=rs)),
        ]
    return members


# --------------------------------------------------------------------------- the estimators
class _BaseAuto(BaseEstimator):
    _parameter_constraints: dict = {
        "time_budget": [Interval(Real, 0, None, closed="neither")],
        "families": [list, tuple],
        "base_estimators": [list, None],
        "cv": ["cv_object"],
        "inner_cv": [Interval(Integral, 2, None, closed="left")],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "max_trials": [Interval(Integral, 1, None, closed="left"), None],
        "memory": [None, str, HasMethods(["cache"])],
        "n_jobs": [Integral, None],
        "storage": [str, HasMethods(["create_new_study"]), None],
        "study_name": [str, None],
        "sampler": [HasMethods(["sample_independent"]), None],
        "pruner": [HasMethods(["prune"]), None],
        "multi_objective": ["boolean"],
        "cost": [StrOptions(set(COSTS))],
        "error_score": [StrOptions({"raise"}), Real],
        "progress_bar": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _task: str

    def __init__(
        self,
        time_budget: float = 60.0,
        *,
        families: Sequence[str | Family] = ("weighted", "stacking", "moe"),
        base_estimators: list | None = None,
        cv: Any = 5,
        inner_cv: int = 3,
        scoring: Any = None,
        max_trials: int | None = None,
        memory: Any = None,
        n_jobs: int | None = None,
        storage: Any = None,
        study_name: str | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
        multi_objective: bool = False,
        cost: str = "n_params",
        error_score: Any = np.nan,
        progress_bar: bool = True,
        random_state: Any = None,
        verbose: int = 0,
    ) -> None:
        self.time_budget = time_budget
        self.families = families
        self.base_estimators = base_estimators
        self.cv = cv
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.max_trials = max_trials
        self.memory = memory
        self.n_jobs = n_jobs
        self.storage = storage
        self.study_name = study_name
        self.sampler = sampler
        self.pruner = pruner
        self.multi_objective = multi_objective
        self.cost = cost
        self.error_score = error_score
        self.progress_bar = progress_bar
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ fit
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X: Any, y: Any) -> _BaseAuto:
        """Search the families within ``time_budget`` seconds, then refit the best model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        start = time.monotonic()
        deadline = start + float(self.time_budget)
        families = self._check_families()
        X, y = self._validate_input(X, y)
        seed = seed_from(self.random_state)
        folds = self._folds(X, y, seed)
        objectives = ["score", self.cost] if self.multi_objective else ["score"]
        memory, tmpdir = self._memory()
        try:
            context = self._context(X, y, memory, seed)
            with quiet_optuna(self.verbose), warnings.catch_warnings():
                if not self.verbose:  # trials' warnings (convergence, ...) are noise here
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", ConvergenceWarning)
                self.study_ = make_study(
                    study=None, storage=self.storage, study_name=self.study_name,
                    sampler=self.sampler, pruner=self.pruner,
                    directions=directions_for(objectives), random_state=seed,
                )
                families = self._resumable_families(families)
                scorer = check_scoring(self, scoring=self.scoring)
                self._search(X, y, folds, scorer, objectives, families, context, deadline)
                self._refit(X, y, families, context, objectives, deadline)
        finally:
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
            for name in ("_fold_times", "_first_folds", "_last_error"):  # search-time state
                self.__dict__.pop(name, None)
        self.fit_time_ = time.monotonic() - start
        return self

    def _check_families(self) -> dict[str, Family]:
        if isinstance(self.families, str) or not len(self.families):
            raise ValueError(
                f"`families` must be a non-empty list of names from {sorted(FAMILIES)} or "
                f"Family objects; got {self.families!r}."
            )
        chosen: dict[str, Family] = {}
        for item in self.families:
            family = item if isinstance(item, Family) else FAMILIES.get(item)
            if family is None:
                raise ValueError(
                    f"Unknown family {item!r} in `families`; known: {sorted(FAMILIES)}."
                )
            if self._task not in family.tasks:
                raise ValueError(f"Family {family.name!r} does not support {self._task}.")
            chosen[family.name] = family
        return chosen

    def _resumable_families(self, families: dict[str, Family]) -> dict[str, Family]:
        """Check ``families`` against a resumed study's; take its order when the set matches.

        Optuna cannot resume a categorical parameter with other choices: say so before any
        trial runs, not with Optuna's error in the middle of the search.
        """
        stored = stored_choices(self.study_).get("family")
        if stored is None:
            return families
        if set(stored) != set(families):
            raise ValueError(
                f"Study {self.study_.study_name!r} (`study_name`) was searched with "
                f"families={list(stored)}; this fit has families={list(families)}. A study "
                "resumes only with the same `families`: give those, or a new `study_name`."
            )
        return {name: families[name] for name in stored}  # the stored order

    def _validate_input(self, X, y):
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=self._task == "regression",
            y_numeric=self._task == "regression",
        )
        if self._task == "classification":
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in y; got only one class: "
                    f"{self.classes_[0]!r}."
                )
        return X, y

    def _folds(self, X, y, seed):
        if isinstance(self.cv, Integral):
            splitter = StratifiedKFold if self._task == "classification" else KFold
            cv = splitter(self.cv, shuffle=True, random_state=seed)
        else:
            cv = check_cv(self.cv, y, classifier=self._task == "classification")
        return list(cv.split(X, y))

    def _memory(self) -> tuple[Any, str | None]:
        if self.memory is not None:
            return self.memory, None
        tmpdir = tempfile.mkdtemp(prefix="moensemble-auto-")
        return Memory(tmpdir, verbose=0).location, tmpdir

    def _context(self, X, y, memory, seed) -> SearchContext:
        sparse = sp.issparse(X)
        if self.base_estimators is not None:
            members = [(n, _seeded(clone(e), seed)) for n, e in self.base_estimators]
        else:
            non_negative = not sparse or X.min() >= 0
            members = default_members(self._task, sparse=sparse, random_state=seed,
                                      non_negative=non_negative)
        return SearchContext(
            task=self._task, members=members, inner_cv=self.inner_cv, memory=memory,
            n_jobs=self.n_jobs, random_state=seed, sparse=sparse,
            n_samples=X.shape[0], n_features=X.shape[1],
        )

    # ------------------------------------------------------------------ search
    def _search(self, X, y, folds, scorer, objectives, families, context, deadline) -> None:
        from tqdm.auto import tqdm

        names = list(families)
        for family in families.values():  # one cheap first trial per family
            values = family.first(context) if callable(family.first) else family.first
            first = {f"{family.name}__{k}": v for k, v in values.items()}
            self.study_.enqueue_trial({"family": family.name, **first}, skip_if_exists=True)
        durations: dict[str, list[float]] = {name: [] for name in names}
        single = len(objectives) == 1
        n_run, skipped = 0, 0
        self._fold_times: dict[int, tuple[str, float]] = {}  # trial -> (family, slowest fold)
        self._last_error: Exception | None = None
        self._first_folds: dict[str, list[float]] = {name: [] for name in names}
        bar = tqdm(total=round(self.time_budget, 1), unit="s", desc=type(self).__name__,
                   disable=not self.progress_bar or None, leave=False)
        started = time.monotonic()
        try:
            while self.max_trials is None or n_run < self.max_trials:
                remaining = deadline - time.monotonic() - self._refit_reserve(len(folds))
                cheapest = min(self._expected_time(name, durations) for name in names)
                if remaining <= 0 or remaining < cheapest or skipped >= 20:
                    break
                trial = self._ask()
                family = families[trial.suggest_categorical("family", names)]
                expected = self._expected_time(family.name, durations)
                if expected > remaining:  # would not fit: skip it without fitting
                    trial.set_user_attr("skipped", "not enough time left")
                    self.study_.tell(trial, state=optuna.trial.TrialState.PRUNED)
                    skipped += 1
                    continue
                tic = time.monotonic()
                if self._best_trial(require=False) is None:
                    # Nothing to refit yet: keep a fold-sized share of the time for the refit.
                    remaining *= len(folds) / (len(folds) + 1)
                try:
                    with heartbeat(self.study_, trial):
                        state, values = self._run_trial(
                            trial, family, context, X, y, folds, scorer, objectives, single,
                            deadline=tic + remaining,
                            fold_estimate=min(self._first_folds[family.name], default=0.0),
                        )
                except BaseException:  # Ctrl-C, error_score='raise': never leave it RUNNING
                    self.study_.tell(trial, state=optuna.trial.TrialState.FAIL)
                    raise
                elapsed = time.monotonic() - tic
                if state == optuna.trial.TrialState.COMPLETE:
                    durations[family.name].append(elapsed)
                trial.set_user_attr("trial_time", elapsed)
                self.study_.tell(trial, values, state=state)
                n_run += 1
                bar.update(round(min(time.monotonic() - started, self.time_budget) - bar.n, 1))
                bar.set_postfix(trials=n_run, best=self._best_so_far())
        except KeyboardInterrupt:  # Ctrl-C: keep what was found and refit the best
            warnings.warn("Search interrupted; refitting the best trial so far.", stacklevel=3)
        finally:
            bar.close()

    def _ask(self) -> optuna.Trial:
        """Ask for a trial as ``Study.optimize`` would: dead workers' trials first failed."""
        recover_trials(self.study_)  # databases: stale heartbeats; journals: dead processes
        with warnings.catch_warnings():  # this loop sends the heartbeats itself
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study_.ask()
        tag_worker(trial)
        return trial

    def _expected_time(self, family: str, durations: dict[str, list[float]]) -> float:
        """Median duration of the family's finished trials; before any, its fastest fold."""
        if durations[family]:
            return float(np.median(durations[family]))
        return min(self._first_folds[family], default=0.0)

    def _run_trial(self, trial, family, context, X, y, folds, scorer, objectives, single,
                   deadline, fold_estimate):
        prefix = f"{family.name}__"
        try:
            model = family.make(context).set_params(**family.space(trial, context, prefix))
            result = cross_validate_trial(
                trial, model, X, y, folds, scorer, report_epochs=single, report_folds=False,
                costs=objectives[1:], deadline=deadline, fold_estimate=fold_estimate,
            )
        except optuna.TrialPruned as exc:
            trial.set_user_attr("pruned", str(exc))
            return optuna.trial.TrialState.PRUNED, None
        except TrialOutOfTime as exc:
            trial.set_user_attr("skipped", str(exc))
            if exc.fold_times:  # a lower bound for the family's next trials
                self._first_folds[family.name].append(exc.fold_times[0])
            return optuna.trial.TrialState.PRUNED, None
        except Exception as exc:
            if is_space_change(exc):  # a resumed study and a changed Family space
                raise space_changed_error(self.study_, f"space of family {family.name!r}") \
                    from exc
            if self.error_score == "raise":
                raise
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            self._last_error = exc
            return optuna.trial.TrialState.FAIL, None
        # Ensembles over the shared OOF cache ("memory") reuse each other's base fits.
        shares_cache = model.get_params(deep=False).get("memory") is context.memory
        group = "cached" if shares_cache else family.name
        self._fold_times[trial.number] = (group, max(result.fold_times))
        self._first_folds[family.name].append(result.fold_times[0])
        values = [result.score] + [result.costs[c] for c in objectives[1:]]
        return optuna.trial.TrialState.COMPLETE, values[0] if single else values

    def _refit_reserve(self, n_folds: int) -> float:
        """Time to keep for the final refit, scaled from a fold to all rows.

        The slowest fold of any trial of the best trial's family, where every ensemble
        over the shared OOF cache counts as one family: a stacking trial that found its
        base fits in the cache (fitted by an earlier weighted trial) is fast, but its
        refit on all rows fits the bases again.
        """
        best = self._best_trial(require=False)
        if best is None or best.number not in self._fold_times:
            return 0.0
        group = self._fold_times[best.number][0]
        slowest = max(t for g, t in self._fold_times.values() if g == group)
        return 1.2 * slowest * n_folds / max(n_folds - 1, 1)

    def _best_trial(self, *, require: bool = True) -> optuna.trial.FrozenTrial | None:
        complete = self.study_.get_trials(
            deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)
        )
        if not complete:
            if require and self._last_error is not None:
                # Every trial failed: the cause is most likely the data, so show it as is.
                raise self._last_error
            if require:
                raise RuntimeError(
                    f"No trial finished within time_budget={self.time_budget}s; raise "
                    "`time_budget` (see `study_.trials` for errors)."
                )
            return None
        return max(complete, key=lambda t: t.values[0])

    def _best_so_far(self) -> str:
        best = self._best_trial(require=False)
        return "-" if best is None else f"{best.params['family']} {best.values[0]:.4f}"

    # ------------------------------------------------------------------ refit
    def _refit(self, X, y, families, context, objectives, deadline) -> None:
        best = self._best_trial()
        family = families[best.params["family"]]
        fixed = optuna.trial.FixedTrial(best.params, number=best.number)
        self.best_params_ = family.space(fixed, context, f"{family.name}__")
        self.best_family_ = family.name
        self.best_score_ = float(best.values[0])
        self.best_trial_ = best
        model = family.make(context).set_params(**self.best_params_)
        target = callback_owner(model)
        if target is not None:  # MoE: never train past the budget
            original = target.get_params(deep=False)["callbacks"]
            with_callbacks(target, [StopAtDeadline(deadline)])
        model.fit(X, y)
        if target is not None:
            target.set_params(callbacks=original)
        if self.memory is None:  # the temporary cache is removed after fit
            for est in [model, *[s for _, s in getattr(model, "steps", [])]]:
                if "memory" in est.get_params(deep=False):
                    est.set_params(memory=None)
        self.best_estimator_ = model
        self.leaderboard_ = self._leaderboard(objectives)
        if len(objectives) > 1:
            front = {t.number for t in self.study_.best_trials}
            self.pareto_front_ = self.leaderboard_[self.leaderboard_["trial"].isin(front)]
            self.pareto_front_ = self.pareto_front_.reset_index(drop=True)

    def _leaderboard(self, objectives) -> pd.DataFrame:
        rows = []
        for t in self.study_.get_trials(deepcopy=False):
            family = t.params.get("family")
            prefix = f"{family}__"
            scores = t.user_attrs.get("fold_scores")
            # A pruned trial's value is its last intermediate value (a loss), not a score.
            complete = t.state == optuna.trial.TrialState.COMPLETE
            row = {
                "trial": t.number,
                "family": family,
                "state": t.state.name,
                "score": t.values[0] if complete else np.nan,
                "score_std": float(np.std(scores)) if scores else np.nan,
                "fit_time": t.user_attrs.get("fit_time", np.nan),
                "trial_time": t.user_attrs.get("trial_time", np.nan),
            }
            for cost in objectives[1:]:
                row[cost] = t.values[1] if complete else np.nan
            row["params"] = {k.removeprefix(prefix): v for k, v in t.params.items()
                             if k != "family"}
            attrs = t.user_attrs
            row["note"] = attrs.get("skipped", attrs.get("pruned", attrs.get("error", "")))
            rows.append(row)
        frame = pd.DataFrame(rows)
        return frame.sort_values("score", ascending=False, na_position="last", ignore_index=True)

    # ------------------------------------------------------------------ delegation
    def _has(name: str):  # noqa: N805 - decorator factory used in the class body
        def check(self) -> bool:
            return not hasattr(self, "best_estimator_") or hasattr(self.best_estimator_, name)

        return check

    @available_if(_has("predict"))
    def predict(self, X: Any) -> np.ndarray:
        """Predict with ``best_estimator_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self, "best_estimator_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self.best_estimator_.predict(X)

    del _has

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.non_deterministic = self.max_trials is None  # the budget decides how many trials
        if self._task == "regression":
            tags.target_tags.multi_output = True
        return tags


def _seeded(estimator: BaseEstimator, seed: int | None) -> BaseEstimator:
    """Give every unset ``random_state`` (nested ones too) the search's seed, for repeatability."""
    if seed is not None:
        unset = {k: seed for k, v in estimator.get_params(deep=True).items()
                 if (k == "random_state" or k.endswith("__random_state")) and v is None}
        estimator.set_params(**unset)
    return estimator


class AutoClassifier(ClassifierMixin, _BaseAuto):
    """AutoML classifier: the best weighted, stacked or MoE model found within a time budget.

    Parameters
    ----------
    time_budget : float, default=60.0
        Seconds for the whole ``fit`` (search and refit), respected within about 10 %.
    families : sequence of str or Family, default=('weighted', 'stacking', 'moe')
        Families to search, names from :data:`FAMILIES` or :class:`Family` objects.
    base_estimators : list of (str, estimator) or None, default=None
        Members of the ensembles (their unset ``random_state`` gets the search's
        seed); None picks fast, diverse scikit-learn models
        (logistic regression, k-NN, naive Bayes, random and extra trees; a
        sparse-friendly subset for sparse input).
    cv : int, cross-validation generator or iterable, default=5
        Outer folds every trial is scored on (an int gives shuffled stratified
        folds seeded by ``random_state``).
    inner_cv : int, default=3
        Folds of the ensembles' own out-of-fold fits.
    scoring : str, callable or None, default=None
        Scorer; None is accuracy.
    max_trials : int or None, default=None
        Stop after this many trials even with time left.
    memory : str, joblib.Memory or None, default=None
        Cache of the ensembles' base fits, shared by all ensemble trials; None
        uses a temporary directory removed after ``fit``.
    n_jobs : int or None, default=None
        Parallel jobs of the ensembles' out-of-fold fits.
    storage, study_name : str or None
        Persist and resume the study (see :class:`SearchCV`).
    sampler, pruner : optuna objects or None
        Defaults: ``TPESampler(seed=random_state)``, ``MedianPruner``.
    multi_objective : bool, default=False
        Also minimise ``cost``; the Pareto front is ``pareto_front_``.
    cost : {'n_params', 'latency'}, default='n_params'
        Parameters a row uses at predict time, or predict seconds per row.
    error_score : 'raise' or float, default=nan
        'raise' re-raises a failing trial; otherwise it is recorded as failed.
    progress_bar : bool, default=True
        A tqdm bar (shown on terminals only).
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        2 and above shows Optuna's own logs.

    Attributes
    ----------
    best_estimator_ : estimator
        The best configuration refit on all data.
    best_family_ : str
    best_params_ : dict
        Parameters of ``best_estimator_`` set by the search.
    best_score_ : float
        Mean outer-CV score of the best trial.
    leaderboard_ : pandas.DataFrame
        One row per trial: family, state, score, score_std, fit_time,
        trial_time, (cost), params, note; best first.
    pareto_front_ : pandas.DataFrame
        With ``multi_objective``: the leaderboard rows on the Pareto front.
    study_ : optuna.Study
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    fit_time_ : float
        Seconds the fit took.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from moensemble import AutoClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> auto = AutoClassifier(time_budget=20, families=("weighted",), cv=3, max_trials=3,
    ...                       progress_bar=False, random_state=0).fit(X, y)
    >>> auto.score(X, y) > 0.9
    True
    """

    _task = "classification"

    def _has_proba(self) -> bool:
        return not hasattr(self, "best_estimator_") or hasattr(self.best_estimator_,
                                                               "predict_proba")

    @available_if(_has_proba)
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of ``best_estimator_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self, "best_estimator_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self.best_estimator_.predict_proba(X)


class AutoRegressor(RegressorMixin, _BaseAuto):
    """AutoML regressor: the best weighted, stacked or MoE model found within a time budget.

    Same parameters and attributes as :class:`AutoClassifier` (less ``classes_``);
    the default scoring is R², the default members ridge, k-NN and forests.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from moensemble import AutoRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> auto = AutoRegressor(time_budget=20, families=("stacking",), cv=3, max_trials=3,
    ...                      progress_bar=False, random_state=0).fit(X, y)
    >>> auto.best_family_
    'stacking'
    """

    _task = "regression"
