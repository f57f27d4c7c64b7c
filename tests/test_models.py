import pytest
import torch

from visionflow.errors import InputError
from visionflow.models import ModelSpec, build_model, model_names, register_model


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("name, shape, params", [
    ("mlp", (1, 28, 28), 784 * 128 + 128 + 128 * 32 + 32 + 32 * 10 + 10),
    ("cnn", (1, 28, 28), (25 * 32 + 32) + (25 * 32 * 64 + 64) + (7 * 7 * 64 * 1024 + 1024) + (1024 * 10 + 10)),
    ("cnn", (1, 8, 8), (25 * 32 + 32) + (25 * 32 * 64 + 64) + (2 * 2 * 64 * 1024 + 1024) + (1024 * 10 + 10)),
    ("cnn", (3, 32, 32), (25 * 3 * 32 + 32) + (25 * 32 * 64 + 64) + (8 * 8 * 64 * 1024 + 1024) + (1024 * 10 + 10)),
])
def test_tutorial_architectures(name, shape, params):
    model = build_model(ModelSpec(name, 10, shape))
    assert n_params(model) == params
    assert model(torch.randn(3, *shape)).shape == (3, 10)


def test_cnn_dropout_only_in_training():
    torch.manual_seed(0)
    model = build_model(ModelSpec("cnn", 10, (1, 28, 28)))
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_pool_then_relu_equals_relu_then_pool():
    x = torch.randn(2, 3, 8, 8)
    a = torch.relu(torch.nn.functional.max_pool2d(x, 2))
    b = torch.nn.functional.max_pool2d(torch.relu(x), 2)
    assert torch.equal(a, b)


def test_registry_and_errors():
    @register_model("tiny-test")
    def tiny(num_classes, input_shape):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[1] * input_shape[2], num_classes))

    assert "tiny-test" in model_names()
    assert build_model(ModelSpec("tiny-test", 3, (1, 4, 4)))(torch.randn(2, 1, 4, 4)).shape == (2, 3)
    with pytest.raises(InputError, match="unknown model 'nope'"):
        build_model(ModelSpec("nope", 10, (1, 28, 28)))
    with pytest.raises(InputError, match="bad options"):
        build_model(ModelSpec("cnn", 10, (1, 28, 28), {"width": 3}))
