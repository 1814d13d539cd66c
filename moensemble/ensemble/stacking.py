"""Stacked ensembles: a meta-model learned on the out-of-fold predictions of the bases."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin, RegressorMixin, TransformerMixin, _fit_context, clone
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.utils._param_validation import HasMethods, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import _check_feature_names_in, check_array, check_is_fitted

from moensemble.ensemble._base import _BaseOOFEnsemble
from moensemble.ensemble._oof import fit_full


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
    }

    def _default_final(self):
        if self.final_estimator is not None:
            return self.final_estimator
        return LogisticRegression() if self._kind == "classifier" else RidgeCV()

    def _meta_features(self, predictions: list[np.ndarray], X):
        """Join base predictions (and X with ``passthrough``) into the meta-model's input."""
        n_classes = len(getattr(self, "classes_", ()))
        columns = []
        for pred, method in zip(predictions, self.stack_method_, strict=True):
            # Binary probabilities (or one-hot votes) sum to one: the second column says it all.
            if n_classes == 2 and method in ("predict_proba", "predict"):
                pred = pred[:, 1:]
            columns.append(pred)
        self._meta_widths = [c.shape[1] for c in columns]
        meta = np.hstack(columns)
        if not self.passthrough:
            return meta
        X = check_array(X, accept_sparse=["csr", "csc", "coo"], input_name="X")
        if sp.issparse(X):
            return sp.hstack([sp.csr_matrix(meta), X], format="csr")
        return np.hstack([meta, X])

    def _fit_stack(self, X, y, sample_weight, method) -> None:
        # Every base is used, so its refit joins the folds' parallel batch.
        oof = self._out_of_fold(X, y, sample_weight, method, refit=self.refit)
        used = list(range(len(self._pairs)))
        self._fit_final_bases(oof, X, y, sample_weight, used)
        meta = self._meta_features([oof.predictions[name] for name, _ in self._pairs], X)
        self.final_estimator_ = fit_full(clone(self._default_final()), meta, y, sample_weight)

    def transform(self, X):
        """Meta-features: the bases' predictions (and ``X`` with ``passthrough=True``).

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        meta : {ndarray, sparse matrix} of shape (n_samples, n_meta_features)
        """
        return self._meta(X)

    def get_feature_names_out(self, input_features=None):
        """Names of the meta-features: ``<base>_<column>``, then the inputs with passthrough.

        Parameters
        ----------
        input_features : array-like of str, default=None
            Input names, used only with ``passthrough=True``.

        Returns
        -------
        names : ndarray of str
        """
        check_is_fitted(self)
        names = [
            f"{name}_{j}"
            for name, width in zip(self.named_estimators_, self._meta_widths, strict=True)
            for j in range(width)
        ]
        if self.passthrough:
            names += list(_check_feature_names_in(self, input_features))
        return np.asarray(names, dtype=object)

    def _meta(self, X):
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        return self._meta_features(self._base_predictions(X), X)


class StackingEnsembleClassifier(ClassifierMixin, _BaseStackingEnsemble):
    """A meta-classifier over the out-of-fold predictions of several classifiers.

    Unlike ``sklearn.ensemble.StackingClassifier``, the ``(base, fold)`` fits run in one joblib
    call, can be cached and shared with other ensembles (``memory``), and ``refit=False`` keeps
    the fold models instead of fitting every base once more on all rows.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base classifiers, given ``X`` unchanged and labels encoded as ``0..n_classes-1``.
    final_estimator : estimator, default=None
        Meta-classifier; ``LogisticRegression()`` when None.
    stack_method : {'auto', 'predict_proba', 'decision_function', 'predict'}, default='auto'
        Base output fed to the meta-model; ``'auto'`` takes the first available in that order.
        ``'predict'`` gives one-hot votes. Binary probabilities keep one column.
    passthrough : bool, default=False
        Also give the meta-model the original features (numeric, dense or sparse).
    cv : int, cross-validation generator or iterable, default=5
        Folds for the out-of-fold predictions; an int gives ``StratifiedKFold``.
    refit : bool, default=True
        Refit the bases on all rows; if False, keep their fold models as a bag.
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared across ensembles.
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
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
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.stack_method = stack_method
        self.passthrough = passthrough
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
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
            Passed to the bases' and the meta-model's ``fit``.

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
        Also give the meta-model the original features (numeric, dense or sparse).
    cv : int, cross-validation generator or iterable, default=5
        Folds for the out-of-fold predictions; an int gives ``KFold``.
    refit : bool, default=True
        Refit the bases on all rows; if False, keep their fold models as a bag.
    n_jobs : int, default=None
        Parallel jobs over all ``(base, fold)`` fits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared across ensembles.
    verbose : int, default=0
        joblib verbosity.

    Attributes
    ----------
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Fitted bases, in ``estimators`` order.
    named_estimators_ : Bunch
        The same, by name.
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
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.final_estimator = final_estimator
        self.passthrough = passthrough
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
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
            Passed to the bases' and the meta-model's ``fit``.

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
