"""Small-data levers of the AutoML, paired on the same hold-out splits.

Each variant (a dict of ``AutoClassifier`` / ``AutoRegressor`` parameters) is fitted on the
same 75 % of each small data set and scored on the other 25 %, for a few split seeds. The
sets are ones the defaults were not tuned on (Friedman 1-3 with 400 rows, ``make_regimes``
with 500, a 400-row subsample of breast cancer, wine) next to diabetes. From the same fit
it also reads the best single trial of the search (by out-of-fold score) on the hold-out,
so that "the ensemble vs its own best trial" is measured on both metrics.

    python benchmarks/bench_automl_levers.py --budget 30 --seeds 0,1 \
        --variants base,cv8,cap,cv8+cap
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from bench_automl import Capture, best_single  # this folder is on sys.path as a script
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_wine,
    make_friedman1,
    make_friedman2,
    make_friedman3,
)
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search.final import MAX_SELECTION_POOL
from moensemble.search.runner import members_of
from moensemble.search.selection import (
    TrialEnsemble,
    ensemble_selection,
    fit_temperature,
    gain_within_noise,
    temper,
)

#: Re-selections over the same trials (no new fit): (picks, metric, bags, level-1 pool only);
#: metric None is the fit's own.
RESELECT = {
    "sel:100 picks": (100, None, 20, False),
    "sel:1 bag": (25, None, 1, False),
    "sel:log_loss": (25, "log_loss", 20, False),
    "sel:level-1 pool": (25, None, 20, True),
    "sel:10 picks": (10, None, 20, False),
    "sel:trial bags": (25, None, 20, False, 0.5),  # each bag picks among half the trials
}
#: Keep the best single trial when the final blend's out-of-fold gain over it is within
#: this many standard errors (re-read from the fit's own ensemble).
GUARDS = {"guard:1 se": 1.0, "guard:0": 0.0}

VARIANTS = {
    "base": {"cv": 5, "max_level2_share": None},
    "cv8": {"cv": 8, "max_level2_share": None},
    "cap": {"cv": 5, "max_level2_share": 0.25},
    "cv8+cap": {"cv": 8, "max_level2_share": 0.25},
    "rep2": {"n_repeats": 2},
    "rep3": {"n_repeats": 3},
    "auto": {},  # the defaults
    # the default before the sixth pass: no kernel_ridge, the guard in sample, the best trial
    "fifth": {"guard_estimate": "in_sample", "single_choice": "best",
              "base_estimators": "fifth"},
}
SETS = ("diabetes", "friedman1", "friedman2", "friedman3", "regimes", "breast_cancer400",
        "wine")


def load(name: str, seed: int):
    if name == "diabetes":
        return (*load_diabetes(return_X_y=True), "regression")
    if name.startswith("friedman"):
        make, noise = {"friedman1": (make_friedman1, 1.0), "friedman2": (make_friedman2, 100.0),
                       "friedman3": (make_friedman3, 0.1)}[name]
        return (*make(400, noise=noise, random_state=100 + seed), "regression")
    if name == "regimes":
        from moensemble.datasets import make_regimes

        return (*make_regimes(500, random_state=100 + seed), "regression")
    if name == "breast_cancer400":
        X, y = load_breast_cancer(return_X_y=True)
        rows = np.random.default_rng(seed).choice(len(y), 400, replace=False)
        return X[rows], y[rows], "classification"
    if name == "breast_cancer":
        return (*load_breast_cancer(return_X_y=True), "classification")
    return (*load_wine(return_X_y=True), "classification")


def scores(task, model, X, y, classes):
    if task == "regression":
        return r2_score(y, model.predict(X)), np.nan
    proba = model.predict_proba(X)
    return accuracy_score(y, classes[proba.argmax(axis=1)]), log_loss(y, proba, labels=classes)


def split(name, seed):
    import bench_automl

    if name in ("digits", "wordnet_tfidf", *bench_automl.UNTUNED):  # bench_automl's sets
        X, y, task, text = bench_automl.load(name)  # the text as TF-IDF
    else:
        (X, y, task), text = load(name, seed), False
    stratify = y if task == "classification" else None
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=stratify,
                                              random_state=seed)
    if text:  # features learned on the training part only, as in bench_automl
        from sklearn.feature_extraction.text import TfidfVectorizer

        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000)
        X_tr, X_te = tfidf.fit_transform(X_tr), tfidf.transform(X_te)
    return X_tr, X_te, y_tr, y_te, task


def single(name, seed):
    """The best single model by 5-fold CV (bench_automl's), on this split's hold-out."""
    X_tr, X_te, y_tr, y_te, task = split(name, seed)
    with threadpool_limits(limits=1):
        row = best_single(task, X_tr, y_tr, X_te, y_te, name == "wordnet_tfidf", seed)
    return {"data": name, "seed": seed, "variant": "best single", "score": row[2],
            "log_loss": row[3], "best_trial": row[1], "fit/budget": np.nan}


def dump(path, records, auto, target, X_te, y_te, classes, *, folds=None, X_tr=None,
         y_tr=None, **about) -> None:
    """Every finished trial's OOF and hold-out predictions (its bag's average, untempered),
    so that other selections and guards can be scored later without a new fit."""
    import pickle

    everyone = TrialEnsemble(members_of({n: 1.0 for n in records}, records), {}, classes,
                             encoders=auto.best_estimator_.encoders)  # a raw table: encoded
    memo: dict = {}
    trials = [{"name": r.name, "family": r.family, "level": r.level, "score": r.score,
               "number": r.number, "phase": r.phase,
               "fit_time": float(np.sum(r.bag.fit_times)),
               "oof": np.asarray(r.bag.oof, dtype=np.float32),
               "test": everyone.trial_predictions(X_te, r.name, memo)}
              for r in records.values()]
    members = auto.best_estimator_.members
    with open(path, "wb") as f:
        pickle.dump({**about, "classes": classes, "target": target, "y_test": y_te,
                     "folds": folds, "X_train": X_tr, "y_train": y_tr, "X_test": X_te,
                     "trials": trials, "weights": dict(auto.ensemble_weights_),
                     "temperatures": {n: members[n].temperature for n in members},
                     "blend_temperature": auto.best_estimator_.temperature}, f)


def run(name, seed, variant, params, budget, dump_dir=None):
    X_tr, X_te, y_tr, y_te, task = split(name, seed)
    cls = AutoClassifier if task == "classification" else AutoRegressor
    if params.get("base_estimators") == "fifth":  # the default portfolio less kernel_ridge
        from moensemble.search.portfolio import default_portfolio

        entries = default_portfolio(task, sparse=False, non_negative=False, n_jobs=1)
        params = {**params, "base_estimators": [e for e in entries if e[0] != "kernel_ridge"]}
    tic = time.perf_counter()
    with Capture() as capture, threadpool_limits(limits=1):
        auto = cls(time_budget=budget, progress_bar=False, random_state=seed, n_jobs=1,
                   **params).fit(X_tr, y_tr)
    fit_s = time.perf_counter() - tic
    classes = getattr(auto, "classes_", None)
    score, loss = scores(task, auto, X_te, y_te, classes)
    records = {r.name: r for r in capture.runner.records if r.state == "COMPLETE" and r.bag}
    best = max(records.values(), key=lambda r: r.score)
    encoders = auto.best_estimator_.encoders  # a raw table: the fit's encodings
    single = TrialEnsemble(members_of({best.name: 1.0}, records), {best.name: 1.0}, classes,
                           encoders=encoders)
    best_score, best_loss = scores(task, single, X_te, y_te, classes)
    levels = [r.level for r in records.values()]
    extra = {}
    if classes is not None:  # the same ensemble without the blend's temperature
        extra["blend T"] = auto.best_estimator_.temperature
        auto.best_estimator_.temperature = 1.0
        extra["ll, blend T=1"] = scores(task, auto, X_te, y_te, classes)[1]
        auto.best_estimator_.temperature = extra["blend T"]
    target = capture.runner.target
    if dump_dir is not None:
        dump(f"{dump_dir}/{name}_{seed}_{variant}.pkl", records, auto, target, X_te, y_te,
             classes, folds=capture.runner.folds, X_tr=X_tr, y_tr=y_tr, data=name, seed=seed,
             variant=variant, task=task, score=score)
    blend = sum(w * (temper(records[n].bag.oof, auto.best_estimator_.members[n].temperature)
                     if classes is not None else records[n].bag.oof.astype(np.float64))
                for n, w in auto.ensemble_weights_.items())
    best_t = fit_temperature(best.bag.oof, target) if classes is not None else 1.0
    best_oof = temper(best.bag.oof, best_t) if classes is not None else best.bag.oof
    for label, n_std in GUARDS.items():  # the fit's ensemble, or its best trial
        keep = gain_within_noise(blend, np.asarray(best_oof, dtype=np.float64), target, task,
                                 auto._selection_metric(), n_std)
        extra[label] = best_score if keep else score
        extra[label + " kept best"] = keep
    for label, (n_iter, metric, n_bags, level1, *fraction) in RESELECT.items():
        if metric == "log_loss" and task == "regression":
            continue
        pool = sorted((r for r in records.values() if not level1 or r.level == 1),
                      key=lambda r: -r.score)[:MAX_SELECTION_POOL]
        temps = {r.name: fit_temperature(r.bag.oof, capture.runner.target)
                 if classes is not None else 1.0 for r in pool}
        weights = ensemble_selection(
            [temper(r.bag.oof, temps[r.name]) for r in pool], capture.runner.target, task,
            n_iter, metric=metric or auto._selection_metric(), n_bags=n_bags,
            random_state=seed, classes=classes, trial_fraction=fraction[0] if fraction else 1.0)
        chosen = {r.name: float(w) for r, w in zip(pool, weights, strict=True) if w > 0}
        members = members_of(chosen, records)
        for n in chosen:
            members[n].temperature = temps[n]
        ens = TrialEnsemble(members, chosen, classes, encoders=encoders)
        extra[label], extra[label + " ll"] = scores(task, ens, X_te, y_te, classes)
    return {"data": name, "seed": seed, "variant": variant, "score": score, "log_loss": loss,
            "best_trial": best.name, "best_score": best_score, "best_log_loss": best_loss,
            "trials": len(records), "level2": sum(v >= 2 for v in levels),
            "n_folds": len(capture.runner.folds), "fit/budget": fit_s / budget, **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated, of {SETS}, breast_cancer (all 569 rows), digits, "
                        "wordnet_tfidf and the statsmodels tables fair, anes96, star98, "
                        "grunfeld (as in bench_automl)")
    parser.add_argument("--variants", default="base,cv8,cap,cv8+cap")
    parser.add_argument("--out", default=None, help="CSV of the rows")
    parser.add_argument("--dump", default=None,
                        help="folder: per fit, a pickle of every trial's OOF and hold-out "
                             "predictions (for offline selections)")
    parser.add_argument("--best-single", action="store_true",
                        help="also the best single model by 5-fold CV, per split")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    rows = []
    for name in args.sets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            todo = args.variants.split(",")
            if args.best_single:
                rows.append(single(name, seed))
            for variant in todo:
                rows.append(run(name, seed, variant, VARIANTS[variant], args.budget,
                                args.dump))
                print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format="%.4f"),
                      flush=True)
                if args.out:
                    pd.DataFrame(rows).to_csv(args.out, index=False)
    table = pd.DataFrame(rows)
    print(table.pivot_table(index=["data", "seed"], columns="variant", values="score")
          .to_string(float_format="%.4f"))
    print(table.groupby("variant")[["score", "fit/budget"]].mean().to_string())
    print(paired(table))


def paired(table: pd.DataFrame) -> str:
    """Each variant and re-selection against the first variant and the best single model,
    paired per split: mean difference and better / tied / worse."""
    fitted = table[table["variant"] != "best single"]
    base = fitted["variant"].iloc[0]
    columns = ["score"] + [c for c in fitted.columns
                           if c.startswith(("sel:", "guard:")) and not c.endswith(
                               (" ll", " kept best"))]
    reference = {"base": fitted[fitted["variant"] == base].set_index(["data", "seed"])["score"]}
    singles = table[table["variant"] == "best single"]
    if len(singles):
        reference["best single"] = singles.set_index(["data", "seed"])["score"]
    lines = []
    for ref_name, ref in reference.items():
        for variant, rows in fitted.groupby("variant", sort=False):
            rows = rows.set_index(["data", "seed"])
            for column in columns:
                if column not in rows or rows[column].isna().all():
                    continue
                against = base if ref_name == "base" else "by 5-fold CV"
                for data, diff in (rows[column] - ref).dropna().groupby(level=0):
                    lines.append(f"{variant:>6} {column:<18} - {ref_name} ({against}), {data}: "
                                 f"mean {diff.mean():+.4f}, "
                                 f"{int((diff > 1e-12).sum())} better / "
                                 f"{int((diff.abs() <= 1e-12).sum())} tied / "
                                 f"{int((diff < -1e-12).sum())} worse of {len(diff)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
