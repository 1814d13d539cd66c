"""Gated ensembles: a learned router over fitted scikit-learn models."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import Callback

from moensemble import (
    GatedEnsembleClassifier,
    GatedEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
)


def on_columns(columns, estimator):
    """A base that only sees some columns, so that it only knows one regime."""
    return make_pipeline(ColumnTransformer([("keep", "passthrough", columns)]), estimator)


def regime_data(n_samples=1600, seed=0):
    """Left of x0 = 0 the label follows x1, right of it x2; x3 is noise."""
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 4))
    y_class = np.where(X[:, 0] < 0, X[:, 1] > 0, X[:, 2] > 0).astype(int)
    y_reg = np.where(X[:, 0] < 0, X[:, 1], X[:, 2]) + 0.1 * rng.normal(size=n_samples)
    return X, y_class, y_reg


REGIME_CLASSIFIERS = [
    ("left", on_columns([1], LogisticRegression())),
    ("right", on_columns([2], LogisticRegression())),
]
REGIME_REGRESSORS = [
    ("left", on_columns([1], LinearRegression())),
    ("right", on_columns([2], LinearRegression())),
]
FAST = dict(cv=3, max_epochs=60, random_state=0)


class RowRecorder(ClassifierMixin, BaseEstimator):
    """Wraps a classifier and records every block of rows it is asked to predict."""

    def __init__(self, estimator=None):
        self.estimator = estimator

    def fit(self, X, y):
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        self.seen_ = []
        return self

    def predict_proba(self, X):
        self.seen_.append(np.asarray(X))
        return self.estimator_.predict_proba(X)

    def predict(self, X):
        self.seen_.append(np.asarray(X))
        return self.estimator_.predict(X)


# ---- the gate earns its keep -------------------------------------------------------------


def test_classifier_beats_weighted_ensemble_where_the_best_model_differs_by_region():
    X, y, _ = regime_data()
    train, test = slice(0, 800), slice(800, None)
    weighted = WeightedEnsembleClassifier(REGIME_CLASSIFIERS, cv=3).fit(X[train], y[train])
    gated = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST).fit(X[train], y[train])
    weighted_score = weighted.score(X[test], y[test])
    gated_score = gated.score(X[test], y[test])
    assert weighted_score < 0.85  # no fixed weights can pick the right model per region
    assert gated_score > 0.93
    assert gated_score > weighted_score + 0.1
    # The router learned the regions: left rows go to 'left', right rows to 'right' (where
    # both bases are right anyway either route costs nothing, so not every row has to).
    indices, gates = gated.route(X[test])
    expected = (X[test, 0] >= 0).astype(int)
    assert np.mean(indices[:, 0] == expected) > 0.85
    np.testing.assert_allclose(gates, 1.0)
    assert gated.ensemble_loss_ < gated.base_losses_.min()


def test_regressor_beats_weighted_ensemble_where_the_best_model_differs_by_region():
    X, _, y = regime_data()
    train, test = slice(0, 800), slice(800, None)
    weighted = WeightedEnsembleRegressor(REGIME_REGRESSORS, cv=3).fit(X[train], y[train])
    gated = GatedEnsembleRegressor(REGIME_REGRESSORS, **FAST).fit(X[train], y[train])
    weighted_score = weighted.score(X[test], y[test])
    gated_score = gated.score(X[test], y[test])
    # Each base is fitted on both regimes, so its slope is shrunk to about 0.5 and even a
    # perfect router tops out near R^2 = 0.75; fixed weights stay under 0.4.
    assert weighted_score < 0.45
    assert gated_score > 0.6
    assert gated_score > weighted_score + 0.2


def test_softmax_router_and_input_plus_oof_also_beat_weighted():
    X, y, _ = regime_data()
    train, test = slice(0, 800), slice(800, None)
    weighted = WeightedEnsembleClassifier(REGIME_CLASSIFIERS, cv=3).fit(X[train], y[train])
    baseline = weighted.score(X[test], y[test])
    for params in ({"router": "softmax"}, {"features": "input+oof"}):
        gated = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST, **params)
        score = gated.fit(X[train], y[train]).score(X[test], y[test])
        assert score > baseline + 0.05, params


# ---- only the routed rows reach a model ---------------------------------------------------


def three_regime_data(n_samples=900, seed=1):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n_samples, 4))
    column = np.select([X[:, 0] < -0.5, X[:, 0] < 0.5], [1, 2], 3)
    y = (X[np.arange(n_samples), column] > 0).astype(int)
    return X, y


THREE_RECORDED = [
    (name, RowRecorder(on_columns([c], LogisticRegression())))
    for name, c in (("one", 1), ("two", 2), ("three", 3))
]


@pytest.mark.parametrize("top_k", [1, 2])
def test_each_base_predicts_exactly_the_rows_routed_to_it(top_k):
    X, y = three_regime_data()
    gated = GatedEnsembleClassifier(THREE_RECORDED, top_k=top_k, **FAST).fit(X[:600], y[:600])
    X_test = X[600:]
    indices, gates = gated.route(X_test)
    assert indices.shape == gates.shape == (300, top_k)
    for base in gated.estimators_:
        base.seen_ = []
    proba = gated.predict_proba(X_test)

    routed_counts = []
    for b, base in enumerate(gated.estimators_):
        routed = np.flatnonzero((indices == b).any(axis=1))
        routed_counts.append(len(routed))
        if len(routed) == 0:
            assert base.seen_ == []  # never called on zero rows
            continue
        assert len(base.seen_) == 1  # one call per base, its rows grouped
        np.testing.assert_array_equal(base.seen_[0], X_test[routed])
    # top_k models per row in all, and the routing really splits the rows.
    assert sum(routed_counts) == top_k * len(X_test)
    assert sum(count > 0 for count in routed_counts) >= 2
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_router_runs_every_base_on_every_row():
    X, y = three_regime_data()
    gated = GatedEnsembleClassifier(THREE_RECORDED, router="softmax", **FAST).fit(X, y)
    for base in gated.estimators_:
        base.seen_ = []
    gated.predict(X[:50])
    assert [sum(len(s) for s in base.seen_) for base in gated.estimators_] == [50, 50, 50]
    indices, gates = gated.route(X[:50])
    assert indices.shape == (50, 3)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)


# ---- statistics, shapes, determinism ------------------------------------------------------


def test_routing_statistics():
    X, y = three_regime_data()
    gated = GatedEnsembleClassifier(THREE_RECORDED, **FAST).fit(X, y)
    assert gated.expert_load_.shape == (3,)
    assert gated.expert_load_.sum() == pytest.approx(1.0)
    indices, _ = gated.route(X)
    np.testing.assert_allclose(gated.expert_load_, np.bincount(indices[:, 0], minlength=3) / len(X))
    assert 0.0 <= gated.router_entropy_ <= np.log(3)
    # Each regime has its own base: no base takes (almost) everything.
    assert gated.expert_load_.max() < 0.8
    assert list(gated.named_estimators_) == ["one", "two", "three"]
    assert gated.history_[-1, "train_loss"] < gated.history_[0, "train_loss"]
    # Per-epoch routing statistics of the training batches (the MoE's RoutingStats).
    last_load = np.array(gated.history_[-1, "expert_load"])
    assert last_load.shape == (3,) and last_load.sum() == pytest.approx(1.0)
    assert 0.0 <= gated.history_[-1, "load_max_violation"] < 2.0
    assert gated.history_[-1, "router_entropy"] < gated.history_[0, "router_entropy"]


def test_a_row_is_predicted_the_same_alone_or_in_a_batch():
    X, y = three_regime_data()
    gated = GatedEnsembleClassifier(THREE_RECORDED, top_k=2, **FAST).fit(X[:600], y[:600])
    batch = gated.predict_proba(X[600:640])
    alone = np.vstack([gated.predict_proba(X[i : i + 1]) for i in range(600, 640)])
    np.testing.assert_allclose(batch, alone, atol=1e-6)


def test_same_random_state_same_model():
    X, y, _ = regime_data(400)
    first = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST).fit(X, y).predict_proba(X)
    second = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(first, second)


def test_fold_bags_without_refit():
    X, y, _ = regime_data(600)
    gated = GatedEnsembleClassifier(REGIME_CLASSIFIERS, refit=False, **FAST).fit(X, y)
    assert all(len(bag) == 3 for bag in gated.estimators_)
    assert gated.score(X, y) > 0.9


def test_regressor_multi_output_and_string_labels():
    X, y_class, y_reg = regime_data(600)
    Y = np.column_stack([y_reg, 2 * y_reg])
    bases = [("left", on_columns([1], Ridge())), ("right", on_columns([2], Ridge()))]
    gated = GatedEnsembleRegressor(bases, **FAST).fit(X, Y)
    assert gated.predict(X[:5]).shape == (5, 2)
    labels = np.array(["no", "yes"])[y_class]
    clf = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST).fit(X, labels)
    assert set(clf.predict(X)) <= {"no", "yes"}
    assert list(clf.classes_) == ["no", "yes"]


def test_sparse_input_and_hidden_router():
    X, y, _ = regime_data(600)
    X_sparse = sp.csr_matrix(np.where(np.abs(X) > 0.3, X, 0.0))
    bases = [
        ("lr", LogisticRegression()),
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
    ]
    gated = GatedEnsembleClassifier(bases, router_hidden=(8,), **FAST).fit(X_sparse, y)
    assert gated.predict_proba(X_sparse[:7]).shape == (7, 2)
    assert gated.score(X_sparse, y) > 0.75


def test_router_preprocessor_for_non_numeric_columns():
    X, y, _ = regime_data(400)
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    frame["side"] = np.where(X[:, 0] < 0, "left", "right")
    numeric = ["a", "b", "c", "d"]
    bases = [
        ("b", on_columns(["b"], LogisticRegression())),
        ("c", on_columns(["c"], LogisticRegression())),
    ]
    with pytest.raises(ValueError, match="router_preprocessor"):
        GatedEnsembleClassifier(bases, **FAST).fit(frame, y)
    view = ColumnTransformer([("side", OneHotEncoder(), ["side"]), ("num", "passthrough", numeric)])
    gated = GatedEnsembleClassifier(bases, router_preprocessor=view, **FAST).fit(frame, y)
    assert gated.score(frame, y) > 0.9
    assert list(gated.feature_names_in_) == [*numeric, "side"]


def test_missing_values_reach_the_router_only_when_every_base_takes_them():
    X, y, _ = regime_data(600)
    X_nan = X.copy()
    X_nan[::7, 3] = np.nan
    trees = [
        ("stump", DecisionTreeClassifier(max_depth=1, random_state=0)),
        ("deep", DecisionTreeClassifier(max_depth=6, random_state=0)),
    ]
    gated = GatedEnsembleClassifier(trees, **FAST).fit(X_nan, y)
    assert np.isfinite(gated.predict_proba(X_nan)).all()
    with pytest.raises(ValueError, match="NaN"):
        GatedEnsembleClassifier(REGIME_CLASSIFIERS, **FAST).fit(X, y).predict(X_nan)


def test_parameter_errors_name_the_parameter():
    X, y, _ = regime_data(200)
    with pytest.raises(ValueError, match="top_k"):
        GatedEnsembleClassifier(REGIME_CLASSIFIERS, top_k=3, **FAST).fit(X, y)
    with pytest.raises(ValueError, match="router_hidden"):
        GatedEnsembleClassifier(REGIME_CLASSIFIERS, router_hidden=(0,), **FAST).fit(X, y)
    with pytest.raises(ValueError, match="router"):
        GatedEnsembleClassifier(REGIME_CLASSIFIERS, router="switch", **FAST).fit(X, y)
    with pytest.raises(TypeError, match="classifier"):
        GatedEnsembleClassifier(REGIME_REGRESSORS, **FAST).fit(X, y)


def test_early_stopping_keeps_a_valid_loss():
    X, y, _ = regime_data(600)
    gated = GatedEnsembleClassifier(
        REGIME_CLASSIFIERS, early_stopping=True, **FAST
    ).fit(X, y)
    assert "valid_loss" in gated.history_[-1]
    assert gated.score(X, y) > 0.9


class MarkEpochs(Callback):
    def on_epoch_end(self, net, **kwargs):
        net.history.record("marked", len(net.history))


def test_user_callbacks_reach_the_router_net():
    X, y, _ = regime_data(300)
    gated = GatedEnsembleClassifier(
        REGIME_CLASSIFIERS, callbacks=[("mark", MarkEpochs())], cv=2, max_epochs=4
    ).fit(X, y)
    assert gated.history_[:, "marked"] == [1, 2, 3, 4]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_router_on_gpu_routes_like_on_cpu():
    X, y, _ = regime_data()
    gpu = GatedEnsembleClassifier(REGIME_CLASSIFIERS, device="cuda", **FAST).fit(X[:800], y[:800])
    assert gpu.net_.device == "cuda"
    assert gpu.score(X[800:], y[800:]) > 0.9
    indices, gates = gpu.route(X[800:])
    assert indices.dtype == np.int64 and gates.shape == (800, 1)


# ---- mixed precision -----------------------------------------------------------------------


def _trunk_output_dtypes(gated):
    """Record the dtype of the router trunk's first layer output on every forward pass."""
    seen = []
    first = gated.net_.module_.trunk[0]
    first.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    return seen


class RecordTrunkDtype(Callback):
    """The output dtypes of the router trunk's first layer during training."""

    def on_train_begin(self, net, **kwargs):
        self.dtypes_ = []
        self._hook = net.module_.trunk[0].register_forward_hook(self._record)

    def _record(self, module, args, out):
        self.dtypes_.append(out.dtype)

    def on_train_end(self, net, **kwargs):
        self._hook.remove()  # leave the module as it was (and picklable)
        del self._hook


def test_bfloat16_router_on_cpu_predicts_like_float32():
    X, y, _ = regime_data()
    train, test = slice(0, 1200), slice(1200, None)
    settings = dict(router_hidden=(16,), **FAST)
    full = GatedEnsembleClassifier(REGIME_CLASSIFIERS, **settings).fit(X[train], y[train])
    recorder = RecordTrunkDtype()
    low = GatedEnsembleClassifier(
        REGIME_CLASSIFIERS, precision="bfloat16", callbacks=[("dtype", recorder)], **settings
    ).fit(X[train], y[train])
    # The hidden layer really ran under autocast in training; the weights, the gate logits
    # and the gates stay float32.
    assert recorder.dtypes_ and set(recorder.dtypes_) == {torch.bfloat16}
    assert low.net_.module_.precision == "bfloat16"
    assert all(p.dtype == torch.float32 for p in low.net_.module_.parameters())
    seen = _trunk_output_dtypes(low)
    indices, gates = low.route(X[test])
    assert seen and set(seen) == {torch.bfloat16}  # predict-time routing autocasts too
    assert gates.dtype == np.float32
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)

    proba_low, proba_full = low.predict_proba(X[test]), full.predict_proba(X[test])
    assert proba_low.shape == proba_full.shape == (400, 2)
    np.testing.assert_allclose(proba_low.sum(axis=1), 1.0, rtol=1e-6)
    agree = np.mean(proba_low.argmax(axis=1) == proba_full.argmax(axis=1))
    assert agree >= 0.95, agree
    assert low.score(X[test], y[test]) > 0.9
    # float32 is the default and leaves the trunk in float32.
    seen = _trunk_output_dtypes(full)
    full.route(X[test][:5])
    assert full.precision == "float32" and set(seen) == {torch.float32}


def test_float16_router_training_scales_the_loss(grad_scaler_scales):
    X, y, _ = regime_data()
    steps = grad_scaler_scales  # one entry per training step of the router
    recorder = RecordTrunkDtype()
    gated = GatedEnsembleClassifier(
        REGIME_CLASSIFIERS, precision="float16", router_hidden=(16,),
        callbacks=[("dtype", recorder)], **FAST,
    ).fit(X[:1200], y[:1200])
    assert recorder.dtypes_ and set(recorder.dtypes_) == {torch.float16}
    assert len(steps) == len(recorder.dtypes_)  # every training batch went through the scaler
    assert all(p.dtype == torch.float32 for p in gated.net_.module_.parameters())
    assert gated.score(X[1200:], y[1200:]) > 0.9


def test_bfloat16_regressor_on_cpu_predicts_like_float32():
    X, _, y = regime_data(1000)
    settings = dict(router_hidden=(8,), **FAST)
    full = GatedEnsembleRegressor(REGIME_REGRESSORS, **settings).fit(X, y)
    low = GatedEnsembleRegressor(REGIME_REGRESSORS, precision="bfloat16", **settings).fit(X, y)
    pred_low, pred_full = low.predict(X), full.predict(X)
    assert pred_low.shape == (1000,) and np.isfinite(pred_low).all()
    assert abs(low.score(X, y) - full.score(X, y)) < 0.02
    # The routed base agrees on nearly every row.
    assert np.mean(low.route(X)[0] == full.route(X)[0]) >= 0.95
    assert np.corrcoef(pred_low, pred_full)[0, 1] > 0.98


@pytest.mark.parametrize("precision", ["float8", "fp16", "half", ""])
def test_invalid_precision_is_a_value_error_naming_it(precision):
    X, y, _ = regime_data(200)
    with pytest.raises(ValueError, match="'precision' parameter"):
        GatedEnsembleClassifier(REGIME_CLASSIFIERS, precision=precision, **FAST).fit(X, y)


def test_precision_the_device_cannot_run_is_a_value_error(monkeypatch):
    X, y, _ = regime_data(200)

    class _NoAutocast:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("dtype not supported")

    # check_precision tries autocast on the device: make it fail as on a device without it.
    monkeypatch.setattr(torch, "autocast", _NoAutocast)
    with pytest.raises(ValueError, match="precision='float16'.*not supported on device 'cpu'"):
        GatedEnsembleRegressor(
            REGIME_REGRESSORS, precision="float16", router_hidden=(4,), **FAST
        ).fit(X, y)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_float16_router_on_gpu_then_predict_on_cpu(monkeypatch):
    import pickle

    X, y, _ = regime_data()
    recorder = RecordTrunkDtype()
    gpu = GatedEnsembleClassifier(
        REGIME_CLASSIFIERS, device="cuda", precision="float16", router_hidden=(16,),
        callbacks=[("dtype", recorder)], **FAST,
    ).fit(X[:800], y[:800])
    assert gpu.net_.device == "cuda"
    assert set(recorder.dtypes_) == {torch.float16}
    assert all(p.dtype == torch.float32 for p in gpu.net_.module_.parameters())
    assert gpu.score(X[800:], y[800:]) > 0.9
    gpu_proba = gpu.predict_proba(X[800:])
    blob = pickle.dumps(gpu)
    # Unpickle as on a CPU-only machine: skorch maps the tensors to the CPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(Warning, match="cpu"):
        cpu = pickle.loads(blob)
    assert cpu.net_.device == "cpu"
    assert next(cpu.net_.module_.parameters()).device.type == "cpu"
    cpu_proba = cpu.predict_proba(X[800:])
    np.testing.assert_allclose(cpu_proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(cpu_proba, gpu_proba, atol=2e-2)
    assert np.mean(cpu_proba.argmax(1) == gpu_proba.argmax(1)) >= 0.95


# ---- scikit-learn conventions --------------------------------------------------------------

CHECK_SETTINGS = dict(cv=2, max_epochs=3, batch_size=64, random_state=0)


def _expected_failed_checks(estimator):
    # Every check passes; this is where one would be listed, with its reason.
    return {}


@parametrize_with_checks(
    [
        GatedEnsembleClassifier(
            [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(random_state=0))],
            **CHECK_SETTINGS,
        ),
        GatedEnsembleRegressor(
            [("ridge", Ridge()), ("tree", DecisionTreeRegressor(random_state=0))],
            **CHECK_SETTINGS,
        ),
    ],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_conventions(estimator, check):
    check(estimator)
