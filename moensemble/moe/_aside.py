"""A net trained aside, outside skorch's loop: snapshots of its module and optimizer, a
few passes of training steps, and its task loss per row (the held-out guard's twin and
trials in :mod:`._partition`)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from .routing import shrink_router_inputs


@torch.no_grad()
def training_loss(net, dataset, chunk: int = 4096) -> float:
    """The net's task loss (no auxiliary terms) on every row of ``dataset``, eval mode."""
    module = net.module_
    was_training = module.training
    module.eval()
    total = 0.0
    try:
        for start in range(0, len(dataset), chunk):
            rows = range(start, min(start + chunk, len(dataset)))
            xb, yb = dataset.__getitems__(rows)
            y_pred = net.infer(xb.to(net.device))
            loss = net.get_loss(y_pred, yb.to(net.device), training=False)
            total += float(loss) * len(rows)
    finally:
        module.train(was_training)
    return total / max(len(dataset), 1)


@torch.no_grad()
def row_losses(net, dataset) -> np.ndarray:
    """Each row's task loss (no auxiliary terms), eval mode: ``(len(dataset),)``."""
    module = net.module_
    was_training = module.training
    module.eval()
    try:
        out = []
        for i in range(len(dataset)):
            xb, yb = dataset.__getitems__([i])
            y_pred = net.infer(xb.to(net.device))
            out.append(float(net.get_loss(y_pred, yb.to(net.device), training=False)))
    finally:
        module.train(was_training)
    return np.asarray(out)


def rows_of(dataset, rows: np.ndarray):
    return type(dataset)(dataset.X[rows], dataset.y[rows])


def train_aside(net, dataset, epochs: int, exact: bool = False) -> None:
    """``epochs`` passes of training steps outside skorch's loop (no history, no other
    callbacks). The gate lasso runs as in the loop with ``exact`` (an epoch of the
    twin, run at the end of the loop's same epoch); else only its relaxed phase's masks
    (the phase the guard's trials stand for) keep zeroed features at zero."""
    lasso = dict(net.callbacks_).get("router_l1")
    masks = getattr(lasso, "masks_", None)
    for _ in range(epochs):
        for batch in net.get_iterator(dataset, training=True):
            net.train_step(batch)
            if lasso is not None and exact:
                lasso.on_batch_end(net, batch=batch, training=True)
            elif masks is not None:
                shrink_router_inputs(net.module_.router, 0.0, keep=masks[0])


def snapshot(net) -> dict:
    return {"module": copy.deepcopy(net.module_.state_dict()),
            "optimizer": copy.deepcopy(net.optimizer_.state_dict())}


def restore(net, state: dict) -> None:
    net.module_.load_state_dict(state["module"])
    net.optimizer_.load_state_dict(state["optimizer"])
