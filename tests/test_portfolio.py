"""The portfolio: text members run early on sparse counts, naive Bayes blends, kernel ridge."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.search import AutoClassifier
from moensemble.search.portfolio import RBFFeatures, default_portfolio


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


# --------------------------------------------------------------------------- kernel ridge
@parametrize_with_checks([RBFFeatures(n_components=20, random_state=0)])
def test_rbf_features_is_a_scikit_learn_transformer(estimator, check):
    check(estimator)


def test_rbf_features_bandwidth_follows_the_columns_and_components_the_rows():
    X = np.random.default_rng(0).normal(size=(40, 8))
    features = RBFFeatures(gamma_scale=0.4, n_components=300, random_state=0).fit(X)
    assert features.nystroem_.gamma == pytest.approx(0.4 / 8)
    assert features.transform(X).shape == (40, 40)  # no more components than rows


def test_kernel_ridge_entry_fits_a_curve_ridge_cannot_and_stays_off_sparse_input():
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, (300, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 + 0.1 * rng.normal(size=300)
    entries = dict(default_portfolio("regression", sparse=False, non_negative=False,
                                     random_state=0))
    assert list(entries)[:2] == ["linear", "kernel_ridge"]
    kernel = cross_val_score(entries["kernel_ridge"], X, y, cv=3).mean()
    linear = cross_val_score(entries["linear"], X, y, cv=3).mean()
    assert kernel > 0.8 and linear < 0.3
    sparse = dict(default_portfolio("regression", sparse=True, non_negative=False))
    assert "kernel_ridge" not in sparse and "linear" in sparse
