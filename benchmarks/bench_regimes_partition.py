"""Prototype (fifth pass): re-partition the gate from the rows' local linear rules.

In each hidden regime the label follows its own linear rule, so a linear fit on a
neighbourhood of rows that share a regime recovers that rule; neighbourhoods are taken in
the features the router's group lasso kept (``router_l1``), where the regimes live. At the
end of the lasso's selection half (``--at`` of the epochs):

1. ``S`` = the input features the gate kept; ``--anchors`` random training rows, each with
   its ``--neighbors`` nearest rows in ``S`` (standardised);
2. per anchor, a ridge fit of the one-hot labels on all features (closed form) gives a
   local rule; the rules (normalised) are clustered by k-means into ``n_experts`` groups;
   every row takes the group of its nearest anchor in ``S``;
3. the router's linear map is refitted on ``S`` to those groups (full-batch softmax
   regression, Adam), the noise map zeroed, and the training goes on (optionally with the
   router frozen for ``--freeze`` epochs while the experts follow the new partition).

Measured without touching the estimator (a user callback). ``lrp``: the re-partition;
``default``: ``MoEClassifier()``. Also prints the ARI of the assignments (top-1 expert,
test rows) against the true regimes.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_partition.py --cells 4,10 4,30 8,10 8,30
--seeds 0 1 --variants default lrp lrp_f=10 lrp_f=10_top=2``

(``lrp_f=10``: router frozen 10 epochs after; ``_top=2``: neighbourhoods in the gate's 2
strongest features only; ``_top=-4``: the best of its 1..4 strongest by
:func:`partition_score`.)
"""

from __future__ import annotations

import argparse
import ast
import itertools
import time

import numpy as np
import pandas as pd
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from skorch.callbacks import Callback

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier

N_TEST = 2000


def local_rule_groups(X, y, keep, n_groups, *, n_anchors=300, n_neighbors=80, ridge=1.0,
                      seed=0) -> np.ndarray:
    """Each row's group: k-means over local ridge rules of anchors' neighbourhoods in
    ``X[:, keep]``, a row taking its nearest anchor's group."""
    rng = np.random.default_rng(seed)
    Z = X[:, keep]
    Z = (Z - Z.mean(0)) / (Z.std(0) + 1e-9)
    anchors = rng.choice(len(X), min(n_anchors, len(X)), replace=False)
    nbrs = NearestNeighbors(n_neighbors=min(n_neighbors, len(X))).fit(Z)
    idx = nbrs.kneighbors(Z[anchors], return_distance=False)  # (A, m)
    Xa = np.concatenate([X[idx], np.ones(idx.shape + (1,))], -1)  # (A, m, d+1)
    Y = np.eye(int(y.max()) + 1)[y[idx]]  # (A, m, C)
    Y = Y - Y.mean(1, keepdims=True)
    gram = np.einsum("amf,amg->afg", Xa, Xa) + ridge * np.eye(Xa.shape[-1])
    W = np.linalg.solve(gram, np.einsum("amf,amc->afc", Xa, Y))[:, :-1]  # (A, d, C)
    W = W.reshape(len(anchors), -1)
    W /= np.linalg.norm(W, axis=1, keepdims=True) + 1e-9
    labels = KMeans(n_groups, n_init=4, random_state=seed).fit_predict(W)
    nearest = NearestNeighbors(n_neighbors=1).fit(Z[anchors]).kneighbors(
        Z, return_distance=False)[:, 0]
    return labels[nearest]


def partition_score(X, y, groups, ridge=1.0, seed=0) -> float:
    """Held-out accuracy of one ridge classifier per group (70 / 30 split of each group's
    rows): how well the partition's groups each follow one linear rule."""
    rng = np.random.default_rng(seed)
    n_classes = int(y.max()) + 1
    right = total = 0
    for g in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == g))
        cut = int(0.7 * len(rows))
        if cut < 5 or len(rows) - cut < 1:
            continue
        tr, te = rows[:cut], rows[cut:]
        A = np.c_[X[tr], np.ones(len(tr))]
        W = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]),
                            A.T @ np.eye(n_classes)[y[tr]])
        pred = (np.c_[X[te], np.ones(len(te))] @ W).argmax(1)
        right += int((pred == y[te]).sum())
        total += len(te)
    return right / max(total, 1)


def fit_gate_to(router, X, keep, groups, steps=300, lr=0.05) -> None:
    """The router's linear map refitted on ``keep`` to ``groups`` (softmax regression)."""
    x = torch.as_tensor(X, dtype=torch.float32)
    target = torch.as_tensor(groups, dtype=torch.long)
    mask = torch.zeros(X.shape[1])
    mask[torch.as_tensor(keep)] = 1.0
    weight = torch.zeros_like(router.linear.weight, requires_grad=True)
    bias = torch.zeros_like(router.linear.bias, requires_grad=True)
    opt = torch.optim.Adam([weight, bias], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ (weight * mask).T + bias, target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        router.linear.weight.copy_(weight * mask)
        router.linear.bias.copy_(bias)
        noise = getattr(router, "noise", None)
        if noise is not None:
            noise.weight.zero_()
            noise.bias.zero_()


class LocalRulePartition(Callback):
    def __init__(self, at=0.5, freeze=0, anchors=300, neighbors=80, seed=0, top=0) -> None:
        self.at, self.freeze, self.anchors, self.neighbors, self.seed = (
            at, freeze, anchors, neighbors, seed)
        self.top = top

    def on_epoch_end(self, net, dataset_train=None, **kwargs) -> None:
        epoch = len(net.history)
        router = net.module_.router
        at = max(1, round(self.at * net.max_epochs))
        if epoch == at:
            X, y = np.asarray(dataset_train.X), np.asarray(dataset_train.y)
            norms = router.linear.weight.detach().norm(dim=0).numpy()
            keep = np.flatnonzero(norms > 0)
            if self.top > 0:  # only the gate's strongest features
                keep = np.argsort(-norms)[:self.top]
            if len(keep) == 0:
                keep = np.arange(X.shape[1])
            if self.top < 0:  # the best of the 1..|top| strongest by partition_score
                best = None
                for r in range(1, min(-self.top, len(keep)) + 1):
                    cand = np.argsort(-norms)[:r]
                    g = local_rule_groups(X, y, cand, len(net.module_.experts),
                                          n_anchors=self.anchors, n_neighbors=self.neighbors,
                                          seed=self.seed)
                    score = partition_score(X, y, g, seed=self.seed)
                    if best is None or score > best[0]:
                        best = (score, cand)
                keep = best[1]
            net.history.record("partition_top", [int(j) for j in np.argsort(-norms)[:3]])
            groups = local_rule_groups(X, y, keep, len(net.module_.experts),
                                       n_anchors=self.anchors, n_neighbors=self.neighbors,
                                       seed=self.seed)
            fit_gate_to(router, X, keep, groups)
            net.history.record("partition_features", len(keep))
            if self.freeze:
                router.requires_grad_(False)
        if self.freeze and epoch == at + self.freeze:
            router.requires_grad_(True)


def make_variant(name: str, seed: int, args):
    params = dict(args.moe)
    callbacks = []
    for token in name.split("+"):
        if token.startswith("lrp"):
            opts = dict(part.split("=") for part in token.split("_")[1:])
            callbacks.append(LocalRulePartition(args.at, int(opts.get("f", 0)), args.anchors,
                                                args.neighbors, seed, int(opts.get("top", 0))))
        elif token.startswith("em"):
            params["em_rounds"] = int(token[2:])
        elif token != "default":
            raise ValueError(f"unknown variant {token!r}")
    if callbacks:
        params["callbacks"] = callbacks
    return MoEClassifier(random_state=seed, **params)


def top1_ari(est, X, regimes) -> float:
    indices, gates = est.route(X)
    return float(adjusted_rand_score(regimes, indices[np.arange(len(X)), gates.argmax(1)]))


def run(K: int, d: int, noise: float, seed: int, args) -> dict:
    X, y, reg, bayes = make_regime_classification(
        args.n_train + N_TEST, n_features=d, n_regimes=K, noise=noise,
        return_regimes=True, return_bayes_rate=True, random_state=seed)
    n = args.n_train
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    row = {"K": K, "d": d, "noise": noise, "seed": seed, "bayes": bayes}
    for name in args.variants:
        est = make_variant(name, seed, args)
        tic = time.perf_counter()
        est.fit(Xtr, ytr)
        row[name + "_s"] = time.perf_counter() - tic
        row[name] = est.score(Xte, yte)
        row[name + "_ari"] = top1_ari(est, Xte, reg[n:])
        kept = [r["partition_features"] for r in est.history_ if "partition_features" in r]
        if kept:
            row[name + "_kept"] = kept[0]
            print(name, "strongest gate features", [r["partition_top"] for r in est.history_
                                                    if "partition_top" in r][0])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["4,10", "4,30", "8,10", "8,30"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1])
    parser.add_argument("--moe", type=ast.literal_eval, default={})
    parser.add_argument("--variants", nargs="+", default=["default", "lrp"])
    parser.add_argument("--at", type=float, default=0.5)
    parser.add_argument("--anchors", type=int, default=300)
    parser.add_argument("--neighbors", type=int, default=80)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for cell, noise in itertools.product(args.cells, args.noise):
        K, d = (int(v) for v in cell.split(","))
        for seed in args.seeds:
            rows.append(run(K, d, noise, seed, args))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()},
                  flush=True)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    cells = frame.drop(columns="seed").groupby(["K", "d", "noise"]).mean()
    print(cells.round(3).to_string())
    print("mean over the cells:")
    print(cells.mean().round(4).to_string())


if __name__ == "__main__":
    main()
