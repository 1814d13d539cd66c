"""Which half of the MoE fails on the hidden-regime grid: the router or the experts?

Per cell (K regimes, d features) and seed of
:func:`moensemble.datasets.make_regime_classification` (``--n-train`` rows to fit, 2,000
held out), all fitted in one run:

* ``default``: ``MoEClassifier()`` (or ``--moe`` overrides): train and test accuracy, and how
  well its assignments match the true regimes: the adjusted Rand index (ARI) of each row's
  top-1 expert against its regime, on the training and the test rows, and the *purity* (the
  share of rows whose top-1 expert's majority regime is their own: 1 when experts only split
  regimes, which the ARI also penalises);
* ``experts-only ceiling``: the same MoE with its router *fixed* to the true regimes (its
  gate set to the generator's Voronoi cells, ``logit_k = s (c_k . x - |c_k|^2 / 2)`` on the
  routing features with ``s = 200``, frozen; ``router_l1=0``): what the experts reach when
  the partition is given;
* ``router-only ceiling``: ``K`` experts frozen to the oracle's (one ``LogisticRegression``
  per true regime), only the router trained (otherwise the default's parameters): what the
  router reaches when the experts are right;
* ``oracle`` (one logistic regression per true regime, told the regime) and ``bayes``.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_diagnose.py [--cells 4,30 8,10]
[--seeds 0 1] [--moe "{'max_epochs': 100}"]``
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import adjusted_rand_score
from torch import nn

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier

N_TEST = 2000
SCALE = 200.0  # sharpness of the fixed Voronoi gate


class HookedMoE(MoEClassifier):
    """``MoEClassifier`` whose freshly built network goes through ``hook`` (if set)."""

    hook = None

    def _build_module(self, *args, **kwargs):
        module = super()._build_module(*args, **kwargs)
        if self.hook is not None:
            self.hook(module)
        return module


def centres_of(seed: int, n_regimes: int, n_route: int = 2) -> np.ndarray:
    """The generator's regime centres (its first draw from ``default_rng(seed)``)."""
    return np.random.default_rng(seed).normal(size=(n_regimes, n_route))


def fix_router(centres: np.ndarray):
    """A hook setting the router to the true Voronoi cells, frozen."""
    def hook(module) -> None:
        router = module.router
        c = torch.as_tensor(centres, dtype=torch.float32)
        with torch.no_grad():
            router.linear.weight.zero_()
            router.linear.bias.fill_(-1e4)  # experts past K: never chosen
            router.linear.weight[: len(c), : c.shape[1]] = SCALE * c
            router.linear.bias[: len(c)] = -SCALE * c.square().sum(1) / 2
            if isinstance(getattr(router, "noise", None), nn.Linear):
                router.noise.weight.zero_()
                router.noise.bias.zero_()
        for p in router.parameters():
            p.requires_grad_(False)
    return hook


def oracle_experts(Xtr, ytr, rtr, n_regimes: int):
    """A hook replacing the experts by frozen per-regime logistic regressions (2 classes)."""
    layers = []
    for r in range(n_regimes):
        layer = nn.Linear(Xtr.shape[1], 2)
        with torch.no_grad():
            layer.weight.zero_()
            layer.bias.zero_()
            rows = rtr == r
            if len(np.unique(ytr[rows])) == 2:
                lr = LogisticRegression(max_iter=1000).fit(Xtr[rows], ytr[rows])
                layer.weight[1] = torch.as_tensor(lr.coef_[0], dtype=torch.float32)
                layer.bias[1] = float(lr.intercept_[0])
            elif rows.any():  # one class: a confident constant
                layer.bias[int(ytr[rows][0])] = 5.0
        layer.requires_grad_(False)
        layers.append(layer)

    def hook(module) -> None:
        module.experts = nn.ModuleList(layers)
    return hook


def assignment_scores(est, X, regimes) -> tuple[float, float]:
    """ARI and purity of the top-1 expert against the true regimes."""
    indices, gates = est.route(X)
    top = indices[np.arange(len(indices)), gates.argmax(1)]  # softmax: not sorted
    ari = adjusted_rand_score(regimes, top)
    table = pd.crosstab(top, regimes)
    purity = table.max(axis=1).sum() / len(regimes)
    return float(ari), float(purity)


def oracle_score(Xtr, ytr, rtr, Xte, yte, rte) -> float:
    pred = np.zeros_like(yte)
    for r in np.unique(rte):
        train, test = rtr == r, rte == r
        labels = np.unique(ytr[train])
        if len(labels) < 2:
            pred[test] = labels[0] if len(labels) else 0
            continue
        model = LogisticRegression(max_iter=1000).fit(Xtr[train], ytr[train])
        pred[test] = model.predict(Xte[test])
    return float((pred == yte).mean())


def run(K: int, d: int, seed: int, args) -> dict:
    X, y, reg, bayes = make_regime_classification(
        args.n_train + N_TEST, n_features=d, n_regimes=K, noise=args.noise,
        return_regimes=True, return_bayes_rate=True, random_state=seed)
    n = args.n_train
    Xtr, ytr, rtr, Xte, yte, rte = X[:n], y[:n], reg[:n], X[n:], y[n:], reg[n:]
    row = {"K": K, "d": d, "seed": seed, "bayes": bayes,
           "oracle": oracle_score(Xtr, ytr, rtr, Xte, yte, rte)}
    tic = time.perf_counter()
    est = MoEClassifier(random_state=seed, **args.moe).fit(Xtr, ytr)
    row["default_s"] = time.perf_counter() - tic
    row["default"] = est.score(Xte, yte)
    row["default_train"] = est.score(Xtr, ytr)
    row["ari_train"], row["purity_train"] = assignment_scores(est, Xtr, rtr)
    row["ari_test"], row["purity_test"] = assignment_scores(est, Xte, rte)

    fixed = HookedMoE(random_state=seed, **{**args.moe, "router_l1": 0.0})
    fixed.hook = fix_router(centres_of(seed, K))
    fixed.fit(Xtr, ytr)
    row["experts_only"] = fixed.score(Xte, yte)
    row["experts_only_train"] = fixed.score(Xtr, ytr)
    row["fixed_ari_test"] = assignment_scores(fixed, Xte, rte)[0]

    learned = HookedMoE(random_state=seed, **{**args.moe, "n_experts": K})
    learned.hook = oracle_experts(Xtr, ytr, rtr, K)
    learned.fit(Xtr, ytr)
    row["router_only"] = learned.score(Xte, yte)
    row["router_only_ari_test"] = assignment_scores(learned, Xte, rte)[0]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["4,30", "8,10"],
                        help="K,d pairs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--moe", type=ast.literal_eval, default={})
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for cell in args.cells:
        K, d = (int(v) for v in cell.split(","))
        for seed in args.seeds:
            rows.append(run(K, d, seed, args))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()},
                  flush=True)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    print(frame.round(3).to_string(index=False))
    print(frame.drop(columns="seed").groupby(["K", "d"]).mean().round(3).to_string())


if __name__ == "__main__":
    main()
