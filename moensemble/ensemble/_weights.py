"""Weight solvers of the weighted ensembles: losses on out-of-fold predictions, greedy
ensemble selection (Caruana et al., 2004), a simplex optimizer, explicit weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize

_EPS = 1e-15
# Weights below this are noise from the continuous solver; dropping them saves whole bases.
_MIN_WEIGHT = 1e-3

Loss = Callable[[np.ndarray, np.ndarray, np.ndarray], float]


def _log_loss(proba: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
    picked = proba[np.arange(len(y)), y]
    return float(-np.average(np.log(np.clip(picked, _EPS, None)), weights=sw))


def _brier_score(proba: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
    err = proba.copy()
    err[np.arange(len(y)), y] -= 1.0
    return float(np.average((err**2).sum(axis=1), weights=sw))


def _squared_error(pred: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
    return float(np.average(((pred - y) ** 2).mean(axis=1), weights=sw))


def _absolute_error(pred: np.ndarray, y: np.ndarray, sw: np.ndarray) -> float:
    return float(np.average(np.abs(pred - y).mean(axis=1), weights=sw))


_LOSSES: dict[str, Loss] = {
    "log_loss": _log_loss,
    "brier_score": _brier_score,
    "squared_error": _squared_error,
    "absolute_error": _absolute_error,
}


def greedy_weights(preds: np.ndarray, loss: Callable[[np.ndarray], float], n_iter: int, *,
                   batch_loss: Callable[[np.ndarray], np.ndarray] | None = None):
    """Greedy ensemble selection with replacement.

    Parameters
    ----------
    preds : ndarray of shape (n_bases, n_samples, n_columns)
        Out-of-fold predictions of each base.
    loss : callable
        Maps a prediction of shape (n_samples, n_columns) to a number to minimize.
    n_iter : int
        Number of selections; the prefix with the lowest loss is kept, so the result is never
        worse than the best single base.
    batch_loss : callable, default=None
        Maps a stack of candidate predictions, shape (n_candidates, n_samples, n_columns),
        to their losses at once; used instead of ``loss`` (pass ``loss=None``) when given,
        on chunks of candidates of about 32 MB.

    Returns
    -------
    weights : ndarray of shape (n_bases,)
    """
    counts = np.zeros(len(preds))
    total = np.zeros_like(preds[0])
    best_loss, best_counts = np.inf, counts
    chunk = max(1, int(4e6 // max(preds[0].size, 1)))
    for step in range(1, n_iter + 1):
        if batch_loss is None:
            losses = [loss((total + p) / step) for p in preds]
        else:
            losses = np.concatenate([batch_loss((total + preds[i:i + chunk]) / step)
                                     for i in range(0, len(preds), chunk)])
        pick = int(np.argmin(losses))  # ties go to the earlier base
        counts = counts.copy()
        counts[pick] += 1
        total += preds[pick]
        # Keep the best prefix: a later forced pick can make the average slightly worse, and
        # step 1 (the best single base) bounds the result.
        if losses[pick] < best_loss:
            best_loss, best_counts = losses[pick], counts
    return best_counts / best_counts.sum()


def optimize_weights(preds: np.ndarray, loss: Callable[[np.ndarray], float]) -> np.ndarray:
    """Minimize ``loss(sum_i w_i preds[i])`` over the simplex with SLSQP; see greedy_weights."""
    n_bases = len(preds)

    def objective(w: np.ndarray) -> float:
        return loss(np.tensordot(w, preds, axes=1))

    result = minimize(
        objective,
        np.full(n_bases, 1.0 / n_bases),
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_bases,
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1.0},
    )
    weights = np.clip(result.x, 0.0, None)
    weights[weights < _MIN_WEIGHT] = 0.0
    if weights.sum() == 0:  # the solver failed outright: fall back to the best single base
        weights[int(np.argmin([loss(p) for p in preds]))] = 1.0
    return weights / weights.sum()


def _combine(weights: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """``sum_i w_i preds[i]``; weights of shape (n_bases,) or (n_bases, n_columns)."""
    w = weights.reshape(len(weights), 1, -1)
    return (w * preds).sum(axis=0)


def check_weights(weighting, n_estimators: int) -> np.ndarray:
    """Validate explicit ``weighting``: one finite, non-negative weight per estimator, not all 0.

    Returns the weights scaled to sum to 1.
    """
    try:
        weights = np.asarray(weighting, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`weighting` must be numbers; got {weighting!r}.") from exc
    if weights.shape != (n_estimators,):
        raise ValueError(
            f"`weighting` must have one weight per estimator ({n_estimators}); got shape "
            f"{weights.shape}."
        )
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"`weighting` must be finite and non-negative; got {weights.tolist()}.")
    if weights.sum() == 0:
        raise ValueError("`weighting` is all zero; at least one estimator needs a weight > 0.")
    return weights / weights.sum()
