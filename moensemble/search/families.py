"""The families the AutoML's Optuna phase searches: single models, level-2 combiners, routers.

``weighted`` and ``stacking`` are level 2 in the AutoML (``context.level2``); built on their
own (``moensemble tune``), they are the member-based ensembles of
:mod:`moensemble.ensemble` with inner folds.

A :class:`Family` builds an estimator and draws its parameters from an Optuna trial. Single
models (boosting, forests, linear, k-NN, MLP, MoE) are fitted on the outer folds like the
portfolio's entries. Level-2 families (``weighted``, ``stacking``) are fitted on the outer
folds too, but on the out-of-fold predictions of the best trials found so far: they reuse
fits that exist and never refit a member. ``gated`` (opt-in) trains a router over its own
cheap members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline

from moensemble.search.portfolio import model_available, model_factory
from moensemble.search.selection import CaruanaClassifier, CaruanaRegressor
from moensemble.search.spaces import gated_space, moe_space, stacking_space, weighted_space

__all__ = ["FAMILIES", "Family", "SearchContext", "default_members"]


@dataclass
class SearchContext:
    """What a family needs to build its estimator and space for one fit."""

    task: str  # 'classification' | 'regression'
    members: list[tuple[str, BaseEstimator]]  # the gated family's own members
    inner_cv: int
    memory: Any
    n_jobs: int | None
    random_state: int | None
    sparse: bool
    n_samples: int
    n_features: int
    non_negative: bool = True
    level2: bool = False  # the AutoML builds a level-2 family: its members are trials
    stack_levels: int = 1  # stacking layers over the level-1 trials (the AutoML's)
    stack_passthrough: bool = False  # level-2 stackers may read the original features


@dataclass(frozen=True)
class Family:
    """One family the AutoML estimators search: how to build it and its space.

    Parameters
    ----------
    name : str
        Family name; its Optuna parameters are prefixed ``<name>__``.
    make : callable
        ``make(context) -> estimator`` with the family's fixed settings.
    space : callable
        ``space(trial, context, prefix) -> dict`` of parameters for ``make``'s estimator,
        or a whole estimator.
    first : dict or callable
        Unprefixed Optuna values of a first trial, run before the sampler takes over
        (parameters not given are sampled), or ``first(context) -> dict``; empty: none.
    tasks : tuple of str
        Tasks the family supports.
    level : {1, 2}, default=1
        1: fitted on the input features. 2: fitted on the out-of-fold predictions of the
        ``top_n`` best level-1 trials (an Optuna parameter ``<name>__top_n``).
    passthrough : bool, default=False
        Level 2: the search may also hand it the original features
        (``<name>__passthrough``; with the AutoML's ``stack_passthrough=True`` only, on
        dense input of at most 500 columns).
    available : callable or None
        ``available(context) -> bool``: whether the family can run on this input
        (None: always).
    """

    name: str
    make: Callable[[SearchContext], BaseEstimator]
    space: Callable[[optuna.Trial, SearchContext, str], Any]
    first: dict | Callable[[SearchContext], dict] = field(default_factory=dict)
    tasks: tuple[str, ...] = ("classification", "regression")
    level: int = 1
    passthrough: bool = False
    available: Callable[[SearchContext], bool] | None = None


def _kind(context: SearchContext) -> str:
    return "Classifier" if context.task == "classification" else "Regressor"


# --------------------------------------------------------------------------- single models
def _build(model: str, context: SearchContext, **params) -> BaseEstimator:
    return model_factory(model)(context.task, sparse=context.sparse,
                                random_state=context.random_state, n_jobs=context.n_jobs,
                                **params)


def _log(trial, name, low, high):
    return trial.suggest_float(name, low, high, log=True)


def _space_linear(trial, context, prefix):
    if context.task == "classification":
        return {"C": _log(trial, f"{prefix}C", 1e-2, 1e2)}
    return {"alphas": [_log(trial, f"{prefix}alpha", 1e-3, 1e3)]}


def _space_knn(trial, context, prefix):
    return {"n_neighbors": trial.suggest_int(f"{prefix}n_neighbors", 3, 50, log=True)}


def _space_hist_gb(trial, context, prefix):
    return {"learning_rate": _log(trial, f"{prefix}learning_rate", 0.02, 0.3),
            "max_leaf_nodes": trial.suggest_int(f"{prefix}max_leaf_nodes", 8, 64, log=True),
            "l2_regularization": _log(trial, f"{prefix}l2_regularization", 1e-4, 10.0)}


def _space_lightgbm(trial, context, prefix):
    return {"learning_rate": _log(trial, f"{prefix}learning_rate", 0.01, 0.2),
            "n_estimators": trial.suggest_int(f"{prefix}n_estimators", 100, 600, log=True),
            "num_leaves": trial.suggest_int(f"{prefix}num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int(f"{prefix}min_child_samples", 3, 50, log=True),
            "colsample_bytree": trial.suggest_float(f"{prefix}colsample_bytree", 0.4, 1.0),
            "reg_lambda": _log(trial, f"{prefix}reg_lambda", 1e-4, 10.0)}


def _space_xgboost(trial, context, prefix):
    return {"learning_rate": _log(trial, f"{prefix}learning_rate", 0.01, 0.3),
            "n_estimators": trial.suggest_int(f"{prefix}n_estimators", 100, 500, log=True),
            "max_depth": trial.suggest_int(f"{prefix}max_depth", 3, 10),
            "subsample": trial.suggest_float(f"{prefix}subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float(f"{prefix}colsample_bytree", 0.4, 1.0),
            "reg_lambda": _log(trial, f"{prefix}reg_lambda", 1e-3, 10.0)}


def _space_catboost(trial, context, prefix):
    return {"learning_rate": _log(trial, f"{prefix}learning_rate", 0.02, 0.3),
            "iterations": trial.suggest_int(f"{prefix}iterations", 100, 500, log=True),
            "depth": trial.suggest_int(f"{prefix}depth", 4, 8),
            "l2_leaf_reg": _log(trial, f"{prefix}l2_leaf_reg", 1.0, 10.0)}


def _space_forest(trial, context, prefix):
    return {"max_features": trial.suggest_float(f"{prefix}max_features", 0.1, 1.0),
            "min_samples_leaf": trial.suggest_int(f"{prefix}min_samples_leaf", 1, 8, log=True)}


def _space_mlp(trial, context, prefix):
    return {"hidden_layer_sizes": (trial.suggest_int(f"{prefix}hidden", 32, 256, log=True),),
            "alpha": _log(trial, f"{prefix}alpha", 1e-6, 1e-2),
            "learning_rate_init": _log(trial, f"{prefix}learning_rate_init", 1e-4, 1e-2)}


def _single(name: str, space) -> Family:
    """A portfolio model kind as a family; the space's keys follow a pipeline's last step."""

    def make(context: SearchContext) -> BaseEstimator:
        return _build(name, context)

    def prefixed(trial, context, prefix):
        params = space(trial, context, prefix)
        est = make(context)
        if isinstance(est, Pipeline):
            step = est.steps[-1][0]
            params = {f"{step}__{k}": v for k, v in params.items()}
        return params

    return Family(
        name, make, prefixed,
        available=lambda c: model_available(name, sparse=c.sparse, non_negative=c.non_negative),
    )


def _make_moe(context: SearchContext) -> BaseEstimator:
    from sklearn.preprocessing import StandardScaler

    from moensemble import moe

    cls = getattr(moe, f"MoE{_kind(context)}")
    # A validation split gives the per-epoch `valid_loss` (early stopping, the pruner).
    net = cls(early_stopping=True, n_iter_no_change=8, random_state=context.random_state)
    if context.sparse:
        return Pipeline([("moe", net)])
    return Pipeline([("scale", StandardScaler()), ("moe", net)])


def _space_moe(trial, context, prefix):
    params = moe_space(trial, n_experts=(2, 16), expert_width=(16, 128), max_epochs=(10, 80),
                       prefix=prefix, sparse=context.sparse)
    return {f"moe__{k}": v for k, v in params.items()}


# --------------------------------------------------------------------------- level 2
def _ensemble_kwargs(est: BaseEstimator, context: SearchContext) -> BaseEstimator:
    # On its own (``moensemble tune``) an ensemble fits its members on inner folds, through
    # the shared cache, and keeps the fold models as a bag (refit=False).
    wanted = {"cv": context.inner_cv, "memory": context.memory, "n_jobs": context.n_jobs,
              "refit": False, "random_state": context.random_state}
    known = est.get_params(deep=False)
    return est.set_params(**{k: v for k, v in wanted.items() if k in known})


def _make_weighted(context: SearchContext) -> BaseEstimator:
    if context.level2:
        return CaruanaClassifier() if context.task == "classification" else CaruanaRegressor()
    from moensemble import ensemble

    cls = getattr(ensemble, f"WeightedEnsemble{_kind(context)}")
    return _ensemble_kwargs(cls(list(context.members)), context)


def _space_weighted(trial, context, prefix):
    if context.level2:
        return {"n_iter": trial.suggest_int(f"{prefix}n_iter", 10, 100, log=True)}
    return weighted_space(trial, context.members, weighting=("greedy", "optimize", "uniform"),
                          prefix=prefix)


def _make_stacking(context: SearchContext) -> BaseEstimator:
    if not context.level2:
        from moensemble import ensemble

        cls = getattr(ensemble, f"StackingEnsemble{_kind(context)}")
        return _ensemble_kwargs(cls(list(context.members)), context)
    from sklearn import linear_model
    from sklearn.preprocessing import StandardScaler

    if context.task == "classification":
        final = linear_model.LogisticRegression(max_iter=1000)
    else:
        final = linear_model.RidgeCV(alphas=np.logspace(-3, 3, 13))
    return Pipeline([("scale", StandardScaler(with_mean=False)), ("final", final)])


def _space_stacking(trial, context, prefix):
    if not context.level2:
        layers = (1, 2) if "layers" in _make_stacking(context).get_params(deep=False) else 1
        return stacking_space(trial, task=context.task, layers=layers,
                              random_state=context.random_state, prefix=prefix)
    if context.task == "classification":
        return {"final__C": _log(trial, f"{prefix}C", 1e-2, 1e2)}
    return {}


# --------------------------------------------------------------------------- gated
def _make_gated(context: SearchContext) -> BaseEstimator:
    from moensemble import gated

    cls = getattr(gated, f"GatedEnsemble{_kind(context)}")
    est = _ensemble_kwargs(cls(list(context.members)), context)
    known = est.get_params(deep=False)
    return est.set_params(**({"early_stopping": True} if "early_stopping" in known else {}))


def _space_gated(trial, context, prefix):
    return gated_space(trial, n_members=len(context.members), prefix=prefix)


FAMILIES: dict[str, Family] = {
    # Level 2 first: cheap, and the Optuna phase starts with one of each.
    "weighted": Family("weighted", _make_weighted, _space_weighted, level=2,
                       first={"n_iter": 50, "top_n": 8}),
    "stacking": Family("stacking", _make_stacking, _space_stacking, level=2, passthrough=True,
                       first=lambda c: {"top_n": 6, "passthrough": False,
                                        **({"C": 1.0} if c.task == "classification" else {})}),
    "hist_gb": _single("hist_gb", _space_hist_gb),
    "lightgbm": _single("lightgbm", _space_lightgbm),
    "xgboost": _single("xgboost", _space_xgboost),
    "catboost": _single("catboost", _space_catboost),
    "extra_trees": _single("extra_trees", _space_forest),
    "random_forest": _single("random_forest", _space_forest),
    "linear": _single("linear", _space_linear),
    "knn": _single("knn", _space_knn),
    "mlp": _single("mlp", _space_mlp),
    "moe": Family("moe", _make_moe, _space_moe,
                  available=lambda c: model_available("moe", sparse=c.sparse)),
    # Not searched by default: opt in with families=(..., "gated").
    "gated": Family("gated", _make_gated, _space_gated,
                    first={"router": "topk", "top_k": 1, "router_width": 0,
                           "features": "input", "lr": 1e-2, "max_epochs": 40}),
}
"""Registry of the searchable families; adding one is one entry."""

DEFAULT_FAMILIES = ("weighted", "stacking", "hist_gb", "lightgbm", "xgboost", "catboost",
                    "extra_trees", "random_forest", "linear", "knn", "mlp", "moe")


def default_members(task: str, *, sparse: bool, random_state: int | None, non_negative: bool):
    """Fast, diverse base models of the gated family's router (dense or sparse input)."""
    from sklearn import ensemble as sk_ensemble
    from sklearn import linear_model, naive_bayes, neighbors
    from sklearn.preprocessing import StandardScaler

    def scaled(est: BaseEstimator) -> BaseEstimator:
        return est if sparse else Pipeline([("scale", StandardScaler()), ("model", est)])

    rs = random_state
    if task == "classification":
        members = [
            ("logistic", scaled(linear_model.LogisticRegression(C=10.0 if sparse else 1.0,
                                                                max_iter=1000))),
            ("knn", scaled(neighbors.KNeighborsClassifier(n_neighbors=10, weights="distance"))),
        ]
        if sparse and non_negative:
            members.append(("naive_bayes", naive_bayes.ComplementNB(alpha=0.3)))
        if not sparse:
            members += [
                ("naive_bayes", naive_bayes.GaussianNB()),
                ("random_forest", sk_ensemble.RandomForestClassifier(50, random_state=rs)),
                ("extra_trees", sk_ensemble.ExtraTreesClassifier(50, random_state=rs)),
            ]
        return members
    members = [
        ("ridge", scaled(linear_model.RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        ("knn", scaled(neighbors.KNeighborsRegressor(n_neighbors=10, weights="distance"))),
    ]
    if not sparse:
        members += [
            ("random_forest", sk_ensemble.RandomForestRegressor(50, random_state=rs)),
            ("extra_trees", sk_ensemble.ExtraTreesRegressor(50, random_state=rs)),
        ]
    return members
