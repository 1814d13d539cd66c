"""Growing a fitted mixture and starting one from elsewhere: sparse upcycling of a dense
network, splitting the most loaded experts (``grow``), and a k-means router init.

A mixin of the MoE estimators (:class:`moensemble.moe._base._BaseMoE`), split out of it at
the seam between building/fitting a mixture and re-shaping a trained one.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
import torch
from sklearn.cluster import MiniBatchKMeans
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .sparse import check_lazy_adam, resolve_optimizer
from .variants import split_expert, upcycle

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


class GrowthMixin:
    """``grow`` and sparse upcycling for :class:`~moensemble.moe._base._BaseMoE`."""

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
        if self._uses_blocks() or self.num_embedding is not None:
            raise ValueError(
                "`grow` splits the experts of a single MoE layer on the raw features; this "
                f"model has MoE blocks (`encoder`={self.encoder!r}, `n_layers`={self.n_layers}) "
                f"or a numeric embedding (`num_embedding`={self.num_embedding!r})."
            )
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
        self.optimizer_ = resolve_optimizer(self.optimizer, self.weight_decay, X)
        self._lazy_sparse = check_lazy_adam(self.optimizer_, self.weight_decay, X)
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
