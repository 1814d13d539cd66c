"""The gate re-partitioned from the rows' local linear rules (``repartition='local_rules'``,
issue 13): the pieces recover hidden regimes, the estimator uses them, bad setups fail."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.metrics import adjusted_rand_score

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier, MoERegressor, _partition
from moensemble.moe._merge import merge_groups
from moensemble.moe._partition import (
    LocalRulePartition,
    local_rule_groups,
    partition_score,
    refine_groups,
    standardised,
)


@pytest.fixture(scope="module")
def regimes():
    # 4 regimes set by the first 2 of 10 features, each its own linear rule.
    X, y, r = make_regime_classification(3000, n_features=10, n_regimes=4, noise=0.1,
                                         return_regimes=True, random_state=0)
    return X, y, r


def test_local_rules_find_the_regimes_in_the_routing_features(regimes):
    X, y, r = regimes
    T = np.eye(2)[y]
    right = local_rule_groups(X, T, np.array([0, 1]), 4, seed=0)
    wrong = local_rule_groups(X, T, np.array([6, 7]), 4, seed=0)
    assert adjusted_rand_score(r, right) > 0.5
    assert adjusted_rand_score(r, wrong) < 0.1
    # The score that picks the number of features prefers the true partition's groups.
    scores = [partition_score(X, T, g, classification=True) for g in (right, wrong, r)]
    assert scores[2] > scores[1] + 0.05 and scores[0] > scores[1] + 0.05


def test_refine_cleans_the_local_rules_partition(regimes):
    X, y, r = regimes
    T, routing = np.eye(2)[y], np.array([0, 1])
    for seed in range(3):  # from several anchor draws
        start = local_rule_groups(X, T, routing, 4, seed=seed)
        refined = refine_groups(X, T, routing, start)
        assert adjusted_rand_score(r, refined) > adjusted_rand_score(r, start) + 0.1


def test_merge_of_adjacent_cells_finds_the_regimes_in_the_routing_features(regimes):
    X, y, r = regimes
    T = np.eye(2)[y]
    routing, other = np.array([0, 1]), np.array([6, 7])
    merged = [adjusted_rand_score(r, merge_groups(X, T, standardised(X, routing), 4, seed=s))
              for s in range(2)]
    rules = [adjusted_rand_score(r, local_rule_groups(X, T, routing, 4, seed=s))
             for s in range(2)]
    # As well as the k-means of the local rules from the same features (0.51-0.56 against
    # 0.50-0.51 on these draws), and nothing from features the regimes do not depend on.
    assert min(merged) > 0.4 and np.mean(merged) >= np.mean(rules) - 0.05
    wrong = merge_groups(X, T, standardised(X, other), 4, seed=0)
    assert adjusted_rand_score(r, wrong) < 0.1
    assert sorted(np.unique(wrong)) == [0, 1, 2, 3]


@pytest.fixture(scope="module")
def small_table():
    # 800 rows, 10 features: the gate's lasso is on ('auto'), so the re-partition applies.
    X, y = make_regime_classification(800, n_features=10, n_regimes=4, random_state=3)
    return X, y


def _history(est, key):
    return [row[key] for row in est.history_ if key in row]


def _fit(X, y, **params):
    params.setdefault("repartition", "none")  # the plain fit, or the callback given alone
    return MoEClassifier(max_epochs=10, random_state=0, **params).fit(X, y)


def test_guard_keeps_the_fit_without_option_where_its_loss_is_lower(small_table,
                                                                     monkeypatch):
    X, y = small_table
    plain = _fit(X, y)
    losses = iter([1.0, 0.5])  # the re-partitioned net's loss, then the net's own
    monkeypatch.setattr(_partition, "training_loss", lambda net, dataset: next(losses))
    guarded = _fit(X, y, callbacks=[LocalRulePartition(True, guard=True)])
    assert _history(guarded, "repartition_kept") == [0]
    assert _history(guarded, "repartition_losses") == [[0.5, 1.0]]
    # The trial ran aside and the torch RNG was put back: exactly the fit without it.
    np.testing.assert_allclose(guarded.predict_proba(X), plain.predict_proba(X))


def test_guard_takes_the_repartitioned_net_where_its_loss_is_lower(small_table,
                                                                   monkeypatch):
    X, y = small_table
    unguarded = _fit(X, y, callbacks=[LocalRulePartition(True)])
    losses = iter([0.5, 1.0])
    monkeypatch.setattr(_partition, "training_loss", lambda net, dataset: next(losses))
    guarded = _fit(X, y, callbacks=[LocalRulePartition(True, guard=True)])
    assert _history(guarded, "repartition_kept") == [1]
    # The net trained aside is the one the unguarded re-partition trains in place.
    np.testing.assert_allclose(guarded.predict_proba(X), unguarded.predict_proba(X),
                               atol=1e-5)
    assert not np.allclose(guarded.predict_proba(X), _fit(X, y).predict_proba(X), atol=1e-3)


def test_auto_compares_real_losses_and_resolves_to_none_where_it_cannot_apply(small_table):
    X, y = small_table
    est = _fit(X, y, repartition="auto")
    assert est.repartition_ == "auto"
    (kept,), ((old, new),) = _history(est, "repartition_kept"), _history(
        est, "repartition_losses")
    ((gain, se),) = _history(est, "repartition_gain_se")
    assert kept == int(gain > se) and 0 < min(old, new) and np.isclose(gain, old - new)
    guard = dict(est.net_.callbacks_)["repartition"]
    assert guard.check_ is None and guard.aside_ is None  # no rows kept on the fitted model
    if not kept:
        np.testing.assert_allclose(est.predict_proba(X), _fit(X, y).predict_proba(X))
    assert MoEClassifier().repartition == MoERegressor().repartition == "auto"  # defaults
    for params, X_in in [({"router_l1": 0.0}, X), ({}, sp.csr_matrix(X)),
                         ({"encoder": (8,)}, X), ({}, X[:150])]:  # (too few rows: 150)
        est = MoEClassifier(max_epochs=2, **params).fit(X_in, y[:X_in.shape[0]])
        assert est.repartition_ == "none" and _history(est, "repartition_features") == []


def _holdout_fit(X, y, monkeypatch, own, new):
    calls = iter([own, new])  # row_losses of the twin as it is, then re-partitioned

    def losses(net, dataset):
        return np.full(len(dataset), next(calls))

    monkeypatch.setattr(_partition, "row_losses", losses)
    return _fit(X, y, callbacks=[LocalRulePartition(True, refine_iter=5, guard="holdout")])


@pytest.mark.parametrize("own, new", [(0.5, 0.8), (0.5, 0.5)])
def test_holdout_guard_keeps_the_fit_without_option_unless_the_new_gate_wins(
        small_table, monkeypatch, own, new):
    X, y = small_table
    guarded = _holdout_fit(X, y, monkeypatch, own, new)
    assert _history(guarded, "repartition_kept") == [0]  # it loses, or ties: the default
    np.testing.assert_allclose(_history(guarded, "repartition_losses"), [[own, new]])
    # The twin trained aside on the fit rows; the net itself, all rows: exactly the plain fit.
    np.testing.assert_allclose(guarded.predict_proba(X), _fit(X, y).predict_proba(X))


def test_holdout_guard_takes_the_gate_refitted_on_the_fit_rows_where_it_wins(
        small_table, monkeypatch):
    X, y = small_table
    guarded = _holdout_fit(X, y, monkeypatch, 0.8, 0.5)
    assert _history(guarded, "repartition_kept") == [1]
    assert len(_history(guarded, "repartition_features")) == 1
    assert guarded.net_.module_.router.linear.weight.requires_grad  # unfrozen again
    assert not np.allclose(guarded.predict_proba(X), _fit(X, y).predict_proba(X), atol=1e-3)


def test_repartition_refits_the_gate_on_its_strongest_features(regimes):
    X, y, r = regimes
    params = dict(n_experts=4, top_k=2, max_epochs=10, lr=1e-2, random_state=0)
    est = MoEClassifier(**params, repartition="local_rules").fit(X, y)
    used = [row["repartition_features"] for row in est.history_
            if "repartition_features" in row]
    assert len(used) == 1 and 1 <= used[0] <= 4  # once, at the end of the selection half
    router = est.net_.module_.router
    assert router.linear.weight.requires_grad  # unfrozen after its frozen epochs
    norms = router.linear.weight.detach().norm(dim=0).numpy()
    assert set(np.argsort(-norms)[:2]) == {0, 1}  # the routing features lead the gate
    indices, gates = est.route(X)
    top = indices[np.arange(len(X)), gates.argmax(1)]
    assert adjusted_rand_score(r, top) > 0.4  # the experts' rows follow the regimes
    # Reproducible, and clone keeps the option.
    again = clone(est).fit(X, y)
    np.testing.assert_allclose(again.predict_proba(X[:50]), est.predict_proba(X[:50]))


def test_repartition_regressor_runs_its_value_rules():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 10))
    y = np.where(X[:, 0] > 0, X[:, 2] - X[:, 3], X[:, 4] + X[:, 5])
    est = MoERegressor(n_experts=2, max_epochs=6, lr=1e-2, router_l1=0.5,
                       repartition="local_rules", random_state=0).fit(X, y)
    assert [row["repartition_features"] for row in est.history_
            if "repartition_features" in row] != []
    assert est.score(X, y) > 0.5


@pytest.mark.parametrize("params, X_kind", [
    ({"router_l1": 0.0}, "dense"),
    ({"router_l1": 0.5}, "sparse"),
    ({"router_l1": 0.5, "encoder": (8,)}, "dense"),
])
def test_repartition_needs_a_lasso_gate_on_dense_raw_features(regimes, params, X_kind):
    X, y, _ = regimes
    X = sp.csr_matrix(X[:200]) if X_kind == "sparse" else X[:200]
    est = MoEClassifier(max_epochs=2, repartition="local_rules", **params)
    with pytest.raises(ValueError, match="repartition"):
        est.fit(X, y[:200])


def test_repartition_rejects_unknown_values(regimes):
    X, y, _ = regimes
    with pytest.raises(ValueError, match="repartition"):
        MoEClassifier(repartition="kmeans").fit(X[:100], y[:100])
