"""The bundled WordNet 3.0 glosses: 117,659 short definitions labeled by lexicographer file."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

DATA_FILE = "wordnet_glosses.tsv.xz"
LICENSE_FILE = "WORDNET_LICENSE.txt"

_DESCR = """\
WordNet 3.0 glosses
-------------------

Text classification: predict the lexicographer file of a WordNet synset (one of 45
coarse semantic categories such as ``noun.animal``, ``verb.motion`` or ``adj.pert``)
from its gloss.

The text is the synset's gloss exactly as WordNet gives it: a definition, often followed
by example sentences in double quotes, e.g. ``a member of the genus Canis ...; "the dog
barked all night"``. The lemmas (the words the synset groups, e.g. ``dog|domestic dog|Canis
familiaris``) are *not* part of the text, because they name the concept outright; they are
in the ``lemmas`` column of ``frame`` for anyone who wants them. Example sentences do
sometimes contain a lemma. The classes are very unbalanced (``adj.all`` 14,435 glosses,
``noun.motive`` 42) and the part of speech is implicit in the label, so a model must also
tell nouns, verbs, adjectives and adverbs apart from the wording of the gloss alone.

This selection: {n_rows} glosses, {n_classes} classes; largest class {largest}, smallest
{smallest}. Full data set: 117,659 glosses, 45 classes.

Source: WordNet 3.0 database files (Debian package ``wordnet-base``), converted by
``scripts/build_wordnet_glosses.py``. Licence: the WordNet 3.0 licence (permissive, with
notice), shipped as ``moensemble/datasets/data/WORDNET_LICENSE.txt``.

Reference: George A. Miller (1995). WordNet: A Lexical Database for English.
Communications of the ACM 38(11): 39-41. Princeton University, "About WordNet", 2010.
"""


@lru_cache(maxsize=1)
def _read_all() -> pd.DataFrame:
    # Parsing 15 MB of TSV takes a fraction of a second; cache it for repeated loads.
    path = resources.files("moensemble.datasets") / "data" / DATA_FILE
    with resources.as_file(path) as local:
        return pd.read_csv(
            local,
            sep="\t",
            quoting=csv.QUOTE_NONE,  # glosses contain quotes; the builder writes none
            dtype=str,
            keep_default_na=False,  # a gloss such as "null" must stay a string
        )


def load_wordnet_glosses(
    *,
    n_samples: int | None = None,
    classes: Iterable[str] | None = None,
    min_class_size: int = 5,
    as_frame: bool = False,
    return_X_y: bool = False,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch | tuple:
    """Load the bundled WordNet 3.0 glosses labeled by lexicographer file.

    117,659 glosses (short definitions, often with example sentences) in 45 classes such
    as ``noun.animal``, ``verb.motion`` or ``adj.all``. The data ship inside the package
    (3.4 MB, xz-compressed), so nothing is downloaded. The text is the gloss alone; the
    synset's lemmas are left out because they name the concept (they are in the
    ``lemmas`` column of ``frame``).

    Parameters
    ----------
    n_samples : int, default=None
        Size of a stratified random subset: each class keeps (to within one row) its share
        of the selected data. ``None`` returns every row of the selected classes.
    classes : iterable of str, default=None
        Lexicographer file names to keep, e.g. ``["noun.animal", "noun.plant"]``. ``None``
        keeps all 45.
    min_class_size : int, default=5
        Classes that would have fewer rows than this in the result are dropped before
        sampling, so that every returned class has at least ``min_class_size`` rows (the
        default suits 5-fold stratified cross-validation). Without ``n_samples`` no class
        of the full data set falls below 42 rows, so the default drops nothing there.
    as_frame : bool, default=False
        If True, ``data`` and ``target`` are pandas Series and ``frame`` is a DataFrame
        with columns ``text``, ``label``, ``synset`` and ``lemmas``.
    return_X_y : bool, default=False
        If True, return ``(data, target)`` instead of a Bunch.
    random_state : int, RandomState instance or None, default=0
        Seeds the subset and the row order. Rows are always shuffled, because WordNet's
        file order keeps related synsets together and unshuffled folds would not be
        representative.

    Returns
    -------
    bunch : sklearn.utils.Bunch
        With fields ``data`` (list of str of length n_samples, or a Series when
        ``as_frame``), ``target`` (ndarray of str labels of shape (n_samples,), or a
        Series), ``target_names`` (sorted ndarray of the n_classes labels present),
        ``frame`` (DataFrame when ``as_frame``, else None) and ``DESCR``.
    data_target : tuple
        ``(data, target)`` as above, instead of the Bunch, when ``return_X_y`` is True.

    Raises
    ------
    ValueError
        If ``n_samples`` is not a positive integer no larger than the selected rows, a
        name in ``classes`` is not a WordNet lexicographer file, or no class is left.

    Examples
    --------
    >>> from moensemble.datasets import load_wordnet_glosses
    >>> X, y = load_wordnet_glosses(n_samples=2000, return_X_y=True)
    >>> len(X), y.shape
    (2000, (2000,))
    >>> bunch = load_wordnet_glosses(classes=["noun.animal", "noun.plant"], as_frame=True)
    >>> bunch.frame.shape, list(bunch.target_names)
    ((15539, 4), ['noun.animal', 'noun.plant'])
    """
    frame = _select_classes(_read_all(), classes)
    _check_min_class_size(min_class_size)
    rng = check_random_state(random_state)
    counts = frame["label"].value_counts()
    expected = counts if n_samples is None else _expected_counts(counts, n_samples, len(frame))
    kept = expected.index[expected >= min_class_size]
    if len(kept) == 0:
        raise ValueError(
            f"No class has min_class_size={min_class_size} rows in a subset of "
            f"n_samples={n_samples}; raise n_samples or lower min_class_size."
        )
    frame = frame[frame["label"].isin(kept)]
    if n_samples is None:
        rows = rng.permutation(len(frame))
    else:
        rows = _stratified_rows(frame["label"].to_numpy(), n_samples, rng)
    frame = frame.iloc[rows].reset_index(drop=True)
    return _package(frame, as_frame=as_frame, return_X_y=return_X_y)


def _select_classes(frame: pd.DataFrame, classes: Iterable[str] | None) -> pd.DataFrame:
    if classes is None:
        return frame
    if isinstance(classes, str):
        raise ValueError(f"`classes` must be a list of labels, not a string; got {classes!r}.")
    wanted = list(classes)
    valid = sorted(frame["label"].unique())
    unknown = sorted(set(wanted) - set(valid))
    if unknown or not wanted:
        raise ValueError(
            f"`classes` must be a non-empty list of WordNet lexicographer files; unknown: "
            f"{unknown}. Valid names: {valid}."
        )
    return frame[frame["label"].isin(wanted)]


def _check_min_class_size(min_class_size: int) -> None:
    if not isinstance(min_class_size, Integral) or isinstance(min_class_size, bool):
        raise ValueError(f"`min_class_size` must be an int >= 1; got {min_class_size!r}.")
    if min_class_size < 1:
        raise ValueError(f"`min_class_size` must be an int >= 1; got {min_class_size!r}.")


def _expected_counts(counts: pd.Series, n_samples: int, n_rows: int) -> pd.Series:
    """Rows each class would get in a proportional subset of ``n_samples`` rows."""
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool):
        raise ValueError(f"`n_samples` must be a positive int or None; got {n_samples!r}.")
    if not 1 <= n_samples <= n_rows:
        raise ValueError(
            f"`n_samples` must be between 1 and {n_rows} (the rows of the selected classes); "
            f"got {n_samples}."
        )
    return counts * n_samples / n_rows


def _stratified_rows(labels: np.ndarray, n_samples: int, rng: np.random.RandomState) -> np.ndarray:
    """Positions of a stratified random subset of ``n_samples`` rows, in random order.

    Each class gets the floor of its proportional share; the rows left over go to the
    classes with the largest remainders (Hamilton's method), so every class is within
    one row of its exact share and no class is lost to rounding.
    """
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    share = counts * n_samples / len(labels)
    take = np.floor(share).astype(int)
    # Ties broken at random so that no class is always favoured.
    order = np.lexsort((rng.random_sample(len(names)), -(share - take)))
    take[order[: n_samples - take.sum()]] += 1
    picked = [
        rng.choice(np.flatnonzero(inverse == k), size=take[k], replace=False)
        for k in range(len(names))
    ]
    return rng.permutation(np.concatenate(picked))


def _package(frame: pd.DataFrame, *, as_frame: bool, return_X_y: bool) -> Bunch | tuple:
    if as_frame:
        data, target = frame["text"], frame["label"]
    else:
        data, target = frame["text"].tolist(), frame["label"].to_numpy(dtype=object)
    if return_X_y:
        return data, target
    counts = frame["label"].value_counts()
    descr = _DESCR.format(
        n_rows=f"{len(frame):,}",
        n_classes=len(counts),
        largest=f"{counts.index[0]} ({counts.iloc[0]:,})",
        smallest=f"{counts.index[-1]} ({counts.iloc[-1]:,})",
    )
    return Bunch(
        data=data,
        target=target,
        target_names=np.array(sorted(counts.index), dtype=object),
        frame=frame if as_frame else None,
        DESCR=descr,
    )
