"""The core shared by MoEClassifier and MoERegressor: parameters, building, routing."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from .._validation import IntInterval, check_precision, resolve_device
from ._defaults import (
    final_loss,
    mostly_nonzero,
    resolve_batch_size,
    resolve_router_lr_scale,
    warn_far_from_unit_scale,
)
from ._em import GateRefit, check_em_rounds
from ._growth import GrowthMixin, kmeans_router_init
from ._introspect import RoutingIntrospection
from ._partition import check_repartition, make_repartition
from .blocks import build_network, check_expert_widths
from .embeddings import D_EMBEDDING, NUM_EMBEDDINGS, check_num_embedding, embed_input
from .modality import build_block_experts, set_expert_blocks
from .net import (
    RouterGroupLasso,
    RoutingStats,
    RowDataset,
    build_module,
    collate_batch,
)
from .routing import ROUTERS, make_router
from .sparse import check_lazy_adam, resolve_optimizer
from .variants import build_experts, describe_spec_error

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD,
              # Adam, and CatchUpAdam for the first layers on sparse input (moe/sparse.py)
              "lazy_adam": torch.optim.Adam}


class _BaseMoE(RoutingIntrospection, GrowthMixin, BaseEstimator):
    """Shared parameters, fitting and routing introspection of the MoE estimators."""

    _parameter_constraints: dict = {
        "n_experts": [IntInterval(1, None, closed="left")],
        "top_k": [IntInterval(1, None, closed="left")],
        "router": [StrOptions(set(ROUTERS))],
        "mixture": [StrOptions({"auto", "logits", "likelihood"})],
        "expert_hidden": [tuple, list, IntInterval(1, None, closed="left")],
        "experts": [list, None],
        "gating": [StrOptions({"expert", "elementwise"})],
        "init": [StrOptions({"random", "upcycle"})],
        "router_init": [StrOptions({"random", "kmeans"})],
        "upcycle_epochs": [IntInterval(1, None, closed="left")],
        "upcycle_drop": [Interval(Real, 0, 1, closed="both")],
        "grow_steps": [IntInterval(0, None, closed="left")],
        "grow_epochs": [IntInterval(1, None, closed="left")],
        "activation": [StrOptions({"relu", "gelu", "tanh", "silu"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "gate_dropout": [Interval(Real, 0, 1, closed="left")],
        "shared_expert": ["boolean"],
        "aux_loss_coef": [Interval(Real, 0, None, closed="left")],
        "z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "balance": [StrOptions({"aux_loss", "bias"})],
        "bias_update_rate": [Interval(Real, 0, None, closed="left")],
        "capacity_factor": [Interval(Real, 0, None, closed="neither")],
        "max_epochs": [IntInterval(1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "router_lr_scale": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "batch_size": [IntInterval(1, None, closed="left"), StrOptions({"auto"})],
        "optimizer": [StrOptions({"auto", *OPTIMIZERS}), callable],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [IntInterval(1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"float32", "bfloat16", "float16"})],
        "callbacks": [list, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "encoder": [None, tuple, list, IntInterval(1, None, closed="left")],
        "n_layers": [IntInterval(1, None, closed="left")],
        "expert_blocks": [dict, None],
        "experts_per_block": [None, IntInterval(0, None, closed="left"), dict],
        "num_embedding": [None, StrOptions(set(NUM_EMBEDDINGS))],
        "router_l1": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "n_init": [IntInterval(1, None, closed="left")],
        "em_rounds": [IntInterval(0, None, closed="left")],
        "repartition": [StrOptions({"none", "local_rules", "auto"})],
    }

    def __init__(
        self,
        *,
        n_experts: int = 8,
        top_k: int = 2,
        router: str = "topk",
        mixture: str = "auto",
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
        router_lr_scale: float | str = "auto",
        batch_size: int | str = "auto",
        optimizer="auto",
        weight_decay: float = 0.0,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        device: str = "cpu",
        precision: str = "float32",
        callbacks: list | None = None,
        random_state=None,
        verbose: int = 0,
        encoder: tuple[int, ...] | int | None = None,
        n_layers: int = 1,
        expert_blocks: dict | None = None,
        experts_per_block: int | dict | None = None,
        num_embedding: str | None = None,
        router_l1: float | str = "auto",
        n_init: int = 1,
        em_rounds: int = 0,
        repartition: str = "auto",
    ) -> None:
        self.n_experts = n_experts
        self.top_k = top_k
        self.router = router
        self.mixture = mixture
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
        self.encoder = encoder
        self.n_layers = n_layers
        self.expert_blocks = expert_blocks
        self.experts_per_block = experts_per_block
        self.num_embedding = num_embedding
        self.router_l1 = router_l1
        self.n_init = n_init
        self.em_rounds = em_rounds
        self.repartition = repartition

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
        self._check_blocks()
        if self._uses_blocks() and self.mixture == "likelihood":
            raise ValueError(
                "`mixture='likelihood'` mixes the experts' output distributions, but with "
                "`encoder` or `n_layers` > 1 the experts sit inside hidden blocks and a head "
                "makes the output: use mixture='auto' or 'logits' with blocks."
            )
        device = resolve_device(self.device)
        check_precision(self.precision, device)
        return hidden, device

    def _encoder_widths(self) -> tuple[int, ...]:
        if self.encoder is None:
            return ()
        return (self.encoder,) if isinstance(self.encoder, Integral) else tuple(self.encoder)

    def _uses_blocks(self) -> bool:
        """Whether the network is MoE blocks (``encoder`` or ``n_layers > 1``)."""
        return self.encoder is not None or self.n_layers > 1

    def _router_l1(self, X) -> float:
        """``router_l1`` resolved: 'auto' is 0.8 where the routers read the raw columns of a
        mostly nonzero dense table of at least 10 features (+4.0 points on the held-out regime
        grid, level or ahead on the other tables measured; with fewer features there is little
        to select), 0 on sparse or mostly-zero input (0.8 cost 1.2 points on compare's text
        job) and behind an encoder, feature embeddings or MoE blocks."""
        if self.router_l1 != "auto":
            return float(self.router_l1)
        raw = not self._uses_blocks() and self.num_embedding is None
        return 0.8 if raw and X.shape[1] >= 10 and mostly_nonzero(X) else 0.0

    def _check_blocks(self) -> None:
        widths = self._encoder_widths()
        if self.encoder is not None and not (
            widths and all(isinstance(w, Integral) and not isinstance(w, bool) and w >= 1
                           for w in widths)
        ):
            raise ValueError(
                f"`encoder` must be None, a positive int or a non-empty tuple of positive ints "
                f"(the shared encoder's widths); got {self.encoder!r}."
            )
        if not self._uses_blocks():
            return
        plain_values = (("init", self.init, "random"), ("grow_steps", self.grow_steps, 0))
        for name, value, plain in plain_values:
            if value != plain:
                raise ValueError(
                    f"`{name}`={value!r} works on a single MoE layer on the raw features; with "
                    f"MoE blocks (`encoder`={self.encoder!r}, `n_layers`={self.n_layers}) use "
                    f"`{name}`={plain!r}, or `encoder`=None and `n_layers`=1."
                )

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
        if sp.issparse(X) and self._uses_blocks() and self.encoder is None:
            raise ValueError(
                f"`n_layers`={self.n_layers} without an `encoder` runs the MoE blocks on the raw "
                "features, which must be dense; X is sparse. Give an `encoder` (e.g. "
                "encoder=(256,)): its first layer is the one that meets the sparse features."
            )
        self.optimizer_ = resolve_optimizer(self.optimizer, self.weight_decay, X)
        self._lazy_sparse = check_lazy_adam(self.optimizer_, self.weight_decay, X)
        check_num_embedding(self.num_embedding, self.init, self.grow_steps, X)
        check_em_rounds(self.em_rounds, self._module_mixture(), self._uses_blocks(),
                        self.num_embedding)
        warn_far_from_unit_scale(X)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, valid = self._split(X, y, seed)
        self.n_experts_ = self.n_experts if self.experts is None else len(self.experts)
        set_expert_blocks(self, X.shape[1])  # expert_blocks_, expert_block_of_
        self.router_lr_scale_ = resolve_router_lr_scale(self.router_lr_scale, X)
        self.router_l1_ = self._router_l1(X)
        self.repartition_ = check_repartition(self.repartition, self.router_l1_,
                                              self._uses_blocks(), self.num_embedding, X,
                                              self.precision)
        self.batch_size_ = resolve_batch_size(self.batch_size, len(train))
        self.dense_history_ = None
        devices = [device] if device.startswith("cuda") else []
        # Fork the RNG so fitting is reproducible without touching the user's torch seed.
        with torch.random.fork_rng(devices=devices):
            self.init_losses_ = []
            for i in range(self.n_init):  # restarts: keep the net of the lowest final loss
                init_seed = seed if i == 0 else (seed + 7919 * i) % np.iinfo(np.int32).max
                net = self._fit_one(net_cls, criterion, train, valid, device, out_features,
                                    hidden, init_seed)
                self.init_losses_.append(final_loss(net))
                if self.init_losses_[-1] <= min(self.init_losses_):
                    self.net_ = net
        self._finish_fit(X)
        for _ in range(self.grow_steps):
            self._grow(X, y, 1, self.grow_epochs)

    def _fit_one(self, net_cls, criterion, train, valid, device, out_features, hidden, seed):
        """One initialisation (seeded by ``seed``) trained for ``max_epochs``."""
        torch.manual_seed(seed)
        if self.init == "upcycle":
            module = self._upcycled_module(
                net_cls, criterion, train, valid, device, out_features, hidden
            )
        else:
            module = self._build_module(train.X.shape[1], out_features, hidden)
        if self.num_embedding is not None:  # its statistics (scales, bins) from the rows
            module.embedding.fit(train.X)
        if self.router_init == "kmeans":
            kmeans_router_init(module.router, self._router_inputs(module, train.X), seed)
        net = self._make_net(net_cls, criterion, module, valid, device)
        return net.fit(train, None)

    @torch.no_grad()
    def _router_inputs(self, module, X):
        """The rows as the first router sees them (the first block's normed input)."""
        if not hasattr(module, "block_input"):  # a single MoE layer on the raw features
            return X
        was_training = module.training
        module.eval()
        ds, out = RowDataset(X), []
        device = next(module.parameters()).device
        try:
            for start in range(0, len(ds), 1024):
                xb, _ = ds.__getitems__(range(start, min(start + 1024, len(ds))))
                out.append(module.block_input(xb.to(device)).cpu().numpy())
        finally:
            module.train(was_training)
        return np.concatenate(out)

    def _finish_fit(self, X) -> None:
        self.history_ = self.net_.history
        self.n_active_params_ = self.net_.module_.n_active_params(self._active_k())
        self._set_routing_stats(X)

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
        if self.num_embedding is not None:  # the network runs on the embedded features
            return embed_input(
                self._build_net(in_features * D_EMBEDDING, out_features, hidden, n_experts,
                                top_k, router),
                self.num_embedding, in_features,
            )
        return self._build_net(in_features, out_features, hidden, n_experts, top_k, router)

    def _build_net(self, in_features, out_features, hidden, n_experts, top_k, router):
        n_experts = self.n_experts_ if n_experts is None else n_experts
        if self._uses_blocks():
            def make_moe(width: int):
                # A d -> d MoE per block; its overflow rows keep h through the residual.
                moe = self._build_moe(width, width, hidden, n_experts, top_k, router, False)
                check_expert_widths(moe.experts, width)
                return moe

            return build_network(
                in_features, out_features, encoder=self._encoder_widths(),
                n_layers=self.n_layers, make_moe=make_moe, activation=self.activation,
                dropout=self.dropout,
            )
        # Switch overflow rows need a path to the output: a linear skip for every row.
        return self._build_moe(
            in_features, out_features, hidden, n_experts, top_k, router, self.router == "switch"
        )

    def _build_moe(self, in_features, out_features, hidden, n_experts, top_k, router, fallback):
        """One MoE layer ``in_features -> out_features`` (the whole network by default)."""
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
        if self.expert_blocks is not None and n_experts == len(self.expert_block_of_):
            experts = build_block_experts(
                self.expert_block_of_, self.expert_blocks_, in_features, out_features,
                specs=self.experts, hidden=hidden, activation=self.activation,
                dropout=self.dropout,
            )
        elif self.experts is not None and n_experts == len(self.experts):
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
            fallback=fallback,
            precision=self.precision,
            experts=experts,
            elementwise=self.gating == "elementwise",
            mixture=self._module_mixture(),
        )

    def _module_mixture(self) -> str:
        if self._uses_blocks():  # hidden blocks mix their experts' outputs; a head predicts
            return "logits"
        mixture = self.mixture
        if mixture == "auto":  # what measured best for each task (docs/guide/moe-quality.md)
            # One expert a row: its renormalised gate is 1 in the competitive mixture, which
            # leaves the router no gradient; the cooperative form scales by the gate.
            one = self.router == "switch" or (self.router == "topk" and self.top_k == 1)
            mixture = "likelihood" if self._is_classification() and not one else "logits"
        if mixture == "logits":
            return "logits"
        return "categorical" if self._is_classification() else "gaussian"

    def _make_net(
        self, net_cls, criterion, module, valid, device: str, *,
        max_epochs: int | None = None, user_callbacks: bool = True,
    ):
        callbacks = [("routing_stats", RoutingStats())]
        l1 = getattr(self, "router_l1_", 0.0)  # a model saved before it had none
        if l1 > 0:
            callbacks.append(("router_l1", RouterGroupLasso(l1)))
        if getattr(self, "em_rounds", 0) > 0:
            router_lr = self.lr * self.router_lr_scale_
            start = 0.5 if l1 > 0 else 0.0  # after the lasso's selection half
            callbacks.append(("gate_refit", GateRefit(self.em_rounds, router_lr, start)))
        repartition = getattr(self, "repartition_", "none")  # (a model saved before it)
        if repartition != "none" and max_epochs is None:
            callbacks.append(("repartition",
                              make_repartition(repartition, self._is_classification())))
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
        name = getattr(self, "optimizer_", None) or resolve_optimizer(self.optimizer,
                                                                       self.weight_decay, None)
        optimizer = OPTIMIZERS.get(name, name)
        extra = {"optimizer__momentum": 0.9} if name == "sgd" else {}
        if getattr(self, "_lazy_sparse", False):
            extra["sparse_adam"] = True
        if name in ("adam", "adamw", "lazy_adam"):
            # The same update in fused kernels: 5-8x faster steps on CPU, which dominate
            # an epoch on wide (e.g. 100k-column sparse) input (benchmarks/bench_moe.py).
            extra["optimizer__fused"] = True
        if self.router_lr_scale_ != 1.0:
            # skorch param groups: the routers' parameters ("router.linear.*", the noisy
            # top-k "router.noise.*", "blocks.<i>.moe.router.*") get their own learning
            # rate, the rest ``lr``.
            extra["optimizer__param_groups"] = [
                ("*router.*", {"lr": self.lr * self.router_lr_scale_})
            ]
        return net_cls(
            module=module,
            criterion=criterion,
            optimizer=optimizer,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs if max_epochs is None else max_epochs,
            batch_size=getattr(self, "batch_size_", self.batch_size),  # (saved before it)
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

    def _forward(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        if X.shape[0] > self.net_.batch_size:
            return self.net_.predict_proba(RowDataset(X))
        # One batch: skorch's predict_proba step by step (evaluation_step, the first output,
        # the predict nonlinearity) without its DataLoader, which is most of a single-row
        # call's overhead (benchmarks/bench_moe.py, latency).
        xb, _ = RowDataset(X).__getitems__(np.arange(X.shape[0]))
        out = self.net_.evaluation_step((xb, None), training=False)
        out = out[0] if isinstance(out, tuple) else out
        return self.net_._get_predict_nonlinearity()(out).cpu().numpy()

    def _validate_fit(self, X, y, **kwargs):
        return validate_data(
            self, X, y, accept_sparse="csr", dtype=np.float32, reset=True, **kwargs
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = self.num_embedding is None  # embeddings: dense only
        return tags
