"""Pictures of a leaderboard and of a mixture of experts' routing (matplotlib).

Each function draws on ``ax`` when given, else on a new :class:`matplotlib.figure.Figure`
(made without ``pyplot``, so no global state and no GUI backend), and returns the figure;
saving it (``fig.savefig("board.png")``) is the caller's job.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from sklearn.pipeline import Pipeline

from moensemble.folds import max_violation  # the leaderboard's definition

__all__ = ["plot_leaderboard", "plot_routing_heatmap", "plot_expert_load", "routing_table",
           "expert_load"]

_COLORS = {"best": "#2a9d8f", "moe": "#e76f51", "other": "#8d99ae"}


def plot_leaderboard(board: pd.DataFrame, metric: str | None = None, *,
                     ax: Axes | None = None) -> Figure:
    """Horizontal bars of one metric's mean per model, with the fold std as error bars.

    Parameters
    ----------
    board : DataFrame
        A leaderboard from :func:`moensemble.compare` (index: model names; columns
        ``<metric>_mean`` and ``<metric>_std``).
    metric : str, default=None
        Metric name, with or without the ``_mean`` suffix (``"accuracy"``,
        ``"fit_time_s"``). ``None``: the board's ranking metric (``board.attrs["metric"]``),
        else its first ``*_mean`` column.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    fig : matplotlib Figure
        Bars in the board's order, best on top; the best bar and MoE-like models (a non-NaN
        ``active_params_per_row``) are coloured apart, with a legend. The axis starts at 0
        unless the scores sit close together far from it; the x label then says where it
        starts. Tied scores keep plain tick labels (no offset).
    """
    column = _metric_column(board, metric)
    means = board[column].astype(float)
    std_column = column[: -len("_mean")] + "_std" if column.endswith("_mean") else None
    errors = board[std_column].astype(float) if std_column in board else None
    fig, ax = _figure(ax, (7, 0.45 * len(board) + 1.8))
    positions = np.arange(len(board))[::-1]  # first row (best) at the top
    is_moe = board.get("active_params_per_row", pd.Series(np.nan, board.index)).notna()
    kinds = ["best" if i == 0 else "moe" if moe else "other" for i, moe in enumerate(is_moe)]
    ax.barh(positions, means.to_numpy(), xerr=None if errors is None else errors.to_numpy(),
            color=[_COLORS[k] for k in kinds], capsize=3, ecolor="#333333")
    ax.set_yticks(positions, [str(name) for name in board.index])
    label = column[: -len("_mean")] if column.endswith("_mean") else column
    spread = errors.fillna(0).to_numpy() if errors is not None else np.zeros(len(means))
    start = _zoomed_start(means.to_numpy(), spread)
    if start is not None:
        ax.set_xlim(start[0], start[1])
    # Scores that tie to 1e-10 would otherwise get an offset label ("1e-10+9.99e-1").
    ax.ticklabel_format(axis="x", useOffset=False, style="plain")
    notes = ["mean ± std over folds"] if errors is not None else []
    if start is not None:
        notes.append(f"axis starts at {start[0]:.3g}, not 0")
    ax.set_xlabel(f"{label} ({'; '.join(notes)})" if notes else label)
    ax.set_title(f"Leaderboard: {label}")
    for y, value, err in zip(positions, means, spread, strict=True):
        if np.isfinite(value):
            text = f"{value:.3f}" if abs(value) < 100 else f"{value:.4g}"
            ax.annotate(text, (value + max(err, 0.0), y), xytext=(4, 0),
                        textcoords="offset points", va="center", fontsize=8)
    legend = {"best": "best (first row)", "moe": "mixture of experts", "other": "other"}
    ax.legend(handles=[Patch(color=_COLORS[k], label=legend[k]) for k in legend if k in kinds],
              loc="best", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    return fig


def _zoomed_start(means: np.ndarray, spread: np.ndarray) -> tuple[float, float] | None:
    """``(left, right)`` x-limits that zoom on the spread between models, or None for an axis
    from 0: when the scores sit far from zero and do not all tie."""
    finite = np.isfinite(means)
    if not finite.any():
        return None
    low = float((means - spread)[finite].min())
    high = float((means + spread)[finite].max())
    if low <= 0 or high - low >= 0.5 * high or high - low <= 1e-6 * high:
        return None
    # Room on the right for the value labels, which stand past the error bars.
    return max(0.0, low - 0.1 * (high - low)), high + 0.2 * (high - low)


def routing_table(model, X, y) -> pd.DataFrame:
    """Share of each class's routing weight that goes to each expert.

    Parameters
    ----------
    model : fitted MoE estimator, or a fitted Pipeline ending in one
        Must have ``route(X) -> (indices, gates)``, both of shape (n_samples, top_k).
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Input as ``model`` takes it (raw texts for a text pipeline).
    y : array-like of shape (n_samples,)
        Class labels of ``X``.

    Returns
    -------
    table : DataFrame of shape (n_classes, n_experts)
        Rows are classes, columns experts; each row sums to 1: the gate weight of that class's
        rows summed per expert, divided by the class total.
    """
    indices, gates, n_experts = _route(model, X)
    y = np.asarray(y)
    if len(y) != len(indices):
        raise ValueError(f"`y` has {len(y)} labels but `X` has {len(indices)} rows.")
    classes, codes = np.unique(y, return_inverse=True)
    weights = np.where(gates.sum(axis=1, keepdims=True) > 0, gates, 1.0)  # all-zero gates: count
    table = np.zeros((len(classes), n_experts))
    np.add.at(table, (np.repeat(codes, indices.shape[1]), indices.ravel()), weights.ravel())
    table /= table.sum(axis=1, keepdims=True)
    return pd.DataFrame(table, index=pd.Index(classes, name="class"),
                        columns=pd.Index(range(n_experts), name="expert"))


def plot_routing_heatmap(model, X, y, *, rows: str | None = None,
                         ax: Axes | None = None) -> Figure:
    """Heatmap of :func:`routing_table`: which experts each class is routed to.

    Parameters
    ----------
    model : fitted MoE estimator, or a fitted Pipeline ending in one
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    rows : str, default=None
        Which rows ``X`` holds, for the subtitle (``"fold 1's 1,000 held-out rows"``);
        None says how many rows were given.
    ax : matplotlib Axes, default=None

    Returns
    -------
    fig : matplotlib Figure
        One image (``ax.images[0]``) whose array is the table, rows summing to 1, a labelled
        colour bar, and a subtitle naming the rows it was computed on.
    """
    table = routing_table(model, X, y)
    n_classes, n_experts = table.shape
    fig, ax = _figure(ax, (2.0 + 0.45 * n_experts, 1.7 + 0.22 * n_classes))
    image = ax.imshow(table.to_numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1,
                      interpolation="nearest")
    ax.set_xticks(range(n_experts), [str(e) for e in table.columns])
    ax.set_yticks(range(n_classes), [str(c) for c in table.index], fontsize=7)
    ax.set_xlabel("expert")
    ax.set_ylabel("class")
    ax.set_title(f"Share of each class routed to each expert\n{_rows_text(rows, X)}",
                 fontsize=10)
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label("share of the class's routing weight (row sums to 1)", fontsize=8)
    fig.tight_layout()
    return fig


def expert_load(model, X=None) -> np.ndarray:
    """Share of routed assignments per expert, as the fitted ``expert_load_`` defines it.

    With ``X``, measured on those rows through ``route``: each row's ``k`` chosen experts
    count once each, or, for dense routing (every row uses every expert), the mean gate.
    Without ``X``, the fitted ``expert_load_`` (the training rows; a 2-D load is averaged
    over its rows). Normalised to sum to 1.
    """
    if X is not None:
        indices, gates, n_experts = _route(model, X)
        if indices.shape[1] >= n_experts:
            load = np.bincount(indices.ravel(), weights=gates.ravel(), minlength=n_experts)
        else:
            load = np.bincount(indices.ravel(), minlength=n_experts).astype(float)
    else:
        final = _final_step(model)
        if not hasattr(final, "expert_load_"):
            raise TypeError(f"{type(final).__name__} has no `expert_load_`; fit an MoE model "
                            "or pass X.")
        load = np.asarray(final.expert_load_, dtype=float)
        load = load.reshape(-1, load.shape[-1]).mean(axis=0)
    total = load.sum()
    return load / total if total > 0 else load


def plot_expert_load(model, X=None, *, rows: str | None = None,
                     ax: Axes | None = None) -> Figure:
    """Bar chart of the share of routed assignments each expert receives.

    Parameters
    ----------
    model : fitted MoE estimator, or a fitted Pipeline ending in one
    X : {array-like, sparse matrix}, default=None
        Measure the load on these rows (through ``route``); None uses ``expert_load_``
        (the training rows), the load that :func:`moensemble.compare` reports.
    rows : str, default=None
        Which rows ``X`` holds, for the subtitle; None says how many rows were given, or
        "training rows" without ``X``.
    ax : matplotlib Axes, default=None

    Returns
    -------
    fig : matplotlib Figure
        One bar per expert, a dashed line at the balanced share ``1 / n_experts``, and in
        the title the load's :func:`moensemble.folds.max_violation` (the leaderboard's
        definition) with the rows it was measured on.
    """
    load = expert_load(model, X)
    fig, ax = _figure(ax, (2.5 + 0.5 * len(load), 3.8))
    ax.bar(np.arange(len(load)), load, color=_COLORS["moe"])
    balanced = 1.0 / len(load)
    ax.axhline(balanced, linestyle="--", color="#333333", linewidth=1, label="balanced")
    ax.set_xticks(np.arange(len(load)))
    ax.set_xlabel("expert")
    ax.set_ylabel("share of routed assignments")
    where = _rows_text(rows, X) if X is not None or rows is not None else (
        "on the training rows (expert_load_)")
    ax.set_title(f"Expert load (max violation {max_violation(load):.2f})\n{where}",
                 fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return fig


# ---- helpers ---------------------------------------------------------------------------------


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.get_figure(), ax
    fig = Figure(figsize=size, dpi=100)
    return fig, fig.subplots()


def _rows_text(rows: str | None, X) -> str:
    if rows is not None:
        return f"on {rows}"
    return f"on the {X.shape[0] if hasattr(X, 'shape') else len(X):,} rows given"


def _metric_column(board: pd.DataFrame, metric: str | None) -> str:
    if metric is None:
        metric = board.attrs.get("metric")
        if metric is None:
            means = [c for c in board.columns if str(c).endswith("_mean")]
            if not means:
                raise ValueError("`board` has no `<metric>_mean` column; pass `metric`.")
            return means[0]
    for candidate in (f"{metric}_mean", metric):
        if candidate in board.columns:
            return candidate
    available = sorted({c[: -len("_mean")] for c in board.columns if str(c).endswith("_mean")})
    raise ValueError(f"metric {metric!r} is not in the leaderboard; available: {available} "
                     f"or a column of {list(board.columns)}.")


def _final_step(model):
    while isinstance(model, Pipeline):
        model = model[-1]
    return getattr(model, "best_estimator_", model)


def _route(model, X) -> tuple[np.ndarray, np.ndarray, int]:
    """``route`` through any pipeline steps in front of the MoE: (indices, gates, n_experts)."""
    final = getattr(model, "best_estimator_", model)
    while isinstance(final, Pipeline):
        X = final[:-1].transform(X) if len(final) > 1 else X
        final = getattr(final[-1], "best_estimator_", final[-1])
    if not hasattr(final, "route"):
        raise TypeError(f"{type(final).__name__} has no `route(X)`; pass a fitted MoE model "
                        "(or a Pipeline ending in one).")
    indices, gates = final.route(X)
    indices = np.asarray(indices, dtype=int).reshape(len(indices), -1)
    gates = np.asarray(gates, dtype=float).reshape(indices.shape)
    # The fitted load has one entry per expert (per base model for a gated ensemble, and
    # for a list of heterogeneous experts whatever `n_experts` says); experts that took no
    # row here still get a column.
    load = getattr(final, "expert_load_", None)
    n_experts = np.shape(load)[-1] if load is not None else int(indices.max()) + 1
    return indices, gates, n_experts
