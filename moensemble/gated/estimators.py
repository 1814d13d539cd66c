"""GatedEnsembleClassifier and GatedEnsembleRegressor: the estimators around the router network."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context, clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_array, check_is_fitted
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split
from torch import nn

from moensemble._validation import check_precision, resolve_device
from moensemble.ensemble._base import _BaseOOFEnsemble
from moensemble.ensemble._oof import predict_aligned
from moensemble.gated.net import (
    _EPS,
    GateModule,
    _GateDataset,
    _GateNetClassifier,
    _GateNetRegressor,
    _trunk,
)
from moensemble.moe.net import (
    RoutingStats,
    RowDataset,
    collate_batch,
)
from moensemble.moe.routing import make_router

__all__ = ["GatedEnsembleClassifier", "GatedEnsembleRegressor"]


class _BaseGatedEnsemble(_BaseOOFEnsemble):
    """Out-of-fold bases, a skorch-trained router over them, dispatch of routed rows."""

    _parameter_constraints: dict = {
        **_BaseOOFEnsemble._parameter_constraints,
        "router": [StrOptions({"softmax", "topk"})],
        "top_k": [Interval(Integral, 1, None, closed="left")],
        "router_hidden": [tuple, list],
        "features": [StrOptions({"input", "input+oof"})],
        "router_preprocessor": [None, HasMethods(["fit", "transform"])],
        "aux_loss_coef": [Interval(Real, 0, None, closed="left")],
        "z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "device": [str],
        "precision": [StrOptions({"float32", "bfloat16", "float16"})],
        "callbacks": [list, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        estimators,
        *,
        router="topk",
        top_k=1,
        router_hidden=(),
        features="input",
        router_preprocessor=None,
        aux_loss_coef=1e-2,
        z_loss_coef=1e-3,
        max_epochs=100,
        lr=1e-2,
        batch_size=256,
        weight_decay=0.0,
        early_stopping=False,
        validation_fraction=0.1,
        n_iter_no_change=10,
        cv=5,
        refit=True,
        n_jobs=None,
        memory=None,
        device="cpu",
        precision="float32",
        callbacks=None,
        random_state=None,
        verbose=0,
    ):
        self.estimators = estimators
        self.router = router
        self.top_k = top_k
        self.router_hidden = router_hidden
        self.features = features
        self.router_preprocessor = router_preprocessor
        self.aux_loss_coef = aux_loss_coef
        self.z_loss_coef = z_loss_coef
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.cv = cv
        self.refit = refit
        self.n_jobs = n_jobs
        self.memory = memory
        self.device = device
        self.precision = precision
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose

    # ---- fitting ---------------------------------------------------------------------------

    def _check_router_params(self) -> tuple[tuple[int, ...], str]:
        n_bases = len(self._pairs)
        if self.router == "topk" and self.top_k > n_bases:
            raise ValueError(
                f"`top_k`={self.top_k} must be <= the number of estimators ({n_bases}): a row "
                "cannot be routed to more models than there are."
            )
        hidden = tuple(self.router_hidden)
        if not all(isinstance(h, Integral) and h >= 1 for h in hidden):
            raise ValueError(
                f"`router_hidden` must be a tuple of positive ints; got {self.router_hidden!r}."
            )
        device = resolve_device(self.device)
        check_precision(self.precision, device)
        return hidden, device

    def _fit_gated(self, X, y, method, target: np.ndarray) -> None:
        """OOF predictions -> router -> refit; ``target`` is what the combination is scored on."""
        hidden, device = self._check_router_params()
        # All bases may be routed to, so all are refitted, in the same batch as the folds.
        oof = self._out_of_fold(X, y, None, method, refit=self.refit)
        preds = np.stack([oof.predictions[name] for name, _ in self._pairs], axis=1)  # (n,E,C)
        preds = self._to_router_scale(preds)
        base_loss = self._row_losses(preds, target)  # (n, E)
        Z = self._router_input(X, preds, fit=True)
        dataset = _GateDataset(Z, preds, base_loss, target)
        self._train_router(dataset, target, hidden, device)
        self._fit_final_bases(oof, X, y, None, list(range(len(self._pairs))))
        self._set_statistics(dataset, base_loss)

    def _train_router(self, dataset: _GateDataset, target, hidden, device: str) -> None:
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        train, valid = self._split(dataset, target, seed)
        devices = [device] if device.startswith("cuda") else []
        # Fork the RNG so fitting is reproducible without touching the user's torch seed.
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            self.net_ = self._make_net(dataset.X.shape[1], hidden, valid, device)
            self.net_.fit(train, None)
        self.history_ = self.net_.history

    def _split(self, dataset: _GateDataset, target, seed: int):
        if not self.early_stopping:
            return dataset, None
        rng = np.random.RandomState(seed)
        rows = rng.permutation(len(dataset))
        n_valid = max(1, int(round(self.validation_fraction * len(rows))))
        return dataset.subset(np.sort(rows[n_valid:])), dataset.subset(np.sort(rows[:n_valid]))

    def _make_net(self, in_features: int, hidden, valid, device: str):
        trunk, width = _trunk(in_features, hidden)
        n_bases = len(self._pairs)
        top_k = self.top_k if self.router == "topk" else 1
        router = make_router(self.router, width, n_bases, top_k)
        module = GateModule(
            router, trunk, selection=self.router == "topk", precision=self.precision
        )
        callbacks = [("routing_stats", RoutingStats())]
        if self.early_stopping:
            stopper = EarlyStopping(
                monitor="valid_loss", patience=self.n_iter_no_change, load_best=True
            )
            callbacks.append(("early_stopping", stopper))
        callbacks += list(self.callbacks or [])
        net_cls, criterion = self._net()
        return net_cls(
            module=module,
            criterion=criterion,
            optimizer=torch.optim.Adam,
            lr=self.lr,
            optimizer__weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train__shuffle=True,
            iterator_train__collate_fn=collate_batch,
            iterator_valid__collate_fn=collate_batch,
            train_split=None if valid is None else predefined_split(valid),
            callbacks=callbacks,
            device=device,
            verbose=self.verbose,
            aux_loss_coef=self.aux_loss_coef,
            z_loss_coef=self.z_loss_coef,
            torch_load_kwargs={"weights_only": False},
        )

    def _router_input(self, X, preds: np.ndarray | None, *, fit: bool = False):
        """What the router sees: the preprocessed input, then (``'input+oof'``) predictions."""
        if fit:
            self.router_preprocessor_ = clone(self._default_preprocessor(X))
        try:
            if fit:
                Z = self.router_preprocessor_.fit_transform(X)
            else:
                Z = self.router_preprocessor_.transform(X)
            Z = check_array(
                Z, accept_sparse="csr", dtype=np.float32, ensure_all_finite=False, input_name="X"
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(
                "The router could not turn X into numeric features "
                f"({type(exc).__name__}: {exc}). Pass `router_preprocessor`, a transformer that "
                "maps X to numbers (e.g. a TfidfVectorizer for raw text, a ColumnTransformer "
                "with a OneHotEncoder for categories)."
            ) from exc
        # Checked here, not only by the bases: with top-k routing a row with NaN could reach
        # only bases that accept it while the router silently misreads it.
        Z = check_array(Z, accept_sparse="csr", dtype=np.float32, input_name="X")
        if self.features == "input":
            return Z
        flat = preds.reshape(len(preds), -1).astype(np.float32)
        return sp.hstack([Z, flat], format="csr") if sp.issparse(Z) else np.hstack([Z, flat])

    def _default_preprocessor(self, X):
        if self.router_preprocessor is not None:
            return self.router_preprocessor
        if sp.issparse(X):
            return MaxAbsScaler()  # keeps sparsity; RowDataset densifies one batch at a time
        if self.__sklearn_tags__().input_tags.allow_nan:
            # Every base takes NaN, so the router must too: it sees the median instead.
            return make_pipeline(SimpleImputer(keep_empty_features=True), StandardScaler())
        return StandardScaler()

    # ---- routing and prediction -----------------------------------------------------------

    @torch.no_grad()
    def _route_rows(self, Z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Route ``Z`` row by row as in predict: (indices, gates, probs), each batch on its own."""
        module = self.net_.module_
        was_training = module.training
        module.eval()
        dataset = RowDataset(Z)
        n_rows = len(dataset)
        out: tuple[list, list, list] = ([], [], [])
        try:
            for start in range(0, n_rows, self.batch_size):
                xb, _ = dataset.__getitems__(range(start, min(start + self.batch_size, n_rows)))
                routing = module.route(xb.to(self.net_.device))
                for store, value in zip(
                    out, (routing.indices, routing.gates, routing.probs), strict=True
                ):
                    store.append(value.float().cpu().numpy())
        finally:
            module.train(was_training)
        indices, gates, probs = (np.concatenate(v) for v in out)
        return indices.astype(np.int64), gates, probs

    def _predict_base(self, b: int, X) -> np.ndarray:
        """Base ``b`` on the rows of ``X``: (n_rows, n_columns); fold bags are averaged."""
        entry = self.estimators_[b]
        models = entry if isinstance(entry, list) else [entry]
        method = self.stack_method_[b]
        preds = [predict_aligned(m, X, method, self._classes_codes) for m in models]
        return np.mean(preds, axis=0) if len(preds) > 1 else preds[0]

    def _dispatch(self, X, indices: np.ndarray, gates: np.ndarray) -> np.ndarray:
        """Run each base on only the rows routed to it; add its gated output to those rows."""
        n_samples = _num_samples(X)
        out = None
        for b in range(len(self.estimators_)):
            hit = indices == b  # (n, k)
            rows = np.flatnonzero(hit.any(axis=1))
            if rows.size == 0:
                continue  # never call a base on zero rows: many refuse empty input
            pred = self._predict_base(b, _safe_indexing(X, rows))
            weight = (gates * hit).sum(axis=1)[rows]
            if out is None:
                out = np.zeros((n_samples, pred.shape[1]))
            out[rows] += weight[:, None] * pred
        return out

    def _combine(self, X) -> np.ndarray:
        """The gated combination of the bases on ``X``, in the bases' units: (n, n_columns)."""
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        if self.features == "input":
            indices, gates, _ = self._route_rows(self._router_input(X, None))
            return self._dispatch(X, indices, gates)
        # The router reads every base's prediction, so every base runs on every row.
        preds = np.stack([self._predict_base(b, X) for b in range(len(self.estimators_))], 1)
        indices, gates, _ = self._route_rows(self._router_input(X, self._to_router_scale(preds)))
        picked = np.take_along_axis(preds, indices[:, :, None], axis=1)
        return (gates[:, :, None] * picked).sum(axis=1)

    def route(self, X) -> tuple[np.ndarray, np.ndarray]:
        """Which bases each row of ``X`` goes to, and with what weight.

        Rows are routed as in ``predict``: each on its own, without the training noise.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        indices : ndarray of shape (n_samples, k), int64
            Positions in ``estimators``, best first (``k = top_k`` for ``router='topk'``,
            ``k = n_estimators`` for ``'softmax'``).
        gates : ndarray of shape (n_samples, k), float32
            The weight of each of those bases in the row's prediction; a row's gates sum to 1.
        """
        check_is_fitted(self)
        X = self._validate_predict_input(X)
        if self.features == "input":
            Z = self._router_input(X, None)
        else:
            preds = np.stack([self._predict_base(b, X) for b in range(len(self.estimators_))], 1)
            Z = self._router_input(X, self._to_router_scale(preds))
        indices, gates, _ = self._route_rows(Z)
        return indices, gates

    # ---- statistics ------------------------------------------------------------------------

    def _set_statistics(self, dataset: _GateDataset, base_loss: np.ndarray) -> None:
        indices, gates, probs = self._route_rows(dataset.X)
        n_bases = len(self._pairs)
        if self.router == "softmax":
            # Dense routing: every row uses every base; report the mean gate instead.
            load = gates.mean(0)
        else:
            load = np.bincount(indices.ravel(), minlength=n_bases) / indices.size
        self.expert_load_ = load / max(load.sum(), 1e-12)
        entropy = -(probs * np.log(np.clip(probs, 1e-12, None))).sum(1)
        self.router_entropy_ = float(entropy.mean())
        self.base_losses_ = base_loss.mean(0).astype(np.float64)
        picked = np.take_along_axis(dataset.preds, indices[:, :, None], axis=1)
        mixed = (gates[:, :, None] * picked).sum(1)
        self.ensemble_loss_ = float(self._row_losses(mixed[:, None, :], dataset.y)[:, 0].mean())

    # ---- hooks for the two kinds -----------------------------------------------------------

    def _to_router_scale(self, preds: np.ndarray) -> np.ndarray:
        return preds.astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.router_preprocessor is None:
            # The default router view standardizes numbers; strings need a preprocessor.
            tags.input_tags.string = False
            tags.input_tags.categorical = False
        return tags


class GatedEnsembleClassifier(ClassifierMixin, _BaseGatedEnsemble):
    """Route each row to the classifiers best for it with a learned gate.

    ``p(y | x) = sum_{i in topk(x)} g_i(x) p_i(y | x)`` over fitted scikit-learn classifiers
    ``p_i``. The router is trained with skorch on the out-of-fold probabilities of the bases
    (see :mod:`moensemble.gated`); with ``router='topk'`` only the ``top_k`` chosen bases run
    on each row at predict time.

    Unlike DESlib's dynamic selection, which rates each model on a test row's k nearest
    validation neighbours, the gate is a learned function of the row: no neighbour search
    and no stored validation set at predict time, and it is trained for the log-loss of the
    combination.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base classifiers; they receive ``X`` unchanged and labels encoded as
        ``0..n_classes-1``. Bases without ``predict_proba`` vote with one-hot labels.
    router : {'topk', 'softmax'}, default='topk'
        ``'topk'``: each row goes to its ``top_k`` best-scored bases (gates: softmax over the
        kept scores; noisy top-k in training). ``'softmax'``: every base on every row, with
        ``softmax(W x)`` weights.
    top_k : int, default=1
        Bases per row with ``router='topk'``; at most the number of estimators.
    router_hidden : tuple of int, default=()
        Hidden ReLU layers in front of the router's linear gate; ``()`` is a linear router.
    features : {'input', 'input+oof'}, default='input'
        What the router sees. ``'input'`` (the default): the row's features only, so routing
        happens *before* any base runs and top-k routing saves the other bases' cost.
        ``'input+oof'``: the features and every base's prediction (out of fold in training);
        often a better gate, but every base then runs on every row at predict time.
    router_preprocessor : transformer, default=None
        Maps ``X`` to the router's numeric input. ``None``: impute the median and
        standardize dense input, scale sparse input by its max-abs (kept sparse). Give one
        for raw text (``TfidfVectorizer``) or categorical columns.
    aux_loss_coef : float, default=1e-2
        Weight of the load-balancing loss. 0 lets the router send every row to one base when
        one base is best everywhere; higher values spread rows (and cost) over the bases.
    z_loss_coef : float, default=1e-3
        Weight of the router z-loss (keeps the router logits small).
    max_epochs : int, default=100
    lr : float, default=1e-2
        Adam's learning rate.
    batch_size : int, default=256
    weight_decay : float, default=0.0
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the out-of-fold rows, stop after
        ``n_iter_no_change`` epochs without a better ``valid_loss`` and keep the best router.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
    cv : int, cross-validation generator or iterable, default=5
        Folds of the out-of-fold predictions; an int gives ``StratifiedKFold``.
    refit : bool, default=True
        Refit every base on all rows; if False, keep each base's fold models and average
        them (no extra fit, ``cv`` models per routed base at predict time).
    n_jobs : int, default=None
        Parallel jobs over the ``(base, fold)`` fits and the refits (joblib).
    memory : str, joblib.Memory or None, default=None
        Cache of the out-of-fold fits, shared with every ensemble using the same cache.
    device : {'cpu', 'cuda', 'cuda:N', 'mps', 'auto'}, default='cpu'
        Where the router trains and runs (the bases run where they run). ``'auto'`` is
        ``'cuda'`` when torch finds a CUDA device, else the CPU (with a warning); ``'mps'``
        is Apple's GPU. Asking for a device torch cannot find is a ValueError.
    precision : {'float32', 'bfloat16', 'float16'}, default='float32'
        ``'bfloat16'`` / ``'float16'`` run the router's hidden layers (``router_hidden``)
        under ``torch.autocast`` on ``device``, as :class:`~moensemble.MoEClassifier` does
        for its experts; the router's gate logits, softmax and the mixing of the bases'
        predictions stay in float32, and the weights are float32; ``'float16'`` training
        scales the loss with ``torch.amp.GradScaler``, as the MoE does. With
        ``router_hidden=()`` there is nothing to autocast. A precision that ``device``
        cannot run (e.g. ``'bfloat16'`` on a GPU without it) is a ValueError at ``fit``.
    callbacks : list of skorch callbacks, default=None
        Passed to the router's skorch net (e.g. optuna-integration's
        ``SkorchPruningCallback`` on ``valid_loss`` with ``early_stopping=True``).
    random_state : int, RandomState instance or None, default=None
        Seeds the router's initialisation, noise, shuffling and validation split.
    verbose : int, default=0
        joblib verbosity and skorch's per-epoch table.

    Attributes
    ----------
    estimators_ : list of estimator (or list of lists with ``refit=False``)
        Every fitted base, in ``estimators`` order (the router may pick any).
    named_estimators_ : Bunch
        The same, by name.
    stack_method_ : list of str
        ``'predict_proba'`` or ``'predict'`` per base.
    router_preprocessor_ : transformer
        The fitted router view of ``X``.
    net_ : skorch.NeuralNetClassifier
        The trained router net; ``net_.module_`` is a :class:`GateModule`.
    history_ : skorch.History
        Per-epoch ``train_loss`` (and ``valid_loss`` with early stopping), and the training
        batches' ``router_entropy``, ``load_max_violation`` (``(max - mean) / mean`` of the
        load, to catch collapse onto one base) and ``expert_load``.
    expert_load_ : ndarray of shape (n_estimators,)
        Share of the training rows' assignments that each base receives when routed as in
        ``predict`` (mean gate with ``'softmax'``); sums to 1.
    router_entropy_ : float
        Mean entropy of the router softmax over the training rows.
    base_losses_ : ndarray of shape (n_estimators,)
        Out-of-fold log-loss of each base alone.
    ensemble_loss_ : float
        Log-loss of the routed combination of the out-of-fold probabilities (the router saw
        these rows, so it is optimistic).
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from moensemble import GatedEnsembleClassifier
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 3))
    >>> y = np.where(X[:, 0] < 0, X[:, 1] > 0, X[:, 1] * X[:, 2] > 0).astype(int)
    >>> gated = GatedEnsembleClassifier(
    ...     [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(random_state=0))],
    ...     top_k=1, cv=3, max_epochs=20, random_state=0,
    ... ).fit(X, y)
    >>> indices, gates = gated.route(X[:4])
    >>> indices.shape, gates.shape
    ((4, 1), (4, 1))
    >>> gated.expert_load_.shape
    (2,)
    """

    _kind = "classifier"

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the bases out of fold, train the router, refit the bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input, passed to the bases unchanged.
        y : array-like of shape (n_samples,)
            Class labels.

        Returns
        -------
        self : object
        """
        X, y, _ = self._validate_fit_input(X, y, None)
        if len(self.classes_) < 2:
            raise ValueError(
                f"`y` has only one class ({self.classes_[0]!r}); a classifier needs at least 2."
            )
        method = {
            name: "predict_proba" if hasattr(est, "predict_proba") else "predict"
            for name, est in self._pairs
        }
        self._fit_gated(X, y, method, y.astype(np.int64))
        return self

    def _net(self):
        return _GateNetClassifier, nn.NLLLoss

    def _row_losses(self, preds: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Log-loss of every (row, base): (n, E) from preds (n, E, n_classes)."""
        picked = preds[np.arange(len(target)), :, target]  # (n, E)
        return -np.log(np.clip(picked, _EPS, None)).astype(np.float32)

    def predict_proba(self, X):
        """Gate-weighted class probabilities of the routed bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        proba = self._combine(X)
        return proba / np.clip(proba.sum(axis=1, keepdims=True), _EPS, None)

    def predict(self, X):
        """Class with the highest gated probability.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)  # checks the fit before ``classes_`` is read
        return self.classes_[np.argmax(proba, axis=1)]


class GatedEnsembleRegressor(RegressorMixin, _BaseGatedEnsemble):
    """Route each row to the regressors best for it with a learned gate.

    ``y(x) = sum_{i in topk(x)} g_i(x) f_i(x)`` over fitted scikit-learn regressors ``f_i``;
    the router is trained with skorch on the squared error of the gated combination of the
    bases' out-of-fold predictions (standardized by the target's mean and scale, so ``lr``
    does not depend on the units). With ``router='topk'`` only the chosen bases run on each
    row at predict time. See :class:`GatedEnsembleClassifier` for the comparison with DESlib.

    Parameters
    ----------
    estimators : list of (str, estimator)
        Named base regressors, given ``X`` unchanged.
    router, top_k, router_hidden, features, router_preprocessor, aux_loss_coef, z_loss_coef, \
max_epochs, lr, batch_size, weight_decay, early_stopping, validation_fraction, \
n_iter_no_change, cv, refit, n_jobs, memory, device, precision, callbacks, random_state, \
verbose :
        As in :class:`GatedEnsembleClassifier` (an int ``cv`` gives ``KFold``).

    Attributes
    ----------
    estimators_, named_estimators_, stack_method_, router_preprocessor_, net_, history_, \
expert_load_, router_entropy_, n_features_in_, feature_names_in_ :
        As in :class:`GatedEnsembleClassifier`.
    base_losses_ : ndarray of shape (n_estimators,)
        Out-of-fold mean squared error of each base alone, in standardized target units.
    ensemble_loss_ : float
        The same for the routed combination (optimistic: the router saw these rows).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from sklearn.tree import DecisionTreeRegressor
    >>> from moensemble import GatedEnsembleRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.normal(size=(300, 2))
    >>> y = np.where(X[:, 0] < 0, 2 * X[:, 1], np.sign(X[:, 1]))
    >>> gated = GatedEnsembleRegressor(
    ...     [("linear", LinearRegression()), ("tree", DecisionTreeRegressor(max_depth=4))],
    ...     cv=3, max_epochs=20, random_state=0,
    ... ).fit(X, y)
    >>> gated.predict(X[:3]).shape
    (3,)
    """

    _kind = "regressor"

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit the bases out of fold, train the router, refit the bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)
            Training input, passed to the bases unchanged.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Targets.

        Returns
        -------
        self : object
        """
        X, y, _ = self._validate_fit_input(X, y, None)
        target = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        self._y_mean = target.mean(axis=0)
        scale = target.std(axis=0)
        self._y_scale = np.where(scale > 0, scale, 1.0)
        standardized = ((target - self._y_mean) / self._y_scale).astype(np.float32)
        self._fit_gated(X, y, "predict", standardized)
        return self

    def _net(self):
        return _GateNetRegressor, nn.MSELoss

    def _to_router_scale(self, preds: np.ndarray) -> np.ndarray:
        return ((preds - self._y_mean) / self._y_scale).astype(np.float32)

    def _row_losses(self, preds: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Squared error of every (row, base), averaged over outputs: (n, E)."""
        return ((preds - target[:, None, :]) ** 2).mean(axis=2).astype(np.float32)

    def predict(self, X):
        """Gate-weighted prediction of the routed bases.

        Parameters
        ----------
        X : {array-like, sparse matrix, DataFrame} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        return self._shape_regression(self._combine(X))
