"""Numeric feature embeddings (num_embedding='periodic' | 'piecewise') of the MoE estimators."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.embeddings import (
    D_EMBEDDING,
    N_BINS,
    EmbeddedInput,
    PiecewiseLinearEmbedding,
)
from moensemble.persist import load, save

FAST = dict(n_experts=3, top_k=2, expert_hidden=(16,), max_epochs=10, lr=1e-2, batch_size=32,
            random_state=0)


@parametrize_with_checks(
    [MoEClassifier(**FAST, num_embedding="periodic"),
     MoERegressor(**FAST, num_embedding="piecewise")],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def data():
    X, y = make_classification(300, 6, n_informative=5, n_redundant=0, random_state=0)
    return X, y


@pytest.mark.parametrize("kind", ["periodic", "piecewise"])
def test_the_network_runs_on_the_embedded_features(data, kind):
    X, y = data
    clf = MoEClassifier(n_experts=3, max_epochs=3, random_state=0, num_embedding=kind).fit(X, y)
    module = clf.net_.module_
    assert isinstance(module, EmbeddedInput)
    assert module.router.linear.in_features == X.shape[1] * D_EMBEDDING
    indices, gates = clf.route(X[:7])
    assert indices.shape == (7, 2) and np.allclose(gates.sum(1), 1, atol=1e-5)
    assert clf.n_active_params_ > MoEClassifier(n_experts=3, max_epochs=1).fit(X, y) \
        .n_active_params_  # the embedding's parameters count


def test_piecewise_bins_are_the_training_quantiles_and_ignore_feature_scale(data):
    X, y = data
    clf = MoEClassifier(n_experts=3, max_epochs=3, random_state=0,
                        num_embedding="piecewise").fit(X, y)
    edges = clf.net_.module_.embedding.edges.numpy()
    np.testing.assert_allclose(edges, np.quantile(X, np.linspace(0, 1, N_BINS + 1), axis=0).T,
                               rtol=1e-5, atol=1e-6)
    # Rescaling a feature moves its quantiles with it: the same encoding, the same model.
    Xs = X * np.array([1000.0, 1, 1, 1, 1, 0.001])
    scaled = clone(clf).fit(Xs, y)
    np.testing.assert_allclose(scaled.predict_proba(Xs), clf.predict_proba(X), atol=1e-4)


def test_periodic_standardises_with_the_training_statistics(data):
    X, y = data
    Xs = X * 50.0 + 7.0
    plain = MoEClassifier(n_experts=3, max_epochs=3, random_state=0,
                          num_embedding="periodic").fit(X, y)
    shifted = clone(plain).fit(Xs, y)
    np.testing.assert_allclose(shifted.net_.module_.embedding.mean.numpy(),
                               Xs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(shifted.predict_proba(Xs), plain.predict_proba(X), atol=1e-4)


def test_piecewise_encoding_of_a_constant_feature_is_finite():
    emb = PiecewiseLinearEmbedding(2).fit(np.c_[np.ones(50), np.arange(50.0)])
    out = emb(torch.tensor([[1.0, 3.0], [0.0, 100.0]]))
    assert out.shape == (2, 2 * D_EMBEDDING) and torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["periodic", "piecewise"])
def test_save_load_and_clone_keep_the_embedding(tmp_path, data, kind):
    X, y = data
    params = dict(n_experts=3, max_epochs=2, random_state=0, num_embedding=kind)
    for est in (MoEClassifier(**params).fit(X, y),
                MoERegressor(**params, encoder=(8,), n_layers=2).fit(X, y.astype(float))):
        back = load(save(est, tmp_path / f"{kind}.moe"))
        predict = getattr(est, "predict_proba", est.predict)
        np.testing.assert_allclose(getattr(back, predict.__name__)(X), predict(X), atol=1e-6)
        assert clone(est).get_params()["num_embedding"] == kind


def test_regressor_likelihood_mixture_and_kmeans_router_on_embeddings(data):
    X, y = data
    reg = MoERegressor(n_experts=3, max_epochs=3, random_state=0, num_embedding="piecewise",
                       mixture="likelihood", router_init="kmeans").fit(X, y.astype(float))
    assert reg.history_[-1, "train_loss"] < reg.history_[0, "train_loss"]


@pytest.mark.parametrize("params,match", [
    (dict(num_embedding="fourier"), "num_embedding"),
    (dict(num_embedding="periodic", init="upcycle"), "init"),
    (dict(num_embedding="piecewise", grow_steps=1), "grow_steps"),
])
def test_bad_num_embedding_settings_are_refused(data, params, match):
    X, y = data
    with pytest.raises(ValueError, match=match):
        MoEClassifier(max_epochs=1, **params).fit(X, y)


def test_num_embedding_refuses_sparse_input_and_grow(data):
    X, y = data
    with pytest.raises(ValueError, match="sparse"):
        MoEClassifier(max_epochs=1, num_embedding="periodic").fit(sp.csr_matrix(X), y)
    clf = MoEClassifier(max_epochs=1, num_embedding="periodic").fit(X, y)
    with pytest.raises(ValueError, match="num_embedding"):
        clf.grow(X, y)
