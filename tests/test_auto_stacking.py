"""The AutoML's stacking layers: ``stack_levels``, ``stack_passthrough``, no duplicate combiners."""

from __future__ import annotations

import pytest
from sklearn.datasets import make_friedman1
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.tree import DecisionTreeRegressor

from moensemble.search import AutoRegressor

MEMBERS = [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=4, random_state=0)),
           ("knn", KNeighborsRegressor(10))]


@pytest.fixture(scope="module")
def data():
    return make_friedman1(240, noise=1.0, random_state=0)


def _auto(**params) -> AutoRegressor:
    settings = dict(time_budget=120, families=("stacking",), base_estimators=MEMBERS, cv=3,
                    max_trials=12, ensemble_bags=1, progress_bar=False, random_state=0)
    return AutoRegressor(**{**settings, **params})


def _combiners(auto):
    board = auto.leaderboard_
    return board[board["family"].eq("stacking") & board["state"].eq("COMPLETE")]


def test_a_combiner_proposed_again_is_not_refitted(data):
    X, y = data
    auto = _auto().fit(X, y)
    combiners = _combiners(auto)
    # 3 level-1 trials: a ridge stacker has 2 distinct input sets (top 2 or all 3).
    settings = {(tuple(i), p) for i, p in zip(combiners["inputs"],
                                               combiners["params"].map(str), strict=True)}
    assert 1 <= len(combiners) <= 2
    assert len(settings) == len(combiners)
    assert len(auto.study_.trials) == 12 - len(MEMBERS)  # the sampler still heard each one
    again = [t for t in auto.study_.trials if "not refitted" in t.user_attrs.get("note", "")]
    assert len(again) == len(auto.study_.trials) - len(combiners)


def test_passthrough_only_on_request(data):
    X, y = data
    off = _auto(max_trials=10).fit(X, y)
    assert not any("passthrough" in t.params for t in off.study_.trials)
    on = _auto(max_trials=10, stack_passthrough=True).fit(X, y)
    assert any("stacking__passthrough" in t.params for t in on.study_.trials)


def test_stack_levels_add_or_remove_layers(data):
    X, y = data
    none = _auto(stack_levels=0, max_trials=6).fit(X, y)
    assert set(none.leaderboard_["level"]) == {1, 2}  # the trials, and the final blend at 2
    assert len(none.study_.trials) == 0

    deep = _auto(stack_levels=2, max_trials=25).fit(X, y)
    board = deep.leaderboard_.set_index("name")
    level3 = board[board["level"].eq(3) & board["family"].eq("stacking")]
    assert len(level3) >= 1
    # A level-3 trial reads the best trials of both lower levels.
    assert any(board.loc[list(i), "level"].max() == 2 for i in level3["inputs"])
    assert all(board.loc[list(i), "level"].max() <= 2 for i in level3["inputs"])
    assert "stacking__level" in deep.study_.trials[-1].params
    assert deep.predict(X).shape == y.shape


def test_stack_levels_is_validated(data):
    X, y = data
    with pytest.raises(ValueError, match="stack_levels"):
        _auto(stack_levels=3).fit(X, y)
