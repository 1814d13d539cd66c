"""Does ``repartition='auto'`` cost a regressor? ``MoERegressor`` with and without it.

Tables without regimes (``StandardScaler``, 25 % held out): ``load_diabetes`` (seeds 0-3)
and ``make_friedman1(1000)`` (seeds 0, 1); and a regression task of 4 hidden regimes, the
nearest of 4 centres in the first 2 of 10 standard-normal features, each its own linear
rule plus noise 0.3 (3,000 training rows, 2,000 held out, seeds 0, 1). Prints R^2, fit
seconds and whether the guard kept the re-partition.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_regression.py [--features screen]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from moensemble.moe import MoERegressor
from moensemble.moe._partition import LocalRulePartition


def regimes(seed: int, n: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 10))
    W, centres = rng.normal(size=(4, 10)), rng.normal(size=(4, 2))
    regime = ((X[:, None, :2] - centres[None]) ** 2).sum(-1).argmin(1)
    return X, np.einsum("nd,nd->n", X, W[regime]) + 0.3 * rng.normal(size=n)


def splits():
    for seed in range(4):
        X, y = load_diabetes(return_X_y=True)
        yield ("diabetes", seed, *train_test_split(X, y, test_size=0.25, random_state=seed))
    for seed in range(2):
        X, y = make_friedman1(1000, random_state=0)
        yield ("friedman1", seed, *train_test_split(X, y, test_size=0.25, random_state=seed))
    for seed in range(2):
        X, y = regimes(seed)
        yield "regimes", seed, X[:3000], X[3000:], y[:3000], y[3000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", nargs="*", default=[], choices=["gate", "screen", "both"],
                        help="also 'auto' with the re-partition's features ranked so "
                             "(eighth pass), as auto_<features>")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for table, seed, Xtr, Xte, ytr, yte in splits():
        scaler = StandardScaler().fit(Xtr)
        Xtr, Xte = scaler.transform(Xtr), scaler.transform(Xte)
        row = {"table": table, "seed": seed}
        for mode in ("none", "auto", *(f"auto_{f}" for f in args.features)):
            params = {"repartition": mode}
            if mode.startswith("auto_"):  # 'auto' with its candidates' features so ranked
                params = {"repartition": "none", "callbacks": [LocalRulePartition(
                    False, refine_iter=30, guard="holdout", features=mode[5:])]}
            tic = time.perf_counter()
            est = MoERegressor(random_state=seed, **params).fit(Xtr, ytr)
            row[mode] = round(est.score(Xte, yte), 4)
            row[mode + "_s"] = round(time.perf_counter() - tic, 1)
            kept = [r["repartition_kept"] for r in est.history_ if "repartition_kept" in r]
            if kept:
                row[mode + "_kept"] = kept[0]
        print(row, flush=True)


if __name__ == "__main__":
    main()
