"""scikit-learn estimators around the sparse mixture-of-experts network."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import ClassifierMixin, RegressorMixin, _fit_context
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._base import _BaseMoE, kmeans_router_init  # noqa: F401 - kmeans_router_init re-exported
from .net import (
    MoENetClassifier,
    MoENetRegressor,
)

__all__ = ["MoEClassifier", "MoERegressor"]


class MoEClassifier(ClassifierMixin, _BaseMoE):
    """Sparse mixture-of-experts classifier: a router sends each row to ``top_k`` MLPs.

    ``p(y | x) = sum_{i in topk(x)} g_i(x) softmax(f_i(x))`` (``mixture='likelihood'``, the
    default) or ``softmax(sum_{i in topk(x)} g_i(x) f_i(x))`` (``'logits'``), trained with
    skorch; only the experts a row is routed to run on it. Features are used as given: scale
    dense features (e.g. ``StandardScaler``) first. Sparse CSR input is never densified: the
    first layer that meets it (router, experts, or the shared ``encoder``) is a sparse x
    dense product over the non-zeros. The measurements behind the defaults and options
    below are on the [MoE notes](../guide/moe-notes.md) and
    [MoE quality](../guide/moe-quality.md) pages of the user guide.

    Parameters
    ----------
    n_experts : int, default=8
        Number of experts (ignored when ``experts`` is given).
    top_k : int, default=2
        Experts per row (``'topk'``, ``'expert_choice'``); must be <= ``n_experts``.
        ``'softmax'`` uses all experts, ``'switch'`` one.
    router : {'topk', 'softmax', 'switch', 'expert_choice'}, default='topk'
        Noisy top-k (Shazeer 2017), dense softmax gating, top-1 with capacity
        (Switch), or expert choice (Zhou 2022). See :mod:`moensemble.moe.routing`.
    mixture : {'auto', 'logits', 'likelihood'}, default='auto'
        How the routed experts are combined. ``'logits'`` (cooperative): the output is
        ``sum_i g_i f_i(x)`` (logits or regression values). ``'likelihood'`` (competitive,
        Jacobs, Jordan, Nowlan & Hinton 1991): each expert predicts a whole distribution
        and the loss is ``-log sum_i g_i p_i(y | x)`` over the kept experts, gates
        renormalised; a classifier's ``p_i`` is ``softmax(f_i(x))`` and ``predict_proba``
        the mixture's probabilities, a regressor's a Gaussian of mean ``f_i(x)`` and a
        learned per-output scale, predicting the mixture mean. ``'auto'``: ``'likelihood'``
        for the classifier, ``'logits'`` for the regressor (what measured best,
        docs/guide/moe-quality.md), and ``'logits'`` whenever a row keeps one expert
        (``router='switch'``, or ``'topk'`` with ``top_k=1``): the competitive mixture's
        renormalised gate is then 1 and gives the router no gradient.
    expert_hidden : int or tuple of int, default=(64,)
        Hidden layer widths of each expert MLP (and of the shared expert).
    experts : list of expert specs, default=None
        Heterogeneous experts (a modular MoE), one per spec: ``'linear'``, a hidden width
        or tuple of widths such as ``(32,)`` or ``(64, 64)`` (an MLP with ``activation``
        and ``dropout``), an ``nn.Module`` (copied) or a factory
        ``f(in_features, out_features) -> nn.Module``; each maps
        ``(rows, n_features) -> (rows, n_outputs)`` (``(rows, d) -> (rows, d)`` in MoE
        blocks). The router learns which to use; ``n_experts`` is then ``len(experts)``
        and the experts run one after the other on their rows; on sparse input a module
        that is not an ``MLPExpert`` gets its rows densified. ``None``: ``n_experts``
        identical MLPs in one stacked module.
    gating : {'expert', 'elementwise'}, default='expert'
        ``'elementwise'``: a gate per output unit (class logit or regression target) of
        each routed expert instead of one scalar; see
        :class:`~moensemble.moe.routing.ElementwiseGate` and :meth:`output_gates`.
    init : {'random', 'upcycle'}, default='random'
        ``'upcycle'``: sparse upcycling (Komatsuzaki et al. 2022) — first train a dense
        network (one expert, ``upcycle_epochs`` epochs), then copy its expert into the
        ``n_experts`` experts under a fresh router, and train ``max_epochs`` more with a
        fresh optimizer. With ``upcycle_drop=0`` the copies get 1% noise, and with
        ``top_k >= 2`` the renormalised gates make the mixture start as the dense network.
        It reuses a dense network's training; measured, it is not a faster way to train
        the mixture from scratch (MoE notes). Single MoE layer only (no ``encoder``,
        ``n_layers=1``).
    router_init : {'random', 'kmeans'}, default='random'
        ``'kmeans'``: before training, cluster the training rows (MiniBatchKMeans, one
        cluster per expert, at most 20,000 rows) and set the router's linear map so that
        its logits are ``-t ||x - c_i||^2`` (up to a per-row constant; ``t`` is one over
        the mean squared distance of a row to its centroid): the router splits the rows
        from the first batch instead of learning a split late. Applies to every router
        and to ``init='upcycle'``'s fresh router; with MoE blocks the rows are clustered
        as the first block's router sees them at initialisation. Faster to converge on
        regime data, within the noise on text (MoE notes), hence not the default.
    upcycle_epochs : int, default=10
        Epochs of the dense phase of ``init='upcycle'``; ``history_`` holds the mixture's
        ``max_epochs`` after it and ``dense_history_`` the dense phase.
    upcycle_drop : float in [0, 1], default=0.0
        Drop-Upcycling (Nakamura et al., ICLR 2025) with ``init='upcycle'``: in every
        copy, independently, this share of each hidden layer's units is re-initialised
        (incoming weights, bias, outgoing weights, drawn from a normal with the mean and
        standard deviation of the dense tensor), so that the experts differ from the start
        and the router gets a signal to tell them apart. ``0``: plain copies (0.25 and 0.5
        measured no better; MoE notes).
    grow_steps : int, default=0
        After training, grow the mixture this many times by one expert (see
        :meth:`grow`), training ``grow_epochs`` after each split; ``n_experts_`` ends at
        ``n_experts + grow_steps``. This is how a search tries growing: it is an ordinary
        parameter (e.g. ``trial.suggest_int("grow_steps", 0, 3)``). Single MoE layer only.
    grow_epochs : int, default=5
        Epochs of training after each growing step.
    activation : {'relu', 'gelu', 'tanh', 'silu'}, default='relu'
        Activation of the experts' (and the encoder's) hidden layers.
    dropout : float in [0, 1), default=0.0
        Dropout after every hidden activation of the experts and the encoder.
    gate_dropout : float, default=0.0
        Probability of dropping each of a row's assignments but its best in training.
    shared_expert : bool, default=False
        Add an expert of the same shape that every row uses (DeepSeekMoE).
    aux_loss_coef : float, default=1e-2
        Weight of the load-balancing loss ``E * sum_i f_i P_i``.
    z_loss_coef : float, default=1e-3
        Weight of the router z-loss.
    balance : {'aux_loss', 'bias'}, default='aux_loss'
        ``'bias'``: DeepSeek-V3 auxiliary-loss-free balancing (a per-expert bias on the
        selection scores); the load-balancing loss is then not added.
    bias_update_rate : float, default=1e-3
        Step of the balancing bias per training batch (``balance='bias'``).
    capacity_factor : float, default=1.25
        Expert capacity as a multiple of an even share of the batch (``'switch'``,
        ``'expert_choice'``); training only. Rows over capacity in ``'switch'`` use a
        linear fallback path that every row has, so none is dropped from the output.
    max_epochs : int, default=50
        Training epochs (fewer with ``early_stopping``).
    lr : float > 0, default=1e-3
        Learning rate of the optimizer.
    router_lr_scale : float > 0 or 'auto', default='auto'
        Learning rate of the router's parameters as a multiple of ``lr`` (a skorch
        optimizer param group ``"*router.*"``, every block's router; the element-wise
        gates and the experts use ``lr``). A faster router settles the split of the rows
        while the experts specialise. ``'auto'``: 10 on dense input (ahead of 1 on the
        hidden-regime grid, ``benchmarks/bench_regimes.py``), 1 on sparse input or when
        at least half the entries of X are zero (10 cost compare's text MoE 7.7 points of
        accuracy, and 2.7 on ``make_modality_table``'s TF-IDF block); the value used is
        ``router_lr_scale_``. See the MoE quality page.
    batch_size : int or 'auto', default='auto'
        Rows per training step (and per prediction batch). ``'auto'``: ``min(128, max(16,
        n_train // 8))`` for ``n_train`` training rows, so that a small table still gets 8
        steps an epoch (iris: 0.983 accuracy against 0.816 with 128, wine 0.993 against
        0.963, breast cancer 0.965 against 0.970, diabetes R^2 0.374 against 0.365; 3
        splits); 128 from 1,024 training rows. The value used is ``batch_size_``.
    optimizer : {'auto', 'adam', 'adamw', 'sgd', 'lazy_adam'} or torch optimizer class, \
            default='auto'
        ``'auto'``: ``'lazy_adam'`` on sparse X of at least
        :data:`~moensemble.moe.sparse.LAZY_ADAM_MIN_COLUMNS` (10,000) columns when
        ``weight_decay=0``, ``'adam'`` otherwise; the value used is ``optimizer_``.
        ``'sgd'`` uses momentum 0.9. ``'lazy_adam'``: on sparse X the first layers take
        sparse gradients and only the rows of the batch's columns are stepped, each first
        catching up on the momentum steps Adam would have given it while it was skipped
        (:class:`~moensemble.moe.sparse.CatchUpAdam`; an epoch on 100k-column text ~10x
        faster; no weight decay; gradient clipping callbacks work), the rest Adam; on dense
        X it is ``'adam'``. See :mod:`moensemble.moe.sparse`.
    weight_decay : float >= 0, default=0.0
        The optimizer's weight decay.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the data (stratified when possible), stop
        after ``n_iter_no_change`` epochs without a better ``valid_loss`` and restore the
        best weights. ``valid_loss`` is recorded in ``history_`` every epoch only when
        this is on.
    validation_fraction : float in (0, 1), default=0.1
        Share of the rows held out for early stopping.
    n_iter_no_change : int, default=10
        Early stopping's patience in epochs.
    device : {'cpu', 'cuda', 'cuda:N', 'auto'}, default='cpu'
        ``'auto'`` falls back to the CPU with a warning when there is no GPU.
    precision : {'float32', 'bfloat16', 'float16'}, default='float32'
        Autocast dtype of the experts; the router always computes in float32.
        ``'float16'`` training scales the loss with ``torch.amp.GradScaler`` (a step whose
        gradients overflow is skipped, never written into the weights); ``'bfloat16'``
        needs no scaling.
    callbacks : list of skorch callbacks, default=None
        Passed to the skorch net (e.g. optuna-integration's ``SkorchPruningCallback``).
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling, noise and the validation split; equal seeds
        give identical predictions on the CPU.
    verbose : int, default=0
        skorch's per-epoch table when > 0.
    encoder : None, int or tuple of int, default=None
        Widths of an MLP encoder shared by every router and expert (``Linear ->
        activation -> dropout`` per width). Its first layer is the only one that meets the
        raw features, so on sparse text it is the one sparse x dense product.
        ``None``: routers and experts read the raw features.
    n_layers : int >= 1, default=1
        MoE blocks, each ``h + MoE(LayerNorm(h))`` at the encoder's last width ``d`` (or
        ``n_features`` without an encoder; then the input must be dense), followed by a
        ``LayerNorm`` and a linear head. ``encoder=None, n_layers=1`` is a single MoE layer
        ``n_features -> n_outputs`` with no residual or head. In blocks the residual carries
        ``'switch'`` overflow rows (no fallback path). ``route``, ``expert_load_`` and the
        history's routing statistics describe block 0; ``route(X, block=i)`` the others.
        See :mod:`moensemble.moe.blocks`.
    expert_blocks : dict or None, default=None
        Experts per modality: ``{block name: columns}``, the columns a slice (open-ended
        ``slice(a, None)`` allowed), a range, int indices or a boolean mask, blocks
        disjoint, e.g. :func:`moensemble.features.blocks_by_kind` of a fitted
        ``TableEncoder``. The router reads every column; each expert reads only its
        block's columns (a CSR batch stays sparse), an expert spec of ``experts`` being
        built at its block's width. Single MoE layer only (``encoder=None``,
        ``n_layers=1``, ``init='random'``). See :meth:`modality_load`.
    experts_per_block : None, int or dict, default=None
        How the experts are dealt to the blocks of ``expert_blocks``: ``None`` round-robin
        (expert ``i`` to block ``i % n_blocks``), an int that many per block, or
        ``{block: count}``; the counts may sum to less than ``n_experts``, and the experts
        left over read every column (``'generalist'`` in the report).
    num_embedding : {None, 'periodic', 'piecewise'}, default=None
        Embed each numeric feature into a 16-wide vector before the encoder, routers and
        experts: ``'periodic'`` (learned sin/cos frequencies, then linear + ReLU) or
        ``'piecewise'`` (piecewise-linear encoding on 16 quantile bins fitted in ``fit``,
        then linear + ReLU). Dense input only. See :mod:`moensemble.moe.embeddings`.
    router_l1 : float >= 0 or 'auto', default='auto'
        Strength of a group lasso on the routers' input weights, one group per input
        feature (its column of the gate's weight, and of the noise map of ``'topk'``;
        with ``num_embedding`` or MoE blocks, per column of what each router reads):
        a proximal step after every training step in the first half of ``max_epochs``
        sets the features that do not help the split to exactly zero in the gate; in the
        second half they stay zero and the rest trains without the penalty (relaxed
        lasso). For data whose regimes depend on a few of many features: 0.8 added 4
        points on the held-out hidden-regime grid and cost 1.2 on compare's text job
        (MoE quality page). Adam moves a weight by at most about its learning rate per
        step, so values >= 1 can zero every feature; ``0``: off. ``'auto'``: 0.8 where the
        routers read the raw columns of a dense table of at least 10 features with at least
        half of its entries nonzero, else 0 (fewer features, sparse or mostly-zero input, an
        ``encoder``, ``num_embedding``, ``n_layers > 1``); the value used is ``router_l1_``.
        The sparse gate trades balance for specialisation: on ``make_classification`` (20
        features) 0.8 scored 0.952 against 0.932 with a load violation of 1.10 against 0.37.
    n_init : int >= 1, default=1
        Trainings from different initialisations (seeds drawn from ``random_state``),
        each of ``max_epochs``; the net with the lowest final loss is kept (best
        ``valid_loss`` with ``early_stopping``, else the last epoch's ``train_loss``).
        Fit time grows ``n_init`` times. ``init_losses_`` holds each one's loss.
    em_rounds : int >= 0, default=0
        EM rounds for the gate: after epochs ``max_epochs * j / em_rounds`` (with
        ``router_l1`` spread over the second half, after the lasso's selection, whose
        shrinkage a refit would undo) the router's linear map is refitted on all
        training rows, with the experts held fixed, to the competitive mixture's
        likelihood over *every* expert (what EM's gate step
        converges to; 200 full-batch Adam steps at the router's learning rate; features
        zeroed by ``router_l1`` stay out), and the experts train on. The minibatch top-k
        training only reaches the ``k`` experts a router already picks. Needs the
        competitive mixture on a single MoE layer (``mixture='likelihood'``, or ``'auto'``
        for a classifier with ``top_k >= 2``) on the raw features. ``0``: off. At most one
        round runs per epoch (rounds due at the same epoch run once). Losses in
        the history as ``gate_refit_loss`` (MoE quality page, hidden-regime grid).
    repartition : {'none', 'local_rules', 'auto'}, default='auto'
        ``'local_rules'``: at the end of the lasso's selection half, the gate is
        re-partitioned from the rows' local linear rules (``moe/_partition.py``): ridge fits
        on neighbourhoods of 300 random rows in the 1-4 strongest gate features, clustered
        into ``n_experts`` groups (3 draws each; the partition whose groups one linear
        model each fits best on held-out rows is kept); the router is refitted to the
        groups on those features and frozen for a fifth of the epochs while the experts
        follow, then the training goes on. For data of hidden regimes with their own
        linear rules. Needs the router's group lasso (``router_l1`` > 0, as ``'auto'`` on
        dense tables of >= 10 features), dense ``X`` and a single MoE layer on the raw
        features. The number of features used is in the history as
        ``repartition_features``.
        ``'auto'`` (the default): at the same epoch, a full-batch competitive mixture of
        linear rules is fitted whose gate reads only the pair of features that
        model-based splits rank first (one ridge rule per quantile bin of a feature,
        cross-fitted, then the best pair; ``moe/_screen.py``): 5 starts at random
        Voronoi cells, the best on held-out rows kept (``moe/_linear_mixture.py``). It is
        written exactly into the router and the experts (linear experts directly, ReLU
        MLP experts through pairs of units) and guarded on held-out rows: a twin of the
        net trains on 85 % of the rows; at that epoch the twin trained on as it is and the
        mixture fitted on the twin's rows meet the other 15 %; the net takes the mixture
        only if its per-row task loss there is lower by more than one standard error
        (else the fit is exactly the one without the option; ``repartition_kept``,
        ``repartition_losses`` and ``repartition_gain_se`` in the history); it then trains
        300 more full-batch steps on all rows from where it is, and the router stays
        frozen while the experts train on. Where the module cannot take the
        mixture (other activations, hidden layers narrower than twice the outputs, a
        shared expert, expert-choice routing) the candidate is the local rules' partition
        in the screened features, cleaned by hard EM of ridge rules (the eighth pass). It
        costs about 1.7 x the epochs and a few seconds of full-batch steps (tenth pass,
        MoE quality page). Where
        ``'local_rules'`` cannot apply, ``'auto'`` is ``'none'`` (sparse text, no lasso,
        blocks, under 200 rows, float16). The value used is ``repartition_``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.
    net_ : skorch.NeuralNetClassifier
        The trained net (``net_.module_`` is a :class:`~moensemble.moe.net.MoEModule`, or
        a :class:`~moensemble.moe.blocks.MoENetwork` with ``encoder`` / ``n_layers > 1``).
    history_ : skorch.History
        Per-epoch ``train_loss``, ``valid_loss`` (with early stopping),
        ``router_entropy``, ``load_max_violation``, ``overflow_fraction``, ``expert_load``.
    expert_load_ : ndarray of shape (n_experts,)
        Share of the training rows' assignments that each expert receives when routed as
        in ``predict`` (mean gate for ``'softmax'``); sums to 1.
    router_entropy_ : float
        Mean entropy of the router softmax over the training rows.
    overflow_fraction_ : float
        Share of rows over capacity in the last complete training epoch (``'switch'``;
        else 0); the batches seen when training stopped inside the first epoch.
    n_active_params_ : int
        Parameters used per row: router + ``k`` experts + shared expert + fallback
        (+ element-wise gates), per block, plus encoder, norms and head.
    router_lr_scale_ : float
        The router's learning-rate scale used (``router_lr_scale``, ``'auto'`` resolved).
    batch_size_ : int
        The rows per training step used (``batch_size``, ``'auto'`` resolved).
    optimizer_ : str or torch optimizer class
        The optimizer used (``optimizer``, ``'auto'`` resolved).
    router_l1_ : float
        The group-lasso strength used (``router_l1``, ``'auto'`` resolved).
    repartition_ : str
        The re-partition used (``repartition``, ``'auto'`` resolved to itself or ``'none'``).
    init_losses_ : list of float
        The final loss of each of the ``n_init`` trainings; ``net_`` is the lowest's.
    n_experts_ : int
        Number of experts: ``n_experts``, ``len(experts)``, or more after :meth:`grow`.
    dense_history_ : skorch.History or None
        The dense phase's history with ``init='upcycle'``; otherwise None.
    expert_blocks_ : dict of str to ndarray of int
        With ``expert_blocks``: the columns of each block, resolved against ``X``.
    expert_block_of_ : list of str or None
        With ``expert_blocks``: the block of each expert (``None``: every column).
    block_load_ : dict of str to float
        With ``expert_blocks``: ``expert_load_`` summed over each block's experts.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from moensemble.moe import MoEClassifier
    >>> X, y = make_classification(n_samples=200, random_state=0)
    >>> clf = MoEClassifier(n_experts=4, top_k=2, max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    >>> clf.route(X[:2])[0].shape
    (2, 2)
    """

    _parameter_constraints = dict(_BaseMoE._parameter_constraints)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> MoEClassifier:
        """Fit the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self : MoEClassifier
        """
        X, y = self._validate_fit(X, y)
        check_classification_targets(y)
        encoder = LabelEncoder().fit(y)
        self.classes_ = encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"`y` has only one class ({self.classes_[0]!r}); a classifier needs at least 2."
            )
        y_enc = encoder.transform(y).astype(np.int64)
        self._fit_net(X, y_enc, MoENetClassifier, torch.nn.CrossEntropyLoss, len(self.classes_))
        return self

    def _is_classification(self) -> bool:
        return True

    def _net_spec(self):
        return MoENetClassifier, torch.nn.CrossEntropyLoss

    def _n_outputs(self) -> int:
        return len(self.classes_)

    def _validate_grow(self, X, y):
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=np.float32, reset=False)
        unknown = np.setdiff1d(np.unique(y), self.classes_)
        if len(unknown):
            raise ValueError(
                f"`y` has labels not seen in fit: {unknown[:5].tolist()}; grow continues "
                f"training on the fitted classes {self.classes_.tolist()}."
            )
        return X, np.searchsorted(self.classes_, y).astype(np.int64)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        proba = self._forward(X).astype(np.float64)
        return proba / proba.sum(1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        """Most probable class of each row.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MoERegressor(RegressorMixin, _BaseMoE):
    """Sparse mixture-of-experts regressor: a router sends each row to ``top_k`` MLPs.

    Targets are standardised internally (and predictions mapped back), so the learning
    rate does not depend on their scale. 1-D and multi-output ``y`` are supported.

    Parameters are the same as :class:`MoEClassifier`'s.

    Attributes
    ----------
    n_features_in_, feature_names_in_, net_, history_, expert_load_, router_entropy_,
    overflow_fraction_, n_active_params_, n_experts_, dense_history_, expert_blocks_,
    expert_block_of_, block_load_, router_lr_scale_, optimizer_, init_losses_ :
        As in :class:`MoEClassifier`.

    Examples
    --------
    >>> from sklearn.datasets import make_regression
    >>> from moensemble.moe import MoERegressor
    >>> X, y = make_regression(n_samples=200, n_features=5, random_state=0)
    >>> reg = MoERegressor(n_experts=4, max_epochs=5, random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    """

    _parameter_constraints = dict(_BaseMoE._parameter_constraints)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y) -> MoERegressor:
        """Fit the mixture.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)

        Returns
        -------
        self : MoERegressor
        """
        X, y = self._validate_fit(X, y, multi_output=True, y_numeric=True)
        y = np.asarray(y, dtype=np.float64)
        self._y_ndim = y.ndim
        y2 = y.reshape(len(y), -1)
        # Mean and spread of y / max|y|, scaled back: y.std() itself overflows near 1e160.
        peak = np.abs(y2).max(0)
        peak = np.where(peak > 0, peak, 1.0)
        self._y_mean = (y2 / peak).mean(0) * peak
        spread = (y2 / peak).std(0) * peak
        self._y_scale = np.where(spread > 0, spread, 1.0)
        y_std = ((y2 - self._y_mean) / self._y_scale).astype(np.float32)
        self._fit_net(X, y_std, MoENetRegressor, torch.nn.MSELoss, y2.shape[1])
        return self

    def predict(self, X) -> np.ndarray:
        """Predicted targets.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_outputs)
        """
        y = self._forward(X).astype(np.float64) * self._y_scale + self._y_mean
        return y.ravel() if self._y_ndim == 1 else y

    def _net_spec(self):
        return MoENetRegressor, torch.nn.MSELoss

    def _n_outputs(self) -> int:
        return len(self._y_mean)

    def _validate_grow(self, X, y):
        X, y = validate_data(
            self, X, y, accept_sparse="csr", dtype=np.float32, reset=False,
            multi_output=True, y_numeric=True,
        )
        y2 = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
        if y2.shape[1] != len(self._y_mean):
            raise ValueError(
                f"`y` has {y2.shape[1]} outputs; the model was fitted on {len(self._y_mean)}."
            )
        return X, ((y2 - self._y_mean) / self._y_scale).astype(np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
