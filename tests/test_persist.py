"""Safe persistence: round trips, pickle still works, and tampered files are refused."""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.base import is_classifier
from sklearn.datasets import make_classification, make_regression
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.naive_bayes import GaussianNB
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
)
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


def _replace_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members[name] = data
    with zipfile.ZipFile(path, "w") as archive:
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
