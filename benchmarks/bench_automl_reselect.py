"""Final selections and guards over the trials of finished AutoML fits, with no new fit.

Reads the pickles ``bench_automl_levers.py --dump DIR`` writes (every finished trial's
out-of-fold and hold-out predictions) and scores each selection rule on the hold-out, paired
per fit with the fit's own ensemble and, given the levers run's CSV, with the best single
model chosen by 5-fold CV on the same split.

    python benchmarks/bench_automl_levers.py --budget 60 --sets breast_cancer,diabetes \\
        --seeds 0,1,2,3,4 --variants base,rep3 --best-single --dump /tmp/dump --out lev.csv
    python benchmarks/bench_automl_reselect.py /tmp/dump --csv lev.csv
"""

from __future__ import annotations

import argparse
import glob
import pickle

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, r2_score

from moensemble.search.final import MAX_SELECTION_POOL
from moensemble.search.selection import (
    ensemble_selection,
    fit_temperature,
    gain_within_noise,
    temper,
)

#: name -> (picks, bags, trial_fraction, guard reference, guard standard errors)
#: guard reference None: no guard; 'best': the best trial of any level; 'level1': the best
#: level-1 trial (a level-2 trial's out-of-fold score is optimistic).
RULES = {
    "default": (25, 20, 1.0, None, 0.0),
    "1 bag": (25, 1, 1.0, None, 0.0),
    "10 picks": (10, 20, 1.0, None, 0.0),
    "trial bags": (25, 20, 0.5, None, 0.0),
    "guard best 1se": (25, 20, 1.0, "best", 1.0),
    "guard L1 0": (25, 20, 1.0, "level1", 0.0),
    "guard L1 1se": (25, 20, 1.0, "level1", 1.0),
    "guard L1 2se": (25, 20, 1.0, "level1", 2.0),
    "trial bags + guard L1 1se": (25, 20, 0.5, "level1", 1.0),
}


def hold_out(fit, pred):
    if fit["task"] == "regression":
        return r2_score(fit["y_test"], pred[:, 0] if pred.shape[1] == 1 else pred)
    return accuracy_score(fit["y_test"], fit["classes"][pred.argmax(axis=1)])


def select(fit, picks, bags, fraction, reference, n_std):
    """Hold-out score of one rule, and whether its guard kept the single trial."""
    classification = fit["task"] == "classification"
    metric = "accuracy" if classification else "r2"
    target = fit["target"]
    pool = sorted(fit["trials"], key=lambda t: -t["score"])[:MAX_SELECTION_POOL]
    temps = [fit_temperature(t["oof"], target) if classification else 1.0 for t in pool]
    oof = [temper(t["oof"], T) if classification else t["oof"].astype(np.float64)
           for t, T in zip(pool, temps, strict=True)]
    test = [temper(t["test"], T) if classification else t["test"]
            for t, T in zip(pool, temps, strict=True)]
    weights = ensemble_selection(oof, target, fit["task"], picks, metric=metric, n_bags=bags,
                                 random_state=fit["seed"], trial_fraction=fraction)
    blend_oof = np.tensordot(weights, np.stack(oof), axes=1)
    blend_test = np.tensordot(weights, np.stack(test), axes=1)
    if reference is None:
        return hold_out(fit, blend_test), False
    candidates = [i for i, t in enumerate(pool) if reference == "best" or t["level"] == 1]
    i = candidates[0]  # the pool is sorted by out-of-fold score
    keep = gain_within_noise(blend_oof, np.asarray(oof[i], dtype=np.float64), target,
                             fit["task"], metric, n_std)
    return hold_out(fit, test[i] if keep else blend_test), keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the levers run's --dump folder")
    parser.add_argument("--csv", default=None, help="the levers run's --out (best single)")
    parser.add_argument("--out", default=None, help="CSV of the table")
    args = parser.parse_args()
    rows = []
    for path in sorted(glob.glob(f"{args.folder}/*.pkl")):
        with open(path, "rb") as f:
            fit = pickle.load(f)
        row = {"data": fit["data"], "seed": fit["seed"], "variant": fit["variant"],
               "fit": fit["score"], "trials": len(fit["trials"])}
        for label, rule in RULES.items():
            row[label], kept = select(fit, *rule)
            if rule[3] is not None:
                row[label + " kept"] = kept
        rows.append(row)
    table = pd.DataFrame(rows)
    if args.csv:
        lev = pd.read_csv(args.csv) if "," not in args.csv else pd.concat(
            [pd.read_csv(p) for p in args.csv.split(",")])
        singles = lev[lev["variant"] == "best single"].set_index(["data", "seed"])["score"]
        table = table.join(singles.rename("best single"), on=["data", "seed"])
    print(table.to_string(index=False, float_format="%.4f"))
    if args.out:
        table.to_csv(args.out, index=False)
    base = table[table["variant"] == table["variant"].iloc[0]].set_index(["data", "seed"])
    print()
    for (variant, data), part in table.groupby(["variant", "data"], sort=False):
        part = part.set_index(["data", "seed"])
        for label in ["fit", *RULES]:
            parts = [f"{variant:>5} {data:<14} {label:<26}"]
            refs = [("base default", base["default"])]
            if "best single" in part:
                refs.append(("best single", part["best single"]))
            for ref_name, ref in refs:
                diff = (part[label] - ref.reindex(part.index)).dropna()
                parts.append(f"- {ref_name}: {diff.mean():+.4f} "
                             f"({int((diff > 1e-12).sum())}/{int((diff.abs() <= 1e-12).sum())}/"
                             f"{int((diff < -1e-12).sum())})")
            print("  ".join(parts))
    print("\n(better / tied / worse over the splits)")


if __name__ == "__main__":
    main()
