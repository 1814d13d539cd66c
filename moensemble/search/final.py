"""The AutoML's final model: one ensemble selected over every finished trial's OOF.

:class:`FinalModel` is the part of :class:`~moensemble.search.AutoClassifier` /
:class:`~moensemble.search.AutoRegressor` that runs after the search: per-trial
temperatures (classification), greedy ensemble selection under ``ensemble_metric``
(bagged over halves of the rows), the :class:`~moensemble.search.selection.TrialEnsemble`
of the chosen trials' bags, the leaderboard, and the last resort when no trial finished.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from moensemble.search import bagging as _bagging
from moensemble.search.refit import REFIT_GAIN, refit_gain
from moensemble.search.runner import Runner, leaderboard, members_of
from moensemble.search.selection import (
    Member,
    TrialEnsemble,
    ensemble_selection,
    fit_temperature,
    gain_in_standard_errors,
    out_of_bag_gain,
    prediction_loss,
    score_predictions,
    simplest_within_one_se,
    temper,
)

__all__ = ["AUTO_GUARD", "AUTO_GUARD_ROWS", "MAX_SELECTION_POOL", "MIN_REFIT_SHARE",
           "MIN_SELECTION_SHARE", "FinalModel"]

#: Ensemble selection runs over this many best trials (its cost grows with the pool).
MAX_SELECTION_POOL = 50
#: ``blend_guard='auto'``: this many standard errors under ``AUTO_GUARD_ROWS`` rows, else
#: no guard (measured at 60 s: the guard kept digits' 1,347 rows at 0.9844 where an
#: unguarded fit gave 0.9800, and cost the text set's 4,500 rows 0.007; the threshold sits
#: between those two sets, see docs/benchmarks/automl.md).
AUTO_GUARD = 2.0
AUTO_GUARD_ROWS = 2000
#: The bagged selection always gets this share of the budget, even when the last trial
#: ran into the reserve: on a loaded machine the search often ended past it, and the
#: selection ran one bag on half the rows instead of 20 (breast cancer at 60 s: 0.9510
#: where the 20 bags over the same trials give 0.9580); 20 bags took 0.07-0.43 s there.
MIN_SELECTION_SHARE = 0.01
#: ``refit_full='auto'`` may always use this share of the budget to measure the kept
#: trial's bag against its refit and to refit it (the search and the selection often end
#: at the deadline; ``kernel_ridge``'s 25 fits of 124 rows took about 1 s, 0.02 of 60 s).
MIN_REFIT_SHARE = 0.05


def _selection_pool(done: list) -> list:
    """The ``MAX_SELECTION_POOL`` best finished trials, best first, and the best level-1
    trial after them when none of those is level 1.

    ``blend_guard`` measures the blend against the best level-1 trial. Near-identical
    ``weighted`` trials, whose out-of-fold scores are optimistic, can fill the pool; without
    a level-1 trial in it the guard had no reference and the blend went unguarded
    (diabetes, split 2 at 60 s: 53 level-2 trials above ``kernel_ridge``, a blend of them
    R² 0.4105 on the hold-out where ``kernel_ridge``, which the guard keeps, gives 0.4405).
    """
    ranked = sorted(done, key=lambda r: -r.score)
    pool = ranked[:MAX_SELECTION_POOL]
    if not any(r.level == 1 for r in pool):
        pool += [r for r in ranked[MAX_SELECTION_POOL:] if r.level == 1][:1]
    return pool


class FinalModel:
    """Mixin of the AutoML estimators: what ``fit`` does once the search has ended."""

    def _finish(self, runner: Runner, X, y, objectives) -> list[str]:
        """Select the ensemble; return the warnings for the user."""
        records = runner.records
        done = [r for r in records if r.state == "COMPLETE" and r.bag is not None]
        failed = [r for r in records if r.state == "FAIL"]
        notes = []
        if failed:
            notes.append(
                "Trials left out of the ensemble: "
                + "; ".join(f"{r.name} ({r.note})" for r in failed[:5])
                + (f"; and {len(failed) - 5} more" if len(failed) > 5 else "")
                + ". See `leaderboard_`."
            )
        if not done:
            return [*notes, self._last_resort(runner)]
        done = _selection_pool(done)
        classes = getattr(self, "classes_", None)
        done = self._above_chance(done, runner, y, classes)
        temperatures = {r.name: fit_temperature(r.bag.oof, runner.target)
                        if classes is not None and self.temperature_scaling else 1.0
                        for r in done}
        oof = [temper(r.bag.oof, temperatures[r.name]) for r in done]
        weights, bags = ensemble_selection(
            oof, runner.target, self._task, self.ensemble_size, metric=self._selection_metric(),
            n_bags=self.ensemble_bags, random_state=runner.context.random_state,
            classes=classes, time_limit=self._selection_seconds(runner), return_bags=True)
        blended = np.tensordot(weights, np.stack([o.astype(np.float64) for o in oof]), axes=1)
        weights, blended = self._guard(done, oof, weights, blended, runner.target, bags)
        chosen = {r.name: float(w) for r, w in zip(done, weights, strict=True) if w > 0}
        # the average of several tempered trials is flatter than each: one more temperature
        # on the blend sharpens it back (log loss; the argmax, so accuracy, stays)
        blend_t = fit_temperature(blended, runner.target) \
            if classes is not None and self.temperature_scaling else 1.0
        blended = temper(blended, blend_t)
        by_name = {r.name: r for r in records}
        members = members_of(chosen, by_name)
        for name in chosen:
            members[name].temperature = temperatures[name]
        self.refit_gain_ = np.nan
        if self.refit_full is True:
            runner.refit_members(members)
        elif self.refit_full == "auto" and len(chosen) == 1:
            self._refit_if_better(runner, by_name[next(iter(chosen))], members)
        self.best_estimator_ = TrialEnsemble(members, chosen, getattr(self, "classes_", None),
                                             single_output=np.ndim(y) == 1,
                                             encoders=self._encoders(), temperature=blend_t)
        best = max(done, key=lambda r: r.score)
        self.best_trial_ = best.name
        self.best_family_ = best.family
        self.best_params_ = dict(best.params)
        self.best_score_ = float(best.score)
        self.ensemble_score_ = score_predictions(runner.scorer, blended, y,
                                                 getattr(self, "classes_", None))
        self.ensemble_weights_ = pd.Series(chosen, name="weight").sort_values(ascending=False)
        row = {"name": "ensemble", "family": "ensemble", "phase": "final",
               "level": max(r.level for r in done if r.name in chosen) + 1,
               "state": "COMPLETE", "score": self.ensemble_score_,
               "loss": prediction_loss(blended, runner.target, self._task), "weight": 1.0,
               "inputs": list(chosen),
               "note": ", ".join(f"{n} {w:.2f}" for n, w in self.ensemble_weights_.items())}
        self.leaderboard_ = leaderboard(records, chosen, row, objectives)
        if len(objectives) > 1:
            front = {t.user_attrs.get("name") for t in self.study_.best_trials}
            board = self.leaderboard_
            self.pareto_front_ = board[board["name"].isin(front)].reset_index(drop=True)
        return notes

    def _guard(self, done: list, oof: list, weights: np.ndarray, blended: np.ndarray,
               target: np.ndarray, bags: list) -> tuple[np.ndarray, np.ndarray]:
        """``blend_guard``: the best level-1 trial alone unless the blend beats it by more
        than ``blend_guard`` standard errors out of fold.

        The reference is the best level-1 trial: a level-2 trial's out-of-fold score is
        optimistic (it learnt on predictions of models that saw its test folds). With
        ``guard_estimate='out_of_bag'`` (and bags) the gain is read on the rows each bag did
        not select on (:func:`~moensemble.search.selection.out_of_bag_gain`), else on all
        rows. ``blend_gain_`` is the gain in standard errors (NaN without a guard or a
        level-1 trial). The trial kept is the best level-1 one or, with ``single_choice``
        'one_se', the first of the level-1 trials (portfolio order, then search order)
        within one standard error of it.
        """
        self.blend_gain_ = np.nan
        level1 = [i for i, r in enumerate(done) if r.level == 1]  # done: best first
        guard = self.blend_guard
        if guard == "auto":
            guard = AUTO_GUARD if len(target) < AUTO_GUARD_ROWS else None
        if guard is None or not level1:
            return weights, blended
        best = level1[0]
        single = np.asarray(oof[best], dtype=np.float64)
        metric = self._selection_metric()
        self.blend_gain_ = out_of_bag_gain(oof, target, self._task, bags, single, metric) \
            if self.guard_estimate == "out_of_bag" and bags else np.nan
        if np.isnan(self.blend_gain_):  # in sample: one bag (or bags covering every row)
            self.blend_gain_ = gain_in_standard_errors(blended, single, target, self._task,
                                                       metric)
        if self.blend_gain_ > guard:
            return weights, blended
        choice = self.single_choice
        if choice == "auto":
            choice = "one_se" if self._task == "classification" else "best"
        why = ""
        if choice == "one_se":
            first = simplest_within_one_se([oof[i] for i in level1],
                                           [done[i].number for i in level1], target,
                                           self._task, metric)
            if level1[first] != best:
                why = f"; within one standard error of {done[best].name}, and earlier"
            best = level1[first]
        kept = np.zeros_like(weights)
        kept[best] = 1.0
        done[best].note = (done[best].note + "; " if done[best].note else "") + (
            f"kept alone: the blend's out-of-fold gain was {self.blend_gain_:.2f} standard "
            f"errors (blend_guard={self.blend_guard!r}, {self.guard_estimate}){why}")
        return kept, np.asarray(oof[best], dtype=np.float64)

    def _refit_if_better(self, runner: Runner, record, members: dict) -> None:
        """``refit_full='auto'``: refit the one kept trial on all rows when, out of fold,
        its refit's analogue beat its bag's (:func:`~moensemble.search.refit.refit_gain`);
        ``refit_gain_`` is that gain in standard errors (NaN: not measured, bag kept)."""
        deadline = runner.deadline  # the selection may have used it up: a floor, as it has
        runner.deadline = max(deadline, _bagging.clock() + MIN_REFIT_SHARE * runner.budget)
        try:
            with runner.limits():
                gain, why = refit_gain(runner, record, self._selection_metric())
            self.refit_gain_ = gain
            if gain > REFIT_GAIN:
                runner.refit_members({record.name: members[record.name]})
        finally:
            runner.deadline = deadline
        if np.isnan(gain):
            note = f"bag kept: bag or refit not measured ({why})"
        elif gain > REFIT_GAIN:
            note = f"out of fold the refit gained {gain:.2f} standard errors over the bag"
        else:
            note = f"bag kept: out of fold the refit gained {gain:.2f} standard errors"
        record.note = (record.note + "; " if record.note else "") + note

    def _above_chance(self, done: list, runner: Runner, y, classes) -> list:
        """The trials that score above a constant prediction (class shares, or the mean).

        A trial below chance carries no signal for the blend, yet a near-uniform one can
        still be picked: it leaves the argmax where it is while a tie-break on log loss
        rewards it (k-NN on TF-IDF text, 0.09 accuracy, once took 0.43 of the weight).
        The best trial is kept even when all are below chance.
        """
        target = runner.target
        if classes is not None:
            prior = np.bincount(target, minlength=len(classes)) / len(target)
            constant = np.tile(prior, (len(target), 1))
        else:
            constant = np.broadcast_to(np.mean(target, axis=0), np.shape(target))
        try:
            chance = score_predictions(runner.scorer, constant, y, classes)
        except (ValueError, TypeError):  # a scorer that cannot score a constant prediction
            return done
        kept = [r for r in done if r.score > chance]
        return kept or done[:1]

    def _selection_seconds(self, runner: Runner) -> float:
        """What is left of the budget for the bags (half of it with ``refit_full``), and at
        least ``MIN_SELECTION_SHARE`` of the budget."""
        left = max(runner.deadline - _bagging.clock(), 0.0)
        left = left / 2 if self.refit_full is True else left
        return max(left, MIN_SELECTION_SHARE * runner.budget)

    def _selection_metric(self):
        """``ensemble_metric``, else the search's ``scoring`` (None: accuracy / R²)."""
        if self.ensemble_metric is not None:
            if self.ensemble_metric == "log_loss" and self._task == "regression":
                raise ValueError("ensemble_metric='log_loss' is for classification; a "
                                 "regressor takes 'squared_error' or a regression scorer.")
            return self.ensemble_metric
        if self.scoring is None:
            return "accuracy" if self._task == "classification" else "r2"
        return self.scoring

    def _last_resort(self, runner: Runner) -> str:
        """No trial finished its folds: use the folds done (and say so), or raise."""
        partial = [r for r in runner.records if r.partial is not None and r.partial.models]
        if not partial:
            if runner.last_error is not None:
                raise runner.last_error  # every trial failed: most likely the data
            raise RuntimeError(
                f"No trial finished within time_budget={self.time_budget}s, and none "
                "finished a fold; raise `time_budget` (see the notes: "
                + "; ".join(f"{r.name}: {r.note}" for r in runner.records[:3]) + ")."
            )
        best = max(partial, key=lambda r: len(r.partial.models))
        members = {best.name: Member(best.name, list(best.partial.models))}
        self.best_estimator_ = TrialEnsemble(members, {best.name: 1.0},
                                             getattr(self, "classes_", None),
                                             encoders=self._encoders())
        self.best_trial_, self.best_family_ = best.name, best.family
        self.best_params_ = dict(best.params)
        self.best_score_ = self.ensemble_score_ = np.nan  # its folds are not all predicted
        self.blend_gain_ = self.refit_gain_ = np.nan
        self.ensemble_weights_ = pd.Series({best.name: 1.0}, name="weight")
        row = {"name": "ensemble", "family": "ensemble", "phase": "final", "level": 2,
               "state": "COMPLETE", "score": self.best_score_, "weight": 1.0,
               "inputs": [best.name], "note": "partial bag: no trial finished"}
        self.leaderboard_ = leaderboard(runner.records, {best.name: 1.0}, row, ["score"])
        return (f"time_budget={self.time_budget}s was too small for any trial to finish its "
                f"{len(runner.folds)} folds; the model is the {len(best.partial.models)} fold "
                f"model(s) of {best.name!r} (no out-of-fold score). Raise `time_budget`.")

    # ------------------------------------------------------------------ reading the result
    def fit_summary(self) -> str:
        """A few lines: budget and time used, trials per family, the ensemble's weights."""
        check_is_fitted(self, "best_estimator_")
        board = self.leaderboard_
        trials = board[board["family"].ne("ensemble")]
        counts = trials.groupby("state").size().to_dict()
        done = trials[trials["state"].eq("COMPLETE")]
        per_family = ", ".join(f"{f} {n}" for f, n in done["family"].value_counts().items())
        lines = [
            f"{type(self).__name__}: {self.fit_time_:.1f} s of a {self.time_budget:g} s "
            f"budget; {len(trials)} trials ({', '.join(f'{k} {v}' for k, v in counts.items())})",
            f"finished per family: {per_family or '-'}",
            f"best single trial: {self.best_trial_} ({self.best_family_}) score "
            f"{self.best_score_:.4f}",
            f"final ensemble: out-of-fold score {self.ensemble_score_:.4f}, weights "
            + ", ".join(f"{n} {w:.2f}" for n, w in self.ensemble_weights_.items()),
        ]
        return "\n".join(lines)

