"""The router network of a gated ensemble: module, skorch nets and the dataset it trains on."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from moensemble.moe.net import (
    MoENetClassifier,
    MoENetRegressor,
    RowDataset,
    precision_autocast,
)
from moensemble.moe.routing import Router, Routing, SoftmaxRouter

__all__ = ["GateModule"]

_EPS = 1e-7


# ---- the torch side ------------------------------------------------------------------------


class GateModule(nn.Module):
    """Router over precomputed base predictions.

    ``forward(x, preds, base_loss)`` routes ``x: (batch, d)`` and mixes ``preds: (batch, E, C)``
    with the gates of the chosen bases; it returns ``(mixed: (batch, C), aux: (3,))`` with
    ``aux = [load_balancing_loss, z_loss, selection_loss]``. ``base_loss: (batch, E)`` is each
    base's own loss on each row, for the selection loss (0 when ``selection`` is False).

    Parameters
    ----------
    router : Router
        From :func:`moensemble.moe.routing.make_router`, over ``E`` experts (the bases).
    trunk : nn.Module
        Maps the router input to the router's ``in_features`` (``nn.Identity`` when linear).
    selection : bool
        Add the expected loss of one base drawn from the router softmax.
    precision : {'float32', 'bfloat16', 'float16'}, default='float32'
        Autocast dtype for the trunk (as for :class:`~moensemble.moe.net.MoEModule`'s
        experts); the router's logits, gates and the mixing stay in float32.

    Training batches are counted into ``stat_counts`` / ``stat_sums`` like
    :class:`~moensemble.moe.net.MoEModule`, so :class:`~moensemble.moe.net.RoutingStats` logs
    the per-epoch load, its max-violation and the router entropy into the skorch history.
    """

    def __init__(
        self, router: Router, trunk: nn.Module, *, selection: bool, precision: str = "float32"
    ) -> None:
        super().__init__()
        self.router = router
        self.trunk = trunk
        self.selection = selection
        self.precision = precision
        n_experts = router.n_experts
        self.register_buffer("stat_counts", torch.zeros(n_experts), persistent=False)
        self.register_buffer("stat_sums", torch.zeros(3), persistent=False)  # rows, H, overflow

    def route(self, x: Tensor) -> Routing:
        x = x.float()
        with precision_autocast(x.device.type, self.precision):
            hidden = self.trunk(x)
        routing = self.router(hidden)  # float32 logits, whatever the trunk's dtype
        # Mixing probabilities needs a convex combination, but the top-k router's top-1 gate is
        # the full-softmax probability (as in Switch): renormalise the kept gates to sum to 1.
        gates = routing.gates / routing.gates.sum(-1, keepdim=True).clamp_min(1e-12)
        return routing._replace(gates=gates)

    def forward(self, x: Tensor, preds: Tensor, base_loss: Tensor) -> tuple[Tensor, Tensor]:
        routing = self.route(x)
        n_columns = preds.shape[2]
        index = routing.indices.unsqueeze(-1).expand(-1, -1, n_columns)  # (batch, k, C)
        picked = preds.float().gather(1, index)
        mixed = (routing.gates.unsqueeze(-1) * picked).sum(1)  # (batch, C)
        if self.selection:
            selection = (routing.probs * base_loss.float()).sum(1).mean()
        else:
            selection = mixed.new_zeros(())
        if self.training:
            self._record(routing, x.shape[0])
        return mixed, torch.stack([routing.aux_loss, routing.z_loss, selection])

    @torch.no_grad()
    def _record(self, routing: Routing, batch: int) -> None:
        # Dense (softmax) routing sends every row everywhere: count the gate mass instead.
        weights = routing.gates.float() if isinstance(self.router, SoftmaxRouter) else None
        flat = routing.indices.reshape(-1)
        counts = torch.bincount(
            flat,
            weights=None if weights is None else weights.reshape(-1),
            minlength=self.router.n_experts,
        )
        self.stat_counts += counts.float()
        rows = torch.tensor(float(batch), device=counts.device)
        self.stat_sums += torch.stack([rows, routing.entropy * batch, routing.overflow * batch])

    def reset_stats(self) -> None:
        self.stat_counts.zero_()
        self.stat_sums.zero_()


def _trunk(in_features: int, hidden: tuple[int, ...]) -> tuple[nn.Module, int]:
    """``Linear -> ReLU`` per hidden width (the router's own linear map comes after)."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    return (nn.Sequential(*layers) if layers else nn.Identity()), width


class _SelectionLossMixin:
    """The MoE nets' loss (task + aux + z) plus the selection loss, in training only."""

    def get_loss(self, y_pred, y_true, X=None, training=False):
        mixed, aux = y_pred
        loss = super().get_loss((mixed, aux[:2]), y_true, X=X, training=training)
        return loss + aux[2] if training else loss


class _GateNetClassifier(_SelectionLossMixin, MoENetClassifier):
    """skorch net for :class:`GateModule` on probabilities (``NLLLoss`` takes their log)."""


class _GateNetRegressor(_SelectionLossMixin, MoENetRegressor):
    """skorch net for :class:`GateModule` on standardized predictions (``MSELoss``)."""


class _GateDataset(RowDataset):
    """Router input rows (dense or CSR, densified per batch) with the bases' predictions."""

    def __init__(self, X, preds: np.ndarray, base_loss: np.ndarray, y=None) -> None:
        super().__init__(X, y)
        self.preds = preds  # (n, E, C) float32
        self.base_loss = base_loss  # (n, E) float32

    def __getitems__(self, idx):
        xb, yb = super().__getitems__(idx)
        idx = np.asarray(idx)
        inputs = {
            "x": xb,
            "preds": torch.from_numpy(self.preds[idx]),
            "base_loss": torch.from_numpy(self.base_loss[idx]),
        }
        return inputs, yb

    def subset(self, rows: np.ndarray) -> _GateDataset:
        y = None if self.y is None else self.y[rows]
        return _GateDataset(self.X[rows], self.preds[rows], self.base_loss[rows], y)


# ---- the scikit-learn side -----------------------------------------------------------------
