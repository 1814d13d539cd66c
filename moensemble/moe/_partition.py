"""Re-partition the gate from the rows' local linear rules (``repartition='local_rules'``).

Where rows come from hidden regimes, each with its own linear rule, a linear fit on a
neighbourhood of rows of one regime recovers that regime's rule, and rows whose
neighbourhoods share a rule share a regime. The neighbourhoods must be taken where the
regimes live: in the few input features the router's group lasso (``router_l1``) keeps
strongest. :class:`LocalRulePartition` does this once, at the end of the lasso's selection
half: for the ``r = 1..max_features`` strongest features of the gate it clusters the local
rules into ``n_experts`` groups (from a few random draws of anchors), keeps the partition
whose groups are best fitted by one linear model each (held-out rows of each group),
refits the router's linear map on its ``r`` features to the groups, and freezes the router
for a while so that the experts follow the new partition; then the usual training goes
on. It replaces the partition the minibatch training locked into (an optimisation
failure: each row's gradient only reaches the ``k`` experts its router already picks).

``repartition='auto'`` cleans each candidate by :func:`refine_groups` (hard EM of one ridge
rule per group) and guards the step on held-out rows (seventh pass): a twin of the net
trains on 85 % of the rows from the start; at the re-partition epoch the twin as it is and
the twin re-partitioned train the frozen phase aside and meet the other 15 %; the net
(trained on all rows) takes the new gate only if it won there by more than a standard
error, else it goes on exactly as without the option. (The sixth pass's guard, the lower
*training* loss, is ``guard=True``: on 398 rows it picked the partition that generalised
worse.) Since the eighth pass ``'auto'`` takes its candidates in the features ranked by
model-based splits (:mod:`._screen`, ``features='screen'``) instead of the gate's strongest:
the lasso may have zeroed a routing feature by the re-partition epoch. Since the tenth
pass its one candidate is no partition but a whole model: a full-batch linear mixture on the
screened pair of features (:mod:`._linear_mixture`), judged as it is on the check rows and,
where kept, adopted exactly by the net (``candidates='mixture'``).
"""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NearestNeighbors
from skorch.callbacks import Callback

from ._aside import restore, row_losses, rows_of, snapshot, train_aside, training_loss
from ._linear_mixture import adopt, adoption_blocker, fit_linear_mixture, output_width
from ._merge import merge_groups
from ._screen import screen_features
from .net import RowDataset


def local_rule_groups(X: np.ndarray, T: np.ndarray, features: np.ndarray, n_groups: int, *,
                      n_anchors: int = 300, n_neighbors: int = 80, ridge: float = 1.0,
                      seed: int = 0, cluster: str = "kmeans") -> np.ndarray:
    """Each row's group: k-means (``cluster='agglo'``: Ward, measured in the sixth pass,
    not better) over the local ridge rules of ``n_anchors`` random rows'
    neighbourhoods (their ``n_neighbors`` nearest rows in ``X[:, features]``,
    standardised); a row takes its nearest anchor's group.

    ``X: (n, d)``, ``T: (n, m)`` the targets (one-hot labels or standardised values).
    """
    rng = np.random.default_rng(seed)
    Z = standardised(X, features)
    anchors = rng.choice(len(X), min(n_anchors, len(X)), replace=False)
    near = NearestNeighbors(n_neighbors=min(n_neighbors, len(X))).fit(Z)
    idx = near.kneighbors(Z[anchors], return_distance=False)  # (A, m)
    Xa = np.concatenate([X[idx], np.ones(idx.shape + (1,))], -1)  # (A, m, d + 1)
    Ta = T[idx] - T[idx].mean(1, keepdims=True)  # (A, m, outputs)
    gram = np.einsum("amf,amg->afg", Xa, Xa) + ridge * np.eye(Xa.shape[-1])
    rules = np.linalg.solve(gram, np.einsum("amf,amc->afc", Xa, Ta))[:, :-1]
    rules = rules.reshape(len(anchors), -1)
    rules /= np.linalg.norm(rules, axis=1, keepdims=True) + 1e-9
    n_groups = min(n_groups, len(anchors))
    if cluster == "agglo":
        labels = AgglomerativeClustering(n_groups).fit_predict(rules)
    else:
        with warnings.catch_warnings():  # fewer distinct rules than groups (a binary
            warnings.simplefilter("ignore", ConvergenceWarning)  # feature): fewer groups
            labels = KMeans(n_groups, n_init=4, random_state=seed).fit_predict(rules)
    nearest = NearestNeighbors(n_neighbors=1).fit(Z[anchors]).kneighbors(
        Z, return_distance=False)[:, 0]
    return labels[nearest]


def partition_score(X: np.ndarray, T: np.ndarray, groups: np.ndarray, *,
                    classification: bool, ridge: float = 1.0, seed: int = 0) -> float:
    """How well each group follows one linear rule: a ridge fit on 70 % of each group's rows
    scored on the rest (accuracy for a classifier, minus the squared error otherwise)."""
    rng = np.random.default_rng(seed)
    score, total = 0.0, 0
    for g in np.unique(groups):
        rows = rng.permutation(np.flatnonzero(groups == g))
        cut = int(0.7 * len(rows))
        if cut < 5 or cut == len(rows):
            continue
        tr, te = rows[:cut], rows[cut:]
        A = np.c_[X[tr], np.ones(len(tr))]
        W = np.linalg.solve(A.T @ A + ridge * np.eye(A.shape[1]), A.T @ T[tr])
        pred = np.c_[X[te], np.ones(len(te))] @ W
        if classification:
            score += float((pred.argmax(1) == T[te].argmax(1)).sum())
        else:
            score -= float(np.square(pred - T[te]).sum(1).sum())
        total += len(te)
    return score / max(total, 1) if total else -np.inf


@torch.no_grad()
def fit_router_to(router, X: np.ndarray, features: np.ndarray, groups: np.ndarray, *,
                  steps: int = 300, lr: float = 0.05) -> None:
    """The router's linear map refitted on ``features`` only to predict ``groups`` (a
    full-batch softmax regression, Adam); a top-k router's noise map is reset to zero."""
    x = torch.as_tensor(X, dtype=torch.float32, device=router.linear.weight.device)
    target = torch.as_tensor(groups, dtype=torch.long, device=x.device)
    mask = torch.zeros(X.shape[1], device=x.device)
    mask[torch.as_tensor(features, device=x.device)] = 1.0
    weight = torch.zeros_like(router.linear.weight, requires_grad=True)
    bias = torch.zeros_like(router.linear.bias, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            logits = x @ (weight * mask).T + bias
            torch.nn.functional.cross_entropy(logits, target).backward()
            optimizer.step()
    router.linear.weight.copy_(weight * mask)
    router.linear.bias.copy_(bias)
    noise = getattr(router, "noise", None)
    if isinstance(noise, torch.nn.Linear):
        noise.weight.zero_()
        noise.bias.zero_()


def refine_groups(X: np.ndarray, T: np.ndarray, features: np.ndarray, groups: np.ndarray, *,
                  n_iter: int = 20, n_neighbors: int = 30, ridge: float = 1.0) -> np.ndarray:
    """Hard EM of linear rules with neighbours: one ridge fit of ``T`` on all features per
    group, then each row goes to the group whose rule best fits (squared error) its
    ``n_neighbors`` nearest rows in ``X[:, features]`` (standardised); ``n_iter`` rounds or
    until nothing moves. A rule fitted on a whole group is far less noisy than one
    neighbourhood's, so this cleans the local rules' partition."""
    idx = NearestNeighbors(n_neighbors=max(1, min(n_neighbors, len(X) - 1))).fit(
        standardised(X, features)).kneighbors(return_distance=False)
    idx = np.c_[np.arange(len(X)), idx]  # each row and its neighbours
    A = np.c_[X, np.ones(len(X))]
    n_groups = int(groups.max()) + 1
    for _ in range(n_iter):
        loss = np.full((len(X), n_groups), np.inf)
        for g in range(n_groups):
            rows = groups == g
            if rows.sum() < 5:  # too few rows for a rule: the group is dropped
                continue
            W = np.linalg.solve(A[rows].T @ A[rows] + ridge * np.eye(A.shape[1]),
                                A[rows].T @ T[rows])
            loss[:, g] = np.square(A @ W - T).sum(1)
        new = loss[idx].sum(1).argmin(1)
        if (new == groups).all():
            break
        groups = new
    return groups


def standardised(X: np.ndarray, features: np.ndarray) -> np.ndarray:
    Z = X[:, features]
    return (Z - Z.mean(0)) / (Z.std(0) + 1e-9)


class LocalRulePartition(Callback):
    """At the end of epoch ``int(at * max_epochs)``, re-partition the gate from the local
    linear rules (module docstring), then freeze the router for ``freeze`` of the epochs.

    With ``guard=True``, both ways are tried from that epoch: the net first trains on for
    the frozen phase's epochs as it is, then is put back to that epoch, re-partitioned and
    trained the same number of epochs with its router frozen; whichever reaches the lower
    training loss (:func:`training_loss`) goes on. ``guard='holdout'`` judges on rows
    neither way trained on instead (module docstring; about 1.7 x the epochs).

    The number of gate features used goes to the history as ``repartition_features``;
    with ``guard``, whether the new partition was kept as ``repartition_kept`` and the two
    losses as ``repartition_losses`` (``'holdout'``: mean per-row losses on the check
    rows, and ``repartition_gain_se``, the mean gain and its standard error).

    Parameters
    ----------
    classification : bool
        Targets are class labels (one-hot rules, scored by accuracy), else values.
    at : float in (0, 1), default=0.5
        The estimator's lasso selects in the first half.
    freeze : float in [0, 1), default=0.2
        Share of ``max_epochs`` the router stays fixed after the re-partition.
    max_features : int, default=4
        The partition is searched in the 1..``max_features`` strongest gate features.
    n_anchors, n_neighbors : int, default=300, 80
    n_draws : int, default=3
        Anchor draws (and k-means starts) per number of features; the partition of the
        best :func:`partition_score` over all of them is kept (one draw varied by several
        points at K=8 on the regime grid).
    refine_iter : int, default=0
        Rounds of :func:`refine_groups` on each candidate partition (0: none).
    guard : bool or 'holdout', default=False
        ``True``: the training-loss guard above. ``'holdout'``: a twin trained on ``1 -
        holdout`` of the rows decides (the re-partition computed on those rows); the new
        gate is kept only if the check rows' mean task loss is lower by more than
        ``margin`` standard errors of the paired per-row difference (ties keep the
        net's own gate, and the fit is then exactly the one without the option).
    candidates : {'rules', 'merge', 'both', 'mixture'}, default='rules'
        Candidate partitions: k-means of the local rules (``n_draws`` each), adjacent
        micro-cells merged by the ridge loss (:func:`moensemble.moe._merge.merge_groups`,
        one per number of features), or both. ``'mixture'`` (tenth pass): one candidate,
        the whole model — a full-batch competitive mixture of linear rules whose gate reads
        the screened pair of features (:func:`._linear_mixture.fit_linear_mixture`),
        written exactly into the router *and* the experts (:func:`._linear_mixture.adopt`);
        the held-out guard scores it as it is (no training aside), and where kept the
        router stays frozen to the end while the experts train on. Where the module
        cannot take it (:func:`._linear_mixture.adoption_blocker`) the local rules'
        candidates stand in.
    holdout, margin : float, default=0.15, 1.0
    features : {'gate', 'screen', 'both'}, default='gate'
        Where the candidates' neighbourhoods are taken: the gate's strongest features
        (its lasso's choice), the features ranked by model-based splits
        (:func:`moensemble.moe._screen.screen_features`, independent of the gate; eighth
        pass), or the candidates of both rankings.
    """

    def __init__(self, classification: bool, at: float = 0.5, freeze: float = 0.2,
                 max_features: int = 4, n_anchors: int = 300, n_neighbors: int = 80,
                 n_draws: int = 3, refine_iter: int = 0, guard: bool | str = False,
                 cluster: str = "kmeans", candidates: str = "rules", holdout: float = 0.15,
                 margin: float = 1.0, apply: str = "twin", features: str = "gate") -> None:
        self.classification = classification
        self.at = at
        self.freeze = freeze
        self.max_features = max_features
        self.n_anchors = n_anchors
        self.n_neighbors = n_neighbors
        self.n_draws = n_draws
        self.refine_iter = refine_iter
        self.guard = guard
        self.cluster = cluster
        self.candidates = candidates
        self.holdout = holdout
        self.margin = margin
        self.apply = apply
        self.features = features

    def on_train_begin(self, net, **kwargs) -> None:
        if self.features not in ("gate", "screen", "both"):
            raise ValueError("LocalRulePartition's `features` must be 'gate', 'screen' or "
                             f"'both'; got {self.features!r}.")
        if self.candidates not in ("rules", "merge", "both", "mixture"):
            raise ValueError("LocalRulePartition's `candidates` must be 'rules', 'merge', "
                             f"'both' or 'mixture'; got {self.candidates!r}.")
        # From the fit's forked torch RNG (reproducible under the estimator's random_state),
        # without moving it: a guarded fit that keeps its gate is the fit without the option.
        state = torch.get_rng_state()
        self.seed_ = int(torch.randint(2**31 - 1, ()).item())
        torch.set_rng_state(state)
        self.frozen_until_ = None
        self.trial_ = None  # the guard's re-partitioned net, waiting for the comparison
        self.aside_ = self.check_ = None
        dataset = kwargs.get("X")
        if self.guard == "holdout" and isinstance(dataset, RowDataset) and len(dataset) > 1:
            # A twin of the net trains from the same start on the fit rows only, so that
            # at the decision both ways meet the check rows fresh (a net scores rows it
            # trained on too well to be judged there), while the net itself trains on all
            # rows exactly as without the option.
            order = np.random.default_rng(self.seed_).permutation(len(dataset))
            n_check = max(1, int(round(self.holdout * len(order))))
            self.check_ = rows_of(dataset, np.sort(order[:n_check]))
            self.fit_ = rows_of(dataset, np.sort(order[n_check:]))
            self.aside_, self.aside_masks_ = snapshot(net), None

    def on_epoch_end(self, net, dataset_train=None, **kwargs) -> None:
        epoch = len(net.history)
        if self.frozen_until_ is not None and epoch >= self.frozen_until_:
            self.on_train_end(net)  # the router trains again
        if dataset_train is None:
            return
        phase = max(1, round(self.freeze * net.max_epochs))
        at = max(1, int(self.at * net.max_epochs))
        if self.aside_ is not None and epoch <= at:
            self._in_aside(net, lambda: train_aside(net, self.fit_, 1, exact=True))
        if epoch == at:
            if self.guard == "holdout":
                self._try_holdout(net, dataset_train, epoch, phase)
            elif self.guard:
                self._try(net, dataset_train, epoch, phase)
            else:
                adopted = self._apply(net, dataset_train)
                self.frozen_until_ = net.max_epochs + 1 if adopted else epoch + phase
        elif self.trial_ is not None and (epoch >= self.trial_["until"]
                                          or epoch == net.max_epochs):
            self._decide(net, dataset_train)

    def on_train_end(self, net, **kwargs) -> None:
        if self.frozen_until_ is not None:
            net.module_.router.requires_grad_(True)
            self.frozen_until_ = None
        if kwargs:  # the end of training: the held-out guard's rows and twin go
            self.aside_ = self.fit_ = self.check_ = None

    def _apply(self, net, dataset) -> bool:
        """Re-partition (or adopt the mixture: then True) and freeze the router."""
        adopted = self._uses_mixture(net)
        if adopted:
            features = self._take(net, self._mixture(net, dataset))
        else:
            features = self._repartition(net, dataset)
            net.module_.router.requires_grad_(False)
        net.history.record("repartition_features", len(features))
        net.history.record("repartition_feature_ids", [int(j) for j in features])
        return adopted

    def _uses_mixture(self, net) -> bool:  # (else the local rules stand in)
        return self.candidates == "mixture" and adoption_blocker(net.module_) is None

    @staticmethod
    def _take(net, mixture) -> np.ndarray:
        """``mixture`` adopted, its features let through the lasso, the router frozen."""
        adopt(net.module_, mixture)
        _open_lasso(net, mixture.features)
        net.module_.router.requires_grad_(False)
        return mixture.features

    def _try(self, net, dataset, epoch: int, phase: int) -> None:
        """The guard's first half: a copy of the net is re-partitioned and trained
        ``phase`` epochs with its router frozen, aside (the torch RNG put back after, so
        the main training goes on as without the option); the main net trains those
        epochs as it is."""
        start, rng = snapshot(net), torch.get_rng_state()
        self._apply(net, dataset)
        for _ in range(phase):
            for batch in net.get_iterator(dataset, training=True):
                net.train_step(batch)
        net.module_.router.requires_grad_(True)
        self.trial_ = {"net": snapshot(net), "loss": training_loss(net, dataset),
                       "until": epoch + phase}
        restore(net, start)
        torch.set_rng_state(rng)

    def _in_aside(self, net, step, keep: bool = True):
        """``step()`` run on the twin (the held-out guard's net of the fit rows): its state
        swapped in, the net's own state, the torch RNG and the lasso's masks put back
        after; with ``keep`` the twin's new state is kept for its next epoch."""
        main, rng = snapshot(net), torch.get_rng_state()
        lasso = dict(net.callbacks_).get("router_l1")
        main_masks = getattr(lasso, "masks_", None)
        restore(net, self.aside_)
        if lasso is not None:
            lasso.masks_ = self.aside_masks_
        try:
            out = step()
            if keep:
                self.aside_ = snapshot(net)
                self.aside_masks_ = getattr(lasso, "masks_", None)
        finally:
            restore(net, main)
            net.module_.router.requires_grad_(True)
            torch.set_rng_state(rng)
            if lasso is not None:
                lasso.masks_ = main_masks
        return out

    def _mixture(self, net, dataset, start=None):
        """The linear mixture (:mod:`._linear_mixture`) of ``dataset``'s rows, its gate on
        the screened pair of features (``start``'s, warm, where given)."""
        X, T = self._targets(dataset)
        features = None if start is not None else \
            screen_features(X, T, seed=self.seed_)[: min(2, X.shape[1])]
        y = np.asarray(dataset.y)
        return fit_linear_mixture(X, y.astype(np.int64) if self.classification else y,
                                  features, len(net.module_.experts),
                                  classification=self.classification,
                                  n_classes=output_width(net.module_.experts),
                                  seed=self.seed_, start=start)

    def _try_holdout(self, net, dataset, epoch: int, phase: int) -> None:
        """The held-out guard (``guard='holdout'``): from the twin trained on the fit rows,
        both ways train ``phase`` epochs aside (the re-partition computed on the fit rows)
        and meet the check rows; the net takes the new gate (fitted on the fit rows) only
        if its per-row task loss there is lower by more than ``margin`` standard errors of
        the paired difference, else it goes on exactly as without the option."""
        if self.aside_ is None:  # (no twin: too few rows, or not the estimator's data)
            return

        def own():
            train_aside(net, self.fit_, phase)
            return row_losses(net, self.check_)

        def new():
            features = self._repartition(net, self.fit_)
            gate = copy.deepcopy(net.module_.router.state_dict())
            net.module_.router.requires_grad_(False)
            train_aside(net, self.fit_, phase)
            return row_losses(net, self.check_), gate, features

        def adopted():
            mixture = self._mixture(net, self.fit_)
            adopt(net.module_, mixture)
            return row_losses(net, self.check_), mixture, mixture.features

        use_mixture = self._uses_mixture(net)
        own_loss = self._in_aside(net, own, keep=False)
        new_loss, gate, features = self._in_aside(net, adopted if use_mixture else new,
                                                  keep=False)
        self.aside_ = self.fit_ = None
        gain = own_loss - new_loss
        se = gain.std(ddof=1) / np.sqrt(len(gain)) if len(gain) > 1 else np.inf
        keep = bool(gain.mean() > self.margin * se)
        if keep and use_mixture:  # the whole model, refitted warm on all rows; its gate stays
            self._take(net, self._mixture(net, dataset, start=gate))
            self.frozen_until_ = net.max_epochs + 1  # (on_train_end lets it go)
            net.history.record("repartition_features", len(features))
        elif keep and self.apply == "all_rows":
            self._apply(net, dataset)
            self.frozen_until_ = epoch + phase
        elif keep:
            net.module_.router.load_state_dict(gate)
            _open_lasso(net, features)
            net.module_.router.requires_grad_(False)
            self.frozen_until_ = epoch + phase
            net.history.record("repartition_features", len(features))
        net.history.record("repartition_kept", int(keep))
        net.history.record("repartition_feature_ids", [int(j) for j in features])
        net.history.record("repartition_losses", [float(own_loss.mean()),
                                                  float(new_loss.mean())])
        net.history.record("repartition_gain_se", [float(gain.mean()), float(se)])

    def _decide(self, net, dataset) -> None:
        """The guard: the re-partitioned net replaces the main one if its training loss
        (after the same number of epochs) is no higher."""
        old_loss, new_loss = training_loss(net, dataset), self.trial_["loss"]
        keep = new_loss <= old_loss
        if keep:
            restore(net, self.trial_["net"])
        net.history.record("repartition_kept", int(keep))
        net.history.record("repartition_losses", [old_loss, new_loss])
        self.trial_ = None

    def _targets(self, dataset) -> tuple[np.ndarray, np.ndarray]:
        X = np.asarray(dataset.X, dtype=np.float64)
        y = np.asarray(dataset.y)
        if self.classification:
            T = np.eye(int(y.max()) + 1)[y.astype(np.int64)]
        else:
            T = y.reshape(len(y), -1).astype(np.float64)
            T = (T - T.mean(0)) / (T.std(0) + 1e-9)
        return X, T

    def _orders(self, X, T, router) -> list[np.ndarray]:
        """The feature rankings whose prefixes the candidates are taken in."""
        orders = []
        if self.features in ("gate", "both"):
            norms = router.linear.weight.detach().norm(dim=0).cpu().numpy()
            orders.append(np.argsort(-norms)[: max(1, min(self.max_features,
                                                          int((norms > 0).sum())))])
        if self.features in ("screen", "both"):
            orders.append(screen_features(X, T, seed=self.seed_)[: self.max_features])
        return orders

    def _repartition(self, net, dataset) -> np.ndarray:
        X, T = self._targets(dataset)
        router = net.module_.router
        best, n_groups = None, len(net.module_.experts)
        rules = range(self.n_draws)  # ('mixture' where the module cannot take it: the rules)
        draws = {"rules": rules, "mixture": rules, "merge": [-1], "both": [*rules, -1]}[
            self.candidates]
        subsets = list(dict.fromkeys(tuple(sorted(order[:r].tolist())) for order in
                                     self._orders(X, T, router)
                                     for r in range(1, len(order) + 1)))
        for subset, draw in itertools.product(subsets, draws):
            features = np.asarray(subset)
            if draw < 0:  # the merge of adjacent micro-cells
                groups = merge_groups(X, T, standardised(X, features), n_groups,
                                      seed=self.seed_)
            else:
                groups = local_rule_groups(X, T, features, n_groups,
                                           n_anchors=self.n_anchors,
                                           n_neighbors=self.n_neighbors,
                                           seed=self.seed_ + draw, cluster=self.cluster)
            if self.refine_iter:
                groups = refine_groups(X, T, features, groups, n_iter=self.refine_iter)
            score = partition_score(X, T, groups, classification=self.classification,
                                    seed=self.seed_)
            if best is None or score > best[0]:
                best = (score, features, groups)
        fit_router_to(router, X, best[1], best[2])
        _open_lasso(net, best[1])
        return best[1]


def _open_lasso(net, features: np.ndarray) -> None:
    """The gate lasso's relaxed-phase masks let ``features`` in (a screened feature the
    lasso had zeroed would otherwise be zeroed again after the next step)."""
    lasso = dict(net.callbacks_).get("router_l1")
    masks = getattr(lasso, "masks_", None)
    if masks is None:
        return
    opened = []
    for keep in masks:
        keep = keep.clone()
        keep[torch.as_tensor(features, device=keep.device)] = True
        opened.append(keep)
    lasso.masks_ = opened


# 'auto' needs rows for its check (15 %: 30 of 200) and for 80-row local neighbourhoods.
AUTO_MIN_ROWS = 200


def make_repartition(mode: str, classification: bool) -> LocalRulePartition:
    """The callback of ``repartition`` (resolved): ``'local_rules'`` as measured in the fifth
    pass; ``'auto'`` also cleans each candidate partition by :func:`refine_groups` and keeps
    it only where it wins on held-out rows (``guard='holdout'``, seventh pass), and takes
    the candidates in the features ranked by model-based splits, not the gate's strongest
    (``features='screen'``, eighth pass); since the tenth pass its one candidate is the
    full-batch linear mixture, adopted whole (``candidates='mixture'``; the local rules
    where the module cannot take it)."""
    if mode == "auto":
        return LocalRulePartition(classification, refine_iter=30, guard="holdout",
                                  features="screen", candidates="mixture")
    return LocalRulePartition(classification)


def check_repartition(repartition: str, router_l1: float, uses_blocks: bool,
                      num_embedding, X, precision: str = "float32") -> str:
    """``repartition`` resolved; ``'local_rules'`` reads the gate's lasso-selected raw
    features (a ``ValueError`` where there are none), ``'auto'`` is ``'none'`` there,
    below ``AUTO_MIN_ROWS`` rows and under float16 precision."""
    if repartition == "none":
        return "none"
    if repartition == "auto" and (X.shape[0] < AUTO_MIN_ROWS or precision == "float16"):
        return "none"  # (float16: the twin's steps would move the net's loss scaler)
    if router_l1 <= 0 or uses_blocks or num_embedding is not None or sp.issparse(X):
        if repartition == "auto":
            return "none"
        raise ValueError(
            "`repartition`='local_rules' takes neighbourhoods in the raw features the "
            "router's group lasso keeps; it needs router_l1 > 0 (or 'auto' resolving to "
            "0.8: a dense, mostly nonzero table of >= 10 features), dense X, no `encoder`, "
            f"`n_layers`=1 and `num_embedding`=None (got router_l1={router_l1}, blocks="
            f"{uses_blocks}, num_embedding={num_embedding!r}, sparse X={sp.issparse(X)}). "
            "Use repartition='none' or 'auto'."
        )
    return repartition
