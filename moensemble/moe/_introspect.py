"""Routing introspection of the fitted MoE estimators: ``route``, ``output_gates``, stats,
and with ``expert_blocks`` the load per modality (``block_load_``, ``modality_load``)."""

from __future__ import annotations

from numbers import Integral

import numpy as np
import pandas as pd
import torch
from sklearn.utils.validation import check_is_fitted, validate_data

from .modality import GENERALIST, expert_blocks_of
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
        if getattr(self, "expert_blocks", None) is not None:
            # From the module, so that experts added by `grow` keep their parent's block.
            self.expert_block_of_ = expert_blocks_of(self.net_.module_.experts)
            self.block_load_ = self._block_shares(load[None, :])[0]

    def _block_names(self) -> list[str]:
        names = list(self.expert_blocks_)
        return names + [GENERALIST] if any(b is None for b in self.expert_block_of_) else names

    def _block_shares(self, per_expert: np.ndarray) -> list[dict[str, float]]:
        """``(groups, n_experts)`` shares of the assignments -> per block, per group."""
        of = self.expert_block_of_
        masks = {name: np.array([b == (None if name == GENERALIST else name) for b in of])
                 for name in self._block_names()}
        return [{name: float(row[m].sum()) for name, m in masks.items()} for row in per_expert]

    def modality_load(self, X, groups=None) -> pd.DataFrame:
        """Share of the rows' assignments that go to the experts of each block.

        Needs ``expert_blocks``. Rows are routed as in :meth:`route`; each of a row's
        ``k`` assignments counts with its gate, renormalised over the row's experts (the
        weight the assignment has in the row's output), so a row counts 1 in all.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        groups : array-like of shape (n_samples,), default=None
            A true group per row (e.g. which modality carries its label): one row of the
            report per group. ``None``: one row, ``'all'``.

        Returns
        -------
        report : pandas.DataFrame
            Index: the groups; columns: the blocks (and ``'generalist'`` for experts that
            read every column) and ``n_rows``; each row's shares sum to 1.
        """
        check_is_fitted(self)
        if getattr(self, "expert_blocks", None) is None:
            raise ValueError(
                "`modality_load` reports the load per block of `expert_blocks`; this model "
                "was fitted with expert_blocks=None (see `expert_load_` instead)."
            )
        X = validate_data(self, X, accept_sparse="csr", dtype=np.float32, reset=False)
        if groups is None:
            groups = np.full(X.shape[0], "all", dtype=object)
        groups = np.asarray(groups)
        if groups.shape != (X.shape[0],):
            raise ValueError(
                f"`groups` must have one entry per row of X ({X.shape[0]}); got shape "
                f"{groups.shape}."
            )
        indices, gates, _ = self._route(X)
        per_row = np.zeros((X.shape[0], self.n_experts_))
        np.add.at(per_row, (np.arange(X.shape[0])[:, None], indices), gates)
        per_row /= np.maximum(per_row.sum(1, keepdims=True), 1e-12)
        labels, inverse = np.unique(groups, return_inverse=True)
        sums = np.zeros((len(labels), self.n_experts_))
        np.add.at(sums, inverse, per_row)
        n_rows = np.bincount(inverse, minlength=len(labels))
        report = pd.DataFrame(self._block_shares(sums / n_rows[:, None]), index=labels)
        report.index.name = "group"
        report["n_rows"] = n_rows
        return report

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

