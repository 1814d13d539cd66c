"""Sparse first-layer gradients and optimizer='lazy_adam' (CatchUpAdam) on CSR input."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.sparse import (
    LAZY_ADAM_MIN_COLUMNS,
    CatchUpAdam,
    SparseInputLinear,
    csr_batch,
    resolve_optimizer,
    sparse_linear,
    sparse_stacked_linear,
)
from moensemble.persist import load, save

FAST = dict(n_experts=3, top_k=2, expert_hidden=(16,), max_epochs=10, lr=1e-2, batch_size=32,
            random_state=0)


# the estimator checks fit sparse X too (check_estimator_sparse_*): the lazy path
@parametrize_with_checks([MoEClassifier(**FAST, optimizer="lazy_adam")],
                         expected_failed_checks=lambda est: {})
def test_sklearn_compatible(estimator, check):
    check(estimator)


def _csr(n=20, d=50, density=0.1, seed=0):
    X = sp.random(n, d, density=density, format="csr", random_state=seed, dtype=np.float32)
    return X, csr_batch(X), torch.from_numpy(X.toarray())


def _marked(*shape):
    w = torch.randn(*shape, requires_grad=True)
    w.sparse_grad = True
    return w


def test_marked_weights_get_sparse_gradients_equal_to_the_dense_ones():
    X, x, xd = _csr()
    g = torch.randn(20, 7)
    torch.manual_seed(0)
    # nn.Linear layout (out, in)
    w = _marked(7, 50)
    (sparse_linear(x, w) * g).sum().backward()
    ref = w.detach().clone().requires_grad_()
    ((xd @ ref.t()) * g).sum().backward()
    assert w.grad.is_sparse
    np.testing.assert_allclose(w.grad.to_dense(), ref.grad, atol=1e-5)
    # table layout (in, out): the gradient holds one row per column present in the batch
    layer = SparseInputLinear(50, 7)
    layer.weight.sparse_grad = True
    (layer(x) * g).sum().backward()
    dense_layer = SparseInputLinear(50, 7)
    dense_layer.load_state_dict(layer.state_dict())
    (dense_layer(xd) * g).sum().backward()
    assert layer.weight.grad.is_sparse
    assert layer.weight.grad.coalesce().indices().shape[1] == (X.getnnz(0) > 0).sum()
    np.testing.assert_allclose(layer.weight.grad.to_dense(), dense_layer.weight.grad, atol=1e-5)
    np.testing.assert_allclose(layer.bias.grad, dense_layer.bias.grad, atol=1e-5)
    # stacked experts (n_experts, in, out): row r through its own expert
    s = _marked(3, 50, 5)
    ids = torch.randint(0, 3, (20,))
    g5 = torch.randn(20, 5)
    (sparse_stacked_linear(x, ids, s) * g5).sum().backward()
    ref = s.detach().clone().requires_grad_()
    (torch.einsum("bi,bio->bo", xd, ref[ids]) * g5).sum().backward()
    assert s.grad.is_sparse
    np.testing.assert_allclose(s.grad.to_dense(), ref.grad, atol=1e-5)


def test_unmarked_weights_keep_dense_gradients():
    _, x, _ = _csr()
    w = torch.randn(7, 50, requires_grad=True)
    sparse_linear(x, w).sum().backward()
    assert not w.grad.is_sparse


def _text_task(n=240, d=300, seed=0, scale=1.0):
    X = sp.random(n, d, density=0.03, format="csr", random_state=seed) * scale
    y = np.asarray(X[:, : d // 3].sum(1)).ravel().argsort().argsort() * 3 // n
    return sp.csr_matrix(X), y


@pytest.mark.parametrize("params,lazy", [
    (dict(), ["experts.weights.0"]),
    (dict(encoder=(8,), n_layers=2), ["encoder.layers.0.weight"]),
    (dict(router="switch", shared_expert=True, gating="elementwise"),
     ["output_gate.linear.weight", "experts.weights.0", "shared_expert.layers.0.weight",
      "fallback.weight"]),
])
def test_lazy_adam_steps_exactly_the_first_layers_with_catch_up_adam(params, lazy):
    X, y = _text_task()
    clf = MoEClassifier(n_experts=3, top_k=1, expert_hidden=(8,), max_epochs=2,
                        optimizer="lazy_adam", random_state=0, **params).fit(X, y)
    opt = clf.net_.sparse_optimizer_
    assert isinstance(opt, CatchUpAdam)
    names = {id(p): n for n, p in clf.net_.module_.named_parameters()}
    stepped = [names[id(p)] for group in opt.param_groups for p in group["params"]]
    assert sorted(stepped) == sorted(lazy)
    main = {id(p) for group in clf.net_.optimizer_.param_groups for p in group["params"]}
    assert not main & {id(p) for group in opt.param_groups for p in group["params"]}
    assert len(main) + len(stepped) == len(names)  # every parameter is stepped once
    # routers keep dense gradients and the configured optimizer
    assert all("router" not in n for n in stepped)


def test_lazy_adam_on_dense_input_is_plain_adam():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 6)), rng.integers(0, 2, 200)
    common = dict(n_experts=3, max_epochs=3, random_state=0)
    lazy = MoEClassifier(optimizer="lazy_adam", **common).fit(X, y)
    adam = MoEClassifier(optimizer="adam", **common).fit(X, y)
    assert lazy.net_._optimizers == ["optimizer"]
    np.testing.assert_array_equal(lazy.predict_proba(X), adam.predict_proba(X))


def _densified_batches(monkeypatch):
    import moensemble.moe._base as base
    from moensemble.moe.net import RowDataset

    monkeypatch.setattr(base, "RowDataset", partial(RowDataset, densify=True))


@pytest.mark.parametrize("params", [dict(), dict(encoder=(8,), n_layers=2)])
def test_lazy_adam_trains_as_dense_adam_when_every_step_sees_the_same_columns(
    monkeypatch, params
):
    # One batch of all rows: every step touches the same first-layer rows (and experts,
    # here one), so lazy Adam's skipped rows are those whose gradient is always zero, which
    # Adam leaves in place too. What remains is SparseAdam's eps placement (eps added to
    # sqrt(v) before the bias correction): negligible once gradients are well above 1e-7.
    X, y = _text_task(scale=10.0)
    common = dict(n_experts=1, top_k=1, expert_hidden=(8,), max_epochs=5, lr=1e-2,
                  batch_size=X.shape[0], mixture="logits", random_state=0, **params)
    lazy = MoEClassifier(optimizer="lazy_adam", **common).fit(X, y)
    assert "sparse_optimizer" in lazy.net_._optimizers
    with monkeypatch.context() as m:
        _densified_batches(m)
        dense = MoEClassifier(optimizer="adam", **common).fit(X, y)
    assert dense.net_._optimizers == ["optimizer"]
    np.testing.assert_allclose(lazy.history_[:, "train_loss"], dense.history_[:, "train_loss"],
                               rtol=1e-4)
    np.testing.assert_allclose(lazy.predict_proba(X), dense.predict_proba(X), atol=1e-3)
    assert lazy.history_[-1, "train_loss"] < lazy.history_[0, "train_loss"]


def _columns_come_and_go(optimizer_of, n_steps=150):
    """A first layer trained on batches that each hold a few of 30 columns, with a loss
    whose gradient does not depend on the weights (so the paths differ only by the
    optimizer); returns the weights after ``n_steps`` steps."""
    torch.manual_seed(0)
    layer = SparseInputLinear(30, 5)
    opt = optimizer_of(layer)
    target = torch.randn(4, 5)
    for i in range(n_steps):
        x = csr_batch(sp.random(4, 30, density=0.1, format="csr", random_state=i,
                                dtype=np.float32))
        opt.zero_grad()
        (layer(x) * target).sum().backward()
        opt.step()
    if isinstance(opt, CatchUpAdam):
        opt.catch_up()
    return layer.weight.detach()


def _sparse(layer):
    layer.weight.sparse_grad = True
    return layer


def test_catch_up_adam_moves_rows_as_dense_adam_where_sparse_adam_freezes_them():
    adam = _columns_come_and_go(lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))
    catch_up = _columns_come_and_go(lambda m: CatchUpAdam([_sparse(m).weight], lr=1e-2))
    frozen = _columns_come_and_go(lambda m: torch.optim.SparseAdam([_sparse(m).weight],
                                                                    lr=1e-2))
    # SparseAdam drops the momentum steps of skipped rows: far from Adam.
    assert (frozen - adam).abs().max() > 0.1
    # CatchUpAdam applies them (one bias correction per catch-up): close to Adam.
    assert (catch_up - adam).abs().max() < 0.01


def test_catch_up_adam_touches_only_the_rows_of_the_batch_until_catch_up():
    layer = _sparse(SparseInputLinear(4, 3))
    opt = CatchUpAdam([layer.weight], lr=0.1)
    first = csr_batch(sp.csr_matrix(np.array([[1.0, 1.0, 0, 0]], dtype=np.float32)))
    second = csr_batch(sp.csr_matrix(np.array([[0, 0, 1.0, 0]], dtype=np.float32)))
    for batch in (first, second):
        opt.zero_grad()
        layer(batch).sum().backward()
        before = layer.weight.detach().clone()
        opt.step()
    assert (layer.weight.detach() != before).any(1).tolist() == [False, False, True, False]
    before = layer.weight.detach().clone()
    opt.catch_up()  # rows 0 and 1 take the momentum step they skipped; 3 was never seen
    assert (layer.weight.detach() != before).any(1).tolist() == [True, True, False, False]


def test_catch_up_adam_refuses_dense_gradients():
    layer = SparseInputLinear(4, 3)
    opt = CatchUpAdam([layer.weight])
    layer(torch.ones(2, 4)).sum().backward()
    with pytest.raises(ValueError, match="sparse COO gradients"):
        opt.step()


def test_lazy_adam_with_gradient_norm_clipping_clips_the_sparse_gradients():
    from skorch.callbacks import Callback, GradientNormClipping

    class TotalNorm(Callback):
        def on_grad_computed(self, net, named_parameters, **kwargs):
            grads = [p.grad for _, p in named_parameters if p.grad is not None]
            net.history.record_batch("grad_norm", float(torch.nn.utils.get_total_norm(grads)))

    X, y = _text_task()
    common = dict(optimizer="lazy_adam", max_epochs=2, random_state=0, expert_hidden=(8,))
    free = MoEClassifier(callbacks=[TotalNorm()], **common).fit(X, y)
    clipped = MoEClassifier(callbacks=[GradientNormClipping(1e-3), TotalNorm()],
                            **common).fit(X, y)
    assert "sparse_optimizer" in clipped.net_._optimizers
    free_norms = [b["grad_norm"] for epoch in free.history_ for b in epoch["batches"]]
    clipped_norms = [b["grad_norm"] for epoch in clipped.history_ for b in epoch["batches"]]
    assert min(free_norms) > 1e-2  # so the clipping bites
    np.testing.assert_allclose(clipped_norms, 1e-3, rtol=1e-3)
    assert not np.allclose(free.predict_proba(X), clipped.predict_proba(X))


def test_lazy_adam_refuses_weight_decay_on_sparse_input():
    X, y = _text_task()
    with pytest.raises(ValueError, match="weight_decay"):
        MoEClassifier(optimizer="lazy_adam", weight_decay=1e-3, max_epochs=1).fit(X, y)


def test_lazy_adam_model_round_trips_and_grows(tmp_path):
    X, y = _text_task()
    est = MoERegressor(n_experts=3, expert_hidden=(8,), max_epochs=2, optimizer="lazy_adam",
                       random_state=0).fit(X, y.astype(float))
    back = load(save(est, tmp_path / "m.moe"))
    np.testing.assert_allclose(back.predict(X), est.predict(X), atol=1e-6)
    est.grow(X, y.astype(float), n_new=1, max_epochs=1)  # a fresh pair of optimizers
    assert est.n_experts_ == 4 and "sparse_optimizer" in est.net_._optimizers


@pytest.mark.parametrize("sparse_input", [False, True])
def test_one_batch_predict_is_skorchs_predict(sparse_input):
    # predict_proba of at most batch_size rows skips skorch's DataLoader: same numbers.
    from moensemble.moe.net import RowDataset

    X, y = _text_task()
    X = X if sparse_input else X.toarray()
    clf = MoEClassifier(**FAST).fit(X, y)
    skorch = clf.net_.predict_proba(RowDataset(X[:20].astype(np.float32)))
    one_batch = clf._forward(X[:20])
    np.testing.assert_allclose(one_batch, skorch, rtol=1e-6, atol=1e-7)
    rows = np.vstack([clf.predict_proba(X[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(rows, clf.predict_proba(X[:5]), rtol=1e-5, atol=1e-6)


# ---- optimizer='auto' (the default) -----------------------------------------------------------


def test_auto_is_lazy_adam_from_the_column_threshold_on_sparse_input_only():
    narrow = sp.csr_matrix((4, LAZY_ADAM_MIN_COLUMNS - 1), dtype=np.float32)
    wide = sp.csr_matrix((4, LAZY_ADAM_MIN_COLUMNS), dtype=np.float32)
    assert resolve_optimizer("auto", 0.0, narrow) == "adam"
    assert resolve_optimizer("auto", 0.0, wide) == "lazy_adam"
    assert resolve_optimizer("auto", 1e-4, wide) == "adam"  # the lazy step cannot decay
    assert resolve_optimizer("auto", 0.0, np.zeros((4, LAZY_ADAM_MIN_COLUMNS))) == "adam"
    assert resolve_optimizer("sgd", 0.0, wide) == "sgd"  # an explicit choice stays


def _wide_text_task(n=120, seed=0):
    """A CSR task of LAZY_ADAM_MIN_COLUMNS columns whose label depends on a few of them."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, LAZY_ADAM_MIN_COLUMNS, density=2e-3, format="csr", random_state=seed,
                  dtype=np.float32)
    y = rng.integers(0, 3, n)
    X = sp.csr_matrix(X + sp.csr_matrix((np.ones(n, np.float32), (np.arange(n), y)),
                                        shape=X.shape))
    return X, y


@pytest.mark.parametrize("kind,expected", [("dense", "adam"), ("narrow_csr", "adam"),
                                           ("wide_csr", "lazy_adam")])
def test_default_optimizer_is_auto_and_resolves_by_input(kind, expected):
    if kind == "wide_csr":
        X, y = _wide_text_task()
    else:
        X, y = _text_task(n=120)
        X = X.toarray() if kind == "dense" else X
    clf = MoEClassifier(n_experts=3, expert_hidden=(8,), max_epochs=3, random_state=0)
    assert clf.optimizer == "auto"
    clf.fit(X, y)
    assert clf.optimizer_ == expected and clf.optimizer == "auto"
    # the lazy path: CatchUpAdam steps the first layer beside the main optimizer
    assert ("sparse_optimizer" in clf.net_._optimizers) == (expected == "lazy_adam")
    if kind == "wide_csr":
        assert clf.score(X, y) > 0.9  # it learns (the label is one column of three)


def test_auto_with_weight_decay_on_wide_sparse_input_is_adam_not_an_error():
    X, y = _wide_text_task()
    clf = MoEClassifier(n_experts=3, expert_hidden=(8,), max_epochs=1, weight_decay=1e-4,
                        random_state=0).fit(X, y)
    assert clf.optimizer_ == "adam" and clf.net_._optimizers == ["optimizer"]


def test_a_bad_optimizer_names_the_parameter_and_the_valid_values():
    X, y = _text_task(n=60)
    with pytest.raises(ValueError, match=r"'optimizer' parameter .*'auto'"):
        MoEClassifier(optimizer="lazy").fit(X, y)


def test_a_model_fitted_with_auto_on_wide_text_round_trips(tmp_path):
    X, y = _wide_text_task()
    est = MoEClassifier(n_experts=3, expert_hidden=(8,), max_epochs=2,
                        random_state=0).fit(X, y)
    assert est.optimizer_ == "lazy_adam"
    back = load(save(est, tmp_path / "auto.moe"))
    assert back.optimizer == "auto" and back.optimizer_ == "lazy_adam"
    np.testing.assert_array_equal(back.predict_proba(X), est.predict_proba(X))
    np.testing.assert_array_equal(back.predict(X), est.predict(X))
