"""AutoML small-data levers: ``cv='auto'``, the cap on level-2 trials, ``n_repeats``."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold
from sklearn.utils._param_validation import InvalidParameterError

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.final import AUTO_GUARD_ROWS
from moensemble.search.inputs import AUTO_CV_FOLDS, AUTO_CV_ROWS, AUTO_REPEAT_ROWS, auto_repeats


@pytest.mark.parametrize("n_rows, folds", [(AUTO_CV_ROWS - 200, AUTO_CV_FOLDS),
                                           (AUTO_CV_ROWS + 200, 5)])
def test_cv_auto_uses_more_folds_on_small_data(n_rows, folds):
    X, y = make_regression(n_rows, 5, noise=1.0, random_state=0)
    auto = AutoRegressor(cv="auto", base_estimators=[("ridge", Ridge())], families=(),
                         max_trials=1, refit_full=False, progress_bar=False,
                         random_state=0).fit(X, y)  # the bag, not a refit: one model a fold
    assert auto.n_splits_ == folds
    assert len(auto.best_estimator_.members["ridge"].models) == folds


def _level2_share(auto) -> tuple[int, int]:
    board = auto.leaderboard_
    search = board[board["phase"].eq("search") & board["state"].eq("COMPLETE")]
    return int(search["level"].ge(2).sum()), len(search)


@pytest.mark.parametrize("share", [0.0, 0.25])
def test_max_level2_share_gives_the_trials_to_base_models(share, monkeypatch):
    from moensemble.search import runner

    monkeypatch.setattr(runner, "SAME_OOF_TOLERANCE", -1.0)  # the cap alone: no repeat dropped
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
                  random_state=0, blend_guard=None)  # always a blend
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


# --------------------------------------------------------------------------- n_repeats
class CountingRidge(Ridge):
    """Ridge that counts its fits (one shared list: clones count too)."""

    fits: list = []

    def fit(self, X, y, sample_weight=None):
        CountingRidge.fits.append(len(X))
        return super().fit(X, y, sample_weight)


def test_repeated_oof_is_the_mean_of_each_repeats_oof():
    from sklearn.metrics import get_scorer
    from sklearn.model_selection import RepeatedStratifiedKFold

    from moensemble.search.bagging import bag_on_folds

    X, y = make_classification(150, 6, random_state=0)
    folds = list(RepeatedStratifiedKFold(n_splits=3, n_repeats=3, random_state=0).split(X, y))
    common = dict(classes=np.unique(y), scorer=get_scorer("accuracy"), n_columns=2)
    repeated = bag_on_folds(LogisticRegression(), X, y, folds, n_repeats=3, **common)
    each = [bag_on_folds(LogisticRegression(), X, y, folds[3 * r:3 * r + 3], **common)
            for r in range(3)]
    np.testing.assert_allclose(repeated.oof, np.mean([b.oof for b in each], axis=0),
                               rtol=1e-6)
    assert not np.allclose(each[0].oof, each[1].oof)  # the repeats' folds differ
    assert len(repeated.models) == len(repeated.fold_scores) == 9
    np.testing.assert_allclose(repeated.fold_scores, sum((b.fold_scores for b in each), []))
    for bad in (3, 0):
        with pytest.raises(ValueError, match="n_repeats"):
            bag_on_folds(LogisticRegression(), X, y, folds[:8], n_repeats=bad, **common)


def test_n_repeats_fits_each_member_once_per_fold_of_every_repeat(monkeypatch):
    from sklearn.tree import DecisionTreeRegressor

    import moensemble.search.auto as auto_module

    seen = {}
    original = auto_module._BaseAuto._finish

    def finish(est, runner, *args, **kwargs):
        seen["records"] = [r for r in runner.records if r.bag is not None]
        return original(est, runner, *args, **kwargs)

    monkeypatch.setattr(auto_module._BaseAuto, "_finish", finish)
    # the combiner may repeat the ridge's predictions: kept here, to count its folds
    monkeypatch.setattr(auto_module.Runner, "same_predictions", lambda self, record: None)
    X, y = make_regression(120, 5, noise=1.0, random_state=0)
    CountingRidge.fits.clear()
    members = [("ridge", CountingRidge()), ("tree", DecisionTreeRegressor(max_depth=3))]
    auto = AutoRegressor(n_repeats=3, cv=4, base_estimators=members, families=("weighted",),
                         max_trials=3, progress_bar=False, random_state=0).fit(X, y)
    assert (auto.n_repeats_, auto.n_splits_) == (3, 4)
    assert CountingRidge.fits == [90] * 12  # 3/4 of the rows, 4 folds x 3 repeats, no refit
    levels = {r.name: r.level for r in seen["records"]}
    assert sorted(levels.values()) == [1, 1, 2]  # the combiner too is scored on all 12 folds
    assert all(len(r.bag.models) == len(r.bag.fold_scores) == 12 for r in seen["records"])
    assert len(auto.best_estimator_.members["ridge"].models) == 12
    assert auto.score(X, y) > 0.9


@pytest.mark.parametrize("n_rows, budget, repeats", [
    (AUTO_REPEAT_ROWS - 100, 60, 3), (AUTO_REPEAT_ROWS - 100, 30, 1),
    (AUTO_REPEAT_ROWS - 100, 10, 1), (AUTO_REPEAT_ROWS + 100, 600, 1),
])
def test_n_repeats_auto_repeats_while_rows_are_few_and_the_budget_allows(n_rows, budget,
                                                                        repeats):
    assert auto_repeats(n_rows, budget) == repeats
    X, y = make_regression(n_rows, 3, noise=1.0, random_state=0)
    auto = AutoRegressor(time_budget=budget, n_repeats="auto", cv=2,
                         base_estimators=[("ridge", Ridge())], families=(), max_trials=1,
                         refit_full=False, progress_bar=False, random_state=0).fit(X, y)
    assert auto.n_repeats_ == repeats
    assert len(auto.best_estimator_.members["ridge"].models) == 2 * repeats


@pytest.mark.parametrize("params, error, match", [
    ({"n_repeats": 0}, InvalidParameterError, "n_repeats"),
    ({"n_repeats": True}, InvalidParameterError, "n_repeats"),
    ({"n_repeats": "many"}, InvalidParameterError, "n_repeats"),
    ({"n_repeats": 2, "cv": KFold(3)}, ValueError, "n_repeats.*int `cv`"),
])
def test_bad_n_repeats_is_refused_by_name(params, error, match):
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(error, match=match):
        AutoClassifier(max_trials=1, progress_bar=False, **params).fit(X, y)


# --------------------------------------------------------------------------- blend_guard
def test_blend_guard_keeps_the_best_level1_trial_unless_the_blend_gains_beyond_noise():
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_classification(300, 8, n_informative=5, random_state=0)
    members = [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB()),
               ("knn", KNeighborsClassifier(15))]
    common = dict(base_estimators=members, families=(), cv=3, progress_bar=False,
                  random_state=0, guard_estimate="in_sample")  # out of bag: below
    free = AutoClassifier(blend_guard=None, **common).fit(X, y)
    assert len(free.ensemble_weights_) > 1 and np.isnan(free.blend_gain_)
    strict = AutoClassifier(blend_guard=1e6, **common).fit(X, y)
    board = strict.leaderboard_.set_index("name")
    best = board[board["level"].eq(1)]["score"].idxmax()
    assert strict.ensemble_weights_.to_dict() == {best: 1.0}
    assert np.isfinite(strict.blend_gain_) and strict.blend_gain_ < 1e6
    assert "kept alone" in board.loc[best, "note"]
    lone = strict.best_estimator_
    alone = lone.trial_predictions(X, best)  # its bag's average, untempered
    np.testing.assert_array_equal(lone.predict(X), strict.classes_[alone.argmax(axis=1)])
    # the same gain decides: a threshold under it keeps the blend of the free fit
    assert strict.blend_gain_ > 0  # on these rows the blend does gain a little
    loose = AutoClassifier(blend_guard=strict.blend_gain_ - 1e-6, **common).fit(X, y)
    assert loose.ensemble_weights_.to_dict() == free.ensemble_weights_.to_dict()


@pytest.mark.parametrize("value", [-0.5, "noise", [1.0]])
def test_bad_blend_guard_is_refused_by_name(value):
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(InvalidParameterError, match="blend_guard"):
        AutoClassifier(max_trials=1, progress_bar=False, blend_guard=value).fit(X, y)


@pytest.mark.parametrize("n_rows, guarded", [(AUTO_GUARD_ROWS - 200, True),
                                             (AUTO_GUARD_ROWS + 200, False)])
def test_blend_guard_auto_guards_small_data_only(n_rows, guarded):
    from sklearn.naive_bayes import GaussianNB

    X, y = make_classification(n_rows, 6, random_state=0)
    auto = AutoClassifier(base_estimators=[("lr", LogisticRegression()), ("nb", GaussianNB())],
                          families=(), cv=2, progress_bar=False, random_state=0).fit(X, y)
    assert auto.blend_guard == "auto"
    assert np.isfinite(auto.blend_gain_) == guarded


def test_guard_estimate_reads_the_gain_out_of_bag_unless_told_otherwise():
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier

    X, y = make_classification(300, 8, n_informative=5, random_state=0)
    members = [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB()),
               ("knn", KNeighborsClassifier(15))]
    common = dict(base_estimators=members, families=(), cv=3, progress_bar=False,
                  random_state=0, blend_guard=0.0)
    oob = AutoClassifier(**common).fit(X, y)
    inside = AutoClassifier(guard_estimate="in_sample", **common).fit(X, y)
    assert oob.guard_estimate == "out_of_bag"
    assert np.isfinite(oob.blend_gain_) and np.isfinite(inside.blend_gain_)
    # the in-sample gain grades the rows the weights were chosen on: it is the larger
    assert inside.blend_gain_ > oob.blend_gain_
    # one bag has no rows out of it: both read the gain in sample
    one = {**common, "ensemble_bags": 1}
    assert AutoClassifier(**one).fit(X, y).blend_gain_ == pytest.approx(
        AutoClassifier(guard_estimate="in_sample", **one).fit(X, y).blend_gain_)
    with pytest.raises(InvalidParameterError, match="guard_estimate"):
        AutoClassifier(max_trials=1, progress_bar=False, guard_estimate="oob").fit(X, y)


def test_single_choice_one_se_keeps_the_earlier_trial_within_one_standard_error():
    from sklearn.naive_bayes import GaussianNB

    X, y = make_classification(300, 8, n_informative=5, random_state=2)
    members = [("lr", LogisticRegression(max_iter=300)), ("nb", GaussianNB()),
               ("lr_C003", LogisticRegression(C=0.03))]
    common = dict(base_estimators=members, families=(), cv=3, progress_bar=False,
                  random_state=0, blend_guard=1e6)  # always one trial
    best = AutoClassifier(single_choice="best", **common).fit(X, y)
    scores = best.leaderboard_.set_index("name")["score"]
    # lr_C003 is the best by a few rows, well inside one standard error (~0.018 here)
    assert 0 < scores["lr_C003"] - scores["lr"] < 0.018
    assert best.ensemble_weights_.to_dict() == {"lr_C003": 1.0}
    one_se = AutoClassifier(single_choice="one_se", **common).fit(X, y)
    assert one_se.ensemble_weights_.to_dict() == {"lr": 1.0}  # the first in order
    assert "within one standard error of lr_C003" in \
        one_se.leaderboard_.set_index("name").loc["lr", "note"]
    auto = AutoClassifier(**common).fit(X, y)  # 'auto' is 'one_se' in classification
    assert auto.ensemble_weights_.to_dict() == {"lr": 1.0}
    with pytest.raises(InvalidParameterError, match="single_choice"):
        AutoClassifier(max_trials=1, progress_bar=False, single_choice="simplest").fit(X, y)


def test_single_choice_auto_keeps_the_best_trial_in_regression():
    X, y = make_regression(200, 5, noise=20.0, random_state=0)
    members = [("ridge_strong", Ridge(alpha=3.0)), ("ridge", Ridge(alpha=1.0))]
    common = dict(base_estimators=members, families=(), cv=3, progress_bar=False,
                  random_state=0, blend_guard=1e6)
    scores = AutoRegressor(single_choice="best", **common).fit(X, y).leaderboard_
    best = scores[scores["level"].eq(1)].set_index("name")["score"].idxmax()
    assert best == "ridge"
    assert AutoRegressor(**common).fit(X, y).ensemble_weights_.to_dict() == {best: 1.0}
    # the strong ridge is within one standard error of squared error: the rule takes it
    one_se = AutoRegressor(single_choice="one_se", **common).fit(X, y)
    assert one_se.ensemble_weights_.to_dict() == {"ridge_strong": 1.0}


def test_blend_guard_has_its_level1_reference_when_level2_trials_fill_the_pool(monkeypatch):
    from sklearn.datasets import make_friedman1
    from sklearn.tree import DecisionTreeRegressor

    from moensemble.search import final

    X, y = make_friedman1(200, noise=1.0, random_state=0)
    trees = [(f"tree{i}", DecisionTreeRegressor(max_features=0.5, random_state=i))
             for i in range(2)]
    monkeypatch.setattr(final, "MAX_SELECTION_POOL", 1)  # the pool: the best trial only
    auto = AutoRegressor(base_estimators=trees, families=("weighted",), cv=3, max_trials=4,
                         progress_bar=False, random_state=0, blend_guard=1e6).fit(X, y)
    board = auto.leaderboard_.set_index("name")
    trials = board[board["family"].ne("ensemble")]
    assert trials["score"].idxmax().startswith("weighted")  # a level-2 trial tops the pool
    best1 = trials[trials["level"].eq(1)]["score"].idxmax()
    # the guard still measures the blend against the best level-1 trial, and keeps it
    assert np.isfinite(auto.blend_gain_)
    assert auto.ensemble_weights_.to_dict() == {best1: 1.0}
    assert "kept alone" in board.loc[best1, "note"]
