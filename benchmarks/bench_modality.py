"""Experts per modality vs the plain MoE vs logistic regression on ``make_modality_table``.

For each seed: ``make_modality_table(n_samples, random_state=seed)``, a 40 % hold-out
(stratified), ``TableEncoder`` fitted on the training part (TF-IDF of at most
``--text-features`` terms, 100 by default; dense output unless ``--sparse``), then on the
encoded table

* ``modality MoE``: ``MoEClassifier(expert_blocks={"text": ..., "numeric": ...})`` with the
  blocks of ``blocks_by_kind(encoder)``: 2 text experts, 2 numeric experts, top-2; the
  router reads every column (the ``source`` flag among them);
* ``plain MoE``: the same estimator and parameters with ``expert_blocks=None``;
* ``logistic``: ``LogisticRegression(max_iter=2000)``.

Printed per model: mean and spread of the held-out accuracy over the seeds, fit seconds
(relative to the plain MoE of the same run), and for the modality MoE the share of the
review rows' assignments that went to text experts and of the sensor rows' to numeric ones.
One thread per process, so that timings on a shared machine stay comparable.

    python benchmarks/bench_modality.py                      # the docs' table
    python benchmarks/bench_modality.py --seeds 1 --n-samples 600   # quick
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from moensemble import TableEncoder
from moensemble.datasets import make_modality_table
from moensemble.features import blocks_by_kind
from moensemble.moe import MoEClassifier

MOE = dict(n_experts=4, top_k=2, expert_hidden=(32,), max_epochs=20, lr=3e-3, batch_size=64)


def run_seed(seed: int, n_samples: int, sparse: bool, text_features: int) -> dict:
    X, y = make_modality_table(n_samples, random_state=seed)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, random_state=seed,
                                              stratify=y)
    encoder = TableEncoder(text_max_features=text_features, sparse_output=sparse).fit(X_tr)
    E_tr, E_te = encoder.transform(X_tr), encoder.transform(X_te)
    blocks = blocks_by_kind(encoder)
    models = {
        "modality MoE": MoEClassifier(
            **MOE, random_state=seed,
            expert_blocks={"text": blocks["text"], "numeric": blocks["numeric"]},
        ),
        "plain MoE": MoEClassifier(**MOE, random_state=seed),
        "logistic": LogisticRegression(max_iter=2000),
    }
    out = {}
    for name, model in models.items():
        start = time.perf_counter()
        model.fit(E_tr, y_tr)
        out[name] = (model.score(E_te, y_te), time.perf_counter() - start)
    load = models["modality MoE"].modality_load(E_te, X_te["source"].to_numpy())
    out["shares"] = (load.loc["review", "text"], load.loc["sensor", "numeric"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=1500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sparse", action="store_true", help="CSR input (TF-IDF stays sparse)")
    parser.add_argument("--text-features", type=int, default=100, help="TF-IDF vocabulary")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [run_seed(s, args.n_samples, args.sparse, args.text_features) for s in range(args.seeds)]
    plain_time = np.mean([r["plain MoE"][1] for r in runs])
    print(f"n_samples={args.n_samples}, seeds={args.seeds}, {args.text_features} TF-IDF terms, "
          f"input {'CSR' if args.sparse else 'dense'}; held-out accuracy")
    print("| model | accuracy (mean ± sd) | fit time / plain MoE |")
    print("|---|---|---|")
    for name in ("modality MoE", "plain MoE", "logistic"):
        acc = np.array([r[name][0] for r in runs])
        ratio = np.mean([r[name][1] for r in runs]) / plain_time
        print(f"| {name} | {acc.mean():.3f} ± {acc.std():.3f} | {ratio:.2f} |")
    wins = sum(r["modality MoE"][0] > r["plain MoE"][0] for r in runs)
    shares = np.array([r["shares"] for r in runs])
    print(f"modality MoE better than plain MoE in {wins}/{len(runs)} seeds; review rows -> "
          f"text experts {shares[:, 0].mean():.2f} (min {shares[:, 0].min():.2f}), sensor "
          f"rows -> numeric experts {shares[:, 1].mean():.2f} (min {shares[:, 1].min():.2f})")


if __name__ == "__main__":
    main()
