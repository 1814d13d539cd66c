"""Prototype (fifth pass): deterministic annealing of the competitive mixture, on the regime grid.

Deterministic annealing EM (Ueda & Nakano 1998) replaces the mixture log-likelihood
``log sum_k g_k p_k`` by the tempered ``(1 / beta) log sum_k (g_k p_k)^beta`` and raises
``beta`` from ``beta0`` to 1: at small ``beta`` the responsibilities
``h_k ∝ (g_k p_k)^beta`` are nearly uniform, so experts split progressively instead of
locking into the first partition. Measured here without touching the estimator (the
module's log-mixture and ``moe._em.refit_gate`` are patched in this process only):

* ``da<b0>``: the training loss tempered, ``beta`` linear from ``b0`` to 1 over the first
  ``--anneal-fraction`` of the epochs (top-2 routing as usual);
* ``dense_da<b0>``: the same, with every expert kept for every row while ``beta < 1``
  (``top_k = n_experts`` in training), then top-2;
* ``em5``: ``em_rounds=5`` (the fourth pass's option);
* ``em5_da<b0>``: ``em_rounds=5`` with each gate refit annealed (``beta`` from ``b0`` to 1
  over the first half of its steps, ``--refit-steps`` steps).

The gate-only version (the gate alone fitted to the oracle's experts, plain against
annealed) is ``benchmarks/bench_regimes_gate_only.py``.

Run: ``PYTHONPATH=. python benchmarks/bench_regimes_anneal.py --cells 4,10 4,30 8,10 8,30
--seeds 0 1 --variants default da0.1 dense_da0.1 em5 em5_da0.1``
"""

from __future__ import annotations

import argparse
import ast
import time

import pandas as pd
import torch
from skorch.callbacks import Callback

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier, _em
from moensemble.moe.net import _TINY, MoEModule
from moensemble.moe.routing import scatter_logsumexp

N_TEST = 2000


def _tempered_log_mixture(self, a, batch, extra):
    """``(1 / beta) log sum_i (g_i softmax(f_i))^beta`` per row and class (beta=1: exact)."""
    log_p = torch.log_softmax(a.outputs, dim=-1) + torch.log(a.gates.clamp_min(_TINY))
    beta = getattr(self, "mixture_beta", 1.0) if self.training else 1.0
    out = scatter_logsumexp(beta * log_p, a.rows, batch) / beta
    return out if extra is None else out + extra


MoEModule._log_mixture = _tempered_log_mixture


class Anneal(Callback):
    """``beta`` linear from ``beta0`` to 1 over the first ``fraction`` of the epochs;
    with ``dense``, every expert is kept for every row while ``beta < 1``."""

    def __init__(self, beta0: float, fraction: float = 0.5, dense: bool = False) -> None:
        self.beta0, self.fraction, self.dense = beta0, fraction, dense

    def on_epoch_begin(self, net, **kwargs) -> None:
        module = net.module_
        span = max(1.0, self.fraction * net.max_epochs)
        t = min(1.0, (len(net.history) - 1) / span)
        module.mixture_beta = self.beta0 + (1.0 - self.beta0) * t
        if self.dense:
            if not hasattr(self, "top_k_"):
                self.top_k_ = module.router.top_k
            module.router.top_k = (len(module.experts) if module.mixture_beta < 1.0
                                   else self.top_k_)


_plain_refit = _em.refit_gate
REFIT_BETA0 = [1.0]
REFIT_STEPS = [200]


def _annealed_refit(router, chunks, log_p, *, lr, steps=200):
    beta0, steps = REFIT_BETA0[0], REFIT_STEPS[0]
    if beta0 >= 1.0:
        return _plain_refit(router, chunks, log_p, lr=lr, steps=steps)
    weight, bias = router.linear.weight, router.linear.bias
    keep = (weight.detach().abs().sum(0) > 0).float()
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    loss = torch.zeros(())
    with torch.enable_grad():
        for step in range(steps):
            beta = min(1.0, beta0 + (1.0 - beta0) * step / (0.5 * steps))
            optimizer.zero_grad()
            logits = torch.cat([router.logits(x) for x in chunks])
            loss = -(torch.logsumexp(beta * (torch.log_softmax(logits, -1) + log_p), -1)
                     / beta).mean()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                weight.mul_(keep)
    return float(loss.detach())


_em.refit_gate = _annealed_refit


def make_variant(name: str, seed: int, args):
    """A fresh estimator for variant ``name`` (tokens joined by ``+``: ``default``, ``em5``,
    ``em5_da<b0>``, ``da<b0>``, ``dense_da<b0>``, ``lin`` for linear experts) and the
    refit's beta0 to use."""
    params = dict(args.moe)
    callbacks = []
    beta_refit = 1.0
    for token in name.split("+"):
        if token.startswith("em5"):
            params["em_rounds"] = 5
            if "_da" in token:
                beta_refit = float(token.split("_da")[1])
        elif token.startswith("dense_da"):
            callbacks.append(Anneal(float(token[8:]), args.anneal_fraction, dense=True))
        elif token.startswith("da"):
            callbacks.append(Anneal(float(token[2:]), args.anneal_fraction))
        elif token == "lin":
            params["expert_hidden"] = ()
        elif token != "default":
            raise ValueError(f"unknown variant {token!r}")
    if callbacks:
        params["callbacks"] = callbacks
    return MoEClassifier(random_state=seed, **params), beta_refit


def run(K: int, d: int, seed: int, args) -> dict:
    X, y, bayes = make_regime_classification(
        args.n_train + N_TEST, n_features=d, n_regimes=K, noise=args.noise,
        return_bayes_rate=True, random_state=seed)
    n = args.n_train
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    row = {"K": K, "d": d, "seed": seed, "bayes": bayes}
    for name in args.variants:
        est, REFIT_BETA0[0] = make_variant(name, seed, args)
        tic = time.perf_counter()
        est.fit(Xtr, ytr)
        row[name + "_s"] = time.perf_counter() - tic
        row[name] = est.score(Xte, yte)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=["4,10", "4,30", "8,10", "8,30"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--n-train", type=int, default=3000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--moe", type=ast.literal_eval, default={})
    parser.add_argument("--variants", nargs="+", default=["default", "da0.1", "em5"])
    parser.add_argument("--anneal-fraction", type=float, default=0.5)
    parser.add_argument("--refit-steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    REFIT_STEPS[0] = args.refit_steps
    rows = []
    for cell in args.cells:
        K, d = (int(v) for v in cell.split(","))
        for seed in args.seeds:
            rows.append(run(K, d, seed, args))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()},
                  flush=True)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 250)
    cells = frame.drop(columns="seed").groupby(["K", "d"]).mean()
    print(cells.round(3).to_string())
    print("mean over the cells:")
    print(cells.mean().round(4).to_string())


if __name__ == "__main__":
    main()
