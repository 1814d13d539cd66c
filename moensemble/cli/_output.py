"""What ``moensemble compare`` writes: the printed leaderboard, CSV / JSON results and plots,
each file written atomically."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from moensemble.cli.common import UserError

__all__ = ["format_leaderboard", "save_results"]


def _prepare_output(folder: Path) -> Path:
    """Create ``folder`` and check that it takes files before hours of work go into it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot write to output folder {folder}: {reason}") from None
    return folder


def format_leaderboard(board: pd.DataFrame) -> str:
    """The leaderboard as a fixed-width table: ``mean ± std`` per metric, then the extras."""
    table = pd.DataFrame(index=board.index)
    metrics = [c[: -len("_mean")] for c in board.columns if c.endswith("_mean")]
    for metric in metrics:
        mean, std = board[f"{metric}_mean"], board[f"{metric}_std"]
        table[metric] = [f"{m:.3f} ± {s:.3f}" if np.isfinite(m) else "-"
                         for m, s in zip(mean, std, strict=True)]
    table["fit s"] = board["fit_time_s"].map(lambda v: f"{v:.2f}")
    table["predict s/1k"] = board["predict_time_per_1k_s"].map(lambda v: f"{v:.3f}")
    if board["active_params_per_row"].notna().any():
        table["active params/row"] = board["active_params_per_row"].map(
            lambda v: f"{v:,.0f}" if np.isfinite(v) else "-")
        table["load violation"] = board["expert_load_max_violation"].map(
            lambda v: f"{v:.2f}" if np.isfinite(v) else "-")
    table.index = [str(i) for i in table.index]
    return table.to_string()


def save_results(output: Path, board: pd.DataFrame, fold_table: pd.DataFrame, folds: list,
                 dataset: dict, args: argparse.Namespace, seconds: float) -> list[Path]:
    """Write the CSV, JSON and PNG files, each atomically; return their paths."""
    from moensemble.plotting import plot_expert_load, plot_leaderboard, plot_routing_heatmap

    scores = fold_table.drop(columns=["estimator"], errors="ignore")
    written = [
        _write_atomic(output / "leaderboard.csv", lambda f: board.to_csv(f)),
        _write_atomic(output / "leaderboard.json",
                      lambda f: f.write(_report_json(board, scores, dataset, args, seconds))),
        _save_figure(output / "leaderboard.png", plot_leaderboard(board)),
    ]
    moe = _first_moe(fold_table)
    if moe is not None:
        fold = int(moe["fold"])
        test = folds[fold][1]
        X_test = _rows(dataset["X"], test)
        estimator = moe["estimator"]
        rows = f"fold {fold + 1}'s {len(test):,} held-out rows"
        if dataset["task"] == "classification":
            written.append(_save_figure(
                output / "routing_heatmap.png",
                plot_routing_heatmap(estimator, X_test, dataset["y"][test], rows=rows)))
        written.append(_save_figure(output / "expert_load.png",
                                    plot_expert_load(estimator, X_test, rows=rows)))
    return written


def _rows(X, index: np.ndarray):
    return X.iloc[index] if isinstance(X, pd.DataFrame) else X[index]


def _routing_models(models: list) -> list[str]:
    """Names of the models that route (an MoE: its final step has ``route``), in order."""
    from moensemble.folds import final_step

    return [name for name, est in models if hasattr(final_step(est), "route")]


def _first_moe(fold_table: pd.DataFrame) -> pd.Series | None:
    """The first fold's fitted routing model: ``compare`` kept only that model's."""
    if "estimator" not in fold_table:
        return None
    kept = fold_table[fold_table["estimator"].notna()].sort_values("fold", kind="stable")
    return None if kept.empty else kept.iloc[0]


def _report_json(board: pd.DataFrame, scores: pd.DataFrame, dataset: dict,
                 args: argparse.Namespace, seconds: float) -> str:
    report = {
        "task": board.attrs.get("task"),
        "metric": board.attrs.get("metric"),
        "higher_is_better": board.attrs.get("higher_is_better"),
        "data": dataset["description"],
        "cv": args.cv,
        "text_features": (args.text_features if args.data is None or dataset["text_column"]
                          else None),
        "text_views": list(dataset.get("views") or ()) or None,  # None: no TF-IDF text
        "column_kinds": dataset.get("detected_kinds"),
        "random_state": args.random_state,
        "seconds": round(seconds, 2),
        "leaderboard": json.loads(board.reset_index().to_json(orient="records")),
        "folds": json.loads(scores.to_json(orient="records")),
    }
    return json.dumps(report, indent=2)


def _write_atomic(path: Path, write: Callable, mode: str = "w") -> Path:
    """Write through a temporary file in the same folder, then rename over ``path``.

    A crash half-way leaves the previous ``path`` intact rather than a truncated file.
    """
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **({"encoding": "utf-8"} if "b" not in mode else {})) as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _save_figure(path: Path, figure) -> Path:
    return _write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=110,
                                                        bbox_inches="tight"), mode="wb")
