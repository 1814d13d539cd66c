"""The AutoML's eighth-pass levers: ``refit_full='auto'`` (bag or refit, judged out of fold)
and search trials dropped for repeating an earlier trial's out-of-fold predictions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.datasets import make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import InvalidParameterError

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.runner import SAME_OOF_TOLERANCE, Runner


@pytest.fixture(scope="module")
def data():
    return make_regression(120, 30, n_informative=10, noise=30.0, random_state=0)


def _nested_gain(X, y, k, seed):
    """The rule by hand: each outer fold's Ridge against a bag of Ridges on its inner folds."""
    refit, bag = np.zeros(len(y)), np.zeros(len(y))
    for train, test in KFold(k, shuffle=True, random_state=seed).split(X):
        refit[test] = Ridge().fit(X[train], y[train]).predict(X[test])
        for inner, _ in KFold(k, shuffle=True, random_state=seed).split(train):
            bag[test] += Ridge().fit(X[train[inner]], y[train[inner]]).predict(X[test]) / k
    gain = (bag - y) ** 2 - (refit - y) ** 2
    return gain.mean() / (gain.std(ddof=1) / np.sqrt(len(y)))


def test_refit_auto_measures_the_bag_against_the_refit_one_level_down(data):
    X, y = data
    auto = AutoRegressor(base_estimators=[("ridge", Ridge())], families=(),
                         cv=KFold(3, shuffle=True, random_state=0), max_trials=1,
                         refit_full="auto", progress_bar=False, random_state=0).fit(X, y)
    expected = _nested_gain(X, y, 3, 0)
    assert auto.refit_gain_ == pytest.approx(expected, rel=1e-6)
    models = auto.best_estimator_.members["ridge"].models
    # 120 rows and 30 columns: a ridge on 2/3 of the rows is clearly worse than on all
    assert expected > 0 and len(models) == 1
    np.testing.assert_allclose(auto.predict(X), Ridge().fit(X, y).predict(X), rtol=1e-6)
    note = auto.leaderboard_.set_index("name").loc["ridge", "note"]
    assert "refit on all rows" in note and "standard errors over the bag" in note


def test_refit_auto_keeps_the_bag_when_the_bag_measures_better(data, monkeypatch):
    from moensemble.search import final

    X, y = data
    monkeypatch.setattr(final, "REFIT_GAIN", np.inf)  # no gain is enough: the bag stays
    auto = AutoRegressor(base_estimators=[("ridge", Ridge())], families=(), cv=3,
                         max_trials=1, refit_full="auto", progress_bar=False,
                         random_state=0).fit(X, y)
    assert np.isfinite(auto.refit_gain_)
    assert len(auto.best_estimator_.members["ridge"].models) == 3
    assert "bag kept" in auto.leaderboard_.set_index("name").loc["ridge", "note"]


def test_refit_full_false_the_default_keeps_every_bag_and_measures_nothing(data):
    X, y = data
    auto = AutoRegressor(base_estimators=[("ridge", Ridge())], families=(), cv=3,
                         max_trials=1, progress_bar=False, random_state=0).fit(X, y)
    assert np.isnan(auto.refit_gain_)
    assert len(auto.best_estimator_.members["ridge"].models) == 3


def test_refit_auto_leaves_a_blend_as_bags():
    from sklearn.neighbors import KNeighborsRegressor

    X, y = make_regression(200, 5, noise=5.0, random_state=1)
    y = y + 30 * np.sin(X[:, 0] * 2)  # a part the linear model misses and k-NN reads
    members = [("ridge", Ridge()), ("knn", KNeighborsRegressor(5))]
    auto = AutoRegressor(base_estimators=members, families=(), cv=3, blend_guard=None,
                         refit_full="auto", progress_bar=False, random_state=0).fit(X, y)
    assert len(auto.ensemble_weights_) > 1  # a blend: the rule is for one kept trial only
    assert np.isnan(auto.refit_gain_)
    assert all(len(m.models) == 3 for m in auto.best_estimator_.members.values())


@pytest.mark.parametrize("value", ["always", 2])
def test_refit_full_is_validated(value):
    X, y = make_regression(40, 3, random_state=0)
    with pytest.raises(InvalidParameterError, match="refit_full"):
        AutoRegressor(refit_full=value, max_trials=1, progress_bar=False).fit(X, y)


def _runner_like(target, classes=None, records=()):
    return SimpleNamespace(target=target, classes=classes, records=list(records))


def _record(name, oof, target, level=1):
    oof = np.asarray(oof, dtype=np.float64)
    loss = float(np.mean((oof - target) ** 2))
    return SimpleNamespace(name=name, bag=SimpleNamespace(oof=oof), level=level, loss=loss)


def test_same_predictions_finds_a_repeat_within_the_tolerance_only():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(500, 1))
    base = target + rng.normal(scale=0.5, size=target.shape)
    scale = float(np.std(target))
    first = _record("weighted_1", base, target, level=2)
    close = _record("weighted_2", base + 0.3 * SAME_OOF_TOLERANCE * scale, target, level=2)
    far = _record("weighted_3", base + 3 * SAME_OOF_TOLERANCE * scale, target, level=2)
    runner = _runner_like(target, records=[first, close, far])
    assert Runner.same_predictions(runner, close) is first
    assert Runner.same_predictions(runner, far) is None
    # an earlier trial of a higher level is no reason to drop a base model
    base_model = _record("ridge_7", base + 0.3 * SAME_OOF_TOLERANCE * scale, target)
    assert Runner.same_predictions(_runner_like(target, records=[first, base_model]),
                                   base_model) is None


def test_repeated_combiners_are_dropped_and_a_base_model_goes_next():
    from sklearn.datasets import make_classification

    X, y = make_classification(300, 8, n_informative=5, random_state=0)
    members = [("lr", LogisticRegression(max_iter=300)),
               ("lr_c10", LogisticRegression(C=10.0, max_iter=300))]
    auto = AutoClassifier(time_budget=120, families=("weighted", "linear"),
                          base_estimators=members, cv=2, max_trials=14, progress_bar=False,
                          random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("trial").sort_index()
    notes = board["note"].fillna("")
    dropped = board[notes.str.startswith("same out-of-fold predictions as")]
    assert len(dropped), "two members, many weighted trials: some repeat each other"
    assert set(dropped["state"]) == {"PRUNED"}
    kept = board.set_index("name")
    for _, row in dropped.iterrows():
        same = row["note"].split(" as ")[1].split(":")[0]
        assert kept.loc[same, "state"] == "COMPLETE"
        assert row["score"] != row["score"]  # no bag: no score on the leaderboard
    heard = [t for t in auto.study_.trials if "same out-of-fold" in t.user_attrs.get("note", "")]
    assert len(heard) == len(dropped)  # the sampler was told each one's score
    assert all(t.state.name == "COMPLETE" for t in heard)
    search = board[board["phase"].eq("search")]
    for number in dropped.index[dropped["level"].ge(2)]:  # a repeated combiner: a base next
        after = search[search.index > number]
        if len(after):
            assert after.iloc[0]["family"] == "linear"
