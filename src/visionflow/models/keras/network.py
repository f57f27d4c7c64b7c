"""Models made of layers: the functional graph (`Network(inputs, outputs)`), a stack of layers
(`Stack`, Keras' Sequential) and subclassed models (`call` written by the user); their
summary table and their architecture as JSON-able config.

Each layer is a submodule under its own (unique) name, so a state dict reads
"conv2d.conv.weight", "dense_1.linear.bias": weights load back by layer name.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from ...errors import InputError
from .core import Input, KerasTensor, Layer, Node, in_mode, unique_name
from .layers import LAYERS, TorchModuleWrapper


class Network(nn.Module):
    """A model of Keras layers.  `Network(inputs, outputs)`: the graph between a KerasTensor from
    `Input` and one computed from it (branches and merges allowed; one input, one output).
    `Network()` in a subclass that defines `call(inputs)`: the subclassed model."""

    def __init__(self, inputs: KerasTensor | None = None, outputs: KerasTensor | None = None,
                 name: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        if kwargs:
            raise InputError(f"{type(self).__name__}: unknown argument(s) {', '.join(sorted(kwargs))}")
        self.name = name or unique_name(self._default_name())
        self.input: KerasTensor | None = None
        self.output: KerasTensor | None = None
        self.nodes: list[Node] = []
        self.serving = False  # see `for_serving`
        if inputs is not None or outputs is not None:
            self._set_graph(_single(inputs, "inputs"), _single(outputs, "outputs"))

    def _default_name(self) -> str:
        return "functional" if type(self).call is Network.call else "model"

    # -- the graph -----------------------------------------------------------------------------
    def _set_graph(self, inputs: KerasTensor, outputs: KerasTensor) -> None:
        if not isinstance(inputs, KerasTensor) or not isinstance(outputs, KerasTensor):
            raise InputError("Model(inputs, outputs): both must come from keras.Input and layers called on it")
        order: list[Node] = []
        seen: set[int] = set()

        def visit(tensor: KerasTensor) -> None:
            node = tensor.node
            if node is None:
                if tensor is not inputs:
                    raise InputError(f"Model: the outputs depend on an input that is not `inputs` ({tensor!r})")
                return
            if id(node) in seen:
                return
            for t in node.input_tensors:
                visit(t)
            seen.add(id(node))
            order.append(node)

        visit(outputs)
        self.input, self.output, self.nodes = inputs, outputs, order
        self._node_outputs = self._pool_plan = None
        for node in order:
            existing = self._modules.get(node.layer.name)
            if existing is None:
                try:
                    self.add_module(node.layer.name, node.layer)
                except KeyError:
                    raise InputError(f"layer name {node.layer.name!r} clashes with a Model attribute: rename it") from None
            elif existing is not node.layer:
                raise InputError(f"two layers are named {node.layer.name!r}: layer names must be unique in a model")

    @property
    def layers(self) -> list[nn.Module]:
        if self.nodes:
            unique: dict[int, nn.Module] = {}
            for node in self.nodes:
                unique.setdefault(id(node.layer), node.layer)
            return list(unique.values())
        return [m for m in self.children() if isinstance(m, (Layer, Network))]

    def get_layer(self, name: str | None = None, index: int | None = None) -> nn.Module:
        layers = self.layers
        if index is not None:
            return layers[index]
        for layer in layers:
            if getattr(layer, "name", None) == name:
                return layer
        raise InputError(f"no layer named {name!r} (layers: {', '.join(getattr(l, 'name', '?') for l in layers)})")

    @property
    def built(self) -> bool:
        return bool(self.nodes) or any(True for _ in self.parameters())

    # -- computing -----------------------------------------------------------------------------
    def __call__(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(inputs, KerasTensor):  # a model used as a layer of another
            if self.output is None and isinstance(self, Stack):
                self.build(inputs._shape)
            if self.output is None:
                raise InputError(f"model {self.name!r} is not built: give it an input shape before using it as a layer")
            return KerasTensor(self.output._shape, node=Node(self, inputs))  # type: ignore[arg-type]
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs: Any) -> Any:
        """The forward pass of a subclassed model (override); a graph model runs its nodes."""
        raise InputError(f"{type(self).__name__}: a subclassed model must define call(inputs)")

    def run_graph(self, x: Any) -> Any:
        values: dict[int, Any] = {id(self.input): x}
        deferred, applied = self._pool_first()
        for node in self.nodes:
            args = node.inputs
            value = [values[id(t)] for t in args] if isinstance(args, (list, tuple)) else values[id(args)]
            if id(node) in deferred:
                out = node.layer.linear_part(value)
            elif id(node) in applied:
                out = applied[id(node)](node.layer(value))
            else:
                out = node.layer(value)
            values[id(self._output_of(node))] = out
        return values[id(self.output)]

    def _pool_first(self) -> tuple[set[int], dict[int, Any]]:
        """Where a convolution's activation can run after the max-pooling that follows it.

        max(f(a), f(b)) = f(max(a, b)) for a non-decreasing f, so relu(conv) → max-pool equals
        conv → max-pool → relu, in value and in gradient, on a quarter of the elements (2×2
        pools): the activation and its backward are memory-bound passes over the largest
        tensors of a small convnet.  Only for a convolution whose output feeds that pool alone
        and whose layer is called once in the graph."""
        cached = getattr(self, "_pool_plan", None)
        if cached is not None:
            return cached
        from .layers import MONOTONIC, Conv2D, MaxPooling2D

        consumers: dict[int, list[Node]] = {}
        calls: dict[int, int] = {}
        for node in self.nodes:
            calls[id(node.layer)] = calls.get(id(node.layer), 0) + 1
            for t in node.input_tensors:
                consumers.setdefault(id(t), []).append(node)
        deferred, applied = set(), {}
        for node in self.nodes:
            layer = node.layer
            if type(layer) is not Conv2D or layer.activation_name not in MONOTONIC or calls[id(layer)] != 1:
                continue
            out = self._output_of(node)
            users = consumers.get(id(out), [])
            if out is self.output or len(users) != 1 or type(users[0].layer) is not MaxPooling2D:
                continue
            deferred.add(id(node))
            applied[id(users[0])] = layer.activation
        self._pool_plan = (deferred, applied)
        return deferred, applied

    def _output_of(self, node: Node) -> KerasTensor:
        return self._outputs_by_node()[id(node)]

    def _outputs_by_node(self) -> dict[int, KerasTensor]:
        cached = getattr(self, "_node_outputs", None)
        if cached is None:
            cached = {}
            stack, seen = [self.output], set()
            while stack:
                t = stack.pop()
                if t is None or id(t) in seen or t.node is None:
                    continue
                seen.add(id(t))
                cached[id(t.node)] = t
                stack.extend(t.node.input_tensors)
            self._node_outputs = cached
        return cached

    def forward(self, x: Any, training: bool | None = None) -> Any:
        return in_mode(self, training, self._forward, x)

    def _forward(self, x: Any) -> Any:
        if self.serving:
            x = x.permute(0, 2, 3, 1)  # served images arrive (N, C, H, W); the layers take (N, H, W, C)
        out = self.run_graph(x) if self.nodes else self.call(x)
        if self.serving and self._ends_in_softmax():
            out = torch.log(out.float().clamp_min(1e-30))  # logits whose softmax is the model's probabilities
        return out

    def _ends_in_softmax(self) -> bool:
        last = self.nodes[-1].layer if self.nodes else None
        return getattr(last, "activation_name", None) == "softmax" or type(last).__name__ == "Softmax"

    def for_serving(self) -> "Network":
        """This model as export and serving call it: (N, C, H, W) 0–1 images in, logits out."""
        self.serving = True
        return self

    # -- what it is ----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[Optional[int], ...] | None:
        return self.input.shape if self.input is not None else None

    @property
    def output_shape(self) -> tuple[Optional[int], ...] | None:
        return self.output.shape if self.output is not None else None

    def count_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def summary(self, print_fn: Callable[[str], Any] = print, line_length: int | None = None) -> None:
        """Keras' table: each layer's name and type, output shape, parameter count (and what it
        is connected to, for a graph with branches), then the totals."""
        from .summary import summary_lines

        for line in summary_lines(self, line_length):
            print_fn(line)

    def get_config(self) -> dict[str, Any]:
        """The architecture as JSON-able data (see `network_from_config`)."""
        if not self.nodes:
            raise InputError(f"{type(self).__name__} is a subclassed model: its architecture is its Python code. "
                             "Give it get_config() and register the class (keras.saving.register_keras_serializable)")
        names = {id(self.input): [getattr(self.input, "name", "input_layer"), 0]}
        layers, calls = {}, []
        for i, node in enumerate(self.nodes):
            layer = node.layer
            if layer.name not in layers:
                layers[layer.name] = {"class_name": type(layer).__name__, "config": layer.get_config()}
            args = node.inputs
            refs = [names[id(t)] for t in args] if isinstance(args, (list, tuple)) else names[id(args)]
            calls.append({"layer": layer.name, "inputs": refs, "list": isinstance(args, (list, tuple))})
            names[id(self._output_of(node))] = [layer.name, i + 1]
        return {"name": self.name, "input": {"name": names[id(self.input)][0], "shape": list(self.input._shape),
                                             "dtype": self.input.dtype},
                "layers": list(layers.values()), "calls": calls, "output": names[id(self.output)]}


def _single(value: Any, name: str) -> Any:
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise InputError(f"Model: one {name[:-1]} is supported, not {len(value)}")
        return value[0]
    if isinstance(value, dict):
        raise InputError(f"Model: {name} as a dict is not supported; pass the tensor")
    return value


class Stack(Network):
    """Layers applied one after another (Keras' Sequential).  Built, like Keras, as soon as the
    input shape is known — an `Input` first, `input_shape=` on the first layer, or the first data."""

    def __init__(self, layers: Sequence[Any] | None = None, name: str | None = None, **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)
        self._pending: list[Layer] = []
        self._input_spec: KerasTensor | None = None
        for layer in layers or ():
            self.add(layer)

    def _default_name(self) -> str:
        return "sequential"

    def add(self, layer: Any) -> None:
        """Append a layer (a Keras layer, an `Input`, a model, or any torch.nn.Module)."""
        if isinstance(layer, KerasTensor):
            if self._pending or self._input_spec is not None:
                raise InputError("Sequential: an Input can only come first")
            self._input_spec = layer
            return
        if isinstance(layer, nn.Module) and not isinstance(layer, (Layer, Network)):
            layer = TorchModuleWrapper(layer)
        if not isinstance(layer, (Layer, Network)):
            raise InputError(f"Sequential: {type(layer).__name__} is not a layer")
        if self._input_spec is None and not self._pending and getattr(layer, "input_shape_arg", None):
            self._input_spec = Input(layer.input_shape_arg)
        self._pending.append(layer)
        if self._input_spec is not None:
            self._rebuild()

    def pop(self) -> nn.Module:
        if not self._pending:
            raise InputError("Sequential.pop: there are no layers")
        layer = self._pending.pop()
        delattr(self, layer.name)
        self._node_outputs = self._pool_plan = None
        if self._input_spec is not None:
            self._rebuild()
        return layer

    def _rebuild(self) -> None:
        assert self._input_spec is not None
        tensor = self._input_spec
        for layer in self._pending:
            tensor = layer(tensor)
        self._node_outputs = None
        if self._pending:
            self._set_graph(self._input_spec, tensor)
        else:
            self.input, self.output, self.nodes = self._input_spec, None, []

    def build(self, input_shape: Sequence[Optional[int]]) -> None:
        """Fix the input shape (with or without the leading batch None) and make the weights."""
        shape = tuple(input_shape)
        if shape and shape[0] is None:
            shape = shape[1:]
        self._input_spec = Input(shape)
        self._rebuild()

    def ensure_built(self, x: torch.Tensor) -> None:
        if not self.nodes and self._pending:
            self.build(tuple(x.shape[1:]))

    @property
    def layers(self) -> list[nn.Module]:
        return list(self._pending)

    def forward(self, x: Any, training: bool | None = None) -> Any:
        if not self.nodes and self._pending and isinstance(x, torch.Tensor):
            self.build(tuple(x.shape[1:]))
        return super().forward(x, training)

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "sequential": True,
                  "layers": [{"class_name": type(l).__name__, "config": l.get_config()} for l in self._pending]}
        if self._input_spec is not None:
            config["input"] = {"name": getattr(self._input_spec, "name", "input_layer"),
                               "shape": list(self._input_spec._shape), "dtype": self._input_spec.dtype}
        return config


NETWORK_CLASSES = ("Network", "Stack", "Model", "Sequential", "Functional")


def layer_from_config(entry: Mapping[str, Any], custom_objects: Mapping[str, Any]) -> Layer:
    """A layer from its {"class_name", "config"} entry; Lambda functions and custom classes come
    from `custom_objects` (nothing in a file is ever executed)."""
    class_name = entry["class_name"]
    config = dict(entry["config"])
    if class_name in NETWORK_CLASSES:  # a model used as a layer
        return network_from_config(config, custom_objects)  # type: ignore[return-value]
    cls = custom_objects.get(class_name) or LAYERS.get(class_name)
    if class_name == "Lambda":
        function = custom_objects.get(config["function"])
        if function is None:
            raise InputError(f"layer {config.get('name')!r} is a Lambda of function {config['function']!r}: pass it "
                             f"in custom_objects={{{config['function']!r}: ...}} (functions are never loaded from files)")
        config["function"] = function
    if class_name == "TorchModuleWrapper":
        raise InputError(f"layer {config.get('name')!r} wraps a torch module ({config.get('module')}): rebuild the "
                         "model in Python and use load_weights")
    if cls is None:
        raise InputError(f"unknown layer class {class_name!r}: pass it in custom_objects={{{class_name!r}: ...}} "
                         "or register it with keras.saving.register_keras_serializable")
    from_config = getattr(cls, "from_config", None)
    return from_config(config) if from_config is not None else cls(**config)


def network_from_config(config: Mapping[str, Any], custom_objects: Mapping[str, Any] | None = None,
                        cls: type[Network] | None = None, stack_cls: type[Stack] | None = None) -> Network:
    """Rebuild the architecture `Network.get_config()` described (weights are fresh)."""
    custom = dict(custom_objects or {})
    spec = config.get("input")
    if config.get("sequential"):
        stack = (stack_cls or Stack)(name=config.get("name"))
        if spec is not None:
            stack.add(Input(tuple(spec["shape"]), name=spec.get("name"), dtype=spec.get("dtype", "float32")))
        for entry in config["layers"]:
            stack.add(layer_from_config(entry, custom))
        return stack
    layers = {entry["config"]["name"]: layer_from_config(entry, custom) for entry in config["layers"]}
    inputs = Input(tuple(spec["shape"]), name=spec.get("name"), dtype=spec.get("dtype", "float32"))
    tensors: dict[tuple[str, int], KerasTensor] = {(spec["name"], 0): inputs}
    for i, call in enumerate(config["calls"]):
        refs = call["inputs"]
        args = [tensors[tuple(r)] for r in refs] if call.get("list") else tensors[tuple(refs)]
        tensors[(call["layer"], i + 1)] = layers[call["layer"]](args)
    return (cls or Network)(inputs, tensors[tuple(config["output"])], name=config.get("name"))
