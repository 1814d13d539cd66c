"""Experts per modality: MoE experts restricted to column blocks of an encoded table."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble import TableEncoder
from moensemble.datasets import make_modality_table
from moensemble.features import blocks_by_kind
from moensemble.moe import MoEClassifier, MoERegressor
from moensemble.moe.experts import MLPExpert
from moensemble.moe.modality import BlockExpert
from moensemble.moe.sparse import csr_batch, is_sparse

FAST = dict(n_experts=3, top_k=2, expert_hidden=(16,), max_epochs=10, lr=1e-2, batch_size=32,
            random_state=0)
# Two blocks for any X the check suite makes: column 0, and the rest (open-ended).
CHECK_BLOCKS = {"first": [0], "rest": slice(1, None)}
# The suite's checks on a single column (X of shape (n, 1)) leave the "rest" block empty;
# that is refused with a ValueError naming `expert_blocks`, as it should be.
ONE_COLUMN = "X with one column leaves the 'rest' block empty: a clear ValueError by design"


def _expected_failures(estimator):
    return {"check_fit2d_1feature": ONE_COLUMN}


# One instance (the suite is the slow part of this file); the regressor's path with blocks
# differs only in the output head and is fitted below.
@parametrize_with_checks(
    [MoEClassifier(**FAST, expert_blocks=CHECK_BLOCKS)],
    expected_failed_checks=_expected_failures,
)
def test_sklearn_compatible_with_expert_blocks(estimator, check):
    check(estimator)


def test_regressor_with_blocks_learns_from_its_block():
    X = np.random.default_rng(0).normal(size=(300, 5))
    y = 2 * X[:, 0] + X[:, 1] * X[:, 2]
    reg = MoERegressor(**dict(FAST, max_epochs=40), expert_blocks={"a": [0], "b": [1, 2, 3, 4]},
                       experts_per_block=1).fit(X[:200], y[:200])
    assert reg.expert_block_of_ == ["a", "b", None]
    assert reg.score(X[200:], y[200:]) > 0.6
    assert list(reg.modality_load(X[200:]).index) == ["all"]


# -- the modality table --------------------------------------------------------------------
MOE = dict(n_experts=4, top_k=2, expert_hidden=(32,), max_epochs=20, lr=3e-3, batch_size=64,
           random_state=0)


@pytest.fixture(scope="module")
def table():
    X, y = make_modality_table(1200, random_state=0)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.4, random_state=0, stratify=y)
    # 100 terms: with 500 the text experts memorise the sensor rows' notes (docs/guide/tables.md)
    encoder = TableEncoder(text_max_features=100, sparse_output=False).fit(X_tr)
    blocks = blocks_by_kind(encoder)
    return dict(
        train=(encoder.transform(X_tr), y_tr), test=(encoder.transform(X_te), y_te),
        groups=X_te["source"].to_numpy(), encoder=encoder,
        blocks={"text": blocks["text"], "numeric": blocks["numeric"]},
    )


@pytest.fixture(scope="module")
def fitted(table):
    E, y = table["train"]
    plain = MoEClassifier(**MOE).fit(E, y)
    modality = MoEClassifier(**MOE, expert_blocks=table["blocks"]).fit(E, y)
    return plain, modality


def test_modality_experts_beat_the_plain_moe_on_held_out_rows(table, fitted):
    plain, modality = fitted
    E, y = table["test"]
    assert modality.score(E, y) > plain.score(E, y) + 0.02


def test_text_rows_go_to_text_experts_and_number_rows_to_numeric_experts(table, fitted):
    _, modality = fitted
    E, _ = table["test"]
    report = modality.modality_load(E, table["groups"])
    assert report.loc["review", "text"] > 0.7
    assert report.loc["sensor", "numeric"] > 0.7
    np.testing.assert_allclose(report[["text", "numeric"]].sum(axis=1), 1.0)
    assert report["n_rows"].sum() == E.shape[0]
    # The training rows' load per block is the expert load summed over each block's experts.
    assert modality.expert_block_of_ == ["text", "numeric", "text", "numeric"]
    load = modality.expert_load_
    assert modality.block_load_["text"] == pytest.approx(load[0] + load[2])


def test_each_expert_reads_only_its_block(table, fitted):
    _, modality = fitted
    experts = modality.net_.module_.experts
    widths = {"text": table["encoder"].blocks_["text"].size, "numeric": 4}
    for expert in experts:
        assert isinstance(expert, BlockExpert)
        assert expert.expert.layers[0].in_features == widths[expert.block]
    # Changing the numeric columns cannot move a text expert's output.
    E, _ = table["test"]
    x = torch.as_tensor(E[:50], dtype=torch.float32)
    x2 = x.clone()
    x2[:, modality.expert_blocks_["numeric"]] += 3.0
    text_expert = experts[0]
    torch.testing.assert_close(text_expert(x), text_expert(x2))


# -- sparse input -------------------------------------------------------------------------
def test_block_expert_keeps_csr_batches_sparse_and_matches_dense():
    dense = sp.random(20, 30, density=0.2, random_state=0, format="csr", dtype=np.float32)
    columns = np.array([1, 4, 5, 17, 29])
    seen = []

    class Spy(MLPExpert):
        def forward(self, x):
            seen.append(is_sparse(x))
            return super().forward(x)

    torch.manual_seed(0)
    expert = BlockExpert(Spy(len(columns), (8,), 3), columns, 30, "text")
    out_sparse = expert(csr_batch(dense))
    out_dense = expert(torch.as_tensor(dense.toarray()))
    assert seen == [True, False]  # the CSR batch reached the inner expert as CSR
    torch.testing.assert_close(out_sparse, out_dense, rtol=1e-5, atol=1e-6)


def test_fit_on_csr_matches_fit_on_dense(table):
    E, y = table["train"]
    params = dict(MOE, max_epochs=2, expert_blocks=table["blocks"])
    sparse_fit = MoEClassifier(**params).fit(sp.csr_matrix(E[:300]), y[:300])
    dense_fit = MoEClassifier(**params).fit(E[:300], y[:300])
    E_te, _ = table["test"]
    np.testing.assert_allclose(
        sparse_fit.predict_proba(sp.csr_matrix(E_te[:100])), dense_fit.predict_proba(E_te[:100]),
        atol=1e-4,
    )


# -- assignment of experts to blocks -------------------------------------------------------
def test_experts_per_block_counts_and_generalists(table):
    E, y = table["train"]
    clf = MoEClassifier(**dict(MOE, n_experts=5, max_epochs=1), expert_blocks=table["blocks"],
                        experts_per_block={"text": 1, "numeric": 2}).fit(E[:200], y[:200])
    assert clf.expert_block_of_ == ["text", "numeric", "numeric", None, None]
    generalist = clf.net_.module_.experts[3]
    assert not isinstance(generalist, BlockExpert)
    assert generalist.layers[0].in_features == E.shape[1]
    report = clf.modality_load(table["test"][0])
    assert list(report.columns) == ["text", "numeric", "generalist", "n_rows"]
    np.testing.assert_allclose(report.iloc[0, :3].sum(), 1.0)


def test_heterogeneous_expert_specs_are_built_at_their_block_width(table):
    E, y = table["train"]
    clf = MoEClassifier(**dict(MOE, max_epochs=1), experts=["linear", (8,), "linear"],
                        expert_blocks=table["blocks"]).fit(E[:200], y[:200])
    inner = [e.expert for e in clf.net_.module_.experts]
    assert [len(m.layers) for m in inner] == [1, 2, 1]
    assert [m.layers[0].in_features for m in inner] == [100, 4, 100]


def test_grown_experts_keep_their_parents_block(table):
    E, y = table["train"]
    clf = MoEClassifier(**dict(MOE, max_epochs=2), expert_blocks=table["blocks"])
    clf.fit(E[:300], y[:300]).grow(E[:300], y[:300], n_new=1, max_epochs=1)
    assert len(clf.expert_block_of_) == clf.n_experts_ == 5
    new = clf.net_.module_.experts[4]
    assert isinstance(new, BlockExpert) and clf.expert_block_of_[4] == new.block
    np.testing.assert_array_equal(new.columns.numpy(), clf.expert_blocks_[new.block])
    assert sum(clf.block_load_.values()) == pytest.approx(1.0)


# -- pipelines and the helper -------------------------------------------------------------
def test_blocks_by_kind_slices_and_merge():
    X, y = make_modality_table(300, random_state=1)
    encoder = TableEncoder(text_max_features=200).fit(X)
    blocks = blocks_by_kind(encoder)
    assert list(blocks) == ["categorical", "text", "numeric"]  # in output order
    assert blocks["categorical"] == slice(0, 2)
    assert blocks["numeric"] == slice(blocks["text"].stop, None)  # the last one: open-ended
    merged = blocks_by_kind(encoder, merge={"categorical": "numeric"})
    np.testing.assert_array_equal(merged["numeric"], [0, 1, *encoder.blocks_["numeric"]])
    with pytest.raises(TypeError, match="fitted moensemble.TableEncoder"):
        blocks_by_kind(TableEncoder())
    with pytest.raises(ValueError, match="`merge` keys must be kinds"):
        blocks_by_kind(encoder, merge={"words": "text"})


def test_pipeline_on_the_raw_frame(table):
    X, y = make_modality_table(400, random_state=2)
    encoder = TableEncoder(text_max_features=200).fit(X)
    blocks = blocks_by_kind(encoder)
    model = make_pipeline(
        clone(encoder), MoEClassifier(**dict(MOE, max_epochs=2), expert_blocks=blocks)
    ).fit(X, y)
    moe = model[-1]
    np.testing.assert_array_equal(moe.expert_blocks_["text"], encoder.blocks_["text"])
    assert set(model.predict(X.iloc[:5])) <= {"yes", "no"}
    assert clone(model)[-1].get_params()["expert_blocks"] == blocks


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, error, match",
    [
        (dict(expert_blocks={"a": [0, 9]}), ValueError, r"`expert_blocks\['a'\]` holds column 9"),
        (dict(expert_blocks={"a": [0, 1], "b": [1, 2]}), ValueError, r"share columns \[1\]"),
        (dict(expert_blocks={"a": slice(5, 5)}), ValueError, r"`expert_blocks\['a'\]` selects no"),
        (dict(expert_blocks={"a": []}), ValueError, r"`expert_blocks\['a'\]` selects no"),
        (dict(expert_blocks={}), ValueError, "non-empty dict"),
        (dict(expert_blocks={"a": "x0"}), TypeError, r"`expert_blocks\['a'\]` must be a slice"),
        (dict(expert_blocks={"a": [0.5]}), TypeError, "must hold int column indices"),
        (dict(expert_blocks={"a": [0], "b": [1]}, experts_per_block={"a": 3, "b": 1}),
         ValueError, r"`experts_per_block` asks for 4 experts in all"),
        (dict(expert_blocks={"a": [0], "b": [1]}, experts_per_block=2), ValueError,
         "asks for 4 experts"),
        (dict(expert_blocks={"a": [0]}, experts_per_block={"c": 1}), ValueError,
         r"names blocks \['c'\]"),
        (dict(expert_blocks={"a": [0], "b": [1], "c": [2], "d": [3]}), ValueError,
         "`n_experts`=3 is less than the 4 blocks"),
        (dict(experts_per_block=2), ValueError, "`experts_per_block` needs `expert_blocks`"),
        (dict(expert_blocks={"a": [0]}, encoder=(8,)), ValueError, "needs `encoder`=None"),
        (dict(expert_blocks={"a": [0]}, init="upcycle"), ValueError, "needs `init`='random'"),
    ],
)
def test_bad_blocks_are_clear_errors(params, error, match):
    X = np.random.default_rng(0).normal(size=(40, 6))
    y = np.arange(40) % 2
    with pytest.raises(error, match=match):
        MoEClassifier(**dict(FAST, max_epochs=1), **params).fit(X, y)


def test_modality_load_needs_expert_blocks_and_one_group_per_row(fitted, table):
    plain, modality = fitted
    E, _ = table["test"]
    with pytest.raises(ValueError, match="expert_blocks=None"):
        plain.modality_load(E)
    with pytest.raises(ValueError, match="`groups` must have one entry per row"):
        modality.modality_load(E, table["groups"][:3])


# -- persistence ----------------------------------------------------------------------------
def test_save_load_round_trip_with_expert_blocks(tmp_path, fitted, table):
    pytest.importorskip("skops")
    from moensemble import load, save

    _, modality = fitted
    loaded = load(save(modality, tmp_path / "modality.moe"))
    E, _ = table["test"]
    np.testing.assert_array_equal(loaded.predict_proba(E), modality.predict_proba(E))
    assert loaded.expert_block_of_ == modality.expert_block_of_
    assert loaded.modality_load(E, table["groups"]).equals(
        modality.modality_load(E, table["groups"])
    )


# -- the data set -------------------------------------------------------------------------
def test_make_modality_table_labels_follow_the_documented_rules():
    X, y = make_modality_table(2000, noise=0.0, text_share=0.3, random_state=0)
    sensor = (X["source"] == "sensor").to_numpy()
    rule = X["x0"] - X["x1"] + 0.5 * X["x2"] * X["x3"] > 0
    np.testing.assert_array_equal((y == "yes").to_numpy()[sensor], rule.to_numpy()[sensor])
    assert abs((~sensor).mean() - 0.3) < 0.04
    # On review rows the numbers say nothing about the label.
    review = ~sensor
    assert abs(np.mean(rule[review].to_numpy() == (y[review] == "yes").to_numpy()) - 0.5) < 0.06
    with pytest.raises(ValueError, match="`text_share`"):
        make_modality_table(10, text_share=1.0)
    with pytest.raises(ValueError, match="`noise`"):
        make_modality_table(10, noise=0.5)


def test_expert_blocks_refuse_numeric_embeddings():
    # the embedding widens every column, so a block's raw indices would point elsewhere
    X = np.random.default_rng(0).normal(size=(40, 4))
    y = np.arange(40) % 2
    model = MoEClassifier(n_experts=2, expert_blocks={"a": [0, 1], "b": [2, 3]},
                          num_embedding="piecewise", max_epochs=1)
    with pytest.raises(ValueError, match="num_embedding"):
        model.fit(X, y)
