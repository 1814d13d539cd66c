"""Out-of-fold engine shared by every ensemble.

Each base model is fitted once per fold; all ``(base, fold)`` pairs go to one joblib call so
that two cores stay busy even with two bases, and each pair can be cached on disk with
``joblib.Memory`` so that several ensembles over the same bases (a weighted ensemble, a stack, a
leaderboard) pay for the out-of-fold fits once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import joblib
import numpy as np
from sklearn.base import clone, is_classifier
from sklearn.model_selection import check_cv
from sklearn.utils import _safe_indexing
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import _num_samples, check_memory

from moensemble._validation import check_estimators
from moensemble.folds import predict_aligned

_METHODS = ("predict_proba", "decision_function", "predict")


@dataclass
class OutOfFold:
    """Out-of-fold predictions of several base models on shared folds.

    Attributes
    ----------
    predictions : dict of str to ndarray of shape (n_samples, n_columns)
        For each base, the prediction of the fold model that did not see the row. Classifiers
        give ``(n_samples, n_classes)`` probabilities (``predict_proba``), one-hot labels
        (``predict``), or decision values (``(n_samples, 1)`` when binary); regressors give
        ``(n_samples, n_outputs)``.
    methods : dict of str to str
        The prediction method used for each base.
    folds : list of (ndarray, ndarray)
        ``(train_indices, test_indices)`` of each fold; the test indices partition the rows.
    fold_estimators : dict of str to list of estimator, or None
        The fitted model of each fold, per base, with ``keep_fold_estimators=True``.
    fit_seconds : dict of str to float
        Total time spent fitting each base over all folds (the original time when cached).
    classes : ndarray of shape (n_classes,) or None
        The sorted labels that the columns of classifier predictions follow.
    refitted : dict of str to estimator or None
        With ``refit=True``, each base fitted on all rows.
    """

    predictions: dict[str, np.ndarray]
    methods: dict[str, str]
    folds: list[tuple[np.ndarray, np.ndarray]]
    fold_estimators: dict[str, list[Any]] | None = field(repr=False)
    fit_seconds: dict[str, float]
    classes: np.ndarray | None = None
    refitted: dict[str, Any] | None = field(default=None, repr=False)


def resolve_method(estimator, method: str, *, name: str = "estimator") -> str:
    """Return the prediction method to use for ``estimator``.

    ``'auto'`` picks ``predict_proba``, then ``decision_function``, then ``predict`` for a
    classifier, and ``predict`` for anything else.
    """
    if method == "auto":
        if not is_classifier(estimator):
            return "predict"
        return next(m for m in _METHODS if hasattr(estimator, m))
    if method not in _METHODS:
        raise ValueError(
            f"The prediction method for {name!r} must be 'auto' or one of {list(_METHODS)}; "
            f"got {method!r}."
        )
    if not hasattr(estimator, method):
        raise ValueError(f"Base estimator {name!r} has no method {method!r}: {estimator!r}.")
    return method


def fit_full(estimator, X, y, sample_weight):
    """Fit ``estimator`` on all rows."""
    kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
    return estimator.fit(X, y, **kwargs)


# The cacheable units take the data with a `data` token, its hash computed once per call of the
# engine: the cache then hashes only the estimator and the fold indices of each task, instead
# of X once per (base, fold) in every worker.
_DATA_ARGS = ["X", "y", "sample_weight"]


def _fit_all(estimator, X, y, sample_weight, data):
    """``fit_full`` as a cacheable unit (shared by the engine's and the ensembles' refits)."""
    return fit_full(estimator, X, y, sample_weight)


def _data_token(memory, X, y, sample_weight) -> str | None:
    return None if memory.location is None else joblib.hash((X, y, sample_weight))


def _run(tasks: list[tuple[Any, tuple]], n_jobs, verbose) -> list:
    """Run ``(cached function, args)`` tasks: cache hits are read here, the rest in parallel.

    Shipping X to a worker only to read a result back from disk costs more than the read.
    """
    results: list = [None] * len(tasks)
    todo = []
    for i, (func, args) in enumerate(tasks):
        if func.check_call_in_cache(*args):
            results[i] = func(*args)
        else:
            todo.append(i)
    fresh = Parallel(n_jobs=n_jobs, verbose=verbose)(
        delayed(tasks[i][0])(*tasks[i][1]) for i in todo
    )
    for i, result in zip(todo, fresh, strict=True):
        results[i] = result
    return results


def check_finite_oof(oof: OutOfFold, where: str = "estimators") -> None:
    """Refuse out-of-fold predictions holding NaN or inf, naming the member(s) that gave them.

    A weighting, a meta-model or a router fitted on them would fail obscurely or return NaN.
    """
    bad = {}
    for name, pred in oof.predictions.items():
        finite = np.isfinite(np.asarray(pred, dtype=np.float64))
        if not finite.all():
            bad[name] = int((~finite).reshape(len(finite), -1).any(axis=1).sum())
    if bad:
        rows = ", ".join(f"{name!r} ({n} of {_num_samples(next(iter(oof.predictions.values())))}"
                         " rows)" for name, n in bad.items())
        raise ValueError(
            f"`{where}` member(s) {rows} gave NaN or infinite out-of-fold predictions "
            f"({', '.join(sorted({oof.methods[n] for n in bad}))}); fix or scale their input, "
            "or remove them from the ensemble."
        )


def refit_all(estimators: Sequence[Any], X, y, sample_weight=None, *, memory=None,
              n_jobs=None, verbose=0) -> list:
    """Fit clones of ``estimators`` on all rows in parallel, through the engine's cache."""
    cache = check_memory(memory)
    fit_all, data = cache.cache(_fit_all, ignore=_DATA_ARGS), _data_token(
        cache, X, y, sample_weight)
    return _run([(fit_all, (clone(est), X, y, sample_weight, data)) for est in estimators],
                n_jobs, verbose)


def _fit_predict_fold(estimator, X, y, train, test, method, classes, sample_weight, keep, data):
    """Fit ``estimator`` on the ``train`` rows; predict the ``test`` rows (a cacheable unit).

    The fitted model comes back only when ``keep``: shipping every fold's forest or neighbour
    index back from the workers (and into the cache) costs more than some of the fits.
    """
    fit_kwargs = {}
    if sample_weight is not None:
        fit_kwargs["sample_weight"] = _safe_indexing(sample_weight, train)
    start = time.perf_counter()
    estimator.fit(_safe_indexing(X, train), _safe_indexing(y, train), **fit_kwargs)
    seconds = time.perf_counter() - start
    prediction = predict_aligned(estimator, _safe_indexing(X, test), method, classes)
    return (estimator if keep else None), prediction, seconds


def make_folds(cv, X, y, *, classifier: bool, groups=None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Materialize the folds of ``cv`` once and check that the test folds partition the rows."""
    splitter = check_cv(cv, y, classifier=classifier)
    n_samples = _num_samples(X)
    try:
        folds = [(np.asarray(tr), np.asarray(te)) for tr, te in splitter.split(X, y, groups)]
    except ValueError as exc:  # e.g. more folds than samples, or than members of every class
        raise ValueError(f"`cv`={cv!r} cannot split these {n_samples} samples: {exc}") from exc
    tested = np.sort(np.concatenate([te for _, te in folds]))
    if not np.array_equal(tested, np.arange(n_samples)):
        raise ValueError(
            "`cv` must put every row in exactly one test fold (KFold, StratifiedKFold, "
            f"GroupKFold, ...) to give out-of-fold predictions; got {splitter!r}."
        )
    return folds


def out_of_fold(
    estimators: Sequence[tuple[str, Any]],
    X,
    y,
    *,
    cv=5,
    method: str | Mapping[str, str] = "auto",
    groups=None,
    sample_weight=None,
    n_jobs: int | None = None,
    memory=None,
    refit: bool = False,
    keep_fold_estimators: bool = False,
    verbose: int = 0,
) -> OutOfFold:
    """Fit each base model on each fold and collect its out-of-fold predictions.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base models; they are cloned, never modified.
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Training input, passed to the bases as is (rows selected per fold).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
        Targets.
    cv : int, cross-validation generator or iterable, default=5
        Folds; an int gives ``StratifiedKFold`` when every base is a classifier and ``KFold``
        otherwise. The test folds must partition the rows.
    method : {'auto', 'predict_proba', 'decision_function', 'predict'} or dict, default='auto'
        Prediction method for every base, or a dict from base name to method.
    groups : array-like of shape (n_samples,), default=None
        Group labels for group-aware splitters.
    sample_weight : array-like of shape (n_samples,), default=None
        Passed to each base's ``fit`` for its training rows.
    n_jobs : int, default=None
        Number of parallel jobs over all ``(base, fold)`` pairs; uses ``joblib.parallel_config``.
    memory : str, joblib.Memory or None, default=None
        Cache for the ``(base, fold)`` fits (and refits). The same bases, data and folds are
        fitted only once across calls and across ensembles.
    refit : bool, default=False
        Also fit each base on all rows, in the same parallel batch as the folds (so a long
        refit starts at once instead of after the last fold).
    keep_fold_estimators : bool, default=False
        Return the fitted model of each fold (for a bag of fold models).
    verbose : int, default=0
        joblib verbosity.

    Returns
    -------
    OutOfFold
        Predictions, methods, folds, fold models and fit times, keyed by base name.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from moensemble import out_of_fold
    >>> X, y = load_iris(return_X_y=True)
    >>> oof = out_of_fold([("lr", LogisticRegression(max_iter=500)),
    ...                    ("tree", DecisionTreeClassifier(random_state=0))], X, y, cv=3)
    >>> oof.predictions["lr"].shape
    (150, 3)
    """
    pairs = check_estimators(estimators)
    names = [name for name, _ in pairs]
    if isinstance(method, Mapping):
        unknown = sorted(set(method) - set(names))
        if unknown:
            raise ValueError(f"`method` names bases that are not in `estimators`: {unknown}.")
    methods = {
        name: resolve_method(
            est, method.get(name, "auto") if isinstance(method, Mapping) else method, name=name
        )
        for name, est in pairs
    }
    any_classifier = any(is_classifier(est) for _, est in pairs)
    classes = np.unique(y) if any_classifier else None
    all_classifiers = all(is_classifier(est) for _, est in pairs)
    folds = make_folds(cv, X, y, classifier=all_classifiers, groups=groups)

    cache = check_memory(memory)
    fit_predict = cache.cache(_fit_predict_fold, ignore=_DATA_ARGS)
    fit_all = cache.cache(_fit_all, ignore=_DATA_ARGS)
    data = _data_token(cache, X, y, sample_weight)
    # Refits first: they are the longest tasks, so they should not be the last to start.
    tasks = [(fit_all, (clone(est), X, y, sample_weight, data)) for _, est in pairs if refit]
    tasks += [
        (fit_predict, (clone(est), X, y, train, test, methods[name], classes, sample_weight,
                       keep_fold_estimators, data))
        for name, est in pairs
        for train, test in folds
    ]
    results = _run(tasks, n_jobs, verbose)
    n_refit = len(pairs) if refit else 0
    oof = _assemble(names, methods, folds, results[n_refit:], classes, _num_samples(X))
    if not keep_fold_estimators:
        oof.fold_estimators = None
    if refit:
        oof.refitted = dict(zip(names, results[:n_refit], strict=True))
    return oof


def _assemble(names, methods, folds, results, classes, n_samples) -> OutOfFold:
    """Scatter the per-fold predictions back into row order, per base."""
    predictions, fold_estimators, fit_seconds = {}, {}, {}
    n_folds = len(folds)
    for b, name in enumerate(names):
        chunk = results[b * n_folds : (b + 1) * n_folds]
        width = chunk[0][1].shape[1]
        out = np.empty((n_samples, width))
        for (_, test), (_, prediction, _) in zip(folds, chunk, strict=True):
            if prediction.shape[1] != width:
                raise ValueError(
                    f"Base {name!r} gave predictions of different widths across folds "
                    f"({width} and {prediction.shape[1]})."
                )
            out[test] = prediction
        predictions[name] = out
        fold_estimators[name] = [est for est, _, _ in chunk]
        fit_seconds[name] = float(sum(seconds for _, _, seconds in chunk))
    return OutOfFold(predictions, methods, folds, fold_estimators, fit_seconds, classes)
