"""AutoML across the families: a portfolio, an Optuna search, one ensemble over every trial.

One ``fit``, within ``time_budget`` seconds:

1. fixed outer folds for the whole search;
2. the portfolio (:func:`~moensemble.search.portfolio.default_portfolio`, or
   ``base_estimators``): sound default models, cheapest first, each fitted once per outer
   fold, its fold models kept as a bag and its out-of-fold predictions kept as float32
   files memory-mapped from a temporary folder (removed at the end of ``fit``);
3. Optuna's sampler over the families' spaces with the time left (one study: its first
   parameter is the ``family``); level-2 families (``weighted``, ``stacking``) are fitted on
   the out-of-fold predictions that exist, so no member is ever fitted twice on a fold;
4. the final model: greedy ensemble selection with replacement (Caruana et al. 2004) over
   the out-of-fold predictions of every finished trial, across families. Its members are the
   trials' bags; ``refit_full=True`` refits them on all rows for a cheaper predict.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import optuna
import scipy.sparse as sp
from joblib import Memory
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions

from moensemble._validation import IntInterval
from moensemble.search import bagging as _bagging
from moensemble.search.families import (
    DEFAULT_FAMILIES,
    FAMILIES,
    Family,
    SearchContext,
    default_members,
)
from moensemble.search.final import FinalModel
from moensemble.search.inputs import InputsMixin
from moensemble.search.portfolio import default_portfolio, native_entries
from moensemble.search.runner import Runner
from moensemble.search.trials import (
    COSTS,
    directions_for,
    make_study,
    quiet_optuna,
    seed_from,
    stored_choices,
)

__all__ = ["AutoClassifier", "AutoRegressor", "Family", "FAMILIES", "SearchContext"]

#: Share of the budget kept for the final selection (and, with ``refit_full``, the refits).
RESERVE = 0.02
RESERVE_REFIT = 0.2
#: Share of the budget the portfolio leaves to the search's first (level-2) trials.
PORTFOLIO_KEEP = 0.05


class _BaseAuto(InputsMixin, FinalModel, BaseEstimator):
    _parameter_constraints: dict = {
        "time_budget": [Interval(Real, 0, None, closed="neither")],
        "families": [list, tuple],
        "base_estimators": [list, None],
        "cv": ["cv_object", StrOptions({"auto"})],
        "n_repeats": [IntInterval(1, None, closed="left"), StrOptions({"auto"})],
        "inner_cv": [IntInterval(2, None, closed="left")],
        "scoring": [StrOptions(set(get_scorer_names())), callable, None],
        "max_trials": [IntInterval(1, None, closed="left"), None],
        "ensemble_size": [IntInterval(1, None, closed="left")],
        "ensemble_metric": [StrOptions(set(get_scorer_names()) | {"log_loss", "squared_error"}),
                            callable, None],
        "ensemble_bags": [IntInterval(1, None, closed="left")],
        "blend_guard": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"}), None],
        "guard_estimate": [StrOptions({"out_of_bag", "in_sample"})],
        "single_choice": [StrOptions({"auto", "best", "one_se"})],
        "temperature_scaling": ["boolean"],
        "stack_levels": [IntInterval(0, 2, closed="both")],
        "stack_passthrough": ["boolean"],
        "max_level2_share": [Interval(Real, 0, 1, closed="both"), None],
        "refit_full": ["boolean", StrOptions({"auto"})],
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
        families: Sequence[str | Family] = DEFAULT_FAMILIES,
        base_estimators: list | None = None,
        cv: Any = 5,
        n_repeats: int | str = 1,
        inner_cv: int = 3,
        scoring: Any = None,
        max_trials: int | None = None,
        ensemble_size: int = 25,
        ensemble_metric: Any = None,
        ensemble_bags: int = 20,
        blend_guard: float | str | None = "auto",
        guard_estimate: str = "out_of_bag",
        single_choice: str = "auto",
        temperature_scaling: bool = True,
        stack_levels: int = 1,
        stack_passthrough: bool = False,
        max_level2_share: float | None = None,
        refit_full: bool | str = False,
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
        self.n_repeats = n_repeats
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.max_trials = max_trials
        self.ensemble_size = ensemble_size
        self.ensemble_metric = ensemble_metric
        self.ensemble_bags = ensemble_bags
        self.blend_guard = blend_guard
        self.guard_estimate = guard_estimate
        self.single_choice = single_choice
        self.temperature_scaling = temperature_scaling
        self.stack_levels = stack_levels
        self.stack_passthrough = stack_passthrough
        self.max_level2_share = max_level2_share
        self.refit_full = refit_full
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
        """Run the portfolio and the search within ``time_budget``; ensemble every trial.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self
        """
        start = _bagging.clock()
        budget = float(self.time_budget)
        deadline = start + budget
        families = self._check_families()
        self._selection_metric()  # its errors before any trial runs
        X, y = self._validate_input(X, y)
        seed = seed_from(self.random_state)
        folds = self._folds(X, y, seed)
        self.n_splits_ = len(folds) // self.n_repeats_
        objectives = ["score", self.cost] if self.multi_objective else ["score"]
        memory, tmpdir = self._memory()
        oof_dir = tempfile.mkdtemp(prefix="moensemble-oof-")  # the trials' OOF, memory-mapped
        try:
            context = self._context(X, y, memory, seed)
            families = {n: f for n, f in families.items()
                        if (f.available is None or f.available(context))
                        and (f.level == 1 or self.stack_levels > 0)}
            with quiet_optuna(self.verbose), warnings.catch_warnings():
                if not self.verbose:  # trials' warnings (convergence, ...) are noise here
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    warnings.simplefilter("ignore", UserWarning)
                self.study_ = make_study(
                    study=None, storage=self.storage, study_name=self.study_name,
                    sampler=self.sampler, pruner=self.pruner,
                    directions=directions_for(objectives), random_state=seed,
                )
                families = self._resumable_families(families)
                runner = self._runner(X, y, folds, context, families, objectives, deadline,
                                      _bagging.OOFStore(oof_dir))
                self._search(runner, context, families)
                runner.deadline = deadline  # the reserve is for what follows
                notes = self._finish(runner, X, y, objectives)
            for note in notes:  # outside the filters above: these are for the user
                warnings.warn(note, UserWarning, stacklevel=3)
        finally:
            self._X_native = None  # the data is no part of the fitted model
            shutil.rmtree(oof_dir, ignore_errors=True)
            if tmpdir is not None:
                shutil.rmtree(tmpdir, ignore_errors=True)
        self.fit_time_ = _bagging.clock() - start
        return self

    def _runner(self, X, y, folds, context, families, objectives, deadline,
                store) -> Runner:
        budget = float(self.time_budget)
        reserve = (RESERVE_REFIT if self.refit_full is True else RESERVE) * budget
        if self._task == "classification":
            target = np.searchsorted(self.classes_, y)
            n_columns = len(self.classes_)
        else:
            target = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
            n_columns = target.shape[1]
        return Runner(
            X=X, y=y, target=target, folds=folds,
            classes=self.classes_ if self._task == "classification" else None,
            n_columns=n_columns, scorer=check_scoring(self, scoring=self.scoring),
            context=context, deadline=deadline - reserve, budget=budget,
            error_score=self.error_score, max_trials=self.max_trials, study=self.study_,
            families=families, objectives=objectives, X_native=self._X_native, store=store,
            max_level2_share=self.max_level2_share, n_repeats=self.n_repeats_,
        )

    def _search(self, runner: Runner, context: SearchContext, families) -> None:
        from tqdm.auto import tqdm

        bar = tqdm(total=None, unit="trial", desc=type(self).__name__,
                   disable=not self.progress_bar or None, leave=False)
        try:
            level2 = any(f.level == 2 for f in families.values())
            runner.run_portfolio(self._portfolio(context),
                                 keep=PORTFOLIO_KEEP * runner.budget if level2 else 0.0,
                                 native=native_entries(self._task))
            for family in families.values():  # one first trial per family that has one
                values = family.first(context) if callable(family.first) else family.first
                if values:
                    first = {f"{family.name}__{k}": v for k, v in values.items()}
                    self.study_.enqueue_trial({"family": family.name, **first},
                                              skip_if_exists=True)
            if families:
                runner.run_search(bar)
        except KeyboardInterrupt:  # Ctrl-C: keep what was found and ensemble it
            warnings.warn("Search interrupted; ensembling the trials so far.", stacklevel=3)
        finally:
            bar.close()

    def _portfolio(self, context: SearchContext) -> list[tuple[str, BaseEstimator]]:
        if self.base_estimators is not None:
            return [(n, _seeded(clone(e), context.random_state)) for n, e in
                    self.base_estimators]
        return default_portfolio(self._task, sparse=context.sparse,
                                 non_negative=context.non_negative,
                                 random_state=context.random_state, n_jobs=self.n_jobs,
                                 native=self._X_native is not None)

    def _check_families(self) -> dict[str, Family]:
        if isinstance(self.families, str) or not isinstance(self.families, Sequence):
            raise ValueError(
                f"`families` must be a list of names from {sorted(FAMILIES)} or Family "
                f"objects; got {self.families!r}."
            )
        if not len(self.families) and self.base_estimators == []:
            raise ValueError(
                "`families` is empty and `base_estimators` is []: nothing to search. Give "
                f"families from {sorted(FAMILIES)} or base estimators."
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

    def _memory(self) -> tuple[Any, str | None]:
        if self.memory is not None:
            return self.memory, None
        tmpdir = tempfile.mkdtemp(prefix="moensemble-auto-")
        return Memory(tmpdir, verbose=0).location, tmpdir

    def _context(self, X, y, memory, seed) -> SearchContext:
        sparse = sp.issparse(X)
        non_negative = bool((X.data if sparse else np.asarray(X)).min(initial=0) >= 0)
        members = default_members(self._task, sparse=sparse, random_state=seed,
                                  non_negative=non_negative)
        return SearchContext(
            task=self._task, members=members, inner_cv=self.inner_cv, memory=memory,
            n_jobs=self.n_jobs, random_state=seed, sparse=sparse,
            n_samples=X.shape[0], n_features=X.shape[1], non_negative=non_negative,
            stack_levels=self.stack_levels, stack_passthrough=self.stack_passthrough,
        )

    def predict(self, X: Any) -> np.ndarray:
        """Predict with the final ensemble (``best_estimator_``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        X = self._transform(X)
        return self.best_estimator_.predict(X)

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
    """AutoML classifier: one ensemble over every model its search trained.

    Parameters
    ----------
    time_budget : float, default=60.0
        Seconds for the whole ``fit`` (portfolio, search and final ensemble), respected
        within about 10 % (a fit in progress runs to its end; one timed on a subsample to
        outlast the budget is skipped).
    families : sequence of str or Family, default=DEFAULT_FAMILIES
        Families Optuna's sampler searches after the portfolio, names from
        :data:`FAMILIES` or :class:`Family` objects; those that cannot run here (library
        not installed, sparse input) are left out.
    base_estimators : list of (str, estimator) or None, default=None
        The portfolio, fitted in this order before the search; None is
        :func:`~moensemble.search.portfolio.default_portfolio` (linear, naive Bayes,
        k-NN, histogram gradient boosting, LightGBM / XGBoost / CatBoost when installed,
        forests, an MLP, the MoE); [] runs the families only.
    cv : 'auto', int, cross-validation generator or iterable, default=5
        Outer folds every trial is fitted and scored on (an int gives shuffled
        (stratified) folds seeded by ``random_state``); 'auto' is 8 folds under 1,000 rows
        (each fold model sees 7/8 of the rows, and the out-of-fold predictions that drive
        the selection are less noisy), else 5.
    n_repeats : int >= 1 or 'auto', default=1
        Repeated bagging (AutoGluon's ``num_bag_sets``): the ``cv`` folds are drawn this
        many times anew (``RepeatedStratifiedKFold`` / ``RepeatedKFold``), every trial is
        fitted on all of them, its out-of-fold predictions are the mean over the repeats
        (less noisy for the selection) and its bag holds every fold model. A trial costs
        ``cv * n_repeats`` fits. 'auto': more repeats while the rows are few and the
        budget is long (see :func:`~moensemble.search.inputs.auto_repeats`). Needs an
        int ``cv`` or 'auto' when above 1.
    inner_cv : int, default=3
        Folds of the gated family's own out-of-fold fits.
    scoring : str, callable or None, default=None
        Scorer of the trials and the leaderboard; None is accuracy (R² for regression).
    max_trials : int or None, default=None
        Stop after this many trials (portfolio included) even with time left.
    ensemble_size : int, default=25
        Picks of greedy ensemble selection with replacement (AutoGluon uses 25).
    ensemble_metric : str, callable or None, default=None
        What the greedy picks optimise on the out-of-fold predictions: None is
        ``scoring`` (as AutoGluon selects on its eval metric), a scorer name or callable,
        or ``'log_loss'`` / ``'squared_error'``.
    ensemble_bags : int, default=20
        Bagged ensemble selection (Caruana et al. 2006): the picks run this many times,
        each on a random half of the rows, and the weights are averaged (steadier on
        small data); 1 is one selection on all rows.
    blend_guard : float >= 0, 'auto' or None, default='auto'
        Keep the best level-1 trial alone (not the blend) unless the blend's mean
        out-of-fold gain over it, per row (correct answers under accuracy, squared error in
        regression, log loss otherwise), exceeds this many standard errors of that mean:
        on small data the selection's gain is mostly noise. 0 keeps the blend only when it
        gains at all; None always blends; 'auto' is 2 under 2,000 rows, else None (over
        five hold-out splits at 60 s, 2 lifted breast cancer and diabetes; on the text set
        it once kept one trial where the blend was better, ``docs/benchmarks/automl.md``).
        ``blend_gain_`` is the gain measured.
    guard_estimate : {'out_of_bag', 'in_sample'}, default='out_of_bag'
        Where ``blend_guard`` reads the blend's gain: 'out_of_bag', each of the
        ``ensemble_bags`` selections on the rows it did not select on (the selection does
        not grade its own rows; on diabetes it caught a blend that passed the in-sample
        test and lost on the hold-out); 'in_sample', the final blend on all rows. With
        ``ensemble_bags=1`` it is 'in_sample'.
    single_choice : {'auto', 'best', 'one_se'}, default='auto'
        The trial ``blend_guard`` keeps: 'best', the best level-1 trial by out-of-fold
        score; 'one_se', the first level-1 trial (portfolio order, cheapest first, then
        search order) whose out-of-fold loss is within one standard error of the best's
        (glmnet's ``lambda.1se``); 'auto', 'one_se' in classification, 'best' in
        regression (where the portfolio's second entry, ``kernel_ridge``, measured better
        than the first, ridge, by less than the rule's margin).
    temperature_scaling : bool, default=True
        Classification: temper each trial's probabilities by one temperature fitted on
        its out-of-fold log loss before the selection and in the final average, so that
        badly calibrated members (naive Bayes, k-NN) blend on the others' scale; and
        temper the final blend by one more, fitted on its out-of-fold log loss (an average
        is flatter than its members; the predicted classes do not change).
    stack_levels : {0, 1, 2}, default=1
        Stacking layers (AutoGluon's ``auto_stack``) the search may add over the single
        models: 0 none; 1 the level-2 ``weighted`` / ``stacking`` trials, each over the
        best ``top_n`` level-1 trials' out-of-fold predictions; 2 also level 3, over the
        best trials of both levels. The final selection blends every level.
    stack_passthrough : bool, default=False
        Level-2 ``stacking`` trials may also read the original features (dense input of
        at most 500 columns). Off by default: on shared folds it inflates their
        out-of-fold score (see ``docs/benchmarks/automl.md``).
    max_level2_share : float in [0, 1] or None, default=None
        Most share of the search's trials that may be level-2 combiners (``weighted``,
        ``stacking``); past it the next trial is the least tried single-model family's.
        Cheap and optimistic on their out-of-fold score, combiners otherwise take most of
        the trials (158 of 250 at 300 s on diabetes). None: no cap.
    refit_full : bool or 'auto', default=False
        True: refit the selected trials on all rows (one model each instead of a bag of
        ``cv``: a faster predict) while the budget lasts; 20 % of it is kept for that.
        False: keep the bags. 'auto': when one level-1 trial is kept alone, refit it if,
        out of fold, its refit beat its bag one level down (each fold model against a
        bag fitted on that fold's inner folds, :mod:`moensemble.search.refit`; ``cv**2``
        fits of the trial, only while the budget lasts); ``refit_gain_`` is that gain.
        Not the default: measured against the hold-out it picked right for
        ``kernel_ridge`` and wrong for histogram boosting (``docs/benchmarks/automl.md``,
        eighth pass).
    memory : str, joblib.Memory or None, default=None
        Cache of the gated family's inner fits; None uses a temporary directory removed
        after ``fit``.
    n_jobs : int or None, default=None
        Threads of the members that take them (forests, k-NN, boosting libraries).
    storage, study_name : str or None
        Persist and resume the study (see :class:`SearchCV`).
    sampler, pruner : optuna objects or None
        Defaults: ``TPESampler(seed=random_state)``, ``MedianPruner`` (it reads the
        running mean score after each fold).
    multi_objective : bool, default=False
        Also minimise ``cost`` in the search; the Pareto front is ``pareto_front_``.
    cost : {'n_params', 'latency'}, default='n_params'
        Parameters a row uses at predict time, or predict seconds per row.
    error_score : 'raise' or float, default=nan
        'raise' re-raises a failing trial; otherwise it is named in a warning and on the
        leaderboard, and left out.
    progress_bar : bool, default=True
        A tqdm bar (shown on terminals only).
    random_state : int, RandomState or None, default=None
    verbose : int, default=0
        2 and above shows Optuna's own logs.

    Attributes
    ----------
    best_estimator_ : TrialEnsemble
        The final ensemble: weighted trials, each a bag of fold models (or refit).
    ensemble_weights_ : pandas.Series
        Weight of each selected trial, by name.
    blend_gain_ : float
        With ``blend_guard``: the blend's out-of-fold gain over the best level-1 trial in
        standard errors, out of bag with ``guard_estimate='out_of_bag'`` (NaN otherwise).
    refit_gain_ : float
        With ``refit_full='auto'`` and one trial kept: the refit's out-of-fold gain over
        its bag in standard errors (positive: refit); NaN when not measured.
    ensemble_score_ : float
        Out-of-fold score of the final ensemble (on the rows the weights were chosen on,
        so slightly optimistic).
    best_trial_, best_family_ : str
        Name and family of the best single trial.
    best_params_ : dict
        Its parameters set by the search (empty for portfolio entries).
    best_score_ : float
        Its mean outer-CV score.
    leaderboard_ : pandas.DataFrame
        One row per trial (name, family, phase, level, state, score, score_std, loss,
        fit_time, predict_time, trial_time, weight, params, inputs, note) and one for
        the final ensemble; best first.
    pareto_front_ : pandas.DataFrame
        With ``multi_objective``: the leaderboard rows on the Pareto front.
    study_ : optuna.Study
        The search phase's trials.
    n_features_in_ : int
    n_splits_ : int
        Number of outer folds of one repeat.
    n_repeats_ : int
        Repeats of the outer folds every trial was fitted on (``n_repeats`` resolved).
    fit_time_ : float
        Seconds the fit took.
    classes_ : ndarray of shape (n_classes,)

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from moensemble import AutoClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> auto = AutoClassifier(time_budget=20, cv=3, max_trials=4, progress_bar=False,
    ...                       random_state=0).fit(X, y)
    >>> auto.score(X, y) > 0.9
    True
    """

    _task = "classification"

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities of the final ensemble.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        X = self._transform(X)
        return self.best_estimator_.predict_proba(X)


class AutoRegressor(RegressorMixin, _BaseAuto):
    """AutoML regressor: one ensemble over every model its search trained.

    Same parameters and attributes as :class:`AutoClassifier` (less ``classes_``);
    the default scoring (and selection metric) is R².

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from moensemble import AutoRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> auto = AutoRegressor(time_budget=20, cv=3, max_trials=3, progress_bar=False,
    ...                      random_state=0).fit(X, y)
    >>> auto.score(X, y) > 0.4
    True
    """

    _task = "regression"

