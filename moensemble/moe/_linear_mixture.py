"""A competitive mixture of linear rules, fitted full batch, whose gate reads a few features.

Where rows come from hidden regimes given by a few features, each regime with its own
linear rule, the Bayes-optimal model is a softmax gate on those features (it carves their
space into Voronoi cells exactly) and one linear rule per cell. :func:`fit_linear_mixture`
fits that model directly: the gate reads only ``features`` (the pair ranked first by
:func:`moensemble.moe._screen.screen_features`), each expert is a linear rule of *all*
features, the loss is the mixture's negative log-likelihood (Jacobs et al. 1991:
``-log sum_i g_i(x) p_i(y | x)``; a Gaussian of learned scale per expert for a regressor),
trained full batch with Adam from a few gates started at random Voronoi cells (random rows
as centres); the start of the lowest held-out loss is kept and trained on all rows. A gate
on all ``d`` features finds a wrong partition that fits the rows as well as the true one
at ``d = 30``, and the minibatch top-k training only reaches the experts a router already
picks (docs/guide/moe-quality.md, tenth pass); this fit has neither problem.

:func:`adopt` writes the fitted mixture into an MoE module exactly: the router's linear map
takes the gate, and each expert takes its rule — a linear expert directly, a ReLU MLP
through pairs of units (``relu(z) - relu(-z) = z``), so the experts may still learn a
non-linear part from there. :func:`adoption_blocker` says why a module cannot take it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .experts import MLPExpert, StackedMLPExperts
from .routing import SoftmaxRouter, SwitchRouter, TopKRouter

# The restarts search on at most this many rows (the full-batch steps cost rows x experts x
# features); the kept start then trains on all rows.
SEARCH_ROWS = 5000


@dataclass
class LinearMixture:
    """A fitted mixture, in the raw features' units.

    ``gate_weight (E, d)`` is zero outside ``features``; ``weight (E, d, out)``, ``bias
    (E, out)`` the experts' rules (class logits, or means of the targets as given);
    ``log_scale (out,)`` the regressor's shared Gaussian scale (zeros for a classifier);
    ``valid_loss`` the kept start's mean loss on its held-out rows."""

    classification: bool
    features: np.ndarray
    gate_weight: torch.Tensor
    gate_bias: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    log_scale: torch.Tensor
    valid_loss: float

    @torch.no_grad()
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities ``(n, out)`` (classifier) or the mixture mean ``(n, out)``."""
        x = torch.as_tensor(X, dtype=torch.float32)
        gates = torch.softmax(x @ self.gate_weight.T + self.gate_bias, 1)
        out = torch.einsum("nd,edc->nec", x, self.weight) + self.bias
        if self.classification:
            out = torch.softmax(out, 2)
        return (gates.unsqueeze(2) * out).sum(1).numpy()


def _nll(x, z, y, params, classification: bool) -> torch.Tensor:
    gate_w, gate_b, w, b, log_scale = params
    log_g = torch.log_softmax(z @ gate_w.T + gate_b, 1)  # (n, E)
    out = torch.einsum("nd,edc->nec", x, w) + b  # (n, E, out)
    if classification:
        log_p = torch.log_softmax(out, 2).gather(
            2, y.view(-1, 1, 1).expand(-1, out.shape[1], 1)).squeeze(2)
    else:
        log_p = (-0.5 * ((y.unsqueeze(1) - out) * torch.exp(-log_scale)).square()
                 - log_scale).sum(2)
    return -torch.logsumexp(log_g + log_p, 1).mean()


def _train(x, z, y, params, classification, steps, lr, weight_decay) -> None:
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = _nll(x, z, y, params, classification) + weight_decay * params[2].square().sum()
        loss.backward()
        optimizer.step()


def fit_linear_mixture(X: np.ndarray, y: np.ndarray, features, n_experts: int, *,
                       classification: bool, n_classes: int | None = None, seed: int = 0,
                       n_restarts: int = 5, steps: int = 600, refit_steps: int = 300,
                       lr: float = 0.05, weight_decay: float = 3e-4,
                       temperature: float = 3.0, validation: float = 0.2,
                       start: LinearMixture | None = None) -> LinearMixture:
    """Fit the mixture (module docstring) on ``X (n, d)`` and ``y``: class labels ``0..C-1``
    (``classification``) or values ``(n,)`` / ``(n, out)``.

    Each of ``n_restarts`` starts takes ``n_experts`` random rows (of the search rows, at
    most ``SEARCH_ROWS``, less ``validation`` of them held out) as the gate's Voronoi
    centres in the standardised ``features`` (sharpness ``temperature``) and trains
    ``steps`` full-batch Adam steps; the start of the lowest held-out loss then trains
    ``refit_steps`` more on all rows at half the rate. ``weight_decay`` multiplies the
    experts' summed squared weights (the gate is not decayed). With ``start`` (a mixture
    fitted on other rows, e.g. a subset: a warm refit) there is no search: ``start``
    trains ``refit_steps`` on these rows (its ``features``; ``valid_loss`` is its own)."""
    torch_state = torch.get_rng_state()
    try:
        return _fit(np.asarray(X, dtype=np.float64), np.asarray(y), np.asarray(features),
                    int(n_experts), classification, n_classes, seed, n_restarts, steps,
                    refit_steps, lr, weight_decay, temperature, validation, start)
    finally:  # the caller's torch RNG does not move
        torch.set_rng_state(torch_state)


def _fit(X, y, features, n_experts, classification, n_classes, seed, n_restarts, steps,
         refit_steps, lr, weight_decay, temperature, validation, start) -> LinearMixture:
    n, d = X.shape
    if start is not None:
        features = start.features
    mean, std = X[:, features].mean(0), X[:, features].std(0)
    std = np.where(std > 0, std, 1.0)
    x = torch.as_tensor(X, dtype=torch.float32)
    z = torch.as_tensor((X[:, features] - mean) / std, dtype=torch.float32)
    if classification:
        target = torch.as_tensor(y, dtype=torch.long)
        out = int(n_classes if n_classes is not None else y.max() + 1)
    else:
        target = torch.as_tensor(y.reshape(n, -1), dtype=torch.float32)
        out = target.shape[1]
    if start is not None:  # the start's gate in these rows' standardised features
        cols = torch.as_tensor(features)
        std_t = torch.as_tensor(std, dtype=torch.float32)
        gate = start.gate_weight[:, cols]
        params = [(gate * std_t).requires_grad_(True),
                  (start.gate_bias + gate @ torch.as_tensor(mean, dtype=torch.float32)
                   ).requires_grad_(True),
                  start.weight.clone().requires_grad_(True),
                  start.bias.clone().requires_grad_(True),
                  start.log_scale.clone().requires_grad_(not classification)]
        return _finish(x, z, target, params, classification, refit_steps, lr, weight_decay,
                       features, mean, std, start.valid_loss)
    rng = np.random.default_rng(seed)
    search = rng.permutation(n)[:SEARCH_ROWS]
    n_valid = int(validation * len(search))
    valid, train = torch.as_tensor(search[:n_valid]), torch.as_tensor(search[n_valid:])
    if len(train) < n_experts:
        raise ValueError(f"fit_linear_mixture needs at least n_experts={n_experts} rows to "
                         f"train on; got {len(train)}.")
    generator = torch.Generator().manual_seed(int(seed))
    best = None
    for _ in range(n_restarts):
        centres = z[train[torch.randperm(len(train), generator=generator)[:n_experts]]]
        params = [(2 * temperature * centres).requires_grad_(True),
                  (-temperature * centres.square().sum(1)).requires_grad_(True),
                  (0.01 * torch.randn(n_experts, d, out, generator=generator)).requires_grad_(True),
                  torch.zeros(n_experts, out, requires_grad=True),
                  torch.zeros(out, requires_grad=not classification)]
        _train(x[train], z[train], target[train], params, classification, steps, lr,
               weight_decay)
        with torch.no_grad():
            rows = valid if n_valid else train
            loss = float(_nll(x[rows], z[rows], target[rows], params, classification))
        if best is None or loss < best[0]:
            best = (loss, [p.detach().clone().requires_grad_(p.requires_grad)
                           for p in params])
    return _finish(x, z, target, best[1], classification, refit_steps, lr, weight_decay,
                   features, mean, std, best[0])


def _finish(x, z, target, params, classification, refit_steps, lr, weight_decay, features,
            mean, std, valid_loss) -> LinearMixture:
    """``refit_steps`` on all rows at half the rate, then the gate to the raw features."""
    _train(x, z, target, params, classification, refit_steps, lr / 2, weight_decay)
    gate_w, gate_b, w, b, log_scale = (p.detach() for p in params)
    scaled = gate_w / torch.as_tensor(std, dtype=torch.float32)
    raw = torch.zeros(w.shape[0], x.shape[1])
    raw[:, torch.as_tensor(features)] = scaled
    return LinearMixture(classification=classification, features=features, gate_weight=raw,
                         gate_bias=gate_b - scaled @ torch.as_tensor(mean, dtype=torch.float32),
                         weight=w, bias=b, log_scale=log_scale, valid_loss=valid_loss)


def output_width(experts) -> int:
    """The experts' output width (class logits or regression outputs)."""
    if isinstance(experts, StackedMLPExperts):
        return int(experts.weights[-1].shape[-1])
    return int(experts[0].layers[-1].out_features)


def adoption_blocker(module) -> str | None:
    """Why :func:`adopt` cannot write a mixture into ``module`` exactly, or None."""
    if not isinstance(module.router, (TopKRouter, SoftmaxRouter, SwitchRouter)):
        return f"router {type(module.router).__name__} is not top-k, softmax or switch"
    for name in ("shared_expert", "fallback", "output_gate"):
        if getattr(module, name, None) is not None:
            return f"the module has a {name}"
    experts = module.experts
    if isinstance(experts, nn.ModuleList):
        if not all(isinstance(e, MLPExpert) for e in experts):
            return "an expert is not an MLPExpert"
        widths = {tuple(layer.out_features for layer in e.layers) for e in experts}
        activations = {e.activation for e in experts}
    elif isinstance(experts, StackedMLPExperts):
        widths = {tuple(w.shape[-1] for w in experts.weights)}
        activations = {experts.activation}
    else:
        return f"experts of type {type(experts).__name__}"
    if len(widths) > 1:
        return "the experts differ in shape"
    *hidden, out = next(iter(widths))  # the layers' output widths
    if hidden and activations != {"relu"}:
        return "hidden layers with an activation other than relu"
    if hidden and min(hidden) < 2 * out:
        return f"a hidden layer narrower than 2 x {out} outputs"
    return None


@torch.no_grad()
def adopt(module, mixture: LinearMixture) -> None:
    """Write ``mixture`` into ``module`` (module docstring); the router's noise map and
    balancing bias are reset to zero. Raises ``ValueError`` where
    :func:`adoption_blocker` names a reason."""
    reason = adoption_blocker(module)
    if reason is not None:
        raise ValueError(f"cannot adopt a linear mixture: {reason}.")
    router = module.router
    device = router.linear.weight.device
    router.linear.weight.copy_(mixture.gate_weight.to(device))
    router.linear.bias.copy_(mixture.gate_bias.to(device))
    noise = getattr(router, "noise", None)
    if isinstance(noise, nn.Linear):
        noise.weight.zero_()
        noise.bias.zero_()
    router.expert_bias.zero_()
    if hasattr(module, "log_scale"):
        module.log_scale.copy_(mixture.log_scale.to(device))
    experts = module.experts
    if isinstance(experts, StackedMLPExperts):
        _write(list(experts.weights), list(experts.biases), mixture.weight, mixture.bias)
        return
    for e, expert in enumerate(experts):  # nn.Linear stores (out, in): write transposed
        weights = [layer.weight.T.unsqueeze(0) for layer in expert.layers]
        biases = [layer.bias.unsqueeze(0) for layer in expert.layers]
        _write(weights, biases, mixture.weight[e:e + 1], mixture.bias[e:e + 1])


def _write(weights, biases, w: torch.Tensor, b: torch.Tensor) -> None:
    """Layers ``(E, in, out)`` / ``(E, out)`` set to compute ``x @ w + b`` exactly: linear
    directly; with ReLU hidden layers, unit ``2c`` carries ``relu(z_c)`` and ``2c + 1``
    ``relu(-z_c)``, each next layer passes the pair on and the head takes their difference.
    The other hidden units keep their weights in (so they still learn) and get none out to
    the pairs or the head."""
    w, b = w.to(weights[0].device), b.to(weights[0].device)
    out = w.shape[-1]
    if len(weights) == 1:
        weights[0].copy_(w)
        biases[0].copy_(b)
        return
    plus, minus, pairs = slice(0, 2 * out, 2), slice(1, 2 * out, 2), slice(0, 2 * out)
    eye = torch.eye(out, device=weights[0].device)
    last = len(weights) - 1
    for layer, (weight, bias) in enumerate(zip(weights, biases, strict=True)):
        if layer == 0:
            weight[:, :, plus], weight[:, :, minus] = w, -w
            bias[:, plus], bias[:, minus] = b, -b
            continue
        if layer == last:  # the head: z = relu(z) - relu(-z), the other units left out
            weight.zero_()
            bias.zero_()
            weight[:, plus, :], weight[:, minus, :] = eye, -eye
            continue
        weight[:, :, pairs] = 0.0  # a middle layer passes each pair on, reading only it
        bias[:, pairs] = 0.0
        weight[:, plus, plus], weight[:, minus, plus] = eye, -eye  # relu(z)
        weight[:, plus, minus], weight[:, minus, minus] = -eye, eye  # relu(-z)
