"""Custom operations whose gradient the user writes: `custom_op(forward, gradient)`.

The tutorials define an op from NumPy code (`np_sigmoid`) and register a hand-written gradient
for it (`tf_sigmoid_gradient`).  Here the op is a `torch.autograd.Function`:

    forward(*arrays) -> array                      NumPy in, NumPy out, outside autograd
    gradient(*inputs, output, grad_output) -> one gradient per input (torch tensors; None for
                                                   an input that needs none)

`op(*tensors)` returns a tensor of the first input's dtype and device (CPU or CUDA; the NumPy
part runs on the CPU), differentiable through `gradient`.  A gradient of a broadcast input (a
scalar `k` beside a tensor `x`) may be returned at the output's shape: it is summed to the
input's shape, as broadcasting requires.  NumPy is deterministic, so `--deterministic` holds.

Export: the forward is NumPy code outside any graph, so a model using such an op cannot be
traced to ONNX; exporting raises CustomOpNotExportable naming the op (replace it by torch
operations — as in the README's example — to export).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor

from .errors import InputError


class CustomOpNotExportable(InputError):
    """A model being exported or compiled calls a NumPy custom op."""


def _not_exportable(name: str) -> CustomOpNotExportable:
    return CustomOpNotExportable(f"custom op {name!r} runs NumPy code outside the graph: a model using it cannot be "
                                 "exported or compiled (write it with torch operations to export)")


def _reduce_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sum a broadcast gradient back to `shape`."""
    if grad.shape == shape:
        return grad
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and grad.shape[i] != 1:
            grad = grad.sum(i, keepdim=True)
    return grad.reshape(shape)


def custom_op(forward: Callable[..., Any], gradient: Callable[..., Any], name: str | None = None) -> Callable[..., torch.Tensor]:
    """A differentiable op from a NumPy `forward` and a torch `gradient` (see the module docstring)."""
    op_name = name or getattr(forward, "__name__", "custom_op")

    class Op(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, *inputs: torch.Tensor) -> torch.Tensor:
            if any(isinstance(t, FakeTensor) for t in inputs):  # traced by torch.export / the ONNX exporter
                raise _not_exportable(op_name)
            arrays = [t.detach().cpu().numpy() for t in inputs]
            result = np.asarray(forward(*arrays))
            output = torch.from_numpy(np.ascontiguousarray(result)).to(device=inputs[0].device, dtype=inputs[0].dtype)
            ctx.save_for_backward(*inputs, output)
            return output

        @staticmethod
        def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
            *inputs, output = ctx.saved_tensors
            grads = gradient(*inputs, output, grad_output)
            if not isinstance(grads, (tuple, list)):
                grads = (grads,)
            if len(grads) != len(inputs):
                raise ValueError(f"custom op {op_name!r}: its gradient returned {len(grads)} values for "
                                 f"{len(inputs)} inputs")
            return tuple(None if g is None else _reduce_to(torch.as_tensor(g, dtype=x.dtype, device=x.device), x.shape)
                         for g, x in zip(grads, inputs))

    Op.__name__ = Op.__qualname__ = f"CustomOp_{op_name}"

    def op(*tensors: torch.Tensor) -> torch.Tensor:
        if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing():
            raise _not_exportable(op_name)
        return Op.apply(*tensors)

    op.__name__ = op_name
    op.function = Op  # type: ignore[attr-defined]
    return op
