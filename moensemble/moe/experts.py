"""Expert networks.

Two shapes of the same idea:

* :class:`MLPExpert` — one small MLP, an ordinary ``nn.Module``. A list of them (an
  ``nn.ModuleList``, possibly of *different* modules) is the general, heterogeneous form.
* :class:`StackedMLPExperts` — ``n_experts`` MLPs of identical shape whose weights are
  stacked as ``(n_experts, in, out)`` tensors, so the rows routed to every expert can go
  through one grouped matrix multiply per layer (``torch.nn.functional.grouped_mm``)
  instead of a Python loop over experts.

Both take rows already *sorted by expert* (see :func:`moensemble.moe.routing.dispatch`):
an expert only ever sees the rows routed to it. Both also take a CSR batch (see
:mod:`moensemble.moe.sparse`): their first layer is then a sparse x dense product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .sparse import SparseLinear, is_sparse, sparse_stacked_linear

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "silu": F.silu,
}


def _layer_sizes(in_features: int, hidden: Sequence[int], out_features: int) -> list[int]:
    return [int(in_features), *(int(h) for h in hidden), int(out_features)]


class MLPExpert(nn.Module):
    """One expert: ``Linear -> activation -> dropout`` per hidden layer, then a linear head.

    Parameters
    ----------
    in_features, out_features : int
        Input and output widths.
    hidden : sequence of int
        Hidden layer widths; empty gives a linear expert.
    activation : {'relu', 'gelu', 'tanh', 'silu'}
    dropout : float
        Dropout after every hidden activation.
    """

    accepts_sparse = True  # the first layer is a SparseLinear: dispatch passes CSR rows

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = _layer_sizes(in_features, hidden, out_features)
        pairs = zip(sizes[:-1], sizes[1:], strict=True)
        self.layers = nn.ModuleList(
            (SparseLinear if i == 0 else nn.Linear)(a, b) for i, (a, b) in enumerate(pairs)
        )
        self.activation = activation
        self.dropout = float(dropout)

    def forward(self, x: Tensor) -> Tensor:  # x: (rows, in) -> (rows, out)
        act = ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = F.dropout(act(layer(x)), self.dropout, self.training)
        return self.layers[-1](x)


class StackedMLPExperts(nn.Module):
    """``n_experts`` MLPs of the same shape with stacked weights.

    ``weights[l]`` has shape ``(n_experts, in_l, out_l)`` and ``biases[l]`` has shape
    ``(n_experts, out_l)``; each expert is initialised like ``nn.Linear``.

    Parameters
    ----------
    n_experts : int
    in_features, out_features : int
    hidden : sequence of int
    activation : {'relu', 'gelu', 'tanh', 'silu'}
    dropout : float
    impl : {'auto', 'grouped_mm', 'loop'}
        How :meth:`forward_sorted` runs the experts. ``'grouped_mm'`` makes one
        ``torch.nn.functional.grouped_mm`` call per layer over all routed rows;
        ``'loop'`` runs each expert with a non-empty slice in turn. ``'auto'`` picks
        ``grouped_mm`` on CPU while experts average fewer than 64 rows (measured faster
        there in ``benchmarks/bench_moe.py``; the loop is faster for bigger slices) and
        on CUDA only for bfloat16, which is what its CUDA kernels accept; otherwise the
        loop.
    """

    def __init__(
        self,
        n_experts: int,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        activation: str = "relu",
        dropout: float = 0.0,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        sizes = _layer_sizes(in_features, hidden, out_features)
        self.n_experts = int(n_experts)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            # Same distribution as nn.Linear's default (kaiming_uniform(a=sqrt(5))).
            w = torch.empty(n_experts, fan_in, fan_out).uniform_(-bound, bound)
            b = torch.empty(n_experts, fan_out).uniform_(-bound, bound)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(b))
        self.activation = activation
        self.dropout = float(dropout)
        self.impl = impl

    def __len__(self) -> int:
        return self.n_experts

    @property
    def params_per_expert(self) -> int:
        """Number of parameters one expert uses for one row."""
        pairs = zip(self.weights, self.biases, strict=True)
        return sum(w[0].numel() + b[0].numel() for w, b in pairs)

    def _use_grouped(self, x: Tensor, dtype: torch.dtype) -> bool:
        if self.impl != "auto":
            return self.impl == "grouped_mm"
        if x.device.type == "cpu":
            # Measured (benchmarks/bench_moe.py, torch 2.13 CPU): grouped_mm wins while
            # experts get few rows (per-expert overhead dominates), the loop of addmm
            # wins from ~64 rows per expert on (1.2-1.5x at the 4096 x 256 x 512 size).
            rows_per_expert = x.shape[0] / max(self.n_experts, 1)
            return dtype in (torch.float32, torch.bfloat16) and rows_per_expert < 64
        return x.device.type == "cuda" and dtype == torch.bfloat16

    def forward_sorted(self, x: Tensor, expert_ids: Tensor, counts: Tensor) -> Tensor:
        """Run every expert on its own contiguous slice of ``x``.

        Parameters
        ----------
        x : Tensor of shape (n_routed, in_features)
            Rows sorted by expert.
        expert_ids : Tensor of shape (n_routed,)
            The (sorted) expert of each row.
        counts : Tensor of shape (n_experts,)
            Rows per expert; ``counts.sum() == n_routed``.

        Returns
        -------
        Tensor of shape (n_routed, out_features)
        """
        start = 0
        if is_sparse(x):
            # CSR rows: the first layer is one sparse x dense lookup over the non-zeros
            # (float32; autocast does not cover embedding_bag), the rest runs dense.
            x = sparse_stacked_linear(x, expert_ids, self.weights[0], self.biases[0])
            start = 1
            if len(self.weights) > 1:
                x = F.dropout(ACTIVATIONS[self.activation](x), self.dropout, self.training)
            else:
                return x
        dtype = x.dtype
        if torch.is_autocast_enabled(x.device.type):
            # grouped_mm is not on autocast's cast lists: cast operands by hand.
            dtype = torch.get_autocast_dtype(x.device.type)
        if self._use_grouped(x, dtype):
            return self._grouped(x.to(dtype), expert_ids, counts, dtype, start)
        return self._loop(x, counts, start)

    def _grouped(
        self, x: Tensor, expert_ids: Tensor, counts: Tensor, dtype: torch.dtype, start: int = 0
    ) -> Tensor:
        offs = torch.cumsum(counts, 0).to(torch.int32)
        act = ACTIVATIONS[self.activation]
        n_layers = len(self.weights)
        for i in range(start, n_layers):
            w, b = self.weights[i], self.biases[i]
            # bias: one row of b per routed row, gathered by expert id.
            x = _grouped_mm(x, w.to(dtype), offs) + b.to(dtype)[expert_ids]
            if i < n_layers - 1:
                x = F.dropout(act(x), self.dropout, self.training)
        return x

    def _loop(self, x: Tensor, counts: Tensor, start: int = 0) -> Tensor:
        act = ACTIVATIONS[self.activation]
        n_layers = len(self.weights)
        # unbind once per layer: indexing w[e] per expert would make autograd build a
        # full (n_experts, in, out) zero gradient for every expert.
        layers = [
            (self.weights[i].unbind(0), self.biases[i].unbind(0)) for i in range(start, n_layers)
        ]
        outs = []
        for e, xe in enumerate(torch.split(x, counts.tolist())):
            if xe.shape[0] == 0:
                continue
            for i, (ws, bs) in enumerate(layers, start):
                xe = torch.addmm(bs[e], xe, ws[e])
                if i < n_layers - 1:
                    xe = F.dropout(act(xe), self.dropout, self.training)
            outs.append(xe)
        if not outs:
            return x.new_zeros(0, self.biases[-1].shape[1])
        return torch.cat(outs)

    def forward_dense(self, x: Tensor) -> Tensor:
        """Run *every* expert on *every* row: ``(batch, in) -> (n_experts, batch, out)``.

        The seed code's dense mixture; kept for the dense ``'softmax'`` router baseline
        and the benchmark, never used for top-k routing.
        """
        act = ACTIVATIONS[self.activation]
        h = x.unsqueeze(0).expand(self.n_experts, *x.shape)
        n_layers = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b.unsqueeze(1), h, w)
            if i < n_layers - 1:
                h = F.dropout(act(h), self.dropout, self.training)
        return h

    def expert(self, index: int) -> MLPExpert:
        """A standalone :class:`MLPExpert` holding a *copy* of expert ``index``'s weights."""
        sizes = [self.weights[0].shape[1]] + [w.shape[2] for w in self.weights]
        mlp = MLPExpert(
            sizes[0], sizes[1:-1], sizes[-1], activation=self.activation, dropout=self.dropout
        )
        with torch.no_grad():
            for layer, w, b in zip(mlp.layers, self.weights, self.biases, strict=True):
                layer.weight.copy_(w[index].T)
                layer.bias.copy_(b[index])
        return mlp

    @classmethod
    def from_mlp(cls, mlp: MLPExpert, n_experts: int, *, noise: float = 0.0) -> StackedMLPExperts:
        """Upcycle: ``n_experts`` copies of a trained dense ``mlp`` (optionally jittered).

        ``noise`` is the standard deviation, relative to each weight tensor's own, of
        Gaussian noise added to the copies so that the experts can drift apart.
        """
        sizes = [mlp.layers[0].in_features] + [layer.out_features for layer in mlp.layers]
        stacked = cls(
            n_experts, sizes[0], sizes[1:-1], sizes[-1],
            activation=mlp.activation, dropout=mlp.dropout,
        )
        with torch.no_grad():
            for layer, w, b in zip(mlp.layers, stacked.weights, stacked.biases, strict=True):
                w.copy_(layer.weight.T.expand_as(w))
                b.copy_(layer.bias.expand_as(b))
                if noise > 0:
                    w.add_(torch.randn_like(w) * noise * layer.weight.std())
        return stacked


def _grouped_mm(x: Tensor, w: Tensor, offs: Tensor) -> Tensor:
    """``grouped_mm`` with the 16-byte stride alignment it needs, by zero padding.

    x: (n_routed, in) sorted by expert, w: (n_experts, in, out) -> (n_routed, out).
    """
    align = max(1, 16 // x.element_size())
    pad_in, pad_out = (-w.shape[1]) % align, (-w.shape[2]) % align
    if pad_in or pad_out:
        w = F.pad(w, (0, pad_out, 0, pad_in))
    if pad_in or x.stride(0) % align or x.stride(1) != 1:
        x = F.pad(x, (0, pad_in)).contiguous()
    y = F.grouped_mm(x, w, offs=offs)
    return y[:, : y.shape[1] - pad_out] if pad_out else y


def params_per_expert(experts: nn.Module | Sequence[nn.Module]) -> list[int]:
    """Parameters each expert uses per row, for stacked or listed experts."""
    if isinstance(experts, StackedMLPExperts):
        return [experts.params_per_expert] * len(experts)
    return [sum(p.numel() for p in e.parameters()) for e in experts]
