"""Custom operations with hand-written gradients (visionflow.ops): the seed's parametrised sigmoid
as NumPy forward + torch gradient, checked by gradcheck, against autograd on the torch version,
inside a model that trains, and refused by the ONNX exporter by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from visionflow.ops import custom_op


def np_sigmoid(x, k):
    return 1.0 / (1.0 + np.exp(-k * x))


def sigmoid_gradient(x, k, y, grad):
    dy = y * (1 - y)
    return grad * k * dy, grad * x * dy  # d/dx, d/dk (summed to k's shape by the op)


sigmoid = custom_op(np_sigmoid, sigmoid_gradient)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gradcheck_and_autograd_agree(dtype) -> None:
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=dtype, requires_grad=True)
    k = torch.tensor(1.7, dtype=dtype, requires_grad=True)
    if dtype == torch.float64:
        assert torch.autograd.gradcheck(sigmoid, (x, k))
    y = sigmoid(x, k)
    assert y.dtype == dtype
    gx, gk = torch.autograd.grad((y * torch.arange(15, dtype=dtype).view(5, 3)).sum(), (x, k))
    ref = torch.sigmoid(k * x)
    rx, rk = torch.autograd.grad((ref * torch.arange(15, dtype=dtype).view(5, 3)).sum(), (x, k))
    torch.testing.assert_close(y, ref.detach())
    torch.testing.assert_close(gx, rx)
    torch.testing.assert_close(gk, rk)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(4, 2)
        self.k = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        return self.linear(sigmoid(x, self.k))


def test_a_model_with_the_op_trains_and_is_refused_by_export(tmp_path) -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    net = Net()
    optimizer = torch.optim.Adam(net.parameters(), 0.05)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(net(x), y)
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first and net.k.grad is not None and net.k.item() != 1.0
    net.eval()
    with pytest.raises(Exception, match="custom op 'np_sigmoid'"):
        torch.onnx.export(net, (x[:2],), str(tmp_path / "m.onnx"), dynamo=True)


def test_a_gradient_of_the_wrong_arity_is_named() -> None:
    bad = custom_op(np_sigmoid, lambda x, k, y, g: g, name="bad_sigmoid")
    with pytest.raises(ValueError, match="bad_sigmoid.*1 values for 2 inputs"):
        bad(torch.randn(3, requires_grad=True), torch.tensor(1.0)).sum().backward()
