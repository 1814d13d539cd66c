"""Prototype (fifth pass): the gate alone, fitted to the oracle's experts, plain or annealed.

The experts are frozen to the oracle (one ``LogisticRegression`` per true regime, ``K`` of
them); a dense softmax gate over all features is fitted full batch (Adam 1e-2, 2,000 steps)
to the mixture likelihood ``mean_i log sum_k g_k(x_i) p_k(y_i | x_i)``: from 5 random
starts (``plain5``, each with its test accuracy / ARI and training log-likelihood, and
``best_of_5`` by that likelihood), and with deterministic annealing (``DA<b0>``: the
tempered ``(1 / beta) log sum_k (g_k p_k)^beta``, ``beta`` from ``b0`` to 1 over the first
half of the steps). 3,000 training rows, 2,000 held out, noise 0.1, seeds 0 and 1.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_gate_only.py``
"""
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score

from moensemble.datasets import make_regime_classification

torch.set_num_threads(1)

def oracle_logp(Xtr, ytr, rtr, X, K):
    """(n, K, 2) log p_k(c | x) of per-regime LRs."""
    out = []
    for r in range(K):
        m = rtr == r
        lr = LogisticRegression(max_iter=1000).fit(Xtr[m], ytr[m])
        out.append(lr.predict_log_proba(X))
    return np.stack(out, 1)

def fit_gate(X, lp_y, E, seed, steps=2000, lr=1e-2, beta0=1.0, anneal=0.0, scale=0.1):
    g = torch.Generator().manual_seed(seed)
    W = (torch.randn(X.shape[1], E, generator=g) * scale).requires_grad_()
    b = torch.zeros(E, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=lr)
    for s in range(steps):
        beta = 1.0
        if anneal > 0 and s < anneal * steps:
            beta = beta0 + (1 - beta0) * s / (anneal * steps)
        opt.zero_grad()
        lg = torch.log_softmax(X @ W + b, -1)
        loss = -(torch.logsumexp(beta * (lg + lp_y), -1) / beta).mean()
        loss.backward()
        opt.step()
    with torch.no_grad():
        lg = torch.log_softmax(X @ W + b, -1)
        ll = float(torch.logsumexp(lg + lp_y, -1).mean())
    return W.detach(), b.detach(), ll

def test(W, b, Xe, lp_te, yte, rte) -> tuple[float, float]:
    """Test accuracy of the mixture and ARI of the gate's top expert."""
    g = torch.softmax(Xe @ W + b, -1).numpy()
    p = (g[:, :, None] * np.exp(lp_te)).sum(1)
    acc = float((p.argmax(1) == yte).mean())
    return round(acc, 3), round(adjusted_rand_score(rte, g.argmax(1)), 2)


def main() -> None:
    for K, d in [(4, 30), (8, 10), (8, 30)]:
        for seed in (0, 1):
            X, y, r, bayes = make_regime_classification(
                5000, n_features=d, n_regimes=K, noise=0.1, return_regimes=True,
                return_bayes_rate=True, random_state=seed)
            Xtr, ytr, rtr = X[:3000], y[:3000], r[:3000]
            held = (torch.tensor(X[3000:], dtype=torch.float32),
                    oracle_logp(Xtr, ytr, rtr, X[3000:], K), y[3000:], r[3000:])
            lp_tr = oracle_logp(Xtr, ytr, rtr, Xtr, K)
            Xt = torch.tensor(Xtr, dtype=torch.float32)
            lpy = torch.tensor(lp_tr[np.arange(3000), :, ytr], dtype=torch.float32)
            res = {}
            tic = time.perf_counter()
            fits = [fit_gate(Xt, lpy, K, s) for s in range(5)]
            res["plain5"] = [(test(W, b, *held), round(ll, 4)) for W, b, ll in fits]
            best = max(fits, key=lambda f: f[2])
            res["best_of_5"] = test(best[0], best[1], *held)
            for beta0 in (0.1, 0.3):
                W, b, ll = fit_gate(Xt, lpy, K, 0, beta0=beta0, anneal=0.5)
                res[f"DA{beta0}"] = (test(W, b, *held), round(ll, 4))
            print(K, d, seed, round(bayes, 3), res, round(time.perf_counter() - tic, 1),
                  flush=True)


if __name__ == "__main__":
    main()
