"""Gated ensemble vs. weighted, stacked and mixture of experts; the cost of top-1 routing.

For each data set (bundled with scikit-learn, plus the bundled WordNet glosses as TF-IDF): a
75/25 split (stratified for classification); on the training part, over the *same* bases

* ``weighted``: :class:`~moensemble.WeightedEnsembleClassifier` (greedy selection);
* ``stacked``: :class:`~moensemble.StackingEnsembleClassifier` (logistic / ridge meta-model);
* ``gated softmax``, ``gated top-1``, ``gated top-2``: :mod:`moensemble.gated`, router on the
  input only (``features='input'``), so top-k routing runs only the chosen bases;
* ``MoE``: :class:`~moensemble.MoEClassifier` on the standardized input (TF-IDF as is), no
  bases: a baseline from the other routing family.

Each ensemble fits its bases itself (no shared cache), so fit times are comparable. Printed per
data set and method: held-out score (accuracy or R^2), fit time, predict time on the test rows
repeated to at least ``--predict-rows`` rows (best of 3), and the rows each base predicted.
Then the predict-time ratio of top-1 routing over evaluating every base on every row
(``all bases``: each fitted base's ``predict_proba`` / ``predict`` on all rows, what a weighted
or stacked ensemble pays). One BLAS/OpenMP/torch thread per process; the bases' fits use
``--n-jobs`` workers.

    python benchmarks/bench_gated.py            # all data sets, text subset of 6,000 rows
    python benchmarks/bench_gated.py --quick    # smaller forests, text subset of 3,000 rows
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import train_test_split
from sklearn.naive_bayes import ComplementNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from moensemble import (
    GatedEnsembleClassifier,
    GatedEnsembleRegressor,
    MoEClassifier,
    MoERegressor,
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
)


def datasets(quick: bool):
    for name, load in [("breast_cancer", load_breast_cancer), ("wine", load_wine),
                       ("digits", load_digits), ("diabetes", load_diabetes)]:
        X, y = load(return_X_y=True)
        yield name, X, y, name != "diabetes", False
    from moensemble.datasets import load_wordnet_glosses

    texts, y = load_wordnet_glosses(n_samples=3000 if quick else 6000, return_X_y=True)
    yield "wordnet_tfidf", np.asarray(texts, dtype=object), np.asarray(y), True, True


def bases(classification: bool, text: bool, quick: bool, seed: int):
    """Cheap and expensive bases: a forest and kNN cost far more per row than the rest."""
    n_trees = 100 if quick else 300
    if text:
        return [
            ("logistic", LogisticRegression(C=10.0, max_iter=300)),
            ("nb", ComplementNB()),
            ("knn", KNeighborsClassifier(15, metric="cosine", weights="distance")),
        ]
    if classification:
        return [
            ("logistic", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
            ("forest", RandomForestClassifier(n_trees, random_state=seed)),
            ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(15))),
            ("hist_gb", HistGradientBoostingClassifier(max_iter=100, random_state=seed)),
        ]
    return [
        ("ridge", make_pipeline(StandardScaler(), RidgeCV())),
        ("forest", RandomForestRegressor(n_trees, min_samples_leaf=5, random_state=seed)),
        ("knn", make_pipeline(StandardScaler(), KNeighborsRegressor(15))),
        ("hist_gb", HistGradientBoostingRegressor(max_iter=100, random_state=seed)),
    ]


def methods(members, classification: bool, text: bool, n_jobs: int, seed: int):
    common = dict(cv=5, n_jobs=n_jobs)
    # On TF-IDF the router reads 64 SVD components rather than 20,000 word columns.
    view = make_pipeline(TruncatedSVD(64, random_state=seed), StandardScaler()) if text else None
    gated_cls = GatedEnsembleClassifier if classification else GatedEnsembleRegressor
    gated = dict(router_preprocessor=view, max_epochs=100, random_state=seed, **common)
    moe_cls = MoEClassifier if classification else MoERegressor
    moe = moe_cls(n_experts=8, top_k=2, max_epochs=20 if text else 100, random_state=seed)
    if classification:
        weighted = WeightedEnsembleClassifier(members, **common)
        stacked = StackingEnsembleClassifier(members, **common)
    else:
        weighted = WeightedEnsembleRegressor(members, **common)
        stacked = StackingEnsembleRegressor(members, **common)
    return {
        "weighted": weighted,
        "stacked": stacked,
        "gated softmax": gated_cls(members, router="softmax", **gated),
        "gated top-1": gated_cls(members, router="topk", top_k=1, **gated),
        "gated top-2": gated_cls(members, router="topk", top_k=2, **gated),
        "MoE": moe if text else make_pipeline(StandardScaler(), moe),
    }


def best_time(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return min(times)


def tile(X, n_rows: int):
    """The test rows repeated to at least ``n_rows``: per-row costs, not call overheads."""
    reps = max(1, int(np.ceil(n_rows / X.shape[0])))
    if hasattr(X, "tocsr"):
        import scipy.sparse as sp

        return sp.vstack([X] * reps, format="csr")
    return np.concatenate([X] * reps)


def run(name, X, y, classification, text, args):
    split = train_test_split(
        X, y, test_size=0.25, random_state=args.seed, stratify=y if classification else None
    )
    X_train, X_test, y_train, y_test = split
    if text:  # features learned on the training part only
        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000)
        X_train, X_test = tfidf.fit_transform(X_train), tfidf.transform(X_test)
    members = bases(classification, text, args.quick, args.seed)
    X_time = tile(X_test, args.predict_rows)
    rows = []
    fitted = {}
    for method, estimator in methods(members, classification, text, args.n_jobs, args.seed).items():
        tic = time.perf_counter()
        model = clone(estimator).fit(X_train, y_train)
        fit_s = time.perf_counter() - tic
        fitted[method] = model
        predict_s = best_time(lambda m=model: m.predict(X_time))
        routed = ""
        if method.startswith("gated"):
            indices, _ = model.route(X_time)
            counts = np.bincount(indices.ravel(), minlength=len(members))
            shares = zip(members, counts / len(indices), strict=True)
            routed = " ".join(f"{n}:{share:.2f}" for (n, _), share in shares)
        rows.append(dict(data=name, method=method, score=model.score(X_test, y_test),
                         fit_s=fit_s, predict_s=predict_s, rows_per_base=routed))

    # Evaluating every base on every row, with the gated ensemble's own fitted bases.
    gated = fitted["gated top-1"]
    predict = "predict_proba" if is_classifier(gated) else "predict"
    all_s = best_time(lambda: [getattr(b, predict)(X_time) for b in gated.estimators_])
    router_s = best_time(lambda: gated.route(X_time))
    per_base = {n: best_time(lambda b=b: getattr(b, predict)(X_time))
                for (n, _), b in zip(members, gated.estimators_, strict=True)}
    top1 = next(r for r in rows if r["method"] == "gated top-1")
    summary = dict(data=name, n_predict_rows=X_time.shape[0], all_bases_s=all_s,
                   gated_top1_s=top1["predict_s"], router_s=router_s,
                   ratio=top1["predict_s"] / all_s,
                   base_s=" ".join(f"{n}:{s:.3f}" for n, s in per_base.items()))
    return rows, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="*", help="data set names to run")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--predict-rows", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    torch.set_num_threads(1)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    all_rows, summaries = [], []
    with threadpool_limits(1):
        for name, X, y, classification, text in datasets(args.quick):
            if args.only and name not in args.only:
                continue
            rows, summary = run(name, X, y, classification, text, args)
            all_rows += rows
            summaries.append(summary)
            print(pd.DataFrame(rows).round(4).to_string(index=False), flush=True)
            print(pd.DataFrame([summary]).round(4).to_string(index=False), "\n", flush=True)
    print("## scores and times (score: accuracy, R^2 for diabetes)")
    print(pd.DataFrame(all_rows).round(4).to_markdown(index=False))
    print("\n## predict time: gated top-1 over all bases on all rows")
    print(pd.DataFrame(summaries).round(4).to_markdown(index=False))


if __name__ == "__main__":
    main()
