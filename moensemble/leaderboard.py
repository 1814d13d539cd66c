"""Leaderboard: evaluate several estimators on the same folds and rank them.

:func:`compare` fits every model on the same outer folds and reports the mean and standard
deviation of each metric, fit and predict times, and, for mixture-of-experts models, the
parameters used per row and how evenly the experts are loaded. Every ensemble (any estimator
with a ``memory`` parameter, pipelines included) gets one shared :class:`joblib.Memory`, so that
within a fold the weighted and the stacked ensembles over the same bases fit each base once.
Each (model, fold) is fitted by the fold engine the search uses too,
:func:`moensemble.folds.evaluate_folds`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from numbers import Real
from time import perf_counter, process_time
from typing import Any

import numpy as np
import pandas as pd
from joblib import Memory
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    get_scorer,
    log_loss,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_consistent_length, check_memory

from moensemble._compare_jobs import SharedFitModel, run_parallel, share_all
from moensemble._default_models import FULL_COST_ROWS, default_models, scaled_settings
from moensemble._validation import check_estimators
from moensemble.folds import (
    align_proba,
    evaluate_folds,
    final_step,
    max_violation,
    predict_aligned,
)

__all__ = ["compare", "default_models", "scaled_settings", "make_folds", "max_violation",
           "METRICS", "FULL_COST_ROWS"]

#: Metrics reported for each task, and whether higher is better. The first one ranks.
METRICS: dict[str, dict[str, bool]] = {
    "classification": {"accuracy": True, "f1_macro": True, "log_loss": False},
    "regression": {"rmse": False, "r2": True},
}

_ScorerLike = Callable[[Any, Any, Any], float]


# ---- public ----------------------------------------------------------------------------------


def compare(
    models: Mapping[str, BaseEstimator] | Iterable | None,
    X,
    y,
    *,
    cv=5,
    scoring: str | _ScorerLike | list | dict | None = None,
    n_jobs: int | None = None,
    memory: str | Memory | None = None,
    random_state: int | None = 0,
    progress: bool = True,
    error_score: str | float = np.nan,
    return_folds: bool = False,
    return_estimators: bool | Sequence[str] = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate estimators on the same cross-validation folds and return a leaderboard.

    Parameters
    ----------
    models : dict of str to estimator, list of (str, estimator) tuples, list of estimators \
            or None
        The models to compare. ``None`` uses :func:`default_models` for the task that ``y``
        implies (good single members, a weighted and a stacked ensemble over them, and a
        mixture of experts). Unnamed estimators are named after their class.
    X : {array-like, sparse matrix, DataFrame, list of str} of shape (n_samples, ...)
        Input, passed to the models as given (so raw texts work with a text pipeline).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Target. Classification when every model is a classifier (or, with ``models=None``,
        when ``y`` is not continuous).
    cv : int, cross-validation generator or iterable, default=5
        Outer folds, resolved once and used for every model. An int gives a shuffled
        :class:`~sklearn.model_selection.StratifiedKFold` (classification) or
        :class:`~sklearn.model_selection.KFold` (regression) seeded with ``random_state``.
    scoring : str, callable, list or dict, default=None
        Extra scikit-learn scorers (greater is better) reported next to the built-in metrics;
        the first one then ranks the leaderboard. Built-in: accuracy, macro-F1 and log-loss
        (log-loss needs ``predict_proba``) for classifiers; RMSE and R² for regressors.
    n_jobs : int, default=None
        Workers (joblib). One: fold by fold, the models in order, so that later models find
        the fits of earlier ones in the cache. More: each fold is cut into jobs that never
        need the same fit at once (one per member: the single model, then the member's
        inner fits; then each ensemble on its own), networks first, so that every worker
        stays busy to the end (:mod:`moensemble._compare_jobs`); the same fits and scores.
    memory : str, joblib.Memory or None, default=None
        Cache shared by every model that has a ``memory`` parameter left at ``None`` (also
        nested ones, such as a pipeline's). ``None`` uses a temporary folder removed at the end.
    random_state : int or None, default=0
        Seed of the outer folds when ``cv`` is an int, and of the default models.
    progress : bool, default=True
        Show a progress bar (tqdm, on stderr) over (model, fold).
    error_score : 'raise' or float, default=np.nan
        Score recorded when a model fails on a fold (with a warning); ``'raise'`` re-raises.
    return_folds : bool, default=False
        Also return the per-fold table.
    return_estimators : bool or list of str, default=False
        Keep each fitted model in an ``estimator`` column of the per-fold table (with
        ``return_folds=True``), for example to plot an MoE's routing on its test fold; a
        list of model names keeps only theirs (the others' cells are empty). Fitted forests
        and ensembles are large: on 20,000 glosses all of the default board's held 14 GB.

    Returns
    -------
    leaderboard : DataFrame
        One row per model (index ``model``), best first: ``<metric>_mean`` and ``<metric>_std``
        for each metric, ``fit_time_s`` (mean per fold), ``predict_time_per_1k_s`` (seconds to
        predict 1000 rows), ``active_params_per_row`` and ``expert_load_max_violation``
        (``(max load - mean load) / mean load``; both NaN for models without experts). The
        per-fold table is also in ``leaderboard.attrs["fold_scores"]`` (a list of
        records: ``pd.DataFrame(leaderboard.attrs["fold_scores"])``); ``attrs["task"]``,
        ``attrs["metric"]`` and ``attrs["higher_is_better"]`` name the ranking metric.
    fold_scores : DataFrame
        Only with ``return_folds=True``: one row per (model, fold), with its scores,
        ``fit_time_s`` and ``cpu_time_s`` (CPU seconds of the process that fitted, predicted
        and scored it: on a shared machine, what the model cost).

    Notes
    -----
    Fit times include cache hits: an ensemble that finds its bases' fold fits in the shared
    cache (fitted earlier in the same fold by another ensemble) is charged only the work left.
    A single model is fitted through that cache too, so that an ensemble's refit of the same
    member on the same rows reads it back (the same fitted model as a fresh fit).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from moensemble import compare
    >>> X, y = load_iris(return_X_y=True)
    >>> board = compare({"logreg": LogisticRegression(max_iter=500),
    ...                  "tree": DecisionTreeClassifier(random_state=0)},
    ...                 X, y, cv=3, progress=False)
    >>> list(board.index)
    ['logreg', 'tree']
    >>> bool(board.loc["logreg", "accuracy_mean"] > 0.9)
    True
    """
    check_consistent_length(X, y)
    task = _infer_task(models, y)
    if models is None:
        models = default_models(task, random_state=random_state)
    pairs = _as_pairs(models, task)
    keep = _kept_names(return_estimators, [name for name, _ in pairs])
    if task == "classification" and np.unique(np.asarray(y)).size < 2:
        raise ValueError("compare() needs at least two classes in `y`; found one.")
    scorers = _check_scoring(scoring)
    folds = make_folds(cv, X, y, task=task, random_state=random_state)
    classes = np.unique(np.asarray(y)) if task == "classification" else None

    owned = memory is None
    location = tempfile.mkdtemp(prefix="moensemble-cache-") if owned else None
    try:
        cache = check_memory(Memory(location, verbose=0) if owned else memory)
        pairs = share_all(pairs, cache)
        rows = _run(pairs, X, y, folds, classes, task, scorers, error_score, n_jobs, progress,
                    keep, cache)
    finally:
        if owned:
            shutil.rmtree(location, ignore_errors=True)

    folds_df = pd.DataFrame(rows)
    board = _summarise(folds_df, [name for name, _ in pairs], task, scorers)
    # Records, not a DataFrame: pandas compares attrs when combining frames.
    board.attrs["fold_scores"] = folds_df.drop(columns="estimator", errors="ignore").to_dict(
        "records")
    return (board, folds_df) if return_folds else board


# ---- input -----------------------------------------------------------------------------------


def _infer_task(models, y) -> str:
    if models is not None:
        ests = list(models.values()) if isinstance(models, Mapping) else [
            m[1] if isinstance(m, tuple | list) and len(m) == 2 else m for m in models
        ]
        if ests and all(is_classifier(e) for e in ests):
            return "classification"
        if ests and all(is_regressor(e) for e in ests):
            return "regression"
        if ests:
            raise ValueError(
                "`models` must be all classifiers or all regressors; got a mix: "
                f"{[type(e).__name__ for e in ests]}."
            )
    kind = type_of_target(y, input_name="y")
    return "regression" if kind.startswith("continuous") else "classification"


def _as_pairs(models, task: str) -> list[tuple[str, BaseEstimator]]:
    if isinstance(models, Mapping):
        models = list(models.items())
    elif isinstance(models, BaseEstimator):
        models = [models]
    else:
        models = list(models)
    if models and not all(isinstance(m, tuple | list) for m in models):
        named, seen = [], {}
        for est in models:
            base = type(est).__name__
            seen[base] = seen.get(base, 0) + 1
            named.append((base if seen[base] == 1 else f"{base}_{seen[base]}", est))
        models = named
    kind = "classifier" if task == "classification" else "regressor"
    return check_estimators([tuple(m) for m in models], param="models", kind=kind)


def _check_scoring(scoring) -> dict[str, _ScorerLike]:
    if scoring is None:
        return {}
    if isinstance(scoring, str) or callable(scoring):
        scoring = [scoring]
    if isinstance(scoring, Mapping):
        items = list(scoring.items())
    else:
        items = [(s if isinstance(s, str) else getattr(s, "__name__", f"score_{i}"), s)
                 for i, s in enumerate(scoring)]
    scorers = {}
    for name, s in items:
        scorers[name] = get_scorer(s) if isinstance(s, str) else s
        if not callable(scorers[name]):
            raise ValueError(f"`scoring` entry {name!r} is not a scorer name or callable: {s!r}.")
    return scorers


def make_folds(cv, X, y, *, task: str = "classification",
               random_state: int | None = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The outer folds :func:`compare` uses, as a list of ``(train, test)`` index arrays.

    Pass the list back as ``cv`` to run :func:`compare` (or anything else) on the same folds.

    Parameters
    ----------
    cv : int, cross-validation generator or iterable
        An int gives a shuffled ``StratifiedKFold`` (classification) or ``KFold``.
    X : array-like of shape (n_samples, ...)
    y : array-like of shape (n_samples,)
    task : {'classification', 'regression'}, default='classification'
    random_state : int or None, default=0
    """
    classifier = task == "classification"
    if isinstance(cv, int) and not isinstance(cv, bool):
        if cv < 2:
            raise ValueError(f"`cv` must be at least 2 folds; got {cv}.")
        kind = StratifiedKFold if classifier else KFold
        splitter = kind(cv, shuffle=True, random_state=random_state)
    else:
        splitter = check_cv(cv, y, classifier=classifier)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y)]


# ---- evaluation ------------------------------------------------------------------------------


def _run(pairs, X, y, folds, classes, task, scorers, error_score, n_jobs, progress,
         keep, cache=None) -> list[dict]:
    from tqdm.auto import tqdm

    total = len(pairs) * len(folds)
    bar = tqdm(total=total, desc="compare", unit="fit", disable=not progress, leave=False)
    rows: list[dict] = []
    try:
        if n_jobs in (None, 1):
            for i, (train, test) in enumerate(folds):
                for name, est in pairs:
                    bar.set_postfix_str(f"{name} fold {i + 1}/{len(folds)}")
                    rows.append(_evaluate(name, est, X, y, i, train, test, classes, task,
                                          scorers, error_score, name in keep))
                    bar.update()
        elif getattr(cache, "location", None) is not None:
            evaluate = partial(_evaluate_kept, classes=classes, task=task, scorers=scorers,
                               error_score=error_score, keep=keep)
            rows = run_parallel(pairs, X, y, folds, evaluate, n_jobs, bar.update)
        else:
            # No cache to share fits through: whole folds per job, the models in order.
            jobs = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
                delayed(_evaluate_fold)(pairs, X, y, i, train, test, classes, task, scorers,
                                        error_score, keep)
                for i, (train, test) in enumerate(folds)
            )
            for fold_rows in jobs:
                rows.extend(fold_rows)
                bar.update(len(fold_rows))
    finally:
        bar.close()
    return rows


def _kept_names(return_estimators, names: list[str]) -> set[str]:
    """The models whose fitted estimators ``return_estimators`` keeps."""
    if isinstance(return_estimators, bool | np.bool_):
        return set(names) if return_estimators else set()
    if isinstance(return_estimators, str) or not isinstance(return_estimators, Sequence):
        raise ValueError("`return_estimators` must be a bool or a list of model names; got "
                         f"{return_estimators!r}.")
    unknown = sorted(set(map(str, return_estimators)) - set(names))
    if unknown:
        raise ValueError(f"`return_estimators` names {unknown}, not among the models {names}.")
    return set(return_estimators)


def _evaluate_kept(name, est, X, y, fold, train, test, *, classes, task, scorers, error_score,
                   keep):
    return _evaluate(name, est, X, y, fold, train, test, classes, task, scorers, error_score,
                     name in keep)


def _evaluate_fold(pairs, X, y, fold, train, test, classes, task, scorers, error_score, keep):
    return [_evaluate(name, est, X, y, fold, train, test, classes, task, scorers, error_score,
                      name in keep) for name, est in pairs]


def _evaluate(name, estimator, X, y, fold, train, test, classes, task, scorers,
              error_score, keep=False) -> dict:
    """Fit ``estimator`` on ``train``, score it on ``test``; one row of the fold table."""

    def score(est, X_test, y_test) -> dict[str, float]:
        # Timed here, on the predictions the metrics use: the engine then predicts nothing.
        start = perf_counter()
        proba = None
        if task == "classification" and labels_from_proba(est):
            # One pass over the test rows: the labels are the argmax of the probabilities.
            proba = np.asarray(est.predict_proba(X_test))
            y_pred = np.asarray(est.classes_)[np.argmax(proba, axis=1)]
        else:
            y_pred = est.predict(X_test)
        out = {"predict_time_per_1k_s": (perf_counter() - start) / len(test) * 1000}
        out.update(_metrics(est, X_test, y_test, y_pred, classes, task, proba))
        for scorer_name, scorer in scorers.items():
            out[scorer_name] = float(scorer(est, X_test, y_test))
        return out

    cpu = process_time()
    result = evaluate_folds(
        estimator, X, y, [(train, test)], scoring=score, method=None,
        error_score="raise" if error_score == "raise" else np.nan, return_estimators=keep,
    )
    # CPU seconds of this process (fit, predict, scoring): the models of a fold run one after
    # the other in one process, so on a shared machine this is what a model cost.
    row: dict[str, Any] = {"model": name, "fold": fold, "cpu_time_s": process_time() - cpu}
    if np.isfinite(result.fit_times[0]):
        row["fit_time_s"] = result.fit_times[0]
    error = result.errors[0]
    if error is None:
        row.update(result.fold_scores[0])
        row.update(result.moe_stats[0])
        if keep:
            fitted = result.estimators[0]
            row["estimator"] = fitted[-1] if isinstance(fitted, SharedFitModel) else fitted
        return row
    if not isinstance(error_score, Real):
        raise ValueError("`error_score` must be 'raise' or a number.") from error
    warnings.warn(f"compare(): model {name!r} failed on fold {fold}: {error!r}; its scores "
                  f"on this fold are set to {error_score}.", UserWarning, stacklevel=2)
    for metric in [*METRICS[task], *scorers]:
        row[metric] = float(error_score)
    return row


def _metrics(est, X_test, y_test, y_pred, classes, task, proba=None) -> dict[str, float]:
    """The built-in metrics; ``proba``: ``est.predict_proba(X_test)`` when already computed."""
    if task == "regression":
        return {"rmse": float(root_mean_squared_error(y_test, y_pred)),
                "r2": float(r2_score(y_test, y_pred))}
    out = {"accuracy": float(accuracy_score(y_test, y_pred)),
           "f1_macro": float(f1_score(y_test, y_pred, average="macro", zero_division=0)),
           "log_loss": np.nan}
    if proba is not None:
        proba = align_proba(proba, est.classes_, classes)
    elif hasattr(est, "predict_proba"):
        proba = predict_aligned(est, X_test, "predict_proba", classes)
    if proba is not None:
        out["log_loss"] = float(log_loss(y_test, proba, labels=classes))
    return out


def labels_from_proba(estimator) -> bool:
    """Whether the fitted classifier ``estimator`` (or the end of its pipeline) predicts
    ``classes_[argmax(predict_proba)]``, so that :func:`compare` takes its labels from the
    probabilities instead of a second pass over the test rows (for a stack: every member
    again). Known models only; any other keeps its own ``predict``."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import _BaseNB
    from sklearn.tree import BaseDecisionTree

    from moensemble.ensemble import StackingEnsembleClassifier, WeightedEnsembleClassifier
    from moensemble.gated import GatedEnsembleClassifier
    from moensemble.moe import MoEClassifier

    final = final_step(estimator)
    if not hasattr(estimator, "predict_proba") or not hasattr(estimator, "classes_"):
        return False
    if isinstance(final, StackingEnsembleClassifier):
        meta = getattr(final, "final_estimator_", None)
        return meta is not None and labels_from_proba(meta)
    if isinstance(final, WeightedEnsembleClassifier):
        return final.voting == "soft"
    # Their predict is the argmax of the scores that predict_proba normalises (softmax,
    # exp of the joint log-likelihood, vote shares, the gated and the MoE's probabilities).
    known = (LogisticRegression, _BaseNB, ExtraTreesClassifier, RandomForestClassifier,
             GatedEnsembleClassifier, MoEClassifier)
    return isinstance(final, known) or (isinstance(final, BaseDecisionTree)
                                        and is_classifier(final))


# ---- summary ---------------------------------------------------------------------------------


def _summarise(folds_df: pd.DataFrame, names: list[str], task: str,
               scorers: dict) -> pd.DataFrame:
    metrics = list(dict.fromkeys([*scorers, *METRICS[task]]))
    grouped = folds_df.groupby("model", sort=False)
    board = pd.DataFrame(index=pd.Index(names, name="model"))
    for metric in metrics:
        board[f"{metric}_mean"] = grouped[metric].mean()
        board[f"{metric}_std"] = grouped[metric].std(ddof=0)
    for column in ["fit_time_s", "predict_time_per_1k_s", "active_params_per_row",
                   "expert_load_max_violation"]:
        board[column] = grouped[column].mean() if column in folds_df else np.nan
    main = metrics[0]
    higher = True if scorers else METRICS[task][main]
    board = board.sort_values(f"{main}_mean", ascending=not higher, kind="stable",
                              na_position="last")
    board.attrs.update(task=task, metric=main, higher_is_better=higher)
    return board
