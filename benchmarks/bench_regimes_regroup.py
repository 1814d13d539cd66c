"""Prototype (sixth pass): a better re-partition at K=8, repeated from the experts, guarded.

Starts from ``repartition='local_rules'`` (``moe/_partition.py``) and varies it, as user
callbacks on ``MoEClassifier(repartition='none')``, without touching the estimator:

* ``lr``: the fifth pass's re-partition (``LocalRulePartition``, as ``'local_rules'``);
  ``lr_d=8``: 8 anchor draws (k-means starts) per number of features instead of 3, the best
  by ``partition_score``; ``lr_a=600``: 600 anchors; ``lr_c=agglo``: agglomerative (Ward)
  clustering of the local rules instead of k-means;
* ``+rg=0.7`` (``+rg=0.7,0.85``): after the experts have followed the new partition, at
  those fractions of the epochs every expert is scored on every training row
  (``log p_k(y_i | x_i)``), the scores are summed over each row's 30 nearest rows in the
  partition's gate features, each row goes to the expert that explains its neighbourhood
  best, and the gate is refitted to those groups (and frozen for a tenth of the epochs);
* ``_r=30``: each candidate partition cleaned by 30 rounds of ``refine_groups`` (hard EM
  of one ridge rule per group, rows assigned by their neighbourhoods' fit);
* ``_s=screen`` (``_s=both``): the candidates' features ranked by model-based splits
  (``moe/_screen.py``, eighth pass) instead of (besides) the gate's strongest;
* ``_g``: the estimator's guard (``LocalRulePartition(guard=True)``): the re-partitioned
  net trained aside, kept only where its training loss is no higher than the net's own
  after the same epochs; ``auto`` / ``local_rules``: the estimator's
  ``repartition='auto'`` / ``'local_rules'`` (``default``: ``MoEClassifier()``, whose
  ``repartition`` is ``'auto'`` since the seventh pass; ``none``: ``'none'``). The callback
  variants run on ``MoEClassifier(repartition='none')``.

Prints held-out accuracy, the ARI of the top-1 assignments (test rows) against the true
regimes, and how often the guard kept the new partition.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_regroup.py --seeds 0 1
--variants default lr lr_d=8 lr+rg=0.7``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_regimes_partition import N_TEST, grid_arguments, run_grid, top1_ari
from sklearn.neighbors import NearestNeighbors

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier
from moensemble.moe._em import expert_log_likelihoods
from moensemble.moe._partition import LocalRulePartition, fit_router_to, standardised


def regroup_by_experts(module, dataset, X, features, n_neighbors: int = 30) -> np.ndarray:
    """Each row to the expert that best explains its neighbourhood: the largest sum of
    ``log p_k(y_j | x_j)`` over its ``n_neighbors`` nearest rows in ``X[:, features]``."""
    _, log_p = expert_log_likelihoods(module, dataset)
    idx = NearestNeighbors(n_neighbors=n_neighbors).fit(standardised(X, features)).kneighbors(
        standardised(X, features), return_distance=False)
    return log_p.numpy().astype(np.float64)[idx].sum(1).argmax(1)


class Regroup(LocalRulePartition):
    """The estimator's re-partition, then at ``regroup_at`` (fractions of the epochs) the
    rows regrouped by the experts' likelihoods and the gate refitted to them, frozen for a
    tenth of the epochs."""

    def __init__(self, classification, regroup_at=(), **kwargs) -> None:
        super().__init__(classification, **kwargs)
        self.regroup_at = regroup_at

    def on_epoch_end(self, net, dataset_train=None, **kwargs) -> None:
        super().on_epoch_end(net, dataset_train=dataset_train, **kwargs)
        epoch, router = len(net.history), net.module_.router
        if epoch == max(1, int(self.at * net.max_epochs)):
            norms = router.linear.weight.detach().norm(dim=0).numpy()
            self.features_ = np.flatnonzero(norms > 0)  # the re-partition's features
        if dataset_train is None or epoch not in {int(f * net.max_epochs)
                                                  for f in self.regroup_at}:
            return
        X = np.asarray(dataset_train.X, dtype=np.float64)
        groups = regroup_by_experts(net.module_, dataset_train, X, self.features_)
        fit_router_to(router, X, self.features_, groups)
        router.requires_grad_(False)
        self.frozen_until_ = epoch + max(1, round(0.1 * net.max_epochs))


def make_variant(name: str, seed: int):
    if name == "default":
        return MoEClassifier(random_state=seed)
    if name in ("none", "local_rules", "auto"):
        return MoEClassifier(random_state=seed, repartition=name)
    head, *rest = name.split("+")
    opts = dict(part.split("=") for part in head.split("_")[1:] if "=" in part)
    guard = "holdout" if head.endswith("_h") else head.endswith("_g")
    kwargs = dict(n_draws=int(opts.get("d", 3)), n_anchors=int(opts.get("a", 300)),
                  cluster=opts.get("c", "kmeans"), refine_iter=int(opts.get("r", 0)),
                  guard=guard, candidates=opts.get("m", "rules"),
                  margin=float(opts.get("z", 1.0)), holdout=float(opts.get("ho", 0.15)),
                  features=opts.get("s", "gate"),
                  apply="all_rows" if head.endswith("_hr") else "twin")
    if head.endswith("_hr"):
        kwargs["guard"] = "holdout"
    regroup = [float(v) for token in rest if token.startswith("rg=")
               for v in token[3:].split(",")]
    cb = Regroup(True, tuple(regroup), **kwargs) if regroup else LocalRulePartition(True,
                                                                                   **kwargs)
    # (repartition='none': the callback stands in for the estimator's own re-partition)
    return MoEClassifier(random_state=seed, repartition="none", callbacks=[cb])


def run(K: int, d: int, noise: float, seed: int, args) -> dict:
    X, y, reg, bayes = make_regime_classification(
        args.n_train + N_TEST, n_features=d, n_regimes=K, noise=noise,
        return_regimes=True, return_bayes_rate=True, random_state=seed)
    n = args.n_train
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    row = {"K": K, "d": d, "noise": noise, "seed": seed, "bayes": bayes}
    for name in args.variants:
        est = make_variant(name, seed)
        tic = time.perf_counter()
        est.fit(Xtr, ytr)
        row[name + "_s"] = time.perf_counter() - tic
        row[name] = est.score(Xte, yte)
        row[name + "_ari"] = top1_ari(est, Xte, reg[n:])
        kept = [r["repartition_kept"] for r in est.history_ if "repartition_kept" in r]
        if kept:
            row[name + "_kept"] = float(np.mean(kept))
            losses = [r["repartition_losses"] for r in est.history_
                      if "repartition_losses" in r][0]
            row[name + "_dloss"] = losses[0] - losses[1]  # > 0: the new partition lower
        ids = [r["repartition_feature_ids"] for r in est.history_
               if "repartition_feature_ids" in r]
        if ids:
            print(name, "partition features", ids[0], flush=True)
    return row


def main() -> None:
    parser = grid_arguments(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument("--variants", nargs="+", default=["default", "lr"])
    run_grid(parser.parse_args(), run)


if __name__ == "__main__":
    main()
