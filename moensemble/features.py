"""Raw tables in: infer each column's kind and encode it with scikit-learn's own pieces.

:class:`TableEncoder` takes the table a user has (numbers with gaps, string categories, a
date, a free-text column) and returns a numeric matrix every estimator of the package
accepts, or, with ``mode="native"``, a DataFrame for gradient-boosting models that handle
categories and missing values themselves. The kinds are inferred by :func:`infer_kinds`.
"""

from __future__ import annotations

import warnings
from numbers import Integral
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn import config_context
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
    TargetEncoder,
)
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.multiclass import type_of_target
from sklearn.utils.validation import (
    _check_feature_names_in,
    check_array,
    check_is_fitted,
    validate_data,
)

from moensemble._features_kinds import (
    KINDS,
    blocks_by_kind,
    check_target,
    coerce_column,
    infer_kind,
    value_type,
)
from moensemble._validation import IntInterval

__all__ = ["TableEncoder", "blocks_by_kind", "check_target", "infer_kinds"]


def infer_kinds(
    X: Any, *, kinds: dict | None = None, max_onehot_categories: int = 20
) -> dict[str, str]:
    """The kind of each column of a table, as :class:`TableEncoder` infers it.

    Parameters
    ----------
    X : DataFrame or array-like of shape (n_samples, n_features)
        The table. Columns of an array are named ``x0``, ``x1``, ...
    kinds : dict, default=None
        Overrides, ``{column: kind}``; see :class:`TableEncoder`.
    max_onehot_categories : int, default=20
        Integer columns with at most ``min(10, max_onehot_categories)`` distinct values
        are categorical, and string columns with more distinct values than this whose
        values average three or more words are text.

    Returns
    -------
    kinds : dict of str to str
        ``{column: kind}`` in column order, each kind one of ``'numeric'``,
        ``'boolean'``, ``'categorical'``, ``'datetime'``, ``'text'`` or ``'drop'`` (a
        column with no value at all).
    """
    frame = _as_frame(X)
    overrides = _check_kinds(kinds, list(frame.columns))
    return {
        col: overrides.get(col) or infer_kind(frame[col], max_onehot_categories)
        for col in frame.columns
    }


class TableEncoder(TransformerMixin, BaseEstimator):
    """Encode a raw table column by column, after inferring each column's kind.

    Kinds (inferred by :func:`infer_kinds`, or given in ``kinds``) and their encoding:

    - ``numeric``: float; missing values get the column's median and a missing indicator
      column (``SimpleImputer(strategy="median", add_indicator=True)``).
    - ``boolean`` (bool dtype, True/False objects, integers that are only 0 and 1): 0/1,
      missing values get the most frequent value and an indicator.
    - ``categorical`` (strings, pandas ``category``, integers with at most 10 distinct
      values): one-hot with at most ``max_onehot_categories`` categories (missing is a
      category; a category unseen in ``fit`` is all zeros), else ``high_cardinality``.
    - ``datetime`` (datetime dtype, or ISO 8601 strings): year, month, day, weekday and
      hour where they vary in ``fit``, and days since 1970, imputed as numeric.
    - ``text`` (strings averaging three or more words, with more than
      ``max_onehot_categories`` distinct values): TF-IDF of words and word pairs
      (sparse), or sentence embeddings.
    - ``drop``: left out. A column with no value in ``fit`` is dropped with a warning.

    Parameters
    ----------
    kinds : dict, default=None
        Kinds that replace the inferred ones, ``{column: kind}``, e.g.
        ``{"zip": "categorical", "id": "drop"}``. Columns of an array are named by
        position (``0``) or as ``"x0"``.
    max_onehot_categories : int, default=20
        Categorical columns with more distinct values in ``fit`` are encoded by
        ``high_cardinality``.
    high_cardinality : {"auto", "target", "ordinal"}, default="auto"
        ``"target"``: scikit-learn's ``TargetEncoder``, cross-fitted in
        ``fit_transform`` (needs ``y``). ``"ordinal"``: one integer code per category
        (unseen -1; missing -2 if the column had gaps in fit, else -1). ``"auto"``:
        target when ``fit`` gets a 1-d ``y``, ordinal otherwise.
    text : {"tfidf", "embedding"}, default="tfidf"
        ``"embedding"``: 384-d sentence embeddings from :class:`moensemble.text.SentenceEmbedder`
        (needs the ``text`` extra; dense).
    text_max_features : int or None, default=20000
        Vocabulary size of each TF-IDF column (most frequent terms); None keeps all.
    scale : {"standard", "minmax"} or bool, default=True
        Rescale numeric, datetime and high-cardinality columns (not one-hot, boolean or
        text columns). True or ``"standard"``: zero mean, unit variance, as neural
        networks (the MoE, the gated router) need. ``"minmax"``: to [0, 1], clipped at
        predict time, so that every output is non-negative (naive Bayes). False: as is.
    sparse_output : {"auto"} or bool, default="auto"
        ``"auto"``: a CSR matrix when a TF-IDF block is present, else a dense array.
    mode : {"encode", "native"}, default="encode"
        ``"native"`` is for gradient-boosting models (LightGBM, HistGradientBoosting with
        ``categorical_features="from_dtype"``): the output is a DataFrame in which
        low-cardinality categorical columns are pandas ``category`` columns (categories
        of ``fit``; unseen values become NaN), missing values stay NaN (no imputation,
        no indicators), nothing is scaled, high-cardinality columns are encoded as above,
        and a TF-IDF text column becomes ``text_components`` latent semantic columns.
    text_components : int, default=50
        Components of the truncated SVD of a TF-IDF column in ``mode="native"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the folds of the target encoder and the SVD.
    n_jobs : int or None, default=None
        Columns encoded in parallel (``ColumnTransformer``).

    Attributes
    ----------
    feature_kinds_ : dict of str to str
        The kind of every input column, in input order (``'drop'`` for those left out).
    feature_origins_ : pandas.DataFrame
        One row per output column: ``feature`` (its name), ``column`` (the input column
        it came from), ``kind`` and ``encoding`` (``'numeric'``, ``'missing_indicator'``,
        ``'onehot'``, ``'target'``, ``'ordinal'``, ``'datetime'``, ``'tfidf'``, ...).
    blocks_ : dict of str to ndarray of int
        Positions of the output columns of each kind present.
    n_features_in_ : int
    feature_names_in_ : ndarray of str
        Only when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import pandas as pd
    >>> from moensemble import TableEncoder
    >>> X = pd.DataFrame({"age": [31.0, None, 45.0, 27.0], "city": ["Oslo", "Rome", "Oslo", None]})
    >>> encoder = TableEncoder(scale=False).fit(X)
    >>> encoder.feature_kinds_
    {'age': 'numeric', 'city': 'categorical'}
    >>> list(encoder.get_feature_names_out())
    ['age', 'missingindicator_age', 'city_Oslo', 'city_Rome', 'city_nan']
    >>> encoder.transform(X)[1]
    array([31.,  1.,  0.,  1.,  0.])
    """

    _parameter_constraints: dict = {
        "kinds": [dict, None],
        "max_onehot_categories": [IntInterval(1, None, closed="left")],
        "high_cardinality": [StrOptions({"auto", "target", "ordinal"})],
        "text": [StrOptions({"tfidf", "embedding"})],
        "text_max_features": [IntInterval(1, None, closed="left"), None],
        "scale": ["boolean", StrOptions({"standard", "minmax"})],
        "sparse_output": [StrOptions({"auto"}), "boolean"],
        "mode": [StrOptions({"encode", "native"})],
        "text_components": [IntInterval(1, None, closed="left")],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(
        self,
        *,
        kinds: dict | None = None,
        max_onehot_categories: int = 20,
        high_cardinality: str = "auto",
        text: str = "tfidf",
        text_max_features: int | None = 20000,
        scale: bool | str = True,
        sparse_output: str | bool = "auto",
        mode: str = "encode",
        text_components: int = 50,
        random_state: Any = None,
        n_jobs: int | None = None,
    ) -> None:
        self.kinds = kinds
        self.max_onehot_categories = max_onehot_categories
        self.high_cardinality = high_cardinality
        self.text = text
        self.text_max_features = text_max_features
        self.scale = scale
        self.sparse_output = sparse_output
        self.mode = mode
        self.text_components = text_components
        self.random_state = random_state
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> TableEncoder:
        """Infer the column kinds and fit one encoder per column.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
            The target; used by the target encoder only. Missing values are an error.

        Returns
        -------
        self : TableEncoder
        """
        self._fit_transform(X, y)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """Fit and encode ``X``; target-encoded columns are cross-fitted (out of fold).

        Hence ``fit_transform(X, y)`` differs from ``fit(X, y).transform(X)`` on those
        columns, as in scikit-learn's ``TargetEncoder``.

        Returns
        -------
        X_out : {ndarray, sparse matrix, DataFrame} of shape (n_samples, n_features_out)
        """
        return self._fit_transform(X, y)

    def transform(self, X: Any) -> Any:
        """Encode ``X`` with the encoders of ``fit``.

        Parameters
        ----------
        X : DataFrame or array-like of shape (n_samples, n_features_in_)
            The same columns as in ``fit`` (extra or missing columns are an error), each
            holding values of the kind it had in ``fit``.

        Returns
        -------
        X_out : {ndarray, sparse matrix, DataFrame} of shape (n_samples, n_features_out)
            CSR when ``sparse_output`` asks for it; a DataFrame in ``mode="native"``.
        """
        check_is_fitted(self, "feature_kinds_")
        frame = self._frame(X, reset=False)
        clean = self._clean(frame)
        with config_context(transform_output="default"):
            out = self._column_transformer_.transform(clean) if self._has_block else None
        return self._assemble(out, clean)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns (``feature_origins_["feature"]``)."""
        check_is_fitted(self, "feature_kinds_")
        _check_feature_names_in(self, input_features)
        return self.feature_origins_["feature"].to_numpy(dtype=object)

    # -- fitting -------------------------------------------------------------------------

    def _fit_transform(self, X: Any, y: Any) -> Any:
        frame = self._frame(X, reset=True)
        if y is not None:
            y = check_target(y, n_samples=len(frame))
        kinds = infer_kinds(
            frame, kinds=self._positional_kinds(), max_onehot_categories=self.max_onehot_categories
        )
        empty = [c for c, k in kinds.items() if k == "drop" and frame[c].isna().all()]
        if empty:
            warnings.warn(
                f"TableEncoder: column(s) {empty} have no value in fit and are dropped.",
                UserWarning,
                stacklevel=4,
            )
        self.feature_kinds_ = kinds
        self._fit_info = {c: self._column_info(frame[c], k) for c, k in kinds.items()}
        clean = self._clean(frame)
        self._column_transformer_ = self._build(clean, y)
        self._has_block = bool(self._column_transformer_.transformers)
        out = None
        if self._has_block:
            with config_context(transform_output="default"):
                out = self._column_transformer_.fit_transform(clean, y)
        self._record_origins()
        return self._assemble(out, clean)

    def _positional_kinds(self) -> dict | None:
        if not self.kinds:
            return self.kinds
        # Array columns may be named by position.
        return {
            (self._columns[key] if isinstance(key, Integral) and not isinstance(key, bool)
             and 0 <= key < len(self._columns) and key not in self._columns else key): kind
            for key, kind in self.kinds.items()
        }

    def _column_info(self, column: pd.Series, kind: str) -> dict:
        info: dict = {"value_type": value_type(column) if kind == "categorical" else None}
        if kind == "categorical":
            values = coerce_column(column, column.name, kind)
            info["categories"] = sorted(values.dropna().unique())
        return info

    def _encodes_natively(self, col: str) -> bool:
        return (
            self.mode == "native"
            and self.feature_kinds_[col] == "categorical"
            and len(self._fit_info[col]["categories"]) <= self.max_onehot_categories
        )

    def _build(self, clean: pd.DataFrame, y: Any) -> ColumnTransformer:
        target_ok = y is not None and np.ndim(y) == 1
        if self.high_cardinality == "target" and not target_ok:
            wide = [c for c, k in self.feature_kinds_.items() if k == "categorical"
                    and len(self._fit_info[c]["categories"]) > self.max_onehot_categories]
            if wide:
                raise ValueError(
                    f"high_cardinality='target' needs a 1-d target `y` in fit to encode the "
                    f"column(s) {wide}; pass y or use high_cardinality='ordinal' or 'auto'."
                )
        high = "ordinal" if self.high_cardinality == "ordinal" or not target_ok else "target"
        if high == "target":
            # Shuffled folds: a table sorted by the target would leak through ordered folds.
            classes = type_of_target(y) in ("binary", "multiclass")
            splitter = StratifiedKFold if classes else KFold
            self._target_cv = splitter(5, shuffle=True, random_state=self.random_state)
        encode = self.mode == "encode"
        steps = []
        # Steps are named by position: a column may be called "remainder" or hold "__".
        self._steps = {}
        for i, (col, kind) in enumerate(self.feature_kinds_.items()):
            if kind == "drop" or self._encodes_natively(col):
                continue
            if kind == "categorical":
                n_cat = len(self._fit_info[col]["categories"])
                kind = "onehot" if n_cat <= self.max_onehot_categories else high
            self._steps[col] = f"c{i}"
            # Text encoders take a 1-d column, the others a one-column frame.
            steps.append((f"c{i}", self._encoder(kind, encode, clean[col]),
                          col if kind == "text" else [col]))
        sparse = self.sparse_output
        if sparse == "auto":
            sparse = encode and self.text == "tfidf" and "text" in self.feature_kinds_.values()
        self._sparse = bool(sparse) and encode
        return ColumnTransformer(
            steps,
            sparse_threshold=1.0 if self._sparse else 0.0,
            verbose_feature_names_out=True,  # names are made per column in _record_origins
            n_jobs=self.n_jobs,
        )

    def _encoder(self, kind: str, encode: bool, column: pd.Series) -> Any:
        scaler = []
        if self.scale and encode:
            scaler = [MinMaxScaler(clip=True) if self.scale == "minmax" else StandardScaler()]
        # The scaler comes first (it ignores NaN) so that indicators stay 0/1.
        if kind == "numeric":
            if not encode:
                return "passthrough"
            return make_pipeline(
                *scaler, SimpleImputer(strategy="median", add_indicator=True)
            )
        if kind == "boolean":
            if not encode:
                return "passthrough"
            return SimpleImputer(strategy="most_frequent", add_indicator=True)
        if kind == "datetime":
            parts = _DatetimeParts()
            if not encode:
                return parts
            return make_pipeline(
                parts, *scaler, SimpleImputer(strategy="median", add_indicator=True)
            )
        if kind == "onehot":
            return OneHotEncoder(handle_unknown="ignore", sparse_output=True)
        if kind == "target":
            return make_pipeline(TargetEncoder(cv=self._target_cv), *scaler)
        if kind == "ordinal":
            ordinal = OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-2
            )
            return make_pipeline(ordinal, *scaler)
        # text
        if self.text == "embedding":
            from moensemble.text import SentenceEmbedder

            return SentenceEmbedder()
        tfidf = TfidfVectorizer(
            max_features=self.text_max_features, ngram_range=(1, 2), sublinear_tf=True
        )
        if encode:
            return tfidf
        n_terms = min(self.text_max_features or np.inf, len(set(" ".join(column).split())))
        n_components = int(max(1, min(self.text_components, n_terms - 1, len(column) - 1)))
        return make_pipeline(
            tfidf, TruncatedSVD(n_components, random_state=self.random_state)
        )

    def _record_origins(self) -> None:
        ct = self._column_transformer_
        rows: list[tuple] = []
        fitted = dict(ct.named_transformers_) if self._has_block else {}
        verbose = ct.get_feature_names_out() if self._has_block else np.array([])
        for col, kind in self.feature_kinds_.items():
            if kind == "drop":
                continue
            if col not in self._steps:  # native category column
                rows.append((col, col, kind, "category"))
                continue
            step = self._steps[col]
            encoding = _encoding_name(fitted[step], kind)
            for full in verbose[ct.output_indices_[step]]:
                name = full[len(step) + 2 :]  # without ColumnTransformer's "c3__"
                if kind == "text":  # a term or component: say which column it is from
                    name = f"{col}__{name}"
                elif name.startswith("missingindicator_"):
                    rows.append((name, col, kind, "missing_indicator"))
                    continue
                rows.append((name, col, kind, encoding))
        if len({r[0] for r in rows}) < len(rows):  # names clash: prefix every column's
            rows = [(f"{r[1]}__{r[0]}" if not r[0].startswith(f"{r[1]}__") else r[0],) + r[1:]
                    for r in rows]
        if self.mode == "native":
            # The native output lists the encoded block first, then the category columns.
            rows = [r for r in rows if r[3] != "category"] + [r for r in rows if r[3] == "category"]
        origins = pd.DataFrame(rows, columns=["feature", "column", "kind", "encoding"])
        origins["feature"] = origins["feature"].astype(str)
        self.feature_origins_ = origins
        self.blocks_ = {
            kind: np.flatnonzero(origins["kind"].to_numpy() == kind)
            for kind in KINDS
            if (origins["kind"] == kind).any()
        }

    # -- shared by fit and transform --------------------------------------------------------

    def _frame(self, X: Any, *, reset: bool) -> pd.DataFrame:
        if sp.issparse(X):
            raise TypeError(
                "TableEncoder takes a table (DataFrame or dense array), not a sparse matrix; "
                "pass sparse features straight to the estimator."
            )
        if not isinstance(X, pd.DataFrame):
            X = check_array(X, dtype=None, ensure_all_finite=False, estimator=self)
        elif X.shape[1] == 0 or X.shape[0] == 0:
            check_array(np.empty(X.shape), estimator=self)  # scikit-learn's message
        validate_data(self, X, skip_check_array=True, reset=reset)
        frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X)
        if reset:
            self._columns = (
                list(self.feature_names_in_) if hasattr(self, "feature_names_in_")
                else [f"x{i}" for i in range(frame.shape[1])]
            )
        return frame.set_axis(self._columns, axis=1)

    def _clean(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Each used column as its kind's plain values (float, str, datetime64)."""
        clean = {}
        for col, kind in self.feature_kinds_.items():
            if kind == "drop":
                continue
            expected = self._fit_info[col]["value_type"]
            clean[col] = coerce_column(frame[col], col, kind, expected_type=expected)
        return pd.DataFrame(clean, index=frame.index)

    def _assemble(self, out: Any, clean: pd.DataFrame) -> Any:
        if self.mode == "native":
            names = self.feature_origins_["feature"]
            n_block = int((self.feature_origins_["encoding"] != "category").sum())
            block = pd.DataFrame(
                np.empty((len(clean), 0)) if out is None else _dense(out),
                columns=names[:n_block].to_list(),
                index=clean.index,
            )
            cats = {}
            for col in self.feature_kinds_:
                if col in clean and self._encodes_natively(col):
                    known = self._fit_info[col]["categories"]
                    values = clean[col].where(clean[col].isin(known))  # unseen -> NaN
                    cats[col] = pd.Categorical(values, categories=known)
            return pd.concat([block, pd.DataFrame(cats, index=clean.index)], axis=1)
        if out is None:
            out = np.empty((len(clean), 0))
        if self._sparse:
            return sp.csr_matrix(out, dtype=np.float64)
        return _dense(out)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.input_tags.categorical = True
        tags.input_tags.string = True
        if self.mode == "native":  # a DataFrame of float and category columns: no one dtype
            tags.transformer_tags.preserves_dtype = []
        return tags


def _dense(out: Any) -> np.ndarray:
    if sp.issparse(out):
        out = out.toarray()
    return np.asarray(out, dtype=np.float64)


def _encoding_name(transformer: Any, kind: str) -> str:
    last = transformer.steps[-1][1] if hasattr(transformer, "steps") else transformer
    first = transformer.steps[0][1] if hasattr(transformer, "steps") else transformer
    for cls, name in [
        (OneHotEncoder, "onehot"),
        (TargetEncoder, "target"),
        (OrdinalEncoder, "ordinal"),
        (TruncatedSVD, "tfidf_svd"),
        (TfidfVectorizer, "tfidf"),
    ]:
        if isinstance(first, cls) or isinstance(last, cls):
            return name
    if type(last).__name__ == "SentenceEmbedder":
        return "embedding"
    return kind


class _DatetimeParts(TransformerMixin, BaseEstimator):
    """Calendar parts of datetime64 columns as floats; NaN where a value is missing.

    Year, month, day, weekday and hour are kept where they take more than one value in
    ``fit``; ``days`` (since 1970-01-01) always, so that a trend over time is linear.
    """

    _PARTS = ("year", "month", "day", "weekday", "hour")

    def fit(self, X: pd.DataFrame, y: Any = None) -> _DatetimeParts:
        self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        self.n_features_in_ = X.shape[1]
        self.parts_ = {
            col: [p for p in self._PARTS if _part(X[col], p).nunique() > 1] + ["days"]
            for col in X.columns
        }
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "parts_")
        columns = [
            _part(X[col], part).to_numpy(dtype=np.float64)
            for col in self.feature_names_in_
            for part in self.parts_[col]
        ]
        return np.column_stack(columns) if columns else np.empty((len(X), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "parts_")
        return np.asarray(
            [f"{col}_{part}" for col in self.feature_names_in_ for part in self.parts_[col]],
            dtype=object,
        )


def _part(values: pd.Series, part: str) -> pd.Series:
    if part == "days":
        return (values - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
    return getattr(values.dt, "day_of_week" if part == "weekday" else part).astype("float64")


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        if all(isinstance(c, str) for c in X.columns):
            return X
        return X.set_axis([f"x{i}" for i in range(X.shape[1])], axis=1)
    frame = pd.DataFrame(check_array(X, dtype=None, ensure_all_finite=False))
    return frame.set_axis([f"x{i}" for i in range(frame.shape[1])], axis=1)


def _check_kinds(kinds: dict | None, columns: list[str]) -> dict[str, str]:
    if kinds is None:
        return {}
    if not isinstance(kinds, dict):
        raise TypeError(f"`kinds` must be a dict {{column: kind}} or None; got {kinds!r}.")
    unknown = [key for key in kinds if key not in columns]
    if unknown:
        raise ValueError(
            f"`kinds` names column(s) {unknown} that are not in X; the columns are {columns}."
        )
    bad = {key: kind for key, kind in kinds.items() if kind not in KINDS}
    if bad:
        raise ValueError(f"`kinds` values must be one of {list(KINDS)}; got {bad}.")
    return dict(kinds)
