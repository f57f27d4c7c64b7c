import json

import pytest
from hypothesis import given, settings, strategies as st

from visionflow.engine.config import RunConfig, TrainConfig
from visionflow.errors import InputError
from visionflow.models import ModelSpec
from visionflow.preprocessing import Preprocessing

RUN = RunConfig(TrainConfig(model="cnn", dataset="mnist", steps=100, lr=0.01, dropout=0.3),
                ModelSpec("cnn", 10, (1, 28, 28), {"dropout": 0.3}),
                Preprocessing(1, 28, 28, (0.13,), (0.31,)), tuple("0123456789"))


def test_roundtrip_is_exact():
    again = RunConfig.from_json(RUN.to_json())
    assert again == RUN and isinstance(again.model.input_shape, tuple) and isinstance(again.train.lr, float)


@pytest.mark.parametrize("path, value, problem", [
    (("train", "lr"), "fast", "field 'lr': expected float, got str"),
    (("train", "steps"), True, "field 'steps': expected int, got bool"),
    (("model", "input_shape"), [1, 28], "expected 3 items, got 2"),
    (("train", "colour"), 3, "unknown field(s) colour in TrainConfig"),
    (("format",), 99, "format 99 is not supported"),
])
def test_bad_fields_are_named(path, value, problem):
    raw = json.loads(RUN.to_json())
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        RunConfig.from_json(json.dumps(raw), "dir/config.json")


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=12))
def test_any_json_loads_or_fails_with_input_error(value):
    try:
        RunConfig.from_json(json.dumps(value), "c.json")
    except InputError as e:
        assert str(e).startswith("c.json")


@pytest.mark.parametrize("field, value, message", [
    ("batch_size", 0, "--batch-size must be at least 1"),
    ("optimizer", "rmsprop", "--optimizer must be one of"),
    ("warmup", 1.5, "--warmup must be in [0, 1)"),
])
def test_validate(field, value, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace(")", r"\)")):
        TrainConfig(**{field: value}).validate()
