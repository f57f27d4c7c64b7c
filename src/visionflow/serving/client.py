"""`visionflow predict --server URL --model-name NAME INPUT...`: local inputs, remote model.

Reads the inputs exactly as local `predict` does (images resized to the model's size, .npy
batches in any accepted layout) using the preprocessing the server reports in its metadata,
sends them to TF Serving's `:predict` in chunks, and returns the same `Prediction`s, so the
output is the same as with `--model-dir`.  Standard library HTTP only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Sequence

import numpy as np
import torch

from ..core.typed import from_dict
from ..errors import InputError
from ..infer.predict import Prediction, read_inputs, to_predictions
from ..preprocessing import Preprocessing

CHUNK = 256  # images per request: bounded bodies, whatever the size of a .npy batch
TIMEOUT_S = 60


def predict_remote(server: str, model_name: str, inputs: Sequence[str]) -> tuple[list[Prediction], list[str]]:
    """Predictions for `inputs` from the server, and the source name of each."""
    root = _root(server)
    model = f"{root}/v1/models/{urllib.parse.quote(model_name, safe='')}"
    info = _call(f"{model}/metadata")
    try:
        summary = info["metadata"]["visionflow_signature"]
        pre = from_dict(Preprocessing, summary["preprocessing"], f"{model}/metadata")
        class_names = summary["class_names"]
    except (KeyError, TypeError) as e:
        raise InputError(f"{model}/metadata: not a visionflow server's metadata (missing {e})") from None
    batch, sources = read_inputs(inputs, pre)
    rows = []
    for start in range(0, len(batch), CHUNK):
        reply = _call(f"{model}:predict", {"inputs": {"images": batch[start : start + CHUNK].tolist()}})
        rows.append(np.asarray(reply["outputs"]["probabilities"], dtype=np.float32))
    return to_predictions(torch.from_numpy(np.concatenate(rows)), sources, class_names), sources


def _root(server: str) -> str:
    url = server if "://" in server else f"http://{server}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InputError(f"--server {server!r}: expected a URL such as http://127.0.0.1:8501")
    return url.rstrip("/")


def _call(url: str, payload: Any | None = None) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as e:
        raise InputError(f"{url}: {e.code} {_error_text(e)}") from None
    except (urllib.error.URLError, OSError) as e:
        raise InputError(f"{url}: cannot reach the server ({getattr(e, 'reason', e)})") from None
    except json.JSONDecodeError:
        raise InputError(f"{url}: the reply is not JSON") from None


def _error_text(error: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(error.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return error.reason
