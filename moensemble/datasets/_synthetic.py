"""Synthetic tasks for mixtures of experts."""

from __future__ import annotations

import numpy as np


def make_regimes(
    n_samples: int = 1000, *, noise: float = 0.05, random_state: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A regression task with two regimes: a linear target where ``x0 < 0``, a wavy one elsewhere.

    Four features uniform on ``[-2, 2]``; ``y = 1.5 x1 - x2 + 0.5 x3`` where ``x0 < 0`` and
    ``y = 2 sin(3 x1) cos(2 x2)`` where ``x0 >= 0``, plus Gaussian noise. A mixture of
    experts can give each regime its own expert; one network of the same size must fit both.
    This is the "regime task" of the MoE variant tests and ``benchmarks/bench_moe_variants.py``.

    Parameters
    ----------
    n_samples : int, default=1000
    noise : float, default=0.05
        Standard deviation of the Gaussian noise added to ``y``.
    random_state : int or None, default=None
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    X : ndarray of shape (n_samples, 4)
    y : ndarray of shape (n_samples,)

    Examples
    --------
    >>> from moensemble.datasets import make_regimes
    >>> X, y = make_regimes(200, random_state=0)
    >>> X.shape, y.shape
    ((200, 4), (200,))
    """
    rng = np.random.default_rng(random_state)
    X = rng.uniform(-2, 2, (n_samples, 4))
    linear = 1.5 * X[:, 1] - X[:, 2] + 0.5 * X[:, 3]
    wavy = 2 * np.sin(3 * X[:, 1]) * np.cos(2 * X[:, 2])
    return X, np.where(X[:, 0] < 0, linear, wavy) + noise * rng.normal(size=n_samples)
