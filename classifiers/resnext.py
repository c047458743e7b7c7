"""Supervised ImageNet classification with torchvision's ResNeXt models."""

from __future__ import annotations

import logging
import time
import urllib.error
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.models import get_model

from .devices import inference_dtype, select_device, synchronize
from .errors import WeightsError
from .results import Classification, Prediction
from .weights import (
    DEFAULT_RESNEXT,
    RESNEXT_CHECKPOINT_ENV,
    ResNeXtVariant,
    check_checkpoint_file,
    checkpoint_from_env,
    load_state_dict,
    resnext_variant,
    summarize_state_dict_mismatch,
)

_logger = logging.getLogger(__name__)


class ResNeXtClassifier:
    """A loaded ResNeXt with the categories and eval transforms of its weights.

    Safe to share between threads: inference does not change the model.
    """

    def __init__(self, model: torch.nn.Module, *, variant: ResNeXtVariant, device: torch.device, checkpoint=None):
        self.model = model.eval()
        self.variant = variant
        self.device = device
        self.dtype = inference_dtype(device)
        self.checkpoint = checkpoint
        weights = variant.weights
        self.categories: list[str] = list(weights.meta["categories"])
        self.transforms = weights.transforms()

    @property
    def name(self) -> str:
        return self.variant.model_title

    @property
    def weights_name(self) -> str:
        return self.checkpoint.name if self.checkpoint else self.variant.weights_tag

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images with the weights' own eval transforms into a batch on the device."""
        batch = torch.stack([self.transforms(image) for image in images])
        return batch.to(self.device, self.dtype, memory_format=torch.channels_last)

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Return the softmax over the 1000 ImageNet classes for a batch, on the device."""
        with torch.inference_mode():
            return self.model(pixels).float().softmax(dim=-1)

    def classify(self, image: Image.Image, *, top_k: int = 5) -> Classification:
        """Classify one RGB image and return its top-k ImageNet categories with timings."""
        started = time.perf_counter()
        pixels = self.pixels([image])
        synchronize(self.device)
        preprocessed = time.perf_counter()
        top = self.probabilities(pixels)[0].topk(min(top_k, len(self.categories)))
        values, indices = top.values.cpu().tolist(), top.indices.cpu().tolist()
        finished = time.perf_counter()  # .cpu() above waited for the device

        return Classification(
            model=self.name,
            weights=self.weights_name,
            device=str(self.device),
            predictions=[Prediction(self.categories[i], float(p), int(i)) for p, i in zip(values, indices)],
            timings_ms={
                "preprocess": (preprocessed - started) * 1000,
                "inference": (finished - preprocessed) * 1000,
            },
        )

    def warm_up(self) -> None:
        """Run one image through the network so the first real request is not slower."""
        self.probabilities(self.pixels([Image.new("RGB", (224, 224), (127, 127, 127))]))
        synchronize(self.device)


def load_resnext(
    variant: str | ResNeXtVariant = DEFAULT_RESNEXT,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    progress: bool = False,
    warm_up: bool = True,
) -> ResNeXtClassifier:
    """Build a torchvision ResNeXt and load its ImageNet weights.

    Args:
        variant: a key of ``RESNEXT_VARIANTS`` or a ``ResNeXtVariant``.
        checkpoint: the state dict ``.pth`` file torchvision downloads for these
            weights; defaults to ``$RESNEXT_CHECKPOINT``. Without one,
            torchvision downloads the weights into its cache.
        device: see :func:`select_device`.
        progress: show torchvision's download progress bar on stderr.

    Raises:
        WeightsError: the download failed, or the checkpoint is missing,
            corrupt, contains pickled code or belongs to another architecture.
    """
    variant = resnext_variant(variant) if isinstance(variant, str) else variant
    device = select_device(device)
    if checkpoint is None:
        checkpoint = checkpoint_from_env(RESNEXT_CHECKPOINT_ENV)
    weights = variant.weights
    title = variant.title

    started = time.perf_counter()
    model = get_model(variant.architecture, weights=None)
    if checkpoint is not None:
        path = check_checkpoint_file(checkpoint, title, RESNEXT_CHECKPOINT_ENV)
        _logger.info("Loading %s from local checkpoint %s", title, path)
        state_dict = load_state_dict(path, title)
    else:
        path = None
        _logger.info("Loading %s (torchvision downloads it on first use, %d MB)", title, variant.download_mb)
        try:
            state_dict = weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            file_name = weights.url.rsplit("/", 1)[-1]
            raise WeightsError(
                f"{title}: the weights could not be downloaded ({e}); download {weights.url} on a machine "
                f"with internet access and set {RESNEXT_CHECKPOINT_ENV}=/path/to/{file_name}"
            ) from e

    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        source = path if path is not None else weights.url
        raise WeightsError(
            f"{title}: checkpoint {source} does not match the {variant.architecture} architecture "
            f"({summarize_state_dict_mismatch(e)}); use the file torchvision publishes for {variant.weights_name}"
        ) from e

    model = model.to(device, inference_dtype(device), memory_format=torch.channels_last)
    classifier = ResNeXtClassifier(model, variant=variant, device=device, checkpoint=path)
    if warm_up:
        classifier.warm_up()
    _logger.info("Loaded %s on %s in %.1f s", title, device, time.perf_counter() - started)
    return classifier
