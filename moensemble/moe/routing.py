"""Routers, auxiliary losses and sparse dispatch: the shared routing core.

A router maps ``x: (batch, dim)`` to a :class:`Routing`: for every row, the experts it
goes to (``indices: (batch, k)``), their weights (``gates: (batch, k)``) and which of
those assignments are live (``mask``), plus the statistics and auxiliary losses the
training loop and the logs need. :func:`dispatch` then runs each expert on *only* the
rows routed to it and scatters the weighted outputs back with ``index_add_``, so the
cost grows with ``k``, not with the number of experts.

Routers (all compute in float32, also under autocast):

* :class:`SoftmaxRouter` — dense gating over all experts (Jacobs & Jordan 1991).
* :class:`TopKRouter` — noisy top-k gating (Shazeer et al. 2017): trainable noise in
  training, softmax over the k kept logits.
* :class:`SwitchRouter` — top-1 with a capacity per expert (Fedus et al. 2021); rows
  past capacity are *masked* (``overflow``), the caller gives them a fallback path.
* :class:`ExpertChoiceRouter` — each expert takes its top rows (Zhou et al. 2022).

Inference (``router.eval()``) is dropless token choice for every router — no noise, no
capacity, no gate dropout — so a row's routing never depends on the rest of its batch.
For ``ExpertChoiceRouter`` that means top-k over the same softmax scores.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .sparse import densify, split_rows, take_rows

ROUTERS = ("softmax", "topk", "switch", "expert_choice")


class Routing(NamedTuple):
    """What a router decided for one batch.

    Attributes
    ----------
    indices : LongTensor of shape (batch, k)
        Expert of each assignment.
    gates : Tensor of shape (batch, k), float32
        Weight of each assignment (0 where ``mask`` is False).
    mask : BoolTensor of shape (batch, k) or None
        Live assignments; ``None`` means all are live.
    probs : Tensor of shape (batch, n_experts)
        Softmax of the router logits over all experts.
    load : Tensor of shape (n_experts,)
        Share of the live assignments that went to each expert (sums to 1).
    entropy : Tensor, scalar
        Mean entropy of ``probs`` over the rows.
    aux_loss : Tensor, scalar
        Load-balancing loss ``E * sum_i f_i * P_i`` (Switch Transformer); 0 in eval mode.
    z_loss : Tensor, scalar
        Router z-loss ``mean(logsumexp(logits) ** 2)`` (ST-MoE); 0 in eval mode.
    overflow : Tensor, scalar
        Fraction of rows that lost an assignment to a capacity limit (switch).
    """

    indices: Tensor
    gates: Tensor
    mask: Tensor | None
    probs: Tensor
    load: Tensor
    entropy: Tensor
    aux_loss: Tensor
    z_loss: Tensor
    overflow: Tensor


def load_balancing_loss(probs: Tensor, indices: Tensor) -> Tensor:
    """``E * sum_i f_i * P_i``: ``f_i`` the share of top-k picks, ``P_i`` the mean prob.

    Equals 1 when routing is uniform, grows towards ``E`` as routing collapses; the
    gradient flows through ``P`` only (``f`` is a count).
    """
    n_experts = probs.shape[1]
    f = torch.bincount(indices.reshape(-1), minlength=n_experts).float() / indices.numel()
    return n_experts * torch.sum(f * probs.mean(0))


def z_loss(logits: Tensor) -> Tensor:
    """ST-MoE router z-loss: keeps the router logits small (float32 stability)."""
    return torch.logsumexp(logits, dim=-1).square().mean()


def _entropy(probs: Tensor) -> Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(-1).mean()


def _load(indices: Tensor, mask: Tensor | None, n_experts: int) -> Tensor:
    flat = indices.reshape(-1) if mask is None else indices[mask]
    counts = torch.bincount(flat, minlength=n_experts).float()
    return counts / counts.sum().clamp_min(1.0)


class Router(nn.Module):
    """Base router: a float32 linear map ``(batch, dim) -> (batch, n_experts)`` logits.

    Parameters
    ----------
    in_features : int
    n_experts : int
    top_k : int
        Experts per row (ignored by :class:`SoftmaxRouter`, 1 for :class:`SwitchRouter`).
    gate_dropout : float
        In training, each assignment but a row's best is dropped with this probability
        and the remaining gates are renormalised (expert dropout on the gate).
    balance : {'aux_loss', 'bias'}
        ``'bias'``: DeepSeek-V3 auxiliary-loss-free balancing — a per-expert bias
        (a buffer, not trained by gradient) is added to the scores used to *select*
        experts, never to the gates, and is nudged by ``bias_update_rate`` after every
        training batch towards the under-loaded experts.
    bias_update_rate : float
    """

    def __init__(
        self,
        in_features: int,
        n_experts: int,
        top_k: int = 1,
        *,
        gate_dropout: float = 0.0,
        balance: str = "aux_loss",
        bias_update_rate: float = 1e-3,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k={top_k} must be in [1, n_experts={n_experts}].")
        self.n_experts = int(n_experts)
        self.top_k = int(top_k)
        self.gate_dropout = float(gate_dropout)
        self.balance = balance
        self.bias_update_rate = float(bias_update_rate)
        self.linear = nn.Linear(in_features, n_experts)
        self.register_buffer("expert_bias", torch.zeros(n_experts))

    def logits(self, x: Tensor) -> Tensor:
        """Router logits in float32, whatever autocast is doing around it."""
        with torch.autocast(x.device.type, enabled=False):
            return self.linear(x.float())

    def forward(self, x: Tensor) -> Routing:
        logits = self.logits(x)  # (batch, E)
        if self.training:
            return self._route_train(x, logits)
        return self._route_topk(logits, self._k_eval())

    # -- pieces shared by the subclasses ------------------------------------------------
    def _k_eval(self) -> int:
        return self.top_k

    def _route_train(self, x: Tensor, logits: Tensor) -> Routing:
        return self._route_topk(logits, self.top_k)

    def _select(self, scores: Tensor, k: int) -> Tensor:
        """Top-k expert indices, with the balancing bias on the selection scores only."""
        if self.balance == "bias":
            scores = scores + self.expert_bias
        return scores.topk(k, dim=-1).indices

    def _route_topk(self, logits: Tensor, k: int, scores: Tensor | None = None) -> Routing:
        scores = logits if scores is None else scores
        indices = self._select(scores, k)
        if k == 1:
            # A softmax over one kept logit is constantly 1 and would give the router no
            # gradient from the task loss; use the full-softmax probability, as Switch does.
            gates = torch.softmax(scores, dim=-1).gather(1, indices)
        else:
            gates = torch.softmax(scores.gather(1, indices), dim=-1)
        mask = self._gate_dropout(gates)
        if mask is not None:
            gates = gates * mask
            gates = gates / gates.sum(-1, keepdim=True)
        return self._finish(logits, indices, gates, mask)

    def _gate_dropout(self, gates: Tensor) -> Tensor | None:
        if not (self.training and self.gate_dropout > 0 and gates.shape[1] > 1):
            return None
        keep = torch.rand_like(gates) >= self.gate_dropout
        # Never drop a row's best assignment: every row keeps at least one expert.
        best = gates.argmax(-1, keepdim=True)
        return keep.scatter(1, best, True)

    def _finish(
        self,
        logits: Tensor,
        indices: Tensor,
        gates: Tensor,
        mask: Tensor | None,
        overflow: Tensor | None = None,
    ) -> Routing:
        probs = torch.softmax(logits, dim=-1)
        load = _load(indices, mask, self.n_experts)
        if self.training and self.balance == "bias" and self.linear.weight.requires_grad:
            self._update_bias(load)  # (a frozen router keeps its partition: no nudging)
        # The auxiliary losses only enter the training loss: in eval mode (predict, the
        # validation loss) they are zeros, which saves about half of a one-row predict.
        zero = logits.new_zeros(())
        return Routing(
            indices=indices,
            gates=gates,
            mask=mask,
            probs=probs,
            load=load.detach(),
            entropy=_entropy(probs).detach(),
            aux_loss=load_balancing_loss(probs, indices) if self.training else zero,
            z_loss=z_loss(logits) if self.training else zero,
            overflow=logits.new_zeros(()) if overflow is None else overflow,
        )

    @torch.no_grad()
    def _update_bias(self, load: Tensor) -> None:
        # DeepSeek-V3: raise the bias of under-loaded experts, lower the over-loaded ones.
        self.expert_bias += self.bias_update_rate * torch.sign(1.0 / self.n_experts - load)


@torch.no_grad()
def shrink_router_inputs(
    router: Router, threshold: float, keep: Tensor | None = None
) -> None:
    """Group soft-thresholding of ``router``'s input weights, in place (a proximal step).

    One group per input feature: its column in ``router.linear.weight`` and, for a
    :class:`TopKRouter`, in the noise map's weight. Each column is scaled by
    ``max(0, 1 - threshold / ||column||)``, so a feature whose group norm is below
    ``threshold`` is set exactly to zero: after every optimizer step, this is the proximal
    gradient method for the group-lasso penalty ``sum_j ||W[:, j]||`` (the router reads
    few features). ``keep`` (bool, ``(in_features,)``), if given, also zeroes the
    features it marks False.
    """
    weights = [router.linear.weight]
    noise = getattr(router, "noise", None)
    if isinstance(noise, nn.Linear):
        weights.append(noise.weight)
    norms = torch.sqrt(sum(w.square().sum(0) for w in weights))  # (in_features,)
    scale = (1.0 - threshold / norms.clamp_min(1e-12)).clamp_min(0.0)
    if keep is not None:
        scale = scale * keep
    for w in weights:
        w.mul_(scale)


class SoftmaxRouter(Router):
    """Dense gating: every row goes to every expert with weight ``softmax(W x)``."""

    def _k_eval(self) -> int:
        return self.n_experts

    def _route_train(self, x: Tensor, logits: Tensor) -> Routing:
        return self._route_topk(logits, self.n_experts)

    def _route_topk(self, logits: Tensor, k: int, scores: Tensor | None = None) -> Routing:
        batch = logits.shape[0]
        indices = torch.arange(self.n_experts, device=logits.device).expand(batch, -1)
        gates = torch.softmax(logits, dim=-1)
        mask = self._gate_dropout(gates)
        if mask is not None:
            gates = gates * mask
            gates = gates / gates.sum(-1, keepdim=True)
        routing = self._finish(logits, indices, gates, mask)
        load = gates.mean(0).detach()
        if not self.training:
            return routing._replace(load=load)
        # With dense routing the pick counts are uniform; balance the mean gate instead.
        probs = routing.probs
        aux = self.n_experts * torch.sum(probs.mean(0).detach() * probs.mean(0))
        return routing._replace(aux_loss=aux, load=load)


class TopKRouter(Router):
    """Noisy top-k gating (Shazeer et al. 2017).

    In training, ``softplus(W_noise x) * N(0, 1)`` is added to the logits before the
    top-k; gates are the softmax over the k kept (noisy) logits. With ``top_k=1`` the
    gate is the full-softmax probability of the chosen expert instead (as in Switch), so
    the router still gets a gradient from the task loss.
    """

    def __init__(self, in_features: int, n_experts: int, top_k: int = 2, **kwargs) -> None:
        super().__init__(in_features, n_experts, top_k, **kwargs)
        self.noise = nn.Linear(in_features, n_experts)
        nn.init.zeros_(self.noise.weight)
        nn.init.zeros_(self.noise.bias)

    def _route_train(self, x: Tensor, logits: Tensor) -> Routing:
        with torch.autocast(x.device.type, enabled=False):
            std = F.softplus(self.noise(x.float()))
        noisy = logits + torch.randn_like(logits) * std
        return self._route_topk(logits, self.top_k, scores=noisy)


class SwitchRouter(Router):
    """Top-1 routing with a capacity per expert (Switch Transformer).

    In training each expert takes at most ``ceil(capacity_factor * batch / E)`` rows, in
    batch order; the rest are *overflow*: their assignment is masked out, and the
    network must give them a fallback path (never drop them from the output). The gate
    is the full-softmax probability of the chosen expert.
    """

    def __init__(
        self, in_features: int, n_experts: int, top_k: int = 1, *,
        capacity_factor: float = 1.25, **kwargs,
    ) -> None:
        super().__init__(in_features, n_experts, 1, **kwargs)
        self.capacity_factor = float(capacity_factor)

    def _route_topk(self, logits: Tensor, k: int, scores: Tensor | None = None) -> Routing:
        indices = self._select(logits, 1)  # (batch, 1)
        gates = torch.softmax(logits, dim=-1).gather(1, indices)
        if not self.training:
            return self._finish(logits, indices, gates, None)
        batch = logits.shape[0]
        capacity = math.ceil(self.capacity_factor * batch / self.n_experts)
        one_hot = F.one_hot(indices[:, 0], self.n_experts)
        # position of each row in its expert's queue (0-based, batch order)
        position = (torch.cumsum(one_hot, 0) * one_hot).sum(-1, keepdim=True) - 1
        mask = position < capacity
        overflow = 1.0 - mask.float().mean()
        return self._finish(logits, indices, gates * mask, mask, overflow)


class ExpertChoiceRouter(Router):
    """Expert-choice routing (Zhou et al. 2022).

    In training each expert takes the ``ceil(capacity_factor * top_k * batch / E)`` rows
    with the highest softmax score for it (so ``top_k`` experts per row on average, load
    balanced by construction; a row may get none or many). ``indices`` is then
    ``(batch, n_experts)`` with ``mask`` marking the chosen pairs and ``gates`` the
    softmax scores. At inference it falls back to token-choice top-k over the same
    scores (gates not renormalised, as in training), so a row's prediction does not
    depend on its batch.
    """

    def __init__(
        self, in_features: int, n_experts: int, top_k: int = 2, *,
        capacity_factor: float = 1.0, **kwargs,
    ) -> None:
        super().__init__(in_features, n_experts, top_k, **kwargs)
        self.capacity_factor = float(capacity_factor)

    def _route_train(self, x: Tensor, logits: Tensor) -> Routing:
        batch = logits.shape[0]
        probs = torch.softmax(logits, dim=-1)
        capacity = min(batch, math.ceil(self.capacity_factor * self.top_k * batch / self.n_experts))
        rows = probs.T.topk(capacity, dim=1).indices  # (E, capacity)
        mask = torch.zeros_like(probs, dtype=torch.bool)
        mask[rows, torch.arange(self.n_experts, device=probs.device)[:, None]] = True
        indices = torch.arange(self.n_experts, device=probs.device).expand(batch, -1)
        return self._finish(logits, indices, probs * mask, mask)

    def _route_topk(self, logits: Tensor, k: int, scores: Tensor | None = None) -> Routing:
        indices = self._select(logits, k)
        gates = torch.softmax(logits, dim=-1).gather(1, indices)
        return self._finish(logits, indices, gates, None)


class ElementwiseGate(nn.Module):
    """Element-wise (per-output) gates: one weight per assignment *and* output unit.

    ``gate[b, j, o] = g_j(x_b) * 2 * sigmoid(V x_b)[indices[b, j], o]``: the router's
    scalar gate of each assignment, rescaled per output (per class logit or regression
    target) by a float32 linear map ``V: in -> n_experts * out_features``. ``V`` starts at
    zero, so training starts from the scalar gates; masked assignments stay at 0.
    """

    def __init__(self, in_features: int, n_experts: int, out_features: int) -> None:
        super().__init__()
        self.n_experts = int(n_experts)
        self.out_features = int(out_features)
        self.linear = nn.Linear(in_features, n_experts * out_features)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, indices: Tensor, gates: Tensor) -> Tensor:
        """``x: (batch, in)``, ``indices, gates: (batch, k)`` -> ``(batch, k, out)``."""
        batch, k = indices.shape
        with torch.autocast(x.device.type, enabled=False):
            scale = 2 * torch.sigmoid(self.linear(x.float()))
        scale = scale.view(batch, self.n_experts, self.out_features)
        scale = scale.gather(1, indices.unsqueeze(-1).expand(batch, k, self.out_features))
        return gates.float().unsqueeze(-1) * scale

    @torch.no_grad()
    def grow(self, index: int) -> None:
        """Add an expert whose per-output weights copy expert ``index``'s."""
        out = self.out_features
        w, b = self.linear.weight, self.linear.bias
        new = nn.Linear(w.shape[1], w.shape[0] + out, device=w.device, dtype=w.dtype)
        new.weight.copy_(torch.cat([w, w[index * out : (index + 1) * out]]))
        new.bias.copy_(torch.cat([b, b[index * out : (index + 1) * out]]))
        self.linear = new
        self.n_experts += 1


def make_router(
    name: str,
    in_features: int,
    n_experts: int,
    top_k: int,
    *,
    capacity_factor: float = 1.25,
    gate_dropout: float = 0.0,
    balance: str = "aux_loss",
    bias_update_rate: float = 1e-3,
) -> Router:
    """Build a router by name: ``'softmax' | 'topk' | 'switch' | 'expert_choice'``."""
    common = dict(gate_dropout=gate_dropout, balance=balance, bias_update_rate=bias_update_rate)
    if name == "softmax":
        return SoftmaxRouter(in_features, n_experts, 1, **common)
    if name == "topk":
        return TopKRouter(in_features, n_experts, top_k, **common)
    if name == "switch":
        return SwitchRouter(in_features, n_experts, capacity_factor=capacity_factor, **common)
    if name == "expert_choice":
        return ExpertChoiceRouter(
            in_features, n_experts, top_k, capacity_factor=capacity_factor, **common
        )
    raise ValueError(f"`router` must be one of {ROUTERS}; got {name!r}.")


class Assignments(NamedTuple):
    """The live (row, expert) assignments of a batch after the experts ran, grouped by expert.

    Attributes
    ----------
    outputs : Tensor of shape (n_live, out_features), float32
        Each assignment's expert output (logits for a classifier, means for a regressor).
    gates : Tensor of shape (n_live, 1) or (n_live, out_features), float32
        The assignment's gate (one per output with element-wise gates).
    rows : LongTensor of shape (n_live,)
        The batch row of each assignment.
    counts : LongTensor of shape (n_experts,)
        Rows each expert processed.
    """

    outputs: Tensor
    gates: Tensor
    rows: Tensor
    counts: Tensor


def run_experts(
    x: Tensor,
    indices: Tensor,
    gates: Tensor,
    experts: nn.Module | Sequence[nn.Module],
    mask: Tensor | None = None,
) -> Assignments:
    """Run each expert on only the rows routed to it; the per-assignment outputs.

    Rows are grouped by expert with a stable ``argsort``; a :class:`StackedMLPExperts`
    (anything with ``forward_sorted(x, expert_ids, counts)``) runs them in one grouped
    call, any other sequence of modules (heterogeneous experts) is looped over, each
    module seeing only its slice. :func:`dispatch` sums the gated outputs back into their
    rows; the likelihood mixture combines them in its own way (``moe/net.py``).

    Parameters are those of :func:`dispatch`.
    """
    batch, k = indices.shape
    n_experts = len(experts)
    expert_of = indices.reshape(-1)  # (batch*k,)
    row_of = torch.arange(batch, device=x.device).repeat_interleave(k)
    gate_of = gates.reshape(batch * k, -1)  # (batch*k, 1 or out)
    if mask is not None:
        live = mask.reshape(-1)
        expert_of, row_of, gate_of = expert_of[live], row_of[live], gate_of[live]
    order = torch.argsort(expert_of, stable=True)
    expert_of, row_of, gate_of = expert_of[order], row_of[order], gate_of[order]
    counts = torch.bincount(expert_of, minlength=n_experts)
    # (n_routed, in): only the routed rows, grouped by expert (a CSR batch stays CSR).
    x_sorted = take_rows(x, row_of)
    if hasattr(experts, "forward_sorted"):
        y = experts.forward_sorted(x_sorted, expert_of, counts)
    else:
        y = _loop_experts(experts, x_sorted, counts)
    return Assignments(y.float(), gate_of.float(), row_of, counts)


def dispatch(
    x: Tensor,
    indices: Tensor,
    gates: Tensor,
    experts: nn.Module | Sequence[nn.Module],
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run each expert on only the rows routed to it; combine with the gates.

    The experts run as in :func:`run_experts`; their outputs are weighted by their gate
    and summed back into their rows with ``index_add_`` in float32.

    Parameters
    ----------
    x : Tensor of shape (batch, in_features)
    indices : LongTensor of shape (batch, k)
    gates : Tensor of shape (batch, k) or (batch, k, out_features)
        One weight per assignment, or one per assignment and output (element-wise gates).
    experts : StackedMLPExperts or sequence of nn.Module
        Every expert maps ``(rows, in_features) -> (rows, out_features)``.
    mask : BoolTensor of shape (batch, k), optional
        Assignments to run; the others cost nothing.

    Returns
    -------
    out : Tensor of shape (batch, out_features), float32
    counts : LongTensor of shape (n_experts,)
        Rows each expert processed.
    """
    a = run_experts(x, indices, gates, experts, mask)
    y = a.outputs * a.gates
    out = y.new_zeros(indices.shape[0], y.shape[1]).index_add_(0, a.rows, y)
    return out, a.counts


def scatter_logsumexp(values: Tensor, rows: Tensor, batch: int) -> Tensor:
    """``out[b] = log sum_{j: rows[j] = b} exp(values[j])``, computed stably.

    ``values: (n, m)`` (finite), ``rows: (n,)`` -> ``(batch, m)``; a row that no ``j``
    points to gets 0 (and no gradient), not ``-inf``.
    """
    index = rows.unsqueeze(1).expand_as(values)
    peak = values.new_full((batch, values.shape[1]), -math.inf)
    peak = peak.scatter_reduce(0, index, values.detach(), "amax", include_self=True)
    empty = torch.isinf(peak)
    peak = peak.masked_fill(empty, 0.0)
    total = values.new_zeros(batch, values.shape[1]).index_add_(
        0, rows, torch.exp(values - peak.index_select(0, rows))
    )
    return torch.log(total + empty.float()) + peak


def _loop_experts(experts: Sequence[nn.Module], x_sorted: Tensor, counts: Tensor) -> Tensor:
    # CSR rows go as they are to experts that take them (MLPExpert); any other module
    # gets its own rows densified.
    outs = [
        expert(xe if getattr(expert, "accepts_sparse", False) else densify(xe))
        for expert, xe in zip(experts, split_rows(x_sorted, counts.tolist()), strict=True)
        if xe.shape[0] > 0
    ]
    if outs:
        return torch.cat([o.float() for o in outs])
    # No row routed anywhere: probe one expert for the output width.
    with torch.no_grad():
        width = experts[0](torch.zeros(1, x_sorted.shape[1], device=x_sorted.device)).shape[1]
    return torch.zeros(0, width, device=x_sorted.device)
