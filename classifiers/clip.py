"""CLIP zero-shot classification with open_clip, over ImageNet's classes or the user's labels."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import open_clip
import torch
from open_clip.pretrained import get_pretrained_cfg
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image

from .devices import inference_dtype, select_device, synchronize
from .errors import LabelsError, WeightsError
from .heads import (
    DEFAULT_TEMPLATES,
    TEMPLATE_SETS,
    HeadCache,
    ProgressCallback,
    Template,
    build_zero_shot_head,
    head_cache_key,
)
from .results import Classification, Prediction
from .weights import (
    CLIP_CHECKPOINT_ENV,
    DEFAULT_CLIP,
    ClipVariant,
    check_checkpoint_file,
    checkpoint_from_env,
    clip_variant,
    describe_load_failure,
    file_sha256,
    summarize_state_dict_mismatch,
)

_logger = logging.getLogger(__name__)

# Heads kept in memory per model. Each 1000-class head is 2-3 MB; custom
# label sets add one head each, and older ones are still on disk.
MAX_HEADS_IN_MEMORY = 16

def _resolve_templates(templates: str | Sequence[Template]) -> tuple[Template, ...]:
    if isinstance(templates, str):
        try:
            return TEMPLATE_SETS[templates]
        except KeyError:
            raise ValueError(f"unknown template set {templates!r}; choose one of {', '.join(TEMPLATE_SETS)}") from None
    return tuple(templates)


class ClipZeroShot:
    """A loaded CLIP model with its preprocessing, tokenizer and zero-shot heads.

    Safe to share between threads (Streamlit sessions): inference does not
    change the model, and each head is built by one thread while the others wait.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        preprocess,
        tokenizer,
        *,
        variant: ClipVariant,
        device: torch.device,
        checkpoint: Path | None = None,
        head_cache: HeadCache | None = None,
    ):
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.variant = variant
        self.device = device
        self.dtype = inference_dtype(device)
        self.checkpoint = checkpoint
        self.head_cache = head_cache
        self._heads: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._heads_lock = threading.Lock()
        self._weights_id: str | None = None

    @property
    def name(self) -> str:
        return f"CLIP {self.variant.title.split(',')[0]}"

    @property
    def weights_name(self) -> str:
        return self.checkpoint.name if self.checkpoint else self.variant.pretrained

    @property
    def embed_dim(self) -> int:
        return int(self.model.text_projection.shape[-1])

    def weights_id(self) -> str:
        """Return what identifies the weights: the pretrained tag, or the checkpoint's SHA-256."""
        if self._weights_id is None:
            if self.checkpoint is None:
                self._weights_id = f"pretrained:{self.variant.pretrained}"
            else:
                self._weights_id = f"sha256:{file_sha256(self.checkpoint)}"
        return self._weights_id

    def zero_shot_head(
        self,
        classnames: Sequence[str] | None = None,
        templates: str | Sequence[Template] = DEFAULT_TEMPLATES,
        *,
        progress: ProgressCallback | None = None,
    ) -> torch.Tensor:
        """Return the head for ``classnames`` (ImageNet's by default), building or reading it once.

        Returns:
            A float32 tensor of shape ``[embed_dim, len(classnames)]`` on the model's device.
        """
        classnames = tuple(IMAGENET_CLASSNAMES if classnames is None else classnames)
        if not classnames:
            raise LabelsError("no class labels were given")
        templates = _resolve_templates(templates)
        key = head_cache_key(
            architecture=self.variant.architecture,
            weights_id=self.weights_id(),
            classnames=classnames,
            templates=templates,
            dtype=self.dtype,
        )
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()

        with self._heads_lock:
            head = self._heads.get(digest)
            if head is not None:
                self._heads.move_to_end(digest)
                return head

            head = self.head_cache.load(key, embed_dim=self.embed_dim) if self.head_cache else None
            if head is None:
                started = time.perf_counter()
                head = build_zero_shot_head(
                    self.model, self.tokenizer, classnames, templates, device=self.device, progress=progress
                )
                _logger.info(
                    "Built zero-shot head for %s: %d classes x %d templates in %.1f s",
                    self.name, len(classnames), len(templates), time.perf_counter() - started,
                )
                if self.head_cache:
                    self.head_cache.save(key, head)
            head = head.to(self.device)

            self._heads[digest] = head
            while len(self._heads) > MAX_HEADS_IN_MEMORY:
                self._heads.popitem(last=False)
            return head

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images with open_clip's transform into a batch on the model's device."""
        batch = torch.stack([self.preprocess(image) for image in images])
        return batch.to(self.device, self.dtype)

    def probabilities(self, pixels: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
        """Return softmax(logit_scale * cosine similarity) of each image to each class, on the device."""
        with torch.inference_mode():
            features = self.model.encode_image(pixels, normalize=True).float()
            logits = self.model.logit_scale.exp().float() * features @ head
            return logits.softmax(dim=-1)

    def classify(
        self,
        image: Image.Image,
        *,
        top_k: int = 5,
        classnames: Sequence[str] | None = None,
        templates: str | Sequence[Template] = DEFAULT_TEMPLATES,
        progress: ProgressCallback | None = None,
    ) -> Classification:
        """Classify one RGB image zero-shot and return its top-k labels with timings."""
        labels = IMAGENET_CLASSNAMES if classnames is None else tuple(classnames)
        head = self.zero_shot_head(labels, templates, progress=progress)

        started = time.perf_counter()
        pixels = self.pixels([image])
        synchronize(self.device)
        preprocessed = time.perf_counter()
        probabilities = self.probabilities(pixels, head)[0]
        top = probabilities.topk(min(top_k, len(labels)))
        values, indices = top.values.cpu().tolist(), top.indices.cpu().tolist()
        finished = time.perf_counter()  # .cpu() above waited for the device

        return Classification(
            model=self.name,
            weights=self.weights_name,
            device=str(self.device),
            predictions=[Prediction(labels[i], float(p), int(i)) for p, i in zip(values, indices)],
            timings_ms={
                "preprocess": (preprocessed - started) * 1000,
                "inference": (finished - preprocessed) * 1000,
            },
        )

    def warm_up(self) -> None:
        """Run one image through the image tower so the first real request is not slower."""
        blank = Image.new("RGB", (224, 224), (127, 127, 127))
        with torch.inference_mode():
            self.model.encode_image(self.pixels([blank]))
        synchronize(self.device)


def _download_help(variant: ClipVariant) -> str:
    config = get_pretrained_cfg(variant.architecture, variant.pretrained) or {}
    repository = config.get("hf_hub", "").strip("/")
    where = (
        f"open_clip_model.safetensors (or open_clip_pytorch_model.bin) from https://huggingface.co/{repository}"
        if repository
        else config.get("url", "the open_clip checkpoint")
    )
    return f"download {where} on a machine with internet access and set {CLIP_CHECKPOINT_ENV}=/path/to/that/file"


def load_clip(
    variant: str | ClipVariant = DEFAULT_CLIP,
    *,
    checkpoint: str | Path | None = None,
    device: str | torch.device | None = None,
    head_cache: HeadCache | None = None,
    warm_up: bool = True,
) -> ClipZeroShot:
    """Build a CLIP model the way its weights were trained, and load the weights.

    Args:
        variant: a key of ``CLIP_VARIANTS`` or a ``ClipVariant``.
        checkpoint: an open_clip state dict file; defaults to ``$CLIP_CHECKPOINT``.
            Without one, open_clip downloads the weights into its cache.
        device: see :func:`select_device`.
        head_cache: where zero-shot heads are cached on disk; ``None`` keeps them in memory only.

    Raises:
        WeightsError: the download failed, or the checkpoint is missing,
            corrupt, contains pickled code or belongs to another architecture.
    """
    variant = clip_variant(variant) if isinstance(variant, str) else variant
    device = select_device(device)
    if checkpoint is None:
        checkpoint = checkpoint_from_env(CLIP_CHECKPOINT_ENV)
    title = f"CLIP {variant.title}"
    precision = "fp16" if inference_dtype(device) == torch.float16 else "fp32"

    # The preprocessing of the pretrained tag, also for a local file, so both
    # paths build the same model with the same transforms.
    preprocess_config = get_pretrained_cfg(variant.architecture, variant.pretrained) or {}

    started = time.perf_counter()
    if checkpoint is not None:
        path = check_checkpoint_file(checkpoint, title, CLIP_CHECKPOINT_ENV)
        _logger.info("Loading %s from local checkpoint %s", title, path)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                variant.architecture,
                pretrained=str(path),
                device=device,
                precision=precision,
                weights_only=True,
                image_mean=preprocess_config.get("mean"),
                image_std=preprocess_config.get("std"),
                image_interpolation=preprocess_config.get("interpolation"),
                image_resize_mode=preprocess_config.get("resize_mode"),
            )
        except RuntimeError as e:
            if "state_dict" in str(e):
                raise WeightsError(
                    f"{title}: checkpoint {path} does not match the {variant.architecture} architecture "
                    f"({summarize_state_dict_mismatch(e)}); use a checkpoint of that model or pick the model it belongs to"
                ) from e
            raise describe_load_failure(path, title, e) from e
        except Exception as e:  # torch.load raises many unrelated types for a bad file
            raise describe_load_failure(path, title, e) from e
    else:
        path = None
        _logger.info("Loading %s (open_clip downloads it on first use, about %d MB)", title, variant.download_mb)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                variant.architecture, pretrained=variant.pretrained, device=device, precision=precision
            )
        except (RuntimeError, OSError) as e:
            raise WeightsError(f"{title}: the weights could not be downloaded ({e}); {_download_help(variant)}") from e

    classifier = ClipZeroShot(
        model,
        preprocess,
        open_clip.get_tokenizer(variant.architecture),
        variant=variant,
        device=device,
        checkpoint=path,
        head_cache=head_cache,
    )
    if warm_up:
        classifier.warm_up()
    _logger.info("Loaded %s on %s in %.1f s", title, device, time.perf_counter() - started)
    return classifier


__all__ = ["ClipZeroShot", "load_clip"]
