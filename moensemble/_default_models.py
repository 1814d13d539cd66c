"""The default contestants of :func:`moensemble.compare` (``default_models``), and how
their work is bounded as the rows grow (``scaled_settings``).

Public through :mod:`moensemble.leaderboard`.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import TruncatedSVD
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline

__all__ = ["default_models", "scaled_settings", "FULL_COST_ROWS"]


def default_models(
    task: str = "classification",
    *,
    features: BaseEstimator | None = None,
    views: dict[str, BaseEstimator] | None = None,
    sparse: bool = False,
    n_components: int = 100,
    cv: int = 3,
    quick: bool = False,
    moe_members: bool = False,
    mlp: bool = False,
    moe_params: dict | None = None,
    n_rows: int | None = None,
    random_state: int | None = 0,
) -> list[tuple[str, BaseEstimator]]:
    """Build the default contestants: strong single members, three ensembles of them, an MoE.

    Parameters
    ----------
    task : {'classification', 'regression'}, default='classification'
    features : transformer or None, default=None
        A first step put in front of every model (for example a ``TfidfVectorizer`` for raw
        texts, or a ``ColumnTransformer``). ``None``: ``X`` is already numeric.
    sparse : bool, default=False
        Whether the model input (after ``features``) is sparse, such as TF-IDF. Members that
        need dense input then get a ``TruncatedSVD(n_components)`` step, the others take the
        sparse matrix directly; when False, linear members get a ``StandardScaler``.
    views : dict of str to transformer, or None, default=None
        Two or more feature views of the raw input (for example
        :func:`moensemble.text.tfidf_view` ``'word'`` and ``'char'`` of a text column), in
        place of ``features``: each member is a pipeline behind one view, so that the
        ensembles combine members that see different features. The members above (and the
        MoE, and the gated ensemble's router) see the first view; each further view ``v``
        adds ``logreg_v`` (10 saga epochs) and ``naive_bayes_v`` (``ridge_v`` for
        regression) after them; above :data:`FULL_COST_ROWS`, ``logreg_v`` only.
        The ensembles then take the raw input themselves: it must be 2-d (a DataFrame with
        the text column, not a 1-d array of texts). The views' output is taken as sparse.
    n_components : int, default=100
        Dimensions kept by the ``TruncatedSVD`` of dense-only members (sparse input only).
    cv : int, default=3
        Inner folds of the weighted, stacked and gated ensembles (one shuffled
        ``StratifiedKFold`` / ``KFold`` seeded by ``random_state``, shared by all three).
    quick : bool, default=False
        Smaller forests and fewer MoE epochs, for a run of a minute or two.
    moe_members : bool, default=False
        Also add ``weighted_moe`` and ``stacked_moe``: the weighted and stacked ensembles
        with the MoE as one more member (same inner folds and cache, so the other members'
        out-of-fold predictions are shared; the MoE is fitted once per inner fold and once
        on all rows, for both ensembles together).
    mlp : bool, default=False
        Also add ``mlp``: the MoE's dense peer of equal active parameters, the same network
        and training with one expert twice as wide as each of the MoE's ``top_k=2`` experts
        (so it runs the parameters the MoE runs per row, less the router's).
    moe_params : dict or None, default=None
        Parameters set on the MoE after the defaults (for example ``{"max_epochs": 10}``),
        so also on its copies in the ensembles and on ``mlp``.
    n_rows : int or None, default=None
        Rows of the data the models will be cross-validated on. Above
        :data:`FULL_COST_ROWS`, a fit's work is bounded as the rows grow
        (:func:`scaled_settings`: 2 inner folds; the networks' epochs and the forest's
        trees shrink with the rows, to a floor). ``None``: the settings of any size.
    random_state : int or None, default=0

    Returns
    -------
    models : list of (str, estimator)
        ``[*members, ("weighted", ...), ("stacked", ...), ("moe", ...), ("gated", ...)]``
        (the gated ensemble: a learned top-2 router over the members), then
        ``weighted_moe`` and ``stacked_moe`` with ``moe_members``, then ``mlp`` with ``mlp``;
        each is a
        :class:`~sklearn.pipeline.Pipeline` starting with ``features`` when it is given.
        With ``views``, the members of each further view follow the first view's members,
        and every single model is a pipeline starting with its view.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"`task` must be 'classification' or 'regression'; got {task!r}.")
    if views is not None:
        _check_views(views, features)
        from moensemble._compare_jobs import SharedTransform

        # One fit and one transform of each view per fold and rows, for every model behind
        # it (in `compare`, which gives them its cache).
        views = {name: SharedTransform(view) for name, view in views.items()}
        sparse = True
    scale = scaled_settings(n_rows, quick=quick)
    members = _members(task, sparse=sparse, n_components=n_components, quick=quick,
                       scale=scale, random_state=random_state)
    if views is not None:
        members = _members_per_view(task, members, views, scale=scale,
                                    random_state=random_state)
    # One splitter for every ensemble: the same inner folds, so that in `compare` their
    # shared cache fits each member once per fold for all three.
    splitter = StratifiedKFold if task == "classification" else KFold
    inner = splitter(min(cv, scale.get("cv", cv)), shuffle=True, random_state=random_state)
    stack_C = scale.get("stack_C", STACK_C)
    models = [*members, *_ensembles(task, members, cv=inner, stack_C=stack_C,
                                    random_state=random_state)]
    moe_model = _moe(task, sparse=sparse, quick=quick, random_state=random_state)
    if "moe_max_epochs" in scale:
        moe_params = {"max_epochs": scale["moe_max_epochs"], **(moe_params or {})}
    if moe_params:
        prefix = "model__" if isinstance(moe_model, Pipeline) else ""
        moe_model.set_params(**{f"{prefix}{k}": v for k, v in moe_params.items()})
    if views is not None:
        moe_model = _behind(*next(iter(views.items())), moe_model)
    models.append(("moe", moe_model))
    gated = _gated(task, members, cv=inner, random_state=random_state)
    if views is not None:
        from sklearn.preprocessing import MaxAbsScaler

        # What the router sees without views: the first view, scaled as for sparse input.
        name, view = next(iter(views.items()))
        gated.set_params(router_preprocessor=Pipeline([(name, clone(view)),
                                                       ("scale", MaxAbsScaler())]),
                         **GATED_VIEWS_ROUTER)
    if "gated_max_epochs" in scale:
        gated.set_params(max_epochs=scale["gated_max_epochs"])
    models.append(("gated", gated))
    if moe_members:
        with_moe = [*members, ("moe", clone(moe_model))]
        models += [(f"{name}_moe", est) for name, est in
                   _ensembles(task, with_moe, cv=inner, stack_C=stack_C,
                              random_state=random_state)]
    if mlp:
        models.append(("mlp", _dense_peer(moe_model)))
    if features is not None:
        models = [(name, Pipeline([("features", clone(features)), (name, est)]))
                  for name, est in models]
    return models


# ---- default models --------------------------------------------------------------------------

#: Up to this many rows :func:`default_models` keeps its measured settings whatever
#: ``n_rows``; above, :func:`scaled_settings` bounds the work of a fit.
FULL_COST_ROWS = 10_000

#: ``C`` of the stacked classifier's meta-model (a logistic regression on the members'
#: out-of-fold probabilities) up to :data:`FULL_COST_ROWS` rows; scaled down above.
STACK_C = 10.0


def scaled_settings(n_rows: int | None, *, quick: bool = True) -> dict:
    """What :func:`default_models` changes for ``n_rows`` rows, to bound a fit's work.

    Empty up to :data:`FULL_COST_ROWS` rows (or without ``n_rows``). Above, with
    ``s = FULL_COST_ROWS / n_rows``: ``cv``, 2 inner folds (a member's inner fits then cost
    one fit on all the rows instead of two); ``moe_max_epochs``, the MoE's epochs times
    ``s``, at least 4; ``gated_max_epochs``, the gated router's 100 epochs times ``s``, at
    least 10; ``n_trees``, the extra trees' forest times ``s``, at least 25;
    ``logreg_solver``, ``'saga'`` (``tol=1e-3``, at most 30 epochs) for the logistic
    regression on sparse input instead of L-BFGS. A network trained ``e * s`` epochs on
    ``n_rows`` rows sees as many rows as one trained ``e`` epochs on ``FULL_COST_ROWS``, and
    more where the floor holds. With ``views``: ``view_members``, only the logistic
    regression (or ridge) behind each further view, no naive Bayes (on 20,000 glosses naive
    Bayes on characters was 2.8 points below its word twin). ``stack_C``: the stack's
    meta-model's ``C`` (10 up to :data:`FULL_COST_ROWS` rows) times ``s``, so that its
    penalty per row stays that of ``FULL_COST_ROWS`` rows (scikit-learn's ``C`` weighs the
    sum of the rows' losses): on a fold of the whole bundled set the meta-model took half
    the L-BFGS iterations at the same accuracy (``docs/guide/compare.md``).
    """
    if n_rows is None or n_rows <= FULL_COST_ROWS:
        return {}
    s = FULL_COST_ROWS / n_rows
    return {"cv": 2, "moe_max_epochs": max(4, math.ceil((20 if quick else 50) * s)),
            "gated_max_epochs": max(10, math.ceil(100 * s)),
            "n_trees": max(25, math.ceil((100 if quick else 300) * s)),
            "logreg_solver": "saga", "view_members": ("logreg", "ridge"),
            "stack_C": STACK_C * s}


class _WidthSVD(TruncatedSVD):
    """``TruncatedSVD`` keeping at most the input's width - 1 components: a text column of
    a small vocabulary (a few dozen terms) gives fewer TF-IDF columns than
    ``n_components``, where ``TruncatedSVD`` raises. A single column (``--max-features 1``)
    has nothing to project: it passes through, densified."""

    def fit_transform(self, X, y=None):
        self.passthrough_ = X.shape[1] < 2
        if self.passthrough_:
            self.n_features_in_ = X.shape[1]
            return self._dense(X)
        asked = self.n_components
        self.n_components = max(1, min(asked, X.shape[1] - 1))
        try:
            return super().fit_transform(X, y)
        finally:
            self.n_components = asked  # the parameter as given (clone, get_params)

    def transform(self, X):
        if getattr(self, "passthrough_", False):
            return self._dense(X)
        return super().transform(X)

    @staticmethod
    def _dense(X):
        return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def _members(task: str, *, sparse: bool, n_components: int, quick: bool,
             scale: dict, random_state: int | None) -> list[tuple[str, BaseEstimator]]:
    from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
    from sklearn.linear_model import LogisticRegression, RidgeCV
    from sklearn.naive_bayes import ComplementNB
    from sklearn.preprocessing import StandardScaler

    n_trees = scale.get("n_trees", 100 if quick else 300)
    # Dense-only members see a low-rank projection of sparse input; tabular input is used as is.
    def dense(est: BaseEstimator) -> BaseEstimator:
        if not sparse:
            return est
        return Pipeline([("svd", _WidthSVD(n_components, random_state=random_state)),
                         ("model", est)])

    def scaled(est: BaseEstimator) -> BaseEstimator:
        # Sparse TF-IDF rows are already unit-norm; centring would densify them.
        return est if sparse else Pipeline([("scale", StandardScaler()), ("model", est)])

    if task == "classification":
        logreg = LogisticRegression(C=10.0 if sparse else 1.0, max_iter=300)
        if sparse and scale.get("logreg_solver") == "saga":
            logreg.set_params(solver="saga", tol=1e-3, max_iter=30, random_state=random_state)
        members = [
            ("logreg", scaled(logreg)),
            ("extra_trees", dense(ExtraTreesClassifier(n_trees, n_jobs=1,
                                                       random_state=random_state))),
        ]
        if sparse:
            # Naive Bayes needs non-negative counts or TF-IDF: a strong, cheap text member.
            members.insert(1, ("naive_bayes", ComplementNB(alpha=0.3)))
        return members
    return [
        ("ridge", scaled(RidgeCV(alphas=np.logspace(-3, 3, 13)))),
        ("extra_trees", dense(ExtraTreesRegressor(n_trees, n_jobs=1, random_state=random_state))),
    ]


def _check_views(views, features) -> None:
    if features is not None:
        raise ValueError("`features` and `views` cannot both be given: with views, each "
                         "member is a pipeline behind its own view of the raw input.")
    if not isinstance(views, dict) or len(views) < 2 or not all(
            isinstance(name, str) and hasattr(view, "fit") for name, view in views.items()):
        raise ValueError("`views` must be a dict of two or more named transformers (name -> "
                         f"transformer), or None; got {views!r}.")


def _behind(name: str, view: BaseEstimator, est: BaseEstimator) -> Pipeline:
    """``est`` behind (a clone of) ``view``: one pipeline, its steps flattened."""
    steps = est.steps if isinstance(est, Pipeline) else [("model", est)]
    return Pipeline([(name, clone(view)), *steps])


def _members_per_view(task: str, members: list, views: dict, scale: dict,
                      random_state: int | None) -> list[tuple[str, BaseEstimator]]:
    """The members behind the first view, then the linear ones (and naive Bayes) again
    behind each further view: the strong, cheap members on sparse text."""
    (first, view), *others = views.items()
    extra = ("logreg", "naive_bayes") if task == "classification" else ("ridge",)
    if "view_members" in scale:
        extra = tuple(name for name in extra if name in scale["view_members"])
    out = [(name, _behind(first, view, est)) for name, est in members]
    for other, other_view in others:
        for name, est in members:
            if name not in extra:
                continue
            est = clone(est)
            if name == "logreg":
                # A char view has about 16x the word view's non-zeros: 10 saga epochs scored
                # L-BFGS's accuracy on the main job's folds (0.537 against 0.536, log loss
                # 1.879 against 1.881) at 1/24 of its CPU, and 30 epochs' on 20,000 glosses.
                est.set_params(solver="saga", tol=1e-3, max_iter=10, random_state=random_state)
            out.append((f"{name}_{other}", _behind(other, other_view, est)))
    return out


def _ensembles(task: str, members: list, *, cv, stack_C: float,
               random_state: int | None) -> list[tuple[str, BaseEstimator]]:
    from moensemble import ensemble

    kind = "Classifier" if task == "classification" else "Regressor"
    models = []
    for name, cls in [("weighted", f"WeightedEnsemble{kind}"),
                      ("stacked", f"StackingEnsemble{kind}")]:
        est = getattr(ensemble, cls)([(n, clone(e)) for n, e in members])
        # The bases are refit on all rows, as the single members are: bagging the fold
        # models instead (trained on (cv-1)/cv of the rows) cost the weighted ensemble
        # 0.5 points of accuracy on 3,000 glosses, so it trailed its own best member.
        models.append((name, _set_present(est, cv=cv, random_state=random_state)))
    if task == "classification":
        # Out-of-fold probabilities of many classes are small numbers: sklearn's C=1
        # under-fits them (stacking 0.465 vs 0.491 accuracy with C=10 on 3,000 glosses).
        from sklearn.linear_model import LogisticRegression

        models[1][1].set_params(final_estimator=LogisticRegression(C=stack_C, max_iter=500))
    return models


#: The gated router over the members of several views. Its linear router on 20,000 sparse
#: TF-IDF columns learnt, on the training rows, which member was right on each of them
#: (100 Adam epochs): 0.522 on the main job, below `logreg_char` (0.537), whatever its
#: input (both views side by side, the members' out-of-fold probabilities) or its top-k
#: (2, 3, every member). A little weight decay keeps it from memorising them (0.543, log
#: loss 1.854); the load-balancing loss, which pushes rows to the weak members, is off
#: (docs/guide/compare.md has the measurements).
GATED_VIEWS_ROUTER = {"aux_loss_coef": 0.0, "weight_decay": 1e-3}


def _gated(task: str, members: list, *, cv, random_state: int | None) -> BaseEstimator:
    from moensemble import gated

    kind = "Classifier" if task == "classification" else "Regressor"
    # top-2: on 3,000 glosses (TF-IDF, the CLI's outer folds, unshuffled inner folds) 0.495
    # accuracy against 0.489 for top-1, in half its fit time; 0.490 in the default run.
    est = getattr(gated, f"GatedEnsemble{kind}")([(n, clone(e)) for n, e in members],
                                                  router="topk", top_k=2)
    return _set_present(est, cv=cv, random_state=random_state)


def _moe(task: str, *, sparse: bool, quick: bool, random_state: int | None) -> BaseEstimator:
    from moensemble import moe

    est = moe.MoEClassifier if task == "classification" else moe.MoERegressor
    # Every choice written out, so that a change of the estimator's defaults leaves the
    # leaderboard's MoE (and the README's numbers) as measured.
    model = _set_present(est(), n_experts=8, top_k=2, router="topk", gating="expert",
                         init="random", router_init="random", encoder=None, n_layers=1,
                         activation="relu", gate_dropout=0.0, shared_expert=False,
                         z_loss_coef=1e-3, optimizer="auto", weight_decay=0.0,
                         router_lr_scale=1.0, early_stopping=False, random_state=random_state)
    if quick:
        # Measured on 3,000 WordNet glosses (TF-IDF, the CLI's 3 folds), 20 epochs: 32-unit
        # experts 0.460 accuracy / 2.151 log loss (a bottleneck below 41 classes), 64 units
        # + dropout 0.3 0.478 / 2.053, 128 units + dropout 0.3 0.489 / 1.973 (the best log
        # loss of the leaderboard) at 6.6 s a fold, 256 units 0.492 / 2.038 at 14.7 s.
        model = _set_present(model, expert_hidden=(128,), dropout=0.3, batch_size=256,
                             lr=3e-3, max_epochs=20)
    if sparse:
        # The text router collapses onto 2 of 8 experts with the load-balancing loss (load
        # violation 2.83 on the main job's folds); the DeepSeek-V3 bias, nudged 0.02 a batch,
        # keeps all 8 live (violation 0.50 on the first fold) at no cost in accuracy (0.493
        # vs 0.489 there). The cooperative mixture stays: the likelihood one scored 0.482 on
        # that fold. docs/guide/moe-quality.md has the measurements.
        model = _set_present(model, mixture="logits", balance="bias", bias_update_rate=0.02)
    if sparse:
        return model
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("model", model)])


def _dense_peer(moe_model: BaseEstimator) -> BaseEstimator:
    """The MoE with one expert as wide as its ``top_k`` experts side by side: a dense MLP of
    equal active parameters (less the router's), trained the same way (one expert balances
    trivially)."""
    peer = clone(moe_model)
    prefix = "model__" if isinstance(peer, Pipeline) else ""
    params = peer.get_params()
    widths = params[f"{prefix}expert_hidden"]
    widths = (widths,) if isinstance(widths, int) else tuple(widths)
    wide = tuple(params[f"{prefix}top_k"] * w for w in widths)
    return peer.set_params(**{f"{prefix}n_experts": 1, f"{prefix}top_k": 1,
                              f"{prefix}expert_hidden": wide})


def _set_present(estimator: BaseEstimator, **params) -> BaseEstimator:
    """Set the ``params`` that ``estimator`` has; ignore the others."""
    known = estimator.get_params(deep=False)
    return estimator.set_params(**{k: v for k, v in params.items() if k in known})
