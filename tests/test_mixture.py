"""The competitive mixture (``mixture='likelihood'``, Jacobs et al. 1991) against the
cooperative one (``'logits'``): what the network computes, what it learns, and that every
router, gating and estimator convention keeps working."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.datasets import make_regime_classification, make_regimes
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.net import build_module, gaussian_mixture_nll
from moensemble.moe.routing import make_router, scatter_logsumexp

FAST = dict(n_experts=3, top_k=2, expert_hidden=(16,), max_epochs=10, lr=1e-2, batch_size=32,
            mixture="likelihood", random_state=0)


@parametrize_with_checks(
    [MoEClassifier(**FAST), MoERegressor(**FAST)], expected_failed_checks=lambda est: {}
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _module(mixture: str, router: str = "topk", out: int = 3, **kw):
    torch.manual_seed(0)
    r = make_router(router, 5, 4, 2)
    return build_module(r, 5, out, n_experts=4, hidden=(8,), activation="relu", dropout=0.0,
                        shared_expert=False, fallback=False, precision="float32",
                        mixture=mixture, **kw).eval()


def test_scatter_logsumexp_matches_a_dense_logsumexp_and_empty_rows_are_zero():
    values = torch.randn(5, 3) * 50
    rows = torch.tensor([0, 2, 0, 2, 2])
    out = scatter_logsumexp(values, rows, 4)
    torch.testing.assert_close(out[0], torch.logsumexp(values[[0, 2]], 0))
    torch.testing.assert_close(out[2], torch.logsumexp(values[[1, 3, 4]], 0))
    assert torch.equal(out[[1, 3]], torch.zeros(2, 3))


def _expert(module, x_row, e: int):
    """Expert ``e``'s output on one row ``(1, in)`` -> ``(out,)``."""
    ids = torch.tensor([e])
    return module.experts.forward_sorted(x_row, ids, torch.bincount(ids, minlength=4))[0]


def test_categorical_output_is_the_log_of_the_gated_mixture_of_expert_distributions():
    module = _module("categorical")
    x = torch.randn(6, 5)
    log_mix, _ = module(x)
    routing = module.route(x)
    expected = torch.stack([
        sum(routing.gates[b, j] * torch.softmax(_expert(module, x[b:b + 1],
                                                         int(routing.indices[b, j])), -1)
            for j in range(2))
        for b in range(6)
    ])
    torch.testing.assert_close(log_mix.exp(), expected, rtol=1e-5, atol=1e-6)
    # The top-k gates sum to 1, so the output is already a log distribution.
    torch.testing.assert_close(log_mix.exp().sum(1), torch.ones(6))


def test_gaussian_mixture_nll_and_mean():
    module = _module("gaussian", out=1)
    with torch.no_grad():
        module.log_scale.fill_(math.log(0.5))
    x, y = torch.randn(6, 5), torch.randn(6, 1)
    mean, _, parts = module(x)
    routing = module.route(x)
    gates = routing.gates / routing.gates.sum(1, keepdim=True)  # renormalised over the k
    mus = torch.stack([
        torch.stack([_expert(module, x[b:b + 1], int(routing.indices[b, j]))[0]
                     for j in range(2)])
        for b in range(6)
    ])  # (batch, k)
    torch.testing.assert_close(mean[:, 0], (gates * mus).sum(1))
    log_lik = torch.distributions.Normal(mus, 0.5).log_prob(y)  # (batch, k)
    expected = -torch.logsumexp(torch.log(gates) + log_lik, 1).mean()
    torch.testing.assert_close(gaussian_mixture_nll(mean, parts, y, module.log_scale), expected)


@pytest.mark.parametrize("router", ["topk", "softmax", "switch", "expert_choice"])
@pytest.mark.parametrize("extra", [{}, {"gating": "elementwise"}, {"shared_expert": True}])
def test_every_router_trains_a_likelihood_mixture(router, extra):
    X, y = make_classification(300, 8, n_informative=6, n_classes=3, random_state=0)
    clf = MoEClassifier(n_experts=4, router=router, mixture="likelihood", expert_hidden=(16,),
                        max_epochs=15, lr=1e-2, batch_size=64, random_state=0, **extra)
    clf.fit(X, y)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert clf.score(X, y) > 0.7
    # A row is predicted on its own, whatever else is in its batch.
    np.testing.assert_allclose(clf.predict_proba(X[5:6])[0], proba[5], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("router", ["topk", "switch"])
def test_likelihood_regressor_fits_and_learns_the_noise_scale(router):
    X, y = make_regimes(800, noise=0.05, random_state=0)
    X_test, y_test = make_regimes(800, noise=0.05, random_state=1)
    reg = MoERegressor(n_experts=4, router=router, mixture="likelihood", expert_hidden=(32,),
                       max_epochs=40, lr=1e-2, batch_size=64, random_state=0).fit(X, y)
    assert reg.score(X_test, y_test) > 0.7
    # Standardised targets start at scale 1; the fitted components are narrower.
    assert float(reg.net_.module_.log_scale.detach().exp()) < 0.6


def test_competitive_mixture_beats_the_cooperative_one_on_hidden_regimes():
    X, y, bayes = make_regime_classification(4500, n_features=10, n_regimes=4, noise=0.05,
                                             return_bayes_rate=True, random_state=0)
    train, test = slice(0, 3000), slice(3000, None)
    scores = {}
    for mixture in ("logits", "likelihood"):
        clf = MoEClassifier(n_experts=8, router="softmax", mixture=mixture, expert_hidden=(),
                            repartition="none",  # the objectives alone, no adopted mixture
                            lr=1e-2, batch_size=512, max_epochs=60, random_state=0)
        scores[mixture] = clf.fit(X[train], y[train]).score(X[test], y[test])
    assert scores["likelihood"] > scores["logits"] + 0.01, scores
    assert scores["likelihood"] > bayes - 0.1, (scores, bayes)


def test_mixture_is_validated_and_clones():
    X, y = make_classification(60, 4, random_state=0)
    with pytest.raises(InvalidParameterError, match="mixture"):
        MoEClassifier(mixture="product", max_epochs=1).fit(X, y)
    assert clone(MoEClassifier(mixture="likelihood")).get_params()["mixture"] == "likelihood"


# -- compare's MoE ---------------------------------------------------------------------------
def test_default_models_can_add_ensembles_with_the_moe_as_a_member():
    from moensemble.leaderboard import default_models

    names = [name for name, _ in default_models(sparse=True, quick=True)]
    assert "stacked_moe" not in names
    models = dict(default_models(sparse=True, quick=True, moe_members=True))
    for name in ("weighted_moe", "stacked_moe"):
        members = dict(models[name].estimators)
        assert isinstance(members["moe"], MoEClassifier)
        assert set(members) == set(dict(models[name.removesuffix("_moe")].estimators)) | {"moe"}
    # compare's text MoE balances its experts with the bias (measured in the guide).
    assert models["moe"].get_params()["balance"] == "bias"
    assert models["moe"].get_params()["mixture"] == "logits"


def test_the_likelihood_mixture_is_refused_with_blocks():
    X, y = np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 2
    with pytest.raises(ValueError, match="mixture='likelihood'.*blocks"):
        MoEClassifier(n_layers=2, mixture="likelihood", max_epochs=1).fit(X, y)


@pytest.mark.parametrize("params", [{"router": "switch"}, {"router": "topk", "top_k": 1}])
def test_auto_mixture_is_cooperative_when_a_row_keeps_one_expert(params):
    # The competitive mixture renormalises the kept gates: with one expert a row the gate is
    # 1 and the router would get no gradient from the task loss.
    X, y = make_classification(200, 6, random_state=0)
    clf = MoEClassifier(n_experts=4, max_epochs=3, random_state=0, **params).fit(X, y)
    assert clf._module_mixture() == "logits"
    assert clf.net_.module_.mixture == "logits"
    assert MoEClassifier(n_experts=4, top_k=2)._module_mixture() == "categorical"
    assert MoEClassifier(**params, mixture="likelihood")._module_mixture() == "categorical"
