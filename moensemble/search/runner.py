"""The AutoML's search loop: the portfolio, then Optuna's sampler, within one time budget.

Every trial is a :class:`TrialRecord`: a single model (portfolio entry or sampled), a level-2
combiner over the best trials' out-of-fold predictions, or a router; each is fitted on the
same outer folds by :func:`~moensemble.search.trials.bag_on_folds`. Budget: a trial starts
only when its expected time (its family's past folds, else a fit timed on a subsample) fits
in what is left; networks stop at the deadline on their own.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import optuna
import pandas as pd
from sklearn.base import BaseEstimator, clone
from threadpoolctl import threadpool_limits

from moensemble.folds import TrialOutOfTime, with_callbacks
from moensemble.search import bagging as _bagging
from moensemble.search.bagging import Bag, NonFinitePredictions, bag_on_folds
from moensemble.search.families import Family, SearchContext
from moensemble.search.selection import Member, prediction_loss, stack_features
from moensemble.search.storage import heartbeat, recover_trials, tag_worker
from moensemble.search.trials import count_params, is_space_change, space_changed_error

__all__ = ["Runner", "TrialRecord", "leaderboard", "members_of"]

#: Out-of-fold predictions kept (float32, on disk or in RAM) before the worst trials' are
#: dropped.
MAX_OOF_BYTES = 1 << 30
#: A large-data trial with no history is timed on a subsample only with this share left.
MIN_SHARE_TO_TIME = 0.1
#: A network (stoppable) trial starts only with this share of the budget left.
MIN_SHARE_FOR_NETWORKS = 0.05
#: A search trial whose out-of-fold predictions are this close to an earlier trial's (of
#: its level or below) is the same trial to the final selection and is dropped: the root
#: mean square of the difference, over the target's standard deviation in regression, in
#: probability in classification. Level-2 ``weighted`` trials that differ in ``top_n`` /
#: ``n_iter`` pick the same members: 52 of 67 trials of diabetes split 2 at 60 s, their
#: out-of-fold R² equal to 1e-4, crowded the selection's pool.
SAME_OOF_TOLERANCE = 0.01


@dataclass
class TrialRecord:
    """One trial of an AutoML search (a row of ``leaderboard_``)."""

    number: int
    name: str
    family: str
    phase: str  # 'portfolio' | 'search'
    params: dict = field(default_factory=dict)
    estimator: BaseEstimator | None = field(default=None, repr=False)
    state: str = "WAITING"  # COMPLETE | FAIL | PRUNED
    bag: Bag | None = field(default=None, repr=False)
    partial: Bag | None = field(default=None, repr=False)  # folds done when out of time
    inputs: tuple[str, ...] = ()
    passthrough: bool = False
    view: str = "encoded"  # a raw table's encoding it reads: 'encoded' | 'native'
    stack_level: int = 0  # a combiner's level (2: over level-1 trials, 3: over any); 0: 1 or 2
    note: str = ""
    trial_time: float = np.nan
    loss: float = np.nan
    costs: dict = field(default_factory=dict)

    @property
    def level(self) -> int:
        return self.stack_level or (2 if self.inputs else 1)

    @property
    def score(self) -> float:
        return self.bag.score if self.bag is not None else np.nan


class Runner:
    """Runs the trials of one ``fit``; the AutoML estimator reads ``records`` after it."""

    def __init__(self, *, X, y, target, folds, classes, n_columns, scorer, context: SearchContext,
                 deadline: float, budget: float, error_score, max_trials, study=None,
                 families: dict[str, Family] | None = None, objectives=("score",),
                 X_native=None, store=None, max_level2_share: float | None = None,
                 n_repeats: int = 1) -> None:
        self.X, self.y, self.target, self.folds = X, y, target, folds
        self.n_repeats = n_repeats  # ``folds`` is this many k-fold partitions, one after another
        self.views = {"encoded": X} if X_native is None else {"encoded": X, "native": X_native}
        self.classes, self.n_columns, self.scorer = classes, n_columns, scorer
        self.context, self.deadline, self.budget = context, deadline, budget
        self.error_score, self.max_trials = error_score, max_trials
        self.study, self.families, self.objectives = study, families or {}, list(objectives)
        self.records: list[TrialRecord] = []
        self.max_level2_share = max_level2_share
        self.search_levels: list[int] = []  # the level of each search trial that ran
        self.last_state = ""
        self.store = store  # where the OOF predictions live (None: RAM)
        self.fold_seconds: dict[str, list[float]] = {}  # per family / entry: seconds a fold
        self.last_error: Exception | None = None
        self.n_run = 0
        self.level1_next = False  # a combiner repeated an earlier trial: a base model next
        self.task = context.task
        # BLAS / OpenMP threads of a fit: all cores on a shared machine made histogram
        # boosting ten times slower than one (n_jobs=-1: no limit).
        n_jobs = context.n_jobs
        self.threads = None if n_jobs is not None and n_jobs < 0 else (n_jobs or 1)

    def limits(self):
        """Context manager that holds the fits' BLAS / OpenMP threads to ``n_jobs``."""
        return threadpool_limits(limits=self.threads)

    # ------------------------------------------------------------------ budget
    def remaining(self) -> float:
        return self.deadline - _bagging.clock()

    def _can_run_more(self) -> bool:
        return self.max_trials is None or self.n_run < self.max_trials

    def _fold_estimate(self, key: str, estimator, features, level: int = 1) -> float:
        """Seconds a fold should take: this entry's or family's past folds; else a fit timed
        on a subsample (large data); else the slowest fold of the trials so far (the portfolio
        runs cheapest first, so an entry not yet seen is rarely cheaper than those before it;
        the median started slower entries too late: digits at 30 s ended at 1.13 of it)."""
        if self.fold_seconds.get(key):
            return float(np.median(self.fold_seconds[key]))
        train, test = self.folds[0]
        if level >= 2 and len(train) < _bagging.ESTIMATE_FROM_ROWS:
            return 0.0  # a combiner over prediction columns of few rows: cheap
        # Many rows: timed like any model (a stacker over 7 trials x 45 classes of text
        # took 28 s a fold on a loaded machine, and a fit in progress cannot be stopped).
        if len(train) >= _bagging.ESTIMATE_FROM_ROWS and \
                self.remaining() < MIN_SHARE_TO_TIME * self.budget:
            return np.inf  # timing it on a subsample could itself outlast what is left
        with self.limits():
            estimate = _bagging.estimate_fold_seconds(
                estimator, features, self.y, train, test, classes=self.classes,
                random_state=self.context.random_state)
        if estimate > 0.0:  # later trials of the same entry or family start from it
            self.fold_seconds.setdefault(key, []).append(estimate)
        if estimate == 0.0:
            known = [np.median(v) for v in self.fold_seconds.values() if v]
            estimate = float(np.max(known)) if known else 0.0
        return estimate

    def _plan(self, key: str, estimator, features, level: int = 1) -> tuple[str | None, float]:
        """Why the trial would not fit in the time left (None: run it), and a fold's estimate."""
        remaining = self.remaining()
        if _bagging.stoppable(estimator):  # stops at the deadline: needs only a useful share
            if remaining < MIN_SHARE_FOR_NETWORKS * self.budget:
                return f"not run: not enough time left ({max(remaining, 0.0):.1f} s)", 0.0
            return None, 0.0
        estimate = self._fold_estimate(key, estimator, features, level)
        expected = estimate * len(self.folds)
        if not np.isfinite(expected):
            return "not run: too little time left to time it on a subsample", estimate
        if expected > self.remaining():
            return (f"skipped: needs about {expected:.1f} s for {len(self.folds)} folds, "
                    f"{max(self.remaining(), 0.0):.1f} s left"), estimate
        return None, estimate

    # ------------------------------------------------------------------ one trial
    def _execute(self, record: TrialRecord, estimator, features, fold_estimate,
                 on_fold=None) -> None:
        tic = _bagging.clock()
        record.estimator = estimator
        self.n_run += 1
        try:
            with self.limits():
                bag = bag_on_folds(estimator, features, self.y, self.folds,
                                   classes=self.classes, scorer=self.scorer,
                                   deadline=self.deadline, fold_estimate=fold_estimate,
                                   n_columns=self.n_columns, on_fold=on_fold,
                                   store=self.store, n_repeats=self.n_repeats)
        except optuna.TrialPruned as exc:
            record.state, record.note = "PRUNED", f"pruned: {exc}"
        except TrialOutOfTime as exc:
            record.state, record.note = "PRUNED", f"out of time: {exc}"
            record.partial = getattr(exc, "bag", None)
        except NonFinitePredictions as exc:
            record.state = "FAIL"
            record.note = f"dropped, never blended: {exc}"
        except Exception as exc:
            if self.error_score == "raise":
                raise
            record.state, record.note = "FAIL", f"failed: {type(exc).__name__}: {exc}"
            self.last_error = exc
        else:
            record.state, record.bag = "COMPLETE", bag
            record.loss = prediction_loss(bag.oof.astype(np.float64), self.target, self.task)
            self._drop_over_cap()
        done = record.bag or record.partial
        if done is not None and done.fit_times:
            self.fold_seconds.setdefault(self._key(record), []).append(done.fold_seconds)
        record.trial_time = _bagging.clock() - tic

    def _key(self, record: TrialRecord) -> str:
        return record.name if record.phase == "portfolio" else record.family

    def _drop_over_cap(self) -> None:
        """Bound the RAM of the pool: the worst trials' OOF and bags go first."""
        pool = [r for r in self.records if r.bag is not None]
        total = sum(r.bag.oof.nbytes for r in pool)
        for r in sorted(pool, key=lambda r: r.score):
            if total <= MAX_OOF_BYTES:
                break
            total -= r.bag.oof.nbytes
            r.bag, r.note = None, "dropped from the pool: out-of-fold memory cap"
            r.state = "PRUNED"

    def _skip(self, record: TrialRecord, note: str) -> None:
        record.state, record.note, record.trial_time = "PRUNED", note, 0.0

    # ------------------------------------------------------------------ portfolio
    def run_portfolio(self, entries: list[tuple[str, BaseEstimator]], keep: float = 0.0,
                      native: frozenset[str] = frozenset()) -> None:
        """Fit each ``(name, estimator)`` on the outer folds, in order, while time is left.

        ``keep`` seconds of the budget stay for the search (its first, level-2 trials);
        the entries named in ``native`` read the raw table's native view, when there is one.
        """
        deadline = self.deadline
        self.deadline -= keep
        try:
            self._run_portfolio(entries, native if "native" in self.views else frozenset())
        finally:
            self.deadline = deadline

    def _run_portfolio(self, entries: list[tuple[str, BaseEstimator]], native) -> None:
        for name, estimator in entries:
            record = TrialRecord(len(self.records), name, name, "portfolio",
                                 view="native" if name in native else "encoded")
            self.records.append(record)
            if not self._can_run_more():
                self._skip(record, "not run: max_trials reached")
                continue
            if self.remaining() <= 0:
                self._skip(record, "not run: no time left")
                continue
            features = self.views[record.view]
            why, estimate = self._plan(name, estimator, features)
            if why is not None:
                record.estimator = estimator
                self._skip(record, why)
                continue
            self._execute(record, clone(estimator), features, fold_estimate=estimate)

    # ------------------------------------------------------------------ refit_full
    def refit_members(self, members: dict[str, Member]) -> None:
        """Refit members on all rows, level 1 first, while the budget lasts; else keep bags.

        A level-2 member is refit on its inputs' out-of-fold predictions, as it was fitted.
        """
        by_name = {r.name: r for r in self.records}
        for name in sorted(members, key=lambda n: by_name[n].level):
            r, member = by_name[name], members[name]
            n_folds = len(self.folds) // self.n_repeats  # one repeat's folds
            expected = 1.3 * float(np.mean(r.bag.fit_times)) * n_folds / max(n_folds - 1, 1)
            if _bagging.clock() + expected > self.deadline:
                r.note = (r.note + "; " if r.note else "") + "bag kept: no time to refit"
                continue
            model = clone(r.estimator)
            if _bagging.stoppable(model):
                with_callbacks(model, [_bagging.StopAtClock(self.deadline)])
            features = self.views[r.view]
            if r.inputs:
                parts = [by_name[n].bag.oof.astype(np.float64) for n in r.inputs]
                features = stack_features(parts, features, r.passthrough)
            with self.limits():
                model.fit(features, self.y)
            if _bagging.stoppable(model):
                _bagging.without_clock(model)
            member.models = [model]
            r.note = (r.note + "; " if r.note else "") + "refit on all rows"

    # ------------------------------------------------------------------ Optuna phase
    def level1_pool(self) -> list[TrialRecord]:
        pool = [r for r in self.records if r.bag is not None and r.level == 1]
        return sorted(pool, key=lambda r: -r.score)

    def _pool(self, level: int) -> list[TrialRecord]:
        """Inputs of a level-``level`` combiner: level 2 reads level-1 trials, level 3 any."""
        if level == 2:
            return self.level1_pool()
        pool = [r for r in self.records if r.bag is not None and r.level < level]
        return sorted(pool, key=lambda r: -r.score)

    def _features(self, trial, family: Family, prefix: str):
        """Level 2 (3): the top trials' OOF side by side (and X when passthrough)."""
        if family.level == 1:
            return self.X, (), False, 1
        level = 2
        if self.context.stack_levels >= 2:
            level = trial.suggest_int(f"{prefix}level", 2, 3)
        pool = self._pool(level)
        top_n = trial.suggest_int(f"{prefix}top_n", 2, 12)
        passthrough = False
        # Off unless asked: on the shared outer folds the original features let a stacker
        # read its inputs' fold-to-fold differences (diabetes: out-of-fold R² 0.599 where
        # a nested, honest one is 0.539; docs/benchmarks/automl.md).
        if family.passthrough and level == 2 and self.context.stack_passthrough:
            passthrough = trial.suggest_categorical(f"{prefix}passthrough", [False, True])
            passthrough = passthrough and not self.context.sparse \
                and self.context.n_features <= 500
        inputs = pool[:top_n]
        if len(inputs) < 2:
            raise optuna.TrialPruned(f"needs 2 finished trials below level {level}")
        parts = [r.bag.oof.astype(np.float64) for r in inputs]
        return stack_features(parts, self.X, passthrough), tuple(r.name for r in inputs), \
            passthrough, level

    def _build(self, trial, family: Family):
        prefix = f"{family.name}__"
        features, inputs, passthrough, level = self._features(trial, family, prefix)
        context = replace(self.context, level2=family.level == 2)
        proposal = family.space(trial, context, prefix)
        estimator = proposal if isinstance(proposal, BaseEstimator) else \
            family.make(context).set_params(**proposal)
        return estimator, features, inputs, passthrough, level

    def _ask(self) -> optuna.Trial:
        recover_trials(self.study)  # databases: stale heartbeats; journals: dead processes
        with warnings.catch_warnings():  # this loop sends the heartbeats itself
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        tag_worker(trial)
        return trial

    def run_search(self, bar=None) -> None:
        """Optuna's sampler over the families' spaces until the time or ``max_trials`` ends."""
        names = list(self.families)
        skipped = 0
        while self._can_run_more() and self.remaining() > 0 and skipped < 20:
            self._hold_level2_share()
            trial = self._ask()
            try:
                with heartbeat(self.study, trial):
                    family = self.families[trial.suggest_categorical("family", names)]
                    state, values = self._search_trial(trial, family)
            except BaseException:  # Ctrl-C, error_score='raise': never leave it RUNNING
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            skipped = skipped + 1 if state == "SKIPPED" else 0
            self.last_state = state
            if state != "SKIPPED":
                self.search_levels.append(family.level)
            if state == "COMPLETE":
                self.study.tell(trial, values)
            else:
                self.study.tell(trial, state=getattr(optuna.trial.TrialState,
                                                     "PRUNED" if state == "SKIPPED" else state))
            if bar is not None:
                bar.set_postfix(trials=self.n_run)

    def _hold_level2_share(self) -> None:
        """Over ``max_level2_share``, the next trial is a base model's, not a combiner's.

        Level-2 trials are cheap and their out-of-fold score is optimistic, so the sampler
        keeps choosing them (158 of 250 trials at 300 s on diabetes): the budget should go
        to base models, whose predictions the final selection blends anyway. The same
        holds, whatever the share, right after a combiner that repeated an earlier trial
        (``level1_next``). The family enqueued is the level-1 family with the fewest search
        trials so far (its other parameters are sampled).
        """
        share = self.max_level2_share
        forced, self.level1_next = self.level1_next, False
        level1 = [n for n, f in self.families.items() if f.level == 1]
        if (share is None and not forced) or not level1 or len(level1) == len(self.families) \
                or self.last_state == "SKIPPED":  # a skipped base model: let the sampler
            return
        if self.study.get_trials(deepcopy=False,
                                 states=(optuna.trial.TrialState.WAITING,)):
            return  # the queue (the families' first trials) goes first
        n_level2 = sum(level >= 2 for level in self.search_levels)
        if not forced and (n_level2 + 1) / (len(self.search_levels) + 1) <= share:
            return
        tried = {n: 0 for n in level1}
        for r in self.records:
            if r.phase == "search" and r.family in tried:
                tried[r.family] += 1
        family = min(level1, key=lambda n: tried[n])  # ties: the families' order
        self.study.enqueue_trial({"family": family})

    def _search_trial(self, trial, family: Family):
        record = TrialRecord(len(self.records), f"{family.name}_{trial.number}", family.name,
                             "search")
        self.records.append(record)
        try:
            estimator, features, inputs, passthrough, level = self._build(trial, family)
        except optuna.TrialPruned as exc:
            self._skip(record, f"skipped: {exc}")
            return "SKIPPED", None
        except Exception as exc:
            if is_space_change(exc):  # a resumed study and a changed Family space
                raise space_changed_error(self.study, f"space of family {family.name!r}") \
                    from exc
            if self.error_score == "raise":
                raise
            self.n_run += 1
            record.state, record.note = "FAIL", f"failed: {type(exc).__name__}: {exc}"
            self.last_error = exc
            return "FAIL", None
        prefix = f"{family.name}__"
        record.params = {k.removeprefix(prefix): v for k, v in trial.params.items()
                         if k != "family"}
        record.inputs, record.passthrough = inputs, passthrough
        record.stack_level = level if inputs else 0
        same = self._duplicate(record)
        if same is not None:  # a combiner is deterministic: the sampler learns its score again
            self.records.pop()
            self.n_run += 1
            self.level1_next = True
            trial.set_user_attr("name", same.name)
            trial.set_user_attr("note", f"same as {same.name}: not refitted")
            return "COMPLETE", [same.score] + [same.costs.get(c, np.nan)
                                               for c in self.objectives[1:]] \
                if len(self.objectives) > 1 else same.score
        why, estimate = self._plan(family.name, estimator, features, level)
        if why is not None:
            record.estimator = estimator
            self._skip(record, why)
            return "SKIPPED", None
        single = len(self.objectives) == 1

        def on_fold(k, bag):  # the pruner reads the running mean score
            if single and k < len(self.folds) - 1:
                trial.report(float(np.mean(bag.fold_scores)), k)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"after fold {k}")

        self._execute(record, estimator, features,
                      fold_estimate=estimate, on_fold=on_fold)
        trial.set_user_attr("name", record.name)
        if record.state != "COMPLETE":
            trial.set_user_attr("note", record.note)
            return record.state, None
        trial.set_user_attr("fold_scores", record.bag.fold_scores)
        values = [record.score] + [self._cost(record, c, features) for c in self.objectives[1:]]
        same = self.same_predictions(record)
        if same is not None:  # the sampler hears its score; the pool does not keep it
            record.state, record.bag = "PRUNED", None
            record.note = f"same out-of-fold predictions as {same.name}: dropped"
            trial.set_user_attr("note", record.note)
            self.level1_next = self.level1_next or record.level >= 2
        return "COMPLETE", values[0] if single else values

    def _duplicate(self, record: TrialRecord) -> TrialRecord | None:
        """A finished combiner with the same inputs and settings (only ``top_n`` aside).

        Level-2 spaces are small (``top_n`` and a C or two): the sampler proposed the same
        combiner up to 12 times, and its copies filled the final selection's pool.
        """
        if not record.inputs:
            return None
        settings = {k: v for k, v in record.params.items() if k != "top_n"}
        for r in self.records[:-1]:
            if r.bag is not None and r.family == record.family and r.inputs == record.inputs \
                    and r.passthrough == record.passthrough and r.level == record.level \
                    and {k: v for k, v in r.params.items() if k != "top_n"} == settings:
                return r
        return None

    def same_predictions(self, record: TrialRecord) -> TrialRecord | None:
        """An earlier trial, of ``record``'s level or below, whose out-of-fold predictions
        are within ``SAME_OOF_TOLERANCE`` of ``record``'s (None: it is a new trial).

        Settings that differ can still produce the same predictions (a ``weighted``
        combiner over the top 8 or the top 12 trials picks the same members); the search
        learns nothing new from such a trial and the selection's pool should not hold it
        twice. Only trials whose loss is within 1 % of its own are compared row by row.
        """
        oof = np.asarray(record.bag.oof, dtype=np.float64)
        scale = 1.0 if self.classes is not None else float(np.std(self.target)) or 1.0
        for r in self.records:
            if r is record or r.bag is None or r.level > record.level \
                    or not np.isclose(r.loss, record.loss, rtol=0.01, atol=1e-12):
                continue
            diff = np.sqrt(np.mean((np.asarray(r.bag.oof, dtype=np.float64) - oof) ** 2))
            if diff <= SAME_OOF_TOLERANCE * scale:
                return r
        return None

    def _cost(self, record: TrialRecord, cost: str, features) -> float:
        bag = record.bag
        if cost == "n_params":
            value = float(count_params(bag.models[0]))
        else:  # latency: seconds per row of the first fold's predict
            value = bag.predict_times[0] / max(len(self.folds[0][1]), 1)
        record.costs[cost] = value
        return value


def members_of(chosen: dict[str, float], by_name: dict[str, TrialRecord]) -> dict[str, Member]:
    """The selected trials as parts of the final model and, for level-2 ones, their inputs."""
    members: dict[str, Member] = {}
    todo = list(chosen)
    while todo:
        name = todo.pop()
        if name in members:
            continue
        r = by_name[name]
        members[name] = Member(name, list(r.bag.models), r.inputs, r.passthrough,
                               view=r.view)
        todo.extend(r.inputs)
    return members


def leaderboard(records: list[TrialRecord], weights: dict[str, float], ensemble_row: dict,
                objectives) -> pd.DataFrame:
    """One row per trial and one for the final ensemble (its weight on each trial)."""
    rows = []
    for r in records:
        scores = r.bag.fold_scores if r.bag is not None else []
        row = {
            "trial": r.number, "name": r.name, "family": r.family, "phase": r.phase,
            "level": r.level, "state": r.state, "score": r.score,
            "score_std": float(np.std(scores)) if scores else np.nan, "loss": r.loss,
            "fit_time": float(np.sum(r.bag.fit_times)) if r.bag is not None else np.nan,
            "predict_time": float(np.sum(r.bag.predict_times)) if r.bag is not None
            else np.nan,
            "trial_time": r.trial_time, "weight": weights.get(r.name, 0.0),
        }
        for cost in objectives[1:]:
            row[cost] = r.costs.get(cost, np.nan)
        row["params"] = dict(r.params)
        row["inputs"] = list(r.inputs)
        row["note"] = r.note
        rows.append(row)
    rows.append({"trial": -1, **ensemble_row})
    frame = pd.DataFrame(rows)
    return frame.sort_values("score", ascending=False, na_position="last", ignore_index=True)

