"""Mixture-of-experts estimators: sklearn contract, routing, dispatch, bad input."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.datasets import make_classification
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.callbacks import Callback
from torch import nn

from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.blocks import MoENetwork
from moensemble.moe.experts import MLPExpert, StackedMLPExperts
from moensemble.moe.net import MoEModule
from moensemble.moe.routing import dispatch, make_router

# Small and quick, but enough epochs that the sklearn score checks
# (check_classifiers_train, check_regressors_train) pass honestly: no expected failures.
FAST = dict(n_experts=3, top_k=2, expert_hidden=(16,), max_epochs=10, lr=1e-2, batch_size=32,
            random_state=0)
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@parametrize_with_checks(
    [MoEClassifier(**FAST), MoERegressor(**FAST),
     MoEClassifier(**FAST, encoder=(16,), n_layers=2)],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def clf_data():
    X, y = make_classification(400, 12, n_informative=8, n_classes=3, random_state=0)
    return X.astype(np.float64), y


# -- routing ---------------------------------------------------------------------------
@pytest.mark.parametrize("router,k", [("topk", 2), ("topk", 3), ("expert_choice", 2),
                                      ("switch", 1), ("softmax", 5)])
def test_each_row_uses_exactly_k_experts(clf_data, router, k):
    X, y = clf_data
    clf = MoEClassifier(n_experts=5, top_k=min(k, 5), router=router, max_epochs=2,
                        expert_hidden=(8,), random_state=0).fit(X, y)
    indices, gates = clf.route(X)
    assert indices.shape == gates.shape == (len(X), k)
    # k distinct experts per row, positive gates
    assert all(len(set(row)) == k for row in indices)
    assert (gates > 0).all()
    np.testing.assert_allclose(clf.expert_load_.sum(), 1.0, rtol=1e-6)
    assert clf.n_active_params_ > 0


def test_load_balancing_loss_evens_out_expert_load():
    # Imbalanced start: the informative directions make some experts attractive.
    X, y = make_classification(600, 10, n_informative=4, random_state=1)
    spreads = {}
    for coef in (0.0, 1.0):
        # router_l1=0: the aux loss alone (a sparse gate trades balance for specialisation)
        clf = MoEClassifier(n_experts=6, top_k=1, router="topk", aux_loss_coef=coef,
                            z_loss_coef=0.0, expert_hidden=(8,), max_epochs=15, lr=1e-2,
                            router_l1=0.0, batch_size=128, random_state=0).fit(X, y)
        spreads[coef] = clf.expert_load_.std()
    assert spreads[1.0] < spreads[0.0]
    assert spreads[1.0] < 0.5 / 6  # close to uniform (1/6 each)


def test_bias_balancing_updates_bias_and_balances():
    X, y = make_classification(600, 10, n_informative=4, random_state=1)
    # The router at the experts' rate: with lr=1e-2, the default 10x would let the router's
    # logits outrun a bias nudged 0.01 a batch.
    # No re-partition: an adopted mixture freezes the router, and a frozen router is not
    # balanced.
    common = dict(n_experts=6, top_k=1, z_loss_coef=0.0, expert_hidden=(8,), max_epochs=15,
                  lr=1e-2, router_lr_scale=1.0, repartition="none", random_state=0)
    free = MoEClassifier(aux_loss_coef=0.0, **common).fit(X, y)
    biased = MoEClassifier(balance="bias", bias_update_rate=1e-2, **common).fit(X, y)
    assert biased.net_.module_.router.expert_bias.abs().sum() > 0
    assert biased.expert_load_.std() < 0.5 * free.expert_load_.std()
    assert biased.history_[-1, "load_max_violation"] < free.history_[-1, "load_max_violation"]


def test_moe_beats_single_expert_on_regimes():
    # Four regimes (quadrants of x0, x1), each with its own linear law.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2400, 6))
    regime = (X[:, 0] > 0).astype(int) * 2 + (X[:, 1] > 0)
    W = rng.normal(size=(4, 6)) * 3
    y = np.einsum("nd,nd->n", X, W[regime])
    Xtr, Xte, ytr, yte = X[:2000], X[2000:], y[:2000], y[2000:]
    common = dict(expert_hidden=(8,), max_epochs=40, lr=1e-2, batch_size=64, random_state=0)
    single = MoERegressor(n_experts=1, top_k=1, **common).fit(Xtr, ytr).score(Xte, yte)
    moe = MoERegressor(n_experts=4, top_k=2, **common).fit(Xtr, ytr).score(Xte, yte)
    assert moe > single + 0.05, (moe, single)


def test_batch_size_auto_gives_small_tables_eight_steps_an_epoch(clf_data):
    X, y = clf_data
    small = MoEClassifier(max_epochs=1, random_state=0).fit(X[:100], y[:100])
    assert small.batch_size_ == 16 and small.net_.batch_size == 16
    assert MoEClassifier(max_epochs=1, random_state=0).fit(X[:400], y[:400]).batch_size_ == 50
    assert MoEClassifier(max_epochs=1, batch_size=7, random_state=0).fit(X, y).batch_size_ == 7
    with pytest.raises(InvalidParameterError, match="batch_size"):
        MoEClassifier(batch_size="big").fit(X, y)


def test_switch_overflow_rows_keep_an_output(clf_data):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, router="switch", capacity_factor=0.5, max_epochs=2,
                        expert_hidden=(8,), batch_size=128, random_state=0).fit(X, y)
    # capacity 0.5 * even share: at least half of the rows overflow in training
    assert clf.overflow_fraction_ >= 0.5
    module = clf.net_.module_.train()
    out, _ = module(torch.as_tensor(X[:64], dtype=torch.float32))
    assert torch.isfinite(out).all() and (out.abs().sum(1) > 0).all()
    assert "overflow_fraction" in clf.history_[-1]


# -- dispatch --------------------------------------------------------------------------
class _Counting(nn.Module):
    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.rows = 0

    def forward(self, x):
        self.rows += x.shape[0]
        return self.linear(x)


def test_dispatch_runs_each_expert_on_its_rows_only():
    torch.manual_seed(0)
    batch, dim, n_experts, k = 256, 8, 16, 2
    x = torch.randn(batch, dim)
    router = make_router("topk", dim, n_experts, k).eval()
    r = router(x)
    experts = nn.ModuleList(_Counting(dim, 3) for _ in range(n_experts))
    out, counts = dispatch(x, r.indices, r.gates, experts)
    routed = torch.bincount(r.indices.reshape(-1), minlength=n_experts)
    assert [e.rows for e in experts] == routed.tolist() == counts.tolist()
    assert sum(e.rows for e in experts) == batch * k  # not batch * n_experts
    # same result as the dense mixture restricted to the chosen experts
    dense = torch.stack([e.linear(x) for e in experts], 1)  # (batch, E, 3)
    ref = (dense.gather(1, r.indices[..., None].expand(-1, -1, 3)) * r.gates[..., None]).sum(1)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_dispatch_mask_and_elementwise_gates():
    torch.manual_seed(0)
    x = torch.randn(10, 4)
    experts = nn.ModuleList(_Counting(4, 2) for _ in range(3))
    indices = torch.tensor([[0, 1]] * 10)
    gates = torch.rand(10, 2, 2)  # one weight per assignment and output
    mask = torch.zeros(10, 2, dtype=torch.bool)
    mask[:, 0] = True
    out, counts = dispatch(x, indices, gates, experts, mask)
    assert counts.tolist() == [10, 0, 0] and experts[1].rows == 0
    torch.testing.assert_close(out, experts[0].linear(x) * gates[:, 0])


@pytest.mark.parametrize("hidden,out", [((16,), 4), ((6, 5), 3)])
def test_stacked_experts_grouped_mm_equals_loop_and_modules(hidden, out):
    torch.manual_seed(0)
    stacked = StackedMLPExperts(4, 7, hidden, out)
    x = torch.randn(30, 7)
    counts = torch.tensor([10, 0, 15, 5])
    ids = torch.repeat_interleave(torch.arange(4), counts)
    stacked.impl = "grouped_mm"
    y_grouped = stacked.forward_sorted(x, ids, counts)
    stacked.impl = "loop"
    y_loop = stacked.forward_sorted(x, ids, counts)
    torch.testing.assert_close(y_grouped, y_loop, rtol=1e-5, atol=1e-5)
    y_mod = torch.cat([stacked.expert(e)(xe) for e, xe in enumerate(x.split(counts.tolist()))])
    torch.testing.assert_close(y_grouped, y_mod, rtol=1e-5, atol=1e-5)


def test_upcycled_experts_reproduce_the_dense_mlp():
    torch.manual_seed(0)
    mlp = MLPExpert(5, (8,), 2)
    stacked = StackedMLPExperts.from_mlp(mlp, 3)
    x = torch.randn(6, 5)
    ids = torch.tensor([0, 0, 1, 2, 2, 2])
    torch.testing.assert_close(stacked.forward_sorted(x, ids, torch.tensor([2, 1, 3])), mlp(x))


# -- estimator behaviour ---------------------------------------------------------------
@pytest.mark.parametrize("router", ["topk", "softmax", "switch", "expert_choice"])
def test_prediction_of_a_row_does_not_depend_on_its_batch(clf_data, router):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, router=router, capacity_factor=1.0, max_epochs=3,
                        expert_hidden=(8,), random_state=0).fit(X, y)
    proba = clf.predict_proba(X[:20])
    one_by_one = np.vstack([clf.predict_proba(X[i:i + 1]) for i in range(20)])
    np.testing.assert_allclose(proba, one_by_one, rtol=0, atol=1e-6)
    assert (clf.predict(X[:20]) == [clf.predict(X[i:i + 1])[0] for i in range(20)]).all()
    idx, gates = clf.route(X[:20])
    idx1 = np.vstack([clf.route(X[i:i + 1])[0] for i in range(20)])
    assert (idx == idx1).all()


@pytest.mark.parametrize("params", [dict(router="topk"), dict(router="softmax"),
                                    dict(router="switch"), dict(router="expert_choice"),
                                    dict(encoder=(8,), n_layers=2)])
def test_eval_forward_skips_the_auxiliary_losses(clf_data, params, monkeypatch):
    from moensemble.moe import routing

    X, y = clf_data
    calls = {"aux": 0, "z": 0}
    real_aux, real_z = routing.load_balancing_loss, routing.z_loss

    def count(name, real):
        def spy(*args):
            calls[name] += 1
            return real(*args)
        return spy

    monkeypatch.setattr(routing, "load_balancing_loss", count("aux", real_aux))
    monkeypatch.setattr(routing, "z_loss", count("z", real_z))
    clf = MoEClassifier(n_experts=4, max_epochs=2, expert_hidden=(8,), random_state=0,
                        **params).fit(X, y)
    assert calls["z"] > 0  # training computes them (the aux loss: all but softmax)
    before = clf.predict_proba(X), clf.predict_proba(X[:1])
    calls.update(aux=0, z=0)
    after = clf.predict_proba(X), clf.predict_proba(X[:1])
    assert calls == {"aux": 0, "z": 0}
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a, b)
    module = clf.net_.module_.eval()
    _, aux = module(torch.as_tensor(X[:5], dtype=torch.float32))[:2]
    assert aux.tolist() == [0.0, 0.0]


def test_same_seed_same_predictions_and_pickle(clf_data):
    X, y = clf_data
    params = dict(n_experts=4, max_epochs=3, expert_hidden=(8,), gate_dropout=0.2,
                  dropout=0.1, random_state=3)
    a = MoEClassifier(**params).fit(X, y)
    b = MoEClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), c.predict_proba(X))
    np.testing.assert_array_equal(a.route(X)[0], c.route(X)[0])
    buf = io.BytesIO()
    joblib.dump(a, buf)
    buf.seek(0)
    np.testing.assert_array_equal(a.predict_proba(X), joblib.load(buf).predict_proba(X))


def test_user_callbacks_see_valid_loss_each_epoch(clf_data):
    # What optuna-integration's SkorchPruningCallback needs: valid_loss at every epoch end.
    X, y = clf_data

    class Spy(Callback):
        def initialize(self):
            self.seen = []
            return self

        def on_epoch_end(self, net, **kwargs):
            self.seen.append(net.history[-1, "valid_loss"])

    spy = Spy()
    MoEClassifier(n_experts=2, max_epochs=3, early_stopping=True, expert_hidden=(4,),
                  callbacks=[spy], random_state=0).fit(X, y)
    assert len(spy.seen) == 3 and all(np.isfinite(spy.seen))


def test_early_stopping_records_valid_loss_and_restores_best(clf_data):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, max_epochs=30, lr=0.05, early_stopping=True,
                        n_iter_no_change=3, expert_hidden=(8,), random_state=0).fit(X, y)
    valid = clf.history_[:, "valid_loss"]
    assert len(valid) < 30  # stopped early
    assert len(clf.history_[:, "router_entropy"]) == len(valid)
    # the weights in use are the best epoch's: recompute the validation loss
    best = min(valid)
    assert valid[-1] > best


def test_regressor_multi_output_and_pandas():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
    Y = np.c_[X["a"] * 3 + 100, X["b"] - X["c"]]
    reg = MoERegressor(n_experts=4, max_epochs=30, lr=1e-2, expert_hidden=(16,),
                       random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (300, 2)
    assert reg.score(X, Y) > 0.9
    assert list(reg.feature_names_in_) == list("abcd")
    assert MoERegressor(max_epochs=1).fit(X, Y[:, 0]).predict(X).shape == (300,)


def test_sparse_pipeline_and_grid_search():
    docs = [f"{w} {w} common word{i % 7}" for i, w in
            enumerate(["alpha", "beta", "gamma"] * 40)]
    labels = [i % 3 for i in range(len(docs))]
    pipe = make_pipeline(TfidfVectorizer(),
                         MoEClassifier(n_experts=2, max_epochs=15, lr=1e-2,
                                       expert_hidden=(8,), random_state=0))
    pipe.fit(docs, labels)
    assert pipe.score(docs, labels) > 0.9
    grid = GridSearchCV(
        MoEClassifier(max_epochs=2, expert_hidden=(4,), random_state=0),
        {"n_experts": [2, 3], "top_k": [1, 2]}, cv=2,
    ).fit(TfidfVectorizer().fit_transform(docs), labels)
    assert set(grid.best_params_) == {"n_experts", "top_k"}


def test_sparse_input_is_never_densified(monkeypatch):
    X = sp.random(300, 5_000, density=4e-3, format="csr", random_state=0)
    y = np.arange(300) % 2
    densified, seen = [], []
    real_toarray, real_to_dense = sp.csr_matrix.toarray, torch.Tensor.to_dense
    monkeypatch.setattr(sp.csr_matrix, "toarray",
                        lambda self, *a, **k: densified.append(self.shape) or
                        real_toarray(self, *a, **k))
    monkeypatch.setattr(torch.Tensor, "to_dense",
                        lambda self, *a, **k: densified.append(self.shape) or
                        real_to_dense(self, *a, **k))

    class Spy(Callback):
        def on_batch_begin(self, net, batch=None, **kwargs):
            seen.append(batch[0].layout)

    clf = MoEClassifier(n_experts=2, max_epochs=1, batch_size=64, expert_hidden=(4,),
                        shared_expert=True, callbacks=[Spy()], random_state=0).fit(X, y)
    clf.predict_proba(X[:10])
    assert densified == []
    assert seen and set(seen) == {torch.sparse_csr}


def _densified_batches(monkeypatch):
    from functools import partial

    import moensemble.moe._base as base
    from moensemble.moe.net import RowDataset

    monkeypatch.setattr(base, "RowDataset", partial(RowDataset, densify=True))


@pytest.mark.parametrize("params", [
    dict(),
    dict(router="switch", shared_expert=True, gating="elementwise", expert_hidden=()),
    dict(router="expert_choice", expert_hidden=(8, 6)),
    dict(router="softmax"),
    dict(experts=["linear", (8,), nn.Linear(300, 3)], top_k=2),
])
def test_sparse_path_trains_and_predicts_as_the_densified_path(monkeypatch, params):
    X = sp.random(240, 300, density=0.03, format="csr", random_state=0)
    y = np.asarray(X[:, :100].sum(1)).ravel().argsort().argsort() * 3 // 240
    # The cooperative mixture: under mixture='likelihood' the two paths agree on the forward
    # pass (checked below) but training drifts apart, as Adam scales the float noise of
    # near-zero gradients up to full steps.
    common = dict(n_experts=3, top_k=1, expert_hidden=(8,), max_epochs=4, lr=1e-2,
                  batch_size=32, random_state=0, mixture="logits")
    likelihood = MoEClassifier(**{**common, **params, "mixture": "likelihood"}).fit(X, y)
    np.testing.assert_allclose(likelihood.predict_proba(X),
                               likelihood.predict_proba(X.toarray()), atol=1e-6)
    sparse = MoEClassifier(**{**common, **params}).fit(X, y)
    with monkeypatch.context() as m:
        _densified_batches(m)
        dense = MoEClassifier(**{**common, **params}).fit(X, y)
        # the densified path on the *same* fitted model: the forward pass agrees
        np.testing.assert_allclose(sparse.predict_proba(X), sparse.predict_proba(X.toarray()),
                                   atol=1e-6)
    # trained through sparse batches (gradients reach the first layers) = trained dense
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X), atol=1e-5)
    assert (sparse.route(X)[0] == dense.route(X)[0]).all()
    assert sparse.history_[-1, "train_loss"] < sparse.history_[0, "train_loss"]


@pytest.mark.parametrize("Est", [MoEClassifier, MoERegressor])
@pytest.mark.parametrize("router", ["topk", "softmax"])
def test_router_lr_scale_gives_the_router_its_own_param_group(clf_data, Est, router):
    X, y = clf_data
    est = Est(n_experts=3, top_k=2, router=router, expert_hidden=(4,), max_epochs=1, lr=2e-3,
              router_lr_scale=5.0, random_state=0).fit(X, y)
    module, groups = est.net_.module_, est.net_.optimizer_.param_groups
    router_ids = {id(p) for p in module.router.parameters()}
    assert router_ids
    for group in groups:
        ids = {id(p) for p in group["params"]}
        assert ids <= router_ids or not ids & router_ids
        expected = 2e-3 * 5.0 if ids <= router_ids else 2e-3
        assert group["lr"] == pytest.approx(expected)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in module.parameters() if p.requires_grad}
    assert any(g["lr"] == pytest.approx(1e-2) for g in groups)
    # The default ('auto') on dense rows: the router at 10x the experts' rate; on sparse
    # rows, and with a scale of 1, one rate for everything.
    default = Est(n_experts=3, expert_hidden=(4,), max_epochs=1, lr=2e-3).fit(X, y)
    assert default.router_lr_scale_ == 10.0
    assert sorted(g["lr"] for g in default.net_.optimizer_.param_groups) == pytest.approx(
        [2e-3, 2e-2])
    on_sparse = Est(n_experts=3, expert_hidden=(4,), max_epochs=1, lr=2e-3).fit(
        sp.csr_matrix(X), y)
    assert on_sparse.router_lr_scale_ == 1.0
    mostly_zero = np.where(np.abs(X) > np.quantile(np.abs(X), 0.7), X, 0.0)  # 30 % non-zero
    assert Est(n_experts=3, expert_hidden=(4,), max_epochs=1).fit(
        mostly_zero, y).router_lr_scale_ == 1.0
    assert {g["lr"] for g in on_sparse.net_.optimizer_.param_groups} == {2e-3}
    plain = Est(n_experts=3, expert_hidden=(4,), max_epochs=1, lr=2e-3,
                router_lr_scale=1.0).fit(X, y)
    assert {g["lr"] for g in plain.net_.optimizer_.param_groups} == {2e-3}


# -- MoE blocks on a shared representation --------------------------------------------
@pytest.mark.parametrize("router,k", [("topk", 2), ("expert_choice", 2), ("switch", 1)])
def test_block_stack_trains_and_routes_k_experts_per_row_per_block(clf_data, router, k):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, top_k=2, router=router, encoder=(16,), n_layers=3,
                        expert_hidden=(16,), max_epochs=15, lr=1e-2, random_state=0).fit(X, y)
    net = clf.net_.module_
    assert isinstance(net, MoENetwork) and len(net.blocks) == 3
    assert clf.score(X, y) > 0.85
    assert clf.history_[-1, "train_loss"] < 0.5 * clf.history_[0, "train_loss"]
    for block in range(3):
        indices, gates = clf.route(X, block=block)
        assert indices.shape == gates.shape == (len(X), k)
        assert all(len(set(row)) == k for row in indices) and (gates > 0).all()
        if router == "topk":  # training dispatch (last epoch): k rows per row, every block
            assert int(net.blocks[block].moe.stat_counts.sum()) == k * len(X)
    # the reported routing is the first block's
    np.testing.assert_array_equal(
        clf.expert_load_, np.bincount(clf.route(X)[0].ravel(), minlength=4) / (k * len(X)))
    # each block's router has its own weights: the blocks route differently
    assert (clf.route(X, block=0)[0] != clf.route(X, block=2)[0]).any()


def test_no_encoder_and_one_layer_is_the_single_moe_layer(clf_data):
    X, y = clf_data
    params = dict(n_experts=3, max_epochs=2, expert_hidden=(8,), random_state=0)
    default = MoEClassifier(**params).fit(X, y)
    explicit = MoEClassifier(encoder=None, n_layers=1, **params).fit(X, y)
    assert type(default.net_.module_) is MoEModule
    np.testing.assert_array_equal(default.predict_proba(X), explicit.predict_proba(X))
    # blocks on the raw features: d = n_features, a residual per block, then a head
    raw = MoEClassifier(n_layers=2, **params).fit(X, y)
    assert raw.net_.module_.encoder is None
    assert raw.net_.module_.head.in_features == X.shape[1]


@pytest.mark.parametrize("params", [
    dict(router="switch", shared_expert=True, gating="elementwise"),
    dict(router="expert_choice", experts=["linear", (8,), lambda i, o: nn.Linear(i, o)]),
    dict(router="softmax", router_init="kmeans"),
])
def test_blocks_keep_the_moe_options_and_rows_stay_independent(clf_data, params):
    X, y = clf_data
    clf = MoEClassifier(n_experts=3, top_k=2, encoder=12, n_layers=2, expert_hidden=(8,),
                        max_epochs=6, lr=1e-2, random_state=0, **params).fit(X, y)
    assert clf.score(X, y) > 0.6
    proba = clf.predict_proba(X[:15])
    one_by_one = np.vstack([clf.predict_proba(X[i:i + 1]) for i in range(15)])
    np.testing.assert_allclose(proba, one_by_one, atol=1e-6)
    assert clf.output_gates(X[:5]).shape[:2] == clf.route(X[:5])[0].shape


def test_blocks_on_sparse_input_go_through_the_sparse_encoder(monkeypatch):
    X = sp.random(200, 400, density=0.03, format="csr", random_state=1)
    y = np.asarray(X[:, :200].sum(1)).ravel().argsort().argsort() * 2 // 200
    params = dict(n_experts=3, encoder=(8,), n_layers=2, expert_hidden=(8,), max_epochs=4,
                  lr=1e-2, router_lr_scale=1.0, batch_size=32, random_state=0)
    sparse = MoEClassifier(**params).fit(X, y)
    with monkeypatch.context() as m:
        _densified_batches(m)
        dense = MoEClassifier(**params).fit(X, y)
    np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X), atol=1e-5)
    for block in (0, 1):
        assert (sparse.route(X, block)[0] == dense.route(X, block)[0]).all()


@pytest.mark.parametrize("params,match", [
    (dict(encoder=(0,)), "encoder"),
    (dict(encoder=()), "encoder"),
    (dict(n_layers=2, init="upcycle"), "init"),
    (dict(encoder=8, grow_steps=1), "grow_steps"),
    (dict(encoder=8, n_layers=2, experts=["linear", nn.Linear(12, 3)]), r"experts\[1\]"),
])
def test_bad_block_parameters(clf_data, params, match):
    X, y = clf_data
    with pytest.raises(ValueError, match=match):
        MoEClassifier(max_epochs=1, **params).fit(X, y)


def test_bad_block_input(clf_data):
    X, y = clf_data
    with pytest.raises(InvalidParameterError, match="n_layers"):
        MoEClassifier(n_layers=0).fit(X, y)
    with pytest.raises(InvalidParameterError, match="encoder"):
        MoEClassifier(encoder="wide").fit(X, y)
    with pytest.raises(ValueError, match="encoder"):  # blocks on raw sparse features
        MoEClassifier(n_layers=2, max_epochs=1).fit(sp.csr_matrix(X), y)
    clf = MoEClassifier(encoder=8, n_layers=2, max_epochs=1, expert_hidden=(4,)).fit(X, y)
    with pytest.raises(ValueError, match="block"):
        clf.route(X, block=2)
    with pytest.raises(ValueError, match="grow"):
        clf.grow(X, y)


# -- bad input -------------------------------------------------------------------------
@pytest.mark.parametrize("params,match", [
    (dict(n_experts=0), "n_experts"),
    (dict(top_k=0), "top_k"),
    (dict(router="random"), "router"),
    (dict(capacity_factor=0.0), "capacity_factor"),
    (dict(precision="float8"), "precision"),
    (dict(router_lr_scale=0.0), "router_lr_scale"),
    (dict(router_lr_scale=-1.0), "router_lr_scale"),
    (dict(router_lr_scale="fast"), "router_lr_scale"),
])
def test_bad_parameters_name_the_parameter(clf_data, params, match):
    X, y = clf_data
    with pytest.raises(InvalidParameterError, match=match):
        MoEClassifier(**params).fit(X, y)


def test_bad_input(clf_data):
    X, y = clf_data
    with pytest.raises(ValueError, match=r"top_k.*n_experts"):
        MoEClassifier(n_experts=2, top_k=3).fit(X, y)
    X_nan = X.copy()
    X_nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        MoEClassifier(max_epochs=1).fit(X_nan, y)
    with pytest.raises(ValueError, match="one class"):
        MoEClassifier(max_epochs=1).fit(X, np.zeros(len(X)))
    clf = MoEClassifier(max_epochs=1, expert_hidden=(4,)).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :5])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU errors")
def test_cuda_without_gpu(clf_data):
    X, y = clf_data
    with pytest.raises(ValueError, match="cuda"):
        MoEClassifier(device="cuda", max_epochs=1).fit(X, y)
    with pytest.warns(UserWarning, match="auto"):
        clf = MoEClassifier(device="auto", max_epochs=1, expert_hidden=(4,)).fit(X, y)
    assert clf.net_.device == "cpu"


def test_unsupported_precision_is_an_error(clf_data, monkeypatch):
    import moensemble._validation as v

    X, y = clf_data

    class _NoAutocast:
        def __init__(self, *a, **k):
            raise RuntimeError("dtype not supported")

    monkeypatch.setattr(torch, "autocast", _NoAutocast)
    with pytest.raises(ValueError, match="precision"):
        v.check_precision("float16", "cpu")


def test_bfloat16_autocast_on_cpu_trains(clf_data):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, precision="bfloat16", max_epochs=5, lr=1e-2,
                        expert_hidden=(16,), random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.5
    assert clf.net_.module_.router.linear.weight.dtype == torch.float32


@pytest.mark.parametrize("precision,scaled", [("float16", True), ("bfloat16", False),
                                              ("float32", False)])
def test_float16_training_scales_the_loss(clf_data, precision, scaled, grad_scaler_scales):
    X, y = clf_data
    scales = grad_scaler_scales
    clf = MoEClassifier(n_experts=4, precision=precision, max_epochs=4, batch_size=100,
                        lr=1e-2, expert_hidden=(16,), random_state=0).fit(X, y)
    assert len(scales) == (4 * 4 if scaled else 0)  # one scaler step per training batch
    assert clf.score(X, y) > 0.5
    assert not hasattr(clf.net_, "_grad_scaler")  # nothing device-bound left on the net
    pickle.loads(pickle.dumps(clf))


def test_float16_overflow_skips_the_step_instead_of_poisoning_the_weights(grad_scaler_scales):
    # One row so large that the float16 experts overflow on every batch it is in.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 4)).astype(np.float32)
    X[0] = 1e6
    y = (X[:, 1] > 0).astype(int)
    scales = grad_scaler_scales

    class Initial(Callback):
        def on_train_begin(self, net, **kwargs):
            self.weights = net.module_.experts.weights[0].detach().clone()

    initial = Initial()
    clf = MoEClassifier(n_experts=2, top_k=2, max_epochs=3, batch_size=64, expert_hidden=(8,),
                        precision="float16", callbacks=[initial], random_state=0).fit(X, y)
    weights = clf.net_.module_.experts.weights[0].detach()
    assert torch.isfinite(weights).all()
    # Every step overflowed: each was skipped (the weights never moved) and the scale halved.
    torch.testing.assert_close(weights, initial.weights)
    assert scales == [2.0**15, 2.0**14, 2.0**13]


@CUDA
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "float16"])
def test_gpu_fit_then_cpu_predict(clf_data, precision, monkeypatch):
    X, y = clf_data
    clf = MoEClassifier(n_experts=4, device="cuda", precision=precision, max_epochs=5,
                        lr=1e-2, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.5
    assert clf.net_.module_.router.linear.weight.dtype == torch.float32
    gpu_proba = clf.predict_proba(X)
    blob = pickle.dumps(clf)
    # Unpickle as on a CPU-only machine: skorch maps the tensors to the CPU (with a
    # DeviceWarning) when torch reports no CUDA.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(Warning, match="cpu"):
        restored = pickle.loads(blob)
    assert restored.net_.device == "cpu"
    assert next(restored.net_.module_.parameters()).device.type == "cpu"
    np.testing.assert_allclose(restored.predict_proba(X), gpu_proba, atol=2e-2)


def test_moe_space_draws_encoder_and_n_layers():
    import optuna

    from moensemble.search import moe_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [moe_space(study.ask(), encoder=(None, 32), n_layers=(1, 3)) for _ in range(40)]
    assert {p["encoder"] for p in drawn} == {None, (32,)}
    assert {p["n_layers"] for p in drawn if p["encoder"] is None} == {1}
    assert {p["n_layers"] for p in drawn if p["encoder"]} == {1, 2, 3}
    X, y = make_classification(100, 6, random_state=0)
    MoEClassifier(**{**drawn[0], "max_epochs": 1}).fit(X, y)  # valid estimator params
    with pytest.raises(ValueError, match="encoder"):
        moe_space(study.ask(), encoder=(None, 0))


def test_moe_space_draws_mixture_router_lr_scale_and_linear_experts():
    import optuna

    from moensemble.search import moe_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [moe_space(study.ask(), encoder=(None, 16))
             for _ in range(60)]
    # The competitive mixture only without blocks (MoE blocks refuse it).
    assert {p["mixture"] for p in drawn if p["encoder"] is None} == {"logits", "likelihood"}
    assert {p["mixture"] for p in drawn if p["encoder"]} == {"logits"}
    scales = [p["router_lr_scale"] for p in drawn]
    assert 1.0 <= min(scales) < 3.0 < max(scales) <= 30.0
    assert {p["expert_hidden"] for p in drawn} >= {()}  # depth 0: linear experts
    assert all(len(set(p["expert_hidden"])) <= 1 for p in drawn)
    X, y = make_classification(100, 6, random_state=0)
    linear = next(p for p in drawn if p["expert_hidden"] == () and p["encoder"] is None)
    MoEClassifier(**{**linear, "max_epochs": 1}).fit(X, y)  # valid estimator params
    with pytest.raises(ValueError, match="mixture"):
        moe_space(study.ask(), mixture=("logits", "cooperative"))
    with pytest.raises(ValueError, match="router_lr_scale"):
        moe_space(study.ask(), router_lr_scale=(0.0, 10.0))


def test_moe_space_draws_numeric_embeddings_only_when_asked():
    import optuna

    from moensemble.search import moe_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    assert moe_space(trial)["num_embedding"] is None
    assert not any("num_embedding" in name for name in trial.params)  # nothing drawn
    drawn = {moe_space(study.ask(), num_embedding=(None, "periodic", "piecewise"))
             ["num_embedding"] for _ in range(30)}
    assert drawn == {None, "periodic", "piecewise"}
    with pytest.raises(ValueError, match="num_embedding"):
        moe_space(study.ask(), num_embedding=("fourier",))


def test_moe_space_draws_router_l1_only_where_it_acts():
    import optuna

    from moensemble.search import moe_space

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = [moe_space(study.ask(), encoder=(None, 16)) for _ in range(40)]
    # Default choices: 'auto' (0.8 on dense tables, 0 on sparse input) or off.
    assert {p["router_l1"] for p in drawn if p["encoder"] is None} == {"auto", 0.0}
    assert {p["router_l1"] for p in drawn if p["encoder"]} == {0.0}
    trial = study.ask()
    assert moe_space(trial, encoder=None, sparse=True)["router_l1"] == 0.0
    assert not any("router_l1" in name for name in trial.params)  # nothing drawn
    other = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    numbers = {moe_space(other.ask(), encoder=None, router_l1=(0.3, 0.8))["router_l1"]
               for _ in range(20)}
    assert numbers == {0.3, 0.8}
    X, y = make_classification(100, 12, random_state=0)
    auto = next(p for p in drawn if p["router_l1"] == "auto")
    clf = MoEClassifier(**{**auto, "max_epochs": 1}).fit(X, y)
    assert clf.router_l1_ == 0.8
    with pytest.raises(ValueError, match="router_l1"):
        moe_space(study.ask(), router_l1=("strong",))
