"""AutoClassifier / AutoRegressor: estimator checks, budget, shared cache, leaderboard, errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_diabetes, make_classification
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.search import AutoClassifier, AutoRegressor, Family

FAST = dict(time_budget=120, families=("weighted", "stacking"), cv=2, inner_cv=2, max_trials=2,
            progress_bar=False, random_state=0)


@parametrize_with_checks(
    [
        AutoClassifier(base_estimators=[("lr", LogisticRegression()),
                                        ("tree", DecisionTreeClassifier(max_depth=3))], **FAST),
        AutoRegressor(base_estimators=[("ridge", Ridge()),
                                       ("tree", DecisionTreeRegressor(max_depth=3))], **FAST),
    ],
    expected_failed_checks=lambda est: (
        {"check_fit2d_1feature": "10 rows in nested 2x2 folds leave an inner fold with one "
                                 "class, which the logistic member refuses"}
        if isinstance(est, AutoClassifier) else {}
    ),
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def task():
    return make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)


def test_budget_is_respected_on_a_small_task(task):
    X, y = task
    budget = 8.0
    tic = time.monotonic()
    auto = AutoClassifier(time_budget=budget, families=("weighted", "stacking"), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    elapsed = time.monotonic() - tic
    assert elapsed <= budget * 1.1 + 0.5
    # On a loaded machine only the cheap first trial may fit in 8 s; at least one must finish.
    assert auto.leaderboard_["state"].eq("COMPLETE").sum() >= 1
    assert auto.fit_time_ <= elapsed


def test_refit_reserve_counts_the_base_fits_a_cached_trial_skipped(monkeypatch):
    """A stacking trial served from the OOF cache is fast; its refit on all rows is not."""
    from types import SimpleNamespace

    auto = AutoClassifier()
    # Trial 0 (weighted) fitted the bases; trial 1 (stacking) found them in the cache.
    auto._fold_times = {0: ("cached", 3.0), 1: ("cached", 0.3), 2: ("moe", 10.0)}
    monkeypatch.setattr(auto, "_best_trial", lambda require=True: SimpleNamespace(number=1))
    assert auto._refit_reserve(3) == pytest.approx(1.2 * 3.0 * 3 / 2)
    monkeypatch.setattr(auto, "_best_trial", lambda require=True: SimpleNamespace(number=2))
    assert auto._refit_reserve(3) == pytest.approx(1.2 * 10.0 * 3 / 2)  # its own family


def test_moe_training_stops_at_the_deadline(task):
    from moensemble.moe import MoEClassifier

    X, y = task
    MoEClassifier(max_epochs=1).fit(X[:50], y[:50])  # torch's one-time warm-up, outside the clock

    def make(context):  # only the deadline can end this training
        return MoEClassifier(n_experts=2, top_k=1, expert_hidden=(16,), max_epochs=100_000,
                             random_state=0)

    def space(trial, context, prefix):
        return {"lr": trial.suggest_float(f"{prefix}lr", 1e-3, 1e-2, log=True)}

    budget = 6.0
    tic = time.monotonic()
    auto = AutoClassifier(time_budget=budget, families=(Family("endless_moe", make, space),),
                          cv=2, progress_bar=False, random_state=0).fit(X, y)
    elapsed = time.monotonic() - tic
    assert elapsed <= budget * 1.1 + 0.5
    assert 1 <= len(auto.best_estimator_.history_) < 100_000
    assert auto.best_estimator_.callbacks is None  # the deadline callback is not left behind
    assert auto.score(X, y) > 0.7


class CountingLogistic(ClassifierMixin, BaseEstimator):
    """Logistic regression that appends a line to ``log`` on every fit (process-safe count)."""

    def __init__(self, log="", C=1.0):
        self.log = log
        self.C = C

    def fit(self, X, y):
        with open(self.log, "a") as f:
            f.write(f"fit {X.shape[1]}\n")  # the width tells base fits from upper stack levels
        self.model_ = LogisticRegression(C=self.C).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


def test_ensemble_trials_share_one_cache_of_base_fits(task, tmp_path):
    X, y = task
    log = tmp_path / "fits.txt"
    members = [("counted", CountingLogistic(str(log))),
               ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))]
    auto = AutoClassifier(time_budget=120, families=("weighted", "stacking"),
                          base_estimators=members, cv=3, inner_cv=2, max_trials=6,
                          progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_
    using = board[board["params"].map(lambda p: p.get("use_counted", True))
                  & board["state"].eq("COMPLETE")]
    assert len(using) >= 3
    fits = log.read_text().count(f"fit {X.shape[1]}\n")  # on X, not on a level below
    # Once per (outer fold, inner fold), plus the final refit's inner folds; without the
    # shared cache every trial using the member would fit it cv * inner_cv = 6 times.
    assert fits <= 3 * 2 + 2
    assert len(using) * 3 * 2 > fits


def test_leaderboard_and_delegation(task):
    X, y = task
    auto = AutoClassifier(time_budget=60, families=("weighted", "stacking"), cv=3,
                          max_trials=4, progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_
    assert len(board) == 4 == len(auto.study_.trials)
    assert set(board["family"]) == {"weighted", "stacking"}
    assert {"score", "score_std", "fit_time", "params"} <= set(board.columns)
    assert board["score"].iloc[0] == auto.best_score_ == board["score"].max()
    np.testing.assert_array_equal(auto.predict(X), auto.best_estimator_.predict(X))
    np.testing.assert_allclose(auto.predict_proba(X), auto.best_estimator_.predict_proba(X))
    assert auto.score(X, y) > 0.85


@pytest.mark.parametrize("cost", ["n_params", "latency"])
def test_multi_objective_pareto_front(task, cost):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    X, y = task
    auto = AutoClassifier(time_budget=60, families=("weighted",), cv=2, max_trials=6,
                          multi_objective=True, cost=cost, progress_bar=False,
                          random_state=0).fit(X, y)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored after fit
    front = auto.pareto_front_[["score", cost]].to_numpy()
    assert (front[:, 1] > 0).all()
    board = auto.leaderboard_.dropna(subset=["score"])[["score", cost]].to_numpy()
    for score, cost in front:  # nothing on the leaderboard dominates a front member
        assert not np.any((board[:, 0] >= score) & (board[:, 1] <= cost)
                          & ((board[:, 0] > score) | (board[:, 1] < cost)))
    assert auto.best_score_ == auto.pareto_front_["score"].max()


def test_a_new_family_is_one_registry_entry(task):
    X, y = task

    def make(context):
        return DecisionTreeClassifier(random_state=0)

    def space(trial, context, prefix):
        return {"max_depth": trial.suggest_int(f"{prefix}max_depth", 1, 8)}

    tree = Family("tree", make, space, first={"max_depth": 2})
    auto = AutoClassifier(time_budget=60, families=(tree,), cv=3, max_trials=3,
                          progress_bar=False, random_state=0).fit(X, y)
    assert auto.best_family_ == "tree"
    assert auto.best_estimator_.max_depth == auto.best_params_["max_depth"]
    depths = auto.leaderboard_["params"].map(lambda p: p.get("max_depth", 2))
    assert auto.leaderboard_.loc[depths.idxmax(), "score"] >= auto.leaderboard_.loc[
        depths.idxmin(), "score"] - 0.05


def test_gated_family_is_searchable_on_request(task):
    X, y = task
    auto = AutoClassifier(time_budget=60, families=("weighted", "gated"), cv=2, max_trials=3,
                          progress_bar=False, random_state=0).fit(X, y)
    assert set(auto.leaderboard_["family"]) == {"weighted", "gated"}
    gated = auto.leaderboard_[auto.leaderboard_["family"].eq("gated")]
    assert gated["state"].eq("COMPLETE").all() and (gated["score"] > 0.8).all()


def test_regressor_searches_stacking():
    X, y = load_diabetes(return_X_y=True)
    auto = AutoRegressor(time_budget=60, families=("stacking",), cv=3, max_trials=2,
                         progress_bar=False, random_state=0).fit(X, y)
    assert auto.best_family_ == "stacking"
    assert auto.best_score_ > 0.35


def test_bad_input_gives_clear_errors(task):
    X, y = task
    with pytest.raises(InvalidParameterError, match="time_budget"):
        AutoClassifier(time_budget=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="time_budget"):
        AutoClassifier(time_budget=-5).fit(X, y)
    with pytest.raises(ValueError, match="Unknown family 'boosting'"):
        AutoClassifier(families=("weighted", "boosting")).fit(X, y)
    with pytest.raises(ValueError, match="families"):
        AutoClassifier(families=()).fit(X, y)
    with pytest.raises(ValueError, match="storage"):
        AutoClassifier(storage="sqlite:////no/such/dir/x.db").fit(X, y)


def _tree_family(name: str) -> Family:
    def make(context):
        return DecisionTreeClassifier(random_state=0)

    def space(trial, context, prefix):
        return {"max_depth": trial.suggest_int(f"{prefix}max_depth", 1, 8)}

    return Family(name, make, space, first={"max_depth": 2})


def test_resuming_with_other_families_is_a_clear_error(task, tmp_path):
    X, y = task
    deep, shallow, other = _tree_family("deep"), _tree_family("shallow"), _tree_family("other")
    common = dict(time_budget=60, cv=2, max_trials=1, progress_bar=False, random_state=0,
                  storage=f"journal:{tmp_path / 'auto.log'}", study_name="resumed")
    AutoClassifier(families=(deep, shallow), **common).fit(X, y)
    message = (r"'resumed' \(`study_name`\) was searched with families=\['deep', 'shallow'\]; "
               r"this fit has families=\['deep', 'other'\]")
    with pytest.raises(ValueError, match=message):
        AutoClassifier(families=(deep, other), **common).fit(X, y)
    # The same families in another order resume the study (in its stored order).
    auto = AutoClassifier(families=(shallow, deep), **common).fit(X, y)
    assert len(auto.study_.trials) == 2
    assert auto.study_.trials[1].distributions["family"].choices == ("deep", "shallow")


def test_a_database_url_gets_heartbeats_and_a_stale_trial_is_retried(task, tmp_path):
    import sqlite3
    import warnings

    import optuna

    from moensemble.search.storage import open_storage

    X, y = task
    url = f"sqlite:///{tmp_path / 'auto.db'}"
    # A trial left RUNNING by a process that died over an hour ago.
    study = optuna.create_study(storage=open_storage(url), study_name="auto",
                                direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dead = study.ask()
    dead.suggest_categorical("family", ["tree"])
    study._storage.record_heartbeat(dead._trial_id)
    with sqlite3.connect(tmp_path / "auto.db") as db:
        db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, '-1 hour')")

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Heartbeat of storage")
        auto = AutoClassifier(time_budget=60, families=(_tree_family("tree"),), cv=2,
                              max_trials=2, progress_bar=False, random_state=0, storage=url,
                              study_name="auto").fit(X, y)
    states = [t.state.name for t in sorted(auto.study_.trials, key=lambda t: t.number)]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    retried = auto.study_.trials[1]
    assert retried.system_attrs.get("failed_trial") == 0  # the retry of the dead trial
    with sqlite3.connect(tmp_path / "auto.db") as db:  # the search's trials sent heartbeats
        beats = db.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0]
    assert beats == 3
