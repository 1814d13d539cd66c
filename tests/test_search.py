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
from moensemble.search.storage import mask_url, open_storage

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


def _lr_space(c=None, max_iter=None, solver=("lbfgs", "liblinear"), extra=None, drop=None):
    """A LogisticRegression space; each argument changes one parameter's distribution."""
    c = c or dict(low=1e-3, high=1e2, log=True)
    max_iter = max_iter or dict(low=50, high=200)

    def space(trial):
        params = {}
        if drop != "C":
            suggest = trial.suggest_int if c.get("int") else trial.suggest_float
            params["C"] = suggest("C", **{k: v for k, v in c.items() if k != "int"})
        params["max_iter"] = trial.suggest_int("max_iter", **max_iter)
        params["solver"] = trial.suggest_categorical("solver", solver)
        if extra:
            params["tol"] = trial.suggest_float("tol", 1e-5, 1e-3, log=True)
        return params

    return space


# (changed space, what the error says about it): every kind of parameter, every field.
SPACE_CHANGES = {
    "float range": (dict(c=dict(low=1e-2, high=1e2, log=True)),
                    r"parameter 'C' changed from float in \[0.001, 100.0\], log \(trial 0\) "
                    r"to float in \[0.01, 100.0\], log"),
    "float log": (dict(c=dict(low=1e-3, high=1e2)),
                  r"'C' changed from float in \[0.001, 100.0\], log \(trial 0\) to float in "
                  r"\[0.001, 100.0\]\."),
    "float step": (dict(c=dict(low=1e-3, high=1e2, step=0.5)),
                   r"'C' changed .* to float in \[0.001, 99.501\], step 0.5"),
    "float to int": (dict(c=dict(low=1, high=100, int=True)),
                     r"'C' changed from float in \[0.001, 100.0\], log \(trial 0\) to int in "
                     r"\[1, 100\]"),
    "int range": (dict(max_iter=dict(low=50, high=300)),
                  r"'max_iter' changed from int in \[50, 200\] \(trial 0\) to int in \[50, 300\]"),
    "int log": (dict(max_iter=dict(low=50, high=200, log=True)),
                r"'max_iter' changed .* to int in \[50, 200\], log"),
    "int step": (dict(max_iter=dict(low=50, high=200, step=10)),
                 r"'max_iter' changed .* to int in \[50, 200\], step 10"),
    "choices": (dict(solver=("lbfgs", "newton-cg")),
                r"'solver' changed from categorical \['lbfgs', 'liblinear'\] \(trial 0\) to "
                r"categorical \['lbfgs', 'newton-cg'\]"),
    "choice order": (dict(solver=("liblinear", "lbfgs")),
                     r"'solver' changed .* to categorical \['liblinear', 'lbfgs'\]"),
    "added": (dict(extra=True), r"parameter 'tol' is new \(float in \[1e-05, 0.001\], log\)"),
    "removed": (dict(drop="C"), r"parameter 'C' is no longer asked for \(trial 0 drew it "
                r"from float in \[0.001, 100.0\], log\)"),
}


@pytest.mark.parametrize("kind", ["sqlite", "journal", "memory"])
def test_resuming_with_a_changed_space_is_a_clear_error_before_any_trial(tmp_path, kind):
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    storage = {"sqlite": f"sqlite:///{tmp_path / 's.db'}", "journal": f"journal:{tmp_path / 's'}",
               "memory": optuna.storages.InMemoryStorage()}[kind]
    params = dict(n_trials=2, cv=2, storage=storage, study_name="space", random_state=0)
    first = SearchCV(LogisticRegression(), _lr_space(), **params).fit(X, y)
    assert len(first.study_.trials) == 2
    for change, (changed, message) in SPACE_CHANGES.items():
        for error_score in (np.nan, "raise"):
            with pytest.raises(ValueError, match=message) as info:
                SearchCV(LogisticRegression(), _lr_space(**changed), error_score=error_score,
                         **params).fit(X, y)
            assert "study 'space'" in str(info.value), change
            assert "new `study_name`" in str(info.value), change
            assert str(info.value).count("parameter '") == 1, change  # only what changed
    # Refused before the first new trial: nothing was added to the study.
    assert len(optuna.load_study(study_name="space", storage=open_storage(storage)).trials) == 2
    resumed = SearchCV(LogisticRegression(), _lr_space(), **params).fit(X, y)  # the old space
    assert len(resumed.study_.get_trials(states=(COMPLETE,))) == 4
    assert 1e-3 <= resumed.best_params_["C"] <= 1e2


def test_a_changed_space_is_refused_for_a_given_study_too(noisy):
    X, y = noisy
    study = optuna.create_study(direction="maximize")
    SearchCV(LogisticRegression(), c_space, n_trials=1, cv=2, study=study).fit(X, y)
    with pytest.raises(ValueError, match=r"'C' changed .* to float in \[1.0, 2.0\].*another "
                       "`study`"):
        SearchCV(LogisticRegression(), lambda t: {"C": t.suggest_float("C", 1.0, 2.0)},
                 n_trials=1, cv=2, study=study).fit(X, y)
    assert len(study.trials) == 1


def test_conditional_spaces_resume_and_their_changes_are_found(noisy):
    """Ranges that depend on earlier values, branches, and failed trials are compared per
    trial: the same space resumes, a change in one branch is named."""
    from moensemble.search.trials import space_changes

    X, y = noisy

    def branchy(bound):
        def space(trial):
            if trial.suggest_categorical("model", ["tree", "logistic"]) == "tree":
                depth = trial.suggest_int("depth", 1, 6)
                leaf = trial.suggest_int("leaf", 1, depth + bound)  # a range set by `depth`
                return DecisionTreeClassifier(max_depth=depth, min_samples_leaf=leaf)
            c = trial.suggest_float("C", 1e-2, 1e2, log=True)
            if c > 30:  # a space that raises for some values: FAIL trials, partial params
                raise RuntimeError("C too large")
            return LogisticRegression(C=c, tol=trial.suggest_float("tol", 1e-5, 1e-3))

        return space

    params = dict(n_trials=12, cv=2, scoring="accuracy", random_state=0,
                  storage=optuna.storages.InMemoryStorage(), study_name="branchy")
    first = SearchCV(None, branchy(0), **params).fit(X, y)
    states = {t.state for t in first.study_.trials}
    assert {COMPLETE, optuna.trial.TrialState.FAIL} <= states
    assert {t.params["model"] for t in first.study_.trials} == {"tree", "logistic"}
    assert space_changes(first.study_, branchy(0)) == []
    again = SearchCV(None, branchy(0), **{**params, "n_trials": 2}).fit(X, y)
    assert len(again.study_.trials) == 14
    with pytest.raises(ValueError, match=r"'leaf' changed from int in \[1, (\d)\] \(trial "
                       r"\d+\) to int in \[1, \d\]") as info:
        SearchCV(None, branchy(1), **params).fit(X, y)
    assert "'depth'" not in str(info.value) and "'C'" not in str(info.value)


def _float_x(trial):
    return trial.suggest_float("x", 1.0, 2.0)


def _choice_x(trial):
    return trial.suggest_categorical("x", [1.0, 2.0])


@pytest.mark.parametrize("first, later, held", [
    (_float_x, lambda trial: trial.suggest_float("x", 1.0, 2.0, log=True),
     r"float in \[1.0, 2.0\]"),
    (_float_x, lambda trial: trial.suggest_int("x", 1, 2), r"float in \[1.0, 2.0\]"),
    (_choice_x, lambda trial: trial.suggest_categorical("x", [1.0, 3.0]),
     r"categorical \[1.0, 2.0\]"),
], ids=["log", "kind", "choices"])
@pytest.mark.parametrize("error_score", [np.nan, "raise"])
def test_a_name_drawn_from_two_distributions_stops_with_a_clear_error(noisy, first, later, held,
                                                                     error_score):
    """What no replay can see before the first trial (a branch no stored trial took) still
    stops the search at its first refused trial, with the study's distributions named."""
    X, y = noisy

    def space(trial):
        (first if trial.number == 0 else later)(trial)
        return {"C": 1.0}

    search = SearchCV(LogisticRegression(), space, n_trials=5, cv=2, error_score=error_score)
    with pytest.raises(ValueError, match=rf"another distribution .*study holds 'x': {held}\..*"
                       "new `study_name`"):
        search.fit(X, y)
    assert len(search.study_.trials) == 2  # stopped at the first refused trial


def test_the_library_spaces_resume_without_a_false_change():
    """The spaces shipped here (conditional ones included) replay as they were drawn."""
    from moensemble.search.trials import space_changes

    members = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier())]
    spaces = [partial(moe_space, n_experts=(2, 8), top_k=(1, 4)),
              partial(weighted_space, members=members), stacking_space]
    for space in spaces:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(15):
            trial = study.ask()
            space(trial)
            study.tell(trial, 0.0)
        assert space_changes(study, space) == [], space


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
    bad = {"n_trials": [0, -1, 2.5, "3", True, np.float64(2.0)],
           "timeout": [float("nan"), -1.0, 0, float("inf"), "5", True],
           "n_jobs": [0, -2, 1.5]}
    for name, values in bad.items():
        for value in values:
            with pytest.raises((ValueError, TypeError), match=f"[`']{name}[`'] (parameter of "
                               f"SearchCV )?must be") as info:
                SearchCV(LogisticRegression(), c_space, **{"n_trials": 1, name: value}).fit(X, y)
            assert repr(value) in str(info.value) or str(value) in str(info.value)


@pytest.mark.parametrize("error_score", [np.nan, "raise"])
def test_a_space_that_raises_is_named_as_the_fault(noisy, error_score):
    X, y = noisy

    def space(trial):
        c = trial.suggest_float("C", 1e-3, 1e2, log=True)
        return {"C": c, "solver": {"lbfgs": "lbfgs"}["newton"]}  # the user's bug

    search = SearchCV(LogisticRegression(), space, n_trials=3, cv=2, error_score=error_score)
    with pytest.raises(ValueError, match=r"`space` raised KeyError: 'newton' \(trial \d, "
                       r"values drawn so far: \{'C': [\d.e-]+\}\)") as info:
        search.fit(X, y)
    assert isinstance(info.value.__cause__, KeyError)
    states = [t.state for t in search.study_.trials]
    assert states == [optuna.trial.TrialState.FAIL] * (1 if error_score == "raise" else 3)
    with pytest.raises(ValueError, match=r"`space` raised TypeError: .*takes 0 positional"):
        SearchCV(LogisticRegression(), lambda: {}, n_trials=1, cv=2).fit(X, y)


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


@pytest.mark.parametrize("sparse", [True, False])
def test_the_automl_moe_space_draws_no_router_lasso_on_sparse_input(sparse):
    from moensemble.search.families import FAMILIES, SearchContext

    context = SearchContext(task="classification", members=[], inner_cv=2, memory=None,
                            n_jobs=1, random_state=0, sparse=sparse, n_samples=500,
                            n_features=2000)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = set()
    for _ in range(30):
        params = FAMILIES["moe"].space(study.ask(), context, "moe__")
        drawn.add(params.get("moe__router_l1", 0.0))
    assert (drawn == {0.0}) == sparse


def test_moe_space_draws_repartition_only_where_it_applies():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {True: set(), False: set()}
    for _ in range(40):
        params = moe_space(study.ask(), repartition=("none", "local_rules"))
        applies = params["router_l1"] != 0.0 and params["encoder"] is None and (
            params["num_embedding"] is None)
        drawn[applies].add(params["repartition"])
    assert drawn[True] == {"none", "local_rules"} and drawn[False] <= {"none"}
    # The default draws between 'none' and the estimators' default 'auto' where it applies.
    default, fresh = {True: set(), False: set()}, optuna.create_study(
        sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(40):
        params = moe_space(fresh.ask())
        default[params["router_l1"] != 0.0 and params["encoder"] is None and (
            params["num_embedding"] is None)].add(params["repartition"])
    assert default[True] == {"none", "auto"} and default[False] <= {"none"}
    # A single choice is taken where it applies.
    fixed = moe_space(study.ask(), encoder=None, router_l1=0.8, repartition="local_rules")
    assert fixed["repartition"] == "local_rules"
    guarded = moe_space(study.ask(), encoder=None, router_l1=0.8, repartition="auto")
    assert guarded["repartition"] == "auto"
    for space in (dict(sparse=True), dict(encoder=64)):
        assert moe_space(study.ask(), repartition="local_rules", **space)["repartition"] == "none"
    with pytest.raises(ValueError, match="repartition.*unknown choices"):
        moe_space(study.ask(), repartition="kmeans")
