"""The MoE variants on a regime task: upcycling, heterogeneous experts, element-wise gates, growing.

Task: 4 uniform features; ``y`` is a linear function of x1..x3 where ``x0 < 0`` and
``2 sin(3 x1) cos(2 x2)`` where ``x0 >= 0`` (plus noise); held-out R^2 on 2000 rows.

* Upcycling: epochs to reach the dense network's (one expert's) held-out R^2 — its
  converged score and its score after ``D`` epochs — for the upcycled MoE (``D`` dense
  epochs + its own, plain copies and Drop-Upcycling) vs. the same MoE from scratch; and
  R^2 of all three after the same total epochs; with the random router init and the
  k-means one (``router_init='kmeans'``, given to both).
* Upcycling sweep: the same two targets for ``D`` = 1..8 dense epochs (k-means router and
  plain copies for both the scratch and the upcycled MoE), and with ``router_lr_scale=10``
  given to both, per seed.
* Router learning rate: epochs of the MoE from scratch to the dense network's converged
  held-out R^2 with ``router_lr_scale`` 1, 3, 10.
* Heterogeneous vs. homogeneous experts: held-out R^2, fit time, parameters per row.
* Element-wise vs. per-expert gates (3-class classification, accuracy).
* Growing: 2 experts grown to 4 vs. 2 and 4 trained for the same total epochs.

* ``--text``: compare's MoE on the main job's folds with the given parameters (the balance
  table of docs/guide/moe-quality.md), e.g. ``--text "{}" --text "{'balance': 'aux_loss'}"``.

Run: ``PYTHONPATH=. python benchmarks/bench_moe_variants.py [--seeds 3] [--n-train 1000]``
"""

from __future__ import annotations

import argparse
import ast
import time

import numpy as np
import torch
from sklearn.datasets import make_classification
from sklearn.metrics import r2_score
from skorch.callbacks import Callback

from moensemble.datasets import make_regimes
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.net import RowDataset


class HeldOutR2(Callback):
    """Record the held-out R^2 of a 1-output regressor's net after every epoch."""

    def __init__(self, est: MoERegressor, X: np.ndarray, y: np.ndarray) -> None:
        self.est, self.X, self.y = est, X.astype(np.float32), y

    def on_epoch_end(self, net, **kwargs) -> None:
        pred = net.predict_proba(RowDataset(self.X)).ravel()
        pred = pred * self.est._y_scale[0] + self.est._y_mean[0]
        net.history.record("holdout_r2", r2_score(self.y, pred))


def curve(data, **params) -> tuple[np.ndarray, MoERegressor]:
    X, y, X_test, y_test = data
    est = MoERegressor(**params)
    est.set_params(callbacks=[HeldOutR2(est, X_test, y_test)])
    est.fit(X, y)
    return np.asarray(est.history_[:, "holdout_r2"]), est


def first_reaching(scores: np.ndarray, target: float) -> float:
    hit = np.flatnonzero(scores >= target)
    return float(hit[0] + 1) if len(hit) else np.inf


def bench_upcycling(data, seeds, n_experts, dense_epochs, lr, hidden=(16,), total=20,
                    converge=60, drops=(0.0, 0.5), router_inits=("random", "kmeans")) -> None:
    """Epochs to the dense network's held-out R^2: upcycled (dense + MoE) vs. from scratch.

    Targets: ``conv`` = the dense network's best held-out R^2 within ``converge`` epochs (its
    converged score); ``@D`` = its score after the ``D`` epochs that upcycling trains it.
    Upcycled epochs count the dense phase: ``D + first MoE epoch at the target``; scratch
    MoE and upcycled MoE get ``2 * converge / 3`` epochs in all ('inf': never reached).
    Each ``router_init`` is given to both the scratch and the upcycled MoE.
    """
    budget = 2 * converge // 3
    print(f"\n## Upcycling: E={n_experts}, top_k=2, hidden={hidden}, lr={lr}, "
          f"{len(seeds)} seeds; methods: plain copy (1% noise) and Drop-Upcycling "
          f"(upcycle_drop=r); D = dense epochs before the copy; router_init applies to "
          f"both the scratch and the upcycled MoE")
    print(f"target conv = dense network's best held-out R2 within {converge} epochs "
          f"(converged); target @D = its R2 after D epochs. Epochs to target: scratch MoE "
          f"vs upcycled D + MoE epochs (all within {budget} epochs). Final: R2 after "
          f"{total} total epochs (upcycled: D dense + {total} - D MoE).")
    print("router_init | D | method | target conv | scratch epochs->conv | "
          "upcycled epochs->conv | target @D | scratch ->@D | upcycled ->@D | "
          f"final@{total}: dense | scratch | upcycled")
    curves = {}
    for seed in seeds:
        common = dict(expert_hidden=hidden, lr=lr, batch_size=64, random_state=seed)
        curves["dense", seed] = curve(data, n_experts=1, top_k=1, max_epochs=converge,
                                      **common)[0]
        for ri in router_inits:
            curves["scratch", ri, seed] = curve(data, n_experts=n_experts, top_k=2,
                                                max_epochs=budget, router_init=ri, **common)[0]
            for d in dense_epochs:
                for r in drops:
                    curves[d, r, ri, seed] = curve(
                        data, n_experts=n_experts, top_k=2, init="upcycle", upcycle_epochs=d,
                        upcycle_drop=r, max_epochs=budget - d, router_init=ri, **common,
                    )[0]
    for ri in router_inits:
        for d in dense_epochs:
            for r in drops:
                rows = []
                for seed in seeds:
                    dense, scratch = curves["dense", seed], curves["scratch", ri, seed]
                    up = curves[d, r, ri, seed]
                    conv, at_d = dense.max(), dense[d - 1]
                    rows.append((conv, first_reaching(scratch, conv),
                                 d + first_reaching(up, conv), at_d,
                                 first_reaching(scratch, at_d), d + first_reaching(up, at_d),
                                 dense[total - 1], scratch[total - 1], up[total - d - 1]))
                rows = np.array(rows)
                per_seed = " ".join(f"{a:.0f}/{b:.0f}" for a, b in rows[:, [1, 2]])
                m = rows.mean(0)
                method = "plain copy" if r == 0 else f"drop r={r}"
                print(f"{ri} | {d} | {method} | {m[0]:.3f} | {m[1]:.1f} | {m[2]:.1f} | "
                      f"{m[3]:.3f} | {m[4]:.1f} | {m[5]:.1f} | {m[6]:.3f} | {m[7]:.3f} | "
                      f"{m[8]:.3f}   (per seed scratch/upcycled ->conv: {per_seed})")


def bench_upcycling_sweep(data, seeds, n_experts, lr, dense_epochs=tuple(range(1, 9)),
                          fast_router_epochs=(1, 2, 3), hidden=(16,), converge=60) -> None:
    """Epochs to the dense targets, upcycled vs. scratch, for every ``D`` in ``dense_epochs``.

    Both MoEs get ``router_init='kmeans'`` and plain copies (1% noise); the second block
    gives ``router_lr_scale=10`` to both. Per seed: scratch/upcycled epochs (upcycled: ``D``
    dense + MoE epochs), so a tie is visible as such.
    """
    budget = 2 * converge // 3
    print(f"\n## Upcycling sweep: E={n_experts}, top_k=2, hidden={hidden}, lr={lr}, "
          f"{len(seeds)} seeds; router_init='kmeans' and plain copies for both MoEs")
    print("router_lr_scale (both) | D | target conv | scratch ->conv | upcycled ->conv | "
          "per seed scratch/upcycled ->conv | target @D | scratch ->@D | upcycled ->@D | "
          "upcycled wins/ties/losses ->conv")
    common = dict(expert_hidden=hidden, lr=lr, batch_size=64, router_init="kmeans")
    dense = {s: curve(data, n_experts=1, top_k=1, max_epochs=converge, expert_hidden=hidden,
                      lr=lr, batch_size=64, random_state=s)[0] for s in seeds}
    for scale, ds in ((1.0, dense_epochs), (10.0, fast_router_epochs)):
        scratch = {s: curve(data, n_experts=n_experts, top_k=2, max_epochs=budget,
                            router_lr_scale=scale, random_state=s, **common)[0] for s in seeds}
        for d in ds:
            rows = []
            for seed in seeds:
                up = curve(data, n_experts=n_experts, top_k=2, init="upcycle", upcycle_epochs=d,
                           max_epochs=budget - d, router_lr_scale=scale, random_state=seed,
                           **common)[0]
                conv, at_d = dense[seed].max(), dense[seed][d - 1]
                rows.append((conv, first_reaching(scratch[seed], conv),
                             d + first_reaching(up, conv), at_d,
                             first_reaching(scratch[seed], at_d), d + first_reaching(up, at_d)))
            rows = np.array(rows)
            m = rows.mean(0)
            per_seed = " ".join(f"{a:.0f}/{b:.0f}" for a, b in rows[:, [1, 2]])
            wins = (rows[:, 2] < rows[:, 1]).sum(), (rows[:, 2] == rows[:, 1]).sum()
            print(f"{scale:g} | {d} | {m[0]:.3f} | {m[1]:.1f} | {m[2]:.1f} | {per_seed} | "
                  f"{m[3]:.3f} | {m[4]:.1f} | {m[5]:.1f} | "
                  f"{wins[0]}/{wins[1]}/{len(seeds) - sum(wins)}")


def bench_router_lr(data, seeds, n_experts, lr, scales=(1.0, 3.0, 10.0), hidden=(16,),
                    converge=60, total=20) -> None:
    """Scratch MoE with the router's learning rate ``router_lr_scale * lr``."""
    budget = 2 * converge // 3
    print(f"\n## Router learning rate: E={n_experts}, top_k=2, hidden={hidden}, lr={lr}, "
          f"{len(seeds)} seeds; MoE from scratch, router lr = router_lr_scale * lr")
    print(f"target conv = dense network's best held-out R2 within {converge} epochs")
    print(f"router_lr_scale | target conv | epochs->conv (per seed) | R2@{total} | "
          f"R2@{budget}")
    dense = {s: curve(data, n_experts=1, top_k=1, max_epochs=converge, expert_hidden=hidden,
                      lr=lr, batch_size=64, random_state=s)[0] for s in seeds}
    for scale in scales:
        rows = []
        for seed in seeds:
            c = curve(data, n_experts=n_experts, top_k=2, max_epochs=budget, expert_hidden=hidden,
                      lr=lr, batch_size=64, random_state=seed, router_lr_scale=scale)[0]
            rows.append((dense[seed].max(), first_reaching(c, dense[seed].max()), c[total - 1],
                         c[-1]))
        rows = np.array(rows)
        m = rows.mean(0)
        per_seed = " ".join(f"{e:.0f}" for e in rows[:, 1])
        print(f"{scale:g} | {m[0]:.3f} | {m[1]:.1f} ({per_seed}) | {m[2]:.3f} | {m[3]:.3f}")


def bench_heterogeneous(data, seeds, epochs) -> None:
    X, y, X_test, y_test = data
    configs = {
        "2 x MLP(32)": dict(n_experts=2, expert_hidden=(32,)),
        "linear + MLP(32)": dict(experts=["linear", (32,)]),
        "2 x linear": dict(experts=["linear", "linear"]),
        "4 x MLP(32)": dict(n_experts=4, expert_hidden=(32,)),
        "linear + MLP(16) + MLP(32) + MLP(64,64)": dict(
            experts=["linear", (16,), (32,), (64, 64)]
        ),
    }
    print(f"\n## Heterogeneous vs homogeneous experts (top_k=1, {epochs} epochs)")
    print("experts | held-out R2 (mean ± sd) | fit s | max params/row | "
          "wavy rows on expert 0 (linear)")
    for name, params in configs.items():
        scores, times, wavy_on_linear = [], [], []
        for seed in seeds:
            t0 = time.perf_counter()
            est = MoERegressor(top_k=1, max_epochs=epochs, lr=1e-2, batch_size=64,
                               random_state=seed, **params).fit(X, y)
            times.append(time.perf_counter() - t0)
            scores.append(r2_score(y_test, est.predict(X_test)))
            if str(params.get("experts", [None])[0]) == "linear":
                idx = est.route(X_test)[0][:, 0]
                wavy_on_linear.append(np.mean(idx[X_test[:, 0] >= 0] == 0))
        share = f"{np.mean(wavy_on_linear):.2f}" if wavy_on_linear else "-"
        print(f"{name} | {np.mean(scores):.3f} ± {np.std(scores):.3f} | "
              f"{np.mean(times):.1f} | {est.n_active_params_} | {share}")


def bench_elementwise(seeds, epochs) -> None:
    X, y = make_classification(3000, 20, n_informative=10, n_classes=4,
                               n_clusters_per_class=2, random_state=0)
    X_tr, y_tr, X_te, y_te = X[:1000], y[:1000], X[1000:], y[1000:]
    print(f"\n## Element-wise vs per-expert gates (4 classes, E=4, top_k=2, {epochs} epochs)")
    print("gating | held-out accuracy (mean ± sd) | params/row")
    for gating in ("expert", "elementwise"):
        accs = []
        for seed in seeds:
            clf = MoEClassifier(n_experts=4, top_k=2, expert_hidden=(32,), gating=gating,
                                max_epochs=epochs, lr=1e-2, batch_size=64, random_state=seed)
            accs.append(clf.fit(X_tr, y_tr).score(X_te, y_te))
        print(f"{gating} | {np.mean(accs):.3f} ± {np.std(accs):.3f} | {clf.n_active_params_}")


def bench_grow(data, seeds, epochs, grow_epochs) -> None:
    X, y, X_test, y_test = data
    total = epochs + grow_epochs
    print(f"\n## Growing 2 -> 4 experts ({epochs} + {grow_epochs} epochs) vs fixed sizes "
          f"({total} epochs), top_k=1")
    print("model | held-out R2 (mean ± sd)")
    results: dict[str, list[float]] = {"2 experts": [], "2 grown to 4": [], "4 experts": []}
    for seed in seeds:
        common = dict(top_k=1, expert_hidden=(32,), lr=1e-2, batch_size=64, random_state=seed)
        for n in (2, 4):
            est = MoERegressor(n_experts=n, max_epochs=total, **common).fit(X, y)
            results[f"{n} experts"].append(r2_score(y_test, est.predict(X_test)))
        grown = MoERegressor(n_experts=2, max_epochs=epochs, **common).fit(X, y)
        grown.grow(X, y, n_new=2, max_epochs=grow_epochs)
        results["2 grown to 4"].append(r2_score(y_test, grown.predict(X_test)))
    for name, scores in results.items():
        print(f"{name} | {np.mean(scores):.3f} ± {np.std(scores):.3f}")


def bench_text_balance(variants: list[dict], n_folds: int) -> None:
    """compare's MoE on the main job's folds: accuracy, load violation, live experts.

    The MoE step of ``moensemble.cli.build_models`` (TF-IDF of 3,000 WordNet glosses, the
    CLI's 3 folds), with each variant's parameters set on it; the load is that of the test
    fold routed as in ``predict``, "live" = at least a quarter of an even share.
    """
    from sklearn.base import clone

    from moensemble.cli import build_parser
    from moensemble.cli.common import _bundled
    from moensemble.cli.compare import build_models
    from moensemble.leaderboard import make_folds, max_violation

    args = build_parser().parse_args(["compare"])
    data = _bundled(args)
    X, y = data["X"], data["y"]
    base = dict(build_models(data, args))["moe"]
    folds = make_folds(3, X, y, task="classification", random_state=0)[:n_folds]
    for variant in variants:
        accs, violations, live = [], [], []
        for train, test in folds:
            est = clone(base).set_params(**{f"moe__{k}": v for k, v in variant.items()})
            est.fit(X[train], y[train])
            accs.append(est.score(X[test], y[test]))
            indices, _ = est[-1].route(est[:-1].transform(X[test]))
            load = np.bincount(indices.ravel(), minlength=est[-1].n_experts_) / indices.size
            violations.append(max_violation(load))
            live.append(int((load >= 0.25 / est[-1].n_experts_).sum()))
        print(f"text {variant}: accuracy {np.round(accs, 3)}, load violation "
              f"{np.round(violations, 2)}, live experts {live}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--text", type=ast.literal_eval, action="append", default=None,
                        help="only the main job's balance table: a dict of parameters set on "
                        "compare's MoE ('{}' for it as is); repeatable")
    parser.add_argument("--text-folds", type=int, default=3)
    args = parser.parse_args()
    if args.text is not None:
        torch.set_num_threads(2)
        bench_text_balance(args.text, args.text_folds)
        return
    torch.set_num_threads(1)
    seeds = list(range(args.seeds))
    data = (*make_regimes(args.n_train, random_state=100),
            *make_regimes(2000, random_state=101))
    print(f"regime task: {args.n_train} training rows, 2000 held-out; torch "
          f"{torch.__version__}, 1 thread")
    bench_upcycling(data, seeds, n_experts=8, dense_epochs=(3, 10), lr=1e-2)
    bench_upcycling(data, seeds, n_experts=16, dense_epochs=(3, 10), lr=3e-3)
    bench_upcycling_sweep(data, seeds, n_experts=8, lr=1e-2)
    bench_router_lr(data, seeds, n_experts=8, lr=1e-2)
    bench_router_lr(data, seeds, n_experts=16, lr=3e-3)
    bench_heterogeneous(data, seeds, args.epochs)
    bench_elementwise(seeds, args.epochs)
    bench_grow(data, seeds, epochs=args.epochs // 2, grow_epochs=args.epochs // 2)


if __name__ == "__main__":
    main()
