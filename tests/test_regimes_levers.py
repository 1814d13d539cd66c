"""Levers for hidden-regime data (issue 13): a sparse gate (``router_l1``) and restarts
(``n_init``). What each does is asserted on the fitted net, not only on a score."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier, MoERegressor

FAST = dict(n_experts=3, top_k=2, expert_hidden=(), max_epochs=30, lr=1e-2, batch_size=128,
            random_state=0)


CHECKED = dict(n_experts=3, top_k=2, expert_hidden=(8,), max_epochs=4, lr=1e-2, batch_size=32,
               router_l1=0.5, n_init=2, random_state=0)


@parametrize_with_checks(
    # The classifier's mixture ('auto') is competitive, where em_rounds applies; the
    # regressor's is not unless asked (its Gaussian mixture).
    [MoEClassifier(**CHECKED, em_rounds=2), MoERegressor(**CHECKED),
     MoERegressor(**CHECKED, mixture="likelihood", em_rounds=2)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible_with_levers(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def regimes():
    # 3 regimes set by the first 2 of 12 features: the other 10 should leave the gate.
    X, y = make_regime_classification(1500, n_features=12, n_regimes=3, random_state=0)
    return X, y


def _gate_column_norms(est) -> np.ndarray:
    return est.net_.module_.router.linear.weight.detach().norm(dim=0).numpy()


def test_router_l1_zeroes_the_gate_weights_of_features_that_do_not_set_the_regime(regimes):
    X, y = regimes
    dense = _gate_column_norms(MoEClassifier(**FAST, router_l1=0.0).fit(X, y))
    sparse_est = MoEClassifier(**FAST, router_l1=0.9).fit(X, y)
    sparse = _gate_column_norms(sparse_est)
    assert (dense > 0).all()  # without the penalty the gate reads every feature
    assert (sparse[:2] > 1.0).all()  # the two regime features stay in
    assert (sparse[2:] == 0).mean() >= 0.7  # exactly zero, not merely small
    # The noise map of the top-k router is thresholded with the same groups.
    noise = sparse_est.net_.module_.router.noise.weight.detach().norm(dim=0).numpy()
    assert (noise[sparse == 0] == 0).all()


def test_router_l1_auto_is_on_for_a_dense_table_and_off_for_sparse_or_mostly_zero_input(regimes):
    X, y = regimes
    assert MoEClassifier(**FAST).fit(X, y).router_l1_ == 0.8
    assert MoEClassifier(**FAST).fit(sp.csr_matrix(X), y).router_l1_ == 0.0
    mostly_zero = np.where(np.abs(X) > 1.0, X, 0.0)  # about two thirds of entries zero
    assert MoEClassifier(**FAST).fit(mostly_zero, y).router_l1_ == 0.0
    assert MoEClassifier(**FAST, encoder=(8,)).fit(X, y).router_l1_ == 0.0
    assert MoEClassifier(**FAST).fit(X[:, :9], y).router_l1_ == 0.0  # little to select
    assert MoEClassifier(**FAST, router_l1=0.3).fit(X, y).router_l1_ == 0.3


def test_router_l1_zeroed_features_stay_out_after_the_selection_half(regimes):
    X, y = regimes
    est = MoEClassifier(**FAST, router_l1=0.9).fit(X, y)
    # Routing ignores a zeroed feature: changing it leaves every row's experts unchanged.
    zeroed = np.flatnonzero(_gate_column_norms(est) == 0)
    assert len(zeroed) > 0
    X2 = X.copy()
    X2[:, zeroed] = np.random.default_rng(1).normal(size=(len(X), len(zeroed))) * 10
    np.testing.assert_array_equal(est.route(X)[0], est.route(X2)[0])


def test_n_init_keeps_the_restart_with_the_lowest_final_loss(regimes):
    X, y = regimes
    one = MoEClassifier(**FAST).fit(X, y)
    three = MoEClassifier(**FAST, n_init=3).fit(X, y)
    losses = three.init_losses_
    assert len(losses) == 3 and len(set(losses)) == 3  # three different initialisations
    assert losses[0] == pytest.approx(one.init_losses_[0])  # the first is the n_init=1 fit
    assert three.history_[-1, "train_loss"] == pytest.approx(min(losses))


def test_n_init_with_early_stopping_compares_validation_losses():
    X, y = make_regime_classification(600, n_features=6, n_regimes=2, random_state=1)
    est = MoERegressor(n_experts=2, expert_hidden=(), max_epochs=8, n_init=2,
                       early_stopping=True, random_state=0).fit(X, y.astype(float))
    assert len(est.init_losses_) == 2
    assert min(est.history_[:, "valid_loss"]) == pytest.approx(min(est.init_losses_))


@pytest.mark.parametrize("params, match", [
    (dict(router_l1=-0.1), "router_l1"),
    (dict(n_init=0), "n_init"),
    (dict(n_init=True), "n_init"),
])
def test_bad_lever_values_are_refused_naming_the_parameter(regimes, params, match):
    X, y = regimes
    with pytest.raises(InvalidParameterError, match=match):
        MoEClassifier(**FAST, **params).fit(X[:50], y[:50])


def test_levers_survive_clone_and_set_params():
    est = clone(MoEClassifier(router_l1=0.5, n_init=2))
    assert est.get_params()["router_l1"] == 0.5 and est.get_params()["n_init"] == 2


def test_moe_space_draws_router_l1_without_an_encoder_and_n_init_only_when_asked():
    import optuna

    from moensemble.search import moe_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [moe_space(study.ask(), encoder=(None, 16)) for _ in range(40)]
    plain = [d for d in drawn if d["encoder"] is None]
    assert {d["router_l1"] for d in plain} == {"auto", 0.0}
    assert all(d["router_l1"] == 0.0 for d in drawn if d["encoder"] is not None)
    assert all(d["n_init"] == 1 for d in drawn)
    MoEClassifier(**plain[0])._validate_params()  # every drawn value is a valid parameter
    restarts = {moe_space(study.ask(), encoder=(None, 16), n_init=(1, 3))["n_init"]
                for _ in range(30)}
    assert restarts == {1, 2, 3}
    with pytest.raises(ValueError, match="router_l1"):
        moe_space(study.ask(), router_l1=(0.0, -1.0))
    with pytest.raises(ValueError, match="n_init"):
        moe_space(study.ask(), n_init=(0, 2))


def test_expert_log_likelihoods_give_the_mixture_the_dense_router_predicts(regimes):
    import torch

    from moensemble.moe._em import expert_log_likelihoods
    from moensemble.moe.net import RowDataset

    X, y = regimes
    est = MoEClassifier(**{**FAST, "max_epochs": 3}, router="softmax",
                        mixture="likelihood").fit(X, y)
    module = est.net_.module_
    chunks, log_p = expert_log_likelihoods(module, RowDataset(X.astype(np.float32), y))
    assert log_p.shape == (len(X), 3) and (log_p <= 0).all()
    with torch.no_grad():
        logits = torch.cat([module.router.logits(x) for x in chunks])
        mix = torch.logsumexp(torch.log_softmax(logits, -1) + log_p, -1).exp().numpy()
    proba = est.predict_proba(X)[np.arange(len(y)), y]
    np.testing.assert_allclose(mix, proba, rtol=1e-4, atol=1e-5)


def test_refit_gate_lowers_the_mixture_loss_and_keeps_zeroed_features_out(regimes):
    import torch

    from moensemble.moe._em import expert_log_likelihoods, refit_gate
    from moensemble.moe.net import RowDataset

    X, y = regimes
    # (no re-partition: the adopted linear mixture would leave the gate nothing to gain)
    est = MoEClassifier(**{**FAST, "max_epochs": 4}, router_l1=0.9,
                        repartition="none").fit(X, y)
    router = est.net_.module_.router
    zeroed = _gate_column_norms(est) == 0
    assert zeroed.any()
    chunks, log_p = expert_log_likelihoods(est.net_.module_, RowDataset(X, y))
    with torch.no_grad():
        before = -torch.logsumexp(torch.log_softmax(router.logits(chunks[0]), -1) + log_p,
                                  -1).mean().item()
    after = refit_gate(router, chunks, log_p, lr=1e-2)
    assert after < before - 0.01
    assert (_gate_column_norms(est)[zeroed] == 0).all()


def test_em_rounds_refit_the_gate_at_their_epochs(regimes):
    X, y = regimes
    def refits(**params):
        est = MoEClassifier(**{**FAST, "max_epochs": 6}, em_rounds=3, **params).fit(X, y)
        return [i + 1 for i, row in enumerate(est.history_) if "gate_refit_loss" in row]

    assert refits(router_l1=0.0) == [2, 4, 6]
    assert refits() == [4, 5, 6]  # router_l1='auto' is 0.8 here: after its selection half
    assert "gate_refit_loss" not in MoEClassifier(**{**FAST, "max_epochs": 2}).fit(
        X, y).history_[-1]


@pytest.mark.parametrize("params", [dict(mixture="logits"), dict(top_k=1),
                                    dict(encoder=(8,)), dict(num_embedding="periodic")])
def test_em_rounds_need_a_competitive_single_layer(regimes, params):
    X, y = regimes
    with pytest.raises(ValueError, match="em_rounds"):
        MoEClassifier(**{**FAST, **params}, em_rounds=2).fit(X[:60], y[:60])
    for bad in (-1, 1.5):
        with pytest.raises(InvalidParameterError, match="em_rounds"):
            MoEClassifier(**FAST, em_rounds=bad).fit(X[:60], y[:60])


def test_moe_space_draws_em_rounds_only_for_a_competitive_single_layer(regimes):
    import optuna

    from moensemble.search import moe_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [moe_space(study.ask(), encoder=(None, 16)) for _ in range(150)]
    competitive = [d for d in drawn if d["mixture"] == "likelihood" and (
        d["router"] == "softmax" or d["top_k"] >= 2)]
    assert {d["em_rounds"] for d in competitive} == set(range(6))
    assert all(d["em_rounds"] == 0 for d in drawn if d not in competitive)
    X, y = regimes
    pick = next(d for d in competitive if d["em_rounds"] > 0)
    est = MoEClassifier(**{**pick, "max_epochs": 2, "n_experts": 3,
                           "top_k": min(pick["top_k"], 3)}).fit(X[:200], y[:200])
    assert any("gate_refit_loss" in row for row in est.history_)
    with pytest.raises(ValueError, match="em_rounds"):
        moe_space(study.ask(), em_rounds=(-1, 2))
