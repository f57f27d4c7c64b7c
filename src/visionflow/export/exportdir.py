"""An export base directory: immutable, integer-numbered versions of one model, ready to serve.

  BASE/
    labels.json          optional version labels for `visionflow serve`, e.g. {"stable": 3}
    3/                   one exported version, written once by `visionflow export`, never changed
      model.onnx         (N, H, W, C) uint8 pixels in → probabilities, classes out
      model.safetensors  the PyTorch weights of the same model (torch runtime, inspection)
      signature.json     the serving contract, see `Signature`
      labels.txt         one class name per line
    .4.k2x9.tmp/         an export in progress: dot-prefixed, so never taken for a version

The layout is TensorFlow Serving's (a model base path holding numbered versions), so the
same habits apply: publish a version by renaming a finished directory into place, roll back
by deleting the newest one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.fsio import read_json
from ..core.typed import from_dict
from ..errors import InputError
from ..models.spec import ModelSpec
from ..preprocessing import Preprocessing

SIGNATURE_FORMAT = 1
VERSION_FILES = ("model.onnx", "model.safetensors", "signature.json", "labels.txt")
VERSION_LABELS_FILE = "labels.json"
INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "classes")
MAX_VERSION = 2**63 - 1  # TF Serving versions are int64
_VERSION_NAME = re.compile(r"[1-9][0-9]{0,18}")
_LABEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of the signature; -1 in `shape` is the (dynamic) batch dimension."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    description: str = ""


@dataclass(frozen=True)
class Signature:
    """`signature.json`: what goes in and out of an exported model, and how it was made.

    The single input `images` is raw (N, H, W, C) uint8 pixels: the ONNX graph casts and
    normalises them with `preprocessing`'s mean and std itself, so a client (or the server)
    only has to decode and resize an image to H×W with C channels — never to know the
    training statistics.  Outputs are `probabilities` (N, K) float32 softmax and `classes`
    (N,) int64 argmax indices into `class_names`.
    """

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocessing: Preprocessing
    model: ModelSpec
    class_names: tuple[str, ...]
    global_step: int
    visionflow_version: str
    onnx: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    format: int = SIGNATURE_FORMAT

    @classmethod
    def for_model(cls, model: ModelSpec, pre: Preprocessing, class_names: tuple[str, ...], global_step: int,
                  visionflow_version: str, onnx: dict[str, Any], verification: dict[str, Any]) -> "Signature":
        k = len(class_names)
        inputs = (TensorSpec(INPUT_NAME, "uint8", (-1, pre.height, pre.width, pre.channels),
                             "raw pixels 0-255, NHWC; the graph normalises them"),)
        outputs = (TensorSpec("probabilities", "float32", (-1, k), "softmax over class_names"),
                   TensorSpec("classes", "int64", (-1,), "index of the most probable class"))
        return cls(inputs, outputs, pre, model, tuple(class_names), global_step, visionflow_version, onnx,
                   verification)

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def output(self, name: str) -> TensorSpec:
        return next(o for o in self.outputs if o.name == name)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> "Signature":
        raw = read_json(path)
        signature = from_dict(cls, raw, str(path))
        signature.check(str(path))
        return signature

    def check(self, where: str) -> None:
        """Refuse a signature this version of visionflow cannot serve faithfully."""
        pre = self.preprocessing
        problems = []
        if self.format != SIGNATURE_FORMAT:
            problems.append(f"format {self.format} is not supported (expected {SIGNATURE_FORMAT})")
        if [i.name for i in self.inputs] != [INPUT_NAME] or self.input.dtype != "uint8":
            problems.append(f"expected one uint8 input named {INPUT_NAME!r}")
        elif tuple(self.input.shape) != (-1, pre.height, pre.width, pre.channels):
            problems.append(f"input shape {list(self.input.shape)} does not match the preprocessing "
                            f"({pre.height}x{pre.width}x{pre.channels})")
        if tuple(o.name for o in self.outputs) != OUTPUT_NAMES:
            problems.append(f"expected outputs {', '.join(OUTPUT_NAMES)}")
        if len(self.class_names) != self.model.num_classes or not self.class_names:
            problems.append(f"{len(self.class_names)} class names for {self.model.num_classes} classes")
        if len(pre.mean) != pre.channels or len(pre.std) != pre.channels or min(pre.std, default=0) <= 0:
            problems.append("preprocessing mean/std do not fit its channels")
        if problems:
            raise InputError(f"{where}: {'; '.join(problems)}")


class ExportBase:
    """The directory of all exported versions of one model (see the module docstring)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def version_dir(self, version: int) -> Path:
        check_version(version)
        return self.path / str(version)

    def versions(self) -> list[int]:
        """Every real directory named as a version, complete or not, in ascending order.

        Names must be canonical positive decimals ("7", not "07" or "+7"); dot-prefixed
        directories (exports in progress), symlinks and files are never versions.
        """
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return []
        except NotADirectoryError:
            raise InputError(f"{self.path}: not a directory") from None
        found = [int(e.name) for e in entries
                 if _VERSION_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False) and int(e.name) <= MAX_VERSION]
        return sorted(found)

    def next_version(self) -> int:
        found = self.versions()
        return found[-1] + 1 if found else 1

    def missing_files(self, version: int) -> list[str]:
        directory = self.version_dir(version)
        return [name for name in VERSION_FILES if not (directory / name).is_file()]

    def fingerprint(self, version: int) -> Fingerprint:
        """(name, size, mtime) of each version file: a change means the directory was rewritten."""
        out = []
        for name in VERSION_FILES:
            try:
                st = (self.version_dir(version) / name).stat()
                out.append((name, st.st_size, st.st_mtime_ns))
            except OSError:
                out.append((name, -1, -1))
        return tuple(out)

    def read_version_labels(self) -> dict[str, int]:
        """`labels.json` ({"stable": 3, ...}); {} when absent.  Raises InputError when malformed."""
        path = self.path / VERSION_LABELS_FILE
        if not path.exists():
            return {}
        raw = read_json(path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: expected an object mapping labels to versions")
        return {check_label(str(k), str(path)): parse_version(v, f"{path}: label {k!r}") for k, v in raw.items()}


def check_version(version: int) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
        raise InputError(f"version {version!r} must be an integer from 1 to {MAX_VERSION}")
    return version


def parse_version(value: Any, where: str) -> int:
    """An int, or a string of digits (TF Serving writes versions as strings in JSON)."""
    if isinstance(value, str) and _VERSION_NAME.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise InputError(f"{where}: {value!r} is not a version (a positive integer)")
    return value


def check_label(label: str, where: str = "version label") -> str:
    if not _LABEL_NAME.fullmatch(label):
        raise InputError(f"{where}: {label!r} is not a valid label (a letter, then letters, digits, _ . -)")
    return label


def check_onnx_model(path: Path) -> None:
    """InputError unless `path` parses and passes onnx.checker's full check (shape inference too)."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError, OSError) as e:
        raise InputError(f"{path}: onnx.checker rejects the export ({str(e).strip().splitlines()[0]})") from None


def onnx_session(path: Path, signature: Signature, threads: int = 0) -> Any:
    """An onnxruntime CPU session of a version's model.onnx, checked (onnx.checker, then its
    input and outputs against `signature`); InputError naming the file when it is not a model
    this signature describes.  `threads`: onnxruntime's intra-op threads (0: its default)."""
    import onnxruntime as ort

    check_onnx_model(path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime's errors have no common base but Exception
        raise InputError(f"{path}: onnxruntime cannot load it ({str(e).strip().splitlines()[0]})") from None
    inputs = session.get_inputs()
    pre = signature.preprocessing
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME or inputs[0].type != "tensor(uint8)":
        raise InputError(f"{path}: expected one uint8 input {INPUT_NAME!r}, found "
                         f"{[(i.name, i.type) for i in inputs]}")
    if list(inputs[0].shape[1:]) != [pre.height, pre.width, pre.channels]:
        raise InputError(f"{path}: input shape {inputs[0].shape} does not match the signature "
                         f"({pre.height}x{pre.width}x{pre.channels})")
    names = {o.name for o in session.get_outputs()}
    if not set(OUTPUT_NAMES) <= names:
        raise InputError(f"{path}: outputs {sorted(names)} lack {', '.join(sorted(set(OUTPUT_NAMES) - names))}")
    return session
