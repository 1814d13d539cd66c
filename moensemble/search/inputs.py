"""What the AutoML estimators do with their input before the search: checks, encodings, folds.

:class:`InputsMixin` is the part of :class:`~moensemble.search.AutoClassifier` /
:class:`~moensemble.search.AutoRegressor` that validates ``X`` and ``y``, encodes a raw
table (:class:`~moensemble.features.TableEncoder`, once one-hot and once native for gradient
boosting), and draws the outer folds every trial shares (``cv='auto'``: more folds on small
data).
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
from sklearn.model_selection import (
    KFold,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    StratifiedKFold,
    check_cv,
)
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["AUTO_CV_FOLDS", "AUTO_CV_ROWS", "AUTO_REPEAT_ROWS", "InputsMixin", "auto_repeats"]

#: ``cv='auto'``: this many folds under ``AUTO_CV_ROWS`` rows (AutoGluon bags with 8), else 5.
AUTO_CV_FOLDS = 8
AUTO_CV_ROWS = 1000
#: ``n_repeats='auto'``: repeats only under this many rows, one per ``AUTO_REPEAT_SECONDS``
#: of budget, at most ``AUTO_MAX_REPEATS``.
AUTO_REPEAT_ROWS = 1000
AUTO_REPEAT_SECONDS = 20.0
AUTO_MAX_REPEATS = 3


def auto_repeats(n_rows: int, time_budget: float) -> int:
    """``n_repeats='auto'``: repeats of the outer folds for ``n_rows`` and the budget.

    One repeat per ``AUTO_REPEAT_SECONDS`` of ``time_budget`` (at most
    ``AUTO_MAX_REPEATS``) under ``AUTO_REPEAT_ROWS`` rows, where single fits are cheap and
    the out-of-fold predictions noisiest; else 1.
    """
    if n_rows >= AUTO_REPEAT_ROWS:
        return 1
    return int(np.clip(time_budget // AUTO_REPEAT_SECONDS, 1, AUTO_MAX_REPEATS))


def _needs_encoding(X) -> bool:
    """A DataFrame with a non-numeric column or a missing value (a raw table)."""
    if not isinstance(X, pd.DataFrame) or X.shape[1] == 0:
        return False
    numeric = all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t)
                  for t in X.dtypes)
    return not numeric or bool(X.isna().to_numpy().any())


def _target_without_gaps(y):
    missing = pd.isna(pd.DataFrame(np.asarray(y, dtype=object))).to_numpy().any(axis=1)
    if missing.any():
        rows = np.flatnonzero(missing)[:5].tolist()
        raise ValueError(f"y has {int(missing.sum())} missing value(s) (first rows: {rows}); "
                         "drop those rows or fill the target before fit.")
    return y


class InputsMixin:
    """Mixin of the AutoML estimators: input checks, raw-table encodings, outer folds."""

    def _validate_input(self, X, y):
        frame = X if _needs_encoding(X) else None
        self.table_encoder_ = self.native_encoder_ = None
        self._X_native = None
        if frame is not None:  # a raw table: every column encoded by its kind
            from moensemble.features import TableEncoder

            y = _target_without_gaps(y)
            self.table_encoder_ = TableEncoder(random_state=self.random_state).fit(frame, y)
            X = self.table_encoder_.transform(frame)
            if self.base_estimators is None:  # boosting reads categories and gaps as they are
                self.native_encoder_ = TableEncoder(mode="native",
                                                    random_state=self.random_state)
                self._X_native = self.native_encoder_.fit(frame, y).transform(frame)
        X, y = validate_data(
            self, X, y, accept_sparse=["csr", "csc"], multi_output=self._task == "regression",
            y_numeric=self._task == "regression",
        )
        if self._task == "classification":
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs at least 2 classes in y; got only one class: "
                    f"{self.classes_[0]!r}."
                )
        if frame is not None:  # the input features are the table's columns
            self.n_features_in_ = frame.shape[1]
            self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        return X, y

    def _transform(self, X):
        """``X`` for the final model: a raw table as it is (the model encodes it per view)."""
        check_is_fitted(self, "best_estimator_")
        if getattr(self, "table_encoder_", None) is not None:
            return X  # the encoders' errors name the column at fault
        return validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)

    def _encoders(self) -> dict | None:
        if getattr(self, "table_encoder_", None) is None:
            return None
        views = {"encoded": self.table_encoder_}
        if self.native_encoder_ is not None:
            views["native"] = self.native_encoder_
        return views

    def _folds(self, X, y, seed):
        """The outer folds (``n_repeats_`` k-fold partitions one after another)."""
        n_folds = self.cv
        if isinstance(n_folds, str):  # 'auto': more folds on small data
            n_folds = AUTO_CV_FOLDS if len(y) < AUTO_CV_ROWS else 5
        repeats = self.n_repeats
        if isinstance(repeats, str):
            repeats = auto_repeats(len(y), float(self.time_budget))
        if repeats > 1 and not isinstance(n_folds, Integral):
            raise ValueError(
                f"`n_repeats`={self.n_repeats!r} draws the folds anew per repeat, so it "
                f"needs an int `cv` or 'auto'; got cv={self.cv!r}. Give n_repeats=1 with a "
                "splitter (a RepeatedKFold splitter's folds overlap, which is not supported)."
            )
        self.n_repeats_ = int(repeats)
        classification = self._task == "classification"
        if isinstance(n_folds, Integral) and repeats > 1:
            splitter = RepeatedStratifiedKFold if classification else RepeatedKFold
            cv = splitter(n_splits=n_folds, n_repeats=repeats, random_state=seed)
        elif isinstance(n_folds, Integral):
            splitter = StratifiedKFold if classification else KFold
            cv = splitter(n_folds, shuffle=True, random_state=seed)
        else:
            cv = check_cv(self.cv, y, classifier=classification)
        try:
            return list(cv.split(X, y))
        except ValueError as exc:
            raise ValueError(f"`cv`={self.cv!r} cannot split these {len(y)} rows: {exc}") \
                from exc

