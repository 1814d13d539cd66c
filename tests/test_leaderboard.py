"""compare(): shared folds, shared cache, metrics, ranking and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import load_diabetes, load_iris, make_classification
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, f1_score, log_loss
from sklearn.model_selection import KFold
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier

from moensemble import compare
from moensemble.leaderboard import default_models, make_folds, max_violation


class CountingClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression that appends a line to ``log`` on every fit (process-safe)."""

    def __init__(self, log: str = "", C: float = 1.0):
        self.log = log
        self.C = C

    def fit(self, X, y):
        with open(self.log, "a") as f:
            f.write(f"{len(y)}\n")
        self.model_ = LogisticRegression(C=self.C, max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X):
        return self.model_.predict(X)

    def predict_proba(self, X):
        return self.model_.predict_proba(X)


class FakeMoE(ClassifierMixin, BaseEstimator):
    """A classifier with the fitted MoE attributes that compare() reports."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        self.n_active_params_ = 1234
        self.expert_load_ = np.array([0.5, 0.25, 0.25, 0.0])
        return self

    def predict(self, X):
        return np.full(len(X), self.classes_[0])


class FailingClassifier(ClassifierMixin, BaseEstimator):
    def fit(self, X, y):
        raise RuntimeError("boom")


def test_same_fold_scores_as_fitting_by_hand():
    X, y = make_classification(n_samples=240, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    models = {"logreg": LogisticRegression(max_iter=500),
              "tree": DecisionTreeClassifier(max_depth=4, random_state=0)}
    folds = make_folds(4, X, y, task="classification", random_state=3)
    board, table = compare(models, X, y, cv=4, random_state=3, progress=False,
                           return_folds=True)
    for name, est in models.items():
        for i, (train, test) in enumerate(folds):
            fitted = est.fit(X[train], y[train])
            row = table[(table.model == name) & (table.fold == i)].iloc[0]
            pred = fitted.predict(X[test])
            assert row["accuracy"] == pytest.approx(accuracy_score(y[test], pred))
            assert row["f1_macro"] == pytest.approx(f1_score(y[test], pred, average="macro"))
            assert row["log_loss"] == pytest.approx(
                log_loss(y[test], fitted.predict_proba(X[test])), rel=1e-6)
        scores = table[table.model == name]["accuracy"]
        assert board.loc[name, "accuracy_mean"] == pytest.approx(scores.mean())
        assert board.loc[name, "accuracy_std"] == pytest.approx(scores.std(ddof=0))
    # Passing the materialised folds gives the same table.
    again = compare(models, X, y, cv=folds, progress=False)
    pd.testing.assert_frame_equal(
        pd.DataFrame(again.attrs["fold_scores"])[["model", "fold", "accuracy"]],
        table[["model", "fold", "accuracy"]])


def test_leaderboard_sorted_best_first_with_all_columns():
    X, y = load_iris(return_X_y=True)
    board = compare([("stump", DecisionTreeClassifier(max_depth=1, random_state=0)),
                     ("logreg", LogisticRegression(max_iter=500))], X, y, cv=3,
                    progress=False)
    assert list(board.index) == ["logreg", "stump"]
    assert board.index.name == "model"
    assert board.loc["stump", "accuracy_mean"] < 0.75 < board.loc["logreg", "accuracy_mean"]
    for column in ["accuracy_mean", "accuracy_std", "f1_macro_mean", "log_loss_mean",
                   "fit_time_s", "predict_time_per_1k_s", "active_params_per_row",
                   "expert_load_max_violation"]:
        assert column in board
    assert (board["fit_time_s"] > 0).all() and (board["predict_time_per_1k_s"] > 0).all()
    assert board["active_params_per_row"].isna().all()
    assert board.attrs["metric"] == "accuracy" and board.attrs["higher_is_better"]


def test_regression_metrics_and_extra_scorer_ranks():
    X, y = load_diabetes(return_X_y=True)
    board = compare([Ridge(alpha=0.01), Ridge(alpha=100.0)], X, y, cv=3, progress=False,
                    scoring="neg_mean_absolute_error")
    assert list(board.index) == ["Ridge", "Ridge_2"]  # unnamed models get class names
    assert board.attrs == {"task": "regression", "metric": "neg_mean_absolute_error",
                           "higher_is_better": True, "fold_scores": board.attrs["fold_scores"]}
    assert {"rmse_mean", "rmse_std", "r2_mean", "r2_std"} <= set(board.columns)
    assert board.loc["Ridge", "r2_mean"] > board.loc["Ridge_2", "r2_mean"]
    assert board.loc["Ridge", "rmse_mean"] == pytest.approx(
        np.mean([r["rmse"] for r in board.attrs["fold_scores"] if r["model"] == "Ridge"]))


def test_ensembles_in_a_fold_share_base_fits(tmp_path):
    from moensemble.ensemble import StackingEnsembleClassifier, WeightedEnsembleClassifier

    X, y = make_classification(n_samples=120, n_features=6, random_state=1)
    log = tmp_path / "fits.log"
    bases = [("a", CountingClassifier(str(log), C=1.0)), ("b", CountingClassifier(str(log), C=0.1))]
    models = {
        "weighted": WeightedEnsembleClassifier(bases, cv=2, refit=False),
        "stacked": StackingEnsembleClassifier(bases, cv=2, refit=False),
    }
    compare(models, X, y, cv=3, progress=False)
    # 3 outer folds x 2 inner folds x 2 bases: the stacked ensemble finds all in the cache.
    assert len(log.read_text().splitlines()) == 3 * 2 * 2
    log.unlink()
    compare(models, X, y, cv=3, progress=False, memory=None, n_jobs=2)
    assert len(log.read_text().splitlines()) == 3 * 2 * 2


def test_moe_columns_and_max_violation():
    X, y = load_iris(return_X_y=True)
    board = compare({"moe": FakeMoE(), "tree": DecisionTreeClassifier(random_state=0)}, X, y,
                    cv=3, progress=False)
    assert board.loc["moe", "active_params_per_row"] == 1234
    assert board.loc["moe", "expert_load_max_violation"] == pytest.approx(1.0)
    assert np.isnan(board.loc["tree", "expert_load_max_violation"])
    assert np.isnan(board.loc["moe", "log_loss_mean"])  # no predict_proba
    assert max_violation([1, 1, 1, 1]) == 0.0
    assert max_violation([4, 0, 0, 0]) == pytest.approx(3.0)
    assert max_violation([[1, 1], [2, 0]]) == pytest.approx(1.0)  # the worst layer


def test_failed_model_gets_error_score_or_raises():
    X, y = load_iris(return_X_y=True)
    models = {"ok": LogisticRegression(max_iter=500), "bad": FailingClassifier()}
    with pytest.warns(UserWarning, match="'bad' failed on fold"):
        board = compare(models, X, y, cv=2, progress=False)
    assert list(board.index) == ["ok", "bad"]
    assert np.isnan(board.loc["bad", "accuracy_mean"])
    with pytest.raises(RuntimeError, match="boom"):
        compare(models, X, y, cv=2, progress=False, error_score="raise")


def test_return_estimators_and_text_pipelines():
    texts = [f"{w} {w} item {i}" for i in range(30) for w in ("cat", "dog", "fish")]
    labels = np.array([w for _ in range(30) for w in ("cat", "dog", "fish")])
    pipe = Pipeline([("tfidf", TfidfVectorizer()), ("nb", ComplementNB())])
    board, table = compare({"nb": pipe}, np.array(texts, dtype=object), labels, cv=3,
                           progress=False, return_folds=True, return_estimators=True)
    assert board.loc["nb", "accuracy_mean"] == 1.0
    assert len(table) == 3 and all(hasattr(e, "classes_") for e in table["estimator"])
    assert "estimator" not in board.attrs["fold_scores"][0]


def test_return_estimators_can_keep_only_the_named_models():
    X, y = load_iris(return_X_y=True)
    models = {"logreg": LogisticRegression(max_iter=500), "tree": DecisionTreeClassifier()}
    _, table = compare(models, X, y, cv=3, progress=False, return_folds=True,
                       return_estimators=["tree"])
    kept = table.set_index("model")["estimator"]
    assert all(isinstance(e, DecisionTreeClassifier) for e in kept["tree"])
    assert kept["logreg"].isna().all()
    for bad, match in ((["forest"], "forest"), ("tree", "bool or a list")):
        with pytest.raises(ValueError, match=match):
            compare(models, X, y, cv=3, progress=False, return_estimators=bad)


def test_bad_inputs():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="all classifiers or all regressors"):
        compare([LogisticRegression(), Ridge()], X, y, progress=False)
    with pytest.raises(ValueError, match="at least two classes"):
        compare([LogisticRegression()], X, np.zeros(len(y)), progress=False)
    with pytest.raises(ValueError, match="at least 2 folds"):
        compare([LogisticRegression()], X, y, cv=1, progress=False)
    with pytest.raises(ValueError, match="unique"):
        compare([("a", LogisticRegression()), ("a", FakeMoE())], X, y, progress=False)


def test_default_models_shapes():
    names = [n for n, _ in default_models("classification", sparse=True)]
    assert names == ["logreg", "naive_bayes", "extra_trees", "weighted", "stacked", "moe",
                     "gated"]
    models = dict(default_models("classification", features=TfidfVectorizer(), sparse=True,
                                 quick=True))
    assert all(isinstance(m, Pipeline) and m.steps[0][0] == "features" for m in models.values())
    assert models["moe"][-1].get_params()["max_epochs"] == 20
    # Ensemble members are refit on all rows, like the single members they compete with.
    assert models["weighted"][-1].get_params()["refit"] is True
    assert models["stacked"][-1].final_estimator.C == 10.0
    # The gated ensemble routes each row to 2 of the same members.
    gated = models["gated"][-1]
    assert (gated.router, gated.top_k) == ("topk", 2)
    assert [n for n, _ in gated.estimators] == ["logreg", "naive_bayes", "extra_trees"]
    # The three ensembles split alike, so that compare's shared cache serves them all.
    splits = {repr(models[name][-1].cv) for name in ("weighted", "stacked", "gated")}
    assert splits == {"StratifiedKFold(n_splits=3, random_state=0, shuffle=True)"}
    # Dense-only members get an SVD projection of sparse input.
    assert models["extra_trees"][-1].steps[0][0] == "svd"
    regression = [n for n, _ in default_models("regression")]
    assert regression == ["ridge", "extra_trees", "weighted", "stacked", "moe", "gated"]
    with pytest.raises(ValueError, match="task"):
        default_models("clustering")


def test_cv_splitter_is_used_as_given():
    X, y = load_diabetes(return_X_y=True)
    splitter = KFold(4)
    table = compare([Ridge()], X, y, cv=splitter, progress=False, return_folds=True)[1]
    assert len(table) == 4
    expected = [Ridge().fit(X[tr], y[tr]).score(X[te], y[te]) for tr, te in splitter.split(X)]
    np.testing.assert_allclose(table["r2"], expected)


def test_single_models_and_ensemble_refits_share_one_fit(tmp_path):
    from moensemble.ensemble import StackingEnsembleClassifier

    X, y = make_classification(n_samples=120, n_features=6, random_state=1)
    log = tmp_path / "fits.log"
    bases = [("a", CountingClassifier(str(log), C=1.0)), ("b", CountingClassifier(str(log), C=0.1))]
    models = {"a": CountingClassifier(str(log), C=1.0),
              "stacked": StackingEnsembleClassifier(bases, cv=2)}
    board, table = compare(models, X, y, cv=3, progress=False, return_folds=True,
                           return_estimators=True)
    # Per outer fold: `a` once (the stack's refit of its `a` reads that fit from the cache),
    # 2 inner folds x 2 bases, and the refit of `b`: 6, not 7.
    assert len(log.read_text().splitlines()) == 3 * 6
    # With two workers, a fold is cut into jobs that never need the same fit at once: the
    # same fits, the same scores.
    log.unlink()
    again = compare(models, X, y, cv=3, progress=False, n_jobs=2)
    assert len(log.read_text().splitlines()) == 3 * 6
    scores = ["model", "fold", "accuracy", "log_loss"]
    pd.testing.assert_frame_equal(pd.DataFrame(again.attrs["fold_scores"])[scores],
                                  pd.DataFrame(board.attrs["fold_scores"])[scores])
    folds = make_folds(3, X, y)
    for (train, test), fitted in zip(folds, table.query("model == 'a'")["estimator"],
                                     strict=True):
        assert isinstance(fitted, CountingClassifier)  # a bare model comes back unwrapped
        fresh = CountingClassifier(str(log), C=1.0).fit(X[train], y[train])
        np.testing.assert_array_equal(fitted.predict_proba(X[test]),
                                      fresh.predict_proba(X[test]))


def test_reused_fits_predict_as_fresh_fits_on_a_small_text_board(tmp_path):
    from sklearn.base import clone

    from moensemble import MoEClassifier
    from moensemble.ensemble import StackingEnsembleClassifier

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(60)])
    labels = rng.integers(0, 3, 150)
    texts = np.array([" ".join(rng.choice(words[20 * c: 20 * c + 30], 6)) for c in labels],
                     dtype=object)
    y = np.array(["abc"[c] for c in labels])
    logreg = LogisticRegression(C=10.0, max_iter=300)
    moe = MoEClassifier(n_experts=4, top_k=2, expert_hidden=(16,), max_epochs=3,
                        random_state=0)
    stacked = StackingEnsembleClassifier([("logreg", logreg), ("moe", moe)], cv=2,
                                         random_state=0)
    models = {name: Pipeline([("tfidf", TfidfVectorizer()), (name, est)])
              for name, est in [("logreg", logreg), ("moe", moe), ("stacked_moe", stacked)]}
    _, table = compare(models, texts, y, cv=2, progress=False, return_folds=True,
                       return_estimators=True, memory=str(tmp_path), n_jobs=2)
    # One fit on all of a fold's rows per member: the stack's refits were cache hits.
    refits = [p for p in tmp_path.rglob("_fit_all/*") if p.is_dir()]
    assert len(refits) == 2 * 2
    train, test = make_folds(2, texts, y)[0]
    kept = table.query("fold == 0").set_index("model")["estimator"]
    for name, model in models.items():
        fresh = clone(model).fit(texts[train], y[train])
        np.testing.assert_allclose(kept[name].predict_proba(texts[test]),
                                   fresh.predict_proba(texts[test]), atol=1e-6)
    # The stack's MoE member is the plain moe's fit (read back from the cache).
    Xt = kept["moe"][0].transform(texts[test])
    np.testing.assert_array_equal(kept["stacked_moe"][-1].named_estimators_["moe"]
                                  .predict_proba(Xt), kept["moe"][-1].predict_proba(Xt))


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_temporary_cache_is_removed_after_an_error_in_a_model(tmp_path, monkeypatch, n_jobs):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    X, y = load_iris(return_X_y=True)
    models = {"ok": LogisticRegression(max_iter=500), "bad": FailingClassifier()}
    with pytest.raises(RuntimeError, match="boom"):
        compare(models, X, y, cv=2, progress=False, error_score="raise", n_jobs=n_jobs)
    assert not list(tmp_path.glob("moensemble-cache-*"))


class _ProbaOnlyLogreg(LogisticRegression):
    """A logistic regression whose ``predict`` must not be called (compare takes the labels
    from ``predict_proba``), counting its ``predict_proba`` calls in ``log``."""

    def __init__(self, log="", C=1.0, max_iter=500):
        super().__init__(C=C, max_iter=max_iter)
        self.log = log

    def predict(self, X):
        raise AssertionError("predict called: the labels should come from predict_proba")

    def predict_proba(self, X):
        with open(self.log, "a") as f:
            f.write("proba\n")
        return super().predict_proba(X)


def test_compare_takes_labels_from_the_probabilities_once(tmp_path):
    X, y = load_iris(return_X_y=True)
    log = tmp_path / "calls.log"
    board = compare({"proba_only": _ProbaOnlyLogreg(str(log)),
                     "plain": LogisticRegression(max_iter=500)}, X, y, cv=3, progress=False)
    # The same labels as predict, so the same scores; one predict_proba a fold.
    for metric in ("accuracy_mean", "f1_macro_mean", "log_loss_mean"):
        assert board.loc["proba_only", metric] == board.loc["plain", metric]
    assert log.read_text().count("proba") == 3


def test_labels_from_proba_only_for_models_whose_predict_is_its_argmax(tmp_path):
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import MinMaxScaler

    from moensemble.ensemble import StackingEnsembleClassifier, WeightedEnsembleClassifier
    from moensemble.leaderboard import labels_from_proba

    X, y = make_classification(300, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    members = [("lr", LogisticRegression(max_iter=500)),
               ("nb", Pipeline([("scale", MinMaxScaler()), ("nb", ComplementNB())])),
               ("trees", ExtraTreesClassifier(10, random_state=0))]
    known = [*(est for _, est in members),
             WeightedEnsembleClassifier(members, cv=3, random_state=0),
             StackingEnsembleClassifier(members, cv=3, random_state=0)]
    for est in known:
        est.fit(X, y)
        assert labels_from_proba(est), est
        # What the shortcut relies on, checked on these rows.
        np.testing.assert_array_equal(est.predict(X),
                                      est.classes_[np.argmax(est.predict_proba(X), axis=1)])
    # A model not known to predict the argmax of its probabilities keeps its predict.
    assert not labels_from_proba(KNeighborsClassifier().fit(X, y))
    assert not labels_from_proba(CountingClassifier(str(tmp_path / "fits.log")).fit(X, y))
    assert not labels_from_proba(WeightedEnsembleClassifier(members, voting="hard", cv=3)
                                 .fit(X, y))
    stack = StackingEnsembleClassifier(members, final_estimator=KNeighborsClassifier(),
                                       cv=3).fit(X, y)
    assert not labels_from_proba(stack)
