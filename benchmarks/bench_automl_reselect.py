"""Final selections and guards over the trials of finished AutoML fits, with no new fit.

Reads the pickles ``bench_automl_levers.py --dump DIR`` writes (every finished trial's
out-of-fold and hold-out predictions, the outer folds and the split) and scores each
selection rule on the hold-out, paired per fit with the fit's own ensemble and, given the
levers run's CSV, with the best single model chosen by 5-fold CV on the same split.

    python benchmarks/bench_automl_levers.py --budget 60 --sets breast_cancer,diabetes \\
        --seeds 0,1,2,3,4 --variants auto --best-single --dump /tmp/dump --out lev.csv
    python benchmarks/bench_automl_reselect.py /tmp/dump --csv lev.csv

Rules (every one starts from the pool the AutoML selects over: the 50 best trials by
out-of-fold score, tempered in classification):

* ``no guard``: 25 picks, 20 bags on halves of the rows, the blend always;
* ``guard 2se``: the default (``blend_guard=2``): the best level-1 trial alone unless the
  blend's out-of-fold gain over it exceeds 2 standard errors (paired, per row);
* ``1se simple``: the reference single trial is the *simplest* level-1 trial (portfolio
  order, then search order) whose out-of-fold loss is within 1 standard error (paired,
  per row) of the best level-1 trial's (Breiman et al.'s one-standard-error rule); the
  blend is kept only if it beats the best level-1 trial by 2 standard errors;
* ``1se pure``: the one-standard-error rule over the level-1 trials and the blend, the
  blend counted as the most complex candidate;
* ``1se unpaired``: as ``1se simple``, the standard error glmnet's ``lambda.1se`` uses
  (of the best trial's own mean per-row loss, not of the paired difference);
* ``oob guard``: the blend's gain is measured out of bag: each of the 20 bags selects on
  half of the rows and its gain over the reference is read on the other half, so the
  selection does not grade itself;
* ``prune N%``: greedy selection only among the best N % of the pool (Caruana et al. 2004,
  library pruning; at least 3 trials), then the default guard;
* ``nnls``: regression: non-negative least squares on the out-of-fold predictions
  (Breiman 1996, "Stacked regressions"), normalised to sum to one, then the default guard;
* ``default 50 best``: the library's default before the seventh pass (out-of-bag guard,
  ``single_choice='auto'``) over the 50 best trials; ``default level-1 kept``: the same
  over the pool that always holds the best level-1 trial (the library's since then; with
  only level-2 trials among the 50 best the guard had no reference and the blend went
  unguarded);
* ``+extra``: regression: the pool also holds the portfolio's ``kernel_ridge`` (ridge on
  RBF kernel features) where the fit lacked it, fitted here on the fit's own outer folds;
  ``-kernel_ridge``: a fit that had it, without it.
"""

from __future__ import annotations

import argparse
import glob
import pickle

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state

from moensemble.search.final import AUTO_GUARD_ROWS, MAX_SELECTION_POOL
from moensemble.search.selection import (
    ensemble_selection,
    fit_temperature,
    gain_in_standard_errors,
    out_of_bag_gain,
    simplest_within_one_se,
    temper,
)


def extra_models(seed) -> dict:
    """Regression entries the fit's portfolio may lack (lever 3 of the sixth pass)."""
    from moensemble.search.portfolio import model_factory

    return {"kernel_ridge": model_factory("kernel_ridge")("regression", sparse=False,
                                                           random_state=seed, n_jobs=1)}


def candidate_models(seed) -> dict:
    """Single regression models measured for lever 3 (``--singles``): linear variants,
    kernels and splines next to the portfolio's ridge and kernel_ridge."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.linear_model import BayesianRidge, ElasticNetCV, LassoCV, RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer, StandardScaler
    from sklearn.svm import SVR

    from moensemble.search.portfolio import RBFFeatures, model_factory

    def scaled(*steps):
        return make_pipeline(StandardScaler(), *steps)

    def y_scaled(est):
        return TransformedTargetRegressor(est, transformer=StandardScaler())

    ridge = model_factory("linear")("regression", sparse=False, random_state=seed, n_jobs=1)
    out = {"ridge (linear entry)": ridge,
           "ridge, 61 alphas": scaled(RidgeCV(alphas=np.logspace(-3, 3, 61))),
           "lasso_cv": scaled(LassoCV(cv=5, random_state=0)),
           "elastic_net_cv": scaled(ElasticNetCV(l1_ratio=[0.1, 0.5, 0.9, 1.0], cv=5,
                                                 random_state=0)),
           "bayesian_ridge": scaled(BayesianRidge()),
           "svr rbf": scaled(y_scaled(SVR(C=1.0, epsilon=0.1))),
           "kernel ridge exact": scaled(y_scaled(KernelRidge(alpha=1.0, kernel="rbf",
                                                             gamma=0.02))),
           "splines + ridge": scaled(SplineTransformer(n_knots=4),
                                     RidgeCV(alphas=np.logspace(-3, 3, 13)))}
    for g in (0.1, 0.2, 0.5, 1.0):
        out[f"RBF features {g}/d + ridge"] = scaled(
            RBFFeatures(g, random_state=seed), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    return out


def singles(paths) -> None:
    """Out-of-fold R² (the fit's folds, bag of fold models) and hold-out R² of each
    ``candidate_models`` entry, and of ridge refit on all rows (the best-single baseline)."""
    rows = []
    for path in paths:
        with open(path, "rb") as f:
            fit = pickle.load(f)
        if fit["task"] != "regression" or fit.get("folds") is None:
            continue
        X, y, X_te = fit["X_train"], np.asarray(fit["y_train"], dtype=float), fit["X_test"]
        for name, est in candidate_models(fit["seed"]).items():
            oof, test = np.zeros(len(y)), np.zeros(len(X_te))
            for train, held in fit["folds"]:
                model = clone(est).fit(X[train], y[train])
                oof[held] = model.predict(X[held])
                test += model.predict(X_te) / len(fit["folds"])
            rows.append({"data": fit["data"], "seed": fit["seed"], "model": name,
                         "oof": r2_score(y, oof), "hold-out (bag)": r2_score(fit["y_test"],
                                                                             test),
                         "hold-out (refit)": r2_score(fit["y_test"],
                                                      clone(est).fit(X, y).predict(X_te))})
    table = pd.DataFrame(rows)
    print(table.pivot_table(index="model", columns="seed", values="hold-out (bag)")
          .to_string(float_format="%.4f"))
    print(table.groupby("model", sort=False)[["oof", "hold-out (bag)", "hold-out (refit)"]]
          .mean().to_string(float_format="%.4f"))


def refits(paths) -> None:
    """Each best-single candidate trial of the fits (bench_automl's ``single_members``):
    its bag of fold models against the same configuration refit on the whole training
    part, on the hold-out (``kept``: the fit's final model was that trial alone)."""
    from bench_automl import single_members  # this folder is on sys.path as a script

    rows = []
    for path in paths:
        with open(path, "rb") as f:
            fit = pickle.load(f)
        if fit.get("X_train") is None or fit["data"] == "wordnet_tfidf":
            continue
        trials = {t["name"]: t for t in fit["trials"]}
        members = single_members(fit["task"], False, fit["seed"],
                                 isinstance(fit["X_train"], pd.DataFrame))
        for name, est in members:
            if name not in trials:
                continue
            model = clone(est).fit(fit["X_train"], fit["y_train"])
            refit = model.predict_proba(fit["X_test"]) if fit["task"] == "classification" \
                else model.predict(fit["X_test"]).reshape(-1, 1)
            rows.append({"data": fit["data"], "seed": fit["seed"], "trial": name,
                         "kept": list(fit["weights"]) == [name],
                         "bag": hold_out(fit, np.asarray(trials[name]["test"], np.float64)),
                         "refit": hold_out(fit, np.asarray(refit, np.float64))})
    table = pd.DataFrame(rows)
    table["refit - bag"] = table["refit"] - table["bag"]
    print(table.to_string(index=False, float_format="%.4f"))
    print(table.groupby(["data", "trial"])["refit - bag"].agg(["mean", "min", "max", "count"])
          .to_string(float_format="%.4f"))


def extra_trials(fit) -> list[dict]:
    """The ``extra_models`` as trials of this fit: fitted on its outer folds, a bag each."""
    X, y, X_te = fit["X_train"], np.asarray(fit["y_train"], dtype=float), fit["X_test"]
    out = []
    have = {t["name"] for t in fit["trials"]}
    for i, (name, est) in enumerate(extra_models(fit["seed"]).items()):
        if name in have:
            continue
        oof, test, scores = np.zeros((len(y), 1)), np.zeros((len(X_te), 1)), []
        for train, held in fit["folds"]:
            model = clone(est).fit(X[train], y[train])
            oof[held, 0] = model.predict(X[held])
            test[:, 0] += model.predict(X_te) / len(fit["folds"])
            scores.append(r2_score(y[held], oof[held, 0]))
        out.append({"name": name, "family": name, "level": 1, "score": float(np.mean(scores)),
                    "number": 0.5 + 0.01 * i, "phase": "portfolio",  # after linear
                    "oof": oof, "test": test})
    return out


def hold_out(fit, pred):
    if fit["task"] == "regression":
        return r2_score(fit["y_test"], pred[:, 0] if pred.shape[1] == 1 else pred)
    return accuracy_score(fit["y_test"], fit["classes"][pred.argmax(axis=1)])


def prepare(fit, extra=False):
    """The pool the AutoML selects over: the 50 best trials, tempered (classification)."""
    classification = fit["task"] == "classification"
    target = fit["target"]
    trials = list(fit["trials"])
    if extra == "drop":  # a fit with kernel_ridge, as if the portfolio lacked it
        trials = [t for t in trials if t["name"] not in extra_models(fit["seed"])]
    elif extra and extra != "level1":
        trials += extra_trials(fit)
    ranked = sorted(trials, key=lambda t: -t["score"])
    pool = ranked[:MAX_SELECTION_POOL]
    if extra == "level1" and not any(t["level"] == 1 for t in pool):
        # the library's pool since the seventh pass: the best level-1 trial after the 50
        pool += [t for t in ranked[MAX_SELECTION_POOL:] if t["level"] == 1][:1]
    temps = [fit_temperature(t["oof"], target) if classification else 1.0 for t in pool]
    oof = [temper(t["oof"], T) if classification else t["oof"].astype(np.float64)
           for t, T in zip(pool, temps, strict=True)]
    test = [temper(t["test"], T) if classification else np.asarray(t["test"], np.float64)
            for t, T in zip(pool, temps, strict=True)]
    return {"pool": pool, "oof": [np.asarray(o, dtype=np.float64) for o in oof],
            "test": test, "metric": "accuracy" if classification else "r2"}


def bagged_selection(fit, P, members, picks=25, bags=20):
    """The default's bagged selection over ``members`` (indices of the pool), bag by bag
    (the same rows as ``ensemble_selection(n_bags=20)``); weights over the whole pool and,
    per bag, its weights and the rows it selected on."""
    target, n = fit["target"], len(fit["target"])
    rng = check_random_state(fit["seed"])
    size = max(1, int(round(0.5 * n)))
    weights, per_bag = np.zeros(len(P["oof"])), []
    for _ in range(bags):
        rows = np.sort(rng.choice(n, size, replace=False))
        w = np.zeros(len(P["oof"]))
        w[members] = ensemble_selection([P["oof"][i][rows] for i in members], target[rows],
                                        fit["task"], picks, metric=P["metric"])
        weights += w
        per_bag.append((w, rows))
    return weights / bags, per_bag


def nnls_weights(fit, P, members):
    from scipy.optimize import nnls

    A = np.column_stack([P["oof"][i][:, 0] for i in members])
    coef, _ = nnls(A, np.asarray(fit["target"], dtype=float).reshape(-1))
    w = np.zeros(len(P["oof"]))
    if coef.sum() > 0:
        w[members] = coef / coef.sum()
    else:
        w[members[0]] = 1.0
    return w


def se_gain(fit, P, a, b):
    """``a``'s out-of-fold gain over ``b`` (predictions) in standard errors."""
    return gain_in_standard_errors(a, b, fit["target"], fit["task"], P["metric"])


def oob_gain(fit, P, per_bag, reference):
    """The bags' gain over ``reference`` on the rows each bag did not select on (the
    library's ``out_of_bag_gain``, as ``guard_estimate='out_of_bag'`` reads it)."""
    return out_of_bag_gain(P["oof"], fit["target"], fit["task"], per_bag, reference,
                           P["metric"])


def simplest_within(fit, P, candidates, n_std):
    """Of ``candidates`` (pool indices), the first by trial order whose out-of-fold loss is
    within ``n_std`` standard errors of the best one's (the first of ``candidates`` by score)."""
    best = candidates[0]
    for i in sorted(candidates, key=lambda i: P["pool"][i]["number"]):
        if i == best or se_gain(fit, P, P["oof"][i], P["oof"][best]) >= -n_std:
            return i
    return best


def simplest_unpaired(fit, P, candidates, n_std):
    """glmnet's ``lambda.1se`` (``single_choice='one_se'``): the first by trial order whose
    out-of-fold loss is at most the best one's plus one standard error of the best one's
    mean per-row loss."""
    assert n_std == 1.0
    first = simplest_within_one_se([P["oof"][i] for i in candidates],
                                   [P["pool"][i]["number"] for i in candidates],
                                   fit["target"], fit["task"], P["metric"])
    return candidates[first]


def _row_losses(fit, pred):
    target = fit["target"]
    if fit["task"] == "classification":
        return (pred.argmax(axis=1) != target).astype(float)
    return ((pred - target.reshape(len(pred), -1)) ** 2).sum(axis=1)


def rule(fit, P, *, guard=2.0, reference="best", oob=False, prune=None, nnls=False,
         pure=None):
    """Hold-out score of one rule and what it kept ('blend' or a trial's name)."""
    pool = P["pool"]
    members = list(range(len(pool)))
    if prune is not None:
        members = members[:max(3, int(np.ceil(prune * len(pool))))]
    if nnls:
        weights, per_bag = nnls_weights(fit, P, members), None
    else:
        weights, per_bag = bagged_selection(fit, P, members)
    blend_oof = np.tensordot(weights, np.stack(P["oof"]), axes=1)
    blend_test = np.tensordot(weights, np.stack(P["test"]), axes=1)
    level1 = [i for i, t in enumerate(pool) if t["level"] == 1]
    if len(fit["target"]) >= AUTO_GUARD_ROWS:  # every guard here is blend_guard='auto''s
        guard = pure = None
    if (guard is None and pure is None) or not level1:
        return hold_out(fit, blend_test), "blend"
    best = level1[0]
    if pure is not None:  # one-standard-error rule, the blend the most complex candidate
        ranked = sorted(level1, key=lambda i: pool[i]["number"])
        top = max([*level1], key=lambda i: -_loss(fit, P, P["oof"][i]))
        top_pred = P["oof"][top]
        if _loss(fit, P, blend_oof) < _loss(fit, P, top_pred):
            top_pred = blend_oof
        for i in ranked:
            if i == top or se_gain(fit, P, P["oof"][i], top_pred) >= -pure:
                return hold_out(fit, P["test"][i]), pool[i]["name"]
        return hold_out(fit, blend_test), "blend"
    if reference == "auto":  # single_choice='auto'
        reference = "1se unpaired" if fit["task"] == "classification" else "best"
    single = simplest_within(fit, P, level1, 1.0) if reference == "1se" else \
        simplest_unpaired(fit, P, level1, 1.0) if reference == "1se unpaired" else best
    gain = oob_gain(fit, P, per_bag, P["oof"][best]) if oob and per_bag is not None else \
        se_gain(fit, P, blend_oof, P["oof"][best])
    if gain > guard:
        return hold_out(fit, blend_test), "blend"
    return hold_out(fit, P["test"][single]), pool[single]["name"]


def _loss(fit, P, pred):
    """Out-of-fold loss under the selection metric (minus accuracy; squared error)."""
    target = fit["target"]
    if fit["task"] == "classification":
        return -float(np.mean(pred.argmax(axis=1) == target))
    return float(np.mean((pred - target.reshape(len(pred), -1)) ** 2))


#: label -> (rule keywords, extra regression models in the pool)
RULES = {
    "no guard": ({"guard": None}, False),
    "guard 2se (default)": ({}, False),
    "guard 1se": ({"guard": 1.0}, False),
    "1se simple": ({"reference": "1se"}, False),
    "1se pure": ({"pure": 1.0}, False),
    "1se unpaired": ({"reference": "1se unpaired"}, False),
    "oob guard 2se": ({"oob": True}, False),
    "oob guard 1se": ({"oob": True, "guard": 1.0}, False),
    "1se simple + oob 2se": ({"reference": "1se", "oob": True}, False),
    "prune 20%": ({"prune": 0.2}, False),
    "prune 50%": ({"prune": 0.5}, False),
    "prune 20% no guard": ({"prune": 0.2, "guard": None}, False),
    "nnls": ({"nnls": True}, False),
    "nnls no guard": ({"nnls": True, "guard": None}, False),
    "+extra": ({}, True),
    "+extra 1se simple": ({"reference": "1se"}, True),
    "+extra no guard": ({"guard": None}, True),
    "+extra oob guard 2se": ({"oob": True}, True),
    "+extra 1se unpaired": ({"reference": "1se unpaired"}, True),
    # the library's default (out of bag, single_choice='auto') over the 50-trial pool, and
    # over the pool that always holds the best level-1 trial (the seventh pass)
    "default 50 best": ({"oob": True, "reference": "auto"}, False),
    "default level-1 kept": ({"oob": True, "reference": "auto"}, "level1"),
    "-kernel_ridge": ({}, "drop"),
    "-kernel_ridge oob guard 2se": ({"oob": True}, "drop"),
}
REGRESSION_ONLY = {"nnls", "nnls no guard", "+extra", "+extra 1se simple", "+extra no guard",
                   "+extra oob guard 2se", "+extra 1se unpaired", "-kernel_ridge",
                   "-kernel_ridge oob guard 2se"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the levers run's --dump folder")
    parser.add_argument("--csv", default=None, help="the levers run's --out (best single)")
    parser.add_argument("--out", default=None, help="CSV of the table")
    parser.add_argument("--rules", default=",".join(RULES), help="comma-separated labels")
    parser.add_argument("--singles", action="store_true",
                        help="only the single regression models of lever 3, on the dumps' "
                             "folds and splits")
    parser.add_argument("--refits", action="store_true",
                        help="only each best-single candidate trial's bag against its refit "
                             "on the whole training part, on the dumps' hold-outs")
    args = parser.parse_args()
    if args.refits:
        refits(sorted(glob.glob(f"{args.folder}/*.pkl")))
        return
    if args.singles:
        singles(sorted(glob.glob(f"{args.folder}/*.pkl")))
        return
    labels = args.rules.split(",")
    rows = []
    for path in sorted(glob.glob(f"{args.folder}/*.pkl")):
        with open(path, "rb") as f:
            fit = pickle.load(f)
        row = {"data": fit["data"], "seed": fit["seed"], "variant": fit["variant"],
               "fit": fit["score"], "trials": len(fit["trials"])}
        prepared = {}
        for label in labels:
            kwargs, extra = RULES[label]
            if label in REGRESSION_ONLY and fit["task"] != "regression":
                continue
            if extra and extra != "level1" and fit.get("folds") is None:
                continue
            if extra not in prepared:
                prepared[extra] = prepare(fit, extra)
            row[label], row[label + " kept"] = rule(fit, prepared[extra], **kwargs)
        linear = [t for t in fit["trials"] if t["name"] == "linear"]
        if linear:
            row["linear trial"] = hold_out(fit, np.asarray(linear[0]["test"], np.float64))
        rows.append(row)
        print(f"{fit['data']} {fit['seed']}: " + ", ".join(
            f"{k} {row[k]:.4f}" for k in labels if k in row), flush=True)
    table = pd.DataFrame(rows)
    if args.csv:
        lev = pd.concat([pd.read_csv(p) for p in args.csv.split(",")])
        chosen = lev[lev["variant"] == "best single"].set_index(["data", "seed"])
        table = table.join(chosen["score"].rename("best single"), on=["data", "seed"])
        table = table.join(chosen["best_trial"].rename("single choice"), on=["data", "seed"])
    print(table.to_string(index=False, float_format="%.4f"))
    if args.out:
        table.to_csv(args.out, index=False)
    print("\nagainst the first rule and the best single model, paired per split: mean "
          "(better / tied / worse)")
    for data, part in table.groupby("data", sort=False):
        for label in ["fit", *labels]:
            if label not in part or part[label].isna().all():
                continue
            parts = [f"{data:<14} {label:<22}"]
            first = "guard 2se (default)" if "guard 2se (default)" in part else labels[0]
            refs = [(first, part[first])]
            if "best single" in part:
                refs.append(("best single", part["best single"]))
            for ref_name, ref in refs:
                diff = (part[label] - ref).dropna()
                parts.append(f"- {ref_name}: {diff.mean():+.4f} "
                             f"({int((diff > 1e-12).sum())}/{int((diff.abs() <= 1e-12).sum())}/"
                             f"{int((diff < -1e-12).sum())})")
            print("  ".join(parts))


if __name__ == "__main__":
    main()
