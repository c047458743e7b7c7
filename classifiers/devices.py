"""Device choice and the precision used on each device."""

from __future__ import annotations

import logging

import torch

from .errors import DeviceError

_logger = logging.getLogger(__name__)

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def select_device(requested: str | torch.device | None = None) -> torch.device:
    """Return the device to run on: CUDA if present, else Apple MPS, else the CPU.

    Args:
        requested: ``"auto"`` or ``None`` picks as above; ``"cuda"``, ``"cuda:1"``,
            ``"mps"`` or ``"cpu"`` forces that device.

    Raises:
        DeviceError: the requested device is unknown or not available here.
    """
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        device = torch.device(requested)
    except (RuntimeError, ValueError):
        raise DeviceError(f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}") from None

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError("device 'cuda' was requested but PyTorch sees no CUDA GPU; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device {str(device)!r} was requested but only {torch.cuda.device_count()} CUDA GPU(s) exist"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError("device 'mps' was requested but Apple MPS is not available; use --device cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {str(device)!r} is not supported; choose one of {', '.join(DEVICE_CHOICES)}")
    return device


def inference_dtype(device: torch.device) -> torch.dtype:
    """Return the dtype models run in on ``device``: half precision on CUDA, float32 elsewhere.

    Half precision halves memory and uses the tensor cores on CUDA; on the CPU
    and MPS it is slower or less exact, so those keep float32.
    """
    return torch.float16 if device.type == "cuda" else torch.float32


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` so that a clock read afterwards is true."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def describe_device(device: torch.device) -> str:
    """Return a short human-readable name such as ``"cuda (NVIDIA H200)"`` or ``"cpu (2 threads)"``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)
