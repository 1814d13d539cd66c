"""The default MoE on hidden-regime data (``make_regime_classification``): it should find the
regimes a plain network of the same active size cannot, and come near what a model told the
regimes reaches on the same rows (the oracle). benchmarks/bench_regimes.py runs the grid."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from moensemble.datasets import make_regime_classification
from moensemble.moe import MoEClassifier

N_TRAIN = 2000


def _oracle(Xtr, ytr, rtr, Xte, rte) -> np.ndarray:
    """One logistic regression per true regime, fitted on that regime's training rows."""
    pred = np.zeros(len(Xte), dtype=np.int64)
    for r in np.unique(rte):
        model = LogisticRegression(max_iter=1000).fit(Xtr[rtr == r], ytr[rtr == r])
        pred[rte == r] = model.predict(Xte[rte == r])
    return pred


@pytest.fixture(scope="module")
def regimes():
    X, y, r, bayes = make_regime_classification(
        N_TRAIN + 2000, n_features=6, n_regimes=3, noise=0.1, return_regimes=True,
        return_bayes_rate=True, random_state=3)
    return X[:N_TRAIN], y[:N_TRAIN], r[:N_TRAIN], X[N_TRAIN:], y[N_TRAIN:], r[N_TRAIN:], bayes


def test_default_moe_beats_an_mlp_of_its_active_size_and_nears_the_oracle(regimes):
    Xtr, ytr, rtr, Xte, yte, rte, bayes = regimes
    moe = MoEClassifier(random_state=0).fit(Xtr, ytr)
    moe_acc = moe.score(Xte, yte)
    n_params, d = moe.n_active_params_, Xtr.shape[1]
    width = max(1, round((n_params - 2) / (d + 1 + 2)))  # one hidden layer, same parameters
    mlp_acc = MLPClassifier((width,), max_iter=500, early_stopping=True,
                            random_state=0).fit(Xtr, ytr).score(Xte, yte)
    oracle_acc = float((_oracle(Xtr, ytr, rtr, Xte, rte) == yte).mean())
    print(f"bayes {bayes:.3f} oracle {oracle_acc:.3f} moe {moe_acc:.3f} mlp {mlp_acc:.3f}")
    assert oracle_acc > bayes - 0.03  # the rows allow the Bayes rate to a model told the regimes
    assert moe_acc > mlp_acc + 0.01
    assert moe_acc > oracle_acc - 0.05
