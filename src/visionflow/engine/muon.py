"""Muon: momentum SGD whose update for a weight matrix is (nearly) orthogonalised.

For each "orthogonalized" parameter (a conv filter bank (out, in, kh, kw) read as an (out, in·kh·kw)
matrix, or a 2-D weight) the step is

    buffer ← momentum · buffer + grad
    update ← grad + momentum · buffer   (nesterov; else buffer)
    weight ← weight · sqrt(out) / ‖weight‖   (only where the group asks: `normalize_weights`)
    weight ← weight − lr · NS(update)

where NS runs a few iterations of the quintic Newton–Schulz map X ← aX + (bA + cA²)X, A = XXᵀ, on
the update scaled to Frobenius norm 1.  It drives every singular value towards ~1 (into roughly
[0.7, 1.2] rather than exactly 1: the coefficients favour speed), so each step changes the layer
by the same amount along every direction the gradient spans — which is why a summed or mean loss,
or a loss scale, make no difference to these parameters.  Matrices of one shape are stacked and
iterated together as one batch (one set of matmuls for all of a network's equal conv layers).

Every other parameter gets nesterov SGD with coupled L2 weight decay, exactly as
`torch.optim.SGD(..., nesterov=True)` would (its functional form does the work), so one optimizer
object — one state dict, one checkpoint — covers a whole model.

Group keys (all optional): `orthogonalize` (default: the parameter is 4-D, a conv filter bank),
`momentum`, `nesterov`, `ns_steps` (Newton–Schulz iterations), `normalize_weights`, `weight_decay`
(SGD parameters only; orthogonalised weights are held in scale by `normalize_weights` instead).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Iterable

import torch
from torch.optim.sgd import sgd

#: The quintic's coefficients: the largest slope at 0 (3.4445) that still maps [0, 1] into a band
#: around 1 after a few iterations (Jordan et al., 2024).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_EPS = 1e-7


def newton_schulz(g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximate orthogonalisation of each matrix in `g` ((m, n) or a batch (B, m, n)).

    Returns a tensor of `g`'s shape and `dtype` whose singular vectors are those of `g` and whose
    singular values are all near 1.  Works on the wide side (m ≤ n) so A = XXᵀ is the smaller Gram
    matrix.  bfloat16 is the default: the iteration is self-correcting, and it halves the cost.
    """
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    batched = x.ndim == 3
    if not batched:
        x = x.unsqueeze(0)
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + NS_EPS)  # every singular value ≤ 1
    for _ in range(steps):
        gram = x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b·A + c·A²
        x = torch.baddbmm(x, poly, x, beta=a)                    # a·X + (b·A + c·A²)·X
    if tall:
        x = x.mT
    return x if batched else x.squeeze(0)


class Muon(torch.optim.Optimizer):
    """Orthogonalised momentum for matrix-shaped weights, nesterov SGD for the rest (see module doc).

    `lr` and `weight_decay` are per group as usual; `momentum` (default 0.9), `nesterov` (True),
    `ns_steps` (5) and `normalize_weights` (False) may be set per group too.  `compile` runs the
    Newton–Schulz iteration through torch.compile on CUDA (fused elementwise work, compiled once);
    `ns_dtype` is the iteration's precision.
    """

    def __init__(self, params: Iterable, lr: float = 0.02, momentum: float = 0.9, nesterov: bool = True,
                 weight_decay: float = 0.0, ns_steps: int = 5, normalize_weights: bool = False,
                 compile: bool = False, ns_dtype: torch.dtype = torch.bfloat16) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or ns_steps < 1:
            raise ValueError(f"Muon: lr, momentum and weight_decay must be ≥ 0 and ns_steps ≥ 1 "
                             f"(got {lr}, {momentum}, {weight_decay}, {ns_steps})")
        defaults = {"lr": lr, "momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay,
                    "ns_steps": ns_steps, "normalize_weights": normalize_weights, "orthogonalize": None}
        super().__init__(_split_by_shape(params), defaults)
        self._compile = compile
        self._ns_dtype = ns_dtype
        self._ns: dict[str, Callable[..., torch.Tensor]] = {}

    def _ns_for(self, device: torch.device) -> Callable[..., torch.Tensor]:
        if device.type not in self._ns:
            use_compile = self._compile and device.type == "cuda"
            self._ns[device.type] = torch.compile(newton_schulz, dynamic=False) if use_compile else newton_schulz
        return self._ns[device.type]

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if group["orthogonalize"]:
                self._orthogonal_step(group, params)
            else:
                self._sgd_step(group, params)
        return loss

    def _momentum_buffers(self, params: list[torch.Tensor]) -> list[torch.Tensor | None]:
        return [self.state[p].get("momentum_buffer") for p in params]

    def _sgd_step(self, group: dict, params: list[torch.Tensor]) -> None:
        buffers = self._momentum_buffers(params)
        sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"],
            momentum=group["momentum"], lr=group["lr"], dampening=0.0, nesterov=group["nesterov"],
            maximize=False, foreach=params[0].device.type != "cpu" or None)
        for p, buffer in zip(params, buffers):
            self.state[p]["momentum_buffer"] = buffer

    def _orthogonal_step(self, group: dict, params: list[torch.Tensor]) -> None:
        momentum, grads = group["momentum"], [p.grad for p in params]
        buffers = []
        for p, grad in zip(params, grads):
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            buffers.append(state["momentum_buffer"])
        torch._foreach_mul_(buffers, momentum)
        torch._foreach_add_(buffers, grads)
        updates = torch._foreach_add(grads, buffers, alpha=momentum) if group["nesterov"] else buffers
        if group["normalize_weights"]:
            norms = torch._foreach_norm(params)
            torch._foreach_mul_(params, [len(p) ** 0.5 / (n + NS_EPS) for p, n in zip(params, norms)])
        # one batched iteration per matrix shape
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_shape[(len(p), p[0].numel())].append(i)
        ns = self._ns_for(params[0].device)
        for shape, indices in by_shape.items():
            stacked = torch.stack([updates[i].reshape(shape) for i in indices])
            orthogonal = ns(stacked, group["ns_steps"], self._ns_dtype)
            for i, update in zip(indices, orthogonal.unbind(0)):
                params[i].add_(update.view_as(params[i]).to(params[i].dtype), alpha=-group["lr"])


def _split_by_shape(params: Iterable) -> list[dict]:
    """Param groups where `orthogonalize` is decided: a group that leaves it out is split into its
    conv filter banks (4-D: orthogonalised) and the rest (SGD)."""
    groups = list(params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    out = []
    for group in groups:
        group = dict(group)
        group["params"] = list(group["params"])
        if group.get("orthogonalize") is not None:
            out.append(group)
            continue
        filters = [p for p in group["params"] if p.ndim == 4]
        rest = [p for p in group["params"] if p.ndim != 4]
        out += [{**group, "params": ps, "orthogonalize": flag} for ps, flag in ((filters, True), (rest, False)) if ps]
    return out
