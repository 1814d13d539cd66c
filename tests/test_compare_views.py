"""`moensemble compare --text-views`: members behind different TF-IDF views of the text."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.naive_bayes import ComplementNB
from sklearn.pipeline import Pipeline

from moensemble import compare
from moensemble._compare_jobs import SharedTransform
from moensemble.cli import main
from moensemble.cli.compare import build_models, with_text_views
from moensemble.ensemble import StackingEnsembleClassifier, WeightedEnsembleClassifier
from moensemble.leaderboard import default_models
from moensemble.text import CountedTfidfVectorizer, TermCounts, tfidf_view


class CountingClassifier(ClassifierMixin, BaseEstimator):
    """Logistic regression that appends a line to ``log`` on every fit (process-safe)."""

    def __init__(self, log: str = ""):
        self.log = log

    def fit(self, X, y):
        with open(self.log, "a") as f:
            f.write(f"{len(y)}\n")
        self.model_ = LogisticRegression(C=10.0, max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict_proba(self, X):
        return self.model_.predict_proba(X)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(1)]

TOPICS = {"sport": "ball goals teams matched players", "food": "bread cheeses soups tasted",
          "music": "songs guitars bands tunes singing"}


def _texts(n_per_class: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in TOPICS.items():
        for _ in range(n_per_class):
            texts.append(" ".join(rng.choice(words.split() + ["the", "a", "very"], size=6)))
            labels.append(label)
    return np.array(texts, dtype=object), np.array(labels)


def _args(views=None, **extra) -> argparse.Namespace:
    return argparse.Namespace(max_features=100, random_state=0, text_views=views,
                              text_features="tfidf", **extra)


def _bundled_like(X, y) -> dict:
    return {"X": X, "y": y, "task": "classification", "text": True, "numeric": [],
            "text_column": None}


def test_word_alone_builds_todays_models_parameter_for_parameter():
    X, y = _texts()
    today = default_models(
        "classification", sparse=True, quick=True, moe_members=True, mlp=True, n_rows=len(y),
        random_state=0, features=CountedTfidfVectorizer(
            counts=TermCounts(), sublinear_tf=True, min_df=2, max_features=100,
            ngram_range=(1, 2), dtype=np.float32))
    dataset = with_text_views(_bundled_like(X, y), _args(("word",)))
    assert dataset["X"] is X  # the texts as they were: a 1-d array
    built = build_models(dataset, _args(("word",)))
    assert [n for n, _ in built] == [n for n, _ in today]
    for (_, a), (_, b) in zip(built, today, strict=True):
        assert repr(a.get_params(deep=True)) == repr(b.get_params(deep=True))
    # Without the option: both views.
    assert with_text_views(_bundled_like(X, y), _args())["views"] == ("word", "char")


def test_each_view_has_its_members_and_they_see_different_features():
    X, y = _texts()
    dataset = with_text_views(_bundled_like(X, y), _args(("word", "char")))
    assert list(dataset["X"].columns) == ["text"] and len(dataset["X"]) == len(y)
    models = dict(build_models(dataset, _args(("word", "char"))))
    assert list(models) == ["logreg", "naive_bayes", "extra_trees", "logreg_char",
                            "naive_bayes_char", "weighted", "stacked", "moe", "gated",
                            "weighted_moe", "stacked_moe", "mlp"]
    # The ensembles combine the members of both views, on the raw text column.
    for name in ("weighted", "stacked", "gated"):
        assert [n for n, _ in models[name].estimators] == [
            "logreg", "naive_bayes", "extra_trees", "logreg_char", "naive_bayes_char"]
    assert [n for n, _ in models["stacked_moe"].estimators][-1] == "moe"
    frame = dataset["X"]
    word = models["logreg"][0].fit(frame).get_feature_names_out()
    char = models["logreg_char"][0].fit(frame).get_feature_names_out()
    words = {w for t in X for w in t.split()}
    assert all(set(term.split("__")[-1].split()) <= words for term in word)
    assert all(len(term.split("__")[-1]) <= 5 for term in char)  # 2-5 character grams
    assert not set(word) & set(char)
    # The word members and the MoE see the word view; the gated router sees it too.
    assert models["naive_bayes"].steps[0][0] == models["moe"].steps[0][0] == "word"
    assert models["naive_bayes_char"].steps[0][0] == "char"
    router = models["gated"].router_preprocessor
    assert repr(router[0].get_params()) == repr(models["logreg"][0].get_params())
    # Its router with weight decay and no load balancing (it memorised the training rows'
    # best members, and the balance pushed rows to the weak ones); the word board's as today.
    gated = models["gated"].get_params(deep=False)
    assert (gated["weight_decay"], gated["aux_loss_coef"], gated["top_k"]) == (1e-3, 0.0, 2)
    word = dict(build_models(with_text_views(_bundled_like(X, y), _args(("word",))),
                             _args(("word",))))["gated"][-1].get_params(deep=False)
    assert (word["weight_decay"], word["aux_loss_coef"]) == (0.0, 1e-2)
    # The char view's logistic regression: 10 saga epochs (its 16x non-zeros), same C.
    char = models["logreg_char"][-1].get_params()
    assert (char["solver"], char["max_iter"], char["C"]) == ("saga", 10, 10.0)
    assert models["logreg"][-1].get_params()["solver"] == "lbfgs"  # the word view's: today's


def test_a_table_with_text_gets_char_ngrams_of_its_text_columns_beside_the_encoder():
    from moensemble.features import TableEncoder

    X, y = _texts()
    frame = pd.DataFrame({"review": X, "price": np.arange(len(y), dtype=float)})
    frame.loc[3, "review"] = np.nan  # a missing text counts as empty
    dataset = {"X": frame, "y": y, "task": "classification", "text": True,
               "kinds": {"review": "text", "price": "numeric"}, "text_column": "review",
               "numeric": ["price"]}
    dataset = with_text_views(dataset, _args(("word", "char")))
    assert dataset["X"] is frame
    models = dict(build_models(dataset, _args(("word", "char"))))
    assert isinstance(models["logreg"][0].transformer, TableEncoder)  # shared per fold
    char = models["logreg_char"][0].fit_transform(frame)
    assert char.shape[0] == len(frame) and char[3].nnz == 0 and char[4].nnz > 0


def test_the_cache_fits_each_member_once_per_fold_across_views_and_ensembles(tmp_path):
    X, y = _texts(20)
    frame = pd.DataFrame({"text": X})
    log = tmp_path / "fits.log"
    views = {"word": tfidf_view("word", column="text"), "char": tfidf_view("char", column="text")}
    members = [(name, Pipeline([(view, views[view]), ("model", CountingClassifier(str(log)))]))
               for name, view in [("a", "word"), ("a_char", "char")]]
    models = [*members,
              ("weighted", WeightedEnsembleClassifier(members, cv=2, random_state=0)),
              ("stacked", StackingEnsembleClassifier(members, cv=2, random_state=0))]
    for n_jobs in (1, 2):
        log.write_text("")
        board = compare(models, frame, y, cv=3, progress=False, n_jobs=n_jobs)
        # Per outer fold and member: 2 inner fits and one refit, which is also the single
        # model's fit; the second ensemble reads all of them back. 2 x 3, not 2 x 7.
        assert len(log.read_text().splitlines()) == 3 * 2 * 3
        assert board["accuracy_mean"].notna().all()


def test_end_to_end_on_the_bundled_glosses_with_two_views(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--n-samples", "300", "--cv", "2", "--output", str(out), "--quiet",
                 "--text-views", "word,char", "--models", "logreg,logreg_char,weighted"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "leaderboard.json").read_text())
    assert report["text_views"] == ["word", "char"]
    board = pd.read_csv(out / "leaderboard.csv", index_col="model")
    assert set(board.index) == {"logreg", "logreg_char", "weighted"}
    # Two different views of the same texts: different scores.
    assert board.loc["logreg", "log_loss_mean"] != board.loc["logreg_char", "log_loss_mean"]


@pytest.mark.parametrize("value", ["char", "word,word", "char,word", "words", ""])
def test_bad_text_views_are_refused_naming_the_option(value, tmp_path, capsys):
    assert main(["compare", "--text-views", value, "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "argument --text-views: expected word or word,char" in err[0]


def test_a_second_view_needs_tfidf_text(tmp_path, capsys):
    table = pd.DataFrame({"a": np.arange(40.0), "label": [0, 1] * 20})
    path = tmp_path / "numbers.csv"
    table.to_csv(path, index=False)
    code = main(["compare", "--data", str(path), "--target", "label", "--text-views",
                 "word,char", "--output", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "--text-views word,char needs a text column" in capsys.readouterr().err
    code = main(["compare", "--text-features", "embeddings", "--text-views", "word,char",
                 "--output", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "leave it out with --text-features embeddings" in capsys.readouterr().err


def test_above_full_cost_rows_the_char_view_keeps_only_a_cheaper_logreg():
    from moensemble.leaderboard import FULL_COST_ROWS

    X, y = _texts()
    args = _args(("word", "char"))
    dataset = with_text_views(_bundled_like(X, y), args)
    small = dict(build_models({**dataset, "y": np.zeros(FULL_COST_ROWS)}, args))
    large = dict(build_models({**dataset, "y": np.zeros(117_659)}, args))
    assert {"logreg_char", "naive_bayes_char"} <= set(small)
    assert "naive_bayes_char" not in large
    assert [n for n, _ in large["stacked"].estimators] == [
        "logreg", "naive_bayes", "extra_trees", "logreg_char"]
    char = large["logreg_char"][-1].get_params()
    assert (char["solver"], char["max_iter"]) == ("saga", 10)
    assert large["logreg"][-1].get_params()["max_iter"] == 30  # the word view's: as before


def test_the_default_is_both_views_at_every_size_the_word_view_alone_when_asked():
    X, y = _texts()
    whole = _bundled_like(np.resize(X, 117_659), np.resize(y, 117_659))  # the bundled set
    assert with_text_views(whole, _args())["views"] == ("word", "char")
    assert list(with_text_views(whole, _args())["X"].columns) == ["text"]
    assert with_text_views(whole, _args(("word",)))["views"] == ("word",)
    assert with_text_views(whole, _args(("word",)))["X"] is whole["X"]  # today's input


class CountingView(TransformerMixin, BaseEstimator):
    """A word TF-IDF of the ``text`` column that appends ``fit`` / ``transform`` to ``log``."""

    def __init__(self, log: str = ""):
        self.log = log

    def _note(self, what: str, X) -> None:
        with open(self.log, "a") as f:
            f.write(f"{what} {len(X)}\n")

    def fit(self, X, y=None):
        self._note("fit", X)
        self.tfidf_ = TfidfVectorizer().fit(X["text"])
        return self

    def transform(self, X):
        self._note("transform", X)
        return self.tfidf_.transform(X["text"])


def test_a_shared_view_is_fitted_once_per_fold_and_transforms_each_rows_once(tmp_path):
    X, y = _texts(20)
    frame = pd.DataFrame({"text": X})
    log = tmp_path / "view.log"
    view = SharedTransform(CountingView(str(log)))
    members = [("logreg", Pipeline([("view", view), ("model", LogisticRegression(C=10.0))])),
               ("nb", Pipeline([("view", view), ("model", ComplementNB())]))]
    models = [*members,
              ("weighted", WeightedEnsembleClassifier(members, cv=2, random_state=0)),
              ("stacked", StackingEnsembleClassifier(members, cv=2, random_state=0))]
    board = compare(models, frame, y, cv=2, progress=False, n_jobs=1)
    assert board["accuracy_mean"].notna().all()
    calls = log.read_text().splitlines()
    # Per outer fold, for both members and both ensembles: the view fitted on the outer
    # training rows and on each of the 2 inner ones (fit_transform: a fit, then a transform
    # of those rows), and each test part transformed once (the outer test rows for 2 single
    # models and 2 ensembles, by predict and predict_proba each; each inner test part).
    assert sum(c.startswith("fit") for c in calls) == 2 * 3
    assert sum(c.startswith("transform") for c in calls) == 2 * (3 + 3)
    # Without the cache, the single model alone: each fit and each prediction pays (one
    # prediction a fold: the labels are the argmax of predict_proba).
    log.write_text("")
    plain = Pipeline([("view", CountingView(str(log))), ("model", ComplementNB())])
    assert compare({"nb": plain}, frame, y, cv=2, progress=False)["accuracy_mean"].notna().all()
    assert len(log.read_text().splitlines()) == 2 * (2 + 1)


def test_a_shared_view_outside_compare_is_its_transformer(tmp_path):
    from joblib import Memory

    X, _ = _texts(10)
    frame = pd.DataFrame({"text": X})
    plain = tfidf_view("char", column="text").fit(frame[:20]).transform(frame[20:])
    alone = SharedTransform(tfidf_view("char", column="text")).fit(frame[:20])
    assert (alone.transform(frame[20:]) != plain).nnz == 0
    assert list(alone.get_feature_names_out()) == list(alone.transformer_.get_feature_names_out())
    cache = tmp_path / "cache"
    shared = SharedTransform(tfidf_view("char", column="text"), memory=Memory(cache, verbose=0))
    assert (shared.fit(frame[:20]).transform(frame[20:]) != plain).nnz == 0
    # Kept after `compare` removed its cache folder: transforms without writing a new one.
    import shutil

    shutil.rmtree(cache)
    assert (shared.transform(frame[20:]) != plain).nnz == 0 and not cache.exists()
    with pytest.raises(ValueError, match="transformer"):
        SharedTransform("tfidf").fit(frame)


def test_a_small_vocabulary_keeps_the_dense_members_fitting():
    # 10 TF-IDF columns where the dense-only members' SVD asks for 100 components: it keeps
    # 9 (sklearn's TruncatedSVD raises), and its parameter stays as given.
    X, y = _texts()
    args = _args(("word",))
    args.max_features = 10
    dataset = with_text_views(_bundled_like(X, y), args)
    model = dict(build_models(dataset, args))["extra_trees"]
    proba = model.fit(dataset["X"], y).predict_proba(dataset["X"])
    assert np.isfinite(proba).all() and proba.shape == (len(y), 3)
    svd = model[-1].named_steps["svd"]
    assert svd.get_params()["n_components"] == 100 and svd.components_.shape[0] == 9


def test_the_views_cache_their_work_once_the_pipelines_around_them_not_again(tmp_path):
    from joblib import Memory

    from moensemble._compare_jobs import share_all

    X, y = _texts(10)
    dataset = with_text_views(_bundled_like(X, y), _args())
    cache = Memory(tmp_path / "cache", verbose=0)
    shared = dict(share_all(build_models(dataset, _args()), cache))

    def cached(est) -> set[str]:
        return {k for k, v in est.get_params(deep=True).items()
                if k.endswith("memory") and v is cache}

    # A member behind its view: only the view caches (its fit and transforms), and the
    # single model's wrapper its fit (`memory`); the member pipeline's cache would have
    # written each transformed matrix a second time, and the view's own inner pipeline
    # (FunctionTransformer, TF-IDF) a third.
    assert cached(shared["logreg"]) == {"memory", "model__word__memory"}
    assert cached(shared["logreg_char"]) == {"memory", "model__char__memory"}
    # Behind the view, the SVD before the trees is worth caching: that pipeline keeps it.
    assert cached(shared["extra_trees"]) == {"memory", "model__memory", "model__word__memory"}
    stacked = shared["stacked"]
    assert cached(stacked) == {"memory"}
    members = dict(stacked.get_params(deep=False)["estimators"])
    assert cached(members["logreg"]) == {"word__memory"}
    assert cached(members["extra_trees"]) == {"memory", "word__memory"}
    assert cached(shared["gated"]) == {"memory", "router_preprocessor__word__memory"}
