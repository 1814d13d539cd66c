"""Reading a router: which rows, classes and feature ranges each expert takes, and how well.

:func:`routing_report` works for any fitted model with ``route(X) -> (indices, gates)``: the
mixture of experts (:class:`~moensemble.moe.MoEClassifier`, ...), the gated ensembles
(:class:`~moensemble.gated.GatedEnsembleClassifier`, ...) and pipelines ending in one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.base import is_classifier
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_array

__all__ = ["routing_report"]

_QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def routing_report(
    model, X, y=None, feature_names: Sequence[str] | None = None, *, top: int = 3
) -> pd.DataFrame:
    """One row per expert: its load, the rows it takes, and how well they are predicted.

    A row's *primary* expert is the one with its largest gate; "its rows" below are the rows
    whose primary expert it is (for top-1 routing, simply the rows routed to it).

    Parameters
    ----------
    model : fitted estimator with ``route(X)``, or a fitted Pipeline ending in one
        A mixture of experts or a gated ensemble (a search's ``best_estimator_`` is used).
    X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
        Input as ``model`` takes it (raw text for a text pipeline).
    y : array-like of shape (n_samples,) or (n_samples, n_outputs), default=None
        True targets; adds the scores and, for classifiers, the class shares.
    feature_names : sequence of str, default=None
        Names of the columns of ``X``; default: the DataFrame's columns, the model's
        ``feature_names_in_`` or ``x0, x1, ...``. When ``X`` is not numeric (raw text), the
        features are those the pipeline hands to the router's model.
    top : int, default=3
        How many classes / features to name in the summary columns.

    Returns
    -------
    report : DataFrame of shape (n_experts, n_columns)
        Indexed by expert number, with columns:

        - ``name``: the base's name (gated ensembles) or ``expert_<i>``;
        - ``load``: share of the total gate weight on ``X`` (sums to 1);
        - ``rows``, ``row_share``: rows whose primary expert it is, and their share;
        - ``mean_gate``: mean gate of the expert over the rows routed to it;
        - with ``y``, ``accuracy`` (classifiers) or ``r2`` (regressors): the model's score
          on the expert's rows (NaN with no rows, or with fewer than 2 for ``r2``);
        - with ``y`` and a gated ensemble, ``expert_accuracy`` / ``expert_r2``: the base's
          own score on those rows;
        - with ``y`` and a classifier, ``top_classes``: the ``top`` classes with the largest
          share of their gate weight routed to this expert, as ``"label (share)"``;
        - with ``y`` and a regressor, ``target_mean`` of the expert's rows;
        - ``distinctive_features``: the ``top`` features whose mean on the expert's rows is
          furthest from their overall mean, in overall standard deviations.

        ``report.attrs`` holds the full tables: ``"class_share"`` (DataFrame of shape
        (n_classes, n_experts), each row summing to 1) with ``y`` for a classifier, and
        ``"feature_ranges"`` (DataFrame indexed by (expert, feature) with ``mean``, ``std``
        and the 5/25/50/75/95% quantiles of the expert's rows; quantiles are NaN for sparse
        input) when the features are numeric.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from moensemble import GatedEnsembleClassifier
    >>> from moensemble.interpret import routing_report
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 3))
    >>> y = np.where(X[:, 0] < 0, X[:, 1] > 0, X[:, 1] * X[:, 2] > 0).astype(int)
    >>> gated = GatedEnsembleClassifier(
    ...     [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(random_state=0))],
    ...     cv=3, max_epochs=20, random_state=0,
    ... ).fit(X, y)
    >>> report = routing_report(gated, X, y)
    >>> list(report["name"])
    ['lr', 'tree']
    >>> float(report["load"].sum())
    1.0
    """
    final, X_routed = _final_and_input(model, X)
    indices, gates = final.route(X_routed)
    indices = np.asarray(indices, dtype=np.int64).reshape(len(indices), -1)
    gates = np.asarray(gates, dtype=np.float64).reshape(indices.shape)
    n_experts = _n_experts(final, indices)
    names = _expert_names(final, n_experts)
    primary = indices[np.arange(len(indices)), np.argmax(gates, axis=1)]

    report = _load_columns(indices, gates, primary, n_experts, names)
    if y is not None:
        _add_target_columns(report, model, final, X, X_routed, y, indices, gates, primary, top)
    features, columns = _numeric_features(model, final, X, X_routed, feature_names)
    if features is not None:
        ranges, distinctive = _feature_ranges(features, columns, primary, names, top)
        report["distinctive_features"] = distinctive
        report.attrs["feature_ranges"] = ranges
    return report


# ---- routing ---------------------------------------------------------------------------------


def _final_and_input(model, X):
    """The estimator that routes, and ``X`` as it reaches it (through pipeline steps)."""
    final = getattr(model, "best_estimator_", model)
    while isinstance(final, Pipeline):
        X = final[:-1].transform(X) if len(final) > 1 else X
        final = getattr(final[-1], "best_estimator_", final[-1])
    if not hasattr(final, "route"):
        raise TypeError(
            f"{type(final).__name__} has no `route(X)`; pass a fitted mixture of experts or "
            "gated ensemble (or a Pipeline ending in one)."
        )
    return final, X


def _n_experts(final, indices: np.ndarray) -> int:
    # The fitted load knows every expert, also those that no row of X reaches.
    if hasattr(final, "expert_load_"):
        return int(np.asarray(final.expert_load_).shape[-1])
    return int(getattr(final, "n_experts", indices.max() + 1))


def _expert_names(final, n_experts: int) -> list[str]:
    named = getattr(final, "named_estimators_", None)
    if named is not None and len(named) == n_experts:
        return [str(name) for name in named]
    return [f"expert_{i}" for i in range(n_experts)]


def _load_columns(indices, gates, primary, n_experts: int, names: list[str]) -> pd.DataFrame:
    weight = np.bincount(indices.ravel(), weights=gates.ravel(), minlength=n_experts)
    rows = np.bincount(primary, minlength=n_experts)
    routed = np.bincount(indices.ravel(), minlength=n_experts)
    return pd.DataFrame(
        {
            "name": names,
            "load": weight / max(weight.sum(), 1e-12),
            "rows": rows,
            "row_share": rows / max(len(primary), 1),
            "mean_gate": np.divide(
                weight, routed, out=np.full(n_experts, np.nan), where=routed > 0
            ),
        },
        index=pd.RangeIndex(n_experts, name="expert"),
    )


# ---- targets ---------------------------------------------------------------------------------


def _add_target_columns(report, model, final, X, X_routed, y, indices, gates, primary, top):
    y = np.asarray(y)
    if len(y) != len(primary):
        raise ValueError(f"`y` has {len(y)} rows but `X` has {len(primary)}.")
    classifier = is_classifier(final)
    metric = "accuracy" if classifier else "r2"
    predicted = np.asarray(model.predict(X))
    report[metric] = [_score(classifier, y, predicted, primary == e) for e in report.index]
    if hasattr(final, "_predict_base"):  # a gated ensemble: score each base on its own rows
        report[f"expert_{metric}"] = [
            _base_score(final, e, X_routed, y, primary == e, classifier) for e in report.index
        ]
    if classifier:
        share = _class_share(y, indices, gates, report["name"])
        report["top_classes"] = [_top_labels(share[name], top) for name in report["name"]]
        report.attrs["class_share"] = share
    else:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        report["target_mean"] = [
            float(y2[primary == e].mean()) if np.any(primary == e) else np.nan
            for e in report.index
        ]


def _score(classifier: bool, y, predicted, rows: np.ndarray) -> float:
    if classifier:
        return float(accuracy_score(y[rows], predicted[rows])) if rows.any() else np.nan
    return float(r2_score(y[rows], predicted[rows])) if rows.sum() >= 2 else np.nan


def _base_score(final, e: int, X, y, rows: np.ndarray, classifier: bool) -> float:
    if not (rows.any() if classifier else rows.sum() >= 2):
        return np.nan
    pred = final._predict_base(e, _safe_indexing(X, np.flatnonzero(rows)))
    if classifier:
        pred = final.classes_[np.argmax(pred, axis=1)]
    elif y.ndim == 1:
        pred = pred.ravel()
    return _score(classifier, y[rows], pred, np.ones(int(rows.sum()), dtype=bool))


def _class_share(y, indices, gates, names) -> pd.DataFrame:
    """Share of each class's gate weight that goes to each expert: (n_classes, n_experts)."""
    classes, codes = np.unique(y, return_inverse=True)
    table = np.zeros((len(classes), len(names)))
    np.add.at(table, (np.repeat(codes, indices.shape[1]), indices.ravel()), gates.ravel())
    table /= np.clip(table.sum(axis=1, keepdims=True), 1e-12, None)
    return pd.DataFrame(
        table, index=pd.Index(classes, name="class"), columns=pd.Index(list(names), name="expert")
    )


def _top_labels(shares: pd.Series, top: int) -> str:
    best = shares.sort_values(ascending=False, kind="stable").head(top)
    return ", ".join(f"{label} ({share:.2f})" for label, share in best.items() if share > 0)


# ---- features --------------------------------------------------------------------------------


def _numeric_features(model, final, X, X_routed, feature_names):
    """The numeric matrix to describe (raw X if numeric, else what the router's model sees)."""
    for candidate, raw in ((X, True), (X_routed, False)):
        try:
            values = check_array(
                candidate, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False
            )
        except (TypeError, ValueError):
            continue
        given = feature_names if raw else _pipeline_feature_names(model)
        return values, _column_names(final, candidate, values.shape[1], given)
    return None, None


def _pipeline_feature_names(model) -> list[str] | None:
    """Names of what a pipeline's steps hand to its last step (e.g. TF-IDF words)."""
    model = getattr(model, "best_estimator_", model)
    if not (isinstance(model, Pipeline) and len(model) > 1):
        return None
    try:
        return [str(name) for name in model[:-1].get_feature_names_out()]
    except (AttributeError, TypeError, ValueError):
        return None


def _column_names(final, X, n_columns: int, given) -> list[str]:
    if given is not None:
        if len(given) != n_columns:
            raise ValueError(f"`feature_names` has {len(given)} names for {n_columns} columns.")
        return [str(name) for name in given]
    if hasattr(X, "columns"):
        return [str(c) for c in X.columns]
    names = getattr(final, "feature_names_in_", None)
    if names is not None and len(names) == n_columns:
        return [str(n) for n in names]
    return [f"x{j}" for j in range(n_columns)]


def _feature_ranges(values, columns, primary, names, top):
    """Per (expert, feature) statistics of the expert's rows, and a short summary per expert."""
    overall_mean, overall_std = _mean_std(values)
    frames, summaries = [], []
    for e in range(len(names)):
        rows = np.flatnonzero(primary == e)
        stats = _stats(values[rows]) if rows.size else _empty_stats(values.shape[1])
        frames.append(pd.DataFrame(stats, index=pd.Index(columns, name="feature")))
        shift = (stats["mean"] - overall_mean) / np.where(overall_std > 0, overall_std, 1.0)
        order = np.argsort(-np.nan_to_num(np.abs(shift)), kind="stable")[:top]
        summaries.append(
            ", ".join(f"{columns[j]} ({shift[j]:+.1f} sd)" for j in order if np.isfinite(shift[j]))
        )
    ranges = pd.concat(frames, keys=list(names), names=["expert", "feature"])
    return ranges, summaries


def _mean_std(values) -> tuple[np.ndarray, np.ndarray]:
    if sp.issparse(values):
        mean = np.asarray(values.mean(axis=0)).ravel()
        square = np.asarray(values.multiply(values).mean(axis=0)).ravel()
        return mean, np.sqrt(np.clip(square - mean**2, 0.0, None))
    return np.nanmean(values, axis=0), np.nanstd(values, axis=0)


def _stats(values) -> dict[str, np.ndarray]:
    mean, std = _mean_std(values)
    stats = {"mean": mean, "std": std}
    for q in _QUANTILES:
        if sp.issparse(values):  # quantiles of a sparse column would densify it
            stats[f"q{round(q * 100):02d}"] = np.full(values.shape[1], np.nan)
        else:
            stats[f"q{round(q * 100):02d}"] = np.nanquantile(values, q, axis=0)
    return stats


def _empty_stats(n_columns: int) -> dict[str, np.ndarray]:
    keys = ["mean", "std", *(f"q{round(q * 100):02d}" for q in _QUANTILES)]
    return {key: np.full(n_columns, np.nan) for key in keys}
