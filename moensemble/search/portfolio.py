"""The AutoML's portfolio: sound default models, cheapest first, and the boosting libraries.

:func:`default_portfolio` lists the single models an :class:`~moensemble.search.AutoClassifier`
fits before Optuna's sampler takes over. Each entry is a fixed configuration that measured
well across the benchmark's data sets (see ``docs/benchmarks/automl.md``); the order is by
cost, so a short budget still ends with the cheap, strong ones (linear, naive Bayes,
gradient boosting with early stopping) fitted. Slow members are bounded by their size
(trees, iterations, epochs); the search also skips a member whose fit, timed on a
subsample, would outlast the budget.

Sparse input (text): its own order, the linear models (logistic regression, SGD, a
calibrated linear SVM) and complement naive Bayes first; linear, naive Bayes, k-NN,
and the MoE take CSR as is; the forests get a TruncatedSVD of it; dense-only
members (histogram boosting, XGBoost, CatBoost, the MLP) are left out.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.utils.validation import check_is_fitted, validate_data

__all__ = ["NATIVE_CATEGORICAL", "Config", "RBFFeatures", "boosting_available",
           "default_portfolio", "model_factory", "native_entries"]


def boosting_available(library: str) -> bool:
    """Whether ``library`` ('lightgbm', 'xgboost' or 'catboost') can be imported."""
    return importlib.util.find_spec(library) is not None


@dataclass(frozen=True)
class Config:
    """One portfolio entry.

    Parameters
    ----------
    name : str
        Trial name on the leaderboard.
    model : str
        Model kind, a key of :func:`model_factory` (also the family it belongs to).
    params : dict
        Keyword arguments of the model kind.
    """

    name: str
    model: str
    params: dict


def _scaled(est: BaseEstimator, sparse: bool) -> BaseEstimator:
    from sklearn.preprocessing import StandardScaler

    return est if sparse else Pipeline([("scale", StandardScaler()), ("model", est)])


def _svd(est: BaseEstimator, sparse: bool, random_state) -> BaseEstimator:
    """Trees on a 10^4-column CSR are slow: give them 128 SVD components of it."""
    if not sparse:
        return est
    from sklearn.decomposition import TruncatedSVD

    return make_pipeline(TruncatedSVD(128, random_state=random_state), est)


def _linear(task, *, sparse, random_state, n_jobs, C=1.0, alpha=None):
    from sklearn import linear_model

    if task == "classification":
        return _scaled(linear_model.LogisticRegression(C=C, max_iter=1000), sparse)
    alphas = np.logspace(-3, 3, 13) if alpha is None else [alpha]
    return _scaled(linear_model.RidgeCV(alphas=alphas), sparse)


class RBFFeatures(TransformerMixin, BaseEstimator):
    """Nystroem features of the RBF kernel ``exp(-gamma_scale / n_features * |x - x'|^2)``.

    Ridge regression on them is an approximate kernel ridge whose cost grows linearly with
    the rows. The bandwidth is relative to the number of columns, so one setting fits any
    standardised table (0.1: the kernel's typical argument is 0.2 between two rows).

    Parameters
    ----------
    gamma_scale : float, default=0.1
        ``gamma * n_features``.
    n_components : int, default=300
        Kernel columns (at most the rows).
    random_state : int or None
        Seeds the rows the kernel is sampled at.
    """

    def __init__(self, gamma_scale: float = 0.1, n_components: int = 300, random_state=None):
        self.gamma_scale = gamma_scale
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        from sklearn.kernel_approximation import Nystroem

        X = validate_data(self, X)
        self.nystroem_ = Nystroem(gamma=self.gamma_scale / X.shape[1],
                                  n_components=min(self.n_components, X.shape[0]),
                                  random_state=self.random_state).fit(X)
        return self

    def transform(self, X):
        check_is_fitted(self)
        return self.nystroem_.transform(validate_data(self, X, reset=False))


def _kernel_ridge(task, *, sparse, random_state, n_jobs, gamma_scale=0.1):
    """Ridge on RBF kernel features (regression): a smooth non-linear model for small
    tables, where ridge is otherwise the best single model (diabetes)."""
    from sklearn import linear_model

    return _scaled(make_pipeline(RBFFeatures(gamma_scale, random_state=random_state),
                                 linear_model.RidgeCV(alphas=np.logspace(-3, 3, 13))), sparse)


def _sgd(task, *, sparse, random_state, n_jobs, alpha=1e-5):
    """A linear model by SGD with the modified Huber loss (it has probabilities): seconds on
    10^5 TF-IDF columns."""
    from sklearn import linear_model

    if task == "classification":
        est = linear_model.SGDClassifier(loss="modified_huber", alpha=alpha, max_iter=50,
                                         tol=1e-4, random_state=random_state)
    else:
        est = linear_model.SGDRegressor(alpha=alpha, max_iter=50, tol=1e-4,
                                        random_state=random_state)
    return _scaled(est, sparse)


def _linear_svm(task, *, sparse, random_state, n_jobs, C=0.5):
    """A linear SVM; its margins become probabilities by a 3-fold sigmoid calibration."""
    from sklearn import svm
    from sklearn.calibration import CalibratedClassifierCV

    if task == "classification":
        est = CalibratedClassifierCV(svm.LinearSVC(C=C), cv=3)
    else:
        est = svm.LinearSVR(C=C, dual="auto", max_iter=5000, random_state=random_state)
    return _scaled(est, sparse)


def _naive_bayes(task, *, sparse, random_state, n_jobs, alpha=0.3):
    from sklearn import naive_bayes

    return naive_bayes.ComplementNB(alpha=alpha) if sparse else naive_bayes.GaussianNB()


def _knn(task, *, sparse, random_state, n_jobs, n_neighbors=10):
    from sklearn import neighbors

    cls = neighbors.KNeighborsClassifier if task == "classification" else \
        neighbors.KNeighborsRegressor
    return _scaled(cls(n_neighbors=n_neighbors, weights="distance", n_jobs=n_jobs), sparse)


def _hist_gb(task, *, sparse, random_state, n_jobs, learning_rate=0.1, max_leaf_nodes=31,
             l2_regularization=0.0, max_iter=300, native=False):
    from sklearn import ensemble

    cls = ensemble.HistGradientBoostingClassifier if task == "classification" else \
        ensemble.HistGradientBoostingRegressor
    # Early stopping on an inner 10 % split bounds the iterations by what helps.
    return cls(learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes, max_iter=max_iter,
               l2_regularization=l2_regularization, early_stopping=True,
               n_iter_no_change=15, random_state=random_state,
               categorical_features="from_dtype" if native else None)


def _forest(kind):
    def make(task, *, sparse, random_state, n_jobs, n_estimators=300, max_features=None,
             min_samples_leaf=1):
        from sklearn import ensemble

        suffix = "Classifier" if task == "classification" else "Regressor"
        cls = getattr(ensemble, f"{kind}{suffix}")
        extra = {} if max_features is None else {"max_features": max_features}
        est = cls(n_estimators=n_estimators, min_samples_leaf=min_samples_leaf,
                  n_jobs=n_jobs, random_state=random_state, **extra)
        return _svd(est, sparse, random_state)

    return make


def _lightgbm(task, *, sparse, random_state, n_jobs, n_estimators=300, learning_rate=0.05,
              num_leaves=31, min_child_samples=10, colsample_bytree=0.8, reg_lambda=0.0,
              native=False):  # LightGBM reads pandas category columns as categorical
    import lightgbm

    cls = lightgbm.LGBMClassifier if task == "classification" else lightgbm.LGBMRegressor
    return cls(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
               min_child_samples=min_child_samples, colsample_bytree=colsample_bytree,
               reg_lambda=reg_lambda, subsample=0.8, subsample_freq=1,
               random_state=random_state, n_jobs=n_jobs or 1, verbose=-1)


def _xgboost(task, *, sparse, random_state, n_jobs, n_estimators=300, learning_rate=0.1,
             max_depth=6, subsample=0.8, colsample_bytree=0.8, reg_lambda=1.0, native=False):
    import xgboost

    cls = xgboost.XGBClassifier if task == "classification" else xgboost.XGBRegressor
    return cls(n_estimators=n_estimators, learning_rate=learning_rate, max_depth=max_depth,
               subsample=subsample, colsample_bytree=colsample_bytree, reg_lambda=reg_lambda,
               tree_method="hist", random_state=random_state, n_jobs=n_jobs or 1, verbosity=0,
               enable_categorical=native)


def _catboost(task, *, sparse, random_state, n_jobs, iterations=300, learning_rate=0.1,
              depth=6, l2_leaf_reg=3.0):
    import catboost

    cls = catboost.CatBoostClassifier if task == "classification" else \
        catboost.CatBoostRegressor
    return cls(iterations=iterations, learning_rate=learning_rate, depth=depth,
               l2_leaf_reg=l2_leaf_reg, random_seed=random_state or 0,
               thread_count=n_jobs or 1, verbose=0, allow_writing_files=False)


def _mlp(task, *, sparse, random_state, n_jobs, hidden=128, alpha=1e-4, learning_rate_init=1e-3):
    from sklearn import neural_network

    cls = neural_network.MLPClassifier if task == "classification" else \
        neural_network.MLPRegressor
    return _scaled(cls((hidden,), alpha=alpha, learning_rate_init=learning_rate_init,
                       early_stopping=True, max_iter=200, random_state=random_state), sparse)


def _moe(task, *, sparse, random_state, n_jobs, **params):
    from moensemble import moe

    cls = moe.MoEClassifier if task == "classification" else moe.MoERegressor
    # The portfolio's MoE keeps the gate it finds: the estimators' default
    # repartition='auto' costs 2-5 x the fit on dense tables and gains only where rows
    # come from hidden regimes; under a time budget the search draws it (moe_space).
    params.setdefault("repartition", "none")
    net = cls(early_stopping=True, n_iter_no_change=8, random_state=random_state, **params)
    return _scaled(net, sparse)


_FACTORIES: dict[str, Callable[..., BaseEstimator]] = {
    "linear": _linear,
    "kernel_ridge": _kernel_ridge,
    "naive_bayes": _naive_bayes,
    "sgd": _sgd,
    "linear_svm": _linear_svm,
    "knn": _knn,
    "hist_gb": _hist_gb,
    "random_forest": _forest("RandomForest"),
    "extra_trees": _forest("ExtraTrees"),
    "lightgbm": _lightgbm,
    "xgboost": _xgboost,
    "catboost": _catboost,
    "mlp": _mlp,
    "moe": _moe,
}
_LIBRARIES = {"lightgbm": "lightgbm", "xgboost": "xgboost", "catboost": "catboost"}
#: How each model kind takes sparse input ('native', 'svd' or None: not at all).
SPARSE_SUPPORT = {"linear": "native", "kernel_ridge": None, "naive_bayes": "native",
                  "knn": "native",
                  "sgd": "native", "linear_svm": "native",
                  "hist_gb": None, "random_forest": "svd", "extra_trees": "svd",
                  "lightgbm": "native", "xgboost": None, "catboost": None, "mlp": None,
                  "moe": "native"}


#: Model kinds that take a DataFrame of category and float columns with gaps as they are.
NATIVE_CATEGORICAL = frozenset({"hist_gb", "lightgbm", "xgboost"})


def model_factory(model: str) -> Callable[..., BaseEstimator]:
    """``factory(task, *, sparse, random_state, n_jobs, **params) -> estimator`` of a kind."""
    if model not in _FACTORIES:
        raise ValueError(f"Unknown model kind {model!r}; known: {sorted(_FACTORIES)}.")
    return _FACTORIES[model]


def model_available(model: str, *, sparse: bool, non_negative: bool = True) -> bool:
    """Whether a model kind can run here: its library installed, and the input it takes."""
    library = _LIBRARIES.get(model)
    if library is not None and not boosting_available(library):
        return False
    if sparse and SPARSE_SUPPORT[model] is None:
        return False
    return not (model == "naive_bayes" and sparse and not non_negative)


# Cheapest first, as measured on digits (10 classes, one thread): extra trees 3.2 s a fit,
# XGBoost 3.3, LightGBM 5.2, histogram GB 8.0, CatBoost about 45 (so it comes last). The
# boosting libraries use moderate learning rates with a few hundred rounds.
_CLASSIFICATION = [
    Config("linear", "linear", {}),
    Config("naive_bayes", "naive_bayes", {}),
    Config("knn", "knn", {}),
    Config("extra_trees", "extra_trees", {}),
    Config("lightgbm", "lightgbm", {}),
    Config("hist_gb", "hist_gb", {}),
    Config("xgboost", "xgboost", {}),
    Config("random_forest", "random_forest", {}),
    Config("mlp", "mlp", {}),
    Config("linear_C10", "linear", {"C": 10.0}),
    Config("moe", "moe", {"n_experts": 4, "top_k": 2, "max_epochs": 40, "lr": 3e-3,
                        "dropout": 0.1}),
    Config("extra_trees_leaf3", "extra_trees", {"min_samples_leaf": 3, "max_features": 0.5}),
    Config("catboost", "catboost", {}),
    Config("lightgbm_slow", "lightgbm", {"learning_rate": 0.02, "n_estimators": 600,
                                         "num_leaves": 15}),
]
# Text (sparse input): naive Bayes on counts and the linear models first, cheapest first
# (one fit on 3,600 WordNet glosses, 45 classes, loaded machine: NB 0.06 s, SGD 0.5,
# calibrated linear SVM 1.2, logistic C=10 5.2, C=1 3.0); trees on an SVD after them. No
# LightGBM: 300 rounds x 45 classes of trees took longer than a 30-s budget even when
# timed on a subsample.
_SPARSE_CLASSIFICATION = [
    Config("naive_bayes", "naive_bayes", {}),
    Config("sgd", "sgd", {}),
    Config("linear_svm", "linear_svm", {}),
    Config("linear_C10", "linear", {"C": 10.0}),
    Config("linear", "linear", {}),
    Config("naive_bayes_a01", "naive_bayes", {"alpha": 0.1}),
    Config("knn", "knn", {}),
    Config("extra_trees", "extra_trees", {}),
    Config("moe", "moe", {"n_experts": 4, "top_k": 2, "max_epochs": 40, "lr": 3e-3,
                        "dropout": 0.1}),
    Config("random_forest", "random_forest", {}),
]
# Ridge on RBF kernel features second: on diabetes (331 rows) it had the best out-of-fold
# R² of the single models in 5 of 5 splits, and lifted the final model by 0.009 R² on the
# hold-out (docs/benchmarks/automl.md, sixth pass).
_REGRESSION = [
    Config("linear", "linear", {}),
    Config("kernel_ridge", "kernel_ridge", {}),
    Config("knn", "knn", {}),
    Config("hist_gb", "hist_gb", {"learning_rate": 0.05}),
    Config("lightgbm", "lightgbm", {}),
    Config("extra_trees", "extra_trees", {}),
    Config("random_forest", "random_forest", {}),
    Config("xgboost", "xgboost", {"learning_rate": 0.05, "max_depth": 4}),
    Config("mlp", "mlp", {}),
    Config("catboost", "catboost", {}),
    Config("moe", "moe", {"n_experts": 4, "top_k": 2, "max_epochs": 40, "lr": 3e-3,
                        "dropout": 0.1}),
    Config("extra_trees_leaf5", "extra_trees", {"min_samples_leaf": 5, "max_features": 0.5}),
]


def default_portfolio(task: str, *, sparse: bool, non_negative: bool, random_state=None,
                      n_jobs: int | None = None,
                      native: bool = False) -> list[tuple[str, BaseEstimator]]:
    """The ordered ``(name, estimator)`` list an AutoML search fits first.

    Parameters
    ----------
    task : {'classification', 'regression'}
    sparse : bool
        Whether the input is a sparse matrix: entries that cannot take it are left out.
    non_negative : bool
        Whether every value is >= 0 (naive Bayes on counts needs it on sparse input).
    random_state : int or None
        Seed of every entry.
    n_jobs : int or None
        Threads of the entries that take them (forests, k-NN, boosting libraries).
    native : bool, default=False
        A raw table's native view exists (:func:`native_entries`): the gradient-boosting
        entries read its category columns and gaps as they are, so they run even when the
        encoded input is sparse (a text column), in the dense order.
    """
    if task == "classification":
        configs = _SPARSE_CLASSIFICATION if sparse and not native else _CLASSIFICATION
    else:
        configs = _REGRESSION
    out = []
    for config in configs:
        takes_native = native and config.model in NATIVE_CATEGORICAL
        if not takes_native and not model_available(config.model, sparse=sparse,
                                                    non_negative=non_negative):
            continue
        if takes_native and not model_available(config.model, sparse=False):
            continue  # its library is not installed
        make = model_factory(config.model)
        extra = {"native": True} if takes_native else {}
        out.append((config.name, make(task, sparse=sparse and not takes_native,
                                      random_state=random_state, n_jobs=n_jobs,
                                      **config.params, **extra)))
    return out


def native_entries(task: str) -> frozenset[str]:
    """Names of the default entries that take a raw table's native view."""
    configs = _CLASSIFICATION if task == "classification" else _REGRESSION
    return frozenset(c.name for c in configs if c.model in NATIVE_CATEGORICAL)
