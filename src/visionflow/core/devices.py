"""Devices and numeric precision: which device a run uses and how its arithmetic is done.

Precision names (`--precision`): "fp32" plain float32; "bf16" autocast to bfloat16 (same range
as float32, no loss scaling needed); "fp16" autocast to float16 with dynamic loss scaling
(`torch.amp.GradScaler`: float16's range is too small for small gradients without it);
"auto" is bf16 on a CUDA device that supports it and fp32 everywhere else.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import torch

from ..errors import InputError


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; explicit names are checked to exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise InputError(f"--device {name}: no such CUDA device on this machine")
    if device.type == "mps" and not _mps_available():
        raise InputError("--device mps: MPS is not available on this machine")
    return device


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The dtype autocast runs matrix products in, or None for plain float32."""
    if precision == "fp16":
        return torch.float16
    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AMX or AVX-512 BF16): there bf16 autocast
    trains an LSTM language model ~2.5x faster than float32; elsewhere it is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def autocast_for(device: torch.device, precision: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A factory of the autocast context for `precision` on `device` (a null context for float32)."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler_for(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """Loss scaling for float16 training (None for the other precisions, which need none).

    The scale starts at 2**16, halves after a step whose gradients overflowed (that step is
    skipped) and doubles after 2,000 clean steps: PyTorch's defaults.
    """
    if precision != "fp16":
        return None
    try:
        return torch.amp.GradScaler(device.type)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"--precision fp16 is not supported on {device} ({e}); use bf16 or fp32") from None
