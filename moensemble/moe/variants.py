"""The source articles' MoE variants, as operations on a :class:`~.net.MoEModule`.

* :func:`build_experts` — heterogeneous experts (a modular MoE) from a list of specs:
  ``"linear"``, hidden widths such as ``(32,)`` or ``(64, 64)``, an ``nn.Module`` (copied)
  or a factory ``f(in_features, out_features) -> nn.Module``.
* :func:`upcycle` — sparse upcycling (Komatsuzaki et al. 2022): ``n`` copies of a trained
  dense network's one expert, with a fresh router; optionally Drop-Upcycling (Nakamura et
  al. 2025), which re-draws a share of each copy's hidden units (:func:`drop_units`).
* :func:`split_expert` — grow a fitted mixture: copy one expert (with a little noise) into a
  new one and give the router a matching row, so the two share the rows of the original.

Element-wise (per-output) gates live in :class:`~.routing.ElementwiseGate`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from numbers import Integral

import torch
from torch import Tensor, nn

from .experts import MLPExpert, StackedMLPExperts
from .routing import Router
from .sparse import SparseLinear, as_sparse_linear

ExpertSpec = str | int | Sequence[int] | nn.Module | Callable[[int, int], nn.Module]


def describe_spec_error(spec: object) -> str | None:
    """Why ``spec`` is not a valid expert spec, or None when it is."""
    if isinstance(spec, str):
        return None if spec == "linear" else f"unknown string {spec!r} (only 'linear')"
    if isinstance(spec, bool):
        return f"{spec!r} is not a spec"
    if isinstance(spec, Integral):
        return None if spec >= 1 else f"hidden width {spec!r} must be >= 1"
    if isinstance(spec, (tuple, list)):
        ok = all(isinstance(h, Integral) and not isinstance(h, bool) and h >= 1 for h in spec)
        return None if ok else f"hidden widths {spec!r} must be positive ints"
    if isinstance(spec, nn.Module) or callable(spec):
        return None
    return f"{spec!r} of type {type(spec).__name__} is not a spec"


def build_experts(
    specs: Sequence[ExpertSpec],
    in_features: int,
    out_features: int,
    *,
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.ModuleList:
    """One module ``(rows, in_features) -> (rows, out_features)`` per spec."""
    experts = []
    for i, spec in enumerate(specs):
        if isinstance(spec, str):  # "linear"
            expert = MLPExpert(in_features, (), out_features)
        elif isinstance(spec, Integral):
            expert = MLPExpert(
                in_features, (int(spec),), out_features, activation=activation, dropout=dropout
            )
        elif isinstance(spec, (tuple, list)):
            expert = MLPExpert(
                in_features, tuple(spec), out_features, activation=activation, dropout=dropout
            )
        elif isinstance(spec, nn.Module):
            expert = copy.deepcopy(spec)  # the estimator's parameter stays untouched
        else:
            expert = spec(in_features, out_features)
            if not isinstance(expert, nn.Module):
                raise TypeError(
                    f"`experts[{i}]` is a factory and must return an nn.Module; it returned "
                    f"{type(expert).__name__}."
                )
        experts.append(expert)
    return nn.ModuleList(experts)


def upcycle(
    dense_experts: StackedMLPExperts, n_experts: int, *, noise: float = 0.0, drop: float = 0.0
) -> StackedMLPExperts:
    """``n_experts`` copies of the single trained expert of a dense network.

    Parameters
    ----------
    dense_experts : StackedMLPExperts
        The dense network's experts; expert 0 is copied.
    n_experts : int
    noise : float, default=0.0
        Gaussian noise on the copies' weights, relative to each weight tensor's spread.
    drop : float in [0, 1], default=0.0
        Drop-Upcycling (Nakamura et al., ICLR 2025): in every copy, independently,
        ``round(drop * width)`` randomly chosen units of each hidden layer are
        re-initialised — their incoming weights and bias and their outgoing weights —
        from a normal distribution with the mean and standard deviation of the dense
        tensor they belong to. The copies differ from the start (the router gets a signal
        to tell them apart) while keeping ``1 - drop`` of the dense knowledge. ``0``:
        plain copies (sparse upcycling, Komatsuzaki et al. 2022); ``1``: every hidden unit
        re-drawn (only the output biases are kept).

    Returns
    -------
    StackedMLPExperts
    """
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"`drop` must be in [0, 1]; got {drop!r}.")
    stacked = StackedMLPExperts.from_mlp(dense_experts.expert(0), n_experts, noise=noise)
    if drop > 0:
        drop_units(stacked, drop)
    return stacked


@torch.no_grad()
def drop_units(experts: StackedMLPExperts, drop: float) -> None:
    """Re-initialise ``round(drop * width)`` hidden units per layer of every expert, in place.

    Each expert draws its own units; a unit's incoming weights, its bias and its outgoing
    weights are drawn from ``N(mean, std)`` of the whole tensor (all experts) they are in.
    """
    weights, biases = experts.weights, experts.biases
    n_experts = experts.n_experts
    stats = [(_moments(w), _moments(b)) for w, b in zip(weights, biases, strict=True)]
    for layer in range(len(weights) - 1):  # hidden layers: each feeds the next layer
        width = weights[layer].shape[2]
        n_drop = int(round(drop * width))
        if n_drop == 0:
            continue
        for e in range(n_experts):
            units = torch.randperm(width, device=weights[layer].device)[:n_drop]
            (w_mean, w_std), (b_mean, b_std) = stats[layer]
            w_in = weights[layer].data[e]  # (in, width)
            w_in[:, units] = torch.randn_like(w_in[:, units]) * w_std + w_mean
            b = biases[layer].data[e]
            b[units] = torch.randn_like(b[units]) * b_std + b_mean
            (o_mean, o_std), _ = stats[layer + 1]
            w_out = weights[layer + 1].data[e]  # (width, out)
            w_out[units] = torch.randn_like(w_out[units]) * o_std + o_mean


def _moments(t: Tensor) -> tuple[float, float]:
    t = t.detach().float()
    return float(t.mean()), float(t.std()) if t.numel() > 1 else 0.0


@torch.no_grad()
def split_expert(module: nn.Module, index: int, *, noise: float = 0.01) -> None:
    """Add one expert to ``module`` (a MoEModule, in place): a jittered copy of ``index``.

    The router gets a row for the new expert copied from ``index``'s (weights jittered by
    ``noise`` relative to their spread, so the two experts split the rows along a random
    direction), and both biases are lowered by ``log 2`` so that together they keep the
    router probability ``index`` had. Element-wise gates get a copy of ``index``'s block.
    """
    experts = module.experts
    if isinstance(experts, StackedMLPExperts):
        for params in (experts.weights, experts.biases):
            for i, p in enumerate(params):
                new = p[index : index + 1] + _jitter(p[index : index + 1], p, noise)
                params[i] = nn.Parameter(torch.cat([p, new]))
        experts.n_experts += 1
    else:
        new = copy.deepcopy(experts[index])
        for p in new.parameters():
            p.add_(_jitter(p, p, noise))
        experts.append(new)
    _grow_router(module.router, index, noise)
    gate = getattr(module, "output_gate", None)
    if gate is not None:
        gate.grow(index)
        gate.linear = as_sparse_linear(gate.linear)  # grow built a plain nn.Linear
    module.stat_counts = torch.zeros(len(experts), device=module.stat_counts.device)


def _jitter(like: Tensor, ref: Tensor, noise: float) -> Tensor:
    scale = ref.float().std() if ref.numel() > 1 else ref.new_ones(()).float()
    return torch.randn_like(like) * noise * scale.to(like.dtype)


def _grow_router(router: Router, index: int, noise: float) -> None:
    w, bias = router.linear.weight, router.linear.bias.clone()
    w_new = w[index : index + 1] + _jitter(w[index : index + 1], w, noise)
    bias[index] -= math.log(2.0)  # the pair keeps the probability mass of `index`
    router.linear = _linear_from(torch.cat([w, w_new]), torch.cat([bias, bias[index : index + 1]]))
    extra = getattr(router, "noise", None)  # TopKRouter's noise projection
    if isinstance(extra, nn.Linear):
        router.noise = _linear_from(
            torch.cat([extra.weight, extra.weight[index : index + 1]]),
            torch.cat([extra.bias, extra.bias[index : index + 1]]),
        )
    router.expert_bias = torch.cat([router.expert_bias, router.expert_bias[index : index + 1]])
    router.n_experts += 1


def _linear_from(weight: Tensor, bias: Tensor) -> nn.Linear:
    lin = SparseLinear(weight.shape[1], weight.shape[0], device=weight.device, dtype=weight.dtype)
    lin.weight.copy_(weight)
    lin.bias.copy_(bias)
    return lin
