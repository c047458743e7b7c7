"""Model weights: the variants offered in the app, and local checkpoint files.

By default open_clip and torchvision download weights into their usual caches
(``~/.cache/huggingface`` and ``~/.cache/torch``). Offline users point the
environment variables below, or the CLI flags, at checkpoint files instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.models import get_model_weights

from .errors import WeightsError

_logger = logging.getLogger(__name__)

CLIP_CHECKPOINT_ENV = "CLIP_CHECKPOINT"
RESNEXT_CHECKPOINT_ENV = "RESNEXT_CHECKPOINT"


@dataclass(frozen=True)
class ClipVariant:
    """A CLIP model offered in the app: an open_clip config and the pretrained tag of its weights.

    ``architecture`` is the open_clip config the weights were trained with: OpenAI's
    models used QuickGELU, so they are built from the ``-quickgelu`` configs.
    """

    key: str
    architecture: str
    pretrained: str
    title: str
    # fp32 checkpoint size, estimated as 4 bytes per parameter.
    download_mb: int
    # Zero-shot ImageNet-1k top-1 (%) from open_clip's published results table
    # (docs/openclip_classification_results.csv in the open_clip repository).
    imagenet_top1: float

    @property
    def weights_name(self) -> str:
        return self.pretrained


@dataclass(frozen=True)
class ResNeXtVariant:
    """A torchvision ResNeXt builder with one of its ImageNet weights."""

    key: str
    architecture: str
    weights_tag: str

    @property
    def weights(self):
        return get_model_weights(self.architecture)[self.weights_tag]

    @property
    def weights_name(self) -> str:
        return str(self.weights)

    @property
    def model_title(self) -> str:
        """The architecture as papers write it, such as ``"ResNeXt-50 32x4d"``."""
        depth, cardinality_width = self.architecture.removeprefix("resnext").split("_")
        return f"ResNeXt-{depth} {cardinality_width}"

    @property
    def title(self) -> str:
        return f"{self.model_title}, {self.weights_tag.removeprefix('IMAGENET1K_')}"

    @property
    def download_mb(self) -> int:
        return round(self.weights.meta["_file_size"])

    @property
    def imagenet_top1(self) -> float:
        return self.weights.meta["_metrics"]["ImageNet-1K"]["acc@1"]


CLIP_VARIANTS: dict[str, ClipVariant] = {
    v.key: v
    for v in (
        ClipVariant("ViT-B-32/openai", "ViT-B-32-quickgelu", "openai", "ViT-B/32, OpenAI", 605, 63.32),
        ClipVariant("RN50/openai", "RN50-quickgelu", "openai", "RN50, OpenAI", 408, 59.82),
        ClipVariant("ViT-B-16/openai", "ViT-B-16-quickgelu", "openai", "ViT-B/16, OpenAI", 598, 68.34),
        ClipVariant("ViT-L-14/openai", "ViT-L-14-quickgelu", "openai", "ViT-L/14, OpenAI", 1710, 75.54),
        ClipVariant(
            "ViT-B-32/laion2b_s34b_b79k", "ViT-B-32", "laion2b_s34b_b79k", "ViT-B/32, LAION-2B", 605, 66.56
        ),
    )
}
DEFAULT_CLIP = "ViT-B-32/openai"

RESNEXT_VARIANTS: dict[str, ResNeXtVariant] = {
    v.key: v
    for v in (
        ResNeXtVariant("resnext50_32x4d/IMAGENET1K_V2", "resnext50_32x4d", "IMAGENET1K_V2"),
        ResNeXtVariant("resnext50_32x4d/IMAGENET1K_V1", "resnext50_32x4d", "IMAGENET1K_V1"),
        ResNeXtVariant("resnext101_32x8d/IMAGENET1K_V2", "resnext101_32x8d", "IMAGENET1K_V2"),
        ResNeXtVariant("resnext101_32x8d/IMAGENET1K_V1", "resnext101_32x8d", "IMAGENET1K_V1"),
        ResNeXtVariant("resnext101_64x4d/IMAGENET1K_V1", "resnext101_64x4d", "IMAGENET1K_V1"),
    )
}
DEFAULT_RESNEXT = "resnext50_32x4d/IMAGENET1K_V2"


def clip_variant(key: str) -> ClipVariant:
    """Return the CLIP variant named ``key``, such as ``"ViT-B-32/openai"``."""
    try:
        return CLIP_VARIANTS[key]
    except KeyError:
        raise WeightsError(f"unknown CLIP model {key!r}; choose one of {', '.join(CLIP_VARIANTS)}") from None


def resnext_variant(key: str) -> ResNeXtVariant:
    """Return the ResNeXt variant named ``key``, such as ``"resnext50_32x4d/IMAGENET1K_V2"``."""
    try:
        return RESNEXT_VARIANTS[key]
    except KeyError:
        raise WeightsError(f"unknown ResNeXt model {key!r}; choose one of {', '.join(RESNEXT_VARIANTS)}") from None


def checkpoint_from_env(variable: str) -> Path | None:
    """Return the checkpoint path set in environment variable ``variable``, or ``None`` if unset or empty."""
    value = os.environ.get(variable, "").strip()
    return Path(value).expanduser() if value else None


def check_checkpoint_file(path: str | os.PathLike, model_title: str, variable: str) -> Path:
    """Return ``path`` as a ``Path`` after checking that it is a readable, non-empty file.

    Raises:
        WeightsError: naming the file, the model it was meant for and the variable to fix.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{model_title}: checkpoint file {path} not found; fix {variable} or the matching CLI flag")
    if not path.is_file():
        raise WeightsError(f"{model_title}: checkpoint {path} is not a file; point {variable} at the file itself")
    if path.stat().st_size == 0:
        raise WeightsError(f"{model_title}: checkpoint file {path} is empty (0 bytes); download it again")
    return path


def describe_load_failure(path: Path, model_title: str, error: BaseException) -> WeightsError:
    """Turn an exception from ``torch.load`` into a ``WeightsError`` that names the file and the cause."""
    if isinstance(error, pickle.UnpicklingError) and "weights_only" in str(error).lower():
        reason = (
            "it contains pickled Python objects other than tensors, which are refused because "
            "unpickling them could run code (the file is loaded with weights_only=True)"
        )
    elif isinstance(error, (EOFError, zipfile.BadZipFile)) or "zip archive" in str(error) or "truncated" in str(error):
        reason = "the file is truncated or corrupt; download it again"
    elif isinstance(error, pickle.UnpicklingError):
        reason = f"it is not a PyTorch checkpoint or it is corrupt ({error})"
    else:
        reason = f"{type(error).__name__}: {error}"
    return WeightsError(f"{model_title}: cannot load checkpoint {path}: {reason}")


def load_state_dict(path: Path, model_title: str) -> dict[str, torch.Tensor]:
    """Load a state dict onto the CPU with ``weights_only=True``, accepting a ``{"state_dict": ...}`` wrapper.

    Raises:
        WeightsError: the file is corrupt, contains pickled code, or contains no state dict.
    """
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many unrelated types for a bad file
        raise describe_load_failure(path, model_title, e) from e

    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
        checkpoint = checkpoint["state_dict"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise WeightsError(f"{model_title}: checkpoint {path} does not contain a state dict of tensors")
    return checkpoint


def summarize_state_dict_mismatch(error: RuntimeError) -> str:
    """Summarise PyTorch's long ``load_state_dict`` error as counts with one example each."""
    parts = []
    for line in str(error).splitlines():
        line = line.strip()
        for heading, noun in (("Missing key(s) in state_dict:", "missing"), ("Unexpected key(s) in state_dict:", "unexpected")):
            if line.startswith(heading):
                keys = re.findall(r'"([^"]+)"', line)
                example = f", such as {keys[0]!r}" if keys else ""
                parts.append(f"{len(keys)} {noun} keys{example}")
    mismatches = re.findall(r"size mismatch for ([^:]+):", str(error))
    if mismatches:
        parts.append(f"{len(mismatches)} tensors of the wrong shape, such as {mismatches[0]!r}")
    return "; ".join(parts) or str(error).splitlines()[0]


_digest_lock = threading.Lock()
_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a file, remembered per (path, size, modification time)."""
    stat = os.stat(path)
    key = (os.path.realpath(path), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if key in _digests:
            return _digests[key]

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _digest_lock:
        _digests[key] = value
    return value
