"""Plumbing shared by the weighted and stacked ensembles.

Both learn a combiner on out-of-fold predictions of their bases, then either refit the bases
that the combiner uses on all rows, or keep each base's fold models as a bag and average them.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    _num_samples,
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    get_tags,
    has_fit_parameter,
    validate_data,
)

from moensemble._validation import IntInterval, check_estimators
from moensemble.ensemble._oof import (
    OutOfFold,
    check_finite_oof,
    out_of_fold,
    predict_aligned,
    refit_all,
)


def _as_rows(X):
    """Make ``X`` row-indexable without changing what the bases see.

    DataFrames stay DataFrames (bases may select columns by name); lists become arrays of their
    own dtype and sparse input becomes CSR/CSC. Values (NaN, strings) are left for the bases to
    accept or refuse.
    """
    if hasattr(X, "columns") and hasattr(X, "shape"):  # pandas / polars data frames
        return X
    return check_array(
        X, accept_sparse=["csr", "csc"], dtype=None, ensure_all_finite=False, input_name="X"
    )


def _numeric_values(X) -> np.ndarray | None:
    """The numeric values of ``X`` (to look for NaN/inf), or None when it has none."""
    if sp.issparse(X):
        return X.data
    if hasattr(X, "select_dtypes"):  # pandas: object/category columns are the bases' business
        return X.select_dtypes("number").to_numpy(dtype=np.float64, na_value=np.nan)
    X = np.asarray(X)
    return X if X.dtype.kind in "fc" else None


def _check_finite_for(pairs, X) -> None:
    """Refuse inf, and NaN unless every base takes it, naming the bases that do not."""
    values = _numeric_values(X)
    if values is None or values.size == 0 or np.isfinite(values).all():
        return
    if np.isinf(values).any():
        raise ValueError("Input X contains infinity; replace it (no base model takes it).")
    refusing = [name for name, est in pairs if not get_tags(est).input_tags.allow_nan]
    if refusing:
        raise ValueError(
            f"Input X contains NaN, which the base(s) {refusing} cannot take; impute it first "
            "(e.g. a Pipeline with SimpleImputer) or use bases that accept missing values."
        )


def check_sample_weights(sample_weight, X) -> np.ndarray | None:
    """Finite, non-negative weights, one per row, not all zero (or None)."""
    if sample_weight is None:
        return None
    return _check_sample_weight(sample_weight, X, ensure_non_negative=True)


def _text_columns(X) -> list:
    """Columns of ``X`` holding values that are not numbers (names for a DataFrame)."""
    if hasattr(X, "columns") and hasattr(X, "dtypes"):
        return [c for c, dtype in zip(X.columns, X.dtypes, strict=True)
                if getattr(dtype, "kind", "O") not in "biufcmM"
                and not _is_numeric_column(np.asarray(X[c], dtype=object))]
    if isinstance(X, np.ndarray) and X.dtype.kind in "OUS" and X.ndim == 2:
        return [j for j in range(X.shape[1]) if not _is_numeric_column(X[:, j])]
    return []


def _is_numeric_column(column: np.ndarray) -> bool:
    try:
        column.astype(np.float64)
    except (TypeError, ValueError):
        return False
    return True


def explain_text_columns(exc: ValueError, X) -> ValueError:
    """A base's "could not convert string to float" rewritten to name the columns at fault."""
    columns = _text_columns(X)
    if "could not convert" not in str(exc) or not columns:
        return exc
    kind = "column(s)" if hasattr(X, "columns") else "column index(es)"
    return ValueError(
        f"Input X has non-numeric {kind} {columns[:10]}{' ...' if len(columns) > 10 else ''}, "
        f"which a base model cannot take ({exc}). Encode them first (e.g. OneHotEncoder in a "
        "ColumnTransformer, or moensemble's table encoder), drop them, or use bases that "
        "accept them."
    )


def check_sample_weight_support(pairs, sample_weight, where: str = "estimators") -> None:
    """With sample weights, every base that is fitted must take them in ``fit``."""
    if sample_weight is None:
        return
    for name, est in pairs:
        if not isinstance(est, FrozenEstimator) and not has_fit_parameter(est, "sample_weight"):
            raise ValueError(
                f"sample_weight was given but `{where}` member {name!r} ({type(est).__name__}) "
                "takes no `sample_weight` in fit; drop it or fit without weights (a Pipeline "
                "needs metadata routing to pass weights to its steps)."
            )


class _BaseOOFEnsemble(BaseEstimator):
    """Fit bases out of fold, learn a combiner, then refit (or bag) the bases it uses."""

    _parameter_constraints: dict = {
        "estimators": [list],
        "cv": ["cv_object"],
        "refit": ["boolean"],
        "n_jobs": [None, IntInterval(None, None, closed="neither")],
        "memory": [None, str, HasMethods(["cache"])],
        "verbose": ["verbose"],
    }
    _kind: str  # "classifier" or "regressor", for check_estimators
    # An int `cv` becomes a shuffled (Stratified)KFold seeded by `random_state` when that is
    # set; subclasses that tune on fixed folds (the gated ensemble) keep check_cv's folds.
    _shuffle_int_cv = False

    # ---- input -----------------------------------------------------------------------------

    def _validate_fit_input(self, X, y, sample_weight):
        """Check X lightly (the bases check it fully) and y fully; encode class labels."""
        # X goes to the bases as given (DataFrame columns, sparse matrices), so only its
        # feature count and names are recorded here.
        self._pairs = [
            (name, self._as_member(name, est))
            for name, est in check_estimators(self.estimators, kind=self._kind)
        ]
        X = _as_rows(X)
        X, y = validate_data(self, X, y, skip_check_array=True)
        if self._kind == "classifier":
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            self._label_encoder = LabelEncoder().fit(y)
            self.classes_ = self._label_encoder.classes_
            if len(self.classes_) < 2:
                raise ValueError(
                    f"`y` has only one class ({self.classes_[0]!r}); a classifier needs at "
                    "least 2."
                )
            y = self._label_encoder.transform(y)
        else:
            y = check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
            self._y_ndim = y.ndim
        check_consistent_length(X, y)
        _check_finite_for(self._pairs, X)
        sample_weight = check_sample_weights(sample_weight, X)
        check_sample_weight_support(self._pairs, sample_weight)
        return X, y, sample_weight

    def _is_prefit(self) -> bool:
        return isinstance(self.cv, str) and self.cv == "prefit"

    def _as_member(self, name: str, est):
        """With ``cv='prefit'``, a fitted base frozen so that no fit (fold or refit) changes it."""
        if not self._is_prefit() or isinstance(est, FrozenEstimator):
            return est
        try:
            check_is_fitted(est)
        except NotFittedError as exc:
            raise NotFittedError(
                f"cv='prefit' needs fitted estimators, but member {name!r} is not fitted."
            ) from exc
        return FrozenEstimator(est)

    def _base_targets(self, y):
        """Bases see the labels as given (so prefit and frozen bases line up with them)."""
        return self.classes_[y] if self._kind == "classifier" else y

    def _engine_cv(self, X):
        """The folds handed to the engine: one fold of every row for prefit bases."""
        if self._is_prefit():
            rows = np.arange(_num_samples(X))
            return [(rows, rows)]
        if self._shuffle_int_cv and isinstance(self.cv, Integral) and (
            self.random_state is not None
        ):
            splitter = StratifiedKFold if self._kind == "classifier" else KFold
            return splitter(self.cv, shuffle=True, random_state=self.random_state)
        return self.cv

    def _validate_predict_input(self, X):
        return validate_data(self, _as_rows(X), reset=False, skip_check_array=True)

    # ---- fitting ---------------------------------------------------------------------------

    def _out_of_fold(self, X, y, sample_weight, method, *, refit: bool = False) -> OutOfFold:
        try:
            oof = out_of_fold(
                self._pairs,
                X,
                self._base_targets(y),
                cv=self._engine_cv(X),
                method=method,
                sample_weight=sample_weight,
                n_jobs=self.n_jobs,
                memory=self.memory,
                refit=refit,
                keep_fold_estimators=not self.refit,
                verbose=self.verbose,
            )
        except ValueError as exc:
            explained = explain_text_columns(exc, X)
            if explained is exc:
                raise
            raise explained from exc
        check_finite_oof(oof)
        return oof

    def _fit_final_bases(self, oof: OutOfFold, X, y, sample_weight, used: list[int]) -> None:
        """Set ``estimators_`` to the used bases: refitted on all rows, or their fold bags."""
        names = [self._pairs[i][0] for i in used]
        if self.refit and oof.refitted is not None:
            fitted = [oof.refitted[name] for name in names]
        elif self.refit:
            # Through the same cache as the folds: another ensemble may have refitted these.
            fitted = refit_all(
                [self._pairs[i][1] for i in used], X, self._base_targets(y), sample_weight,
                memory=self.memory, n_jobs=self.n_jobs, verbose=self.verbose,
            )
        else:
            fitted = [oof.fold_estimators[name] for name in names]
        self.estimators_ = fitted
        self.named_estimators_ = Bunch(**dict(zip(names, fitted, strict=True)))
        self.stack_method_ = [oof.methods[name] for name in names]
        self._classes_codes = oof.classes

    def _base_predictions(self, X) -> list[np.ndarray]:
        """Predictions of each used base, shape (n_samples, n_columns), in ``estimators_`` order."""
        return self._predict_models(self.estimators_, self.stack_method_, X)

    def _predict_models(self, entries, methods, X) -> list[np.ndarray]:
        """Each fitted model's (or fold bag's mean) aligned prediction on ``X``."""
        out = []
        for entry, method in zip(entries, methods, strict=True):
            models = entry if isinstance(entry, list) else [entry]
            try:
                preds = [predict_aligned(m, X, method, self._classes_codes) for m in models]
            except ValueError as exc:
                explained = explain_text_columns(exc, X)
                if explained is exc:
                    raise
                raise explained from exc
            out.append(np.mean(preds, axis=0) if len(preds) > 1 else preds[0])
        return out

    def _shape_regression(self, pred: np.ndarray) -> np.ndarray:
        """Return 1-D predictions when the training target was 1-D."""
        return pred.ravel() if self._y_ndim == 1 else pred

    # ---- tags ------------------------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            bases = [est for _, est in check_estimators(self.estimators)]
        except (TypeError, ValueError):
            return tags
        base_tags = [get_tags(est) for est in bases]
        # The ensemble accepts what every base accepts, since X reaches them unchanged.
        tags.input_tags.sparse = all(t.input_tags.sparse for t in base_tags)
        tags.input_tags.allow_nan = all(t.input_tags.allow_nan for t in base_tags)
        tags.input_tags.categorical = all(t.input_tags.categorical for t in base_tags)
        tags.input_tags.string = all(t.input_tags.string for t in base_tags)
        if self._kind == "regressor":
            tags.target_tags.multi_output = all(t.target_tags.multi_output for t in base_tags)
        return tags

