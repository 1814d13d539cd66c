"""Plumbing shared by the weighted and stacked ensembles.

Both learn a combiner on out-of-fold predictions of their bases, then either refit the bases
that the combiner uses on all rows, or keep each base's fold models as a bag and average them.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import Bunch
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_memory,
    column_or_1d,
    get_tags,
    validate_data,
)

from moensemble._validation import check_estimators
from moensemble.ensemble._oof import OutOfFold, fit_full, out_of_fold, predict_aligned


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


class _BaseOOFEnsemble(BaseEstimator):
    """Fit bases out of fold, learn a combiner, then refit (or bag) the bases it uses."""

    _parameter_constraints: dict = {
        "estimators": [list],
        "cv": ["cv_object"],
        "refit": ["boolean"],
        "n_jobs": [None, Integral],
        "memory": [None, str, HasMethods(["cache"])],
        "verbose": ["verbose"],
    }
    _kind: str  # "classifier" or "regressor", for check_estimators

    # ---- input -----------------------------------------------------------------------------

    def _validate_fit_input(self, X, y, sample_weight):
        """Check X lightly (the bases check it fully) and y fully; encode class labels."""
        # X goes to the bases as given (DataFrame columns, sparse matrices), so only its
        # feature count and names are recorded here.
        self._pairs = check_estimators(self.estimators, kind=self._kind)
        X = _as_rows(X)
        X, y = validate_data(self, X, y, skip_check_array=True)
        if self._kind == "classifier":
            y = column_or_1d(y, warn=True)
            check_classification_targets(y)
            self._label_encoder = LabelEncoder().fit(y)
            self.classes_ = self._label_encoder.classes_
            y = self._label_encoder.transform(y)
        else:
            y = check_array(y, ensure_2d=False, dtype="numeric", input_name="y")
            self._y_ndim = y.ndim
        check_consistent_length(X, y)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X)
        return X, y, sample_weight

    def _validate_predict_input(self, X):
        return validate_data(self, _as_rows(X), reset=False, skip_check_array=True)

    # ---- fitting ---------------------------------------------------------------------------

    def _out_of_fold(self, X, y, sample_weight, method, *, refit: bool = False) -> OutOfFold:
        return out_of_fold(
            self._pairs,
            X,
            y,
            cv=self.cv,
            method=method,
            sample_weight=sample_weight,
            n_jobs=self.n_jobs,
            memory=self.memory,
            refit=refit,
            keep_fold_estimators=not self.refit,
            verbose=self.verbose,
        )

    def _fit_final_bases(self, oof: OutOfFold, X, y, sample_weight, used: list[int]) -> None:
        """Set ``estimators_`` to the used bases: refitted on all rows, or their fold bags."""
        names = [self._pairs[i][0] for i in used]
        if self.refit and oof.refitted is not None:
            fitted = [oof.refitted[name] for name in names]
        elif self.refit:
            # Through the same cache as the folds: another ensemble may have refitted these.
            fit_all = check_memory(self.memory).cache(fit_full)
            fitted = Parallel(n_jobs=self.n_jobs, verbose=self.verbose)(
                delayed(fit_all)(clone(self._pairs[i][1]), X, y, sample_weight) for i in used
            )
        else:
            fitted = [oof.fold_estimators[name] for name in names]
        self.estimators_ = fitted
        self.named_estimators_ = Bunch(**dict(zip(names, fitted, strict=True)))
        self.stack_method_ = [oof.methods[name] for name in names]
        self._classes_codes = oof.classes

    def _base_predictions(self, X) -> list[np.ndarray]:
        """Predictions of each used base, shape (n_samples, n_columns), in ``estimators_`` order."""
        out = []
        for entry, method in zip(self.estimators_, self.stack_method_, strict=True):
            models = entry if isinstance(entry, list) else [entry]
            preds = [predict_aligned(m, X, method, self._classes_codes) for m in models]
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

