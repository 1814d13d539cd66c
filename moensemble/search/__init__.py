"""Optuna search over each family and AutoML across the families."""

from moensemble.search.auto import FAMILIES, AutoClassifier, AutoRegressor, Family
from moensemble.search.searchcv import SearchCV
from moensemble.search.spaces import gated_space, moe_space, stacking_space, weighted_space

__all__ = [
    "SearchCV",
    "AutoClassifier",
    "AutoRegressor",
    "Family",
    "FAMILIES",
    "gated_space",
    "moe_space",
    "stacking_space",
    "weighted_space",
]
