"""One fold-evaluation engine: fit an estimator on given outer folds, keep what it predicted.

:func:`evaluate_folds` clones and fits an estimator on each ``(train, test)`` fold and returns
a :class:`FoldResult`: per-fold scores, fit and predict times, the out-of-fold predictions
(``predict_proba`` aligned to the given classes for classifiers, ``predict`` for regressors)
and, when asked, the fitted fold models. :func:`moensemble.compare` and the search's trials
(:class:`~moensemble.search.SearchCV`, the AutoML) both score models with it.

The inner out-of-fold predictions an ensemble trains its combiner on are another engine,
:func:`moensemble.ensemble.out_of_fold`: it caches base fits and returns predictions only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.parallel import Parallel, delayed

__all__ = ["FoldResult", "evaluate_folds", "TrialOutOfTime", "SkorchCallback", "StopAtDeadline",
           "callback_owner", "accepts_callbacks", "with_callbacks", "predict_aligned",
           "align_proba", "final_step", "moe_stats", "max_violation"]

Fold = tuple[np.ndarray, np.ndarray]


class TrialOutOfTime(Exception):
    """The folds could not all finish before the deadline; ``fold_times`` are the fits done."""

    def __init__(self, message: str, fold_times: Sequence[float] = ()) -> None:
        super().__init__(message)
        self.fold_times = list(fold_times)


@dataclass
class FoldResult:
    """What :func:`evaluate_folds` measured, one entry per fold in the order of ``folds``.

    Attributes
    ----------
    fold_scores : list of float or dict
        What ``scoring`` returned on each test fold (``error_score`` where a fold failed);
        empty without ``scoring``.
    fit_times, predict_times : list of float
        Seconds to fit, and to compute the out-of-fold predictions of, each fold (NaN where
        that step failed or did not run).
    oof : ndarray or None
        Out-of-fold predictions: shape ``(n_samples, n_classes)`` for ``predict_proba``,
        ``(n_samples,)`` or ``(n_samples, n_outputs)`` for ``predict``; rows in no test fold
        (or in a failed one) are NaN (None for non-numeric labels). None when ``method`` is
        None.
    estimators : list of estimator or None
        The fitted fold models (None for a failed fold) with ``return_estimators=True``.
    moe_stats : list of dict
        Per fold, ``active_params_per_row`` and ``expert_load_max_violation`` (NaN for
        models without experts; empty dict for a failed fold).
    errors : list of Exception or None
        The error of each fold that failed under a numeric ``error_score``.
    """

    fold_scores: list = field(default_factory=list)
    fit_times: list[float] = field(default_factory=list)
    predict_times: list[float] = field(default_factory=list)
    oof: np.ndarray | None = None
    estimators: list | None = None
    moe_stats: list[dict] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)

    @property
    def score(self) -> float:
        """Mean of the (float) fold scores."""
        return float(np.mean(self.fold_scores))


def evaluate_folds(
    estimator: BaseEstimator,
    X: Any,
    y: Any,
    folds: Sequence[Fold],
    *,
    scoring: Callable[[Any, Any, Any], Any] | None = None,
    method: str | None = "auto",
    classes: np.ndarray | None = None,
    deadline: float | None = None,
    fold_estimate: float = 0.0,
    fold_callbacks: Callable[[int], list] | None = None,
    on_fold_end: Callable[[int, Any, Any, Any, FoldResult], None] | None = None,
    error_score: str | float = "raise",
    n_jobs: int | None = None,
    return_estimators: bool = False,
) -> FoldResult:
    """Fit a clone of ``estimator`` on each fold's train rows; score and predict its test rows.

    Parameters
    ----------
    estimator : estimator
        Cloned for every fold; never fitted itself.
    X : {array-like, sparse matrix, DataFrame, list of str} of shape (n_samples, ...)
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    folds : sequence of (train, test) index arrays
    scoring : callable or None, default=None
        ``scoring(fitted, X_test, y_test)`` (a scikit-learn scorer, or one returning a dict
        of named scores) recorded in ``fold_scores``.
    method : {'auto', 'predict', 'predict_proba'} or None, default='auto'
        What ``oof`` holds: 'auto' is ``predict_proba`` for classifiers that have it (columns
        aligned to ``classes``) and ``predict`` otherwise; None computes no predictions.
    classes : ndarray or None, default=None
        Columns of a classifier's ``oof``; None uses ``np.unique(y)``.
    deadline : float or None, default=None
        A ``time.monotonic()`` value. Before each fold, :class:`TrialOutOfTime` is raised
        when the deadline has passed, or, for estimators that cannot stop training (no skorch
        ``callbacks``), when the fold would end after it (judged from the slowest fold so
        far, ``fold_estimate`` before the first). Skorch estimators get a
        :class:`StopAtDeadline` at their fold's share of the time left. Sequential only.
    fold_estimate : float, default=0.0
        Expected seconds of one fold before any has run.
    fold_callbacks : callable or None, default=None
        ``fold_callbacks(k) -> list`` of skorch callbacks added to fold ``k``'s clone (for
        estimators that take ``callbacks``).
    on_fold_end : callable or None, default=None
        ``on_fold_end(k, fitted, X_test, y_test, result)`` after fold ``k`` succeeded; it may
        raise to stop (e.g. :class:`optuna.TrialPruned`), which is never caught.
    error_score : 'raise' or float, default='raise'
        'raise' re-raises a fold's error; a number is recorded as that fold's score, the error
        in ``errors``, and the next fold runs.
    n_jobs : int or None, default=None
        Folds fitted in parallel through joblib (not with ``deadline``); ``on_fold_end`` then
        runs in fold order once all folds are fitted.
    return_estimators : bool, default=False
        Keep the fitted fold models in ``estimators``.

    Returns
    -------
    result : FoldResult

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.metrics import get_scorer
    >>> from sklearn.model_selection import StratifiedKFold
    >>> from moensemble.folds import evaluate_folds
    >>> X, y = load_iris(return_X_y=True)
    >>> folds = list(StratifiedKFold(3).split(X, y))
    >>> result = evaluate_folds(LogisticRegression(max_iter=500), X, y, folds,
    ...                         scoring=get_scorer("accuracy"))
    >>> result.oof.shape, len(result.fold_scores), result.score > 0.9
    ((150, 3), 3, True)
    """
    if method not in ("auto", "predict", "predict_proba", None):
        raise ValueError(f"`method` must be 'auto', 'predict', 'predict_proba' or None; "
                         f"got {method!r}.")
    if error_score != "raise" and not isinstance(error_score, Real):
        raise ValueError(f"`error_score` must be 'raise' or a number; got {error_score!r}.")
    parallel = n_jobs not in (None, 1)
    if parallel and deadline is not None:
        raise ValueError("`deadline` needs sequential folds (`n_jobs` None or 1).")
    if method == "auto":
        method = "predict_proba" if is_classifier(estimator) and hasattr(
            estimator, "predict_proba") else "predict"
    if method == "predict_proba" and classes is None:
        classes = np.unique(np.asarray(y))
    args = (estimator, X, y, scoring, method, classes, error_score)
    result = FoldResult()
    fold_predictions: list = []
    if parallel:
        outcomes = Parallel(n_jobs=n_jobs)(
            delayed(_one_fold)(*args, train, test, []) for train, test in folds
        )
        for k, outcome in enumerate(outcomes):
            _record(result, fold_predictions, outcome, k, folds, on_fold_end, X, y,
                    return_estimators)
    else:
        interruptible = accepts_callbacks(estimator)  # its training stops at the fold deadline
        start = time.monotonic()
        for k, (train, test) in enumerate(folds):
            extra = list(fold_callbacks(k)) if fold_callbacks is not None else []
            if deadline is not None:
                now = time.monotonic()
                expected = max(result.fit_times, default=fold_estimate)
                if now >= deadline or (not interruptible and now + expected > deadline):
                    raise TrialOutOfTime(
                        f"{k} of {len(folds)} folds done at the deadline", result.fit_times
                    )
                extra.append(StopAtDeadline(start + (deadline - start) * (k + 1) / len(folds)))
            outcome = _one_fold(*args, train, test, extra)
            _record(result, fold_predictions, outcome, k, folds, on_fold_end, X, y,
                    return_estimators)
    if method is not None:
        result.oof = _assemble(fold_predictions, folds, _num_rows(X))
    return result


def _one_fold(estimator, X, y, scoring, method, classes, error_score, train, test,
              callbacks) -> dict:
    """Fit, predict and score one fold; the error (under a numeric error_score) is returned."""
    outcome: dict[str, Any] = {"fit_time": np.nan, "predict_time": np.nan, "prediction": None,
                               "score": None, "estimator": None, "error": None}
    X_test, y_test = _safe_indexing(X, test), _safe_indexing(y, test)
    model = with_callbacks(clone(estimator), callbacks)
    try:
        tic = time.perf_counter()
        model.fit(_safe_indexing(X, train), _safe_indexing(y, train))
        outcome["fit_time"] = time.perf_counter() - tic
        if method is not None:
            tic = time.perf_counter()
            if method == "predict_proba":
                outcome["prediction"] = predict_aligned(model, X_test, method, classes)
            else:
                outcome["prediction"] = np.asarray(model.predict(X_test))
            outcome["predict_time"] = time.perf_counter() - tic
        if scoring is not None:
            score = scoring(model, X_test, y_test)
            outcome["score"] = score if isinstance(score, dict) else float(score)
    except Exception as exc:
        if error_score == "raise":
            raise
        outcome.update(prediction=None, score=float(error_score), error=exc)
        return outcome
    outcome["estimator"] = model
    return outcome


def _record(result: FoldResult, predictions: list, outcome: dict, k: int, folds, on_fold_end,
            X, y, keep: bool) -> None:
    result.fit_times.append(outcome["fit_time"])
    result.predict_times.append(outcome["predict_time"])
    result.errors.append(outcome["error"])
    if outcome["score"] is not None:
        result.fold_scores.append(outcome["score"])
    predictions.append(outcome["prediction"])
    model = outcome["estimator"]
    if keep:
        result.estimators = [*(result.estimators or []), model]
    result.moe_stats.append({} if model is None else moe_stats(model))
    if model is not None and on_fold_end is not None:
        test = folds[k][1]
        on_fold_end(k, model, _safe_indexing(X, test), _safe_indexing(y, test), result)


def _assemble(predictions: list, folds: Sequence[Fold], n_rows: int) -> np.ndarray:
    """Out-of-fold predictions in row order; rows no successful fold predicted stay empty."""
    done = [(p, test) for p, (_, test) in zip(predictions, folds, strict=True) if p is not None]
    if not done:
        return np.full(n_rows, np.nan)
    first = done[0][0]
    numeric = all(np.issubdtype(p.dtype, np.number) or p.dtype == bool for p, _ in done)
    oof = (np.full((n_rows, *first.shape[1:]), np.nan) if numeric
           else np.full((n_rows, *first.shape[1:]), None, dtype=object))
    for prediction, test in done:
        oof[test] = prediction
    return oof


def _num_rows(X: Any) -> int:
    return X.shape[0] if hasattr(X, "shape") else len(X)


def align_proba(proba, seen, classes) -> np.ndarray:
    """``proba`` (columns ``seen``) as float64, rows renormalised, one column per label of
    ``classes`` (0 for a class the model never saw): what :func:`predict_aligned` returns."""
    out = np.array(proba, dtype=np.float64)
    totals = out.sum(axis=1, keepdims=True)
    out = np.divide(out, totals, out=out, where=totals > 0)
    if len(seen) == len(classes):
        return out
    aligned = np.zeros((out.shape[0], len(classes)))
    aligned[:, np.searchsorted(classes, seen)] = out
    return aligned


def predict_aligned(estimator: Any, X: Any, method: str,
                    classes: np.ndarray | None) -> np.ndarray:
    """Predict with ``method``; a float array of shape (n_samples, n_columns) whose columns
    follow ``classes`` for classifiers.

    Probability columns go to the position of each label of ``classes`` (a fold that missed a
    class gives it probability 0) and rows are renormalised (float32 models sum to 1 only to
    ~1e-7, which ``log_loss`` warns about); ``predict`` is one-hot encoded; so fold models and
    a model refitted on all rows line up column by column. Regressors, or ``classes=None``,
    give the predictions as a 2-D array.
    """
    out = getattr(estimator, method)(X)
    if classes is None or not is_classifier(estimator):
        out = np.asarray(out, dtype=np.float64)
        return out.reshape(-1, 1) if out.ndim == 1 else out
    seen = getattr(estimator, "classes_", classes)
    if method == "predict":
        codes = np.searchsorted(classes, np.asarray(out))
        onehot = np.zeros((len(codes), len(classes)))
        onehot[np.arange(len(codes)), codes] = 1.0
        return onehot
    if method == "predict_proba":
        return align_proba(out, seen, classes)
    out = np.asarray(out, dtype=np.float64)
    # decision_function: values cannot be filled in for a class the model never saw.
    if len(seen) != len(classes):
        raise ValueError(
            f"A fold model saw {len(seen)} of the {len(classes)} classes, so its "
            "decision_function cannot be aligned; use stratified folds, fewer folds, or "
            "method='predict_proba'."
        )
    return out.reshape(-1, 1) if out.ndim == 1 else out


# ---- MoE statistics --------------------------------------------------------------------------


def final_step(estimator: Any) -> Any:
    """The estimator at the end of pipelines and fitted searches (where MoE stats live)."""
    while True:
        if isinstance(estimator, Pipeline):
            estimator = estimator[-1]
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        else:
            return estimator


def moe_stats(estimator: Any) -> dict[str, float]:
    """``active_params_per_row`` and ``expert_load_max_violation`` (NaN without experts)."""
    final = final_step(estimator)
    active = getattr(final, "n_active_params_", None)
    load = getattr(final, "expert_load_", None)
    return {
        "active_params_per_row": np.nan if active is None else float(active),
        "expert_load_max_violation": np.nan if load is None else max_violation(load),
    }


def max_violation(load) -> float:
    """``(max load - mean load) / mean load``: 0 when balanced, ``n_experts - 1`` when collapsed.

    Parameters
    ----------
    load : array-like of shape (n_experts,) or (n_layers, n_experts)
        Rows (or share of rows) sent to each expert; the worst layer counts.
    """
    load = np.atleast_2d(np.asarray(load, dtype=float))
    mean = load.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        violation = (load.max(axis=-1) - mean) / mean
    return float(np.nanmax(violation)) if np.isfinite(violation).any() else np.nan


# ---- skorch callbacks ------------------------------------------------------------------------


class SkorchCallback:
    """Duck-typed skorch callback base (skorch's own base would import torch here)."""

    def initialize(self):
        return self

    def on_train_begin(self, net, **kwargs):
        pass

    def on_train_end(self, net, **kwargs):
        pass

    def on_epoch_begin(self, net, **kwargs):
        pass

    def on_epoch_end(self, net, **kwargs):
        pass

    def on_batch_begin(self, net, **kwargs):
        pass

    def on_batch_end(self, net, **kwargs):
        pass

    def on_grad_computed(self, net, named_parameters, **kwargs):
        pass

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def set_params(self, **params: Any):
        for key, value in params.items():
            setattr(self, key, value)
        return self


class StopAtDeadline(SkorchCallback):
    """Stop training (as skorch's early stopping does) once ``time.monotonic() > deadline``."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def on_epoch_end(self, net, **kwargs) -> None:
        # Checked per epoch, not per batch: estimators record epoch statistics in their
        # own epoch-end callbacks and may expect every history row to be complete.
        if time.monotonic() > self.deadline:
            raise KeyboardInterrupt  # skorch ends `fit` cleanly on it


def callback_owner(estimator: BaseEstimator) -> BaseEstimator | None:
    """The estimator, or the last step of a pipeline, that takes skorch ``callbacks``."""
    if "callbacks" in estimator.get_params(deep=False):
        return estimator
    steps = getattr(estimator, "steps", None)
    return callback_owner(steps[-1][1]) if steps else None


def accepts_callbacks(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` (or its final pipeline step) takes skorch callbacks."""
    return callback_owner(estimator) is not None


def with_callbacks(estimator: BaseEstimator, extra: list) -> BaseEstimator:
    """Append ``extra`` to the skorch callbacks of ``estimator`` (or its final step)."""
    owner = callback_owner(estimator)
    if extra and owner is not None:
        existing = list(owner.get_params(deep=False)["callbacks"] or [])
        owner.set_params(callbacks=existing + extra)
    return estimator
