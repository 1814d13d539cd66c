"""A generated table whose label lives in the text for some rows and in the numbers for others."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd

from moensemble.datasets._wordnet import _read_all

# A "review" row's label is the topic of its note; a "sensor" row's the sign of a score of
# the numbers. Each row's other modality is drawn independently of its label.
_YES_TOPIC, _NO_TOPIC = "noun.animal", "noun.artifact"
_N_NUMERIC = 4


def make_modality_table(
    n_samples: int = 1000,
    *,
    text_share: float = 0.5,
    noise: float = 0.1,
    random_state: int | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """A table in which the text decides some rows' label and the numbers the others'.

    Columns of ``X`` (what :class:`moensemble.TableEncoder` infers them to be):

    - ``source`` (categorical): ``"review"`` or ``"sensor"``, the flag that says which
      modality carries the row's label.
    - ``note`` (text): a WordNet 3.0 gloss (the bundled data of
      :func:`~moensemble.datasets.load_wordnet_glosses`) about an animal or an artifact.
    - ``x0`` to ``x3`` (numeric): standard normal.

    A ``"review"`` row (a share ``text_share``) is ``"yes"`` when its note is about an
    animal and ``"no"`` about an artifact; its numbers are noise. A ``"sensor"`` row is
    ``"yes"`` when ``x0 - x1 + 0.5 x2 x3 > 0``; its note is about an animal or an artifact
    at random, independently of the label, so the text that decides the review rows is
    a misleading signal on the sensor rows. A share ``noise`` of the labels is flipped.
    A model must read the flag to know which columns to trust.

    Parameters
    ----------
    n_samples : int, default=1000
        Rows.
    text_share : float in (0, 1), default=0.5
        Expected share of ``"review"`` rows.
    noise : float in [0, 0.5), default=0.1
        Share of labels flipped at random.
    random_state : int or None, default=None
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    X : pandas.DataFrame of shape (n_samples, 6)
    y : pandas.Series of shape (n_samples,), ``"yes"`` / ``"no"``, named ``"y"``

    Examples
    --------
    >>> from moensemble.datasets import make_modality_table
    >>> X, y = make_modality_table(200, random_state=0)
    >>> list(X.columns)
    ['source', 'note', 'x0', 'x1', 'x2', 'x3']
    >>> sorted(X["source"].unique()), sorted(y.unique())
    (['review', 'sensor'], ['no', 'yes'])
    """
    _check(n_samples, text_share, noise)
    rng = np.random.default_rng(random_state)
    review = rng.random(n_samples) < text_share
    x = rng.normal(size=(n_samples, _N_NUMERIC))
    animal = rng.random(n_samples) < 0.5
    glosses = _read_all()
    note = np.empty(n_samples, dtype=object)
    for topic, rows in ((_YES_TOPIC, animal), (_NO_TOPIC, ~animal)):
        pool = glosses.loc[glosses["label"] == topic, "text"].to_numpy()
        note[rows] = rng.choice(pool, rows.sum())
    numeric_yes = x[:, 0] - x[:, 1] + 0.5 * x[:, 2] * x[:, 3] > 0
    yes = np.where(review, animal, numeric_yes) ^ (rng.random(n_samples) < noise)
    X = pd.DataFrame({"source": np.where(review, "review", "sensor").astype(object),
                      "note": note})
    for j in range(_N_NUMERIC):
        X[f"x{j}"] = x[:, j]
    return X, pd.Series(np.where(yes, "yes", "no"), name="y")


def _check(n_samples: int, text_share: float, noise: float) -> None:
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"`n_samples` must be a positive int; got {n_samples!r}.")
    if not isinstance(text_share, Real) or not 0 < text_share < 1:
        raise ValueError(f"`text_share` must be a float in (0, 1); got {text_share!r}.")
    if not isinstance(noise, Real) or not 0 <= noise < 0.5:
        raise ValueError(f"`noise` must be a float in [0, 0.5); got {noise!r}.")
