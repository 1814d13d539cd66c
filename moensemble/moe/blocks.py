"""MoE blocks on a shared representation: ``encoder -> n x (h + MoE(norm(h))) -> head``.

In the seed articles the MoE layers of a transformer sit on hidden states, not on the raw
input. :class:`MoENetwork` offers that shape to the estimators (``encoder``, ``n_layers``):

* an optional *encoder*, an MLP trunk shared by every router and expert (its first layer
  is a :class:`~.sparse.SparseInputLinear`, so CSR input costs ``nnz x width`` once,
  instead of once per router and expert);
* ``n_layers`` pre-norm residual blocks :class:`MoEBlock`, each ``h + MoE(LayerNorm(h))``
  with any router, experts, shared expert and element-wise gates of
  :class:`~.net.MoEModule` (width ``d -> d``). A capacity-limited router's overflow rows
  keep ``h`` through the residual, so the blocks need no fallback path;
* a final ``LayerNorm`` and a linear head.

The network looks like a :class:`~.net.MoEModule` to the estimators and callbacks: its
``router``, ``experts``, routing statistics and :meth:`MoENetwork.route` are those of the
*first* block (``route(x, block=i)`` reads the others).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .experts import ACTIVATIONS
from .net import MoEModule
from .routing import Router, Routing
from .sparse import SparseInputLinear, is_sparse


class MoEBlock(nn.Module):
    """``h + MoE(LayerNorm(h))``: a pre-norm residual MoE layer of width ``d``."""

    def __init__(self, moe: MoEModule, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.moe = moe

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:  # (batch, d) -> (batch, d), (2,)
        out, aux = self.moe(self.norm(h))
        return h + out, aux


class Encoder(nn.Module):
    """The shared trunk: ``Linear -> activation -> dropout`` per width (first one sparse-ready)."""

    def __init__(
        self, in_features: int, widths: Sequence[int], *, activation: str, dropout: float
    ) -> None:
        super().__init__()
        sizes = [int(in_features), *(int(w) for w in widths)]
        self.layers = nn.ModuleList(
            (SparseInputLinear if i == 0 else nn.Linear)(a, b)
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        )
        self.activation = activation
        self.dropout = float(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (batch, in) dense or CSR -> (batch, d)
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = F.dropout(act(layer(x)), self.dropout, self.training)
        return x


class MoENetwork(nn.Module):
    """``head(norm(block_n(... block_1(encoder(x)))))``; forward returns ``(output, aux)``.

    ``aux`` is the sum over blocks of ``[load_balancing_loss, z_loss]``.

    Parameters
    ----------
    encoder : Encoder or None
        ``None``: the blocks run on the raw (dense) features, ``d = in_features``.
    blocks : sequence of MoEBlock
    head : nn.Linear
        ``d -> out_features``.
    """

    def __init__(self, encoder: Encoder | None, blocks: Sequence[MoEBlock], head: nn.Linear):
        super().__init__()
        self.encoder = encoder
        self.blocks = nn.ModuleList(blocks)
        width = head.in_features
        self.norm = nn.LayerNorm(width)
        self.head = head

    # -- what the estimators and callbacks read: the first block ----------------------
    @property
    def router(self) -> Router:
        return self.blocks[0].moe.router

    @property
    def experts(self) -> nn.Module:
        return self.blocks[0].moe.experts

    @property
    def precision(self) -> str:
        return self.blocks[0].moe.precision

    @property
    def stat_counts(self) -> Tensor:
        return self.blocks[0].moe.stat_counts

    @property
    def stat_sums(self) -> Tensor:
        return self.blocks[0].moe.stat_sums

    def reset_stats(self) -> None:
        for block in self.blocks:
            block.moe.reset_stats()

    # -- forward ------------------------------------------------------------------------
    def encode(self, x: Tensor) -> Tensor:
        if self.encoder is not None:
            return self.encoder(x)
        if is_sparse(x):
            raise ValueError(
                "MoE blocks without an `encoder` run on the raw features, which must be "
                "dense; give an `encoder` (e.g. encoder=(256,)) for sparse input."
            )
        return x.float()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encode(x)
        aux = h.new_zeros(2)
        for block in self.blocks:
            h, block_aux = block(h)
            aux = aux + block_aux
        return self.head(self.norm(h)), aux

    def block_input(self, x: Tensor, block: int = 0) -> Tensor:
        """What block ``block``'s router and experts see: ``norm(h)`` before that block."""
        h = self.encode(x)
        for b in self.blocks[:block]:
            h, _ = b(h)
        return self.blocks[block].norm(h)

    def route(self, x: Tensor, block: int = 0) -> Routing:
        """Routing of ``x`` in block ``block`` (in the module's current mode)."""
        return self.blocks[block].moe.route(self.block_input(x, block))

    def gates(self, x: Tensor, routing: Routing, block: int = 0) -> Tensor:
        """Block ``block``'s gates for ``routing`` (per output with element-wise gates)."""
        return self.blocks[block].moe.gates(self.block_input(x, block), routing)

    def n_active_params(self, k: int) -> int:
        """Parameters one row uses: encoder, norms, head and each block's active share."""
        shared = [self.encoder, self.norm, self.head, *(b.norm for b in self.blocks)]
        total = sum(p.numel() for m in shared if m is not None for p in m.parameters())
        return int(total + sum(b.moe.n_active_params(k) for b in self.blocks))


def build_network(
    in_features: int,
    out_features: int,
    *,
    encoder: Sequence[int] | None,
    n_layers: int,
    make_moe: Callable[[int], MoEModule],
    activation: str,
    dropout: float,
) -> MoENetwork:
    """Encoder (or none), ``n_layers`` blocks of ``make_moe(d)`` (a ``d -> d`` MoE), head."""
    trunk = None
    width = int(in_features)
    if encoder:
        trunk = Encoder(in_features, encoder, activation=activation, dropout=dropout)
        width = int(encoder[-1])
    blocks = [MoEBlock(make_moe(width), width) for _ in range(n_layers)]
    return MoENetwork(trunk, blocks, nn.Linear(width, out_features))


def check_expert_widths(experts: nn.Module, width: int) -> None:
    """Every expert of a block must map ``(rows, width) -> (rows, width)``."""
    if not isinstance(experts, nn.ModuleList):
        return
    with torch.no_grad():
        for i, expert in enumerate(experts):
            try:
                out = expert(torch.zeros(2, width))
            except RuntimeError as exc:
                raise ValueError(
                    f"`experts[{i}]` cannot take the blocks' width {width} ({exc}); in MoE "
                    f"blocks an expert maps (rows, {width}) -> (rows, {width}): pass a factory "
                    "f(in_features, out_features) or a width spec instead of a fixed module."
                ) from None
            if tuple(out.shape) != (2, width):
                raise ValueError(
                    f"`experts[{i}]` maps (rows, {width}) to {tuple(out.shape[1:])}; in MoE "
                    f"blocks an expert maps (rows, {width}) -> (rows, {width})."
                )
