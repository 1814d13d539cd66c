"""Out-of-fold predictions on disk: memory-mapped float32, the folder gone after fit."""

from __future__ import annotations

import os

import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import get_scorer
from sklearn.model_selection import StratifiedKFold
from sklearn.tree import DecisionTreeClassifier

import moensemble.search.auto as auto_module
from moensemble.search import AutoClassifier
from moensemble.search.bagging import OOFStore, bag_on_folds


def test_memory_mapped_oof_equal_the_in_ram_ones(tmp_path):
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    common = dict(classes=np.unique(y), scorer=get_scorer("accuracy"), n_columns=2)
    in_ram = bag_on_folds(LogisticRegression(), X, y, folds, **common)
    store = OOFStore(str(tmp_path))
    on_disk = bag_on_folds(LogisticRegression(), X, y, folds, store=store, **common)
    assert isinstance(on_disk.oof, np.memmap) and not isinstance(in_ram.oof, np.memmap)
    assert on_disk.oof.dtype == np.float32
    np.testing.assert_array_equal(on_disk.oof, in_ram.oof)
    path = tmp_path / "oof_0.npy"
    np.testing.assert_array_equal(np.load(path), in_ram.oof)  # flushed: a plain .npy file
    assert store.n_arrays == 1


def test_the_search_keeps_oof_on_disk_and_removes_them_after_fit(monkeypatch):
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    seen = {}
    original = auto_module._BaseAuto._finish

    def finish(est, runner, *args, **kwargs):
        seen["oof"] = [r.bag.oof for r in runner.records if r.bag is not None]
        seen["folder"] = runner.store.folder
        seen["files"] = sorted(os.listdir(runner.store.folder))
        return original(est, runner, *args, **kwargs)

    monkeypatch.setattr(auto_module._BaseAuto, "_finish", finish)
    members = [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))]
    auto = AutoClassifier(time_budget=60, base_estimators=members, families=("weighted",),
                          cv=3, max_trials=3, progress_bar=False, random_state=0).fit(X, y)
    assert len(seen["oof"]) >= 2
    assert all(isinstance(o, np.memmap) and o.filename.startswith(seen["folder"])
               for o in seen["oof"])
    assert len(seen["files"]) >= len(seen["oof"])
    assert not os.path.exists(seen["folder"])  # cleaned at the end of fit
    assert auto.score(X, y) > 0.8  # the final model never needed the files
