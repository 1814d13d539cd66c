"""Numeric feature embeddings of the MoE: ``num_embedding`` None vs 'periodic' vs 'piecewise'.

Dense tabular tasks, the same train/test split and seed for the three variants, features
standardised (``StandardScaler``) for all of them; the default ``MoEClassifier`` /
``MoERegressor`` otherwise. Reports held-out accuracy (classification) or R^2 (regression),
its ratio to ``None`` in the same run, and the fit-time ratio. Tasks (nothing downloaded):

* ``regimes-clf``: ``make_regime_classification`` (20 features, 6 regimes, 3000 rows);
* ``regimes-reg``: ``make_regimes`` (4 features, a linear and a wavy regime, 3000 rows);
* ``breast_cancer``, ``wine``, ``diabetes``: scikit-learn's bundled ``load_*`` sets.

Run: ``PYTHONPATH=. python benchmarks/bench_num_embeddings.py [--seeds 3] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _tasks(seed: int):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

    from moensemble.datasets import make_regime_classification, make_regimes

    yield "regimes-clf", "clf", *make_regime_classification(3000, random_state=seed)
    yield "regimes-reg", "reg", *make_regimes(3000, random_state=seed)
    for name, loader, task in (("breast_cancer", load_breast_cancer, "clf"),
                               ("wine", load_wine, "clf"), ("diabetes", load_diabetes, "reg")):
        X, y = loader(return_X_y=True)
        yield name, task, X, y


def run(seeds: int) -> None:
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from moensemble.moe import MoEClassifier, MoERegressor

    kinds = (None, "periodic", "piecewise")
    rows: dict[tuple[str, str | None], list[tuple[float, float]]] = {}
    for seed in range(seeds):
        for name, task, X, y in _tasks(seed):
            split = train_test_split(X, y, test_size=0.25, random_state=seed,
                                     stratify=y if task == "clf" else None)
            X_tr, X_te, y_tr, y_te = split
            Est = MoEClassifier if task == "clf" else MoERegressor
            for kind in kinds:
                model = make_pipeline(StandardScaler(),
                                      Est(num_embedding=kind, random_state=seed))
                t0 = time.perf_counter()
                model.fit(X_tr, y_tr)
                fit_s = time.perf_counter() - t0
                rows.setdefault((name, kind), []).append((model.score(X_te, y_te), fit_s))
    print(f"\nHeld-out score (accuracy / R^2), mean over {seeds} seed(s); ratios to "
          "num_embedding=None in the same run")
    print(f"{'task':14s} {'num_embedding':14s} {'score':>7s} {'score/none':>11s} "
          f"{'fit s':>7s} {'fit/none':>9s}")
    for (name, kind), vals in rows.items():
        score, fit_s = np.mean(vals, axis=0)
        ref_score, ref_fit = np.mean(rows[name, None], axis=0)
        print(f"{name:14s} {kind!s:14s} {score:7.3f} {score / ref_score:11.3f} "
              f"{fit_s:7.1f} {fit_s / ref_fit:9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (0: torch's default; 1 on a shared machine)")
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        import torch

        torch.set_num_threads(args.threads)
    run(args.seeds)


if __name__ == "__main__":
    main()
