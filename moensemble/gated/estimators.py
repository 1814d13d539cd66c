"""GatedEnsembleClassifier and GatedEnsembleRegressor: the estimators around the router network."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from torch import nn

from moensemble.gated._base import _BaseGatedEnsemble
from moensemble.gated.net import _EPS, _GateNetClassifier, _GateNetRegressor

__all__ = ["GatedEnsembleClassifier", "GatedEnsembleRegressor"]


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
