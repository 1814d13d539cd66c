"""AutoML at a fixed time budget vs. the best single scikit-learn model and sklearn's stacking.

For each data set (bundled with scikit-learn, plus the bundled WordNet glosses as TF-IDF):
a stratified 75/25 split; then on the training part

* ``best single``: the scikit-learn model with the best 5-fold CV accuracy among the
  AutoML's default members plus gradient boosting (dense data), refit on the training part;
* ``sklearn stacking``: ``StackingClassifier`` over the same members, logistic final model;
* ``AutoClassifier``: ``time_budget`` seconds across the weighted, stacked and MoE families.

Printed: held-out accuracy and fit time of each, the AutoML's best family and its finished
trials per family,
and the fit time relative to the budget. One BLAS/OpenMP thread per process so that timings
on a shared machine stay comparable.

    python benchmarks/bench_automl.py            # budget 60 s per data set
    python benchmarks/bench_automl.py --quick    # budget 20 s, text subset of 3,000 rows
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits, load_wine
from sklearn.ensemble import HistGradientBoostingClassifier, StackingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from threadpoolctl import threadpool_limits

from moensemble.search import AutoClassifier
from moensemble.search.auto import default_members


def datasets(quick: bool):
    for name, load in [("breast_cancer", load_breast_cancer), ("wine", load_wine),
                       ("digits", load_digits)]:
        X, y = load(return_X_y=True)
        yield name, X, y, False
    from moensemble.datasets import load_wordnet_glosses

    texts, y = load_wordnet_glosses(n_samples=3000 if quick else 6000, return_X_y=True)
    yield "wordnet_tfidf", np.asarray(texts, dtype=object), np.asarray(y), True


def run(name, X, y, sparse_text, budget, seed=0):
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=seed
    )
    if sparse_text:  # features learned on the training part only
        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000)
        X_train, X_test = tfidf.fit_transform(X_train), tfidf.transform(X_test)
    members = default_members("classification", sparse=sparse_text, random_state=seed,
                              non_negative=True)
    candidates = list(members)
    if not sparse_text:
        candidates.append(("hist_gb", HistGradientBoostingClassifier(random_state=seed)))
    rows = []

    tic = time.perf_counter()
    cv = StratifiedKFold(5, shuffle=True, random_state=seed)
    cv_scores = {n: cross_val_score(clone(e), X_train, y_train, cv=cv).mean()
                 for n, e in candidates}
    best_name = max(cv_scores, key=cv_scores.get)
    best = clone(dict(candidates)[best_name]).fit(X_train, y_train)
    rows.append(("best single", f"{best_name}", best.score(X_test, y_test),
                 time.perf_counter() - tic, np.nan))

    tic = time.perf_counter()
    stack = StackingClassifier([(n, clone(e)) for n, e in members],
                               LogisticRegression(max_iter=1000), cv=5).fit(X_train, y_train)
    rows.append(("sklearn stacking", f"{len(members)} members", stack.score(X_test, y_test),
                 time.perf_counter() - tic, np.nan))

    tic = time.perf_counter()
    auto = AutoClassifier(time_budget=budget, progress_bar=False, random_state=seed)
    auto.fit(X_train, y_train)
    elapsed = time.perf_counter() - tic
    board = auto.leaderboard_[auto.leaderboard_["state"].eq("COMPLETE")]
    tried = ", ".join(f"{f} {n}" for f, n in board["family"].value_counts().items())
    rows.append(("AutoClassifier", f"{auto.best_family_} (trials: {tried})",
                 auto.score(X_test, y_test), elapsed, elapsed / budget))
    frame = pd.DataFrame(rows, columns=["model", "choice", "accuracy", "fit_s", "fit/budget"])
    frame.insert(0, "data", name)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=None, help="seconds per data set")
    parser.add_argument("--quick", action="store_true", help="budget 20 s, smaller text set")
    args = parser.parse_args()
    budget = args.budget or (20.0 if args.quick else 60.0)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    import torch

    torch.set_num_threads(1)
    frames = []
    with threadpool_limits(limits=1):
        for name, X, y, text in datasets(args.quick):
            frames.append(run(name, X, y, text, budget))
            print(frames[-1].to_string(index=False, float_format="%.4f"), flush=True)
    table = pd.concat(frames, ignore_index=True)
    print(f"\nAutoML budget {budget:.0f} s per data set; held-out accuracy (25 % split)\n")
    print(table.to_markdown(index=False, floatfmt=".4f") if _has_tabulate()
          else table.to_string(index=False, float_format="%.4f"))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
