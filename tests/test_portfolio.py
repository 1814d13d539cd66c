"""The portfolio's text members: all run early on sparse counts, and naive Bayes blends."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from moensemble.search import AutoClassifier
from moensemble.search.portfolio import default_portfolio


def test_text_members_run_first_and_naive_bayes_gets_a_temperature():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    # Word rates: a few frequent words, each class a little more or less of each.
    rates = rng.gamma(0.3, 0.5, 200) * rng.lognormal(0, 0.5, (3, 200))
    X = sp.csr_matrix(rng.poisson(rates[y]).astype(np.float64))  # word counts
    text = [n for n, _ in default_portfolio("classification", sparse=True,
                                            non_negative=True)][:5]
    auto = AutoClassifier(time_budget=120, families=(), cv=3, max_trials=5, blend_guard=None,
                          progress_bar=False, random_state=0).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    assert (board.loc[text, "state"] == "COMPLETE").all()
    assert (board.loc[text, "score"] > 0.7).all()  # three classes: chance is 1/3
    assert "naive_bayes" in auto.ensemble_weights_.index  # blended, not only the best
    temperatures = {n: m.temperature for n, m in auto.best_estimator_.members.items()}
    # SGD's modified Huber probabilities are often exactly 0 or 1: tempered the most.
    assert temperatures["sgd"] > 1.5
    assert max(temperatures, key=temperatures.get) == "sgd"
