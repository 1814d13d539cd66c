"""The main job's board with one TF-IDF view, with members per view, and with a union view.

On the CLI's data (the bundled WordNet glosses, ``--n-samples`` rows, default 3,000) and its
outer folds (3, shuffled, seed 0), three boards in one run, the same folds for all:

* ``word``: today's board, ``moensemble compare --text-views word`` (word 1-2 gram TF-IDF in
  front of every model);
* ``word,char``: ``--text-views word,char``: the same models behind the word view, plus
  ``logreg_char`` and ``naive_bayes_char`` behind a character 2-5 gram TF-IDF; the
  ensembles combine all five members;
* ``union``: every model of today's board behind one ``FeatureUnion`` of the two TF-IDFs.

Printed per board: each model's accuracy (mean ± std over the folds) and log loss, the
compare wall time, the best single model and which ensembles beat it by accuracy. Timings
are only comparable within one run (the machine is shared).

    python benchmarks/bench_compare_views.py                       # the default run's data
    python benchmarks/bench_compare_views.py --boards word word,char --n-jobs 2
"""

from __future__ import annotations

import argparse
import time
import warnings

import pandas as pd

from moensemble.cli import build_parser
from moensemble.cli.common import load_data
from moensemble.cli.compare import (
    OPTIONAL_MODELS,
    _quiet_known_warnings,
    build_models,
    select_models,
    with_text_views,
)
from moensemble.leaderboard import compare, make_folds

ENSEMBLES = ("weighted", "stacked", "gated", "stacked_moe")


def board_models(board: str, dataset: dict, args) -> tuple[dict, list]:
    """``(dataset, models)`` of one board, as ``moensemble compare`` builds them."""
    if board == "union":
        from sklearn.pipeline import FeatureUnion

        from moensemble.leaderboard import default_models
        from moensemble.text import tfidf_view

        union = FeatureUnion([(v, tfidf_view(v, max_features=args.max_features))
                              for v in ("word", "char")])
        models = default_models("classification", features=union, sparse=True, quick=True,
                                moe_members=True, mlp=True, n_rows=len(dataset["y"]),
                                random_state=args.random_state)
        return dataset, [(n, m) for n, m in models if n not in OPTIONAL_MODELS]
    args = argparse.Namespace(**{**vars(args), "text_views": tuple(board.split(","))})
    dataset = with_text_views(dataset, args)
    return dataset, select_models(build_models(dataset, args), None, optional=OPTIONAL_MODELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-samples", type=int, default=3000)
    parser.add_argument("--boards", nargs="+", default=["word", "word,char", "union"])
    parser.add_argument("--n-jobs", type=int, default=1)
    parser.add_argument("--out", default=None, help="CSV of every board's leaderboard")
    opts = parser.parse_args()
    args = build_parser().parse_args(["compare", "--n-samples", str(opts.n_samples)])
    dataset = load_data(args)
    folds = make_folds(args.cv, dataset["X"], dataset["y"], random_state=args.random_state)
    tables = []
    # Untimed: the first fits of a process pay for imports and torch's start-up.
    _, warm = board_models(opts.boards[0], dataset, args)
    small = folds[0][1][:300]
    with warnings.catch_warnings():
        _quiet_known_warnings()
        compare([(n, m) for n, m in warm if n in ("logreg", "moe")],
                dataset["X"][small], dataset["y"][small], cv=2, progress=False)
    for board in opts.boards:
        data, models = board_models(board, dataset, args)
        start = time.perf_counter()
        with warnings.catch_warnings():
            _quiet_known_warnings()
            result = compare(models, data["X"], data["y"], cv=folds, n_jobs=opts.n_jobs,
                             random_state=args.random_state, progress=False)
        seconds = time.perf_counter() - start
        table = pd.DataFrame({
            "board": board,
            "accuracy": result["accuracy_mean"], "accuracy_std": result["accuracy_std"],
            "log_loss": result["log_loss_mean"], "fit_s": result["fit_time_s"]})
        singles = [n for n in table.index if n not in ENSEMBLES and n != "moe"] + ["moe"]
        best = table.loc[singles, "accuracy"].idxmax()
        beat = [n for n in ENSEMBLES if n in table.index
                and table.loc[n, "accuracy"] > table.loc[best, "accuracy"]]
        print(f"\n== {board}: {len(models)} models x {len(folds)} folds in {seconds:.0f} s; "
              f"best single {best} {table.loc[best, 'accuracy']:.3f}; ensembles above it: "
              f"{', '.join(beat) or 'none'}", flush=True)
        print(table.drop(columns="board").round(3).to_string(), flush=True)
        tables.append(table.assign(compare_s=round(seconds, 1)))
    if opts.out:
        pd.concat(tables).to_csv(opts.out)


if __name__ == "__main__":
    main()
