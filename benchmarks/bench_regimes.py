"""Hidden-regime classification: the MoE against an MLP of equal active parameters and HGB.

Task: :func:`moensemble.datasets.make_regime_classification` — ``K`` regimes given by the
nearest of ``K`` centres in 2 of ``d`` standard-normal features, each regime a noisy linear
softmax rule over all ``d`` features (2 classes), with a computable Bayes rate. Per cell of
the grid (K, d, noise) and seed: ``--n-train`` rows to fit, 2,000 held-out rows to score.
Seeds start at 100, so that the rules and rows differ from those the defaults were chosen on
(tests/test_mixture.py and the exploration used seeds 0 and 1).

Contestants, all fitted in the same run:

* ``moe``: ``MoEClassifier()`` with its defaults (or ``--moe`` keyword overrides), and each
  ``--variant`` (a Python dict literal of MoEClassifier parameters, e.g.
  ``"{'mixture': 'logits'}"``) as ``moe[i]``;
* ``mlp``: ``sklearn.neural_network.MLPClassifier`` with one hidden layer sized to the
  default MoE's ``n_active_params_`` (early stopping on 10% of the rows);
* ``hgb``: ``HistGradientBoostingClassifier()``;
* ``realmlp`` / ``tabm`` with ``--pytabkit`` (pytabkit's ``RealMLP_TD_Classifier`` and
  ``TabM_D_Classifier``, default settings, CPU; run it from a venv that has pytabkit).

Output: one row per cell (mean over seeds) with the Bayes rate, each model's held-out
accuracy, the MoE's gap to Bayes and its ratios to the MLP and HGB, then the mean over the
grid.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes.py [--seeds 2] [--n-train 3000]
[--grid small|full] [--variant "{'mixture': 'logits'}"] [--pytabkit]``
"""

from __future__ import annotations

import argparse
import ast
import itertools
import time

import pandas as pd
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.neural_network import MLPClassifier

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier

GRIDS = {
    "small": dict(K=[4, 8], d=[10, 30], noise=[0.1]),
    "full": dict(K=[4, 8], d=[10, 30], noise=[0.05, 0.2]),
}
N_TEST = 2000


def equal_mlp(n_params: int, d: int, n_classes: int, seed: int) -> MLPClassifier:
    """One hidden layer whose parameter count matches ``n_params``."""
    width = max(1, round((n_params - n_classes) / (d + 1 + n_classes)))
    return MLPClassifier((width,), max_iter=500, early_stopping=True, random_state=seed)


def pytabkit_models(seed: int) -> dict:
    from pytabkit import RealMLP_TD_Classifier, TabM_D_Classifier

    return {"realmlp": RealMLP_TD_Classifier(random_state=seed, device="cpu"),
            "tabm": TabM_D_Classifier(random_state=seed, device="cpu")}


def run_cell(K: int, d: int, noise: float, seed: int, args) -> dict:
    X, y, bayes = make_regime_classification(
        args.n_train + N_TEST, n_features=d, n_regimes=K, noise=noise,
        return_bayes_rate=True, random_state=seed)
    Xtr, ytr, Xte, yte = X[:args.n_train], y[:args.n_train], X[args.n_train:], y[args.n_train:]
    row = {"K": K, "d": d, "noise": noise, "seed": seed, "bayes": bayes}
    moe = MoEClassifier(random_state=seed, **args.moe)
    models = {"moe": moe}
    for i, variant in enumerate(args.variant):
        models[f"moe[{i}]"] = MoEClassifier(random_state=seed, **{**args.moe, **variant})
    models["hgb"] = HistGradientBoostingClassifier(random_state=seed)
    if args.pytabkit:
        models.update(pytabkit_models(seed))
    for name, est in models.items():
        start = time.perf_counter()
        est.fit(Xtr, ytr)
        row[name] = est.score(Xte, yte)
        row[f"{name}_s"] = time.perf_counter() - start
        if name == "moe":  # the MLP is sized after the fitted default MoE
            mlp = equal_mlp(moe.n_active_params_, d, 2, seed)
            start = time.perf_counter()
            row["mlp"] = mlp.fit(Xtr, ytr).score(Xte, yte)
            row["mlp_s"] = time.perf_counter() - start
            row["active_params"] = moe.n_active_params_
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="full")
    parser.add_argument("--moe", type=ast.literal_eval, default={},
                        help="MoEClassifier keyword overrides of the 'moe' contestant")
    parser.add_argument("--variant", type=ast.literal_eval, action="append", default=[],
                        help="another MoE (a dict of parameters over --moe); repeatable")
    parser.add_argument("--pytabkit", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    grid = GRIDS[args.grid]
    rows = []
    for K, d, noise in itertools.product(grid["K"], grid["d"], grid["noise"]):
        for seed in range(100, 100 + args.seeds):
            rows.append(run_cell(K, d, noise, seed, args))
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in rows[-1].items()},
                  flush=True)
    frame = pd.DataFrame(rows)
    accs = [c for c in frame.columns
            if c not in ("K", "d", "noise", "seed", "active_params") and not c.endswith("_s")]
    cells = frame.groupby(["K", "d", "noise"])[accs + ["moe_s", "mlp_s", "hgb_s"]].mean()
    cells["gap_to_bayes"] = cells["bayes"] - cells["moe"]
    cells["moe/mlp"] = cells["moe"] / cells["mlp"]
    cells["moe/hgb"] = cells["moe"] / cells["hgb"]
    pd.set_option("display.width", 200)
    print(cells.round(3).to_string())
    print("\nmean over the grid:")
    print(cells.mean().round(4).to_string())
    print(f"\nwithin 3 points of Bayes in {(cells['gap_to_bayes'] <= 0.03).sum()} of "
          f"{len(cells)} cells; ahead of the MLP in {(cells['moe/mlp'] > 1).sum()}, of HGB in "
          f"{(cells['moe/hgb'] > 1).sum()}")


if __name__ == "__main__":
    main()
