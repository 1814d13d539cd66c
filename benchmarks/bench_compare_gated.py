"""Settings of the main job's gated ensemble, on the CLI's data and folds, in one run.

The CLI's default board at ``--n-samples`` rows (the bundled WordNet glosses, the word and
char TF-IDF views, 3 shuffled outer folds, seed 0); each variant is the board's gated
ensemble with some settings changed, written ``router:aux:input[:extra...]``:

* ``router``: ``topkK`` (top-K routing) or ``softmax`` (every member, dense weights);
* ``aux``: the load-balancing loss coefficient (``aux_loss_coef``);
* ``input``: ``input`` (the router sees the word view) or ``oof`` (also the members'
  out-of-fold probabilities, ``features='input+oof'``);
* extras: ``both`` (the router sees both views side by side), ``wdX`` (weight decay X),
  ``epN`` (N epochs), ``lrX`` (learning rate X), ``es`` (early stopping).

The variants share one cache (``--memory``), so the members' inner fits are paid once, by
the first variant; ``cpu_time_s`` of the others is their router's. Timings compare only
within one run (the machine is shared).

    python benchmarks/bench_compare_gated.py --variants topk2:0.01:input,topk2:0:input:wd1e-3
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import MaxAbsScaler

from moensemble.cli import build_parser
from moensemble.cli.common import load_data
from moensemble.cli.compare import _quiet_known_warnings, build_models, with_text_views
from moensemble.leaderboard import compare, make_folds

TODAY = "topk2:0.01:input"


def variant(gated, word, char, spec: str):
    """The board's gated ensemble with the settings of ``spec`` (see the module docstring)."""
    router, aux, features, *extras = spec.split(":")
    est = clone(gated)
    routing = {"router": "softmax"} if router == "softmax" else {
        "router": "topk", "top_k": int(router.removeprefix("topk"))}
    est.set_params(**routing, aux_loss_coef=float(aux),
                   features="input+oof" if features == "oof" else "input", weight_decay=0.0)
    for extra in extras:
        if extra == "es":
            est.set_params(early_stopping=True)
        elif extra == "both":
            est.set_params(router_preprocessor=Pipeline([
                ("views", FeatureUnion([("word", clone(word)), ("char", clone(char))])),
                ("scale", MaxAbsScaler())]))
        else:
            name = {"wd": "weight_decay", "ep": "max_epochs", "lr": "lr"}[extra[:2]]
            value = extra[2:]
            est.set_params(**{name: int(value) if name == "max_epochs" else float(value)})
    return est


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=3000)
    parser.add_argument("--variants", default=f"{TODAY},topk2:0:input:wd1e-3")
    parser.add_argument("--memory", default=None, help="a cache folder kept between runs")
    parser.add_argument("--n-jobs", type=int, default=1)
    options = parser.parse_args()
    args = build_parser().parse_args(["compare", "--n-samples", str(options.n_samples)])
    dataset = with_text_views(load_data(args), args)
    built = dict(build_models(dataset, args))
    word = built["gated"].router_preprocessor.steps[0][1]
    char = built["logreg_char"].steps[0][1]
    models = [("logreg_char", built["logreg_char"])] + [
        (spec, variant(built["gated"], word, char, spec)) for spec in options.variants.split(",")]
    X, y = dataset["X"], dataset["y"]
    folds = make_folds(args.cv, X, y, task="classification", random_state=args.random_state)
    with warnings.catch_warnings():
        _quiet_known_warnings()
        start = time.perf_counter()
        board, fold_table = compare(models, X, y, cv=folds, n_jobs=options.n_jobs,
                                    memory=options.memory, progress=False, return_folds=True)
    pd.set_option("display.width", 200)
    cpu = fold_table.groupby("model", sort=False)["cpu_time_s"].mean()
    print(board[["accuracy_mean", "accuracy_std", "log_loss_mean",
                 "expert_load_max_violation"]].assign(cpu_s_a_fold=cpu).round(4).to_string())
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
