"""Sparse MoE benchmark: training-step speed and peak memory on sparse text features.

1. One training step at batch 4096, 256 features, experts with a 512-unit hidden layer,
   10 outputs, on the CPU, timed as forward + backward (the step the targets speak of) and
   with the SGD update added (the MoE updates 8x the parameters the MLP does):
   - sparse top-2 of 16 experts, dispatch with ``grouped_mm`` and with a loop over experts;
   - a dense MoE running all 16 experts on every row (the seed code's method);
   - a plain MLP with the same active parameters (hidden 2 x 512 = 1024).
   Ratios are taken in this one run. Targets: sparse >= 6x dense, >= 0.8x the MLP.
2. One epoch of ``MoEClassifier.fit`` on a random TF-IDF-like CSR matrix (default
   50,000 x 100,000, 40 non-zeros per row; densified whole it would be 20 GB): the sparse
   path (CSR batches, first layer a sparse x dense product) against the densified path
   (each batch densified, as before), each in its own process for its peak RSS; for the
   default MoE and for the same mixture on a shared encoder, each with the default
   ``optimizer='auto'`` (on these 100,000 columns ``'lazy_adam'``: sparse first-layer
   gradients stepped by CatchUpAdam) and with ``'adam'`` (dense first-layer gradients).
   The densified path is the one before sparse-native input: dense batches and Adam.
   Target: >= 10x with the default.
3. Single-row ``predict_proba`` median latency of a fitted default MoE, against skorch's
   own ``predict_proba`` in the same run. Target: <= 1 ms.

Run: ``PYTHONPATH=. python benchmarks/bench_moe.py`` (``--quick`` for a smoke run,
``--rows N`` for a smaller CSR matrix, ``--threads 1`` on a shared machine, ``--part epoch``
for part 2 only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from moensemble.moe import MoEClassifier
from moensemble.moe.experts import StackedMLPExperts
from moensemble.moe.net import MoEModule
from moensemble.moe.routing import make_router


class DenseMoE(nn.Module):
    """Every expert on every row, weighted by a softmax gate: cost grows with E."""

    def __init__(self, dim: int, hidden: int, out: int, n_experts: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, n_experts)
        self.experts = StackedMLPExperts(n_experts, dim, (hidden,), out)

    def forward(self, x):
        gates = torch.softmax(self.gate(x), -1)  # (batch, E)
        y = self.experts.forward_dense(x)  # (E, batch, out)
        return torch.einsum("be,ebo->bo", gates, y)


def time_steps(models: dict[str, nn.Module], x, y, rounds: int, block: int = 5
               ) -> dict[str, tuple[float, float]]:
    """Median seconds of (forward + loss + backward, the SGD update), per model.

    Each round gives every model ``block`` consecutive steps, as training does (a model's
    weights and activations stay warm in the caches from one step to the next), and times
    all but the first two. The models take turns round by round, so a change in the
    machine's load during the run hits all of them alike and the ratios stay fair.
    """
    opts = {name: torch.optim.SGD(m.parameters(), lr=1e-3) for name, m in models.items()}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            for step in range(block):
                opts[name].zero_grad(set_to_none=True)
                t0 = time.perf_counter()
                out = model(x)
                out = out[0] if isinstance(out, tuple) else out
                F.cross_entropy(out, y).backward()
                t1 = time.perf_counter()
                opts[name].step()
                t2 = time.perf_counter()
                if step >= 2:  # two warm-up steps per block
                    times[name].append((t1 - t0, t2 - t1))
    return {name: tuple(statistics.median(col) for col in zip(*t, strict=True))
            for name, t in times.items()}


def bench_step(batch: int, dim: int, hidden: int, n_experts: int, k: int, rounds: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, dim)
    y = torch.randint(0, 10, (batch,))

    def sparse(impl: str) -> MoEModule:
        experts = StackedMLPExperts(n_experts, dim, (hidden,), 10, impl=impl)
        return MoEModule(make_router("topk", dim, n_experts, k), experts).train()

    models = {
        f"sparse top-{k}/{n_experts} loop (auto here)": sparse("loop"),
        f"sparse top-{k}/{n_experts} grouped_mm": sparse("grouped_mm"),
        f"dense all {n_experts} experts": DenseMoE(dim, hidden, 10, n_experts),
        f"MLP hidden {k * hidden} (same active params)": nn.Sequential(
            nn.Linear(dim, k * hidden), nn.ReLU(), nn.Linear(k * hidden, 10)
        ),
    }
    sec = time_steps(models, x, y, rounds)
    names = list(sec)
    fb = {name: f for name, (f, _) in sec.items()}  # forward + backward
    full = {name: f + u for name, (f, u) in sec.items()}  # + the SGD update
    dense, mlp = names[2], names[3]
    print(f"\nTraining step, batch {batch}, {dim} features, hidden {hidden}, "
          f"torch threads {torch.get_num_threads()}, median of {rounds} x 3 steps")
    print(f"{'':45s} {'forward + backward':>27s} {'+ SGD update':>27s}")
    print(f"{'model':45s} {'ms':>9s} {'dense/x':>8s} {'mlp/x':>8s} {'ms':>9s} {'dense/x':>8s} "
          f"{'mlp/x':>8s}")
    for name in names:
        print(f"{name:45s} {1e3 * fb[name]:9.1f} {fb[dense] / fb[name]:8.2f} "
              f"{fb[mlp] / fb[name]:8.2f} {1e3 * full[name]:9.1f} "
              f"{full[dense] / full[name]:8.2f} {full[mlp] / full[name]:8.2f}")
    print("targets (issue: a training step = forward + backward): sparse dense/x >= 6, "
          "sparse mlp/x >= 0.8")


def tfidf_like(n_rows: int, n_cols: int, nnz_per_row: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    # Zipf-like column popularity, as for words.
    p = 1.0 / np.arange(1, n_cols + 1)
    cols = rng.choice(n_cols, size=n_rows * nnz_per_row, p=p / p.sum())
    rows = np.repeat(np.arange(n_rows), nnz_per_row)
    data = rng.random(n_rows * nnz_per_row)
    X = sp.csr_matrix((data, (rows, cols)), shape=(n_rows, n_cols))
    X.sum_duplicates()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(1))).ravel()
    return sp.csr_matrix(sp.diags(1.0 / norms) @ X)


def _one_epoch(path: str, n_rows: int, n_cols: int, config: str) -> dict:
    """One epoch of ``MoEClassifier.fit`` on the CSR matrix, in this (fresh) process."""
    import moensemble.moe._base as base
    from moensemble.moe.net import RowDataset

    X = tfidf_like(n_rows, n_cols, 40)
    score = np.asarray(X[:, :50].sum(1)).ravel()
    y = (score > np.median(score)).astype(int)
    if path == "densified":  # the path before sparse-native input: each batch densified
        base.RowDataset = partial(RowDataset, densify=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    clf = MoEClassifier(max_epochs=1, random_state=0, **EPOCH_CONFIGS[config])
    t0 = time.perf_counter()
    clf.fit(X, y)
    fit_s = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_params = sum(p.numel() for p in clf.net_.module_.parameters())
    return dict(fit_s=fit_s, rss_before=before, rss_peak=peak, n_params=n_params,
                nnz=int(X.nnz), loss=float(clf.history_[-1, "train_loss"]),
                optimizer=str(clf.optimizer_))


# The default MoE (optimizer='auto': 'lazy_adam' on this wide CSR input), and the same
# mixture on a shared 64-wide encoder (2 blocks); each also with optimizer='adam' (dense
# first-layer gradients). The densified path of an 'auto' config is its 'adam' config's:
# dense batches take no sparse gradients.
EPOCH_CONFIGS = {
    "default": dict(),
    "default, adam": dict(optimizer="adam"),
    "encoder=(64,), n_layers=2": dict(encoder=(64,), n_layers=2),
    "encoder, adam": dict(encoder=(64,), n_layers=2, optimizer="adam"),
}
DENSIFIED_OF = {"default": "default, adam", "encoder=(64,), n_layers=2": "encoder, adam"}


def bench_sparse_epoch(n_rows: int, n_cols: int) -> None:
    """Densified vs sparse path, one epoch each, each path in its own process (peak RSS)."""
    print(f"\nOne epoch of MoEClassifier on a TF-IDF-like CSR {n_rows} x {n_cols} "
          f"(40 non-zeros a row); densified whole (float32) it would be "
          f"{n_rows * n_cols * 4 / 2**30:.1f} GiB")
    print(f"{'config':28s} {'path':10s} {'optimizer_':10s} {'epoch s':>8s} "
          f"{'densified/sparse':>17s} {'peak RSS MiB':>13s} {'params':>11s} "
          f"{'train loss':>10s}")
    res: dict[tuple[str, str], dict] = {}
    for config in EPOCH_CONFIGS:
        paths = ("sparse",) if config in DENSIFIED_OF else ("sparse", "densified")
        for path in paths:
            out = subprocess.run(
                [sys.executable, __file__, "--one-epoch", path, str(n_rows), str(n_cols), config],
                capture_output=True, text=True, check=True,
            )
            res[config, path] = json.loads(out.stdout.strip().splitlines()[-1])
    for (config, path), r in res.items():
        dense = res[DENSIFIED_OF.get(config, config), "densified"]
        print(f"{config:28s} {path:10s} {r['optimizer']:10s} {r['fit_s']:8.1f} "
              f"{dense['fit_s'] / r['fit_s']:17.2f} {r['rss_peak']:13.0f} "
              f"{r['n_params']:11,d} {r['loss']:10.4f}")
    print("target (issue): densified/sparse >= 10 on the default's row")


def bench_latency(n_calls: int) -> None:
    """Median single-row ``predict_proba`` latency of a fitted default MoE (dense input),
    against skorch's own ``predict_proba`` (its DataLoader; the path before the one-batch
    shortcut) on the same rows, the two calls taking turns."""
    from sklearn.datasets import make_classification
    from sklearn.utils.validation import validate_data

    from moensemble.moe.net import RowDataset

    X, y = make_classification(2000, 20, n_informative=10, n_classes=3, random_state=0)
    clf = MoEClassifier(max_epochs=3, random_state=0).fit(X, y)

    def skorch_path(x):
        x = validate_data(clf, x, accept_sparse="csr", dtype=np.float32, reset=False)
        return clf.net_.predict_proba(RowDataset(x))

    ours, peer = [], []
    for i in range(n_calls + 20):
        row = X[i % len(X) : i % len(X) + 1]
        t0 = time.perf_counter()
        clf.predict_proba(row)
        t1 = time.perf_counter()
        skorch_path(row)
        ours.append(t1 - t0)
        peer.append(time.perf_counter() - t1)
    ms, peer_ms = (1e3 * statistics.median(t[20:]) for t in (ours, peer))
    print(f"\nSingle-row predict_proba of a fitted default MoEClassifier (20 features, 3 "
          f"classes), median of {n_calls} calls: {ms:.2f} ms; skorch's predict_proba "
          f"{peer_ms:.2f} ms ({peer_ms / ms:.2f}x); target <= 1 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, smoke test")
    parser.add_argument("--rows", type=int, default=50_000, help="rows of the CSR matrix")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads here and in the children (0: torch's default); "
                             "1 on a shared machine, where OpenMP threads spin-wait")
    parser.add_argument("--part", choices=["all", "step", "epoch", "latency"], default="all",
                        help="run only this part (1: step, 2: epoch, 3: latency)")
    parser.add_argument("--one-epoch", nargs=4, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the children read it at import
        torch.set_num_threads(args.threads)
    if args.one_epoch:
        path, n_rows, n_cols, config = args.one_epoch
        print(json.dumps(_one_epoch(path, int(n_rows), int(n_cols), config)))
    else:
        quick = args.quick
        if args.part in ("all", "step"):
            bench_step(*((512, 64, 64, 16, 2) if quick else (4096, 256, 512, 16, 2)),
                       rounds=1 if quick else 7)
        if args.part in ("all", "epoch"):
            bench_sparse_epoch(*((2000, 20_000) if quick else (args.rows, 100_000)))
        if args.part in ("all", "latency"):
            bench_latency(50 if quick else 500)


if __name__ == "__main__":
    main()
