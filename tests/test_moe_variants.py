"""The source articles' MoE variants: heterogeneous experts, element-wise gates, upcycling,
growing; and routing statistics after an interrupted fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from skorch.callbacks import Callback
from torch import nn

from moensemble.datasets import make_regimes
from moensemble.interpret import routing_report
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.net import MoEModule, build_module
from moensemble.moe.routing import make_router
from moensemble.moe.variants import split_expert, upcycle

# A quick schedule: 10x the default lr, so the router keeps the experts' rate (10x of it,
# the default scale, would move the router at 0.1 a step).
QUICK = dict(lr=1e-2, router_lr_scale=1.0, batch_size=64, random_state=0)


@pytest.fixture(scope="module")
def regime_data():
    X, y = make_regimes(600, random_state=0)
    X_test, y_test = make_regimes(1000, random_state=1)
    return X, y, X_test, y_test


# -- heterogeneous experts ---------------------------------------------------------------
def test_router_sends_the_nonlinear_regime_to_the_mlp_expert(regime_data):
    X, y, X_test, y_test = regime_data
    reg = MoERegressor(experts=["linear", (32,)], top_k=1, max_epochs=20, **QUICK).fit(X, y)
    assert reg.n_experts_ == 2 and reg.expert_load_.shape == (2,)
    score = r2_score(y_test, reg.predict(X_test))
    linear_score = r2_score(y_test, LinearRegression().fit(X, y).predict(X_test))
    assert score > 0.6 and score > linear_score + 0.3
    indices, _ = reg.route(X_test)
    wavy = X_test[:, 0] >= 0
    # the linear expert cannot fit the wavy regime: the router keeps it on the MLP
    assert np.mean(indices[wavy, 0] == 1) > 0.75
    report = routing_report(reg, X_test, y_test)
    assert list(report.index) == [0, 1]
    assert report["rows"].sum() == len(X_test)


def test_expert_specs_modules_factories_and_errors():
    X, y = make_classification(120, 6, random_state=0)
    specs = ["linear", 8, (8, 8), nn.Linear(6, 2), lambda n_in, n_out: nn.Linear(n_in, n_out)]
    clf = MoEClassifier(experts=specs, top_k=2, max_epochs=2, **QUICK).fit(X, y)
    kinds = [type(e).__name__ for e in clf.net_.module_.experts]
    assert kinds == ["MLPExpert", "MLPExpert", "MLPExpert", "Linear", "Linear"]
    assert clf.n_experts_ == 5 and clf.n_experts == 8  # the parameter stays as given
    assert clf.route(X)[0].max() <= 4
    # the module given as a spec is copied, never trained in place
    assert clf.net_.module_.experts[3] is not specs[3]
    with pytest.raises(ValueError, match=r"experts\[1\].*'quadratic'"):
        MoEClassifier(experts=["linear", "quadratic"]).fit(X, y)
    with pytest.raises(ValueError, match=r"experts.*non-empty"):
        MoEClassifier(experts=[]).fit(X, y)
    with pytest.raises(ValueError, match=r"top_k.*len\(`experts`\)=2"):
        MoEClassifier(experts=["linear", 4], top_k=3).fit(X, y)
    with pytest.raises(ValueError, match=r"init.*upcycle.*experts"):
        MoEClassifier(experts=["linear", 4], init="upcycle").fit(X, y)
    with pytest.raises(TypeError, match=r"experts\[0\].*factory"):
        MoEClassifier(experts=[lambda i, o: "not a module", 4], top_k=1).fit(X, y)


# -- element-wise gates --------------------------------------------------------------------
def test_elementwise_gates_are_per_output_and_train_well():
    X, y = make_classification(500, 10, n_informative=6, n_classes=3, random_state=0)
    X_tr, y_tr, X_te, y_te = X[:350], y[:350], X[350:], y[350:]
    params = dict(n_experts=4, top_k=2, expert_hidden=(16,), max_epochs=15, **QUICK)
    scalar = MoEClassifier(**params).fit(X_tr, y_tr)
    elem = MoEClassifier(gating="elementwise", **params).fit(X_tr, y_tr)
    gates = elem.output_gates(X_te)
    assert gates.shape == (len(X_te), 2, 3)
    # trained per-class gates differ between the classes of one expert
    assert np.abs(gates - gates.mean(-1, keepdims=True)).max() > 0.05
    # scalar gating: every output shares the gate route() reports
    np.testing.assert_allclose(scalar.output_gates(X_te)[..., 0], scalar.route(X_te)[1])
    assert elem.score(X_te, y_te) >= scalar.score(X_te, y_te) - 0.03
    assert elem.score(X_te, y_te) > 0.75


def test_elementwise_multi_output_regression(regime_data):
    X, y, X_test, y_test = regime_data
    Y, Y_test = np.c_[y, -2 * X[:, 1]], np.c_[y_test, -2 * X_test[:, 1]]
    reg = MoERegressor(n_experts=3, top_k=2, gating="elementwise", max_epochs=15, **QUICK)
    reg.fit(X, Y)
    assert reg.output_gates(X_test).shape == (len(X_test), 2, 2)
    assert r2_score(Y_test, reg.predict(X_test)) > 0.7


# -- upcycling -----------------------------------------------------------------------------
def test_upcycled_module_starts_as_the_dense_network():
    torch.manual_seed(0)
    dense = build_module(
        make_router("topk", 5, 1, 1), 5, 3, n_experts=1, hidden=(8,), activation="relu",
        dropout=0.0, shared_expert=False, fallback=False, precision="float32",
    ).eval()
    # top-2 gates are renormalised over the two kept experts: identical copies sum to one
    moe = MoEModule(make_router("topk", 5, 4, 2), upcycle(dense.experts, 4, noise=0.0)).eval()
    x = torch.randn(64, 5)
    torch.testing.assert_close(moe(x)[0], dense(x)[0])


def test_upcycling_reaches_the_dense_score(regime_data):
    X, y, X_test, y_test = regime_data
    common = dict(expert_hidden=(16,), **QUICK)
    dense = MoERegressor(n_experts=1, top_k=1, max_epochs=10, **common).fit(X, y)
    dense_score = r2_score(y_test, dense.predict(X_test))
    up = MoERegressor(
        n_experts=8, top_k=2, init="upcycle", upcycle_epochs=10, max_epochs=5, **common
    ).fit(X, y)
    assert len(up.dense_history_) == 10 and len(up.history_) == 5
    assert up.expert_load_.shape == (8,)
    # the dense phase is the dense model (same seed, same data, same steps)
    assert up.dense_history_[-1, "train_loss"] == pytest.approx(dense.history_[-1, "train_loss"])
    assert r2_score(y_test, up.predict(X_test)) >= dense_score


def _dense_module(hidden):
    torch.manual_seed(0)
    return build_module(
        make_router("topk", 5, 1, 1), 5, 3, n_experts=1, hidden=hidden, activation="relu",
        dropout=0.0, shared_expert=False, fallback=False, precision="float32",
    ).eval()


@pytest.mark.parametrize("drop", [0.25, 0.5, 1.0])
def test_drop_upcycling_redraws_the_given_share_of_hidden_units(drop):
    hidden = (20, 12)
    dense = _dense_module(hidden).experts
    torch.manual_seed(1)
    moe = upcycle(dense, 6, drop=drop)
    dropped_sets = []
    prev_kept = [torch.ones(5, dtype=torch.bool)] * 6  # the input features
    for layer, width in enumerate(hidden):
        w_in, b_in, w_out = (dense.weights[layer][0], dense.biases[layer][0],
                             dense.weights[layer + 1][0])
        for e in range(6):
            dropped = moe.biases[layer][e] != b_in
            assert dropped.sum().item() == round(drop * width)
            # a dropped unit loses all its incoming and outgoing weights ...
            assert (moe.weights[layer][e][:, dropped] != w_in[:, dropped]).all()
            assert (moe.weights[layer + 1][e][dropped] != w_out[dropped]).all()
            # ... a kept unit keeps those from the previous layer's kept units
            kept_in = moe.weights[layer][e][prev_kept[e]][:, ~dropped]
            torch.testing.assert_close(kept_in, w_in[prev_kept[e]][:, ~dropped])
            if layer == len(hidden) - 1:  # and its weights to the outputs
                torch.testing.assert_close(moe.weights[-1][e][~dropped], w_out[~dropped])
            prev_kept[e] = ~dropped
            dropped_sets.append(frozenset(torch.nonzero(dropped).ravel().tolist()))
    # the output biases are kept; the experts draw their units independently
    torch.testing.assert_close(moe.biases[-1], dense.biases[-1].expand_as(moe.biases[-1]))
    if drop < 1:
        assert len(set(dropped_sets[:6])) > 1
    # re-drawn weights follow the dense tensor's spread
    new = moe.weights[0][0][:, torch.tensor(sorted(dropped_sets[0]))]
    assert 0.5 < new.std().item() / dense.weights[0].std().item() < 2.0


def test_upcycle_drop_zero_keeps_exact_copies_and_bad_drop_is_refused():
    dense = _dense_module((8,)).experts
    moe = upcycle(dense, 4, drop=0.0)
    for w, wd in zip(moe.weights, dense.weights, strict=True):
        torch.testing.assert_close(w, wd.expand_as(w))
    with pytest.raises(ValueError, match=r"drop.*\[0, 1\]"):
        upcycle(dense, 4, drop=1.5)


def test_upcycle_drop_parameter(regime_data):
    X, y, X_test, y_test = regime_data
    common = dict(n_experts=4, top_k=2, expert_hidden=(16,), init="upcycle",
                  upcycle_epochs=3, max_epochs=1, **QUICK)
    with pytest.raises(ValueError, match=r"upcycle_drop.*range \[0.0, 1.0\]"):
        MoERegressor(upcycle_drop=1.5, **common).fit(X, y)
    with pytest.raises(ValueError, match=r"upcycle_drop.*range \[0.0, 1.0\]"):
        MoERegressor(upcycle_drop=-0.1, **common).fit(X, y)
    assert MoERegressor().upcycle_drop == 0.0
    plain = MoERegressor(**common).fit(X, y)
    dropped = MoERegressor(upcycle_drop=0.5, **common).fit(X, y)
    # the dense phase is the same; only the copies differ
    assert dropped.dense_history_[-1, "train_loss"] == pytest.approx(
        plain.dense_history_[-1, "train_loss"]
    )
    w_plain = plain.net_.module_.experts.weights[0].detach()
    w_drop = dropped.net_.module_.experts.weights[0].detach()
    # after one epoch plain copies are still close together, dropped copies are not
    spread = lambda w: (w - w.mean(0)).abs().mean().item()  # noqa: E731
    assert spread(w_drop) > 5 * spread(w_plain)
    assert r2_score(y_test, dropped.predict(X_test)) > 0.3


# -- growing -------------------------------------------------------------------------------
def test_split_expert_keeps_a_dense_mixture_unchanged():
    torch.manual_seed(0)
    module = build_module(
        make_router("softmax", 5, 3, 1), 5, 2, n_experts=3, hidden=(8,), activation="relu",
        dropout=0.0, shared_expert=False, fallback=False, precision="float32",
        elementwise=True,
    ).eval()
    x = torch.randn(32, 5)
    before = module(x)[0]
    split_expert(module, 1, noise=0.0)
    assert len(module.experts) == module.router.n_experts == 4
    # the two halves of expert 1 share its softmax mass: same mixture
    torch.testing.assert_close(module(x)[0], before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("heterogeneous", [False, True])
def test_grow_adds_experts_and_keeps_the_score(regime_data, heterogeneous):
    X, y, X_test, y_test = regime_data
    spec = dict(experts=["linear", (16,)]) if heterogeneous else dict(n_experts=2)
    reg = MoERegressor(top_k=1, expert_hidden=(16,), max_epochs=12, **spec, **QUICK).fit(X, y)
    before = r2_score(y_test, reg.predict(X_test))
    assert reg.grow(X, y, n_new=2, max_epochs=4) is reg
    assert reg.n_experts_ == 4 and reg.expert_load_.shape == (4,)
    assert reg.route(X_test)[0].max() <= 3
    assert len(reg.history_) == 4
    assert r2_score(y_test, reg.predict(X_test)) > before - 0.05
    assert clone(reg).get_params()["n_experts"] == reg.n_experts  # parameters untouched


def test_grow_classifier_and_bad_arguments():
    X, y = make_classification(200, 6, random_state=0)
    clf = MoEClassifier(n_experts=2, top_k=1, expert_hidden=(8,), max_epochs=5, **QUICK)
    clf.fit(X, y)
    acc = clf.score(X, y)
    clf.grow(X, y, max_epochs=3)
    assert clf.n_experts_ == 3 and clf.score(X, y) > acc - 0.1
    with pytest.raises(ValueError, match="n_new"):
        clf.grow(X, y, n_new=0)
    with pytest.raises(ValueError, match="max_epochs"):
        clf.grow(X, y, max_epochs=0)
    with pytest.raises(ValueError, match="labels not seen"):
        clf.grow(X, y + 5)


# -- interrupted training ------------------------------------------------------------------
class _CtrlC(Callback):
    """Raise KeyboardInterrupt at a given batch of a given epoch, as a user's Ctrl-C."""

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_batch_end(self, net, batch=None, training=False, **kwargs) -> None:
        if training and len(net.history) == self.epoch and len(net.history[-1]["batches"]) == (
            self.batch
        ):
            raise KeyboardInterrupt


@pytest.mark.parametrize("epoch", [1, 2])
def test_fit_survives_an_interrupt_inside_an_epoch(epoch):
    X, y = make_classification(300, 6, random_state=0)
    clf = MoEClassifier(
        n_experts=3, router="switch", expert_hidden=(8,), max_epochs=5,
        callbacks=[_CtrlC(epoch, 2)], **QUICK,
    ).fit(X, y)
    assert len(clf.history_) == epoch  # stopped inside that epoch
    assert 0.0 <= clf.overflow_fraction_ <= 1.0
    np.testing.assert_allclose(clf.expert_load_.sum(), 1.0)
    assert clf.predict(X).shape == (300,)


def test_grow_steps_parameter_grows_inside_fit(regime_data):
    X, y, X_test, y_test = regime_data
    reg = MoERegressor(n_experts=2, top_k=1, expert_hidden=(16,), max_epochs=8, grow_steps=2,
                       grow_epochs=3, **QUICK).fit(X, y)
    assert reg.n_experts_ == 4 and reg.expert_load_.shape == (4,)
    assert len(reg.history_) == 3  # the last growing phase
    assert r2_score(y_test, reg.predict(X_test)) > 0.5


# -- k-means router initialisation -----------------------------------------------------
def _blobs(n_per=50):
    rng = np.random.default_rng(0)
    centers = np.array([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0]])
    return np.repeat(centers, n_per, axis=0) + 0.3 * rng.normal(size=(3 * n_per, 3))


def _one_expert_per_blob(best: np.ndarray) -> bool:
    blobs = best.reshape(3, -1)
    return all(len(set(b)) == 1 for b in blobs) and len({b[0] for b in blobs}) == 3


@pytest.mark.parametrize("sparse", [False, True])
def test_kmeans_router_init_splits_the_rows_like_kmeans(sparse):
    import scipy.sparse as sp

    from moensemble.moe.estimators import kmeans_router_init

    X = _blobs()
    router = make_router("topk", 3, 3, 2)
    kmeans_router_init(router, sp.csr_matrix(X) if sparse else X.astype(np.float32), seed=0)
    best = router.logits(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy()
    assert _one_expert_per_blob(best)  # every blob on an expert of its own from the start
    torch.manual_seed(0)  # an unseeded random router splits the blobs by chance now and then
    random_router = make_router("topk", 3, 3, 2)
    assert not _one_expert_per_blob(
        random_router.logits(torch.tensor(X, dtype=torch.float32)).argmax(1).numpy()
    )


@pytest.mark.parametrize("init", ["random", "upcycle"])
def test_router_init_kmeans_parameter(init):
    X = _blobs()
    y = X.sum(1)
    common = dict(n_experts=3, top_k=2, expert_hidden=(4,), init=init, upcycle_epochs=1,
                  max_epochs=1, lr=1e-6, batch_size=64, random_state=0)
    with pytest.raises(ValueError, match="router_init"):
        MoERegressor(router_init="zeros", **common).fit(X, y)
    assert MoERegressor().router_init == "random"
    # With a learning rate too small to move it, the router routes as initialised.
    reg = MoERegressor(router_init="kmeans", **common).fit(X, y)
    assert _one_expert_per_blob(reg.route(X)[0][:, 0])
    np.testing.assert_allclose(reg.expert_load_.min(), 1 / 3, atol=0.1)
    clf = MoEClassifier(router="switch", router_init="kmeans", **common)
    assert _one_expert_per_blob(clf.fit(X, (y > 5).astype(int)).route(X)[0][:, 0])


# -- balancing -----------------------------------------------------------------------------
def test_bias_balancing_lowers_the_load_violation_against_no_balancing():
    from moensemble.leaderboard import max_violation

    X, y = make_classification(600, 20, n_informative=10, n_classes=4, random_state=0)
    common = dict(n_experts=8, top_k=2, expert_hidden=(16,), max_epochs=15, **QUICK)
    loose = MoEClassifier(aux_loss_coef=0.0, **common).fit(X, y)
    biased = MoEClassifier(balance="bias", bias_update_rate=0.02, **common).fit(X, y)
    v_loose, v_biased = max_violation(loose.expert_load_), max_violation(biased.expert_load_)
    assert v_biased < 0.25 and v_biased < v_loose / 2, (v_biased, v_loose)
    assert (biased.expert_load_ > 0.25 / 8).sum() == 8
