"""Weighted and stacked ensembles over scikit-learn models, and their out-of-fold engine."""

from moensemble.ensemble._oof import OutOfFold, out_of_fold
from moensemble.ensemble.stacking import StackingEnsembleClassifier, StackingEnsembleRegressor
from moensemble.ensemble.weighted import WeightedEnsembleClassifier, WeightedEnsembleRegressor

__all__ = [
    "OutOfFold",
    "StackingEnsembleClassifier",
    "StackingEnsembleRegressor",
    "WeightedEnsembleClassifier",
    "WeightedEnsembleRegressor",
    "out_of_fold",
]
