"""How :func:`moensemble.compare` shares fits between models and spreads them over workers.

Inside one outer fold, the models of a leaderboard overlap: the single ``logreg`` is the
weighted ensemble's refit of its ``logreg`` member, and every ensemble over the same members
and inner folds needs the same inner fits. All of them go through one :class:`joblib.Memory`
(the out-of-fold engine's cache, :mod:`moensemble.ensemble._oof`), so each is computed once
and read back by the others; a cache hit is the same fitted model as a fresh fit.

With several workers, whole folds as jobs leave cores idle (3 folds on 2 workers: a second
round with one of them). The parallel plan cuts each fold into smaller jobs that never need
the same fit at the same time:

1. one chain per member of the ensembles (and per single model): the single model (fitted
   and scored), then the member's inner-fold fits, warmed through the first ensemble that
   has it (a clone restricted to that member: the cache keys of a member's fits do not depend
   on the other members); the chains of networks first, as they are the longest;
2. then every other (model, fold), each its own job: the ensembles find their members' fits
   in the cache and pay only for their combiner.

The warming time is charged to that first ensemble, as the sequential order would.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from time import process_time

import joblib
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils import _safe_indexing
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.validation import check_is_fitted, check_memory

# ---- single models fitted through the cache ---------------------------------------------------


def is_single(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` (or the end of its pipeline) is a single model, no ensemble."""
    final = estimator
    while isinstance(final, Pipeline):  # a member can be a pipeline itself (SVD, then trees)
        final = final.steps[-1][1]
    # An ensemble (it has a `memory`) caches its own parts; its whole fit is not cached.
    return isinstance(final, BaseEstimator) and "memory" not in final.get_params(deep=False)


class SharedFitPipeline(Pipeline):
    """A pipeline whose final model is fitted through its ``memory``, as ensembles refit bases.

    The weighted, stacked and gated ensembles refit their members on all the rows they are
    given through the out-of-fold engine's cache (:func:`moensemble.ensemble._oof.refit_all`).
    Inside one outer fold of :func:`~moensemble.compare`, the single model ``logreg`` (or
    ``moe``) and an ensemble's ``logreg`` member see the same features of the same rows:
    fitting the single model through that cache makes the ensemble's refit a cache hit (or
    the other way round), the same fitted model either way. The transformers before it are
    cached by the pipeline.
    """

    def fit(self, X, y=None, **params):
        if params:  # fit parameters: the plain path (the ensembles' refits take none here)
            return super().fit(X, y, **params)
        from moensemble.ensemble._oof import refit_all

        name, final = self.steps[-1]
        # A last "passthrough" step makes fit_transform return what the final model would
        # see, with the transformers fitted through the pipeline's cache.
        head = Pipeline([*self.steps[:-1], ("_final", "passthrough")], memory=self.memory,
                        transform_input=self.transform_input)
        Xt = head.fit_transform(X, y)
        (fitted,) = refit_all([final], Xt, y, memory=self.memory)
        self.steps = [*head.steps[:-1], (name, fitted)]
        return self


class SharedFitModel(SharedFitPipeline):
    """A bare model given to :func:`~moensemble.compare`, fitted through the cache; the
    fitted model is unwrapped again before it is returned."""


def share_fit(estimator: BaseEstimator, memory) -> BaseEstimator:
    """``estimator`` fitted through ``memory`` when it is a single model (else as given)."""
    if type(estimator) is Pipeline and estimator.memory is memory and is_single(estimator):
        return SharedFitPipeline(**estimator.get_params(deep=False))
    if not isinstance(estimator, Pipeline) and is_single(estimator):
        return SharedFitModel([("model", estimator)], memory=memory)
    return estimator


def share_memory(estimator: BaseEstimator, memory, members: frozenset = frozenset()
                 ) -> BaseEstimator:
    """Clone ``estimator`` with every unset ``memory`` parameter (nested too) set to ``memory``;
    a single model is then fitted through that cache (:func:`share_fit`), as one unit when
    its :func:`joblib.hash` is in ``members`` (an ensemble has that very pipeline as a
    member: a model behind its own view of the input)."""
    estimator = _with_memory(estimator, memory)
    if joblib.hash(estimator) in members and is_single(estimator):
        return SharedFitModel([("model", estimator)], memory=memory)
    return share_fit(estimator, memory)


def share_all(pairs: list, memory) -> list:
    """:func:`share_memory` of every ``(name, estimator)``, knowing the ensembles' members."""
    members = frozenset(joblib.hash(member) for _, est in pairs
                        for _, member in _members(_with_memory(est, memory)))
    return [(name, share_memory(est, memory, members)) for name, est in pairs]


def _with_memory(estimator: BaseEstimator, memory) -> BaseEstimator:
    """A clone with every unset ``memory`` set, the ensembles' members' too (an ensemble's
    ``get_params`` does not reach into its members), so that a member and the same single
    model hash alike."""
    estimator = clone(estimator)
    params = estimator.get_params(deep=True)
    keys = [k for k, v in params.items()
            if (k == "memory" or k.endswith("__memory")) and v is None
            and not _caches_itself(estimator, params, k)]
    # Outer keys first: setting a composite's parameter may replace its nested objects.
    for key in sorted(keys, key=lambda k: k.count("__")):
        estimator.set_params(**{key: memory})
    members = _members(estimator)
    if members:
        _split(estimator)[1].set_params(
            estimators=[(name, _with_memory(member, memory)) for name, member in members])
    return estimator


def _caches_itself(estimator, params: dict, key: str) -> bool:
    """Whether the ``memory`` parameter ``key`` of ``estimator`` (``params``: its deep
    parameters) is left unset because shared views (:class:`SharedTransform`) cache that
    work already: a pipeline whose transformers are all shared views (its cache would write
    each fitted view and transformed matrix a second time), or anything inside a view (the
    view's fit and transforms are cached as a whole)."""
    parts = key.split("__")[:-1]
    owners = [estimator, *(params.get("__".join(parts[:i])) for i in range(1, len(parts) + 1))]
    if any(isinstance(owner, SharedTransform) for owner in owners[:-1]):
        return True
    owner = owners[-1]
    return isinstance(owner, Pipeline) and len(owner.steps) > 1 and all(
        isinstance(step, SharedTransform) for _, step in owner.steps[:-1])


# ---- one transform of a view per fold, shared ------------------------------------------------


def _fit_transform(transformer, X, key):
    """Fit ``transformer`` on ``X``; the fitted transformer and ``X`` transformed (cacheable:
    ``key`` stands for the transformer and ``X``)."""
    Xt = transformer.fit_transform(X)
    return transformer, Xt


def _transform(transformer, X, key):
    """``X`` transformed by the fitted ``transformer`` (cacheable: ``key`` stands for both)."""
    return transformer.transform(X)


class SharedTransform(TransformerMixin, BaseEstimator):
    """A transformer whose fit and transform are computed once for every model of a fold.

    In :func:`~moensemble.compare`, every member behind the same view of the text (and each
    ensemble's copy of it, and the gated router) fits that view on the same rows and then
    transforms the same test rows: a character TF-IDF of 1,000 glosses is 0.2 s each time.
    With a ``memory`` (``compare`` sets it), the fit is cached under the transformer's
    parameters and the fit rows, and each transform under that fit and the rows it gets, so
    the second model to need them reads them back. Without one, it is ``transformer``.
    The ``transformer`` must learn from ``X`` only (``y`` is not part of the key), as TF-IDF
    and the table encoder do, and fit the same way each time (a fixed seed).

    Parameters
    ----------
    transformer : transformer
        The view, cloned in ``fit``.
    memory : str, joblib.Memory or None, default=None
        The cache; ``None``: nothing is cached.

    Attributes
    ----------
    transformer_ : transformer
        The fitted view.
    """

    _parameter_constraints: dict = {
        "transformer": [HasMethods(["fit", "transform"])],
        "memory": [None, str, HasMethods(["cache"])],
    }

    def __init__(self, transformer, memory=None):
        self.transformer = transformer
        self.memory = memory

    def fit(self, X, y=None):
        """Fit the view on ``X`` (or read it back from the cache)."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit the view and transform ``X`` in one pass over it (or read both back)."""
        return self._fit(X)

    def transform(self, X):
        """``X`` through the fitted view (or read back from the cache)."""
        check_is_fitted(self)
        cache = self._cache()
        if cache is None or self.fit_key_ is None:
            return self.transformer_.transform(X)
        key = (self.fit_key_, joblib.hash(X))
        return cache.cache(_transform, ignore=["transformer", "X"])(self.transformer_, X, key)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self)
        return self.transformer_.get_feature_names_out(input_features)

    def _fit(self, X):
        self._validate_params()
        cache = self._cache()
        transformer = clone(self.transformer)
        if cache is None:
            self.fit_key_ = None
            self.transformer_, Xt = _fit_transform(transformer, X, None)
        else:
            self.fit_key_ = joblib.hash((transformer, X))
            self.transformer_, Xt = cache.cache(_fit_transform, ignore=["transformer", "X"])(
                transformer, X, self.fit_key_)
        if hasattr(self.transformer_, "n_features_in_"):
            self.n_features_in_ = self.transformer_.n_features_in_
        if hasattr(self.transformer_, "feature_names_in_"):
            self.feature_names_in_ = self.transformer_.feature_names_in_
        return Xt

    def _cache(self):
        """The cache, or None without one or once its folder is gone (a model kept after
        ``compare`` removed its temporary cache)."""
        memory = check_memory(self.memory)
        location = getattr(memory, "location", None)
        return memory if location is not None and os.path.isdir(location) else None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        inner = self.transformer.__sklearn_tags__()
        tags.input_tags = inner.input_tags
        tags.transformer_tags = inner.transformer_tags
        return tags


# ---- the parallel plan -----------------------------------------------------------------------


def _split(estimator):
    """``(transformers before the model, the model)`` of a (shared-fit) pipeline or a model."""
    if isinstance(estimator, Pipeline):
        return [step for _, step in estimator.steps[:-1]], estimator.steps[-1][1]
    return [], estimator


def _members(estimator) -> list[tuple[str, object]]:
    """The named members of an ensemble (``estimators``), or [] for anything else."""
    _, final = _split(estimator)
    members = final.get_params(deep=False).get("estimators") if hasattr(
        final, "get_params") else None
    if not isinstance(members, list) or not all(
            isinstance(m, tuple) and len(m) == 2 for m in members):
        return []
    return members


def _is_net(estimator) -> bool:
    """A network trained for epochs (the longest fits of a board)."""
    return any(key.endswith("max_epochs") for key in estimator.get_params(deep=True))


def plan(pairs: list) -> tuple[list[list[tuple]], list[str]]:
    """The chains of step 1 (lists of ``('evaluate', name)`` / ``('warm', ensemble, member)``,
    networks first) and the models left for step 2, in board order."""
    chains: dict[str, list[tuple]] = {}
    nets: dict[str, bool] = {}
    for name, est in pairs:
        if is_single(est) and not _members(est):
            head, final = _split(est)
            key = joblib.hash((head, final))
            chains.setdefault(key, []).append(("evaluate", name))
            nets[key] = _is_net(final)
    for name, est in pairs:
        head, _ = _split(est)
        for member, member_est in _members(est):
            key = joblib.hash((head, member_est))
            chain = chains.setdefault(key, [])
            if not any(step[0] == "warm" for step in chain):  # the first ensemble warms it
                chain.append(("warm", name, member))
                nets[key] = _is_net(member_est)
    in_chains = {step[1] for chain in chains.values() for step in chain if step[0] == "evaluate"}
    order = sorted(chains, key=lambda key: (not nets[key], -len(chains[key])))
    return [chains[key] for key in order], [name for name, _ in pairs if name not in in_chains]


def _restricted(estimator, member: str):
    """A clone of the ensemble (at the end of ``estimator``) with only ``member``."""
    est = clone(estimator)
    _, final = _split(est)
    final.set_params(estimators=[m for m in final.get_params(deep=False)["estimators"]
                                 if m[0] == member])
    return est


def _warm(estimator, member: str, X, y, train) -> tuple[float, float]:
    """Fit ``member``'s inner folds (and refit) into the cache; (wall, CPU) seconds."""
    wall, cpu = time.perf_counter(), process_time()
    try:
        _restricted(estimator, member).fit(_safe_indexing(X, train), _safe_indexing(y, train))
    except Exception:  # a prefetch only: the ensemble's own fit computes what is missing
        pass
    return time.perf_counter() - wall, process_time() - cpu


def _run_chain(chain, models: dict, X, y, fold: int, train, test, evaluate: Callable):
    rows, charged = [], {}
    for step in chain:
        if step[0] == "evaluate":
            rows.append(evaluate(step[1], models[step[1]], X, y, fold, train, test))
        else:
            charged[step[1]] = _warm(models[step[1]], step[2], X, y, train)
    return rows, fold, charged


def _run_one(name: str, models: dict, X, y, fold: int, train, test, evaluate: Callable):
    return [evaluate(name, models[name], X, y, fold, train, test)], fold, {}


def run_parallel(pairs: list, X, y, folds: list, evaluate: Callable, n_jobs: int,
                 on_rows: Callable[[int], None]) -> list[dict]:
    """Every (model, fold) of ``pairs`` through ``evaluate(name, est, X, y, fold, train,
    test)``, in the two steps of the plan; ``on_rows(n)`` after each job."""
    models = dict(pairs)
    chains, rest = plan(pairs)
    rows: list[dict] = []
    charged: dict[tuple[str, int], tuple[float, float]] = {}
    first = [(_run_chain, chain, i) for chain in chains for i in range(len(folds))]
    second = [(_run_one, name, i) for i in range(len(folds)) for name in rest]
    for jobs in (first, second):
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(func)(what, models, X, y, i, *folds[i], evaluate)
            for func, what, i in jobs)
        for fold_rows, fold, spent in results:
            rows.extend(fold_rows)
            charged.update({(name, fold): seconds for name, seconds in spent.items()})
            on_rows(len(fold_rows))
    for row in rows:
        wall, cpu = charged.get((row["model"], row["fold"]), (0.0, 0.0))
        if "fit_time_s" in row:
            row["fit_time_s"] += wall
        row["cpu_time_s"] += cpu
    position = {name: j for j, (name, _) in enumerate(pairs)}
    return sorted(rows, key=lambda row: (row["fold"], position[row["model"]]))
