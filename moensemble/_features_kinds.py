"""Column kinds of a raw table: inference, and the checked conversion of each kind's values.

Used by :mod:`moensemble.features`; the errors name the column and the value at fault.
"""

from __future__ import annotations

from numbers import Number
from typing import Any

import numpy as np
import pandas as pd

KINDS = ("numeric", "boolean", "categorical", "datetime", "text", "drop")

# Integer columns with at most this many distinct values are categories (codes, ratings).
MAX_INT_CATEGORIES = 10
# Share of a string column's values that must parse as ISO 8601 for it to be a datetime.
_DATE_SHARE = 0.95
_TRUE = {"true", "yes", "1"}
_FALSE = {"false", "no", "0"}


def infer_kind(column: pd.Series, max_onehot_categories: int) -> str:
    """The kind of one column; see :func:`moensemble.features.infer_kinds`."""
    values = column.dropna()
    if len(values) == 0:
        return "drop"
    dtype = column.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_numeric_dtype(dtype):
        return _numeric_kind(values, max_onehot_categories)
    kinds = value_type(column)
    if kinds == "bool":
        return "boolean"
    if kinds == "number":
        return _numeric_kind(pd.to_numeric(values), max_onehot_categories)
    if kinds != "string":
        return "categorical"
    if _looks_like_dates(values):
        return "datetime"
    n_words = values.str.split().str.len().mean()
    if n_words >= 3 and values.nunique() > max_onehot_categories:
        return "text"
    return "categorical"


def _numeric_kind(values: pd.Series, max_onehot_categories: int) -> str:
    if pd.api.types.is_integer_dtype(values.dtype):
        distinct = values.unique()
        if set(distinct.tolist()) <= {0, 1}:
            return "boolean"
        if len(distinct) <= min(MAX_INT_CATEGORIES, max_onehot_categories):
            return "categorical"
    return "numeric"


def _looks_like_dates(values: pd.Series) -> bool:
    sample = values.iloc[:200]
    # ISO 8601 needs a separator: a column of bare numbers as strings is not a date.
    if not sample.str.contains(r"\d[-/:T]\d", regex=True).all():
        return False
    parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
    return parsed.notna().mean() >= _DATE_SHARE


def value_type(column: pd.Series) -> str:
    """The type of a column's values: bool, number, string, datetime, mixed or empty."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        column = pd.Series(column.cat.categories)
    elif pd.api.types.is_bool_dtype(column.dtype):
        return "bool"
    elif pd.api.types.is_numeric_dtype(column.dtype):
        return "number"
    elif pd.api.types.is_datetime64_any_dtype(column.dtype):
        return "datetime"
    types = {_type_of(v) for v in column.dropna()}
    return types.pop() if len(types) == 1 else ("mixed" if types else "empty")


def _type_of(value: Any) -> str:
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, Number):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, pd.Timestamp | np.datetime64):
        return "datetime"
    return type(value).__name__


def coerce_column(
    column: pd.Series, name: str, kind: str, *, expected_type: str | None = None
) -> pd.Series:
    """The column's values as its kind's plain type, or a ValueError naming the column.

    numeric and boolean: float64 (NaN where missing); categorical: str (NaN where
    missing); datetime: naive datetime64 in UTC; text: str ('' where missing).
    """
    if kind == "numeric":
        return _to_float(column, name)
    if kind == "boolean":
        return _to_bool(column, name)
    if kind == "categorical":
        found = value_type(column)
        if expected_type not in (None, "mixed") and found not in (expected_type, "empty"):
            raise ValueError(
                f"Column {name!r} held {expected_type} categories in fit but holds {found} "
                f"values now, e.g. {_example(column)}; pass the column as in fit."
            )
        values = column.astype(object)
        mask = values.notna()
        values[mask] = values[mask].map(_category_string)
        values[~mask] = np.nan
        return values
    if kind == "datetime":
        return _to_datetime(column, name)
    if kind == "text":
        if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_datetime64_any_dtype(
            column.dtype
        ):
            raise ValueError(
                f"Column {name!r} is a text column but holds {column.dtype} values, e.g. "
                f"{_example(column)}; pass strings."
            )
        return column.astype(object).where(column.notna(), "").map(str)
    raise ValueError(f"Unknown kind {kind!r} for column {name!r}; valid kinds are {KINDS}.")


def _category_string(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))  # 3.0 (an int column that gained a NaN) is the category 3
    return str(value)


def _to_float(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        raise ValueError(f"Column {name!r} was numeric in fit but holds dates now.")
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        raise ValueError(
            f"Column {name!r} is numeric but holds values that are not numbers, e.g. "
            f"{column[bad].iloc[0]!r} ({int(bad.sum())} such values); clean the column or "
            f"set its kind (TableEncoder(kinds={{{name!r}: 'categorical'}}))."
        )
    values = values.astype("float64")
    if np.isinf(values.to_numpy()).any():
        raise ValueError(f"Column {name!r} contains infinity; replace it by a number or NaN.")
    return values


def _to_bool(column: pd.Series, name: str) -> pd.Series:
    def one(value: Any) -> float:
        if isinstance(value, bool | np.bool_):
            return float(value)
        if isinstance(value, Number) and value in (0, 1):
            return float(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return float(value.strip().lower() in _TRUE)
        raise ValueError(
            f"Column {name!r} is boolean but holds {value!r}; valid values are True/False, "
            f"0/1 and missing values."
        )

    mask = column.notna()
    values = pd.Series(np.nan, index=column.index, dtype="float64")
    values[mask] = [one(v) for v in column[mask]]
    return values


def _to_datetime(column: pd.Series, name: str) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        values = column
        if getattr(values.dt, "tz", None) is not None:
            values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[ns]")
    if pd.api.types.is_numeric_dtype(column.dtype) and column.notna().any():
        raise ValueError(
            f"Column {name!r} is a datetime column but holds {column.dtype} numbers now, e.g. "
            f"{_example(column)}; pass dates or ISO 8601 strings."
        )
    values = pd.to_datetime(column, format="ISO8601", errors="coerce", utc=True)
    bad = values.isna() & column.notna()
    if bad.any():
        raise ValueError(
            f"Column {name!r} is a datetime column but holds values that are not ISO 8601 "
            f"dates, e.g. {column[bad].iloc[0]!r} ({int(bad.sum())} such values)."
        )
    return values.dt.tz_localize(None).astype("datetime64[ns]")


def _example(column: pd.Series) -> str:
    values = column.dropna()
    return repr(values.iloc[0]) if len(values) else "none"


def check_target(y: Any, *, n_samples: int | None = None, name: str = "y") -> Any:
    """``y`` (an array unless pandas) after checking it has no missing value.

    The error names the target and the first rows where it is missing.

    Parameters
    ----------
    y : array-like of shape (n_samples,) or (n_samples, n_outputs)
    n_samples : int, default=None
        Rows of ``X``; a ``y`` of another length is an error.
    name : str, default="y"
        How the error names the target (e.g. the CSV column).
    """
    if not isinstance(y, pd.Series | pd.DataFrame):
        y = np.asarray(y)
    values = y.to_numpy() if isinstance(y, pd.Series | pd.DataFrame) else y
    if n_samples is not None and len(values) != n_samples:
        raise ValueError(
            f"The target {name!r} has {len(values)} rows but X has {n_samples}."
        )
    missing = pd.isna(values.reshape(len(values), -1).astype(object)).any(axis=1)
    if missing.any():
        index = y.index if isinstance(y, pd.Series | pd.DataFrame) else np.arange(len(values))
        rows = [str(r) for r in np.asarray(index)[missing][:5]]
        more = " ..." if missing.sum() > 5 else ""
        raise ValueError(
            f"The target {name!r} has {int(missing.sum())} missing value(s), at row(s) "
            f"{', '.join(rows)}{more}; drop those rows or fill the target before fitting."
        )
    return y


def blocks_by_kind(encoder: Any, *, merge: dict[str, str] | None = None) -> dict[str, Any]:
    """The output columns of each kind of a fitted ``TableEncoder``, for ``expert_blocks``.

    A block whose columns are contiguous is a ``slice``; the block that ends at the last
    output column is open-ended (``slice(start, None)``), so that it still covers a TF-IDF
    vocabulary that is wider or narrower when a pipeline is refitted on other rows (put the
    text column last). Other blocks are arrays of column positions.

    Parameters
    ----------
    encoder : TableEncoder
        Fitted, with ``mode="encode"``.
    merge : dict, default=None
        Block names for kinds, ``{kind: block}``: e.g. ``{"boolean": "numeric",
        "datetime": "numeric"}`` gives one numeric block; unlisted kinds keep their name.

    Returns
    -------
    blocks : dict of str to slice or ndarray of int
        In the order of the first output column of each block.
    """
    blocks_ = getattr(encoder, "blocks_", None)
    if not isinstance(blocks_, dict) or not hasattr(encoder, "feature_origins_"):
        raise TypeError(
            "`encoder` must be a fitted moensemble.TableEncoder (it has no `blocks_`); got "
            f"{type(encoder).__name__}."
        )
    if getattr(encoder, "mode", "encode") != "encode":
        raise ValueError("`encoder` has mode='native', whose output an MoE cannot take; "
                         "use mode='encode'.")
    merge = {} if merge is None else merge
    if not isinstance(merge, dict):
        raise TypeError(f"`merge` must be None or a dict {{kind: block}}; got {merge!r}.")
    unknown = sorted(set(merge) - set(KINDS), key=str)
    if unknown:
        raise ValueError(f"`merge` keys must be kinds ({list(KINDS)}); got {unknown}.")
    grouped: dict[str, list] = {}
    for kind, cols in blocks_.items():
        grouped.setdefault(merge.get(kind, kind), []).append(np.asarray(cols))
    n_out = len(encoder.feature_origins_)
    out = {}
    for name, parts in sorted(grouped.items(), key=lambda kv: min(p.min() for p in kv[1])):
        cols = np.sort(np.concatenate(parts))
        if cols[-1] - cols[0] + 1 == len(cols):  # contiguous
            out[name] = slice(int(cols[0]), None if cols[-1] == n_out - 1 else int(cols[-1]) + 1)
        else:
            out[name] = cols
    return out
