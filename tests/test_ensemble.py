"""Weighted and stacked ensembles and their out-of-fold engine, used as a user would."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from joblib import parallel_config
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris, make_classification, make_friedman1
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, RidgeClassifier
from sklearn.metrics import log_loss, mean_squared_error, r2_score
from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.ensemble import (
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
    _oof,
    out_of_fold,
    stacking,
    weighted,
)

# ---- scikit-learn's estimator checks (fast settings: cv=2, a few greedy steps) -------------

_CLF = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))]
_REG = [("ridge", Ridge()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))]


@parametrize_with_checks(
    [
        WeightedEnsembleClassifier(_CLF, cv=2, n_iter=5, scoring="neg_log_loss", random_state=0),
        WeightedEnsembleClassifier(_CLF, cv=2, voting="hard", weighting=[1, 2]),
        WeightedEnsembleRegressor(_REG, cv=2, weighting="optimize", refit=False, random_state=0),
        # RidgeClassifier has no predict_proba: the stack runs on decision_function.
        StackingEnsembleClassifier([("ridge", RidgeClassifier()), _CLF[1]], cv=2,
                                   layers=[[("lr", LogisticRegression())]], random_state=0),
        StackingEnsembleRegressor(_REG, cv=2, layers=2, random_state=0),
    ]
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_docstring_examples_run():
    for module in (_oof, weighted, stacking):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


# ---- helpers ---------------------------------------------------------------------------------


class Column(RegressorMixin, BaseEstimator):
    """Predicts given columns of X as they are: a base whose out-of-fold error we choose."""

    def __init__(self, columns=(0,)):
        self.columns = columns

    def fit(self, X, y):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        out = np.asarray(X)[:, list(self.columns)]
        return out[:, 0] if len(self.columns) == 1 else out


class CountingTree(DecisionTreeClassifier):
    """A tree that counts its fits in a class attribute, to see what a cache saves."""

    fits = 0

    def fit(self, X, y, sample_weight=None, check_input=True):
        CountingTree.fits += 1
        return super().fit(X, y, sample_weight=sample_weight, check_input=check_input)


def _noisy_copies(sigmas, n=4000, seed=0):
    """X[:, i] = y + N(0, sigmas[i]^2): optimal simplex weights are proportional to 1/sigma^2."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=n)
    X = np.column_stack([y + rng.normal(scale=s, size=n) for s in sigmas])
    return X, y


# ---- out-of-fold engine ----------------------------------------------------------------------


def test_out_of_fold_matches_cross_val_predict():
    X, y = load_iris(return_X_y=True)
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    lr = LogisticRegression(max_iter=1000)
    # Threads exercise the parallel path without paying for new processes inside a test worker.
    with parallel_config(backend="threading"):
        oof = out_of_fold([("lr", lr), ("nb", GaussianNB())], X, y, cv=cv, n_jobs=2,
                          keep_fold_estimators=True)
    expected = cross_val_predict(lr, X, y, cv=cv, method="predict_proba")
    np.testing.assert_allclose(oof.predictions["lr"], expected)
    assert oof.methods == {"lr": "predict_proba", "nb": "predict_proba"}
    assert [len(te) for _, te in oof.folds] == [38, 38, 37, 37]
    assert len(oof.fold_estimators["nb"]) == 4


def test_out_of_fold_aligns_classes_a_fold_never_saw():
    # Unshuffled KFold on iris' sorted labels: each fold's model never sees its test class.
    X, y = load_iris(return_X_y=True)
    oof = out_of_fold([("nb", GaussianNB())], X, y, cv=KFold(3))
    proba = oof.predictions["nb"]
    assert proba.shape == (150, 3)
    assert np.all(proba[y == 0, 0] == 0) and np.all(proba[y == 2, 2] == 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


def test_out_of_fold_predict_is_one_hot_and_rejects_overlapping_folds():
    X, y = load_iris(return_X_y=True)
    oof = out_of_fold([("tree", DecisionTreeClassifier(random_state=0))], X, y, cv=3,
                      method={"tree": "predict"})
    votes = oof.predictions["tree"]
    assert set(np.unique(votes)) == {0.0, 1.0} and np.all(votes.sum(axis=1) == 1)
    assert (votes.argmax(axis=1) == y).mean() > 0.9
    with pytest.raises(ValueError, match="exactly one test fold"):
        out_of_fold([("nb", GaussianNB())], X, y, cv=ShuffleSplit(3, random_state=0))
    with pytest.raises(ValueError, match="no method 'decision_function'"):
        out_of_fold([("nb", GaussianNB())], X, y, method="decision_function")


def test_shared_memory_fits_each_fold_once(tmp_path):
    X, y = make_classification(300, n_features=8, random_state=0)
    bases = [("a", CountingTree(max_depth=2, random_state=0)),
             ("b", CountingTree(max_depth=5, random_state=0))]
    CountingTree.fits = 0
    weighted_ens = WeightedEnsembleClassifier(bases, cv=4, memory=str(tmp_path)).fit(X, y)
    first = CountingTree.fits
    n_refit = len(weighted_ens.estimators_)
    assert n_refit == 1  # the stump wins all the weight; the deep tree is not refitted
    assert first == 2 * 4 + n_refit
    StackingEnsembleClassifier(bases, cv=4, memory=str(tmp_path)).fit(X, y)
    # The stack reuses the 8 cached fold fits and the weighted ensemble's refits: only the
    # bases that got no weight are fitted on all rows now.
    assert CountingTree.fits - first == 2 - n_refit


# ---- weighted ensembles ----------------------------------------------------------------------


@pytest.mark.parametrize("weighting, tol", [("optimize", 0.01), ("greedy", 0.03)])
def test_weights_recover_inverse_variance_optimum(weighting, tol):
    X, y = _noisy_copies([1.0, 2.0])
    bases = [("sharp", Column((0,))), ("blurry", Column((1,)))]
    ens = WeightedEnsembleRegressor(bases, weighting=weighting, n_iter=100, cv=3).fit(X, y)
    # Optimal simplex weights for independent errors: (1/1, 1/4) normalized = (0.8, 0.2).
    np.testing.assert_allclose(ens.weights_, [0.8, 0.2], atol=tol)
    assert ens.ensemble_loss_ < 0.85 * ens.base_losses_.min()  # theory: 0.8 of the best


def test_useless_base_gets_no_weight_and_is_not_refitted():
    X, y = _noisy_copies([0.5, 0.7])
    # (Even the mean would earn weight here: shrinking noisy predictions helps. A constant far
    # from every target never does.)
    off = DummyRegressor(strategy="constant", constant=100.0)
    bases = [("a", Column((0,))), ("off", off), ("b", Column((1,)))]
    ens = WeightedEnsembleRegressor(bases, cv=3).fit(X, y)
    assert ens.weights_[1] == 0
    assert list(ens.named_estimators_) == ["a", "b"]
    np.testing.assert_allclose(ens.weights_.sum(), 1.0)


def test_weighted_regressor_beats_its_bases_on_held_out_data():
    X, y = make_friedman1(1200, noise=1.0, random_state=0)
    X_tr, X_te, y_tr, y_te = X[:800], X[800:], y[:800], y[800:]
    bases = [("ridge", Ridge()), ("knn", KNeighborsRegressor(10)),
             ("tree", DecisionTreeRegressor(max_depth=6, random_state=0))]
    ens = WeightedEnsembleRegressor(bases, cv=5).fit(X_tr, y_tr)
    base_mse = [mean_squared_error(y_te, clone(b).fit(X_tr, y_tr).predict(X_te)) for _, b in bases]
    ens_mse = mean_squared_error(y_te, ens.predict(X_te))
    assert ens_mse < 0.9 * min(base_mse), (ens_mse, base_mse)
    assert np.count_nonzero(ens.weights_) >= 2


def test_weighted_classifier_log_loss_and_hard_votes():
    X, y = make_classification(900, n_features=20, n_informative=6, n_classes=3,
                               random_state=1)
    X_tr, X_te, y_tr, y_te = X[:600], X[600:], y[:600], y[600:]
    bases = [("lr", LogisticRegression(max_iter=1000)), ("nb", GaussianNB()),
             ("tree", DecisionTreeClassifier(max_depth=8, random_state=0))]
    ens = WeightedEnsembleClassifier(bases, cv=5).fit(X_tr, y_tr)
    assert ens.ensemble_loss_ <= ens.base_losses_.min()
    proba = ens.predict_proba(X_te)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    best_base = min(log_loss(y_te, clone(b).fit(X_tr, y_tr).predict_proba(X_te))
                    for _, b in bases)
    assert log_loss(y_te, proba) < best_base
    assert ens.score(X_te, y_te) > 0.75

    # RidgeClassifier has no predict_proba: soft voting refuses it by name, hard voting takes it.
    with_ridge = [*bases, ("ridge", RidgeClassifier())]
    with pytest.raises(ValueError, match=r"voting='soft'.*\['ridge'\]"):
        WeightedEnsembleClassifier(with_ridge, cv=3).fit(X_tr, y_tr)
    hard = WeightedEnsembleClassifier(with_ridge, voting="hard", cv=5).fit(X_tr, y_tr)
    assert hard.stack_method_ == ["predict"] * len(hard.estimators_)
    assert not hasattr(hard, "predict_proba")
    assert hard.score(X_te, y_te) > 0.75
    # A weight of 0 lets a soft ensemble hold a member without predict_proba (never run).
    zero = WeightedEnsembleClassifier(with_ridge, weighting=[1, 1, 1, 0], cv=3).fit(X_tr, y_tr)
    assert list(zero.named_estimators_) == ["lr", "nb", "tree"]


def test_hard_voting_is_the_weighted_majority_of_labels():
    X, y = load_iris(return_X_y=True)
    bases = [("lr", LogisticRegression(max_iter=500)), ("nb", GaussianNB()),
             ("stump", DecisionTreeClassifier(max_depth=1, random_state=0))]
    weights = [1.0, 1.0, 3.0]  # the stump outvotes the other two together
    ens = WeightedEnsembleClassifier(bases, voting="hard", weighting=weights, cv=3).fit(X, y)
    np.testing.assert_allclose(ens.weights_, [0.2, 0.2, 0.6])
    np.testing.assert_array_equal(ens.predict(X), ens.named_estimators_["stump"].predict(X))
    even = WeightedEnsembleClassifier(bases, voting="hard", weighting="uniform", cv=3).fit(X, y)
    votes = np.stack([est.predict(X) for est in even.estimators_])
    majority = np.array([np.bincount(col, minlength=3).argmax() for col in votes.T])
    np.testing.assert_array_equal(even.predict(X), majority)


def test_oof_scores_table_matches_the_scorer_on_shared_folds():
    X, y = make_classification(400, n_features=10, random_state=0)
    bases = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3,
                                                                         random_state=0))]
    ens = WeightedEnsembleClassifier(bases, cv=4, random_state=0).fit(X, y)
    table = ens.oof_scores_
    assert list(table.index) == ["lr", "tree", "ensemble"]
    assert list(table.columns) == ["score", "loss", "weight", "fit_seconds"]
    cv = StratifiedKFold(4, shuffle=True, random_state=0)  # what cv=4 + random_state means
    for name, est in bases:
        accuracy = (cross_val_predict(est, X, y, cv=cv) == y).mean()
        assert table.loc[name, "score"] == pytest.approx(accuracy)
    np.testing.assert_allclose(table["weight"], [*ens.weights_, 1.0])
    assert table.loc["ensemble", "loss"] == ens.ensemble_loss_ <= table["loss"].min()
    # Any scikit-learn scorer: the negated log-loss is minus the loss column (where no
    # probability is 0: the two clip those differently).
    scored = WeightedEnsembleClassifier(bases, cv=4, scoring="neg_log_loss",
                                        random_state=0).fit(X, y).oof_scores_.loc[["lr",
                                                                                   "ensemble"]]
    np.testing.assert_allclose(scored["score"], -scored["loss"])


def test_explicit_and_uniform_weights():
    X, y = make_friedman1(300, random_state=0)
    uniform = WeightedEnsembleRegressor(_REG, weighting="uniform", cv=3).fit(X, y)
    np.testing.assert_allclose(uniform.weights_, [0.5, 0.5])
    given = WeightedEnsembleRegressor(_REG, weighting=[3, 0], cv=3).fit(X, y)
    np.testing.assert_allclose(given.weights_, [1.0, 0.0])
    assert list(given.named_estimators_) == ["ridge"]  # weight 0: not refitted
    np.testing.assert_allclose(given.predict(X), Ridge().fit(X, y).predict(X))


def test_per_output_weights_follow_each_target():
    rng = np.random.default_rng(0)
    n = 3000
    Y = rng.normal(size=(n, 2))
    sharp, blurry = 0.2, 2.0
    X = np.column_stack([Y[:, 0] + rng.normal(scale=sharp, size=n),
                         Y[:, 1] + rng.normal(scale=blurry, size=n),
                         Y[:, 0] + rng.normal(scale=blurry, size=n),
                         Y[:, 1] + rng.normal(scale=sharp, size=n)])
    bases = [("good_at_0", Column((0, 1))), ("good_at_1", Column((2, 3)))]
    shared = WeightedEnsembleRegressor(bases, cv=3).fit(X, Y)
    per_output = WeightedEnsembleRegressor(bases, cv=3, per_output=True).fit(X, Y)
    assert per_output.weights_.shape == (2, 2)
    assert per_output.weights_[0, 0] > 0.95 and per_output.weights_[1, 1] > 0.95
    mse_shared = mean_squared_error(Y, shared.predict(X))
    mse_per_output = mean_squared_error(Y, per_output.predict(X))
    assert mse_per_output < 0.2 * mse_shared
    assert per_output.predict(X).shape == (n, 2)


def test_bag_of_fold_models_skips_the_refit():
    X, y = make_classification(400, random_state=0)
    ens = WeightedEnsembleClassifier([("lr", LogisticRegression()), ("nb", GaussianNB())],
                                     cv=3, refit=False).fit(X, y)
    for name, models in ens.named_estimators_.items():
        assert len(models) == 3, name
    expected = sum(
        w * np.mean([m.predict_proba(X[:50]) for m in models], axis=0)
        for w, models in zip(ens.weights_[ens.weights_ > 0], ens.estimators_, strict=True)
    )
    np.testing.assert_allclose(ens.predict_proba(X[:50]), expected)


# ---- stacked ensembles -----------------------------------------------------------------------


def test_stack_recombines_bases_that_each_see_half_the_features():
    # y = f(first half) + g(second half): each base explains half; a linear meta-model adds them.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1000, 6))
    y = X[:, :3] @ [1.0, 2.0, -1.0] + X[:, 3:] @ [2.0, -1.0, 1.0] + rng.normal(0, 0.1, 1000)
    halves = [
        (f"half{i}", make_pipeline(
            ColumnTransformer([("keep", "passthrough", cols)]), LinearRegression()))
        for i, cols in enumerate([[0, 1, 2], [3, 4, 5]])
    ]
    stack = StackingEnsembleRegressor(halves, LinearRegression(), cv=5).fit(X[:700], y[:700])
    weighted_ens = WeightedEnsembleRegressor(halves, cv=5).fit(X[:700], y[:700])
    assert r2_score(y[700:], stack.predict(X[700:])) > 0.99
    assert r2_score(y[700:], weighted_ens.predict(X[700:])) < 0.8  # an average cannot add
    np.testing.assert_allclose(stack.final_estimator_.coef_, [1.0, 1.0], atol=0.05)


def test_stack_classifier_on_strings_dataframes_and_sparse_passthrough():
    X, y = load_iris(return_X_y=True, as_frame=True)
    labels = np.array(["setosa", "versicolor", "virginica"])[y]
    by_name = make_pipeline(
        ColumnTransformer([("petal", "passthrough", ["petal length (cm)", "petal width (cm)"])]),
        LogisticRegression(max_iter=1000),
    )
    stack = StackingEnsembleClassifier(
        [("petal", by_name), ("nb", GaussianNB())], cv=StratifiedKFold(5, shuffle=True,
                                                                       random_state=0)
    ).fit(X, labels)
    assert list(stack.classes_) == ["setosa", "versicolor", "virginica"]
    assert list(stack.feature_names_in_) == list(X.columns)
    assert stack.score(X, labels) > 0.95
    assert stack.transform(X).shape == (150, 6)
    assert list(stack.get_feature_names_out()[:2]) == ["petal_0", "petal_1"]

    docs = ["good cheap fast", "bad slow", "fast good", "slow bad awful", "cheap good"] * 20
    target = np.array([1, 0, 1, 0, 1] * 20)
    text = TfidfVectorizer().fit_transform(docs)
    sparse_stack = StackingEnsembleClassifier(
        [("lr", LogisticRegression())], passthrough=True, cv=3
    ).fit(text, target)
    meta = sparse_stack.transform(text)
    assert sp.issparse(meta) and meta.shape == (100, 1 + text.shape[1])  # binary: one column
    assert sparse_stack.score(text, target) == 1.0


def test_binary_stack_keeps_one_probability_column():
    X, y = make_classification(300, random_state=0)
    stack = StackingEnsembleClassifier(
        [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))], cv=3
    ).fit(X, y)
    assert stack.transform(X).shape == (300, 2)
    assert stack.final_estimator_.coef_.shape == (1, 2)


# ---- errors ----------------------------------------------------------------------------------


def test_errors_name_the_parameter():
    X, y = make_classification(60, random_state=0)
    with pytest.raises(InvalidParameterError, match="'weighting' parameter"):
        WeightedEnsembleClassifier([("lr", LogisticRegression())], weighting="adam").fit(X, y)
    with pytest.raises(InvalidParameterError, match="'loss' parameter"):
        WeightedEnsembleClassifier([("lr", LogisticRegression())], loss="squared_error").fit(X, y)
    with pytest.raises(TypeError, match="member 'ridge' must be a classifier"):
        StackingEnsembleClassifier([("ridge", Ridge())]).fit(X, y)
    with pytest.raises(ValueError, match="unique"):
        WeightedEnsembleClassifier([("m", GaussianNB()), ("m", DummyClassifier())]).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features"):
        WeightedEnsembleClassifier([("nb", GaussianNB())], cv=2).fit(X, y).predict(X[:, :3])


def test_predictions_of_a_row_do_not_depend_on_its_batch():
    X, y = make_friedman1(300, random_state=0)
    ens = StackingEnsembleRegressor(_REG, cv=3).fit(X, y)
    full = ens.predict(X[:20])
    one_by_one = np.array([ens.predict(X[i : i + 1])[0] for i in range(20)])
    np.testing.assert_allclose(full, one_by_one)


def test_dataframe_input_reaches_bases_unchanged():
    X, y = make_friedman1(200, random_state=0)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    pick = make_pipeline(ColumnTransformer([("k", "passthrough", ["f0", "f1", "f3"])]), Ridge())
    ens = WeightedEnsembleRegressor([("named", pick), ("tree", DecisionTreeRegressor(
        max_depth=4, random_state=0))], cv=3).fit(frame, y)
    assert ens.predict(frame.iloc[:5]).shape == (5,)
    with pytest.raises(ValueError, match="feature names should match"):
        ens.predict(frame.iloc[:5].rename(columns={"f0": "zzz"}))


# ---- several stacking levels -----------------------------------------------------------------


def test_layers_train_each_level_on_the_out_of_fold_predictions_below():
    X, y = load_iris(return_X_y=True)
    bases = [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=2, random_state=0))]
    level2 = [("lr", LogisticRegression(max_iter=500)),
              ("stump", DecisionTreeClassifier(max_depth=1, random_state=0))]
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    stack = StackingEnsembleClassifier(bases, LogisticRegression(max_iter=500), layers=[level2],
                                       cv=cv).fit(X, y)
    # The same computation by hand through the engine: level 1 OOF -> level 2 OOF -> meta-model.
    first = out_of_fold(bases, X, y, cv=cv)
    meta1 = np.hstack([first.predictions[n] for n, _ in bases])
    second = out_of_fold(level2, meta1, y, cv=first.folds)
    meta2 = np.hstack([second.predictions[n] for n, _ in level2])
    final = LogisticRegression(max_iter=500).fit(meta2, y)
    np.testing.assert_allclose(stack.final_estimator_.coef_, final.coef_, rtol=1e-6)
    assert list(stack.layers_[0]) == ["lr", "stump"]
    assert list(stack.get_feature_names_out()) == [f"{n}_{j}" for n in ("lr", "stump")
                                                   for j in range(3)]
    refit_meta1 = np.hstack([clone(b).fit(X, y).predict_proba(X) for _, b in bases])
    refit_meta2 = np.hstack([stack.layers_[0][n].predict_proba(refit_meta1) for n, _ in level2])
    np.testing.assert_allclose(stack.transform(X), refit_meta2)
    assert stack.score(X, y) > 0.93


def test_int_layers_repeat_the_bases_and_prefit_takes_one_level():
    X, y = make_friedman1(600, random_state=0)
    stack = StackingEnsembleRegressor(_REG, layers=3, passthrough=True, cv=3,
                                      random_state=0).fit(X[:400], y[:400])
    assert len(stack.layers_) == 2 and list(stack.layers_[1]) == ["ridge", "tree"]
    # Upper levels see the level below (2 columns) and X (10 columns) with passthrough.
    assert stack.layers_[0]["ridge"].n_features_in_ == 2 + 10
    # Held out: ridge alone 0.756, tree alone 0.578 (extra levels do not help on this data).
    assert r2_score(y[400:], stack.predict(X[400:])) > 0.72
    X, y = X[:400], y[:400]
    fitted = [(n, clone(e).fit(X, y)) for n, e in _REG]
    with pytest.raises(ValueError, match="`layers`.*cv='prefit'"):
        StackingEnsembleRegressor(fitted, layers=2, cv="prefit").fit(X, y)
    with pytest.raises(TypeError, match=r"`layers\[0\]` member 'lr' must be a regressor"):
        StackingEnsembleRegressor(_REG, layers=[[("lr", LogisticRegression())]]).fit(X, y)


# ---- prefit bases and sample weights ---------------------------------------------------------


def test_prefit_bases_are_kept_and_match_sklearn_stacking_prefit():
    from sklearn.ensemble import StackingClassifier
    from sklearn.frozen import FrozenEstimator

    X, y = make_classification(600, n_features=10, n_classes=3, n_informative=5,
                               random_state=0)
    labels = np.array(["ant", "bee", "cat"])[y]
    X_fit, X_held, y_fit, y_held = X[:300], X[300:], labels[:300], labels[300:]
    fitted = [(n, clone(e).fit(X_fit, y_fit)) for n, e in _CLF]
    coef = fitted[0][1].coef_.copy()
    ours = StackingEnsembleClassifier(fitted, cv="prefit").fit(X_held, y_held)
    theirs = StackingClassifier(fitted, cv="prefit").fit(X_held, y_held)
    np.testing.assert_allclose(ours.predict_proba(X_held), theirs.predict_proba(X_held),
                               rtol=1e-6)
    np.testing.assert_array_equal(fitted[0][1].coef_, coef)  # not refitted
    # FrozenEstimator members mean the same with any cv; the weights are learned on X_held.
    frozen = [(n, FrozenEstimator(e)) for n, e in fitted]
    by_prefit = WeightedEnsembleClassifier(fitted, cv="prefit").fit(X_held, y_held)
    by_frozen = WeightedEnsembleClassifier(frozen, cv=3).fit(X_held, y_held)
    np.testing.assert_allclose(by_prefit.weights_, by_frozen.weights_)
    np.testing.assert_allclose(by_prefit.predict_proba(X_held), by_frozen.predict_proba(X_held))
    assert by_prefit.oof_scores_.loc["lr", "score"] == pytest.approx(
        fitted[0][1].score(X_held, y_held))
    with pytest.raises(NotFittedError, match="member 'tree' is not fitted"):
        WeightedEnsembleClassifier([fitted[0], _CLF[1]], cv="prefit").fit(X_held, y_held)


def test_sample_weight_reaches_the_bases_and_missing_support_is_named():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 3))
    y = X @ [1.0, 2.0, -1.0]
    y_corrupt = y.copy()
    y_corrupt[::3] += 50.0  # every third row is wrong, and weighted 0
    sw = np.ones(600)
    sw[::3] = 0.0
    for ens in (WeightedEnsembleRegressor(_REG, cv=3), StackingEnsembleRegressor(_REG, cv=3)):
        weighted_fit = clone(ens).fit(X, y_corrupt, sample_weight=sw)
        plain_fit = clone(ens).fit(X, y_corrupt)
        assert r2_score(y, weighted_fit.predict(X)) > 0.95
        assert r2_score(y, plain_fit.predict(X)) < 0.9
    knn = [*_REG, ("knn", KNeighborsRegressor())]
    with pytest.raises(ValueError, match="`estimators` member 'knn'.*sample_weight"):
        WeightedEnsembleRegressor(knn, cv=3).fit(X, y, sample_weight=sw)
    WeightedEnsembleRegressor(knn, cv=3).fit(X, y)  # fine without weights
    with pytest.raises(ValueError, match="'final_estimator'.*sample_weight"):
        StackingEnsembleRegressor(_REG, KNeighborsRegressor(), cv=3).fit(X, y, sample_weight=sw)


# ---- scikit-learn round trips ----------------------------------------------------------------


def test_clone_pipeline_grid_search_pickle_and_random_state():
    import pickle

    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(300, n_features=8, random_state=0)
    ens = StackingEnsembleClassifier(_CLF, cv=3, random_state=0)
    fitted = clone(ens).fit(X, y)
    expected = fitted.predict_proba(X)
    np.testing.assert_array_equal(clone(ens).fit(X, y).predict_proba(X), expected)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fitted)).predict_proba(X), expected)
    piped = make_pipeline(StandardScaler(), clone(ens)).fit(X, y)
    assert piped.score(X, y) > 0.9
    grid = GridSearchCV(WeightedEnsembleClassifier(_CLF, cv=3, random_state=0),
                        {"weighting": ["greedy", "uniform"]}, cv=2).fit(X, y)
    best = clone(grid.best_estimator_).fit(X, y)
    np.testing.assert_array_equal(grid.best_estimator_.predict_proba(X), best.predict_proba(X))
    # random_state seeds the shuffled folds of an int cv: same seed, same weights and table.
    a, b, c = (WeightedEnsembleClassifier(_CLF, cv=3, random_state=s).fit(X, y)
               for s in (0, 0, 1))
    pd.testing.assert_frame_equal(a.oof_scores_.drop(columns="fit_seconds"),
                                  b.oof_scores_.drop(columns="fit_seconds"))
    assert not np.allclose(a.oof_scores_["loss"], c.oof_scores_["loss"])


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input_names_the_culprit():
    X, y = make_classification(60, n_features=5, random_state=0)
    lr = [("lr", LogisticRegression())]
    with pytest.raises(ValueError, match="`estimators` must be a non-empty list"):
        WeightedEnsembleClassifier([]).fit(X, y)
    with pytest.raises(ValueError, match=r"unique; duplicated: \['m'\]"):
        StackingEnsembleClassifier([("m", GaussianNB()), ("m", DummyClassifier())]).fit(X, y)
    for weights, message in [([1.0], r"one weight per estimator \(2\)"),
                             ([1.0, -1.0], "non-negative"), ([0, 0], "all zero")]:
        with pytest.raises(ValueError, match=f"`weighting`.*{message}"):
            WeightedEnsembleClassifier(_CLF, weighting=weights, cv=2).fit(X, y)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN.*\['lr'\]"):
        WeightedEnsembleClassifier([*lr, ("hgb", HistGradientBoostingClassifier(max_iter=5))],
                                   cv=2).fit(X_nan, y)
    WeightedEnsembleClassifier([("hgb", HistGradientBoostingClassifier(max_iter=5))],
                               cv=2).fit(X_nan, y)  # a base that takes NaN gets it
    X_inf = X.copy()
    X_inf[0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        StackingEnsembleClassifier(lr, cv=2).fit(X_inf, y)
    with pytest.raises(ValueError, match="only one class"):
        WeightedEnsembleClassifier(lr, cv=2).fit(X, np.zeros(60))
    with pytest.raises(ValueError, match="`cv`=5 cannot split these 3 samples"):
        StackingEnsembleRegressor(_REG).fit(X[:3], y[:3].astype(float))
    with pytest.raises(NotFittedError, match="StackingEnsembleRegressor"):
        StackingEnsembleRegressor(_REG).predict(X)
    fitted = StackingEnsembleClassifier(lr, cv=2).fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features.*expecting 5"):
        fitted.predict(X[:, :4])
