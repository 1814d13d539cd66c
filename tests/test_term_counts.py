"""CountedTfidfVectorizer and TermCounts: each text analysed once, the same fit and output."""

from __future__ import annotations

import copy
import gc
import pickle

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.datasets import load_wordnet_glosses
from moensemble.persist import load, save
from moensemble.text import KEPT_STORES, CountedTfidfVectorizer, TermCounts, tfidf_view


@pytest.fixture(scope="module")
def glosses():
    X, _ = load_wordnet_glosses(return_X_y=True)
    return [str(text) for text in np.asarray(X)[:3000]]


@parametrize_with_checks([CountedTfidfVectorizer(counts=TermCounts())],
                         expected_failed_checks=lambda est: {})
def test_sklearn_api_checks(estimator, check):
    # Text input: scikit-learn runs its API checks only (as for its own TfidfVectorizer).
    check(estimator)


SETTINGS = [
    dict(analyzer="char_wb", ngram_range=(2, 5), min_df=2, max_features=3000,
         sublinear_tf=True, dtype=np.float32),
    dict(ngram_range=(1, 2), min_df=2, max_features=2000, sublinear_tf=True),
    dict(analyzer="char", ngram_range=(1, 3), max_df=0.5, min_df=0.001, binary=True),
    dict(stop_words=["the", "of", "a"], lowercase=False, norm="l1", use_idf=False),
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_fits_on_other_rows_match_the_plain_vectorizer(glosses, settings):
    # Three folds' fits over one store: vocabulary and idf as scikit-learn's, to the bit, and
    # the output on the fit rows and on rows never fitted.
    counts = TermCounts()
    rng = np.random.default_rng(0)
    for _ in range(3):
        order = rng.permutation(len(glosses))
        fit = [glosses[i] for i in order[:2000]]
        test = [glosses[i] for i in order[2000:]]
        plain = TfidfVectorizer(**settings)
        counted = CountedTfidfVectorizer(counts=counts, **settings)
        A, B = plain.fit_transform(fit), counted.fit_transform(fit)
        assert counted.vocabulary_ == plain.vocabulary_
        if settings.get("use_idf", True):
            np.testing.assert_array_equal(counted.idf_, plain.idf_)
        for a, b in [(A, B), (plain.transform(test), counted.transform(test))]:
            # The same entries; values to the last bit but the rows' norms, which sum the
            # entries in the order each matrix stores them.
            assert a.dtype == b.dtype and a.shape == b.shape and a.nnz == b.nnz
            assert abs(a - b).max() <= 4 * np.finfo(a.dtype).eps


def test_each_text_is_analysed_once(glosses, monkeypatch):
    calls = []
    build = CountedTfidfVectorizer.build_analyzer

    def counting(self):
        analyze = build(self)
        return lambda doc: calls.append(doc) or analyze(doc)

    monkeypatch.setattr(CountedTfidfVectorizer, "build_analyzer", counting)
    counts = TermCounts()
    view = CountedTfidfVectorizer(counts=counts, analyzer="char_wb", ngram_range=(2, 4))
    view.fit(glosses[:2000])
    assert len(calls) == len(set(glosses[:2000]))
    clone(view).fit(glosses[500:1500])          # rows already counted: nothing analysed
    view.transform(glosses[1000:2500])          # only the 500 new texts
    assert len(calls) == len(set(glosses[:2500]))
    # Another analyzer's settings in the same store: counted apart, not mixed.
    CountedTfidfVectorizer(counts=counts, analyzer="word").fit(glosses[:100])
    assert len(calls) == len(set(glosses[:2500])) + len(set(glosses[:100]))


def test_copies_share_the_store_and_pickle_as_a_name(glosses):
    counts = TermCounts()
    view = CountedTfidfVectorizer(counts=counts).fit(glosses)
    assert repr(counts) == f"TermCounts(texts={len(set(glosses))})"
    for other in (clone(view).counts, copy.deepcopy(counts), pickle.loads(pickle.dumps(counts))):
        assert other is not counts and other._store is counts._store
    assert len(pickle.dumps(counts)) < 200                 # the name, not 3,000 texts' counts
    assert joblib.hash(clone(view)) == joblib.hash(clone(view))
    assert TermCounts()._store is not counts._store


def test_a_workers_next_job_finds_the_counts_of_the_last(glosses):
    # A joblib worker unpickles the model with each job and drops it after: the store must
    # outlive that copy, so that the next job's copy finds the texts already counted.
    blob = pickle.dumps(CountedTfidfVectorizer(counts=TermCounts()))
    first = pickle.loads(blob).fit(glosses[:200])
    del first
    gc.collect()
    second = pickle.loads(blob)
    assert repr(second.counts) == f"TermCounts(texts={len(set(glosses[:200]))})"
    assert repr(second.counts.clear()) == "TermCounts(texts=0)"
    # Only the last KEPT_STORES stores outlive their TermCounts.
    second.fit(glosses[:200])
    del second
    kept = [TermCounts() for _ in range(KEPT_STORES)]
    gc.collect()
    assert repr(pickle.loads(blob).counts) == "TermCounts(texts=0)"
    assert all(repr(counts) == "TermCounts(texts=0)" for counts in kept)


def test_uncounted_settings_and_inputs_are_the_plain_vectorizer(glosses):
    # A callable analyzer or tokenizer, or bytes: analysed as usual, nothing stored.
    counts = TermCounts()
    texts = glosses[:300]
    for settings, docs in [(dict(analyzer=str.split), texts),
                           (dict(tokenizer=str.split, token_pattern=None), texts),
                           ({}, [t.encode() for t in texts])]:
        plain = TfidfVectorizer(**settings).fit_transform(docs)
        counted = CountedTfidfVectorizer(counts=counts, **settings).fit_transform(docs)
        assert abs(plain - counted).max() == 0
    assert repr(counts) == "TermCounts(texts=0)"


def test_bad_input_is_the_plain_vectorizers_error():
    with pytest.raises(ValueError, match="empty vocabulary"):
        CountedTfidfVectorizer(counts=TermCounts(), stop_words=["aa"]).fit(["aa", "aa"])
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        CountedTfidfVectorizer(counts=TermCounts()).fit("one text")
    with pytest.raises(ValueError, match="'counts' parameter"):
        CountedTfidfVectorizer(counts="shared").fit(["a text", "another text"])


def test_a_counted_view_saves_and_loads(glosses, tmp_path):
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    frame = pd.DataFrame({"text": glosses[:400]})
    y = np.arange(400) % 3
    model = make_pipeline(tfidf_view("char", column="text", counts=TermCounts()),
                          LogisticRegression(max_iter=200)).fit(frame, y)
    loaded = load(save(model, tmp_path / "view.zip"))
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))
    plain = make_pipeline(tfidf_view("char", column="text"),
                          LogisticRegression(max_iter=200)).fit(frame, y)
    np.testing.assert_array_equal(plain.predict_proba(frame), model.predict_proba(frame))
