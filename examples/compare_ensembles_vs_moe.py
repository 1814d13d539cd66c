"""Weighted and stacked ensembles against a mixture of experts, on the same folds.

Builds the default contestants behind one TF-IDF step (logistic regression, naive Bayes,
extra trees on an SVD projection, a weighted and a stacked ensemble of those three, and an
MoE), ranks them with :func:`moensemble.compare`, and saves the leaderboard chart and the
MoE's routing heatmap and expert load as PNG files. The ``moensemble compare`` command does
the same with more options.

    python examples/compare_ensembles_vs_moe.py --output plots/
    MOENSEMBLE_FAST=1 python examples/compare_ensembles_vs_moe.py   # (or --fast) seconds
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from moensemble import compare
from moensemble.datasets import load_wordnet_glosses
from moensemble.leaderboard import default_models, make_folds
from moensemble.plotting import plot_expert_load, plot_leaderboard, plot_routing_heatmap


def main(fast: bool, output: Path) -> None:
    X, y = load_wordnet_glosses(n_samples=600 if fast else 3000, min_class_size=6,
                                return_X_y=True)
    X = np.asarray(X, dtype=object)  # an array, so that folds can index it
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2))
    models = default_models("classification", features=tfidf, sparse=True, quick=True)
    if fast:
        keep = {"logreg", "naive_bayes", "weighted", "moe"}
        models = [(name, model) for name, model in models if name in keep]
        models[-1][1].set_params(moe__max_epochs=3)

    # Materialise the folds so that the MoE fitted on fold 0 can be plotted on its test rows.
    folds = make_folds(2 if fast else 3, X, y)
    board, fold_table = compare(models, X, y, cv=folds, return_folds=True,
                                return_estimators=True, progress=not fast)
    columns = ["accuracy_mean", "accuracy_std", "f1_macro_mean", "log_loss_mean", "fit_time_s",
               "active_params_per_row"]
    print(board[columns].round(3).to_string())

    output.mkdir(parents=True, exist_ok=True)
    plot_leaderboard(board).savefig(output / "leaderboard.png")
    moe = fold_table.query("model == 'moe' and fold == 0")["estimator"].iloc[0]
    test = folds[0][1]
    plot_routing_heatmap(moe, X[test], y[test]).savefig(output / "routing_heatmap.png")
    plot_expert_load(moe, X[test]).savefig(output / "expert_load.png")
    print(f"best: {board.index[0]}; plots saved to {output}/")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny data, fewer models")
    parser.add_argument("--output", type=Path, default=Path("moensemble-output"))
    args = parser.parse_args()
    main(fast=args.fast or os.environ.get("MOENSEMBLE_FAST") == "1", output=args.output)
