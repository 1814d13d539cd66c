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
from sklearn.metrics import adjusted_rand_score
from skorch.callbacks import Callback

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier
from moensemble.moe._partition import fit_router_to, local_rule_groups, partition_score

N_TEST = 2000
# The prototype's steps (local_rule_groups, partition_score, fit_router_to) are the ones the
# estimator's repartition='local_rules' runs.


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
            T = np.eye(int(y.max()) + 1)[y]  # one-hot labels: the local rules' targets
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
                    g = local_rule_groups(X, T, cand, len(net.module_.experts),
                                          n_anchors=self.anchors, n_neighbors=self.neighbors,
                                          seed=self.seed)
                    score = partition_score(X, T, g, classification=True, seed=self.seed)
                    if best is None or score > best[0]:
                        best = (score, cand)
                keep = best[1]
            net.history.record("partition_top", [int(j) for j in np.argsort(-norms)[:3]])
            groups = local_rule_groups(X, T, keep, len(net.module_.experts),
                                       n_anchors=self.anchors, n_neighbors=self.neighbors,
                                       seed=self.seed)
            fit_router_to(router, X, keep, groups)
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


def grid_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The grid's options, shared with the other regime prototypes."""
    parser.add_argument("--cells", nargs="+", default=["4,10", "4,30", "8,10", "8,30"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.1])
    parser.add_argument("--threads", type=int, default=1)
    return parser


def run_grid(args, run) -> None:
    """``run(K, d, noise, seed, args)`` over the grid; print each row, then the cell means."""
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


def main() -> None:
    parser = grid_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--moe", type=ast.literal_eval, default={})
    parser.add_argument("--variants", nargs="+", default=["default", "lrp"])
    parser.add_argument("--at", type=float, default=0.5)
    parser.add_argument("--anchors", type=int, default=300)
    parser.add_argument("--neighbors", type=int, default=80)
    run_grid(parser.parse_args(), run)


if __name__ == "__main__":
    main()
