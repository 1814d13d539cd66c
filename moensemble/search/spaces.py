"""Define-by-run Optuna search spaces for each family.

A space is a function ``space(trial) -> dict`` that asks the trial for values and
returns estimator parameters (names that ``set_params`` accepts), or returns a
whole estimator. Spaces are code, so conditional parameters read naturally:
``top_k`` is only asked for when the router uses it, and its range depends on
the ``n_experts`` value drawn in the same trial.

Every range argument takes ``(low, high)`` to search, or a single value to fix
it; categorical arguments take a sequence of choices (one choice fixes it).
Use :func:`functools.partial` to bind arguments, e.g.
``partial(moe_space, n_experts=(2, 8), max_epochs=20)``.

``prefix`` is prepended to every Optuna parameter name, so that spaces of several
families can share one study without their names colliding (the AutoML
estimators use ``"moe__"``, ``"weighted__"``, ...). The returned estimator
parameters are never prefixed.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Any

import optuna

__all__ = ["moe_space", "weighted_space", "stacking_space", "gated_space"]

_MOE_ROUTERS = ("softmax", "topk", "switch", "expert_choice")
_TOP_K_ROUTERS = ("topk", "expert_choice")  # routers that read `top_k`
_MIXTURES = ("logits", "likelihood")
_NUM_EMBEDDINGS = (None, "periodic", "piecewise")
_WEIGHTINGS = ("greedy", "optimize", "uniform")


# --------------------------------------------------------------------------- helpers
def _as_range(value: Any, name: str, *, integer: bool, low_bound: float | None = None):
    """Return ``(low, high)``; a scalar fixes the parameter (low == high)."""
    if isinstance(value, Real) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        low, high = value
    else:
        raise ValueError(
            f"`{name}` must be a number or a (low, high) pair; got {value!r}."
        )
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, Real):
            raise ValueError(f"`{name}` bounds must be numbers; got {value!r}.")
        if integer and int(v) != v:
            raise ValueError(f"`{name}` bounds must be integers; got {value!r}.")
    if low > high:
        raise ValueError(f"`{name}` is an empty range: low={low} > high={high}.")
    if low_bound is not None and low < low_bound:
        raise ValueError(f"`{name}` must be >= {low_bound}; got {value!r}.")
    return (int(low), int(high)) if integer else (float(low), float(high))


def _as_choices(value: Any, name: str, *, allowed: Sequence | None = None) -> list:
    if isinstance(value, str) or not isinstance(value, Sequence):
        value = [value]
    choices = list(value)
    if not choices:
        raise ValueError(f"`{name}` is an empty list of choices.")
    if allowed is not None:
        unknown = [c for c in choices if c not in allowed]
        if unknown:
            raise ValueError(f"`{name}` has unknown choices {unknown}; valid: {list(allowed)}.")
    return choices


def _int(trial: optuna.Trial, name: str, bounds: tuple[int, int], log: bool = False) -> int:
    low, high = bounds
    if low == high:
        return low
    return trial.suggest_int(name, low, high, log=log and low > 0)


def _float(trial: optuna.Trial, name: str, bounds: tuple[float, float], log: bool = False):
    low, high = bounds
    if low == high:
        return low
    return trial.suggest_float(name, low, high, log=log and low > 0)


def _categorical(trial: optuna.Trial, name: str, choices: list):
    if len(choices) == 1:
        return choices[0]
    return trial.suggest_categorical(name, choices)


# --------------------------------------------------------------------------- MoE
def moe_space(
    trial: optuna.Trial,
    *,
    n_experts: int | tuple[int, int] = (2, 32),
    top_k: int | tuple[int, int] = (1, 4),
    router: str | Sequence[str] = _MOE_ROUTERS,
    expert_width: int | tuple[int, int] = (16, 256),
    expert_depth: int | tuple[int, int] = (0, 2),
    dropout: float | tuple[float, float] = (0.0, 0.5),
    lr: float | tuple[float, float] = (1e-4, 3e-2),
    batch_size: int | Sequence[int] = (32, 64, 128, 256),
    aux_loss_coef: float | tuple[float, float] = (1e-4, 1e-1),
    capacity_factor: float | tuple[float, float] = (1.0, 2.0),
    max_epochs: int | tuple[int, int] = (5, 50),
    prefix: str = "",
    encoder: int | None | Sequence[int | None] = (None, 64, 256),
    n_layers: int | tuple[int, int] = (1, 2),
    mixture: str | Sequence[str] = _MIXTURES,
    router_lr_scale: float | tuple[float, float] = (1.0, 30.0),
    num_embedding: str | None | Sequence[str | None] = (None,),
    router_l1: float | str | Sequence[float | str] = ("auto", 0.0),
    n_init: int | tuple[int, int] = 1,
    sparse: bool | None = None,
    em_rounds: int | tuple[int, int] = (0, 5),
    repartition: str | Sequence[str] = ("none", "auto"),
) -> dict[str, Any]:
    """Search space of :class:`moensemble.MoEClassifier` / :class:`~moensemble.MoERegressor`.

    Parameters
    ----------
    trial : optuna.Trial
        The trial to draw values from.
    n_experts, top_k, expert_width, expert_depth, max_epochs : int or (int, int)
        Integer ranges; ``n_experts`` and ``expert_width`` are drawn on a log
        scale. ``expert_depth`` may start at 0: linear experts (``expert_hidden=()``,
        the Bayes-optimal expert on the hidden-regime tasks of
        ``benchmarks/bench_regimes.py``); ``expert_width`` is then not drawn.
        ``top_k`` is drawn in ``[low, min(high, n_experts)]`` and only for the
        routers that read it, 'topk' and 'expert_choice' (rows per expert);
        'softmax' is dense and 'switch' is top-1.
    router : str or sequence of str
        Routers to choose from among 'softmax', 'topk', 'switch', 'expert_choice'.
    dropout, lr, aux_loss_coef, capacity_factor : float or (float, float)
        Float ranges; ``lr`` and ``aux_loss_coef`` are drawn on a log scale,
        ``capacity_factor`` only for 'switch' and 'expert_choice'.
    batch_size : int or sequence of int
        Batch sizes to choose from.
    prefix : str, default=""
        Prepended to every Optuna parameter name.
    encoder : int, None or sequence of (int or None), default=(None, 64, 256)
        Choices of the shared encoder: ``None`` (experts on the raw features) or the
        width of a one-layer encoder.
    n_layers : int or (int, int), default=(1, 2)
        MoE blocks on top of the encoder; drawn only when the encoder is not None
        (blocks without an encoder cannot take sparse input), else 1.
    mixture : str or sequence of str, default=('logits', 'likelihood')
        How the experts are combined (cooperative logits or the competitive mixture
        likelihood); drawn only without an encoder (MoE blocks always mix
        cooperatively), else ``'logits'``.
    router_lr_scale : float or (float, float), default=(1.0, 30.0)
        The routers' learning rate as a multiple of ``lr``, drawn on a log scale.
    num_embedding : None, str or sequence of (None or str), default=(None,)
        Choices of numeric feature embedding among None, 'periodic', 'piecewise'
        (dense input only: the estimators refuse them on sparse X). The default
        draws nothing.
    router_l1 : float, 'auto' or sequence of them, default=('auto', 0.0)
        Choices of the group lasso on the router's input weights (a sparse gate;
        0 is off). ``'auto'`` is the estimators' default: 0.8 on a dense, mostly nonzero
        table of >= 10 features, 0 on sparse or mostly-zero input, where the lasso cost
        accuracy (compare's text job), so the default choices only turn it off or leave
        it where it acts; a number acts on every input. Drawn only for a single MoE
        layer on the raw features (no encoder) of input not known to be sparse; else 0.
        Values >= 1 can zero every feature under Adam (its steps are at most about the
        learning rate, the lasso's threshold is ``router_l1`` times it).
    n_init : int or (int, int), default=1
        Restarts per fit (the lowest final loss kept); each multiplies the fit time, so
        the default draws none.
    em_rounds : int or (int, int), default=(0, 5)
        EM rounds for the gate (refitted to the competitive mixture's likelihood with the
        experts fixed); drawn only where they apply, with the competitive mixture
        (``mixture='likelihood'``) on a single layer (no encoder), else 0.
    repartition : str or sequence of str, default=('none', 'auto')
        Choices among 'none', 'local_rules' (the gate re-partitioned from the rows'
        local linear rules once the router's lasso has chosen its features) and 'auto'
        (the estimators' default: the same, refined and kept only if it wins on held-out
        rows; about 2 x the fit time where it applies, and 'none' wherever
        'local_rules' cannot apply); drawn only where it applies: a drawn ``router_l1``
        other than 0 on a single layer without ``encoder`` or ``num_embedding``, input not
        known to be sparse; else 'none'. With ``router_l1='auto'`` on a table where it
        resolves to 0 (fewer than 10 features) 'local_rules' fails the trial's fit with a
        message naming ``repartition`` ('auto' is then 'none').
    sparse : bool or None, default=None
        Whether the search's input is sparse (CSR text). ``True``: ``router_l1`` is not
        drawn (0: on sparse input ``'auto'`` resolves to 0 and a drawn lasso only cost
        accuracy). ``None``: unknown, drawn as above.

    Returns
    -------
    params : dict
        Keyword arguments of the MoE estimators: ``n_experts``, ``top_k``,
        ``router``, ``expert_hidden`` (a tuple of widths), ``dropout``, ``lr``,
        ``batch_size``, ``aux_loss_coef``, ``capacity_factor``, ``max_epochs``,
        ``encoder`` (None or a 1-tuple of widths), ``n_layers``, ``mixture``,
        ``router_lr_scale``, ``num_embedding``, ``router_l1``, ``n_init``, ``em_rounds``,
        ``repartition``.

    Raises
    ------
    ValueError
        For an empty or inconsistent space, e.g. a ``top_k`` range whose low end
        is above every possible ``n_experts``.
    """
    n_experts_r = _as_range(n_experts, "n_experts", integer=True, low_bound=1)
    top_k_r = _as_range(top_k, "top_k", integer=True, low_bound=1)
    routers = _as_choices(router, "router", allowed=_MOE_ROUTERS)
    if set(routers) & set(_TOP_K_ROUTERS) and top_k_r[0] > n_experts_r[0]:
        raise ValueError(
            f"Inconsistent MoE space: top_k starts at {top_k_r[0]} but n_experts can be as "
            f"small as {n_experts_r[0]}; top_k must not exceed n_experts. Lower `top_k` or raise "
            "the low end of `n_experts`."
        )
    width_r = _as_range(expert_width, "expert_width", integer=True, low_bound=1)
    depth_r = _as_range(expert_depth, "expert_depth", integer=True, low_bound=0)
    dropout_r = _as_range(dropout, "dropout", integer=False, low_bound=0.0)
    if dropout_r[1] >= 1.0:
        raise ValueError(f"`dropout` must be below 1; got {dropout!r}.")
    lr_r = _as_range(lr, "lr", integer=False)
    if lr_r[0] <= 0:
        raise ValueError(f"`lr` must be positive; got {lr!r}.")
    batch_sizes = _as_choices(batch_size, "batch_size")
    aux_r = _as_range(aux_loss_coef, "aux_loss_coef", integer=False, low_bound=0.0)
    capacity_r = _as_range(capacity_factor, "capacity_factor", integer=False)
    if capacity_r[0] <= 0:
        raise ValueError(f"`capacity_factor` must be positive; got {capacity_factor!r}.")
    epochs_r = _as_range(max_epochs, "max_epochs", integer=True, low_bound=1)
    encoders = _as_choices(encoder, "encoder")
    bad = [e for e in encoders if e is not None and (
        isinstance(e, bool) or not isinstance(e, int) or e < 1)]
    if bad:
        raise ValueError(f"`encoder` choices must be None or positive ints (widths); got {bad}.")
    layers_r = _as_range(n_layers, "n_layers", integer=True, low_bound=1)
    mixtures = _as_choices(mixture, "mixture", allowed=_MIXTURES)
    router_lr_r = _as_range(router_lr_scale, "router_lr_scale", integer=False)
    if router_lr_r[0] <= 0:
        raise ValueError(f"`router_lr_scale` must be positive; got {router_lr_scale!r}.")

    embeddings = _as_choices(num_embedding, "num_embedding")
    bad = [e for e in embeddings if e not in _NUM_EMBEDDINGS]
    if bad:
        raise ValueError(f"`num_embedding` choices must be among {_NUM_EMBEDDINGS}; got {bad}.")

    l1_choices = _as_choices(router_l1, "router_l1")
    bad = [v for v in l1_choices if v != "auto" and (
        isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0)]
    if bad:
        raise ValueError(f"`router_l1` choices must be numbers >= 0 or 'auto'; got {bad}.")
    n_init_r = _as_range(n_init, "n_init", integer=True, low_bound=1)
    em_r = _as_range(em_rounds, "em_rounds", integer=True, low_bound=0)
    repartitions = _as_choices(repartition, "repartition", allowed=("none", "local_rules", "auto"))

    p = prefix
    params: dict[str, Any] = {}
    params["n_experts"] = _int(trial, f"{p}n_experts", n_experts_r, log=True)
    params["router"] = _categorical(trial, f"{p}router", routers)
    if params["router"] in _TOP_K_ROUTERS:
        top_k_high = min(top_k_r[1], params["n_experts"])
        params["top_k"] = _int(trial, f"{p}top_k", (top_k_r[0], top_k_high))
    else:
        params["top_k"] = 1
    if params["router"] in ("switch", "expert_choice"):
        params["capacity_factor"] = _float(trial, f"{p}capacity_factor", capacity_r)
    depth = _int(trial, f"{p}expert_depth", depth_r)
    width = _int(trial, f"{p}expert_width", width_r, log=True) if depth else 0
    params["expert_hidden"] = (width,) * depth
    params["dropout"] = _float(trial, f"{p}dropout", dropout_r)
    params["lr"] = _float(trial, f"{p}lr", lr_r, log=True)
    params["batch_size"] = _categorical(trial, f"{p}batch_size", batch_sizes)
    if params["router"] != "softmax":  # the dense router needs no balancing
        params["aux_loss_coef"] = _float(trial, f"{p}aux_loss_coef", aux_r, log=True)
    params["max_epochs"] = _int(trial, f"{p}max_epochs", epochs_r)
    width = _categorical(trial, f"{p}encoder", encoders)
    params["encoder"] = None if width is None else (width,)
    params["n_layers"] = 1 if width is None else _int(trial, f"{p}n_layers", layers_r)
    params["mixture"] = "logits" if width is not None else _categorical(
        trial, f"{p}mixture", mixtures)
    params["router_lr_scale"] = _float(trial, f"{p}router_lr_scale", router_lr_r, log=True)
    params["num_embedding"] = _categorical(trial, f"{p}num_embedding", embeddings)
    if width is not None or sparse:
        params["router_l1"] = 0.0
    else:
        l1 = _categorical(trial, f"{p}router_l1", l1_choices)
        params["router_l1"] = l1 if l1 == "auto" else float(l1)
    params["n_init"] = _int(trial, f"{p}n_init", n_init_r)
    competitive = params["mixture"] == "likelihood" and params["num_embedding"] is None and (
        params["router"] == "softmax" or params["top_k"] >= 2)
    params["em_rounds"] = _int(trial, f"{p}em_rounds", em_r) if competitive else 0
    lasso = params["router_l1"] != 0.0 and params["num_embedding"] is None
    params["repartition"] = _categorical(trial, f"{p}repartition", repartitions) if (
        lasso) else "none"
    return params


# --------------------------------------------------------------------------- weighted
def weighted_space(
    trial: optuna.Trial,
    members: Sequence[tuple[str, Any]],
    *,
    weighting: str | Sequence[str] = _WEIGHTINGS,
    n_iter: int | tuple[int, int] = (10, 100),
    n_iter_param: str = "n_iter",
    weighting_param: str = "weighting",
    prefix: str = "",
) -> dict[str, Any]:
    """Search space of the weighted ensembles: member subset, weighting, greedy iterations.

    Parameters
    ----------
    trial : optuna.Trial
        The trial to draw values from.
    members : list of (str, estimator)
        Candidate members. Each is kept or dropped by a boolean
        ``use_<name>``; when a trial drops them all, one member is drawn by
        ``fallback_member`` so the ensemble is never empty.
    weighting : str or sequence of str
        Weighting methods to choose from ('greedy', 'optimize', 'uniform' or what
        the ensemble's ``weighting_param`` accepts).
    n_iter : int or (int, int)
        Greedy ensemble-selection iterations (only drawn for 'greedy').
    n_iter_param : str, default="n_iter"
        Name of the ensemble parameter that takes the greedy iterations.
    weighting_param : str, default="weighting"
        Name of the ensemble parameter that takes the weighting method.
    prefix : str, default=""
        Prepended to every Optuna parameter name.

    Returns
    -------
    params : dict
        ``estimators`` (the kept members), the method under ``weighting_param``
        and, for 'greedy', the iterations under ``n_iter_param``.
    """
    members = list(members)
    if not members:
        raise ValueError("`members` is empty: the weighted space needs at least one member.")
    names = [name for name, _ in members]
    if len(set(names)) != len(names):
        raise ValueError(f"`members` names must be unique; got {names}.")
    weightings = _as_choices(weighting, "weighting")
    n_iter_r = _as_range(n_iter, "n_iter", integer=True, low_bound=1)

    p = prefix
    kept = [
        (name, est)
        for name, est in members
        if len(members) == 1 or trial.suggest_categorical(f"{p}use_{name}", [True, False])
    ]
    if not kept:
        fallback = trial.suggest_categorical(f"{p}fallback_member", names)
        kept = [m for m in members if m[0] == fallback]
    params: dict[str, Any] = {"estimators": kept}
    params[weighting_param] = _categorical(trial, f"{p}weighting", weightings)
    if params[weighting_param] == "greedy":
        params[n_iter_param] = _int(trial, f"{p}n_iter", n_iter_r, log=True)
    return params


# --------------------------------------------------------------------------- stacking
def stacking_space(
    trial: optuna.Trial,
    *,
    task: str = "classification",
    final_estimator: str | Sequence[str] = ("linear", "forest"),
    regularization: float | tuple[float, float] = (1e-3, 1e2),
    passthrough: bool | Sequence[bool] = (False, True),
    layers: int | tuple[int, int] = 1,
    random_state: int | None = None,
    prefix: str = "",
) -> dict[str, Any]:
    """Search space of the stacked ensembles: final estimator, its regularisation, levels.

    Parameters
    ----------
    trial : optuna.Trial
        The trial to draw values from.
    task : {'classification', 'regression'}
        Picks classifiers or regressors as final estimators.
    final_estimator : str or sequence of str
        'linear' (a scaled LogisticRegression with inverse strength ``C`` / Ridge
        with ``alpha``, both drawn from ``regularization`` on a log scale) or 'forest'
        (a small random forest whose ``min_samples_leaf`` is drawn instead).
    regularization : float or (float, float)
        Range of ``C`` (classification) or ``alpha`` (regression).
    passthrough : bool or sequence of bool
        Whether the final estimator also sees the original features.
    layers : int or (int, int)
        Number of stacking levels; more than one is returned as ``layers``
        (omitted for one level, the estimator's default).
    random_state : int or None
        Seed of the forest final estimator.
    prefix : str, default=""
        Prepended to every Optuna parameter name.

    Returns
    -------
    params : dict
        ``final_estimator`` (an unfitted estimator), ``passthrough`` and, for
        more than one level, ``layers``.
    """
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if task not in ("classification", "regression"):
        raise ValueError(f"`task` must be 'classification' or 'regression'; got {task!r}.")
    finals = _as_choices(final_estimator, "final_estimator", allowed=("linear", "forest"))
    reg_r = _as_range(regularization, "regularization", integer=False)
    if reg_r[0] <= 0:
        raise ValueError(f"`regularization` must be positive; got {regularization!r}.")
    passthroughs = _as_choices(passthrough, "passthrough", allowed=(False, True))
    layers_r = _as_range(layers, "layers", integer=True, low_bound=1)

    p = prefix
    kind = _categorical(trial, f"{p}final_estimator", finals)
    if kind == "linear":
        strength = _float(trial, f"{p}regularization", reg_r, log=True)
        linear = (
            LogisticRegression(C=strength, max_iter=1000)
            if task == "classification"
            else Ridge(alpha=strength)
        )
        # Scaled, so that the strength means the same with passthrough features.
        final = make_pipeline(StandardScaler(with_mean=False), linear)
    else:
        leaf = _int(trial, f"{p}min_samples_leaf", (1, 20), log=True)
        forest = RandomForestClassifier if task == "classification" else RandomForestRegressor
        final = forest(n_estimators=50, min_samples_leaf=leaf, random_state=random_state)
    params: dict[str, Any] = {"final_estimator": final}
    params["passthrough"] = _categorical(trial, f"{p}passthrough", passthroughs)
    n_layers = _int(trial, f"{p}layers", layers_r)
    if n_layers > 1:
        params["layers"] = n_layers
    return params


# --------------------------------------------------------------------------- gated
def gated_space(
    trial: optuna.Trial,
    *,
    n_members: int,
    router: str | Sequence[str] = ("topk", "softmax"),
    top_k: int | tuple[int, int] = (1, 3),
    router_width: int | Sequence[int] = (0, 32),
    features: str | Sequence[str] = ("input", "input+oof"),
    lr: float | tuple[float, float] = (1e-3, 3e-2),
    max_epochs: int | tuple[int, int] = (10, 80),
    prefix: str = "",
) -> dict[str, Any]:
    """Search space of the gated ensembles (a learned router over fitted models).

    Parameters
    ----------
    trial : optuna.Trial
        The trial to draw values from.
    n_members : int
        Number of base models the router chooses among; caps ``top_k``.
    router : str or sequence of str
        'topk' (each row goes to its ``top_k`` best-scored bases) and/or 'softmax'.
    top_k : int or (int, int)
        Drawn in ``[low, min(high, n_members)]`` for 'topk'.
    router_width : int or sequence of int
        Width of one hidden ReLU layer in front of the gate; 0 is a linear router.
    features : str or sequence of str
        What the router sees: 'input' and/or 'input+oof'.
    lr : float or (float, float)
        Learning rate range (log scale).
    max_epochs : int or (int, int)
        Epochs range.
    prefix : str, default=""
        Prepended to every Optuna parameter name.

    Returns
    -------
    params : dict
        ``router``, ``top_k``, ``router_hidden``, ``features``, ``lr``, ``max_epochs``.
    """
    if n_members < 1:
        raise ValueError(f"`n_members` must be at least 1; got {n_members}.")
    routers = _as_choices(router, "router", allowed=("topk", "softmax"))
    top_k_r = _as_range(top_k, "top_k", integer=True, low_bound=1)
    if "topk" in routers and top_k_r[0] > n_members:
        raise ValueError(
            f"Inconsistent gated space: top_k starts at {top_k_r[0]} but there are only "
            f"{n_members} members."
        )
    widths = _as_choices(router_width, "router_width")
    feature_sets = _as_choices(features, "features", allowed=("input", "input+oof"))
    lr_r = _as_range(lr, "lr", integer=False)
    epochs_r = _as_range(max_epochs, "max_epochs", integer=True, low_bound=1)

    p = prefix
    params: dict[str, Any] = {"router": _categorical(trial, f"{p}router", routers)}
    if params["router"] == "topk":
        params["top_k"] = _int(trial, f"{p}top_k", (top_k_r[0], min(top_k_r[1], n_members)))
    width = _categorical(trial, f"{p}router_width", widths)
    params["router_hidden"] = (width,) if width else ()
    params["features"] = _categorical(trial, f"{p}features", feature_sets)
    params["lr"] = _float(trial, f"{p}lr", lr_r, log=True)
    params["max_epochs"] = _int(trial, f"{p}max_epochs", epochs_r)
    return params
