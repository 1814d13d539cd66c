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
from sklearn.base import BaseEstimator, clone, is_classifier, is_regressor
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    get_scorer,
    log_loss,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import KFold, StratifiedKFold, check_cv
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_consistent_length, check_memory

from moensemble._compare_jobs import SharedFitModel, run_parallel, share_memory
from moensemble._validation import check_estimators
from moensemble.folds import evaluate_folds, max_violation, predict_aligned

__all__ = ["compare", "default_models", "make_folds", "max_violation", "METRICS"]

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
        pairs = [(name, share_memory(est, cache)) for name, est in pairs]
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


def default_models(
    task: str = "classification",
    *,
    features: BaseEstimator | None = None,
    sparse: bool = False,
    n_components: int = 100,
    cv: int = 3,
    quick: bool = False,
    moe_members: bool = False,
    mlp: bool = False,
    moe_params: dict | None = None,
    random_state: int | None = 0,
) -> list[tuple[str, BaseEstimator]]:
    """Build the default contestants: strong single members, three ensembles of them, an MoE.

    Parameters
    ----------
    task : {'classification', 'regression'}, default='classification'
    features : transformer or None, default=None
        A first step put in front of every model (for example a ``TfidfVectorizer`` for raw
        texts, or a ``ColumnTransformer``). ``None``: ``X`` is already numeric.
    sparse : bool, default=False
        Whether the model input (after ``features``) is sparse, such as TF-IDF. Members that
        need dense input then get a ``TruncatedSVD(n_components)`` step, the others take the
        sparse matrix directly; when False, linear members get a ``StandardScaler``.
    n_components : int, default=100
        Dimensions kept by the ``TruncatedSVD`` of dense-only members (sparse input only).
    cv : int, default=3
        Inner folds of the weighted, stacked and gated ensembles (one shuffled
        ``StratifiedKFold`` / ``KFold`` seeded by ``random_state``, shared by all three).
    quick : bool, default=False
        Smaller forests and fewer MoE epochs, for a run of a minute or two.
    moe_members : bool, default=False
        Also add ``weighted_moe`` and ``stacked_moe``: the weighted and stacked ensembles
        with the MoE as one more member (same inner folds and cache, so the other members'
        out-of-fold predictions are shared; the MoE is fitted once per inner fold and once
        on all rows, for both ensembles together).
    mlp : bool, default=False
        Also add ``mlp``: the MoE's dense peer of equal active parameters, the same network
        and training with one expert twice as wide as each of the MoE's ``top_k=2`` experts
        (so it runs the parameters the MoE runs per row, less the router's).
    moe_params : dict or None, default=None
        Parameters set on the MoE after the defaults (for example ``{"max_epochs": 10}``),
        so also on its copies in the ensembles and on ``mlp``.
    random_state : int or None, default=0

    Returns
    -------
    models : list of (str, estimator)
        ``[*members, ("weighted", ...), ("stacked", ...), ("moe", ...), ("gated", ...)]``
        (the gated ensemble: a learned top-2 router over the members), then
        ``weighted_moe`` and ``stacked_moe`` with ``moe_members``, then ``mlp`` with ``mlp``;
        each is a
        :class:`~sklearn.pipeline.Pipeline` starting with ``features`` when it is given.
    """
    if task not in METRICS:
        raise ValueError(f"`task` must be 'classification' or 'regression'; got {task!r}.")
    members = _members(task, sparse=sparse, n_components=n_components, quick=quick,
                       random_state=random_state)
    # One splitter for every ensemble: the same inner folds, so that in `compare` their
    # shared cache fits each member once per fold for all three.
    splitter = StratifiedKFold if task == "classification" else KFold
    inner = splitter(cv, shuffle=True, random_state=random_state)
    models = [*members, *_ensembles(task, members, cv=inner, random_state=random_state)]
    moe_model = _moe(task, sparse=sparse, quick=quick, random_state=random_state)
    if moe_params:
        prefix = "model__" if isinstance(moe_model, Pipeline) else ""
        moe_model.set_params(**{f"{prefix}{k}": v for k, v in moe_params.items()})
    models.append(("moe", moe_model))
    models.append(("gated", _gated(task, members, cv=inner, random_state=random_state)))
    if moe_members:
        with_moe = [*members, ("moe", clone(moe_model))]
        models += [(f"{name}_moe", est) for name, est in
                   _ensembles(task, with_moe, cv=inner, random_state=random_state)]
    if mlp:
        models.append(("mlp", _dense_peer(moe_model)))
    if features is not None:
        models = [(name, Pipeline([("features", clone(features)), (name, est)]))
                  for name, est in models]
    return models


# ---- default models --------------------------------------------------------------------------


def _members(task: str, *, sparse: bool, n_components: int, quick: bool,
             random_state: int | None) -> list[tuple[str, BaseEstimator]]:
    from sklearn.decomposition import TruncatedSVD
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.naive_bayes import ComplementNB
    from sklearn.preprocessing import StandardScaler

    n_trees = 100 if quick else 300
    # Dense-only members see a low-rank projection of sparse input; tabular input is used as is.
    def dense(est: BaseEstimator) -> BaseEstimator:
        if not sparse:
            return est
        return Pipeline([("svd", TruncatedSVD(n_components, random_state=random_state)),
                         ("model", est)])

    def scaled(est: BaseEstimator) -> BaseEstimator:
        # Sparse TF-IDF rows are already unit-norm; centring would densify them.
        return est if sparse else Pipeline([("scale", StandardScaler()), ("model", est)])

    if task == "classification":
        members = [
            ("logreg", scaled(LogisticRegression(C=10.0 if sparse else 1.0, max_iter=300))),
            ("extra_trees", dense(ExtraTreesClassifier(n_trees, n_jobs=1,
                                                       random_state=random_state))),
        ]
        if sparse:
            # Naive Bayes needs non-negative counts or TF-IDF: a strong, cheap text member.
            members.insert(1, ("naive_bayes", ComplementNB(alpha=0.3)))
        return members
    return [
        ("ridge", scaled(RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        ("extra_trees", dense(ExtraTreesRegressor(n_trees, n_jobs=1, random_state=random_state))),
    ]


def _ensembles(task: str, members: list, *, cv,
               random_state: int | None) -> list[tuple[str, BaseEstimator]]:
    from moensemble import ensemble

    kind = "Classifier" if task == "classification" else "Regressor"
    models = []
    for name, cls in [("weighted", f"WeightedEnsemble{kind}"),
                      ("stacked", f"StackingEnsemble{kind}")]:
        est = getattr(ensemble, cls)([(n, clone(e)) for n, e in members])
        # The bases are refit on all rows, as the single members are: bagging the fold
        # models instead (trained on (cv-1)/cv of the rows) cost the weighted ensemble
        # 0.5 points of accuracy on 3,000 glosses, so it trailed its own best member.
        models.append((name, _set_present(est, cv=cv, random_state=random_state)))
    if task == "classification":
        # Out-of-fold probabilities of many classes are small numbers: sklearn's C=1
        # under-fits them (stacking 0.465 vs 0.491 accuracy with C=10 on 3,000 glosses).
        from sklearn.linear_model import LogisticRegression

        models[1][1].set_params(final_estimator=LogisticRegression(C=10.0, max_iter=500))
    return models


def _gated(task: str, members: list, *, cv, random_state: int | None) -> BaseEstimator:
    from moensemble import gated

    kind = "Classifier" if task == "classification" else "Regressor"
    # top-2: on 3,000 glosses (TF-IDF, the CLI's outer folds, unshuffled inner folds) 0.495
    # accuracy against 0.489 for top-1, in half its fit time; 0.490 in the default run.
    est = getattr(gated, f"GatedEnsemble{kind}")([(n, clone(e)) for n, e in members],
                                                  router="topk", top_k=2)
    return _set_present(est, cv=cv, random_state=random_state)


def _moe(task: str, *, sparse: bool, quick: bool, random_state: int | None) -> BaseEstimator:
    from moensemble import moe

    est = moe.MoEClassifier if task == "classification" else moe.MoERegressor
    # Every choice written out, so that a change of the estimator's defaults leaves the
    # leaderboard's MoE (and the README's numbers) as measured.
    model = _set_present(est(), n_experts=8, top_k=2, router="topk", gating="expert",
                         init="random", router_init="random", encoder=None, n_layers=1,
                         activation="relu", gate_dropout=0.0, shared_expert=False,
                         z_loss_coef=1e-3, optimizer="auto", weight_decay=0.0,
                         router_lr_scale=1.0, early_stopping=False, random_state=random_state)
    if quick:
        # Measured on 3,000 WordNet glosses (TF-IDF, the CLI's 3 folds), 20 epochs: 32-unit
        # experts 0.460 accuracy / 2.151 log loss (a bottleneck below 41 classes), 64 units
        # + dropout 0.3 0.478 / 2.053, 128 units + dropout 0.3 0.489 / 1.973 (the best log
        # loss of the leaderboard) at 6.6 s a fold, 256 units 0.492 / 2.038 at 14.7 s.
        model = _set_present(model, expert_hidden=(128,), dropout=0.3, batch_size=256,
                             lr=3e-3, max_epochs=20)
    if sparse:
        # The text router collapses onto 2 of 8 experts with the load-balancing loss (load
        # violation 2.83 on the main job's folds); the DeepSeek-V3 bias, nudged 0.02 a batch,
        # keeps all 8 live (violation 0.50 on the first fold) at no cost in accuracy (0.493
        # vs 0.489 there). The cooperative mixture stays: the likelihood one scored 0.482 on
        # that fold. docs/guide/moe-quality.md has the measurements.
        model = _set_present(model, mixture="logits", balance="bias", bias_update_rate=0.02)
    if sparse:
        return model
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def _dense_peer(moe_model: BaseEstimator) -> BaseEstimator:
    """The MoE with one expert as wide as its ``top_k`` experts side by side: a dense MLP of
    equal active parameters (less the router's), trained the same way (one expert balances
    trivially)."""
    peer = clone(moe_model)
    prefix = "model__" if isinstance(peer, Pipeline) else ""
    params = peer.get_params()
    widths = params[f"{prefix}expert_hidden"]
    widths = (widths,) if isinstance(widths, int) else tuple(widths)
    wide = tuple(params[f"{prefix}top_k"] * w for w in widths)
    return peer.set_params(**{f"{prefix}n_experts": 1, f"{prefix}top_k": 1,
                              f"{prefix}expert_hidden": wide})


def _set_present(estimator: BaseEstimator, **params) -> BaseEstimator:
    """Set the ``params`` that ``estimator`` has; ignore the others."""
    known = estimator.get_params(deep=False)
    return estimator.set_params(**{k: v for k, v in params.items() if k in known})


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
        y_pred = est.predict(X_test)
        out = {"predict_time_per_1k_s": (perf_counter() - start) / len(test) * 1000}
        out.update(_metrics(est, X_test, y_test, y_pred, classes, task))
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


def _metrics(est, X_test, y_test, y_pred, classes, task) -> dict[str, float]:
    if task == "regression":
        return {"rmse": float(root_mean_squared_error(y_test, y_pred)),
                "r2": float(r2_score(y_test, y_pred))}
    out = {"accuracy": float(accuracy_score(y_test, y_pred)),
           "f1_macro": float(f1_score(y_test, y_pred, average="macro", zero_division=0)),
           "log_loss": np.nan}
    if hasattr(est, "predict_proba"):
        proba = predict_aligned(est, X_test, "predict_proba", classes)
        out["log_loss"] = float(log_loss(y_test, proba, labels=classes))
    return out


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
