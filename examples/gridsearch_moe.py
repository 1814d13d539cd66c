"""GridSearchCV over the number of experts and how many of them each row uses.

``MoEClassifier`` is a scikit-learn estimator, so a TF-IDF → MoE pipeline goes into
``GridSearchCV`` like any other; ``top_k`` trades accuracy for the parameters used per row
(``n_active_params_``).

    python examples/gridsearch_moe.py
    MOENSEMBLE_FAST=1 python examples/gridsearch_moe.py   # (or --fast) a few seconds
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline

from moensemble.datasets import load_wordnet_glosses
from moensemble.moe import MoEClassifier


def main(fast: bool) -> None:
    texts, labels = load_wordnet_glosses(n_samples=500 if fast else 4000, min_class_size=8,
                                         return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.25, stratify=labels, random_state=0)
    pipe = Pipeline([
        ("tfidf", TfidfVectorizer(sublinear_tf=True, min_df=2)),
        ("moe", MoEClassifier(expert_hidden=(32,), lr=3e-3, batch_size=256,
                              max_epochs=3 if fast else 15, random_state=0)),
    ])
    grid = {"moe__n_experts": [4, 8], "moe__top_k": [1, 2]}
    search = GridSearchCV(pipe, grid, cv=2 if fast else 3, n_jobs=1)
    search.fit(X_train, y_train)

    results = pd.DataFrame(search.cv_results_)
    results = results[["param_moe__n_experts", "param_moe__top_k", "mean_test_score",
                       "std_test_score", "mean_fit_time"]]
    print(results.sort_values("mean_test_score", ascending=False).round(3).to_string(index=False))
    best = search.best_estimator_[-1]
    print(f"best: {search.best_params_}")
    print(f"held-out accuracy: {search.score(X_test, y_test):.3f}")
    print(f"active parameters per row: {best.n_active_params_:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="tiny data and epochs")
    args = parser.parse_args()
    main(fast=args.fast or os.environ.get("MOENSEMBLE_FAST") == "1")
