from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from moensemble.datasets import load_wordnet_glosses, make_regime_classification


def test_full_data_has_documented_shape_and_45_classes():
    bunch = load_wordnet_glosses()
    assert len(bunch.data) == bunch.target.shape[0] == 117_659
    assert len(bunch.target_names) == 45
    assert {"noun.animal", "verb.motion", "adj.all", "adv.all"} <= set(bunch.target_names)
    assert all(isinstance(text, str) and text for text in bunch.data)
    assert bunch.frame is None
    assert "WordNet 3.0" in bunch.DESCR and "117,659 glosses, 45 classes" in bunch.DESCR


def test_known_gloss_has_its_label():
    frame = load_wordnet_glosses(as_frame=True).frame
    dog = frame.loc[frame["synset"] == "n02084071"].iloc[0]
    assert dog["label"] == "noun.animal"
    assert dog["text"].startswith("a member of the genus Canis")
    assert dog["lemmas"] == "dog|domestic dog|Canis familiaris"
    # The gloss alone is the text: the lemma list is not prepended.
    assert not dog["text"].startswith("dog")


def test_subset_is_stratified():
    full = pd.Series(load_wordnet_glosses(return_X_y=True)[1]).value_counts(normalize=True)
    X, y = load_wordnet_glosses(n_samples=3000, min_class_size=1, return_X_y=True)
    assert len(X) == len(y) == 3000
    counts = pd.Series(y).value_counts()
    kept = full[full * 3000 >= 1]
    assert set(counts.index) == set(kept.index)
    # Every class is within one row of its share of the kept classes.
    exact = kept / kept.sum() * 3000
    assert np.abs(counts.reindex(exact.index) - exact).max() < 1


def test_min_class_size_drops_classes_too_small_for_the_subset():
    y = load_wordnet_glosses(n_samples=1000, min_class_size=5, return_X_y=True)[1]
    counts = pd.Series(y).value_counts()
    assert len(y) == 1000
    assert counts.min() >= 5
    assert 20 < len(counts) < 45
    assert "noun.motive" not in counts.index  # 42 of 117,659 rows: 0.4 expected


def test_classes_and_as_frame():
    bunch = load_wordnet_glosses(classes=["noun.plant", "noun.animal"], as_frame=True)
    assert list(bunch.target_names) == ["noun.animal", "noun.plant"]
    assert bunch.frame.shape == (7509 + 8030, 4)
    assert list(bunch.frame.columns) == ["text", "label", "synset", "lemmas"]
    assert isinstance(bunch.data, pd.Series) and isinstance(bunch.target, pd.Series)
    assert bunch.frame["synset"].is_unique


def test_random_state_determines_the_subset():
    first = load_wordnet_glosses(n_samples=500, return_X_y=True, random_state=3)
    again = load_wordnet_glosses(n_samples=500, return_X_y=True, random_state=3)
    other = load_wordnet_glosses(n_samples=500, return_X_y=True, random_state=4)
    assert first[0] == again[0]
    np.testing.assert_array_equal(first[1], again[1])
    assert first[0] != other[0]


def test_rows_are_shuffled():
    y = load_wordnet_glosses(return_X_y=True)[1]
    # In file order all nouns come first; shuffled, the first 1000 rows mix parts of speech.
    assert len({label.split(".")[0] for label in y[:1000]}) == 4


@pytest.mark.parametrize("n_samples", [0, -5, 117_660, 2.5, "100", True])
def test_bad_n_samples_is_a_clear_error(n_samples):
    with pytest.raises(ValueError, match="n_samples"):
        load_wordnet_glosses(n_samples=n_samples)


def test_bad_classes_and_min_class_size_are_clear_errors():
    with pytest.raises(ValueError, match="unknown: \\['noun.dragon'\\]"):
        load_wordnet_glosses(classes=["noun.animal", "noun.dragon"])
    with pytest.raises(ValueError, match="not a string"):
        load_wordnet_glosses(classes="noun.animal")
    with pytest.raises(ValueError, match="min_class_size"):
        load_wordnet_glosses(min_class_size=0)
    with pytest.raises(ValueError, match="No class has min_class_size=5"):
        load_wordnet_glosses(n_samples=10, min_class_size=5)


def test_licence_ships_with_the_data():
    data = resources.files("moensemble.datasets") / "data"
    licence = (data / "WORDNET_LICENSE.txt").read_text(encoding="utf-8")
    assert "WordNet 3.0 Copyright 2006 by Princeton University" in licence
    assert (data / "wordnet_glosses.tsv.xz").is_file()


# -- make_regime_classification ------------------------------------------------------------
def test_regime_classification_shapes_and_determinism():
    X, y, regimes, bayes = make_regime_classification(
        400, n_features=7, n_regimes=3, n_classes=4, return_regimes=True,
        return_bayes_rate=True, random_state=0)
    assert X.shape == (400, 7) and y.shape == regimes.shape == (400,)
    assert set(np.unique(y)) <= set(range(4)) and set(np.unique(regimes)) == {0, 1, 2}
    assert 0.25 < bayes < 1.0
    X2, y2 = make_regime_classification(400, n_features=7, n_regimes=3, n_classes=4,
                                        random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)


def test_regime_classification_bayes_rate_is_what_the_true_rule_reaches():
    # One logistic regression per (known) regime approaches the Bayes rate on held-out rows;
    # one for all rows stays far below it: the task needs the regimes.
    X, y, regimes, bayes = make_regime_classification(
        12000, n_features=10, n_regimes=4, noise=0.1, return_regimes=True,
        return_bayes_rate=True, random_state=3)
    train, test = slice(0, 8000), slice(8000, None)
    correct = 0
    for r in range(4):
        tr, te = regimes[train] == r, regimes[test] == r
        clf = LogisticRegression(C=100.0, max_iter=1000).fit(X[train][tr], y[train][tr])
        correct += (clf.predict(X[test][te]) == y[test][te]).sum()
    oracle = correct / len(y[test])
    single = LogisticRegression(max_iter=1000).fit(X[train], y[train]).score(X[test], y[test])
    assert bayes - 0.02 < oracle < bayes + 0.01
    assert single < bayes - 0.1


def test_regime_classification_less_noise_raises_the_bayes_rate():
    rates = [make_regime_classification(3000, noise=noise, return_bayes_rate=True,
                                        random_state=0)[-1] for noise in (0.5, 0.2, 0.05)]
    assert rates[0] < rates[1] < rates[2]


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_regimes=0), "n_regimes"), (dict(n_classes=1), "n_classes"),
    (dict(n_features=2, n_route_features=3), "n_route_features"), (dict(noise=0), "noise"),
    (dict(n_samples=2.5), "n_samples"),
])
def test_regime_classification_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_regime_classification(**kwargs)
