"""AutoML small-data levers: ``cv='auto'`` and the cap on level-2 trials."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.utils._param_validation import InvalidParameterError

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.inputs import AUTO_CV_FOLDS, AUTO_CV_ROWS


@pytest.mark.parametrize("n_rows, folds", [(AUTO_CV_ROWS - 200, AUTO_CV_FOLDS),
                                           (AUTO_CV_ROWS + 200, 5)])
def test_cv_auto_uses_more_folds_on_small_data(n_rows, folds):
    X, y = make_regression(n_rows, 5, noise=1.0, random_state=0)
    auto = AutoRegressor(cv="auto", base_estimators=[("ridge", Ridge())], families=(),
                         max_trials=1, progress_bar=False, random_state=0).fit(X, y)
    assert auto.n_splits_ == folds
    assert len(auto.best_estimator_.members["ridge"].models) == folds


def _level2_share(auto) -> tuple[int, int]:
    board = auto.leaderboard_
    search = board[board["phase"].eq("search") & board["state"].eq("COMPLETE")]
    return int(search["level"].ge(2).sum()), len(search)


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_max_level2_share_gives_the_trials_to_base_models(share):
    X, y = make_classification(300, 8, n_informative=5, random_state=0)
    common = dict(time_budget=120, families=("weighted", "linear"),
                  base_estimators=[("lr", LogisticRegression(max_iter=300)),
                                   ("lr_c10", LogisticRegression(C=10.0, max_iter=300))],
                  cv=2, max_trials=14, progress_bar=False, random_state=0)
    free = AutoClassifier(**common).fit(X, y)
    capped = AutoClassifier(max_level2_share=share, **common).fit(X, y)
    n_free, _ = _level2_share(free)
    n_capped, n_search = _level2_share(capped)
    # the one queued first trial of `weighted` runs before the cap applies
    assert n_capped <= max(1, int(np.ceil(share * n_search)))
    assert n_free > n_capped  # without the cap the sampler picks more combiners
    assert capped.score(X, y) > 0.8


@pytest.mark.parametrize("params, match", [
    ({"max_level2_share": 1.5}, "max_level2_share"),
    ({"max_level2_share": "half"}, "max_level2_share"),
    ({"cv": "eight"}, "cv"),
])
def test_lever_parameters_are_validated(params, match):
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(InvalidParameterError, match=match):
        AutoClassifier(max_trials=1, progress_bar=False, **params).fit(X, y)


def test_blend_temperature_sharpens_the_average_without_changing_predictions():
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_classification(400, 8, n_informative=5, n_classes=3, random_state=0)
    members = [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB()),
               ("knn", KNeighborsClassifier(15))]
    common = dict(base_estimators=members, families=(), cv=3, progress_bar=False,
                  random_state=0)
    auto = AutoClassifier(**common).fit(X, y)
    ensemble = auto.best_estimator_
    assert len(ensemble.weights) > 1 and ensemble.temperature < 1.0  # an average is flat
    tempered = ensemble.predict_proba(X)
    ensemble.temperature = 1.0
    flat = ensemble.predict_proba(X)
    np.testing.assert_allclose(tempered.sum(axis=1), 1.0)
    assert (tempered.max(axis=1) >= flat.max(axis=1) - 1e-12).all()
    np.testing.assert_array_equal(tempered.argmax(axis=1), flat.argmax(axis=1))
    plain = AutoClassifier(temperature_scaling=False, **common).fit(X, y)
    assert plain.best_estimator_.temperature == 1.0
