"""Bag or refit: ``refit_full='auto'`` decides, out of fold, for the one trial the guard keeps.

A kept trial predicts with its bag of ``k`` fold models, each fitted on ``(k - 1) / k`` of
the rows; the alternative is one model refit on all of them. Which is better depends on the
model and the data (a 220-row panel: ``kernel_ridge`` refit 0.9406 against its bag's 0.9158;
diabetes: the bags of trees and boosting 0.02 to 0.07 above their refits), and the hold-out
that would tell is not there at fit time. The same choice one level down is: each outer
fold's model, fitted on the fold's whole training part (the refit's analogue), against a
bag of ``k`` clones fitted on the ``k`` inner folds of that training part (the bag's
analogue), both predicting the outer fold's test rows, which neither saw.
:func:`refit_gain` measures that on every row; the fold models are the trial's own, so it
costs ``k * k`` fits of the kept trial on fewer rows, run only while the budget lasts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold

from moensemble.search import bagging as _bagging
from moensemble.search.selection import gain_in_standard_errors

__all__ = ["REFIT_GAIN", "refit_gain"]

#: ``refit_full='auto'`` refits the kept trial when the refit's analogue beats the bag's by
#: more than this many standard errors of the per-row gain (0: whichever is better out of
#: fold; a tie keeps the bag).
REFIT_GAIN = 0.0


def refit_gain(runner: Any, record: Any, metric: Any = None) -> tuple[float, str]:
    """The refit's out-of-fold gain over the bag for ``record``, in standard errors.

    Returns ``(gain, why)``: ``gain`` is NaN when it was not measured, and ``why`` says
    why (a network stopped by the clock, repeated folds, too little time left, folds an
    inner split cannot make).
    """
    if record.bag is None or record.level != 1:
        return np.nan, "not a level-1 trial"
    if runner.n_repeats != 1:
        return np.nan, "repeated folds"
    if _bagging.stoppable(record.estimator):
        return np.nan, "a network trained to the clock"
    folds, k = runner.folds, len(runner.folds)
    fit_seconds = float(np.mean(record.bag.fit_times)) * ((k - 1) / k) ** _bagging.SCALING
    if _bagging.clock() + 1.3 * fit_seconds * k * k > runner.deadline:
        return np.nan, "no time left to measure it"
    X, y, classes = runner.views[record.view], runner.y, runner.classes
    splitter = (StratifiedKFold if classes is not None else KFold)(
        k, shuffle=True, random_state=runner.context.random_state)
    inner_bag = np.zeros(record.bag.oof.shape)
    for train, test in folds:
        try:
            inner = list(splitter.split(np.zeros(len(train)), np.asarray(y)[train]))
        except ValueError as exc:  # a class with fewer rows than folds in this part
            return np.nan, f"no inner folds: {exc}"
        for inner_train, _ in inner:
            pred, _, _ = _bagging._fit_predict(clone(record.estimator), X, y,
                                               train[inner_train], test, classes)
            inner_bag[test] += _bagging._columns(pred, classes, runner.n_columns) / k
        if _bagging.clock() > runner.deadline:
            return np.nan, "out of time while measuring it"
    gain = gain_in_standard_errors(np.asarray(record.bag.oof, dtype=np.float64), inner_bag,
                                   runner.target, runner.task, metric)
    return float(gain), ""
