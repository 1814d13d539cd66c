"""AutoClassifier / AutoRegressor: portfolio, bags and OOF, selection, budget, errors.

The budget tests run on a fake clock (``moensemble.search.bagging.clock``) that the members
advance by a fixed cost per fit, so that no assertion depends on the machine's speed.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import load_diabetes, make_classification
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.search import AutoClassifier, AutoRegressor, Family, bagging
from moensemble.search.portfolio import boosting_available, default_portfolio
from moensemble.search.selection import ensemble_selection, prediction_loss

FAST = dict(time_budget=120, families=("weighted", "stacking"), cv=2, max_trials=3,
            progress_bar=False, random_state=0)


@parametrize_with_checks(
    [
        AutoClassifier(base_estimators=[("lr", LogisticRegression()),
                                        ("tree", DecisionTreeClassifier(max_depth=3))], **FAST),
        AutoRegressor(base_estimators=[("ridge", Ridge()),
                                       ("tree", DecisionTreeRegressor(max_depth=3))], **FAST),
    ],
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def task():
    return make_classification(n_samples=300, n_features=8, n_informative=5, random_state=0)


MEMBERS = [("logistic", LogisticRegression(max_iter=500)),
           ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
           ("knn", KNeighborsClassifier(15)),
           ("nb", GaussianNB())]


# --------------------------------------------------------------------------- fake clock
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(bagging, "clock", fake)
    return fake


class Costly(ClassifierMixin, BaseEstimator):
    """A logistic regression whose fit costs ``seconds + seconds_per_row * rows`` fake seconds."""

    def __init__(self, seconds=0.0, seconds_per_row=0.0, log=None):
        self.seconds = seconds
        self.seconds_per_row = seconds_per_row
        self.log = log

    def fit(self, X, y):
        bagging.clock.now += self.seconds + self.seconds_per_row * X.shape[0]
        if self.log is not None:  # a file: clones share it (process-safe count)
            with open(self.log, "a") as f:
                f.write(f"{X.shape[0]}\n")
        self.model_ = LogisticRegression().fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.model_.predict(X)


def test_budget_stops_the_portfolio_on_a_fake_clock(task, clock):
    X, y = task
    members = [(f"m{i}", Costly(seconds=4.0)) for i in range(4)]  # 12 s a trial at cv=3
    auto = AutoClassifier(time_budget=30, base_estimators=members, families=(), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert auto.fit_time_ <= 30 * 1.1
    assert list(board.loc[["m0", "m1"], "state"]) == ["COMPLETE", "COMPLETE"]
    # The third would end at 36 s: skipped before it starts, from the fold times so far.
    assert board.loc["m2", "state"] == "PRUNED"
    assert board.loc["m2", "note"].startswith("skipped: needs about 12.0 s")
    assert set(auto.ensemble_weights_.index) <= {"m0", "m1"}


def test_an_unseen_entry_is_expected_to_cost_the_slowest_fold_so_far(task, clock, tmp_path):
    X, y = task
    log = tmp_path / "fits.txt"
    members = [("cheap", Costly(seconds=0.2)), ("slow", Costly(seconds=5.0)),
               ("unseen", Costly(seconds=5.0, log=str(log)))]
    auto = AutoClassifier(time_budget=30, base_estimators=members, families=(), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    # 13.8 s left after 15.6: the median fold (2.6 s) would start it and waste a fold.
    note = auto.leaderboard_.set_index("name").loc["unseen", "note"]
    assert note.startswith("skipped: needs about 15.0 s")
    assert _fits(log) == []


def _fits(log) -> list[int]:
    return [int(line) for line in log.read_text().split()] if log.exists() else []


def test_a_slow_member_is_timed_on_a_subsample_and_skipped(clock, tmp_path):
    X, y = make_classification(n_samples=3000, n_features=5, random_state=0)
    log = tmp_path / "fits.txt"
    members = [("cheap", Costly(seconds=0.1)),
               ("slow", Costly(seconds_per_row=0.01, log=str(log)))]  # 20 s a fold of 2000 rows
    auto = AutoClassifier(time_budget=30, base_estimators=members, families=(), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert board.loc["slow", "state"] == "PRUNED" and "needs about" in board.loc["slow", "note"]
    assert _fits(log) == [250]  # one subsample fit, no fold
    assert auto.fit_time_ <= 30 * 1.1


def test_no_subsample_timing_when_little_time_is_left(clock, tmp_path):
    X, y = make_classification(n_samples=3000, n_features=5, random_state=0)
    log = tmp_path / "fits.txt"
    # 11 s a fold of 2,000 rows: 1.4 s to time it, 33 s for 3 folds; 2.8 s of 40 left.
    members = [("cheap", Costly(seconds_per_row=0.0055)),
               ("unknown", Costly(seconds=0.1, log=str(log)))]
    auto = AutoClassifier(time_budget=40, base_estimators=members, families=("weighted",),
                          cv=3, progress_bar=False, random_state=0).fit(X, y)
    note = auto.leaderboard_.set_index("name").loc["unknown", "note"]
    assert note == "not run: too little time left to time it on a subsample"
    assert _fits(log) == []
    assert auto.fit_time_ <= 40 * 1.1


def test_a_budget_too_small_for_any_trial_says_so_and_keeps_the_folds_done(task, clock):
    X, y = task
    members = [("slow", Costly(seconds=20.0))]  # the first fold ends at 20 s of 30
    with pytest.warns(UserWarning, match=r"too small for any trial.*1 fold model\(s\) of 'slow'"):
        auto = AutoClassifier(time_budget=30, base_estimators=members, families=(), cv=3,
                              progress_bar=False, random_state=0).fit(X, y)
    assert auto.fit_time_ <= 30 * 1.1
    assert len(auto.best_estimator_.members["slow"].models) == 1
    assert auto.score(X, y) > 0.8


def test_network_training_stops_at_the_deadline(task, monkeypatch):
    from moensemble.moe import MoEClassifier

    class TickingClock(FakeClock):  # every read is half a second later
        def __call__(self) -> float:
            self.now += 0.5
            return self.now

    monkeypatch.setattr(bagging, "clock", TickingClock())
    X, y = task
    endless = MoEClassifier(n_experts=2, top_k=1, expert_hidden=(8,), max_epochs=100_000,
                            random_state=0)
    auto = AutoClassifier(time_budget=40, base_estimators=[("moe", endless)], families=(),
                          cv=2, progress_bar=False, random_state=0).fit(X, y)
    models = auto.best_estimator_.members["moe"].models
    assert len(models) == 2
    assert all(1 <= len(m.history_) < 100 for m in models)  # stopped by the clock
    assert all(m.callbacks is None for m in models)  # the deadline callback is not left behind
    assert auto.fit_time_ <= 40 * 1.1


# --------------------------------------------------------------------------- the final model
def test_final_ensemble_is_greedy_selection_over_every_trial(task):
    X, y = task
    auto = AutoClassifier(time_budget=120, base_estimators=MEMBERS, families=(), cv=3,
                          ensemble_size=25, ensemble_metric="log_loss", ensemble_bags=1,
                          temperature_scaling=False, blend_guard=None, progress_bar=False,
                          random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    trials = board.drop(index="ensemble")
    assert trials["state"].eq("COMPLETE").all() and len(trials) == 4
    assert trials["weight"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(trials.loc[auto.ensemble_weights_.index, "weight"],
                               auto.ensemble_weights_)
    w = auto.ensemble_weights_.to_numpy()  # pick counts over the best prefix of 25 picks
    assert any(np.allclose(w * k, np.round(w * k)) for k in range(1, 26))
    # Never worse than the best single trial on the loss it minimises.
    assert board.loc["ensemble", "loss"] <= trials["loss"].min() + 1e-12
    # predict_proba is the weighted average of the trials' bags.
    ens = auto.best_estimator_
    manual = sum(w * ens.trial_predictions(X, n) for n, w in auto.ensemble_weights_.items())
    np.testing.assert_allclose(auto.predict_proba(X), manual)
    bag = ens.members["logistic"].models
    assert len(bag) == 3  # one model per outer fold, no refit
    assert auto.score(X, y) > 0.85
    assert "final ensemble" in auto.fit_summary()


def test_selection_never_worse_than_the_best_and_blends_complementary_trials():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 400)
    truth = np.eye(2)[target]
    noisy = [np.clip(truth * 0.6 + 0.2 + rng.normal(0, 0.25, truth.shape), 0.01, None)
             for _ in range(3)]
    noisy = [p / p.sum(axis=1, keepdims=True) for p in noisy]
    weights = ensemble_selection(noisy, target, "classification", n_iter=25)
    blend = np.tensordot(weights, np.stack(noisy), axes=1)
    losses = [prediction_loss(p, target, "classification") for p in noisy]
    assert prediction_loss(blend, target, "classification") < min(losses)
    assert (weights > 0).sum() >= 2
    # A constant trial gets no weight next to informative ones.
    flat = np.full_like(truth, 0.5)
    assert ensemble_selection([*noisy, flat], target, "classification")[-1] == 0


def test_ensemble_trials_reuse_the_out_of_fold_predictions(task, tmp_path, clock):
    X, y = task
    log = tmp_path / "fits.txt"
    members = [("counted", Costly(log=str(log))), *MEMBERS[1:3]]
    auto = AutoClassifier(time_budget=120, families=("weighted", "stacking"),
                          base_estimators=members, cv=3, max_trials=8, progress_bar=False,
                          random_state=0).fit(X, y)
    board = auto.leaderboard_
    level2 = board[board["level"].eq(2) & board["state"].eq("COMPLETE")
                   & board["family"].ne("ensemble")]
    assert len(level2) >= 3 and set(level2["family"]) == {"weighted", "stacking"}
    level1 = set(board.loc[board["level"].eq(1), "name"])
    assert all(2 <= len(inputs) and set(inputs) <= level1 for inputs in level2["inputs"])
    assert any("counted" in inputs for inputs in level2["inputs"])
    assert len(_fits(log)) == 3  # once per outer fold, for every trial that read it
    assert len(auto.study_.trials) == 5


def test_refit_full_refits_the_selected_trials_on_all_rows(task):
    X, y = task
    auto = AutoClassifier(time_budget=120, base_estimators=MEMBERS, families=("stacking",),
                          cv=3, max_trials=6, refit_full=True, progress_bar=False,
                          random_state=0).fit(X, y)
    ens = auto.best_estimator_
    assert all(len(m.models) == 1 for m in ens.members.values())
    refit = auto.leaderboard_.set_index("name").loc[list(ens.members), "note"]
    assert refit.str.contains("refit on all rows").all()
    assert auto.score(X, y) > 0.85


# --------------------------------------------------------------------------- bad input
class Broken(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise ValueError("broken on purpose")


class NaNPredictor(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((X.shape[0], len(self.classes_)), np.nan)


def test_failing_and_nan_members_are_named_and_dropped(task):
    X, y = task
    members = [("broken", Broken()), ("nan", NaNPredictor()), *MEMBERS[:2]]
    with pytest.warns(UserWarning, match=r"broken \(failed: ValueError: broken on purpose\)"):
        auto = AutoClassifier(time_budget=120, base_estimators=members, families=(), cv=3,
                              refit_full=False,  # the bags, as the threshold below was set on
                              progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert board.loc["broken", "state"] == "FAIL"
    assert board.loc["nan", "state"] == "FAIL"
    assert "never blended" in board.loc["nan", "note"]
    assert not {"broken", "nan"} & set(auto.ensemble_weights_.index)
    assert auto.score(X, y) > 0.85


def test_every_trial_failing_raises_its_error(task):
    X, y = task
    with pytest.raises(ValueError, match="broken on purpose"):
        AutoClassifier(base_estimators=[("broken", Broken())], families=(), cv=2,
                       progress_bar=False).fit(X, y)


def test_bad_input_gives_clear_errors(task):
    X, y = task
    with pytest.raises(InvalidParameterError, match="time_budget"):
        AutoClassifier(time_budget=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="time_budget"):
        AutoClassifier(time_budget=-5).fit(X, y)
    with pytest.raises(InvalidParameterError, match="ensemble_size"):
        AutoClassifier(ensemble_size=0).fit(X, y)
    with pytest.raises(ValueError, match="Unknown family 'boosting'"):
        AutoClassifier(families=("weighted", "boosting")).fit(X, y)
    with pytest.raises(ValueError, match="nothing to search"):
        AutoClassifier(families=(), base_estimators=[]).fit(X, y)
    with pytest.raises(ValueError, match="storage"):
        AutoClassifier(storage="sqlite:////no/such/dir/x.db").fit(X, y)


# --------------------------------------------------------------------------- portfolio
def test_portfolio_order_and_sparse_input():
    dense = [n for n, _ in default_portfolio("classification", sparse=False, non_negative=True)]
    assert dense[:4] == ["linear", "naive_bayes", "knn", "extra_trees"]
    assert "hist_gb" in dense
    sparse = dict(default_portfolio("classification", sparse=True, non_negative=True))
    assert not {"hist_gb", "xgboost", "catboost", "mlp"} & set(sparse)
    # Text: naive Bayes and every linear model come before the first tree model.
    order = list(sparse)
    text_members = ["naive_bayes", "sgd", "linear_svm", "linear_C10", "linear"]
    assert order[:len(text_members)] == text_members
    assert "TruncatedSVD" in repr(sparse["extra_trees"])  # forests get an SVD of the CSR
    assert "naive_bayes" not in dict(default_portfolio("classification", sparse=True,
                                                       non_negative=False))
    regression = [n for n, _ in default_portfolio("regression", sparse=False, non_negative=True)]
    assert "naive_bayes" not in regression and regression[0] == "linear"


@pytest.mark.parametrize("library", ["lightgbm", "xgboost", "catboost"])
def test_boosting_libraries_join_the_portfolio(task, library):
    pytest.importorskip(library)
    X, y = task
    assert boosting_available(library)
    entries = dict(default_portfolio("classification", sparse=False, non_negative=True))
    auto = AutoClassifier(time_budget=120, base_estimators=[(library, entries[library])],
                          families=(), cv=2, progress_bar=False, random_state=0).fit(X, y)
    assert auto.leaderboard_.set_index("name").loc[library, "score"] > 0.8


def test_sparse_text_like_input_stays_sparse(task):
    X, y = task
    X = sp.csr_matrix(np.abs(X))
    auto = AutoClassifier(time_budget=120, cv=2, max_trials=3, families=("stacking",),
                          progress_bar=False, random_state=0).fit(X, y)
    names = list(auto.leaderboard_["name"])
    assert names and "hist_gb" not in names
    assert set(auto.leaderboard_.query("phase == 'portfolio'")["state"]) <= {"COMPLETE",
                                                                              "PRUNED"}
    assert auto.score(X, y) > 0.7


# --------------------------------------------------------------------------- the search
@pytest.mark.parametrize("cost", ["n_params", "latency"])
def test_multi_objective_pareto_front(task, cost):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.INFO)
    X, y = task
    auto = AutoClassifier(time_budget=60, families=("linear", "knn"), base_estimators=[], cv=2,
                          max_trials=6, multi_objective=True, cost=cost, progress_bar=False,
                          random_state=0).fit(X, y)
    assert optuna.logging.get_verbosity() == optuna.logging.INFO  # restored after fit
    front = auto.pareto_front_[["score", cost]].to_numpy()
    assert len(front) and (front[:, 1] > 0).all()
    board = auto.leaderboard_.dropna(subset=["score", cost])[["score", cost]].to_numpy()
    for score, value in front:  # nothing on the leaderboard dominates a front member
        assert not np.any((board[:, 0] >= score) & (board[:, 1] <= value)
                          & ((board[:, 0] > score) | (board[:, 1] < value)))


def _tree_family(name: str) -> Family:
    def make(context):
        return DecisionTreeClassifier(random_state=0)

    def space(trial, context, prefix):
        return {"max_depth": trial.suggest_int(f"{prefix}max_depth", 1, 8)}

    return Family(name, make, space, first={"max_depth": 2})


def test_a_new_family_is_one_registry_entry(task):
    X, y = task
    auto = AutoClassifier(time_budget=60, families=(_tree_family("tree"),), base_estimators=[],
                          cv=3, max_trials=3, progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_[auto.leaderboard_["family"].eq("tree")]
    assert len(board) == 3 and board["state"].eq("COMPLETE").all()
    assert board.set_index("trial").loc[0, "params"] == {"max_depth": 2}  # the first trial
    assert auto.best_family_ == "tree"
    assert auto.best_score_ == board["score"].max()


def test_gated_family_is_searchable_on_request(task):
    X, y = task
    auto = AutoClassifier(time_budget=120, families=("gated",), base_estimators=[], cv=2,
                          max_trials=1, progress_bar=False, random_state=0).fit(X, y)
    gated = auto.leaderboard_[auto.leaderboard_["family"].eq("gated")]
    assert gated["state"].eq("COMPLETE").all() and (gated["score"] > 0.8).all()


def test_regressor_blends_and_stacks():
    X, y = load_diabetes(return_X_y=True)
    members = [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))]
    auto = AutoRegressor(time_budget=60, families=("stacking",), base_estimators=members, cv=3,
                         max_trials=3, ensemble_bags=1, progress_bar=False,
                         random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert board.loc["ensemble", "score"] > 0.35
    # One selection on all rows keeps its best prefix: never worse than the best trial there.
    assert board.loc["ensemble", "loss"] <= board.drop(index="ensemble")["loss"].min() + 1e-9
    assert auto.predict(X).shape == y.shape


def test_resuming_with_other_families_is_a_clear_error(task, tmp_path):
    X, y = task
    deep, shallow, other = _tree_family("deep"), _tree_family("shallow"), _tree_family("other")
    common = dict(time_budget=60, cv=2, max_trials=1, progress_bar=False, random_state=0,
                  base_estimators=[], storage=f"journal:{tmp_path / 'auto.log'}",
                  study_name="resumed")
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
                              base_estimators=[], max_trials=2, progress_bar=False,
                              random_state=0, storage=url, study_name="auto").fit(X, y)
    states = [t.state.name for t in sorted(auto.study_.trials, key=lambda t: t.number)]
    assert states == ["FAIL", "COMPLETE", "COMPLETE"]
    retried = auto.study_.trials[1]
    assert retried.system_attrs.get("failed_trial") == 0  # the retry of the dead trial
    with sqlite3.connect(tmp_path / "auto.db") as db:  # the search's trials sent heartbeats
        beats = db.execute("SELECT COUNT(*) FROM trial_heartbeats").fetchone()[0]
    assert beats == 3


def test_clone_keeps_the_parameters():
    auto = AutoClassifier(time_budget=5, ensemble_size=50, refit_full=True)
    assert clone(auto).get_params()["ensemble_size"] == 50


def test_docstring_examples_run():
    import doctest

    from moensemble.search import auto, selection

    for module in (auto, selection):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


def test_a_raw_table_goes_through_the_table_encoder():
    """A DataFrame with gaps, string categories, a date and text needs no preprocessing."""
    from sklearn.model_selection import train_test_split

    from moensemble.datasets import make_mixed_table

    frame, y = make_mixed_table(n_samples=300, random_state=0)
    train, test, y_train, y_test = train_test_split(frame, y, test_size=0.3, random_state=0,
                                                    stratify=y)
    auto = AutoClassifier(families=("linear",), max_trials=1, cv=2, progress_bar=False,
                          random_state=0).fit(train, y_train)
    assert auto.table_encoder_ is not None
    assert auto.n_features_in_ == frame.shape[1]
    assert list(auto.feature_names_in_) == list(frame.columns)
    baseline = max(np.mean(y_test == c) for c in np.unique(y_train))
    assert auto.score(test, y_test) > baseline + 0.05
    with pytest.raises(ValueError, match=frame.columns[0]):
        auto.predict(test.drop(columns=frame.columns[0]))
    with pytest.raises(ValueError, match="missing value"):
        AutoClassifier(max_trials=1, cv=2, progress_bar=False).fit(
            train, y_train.where(np.arange(len(y_train)) != 3))


def test_a_trial_below_chance_is_left_out_of_the_final_ensemble():
    from sklearn.dummy import DummyClassifier

    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3,
                               weights=[0.6, 0.2, 0.2], random_state=0)
    members = [("lr", LogisticRegression(max_iter=500)),
               ("coin", DummyClassifier(strategy="uniform", random_state=0))]
    auto = AutoClassifier(time_budget=30, base_estimators=members, families=(), cv=3,
                          progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert board.loc["coin", "state"] == "COMPLETE"
    assert board.loc["coin", "score"] < 0.6  # below always answering the majority class
    assert "coin" not in auto.ensemble_weights_.index
    assert list(auto.ensemble_weights_.index) == ["lr"]
