"""The fold engine: scores, out-of-fold predictions, errors, deadlines, hooks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from joblib import parallel_config
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import get_scorer
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict, cross_val_score

from moensemble.folds import FoldResult, StopAtDeadline, TrialOutOfTime, evaluate_folds


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(n_samples=150, n_features=6, n_informative=4, n_classes=3,
                               random_state=0)
    return X, y, list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))


class FailsOnFew(ClassifierMixin, BaseEstimator):
    """A classifier that fails when trained on fewer than ``min_rows`` rows."""

    def __init__(self, min_rows=0):
        self.min_rows = min_rows

    def fit(self, X, y):
        if len(X) < self.min_rows:
            raise RuntimeError("too few rows")
        self.classes_ = np.unique(y)
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


class Recorder(ClassifierMixin, BaseEstimator):
    """Takes skorch-style ``callbacks``; remembers those it was fitted with."""

    def __init__(self, callbacks=None):
        self.callbacks = callbacks

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.seen_ = list(self.callbacks or [])
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


def test_matches_sklearn_cross_validation(data):
    X, y, folds = data
    model = LogisticRegression(max_iter=500)
    result = evaluate_folds(model, X, y, folds, scoring=get_scorer("accuracy"),
                            return_estimators=True)
    assert isinstance(result, FoldResult)
    expected = cross_val_score(model, X, y, cv=folds, scoring="accuracy")
    np.testing.assert_allclose(result.fold_scores, expected)
    proba = cross_val_predict(model, X, y, cv=folds, method="predict_proba")
    np.testing.assert_allclose(result.oof, proba, atol=1e-10)
    assert len(result.estimators) == 3 and all(hasattr(e, "coef_") for e in result.estimators)
    assert not hasattr(model, "coef_")  # clones are fitted, never the given estimator
    assert all(t > 0 for t in result.fit_times + result.predict_times)
    assert result.errors == [None] * 3


def test_regressor_out_of_fold_predictions():
    X, y = make_regression(n_samples=90, n_features=4, noise=1.0, random_state=0)
    folds = list(KFold(3, shuffle=True, random_state=0).split(X))
    result = evaluate_folds(Ridge(), X, y, folds)
    np.testing.assert_allclose(result.oof, cross_val_predict(Ridge(), X, y, cv=folds))
    assert result.fold_scores == [] and result.estimators is None


def test_proba_columns_follow_the_given_classes(data):
    X, y, _ = data
    train = np.flatnonzero(y != 2)[:60]  # the fold's model never sees class 2
    test = np.setdiff1d(np.arange(len(y)), train)
    result = evaluate_folds(LogisticRegression(max_iter=500), X, y, [(train, test)],
                            classes=np.array([0, 1, 2]))
    assert result.oof.shape == (150, 3)
    np.testing.assert_array_equal(result.oof[test, 2], 0.0)
    np.testing.assert_allclose(result.oof[test].sum(axis=1), 1.0)
    assert np.isnan(result.oof[train]).all()  # rows in no test fold


def test_a_failing_fold_is_recorded_and_the_others_run(data):
    X, y, folds = data
    # Train sizes 100, 100, 100: make the middle fold smaller so that only it fails.
    folds = [folds[0], (folds[1][0][:40], folds[1][1]), folds[2]]
    model = FailsOnFew(min_rows=50)
    result = evaluate_folds(model, X, y, folds, scoring=get_scorer("accuracy"),
                            method="predict", error_score=-1.0)
    assert result.fold_scores[1] == -1.0 and result.fold_scores[0] != -1.0
    assert isinstance(result.errors[1], RuntimeError) and result.errors[0] is None
    assert np.isnan(result.fit_times[1]) and result.moe_stats[1] == {}
    assert np.isnan(result.oof[folds[1][1]]).all() and not np.isnan(result.oof[folds[0][1]]).any()
    with pytest.raises(RuntimeError, match="too few rows"):
        evaluate_folds(model, X, y, folds, method="predict")


def test_deadline_between_folds(data):
    X, y, folds = data
    with pytest.raises(TrialOutOfTime, match="0 of 3 folds") as info:
        evaluate_folds(LogisticRegression(), X, y, folds, deadline=time.monotonic() - 1)
    assert info.value.fold_times == []
    # An estimator that cannot stop is not started when its fold would end after the deadline.
    with pytest.raises(TrialOutOfTime):
        evaluate_folds(LogisticRegression(), X, y, folds, deadline=time.monotonic() + 60,
                       fold_estimate=120.0)


def test_callbacks_per_fold_and_the_fold_deadline(data):
    X, y, folds = data
    result = evaluate_folds(Recorder(), X, y, folds, method="predict", return_estimators=True,
                            fold_callbacks=lambda k: [f"cb{k}"] if k == 0 else [],
                            deadline=time.monotonic() + 60)
    seen = [est.seen_ for est in result.estimators]
    assert seen[0][0] == "cb0" and isinstance(seen[0][1], StopAtDeadline)
    assert len(seen[1]) == 1 and isinstance(seen[1][0], StopAtDeadline)
    # The fold deadlines split the time left: each later than the one before.
    assert seen[0][1].deadline < seen[1][0].deadline < seen[2][0].deadline


def test_on_fold_end_sees_each_fold_and_can_stop(data):
    X, y, folds = data
    calls = []

    def after(k, model, X_test, y_test, result):
        calls.append((k, len(X_test), len(result.fold_scores)))
        if k == 1:
            raise KeyError("stop")

    with pytest.raises(KeyError):  # never taken for a fold's error, even with error_score
        evaluate_folds(LogisticRegression(max_iter=500), X, y, folds, on_fold_end=after,
                       scoring=get_scorer("accuracy"), error_score=np.nan)
    assert calls == [(0, 50, 1), (1, 50, 2)]


def test_parallel_folds_match_sequential(data):
    X, y, folds = data
    kwargs = {"scoring": get_scorer("accuracy")}
    one = evaluate_folds(LogisticRegression(max_iter=500), X, y, folds, **kwargs)
    with parallel_config(backend="threading"):  # no process start-up in a unit test
        two = evaluate_folds(LogisticRegression(max_iter=500), X, y, folds, n_jobs=2, **kwargs)
    assert one.fold_scores == two.fold_scores
    np.testing.assert_allclose(one.oof, two.oof)
    with pytest.raises(ValueError, match="`deadline` needs sequential folds"):
        evaluate_folds(LogisticRegression(), X, y, folds, n_jobs=2, deadline=1e12)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "decision"}, "`method` must be"),
    ({"error_score": "skip"}, "`error_score` must be 'raise' or a number"),
])
def test_bad_parameters(data, kwargs, match):
    X, y, folds = data
    with pytest.raises(ValueError, match=match):
        evaluate_folds(LogisticRegression(), X, y, folds, **kwargs)
