"""Plots: asserted on what the figures contain."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from sklearn.base import BaseEstimator  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402

from moensemble.folds import max_violation  # noqa: E402
from moensemble.plotting import (  # noqa: E402
    expert_load,
    plot_expert_load,
    plot_leaderboard,
    plot_routing_heatmap,
    routing_table,
)


class FixedRouter(BaseEstimator):
    """Routes row i by the integer in its first column: experts (v % 3, (v + 1) % 3)."""

    n_experts = 3

    def fit(self, X, y=None):
        self.expert_load_ = np.array([2.0, 1.0, 1.0])
        return self

    def route(self, X):
        v = np.asarray(X)[:, 0].astype(int)
        indices = np.stack([v % 3, (v + 1) % 3], axis=1)
        gates = np.tile([0.75, 0.25], (len(v), 1))
        return indices, gates


def _bars(ax) -> list[Rectangle]:
    return [p for p in ax.patches if isinstance(p, Rectangle)]


@pytest.fixture
def board() -> pd.DataFrame:
    df = pd.DataFrame(
        {"accuracy_mean": [0.9, 0.8, 0.7], "accuracy_std": [0.01, 0.02, 0.03],
         "fit_time_s": [3.0, 1.0, 2.0], "active_params_per_row": [np.nan, 500.0, np.nan]},
        index=pd.Index(["stacked", "moe", "tree"], name="model"),
    )
    df.attrs["metric"] = "accuracy"
    return df


def test_plot_leaderboard_bars_match_the_board(board):
    fig = plot_leaderboard(board)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    bars = _bars(ax)
    assert len(bars) == 3
    # Best model on top: sort bars by height on the axis, top first.
    top_first = sorted(bars, key=lambda b: -b.get_y())
    assert [b.get_width() for b in top_first] == pytest.approx([0.9, 0.8, 0.7])
    labels = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels()),
                      strict=True))
    assert [labels[y] for y in sorted(labels, reverse=True)] == ["stacked", "moe", "tree"]
    # One error bar per model, as long as twice its std.
    segments = ax.collections[0].get_segments()
    widths = sorted(abs(s[1][0] - s[0][0]) for s in segments)
    assert widths == pytest.approx([0.02, 0.04, 0.06])
    assert "accuracy" in ax.get_title()
    # The MoE bar is coloured apart from the plain ones.
    assert top_first[1].get_facecolor() != top_first[2].get_facecolor()


def test_plot_leaderboard_other_metric_and_errors(board):
    fig = plot_leaderboard(board, metric="fit_time_s")
    assert [b.get_width() for b in sorted(_bars(fig.axes[0]), key=lambda b: -b.get_y())] == [
        3.0, 1.0, 2.0]
    with pytest.raises(ValueError, match="available: \\['accuracy'\\]"):
        plot_leaderboard(board, metric="r2")


def test_routing_table_and_heatmap_rows_sum_to_one():
    X = np.array([[0], [0], [1], [2]])
    y = np.array(["a", "a", "b", "b"])
    model = FixedRouter().fit(X)
    table = routing_table(model, X, y)
    # Class a: rows go to experts (0, 1) with gates (.75, .25); class b: half (1, 2), half (2, 0).
    np.testing.assert_allclose(table.loc["a"], [0.75, 0.25, 0.0])
    np.testing.assert_allclose(table.loc["b"], [0.125, 0.375, 0.5])
    fig = plot_routing_heatmap(model, X, y)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 3)
    np.testing.assert_allclose(image.sum(axis=1), 1.0)
    # Through a pipeline, the steps before the router transform X first.
    pipe = Pipeline([("shift", FunctionTransformer(lambda Z: Z + 1)), ("moe", model)])
    np.testing.assert_allclose(routing_table(pipe, X - 1, y), table)


def test_expert_load_from_route_or_fitted_attribute():
    X = np.array([[0], [1], [1], [1]])
    model = FixedRouter().fit(X)
    # Assignments, as `expert_load_` counts them: rows go to (0, 1), (1, 2), (1, 2), (1, 2).
    np.testing.assert_allclose(expert_load(model, X), np.array([1, 4, 3]) / 8)
    fig = plot_expert_load(model)
    bars = _bars(fig.axes[0])
    assert [b.get_height() for b in bars] == pytest.approx([0.5, 0.25, 0.25])
    assert "max violation 0.50" in fig.axes[0].get_title()
    assert "training rows" in fig.axes[0].get_title()
    title = plot_expert_load(model, X, rows="fold 2's test rows").axes[0].get_title()
    assert "max violation 0.50" in title and "on fold 2's test rows" in title  # (.5-1/3)/(1/3)
    with pytest.raises(TypeError, match="route"):
        routing_table(BaseEstimator(), X, [0, 0, 1, 1])


def test_plots_of_a_fitted_moe(tmp_path):
    from sklearn.datasets import load_iris

    from moensemble.moe import MoEClassifier

    X, y = load_iris(return_X_y=True)
    model = MoEClassifier(n_experts=4, top_k=2, max_epochs=3, random_state=0).fit(X, y)
    table = routing_table(model, X, y)
    assert table.shape == (3, 4)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-6)
    fig = plot_expert_load(model)
    assert len(_bars(fig.axes[0])) == 4
    assert sum(b.get_height() for b in _bars(fig.axes[0])) == pytest.approx(1.0)
    plot_routing_heatmap(model, X, y).savefig(tmp_path / "heatmap.png")
    assert (tmp_path / "heatmap.png").stat().st_size > 1000


class IdleExpertRouter(FixedRouter):
    """Like a gated ensemble: no ``n_experts`` parameter, and expert 3 takes no row here."""

    n_experts = None

    def fit(self, X, y=None):
        self.expert_load_ = np.array([0.4, 0.3, 0.3, 0.0])
        return self


def test_routing_table_has_a_column_for_an_expert_that_took_no_row():
    X = np.arange(9).reshape(-1, 1)
    model = IdleExpertRouter().fit(X)
    table = routing_table(model, X, np.arange(9) % 2)
    assert list(table.columns) == [0, 1, 2, 3]
    np.testing.assert_allclose(table[3], 0.0)
    np.testing.assert_allclose(table.sum(axis=1), 1.0)


def _drawn(fig: Figure) -> Figure:
    FigureCanvasAgg(fig).draw()  # tick labels and offset text exist only once drawn
    return fig


def test_tied_scores_keep_a_plain_axis_from_zero():
    board = pd.DataFrame({"accuracy_mean": [1 - 1e-10, 1 - 1e-10, 1 - 2e-10],
                          "accuracy_std": [0.0, 0.0, 0.0]},
                         index=pd.Index(["a", "b", "c"], name="model"))
    ax = _drawn(plot_leaderboard(board)).axes[0]
    assert ax.xaxis.get_offset_text().get_text() == ""
    assert ax.get_xlim()[0] == 0.0
    ticks = [t.get_text().replace("\u2212", "-") for t in ax.get_xticklabels()]
    assert all(0.0 <= float(t) <= 1.2 for t in ticks if t), ticks
    assert "axis starts" not in ax.get_xlabel()


def test_a_zoomed_axis_says_where_it_starts(board):
    ax = _drawn(plot_leaderboard(board)).axes[0]
    left = ax.get_xlim()[0]
    assert left > 0.5  # scores 0.67-0.91: zoomed
    assert f"axis starts at {left:.3g}, not 0" in ax.get_xlabel()
    assert ax.xaxis.get_offset_text().get_text() == ""
    # fit times spread from 1 to 3 s: the axis starts at 0 and says nothing.
    ax = plot_leaderboard(board, metric="fit_time_s").axes[0]
    assert ax.get_xlim()[0] == 0.0 and "axis starts" not in ax.get_xlabel()


def test_the_leaderboard_legend_names_the_colours(board):
    ax = plot_leaderboard(board).axes[0]
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["best (first row)", "mixture of experts", "other"]
    top_first = sorted(_bars(ax), key=lambda b: -b.get_y())  # stacked (best), moe, tree
    for handle, bar in zip(legend.legend_handles, top_first, strict=True):
        assert handle.get_facecolor() == bar.get_facecolor()
    # No MoE on the board: no MoE entry.
    plain = plot_leaderboard(board.drop(columns="active_params_per_row")).axes[0]
    assert [t.get_text() for t in plain.get_legend().get_texts()] == ["best (first row)",
                                                                      "other"]


def test_the_heatmap_labels_its_colour_bar_and_names_its_rows():
    X = np.array([[0], [0], [1], [2]])
    y = np.array(["a", "a", "b", "b"])
    fig = plot_routing_heatmap(FixedRouter().fit(X), X, y)
    heatmap, colour_bar = fig.axes
    assert "routing weight" in colour_bar.get_ylabel()
    assert "on the 4 rows given" in heatmap.get_title()
    fig = plot_routing_heatmap(FixedRouter().fit(X), X, y, rows="fold 1's 4 held-out rows")
    assert "on fold 1's 4 held-out rows" in fig.axes[0].get_title()


def test_the_plotted_load_is_the_one_the_leaderboard_reports():
    from sklearn.datasets import make_classification

    from moensemble.moe import MoEClassifier

    X, y = make_classification(n_samples=300, n_features=8, random_state=0)
    model = MoEClassifier(n_experts=4, top_k=2, max_epochs=3, random_state=0).fit(X, y)
    # On the training rows, routing by hand counts what `expert_load_` counted in fit.
    np.testing.assert_allclose(expert_load(model, X), model.expert_load_, atol=1e-6)
    title = plot_expert_load(model).axes[0].get_title()
    assert f"max violation {max_violation(model.expert_load_):.2f}" in title
    title = plot_expert_load(model, X[:100]).axes[0].get_title()
    assert f"max violation {max_violation(expert_load(model, X[:100])):.2f}" in title
    assert "on the 100 rows given" in title
