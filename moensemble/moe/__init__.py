"""Sparse mixture of experts on torch + skorch.

``estimators`` holds the scikit-learn estimators; ``routing`` (routers, auxiliary losses,
``dispatch``), ``experts``, ``net``, ``blocks`` (MoE blocks on a shared encoder) and
``sparse`` (CSR batches through the first layer) are the reusable torch core.
"""

from __future__ import annotations

from .estimators import MoEClassifier, MoERegressor

__all__ = ["MoEClassifier", "MoERegressor"]
