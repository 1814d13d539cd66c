"""Bag or refit: does ``refit_full='auto'``'s out-of-fold rule pick what the hold-out prefers?

For each data set, split seed (25 % hold-out, as ``bench_automl.py``) and portfolio model
(behind the ``TableEncoder`` on a raw table): the model's bag on 5 shuffled outer folds of
the training part (as the AutoML fits it), the library's rule on it
(:func:`moensemble.search.refit.refit_gain`: each fold model against a bag on that fold's
inner folds, out of fold, in standard errors), and on the hold-out the refit on the whole
training part minus the bag (accuracy or R²). No time limit: every rule is measured.

Printed per model and data set: the rule's gain and the hold-out's refit - bag; at the end,
over every (data, seed, model), the hold-out gain over always keeping the bag of: always
refitting, the rule, and an oracle.

    python benchmarks/bench_automl_refit.py --sets diabetes,grunfeld --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, get_scorer, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).parent))
from bench_automl import load, single_members  # noqa: E402

from moensemble.search.bagging import bag_on_folds  # noqa: E402
from moensemble.search.refit import refit_gain  # noqa: E402

MODELS = ("linear", "kernel_ridge", "knn", "hist_gb", "random_forest")


def one(name, seed, models):
    X, y, task, _ = load(name)
    classification = task == "classification"
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y if classification else None, random_state=seed)
    y_train = np.asarray(y_train)
    classes = np.unique(y_train) if classification else None
    target = np.searchsorted(classes, y_train) if classification else \
        y_train.astype(np.float64).reshape(-1, 1)
    splitter = (StratifiedKFold if classification else KFold)(5, shuffle=True,
                                                             random_state=seed)
    folds = list(splitter.split(X_train, y_train))
    scorer = get_scorer("accuracy" if classification else "r2")
    rows = []
    for model, estimator in single_members(task, False, seed, isinstance(X, pd.DataFrame)):
        if model not in models:
            continue
        tic = time.perf_counter()
        bag = bag_on_folds(clone(estimator), X_train, y_train, folds, classes=classes,
                           scorer=scorer, n_columns=len(classes) if classification else 1)
        runner = SimpleNamespace(n_repeats=1, folds=folds, deadline=np.inf,
                                 views={"encoded": X_train}, y=y_train, classes=classes,
                                 context=SimpleNamespace(random_state=seed),
                                 n_columns=bag.oof.shape[1], target=target, task=task)
        record = SimpleNamespace(bag=bag, level=1, estimator=estimator, view="encoded")
        gain, _ = refit_gain(runner, record, "accuracy" if classification else "r2")
        refit = clone(estimator).fit(X_train, y_train)
        if classification:
            proba = np.mean([m.predict_proba(X_test) for m in bag.models], axis=0)
            bag_score = accuracy_score(y_test, classes[np.argmax(proba, axis=1)])
            refit_score = accuracy_score(y_test, refit.predict(X_test))
        else:
            bag_score = r2_score(y_test, np.mean([m.predict(X_test) for m in bag.models],
                                                 axis=0))
            refit_score = r2_score(y_test, refit.predict(X_test))
        rows.append({"data": name, "seed": seed, "model": model, "oof": bag.score,
                     "rule_gain_se": gain, "bag": bag_score, "refit": refit_score,
                     "refit_minus_bag": refit_score - bag_score,
                     "seconds": time.perf_counter() - tic})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="diabetes,breast_cancer")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", default=None, help="CSV of every row")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = []
    with threadpool_limits(limits=1):
        for name in args.sets.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                rows += one(name, seed, set(args.models.split(",")))
    table = pd.DataFrame(rows)
    if args.out:
        table.to_csv(args.out, index=False)
    table["rule"] = np.where(table["rule_gain_se"] > 0, table["refit_minus_bag"], 0.0)
    table["always_refit"] = table["refit_minus_bag"]
    table["oracle"] = table["refit_minus_bag"].clip(lower=0.0)
    per = table.groupby(["data", "model"], sort=False).agg(
        rule_gain_se=("rule_gain_se", "mean"), refits=("rule_gain_se", lambda g: (g > 0).sum()),
        refit_minus_bag=("refit_minus_bag", "mean"), rule=("rule", "mean"))
    print("\nper data set and model, mean over the seeds (hold-out gain over the bag)\n")
    print(per.reset_index().to_markdown(index=False, floatfmt="+.4f"))
    print("\nover every (data, seed, model): mean hold-out gain over always keeping the bag\n")
    summary = table.groupby("data", sort=False)[["always_refit", "rule", "oracle"]].mean()
    summary.loc["all"] = table[["always_refit", "rule", "oracle"]].mean()
    print(summary.reset_index().to_markdown(index=False, floatfmt="+.4f"))
    agree = (np.sign(table["rule_gain_se"]) == np.sign(table["refit_minus_bag"]))
    print(f"\nthe rule's sign agrees with the hold-out's on {int(agree.sum())} of {len(table)}; "
          f"Spearman(rule gain, hold-out refit - bag) = "
          f"{table['rule_gain_se'].corr(table['refit_minus_bag'], method='spearman'):.3f}")


if __name__ == "__main__":
    main()
