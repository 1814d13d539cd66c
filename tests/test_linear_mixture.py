"""The full-batch linear mixture on the screened pair (moe/_linear_mixture.py) and its
adoption by ``repartition='auto'`` (tenth pass of docs/guide/moe-quality.md)."""

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe._linear_mixture import adopt, adoption_blocker, fit_linear_mixture
from moensemble.moe._screen import screen_features
from moensemble.moe.experts import MLPExpert


@pytest.fixture(scope="module")
def regimes():
    X, y, regime, bayes = make_regime_classification(
        3000, n_features=10, n_regimes=4, noise=0.1, return_regimes=True,
        return_bayes_rate=True, random_state=0)
    return X, y, regime, bayes


@pytest.fixture(scope="module")
def mixture(regimes):
    X, y, _, _ = regimes
    features = screen_features(X[:2000], np.eye(2)[y[:2000]])[:2]
    return fit_linear_mixture(X[:2000], y[:2000], features, 8, classification=True)


def test_the_mixture_finds_the_regimes_and_nears_bayes(regimes, mixture):
    X, y, regime, bayes = regimes
    assert sorted(mixture.features.tolist()) == [0, 1]  # the routing pair, screened
    assert (mixture.gate_weight[:, 2:] == 0).all()  # the gate reads nothing else
    gate = (X[2000:] @ mixture.gate_weight.numpy().T + mixture.gate_bias.numpy()).argmax(1)
    assert adjusted_rand_score(regime[2000:], gate) > 0.9
    accuracy = (mixture.predict(X[2000:]).argmax(1) == y[2000:]).mean()
    assert accuracy > bayes - 0.03, (accuracy, bayes)


def test_fitting_does_not_move_the_torch_rng(regimes):
    X, y, _, _ = regimes
    torch.manual_seed(5)
    fit_linear_mixture(X[:300], y[:300], np.array([0, 1]), 3, classification=True,
                       n_restarts=1, steps=5, refit_steps=5)
    after = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(1))


@pytest.mark.parametrize("hidden", [(), (16,), (8, 8)])
def test_adoption_is_exact_for_linear_and_relu_experts(regimes, mixture, hidden):
    X, y, _, _ = regimes
    est = MoEClassifier(router="softmax", expert_hidden=hidden, max_epochs=1,
                        repartition="none", random_state=0).fit(X[:500], y[:500])
    assert adoption_blocker(est.net_.module_) is None
    adopt(est.net_.module_, mixture)
    np.testing.assert_allclose(est.predict_proba(X[2000:]), mixture.predict(X[2000:]),
                               atol=1e-5)


def test_adoption_into_a_list_of_experts_and_a_regressor():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 4))
    y = np.where(X[:, 0] > 0, 2 * X[:, 1], -X[:, 2]) + 0.05 * rng.normal(size=400)
    mixture = fit_linear_mixture(X, y, np.array([0]), 3, classification=False,
                                 n_restarts=2, steps=200, refit_steps=50)
    assert mixture.log_scale.exp().item() < 0.5  # the regimes' rules found: narrow noise
    experts = [MLPExpert(4, (6,), 1) for _ in range(3)]
    reg = MoERegressor(router="softmax", experts=experts, max_epochs=1, repartition="none",
                       random_state=0).fit(X, y)
    adopt(reg.net_.module_, mixture)
    with torch.no_grad():
        out = reg.net_.module_(torch.as_tensor(X, dtype=torch.float32))[0].numpy()
    np.testing.assert_allclose(out, mixture.predict(X), atol=1e-4)


@pytest.mark.parametrize("params, reason", [
    ({"activation": "tanh"}, "activation other than relu"),
    ({"expert_hidden": (3,)}, "narrower than 2 x 2"),
    ({"router": "expert_choice"}, "ExpertChoiceRouter"),
    ({"shared_expert": True}, "shared_expert"),
])
def test_a_module_that_cannot_take_it_says_why(regimes, params, reason):
    X, y, _, _ = regimes
    est = MoEClassifier(**params, max_epochs=1, repartition="none",
                        random_state=0).fit(X[:300], y[:300])
    assert reason in adoption_blocker(est.net_.module_)
    with pytest.raises(ValueError, match="cannot adopt"):
        adopt(est.net_.module_, fit_linear_mixture(
            X[:300], y[:300], np.array([0, 1]), len(est.net_.module_.experts),
            classification=True, n_restarts=1, steps=2, refit_steps=1))


def test_the_default_adopts_it_on_hidden_regimes_and_wins(regimes):
    X, y, _, bayes = regimes
    train, test = slice(0, 2000), slice(2000, None)
    auto = MoEClassifier(random_state=0).fit(X[train], y[train])
    none = MoEClassifier(random_state=0, repartition="none").fit(X[train], y[train])
    assert [r["repartition_kept"] for r in auto.history_ if "repartition_kept" in r] == [1]
    gain, se = next(r["repartition_gain_se"] for r in auto.history_
                    if "repartition_gain_se" in r)
    assert gain > se > 0
    # The router stayed as adopted: it reads the screened pair only.
    weight = auto.net_.module_.router.linear.weight.detach().numpy()
    assert (weight[:, 2:] == 0).all() and (weight[:, :2] != 0).any()
    assert auto.score(X[test], y[test]) > bayes - 0.03
    assert auto.score(X[test], y[test]) > none.score(X[test], y[test]) + 0.02


def test_a_frozen_router_is_not_nudged_by_bias_balancing(regimes):
    X, y, _, _ = regimes
    est = MoEClassifier(balance="bias", bias_update_rate=0.1, max_epochs=1,
                        repartition="none", random_state=0).fit(X[:300], y[:300])
    router = est.net_.module_.router
    router.expert_bias.zero_()
    router.requires_grad_(False)
    router.train()
    router(torch.as_tensor(X[:64], dtype=torch.float32))
    assert (router.expert_bias == 0).all()
    router.requires_grad_(True)
    router(torch.as_tensor(X[:64], dtype=torch.float32))
    assert (router.expert_bias != 0).any()


def test_unguarded_adoption_and_the_rules_where_the_module_cannot_take_it(regimes):
    from moensemble.moe._partition import LocalRulePartition

    X, y, _, _ = regimes
    callback = LocalRulePartition(True, candidates="mixture")  # no guard: always adopted
    est = MoEClassifier(max_epochs=6, repartition="none", callbacks=[callback],
                        random_state=0).fit(X[:1000], y[:1000])
    assert [r["repartition_features"] for r in est.history_
            if "repartition_features" in r] == [2]
    weight = est.net_.module_.router.linear.weight.detach().numpy()
    assert (weight[:, 2:] == 0).all()  # frozen to the end: the lasso and Adam left it
    # tanh experts cannot take the mixture exactly: the local rules' candidate stands in.
    tanh = MoEClassifier(activation="tanh", max_epochs=6, random_state=0).fit(X[:1000],
                                                                             y[:1000])
    ids = [r["repartition_feature_ids"] for r in tanh.history_
           if "repartition_feature_ids" in r]
    assert len(ids) == 1 and 1 <= len(ids[0]) <= 4


def test_a_warm_refit_starts_from_the_given_mixture(regimes, mixture):
    X, y, _, _ = regimes
    same = fit_linear_mixture(X[:2000], y[:2000], None, 8, classification=True,
                              start=mixture, refit_steps=0)
    np.testing.assert_allclose(same.predict(X[2000:]), mixture.predict(X[2000:]), atol=1e-6)
    warm = fit_linear_mixture(X, y, None, 8, classification=True, start=mixture,
                              refit_steps=50)
    assert warm.features is mixture.features
    assert not np.allclose(warm.predict(X[2000:]), mixture.predict(X[2000:]), atol=1e-3)


def test_an_unknown_candidates_value_is_a_clear_error(regimes):
    from moensemble.moe._partition import LocalRulePartition

    X, y, _, _ = regimes
    est = MoEClassifier(max_epochs=2, repartition="none", random_state=0,
                        callbacks=[LocalRulePartition(True, candidates="mixtures")])
    with pytest.raises(ValueError, match="`candidates` must be .*'mixture'; got 'mixtures'"):
        est.fit(X[:300], y[:300])
