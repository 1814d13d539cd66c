"""A generated table of mixed column types whose text column comes from the WordNet glosses."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import pandas as pd

from moensemble.datasets._wordnet import _read_all

# The note of a row is a gloss from one of these lexicographer files; its topic moves the label.
_TOPIC_EFFECT = {"noun.animal": 1.5, "noun.plant": 0.0, "noun.artifact": -1.5}
_CITIES = ["Oslo", "Rome", "Lima", "Pune", "Kyiv", "Quito"]
_CITY_EFFECT = np.array([0.6, 0.3, 0.0, 0.0, -0.3, -0.6])
_PLANS = ["basic", "plus", "pro"]
_PLAN_EFFECT = np.array([-0.7, 0.0, 0.7])
_N_STORES = 150


def make_mixed_table(
    n_samples: int = 1000,
    *,
    task: str = "classification",
    missing: float = 0.1,
    noise: float = 0.5,
    random_state: int | None = None,
) -> tuple[pd.DataFrame, pd.Series]:
    """A customer table with numbers with gaps, categories, a date and a free-text note.

    Columns of ``X`` (what :class:`moensemble.TableEncoder` infers them to be):

    - ``age`` (numeric), ``income`` (numeric, log-normal): a share ``missing`` of each is NaN.
    - ``city`` (categorical, 6 strings; a share ``missing / 2`` is None), ``plan``
      (pandas ``category``: basic, plus, pro), ``visits`` (categorical: integers 0 to 6),
      ``member`` (boolean), ``store`` (categorical, 150 strings: high cardinality).
    - ``signed_up`` (datetime, 2019 to 2024; a share ``missing / 2`` is NaT).
    - ``note`` (text): a WordNet 3.0 gloss (the bundled data of
      :func:`~moensemble.datasets.load_wordnet_glosses`) about an animal, a plant or an
      artifact, drawn at random.

    A latent score adds ``0.8 z(age) + 0.6 z(log income)``, an effect per city, plan and
    store (the store effects are drawn once, with seed 0, standard deviation 0.8),
    ``0.5 member``, ``0.5`` for ``visits`` of 5 or more, ``0.4`` for a weekend sign-up and
    ``+1.5 / 0 / -1.5`` for a note about an animal / plant / artifact, plus Gaussian
    noise. The text is the largest single effect, so a model that ignores the note
    loses accuracy. Missing values hide a column's value from the model, not from the
    score.

    Parameters
    ----------
    n_samples : int, default=1000
        Rows.
    task : {"classification", "regression"}, default="classification"
        ``"classification"``: ``y`` is ``"yes"`` where the score is above its median,
        else ``"no"`` (balanced). ``"regression"``: ``y`` is the score.
    missing : float in [0, 1), default=0.1
        Share of missing values of ``age`` and ``income`` (half as many in ``city`` and
        ``signed_up``).
    noise : float >= 0, default=0.5
        Standard deviation of the Gaussian noise added to the score.
    random_state : int or None, default=None
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    X : pandas.DataFrame of shape (n_samples, 9)
    y : pandas.Series of shape (n_samples,), named ``"y"``

    Examples
    --------
    >>> from moensemble.datasets import make_mixed_table
    >>> X, y = make_mixed_table(200, random_state=0)
    >>> X.shape, sorted(y.unique())
    ((200, 9), ['no', 'yes'])
    >>> list(X.columns)
    ['age', 'income', 'city', 'plan', 'visits', 'member', 'store', 'signed_up', 'note']
    """
    _check(n_samples, task, missing, noise)
    rng = np.random.default_rng(random_state)
    age = np.clip(rng.normal(40, 12, n_samples), 18, 90).round()
    log_income = rng.normal(10.5, 0.5, n_samples)
    city = rng.choice(len(_CITIES), n_samples, p=[0.25, 0.2, 0.2, 0.15, 0.1, 0.1])
    plan = rng.choice(len(_PLANS), n_samples, p=[0.5, 0.3, 0.2])
    visits = rng.integers(0, 7, n_samples)
    member = rng.random(n_samples) < 0.4
    store = rng.integers(0, _N_STORES, n_samples)
    store_effect = np.random.default_rng(0).normal(0, 0.8, _N_STORES)
    start = pd.Timestamp("2019-01-01")
    signed_up = start + pd.to_timedelta(rng.integers(0, 6 * 365, n_samples), unit="D")
    topics = list(_TOPIC_EFFECT)
    topic = rng.integers(0, len(topics), n_samples)
    glosses = _read_all()
    note = np.empty(n_samples, dtype=object)
    for k, name in enumerate(topics):
        pool = glosses.loc[glosses["label"] == name, "text"].to_numpy()
        rows = topic == k
        note[rows] = rng.choice(pool, rows.sum())

    score = (
        0.8 * (age - 40) / 12
        + 0.6 * (log_income - 10.5) / 0.5
        + _CITY_EFFECT[city]
        + _PLAN_EFFECT[plan]
        + 0.5 * member
        + 0.5 * (visits >= 5)
        + store_effect[store]
        + 0.4 * (signed_up.day_of_week >= 5)
        + np.array([_TOPIC_EFFECT[t] for t in topics])[topic]
        + noise * rng.normal(size=n_samples)
    )
    X = pd.DataFrame(
        {
            "age": _with_gaps(age, missing, rng),
            "income": _with_gaps(np.exp(log_income).round(-2), missing, rng),
            "city": pd.Series(np.array(_CITIES, dtype=object)[city]).mask(
                rng.random(n_samples) < missing / 2
            ),
            "plan": pd.Categorical.from_codes(plan, _PLANS),
            "visits": visits,
            "member": member,
            "store": [f"S{s:03d}" for s in store],
            "signed_up": pd.Series(signed_up).mask(rng.random(n_samples) < missing / 2),
            "note": note,
        }
    )
    if task == "classification":
        y = np.where(score > np.median(score), "yes", "no")
    else:
        y = score
    return X, pd.Series(y, name="y")


def _with_gaps(values: np.ndarray, missing: float, rng: np.random.Generator) -> np.ndarray:
    values = values.astype(float)
    values[rng.random(len(values)) < missing] = np.nan
    return values


def _check(n_samples: int, task: str, missing: float, noise: float) -> None:
    if not isinstance(n_samples, Integral) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"`n_samples` must be a positive int; got {n_samples!r}.")
    if task not in ("classification", "regression"):
        raise ValueError(f"`task` must be 'classification' or 'regression'; got {task!r}.")
    if not isinstance(missing, Real) or not 0 <= missing < 1:
        raise ValueError(f"`missing` must be a float in [0, 1); got {missing!r}.")
    if not isinstance(noise, Real) or noise < 0:
        raise ValueError(f"`noise` must be a float >= 0; got {noise!r}.")
