"""Which features carry the regimes, found without the gate (eighth pass).

The re-partition (:mod:`._partition`) takes its neighbourhoods in the features the gate's
group lasso keeps strongest; where the lasso has zeroed a routing feature before the
re-partition epoch no candidate partition finds the regimes (seventh pass: K=8, d=10,
seed 0, ARI 0.11-0.23 for every candidate). :func:`screen_features` ranks the features
as a model-based tree's split search does (MOB, LOLIMOT): for each feature, the rows are
cut into a few quantile bins of it and one ridge rule of the targets on *all* features is
fitted per bin; the gain is how much the bins' rules lower the cross-fitted squared error
against one global rule. A feature that routes the regimes lets each bin's rule fit its
regimes' rules; any other feature only thins the rows. Then the few best features are
paired (a grid of bins in both), since the regimes of the nearest centre in two features
are cut by neither alone; the best pair leads the ranking.
"""

from __future__ import annotations

import itertools

import numpy as np


def _cv_sse(A: np.ndarray, T: np.ndarray, groups: np.ndarray, fold: np.ndarray,
            ridge: float) -> float:
    """Cross-fitted squared error of one ridge rule of ``T`` on ``A`` per group: each fold's
    rows scored by the rule fitted on the group's other rows (a group with too few rows
    to fit is scored by the mean of its training rows)."""
    sse = 0.0
    eye = ridge * np.eye(A.shape[1])
    for g in np.unique(groups):
        rows = groups == g
        for f in np.unique(fold):
            train, test = rows & (fold != f), rows & (fold == f)
            if not test.any():
                continue
            if train.sum() < A.shape[1]:
                centre = T[train].mean(0) if train.any() else 0.0
                sse += float(np.square(T[test] - centre).sum())
                continue
            W = np.linalg.solve(A[train].T @ A[train] + eye, A[train].T @ T[train])
            sse += float(np.square(A[test] @ W - T[test]).sum())
    return sse


def _bins(x: np.ndarray, n_bins: int) -> np.ndarray:
    return np.searchsorted(np.quantile(x, np.linspace(0, 1, n_bins + 1)[1:-1]), x)


def split_gains(X: np.ndarray, T: np.ndarray, *, n_bins: int = 4, ridge: float = 1.0,
                n_folds: int = 2, seed: int = 0) -> np.ndarray:
    """Per feature, the relative drop of the cross-fitted ridge error of ``T`` (``(n, m)``:
    one-hot labels or standardised values) when one rule is fitted per quantile bin of
    the feature instead of one for all rows: ``(d,)``, higher is a better split."""
    fold = np.random.default_rng(seed).permutation(len(X)) % n_folds
    A = np.c_[X, np.ones(len(X))]
    base = _cv_sse(A, T, np.zeros(len(X), dtype=int), fold, ridge)
    gains = [base - _cv_sse(A, T, _bins(X[:, j], n_bins), fold, ridge)
             for j in range(X.shape[1])]
    return np.asarray(gains) / max(base, 1e-12)


def screen_features(X: np.ndarray, T: np.ndarray, *, n_pair: int = 5, n_bins: int = 4,
                    pair_bins: int = 3, ridge: float = 1.0, seed: int = 0) -> np.ndarray:
    """All features, best first: the pair of the ``n_pair`` best single splits
    (:func:`split_gains`) whose grid of ``pair_bins x pair_bins`` bins gains most leads
    (its better single split first), then the rest by their single-split gain."""
    gains = split_gains(X, T, n_bins=n_bins, ridge=ridge, seed=seed)
    order = [int(j) for j in np.argsort(-gains, kind="stable")]
    top = order[: max(2, n_pair)]
    if len(top) < 2:
        return np.asarray(order)
    fold = np.random.default_rng(seed).permutation(len(X)) % 2
    A = np.c_[X, np.ones(len(X))]
    best = max(itertools.combinations(top, 2), key=lambda ab: -_cv_sse(
        A, T, _bins(X[:, ab[0]], pair_bins) * pair_bins + _bins(X[:, ab[1]], pair_bins),
        fold, ridge))
    lead = sorted(best, key=order.index)
    return np.asarray(lead + [j for j in order if j not in lead])
