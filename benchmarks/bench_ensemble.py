"""Weighted and stacked ensembles against scikit-learn's Voting/Stacking on the same data.

For each data set (bundled with scikit-learn or synthetic: nothing is downloaded) one split is
made; every model is fitted on the training part and scored on the held-out part. The peers get
the same bases, the same inner folds and the same ``n_jobs``. Printed: held-out score, fit
seconds, and ratios to the peer measured in this run.

Last, the shared-cache ratio of issue 2: the fit time of our weighted ensemble and two stacked
ensembles (different final estimators) sharing one ``memory``, over that of scikit-learn's
VotingClassifier and two StackingClassifiers (VotingRegressor / StackingRegressor) over the same
bases and folds. Ours fits each base once per fold and once on all rows; scikit-learn fits it
once per Voting and ``cv + 1`` times per Stacking, so with ``cv=5`` the ratio of fits is
6 / 15 = 0.4 (target: <= 0.5).

    python benchmarks/bench_ensemble.py            # a few minutes on 2 cores
    python benchmarks/bench_ensemble.py --quick    # under a minute
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from joblib import Parallel, delayed
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
    make_friedman1,
)
from sklearn.ensemble import (
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeCV
from sklearn.metrics import accuracy_score, log_loss, mean_squared_error
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

from moensemble.ensemble import (
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
)


def classification_sets(quick: bool):
    n = 2000 if quick else 6000
    yield "breast_cancer", *load_breast_cancer(return_X_y=True)
    yield "digits", *load_digits(return_X_y=True)
    yield "wine", *load_wine(return_X_y=True)
    yield "synthetic_5cls", *make_classification(
        n, n_features=30, n_informative=12, n_classes=5, flip_y=0.05, random_state=0
    )


def regression_sets(quick: bool):
    yield "diabetes", *load_diabetes(return_X_y=True)
    yield "friedman1", *make_friedman1(1500 if quick else 5000, noise=1.0, random_state=0)


def classifier_bases(trees: int):
    return [
        ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))),
        ("rf", RandomForestClassifier(trees, random_state=0)),
        ("nb", GaussianNB()),
        ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(15))),
    ]


def regressor_bases(trees: int):
    return [
        ("ridge", make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        ("rf", RandomForestRegressor(trees, random_state=0)),
        ("knn", make_pipeline(StandardScaler(), KNeighborsRegressor(10))),
        ("tree", DecisionTreeRegressor(max_depth=6, random_state=0)),
    ]


REPEAT = 1


def timed_fit(model, X, y):
    """Fit ``REPEAT`` times on clones and keep the fastest: the machine may be shared.

    A model with a warm ``memory`` cache is timed on its first fit only (later fits would all
    be warm).
    """
    best = np.inf
    for _ in range(1 if getattr(model, "memory", None) else REPEAT):
        candidate = clone(model)
        start = time.perf_counter()
        candidate.fit(X, y)
        seconds = time.perf_counter() - start
        if seconds < best:
            best, fitted = seconds, candidate
    return fitted, best


def run_classification(quick: bool, n_jobs: int, cv_folds: int) -> list[dict]:
    rows = []
    for data, X, y in classification_sets(quick):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, stratify=y, random_state=0)
        cv = StratifiedKFold(cv_folds, shuffle=True, random_state=0)
        bases = classifier_bases(50 if quick else 200)
        with tempfile.TemporaryDirectory() as cache:
            models = {
                "sklearn VotingClassifier(soft)": VotingClassifier(bases, voting="soft",
                                                                   n_jobs=n_jobs),
                "WeightedEnsembleClassifier": WeightedEnsembleClassifier(
                    bases, cv=cv, n_jobs=n_jobs, memory=cache),
                "sklearn StackingClassifier": StackingClassifier(
                    bases, LogisticRegression(max_iter=2000), cv=cv, n_jobs=n_jobs),
                "StackingEnsembleClassifier": StackingEnsembleClassifier(
                    bases, LogisticRegression(max_iter=2000), cv=cv, n_jobs=n_jobs),
                # Same cache as the weighted ensemble: only the final refits run.
                "StackingEnsembleClassifier (cache warm)": StackingEnsembleClassifier(
                    bases, LogisticRegression(max_iter=2000), cv=cv, n_jobs=n_jobs,
                    memory=cache),
                "StackingEnsembleClassifier(refit=False)": StackingEnsembleClassifier(
                    bases, LogisticRegression(max_iter=2000), cv=cv, n_jobs=n_jobs,
                    refit=False),
            }
            fitted = {}
            for name, model in models.items():
                fitted[name], seconds = timed_fit(model, X_tr, y_tr)
                proba = fitted[name].predict_proba(X_te)
                rows.append(dict(data=data, model=name, seconds=seconds,
                                 accuracy=accuracy_score(y_te, fitted[name].classes_[
                                     proba.argmax(1)]),
                                 log_loss=log_loss(y_te, proba, labels=fitted[name].classes_)))
        weighted = fitted["WeightedEnsembleClassifier"]
        best = [n for n, _ in bases][int(np.argmin(weighted.base_losses_))]
        single, seconds = timed_fit(clone(dict(bases)[best]), X_tr, y_tr)
        proba = single.predict_proba(X_te)
        rows.append(dict(
            data=data, model=f"best single base (by OOF): {best}", seconds=seconds,
            accuracy=accuracy_score(y_te, proba.argmax(1)), log_loss=log_loss(y_te, proba)))
    return rows


def run_regression(quick: bool, n_jobs: int, cv_folds: int) -> list[dict]:
    rows = []
    for data, X, y in regression_sets(quick):
        X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
        cv = KFold(cv_folds, shuffle=True, random_state=0)
        bases = regressor_bases(50 if quick else 200)
        models = {
            "sklearn VotingRegressor": VotingRegressor(bases, n_jobs=n_jobs),
            "WeightedEnsembleRegressor": WeightedEnsembleRegressor(bases, cv=cv, n_jobs=n_jobs),
            "sklearn StackingRegressor": StackingRegressor(bases, RidgeCV(), cv=cv,
                                                           n_jobs=n_jobs),
            "StackingEnsembleRegressor": StackingEnsembleRegressor(bases, RidgeCV(), cv=cv,
                                                                   n_jobs=n_jobs),
        }
        for name, model in models.items():
            model, seconds = timed_fit(model, X_tr, y_tr)
            rows.append(dict(data=data, model=name, seconds=seconds,
                             rmse=mean_squared_error(y_te, model.predict(X_te)) ** 0.5))
    return rows


def shared_cache_ratio(quick: bool, n_jobs: int, cv_folds: int) -> list[dict]:
    """Fit seconds of 3 ensembles sharing one cache vs scikit-learn's 3, per data set."""
    rows = []
    sets = [(d, X, y, True) for d, X, y in classification_sets(quick)]
    sets += [(d, X, y, False) for d, X, y in regression_sets(quick)]
    for data, X, y, is_clf in sets:
        trees = 50 if quick else 200
        if is_clf:
            bases, cv = classifier_bases(trees), StratifiedKFold(cv_folds, shuffle=True,
                                                                 random_state=0)
            finals = [LogisticRegression(max_iter=2000), GaussianNB()]
            ours = [StackingEnsembleClassifier(bases, f, cv=cv, n_jobs=n_jobs) for f in finals]
            ours.append(WeightedEnsembleClassifier(bases, cv=cv, n_jobs=n_jobs))
            theirs = [VotingClassifier(bases, voting="soft", n_jobs=n_jobs)] + [
                StackingClassifier(bases, f, cv=cv, n_jobs=n_jobs) for f in finals]
        else:
            bases, cv = regressor_bases(trees), KFold(cv_folds, shuffle=True, random_state=0)
            finals = [RidgeCV(), LinearRegression()]
            ours = [StackingEnsembleRegressor(bases, f, cv=cv, n_jobs=n_jobs) for f in finals]
            ours.append(WeightedEnsembleRegressor(bases, cv=cv, n_jobs=n_jobs))
            theirs = [VotingRegressor(bases, n_jobs=n_jobs)] + [
                StackingRegressor(bases, f, cv=cv, n_jobs=n_jobs) for f in finals]
        # A stack first: it fits every base on the folds and on all rows in one parallel batch;
        # the second stack and the weighted ensemble then find every fit in the cache.
        ours_s = sklearn_s = np.inf
        for _ in range(REPEAT):
            with tempfile.TemporaryDirectory() as cache:  # a cold cache every time
                start = time.perf_counter()
                for model in ours:
                    clone(model).set_params(memory=cache).fit(X, y)
                ours_s = min(ours_s, time.perf_counter() - start)
            start = time.perf_counter()
            for model in theirs:
                clone(model).fit(X, y)
            sklearn_s = min(sklearn_s, time.perf_counter() - start)
        rows.append(dict(data=data, ours=ours_s, sklearn=sklearn_s, ratio=ours_s / sklearn_s))
    return rows


def print_ratio(rows: list[dict]) -> None:
    print("weighted + 2 stacked sharing one cache  vs  sklearn Voting + 2 Stacking "
          "(fit seconds; target ratio <= 0.5)")
    print(f"{'data':<15} {'ours s':>8} {'sklearn s':>10} {'ratio':>7}")
    for r in rows:
        print(f"{r['data']:<15} {r['ours']:>8.2f} {r['sklearn']:>10.2f} {r['ratio']:>7.2f}")
    total = sum(r["ours"] for r in rows) / sum(r["sklearn"] for r in rows)
    print(f"{'all':<15} {sum(r['ours'] for r in rows):>8.2f} "
          f"{sum(r['sklearn'] for r in rows):>10.2f} {total:>7.2f}")


PEERS = {
    "WeightedEnsembleClassifier": "sklearn VotingClassifier(soft)",
    "StackingEnsembleClassifier": "sklearn StackingClassifier",
    "StackingEnsembleClassifier (cache warm)": "sklearn StackingClassifier",
    "StackingEnsembleClassifier(refit=False)": "sklearn StackingClassifier",
    "WeightedEnsembleRegressor": "sklearn VotingRegressor",
    "StackingEnsembleRegressor": "sklearn StackingRegressor",
}


def print_table(rows: list[dict], metrics: list[str]) -> None:
    by_key = {(r["data"], r["model"]): r for r in rows}
    header = f"{'data':<15} {'model':<44} " + " ".join(f"{m:>9}" for m in metrics)
    print(header + f" {'fit s':>7} {'time/peer':>9} " + " ".join(
        f"{m + '/peer':>13}" for m in metrics))
    print("-" * len(header) + "-" * (18 + 14 * len(metrics)))
    for r in rows:
        peer = by_key.get((r["data"], PEERS.get(r["model"], "")))
        ratios = (
            f"{r['seconds'] / peer['seconds']:>9.2f} "
            + " ".join(f"{r[m] / peer[m]:>13.3f}" for m in metrics)
            if peer else ""
        )
        print(f"{r['data']:<15} {r['model']:<44} " + " ".join(f"{r[m]:>9.4f}" for m in metrics)
              + f" {r['seconds']:>7.2f} {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data and forests")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=1, help="fits per model; min time kept")
    args = parser.parse_args()
    global REPEAT
    REPEAT = args.repeat
    # Start the worker processes before any timing so no model pays for their start-up.
    Parallel(n_jobs=args.n_jobs)(delayed(np.sqrt)(i) for i in range(2 * args.n_jobs))
    print(f"n_jobs={args.n_jobs} inner cv={args.cv} quick={args.quick} repeat={args.repeat}\n")
    print_table(run_classification(args.quick, args.n_jobs, args.cv), ["accuracy", "log_loss"])
    print()
    print_table(run_regression(args.quick, args.n_jobs, args.cv), ["rmse"])
    print()
    print_ratio(shared_cache_ratio(args.quick, args.n_jobs, args.cv))


if __name__ == "__main__":
    main()
