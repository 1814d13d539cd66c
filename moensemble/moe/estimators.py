"""scikit-learn estimators around the sparse mixture-of-experts network."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.cluster import MiniBatchKMeans
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from .._validation import check_precision, resolve_device
from .net import (
    MoENetClassifier,
    MoENetRegressor,
    RoutingStats,
    RowDataset,
    build_module,
    collate_batch,
)
from .routing import ROUTERS, make_router
from .variants import build_experts, describe_spec_error, split_expert, upcycle

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
# Relative noise on upcycled / split expert copies: enough to break the tie between copies,
# small enough that the network's function barely moves.
_COPY_NOISE = 0.01


_KMEANS_MAX_ROWS = 20_000
# Router logits are -T ||x - c_i||^2 / (mean squared distance of a row to its centroid).
_KMEANS_TEMPERATURE = 1.0


def kmeans_router_init(router, X, seed: int) -> None:
    """Set ``router.linear`` so that its logits split the rows as k-means does.

    MiniBatchKMeans with one cluster per expert on (at most ``_KMEANS_MAX_ROWS`` of) the
    training rows; expert ``i``'s logit is ``t (2 c_i.x - ||c_i||^2)``, i.e.
    ``-t ||x - c_i||^2`` up to a per-row constant, with ``t`` = ``_KMEANS_TEMPERATURE``
    over the mean squared distance of a row to its centroid.
    """
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    rows = np.sort(rng.choice(n, _KMEANS_MAX_ROWS, replace=False)) if n > _KMEANS_MAX_ROWS \
        else slice(None)
    Xs = X[rows]
    n_clusters = min(router.n_experts, Xs.shape[0])
    km = MiniBatchKMeans(n_clusters, n_init=3, random_state=seed % (2**31)).fit(Xs)
    centers = np.zeros((router.n_experts, X.shape[1]))
    centers[:n_clusters] = km.cluster_centers_
    t = _KMEANS_TEMPERATURE / max(km.inertia_ / Xs.shape[0], 1e-12)
    linear = router.linear
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(2 * t * centers, dtype=linear.weight.dtype))
        bias = -t * (centers**2).sum(1)
        bias[n_clusters:] = bias[:n_clusters].min() if n_clusters else 0.0
        linear.bias.copy_(torch.as_tensor(bias, dtype=linear.bias.dtype))


class _BaseMoE(BaseEstimator):
    """Shared parameters, fitting and routing introspection of the MoE estimators."""

    _parameter_constraints: dict = {
        "n_experts": [Interval(Integral, 1, None, closed="left")],
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "router": [StrOptions(set(ROUTERS))],
        "expert_hidden": [tuple, list, Interval(Integral, 1, None, closed="left")],
        "experts": [list, None],
        "gating": [StrOptions({"expert", "elementwise"})],
        "init": [StrOptions({"random", "upcycle"})],
        "router_init": [StrOptions({"random", "kmeans"})],
        "upcycle_epochs": [Interval(Integral, 1, None, closed="left")],
        "upcycle_drop": [Interval(Real, 0, 1, closed="both")],
        "grow_steps": [Interval(Integral, 0, None, closed="left")],
        "grow_epochs": [Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"relu", "gelu", "tanh", "silu"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "gate_dropout": [Interval(Real, 0, 1, closed="left")],
        "shared_expert": ["boolean"],
        "aux_loss_coef": [Interval(Real, 0, None, closed="left")],
        "z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "balance": [StrOptions({"aux_loss", "bias"})],
        "bias_update_rate": [Interval(Real, 0, None, closed="left")],
        "capacity_factor": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "router_lr_scale": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(OPTIMIZERS)), callable],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"float32", "bfloat16", "float16"})],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        n_experts: int = 8,
        top_k: int = 2,
        router: str = "topk",
        expert_hidden: tuple[int, ...] | int = (64,),
        experts: list | None = None,
        gating: str = "expert",
        init: str = "random",
        router_init: str = "random",
        upcycle_epochs: int = 10,
        upcycle_drop: float = 0.0,
        grow_steps: int = 0,
        grow_epochs: int = 5,
        activation: str = "relu",
        dropout: float = 0.0,
        gate_dropout: float = 0.0,
        shared_expert: bool = False,
        aux_loss_coef: float = 1e-2,
        z_loss_coef: float = 1e-3,
        balance: str = "aux_loss",
        bias_update_rate: float = 1e-3,
        capacity_factor: float = 1.25,
        max_epochs: int = 50,
        lr: float = 1e-3,
        router_lr_scale: float = 1.0,
        batch_size: int = 128,
        optimizer="adam",
        weight_decay: float = 0.0,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        device: str = "cpu",
        precision: str = "float32",
        callbacks: list | None = None,
        random_state=None,
        verbose: int = 0,
    ) -> None:
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = router
        self.expert_hidden = expert_hidden
        self.experts = experts
        self.gating = gating
        self.init = init
        self.router_init = router_init
        self.upcycle_epochs = upcycle_epochs
        self.upcycle_drop = upcycle_drop
        self.grow_steps = grow_steps
        self.grow_epochs = grow_epochs
        self.activation = activation
        self.dropout = dropout
        self.gate_dropout = gate_dropout
        self.shared_expert = shared_expert
        self.aux_loss_coef = aux_loss_coef
        self.z_loss_coef = z_loss_coef
        self.balance = balance
        self.bias_update_rate = bias_update_rate
        self.capacity_factor = capacity_factor
        self.max_epochs = max_epochs
        self.lr = lr
        self.router_lr_scale = router_lr_scale
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.device = device
        self.precision = precision
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    # -- fitting ------------------------------------------------------------------------
    def _check_params(self) -> tuple[tuple[int, ...], str]:
        """Checks that need more than one parameter or more than a type/range."""
        self._check_experts()
        n_experts = self.n_experts if self.experts is None else len(self.experts)
        if self.top_k > n_experts:
            source = "`n_experts`" if self.experts is None else "len(`experts`)"
            raise ValueError(
                f"`top_k`={self.top_k} must be <= {source}={n_experts}: a row cannot "
                "be routed to more experts than there are."
            )
        hidden = (self.expert_hidden,) if isinstance(self.expert_hidden, Integral) else tuple(
            self.expert_hidden
        )
        if not all(isinstance(h, Integral) and h >= 1 for h in hidden):
            raise ValueError(
                f"`expert_hidden` must be a positive int or a tuple of positive ints; "
                f"got {self.expert_hidden!r}."
            )
        device = resolve_device(self.device)
        check_precision(self.precision, device)
        return hidden, device

    def _check_experts(self) -> None:
        if self.experts is None:
            return
        if len(self.experts) == 0:
            raise ValueError("`experts` must be None or a non-empty list of expert specs.")
        for i, spec in enumerate(self.experts):
            why = describe_spec_error(spec)
            if why is not None:
                raise ValueError(
                    f"`experts[{i}]`: {why}. A spec is 'linear', a hidden width or tuple of "
                    "widths such as (64, 64), an nn.Module, or a factory "
                    "f(in_features, out_features) -> nn.Module."
                )
        if self.init == "upcycle":
            raise ValueError(
                "`init`='upcycle' copies one dense expert into identical experts; it cannot "
                "be combined with heterogeneous `experts`. Use `experts`=None."
            )

    def _fit_net(self, X, y: np.ndarray, net_cls, criterion, out_features: int) -> None:
        hidden, device = self._check_params()
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, valid = self._split(X, y, seed)
        self.n_experts_ = self.n_experts if self.experts is None else len(self.experts)
        self.dense_history_ = None
        devices = [device] if device.startswith("cuda") else []
        # Fork the RNG so fitting is reproducible without touching the user's torch seed.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            if self.init == "upcycle":
                module = self._upcycled_module(
                    net_cls, criterion, train, valid, device, out_features, hidden
                )
            else:
                module = self._build_module(X.shape[1], out_features, hidden)
            if self.router_init == "kmeans":
                kmeans_router_init(module.router, train.X, seed)
            self.net_ = self._make_net(net_cls, criterion, module, valid, device)
            self.net_.fit(train, None)
        self._finish_fit(X)
        for _ in range(self.grow_steps):
            self._grow(X, y, 1, self.grow_epochs)

    def _finish_fit(self, X) -> None:
        self.history_ = self.net_.history
        self.n_active_params_ = self.net_.module_.n_active_params(self._active_k())
        self._set_routing_stats(X)

    def _upcycled_module(self, net_cls, criterion, train, valid, device, out_features, hidden):
        """Sparse upcycling: train one dense expert, then copy it into ``n_experts``.

        The router and the optimizer start fresh: carrying the dense Adam moments over to
        the copies was measured worse (held-out R^2 0.756 vs 0.772 after 10 + 10 epochs,
        benchmarks/bench_moe_variants.py's task, E=8). With ``upcycle_drop > 0`` the copies
        differ by their re-drawn units (Drop-Upcycling), so they get no extra noise.
        """
        in_features = train.X.shape[1]
        dense = self._build_module(
            in_features, out_features, hidden, n_experts=1, top_k=1, router="topk"
        )
        # The user's callbacks (pruning, logging) see the mixture's epochs only.
        dense_net = self._make_net(
            net_cls, criterion, dense, valid, device,
            max_epochs=self.upcycle_epochs, user_callbacks=False,
        )
        dense_net.fit(train, None)
        self.dense_history_ = dense_net.history
        trained = dense_net.module_
        module = self._build_module(in_features, out_features, hidden)  # fresh router
        drop = float(self.upcycle_drop)
        module.experts = upcycle(
            trained.experts, self.n_experts, noise=0.0 if drop > 0 else _COPY_NOISE, drop=drop
        )
        module.shared_expert, module.fallback = trained.shared_expert, trained.fallback
        return module.to(device)

    def _split(self, X, y: np.ndarray, seed: int) -> tuple[RowDataset, RowDataset | None]:
        if not self.early_stopping:
            return RowDataset(X, y), None
        idx = np.arange(X.shape[0])
        stratify = y if self._is_classification() and self._can_stratify(y) else None
        tr, va = train_test_split(
            idx, test_size=self.validation_fraction, random_state=seed, stratify=stratify
        )
        return RowDataset(X[tr], y[tr]), RowDataset(X[va], y[va])

    def _can_stratify(self, y: np.ndarray) -> bool:
        counts = np.bincount(y)
        n_valid = int(np.ceil(self.validation_fraction * len(y)))
        return counts[counts > 0].min() >= 2 and n_valid >= len(counts)

    def _is_classification(self) -> bool:
        return False

    def _build_module(
        self,
        in_features: int,
        out_features: int,
        hidden: tuple[int, ...],
        n_experts: int | None = None,
        top_k: int | None = None,
        router: str | None = None,
    ):
        n_experts = self.n_experts_ if n_experts is None else n_experts
        router = make_router(
            self.router if router is None else router,
            in_features,
            n_experts,
            self.top_k if top_k is None else top_k,
            capacity_factor=self.capacity_factor,
            gate_dropout=self.gate_dropout,
            balance=self.balance,
            bias_update_rate=self.bias_update_rate,
        )
        experts = None
        if self.experts is not None and n_experts == len(self.experts):
            experts = build_experts(
                self.experts, in_features, out_features,
                activation=self.activation, dropout=self.dropout,
            )
        return build_module(
            router,
            in_features,
            out_features,
            n_experts=n_experts,
            hidden=hidden,
            activation=self.activation,
            dropout=self.dropout,
            shared_expert=self.shared_expert,
            # Switch overflow rows need a path to the output: a linear skip for every row.
            fallback=self.router == "switch",
            precision=self.precision,
            experts=experts,
            elementwise=self.gating == "elementwise",
        )

    def _make_net(
        self, net_cls, criterion, module, valid, device: str, *,
        max_epochs: int | None = None, user_callbacks: bool = True,
    ):
        callbacks = [("routing_stats", RoutingStats())]
        if self.early_stopping:
            callbacks.append(
                (
                    "early_stopping",
                    EarlyStopping(
                        monitor="valid_loss", patience=self.n_iter_no_change, load_best=True
                    ),
                )
            )
        if user_callbacks:
            callbacks += list(self.callbacks or [])
        optimizer = OPTIMIZERS.get(self.optimizer, self.optimizer)
        extra = {"optimizer__momentum": 0.9} if self.optimizer == "sgd" else {}
        if self.router_lr_scale != 1.0:
            # skorch param groups: the router's parameters ("router.linear.*", the noisy
            # top-k "router.noise.*") get their own learning rate, the rest ``lr``.
            extra["optimizer__param_groups"] = [
                ("router.*", {"lr": self.lr * float(self.router_lr_scale)})
            ]
        return net_cls(
            module=module,
            criterion=criterion,
            optimizer=optimizer,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs if max_epochs is None else max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            iterator_train__collate_fn=collate_batch,
            iterator_valid__collate_fn=collate_batch,
            train_split=None if valid is None else predefined_split(valid),
            callbacks=callbacks,
            device=device,
            verbose=self.verbose,
            # Aux-loss-free balancing ('bias') replaces the load-balancing loss.
            aux_loss_coef=0.0 if self.balance == "bias" else self.aux_loss_coef,
            z_loss_coef=self.z_loss_coef,
            # The pickled module is our own class, not only tensors.
            torch_load_kwargs={"weights_only": False},
            **extra,
        )

    def _active_k(self) -> int:
        if self.router == "softmax":
            return self.n_experts_
        return 1 if self.router == "switch" else self.top_k

    # -- routing introspection ----------------------------------------------------------
    def _set_routing_stats(self, X) -> None:
        indices, gates, entropy = self._route(X)
        if self.router == "softmax":
            # Dense routing: every row uses every expert; report the mean gate instead.
            load = gates.mean(0) / max(gates.mean(0).sum(), 1e-12)
        else:
            load = np.bincount(indices.ravel(), minlength=self.n_experts_) / indices.size
        self.expert_load_ = load
        self.router_entropy_ = float(entropy)
        self.overflow_fraction_ = self._last_overflow()

    def _last_overflow(self) -> float:
        """Overflow of the last complete epoch.

        Training interrupted inside an epoch (Ctrl-C: skorch stops and keeps the weights)
        leaves a history row without the epoch-end statistics; fall back to the batches
        of the interrupted epoch, which the module counted.
        """
        for row in reversed(self.history_):
            if "overflow_fraction" in row:
                return float(row["overflow_fraction"])
        rows, _, overflow = self.net_.module_.stat_sums.cpu().tolist()
        return overflow / rows if rows > 0 else 0.0

    @torch.no_grad()
    def _route(self, X) -> tuple[np.ndarray, np.ndarray, float]:
        module = self.net_.module_
        was_training = module.training
        module.eval()
        ds = RowDataset(X)
        idx, gts, ent = [], [], 0.0
        try:
            for start in range(0, len(ds), self.net_.batch_size):
                xb, _ = ds.__getitems__(range(start, min(start + self.net_.batch_size, len(ds))))
                r = module.route(xb.to(self.net_.device))
                idx.append(r.indices.cpu().numpy())
                gts.append(r.gates.float().cpu().numpy())
                ent += float(r.entropy) * xb.shape[0]
        finally:
            module.train(was_training)
        return np.concatenate(idx), np.concatenate(gts), ent / max(len(ds), 1)

    def route(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Which experts each row of ``X`` goes to, and with what weight.

        Rows are routed as in ``predict``: each on its own (no noise, no capacity limit;
        expert choice falls back to top-k over the same scores).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        indices : ndarray of shape (n_samples, k), int64
            Expert ids, best first (``k = n_experts`` for ``router='softmax'``,
            1 for ``'switch'``, ``top_k`` otherwise).
        gates : ndarray of shape (n_samples, k), float32
            The weight of each of those experts in the row's output.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        indices, gates, _ = self._route(X)
        return indices, gates

    @torch.no_grad()
    def output_gates(self, X) -> np.ndarray:
        """Per-output gates of each row's experts (``gating='elementwise'``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        gates : ndarray of shape (n_samples, k, n_outputs), float32
            Weight of each routed expert's output unit ``o`` (class logit or standardised
            target) in the row's output; with ``gating='expert'`` every output of an
            expert has the same weight, the one :meth:`route` returns.
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        module = self.net_.module_
        was_training = module.training
        module.eval()
        ds, out = RowDataset(X), []
        try:
            for start in range(0, len(ds), self.net_.batch_size):
                xb, _ = ds.__getitems__(range(start, min(start + self.net_.batch_size, len(ds))))
                xb = xb.to(self.net_.device)
                gates = module.gates(xb, module.route(xb))
                out.append(gates.float().cpu().numpy())
        finally:
            module.train(was_training)
        gates = np.concatenate(out)
        if gates.ndim == 2:
            gates = np.repeat(gates[:, :, None], self._n_outputs(), axis=2)
        return gates

    # -- growing ------------------------------------------------------------------------
    def grow(self, X, y, n_new: int = 1, max_epochs: int | None = None):
        """Add experts to the fitted mixture by splitting the most loaded ones; train on.

        Each new expert is a copy (with a little noise) of the currently most loaded
        expert; the router gets a copy of that expert's row with both biases lowered by
        ``log 2``, so the pair starts by sharing the rows the original took, and the
        network's predictions barely change. Training then continues on ``(X, y)`` with a
        fresh optimizer for ``max_epochs``; ``history_`` becomes that phase's history.
        ``n_experts_`` grows by ``n_new``; the ``n_experts`` parameter is left as given
        (``clone`` builds the original size). In a search, use the ``grow_steps``
        parameter instead, which grows inside ``fit``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Labels seen in ``fit`` (classifier) or targets.
        n_new : int, default=1
            Experts to add.
        max_epochs : int, default=None
            Epochs of training after the split; ``None`` uses ``max_epochs``.

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if not isinstance(n_new, Integral) or isinstance(n_new, bool) or n_new < 1:
            raise ValueError(f"`n_new` must be an int >= 1; got {n_new!r}.")
        if max_epochs is not None and (
            not isinstance(max_epochs, Integral) or isinstance(max_epochs, bool) or max_epochs < 1
        ):
            raise ValueError(f"`max_epochs` must be None or an int >= 1; got {max_epochs!r}.")
        X, y = self._validate_grow(X, y)
        return self._grow(X, y, n_new, max_epochs)

    def _grow(self, X, y: np.ndarray, n_new: int, max_epochs: int | None):
        """``grow`` on validated ``X`` and encoded / standardised ``y``."""
        net_cls, criterion = self._net_spec()
        module, device = self.net_.module_, self.net_.device
        load = list(np.asarray(self.expert_load_, dtype=float))
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        seed = (seed + 7919 * self.n_experts_) % np.iinfo(np.int32).max  # new per size
        train, valid = self._split(X, y, seed)
        devices = [device] if str(device).startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            for _ in range(n_new):
                index = int(np.argmax(load))
                split_expert(module, index, noise=_COPY_NOISE)
                load[index] /= 2
                load.append(load[index])
            self.n_experts_ = len(module.experts)
            self.net_ = self._make_net(
                net_cls, criterion, module, valid, device, max_epochs=max_epochs
            )
            self.net_.fit(train, None)
        self._finish_fit(X)
        return self

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        return self.net_.predict_proba(RowDataset(X))

    def _validate_fit(self, X, y, **kwargs):
        return validate_data(
            self, X, y, accept_sparse="csr", dtype=np.float32, reset=True, **kwargs
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MoEClassifier(ClassifierMixin, _BaseMoE):
    """Sparse mixture-of-experts classifier: a router sends each row to ``top_k`` MLPs.

    ``p(y | x) = softmax(sum_{i in topk(x)} g_i(x) f_i(x))``, trained with skorch; only
    the experts a row is routed to run on it. Features are used as given: scale dense
    features (e.g. ``StandardScaler``) first; sparse CSR input is densified one batch at
    a time.

    Parameters
    ----------
    n_experts : int, default=8
        Number of experts (ignored when ``experts`` is given).
    top_k : int, default=2
        Experts per row (``'topk'``, ``'expert_choice'``); must be <= ``n_experts``.
        ``'softmax'`` uses all experts, ``'switch'`` one.
    router : {'topk', 'softmax', 'switch', 'expert_choice'}, default='topk'
        Noisy top-k (Shazeer 2017), dense softmax gating, top-1 with capacity
        (Switch), or expert choice (Zhou 2022). See :mod:`moensemble.moe.routing`.
    expert_hidden : int or tuple of int, default=(64,)
        Hidden layer widths of each expert MLP (and of the shared expert).
    experts : list of expert specs, default=None
        Heterogeneous experts (a modular MoE), one per spec: ``'linear'``, a hidden width
        or tuple of widths such as ``(32,)`` or ``(64, 64)`` (an MLP with ``activation``
        and ``dropout``), an ``nn.Module`` (copied) or a factory
        ``f(in_features, out_features) -> nn.Module``; each maps
        ``(rows, n_features) -> (rows, n_outputs)``. The router learns which to use;
        ``n_experts`` is then ``len(experts)`` and the experts run one after the other on
        their rows. ``None``: ``n_experts`` identical MLPs in one stacked module.
    gating : {'expert', 'elementwise'}, default='expert'
        ``'elementwise'``: a gate per output unit (class logit or regression target) of
        each routed expert instead of one scalar; see
        :class:`~moensemble.moe.routing.ElementwiseGate` and :meth:`output_gates`.
    init : {'random', 'upcycle'}, default='random'
        ``'upcycle'``: sparse upcycling (Komatsuzaki et al. 2022) — first train a dense
        network (one expert, ``upcycle_epochs`` epochs), then copy its expert into the
        ``n_experts`` experts under a fresh router, and train ``max_epochs`` more with a
        fresh optimizer. With ``upcycle_drop=0`` the copies get 1% noise, and with
        ``top_k >= 2`` the renormalised gates make the mixture start as the dense network.
        Upcycling reuses a dense network's training; it is not a faster way to train the
        mixture: on ``benchmarks/bench_moe_variants.py``'s regime task it does not reach
        the dense network's held-out score in fewer *total* epochs than the mixture
        trained from scratch (on the mean over seeds, for every ``upcycle_epochs`` from 1
        to 8 and either ``router_init``; README, "MoE variants"), because the scratch
        mixture learns faster per epoch than the dense network from its first epoch on.
        Upcycled, the mixture beats the dense network trained for the same total epochs.
    router_init : {'random', 'kmeans'}, default='random'
        ``'kmeans'``: before training, cluster the training rows (MiniBatchKMeans, one
        cluster per expert, at most 20,000 rows) and set the router's linear map so that
        its logits are ``-t ||x - c_i||^2`` (up to a per-row constant; ``t`` is one over
        the mean squared distance of a row to its centroid): the router splits the rows
        from the first batch instead of learning a split late. Applies to every router
        and to ``init='upcycle'``'s fresh router (the rows are the model's input; scale
        dense features first). Measured (3 seeds) on
        ``benchmarks/bench_moe_variants.py``'s regime task, epochs of the MoE from
        scratch to the dense network's converged held-out R^2: 18.7 -> 13.0 (E=8,
        ``lr=0.01``), 32.0 -> 13.7 (E=16, ``lr=3e-3``); on 600 rows and 8 epochs the
        held-out R^2 moved by -0.005 to +0.024; the text task of ``router_lr_scale``
        0.428 -> 0.439 and 0.442 -> 0.449 (two seeds, within the fold noise), hence
        not the default. With the same init given to both, upcycling still needs about as
        many total epochs as the MoE from scratch (see ``init``).
    upcycle_epochs : int, default=10
        Epochs of the dense phase of ``init='upcycle'``; ``history_`` holds the mixture's
        ``max_epochs`` after it and ``dense_history_`` the dense phase.
    upcycle_drop : float in [0, 1], default=0.0
        Drop-Upcycling (Nakamura et al., ICLR 2025) with ``init='upcycle'``: in every
        copy, independently, this share of each hidden layer's units is re-initialised
        (incoming weights, bias, outgoing weights, drawn from a normal with the mean and
        standard deviation of the dense tensor), so that the experts differ from the start
        and the router gets a signal to tell them apart. ``0``: plain copies. On the
        regime task ``0.25`` and ``0.5`` measured no better than plain copies (the small
        experts lose too much of the dense network), hence the default.
    grow_steps : int, default=0
        After training, grow the mixture this many times by one expert (see
        :meth:`grow`), training ``grow_epochs`` after each split; ``n_experts_`` ends at
        ``n_experts + grow_steps``. This is how a search tries growing: it is an ordinary
        parameter (e.g. ``trial.suggest_int("grow_steps", 0, 3)``).
    grow_epochs : int, default=5
        Epochs of training after each growing step.
    activation : {'relu', 'gelu', 'tanh', 'silu'}, default='relu'
    dropout : float, default=0.0
        Dropout inside the experts.
    gate_dropout : float, default=0.0
        Probability of dropping each of a row's assignments but its best in training.
    shared_expert : bool, default=False
        Add an expert of the same shape that every row uses (DeepSeekMoE).
    aux_loss_coef : float, default=1e-2
        Weight of the load-balancing loss ``E * sum_i f_i P_i``.
    z_loss_coef : float, default=1e-3
        Weight of the router z-loss.
    balance : {'aux_loss', 'bias'}, default='aux_loss'
        ``'bias'``: DeepSeek-V3 auxiliary-loss-free balancing (a per-expert bias on the
        selection scores); the load-balancing loss is then not added.
    bias_update_rate : float, default=1e-3
        Step of the balancing bias per training batch (``balance='bias'``).
    capacity_factor : float, default=1.25
        Expert capacity as a multiple of an even share of the batch (``'switch'``,
        ``'expert_choice'``); training only. Rows over capacity in ``'switch'`` use a
        linear fallback path that every row has, so none is dropped from the output.
    max_epochs : int, default=50
    lr : float, default=1e-3
    router_lr_scale : float > 0, default=1.0
        Learning rate of the router's parameters as a multiple of ``lr`` (a skorch
        optimizer param group ``"router.*"``; the element-wise gates and the experts use
        ``lr``). The router is a small linear map that must learn the split of the rows
        while the experts specialise; at the shared ``lr`` it can lag behind. Measured
        (3 seeds / 3 folds): on ``benchmarks/bench_moe_variants.py``'s regime task (E=8,
        ``lr=0.01``) 1 / 3 / 10 reach the dense network's converged held-out R^2 in
        18.7 / 15.0 / 12.0 epochs (R^2 after 20 epochs 0.796 / 0.817 / 0.852; E=16,
        ``lr=3e-3``: 32.0 / 24.0 / 13.7 epochs); on a text task (3000 WordNet glosses,
        41 classes, TF-IDF, E=8, ``lr=3e-3``, 20 epochs) the 3-fold accuracy was
        0.428 / 0.443 / 0.405 (another seed: 0.442 / 0.445 for 1 / 3). Too large a
        scale hurts the text task and 3 is within the noise there, hence the default 1.
    batch_size : int, default=128
    optimizer : {'adam', 'adamw', 'sgd'} or torch optimizer class, default='adam'
        ``'sgd'`` uses momentum 0.9.
    weight_decay : float, default=0.0
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified when possible), stop
        after ``n_iter_no_change`` epochs without a better ``valid_loss`` and restore the
        best weights. ``valid_loss`` is recorded in ``history_`` every epoch only when
        this is on.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    device : {'cpu', 'cuda', 'cuda:N', 'auto'}, default='cpu'
        ``'auto'`` falls back to the CPU with a warning when there is no GPU.
    precision : {'float32', 'bfloat16', 'float16'}, default='float32'
        Autocast dtype of the experts; the router always computes in float32.
        ``'float16'`` training scales the loss with ``torch.amp.GradScaler`` (a step whose
        gradients overflow is skipped, never written into the weights); ``'bfloat16'``
        needs no scaling.
    callbacks : list of skorch callbacks, default=None
        Passed to the skorch net (e.g. optuna-integration's ``SkorchPruningCallback``).
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, noise and the validation split; equal seeds
        give identical predictions on the CPU.
    verbose : int, default=0
        skorch's per-epoch table when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.
    net_ : skorch.NeuralNetClassifier
        The trained net (``net_.module_`` is the :class:`~moensemble.moe.net.MoEModule`).
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss`` (with early stopping),
        ``router_entropy``, ``load_max_violation``, ``overflow_fraction``, ``expert_load``.
    expert_load_ : ndarray of shape (n_experts,)
        Share of the training rows' assignments that each expert receives when routed as
        in ``predict`` (mean gate for ``'softmax'``); sums to 1.
    router_entropy_ : float
        Mean entropy of the router softmax over the training rows.
    overflow_fraction_ : float
        Share of rows over capacity in the last complete training epoch (``'switch'``;
        else 0); the batches seen when training stopped inside the first epoch.
    n_active_params_ : int
        Parameters used per row: router + ``k`` experts + shared expert + fallback
        (+ element-wise gates).
    n_experts_ : int
        Number of experts: ``n_experts``, ``len(experts)``, or more after :meth:`grow`.
    dense_history_ : skorch.History or None
        The dense phase's history with ``init='upcycle'``; otherwise None.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from moensemble.moe import MoEClassifier
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> clf = MoEClassifier(n_experts=4, top_k=2, max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.route(X[:2])[0].shape
    (2, 2)
    """

    _parameter_constraints = dict(_BaseMoE._parameter_constraints)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> MoEClassifier:
        """Fit the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : MoEClassifier
        """
        X, y = self._validate_fit(X, y)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"`y` has only one class ({self.classes_[0]!r}); a classifier needs at least 2."
            )
        y_enc = encoder.transform(y).astype(np.int64)
        self._fit_net(X, y_enc, MoENetClassifier, torch.nn.CrossEntropyLoss, len(self.classes_))
        return self

    def _is_classification(self) -> bool:
        return True

    def _net_spec(self):
        return MoENetClassifier, torch.nn.CrossEntropyLoss

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _validate_grow(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float32, reset=False)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(
                f"`y` has labels not seen in fit: {unknown[:5].tolist()}; grow continues "
                f"training on the fitted classes {self.classes_.tolist()}."
            )
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        proba = self._forward(X).astype(np.float64)
        return proba / proba.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Most probable class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MoERegressor(RegressorMixin, _BaseMoE):
    """Sparse mixture-of-experts regressor: a router sends each row to ``top_k`` MLPs.

    Targets are standardised internally (and predictions mapped back), so the learning
    rate does not depend on their scale. 1-D and multi-output ``y`` are supported.

    Parameters are the same as :class:`MoEClassifier`'s.

    Attributes
    ----------
    n_features_in_, feature_names_in_, net_, history_, expert_load_, router_entropy_,
    overflow_fraction_, n_active_params_, n_experts_, dense_history_ :
        As in :class:`MoEClassifier`.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from moensemble.moe import MoERegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> reg = MoERegressor(n_experts=4, max_epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = dict(_BaseMoE._parameter_constraints)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> MoERegressor:
        """Fit the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MoERegressor
        """
        X, y = self._validate_fit(X, y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1)
        self._y_mean = y2.mean(0)
        self._y_scale = np.where(y2.std(0) > 0, y2.std(0), 1.0)
        y_std = ((y2 - self._y_mean) / self._y_scale).astype(np.float32)
        self._fit_net(X, y_std, MoENetRegressor, torch.nn.MSELoss, y2.shape[1])
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        y = self._forward(X).astype(np.float64) * self._y_scale + self._y_mean
        return y.ravel() if self._y_ndim == 1 else y

    def _net_spec(self):
        return MoENetRegressor, torch.nn.MSELoss

    def _n_outputs(self) -> int:
        return len(self._y_mean)

    def _validate_grow(self, X, y):
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=np.float32, reset=False,
            multi_output=True, y_numeric=True,
        )
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if y2.shape[1] != len(self._y_mean):
            raise ValueError(
                f"`y` has {y2.shape[1]} outputs; the model was fitted on {len(self._y_mean)}."
            )
        return X, ((y2 - self._y_mean) / self._y_scale).astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
