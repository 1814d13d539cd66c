"""routing_report: which classes, feature ranges and scores each expert has."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_blobs
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline

from moensemble import GatedEnsembleClassifier, GatedEnsembleRegressor, MoEClassifier
from moensemble.interpret import routing_report


def on_columns(columns, estimator):
    return make_pipeline(ColumnTransformer([("keep", "passthrough", columns)]), estimator)


def regime_data(n_samples=600, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 3))
    y_class = np.where(X[:, 0] < 0, X[:, 1] > 0, X[:, 2] > 0).astype(int)
    y_reg = np.where(X[:, 0] < 0, X[:, 1], X[:, 2]) + 0.1 * rng.normal(size=n_samples)
    return X, y_class, y_reg


FAST = dict(cv=3, max_epochs=30, random_state=0)


@pytest.fixture(scope="module")
def gated_classifier():
    X, y, _ = regime_data()
    bases = [
        ("left", on_columns([1], LogisticRegression())),
        ("right", on_columns([2], LogisticRegression())),
    ]
    return GatedEnsembleClassifier(bases, **FAST).fit(X[:400], y[:400]), X[400:], y[400:]


def test_gated_report_names_the_region_and_scores_of_each_base(gated_classifier):
    gated, X, y = gated_classifier
    report = routing_report(gated, X, y, feature_names=["side", "u", "v"])
    assert list(report["name"]) == ["left", "right"]
    assert report["load"].sum() == pytest.approx(1.0)
    assert report["rows"].sum() == len(X)
    assert report["row_share"].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(report["mean_gate"], 1.0)  # top-1: the kept gate is 1

    # The report says where each base works: 'left' takes negative x0, 'right' positive.
    ranges = report.attrs["feature_ranges"]
    assert ranges.loc[("left", "side"), "mean"] < -0.4
    assert ranges.loc[("right", "side"), "mean"] > 0.4
    assert ranges.loc[("left", "side"), "q25"] < ranges.loc[("right", "side"), "q25"]
    assert report.loc[0, "distinctive_features"].startswith("side (-")
    assert report.loc[1, "distinctive_features"].startswith("side (+")

    # Scores on its rows: the ensemble's, and the base's own, which is high where it is routed
    # and near chance on the other base's rows.
    assert (report["accuracy"] > 0.85).all()
    assert (report["expert_accuracy"] > 0.85).all()
    indices, _ = gated.route(X)
    other_rows = indices[:, 0] == 1
    left_on_right = gated.named_estimators_["left"].score(X[other_rows], y[other_rows])
    assert left_on_right < 0.75
    # Row-weighted accuracies give back the overall accuracy.
    overall = (report["accuracy"] * report["rows"]).sum() / len(X)
    assert overall == pytest.approx(gated.score(X, y))


def test_class_shares_sum_to_one_per_class(gated_classifier):
    gated, X, y = gated_classifier
    report = routing_report(gated, X, y)
    share = report.attrs["class_share"]
    assert share.shape == (2, 2)
    assert list(share.index) == [0, 1]
    np.testing.assert_allclose(share.sum(axis=1), 1.0)
    # Each summary names the class with its largest share first.
    for name, summary in zip(report["name"], report["top_classes"], strict=True):
        assert summary.split(" (")[0] == str(share[name].idxmax())


def test_report_without_labels_has_no_scores(gated_classifier):
    gated, X, _ = gated_classifier
    report = routing_report(gated, X)
    assert "accuracy" not in report and "top_classes" not in report
    features = report.attrs["feature_ranges"].index.get_level_values("feature")
    assert set(features) == {"x0", "x1", "x2"}


def test_feature_names_come_from_the_data_frame():
    X, y, _ = regime_data(300)
    frame = pd.DataFrame(X, columns=["side", "u", "v"])
    bases = [
        ("u", on_columns(["u"], LogisticRegression())),
        ("v", on_columns(["v"], LogisticRegression())),
    ]
    gated = GatedEnsembleClassifier(bases, cv=2, max_epochs=10, random_state=0).fit(frame, y)
    report = routing_report(gated, frame, y)
    ranges = report.attrs["feature_ranges"]
    assert set(ranges.index.get_level_values("feature")) == {"side", "u", "v"}
    assert ranges.loc[("u", "side"), "mean"] < ranges.loc[("v", "side"), "mean"]


def test_moe_report_matches_class_regions():
    X, y = make_blobs(n_samples=400, centers=[[-6, 0], [6, 0]], cluster_std=1.0, random_state=0)
    moe = MoEClassifier(
        n_experts=2, top_k=1, max_epochs=15, lr=1e-2, aux_loss_coef=0.1, random_state=0
    ).fit(X, y)
    report = routing_report(moe, X, y)
    assert list(report["name"]) == ["expert_0", "expert_1"]
    assert report["rows"].sum() == len(X)
    assert report.attrs["class_share"].shape == (2, 2)
    np.testing.assert_allclose(report.attrs["class_share"].sum(axis=1), 1.0)
    overall = (report["accuracy"].fillna(0) * report["rows"]).sum() / len(X)
    assert overall == pytest.approx(moe.score(X, y))
    assert "expert_accuracy" not in report  # MoE experts are not separate models


def test_regressor_report_has_r2_and_target_means():
    X, _, y = regime_data()
    bases = [
        ("left", on_columns([1], LinearRegression())),
        ("right", on_columns([2], LinearRegression())),
    ]
    gated = GatedEnsembleRegressor(bases, **FAST).fit(X, y)
    report = routing_report(gated, X, y)
    assert {"r2", "expert_r2", "target_mean"} <= set(report.columns)
    assert (report["r2"] > 0.5).all()
    ranges = report.attrs["feature_ranges"]
    assert ranges.loc[("left", "x0"), "q75"] < ranges.loc[("right", "x0"), "q25"] + 0.5


def test_text_pipeline_reports_words():
    texts = ["cat dog pet fur"] * 40 + ["stock bond market price"] * 40
    y = np.array([0] * 40 + [1] * 40)
    pipe = make_pipeline(
        TfidfVectorizer(), MoEClassifier(n_experts=2, top_k=1, max_epochs=3, random_state=0)
    ).fit(texts, y)
    report = routing_report(pipe, texts, y)
    ranges = report.attrs["feature_ranges"]
    words = set(ranges.index.get_level_values("feature"))
    assert {"cat", "market"} <= words
    assert ranges["q50"].isna().all()  # sparse features: mean and std only


def test_errors():
    X, y, _ = regime_data(50)
    with pytest.raises(TypeError, match="route"):
        routing_report(LogisticRegression().fit(X, y), X, y)
    gated = GatedEnsembleClassifier(
        [("a", LogisticRegression()), ("b", LogisticRegression(C=0.01))], cv=2, max_epochs=2
    ).fit(X, y)
    with pytest.raises(ValueError, match="`y` has 3 rows"):
        routing_report(gated, X, y[:3])
    with pytest.raises(ValueError, match="feature_names"):
        routing_report(gated, X, feature_names=["a"])
