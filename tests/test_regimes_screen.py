"""Features for the re-partition ranked by model-based splits (``moe/_screen.py``, issue
13, eighth pass): the routing features lead without the gate, and the partition uses them
even where the gate's lasso has zeroed them."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier
from moensemble.moe._partition import LocalRulePartition
from moensemble.moe._screen import screen_features, split_gains


@pytest.mark.parametrize("K, d, seed", [(8, 10, 0), (4, 30, 0), (6, 20, 1)])
def test_screen_ranks_the_routing_features_first(K, d, seed):
    # (8, 10, 0): the seventh pass's fit whose lasso zeroed routing feature 0.
    X, y = make_regime_classification(3000, n_features=d, n_regimes=K, noise=0.1,
                                      random_state=seed)
    order = screen_features(X, np.eye(2)[y])
    assert sorted(order[:2]) == [0, 1]
    assert sorted(order) == list(range(d))  # a ranking of every feature


def test_split_gains_are_small_without_regimes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 10))
    y = (X @ rng.normal(size=10) + 0.5 * rng.normal(size=2000) > 0).astype(int)
    gains = split_gains(X, np.eye(2)[y])
    assert gains.max() < 0.02  # one rule for all rows: no bin's rule fits better
    X2, y2 = make_regime_classification(2000, n_features=10, n_regimes=4, random_state=0)
    assert split_gains(X2, np.eye(2)[y2])[:2].min() > 5 * gains.max()


def test_screened_partition_reads_features_the_lasso_zeroed():
    X, y, r = make_regime_classification(1000, n_features=10, n_regimes=4, noise=0.1,
                                         return_regimes=True, random_state=0)
    # A lasso this strong zeroes the gate's every input before the re-partition epoch.
    params = dict(n_experts=4, max_epochs=10, lr=1e-2, router_l1=200.0, random_state=0,
                  repartition="none")
    gate = MoEClassifier(**params, callbacks=[LocalRulePartition(True)]).fit(X, y)
    screen = MoEClassifier(**params, callbacks=[LocalRulePartition(True, features="screen")]
                           ).fit(X, y)
    (ids,) = [row["repartition_feature_ids"] for row in screen.history_
              if "repartition_feature_ids" in row]
    assert {0, 1} <= set(ids)
    norms = screen.net_.module_.router.linear.weight.detach().norm(dim=0).numpy()
    # The lasso's masks let the screened features in: still read after training on.
    assert (norms[[0, 1]] > 0).all() and (norms[[j for j in range(10) if j not in ids]]
                                          == 0).all()
    ari = []
    for est in (gate, screen):
        indices, gates = est.route(X)
        ari.append(adjusted_rand_score(r, indices[np.arange(len(X)), gates.argmax(1)]))
    assert ari[1] > 0.5 and ari[1] > ari[0] + 0.2, ari  # the experts follow the regimes


def test_partition_features_must_be_known():
    X, y = make_regime_classification(300, n_features=10, random_state=0)
    est = MoEClassifier(max_epochs=2, repartition="none",
                        callbacks=[LocalRulePartition(True, features="lasso")])
    with pytest.raises(ValueError, match="features"):
        est.fit(X, y)


def test_auto_takes_its_candidates_in_the_screened_features():
    from moensemble.moe._partition import make_repartition

    for classification in (True, False):
        callback = make_repartition("auto", classification)
        assert (callback.features, callback.guard, callback.refine_iter) == (
            "screen", "holdout", 30)
    assert make_repartition("local_rules", True).features == "gate"  # as in the fifth pass
