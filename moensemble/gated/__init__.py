"""Gated ensembles: a learned router that sends each row to the scikit-learn models best for it.

A weighted ensemble gives every row the same weights over its bases; a gated ensemble learns
``g(x)``, one weight vector per row: ``y(x) = sum_i g_i(x) f_i(x)`` over *fitted* scikit-learn
models ``f_i`` (trees, kNN, linear models, pipelines -- anything with ``fit``/``predict``).

How it is fitted:

1. every base is fitted out of fold by the shared engine (:func:`moensemble.out_of_fold`, so
   a weighted ensemble, a stack or a leaderboard over the same bases and cache pays for those
   fits once);
2. a small torch router (:mod:`moensemble.moe.routing`, trained with skorch) learns ``g(x)``
   from the router's view of each row and the bases' out-of-fold predictions: the loss is the
   loss of the gate-weighted combination of those predictions (mixed probabilities then NLL
   for classifiers, squared error for regressors) plus the load-balancing and z auxiliary
   losses. Because every base's out-of-fold prediction is known for every training row, a
   ``'topk'`` router also gets the *exact* expected loss of the base it would pick,
   ``sum_i softmax(W x)_i loss_i(x)``, as a selection loss: top-k itself is not
   differentiable (with ``top_k=1`` the kept gate is always 1), this term is;
3. the bases are refitted on all rows (or kept as fold bags with ``refit=False``).

At predict time with ``router='topk'``, only the chosen models run on each row: rows are
grouped by model, each model predicts its own rows, the weighted outputs are scattered back.
An ensemble of expensive models then costs about ``top_k`` models per row, plus the router.

Compared with dynamic ensemble selection (DESlib's KNORA, META-DES, ...), which picks the models
for a test row from their *competence* on its k nearest neighbours in a validation set, the
gate here is a learned parametric function of the row: prediction needs no neighbour search and
no stored validation set (one small forward pass instead of a kNN query over the data), the
router is trained for the loss of the combination rather than per-model accuracy, and it can
take sparse text features. kNN competence needs no training and adapts to any local structure
that the distance sees; a linear router only draws (soft) linear borders between the regions of
its input, so give it ``router_hidden`` layers or a ``router_preprocessor`` when the regions are
curved.
"""


from moensemble.gated.estimators import GatedEnsembleClassifier, GatedEnsembleRegressor

__all__ = ["GatedEnsembleClassifier", "GatedEnsembleRegressor"]
