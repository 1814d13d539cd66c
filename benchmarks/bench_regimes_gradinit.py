"""Prototype (fifth pass): does the input-gradient of a flexible model cluster by regime?

In each hidden regime the label follows its own linear rule ``w_r . x``, so the gradient of
a well-fitted model's logit with respect to ``x`` should be about ``w_r`` in regime ``r``,
and k-means on the rows' gradients would give an assignment to start a gate from. Here the
flexible model is ``MLPClassifier`` (one hidden layer of ``width`` units, 2 classes: one
output logit, gradient in closed form); printed per cell and seed: the adjusted Rand index
of k-means (8 clusters) on the raw and on the unit-normalised gradients against the true
regimes, the same for a ``LogisticRegression`` gate fitted to those clusters, and the
MLP's held-out accuracy. 3,000 training rows (2,000 held out for the accuracy), noise 0.1.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_gradinit.py``
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from sklearn.neural_network import MLPClassifier

from moensemble.datasets import make_regime_classification


def mlp_grad(mlp: MLPClassifier, X: np.ndarray) -> np.ndarray:
    """d logit / d x of a one-hidden-layer ReLU ``MLPClassifier`` (binary), per row."""
    W1, W2 = mlp.coefs_
    active = (X @ W1 + mlp.intercepts_[0]) > 0
    return (active * W2[:, 0][None]) @ W1.T


def main() -> None:
    for K, d in [(4, 10), (4, 30), (8, 10), (8, 30)]:
        for seed in (0, 1):
            X, y, r = make_regime_classification(5000, n_features=d, n_regimes=K, noise=0.1,
                                                 return_regimes=True, random_state=seed)
            Xtr, ytr, rtr = X[:3000], y[:3000], r[:3000]
            tic = time.perf_counter()
            res = {}
            for width in (64, 256):
                mlp = MLPClassifier((width,), max_iter=300, alpha=1e-3, random_state=0)
                mlp.fit(Xtr, ytr)
                G = mlp_grad(mlp, Xtr)
                for norm in ("raw", "unit"):
                    Gn = G / np.linalg.norm(G, axis=1, keepdims=True) if norm == "unit" else G
                    lab = KMeans(8, n_init=4, random_state=0).fit_predict(Gn)
                    gate = LogisticRegression(max_iter=500).fit(Xtr, lab)
                    res[(width, norm)] = (round(adjusted_rand_score(rtr, lab), 2),
                                          round(adjusted_rand_score(rtr, gate.predict(Xtr)), 2))
                res[(width, "acc")] = round(mlp.score(X[3000:], y[3000:]), 3)
            print(K, d, seed, res, round(time.perf_counter() - tic, 1), flush=True)


if __name__ == "__main__":
    main()
