"""Stacked ensembles: a meta-model learned on the out-of-fold predictions of the bases."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import (
    ClassifierMixin,
    RegressorMixin,
    TransformerMixin,
    _fit_context,
    clone,
    is_classifier,
)
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_feature_names_in, check_array, check_is_fitted

from moensemble._validation import IntInterval, check_estimators
from moensemble.ensemble._base import _BaseOOFEnsemble, check_sample_weight_support
from moensemble.ensemble._oof import check_finite_oof, fit_full, out_of_fold


def _final_has(method: str):
    """`available_if` check: the (fitted or default) meta-model has ``method``."""

    def check(self) -> bool:
        final = getattr(self, "final_estimator_", None) or self._default_final()
        return hasattr(final, method)

    return check


class _BaseStackingEnsemble(TransformerMixin, _BaseOOFEnsemble):
    _parameter_constraints: dict = {
        **_BaseOOFEnsemble._parameter_constraints,
        "final_estimator": [None, HasMethods("fit")],
        "passthrough": ["boolean"],
        "layers": [None, IntInterval(1), list],
        "cv": ["cv_object", StrOptions({"prefit"})],
        "random_state": ["random_state"],
    }
    _shuffle_int_cv = True

    def _default_final(self):
        if self.final_estimator is not None:
            return self.final_estimator
        return LogisticRegression() if self._kind == "classifier" else RidgeCV()

    def _upper_levels(self) -> list[list[tuple[str, Any]]]:
        """Levels between the bases and the meta-model (an int repeats the bases)."""
        if self.layers is None:
            return []
        if isinstance(self.layers, Integral):
            levels = [self.estimators] * (self.layers - 1)
        else:
            levels = self.layers
        if levels and self._is_prefit():
            raise ValueError(
                "`layers` are trained on out-of-fold predictions, which cv='prefit' does not "
                "make; use one level (layers=None) with cv='prefit', or a cross-validation cv."
            )
        return [
            check_estimators(level, param=f"layers[{i}]", kind=self._kind)
            for i, level in enumerate(levels)
        ]

    def _columns(self, pred: np.ndarray, method: str) -> np.ndarray:
        # Binary probabilities (or one-hot votes) sum to one: the second column says it all.
        if len(getattr(self, "classes_", ())) == 2 and method in ("predict_proba", "predict"):
            return pred[:, 1:]
        return pred

    def _meta_features(self, predictions: list[np.ndarray], methods: list[str], X):
        """Join a level's predictions (and X with ``passthrough``) into the next level's input."""
        meta = np.hstack([self._columns(p, m) for p, m in zip(predictions, methods, strict=True)])
        if not self.passthrough:
            return meta
        X = check_array(X, accept_sparse=["csr", "csc", "coo"], input_name="X")
        if sp.issparse(X):
            return sp.hstack([sp.csr_matrix(meta), X], format="csr")
        return np.hstack([meta, X])

    def _check_final_kind(self, final) -> None:
        """A classifier stack needs a classifier on top (a regressor's output would be cut to
        class codes), a regressor stack a model that is not a classifier."""
        if self._kind == "classifier" and not is_classifier(final):
            raise TypeError(
                f"`final_estimator` of {type(self).__name__} must be a classifier (it predicts "
                f"the class from the members' predictions); got {final!r}. Use e.g. "
                "LogisticRegression(), or StackingEnsembleRegressor for a numeric target."
            )
        if self._kind == "regressor" and is_classifier(final):
            raise TypeError(
                f"`final_estimator` of {type(self).__name__} must be a regressor; got {final!r}."
            )

    def _fit_stack(self, X, y, sample_weight, method) -> None:
        levels = self._upper_levels()
        final = self._default_final()
        self._check_final_kind(final)
        for level in levels:
            check_sample_weight_support(level, sample_weight, where="layers")
        check_sample_weight_support([("final_estimator", final)], sample_weight, where="final")
        # Every base is used, so its refit joins the folds' parallel batch.
        oof = self._out_of_fold(X, y, sample_weight, method, refit=self.refit)
        self._fit_final_bases(oof, X, y, sample_weight, list(range(len(self._pairs))))
        names, methods = [name for name, _ in self._pairs], self.stack_method_
        preds = [oof.predictions[name] for name in names]
        meta = self._meta_features(preds, methods, X)
        self.layers_, self._layer_methods = [], []
        for level in levels:
            # The same folds at every level: a row's input to level k comes from models of
            # level k-1 that did not see it.
            level_oof = out_of_fold(
                level,
                meta,
                self._base_targets(y),
                cv=oof.folds,
                method=method,
                sample_weight=sample_weight,
                n_jobs=self.n_jobs,
                memory=self.memory,
                refit=self.refit,
                keep_fold_estimators=not self.refit,
                verbose=self.verbose,
            )
            check_finite_oof(level_oof, where="layers")
            names = [name for name, _ in level]
            models = level_oof.refitted if self.refit else level_oof.fold_estimators
            self.layers_.append(Bunch(**{name: models[name] for name in names}))
            methods = [level_oof.methods[name] for name in names]
            self._layer_methods.append(methods)
            preds = [level_oof.predictions[name] for name in names]
            meta = self._meta_features(preds, methods, X)
        self._meta_names = [
            f"{name}_{j}"
            for name, pred, method in zip(names, preds, methods, strict=True)
            for j in range(self._columns(pred, method).shape[1])
        ]
        self.final_estimator_ = fit_full(clone(final), meta, y, sample_weight)

    def transform(self, X):
        """Meta-features: the last level's predictions (and ``X`` with ``passthrough=True``).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        meta : {ndarray, sparse matrix} of shape (n_samples, n_meta_features)
        """
        return self._meta(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the meta-features: ``<member>_<column>``, then the inputs with passthrough.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input names, used only with ``passthrough=True``.

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self)
        names = list(self._meta_names)
        if self.passthrough:
            names += list(_check_feature_names_in(self, input_features))
        return np.asarray(names, dtype=object)

    def _meta(self, X):
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        meta = self._meta_features(self._base_predictions(X), self.stack_method_, X)
        for level, methods in zip(self.layers_, self._layer_methods, strict=True):
            preds = self._predict_models(list(level.values()), methods, meta)
            meta = self._meta_features(preds, methods, X)
        return meta


class StackingEnsembleClassifier(ClassifierMixin, _BaseStackingEnsemble):
    """A meta-classifier over the out-of-fold predictions of several classifiers.

    Unlike ``sklearn.ensemble.StackingClassifier``, the ``(base, fold)`` fits run in one joblib
    call, can be cached and shared with other ensembles (``memory``), and ``refit=False`` keeps
    the fold models instead of fitting every base once more on all rows.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base classifiers, given ``X`` and ``y`` as given.
    final_estimator : estimator, default=None
        Meta-classifier; ``LogisticRegression()`` when None.
    stack_method : {'auto', 'predict_proba', 'decision_function', 'predict'}, default='auto'
        Base output fed to the meta-model; ``'auto'`` takes the first available in that order.
        ``'predict'`` gives one-hot votes. Binary probabilities keep one column.
    passthrough : bool, default=False
        Also give the meta-model (and every upper level) the original features (numeric, dense
        or sparse).
    layers : list of list of (str, estimator), int or None, default=None
        Stacking levels between ``estimators`` and ``final_estimator``. Each level is fitted,
        on the same folds, on the out-of-fold predictions of the level below (plus ``X`` with
        ``passthrough=True``), and the meta-model on the last level's. An int ``n`` means ``n``
        levels in all, the ``n - 1`` upper ones made of clones of ``estimators`` (AutoGluon's
        multi-layer stacking); None or 1: the bases only.
    cv : int, cross-validation generator, iterable or 'prefit', default=5
        Folds for the out-of-fold predictions; an int gives ``StratifiedKFold`` (shuffled with
        ``random_state`` when that is set). ``'prefit'``: the bases are already fitted and are
        not refitted; the meta-model is learned on their predictions for the ``X, y`` given to
        ``fit``, which must be held out from their training (as in scikit-learn's
        ``StackingClassifier``). Members wrapped in ``sklearn.frozen.FrozenEstimator`` are used
        the same way with any ``cv``.
    refit : bool, default=True
        Refit the bases on all rows; if False, keep their fold models as a bag.
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared across ensembles.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of an int ``cv`` (the meta-model keeps its own seed).
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
    layers_ : list of Bunch
        Fitted models of each upper level, by name (fold bags with ``refit=False``).
    final_estimator_ : estimator
        Fitted meta-classifier.
    stack_method_ : list of str
        Prediction method of each base.
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.naive_bayes import GaussianNB
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from moensemble import StackingEnsembleClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> stack = StackingEnsembleClassifier(
    ...     [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(random_state=0))], cv=3
    ... ).fit(X, y)
    >>> stack.transform(X[:1]).shape
    (1, 6)
    """

    _kind = "classifier"
    _parameter_constraints: dict = {
        **_BaseStackingEnsemble._parameter_constraints,
        "stack_method": [StrOptions({"auto", "predict_proba", "decision_function", "predict"})],
    }

    def __init__(
        self,
        estimators,
        final_estimator=None,
        *,
        stack_method="auto",
        passthrough=False,
        layers=None,
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.stack_method = stack_method
        self.passthrough = passthrough
        self.layers = layers
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the bases out of fold, the meta-classifier on their predictions, then the bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input, passed to the bases unchanged.
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to the ``fit`` of every base, level and the meta-model (an error names one
            that cannot take it).

        Returns
        -------
        self : object
        """
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight)
        self._fit_stack(X, y, sample_weight, self.stack_method)
        return self

    def predict(self, X):
        """Class predicted by the meta-classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        meta = self._meta(X)
        return self.classes_[np.asarray(self.final_estimator_.predict(meta), dtype=int)]

    @available_if(_final_has("predict_proba"))
    def predict_proba(self, X):
        """Class probabilities of the meta-classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        meta = self._meta(X)
        return self.final_estimator_.predict_proba(meta)

    @available_if(_final_has("decision_function"))
    def decision_function(self, X):
        """Decision values of the meta-classifier.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes)
        """
        meta = self._meta(X)
        return self.final_estimator_.decision_function(meta)


class StackingEnsembleRegressor(RegressorMixin, _BaseStackingEnsemble):
    """A meta-regressor over the out-of-fold predictions of several regressors.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base regressors, given ``X`` unchanged.
    final_estimator : estimator, default=None
        Meta-regressor; ``RidgeCV()`` when None.
    passthrough : bool, default=False
        Also give the meta-model (and every upper level) the original features (numeric, dense
        or sparse).
    layers : list of list of (str, estimator), int or None, default=None
        Stacking levels between ``estimators`` and ``final_estimator``. Each level is fitted,
        on the same folds, on the out-of-fold predictions of the level below (plus ``X`` with
        ``passthrough=True``), and the meta-model on the last level's. An int ``n`` means ``n``
        levels in all, the ``n - 1`` upper ones made of clones of ``estimators`` (AutoGluon's
        multi-layer stacking); None or 1: the bases only.
    cv : int, cross-validation generator, iterable or 'prefit', default=5
        Folds for the out-of-fold predictions; an int gives ``KFold`` (shuffled with
        ``random_state`` when that is set). ``'prefit'`` and ``FrozenEstimator`` members as in
        :class:`StackingEnsembleClassifier`.
    refit : bool, default=True
        Refit the bases on all rows; if False, keep their fold models as a bag.
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared across ensembles.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle of an int ``cv`` (the meta-model keeps its own seed).
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
    layers_ : list of Bunch
        Fitted models of each upper level, by name (fold bags with ``refit=False``).
    final_estimator_ : estimator
        Fitted meta-regressor.
    stack_method_ : list of str
        Prediction method of each base (always ``'predict'``).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from sklearn.linear_model import RidgeCV
    >>> from sklearn.neighbors import KNeighborsRegressor
    >>> from moensemble import StackingEnsembleRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> stack = StackingEnsembleRegressor(
    ...     [("ridge", RidgeCV()), ("knn", KNeighborsRegressor())], cv=3
    ... ).fit(X, y)
    >>> stack.predict(X[:3]).shape
    (3,)
    """

    _kind = "regressor"

    def __init__(
        self,
        estimators,
        final_estimator=None,
        *,
        passthrough=False,
        layers=None,
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        random_state=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.passthrough = passthrough
        self.layers = layers
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
        self.random_state = random_state
        self.verbose = verbose

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, sample_weight=None):
        """Fit the bases out of fold, the meta-regressor on their predictions, then the bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input, passed to the bases unchanged.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Passed to the ``fit`` of every base, level and the meta-model (an error names one
            that cannot take it).

        Returns
        -------
        self : object
        """
        X, y, sample_weight = self._validate_fit_input(X, y, sample_weight)
        self._fit_stack(X, y, sample_weight, "predict")
        return self

    def predict(self, X):
        """Prediction of the meta-regressor.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        meta = self._meta(X)
        return self._shape_regression(np.asarray(self.final_estimator_.predict(meta)))
