from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from moensemble.datasets import load_wordnet_glosses


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
