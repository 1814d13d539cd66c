"""Means over split seeds from the logs of several ``bench_automl.py`` runs (one table).

Several runs of ``bench_automl.py`` (other ``--sets``, in parallel) print each split's rows
as they finish; this reads those rows back (the last one of each data / seed / model) and
prints per split the score of each contestant, then per data set the means, ours minus each
other contestant (better / tied / worse over the splits) and ours / best single and ours /
AutoGluon.

    python benchmarks/bench_automl_collect.py run1.log run2.log
"""

from __future__ import annotations

import re
import sys

import pandas as pd

MODELS = ("best single", "ours: ensemble", "ours: best single trial", "ours: bags kept",
          "ours: before", "AutoGluon")


def read(paths):
    rows = []
    for path in paths:  # a row: data budget seed model choice score log_loss fit_s ratio
        for line in open(path):
            t = line.split()
            if len(t) < 8 or not re.match(r"^\d+\.\d+$", t[1]) or not t[2].isdigit():
                continue
            rest = " ".join(t[3:])
            model = next((m for m in sorted(MODELS, key=len, reverse=True)
                          if rest.startswith(m + " ")), None)
            if model is None:
                continue
            choice = rest[len(model):].rsplit(" ", 4)[0].strip()
            rows.append(dict(data=t[0], seed=int(t[2]), model=model, choice=choice,
                             score=float(t[-4]), log_loss=float(t[-3]), fit_s=float(t[-2])))
    return pd.DataFrame(rows).drop_duplicates(["data", "seed", "model"], keep="last")


def counts(diff):
    return f"{(diff > 1e-12).sum()}/{(diff.abs() <= 1e-12).sum()}/{(diff < -1e-12).sum()}"


def main() -> None:
    df = read(sys.argv[1:])
    wide = df.pivot_table(index=["data", "seed"], columns="model", values="score", sort=False)
    choice = df.pivot_table(index=["data", "seed"], columns="model", values="choice",
                            aggfunc="first", sort=False)
    print(wide.to_string(float_format="%.4f"))
    print(choice[[c for c in ("best single", "ours: ensemble", "ours: bags kept")
                  if c in choice]].to_string())
    by = wide.groupby(level="data", sort=False)
    out = by.mean()
    out.insert(0, "splits", by.size())
    for other in ("best single", "AutoGluon", "ours: before", "ours: bags kept"):
        if other not in wide:
            continue
        diff = (wide["ours: ensemble"] - wide[other]).groupby(level="data", sort=False)
        out[f"- {other}"] = diff.mean()
        out[f"b/t/w {other}"] = diff.agg(counts)
        if other in ("best single", "AutoGluon"):
            out[f"ratio {other}"] = out["ours: ensemble"] / out[other]
    print(out.to_markdown(floatfmt=".4f"))


if __name__ == "__main__":
    main()
