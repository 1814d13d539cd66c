"""A candidate partition by merging adjacent micro-cells (seventh pass, issue 13).

Clustering the noisy local rules (:func:`moensemble.moe._partition.local_rule_groups`)
finds only part of the partition at 8 regimes. Here the rows are first over-partitioned
in the gate's features (k-means into ``n_micro`` small cells, each small enough to sit
mostly inside one regime), then merged greedily: always the pair of *adjacent* cells
(a row of one has one of its nearest rows in the other) whose union raises the pooled
ridge loss least, down to ``n_groups`` cells. Each cell keeps its sufficient statistics
``S = A'A``, ``U = A'T``, ``v = tr(T'T)`` (``A = [X, 1]``), so the ridge loss of a union is
``v - tr(U' (S + ridge I)^-1 U)`` of the summed statistics: one ``(d + 1) x (d + 1)``
solve a candidate pair. Two cells of one regime share a rule, so their union costs little;
across a regime boundary the union must fit two rules with one.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import KMeans
from sklearn.neighbors import NearestNeighbors


def _ridge_loss(S: np.ndarray, U: np.ndarray, v: float, ridge: float) -> float:
    B = np.linalg.solve(S + ridge * np.eye(len(S)), U)
    return float(v - np.sum(U * B))


def merge_groups(X: np.ndarray, T: np.ndarray, Z: np.ndarray, n_groups: int, *,
                 n_micro: int | None = None, n_neighbors: int = 10, ridge: float = 1.0,
                 seed: int = 0) -> np.ndarray:
    """Each row's group: ``n_micro`` (default ``4 * n_groups``) k-means cells of ``Z``
    merged greedily, adjacent pairs only, by the smallest rise of the ridge loss of ``T``
    on ``X`` (module docstring).

    ``X: (n, d)`` the features of the rules, ``T: (n, m)`` the targets (one-hot labels or
    standardised values), ``Z: (n, r)`` the rows in the gate's features (standardised).
    Returns labels ``0..n_groups - 1`` (fewer if there are fewer rows than groups).
    """
    n = len(X)
    n_micro = min(n_micro or 4 * n_groups, n)
    micro = KMeans(n_micro, n_init=2, random_state=seed).fit_predict(Z)
    A = np.c_[X, np.ones(n)]
    S = np.stack([A[micro == c].T @ A[micro == c] for c in range(n_micro)])
    U = np.stack([A[micro == c].T @ T[micro == c] for c in range(n_micro)])
    v = np.array([np.square(T[micro == c]).sum() for c in range(n_micro)])
    # Adjacency: a row of one cell has one of its nearest rows in the other.
    near = NearestNeighbors(n_neighbors=min(n_neighbors + 1, n)).fit(Z)
    idx = near.kneighbors(return_distance=False)
    adjacent = np.zeros((n_micro, n_micro), bool)
    adjacent[np.repeat(micro, idx.shape[1]), micro[idx].ravel()] = True
    adjacent |= adjacent.T
    np.fill_diagonal(adjacent, False)

    alive = set(range(n_micro))
    loss = {c: _ridge_loss(S[c], U[c], v[c], ridge) for c in alive}

    def rise(a: int, b: int) -> float:
        return _ridge_loss(S[a] + S[b], U[a] + U[b], v[a] + v[b], ridge) - loss[a] - loss[b]

    cost = {(a, b): rise(a, b) for a in alive for b in alive if a < b and adjacent[a, b]}
    owner = np.arange(n_micro)  # micro-cell -> the cell it was merged into
    while len(alive) > n_groups:
        if not cost:  # cells with no adjacent neighbour left: any pair may merge
            cost = {(a, b): rise(a, b) for a in alive for b in alive if a < b}
        a, b = min(cost, key=cost.get)
        S[a], U[a], v[a] = S[a] + S[b], U[a] + U[b], v[a] + v[b]
        loss[a] = _ridge_loss(S[a], U[a], v[a], ridge)
        adjacent[a] |= adjacent[b]
        adjacent[:, a] |= adjacent[:, b]
        adjacent[a, a] = False
        alive.remove(b)
        owner[owner == b] = a
        cost = {p: c for p, c in cost.items() if a not in p and b not in p}
        cost.update({(min(a, c), max(a, c)): rise(a, c) for c in alive
                     if c != a and adjacent[a, c]})
    return np.unique(owner[micro], return_inverse=True)[1]
