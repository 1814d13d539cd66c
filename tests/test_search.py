"""SearchCV and the search spaces: better than default, pruning, storage and resume, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from functools import partial

import numpy as np
import optuna
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.tree import DecisionTreeClassifier

from moensemble.search import SearchCV, moe_space, stacking_space, weighted_space
from moensemble.search.storage import mask_url

COMPLETE = optuna.trial.TrialState.COMPLETE
PRUNED = optuna.trial.TrialState.PRUNED


def tree_space(trial):
    return {
        "max_depth": trial.suggest_int("max_depth", 1, 12),
        "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 50, log=True),
    }


def c_space(trial):
    return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}


@pytest.fixture(scope="module")
def noisy():
    # 25 % flipped labels: an unpruned tree (the default) memorises the noise.
    return make_classification(
        n_samples=600, n_features=10, n_informative=4, flip_y=0.25, random_state=0
    )


def test_search_beats_the_default_configuration(noisy):
    X, y = noisy
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)
    default = cross_val_score(DecisionTreeClassifier(random_state=0), X_train, y_train, cv=3)
    search = SearchCV(
        DecisionTreeClassifier(random_state=0), tree_space, n_trials=15, cv=3, random_state=0
    ).fit(X_train, y_train)
    assert search.best_score_ > default.mean() + 0.05
    held_out_default = DecisionTreeClassifier(random_state=0).fit(X_train, y_train)
    assert search.score(X_test, y_test) > held_out_default.score(X_test, y_test) + 0.03
    assert search.best_estimator_.get_params()["max_depth"] == search.best_params_["max_depth"]
    frame = search.trials_dataframe()
    assert len(frame) == 15 and (frame["state"] == "COMPLETE").all()


def test_space_may_return_an_estimator_and_best_params_replay_it(noisy):
    X, y = noisy

    def space(trial):
        if trial.suggest_categorical("model", ["tree", "logistic"]) == "tree":
            depth = trial.suggest_int("depth", 1, 6)
            return DecisionTreeClassifier(max_depth=depth, random_state=0)
        return LogisticRegression(C=trial.suggest_float("C", 1e-2, 1e2, log=True))

    search = SearchCV(None, space, n_trials=6, cv=3, scoring="accuracy", random_state=0)
    search.fit(X, y)
    assert type(search.best_params_) is type(search.best_estimator_)
    assert search.best_score_ == pytest.approx(
        cross_val_score(search.best_params_, X, y, cv=3).mean()
    )


def test_moe_trials_are_pruned_from_their_epoch_losses():
    from moensemble.moe import MoEClassifier

    X, y = make_classification(n_samples=300, n_features=8, random_state=0)
    net = MoEClassifier(n_experts=2, top_k=1, expert_hidden=(16,), max_epochs=12,
                        early_stopping=True, n_iter_no_change=50, batch_size=64, random_state=0)
    space = partial(moe_space, n_experts=2, top_k=1, router="topk", expert_width=16,
                    expert_depth=1, dropout=0.0, lr=(1e-6, 3e-2), batch_size=64,
                    aux_loss_coef=1e-2, max_epochs=12)
    search = SearchCV(
        net, space, n_trials=10, cv=2, random_state=0,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2),
    ).fit(X, y)
    pruned = search.study_.get_trials(states=(PRUNED,))
    complete = search.study_.get_trials(states=(COMPLETE,))
    assert pruned, "no trial was pruned"
    # A pruned trial stopped before its last epoch; complete ones reported every epoch.
    assert all(len(t.intermediate_values) < 12 for t in pruned)
    assert all(len(t.intermediate_values) == 12 for t in complete)
    # The learning rates the pruner stopped are below those that completed, on the whole.
    assert np.median([t.params["lr"] for t in pruned]) < max(t.params["lr"] for t in complete)


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_same_storage_and_name_resume_the_study(tmp_path, noisy, kind):
    X, y = noisy
    storage = (f"sqlite:///{tmp_path / 'search.db'}" if kind == "sqlite"
               else f"journal:{tmp_path / 'search.log'}")
    params = dict(n_trials=3, cv=2, storage=storage, study_name="resume", random_state=0)
    first = SearchCV(LogisticRegression(), c_space, **params).fit(X, y)
    assert len(first.study_.get_trials(states=(COMPLETE,))) == 3
    second = SearchCV(LogisticRegression(), c_space, **params).fit(X, y)
    assert len(second.study_.get_trials(states=(COMPLETE,))) == 6
    assert second.best_score_ >= first.best_score_


KILLED_SCRIPT = """
import sys, time
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from moensemble.search import SearchCV

class Slow(LogisticRegression):
    def fit(self, X, y):
        time.sleep(0.1)
        return super().fit(X, y)

def space(trial):
    return {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}

X, y = make_classification(n_samples=200, random_state=0)
SearchCV(Slow(), space, n_trials=10_000, cv=2, storage=sys.argv[1], study_name="killed").fit(X, y)
"""


def test_killed_search_resumes_with_its_finished_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'killed.db'}"
    script = tmp_path / "search.py"
    script.write_text(textwrap.dedent(KILLED_SCRIPT))
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen([sys.executable, str(script), storage], env=env)
    try:
        finished, waited = 0, 0.0
        while finished < 3 and waited < 120:
            time.sleep(0.5)
            waited += 0.5
            assert proc.poll() is None, "the search process ended on its own"
            try:
                study = optuna.load_study(study_name="killed", storage=storage)
                finished = len(study.get_trials(states=(COMPLETE,)))
            except KeyError:  # study not created yet
                pass
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = len(optuna.load_study(study_name="killed", storage=storage)
                 .get_trials(states=(COMPLETE,)))
    assert before >= 3

    X, y = make_classification(n_samples=200, random_state=0)
    resumed = SearchCV(LogisticRegression(), c_space, n_trials=2, cv=2, storage=storage,
                       study_name="killed").fit(X, y)
    assert len(resumed.study_.get_trials(states=(COMPLETE,))) == before + 2


STALLED_SCRIPT = """
import sys, time
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from moensemble.search import SearchCV

def space(trial):
    params = {"C": trial.suggest_float("C", 1e-3, 1e2, log=True)}
    if trial.number == 3:  # hangs, so that the test kills the process in this trial
        time.sleep(600)
    return params

X, y = make_classification(n_samples=200, random_state=0)
SearchCV(LogisticRegression(), space, n_trials=10, cv=2, storage=sys.argv[1],
         study_name="stalled").fit(X, y)
"""


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resume_after_sigkill_retries_the_trial_left_running(tmp_path, kind):
    """A URL storage gets the workers' fault handling: the dead trial is failed and retried."""
    from moensemble.search.storage import open_storage

    storage = (f"sqlite:///{tmp_path / 'stalled.db'}" if kind == "sqlite"
               else f"journal:{tmp_path / 'stalled.log'}")
    script = tmp_path / "search.py"
    script.write_text(STALLED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}

    def trials():
        try:
            study = optuna.load_study(study_name="stalled", storage=open_storage(storage))
        except KeyError:  # not created yet
            return []
        return sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)

    proc = subprocess.Popen([sys.executable, str(script), storage], env=env)
    try:
        for _ in range(600):  # at most 120 s
            states = [t.state for t in trials()]
            if states == [COMPLETE] * 3 + [optuna.trial.TrialState.RUNNING] and \
                    "C" in trials()[3].params:
                break
            assert proc.poll() is None, "the search process ended on its own"
            time.sleep(0.2)
        else:
            raise AssertionError(f"the search never reached its stalled trial: {states}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    stalled = trials()[3]
    assert stalled.state == optuna.trial.TrialState.RUNNING  # left behind by the dead process
    if kind == "sqlite":  # the grace period passes: its last heartbeat is an hour old
        import sqlite3

        with sqlite3.connect(tmp_path / "stalled.db") as db:
            changed = db.execute("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, "
                                 "'-1 hour') WHERE trial_id = ?", (stalled._trial_id,)).rowcount
        assert changed == 1  # the dead process sent heartbeats

    X, y = make_classification(n_samples=200, random_state=0)
    resumed = SearchCV(LogisticRegression(), c_space, n_trials=2, cv=2, storage=storage,
                       study_name="stalled").fit(X, y)
    by_number = {t.number: t for t in resumed.study_.get_trials(deepcopy=False)}
    assert sorted(by_number) == list(range(6))
    assert by_number[3].state == optuna.trial.TrialState.FAIL
    # The stalled configuration ran again (one of the two new trials), then a new one.
    assert by_number[4].params == stalled.params
    assert [by_number[n].state for n in (0, 1, 2, 4, 5)] == [COMPLETE] * 5
    assert len(resumed.study_.get_trials(states=(COMPLETE,))) == 5


def test_a_user_storage_object_is_used_as_given(tmp_path, noisy):
    X, y = noisy
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'own.db'}")
    search = SearchCV(LogisticRegression(), c_space, n_trials=1, cv=2, storage=storage,
                      study_name="own").fit(X, y)
    assert search.study_._storage._backend is storage
    assert storage.heartbeat_interval is None  # theirs to configure


def test_resuming_with_other_categorical_choices_is_a_clear_error(tmp_path, noisy):
    X, y = noisy

    def solver_space(solvers):
        def space(trial):
            return {"solver": trial.suggest_categorical("solver", solvers)}

        return space

    params = dict(n_trials=2, cv=2, storage=f"journal:{tmp_path / 's.log'}",
                  study_name="choices", random_state=0)
    SearchCV(LogisticRegression(), solver_space(["lbfgs", "liblinear"]), **params).fit(X, y)
    for error_score in (np.nan, "raise"):
        with pytest.raises(ValueError, match=r"study 'choices'.*solver: \['lbfgs', "
                           r"'liblinear'\].*new `study_name`"):
            SearchCV(LogisticRegression(), solver_space(["lbfgs", "newton-cg"]),
                     error_score=error_score, **params).fit(X, y)


def test_multi_objective_returns_a_pareto_front(noisy):
    X, y = noisy
    search = SearchCV(DecisionTreeClassifier(random_state=0), tree_space, n_trials=12, cv=2,
                      objectives=("score", "n_params"), random_state=0).fit(X, y)
    front = search.pareto_front_
    assert list(front.columns[:3]) == ["trial", "score", "n_params"]
    values = front[["score", "n_params"]].to_numpy()
    for i, (score, cost) in enumerate(values):  # no front member dominates another
        others = np.delete(values, i, axis=0)
        assert not np.any((others[:, 0] >= score) & (others[:, 1] <= cost)
                          & ((others[:, 0] > score) | (others[:, 1] < cost)))
    assert search.best_score_ == front["score"].max()
    # Larger trees cost more parameters: the front trades score for size.
    assert len(front) >= 2
    assert front["n_params"].iloc[0] > front["n_params"].min()


def test_unopenable_storage_is_named_without_its_password(noisy):
    X, y = noisy
    url = "postgresql://alice:s3cret-pw@127.0.0.1:1/nodb"
    with pytest.raises(ValueError, match="storage") as info:
        SearchCV(LogisticRegression(), c_space, n_trials=1, storage=url).fit(X, y)
    assert "postgresql://alice:***@127.0.0.1:1/nodb" in str(info.value)
    assert "s3cret" not in str(info.value)
    assert "resume" not in str(info.value)  # nothing was resumed: the URL is the fault
    with pytest.raises(ValueError, match="sqlite:////no/such/dir/x.db"):
        SearchCV(LogisticRegression(), c_space, n_trials=1,
                 storage="sqlite:////no/such/dir/x.db").fit(X, y)
    assert "s3cret" not in mask_url("mysql://u:s3cret@h/db")


def test_bad_search_parameters_name_the_parameter(noisy):
    X, y = noisy
    with pytest.raises(ValueError, match="objectives"):
        SearchCV(LogisticRegression(), c_space, objectives=("score", "speed")).fit(X, y)
    with pytest.raises(ValueError, match="n_trials"):
        SearchCV(LogisticRegression(), c_space, n_trials=None).fit(X, y)
    with pytest.raises(ValueError, match="n_trials"):
        SearchCV(LogisticRegression(), c_space, n_trials=0).fit(X, y)


def test_an_inconsistent_space_fails_the_fit_with_its_own_message(noisy):
    from moensemble.moe import MoEClassifier

    X, y = noisy
    space = partial(moe_space, n_experts=(2, 4), top_k=(3, 4), router="topk")
    with pytest.raises(ValueError, match="top_k must not exceed n_experts"):
        SearchCV(MoEClassifier(), space, n_trials=2, cv=2).fit(X, y)


def test_moe_space_is_consistent_and_rejects_impossible_ranges():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        params = moe_space(study.ask(), n_experts=(2, 6), top_k=(1, 4))
        assert 1 <= params["top_k"] <= min(4, params["n_experts"])
        assert params["router"] in ("softmax", "topk", "switch", "expert_choice")
    trial = optuna.create_study().ask()
    with pytest.raises(ValueError, match="top_k"):
        moe_space(trial, n_experts=(2, 8), top_k=(3, 4))
    with pytest.raises(ValueError, match="n_experts.*empty"):
        moe_space(trial, n_experts=(8, 2))
    with pytest.raises(ValueError, match="router"):
        moe_space(trial, router=("topk", "hash"))
    with pytest.raises(ValueError, match="batch_size.*empty"):
        moe_space(trial, batch_size=())


def test_weighted_and_stacking_spaces():
    members = [("a", LogisticRegression()), ("b", DecisionTreeClassifier())]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(20):
        params = weighted_space(study.ask(), members)
        assert 1 <= len(params["estimators"]) <= 2
    with pytest.raises(ValueError, match="members"):
        weighted_space(study.ask(), [])
    params = stacking_space(optuna.trial.FixedTrial(
        {"final_estimator": "linear", "regularization": 0.5, "passthrough": True}))
    assert params["passthrough"] is True
    assert params["final_estimator"][-1].C == 0.5
    with pytest.raises(ValueError, match="final_estimator"):
        stacking_space(study.ask(), final_estimator="svm")
