"""The gated ensembles' shared base: parameters, router training, routing and dispatch."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MaxAbsScaler, StandardScaler
from sklearn.utils import _safe_indexing, check_random_state
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import _num_samples, check_array, check_is_fitted
from skorch.callbacks import EarlyStopping
from skorch.helper import predefined_split

from moensemble._validation import IntInterval, check_precision, resolve_device
from moensemble.ensemble._base import _BaseOOFEnsemble, _text_columns
from moensemble.folds import predict_aligned
from moensemble.gated.net import (
    GateModule,
    _GateDataset,
    _trunk,
)
from moensemble.moe.net import (
    RoutingStats,
    RowDataset,
    collate_batch,
)
from moensemble.moe.routing import make_router


class _BaseGatedEnsemble(_BaseOOFEnsemble):
    """Out-of-fold bases, a skorch-trained router over them, dispatch of routed rows."""

    _parameter_constraints: dict = {
        **_BaseOOFEnsemble._parameter_constraints,
        "router": [StrOptions({"softmax", "topk"})],
        "top_k": [IntInterval(1)],
        "router_hidden": [tuple, list],
        "features": [StrOptions({"input", "input+oof"})],
        "router_preprocessor": [None, HasMethods(["fit", "transform"])],
        "aux_loss_coef": [Interval(Real, 0, None, closed="left")],
        "z_loss_coef": [Interval(Real, 0, None, closed="left")],
        "max_epochs": [IntInterval(1)],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [IntInterval(1)],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [IntInterval(1)],
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
        if not all(isinstance(h, Integral) and not isinstance(h, bool) and h >= 1
                   for h in hidden):
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
            columns = _text_columns(X)
            kind = "column(s)" if hasattr(X, "columns") else "column index(es)"
            where = (f" (non-numeric {kind} {columns[:10]}{' ...' if len(columns) > 10 else ''})"
                     if columns else "")
            raise ValueError(
                f"The router could not turn X into numeric features{where} "
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
