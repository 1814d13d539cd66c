"""EM rounds for the gate of a competitive mixture (``em_rounds``).

With the experts held fixed, the gate that maximises the mixture likelihood
``sum_i log sum_k g_k(x_i) p_k(y_i | x_i)`` is what EM's M-step for the gate converges to
(responsibilities, then a softmax regression on them, repeated). Fitting it on the whole
training set at once, with every expert scored on every row, is what the minibatch top-k
training does not do: there each row's gradient only reaches the ``k`` experts its router
already picks. :class:`GateRefit` does it a few times inside ``fit``; between rounds the
experts keep training on the refitted gate.
"""

from __future__ import annotations

import math

import torch
from skorch.callbacks import Callback
from torch import Tensor

from .routing import run_experts

_CHUNK = 4096  # rows per forward pass while scoring every expert


@torch.no_grad()
def expert_log_likelihoods(module, dataset) -> tuple[list[Tensor], Tensor]:
    """Every expert's ``log p_k(y_i | x_i)`` on every row of ``dataset``.

    Returns the rows in chunks (as the router reads them) and ``(n_rows, n_experts)``.
    The experts are scored alone: a shared expert, a fallback and element-wise gates are
    left out (an approximation of the E-step where they are on; off by default).
    Classifier (``mixture='categorical'``): ``log softmax(f_k(x))[y]``; regressor
    (``'gaussian'``): ``log N(y; f_k(x), exp(log_scale)^2)`` summed over the outputs.
    """
    was_training = module.training
    module.eval()
    device = next(module.parameters()).device
    chunks, scores = [], []
    n_experts = len(module.experts)
    try:
        for start in range(0, len(dataset), _CHUNK):
            xb, yb = dataset.__getitems__(range(start, min(start + _CHUNK, len(dataset))))
            xb, yb = xb.to(device), yb.to(device)
            batch = xb.shape[0]
            indices = torch.arange(n_experts, device=device).expand(batch, -1)
            xb = xb if xb.layout == torch.sparse_csr else xb.float()
            a = run_experts(xb, indices,
                            torch.ones(batch, n_experts, device=device), module.experts)
            if module.mixture == "categorical":
                log_p = torch.log_softmax(a.outputs, -1).gather(
                    1, yb.long().index_select(0, a.rows)[:, None])[:, 0]
            else:
                scale = module.log_scale
                y = yb.float().reshape(batch, -1).index_select(0, a.rows)
                log_p = (-0.5 * ((y - a.outputs) * torch.exp(-scale)).square() - scale
                         - 0.5 * math.log(2 * math.pi)).sum(1)
            experts = torch.repeat_interleave(torch.arange(n_experts, device=device),
                                              a.counts)
            out = log_p.new_empty(batch, n_experts)
            out[a.rows, experts] = log_p
            chunks.append(xb)
            scores.append(out)
    finally:
        module.train(was_training)
    return chunks, torch.cat(scores)


def refit_gate(router, chunks: list[Tensor], log_p: Tensor, *, lr: float,
               steps: int = 200) -> float:
    """Maximise ``mean_i log sum_k softmax(router logits)_k exp(log_p[i, k])`` over the
    router's linear map (full batch, Adam, ``steps`` steps); input columns of the gate that
    are exactly zero (a sparse gate, ``router_l1``) stay zero. Returns the final loss."""
    weight, bias = router.linear.weight, router.linear.bias
    keep = (weight.detach().abs().sum(0) > 0).float()
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    loss = torch.zeros(())
    frozen = weight.requires_grad, bias.requires_grad  # (a re-partition's frozen phase)
    weight.requires_grad_(True)
    bias.requires_grad_(True)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad()
            logits = torch.cat([router.logits(x) for x in chunks])
            loss = -torch.logsumexp(torch.log_softmax(logits, -1) + log_p, -1).mean()
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                weight.mul_(keep)
    weight.requires_grad_(frozen[0])
    bias.requires_grad_(frozen[1])
    return float(loss.detach())


class GateRefit(Callback):
    """After epochs ``max_epochs * (start + (1 - start) * j / rounds)`` (``j = 1..rounds``),
    refit the gate to the mixture likelihood with the experts held fixed
    (:func:`refit_gate`).

    The losses (mixture NLL on the training rows after each refit) go to the history as
    ``gate_refit_loss``.

    Parameters
    ----------
    rounds : int >= 1
    lr : float
        The refit's Adam learning rate (the estimator passes the router's).
    start : float in [0, 1), default=0
        Share of the epochs before the first round's span: the estimator passes 0.5 with
        ``router_l1`` (the lasso's selection half, whose shrinkage a refit would undo).
    steps : int, default=200
    """

    def __init__(self, rounds: int, lr: float, start: float = 0.0, steps: int = 200) -> None:
        self.rounds = rounds
        self.lr = lr
        self.start = start
        self.steps = steps

    def on_epoch_end(self, net, dataset_train=None, **kwargs) -> None:
        epoch, total = len(net.history), net.max_epochs
        span = 1.0 - self.start
        due = {max(1, round(total * (self.start + span * j / self.rounds)))
               for j in range(1, self.rounds + 1)}
        if epoch not in due or dataset_train is None:
            return
        module = net.module_
        chunks, log_p = expert_log_likelihoods(module, dataset_train)
        loss = refit_gate(module.router, chunks, log_p, lr=self.lr, steps=self.steps)
        net.history.record("gate_refit_loss", loss)


def check_em_rounds(em_rounds: int, mixture: str, uses_blocks: bool,
                    num_embedding) -> None:
    """``em_rounds > 0`` needs a single competitive MoE layer on the raw features."""
    if em_rounds == 0:
        return
    if uses_blocks or num_embedding is not None or mixture == "logits":
        raise ValueError(
            f"`em_rounds`={em_rounds} refits the gate to the competitive mixture's likelihood "
            "of a single MoE layer on the raw features; it needs mixture='likelihood' (or "
            "'auto' for a classifier with top_k >= 2), no `encoder`, `n_layers`=1 and "
            f"`num_embedding`=None (got mixture resolving to {mixture!r}, blocks="
            f"{uses_blocks}, num_embedding={num_embedding!r}). Use em_rounds=0."
        )

