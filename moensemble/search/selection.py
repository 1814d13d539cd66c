"""Greedy ensemble selection over the trials' out-of-fold predictions, and the final model.

Caruana et al. (2004), "Ensemble selection from libraries of models": start from the empty
ensemble and add, with replacement, the trial whose out-of-fold predictions most lower the
loss of the running average (log loss, squared error, or minus a scorer: :func:`selection_loss`);
the weights are the pick counts. Caruana et al. (2006): bagged selection, on random halves
of the rows, averaged, chases less noise. Trials' probabilities can first be tempered
(:func:`fit_temperature`). The AutoML runs it over every finished trial of its search,
whatever the family. :class:`TrialEnsemble` is the result:
each selected trial predicts with its bag of fold models (or one model refit on all rows),
and level-2 trials (stacking, weighted) read their input trials' predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from moensemble._validation import IntInterval
from moensemble.ensemble._oof import predict_aligned
from moensemble.ensemble.weighted import greedy_weights

__all__ = [
    "CaruanaClassifier",
    "CaruanaRegressor",
    "Member",
    "TrialEnsemble",
    "ensemble_selection",
    "fit_temperature",
    "gain_in_standard_errors",
    "gain_within_noise",
    "out_of_bag_gain",
    "per_row_gain",
    "per_row_loss",
    "prediction_loss",
    "score_predictions",
    "selection_loss",
    "simplest_within_one_se",
    "temper",
]

_EPS = 1e-7
#: Weight of log loss (squared error) that breaks a discrete score's ties in the selection.
_TIE = 1e-6


def prediction_loss(pred: np.ndarray, target: np.ndarray, task: str) -> float:
    """Log loss of probabilities (``target``: class codes) or mean squared error."""
    if task == "classification":
        rows = pred[np.arange(len(target)), target]
        return float(-np.mean(np.log(np.clip(rows, _EPS, 1.0))))
    target = target.reshape(len(pred), -1)
    return float(np.mean((pred - target) ** 2))


def selection_loss(metric: Any, task: str, classes: np.ndarray | None = None) \
        -> Callable[[np.ndarray, np.ndarray], float]:
    """``loss(pred, target)`` to minimise for ensemble selection under ``metric``.

    Parameters
    ----------
    metric : str, callable or None
        ``'log_loss'`` (classification) or ``'squared_error'``; None is ``'log_loss'`` /
        ``'squared_error'``; a scikit-learn scorer name (``'accuracy'``, ``'r2'``,
        ``'balanced_accuracy'``, ...) or scorer callable is maximised. In classification
        a tiny share of log loss breaks the ties of discrete scores (accuracy), so that
        the picks still move on a plateau.
    task : {'classification', 'regression'}
    classes : ndarray or None
        Class labels (a scorer gets labels, ``target`` holds their codes).
    """
    if metric is None or metric in ("log_loss", "squared_error"):
        return lambda pred, target: prediction_loss(pred, target, task)
    if metric == "accuracy" and task == "classification":  # fast path: the default scorer
        return lambda pred, target: (-float(np.mean(np.argmax(pred, axis=1) == target))
                                     + _TIE * prediction_loss(pred, target, task))
    if metric in ("r2", "neg_mean_squared_error") and task == "regression":
        return lambda pred, target: prediction_loss(pred, target, task)  # same order
    from sklearn.metrics import check_scoring

    scorer = check_scoring(None, scoring=metric) if isinstance(metric, str) else metric

    def loss(pred, target):
        labels = classes[target] if classes is not None else \
            (target[:, 0] if target.ndim == 2 and target.shape[1] == 1 else target)
        score = score_predictions(scorer, pred, labels, classes)
        tie = _TIE * prediction_loss(pred, target, task) if classes is not None else 0.0
        return -score + tie

    return loss


def ensemble_selection(predictions: Sequence[np.ndarray], target: np.ndarray, task: str,
                       n_iter: int = 25, *, metric: Any = None, n_bags: int = 1,
                       bag_fraction: float = 0.5, random_state: Any = None,
                       classes: np.ndarray | None = None,
                       time_limit: float | None = None,
                       trial_fraction: float = 1.0, return_bags: bool = False):
    """Weights of greedy ensemble selection with replacement over aligned predictions.

    Parameters
    ----------
    predictions : sequence of ndarray of shape (n_samples, n_columns)
        Out-of-fold predictions of each trial: class probabilities (classification, columns
        in the order of the classes) or predictions (regression).
    target : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        Class codes (0 .. n_classes - 1) or regression targets.
    task : {'classification', 'regression'}
    n_iter : int, default=25
        Picks; the best prefix is kept, so with one bag the ensemble is never worse (on
        these rows, under ``metric``) than the best single trial.
    metric : str, callable or None, default=None
        What the picks optimise (see :func:`selection_loss`); None: log loss or squared
        error.
    n_bags : int, default=1
        Bagged ensemble selection (Caruana et al. 2006): run the selection ``n_bags``
        times, each on a random ``bag_fraction`` of the rows, and average the weights.
        Fewer picks chase the noise of small data.
    bag_fraction : float, default=0.5
        Share of the rows each bag selects on.
    random_state : int, RandomState or None
        Seeds the bags' rows.
    classes : ndarray or None
        Class labels, for a scorer ``metric``.
    time_limit : float or None
        Seconds for the bags: no new bag starts past it (at least one runs), and the
        weights average the bags done.
    trial_fraction : float in (0, 1], default=1.0
        Bagging over trials (Caruana et al. 2006): each bag selects among a random
        share of the trials (at least one), so that no bag's noise fixes the weights.
    return_bags : bool, default=False
        Also return each bag's weights and the rows it selected on (for
        :func:`out_of_bag_gain`); an empty list with one bag.

    Returns
    -------
    weights : ndarray of shape (n_trials,), summing to one
    bags : list of (ndarray of shape (n_trials,), ndarray of row indices)
        Only with ``return_bags``.

    Examples
    --------
    >>> import numpy as np
    >>> from moensemble.search.selection import ensemble_selection
    >>> target = np.array([0, 1, 1, 0])
    >>> good = np.eye(2)[target] * 0.8 + 0.1
    >>> flat = np.full((4, 2), 0.5)
    >>> ensemble_selection([flat, good], target, "classification")
    array([0., 1.])
    """
    if not len(predictions):
        raise ValueError("Ensemble selection needs at least one trial's predictions.")
    start = time.monotonic()
    batch = _batch_loss(metric, task)
    # float32 halves the memory traffic of the batched path, its cost; the loop keeps float64
    dtype = np.float32 if batch is not None else np.float64
    preds = np.stack([np.asarray(p, dtype=dtype) for p in predictions])
    target = np.asarray(target)
    if batch is not None:  # every candidate of a pick scored in one array operation
        def select(p, t):
            return greedy_weights(p, None, n_iter, batch_loss=lambda c: batch(c, t))
    else:
        loss = selection_loss(metric, task, classes)

        def select(p, t):
            return greedy_weights(p, lambda q: loss(q, t), n_iter)
    if n_bags <= 1:
        weights = select(preds, target)
        return (weights, []) if return_bags else weights
    rng = check_random_state(random_state)
    n_trials, n_rows = preds.shape[:2]
    size = max(1, int(round(bag_fraction * n_rows)))
    n_drawn = max(1, int(round(trial_fraction * n_trials)))
    weights = np.zeros(n_trials)
    bags = []
    done = 0
    while done < n_bags:
        rows = np.sort(rng.choice(n_rows, size, replace=False))
        trials = np.sort(rng.choice(n_trials, n_drawn, replace=False)) if n_drawn < n_trials \
            else np.arange(n_trials)
        bag = np.zeros(n_trials)
        bag[trials] = select(preds[trials][:, rows], target[rows])
        weights += bag
        bags.append((bag, rows))
        done += 1
        if time_limit is not None and time.monotonic() - start > time_limit:
            break
    return (weights / done, bags) if return_bags else weights / done


def _batch_loss(metric: Any, task: str):
    """``loss(candidates, target) -> (n_candidates,)`` for the built-in metrics, else None.

    ``candidates`` has shape (n_candidates, n_samples, n_columns); the values equal
    :func:`selection_loss`'s, one candidate at a time.
    """
    if task == "classification":
        def log_loss(cands, target):
            rows = cands[:, np.arange(len(target)), target].astype(np.float64)
            return -np.log(np.clip(rows, _EPS, 1.0)).mean(axis=1)

        if metric is None or metric == "log_loss":
            return log_loss
        if metric == "accuracy":
            return lambda cands, target: (-(cands.argmax(axis=2) == target).mean(axis=1,
                                                                                 dtype=np.float64)
                                          + _TIE * log_loss(cands, target))
        return None
    if metric in (None, "squared_error", "r2", "neg_mean_squared_error"):
        return lambda cands, target: ((cands - target.reshape(1, cands.shape[1], -1)) ** 2
                                      ).mean(axis=(1, 2), dtype=np.float64)
    return None


def per_row_loss(pred: np.ndarray, target: np.ndarray, task: str,
                 metric: Any = None) -> np.ndarray:
    """Per row, the loss of ``pred``: an error (0 or 1) under accuracy; other
    classification metrics: log loss; regression: squared error (summed over the outputs)."""
    if task == "classification":
        if metric == "accuracy":
            return (np.argmax(pred, axis=1) != target).astype(float)
        return -np.log(np.clip(pred[np.arange(len(target)), target], _EPS, 1.0))
    return ((pred - target.reshape(len(pred), -1)) ** 2).sum(axis=1)


def per_row_gain(blend: np.ndarray, single: np.ndarray, target: np.ndarray, task: str,
                 metric: Any = None) -> np.ndarray:
    """Per row, how much better ``blend`` is than ``single`` (positive: the blend), by
    :func:`per_row_loss`."""
    return per_row_loss(single, target, task, metric) - per_row_loss(blend, target, task, metric)


def simplest_within_one_se(predictions: Sequence[np.ndarray], order: Sequence[float],
                           target: np.ndarray, task: str, metric: Any = None) -> int:
    """Index of the first prediction by ``order`` whose mean per-row loss is at most the
    best one's plus one standard error of that mean (glmnet's ``lambda.1se``, Breiman et
    al.'s one-standard-error rule).

    The standard error is the best prediction's own (not of paired differences: two
    near-identical models differ by a tiny paired standard error, so a paired rule would
    prefer models unlike the best, not simpler ones).
    """
    means = [float(per_row_loss(np.asarray(p, dtype=np.float64), target, task, metric).mean())
             for p in predictions]
    best = int(np.argmin(means))
    rows = per_row_loss(np.asarray(predictions[best], dtype=np.float64), target, task, metric)
    line = means[best] + float(rows.std(ddof=1)) / np.sqrt(len(rows))
    return next(i for i in sorted(range(len(means)), key=lambda i: order[i])
                if means[i] <= line)


def gain_in_standard_errors(blend: np.ndarray, single: np.ndarray, target: np.ndarray,
                            task: str, metric: Any = None) -> float:
    """The blend's mean per-row gain over ``single`` (:func:`per_row_gain`) divided by the
    standard error of that mean (0 when they never differ)."""
    return _in_standard_errors(per_row_gain(blend, single, target, task, metric))


def out_of_bag_gain(predictions: Sequence[np.ndarray], target: np.ndarray, task: str,
                    bags: Sequence[tuple[np.ndarray, np.ndarray]], single: np.ndarray,
                    metric: Any = None) -> float:
    """The bagged selection's gain over ``single`` on rows it did not select on, in
    standard errors.

    Each bag's blend (its weights, from :func:`ensemble_selection` ``return_bags``) is
    compared with ``single`` (:func:`per_row_gain`) on the rows outside the bag; a row's
    gain is the mean over the bags it was outside of, and the result is the mean gain over
    those rows divided by its standard error. Unlike :func:`gain_in_standard_errors` on the
    final blend, the selection does not grade the rows it chose its weights on, so its
    optimism on small data (picks that fit noise) does not count as gain. NaN without bags.
    """
    n_rows = len(target)
    total, count = np.zeros(n_rows), np.zeros(n_rows)
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in predictions])
    single = np.asarray(single, dtype=np.float64)
    for weights, rows in bags:
        out = np.setdiff1d(np.arange(n_rows), rows)
        if not len(out):
            continue
        blend = np.tensordot(weights, stacked[:, out], axes=1)
        total[out] += per_row_gain(blend, single[out], target[out], task, metric)
        count[out] += 1
    seen = count > 0
    if seen.sum() < 2:
        return np.nan
    return _in_standard_errors(total[seen] / count[seen])


def _in_standard_errors(gain: np.ndarray) -> float:
    """The mean of the per-row ``gain`` over its standard error (0 when it never differs
    from 0; +-inf when it is constant and not 0)."""
    mean, spread = float(gain.mean()), float(gain.std(ddof=1)) / np.sqrt(len(gain))
    if spread == 0.0:
        return 0.0 if mean == 0.0 else float(np.copysign(np.inf, mean))
    return mean / spread


def gain_within_noise(blend: np.ndarray, single: np.ndarray, target: np.ndarray, task: str,
                      metric: Any = None, n_std: float = 1.0) -> bool:
    """Whether the blend's mean per-row gain over ``single`` is at most ``n_std`` standard
    errors (of that mean): then the blend has not shown it is better than the one trial."""
    return gain_in_standard_errors(blend, single, target, task, metric) <= n_std


# --------------------------------------------------------------------------- temperature
def fit_temperature(proba: np.ndarray, target: np.ndarray) -> float:
    """Temperature ``T`` that minimises the log loss of ``temper(proba, T)`` on these rows.

    One parameter per trial, fitted on its out-of-fold probabilities: it sharpens a
    timid model (``T < 1``, complement naive Bayes on TF-IDF) and softens an
    over-confident one (``T > 1``, k-NN's exact zeros), so that the ensemble averages
    probabilities on one scale.
    """
    from scipy.optimize import minimize_scalar

    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0))

    def loss(log_t: float) -> float:
        return prediction_loss(_softmax(logp / np.exp(log_t)), target, "classification")

    found = minimize_scalar(loss, bounds=(-3.0, 3.0), method="bounded",
                            options={"xatol": 1e-3})
    return float(np.exp(found.x)) if loss(found.x) < loss(0.0) else 1.0


def temper(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``proba ** (1 / T)``, renormalised per row (``T == 1``: ``proba`` as is)."""
    if temperature == 1.0:
        return proba
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), _EPS, 1.0))
    return _softmax(logp / temperature)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    out = np.exp(z)
    return out / out.sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- scoring OOF
class _Stored(BaseEstimator):
    """Serves stored predictions to a scikit-learn scorer (scorers take an estimator)."""

    def __init__(self, pred=None, classes=None):
        self.pred = pred
        self.classes = classes


class _StoredClassifier(ClassifierMixin, _Stored):
    @property
    def classes_(self):
        return self.classes

    def predict(self, X):
        return self.classes[np.argmax(self.pred, axis=1)]

    def predict_proba(self, X):
        return self.pred


class _StoredRegressor(RegressorMixin, _Stored):
    def predict(self, X):
        return self.pred[:, 0] if self.pred.shape[1] == 1 else self.pred


def score_predictions(scorer, pred: np.ndarray, y: np.ndarray, classes=None) -> float:
    """``scorer`` applied to stored predictions (probabilities when ``classes`` is given)."""
    stored = _StoredRegressor(pred) if classes is None else _StoredClassifier(pred, classes)
    return float(scorer(stored, np.zeros((len(y), 1)), y))


# --------------------------------------------------------------------------- level-2 blender
class _BaseCaruana(BaseEstimator):
    """Greedy selection as an estimator over horizontally stacked prediction blocks."""

    _parameter_constraints: dict = {"n_iter": [IntInterval(1, None, closed="left")]}

    def __init__(self, n_iter: int = 25):
        self.n_iter = n_iter

    def _blocks(self, X, width: int) -> np.ndarray:
        X = np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)
        if X.shape[1] % width:
            raise ValueError(
                f"X must hold blocks of {width} prediction columns; got {X.shape[1]} columns."
            )
        return X.reshape(len(X), -1, width).transpose(1, 0, 2)  # (n_blocks, n, width)

    def _blend(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        return np.tensordot(self.weights_, self._blocks(X, self.width_), axes=1)


class CaruanaClassifier(ClassifierMixin, _BaseCaruana):
    """Greedy ensemble selection over class-probability blocks (the ``weighted`` family).

    ``X`` holds one block of ``n_classes`` probability columns per trial, side by side.

    Parameters
    ----------
    n_iter : int, default=25
        Picks of greedy selection with replacement.
    """

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        self.width_ = len(self.classes_)
        self.weights_ = ensemble_selection(list(self._blocks(X, self.width_)), codes,
                                           "classification", self.n_iter)
        return self

    def predict_proba(self, X):
        return self._blend(X)

    def predict(self, X):
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class CaruanaRegressor(RegressorMixin, _BaseCaruana):
    """Greedy ensemble selection over prediction blocks of ``n_outputs`` columns each."""

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True)
        target = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self.width_ = target.shape[1]
        self._single = np.ndim(y) == 1
        self.weights_ = ensemble_selection(list(self._blocks(X, self.width_)), target,
                                           "regression", self.n_iter)
        return self

    def predict(self, X):
        out = self._blend(X)
        return out[:, 0] if self._single else out


# --------------------------------------------------------------------------- the final model
@dataclass
class Member(BaseEstimator):
    """One trial as a part of the final model (a BaseEstimator so that ``save`` trusts it).

    Attributes
    ----------
    name : str
        The trial's name on the leaderboard.
    models : list of estimator
        Its fitted fold models (a bag, predictions averaged) or one model refit on all rows.
    inputs : tuple of str
        Level-2 trials: names of the trials whose predictions are its features.
    passthrough : bool
        Level-2 trials: the original features follow the input predictions.
    temperature : float
        Classification: its probabilities are tempered by this (:func:`temper`) before
        the weighted average; level-2 trials read them untempered, as they were fitted.
    view : {'encoded', 'native'}
        Which encoding of a raw table it reads (see :class:`TrialEnsemble` ``encoders``).
    """

    name: str
    models: list = field(repr=False)
    inputs: tuple[str, ...] = ()
    passthrough: bool = False
    temperature: float = 1.0
    view: str = "encoded"


def stack_features(parts: list[np.ndarray], X: Any, passthrough: bool):
    """Input trials' predictions side by side, then ``X`` when ``passthrough``."""
    Z = np.hstack(parts)
    if not passthrough:
        return Z
    return sp.hstack([sp.csr_matrix(Z), X], format="csr") if sp.issparse(X) else \
        np.hstack([Z, np.asarray(X, dtype=np.float64)])


class TrialEnsemble(BaseEstimator):
    """Weighted average of trials' predictions: the AutoML's final model.

    A fitted model, not one to clone and refit: it is a ``BaseEstimator`` so that
    :func:`moensemble.save` writes it and :func:`moensemble.load` trusts it.

    Parameters
    ----------
    members : dict of str to Member
        Every trial the weighted ones need (level-2 inputs included).
    weights : dict of str to float
        Weight of each selected trial; they sum to one.
    classes : ndarray or None
        Class labels (classification), the order of the probability columns.
    single_output : bool
        Regression: return 1-d predictions.
    encoders : dict of str to TableEncoder or None
        A raw table's encodings by view name (``'encoded'``: one-hot and scaled,
        ``'native'``: category columns and gaps as they are, for gradient boosting); each
        member reads its ``view``. None: ``X`` is given encoded.
    temperature : float, default=1.0
        Classification: the weighted average of the members' probabilities is tempered
        by this (:func:`temper`); an average of several models is flatter than each of
        them, and the AutoML fits this on the blend's out-of-fold log loss. The argmax,
        hence ``predict``, does not change.
    """

    def __init__(self, members: dict[str, Member], weights: dict[str, float],
                 classes: np.ndarray | None, single_output: bool = True,
                 encoders: dict | None = None, temperature: float = 1.0) -> None:
        self.members = members
        self.weights = weights
        self.classes = classes
        self.single_output = single_output
        self.encoders = encoders
        self.temperature = temperature

    def _view(self, X, view: str, memo: dict):
        if self.encoders is None:
            return X
        key = ("view", view)
        if key not in memo:  # each encoding once per call, whatever the number of members
            memo[key] = self.encoders[view].transform(X)
        return memo[key]

    def trial_predictions(self, X, name: str, _memo: dict | None = None) -> np.ndarray:
        """Aligned predictions of one trial (its bag's average) on ``X``."""
        memo = {} if _memo is None else _memo
        if name in memo:
            return memo[name]
        member = self.members[name]
        features = self._view(X, member.view, memo)
        if member.inputs:
            parts = [self.trial_predictions(X, n, memo) for n in member.inputs]
            features = stack_features(parts, features, member.passthrough)
        method = "predict_proba" if self.classes is not None else "predict"
        preds = [predict_aligned(m, features, _method(m, method), self.classes)
                 for m in member.models]
        memo[name] = np.mean(preds, axis=0)
        return memo[name]

    def _average(self, X) -> np.ndarray:
        memo: dict = {}
        total = None
        for name, weight in self.weights.items():
            pred = self.trial_predictions(X, name, memo)
            if self.classes is not None:
                pred = temper(pred, self.members[name].temperature)
            part = weight * pred
            total = part if total is None else total + part
        if self.classes is not None and self.temperature != 1.0:
            total = temper(total, self.temperature)
        return total

    def predict_proba(self, X) -> np.ndarray:
        return self._average(X)

    def predict(self, X) -> np.ndarray:
        out = self._average(X)
        if self.classes is not None:
            return self.classes[np.argmax(out, axis=1)]
        return out[:, 0] if self.single_output and out.shape[1] == 1 else out

    def __repr__(self) -> str:
        parts = ", ".join(f"{n}: {w:.2f}" for n, w in self.weights.items())
        return f"TrialEnsemble({{{parts}}})"


def _method(model, preferred: str) -> str:
    return preferred if hasattr(model, preferred) else "predict"
