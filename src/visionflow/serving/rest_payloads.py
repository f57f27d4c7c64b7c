"""TensorFlow Serving REST request bodies → (N, H, W, C) uint8 pixel batches.

Following https://www.tensorflow.org/tfx/serving/api_rest, for a model whose one input is
`images`:

  predict, row format      {"instances": [IMAGE, ...]}      reply {"predictions": [...]}
  predict, columnar        {"inputs": BATCH}                reply {"outputs": {...}}
  classify                 {"examples": [{"images": IMAGE}, ...], "context": {...}}

  IMAGE   {"b64": "<base64 PNG/JPEG/…>"}, pixels as nested lists (H×W, H×W×C or flat),
          or either wrapped as {"images": IMAGE}
  BATCH   nested lists [N, H, W(, C)] of pixels, a list of IMAGEs, or {"images": BATCH}

Every malformed body is a `RequestError` 400 naming the offending part; nothing here raises
anything else, whatever JSON it is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from ..export.exportdir import INPUT_NAME
from ..preprocessing import Preprocessing
from .errors import bad_request
from .images import b64_bytes, decode_image, image_batch, numbers_array, one_image

SIGNATURE_NAMES = ("", "serving_default")


@dataclass(frozen=True)
class PredictRequest:
    """A parsed predict body: the images, and whether the reply is columnar (`outputs`)."""

    images: np.ndarray
    columnar: bool


def parse_json(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise bad_request(f"request body is not valid JSON ({e})") from None
    if not isinstance(payload, dict):
        raise bad_request("request body must be a JSON object")
    return payload


def parse_predict(payload: dict[str, Any], pre: Preprocessing) -> PredictRequest:
    _check_signature_name(payload)
    unknown = set(payload) - {"signature_name", "instances", "inputs"}
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(sorted(unknown))} (expected \"instances\" or \"inputs\")")
    if ("instances" in payload) == ("inputs" in payload):
        raise bad_request("give exactly one of \"instances\" (row format) or \"inputs\" (columnar format)")
    if "instances" in payload:
        return PredictRequest(_instances(payload["instances"], pre), columnar=False)
    return PredictRequest(_batch(_unwrap_named(payload["inputs"], "inputs"), pre, "inputs"), columnar=True)


def parse_classify(payload: dict[str, Any], pre: Preprocessing) -> np.ndarray:
    _check_signature_name(payload)
    unknown = set(payload) - {"signature_name", "examples", "context"}
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(sorted(unknown))} (expected \"examples\")")
    examples, context = payload.get("examples"), payload.get("context", {})
    if not isinstance(examples, list) or not examples:
        raise bad_request("\"examples\" must be a non-empty list of objects")
    if not isinstance(context, dict):
        raise bad_request("\"context\" must be an object")
    images = []
    for i, example in enumerate(examples):
        where = f"examples[{i}]"
        if not isinstance(example, dict):
            raise bad_request(f"{where}: must be an object with an {INPUT_NAME!r} feature")
        features = {**context, **example}
        if INPUT_NAME not in features:
            raise bad_request(f"{where}: has no {INPUT_NAME!r} feature")
        value = features[INPUT_NAME]
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
            value = value[0]  # a tf.Example feature is a list of values
        images.append(_image(value, pre, f"{where}.{INPUT_NAME}"))
    return np.concatenate(images)


def _instances(instances: Any, pre: Preprocessing) -> np.ndarray:
    if not isinstance(instances, list) or not instances:
        raise bad_request("\"instances\" must be a non-empty list (one image per instance)")
    if all(isinstance(x, list) for x in instances):  # all pixel arrays: convert in one go
        array = numbers_array(instances, "instances")
        return image_batch(array, pre, "instances")
    return np.concatenate([_image(x, pre, f"instances[{i}]") for i, x in enumerate(instances)])


def _batch(value: Any, pre: Preprocessing, where: str) -> np.ndarray:
    if isinstance(value, dict):
        return _image(value, pre, where)
    if not isinstance(value, list) or not value:
        raise bad_request(f"{where}: must be a non-empty batch of images")
    if any(isinstance(x, dict) for x in value):
        return np.concatenate([_image(x, pre, f"{where}[{i}]") for i, x in enumerate(value)])
    return image_batch(numbers_array(value, where), pre, where)


def _image(value: Any, pre: Preprocessing, where: str) -> np.ndarray:
    """One IMAGE value → (1, H, W, C) uint8."""
    value = _unwrap_named(value, where)
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise bad_request(f"{where}: an encoded image is {{\"b64\": \"...\"}}, got keys {sorted(value)}")
        return decode_image(b64_bytes(value["b64"], where), pre, where)
    if isinstance(value, list):
        return one_image(numbers_array(value, where), pre, where)
    raise bad_request(f"{where}: expected an image ({{\"b64\": ...}} or nested lists of pixels), "
                      f"got {type(value).__name__}")


def _unwrap_named(value: Any, where: str) -> Any:
    """{"images": X} → X (the named-input form); other names are not inputs of this model."""
    if isinstance(value, dict) and "b64" not in value:
        if set(value) != {INPUT_NAME}:
            raise bad_request(f"{where}: unknown input(s) {', '.join(sorted(map(str, value))) or '(none)'} "
                              f"(the model's input is {INPUT_NAME!r})")
        return value[INPUT_NAME]
    return value


def _check_signature_name(payload: dict[str, Any]) -> None:
    name = payload.get("signature_name", "")
    if name not in SIGNATURE_NAMES:
        raise bad_request(f"unknown signature_name {name!r} (this model has \"serving_default\")")
