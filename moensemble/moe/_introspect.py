"""Routing introspection of the fitted MoE estimators: ``route``, ``output_gates``, stats."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from .net import RowDataset


class RoutingIntrospection:
    """Which experts the fitted network routes rows to (mixed into ``_BaseMoE``)."""

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
    def _route(self, X, block: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
        module = self.net_.module_
        was_training = module.training
        module.eval()
        ds = RowDataset(X)
        idx, gts, ent = [], [], 0.0
        try:
            for start in range(0, len(ds), self.net_.batch_size):
                xb, _ = ds.__getitems__(range(start, min(start + self.net_.batch_size, len(ds))))
                xb = xb.to(self.net_.device)
                r = module.route(xb, block) if block else module.route(xb)
                idx.append(r.indices.cpu().numpy())
                gts.append(r.gates.float().cpu().numpy())
                ent += float(r.entropy) * xb.shape[0]
        finally:
            module.train(was_training)
        return np.concatenate(idx), np.concatenate(gts), ent / max(len(ds), 1)

    def route(self, X, block: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Which experts each row of ``X`` goes to, and with what weight.

        Rows are routed as in ``predict``: each on its own (no noise, no capacity limit;
        expert choice falls back to top-k over the same scores).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        block : int, default=0
            Which MoE block's routing (``0 <= block < n_layers``); ``expert_load_``,
            ``router_entropy_`` and the history's routing statistics are block 0's.

        Returns
        -------
        indices : ndarray of shape (n_samples, k), int64
            Expert ids, best first (``k = n_experts`` for ``router='softmax'``,
            1 for ``'switch'``, ``top_k`` otherwise).
        gates : ndarray of shape (n_samples, k), float32
            The weight of each of those experts in the row's output.
        """
        check_is_fitted(self)
        if not isinstance(block, Integral) or isinstance(block, bool) or not (
            0 <= block < self.n_layers
        ):
            raise ValueError(
                f"`block` must be an int in [0, n_layers={self.n_layers}); got {block!r}."
            )
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        indices, gates, _ = self._route(X, int(block))
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

