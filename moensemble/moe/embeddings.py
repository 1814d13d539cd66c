"""Numeric feature embeddings for dense input (``num_embedding`` of the MoE estimators).

Each feature ``x_j`` becomes a ``D_EMBEDDING``-wide vector before the encoder, routers and
experts see it, as in Gorishniy, Rubachev and Babenko (2022), "On embeddings for numerical
features in tabular deep learning":

* :class:`PeriodicEmbedding` (``'periodic'``, their PLR): ``x_j`` standardised, then
  ``[sin(2 pi c_j x_j), cos(2 pi c_j x_j)]`` with ``N_FREQUENCIES`` learned frequencies
  ``c_j`` per feature (started at ``N(0, SIGMA^2)``), then a per-feature linear map and ReLU;
* :class:`PiecewiseLinearEmbedding` (``'piecewise'``, their PLE + linear + ReLU): ``x_j``
  encoded against ``N_BINS`` quantile bins of the training rows (component ``t`` is the
  fraction of bin ``t`` below ``x_j``, clipped to ``[0, 1]``), then a per-feature linear map
  and ReLU.

:func:`embed_input` wraps an MoE network so that it runs on the embedded features and still
looks like that network to the estimators (``router``, ``experts``, ``route``, routing
statistics). The statistics an embedding needs (means and scales, bin edges) are buffers
set by :meth:`fit` from the training rows: they are saved with the weights.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

#: Width of each feature's embedding.
D_EMBEDDING = 16
#: Learned frequencies per feature (periodic).
N_FREQUENCIES = 16
#: Standard deviation of the initial frequencies, on standardised features (periodic).
SIGMA = 1.0
#: Quantile bins per feature (piecewise).
N_BINS = 16
NUM_EMBEDDINGS = ("periodic", "piecewise")


class _PerFeatureLinear(nn.Module):
    """``(batch, f, k) -> ReLU((batch, f, d))`` with one ``k -> d`` linear map per feature."""

    def __init__(self, n_features: int, k: int, d: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(k)
        self.weight = nn.Parameter(torch.empty(n_features, k, d).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, d).uniform_(-bound, bound))

    def forward(self, z: Tensor) -> Tensor:
        # Multiply and sum, not einsum: a matmul's blocking depends on the batch size, and a
        # row's prediction must not depend on the other rows in its batch.
        return torch.relu((z.unsqueeze(-1) * self.weight).sum(-2) + self.bias)


class PeriodicEmbedding(nn.Module):
    """PLR: standardise, ``[sin, cos](2 pi c x)``, per-feature linear + ReLU; flattened."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.out_features = self.n_features * D_EMBEDDING
        self.register_buffer("mean", torch.zeros(self.n_features))
        self.register_buffer("scale", torch.ones(self.n_features))
        self.frequencies = nn.Parameter(torch.randn(self.n_features, N_FREQUENCIES) * SIGMA)
        self.linear = _PerFeatureLinear(self.n_features, 2 * N_FREQUENCIES, D_EMBEDDING)

    def fit(self, X: np.ndarray) -> PeriodicEmbedding:
        X = np.asarray(X, dtype=np.float64)
        std = X.std(0)
        with torch.no_grad():
            self.mean.copy_(torch.as_tensor(X.mean(0)))
            self.scale.copy_(torch.as_tensor(np.where(std > 0, std, 1.0)))
        return self

    def forward(self, x: Tensor) -> Tensor:  # (batch, f) -> (batch, f * d)
        z = (x.float() - self.mean) / self.scale
        v = 2 * math.pi * self.frequencies * z.unsqueeze(-1)  # (batch, f, n_frequencies)
        return self.linear(torch.cat([torch.sin(v), torch.cos(v)], -1)).flatten(1)


class PiecewiseLinearEmbedding(nn.Module):
    """PLE on quantile bins, per-feature linear + ReLU; flattened."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.n_features = int(n_features)
        self.out_features = self.n_features * D_EMBEDDING
        # Bin edges per feature, set by fit (equal edges where a feature has few values).
        edges = torch.linspace(0, 1, N_BINS + 1).repeat(self.n_features, 1)
        self.register_buffer("edges", edges)
        self.linear = _PerFeatureLinear(self.n_features, N_BINS, D_EMBEDDING)

    def fit(self, X: np.ndarray) -> PiecewiseLinearEmbedding:
        q = np.quantile(np.asarray(X, dtype=np.float64), np.linspace(0, 1, N_BINS + 1), axis=0)
        with torch.no_grad():
            self.edges.copy_(torch.as_tensor(q.T))  # (f, n_bins + 1), non-decreasing
        return self

    def forward(self, x: Tensor) -> Tensor:  # (batch, f) -> (batch, f * d)
        left, width = self.edges[:, :-1], self.edges.diff(dim=1)
        # A zero-width bin (a repeated quantile) is a step at its edge.
        frac = (x.float().unsqueeze(-1) - left) / width.clamp_min(1e-12)
        return self.linear(frac.clamp(0.0, 1.0)).flatten(1)


def make_num_embedding(kind: str, n_features: int) -> nn.Module:
    """``'periodic'`` or ``'piecewise'`` embedding of ``n_features`` features."""
    if kind == "periodic":
        return PeriodicEmbedding(n_features)
    if kind == "piecewise":
        return PiecewiseLinearEmbedding(n_features)
    raise ValueError(f"`num_embedding` must be None or one of {NUM_EMBEDDINGS}; got {kind!r}.")


def check_num_embedding(kind: str | None, init: str, grow_steps: int, X) -> None:
    """Refuse ``num_embedding`` on sparse ``X`` and with the single-layer-only options."""
    if kind is None:
        return
    if sp.issparse(X):
        raise ValueError(
            f"`num_embedding`={kind!r} embeds each dense numeric feature; X is sparse (one "
            "embedding per column of a wide sparse matrix is not what it is for). Use "
            "num_embedding=None, or an `encoder`, for sparse input."
        )
    for name, value, plain in (("init", init, "random"), ("grow_steps", grow_steps, 0)):
        if value != plain:
            raise ValueError(
                f"`{name}`={value!r} works on an MoE layer on the raw features; with "
                f"`num_embedding`={kind!r} use `{name}`={plain!r}."
            )


class EmbeddedInput(nn.Module):
    """``net(embedding(x))``, read by the estimators as ``net`` (routing on embedded rows)."""

    def __init__(self, embedding: nn.Module, net: nn.Module) -> None:
        super().__init__()
        self.embedding = embedding
        self.net = net

    def forward(self, x: Tensor):
        return self.net(self.embedding(x))

    @property
    def router(self):
        return self.net.router

    @property
    def experts(self):
        return self.net.experts

    @property
    def precision(self) -> str:
        return self.net.precision

    @property
    def stat_counts(self) -> Tensor:
        return self.net.stat_counts

    @property
    def stat_sums(self) -> Tensor:
        return self.net.stat_sums

    @property
    def log_scale(self) -> Tensor:  # the Gaussian mixture's (mixture='likelihood', regressor)
        return self.net.log_scale

    def reset_stats(self) -> None:
        self.net.reset_stats()

    def block_input(self, x: Tensor, block: int = 0) -> Tensor:
        """What the (first) router sees: the embedded row, or the block's normed input."""
        e = self.embedding(x)
        return self.net.block_input(e, block) if hasattr(self.net, "block_input") else e

    def route(self, x: Tensor, block: int = 0):
        e = self.embedding(x)
        return self.net.route(e, block) if block else self.net.route(e)

    def gates(self, x: Tensor, routing, block: int = 0) -> Tensor:
        e = self.embedding(x)
        return self.net.gates(e, routing, block) if block else self.net.gates(e, routing)

    def n_active_params(self, k: int) -> int:
        own = sum(p.numel() for p in self.embedding.parameters())
        return int(self.net.n_active_params(k) + own)


def embed_input(net: nn.Module, kind: str, n_features: int) -> EmbeddedInput:
    """``net`` (built for ``D_EMBEDDING * n_features`` inputs) behind a ``kind`` embedding."""
    return EmbeddedInput(make_num_embedding(kind, n_features), net)
