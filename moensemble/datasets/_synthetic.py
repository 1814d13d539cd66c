"""Synthetic tasks for mixtures of experts."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np


def make_regimes(
    n_samples: int = 1000, *, noise: float = 0.05, random_state: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A regression task with two regimes: a linear target where ``x0 < 0``, a wavy one elsewhere.

    Four features uniform on ``[-2, 2]``; ``y = 1.5 x1 - x2 + 0.5 x3`` where ``x0 < 0`` and
    ``y = 2 sin(3 x1) cos(2 x2)`` where ``x0 >= 0``, plus Gaussian noise. A mixture of
    experts can give each regime its own expert; one network of the same size must fit both.
    This is the "regime task" of the MoE variant tests and ``benchmarks/bench_moe_variants.py``.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to ``y``.
    random_state : int or None, default=None
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    X : ndarray of shape (n_samples, 4)
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from moensemble.datasets import make_regimes
    >>> X, y = make_regimes(200, random_state=0)
    >>> X.shape, y.shape
    ((200, 4), (200,))
    """
    rng = np.random.default_rng(random_state)
    X = rng.uniform(-2, 2, (n_samples, 4))
    linear = 1.5 * X[:, 1] - X[:, 2] + 0.5 * X[:, 3]
    wavy = 2 * np.sin(3 * X[:, 1]) * np.cos(2 * X[:, 2])
    return X, np.where(X[:, 0] < 0, linear, wavy) + noise * rng.normal(size=n_samples)


def make_regime_classification(
    n_samples: int = 3000,
    *,
    n_features: int = 20,
    n_regimes: int = 6,
    n_route_features: int = 2,
    n_classes: int = 2,
    noise: float = 0.1,
    return_regimes: bool = False,
    return_bayes_rate: bool = False,
    random_state: int | None = None,
):
    """A classification task of hidden regimes, each with its own noisy linear rule.

    Features are standard normal. The regime of a row is its nearest centre in the first
    ``n_route_features`` features (``n_regimes`` centres, drawn once from the same normal);
    in regime ``r`` the label is drawn from ``softmax((W_r x + b_r) / noise)``, where the
    rows of ``W_r`` (over *all* features) and ``b_r`` are drawn so that each logit has unit
    variance. A linear router can carve the regimes exactly (Voronoi cells are linear) and
    one linear softmax per cell is the Bayes-optimal model, so a mixture of experts can
    reach the Bayes rate; one linear model cannot.

    Parameters
    ----------
    n_samples : int, default=3000
    n_features : int, default=20
        Features in total, ``>= n_route_features``.
    n_regimes : int, default=6
        Hidden regimes (>= 1).
    n_route_features : int, default=2
        Leading features whose nearest centre sets the regime (>= 1).
    n_classes : int, default=2
        Classes (>= 2).
    noise : float > 0, default=0.1
        Temperature of the label softmax: smaller is closer to deterministic.
    return_regimes : bool, default=False
        Also return each row's regime (to check which expert takes which regime).
    return_bayes_rate : bool, default=False
        Also return the Bayes rate on these rows: the mean over rows of the largest class
        probability of the true rule (the expected accuracy of the Bayes-optimal
        classifier on ``X``; it converges to the task's Bayes rate as ``n_samples`` grows).
    random_state : int or None, default=None
        Seed of ``numpy.random.default_rng``; it draws the rules as well as the rows.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int64 in ``[0, n_classes)``
    regimes : ndarray of shape (n_samples,), int64 in ``[0, n_regimes)``
        Only when ``return_regimes=True``.
    bayes_rate : float
        Only when ``return_bayes_rate=True``.

    Examples
    --------
    >>> from moensemble.datasets import make_regime_classification
    >>> X, y, bayes = make_regime_classification(500, return_bayes_rate=True, random_state=0)
    >>> X.shape, bool(0.9 < bayes < 1.0)
    ((500, 20), True)
    """
    for name, value, low in [("n_samples", n_samples, 1), ("n_features", n_features, 1),
                             ("n_regimes", n_regimes, 1), ("n_route_features", n_route_features, 1),
                             ("n_classes", n_classes, 2)]:
        if not isinstance(value, Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}.")
    if n_route_features > n_features:
        raise ValueError(
            f"`n_route_features`={n_route_features} must be <= `n_features`={n_features}."
        )
    if not isinstance(noise, Real) or not noise > 0:
        raise ValueError(f"`noise` must be a number > 0; got {noise!r}.")
    rng = np.random.default_rng(random_state)
    centres = rng.normal(size=(n_regimes, n_route_features))
    # Unit-variance logits: each weight row has norm sqrt(1 - bias variance).
    weights = rng.normal(size=(n_regimes, n_classes, n_features)) * np.sqrt(0.9 / n_features)
    biases = rng.normal(size=(n_regimes, n_classes)) * np.sqrt(0.1)
    X = rng.normal(size=(n_samples, n_features))
    distances = ((X[:, None, :n_route_features] - centres[None]) ** 2).sum(-1)
    regime = distances.argmin(1)
    logits = np.einsum("nf,ncf->nc", X, weights[regime]) + biases[regime]
    logits = logits / noise
    proba = np.exp(logits - logits.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    # Inverse-CDF draw of one label per row from its own distribution.
    u = rng.uniform(size=(n_samples, 1))
    y = np.minimum((proba.cumsum(1) < u).sum(1), n_classes - 1).astype(np.int64)
    out = (X, y)
    if return_regimes:
        out += (regime.astype(np.int64),)
    if return_bayes_rate:
        out += (float(proba.max(1).mean()),)
    return out
