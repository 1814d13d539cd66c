"""One AutoML trial on the search's fixed outer folds: a bag of fold models and its OOF.

The folds run on :func:`moensemble.folds.evaluate_folds`.

Every trial, whatever its family, is fitted once per outer fold; it keeps its fold models
(the bag that predicts for it in the final ensemble) and its out-of-fold predictions in
float32 (probabilities aligned to the classes, or predictions), which the greedy selection
and the level-2 trials read. Time is read from :func:`clock` only, so that tests can drive
the budget logic with a fake clock instead of the machine's speed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.utils import _safe_indexing

from moensemble.ensemble._oof import predict_aligned
from moensemble.folds import StopAtDeadline, TrialOutOfTime, callback_owner, evaluate_folds
from moensemble.search.selection import score_predictions

__all__ = ["Bag", "NonFinitePredictions", "OOFStore", "bag_on_folds", "clock",
           "estimate_fold_seconds", "stoppable"]

#: Below this many training rows a fold is cheap: no subsample timing before it.
ESTIMATE_FROM_ROWS = 2000
#: Fit time grows as rows ** SCALING: boosting's per-iteration overhead made a linear
#: extrapolation from 250 to 1,078 digits rows twice too high (measured 250 -> 1,078 rows:
#: x2.2 to x2.5 for HGB, LightGBM, XGBoost, extra trees, i.e. an exponent of 0.55-0.6).
SCALING = 0.8


def clock() -> float:
    """Seconds on the search's clock (``time.monotonic``; tests replace it)."""
    return time.monotonic()


class OOFStore:
    """Where trials' out-of-fold predictions live: float32 files memory-mapped in a folder.

    The pages a selection reads come and go with the operating system's page cache, so
    the RAM a search holds does not grow with its number of trials. ``folder=None`` keeps
    them in RAM.

    Parameters
    ----------
    folder : str or None
        An existing folder, cleaned by its owner (the AutoML removes its temporary one
        at the end of ``fit``).
    """

    def __init__(self, folder: str | None) -> None:
        self.folder = folder
        self.n_arrays = 0

    def empty(self, shape: tuple[int, int]) -> np.ndarray:
        """A zeroed float32 array of ``shape``: an ``np.memmap`` when there is a folder."""
        if self.folder is None:
            return np.zeros(shape, dtype=np.float32)
        path = os.path.join(self.folder, f"oof_{self.n_arrays}.npy")
        self.n_arrays += 1
        return np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)


class NonFinitePredictions(ValueError):
    """A trial's out-of-fold predictions hold NaN or infinity: it is never blended."""


class StopAtClock(StopAtDeadline):
    """:class:`StopAtDeadline` that reads :func:`clock` (the search's clock)."""

    def on_epoch_end(self, net, **kwargs) -> None:
        if clock() > self.deadline:
            raise KeyboardInterrupt  # skorch ends `fit` cleanly on it


@dataclass
class Bag:
    """What one trial measured over the outer folds.

    Attributes
    ----------
    oof : ndarray of shape (n_samples, n_columns), float32
        Each row predicted by the fold model that did not see it (an ``np.memmap``
        when the search keeps them on disk, see :class:`OOFStore`).
    models : list of estimator
        The fitted model of each fold.
    fold_scores, fit_times, predict_times : list of float
        Per fold: the scorer on its test rows, and seconds to fit and to predict.
    """

    oof: np.ndarray = field(repr=False)
    models: list = field(repr=False)
    fold_scores: list[float] = field(default_factory=list)
    fit_times: list[float] = field(default_factory=list)
    predict_times: list[float] = field(default_factory=list)

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores))

    @property
    def fold_seconds(self) -> float:
        """Mean seconds of one fold (fit and predict)."""
        return float(np.mean(np.add(self.fit_times, self.predict_times)))


def stoppable(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` is a network of ours that takes skorch callbacks (a deadline).

    XGBoost also has a ``callbacks`` parameter, of another kind: not ours to fill.
    """
    owner = callback_owner(estimator)
    return owner is not None and type(owner).__module__.startswith(("moensemble.", "skorch."))


def _method(estimator: Any, classes: np.ndarray | None) -> str:
    return "predict_proba" if classes is not None and hasattr(estimator, "predict_proba") \
        else "predict"


def _fit_predict(estimator, X, y, train, test, classes):
    tic = clock()
    estimator.fit(_safe_indexing(X, train), _safe_indexing(y, train))
    fit_seconds = clock() - tic
    tic = clock()
    pred = predict_aligned(estimator, _safe_indexing(X, test), _method(estimator, classes),
                           classes)
    return pred, fit_seconds, clock() - tic


def estimate_fold_seconds(estimator: BaseEstimator, X, y, train, test, *,
                          classes: np.ndarray | None, fraction: float = 0.125,
                          random_state: int | None = 0) -> float:
    """Seconds one fold should take, timed on a subsample of its rows and scaled up.

    Returns 0 when the fold is small (under ``ESTIMATE_FROM_ROWS`` training rows) or when
    the subsample fit fails (the real fit then reports the error).
    """
    if len(train) < ESTIMATE_FROM_ROWS:
        return 0.0
    rng = np.random.default_rng(random_state)
    n_sub = max(250, int(len(train) * fraction))
    sub_train = rng.choice(train, n_sub, replace=False)
    sub_test = rng.choice(test, min(len(test), max(50, int(len(test) * fraction))),
                          replace=False)
    try:
        _, fit_s, predict_s = _fit_predict(clone(estimator), X, y, sub_train, sub_test,
                                           classes)
    except Exception:  # noqa: BLE001 - the real fit says what is wrong
        return 0.0
    return fit_s * (len(train) / n_sub) ** SCALING + predict_s * len(test) / len(sub_test)


def bag_on_folds(
    estimator: BaseEstimator,
    X: Any,
    y: np.ndarray,
    folds: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    classes: np.ndarray | None,
    scorer: Callable,
    deadline: float | None = None,
    fold_estimate: float = 0.0,
    n_columns: int,
    on_fold: Callable[[int, Bag], None] | None = None,
    store: OOFStore | None = None,
    n_repeats: int = 1,
) -> Bag:
    """Fit a clone of ``estimator`` on each outer fold; keep the models and the OOF.

    The folds run on the fold engine, :func:`moensemble.folds.evaluate_folds`; this adds
    the search's clock (the deadline, the fold times) and float32 aligned predictions.

    Parameters
    ----------
    estimator : estimator
        Unfitted; cloned per fold.
    X, y
        Training data (rows selected per fold).
    folds : list of (train, test) index arrays
        The search's outer folds: ``n_repeats`` consecutive groups of folds whose test
        folds each partition the rows (one group: plain k-fold).
    classes : ndarray or None
        Class labels (classification): the OOF are probabilities in this order.
    scorer : callable
        Scorer applied to each fold's stored predictions (no second predict).
    deadline : float or None
        On :func:`clock`. Networks (ours, with skorch callbacks) stop training at their
        fold's share of it; other models raise :class:`TrialOutOfTime` after a fold when the
        folds left would end past it (from the slowest fold so far), or before the first
        when ``fold_estimate`` says so.
    n_columns : int
        Width of the predictions (classes, or outputs).
    on_fold : callable or None
        ``on_fold(k, bag)`` after each fold (a pruner's report; it may raise).
    store : OOFStore or None
        Where the out-of-fold predictions are written (None: in RAM).
    n_repeats : int, default=1
        Repeated k-fold (scikit-learn's ``RepeatedKFold`` order): the out-of-fold
        predictions are the mean over the repeats of each repeat's, and every fold model
        of every repeat is in the bag.

    Raises
    ------
    NonFinitePredictions
        When a fold model predicts NaN or infinity.
    TrialOutOfTime
        With ``bag``: the folds done (a last resort when no trial finishes).
    """
    interruptible = stoppable(estimator)
    start = clock()
    bag = Bag((store or OOFStore(None)).empty((len(y), n_columns)), [])
    fold_start: dict[int, float] = {}

    def out_of_time(k: int) -> TrialOutOfTime:
        exc = TrialOutOfTime(f"{k} of {len(folds)} folds done at the deadline", bag.fit_times)
        exc.bag = bag
        return exc

    if deadline is not None and not interruptible and start + fold_estimate * len(folds) \
            > deadline:
        raise out_of_time(0)

    def before(k: int) -> list:  # the engine asks for fold k's callbacks as the fold starts
        fold_start[k] = clock()
        if deadline is not None and fold_start[k] >= deadline:
            raise out_of_time(k)
        if deadline is None or not interruptible:
            return []
        return [StopAtClock(start + (deadline - start) * (k + 1) / len(folds))]

    def after(k, model, X_test, y_test, result) -> None:
        bag.fit_times.append(clock() - fold_start[k])
        bag.predict_times.append(float(result.predict_times[-1]))
        bag.models.append(without_clock(model) if interruptible else model)
        left = len(folds) - k - 1
        if deadline is not None and not interruptible and left and \
                clock() + max(bag.fit_times) * left > deadline:
            raise out_of_time(k + 1)  # a trial that cannot finish is worth nothing

    method = "predict_proba" if classes is not None and hasattr(estimator, "predict_proba") \
        else "predict"
    if n_repeats < 1 or len(folds) % n_repeats:
        raise ValueError(f"`n_repeats`={n_repeats} must divide the {len(folds)} folds.")
    per_repeat = len(folds) // n_repeats
    total = np.zeros(bag.oof.shape)
    fold_scores = []
    for r in range(n_repeats):  # each repeat's test folds partition the rows
        offset = r * per_repeat
        group = folds[offset:offset + per_repeat]
        result = evaluate_folds(
            estimator, X, y, group, method=method, classes=classes,
            fold_callbacks=lambda k, o=offset: before(k + o),
            on_fold_end=_then(after, on_fold, bag, scorer, offset), return_estimators=False)
        oof = _columns(result.oof, classes, n_columns)
        if not np.all(np.isfinite(oof)):
            bad = [offset + k for k, (_, test) in enumerate(group)
                   if not np.all(np.isfinite(oof[test]))]
            raise NonFinitePredictions(f"fold(s) {bad} predicted NaN or infinity")
        total += oof
        fold_scores += [score_predictions(scorer, oof[test], _safe_indexing(y, test), classes)
                        for _, test in group]
    bag.oof[:] = total / n_repeats
    if isinstance(bag.oof, np.memmap):
        bag.oof.flush()  # on disk now: its pages may leave RAM
    bag.fold_scores = fold_scores
    return bag


def _then(after, on_fold, bag, scorer, offset=0):
    def hook(k, model, X_test, y_test, result):
        k += offset  # the fold's number over all repeats
        after(k, model, X_test, y_test, result)
        if on_fold is not None:  # a running score for the pruner (one more predict)
            bag.fold_scores.append(float(scorer(model, X_test, y_test)))
            on_fold(k, bag)

    return hook


def _columns(oof: np.ndarray, classes, n_columns: int) -> np.ndarray:
    """Probabilities as they are; predicted labels one-hot; 1-d predictions as a column."""
    if classes is not None and (oof.ndim == 1 or oof.dtype == object):
        onehot = np.zeros((len(oof), len(classes)))
        onehot[np.arange(len(oof)), np.searchsorted(classes, oof)] = 1.0
        return onehot
    return np.asarray(oof, dtype=np.float64).reshape(len(oof), n_columns)


def without_clock(model: BaseEstimator) -> BaseEstimator:
    """Drop the deadline callback from a fitted network (it is no part of the model)."""
    owner = callback_owner(model)
    kept = [c for c in owner.get_params(deep=False)["callbacks"] or []
            if not isinstance(c, StopAtClock)]
    owner.set_params(callbacks=kept or None)
    return model
