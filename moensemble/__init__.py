"""moensemble: weighted, stacked and mixture-of-experts ensembles with a scikit-learn API.

Public names are imported lazily, so ``import moensemble`` stays cheap and the
ensembles that need no torch never import it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_PUBLIC = {
    "WeightedEnsembleClassifier": "moensemble.ensemble",
    "WeightedEnsembleRegressor": "moensemble.ensemble",
    "StackingEnsembleClassifier": "moensemble.ensemble",
    "StackingEnsembleRegressor": "moensemble.ensemble",
    "out_of_fold": "moensemble.ensemble",
    "MoEClassifier": "moensemble.moe",
    "MoERegressor": "moensemble.moe",
    "GatedEnsembleClassifier": "moensemble.gated",
    "GatedEnsembleRegressor": "moensemble.gated",
    "compare": "moensemble.leaderboard",
    "SearchCV": "moensemble.search",
    "AutoClassifier": "moensemble.search",
    "AutoRegressor": "moensemble.search",
    "load_wordnet_glosses": "moensemble.datasets",
    "TableEncoder": "moensemble.features",
    "save": "moensemble.persist",
    "load": "moensemble.persist",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'moensemble' has no attribute {name!r}")


def __dir__():
    return __all__
