"""Weighted ensembles: ``y = sum_i w_i y_i`` with weights learned on out-of-fold predictions.

Weights lie on the simplex (non-negative, summing to one). The default ``weighting`` is greedy
ensemble selection with replacement (Caruana et al., 2004, as in auto-sklearn and AutoGluon): it
adds, one at a time, the base that most lowers the out-of-fold loss of the running average; a
base's weight is the share of the picks that chose it, so bases that never help get weight 0 and
are never refitted. ``'optimize'`` minimizes the same loss over the simplex with scipy,
``'uniform'`` averages, and an array gives the weights outright.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.metrics import check_scoring, get_scorer_names
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from moensemble._validation import IntInterval
from moensemble.ensemble._base import _BaseOOFEnsemble
from moensemble.ensemble._weights import (
    _LOSSES,
    _combine,
    check_weights,
    greedy_weights,
    optimize_weights,
)


class _StoredPredictions(BaseEstimator):
    """Serves out-of-fold predictions to a scikit-learn scorer (scorers take an estimator)."""

    def __init__(self, prediction, proba=None, classes=None):
        self.prediction = prediction
        self.proba = proba
        self.classes = classes

    def fit(self, X, y):  # pragma: no cover - never fitted, only scored
        return self

    def predict(self, X):
        return self.prediction

    @available_if(lambda self: self.proba is not None)
    def predict_proba(self, X):
        return self.proba

    @property
    def classes_(self):
        return self.classes


class _StoredClassifier(ClassifierMixin, _StoredPredictions):
    pass


class _StoredRegressor(RegressorMixin, _StoredPredictions):
    pass


class _BaseWeightedEnsemble(_BaseOOFEnsemble):
    _parameter_constraints: dict = {
        **_BaseOOFEnsemble._parameter_constraints,
        "weighting": [StrOptions({"greedy", "optimize", "uniform"}), "array-like"],
        "n_iter": [IntInterval(1)],
        "scoring": [None, StrOptions(set(get_scorer_names())), callable],
        "cv": ["cv_object", StrOptions({"prefit"})],
        "random_state": ["random_state"],
    }
    _shuffle_int_cv = True

    def _explicit_weights(self) -> np.ndarray | None:
        if isinstance(self.weighting, str):
            return None
        return check_weights(self.weighting, len(self._pairs))

    def _solve(self, preds: np.ndarray, loss: Callable[[np.ndarray], float]) -> np.ndarray:
        explicit = self._explicit_weights()
        if explicit is not None:
            return explicit
        if self.weighting == "uniform":
            return np.full(len(preds), 1.0 / len(preds))
        if self.weighting == "greedy":
            return greedy_weights(preds, loss, self.n_iter)
        return optimize_weights(preds, loss)

    def _fit_weights(self, X, y, sample_weight, method, target, loss_name) -> None:
        """Learn weights on out-of-fold predictions, then refit the bases that got weight."""
        oof = self._out_of_fold(X, y, sample_weight, method)
        preds = np.stack([oof.predictions[name] for name, _ in self._pairs])
        sw = np.ones(len(target)) if sample_weight is None else sample_weight
        base_loss = _LOSSES[loss_name]
        weights = self._weights_for(preds, lambda p, t=target: base_loss(p, t, sw), target, sw)
        self.base_losses_ = np.array([base_loss(p, target, sw) for p in preds])
        used = np.flatnonzero(weights.reshape(len(preds), -1).sum(axis=1) > 0).tolist()
        self._fit_final_bases(oof, X, y, sample_weight, used)
        self._used_weights = weights[used]
        blended = _combine(self._used_weights, preds[used])
        self.ensemble_loss_ = base_loss(blended, target, sw)
        self.weights_ = weights
        self.oof_scores_ = self._oof_table(oof, preds, blended, y, sample_weight)

    def _oof_table(self, oof, preds, blended, y, sample_weight) -> pd.DataFrame:
        """One row per member and one for the ensemble: score, loss, weight, fit seconds."""
        names = [name for name, _ in self._pairs]
        scores = [self._oof_score(p, y, sample_weight) for p in [*preds, blended]]
        weights = self.weights_.reshape(len(names), -1).mean(axis=1)
        seconds = [oof.fit_seconds[name] for name in names]
        return pd.DataFrame(
            {
                "score": scores,
                "loss": [*self.base_losses_, self.ensemble_loss_],
                "weight": [*weights, weights.sum()],
                "fit_seconds": [*seconds, sum(seconds)],
            },
            index=pd.Index([*names, "ensemble"], name="member"),
        )

    def _weights_for(self, preds, loss, target, sw) -> np.ndarray:
        return self._solve(preds, loss)

    def _blend(self, X) -> np.ndarray:
        return _combine(self._used_weights, np.stack(self._base_predictions(X)))


class WeightedEnsembleClassifier(ClassifierMixin, _BaseWeightedEnsemble):
    """Average the class probabilities (or votes) of several classifiers with learned weights.

    Each base is fitted on ``cv`` folds; the weights that minimize ``loss`` on the out-of-fold
    predictions are found; then only the bases with non-zero weight are refitted on all rows
    (or, with ``refit=False``, their fold models are kept and averaged). Bases with weight 0
    are neither refitted nor run at predict time.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base classifiers. They receive ``X`` and ``y`` as given.
    weighting : {'greedy', 'optimize', 'uniform'} or array-like of shape (n_estimators,), \
            default='greedy'
        ``'greedy'``: ensemble selection with replacement (Caruana et al., 2004), ``n_iter``
        steps; the best prefix is kept, so the out-of-fold loss is never worse than the best
        single base's. ``'optimize'``: direct minimization of ``loss`` over the simplex with
        scipy's SLSQP (weights under 1e-3 dropped). ``'uniform'``: the plain average. An array:
        these weights (non-negative, not all zero; scaled to sum to 1).
    n_iter : int, default=50
        Greedy selections. AutoGluon uses 25 and auto-sklearn 50; 50 is kept because a weight
        is a multiple of ``1/n_iter`` (so 2% resolution) and the steps cost only numpy work on
        the stored out-of-fold predictions, never a model fit.
    voting : {'soft', 'hard'}, default='soft'
        ``'soft'``: weighted average of ``predict_proba``; every base with a possible non-zero
        weight must have it. ``'hard'``: weighted majority of the predicted labels (ties go to
        the first class); ``predict_proba`` is then unavailable.
    loss : {'auto', 'log_loss', 'brier_score'}, default='auto'
        Out-of-fold loss that ``'greedy'`` and ``'optimize'`` minimize: ``'auto'`` is the
        log-loss for soft voting and the Brier score of the vote shares for hard voting.
    scoring : str, callable or None, default=None
        scikit-learn scorer reported in ``oof_scores_`` (``None``: accuracy). It does not steer
        the weights: a smooth loss suits the greedy steps and the optimizer better than most
        scores.
    cv : int, cross-validation generator, iterable or 'prefit', default=5
        Folds for the out-of-fold predictions; an int gives ``StratifiedKFold`` (shuffled with
        ``random_state`` when that is set). ``'prefit'``: the bases are already fitted; they are
        not refitted and the weights are learned on their predictions for the ``X, y`` given to
        ``fit``, which must be held out from their training. Members wrapped in
        ``sklearn.frozen.FrozenEstimator`` are handled the same way with any ``cv``.
    refit : bool, default=True
        Refit the selected bases on all rows; if False, keep their fold models as a bag (no
        extra fit, ``cv`` models per base at predict time).
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared by every ensemble that uses the same cache, bases,
        data and folds.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of an int ``cv``. Nothing else is random: greedy ties go to the
        earlier base.
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    weights_ : ndarray of shape (n_estimators,)
        Weight of each base in ``estimators``, summing to 1.
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases with non-zero weight, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
    stack_method_ : list of str
        Prediction method of each fitted base.
    oof_scores_ : pandas.DataFrame
        One row per base and a last row ``'ensemble'``: ``score`` (by ``scoring``), ``loss``,
        ``weight`` and ``fit_seconds`` (over all folds; the ensemble row sums them), all out
        of fold.
    base_losses_ : ndarray of shape (n_estimators,)
        Out-of-fold loss of each base alone.
    ensemble_loss_ : float
        Out-of-fold loss of the weighted average.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from moensemble import WeightedEnsembleClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> ens = WeightedEnsembleClassifier(
    ...     [("lr", make_pipeline(StandardScaler(), LogisticRegression())), ("nb", GaussianNB())],
    ...     cv=3,
    ... ).fit(X, y)
    >>> bool(ens.ensemble_loss_ <= ens.base_losses_.min())
    True
    >>> list(ens.oof_scores_.index)
    ['lr', 'nb', 'ensemble']
    """

    _kind = "classifier"
    _parameter_constraints: dict = {
        **_BaseWeightedEnsemble._parameter_constraints,
        "voting": [StrOptions({"soft", "hard"})],
        "loss": [StrOptions({"auto", "log_loss", "brier_score"})],
    }

    def __init__(
        self,
        estimators,
        *,
        weighting="greedy",
        n_iter=50,
        voting="soft",
        loss="auto",
        scoring=None,
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.weighting = weighting
        self.n_iter = n_iter
        self.voting = voting
        self.loss = loss
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the bases out of fold, learn the weights, refit the selected bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input (with ``cv='prefit'``, the held-out set), passed to the bases
            unchanged.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to every base's ``fit`` (an error names a base that cannot take it) and used
            in the loss and the scores.

        Returns
        -------
        self : object
        """
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight)
        method = self._methods()
        loss = self.loss
        if loss == "auto":
            loss = "log_loss" if self.voting == "soft" else "brier_score"
        self._fit_weights(X, y, sample_weight, method, y, loss)
        return self

    def _methods(self) -> dict[str, str]:
        """``predict_proba`` for soft voting (required where the weight may be > 0)."""
        if self.voting == "hard":
            return {name: "predict" for name, _ in self._pairs}
        explicit = self._explicit_weights()
        lacking = [
            name
            for i, (name, est) in enumerate(self._pairs)
            if not hasattr(est, "predict_proba") and (explicit is None or explicit[i] > 0)
        ]
        if lacking:
            raise ValueError(
                f"voting='soft' averages predict_proba, which the member(s) {lacking} lack; use "
                "voting='hard', give them weight 0 in `weighting`, or wrap them in "
                "sklearn.calibration.CalibratedClassifierCV."
            )
        return {
            name: "predict_proba" if hasattr(est, "predict_proba") else "predict"
            for name, est in self._pairs
        }

    def _oof_score(self, pred: np.ndarray, y: np.ndarray, sample_weight) -> float:
        stored = _StoredClassifier(
            self.classes_[np.argmax(pred, axis=1)],
            proba=pred if self.voting == "soft" else None,
            classes=self.classes_,
        )
        scorer = check_scoring(stored, scoring=self.scoring or "accuracy")
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return float(scorer(stored, np.zeros((len(y), 1)), self.classes_[y], **kwargs))

    @available_if(lambda self: self.voting == "soft")
    def predict_proba(self, X):
        """Weighted average of the bases' class probabilities (soft voting only).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        proba = self._blend(X)
        return proba / proba.sum(axis=1, keepdims=True)

    def predict(self, X):
        """Class with the highest weighted probability (soft) or weighted vote (hard).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        return self.classes_[np.argmax(self._blend(X), axis=1)]


class WeightedEnsembleRegressor(RegressorMixin, _BaseWeightedEnsemble):
    """Average the predictions of several regressors with learned weights.

    Each base is fitted on ``cv`` folds; the weights that minimize ``loss`` on the out-of-fold
    predictions are found; then only the bases with non-zero weight are refitted on all rows
    (or, with ``refit=False``, their fold models are kept and averaged).

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base regressors, given ``X`` unchanged.
    weighting : {'greedy', 'optimize', 'uniform'} or array-like of shape (n_estimators,), \
            default='greedy'
        As in :class:`WeightedEnsembleClassifier`.
    n_iter : int, default=50
        Greedy selections (AutoGluon uses 25, auto-sklearn 50; see the classifier).
    loss : {'squared_error', 'absolute_error'}, default='squared_error'
        Out-of-fold loss that ``'greedy'`` and ``'optimize'`` minimize.
    per_output : bool, default=False
        With a 2-D target, learn one weight vector per output column (element-wise weighting;
        ``'greedy'`` and ``'optimize'`` only).
    scoring : str, callable or None, default=None
        scikit-learn scorer reported in ``oof_scores_`` (``None``: R^2); it does not steer the
        weights.
    cv : int, cross-validation generator, iterable or 'prefit', default=5
        Folds; an int gives ``KFold`` (shuffled with ``random_state`` when that is set).
        ``'prefit'`` and ``FrozenEstimator`` members as in the classifier.
    refit : bool, default=True
        Refit the selected bases on all rows; if False, keep their fold models as a bag.
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared across ensembles.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of an int ``cv``.
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    weights_ : ndarray of shape (n_estimators,) or (n_estimators, n_outputs)
        Weight of each base (per output with ``per_output=True``); each column sums to 1.
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases with non-zero weight, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
    stack_method_ : list of str
        Prediction method of each fitted base.
    oof_scores_ : pandas.DataFrame
        One row per base and a last row ``'ensemble'``: ``score``, ``loss``, ``weight`` (the
        mean over outputs with ``per_output=True``) and ``fit_seconds``, all out of fold.
    base_losses_ : ndarray of shape (n_estimators,)
        Out-of-fold loss of each base alone.
    ensemble_loss_ : float
        Out-of-fold loss of the weighted average.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> from moensemble import WeightedEnsembleRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> ens = WeightedEnsembleRegressor(
    ...     [("ridge", RidgeCV()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))],
    ...     cv=3,
    ... ).fit(X, y)
    >>> ens.weights_.round(2).tolist()
    [0.87, 0.13]
    """

    _kind = "regressor"
    _parameter_constraints: dict = {
        **_BaseWeightedEnsemble._parameter_constraints,
        "loss": [StrOptions({"squared_error", "absolute_error"})],
        "per_output": ["boolean"],
    }

    def __init__(
        self,
        estimators,
        *,
        weighting="greedy",
        n_iter=50,
        loss="squared_error",
        per_output=False,
        scoring=None,
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.weighting = weighting
        self.n_iter = n_iter
        self.loss = loss
        self.per_output = per_output
        self.scoring = scoring
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the bases out of fold, learn the weights, refit the selected bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input (with ``cv='prefit'``, the held-out set), passed to the bases
            unchanged.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to every base's ``fit`` and used in the loss and the scores.

        Returns
        -------
        self : object
        """
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight)
        target = y.reshape(len(y), -1)
        self._fit_weights(X, y, sample_weight, "predict", target, self.loss)
        return self

    def _weights_for(self, preds, loss, target, sw) -> np.ndarray:
        if (
            not (self.per_output and target.shape[1] > 1)
            or not isinstance(self.weighting, str)
            or self.weighting == "uniform"
        ):
            return self._solve(preds, loss)
        base_loss = _LOSSES[self.loss]
        columns = [
            self._solve(preds[:, :, [j]], lambda p, j=j: base_loss(p, target[:, [j]], sw))
            for j in range(target.shape[1])
        ]
        return np.stack(columns, axis=1)

    def _oof_score(self, pred: np.ndarray, y: np.ndarray, sample_weight) -> float:
        stored = _StoredRegressor(self._shape_regression(pred))
        scorer = check_scoring(stored, scoring=self.scoring or "r2")
        kwargs = {} if sample_weight is None else {"sample_weight": sample_weight}
        return float(scorer(stored, np.zeros((len(y), 1)), y, **kwargs))

    def predict(self, X):
        """Weighted average of the bases' predictions.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        return self._shape_regression(self._blend(X))
