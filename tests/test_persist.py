"""Safe persistence: round trips, pickle still works, and tampered files are refused."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, is_classifier
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, Ridge, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

pytest.importorskip("skops")
pytest.importorskip("safetensors")

from moensemble import load, save  # noqa: E402
from moensemble.ensemble import (  # noqa: E402
    StackingEnsembleClassifier,
    StackingEnsembleRegressor,
    WeightedEnsembleClassifier,
    WeightedEnsembleRegressor,
)
from moensemble.gated import GatedEnsembleClassifier, GatedEnsembleRegressor  # noqa: E402
from moensemble.moe import MoEClassifier, MoERegressor  # noqa: E402
from moensemble.persist import FORMAT_VERSION, MANIFEST, UntrustedTypesError  # noqa: E402


class SideEffect:
    """An unknown type whose loading runs code: it creates the folder named in its state."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict) -> None:
        os.mkdir(state["marker"])
        self.__dict__.update(state)


class PicklePayload:
    """A classic pickle exploit: unpickling it calls ``os.mkdir(marker)``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.fixture(scope="module")
def classification():
    return make_classification(n_samples=150, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)


@pytest.fixture(scope="module")
def moe(classification):
    X, y = classification
    return MoEClassifier(n_experts=4, top_k=2, max_epochs=3, random_state=0).fit(X, y)


@pytest.fixture
def saved(tmp_path, moe):
    return save(moe, tmp_path / "model.moe")


class MyClassifier(ClassifierMixin, BaseEstimator):
    """A user's own estimator: not on moensemble's trusted list."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        return np.full((len(X), len(self.classes_)), 1 / len(self.classes_))

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _read_member(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(name)


def _replace_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for n, content in members.items():
            archive.writestr(n, content)


# ---- round trips -----------------------------------------------------------------------------


def test_moe_classifier_round_trip_predicts_identically(saved, moe, classification):
    X, _ = classification
    loaded = load(saved)
    assert type(loaded) is MoEClassifier
    np.testing.assert_array_equal(loaded.predict_proba(X), moe.predict_proba(X))
    np.testing.assert_array_equal(loaded.route(X)[0], moe.route(X)[0])
    assert loaded.get_params() == moe.get_params()
    assert len(loaded.history_) == len(moe.history_) == 3
    # The file holds no pickle: a zip of JSON, skops and safetensors members only.
    names = zipfile.ZipFile(saved).namelist()
    assert names[0] == "moensemble.json"
    assert sorted(Path(n).suffix for n in names) == [".json", ".json", ".safetensors", ".skops"]


def test_moe_regressor_round_trip(tmp_path):
    X, y = make_regression(n_samples=120, n_features=5, n_targets=2, random_state=0)
    reg = MoERegressor(n_experts=3, router="switch", shared_expert=True, balance="bias",
                       max_epochs=2, random_state=0).fit(X, y)
    loaded = load(save(reg, tmp_path / "reg.moe"))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    assert loaded.predict(X).shape == (120, 2)


def test_moe_blocks_round_trip(tmp_path, classification):
    X, y = classification
    clf = MoEClassifier(n_experts=3, encoder=(8,), n_layers=2, gating="elementwise",
                        max_epochs=2, random_state=0).fit(X, y)
    loaded = load(save(clf, tmp_path / "blocks.moe"))
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    for block in (0, 1):
        np.testing.assert_array_equal(loaded.route(X, block)[0], clf.route(X, block)[0])


def test_moe_fitted_on_sparse_input_round_trip(tmp_path):
    import scipy.sparse as sp

    X = sp.random(120, 3000, density=0.01, format="csr", random_state=0)
    y = np.arange(120) % 3
    for params in (dict(), dict(encoder=16, n_layers=2)):
        clf = MoEClassifier(n_experts=3, max_epochs=2, random_state=0, **params).fit(X, y)
        loaded = load(save(clf, tmp_path / "sparse.moe"))
        np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
        np.testing.assert_array_equal(loaded.route(X)[0], clf.route(X)[0])


@pytest.mark.parametrize("est", [
    MoEClassifier(n_experts=3, mixture="likelihood", max_epochs=2, random_state=0),
    MoERegressor(n_experts=3, mixture="likelihood", max_epochs=2, random_state=0),
])
def test_likelihood_mixture_round_trips(tmp_path, est, classification):
    X, y = classification if is_classifier(est) else make_regression(
        n_samples=120, n_features=5, random_state=0)
    est = est.fit(X, y)
    loaded = load(save(est, tmp_path / "mix.moe"))
    assert loaded.mixture == "likelihood"
    out = "predict_proba" if is_classifier(est) else "predict"
    np.testing.assert_array_equal(getattr(loaded, out)(X), getattr(est, out)(X))
    if not is_classifier(est):  # the learned scale of the Gaussians is part of the weights
        assert torch.equal(loaded.net_.module_.log_scale, est.net_.module_.log_scale)


def test_ensembles_round_trip_with_a_moe_inside(tmp_path, classification):
    X, y = classification
    bases = [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(random_state=0)),
             ("moe", MoEClassifier(n_experts=3, max_epochs=2, random_state=0))]
    weighted = WeightedEnsembleClassifier(bases[:2], cv=3).fit(X, y)
    stacked = StackingEnsembleClassifier(bases, cv=3, refit=False).fit(X, y)
    for name, model in [("weighted", weighted), ("stacked", stacked)]:
        loaded = load(save(model, tmp_path / f"{name}.moe"))
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    # pandas attributes (skops stores none) come back equal too.
    pd.testing.assert_frame_equal(load(tmp_path / "weighted.moe").oof_scores_,
                                  weighted.oof_scores_)
    # The moe's fold models (a bag) were all rebuilt, and stay shared between both views.
    loaded_bag = loaded.named_estimators_["moe"]
    assert loaded_bag is loaded.estimators_[2] and len(loaded_bag) == 3
    assert all(hasattr(m, "net_") for m in loaded_bag)
    # Saving did not touch the original model.
    assert all(hasattr(m, "net_") for m in stacked.named_estimators_["moe"])


@pytest.mark.parametrize("router_hidden", [(), (8,)])
def test_gated_ensemble_round_trip(tmp_path, classification, router_hidden):
    from moensemble.gated import GatedEnsembleClassifier

    X, y = classification
    gated = GatedEnsembleClassifier(
        [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))],
        router_hidden=router_hidden, max_epochs=3, cv=3, random_state=0).fit(X, y)
    loaded = load(save(gated, tmp_path / "gated.moe"))
    np.testing.assert_array_equal(loaded.predict_proba(X), gated.predict_proba(X))


def test_gated_ensemble_precision_round_trips(tmp_path, classification):
    from moensemble.gated import GatedEnsembleClassifier

    X, y = classification
    gated = GatedEnsembleClassifier(
        [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))],
        router_hidden=(8,), precision="bfloat16", max_epochs=3, cv=3, random_state=0).fit(X, y)
    path = save(gated, tmp_path / "gated.moe")
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read(MANIFEST))
    assert manifest["nets"][0]["params"]["precision"] == "bfloat16"
    loaded = load(path)
    assert loaded.precision == "bfloat16"
    assert loaded.net_.module_.precision == "bfloat16"
    np.testing.assert_array_equal(loaded.predict_proba(X), gated.predict_proba(X))


def test_gated_float16_gpu_model_loads_and_predicts_on_a_cpu_only_machine(
    tmp_path, classification, monkeypatch
):
    import torch

    from moensemble.gated import GatedEnsembleClassifier

    X, y = classification
    bases = [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))]
    settings = dict(router_hidden=(8,), max_epochs=3, cv=3, random_state=0)
    if torch.cuda.is_available():
        fitted = GatedEnsembleClassifier(
            bases, device="cuda", precision="float16", **settings
        ).fit(X, y)
        assert fitted.net_.device == "cuda"
    else:  # a CPU-fitted model that says it was fitted on a GPU, as save stores it
        fitted = GatedEnsembleClassifier(bases, precision="float16", **settings).fit(X, y)
        fitted = copy.deepcopy(fitted).set_params(device="cuda")
    expected = fitted.predict_proba(X)
    path = save(fitted, tmp_path / "gpu_gated.moe")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="device='cuda'.*loaded on the CPU"):
        loaded = load(path)
    assert loaded.device == "cpu" and loaded.net_.device == "cpu"
    assert next(loaded.net_.module_.parameters()).device.type == "cpu"
    # float16 autocast runs on this CPU (or the load falls back to float32 with a warning).
    assert loaded.precision == loaded.net_.module_.precision
    proba = loaded.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(proba, expected, atol=2e-2)


def test_moe_in_a_pipeline_round_trip(tmp_path, classification):
    X, y = classification
    pipe = make_pipeline(StandardScaler(), MoEClassifier(n_experts=3, max_epochs=2,
                                                         random_state=0)).fit(X, y)
    loaded = load(save(pipe, tmp_path / "pipe.moe"))
    np.testing.assert_array_equal(loaded.predict_proba(X), pipe.predict_proba(X))
    assert pipe.steps[-1][1].net_ is not loaded.steps[-1][1].net_


def test_regression_stack_in_a_pipeline_round_trip(tmp_path):
    X, y = make_regression(n_samples=100, n_features=4, random_state=0)
    model = make_pipeline(StandardScaler(), StackingEnsembleRegressor(
        [("tree", DecisionTreeRegressor(random_state=0)), ("ridge", RidgeCV())], cv=3)).fit(X, y)
    loaded = load(save(model, str(tmp_path / "pipe.moe")))
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_pickle_and_joblib_keep_working(tmp_path, moe, classification):
    X, y = classification
    weighted = WeightedEnsembleClassifier(
        [("lr", LogisticRegression()), ("nb", GaussianNB())], cv=3).fit(X, y)
    for model in (moe, weighted):
        np.testing.assert_array_equal(
            pickle.loads(pickle.dumps(model)).predict_proba(X), model.predict_proba(X))
        joblib.dump(model, tmp_path / "m.joblib")
        np.testing.assert_array_equal(
            joblib.load(tmp_path / "m.joblib").predict_proba(X), model.predict_proba(X))


def _assert_same_predictions(loaded, model, X):
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    if hasattr(model, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


_NET = dict(max_epochs=2, random_state=0)
PUBLIC_ESTIMATORS = {
    "WeightedEnsembleClassifier": lambda: WeightedEnsembleClassifier(
        [("nb", GaussianNB()), ("lr", LogisticRegression())], cv=3),
    "WeightedEnsembleRegressor": lambda: WeightedEnsembleRegressor(
        [("tree", DecisionTreeRegressor(max_depth=3, random_state=0)), ("ridge", Ridge())], cv=3),
    "StackingEnsembleClassifier": lambda: StackingEnsembleClassifier(
        [("nb", GaussianNB()), ("tree", DecisionTreeClassifier(max_depth=3, random_state=0))],
        cv=3),
    "StackingEnsembleRegressor": lambda: StackingEnsembleRegressor(
        [("tree", DecisionTreeRegressor(max_depth=3, random_state=0)), ("ridge", Ridge())], cv=3),
    "MoEClassifier": lambda: MoEClassifier(n_experts=3, **_NET),
    "MoERegressor": lambda: MoERegressor(n_experts=3, **_NET),
    "GatedEnsembleClassifier": lambda: GatedEnsembleClassifier(
        [("nb", GaussianNB()), ("lr", LogisticRegression())], cv=3, **_NET),
    "GatedEnsembleRegressor": lambda: GatedEnsembleRegressor(
        [("tree", DecisionTreeRegressor(max_depth=3, random_state=0)), ("ridge", Ridge())],
        cv=3, **_NET),
}


def test_the_list_covers_every_public_estimator():
    import moensemble

    estimators = {n for n in moensemble.__all__ if n.endswith(("Classifier", "Regressor"))}
    # The searches are saved through their best_estimator_ (tested below).
    assert estimators - set(PUBLIC_ESTIMATORS) == {"AutoClassifier", "AutoRegressor"}


@pytest.mark.parametrize("name", sorted(PUBLIC_ESTIMATORS))
def test_every_public_estimator_round_trips(tmp_path, name):
    regression = name.endswith("Regressor")
    make = make_regression if regression else make_classification
    X, y = make(n_samples=90, n_features=5, random_state=0)
    model = PUBLIC_ESTIMATORS[name]().fit(X, y)
    loaded = load(save(model, tmp_path / "m.moe"))
    assert type(loaded) is type(model)
    _assert_same_predictions(loaded, model, X)


@pytest.mark.parametrize("cv", [StratifiedKFold(3, shuffle=True, random_state=0),
                                KFold(3, shuffle=True, random_state=0),
                                [(np.arange(75), np.arange(75, 150)),
                                 (np.arange(75, 150), np.arange(75))]])
def test_ensemble_given_a_cv_splitter_round_trips(tmp_path, classification, cv):
    X, y = classification
    model = StackingEnsembleClassifier([("nb", GaussianNB()), ("lr", LogisticRegression())],
                                       cv=cv).fit(X, y)
    loaded = load(save(model, tmp_path / "m.moe"))
    _assert_same_predictions(loaded, model, X)
    assert type(loaded.cv) is type(model.cv) or isinstance(cv, list)


def test_ensemble_with_a_joblib_memory_round_trips_and_load_creates_no_folder(tmp_path,
                                                                           classification):
    import shutil

    X, y = classification
    cache = tmp_path / "cache"
    model = WeightedEnsembleClassifier([("nb", GaussianNB()), ("lr", LogisticRegression())],
                                       cv=3, memory=joblib.Memory(cache, verbose=0)).fit(X, y)
    path = save(model, tmp_path / "m.moe")
    shutil.rmtree(cache)
    loaded = load(path)
    _assert_same_predictions(loaded, model, X)
    assert loaded.memory == str(cache)  # the location: the ensembles accept it as `memory`
    assert not cache.exists()  # loading a file makes no folder on this machine


@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree", "brute"])
def test_knn_members_round_trip(tmp_path, classification, algorithm):
    X, y = classification
    knn = KNeighborsClassifier(algorithm=algorithm, weights="distance")
    model = WeightedEnsembleClassifier([("knn", knn), ("nb", GaussianNB())], cv=3).fit(X, y)
    loaded = load(save(model, tmp_path / "m.moe"))
    _assert_same_predictions(loaded, model, X + 0.1)  # not the training rows: real lookups
    reg = KNeighborsRegressor(algorithm=algorithm, metric="manhattan").fit(X, y)
    np.testing.assert_array_equal(load(save(reg, tmp_path / "r.moe")).predict(X + 0.1),
                                  reg.predict(X + 0.1))


def test_upcycled_moe_round_trips_with_both_histories(tmp_path, classification):
    X, y = classification
    model = MoEClassifier(n_experts=3, init="upcycle", upcycle_epochs=2, **_NET).fit(X, y)
    loaded = load(save(model, tmp_path / "m.moe"))
    _assert_same_predictions(loaded, model, X)
    assert len(loaded.dense_history_) == len(model.dense_history_) == 2
    assert loaded.dense_history_[-1, "train_loss"] == model.dense_history_[-1, "train_loss"]


def test_gated_ensemble_with_a_moe_member_round_trips(tmp_path, classification):
    X, y = classification
    model = GatedEnsembleClassifier(
        [("nb", GaussianNB()), ("moe", MoEClassifier(n_experts=3, **_NET))], cv=3, **_NET
    ).fit(X, y)
    loaded = load(save(model, tmp_path / "m.moe"))
    _assert_same_predictions(loaded, model, X)
    assert loaded.named_estimators_["moe"].net_ is not model.named_estimators_["moe"].net_


def test_automl_best_estimator_round_trips_and_the_search_is_refused(tmp_path, classification):
    from moensemble import AutoClassifier

    X, y = classification
    search = AutoClassifier(families=("weighted",), max_trials=1, cv=2, inner_cv=2,
                            progress_bar=False, random_state=0).fit(X, y)
    loaded = load(save(search.best_estimator_, tmp_path / "best.moe"))
    _assert_same_predictions(loaded, search.best_estimator_, X)
    with pytest.raises(TypeError, match=r"AutoClassifier.*save\(search.best_estimator_"):
        save(search, tmp_path / "search.moe")


def test_the_model_tune_refit_best_writes_loads(tmp_path):
    url = f"journal:{tmp_path / 'study.log'}"
    output = tmp_path / "model.moe"
    common = [sys.executable, "-m", "moensemble", "tune", "--storage", url, "--study-name", "s",
              "--n-samples", "150", "--cv", "2", "--quiet"]
    for extra in (["--n-trials", "1"], ["--refit-best", "--output", str(output)]):
        done = subprocess.run([*common, *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
    model = load(output)  # the bundled glosses behind TF-IDF
    assert set(model.predict(["a small furry animal", "a tool for cutting"])) <= set(
        model.classes_)


def test_save_refuses_a_file_load_would_refuse_naming_the_type(tmp_path, classification):
    X, y = classification
    model = WeightedEnsembleClassifier([("mine", MyClassifier()), ("nb", GaussianNB())],
                                       cv=3).fit(X, y)
    name = f"{MyClassifier.__module__}.MyClassifier"
    with pytest.raises(TypeError, match=rf"load\(\) would refuse.*{name}"):
        save(model, tmp_path / "m.moe")
    assert list(tmp_path.iterdir()) == []
    path = save(model, tmp_path / "m.moe", trusted=[name])  # checked by the user
    with pytest.raises(UntrustedTypesError):
        load(path)
    _assert_same_predictions(load(path, trusted=[name]), model, X)


# ---- tampered files --------------------------------------------------------------------------


def test_unknown_type_is_refused_and_its_code_never_runs(tmp_path, saved):
    import skops.io as sio

    marker = tmp_path / "pwned"
    _replace_member(saved, "model.skops", sio.dumps(SideEffect(str(marker))))
    with pytest.raises(UntrustedTypesError, match="SideEffect") as info:
        load(saved)
    assert info.value.untrusted == [f"{SideEffect.__module__}.SideEffect"]
    assert not marker.exists()
    # Trusting the type on purpose is the user's call, and then its code does run: this is
    # what the refusal above protects against.
    load(saved, trusted=info.value.untrusted)
    assert marker.exists()


def test_pickle_payload_in_place_of_a_member_is_refused(tmp_path, saved):
    marker = tmp_path / "pwned"
    _replace_member(saved, "model.skops", pickle.dumps(PicklePayload(str(marker))))
    with pytest.raises(ValueError, match="damaged: model.skops is not a skops file"):
        load(saved)
    assert not marker.exists()


def test_pickle_file_is_not_a_moensemble_file(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.moe"
    path.write_bytes(pickle.dumps(PicklePayload(str(marker))))
    with pytest.raises(ValueError, match="not a moensemble model file"):
        load(path)
    assert not marker.exists()


def test_tampered_weights_are_refused(saved):
    _replace_member(saved, "nets/0.safetensors", b"\x00" * 64)
    with pytest.raises(ValueError, match="cannot load the network weights"):
        load(saved)


# ---- crafted files: load bounds what it allocates --------------------------------------------


def test_member_larger_than_max_size_is_damaged(saved):
    size = sum(i.file_size for i in zipfile.ZipFile(saved).infolist())
    with pytest.raises(ValueError, match=r"is damaged: .* more than load\(max_size=\.\.\.\)"):
        load(saved, max_size=size // 2)
    with pytest.raises(TypeError, match="`max_size` must be a positive int"):
        load(saved, max_size=0)


def test_zip_bomb_member_is_refused_before_it_is_inflated(tmp_path, saved):
    _replace_member(saved, "nets/0.history.json", b"[" + b" " * 50_000_000 + b"]")
    assert saved.stat().st_size < 1_000_000  # a small file ...
    with pytest.raises(ValueError, match=r"damaged: 'nets/0.history.json' .* load\(max_size"):
        load(saved, max_size=10_000_000)  # ... that would inflate to 50 MB


def _skops_with_a_huge_array_header(data: bytes) -> bytes:
    inner = zipfile.ZipFile(io.BytesIO(data))
    members = {n: inner.read(n) for n in inner.namelist()}
    name = next(n for n in members if n.endswith(".npy"))
    array = np.lib.format.read_array(io.BytesIO(members[name]))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                 "shape": (10**12,)})  # 8 TB of float64 claimed, a few bytes stored
    members[name] = header.getvalue() + array.tobytes()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n, content in members.items():
            archive.writestr(n, content)
    return out.getvalue()


def test_array_header_claiming_more_than_is_stored_is_damaged(saved):
    _replace_member(saved, "model.skops",
                    _skops_with_a_huge_array_header(_read_member(saved, "model.skops")))
    with pytest.raises(ValueError, match=r"damaged: the array .* claims shape \(1000000000000,\)"):
        load(saved)


@pytest.mark.parametrize("in_features", [10**9, 7, "8", True])
def test_manifest_sizes_are_checked_against_the_stored_tensors(saved, in_features):
    manifest = json.loads(_read_member(saved, MANIFEST))
    manifest["nets"][0]["in_features"] = in_features
    _replace_member(saved, MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(ValueError, match="is damaged: "):
        load(saved)


def test_safetensors_header_claiming_a_huge_tensor_is_damaged(saved):
    weights = _read_member(saved, "nets/0.safetensors")
    (length,) = struct.unpack("<Q", weights[:8])
    header = json.loads(weights[8:8 + length])
    first = next(k for k in header if k != "__metadata__")
    header[first]["shape"] = [10**6, 10**6]
    raw = json.dumps(header).encode()
    _replace_member(saved, "nets/0.safetensors",
                    struct.pack("<Q", len(raw)) + raw + weights[8 + length:])
    with pytest.raises(ValueError, match="is damaged: cannot load the network weights"):
        load(saved)


@pytest.mark.parametrize("history", [b"{not json", b'{"epoch": 1}', b"[1, 2]", b"\xff\xfe"])
def test_damaged_history_json_is_damaged(saved, history):
    _replace_member(saved, "nets/0.history.json", history)
    with pytest.raises(ValueError, match="is damaged: a training history"):
        load(saved)


def test_trusted_must_be_a_list_of_names(saved):
    with pytest.raises(TypeError, match="list of type names"):
        load(saved, trusted=True)


# ---- other errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model file"):
        load(tmp_path / "nope.moe")


def test_zip_without_manifest_is_not_a_moensemble_file(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a moensemble model file"):
        load(path)


def test_newer_format_version_is_refused(saved):
    manifest = json.loads(zipfile.ZipFile(saved).read("moensemble.json"))
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest["moensemble_version"] = "9.9.9"
    _replace_member(saved, "moensemble.json", json.dumps(manifest).encode())
    with pytest.raises(ValueError, match=r"moensemble 9\.9\.9 in file format 2; this moensemble"):
        load(saved)


def test_failed_save_leaves_the_previous_file_intact(tmp_path, saved, classification):
    X, y = classification
    before = saved.read_bytes()
    unsavable = LogisticRegression().fit(X, y)
    unsavable.buffer_ = io.BytesIO()  # skops cannot store an open buffer
    with pytest.raises(TypeError, match="Cannot save LogisticRegression safely"):
        save(unsavable, saved)
    assert saved.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.moe"]  # no temp file left


def test_save_into_a_missing_folder(tmp_path, moe):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save(moe, tmp_path / "no" / "such" / "model.moe")


def test_model_saved_with_a_gpu_device_loads_on_a_cpu_only_machine(tmp_path, moe,
                                                                   classification):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU tests cover the real GPU -> CPU case")
    X, _ = classification
    gpu_like = copy.deepcopy(moe).set_params(device="cuda")
    path = save(gpu_like, tmp_path / "gpu.moe")
    with pytest.warns(UserWarning, match="device='cuda'.*loaded on the CPU"):
        loaded = load(path)
    assert loaded.device == "cpu"
    np.testing.assert_array_equal(loaded.predict_proba(X), moe.predict_proba(X))


@pytest.mark.parametrize("library", ["lightgbm", "xgboost", "catboost"])
def test_the_boost_extras_models_round_trip(tmp_path, classification, library):
    """The AutoML's portfolio trains these; save/load must take them without `trusted=`."""
    module = pytest.importorskip(library)
    X, y = classification
    model = {"lightgbm": lambda: module.LGBMClassifier(n_estimators=5, verbose=-1),
             "xgboost": lambda: module.XGBClassifier(n_estimators=5),
             "catboost": lambda: module.CatBoostClassifier(iterations=5, verbose=0,
                                                                allow_writing_files=False)}[library]()
    model.fit(X, y)
    loaded = load(save(model, tmp_path / f"{library}.moe"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_native_categorical_hist_gradient_boosting_round_trips(tmp_path):
    """The AutoML's `native` tables feed category columns to HistGradientBoosting, whose
    preprocessor holds a partial(check_array): its final ensemble must save by default."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120),
                      "b": pd.Categorical(rng.choice(["x", "y", "z"], 120))})
    y = (X["a"] + (X["b"] == "x")) > 0.5
    model = HistGradientBoostingClassifier(max_iter=5, categorical_features="from_dtype")
    model.fit(X, y)
    loaded = load(save(model, tmp_path / "hgb.moe"))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_a_text_view_of_a_column_saves_and_loads(tmp_path):
    # `tfidf_view(column=...)` fills missing texts through moensemble's own function, which
    # `load` trusts (compare's members and ensembles on a text column are built from it).
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from moensemble.text import tfidf_view

    frame = pd.DataFrame({"text": ["red apple pie", "green apple", None, "blue sky high",
                                   "sky blue sea", "red pie"] * 5})
    y = np.array([0, 0, 1, 1, 1, 0] * 5)
    model = make_pipeline(tfidf_view("char", column="text"), LogisticRegression()).fit(frame, y)
    path = save(model, tmp_path / "view.zip")
    np.testing.assert_allclose(load(path).predict_proba(frame),
                               model.predict_proba(frame))
