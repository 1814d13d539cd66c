"""A raw table: gradient boosting reads categories and gaps natively, the rest one-hot."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from moensemble.datasets import make_mixed_table
from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.portfolio import default_portfolio, native_entries


def test_native_portfolio_entries_take_categories():
    entries = dict(default_portfolio("classification", sparse=True, non_negative=False,
                                     native=True, random_state=0))
    # A text column makes the encoded input sparse; boosting still runs, on the native view.
    assert "hist_gb" in entries
    assert entries["hist_gb"].categorical_features == "from_dtype"
    assert native_entries("classification") >= {"hist_gb", "lightgbm"}
    assert "linear" not in native_entries("classification")
    plain = dict(default_portfolio("classification", sparse=False, non_negative=True))
    assert plain["hist_gb"].categorical_features is None


@pytest.mark.parametrize("Auto, task", [(AutoClassifier, "classification"),
                                        (AutoRegressor, "regression")])
def test_boosting_reads_the_native_view_and_linear_the_one_hot(Auto, task):
    frame, y = make_mixed_table(n_samples=400, task=task, random_state=0)
    train, test, y_train, y_test = train_test_split(frame, y, test_size=0.3, random_state=0)
    names = [n for n, _ in default_portfolio(task, sparse=True, non_negative=False,
                                             native=True)]
    n_trials = names.index("hist_gb") + 1  # the portfolio up to histogram boosting
    auto = Auto(families=(), max_trials=n_trials, cv=2, time_budget=120, progress_bar=False,
                blend_guard=None, random_state=0).fit(train, y_train)  # a blend of both
    board = auto.leaderboard_.set_index("name")
    assert board.loc["hist_gb", "state"] == "COMPLETE"
    ens = auto.best_estimator_
    hgb = ens.members.get("hist_gb")
    linear = ens.members.get("linear")
    if hgb is None or linear is None:  # not both selected: read them from a one-trial model
        pytest.skip("the selection left out hist_gb or linear")
    fold_model = hgb.models[0]
    assert hgb.view == "native" and linear.view == "encoded"
    assert fold_model.is_categorical_.any()  # category columns, not one-hot
    native = auto.native_encoder_.transform(test)
    assert isinstance(native, pd.DataFrame) and native.isna().to_numpy().any()  # gaps kept
    assert fold_model.n_features_in_ == native.shape[1]
    assert linear.models[0].n_features_in_ == auto.table_encoder_.transform(test).shape[1]
    # Predict on the raw table, with a category never seen in fit.
    unseen = test.copy()
    unseen.loc[unseen.index[0], "city"] = "Atlantis"
    pred = auto.predict(unseen)
    assert len(pred) == len(test) and np.all(np.isfinite(np.asarray(pred, dtype=float)
                                                         if task == "regression" else 0))
    # 280 noisy training rows: every member is weak here; the ensemble still learns.
    if task == "classification":
        baseline = max(np.mean(y_test == c) for c in np.unique(y_train))
        assert auto.score(test, y_test) > baseline
    else:
        assert auto.score(test, y_test) > 0.1
