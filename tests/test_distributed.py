"""The out-of-fold engine and the ensembles run unchanged on a Dask cluster (joblib backend)."""

from __future__ import annotations

import os

import joblib
import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.naive_bayes import GaussianNB
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from moensemble.ensemble import (
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    out_of_fold,
)

if os.environ.get("CI"):  # CI installs the `distributed` extra: a missing one is an error
    import distributed
else:
    distributed = pytest.importorskip("distributed", reason="needs the `distributed` extra")


@pytest.fixture(scope="module")
def client():
    # One in-process worker with two threads: a real scheduler and worker, started in ~1 s.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


def _bases():
    return [
        ("lr", LogisticRegression(max_iter=500)),
        ("nb", GaussianNB()),
        ("tree", DecisionTreeClassifier(max_depth=4, random_state=0)),
    ]


def _on_dask(client, fit):
    """Run ``fit`` under the Dask backend; check that the cluster did the work."""
    before = _tasks_run(client)
    with joblib.parallel_config(backend="dask"):
        result = fit()
    assert _tasks_run(client) > before, "no task reached the Dask worker"
    return result


def _tasks_run(client) -> int:
    # Each joblib batch becomes a task that the worker logs as it finishes it.
    logs = client.run(lambda dask_worker: len(dask_worker.state.log))
    return sum(logs.values())


def test_out_of_fold_same_on_dask(client):
    X, y = make_classification(n_samples=200, n_features=8, n_classes=3, n_informative=5,
                               random_state=0)
    local = out_of_fold(_bases(), X, y, cv=3, n_jobs=2)
    remote = _on_dask(client, lambda: out_of_fold(_bases(), X, y, cv=3, n_jobs=2))
    for name, _ in _bases():
        np.testing.assert_allclose(remote.predictions[name], local.predictions[name])
    assert [te.tolist() for _, te in remote.folds] == [te.tolist() for _, te in local.folds]


@pytest.mark.parametrize("make", [
    lambda: WeightedEnsembleClassifier(_bases(), cv=3, n_jobs=2),
    lambda: StackingEnsembleClassifier(_bases(), cv=3, n_jobs=2),
    lambda: StackingEnsembleClassifier(_bases(), cv=3, refit=False, n_jobs=-1),
], ids=["weighted", "stacked", "stacked-bagged"])
def test_classifier_ensembles_same_on_dask(client, make):
    X, y = make_classification(n_samples=200, n_features=8, n_classes=3, n_informative=5,
                               random_state=1)
    local = make().fit(X, y)
    remote = _on_dask(client, lambda: make().fit(X, y))
    np.testing.assert_allclose(remote.predict_proba(X), local.predict_proba(X))
    np.testing.assert_array_equal(remote.predict(X), local.predict(X))


def test_regressor_stack_same_on_dask(client):
    X, y = make_regression(n_samples=150, n_features=5, noise=1.0, random_state=0)

    def make():
        return StackingEnsembleRegressor(
            [("ridge", RidgeCV()), ("tree", DecisionTreeRegressor(max_depth=3, random_state=0))],
            cv=3, n_jobs=2)

    local = make().fit(X, y)
    remote = _on_dask(client, lambda: make().fit(X, y))
    np.testing.assert_allclose(remote.predict(X), local.predict(X))


def test_weighted_ensemble_same_on_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional joblib backend)")
    from ray.util.joblib import register_ray

    X, y = make_classification(n_samples=150, n_features=6, random_state=2)
    local = WeightedEnsembleClassifier(_bases(), cv=3, n_jobs=2).fit(X, y)
    register_ray()
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
    try:
        with joblib.parallel_config(backend="ray"):
            remote = WeightedEnsembleClassifier(_bases(), cv=3, n_jobs=2).fit(X, y)
    finally:
        ray.shutdown()
    np.testing.assert_allclose(remote.predict_proba(X), local.predict_proba(X))
