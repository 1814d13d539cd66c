"""The mixture-of-experts network and its skorch plumbing.

* :class:`MoEModule` — router + experts (+ shared expert, + switch fallback); forward
  returns ``(output, aux)`` where ``aux = [load_balancing_loss, z_loss]``.
* :class:`MoENetClassifier` / :class:`MoENetRegressor` — skorch nets whose ``get_loss``
  adds the auxiliary losses in training (validation loss stays the task loss, so early
  stopping and pruning watch what the user cares about).
* :class:`RowDataset` — numpy or CSR rows fetched a *batch* at a time; a CSR batch stays
  sparse (a torch CSR tensor) and meets the first layer as a sparse x dense product
  (:mod:`moensemble.moe.sparse`).
* :class:`RouterGroupLasso` — a callback: after every training step, a proximal
  group-lasso step on the routers' input weights (``router_l1``).
* :class:`RoutingStats` — a callback that logs per-epoch router entropy, load
  max-violation and switch overflow into the skorch history.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.callbacks import Callback, EpochTimer, PassthroughScoring, PrintLog
from skorch.dataset import unpack_data
from skorch.utils import TeeGenerator
from torch import Tensor, nn

from .checks import FiniteCheck
from .experts import MLPExpert, StackedMLPExperts, params_per_expert
from .routing import (
    Assignments,
    ElementwiseGate,
    Router,
    Routing,
    dispatch,
    run_experts,
    scatter_logsumexp,
    shrink_router_inputs,
)
from .sparse import LazySparseAdam, as_sparse_linear, csr_batch

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
#: How :class:`MoEModule` combines its experts: the estimators' ``mixture='logits'`` is
#: ``'logits'``, ``mixture='likelihood'`` is ``'categorical'`` (classifier) or ``'gaussian'``.
MIXTURES = ("logits", "categorical", "gaussian")
# Floor of a gate inside a log: a gate that underflowed to 0 stays finite.
_TINY = 1e-30


def precision_autocast(device_type: str, precision: str) -> torch.autocast:
    """Autocast to ``precision`` on ``device_type``; a disabled context for ``'float32'``.

    Shared by :class:`MoEModule` (its experts) and the gated ensembles' router trunk.
    """
    dtype = PRECISIONS[precision]
    return torch.autocast(device_type, dtype=dtype, enabled=dtype != torch.float32)


class MoEModule(nn.Module):
    """``y = sum_{i in topk(x)} g_i(x) f_i(x) [+ shared(x)] [+ fallback(x)]``.

    Parameters
    ----------
    router : Router
        Any router from :mod:`moensemble.moe.routing`; always runs in float32.
    experts : StackedMLPExperts or nn.ModuleList
        ``n_experts`` modules ``(rows, in) -> (rows, out)``; a ModuleList may mix kinds.
    shared_expert : nn.Module, optional
        Run on every row and added (DeepSeekMoE's shared expert).
    fallback : nn.Module, optional
        Run on every row and added; with a capacity-limited router it is the path that
        carries the rows that overflowed their expert (their output is never dropped).
    precision : {'float32', 'bfloat16', 'float16'}
        Autocast dtype for the experts.
    output_gate : ElementwiseGate, optional
        Per-output gates (element-wise weighting) instead of one scalar per assignment.
    mixture : {'logits', 'categorical', 'gaussian'}
        ``'logits'`` (cooperative): the output is ``sum_i g_i f_i(x)`` (+ shared, fallback).
        ``'categorical'`` (competitive, Jacobs et al. 1991): each expert's output is the
        logits of its own distribution ``p_i = softmax(f_i(x))`` and the output is the log
        of the mixture ``log sum_i g_i p_i`` (+ shared/fallback logits), whose
        cross-entropy is ``-log sum_i g_i p_i(y) / sum_i g_i`` (the gates renormalised
        over the row's kept experts); its softmax is the mixture's probabilities.
        ``'gaussian'``: each expert's output is the mean of a Gaussian of learned
        per-output scale ``exp(log_scale)``; the output is the mixture mean
        ``sum_i g~_i mu_i`` (``g~`` renormalised over the kept experts) and ``forward``
        returns a third element, ``(mu, log g~, rows)`` per assignment, from which
        :func:`gaussian_mixture_nll` is the loss.
    out_features : int, optional
        Output width; needed by ``'gaussian'`` (its per-output ``log_scale``).
    """

    def __init__(
        self,
        router: Router,
        experts: StackedMLPExperts | nn.ModuleList,
        *,
        shared_expert: nn.Module | None = None,
        fallback: nn.Module | None = None,
        precision: str = "float32",
        output_gate: ElementwiseGate | None = None,
        mixture: str = "logits",
        out_features: int | None = None,
    ) -> None:
        super().__init__()
        if mixture not in MIXTURES:
            raise ValueError(f"`mixture` must be one of {MIXTURES}; got {mixture!r}.")
        self.mixture = mixture
        self.router = router
        self.output_gate = output_gate
        self.experts = experts
        self.shared_expert = shared_expert
        self.fallback = fallback
        self.precision = precision
        if mixture == "gaussian":
            if out_features is None:
                raise ValueError("`out_features` is needed with mixture='gaussian'.")
            self.log_scale = nn.Parameter(torch.zeros(int(out_features)))
        n_experts = len(experts)
        # Statistics of the *training* batches since the last reset (RoutingStats).
        self.register_buffer("stat_counts", torch.zeros(n_experts), persistent=False)
        self.register_buffer("stat_sums", torch.zeros(3), persistent=False)  # rows, H, overflow

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:  # (batch, in) -> (batch, out), (2,)
        x = x.float()
        routing = self.router(x)  # float32, outside autocast
        gates = self.gates(x, routing)  # (batch, k) or (batch, k, out), float32
        aux = torch.stack([routing.aux_loss, routing.z_loss])
        with self._autocast(x):
            if self.mixture == "logits":
                out, counts = dispatch(x, routing.indices, gates, self.experts, routing.mask)
                extra = self._extras(x)
                out = out if extra is None else out + extra
            else:
                assignments = run_experts(
                    x, routing.indices, gates, self.experts, routing.mask
                )
                counts = assignments.counts
        if self.training:
            self._record(routing, counts, x.shape[0])
        if self.mixture == "logits":
            return out, aux
        extra = self._extras(x)
        if self.mixture == "categorical":
            return self._log_mixture(assignments, x.shape[0], extra), aux
        return self._gaussian_output(assignments, x.shape[0], extra, aux)

    def _extras(self, x: Tensor) -> Tensor | None:
        """Shared expert + fallback outputs (run on every row), or None."""
        total = None
        for extra in (self.shared_expert, self.fallback):
            if extra is not None:
                out = extra(x).float()
                total = out if total is None else total + out
        return total

    @staticmethod
    def _log_mixture(a: Assignments, batch: int, extra: Tensor | None) -> Tensor:
        """``log sum_i g_i softmax(f_i)`` per row (0 for a row with no live expert)."""
        log_p = torch.log_softmax(a.outputs, dim=-1) + torch.log(a.gates.clamp_min(_TINY))
        out = scatter_logsumexp(log_p, a.rows, batch)
        return out if extra is None else out + extra

    def _gaussian_output(
        self, a: Assignments, batch: int, extra: Tensor | None, aux: Tensor
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
        """Mixture mean, aux losses, and ``(mu, log g~, rows)`` per assignment."""
        mu = a.outputs if extra is None else a.outputs + extra.index_select(0, a.rows)
        total = a.gates.new_zeros(batch, a.gates.shape[1]).index_add_(0, a.rows, a.gates)
        gates = a.gates / total.index_select(0, a.rows).clamp_min(_TINY)
        mean = mu.new_zeros(batch, mu.shape[1]).index_add_(0, a.rows, gates * mu)
        if extra is not None:  # rows with no live expert (switch overflow): the extras
            mean = torch.where(total > 0, mean, extra)
        return mean, aux, (mu, torch.log(gates.clamp_min(_TINY)), a.rows)

    def gates(self, x: Tensor, routing: Routing) -> Tensor:
        """The routing's gates, made per-output when the module has an ``output_gate``."""
        if self.output_gate is None:
            return routing.gates
        return self.output_gate(x.float(), routing.indices, routing.gates)

    def route(self, x: Tensor) -> Routing:
        """Routing of ``x`` as in ``forward`` (in the module's current mode)."""
        return self.router(x.float())

    def _autocast(self, x: Tensor) -> torch.autocast:
        return precision_autocast(x.device.type, self.precision)

    @torch.no_grad()
    def _record(self, routing: Routing, counts: Tensor, batch: int) -> None:
        self.stat_counts += counts.float()
        self.stat_sums += torch.stack(
            [
                torch.tensor(float(batch), device=counts.device),
                routing.entropy * batch,
                routing.overflow.detach() * batch,
            ]
        )

    def reset_stats(self) -> None:
        self.stat_counts.zero_()
        self.stat_sums.zero_()

    def n_active_params(self, k: int) -> int:
        """Parameters one row uses: router + ``k`` (largest) experts + shared + fallback."""
        per_expert = sorted(params_per_expert(self.experts), reverse=True)
        total = sum(p.numel() for p in self.router.parameters()) + sum(per_expert[:k])
        for extra in (self.shared_expert, self.fallback, self.output_gate):
            if extra is not None:
                total += sum(p.numel() for p in extra.parameters())
        return int(total)


def build_module(
    router: Router,
    in_features: int,
    out_features: int,
    *,
    n_experts: int,
    hidden: Sequence[int],
    activation: str,
    dropout: float,
    shared_expert: bool,
    fallback: bool,
    precision: str,
    experts: nn.Module | None = None,
    elementwise: bool = False,
    mixture: str = "logits",
) -> MoEModule:
    """The estimators' network: stacked MLP experts (+ a shared MLP, + a linear fallback).

    ``experts`` replaces the stacked MLPs (e.g. heterogeneous experts in a ModuleList);
    ``elementwise`` adds per-output gates (:class:`~.routing.ElementwiseGate`);
    ``mixture`` is :class:`MoEModule`'s.
    """
    if experts is None:
        experts = StackedMLPExperts(
            n_experts, in_features, hidden, out_features, activation=activation, dropout=dropout
        )
    shared = (
        MLPExpert(in_features, hidden, out_features, activation=activation, dropout=dropout)
        if shared_expert
        else None
    )
    skip = nn.Linear(in_features, out_features) if fallback else None
    gate = ElementwiseGate(in_features, len(experts), out_features) if elementwise else None
    sparse_ready(router, gate)
    return MoEModule(
        router, experts, shared_expert=shared, fallback=as_sparse_linear(skip),
        precision=precision, output_gate=gate, mixture=mixture, out_features=out_features,
    )


def sparse_ready(router: Router, gate: ElementwiseGate | None = None) -> None:
    """Let the maps of ``router`` (and ``gate``) that read ``x`` take CSR batches, in place.

    Their ``nn.Linear`` layers become :class:`~.sparse.SparseLinear` holding the same
    parameters (same names, same values): nothing else changes.
    """
    router.linear = as_sparse_linear(router.linear)
    if isinstance(getattr(router, "noise", None), nn.Linear):  # TopKRouter's noise map
        router.noise = as_sparse_linear(router.noise)
    if gate is not None:
        gate.linear = as_sparse_linear(gate.linear)


def gaussian_mixture_nll(
    mean: Tensor,
    parts: tuple[Tensor, Tensor, Tensor],
    y: Tensor,
    log_scale: Tensor,
) -> Tensor:
    """Mean over rows of ``-log sum_i g~_i N(y; mu_i, diag(exp(log_scale))^2)``.

    ``parts`` is ``(mu: (n, out), log_g: (n, 1) or (n, out), rows: (n,))`` per live
    assignment (:class:`MoEModule` with ``mixture='gaussian'``). With per-output gates each
    output is its own mixture. A row with no live expert (switch overflow) is scored as
    one Gaussian at ``mean`` (its fallback's output).
    """
    mu, log_g, rows = parts
    batch = mean.shape[0]
    y = y.to(mean.dtype).reshape(mean.shape)
    log_norm = -0.5 * ((y.index_select(0, rows) - mu) * torch.exp(-log_scale)).square() \
        - log_scale - 0.5 * math.log(2 * math.pi)  # (n, out)
    if log_g.shape[1] == 1:
        log_norm = log_norm.sum(1, keepdim=True)
    ll = scatter_logsumexp(log_g + log_norm, rows, batch).sum(1)  # (batch,)
    empty = torch.bincount(rows, minlength=batch) == 0
    if empty.any():
        alone = -0.5 * ((y - mean) * torch.exp(-log_scale)).square() - log_scale \
            - 0.5 * math.log(2 * math.pi)
        ll = torch.where(empty, alone.sum(1), ll)
    return -ll.mean()


class _AuxLossMixin:
    """Adds ``aux_loss_coef * balance + z_loss_coef * z`` to the training loss.

    A module output of three elements (``mixture='gaussian'``) is scored with
    :func:`gaussian_mixture_nll` instead of the criterion.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        output, aux = y_pred[0], y_pred[1]
        if len(y_pred) == 3:
            loss = gaussian_mixture_nll(output, y_pred[2], y_true, self.module_.log_scale)
        else:
            loss = super().get_loss(output, y_true, X=X, training=training)
        if training:
            loss = loss + self.aux_loss_coef * aux[0] + self.z_loss_coef * aux[1]
        return loss

    @property
    def _default_callbacks(self):
        # No accuracy scoring callback: it re-reads y from the dataset, which RowDataset
        # does not expose the skorch way; the estimator scores, the net only trains.
        return [
            ("epoch_timer", EpochTimer()),
            ("train_loss", PassthroughScoring(name="train_loss", on_train=True)),
            ("valid_loss", PassthroughScoring(name="valid_loss")),
            ("finite_check", FiniteCheck()),  # NaN/inf loss or output: a clear error
            ("print_log", PrintLog()),
        ]


class _Float16LossScalingMixin:
    """Loss scaling (``torch.amp.GradScaler``) when the module autocasts to float16.

    float16 gradients underflow to zero without it (PyTorch's AMP recipe always pairs
    float16 autocast with a ``GradScaler``; bfloat16 needs none). The loss is scaled
    before ``backward``, the gradients are unscaled before skorch's ``on_grad_computed``
    (so gradient-clipping callbacks see true values), and a step whose gradients
    overflowed to inf/NaN is skipped while the scale shrinks. The scaler lives for one
    ``fit``/``partial_fit`` only: nothing device-bound is left on the fitted net.
    """

    def partial_fit(self, X, y=None, classes=None, **fit_params):
        if getattr(self.module_, "precision", "float32") != "float16":
            return super().partial_fit(X, y, classes, **fit_params)
        self._grad_scaler = torch.amp.GradScaler(torch.device(self.device).type)
        try:
            return super().partial_fit(X, y, classes, **fit_params)
        finally:
            del self._grad_scaler

    def train_step(self, batch, **fit_params):
        scaler = getattr(self, "_grad_scaler", None)
        if scaler is None:
            return super().train_step(batch, **fit_params)
        optimizers = [getattr(self, name + "_") for name in self._optimizers]
        self._zero_grad_optimizer()
        self._set_training(True)
        Xi, yi = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        loss = self.get_loss(y_pred, yi, X=Xi, training=True)
        scaler.scale(loss).backward()
        for optimizer in optimizers:
            scaler.unscale_(optimizer)
        self.notify(
            "on_grad_computed",
            named_parameters=TeeGenerator(self.get_all_learnable_params()),
            batch=batch,
            training=True,
        )
        for optimizer in optimizers:
            scaler.step(optimizer)  # skipped when the gradients hold inf or NaN
        scaler.update()
        return {"loss": loss, "y_pred": y_pred}


class MoENetClassifier(
    LazySparseAdam, _Float16LossScalingMixin, _AuxLossMixin, NeuralNetClassifier
):
    """skorch classifier net for :class:`MoEModule` (logits + CrossEntropyLoss)."""

    def __init__(self, *args, aux_loss_coef: float = 1e-2, z_loss_coef: float = 1e-3, **kw):
        super().__init__(*args, **kw)
        self.aux_loss_coef = aux_loss_coef
        self.z_loss_coef = z_loss_coef


class MoENetRegressor(
    LazySparseAdam, _Float16LossScalingMixin, _AuxLossMixin, NeuralNetRegressor
):
    """skorch regressor net for :class:`MoEModule` (MSELoss)."""

    def __init__(self, *args, aux_loss_coef: float = 1e-2, z_loss_coef: float = 1e-3, **kw):
        super().__init__(*args, **kw)
        self.aux_loss_coef = aux_loss_coef
        self.z_loss_coef = z_loss_coef


class RowDataset(torch.utils.data.Dataset):
    """Rows of a float32 numpy array or CSR matrix, fetched a batch at a time.

    ``__getitems__`` (used by torch's DataLoader for whole batches) slices the rows of
    a batch: a dense tensor, or for CSR input a torch CSR tensor (never densified); pair it
    with :func:`collate_batch`.

    Parameters
    ----------
    X : ndarray or scipy.sparse CSR of shape (n_samples, n_features), float32
    y : ndarray of shape (n_samples,) or (n_samples, n_outputs), optional
    densify : bool, default=False
        Densify each CSR batch instead (the path before sparse-native input; kept for
        ``benchmarks/bench_moe.py``'s comparison).
    """

    def __init__(self, X, y=None, densify: bool = False) -> None:
        self.X = X
        self.y = y
        self.densify = densify

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, i: int):
        return self.__getitems__([i])

    def __getitems__(self, idx: list[int]) -> tuple[Tensor, Tensor]:
        idx = np.asarray(idx)
        xb = self.X[idx]
        yb = np.zeros(len(idx), dtype=np.float32) if self.y is None else self.y[idx]
        yb = torch.from_numpy(np.asarray(yb))
        if sp.issparse(xb):
            return (torch.from_numpy(xb.toarray()) if self.densify else csr_batch(xb)), yb
        return torch.from_numpy(np.ascontiguousarray(xb)), yb


def collate_batch(batch: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """``RowDataset`` already returns a whole batch: nothing left to collate."""
    return batch


class RoutingStats(Callback):
    """Log routing statistics of the training batches of each epoch into the history.

    Records ``router_entropy`` (mean entropy of the router softmax), ``load_max_violation``
    (``(max load - mean load) / mean load``, to catch expert collapse) and
    ``overflow_fraction`` (share of rows that hit a capacity limit; 0 except 'switch').
    """

    def on_epoch_begin(self, net, **kwargs) -> None:
        net.module_.reset_stats()

    def on_epoch_end(self, net, **kwargs) -> None:
        counts = net.module_.stat_counts.cpu().numpy()
        rows, entropy, overflow = net.module_.stat_sums.cpu().tolist()
        rows = max(rows, 1.0)
        mean = counts.mean() if counts.sum() > 0 else 1.0
        net.history.record("router_entropy", entropy / rows)
        net.history.record("load_max_violation", float((counts.max() - mean) / mean))
        net.history.record("overflow_fraction", overflow / rows)
        net.history.record("expert_load", (counts / max(counts.sum(), 1.0)).tolist())


class RouterGroupLasso(Callback):
    """Relaxed proximal group lasso on every router's input weights.

    In the first ``select_fraction`` of the epochs, after each training step, the penalty
    ``strength * sum_j ||W[:, j]||`` over the input features ``j`` of each router takes a
    proximal step (:func:`~.routing.shrink_router_inputs`; threshold ``strength`` times
    the learning rate of the router's parameter group), which sets the features that do
    not help the split to exactly zero. In the remaining epochs the features zeroed by
    then stay zero and the others train without the penalty (the relaxed lasso: the
    shrinkage would otherwise soften the gate on the features it keeps).

    Parameters
    ----------
    strength : float >= 0
    select_fraction : float in (0, 1]
    """

    def __init__(self, strength: float, select_fraction: float = 0.5) -> None:
        self.strength = strength
        self.select_fraction = select_fraction

    def on_train_begin(self, net, **kwargs) -> None:
        self.masks_ = None

    def on_batch_end(self, net, batch=None, training=False, **kwargs) -> None:
        if not training or self.strength <= 0:
            return
        routers = [m for m in net.module_.modules() if isinstance(m, Router)]
        selecting = self.masks_ is None or (
            len(net.history) <= self.select_fraction * net.max_epochs)
        if selecting:
            lrs = {id(p): group["lr"] for name in net._optimizers
                   for group in getattr(net, name + "_").param_groups
                   for p in group["params"]}
            for router in routers:
                lr = lrs.get(id(router.linear.weight), net.lr)
                shrink_router_inputs(router, self.strength * lr)
            # The features in after the last selecting step (Adam moves a zero the next).
            self.masks_ = [router.linear.weight.detach().abs().sum(0) > 0 for router in routers]
            return
        for router, keep in zip(routers, self.masks_, strict=True):
            shrink_router_inputs(router, 0.0, keep=keep)
