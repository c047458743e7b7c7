"""Accuracy of both classifiers on a labelled image folder: ``python -m classifiers evaluate FOLDER``.

FOLDER contains one sub-folder per class, named by the class's ImageNet-1k
WordNet id (``n01440764``) or by its class index (``0`` to ``999``). Images are
read from each class folder and its sub-folders. Both models rank the 1000
ImageNet classes, or with ``--subset`` only the 200 classes of ImageNet-R or
ImageNet-A, and the command reports top-1 and top-5 accuracy, throughput and
the classes each model gets wrong most often.

Images are decoded and preprocessed in background threads, at most one batch
ahead of the models, and only counts are kept, so memory stays bounded for the
50,000 images of the ImageNet validation set.

Exit status: 0 when at least one image was evaluated (undecodable files are
skipped and listed), 1 when no image could be decoded, 2 for usage, folder,
device or weights errors.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import pkgutil
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image
from timm.data import ImageNetInfo
from tqdm import tqdm

from .cli import EXIT_IMAGE_FAILED, EXIT_OK, EXIT_USAGE
from .clip import ClipZeroShot, load_clip
from .devices import DEVICE_CHOICES
from .errors import ClassifierError, ImageError
from .heads import DEFAULT_TEMPLATES, TEMPLATE_SETS, HeadCache, Template
from .images import decode_image
from .logs import configure_logging
from .resnext import ResNeXtClassifier, load_resnext
from .weights import CLIP_VARIANTS, DEFAULT_CLIP, DEFAULT_RESNEXT, RESNEXT_VARIANTS

_logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
SUBSETS = ("imagenet-r", "imagenet-a")
NUM_IMAGENET_CLASSES = 1000
TOP_K = 5
# Classes listed per model under "most_wrong".
MOST_WRONG_CLASSES = 5

# 32 images are about 19 MB of float32 pixels per model, which fits on any device.
DEFAULT_BATCH_SIZE = 32
# Threads that decode and preprocess images while the models run.
DECODE_WORKERS = min(8, os.cpu_count() or 1)
# Without a progress bar (stderr is not a terminal), log progress every this many batches.
PROGRESS_LOG_BATCHES = 50
# Skipped files logged one by one before the rest are only counted.
MAX_SKIPPED_LOGGED = 20


class FolderError(ClassifierError):
    """The evaluation folder is missing, empty, or has a sub-folder that names no ImageNet class."""


# ---------------------------------------------------------------- class labels


@functools.cache
def imagenet_wordnet_ids() -> tuple[str, ...]:
    """Return the WordNet ids of the 1000 ImageNet-1k classes in class-index order, from timm's class list."""
    return tuple(ImageNetInfo("imagenet-1k").label_names())


@functools.cache
def _wordnet_id_to_index() -> dict[str, int]:
    return {wordnet_id: index for index, wordnet_id in enumerate(imagenet_wordnet_ids())}


def _read_timm_class_file(file_name: str) -> list[str]:
    data = pkgutil.get_data("timm.data", f"_info/{file_name}")
    if data is None:
        raise FileNotFoundError(f"timm's class list {file_name} was not found in timm.data/_info")
    return data.decode("utf-8").split()


@functools.cache
def subset_classes(subset: str) -> tuple[int, ...]:
    """Return the ImageNet-1k indices of the 200 classes of ImageNet-R or ImageNet-A, in ascending order.

    Raises:
        ValueError: ``subset`` is not one of ``SUBSETS``.
    """
    if subset not in SUBSETS:
        raise ValueError(f"unknown ImageNet subset {subset!r}; choose one of {', '.join(SUBSETS)}")

    # NOTE: timm 1.0.31 ships these lists as data files (imagenet_r_indices.txt and
    # imagenet_r_synsets.txt, the same for _a_) but no function that reads them.
    stem = subset.replace("-", "_")
    indices = [int(value) for value in _read_timm_class_file(f"{stem}_indices.txt")]
    wordnet_ids = _read_timm_class_file(f"{stem}_synsets.txt")

    # The two files must name the same classes, or a label would silently point at another class.
    all_ids = imagenet_wordnet_ids()
    if len(indices) != len(wordnet_ids) or any(all_ids[i] != w for i, w in zip(indices, wordnet_ids)):
        raise RuntimeError(f"timm's {subset} index and WordNet id lists do not match each other")
    return tuple(sorted(indices))


def class_index(folder_name: str) -> int | None:
    """Return the ImageNet-1k class index a folder name stands for, or ``None`` if it names no class.

    A name is either a WordNet id such as ``n01440764`` (index 0) or a decimal
    index from 0 to 999, with or without leading zeros.
    """
    if folder_name.isascii() and folder_name.isdigit():
        index = int(folder_name)
        return index if index < NUM_IMAGENET_CLASSES else None
    return _wordnet_id_to_index().get(folder_name)


def class_description(index: int) -> dict:
    """Return the index, WordNet id and CLIP class name of an ImageNet-1k class."""
    return {"index": index, "wordnet_id": imagenet_wordnet_ids()[index], "name": IMAGENET_CLASSNAMES[index]}


# ---------------------------------------------------------------- folder listing


@dataclass(frozen=True)
class LabelledImage:
    """An image file with the ImageNet-1k index of the class folder it is in."""

    path: Path
    label: int


@dataclass
class FolderListing:
    """The images chosen for evaluation, sorted by class index and then by path."""

    images: list[LabelledImage]
    num_classes: int
    # Image files found, before --limit.
    num_found: int


def _list_names(names: Sequence[str], max_shown: int = 10) -> str:
    text = ", ".join(repr(name) for name in names[:max_shown])
    return text + (f" and {len(names) - max_shown} more" if len(names) > max_shown else "")


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _image_files(class_folder: Path) -> list[Path]:
    """List the image files under ``class_folder`` and its sub-folders, skipping hidden ones, in sorted order."""
    files = []
    for root, folders, names in os.walk(class_folder):
        folders[:] = [name for name in folders if not _is_hidden(name)]
        files.extend(
            Path(root, name) for name in names if not _is_hidden(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES
        )
    return sorted(files)


def _spread_limit(per_class: list[list[LabelledImage]], limit: int) -> list[list[LabelledImage]]:
    """Keep ``limit`` images in all, taking them round-robin: each class's first image, then each class's second, ..."""
    counts = [0] * len(per_class)
    remaining = limit
    rank = 0
    while remaining > 0:
        progressed = False
        for position, images in enumerate(per_class):
            if remaining == 0:
                break
            if rank < len(images):
                counts[position] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            break
        rank += 1
    return [images[:count] for images, count in zip(per_class, counts)]


def find_images(
    folder: str | os.PathLike, *, classes: Sequence[int] | None = None, limit: int | None = None
) -> FolderListing:
    """List the labelled images of an evaluation folder.

    Args:
        folder: contains one sub-folder per class, named by WordNet id or class index.
            Hidden files and folders and files without an image suffix are ignored.
        classes: the ImageNet-1k indices the models choose among; every class
            folder must be one of them. ``None`` allows all 1000.
        limit: keep at most this many images, spread over the classes round-robin
            in sorted order (the first image of every class, then the second, ...).

    Raises:
        FolderError: the folder is missing or contains no images, a sub-folder
            names no ImageNet class, or a class is not in ``classes``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        problem = "not found" if not folder.exists() else "not a folder"
        raise FolderError(f"{folder}: {problem}; give a folder with one sub-folder per ImageNet class")

    class_folders: list[tuple[int, Path]] = []
    unknown: list[str] = []
    loose_files = 0
    for entry in sorted(folder.iterdir()):
        if _is_hidden(entry.name):
            continue
        if not entry.is_dir():
            loose_files += 1
            continue
        index = class_index(entry.name)
        if index is None:
            unknown.append(entry.name)
        else:
            class_folders.append((index, entry))

    if unknown:
        raise FolderError(
            f"{folder}: {len(unknown)} sub-folder(s) name no ImageNet-1k class: {_list_names(unknown)}; "
            "name each class folder "
            "by its WordNet id (such as n01440764) or its class index (0 to 999), or move the folder out"
        )
    if not class_folders:
        raise FolderError(
            f"{folder}: no class sub-folders found; put the images of each class in a folder named by its "
            "WordNet id or class index"
        )
    if loose_files:
        _logger.warning("%s: ignored %d file(s) outside the class folders, which have no class", folder, loose_files)

    if classes is not None:
        allowed = set(classes)
        outside = [entry.name for index, entry in class_folders if index not in allowed]
        if outside:
            raise FolderError(
                f"{folder}: {len(outside)} class folder(s) are not among the {len(allowed)} classes evaluated: "
                f"{_list_names(outside)}; remove them or evaluate without --subset"
            )

    class_folders.sort(key=lambda pair: (pair[0], pair[1].name))
    seen: dict[int, str] = {}
    for index, entry in class_folders:
        if index in seen:
            _logger.warning(
                "%s: folders %r and %r both name class %d; their images are counted together",
                folder, seen[index], entry.name, index,
            )
        seen.setdefault(index, entry.name)

    per_class = [[LabelledImage(path, index) for path in _image_files(entry)] for index, entry in class_folders]
    num_found = sum(len(images) for images in per_class)
    if num_found == 0:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise FolderError(f"{folder}: the class folders contain no image files (with suffix {suffixes})")
    if limit is not None and limit < num_found:
        per_class = _spread_limit(per_class, limit)

    images = [image for class_images in per_class for image in class_images]
    return FolderListing(images=images, num_classes=len(seen), num_found=num_found)


# ---------------------------------------------------------------- batched classifiers


class BatchClassifier:
    """A classifier that ranks a fixed set of ImageNet-1k classes for batches of images.

    ``transform`` preprocesses one image on the CPU and can run in worker
    threads. ``probabilities`` runs the model on a stacked batch of transforms.

    NOTE: only the CPU path is tested. The CUDA (float16) and MPS paths reuse the
    engine's device transfer and inference but have not been run in this class.
    """

    name: str
    weights_name: str
    device: torch.device
    dtype: torch.dtype

    def __init__(self, classes: Sequence[int] | None):
        self.classes: tuple[int, ...] = tuple(range(NUM_IMAGENET_CLASSES)) if classes is None else tuple(classes)
        if not self.classes:
            raise ValueError("at least one class is required")
        invalid = [index for index in self.classes if not 0 <= index < NUM_IMAGENET_CLASSES]
        if invalid:
            raise ValueError(f"class indices {invalid[:10]} are outside the ImageNet-1k range 0 to 999")
        # Maps a column of the probabilities to its ImageNet-1k index.
        self._class_indices = torch.tensor(self.classes, dtype=torch.long)

    def transform(self, image: Image.Image) -> torch.Tensor:
        """Preprocess one RGB image into a CPU tensor with the model's eval transforms."""
        raise NotImplementedError

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """Return the probabilities over ``self.classes`` of a CPU batch of transforms, on the model's device."""
        raise NotImplementedError

    def pixels(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess images into a CPU batch, as the evaluation's worker threads do."""
        return torch.stack([self.transform(image) for image in images])

    def top_k(self, pixels: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
        """Return the ImageNet-1k indices of the ``k`` most probable classes of each image, on the CPU.

        Returns:
            An int64 tensor of shape ``[batch, min(k, len(self.classes))]``, most probable first.
        """
        columns = self.probabilities(pixels).topk(min(k, len(self.classes)), dim=-1).indices.cpu()
        return self._class_indices[columns]


class ClipBatchClassifier(BatchClassifier):
    """CLIP zero-shot over a set of ImageNet-1k classes, with a head built from their CLIP class names."""

    def __init__(
        self,
        clip: ClipZeroShot,
        classes: Sequence[int] | None = None,
        templates: str | Sequence[Template] = DEFAULT_TEMPLATES,
    ):
        super().__init__(classes)
        self.clip = clip
        self.name, self.weights_name = clip.name, clip.weights_name
        self.device, self.dtype = clip.device, clip.dtype
        # A head over only the chosen classes gives the softmax over those classes.
        self.head = clip.zero_shot_head([IMAGENET_CLASSNAMES[i] for i in self.classes], templates)

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.clip.preprocess(image)

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        # The same device transfer as ClipZeroShot.pixels.
        return self.clip.probabilities(pixels.to(self.device, self.dtype), self.head)


class ResNeXtBatchClassifier(BatchClassifier):
    """ResNeXt over a set of ImageNet-1k classes: the softmax of the logits of those classes only."""

    def __init__(self, resnext: ResNeXtClassifier, classes: Sequence[int] | None = None):
        super().__init__(classes)
        self.resnext = resnext
        self.name, self.weights_name = resnext.name, resnext.weights_name
        self.device, self.dtype = resnext.device, resnext.dtype
        restricted = self.classes != tuple(range(NUM_IMAGENET_CLASSES))
        self._logit_columns = self._class_indices.to(self.device) if restricted else None

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self.resnext.transforms(image)

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        # The same device transfer as ResNeXtClassifier.pixels.
        pixels = pixels.to(self.device, self.dtype, memory_format=torch.channels_last)
        if self._logit_columns is None:
            return self.resnext.probabilities(pixels)
        # The softmax of the chosen logits, not renormalised probabilities, which
        # can all underflow to 0 when the model is sure of a class outside the set.
        with torch.inference_mode():
            logits = self.resnext.model(pixels).float()
            return logits[:, self._logit_columns].softmax(dim=-1)


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class SkippedImage:
    """An image file that could not be decoded, with the decoder's message."""

    path: Path
    error: str


@dataclass
class ModelTally:
    """Running counts of one model's hits and errors."""

    name: str
    weights_name: str
    device: str
    images: int = 0
    top1_correct: int = 0
    top5_correct: int = 0
    # Preprocessed batch to the device, inference and top-k, in seconds.
    model_seconds: float = 0.0
    # Top-1 errors per ImageNet-1k class index.
    errors: Counter[int] = field(default_factory=Counter)

    def add(self, labels: torch.Tensor, top: torch.Tensor) -> None:
        """Count a batch: ``labels`` has shape ``[batch]``, ``top`` the ranked indices, shape ``[batch, k]``."""
        top1_hits = top[:, 0] == labels
        self.images += len(labels)
        self.top1_correct += int(top1_hits.sum())
        self.top5_correct += int((top == labels[:, None]).any(dim=1).sum())
        self.errors.update(labels[~top1_hits].tolist())

    @property
    def top1(self) -> float | None:
        return self.top1_correct / self.images if self.images else None

    @property
    def top5(self) -> float | None:
        return self.top5_correct / self.images if self.images else None

    @property
    def images_per_s(self) -> float | None:
        return self.images / self.model_seconds if self.model_seconds > 0 else None


@dataclass
class Evaluation:
    """The outcome of evaluating classifiers on a list of labelled images."""

    # Keyed like the classifiers passed to evaluate_images.
    tallies: dict[str, ModelTally]
    skipped: list[SkippedImage]
    # Images evaluated per ImageNet-1k class index.
    class_images: Counter[int]
    wall_seconds: float

    @property
    def images(self) -> int:
        return sum(self.class_images.values())

    def most_wrong(self, tally: ModelTally, count: int = MOST_WRONG_CLASSES) -> list[dict]:
        """Return the ``count`` classes with the most top-1 errors, ties broken by class index."""
        ranked = sorted(tally.errors.items(), key=lambda item: (-item[1], item[0]))[:count]
        return [
            class_description(index) | {"errors": errors, "images": self.class_images[index]}
            for index, errors in ranked
        ]


@dataclass
class _DecodedBatch:
    labels: list[int]
    # One CPU batch of transforms per classifier, or None when every image was skipped.
    pixels: list[torch.Tensor] | None
    skipped: list[SkippedImage]


def _decode_and_transform(item: LabelledImage, classifiers: Sequence[BatchClassifier]):
    """Return one transform per classifier, or the SkippedImage if the file does not decode."""
    try:
        image = decode_image(item.path).image
    except ImageError as e:
        return SkippedImage(item.path, str(e))
    return [classifier.transform(image) for classifier in classifiers]


def _collect(items: list[LabelledImage], futures: list[Future], num_classifiers: int) -> _DecodedBatch:
    labels: list[int] = []
    transforms: list[list[torch.Tensor]] = [[] for _ in range(num_classifiers)]
    skipped: list[SkippedImage] = []
    for item, future in zip(items, futures):
        result = future.result()
        if isinstance(result, SkippedImage):
            skipped.append(result)
            continue
        labels.append(item.label)
        for per_classifier, tensor in zip(transforms, result):
            per_classifier.append(tensor)
    pixels = [torch.stack(tensors) for tensors in transforms] if labels else None
    return _DecodedBatch(labels, pixels, skipped)


def _decoded_batches(
    items: Sequence[LabelledImage], classifiers: Sequence[BatchClassifier], batch_size: int, workers: int
) -> Iterator[_DecodedBatch]:
    """Yield the images batch by batch, decoding the next batch in threads while the caller runs the current one."""
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque[tuple[list[LabelledImage], list[Future]]] = deque()
        for start in range(0, len(items), batch_size):
            chunk = list(items[start : start + batch_size])
            pending.append((chunk, [pool.submit(_decode_and_transform, item, classifiers) for item in chunk]))
            # Keeping one batch queued behind the one returned bounds memory to two batches.
            if len(pending) > 1:
                yield _collect(*pending.popleft(), len(classifiers))
        while pending:
            yield _collect(*pending.popleft(), len(classifiers))


def evaluate_images(
    items: Sequence[LabelledImage],
    classifiers: Mapping[str, BatchClassifier],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = DECODE_WORKERS,
    progress: bool = False,
) -> Evaluation:
    """Classify labelled images in batches and count each classifier's top-1 and top-5 hits.

    Only counts and the list of skipped files are kept, never the images or
    probabilities of past batches. Files that fail to decode are skipped and
    listed. Every label must be one of each classifier's classes, as
    :func:`find_images` checks.

    Args:
        classifiers: the classifiers by report key, such as ``{"clip": ..., "resnext": ...}``.
        progress: show a progress bar on stderr when it is a terminal, and log
            a line every ``PROGRESS_LOG_BATCHES`` batches otherwise.
    """
    tallies = {key: ModelTally(c.name, c.weights_name, str(c.device)) for key, c in classifiers.items()}
    skipped: list[SkippedImage] = []
    class_images: Counter[int] = Counter()
    show_bar = progress and sys.stderr.isatty()

    done = 0
    started = time.perf_counter()
    with tqdm(total=len(items), unit="img", desc="Evaluating", file=sys.stderr, disable=not show_bar) as bar:
        batches = _decoded_batches(items, list(classifiers.values()), batch_size, workers)
        for number, batch in enumerate(batches, 1):
            for failure in batch.skipped:
                if len(skipped) < MAX_SKIPPED_LOGGED:
                    _logger.warning("Skipped %s", failure.error)
                elif len(skipped) == MAX_SKIPPED_LOGGED:
                    _logger.warning("More files failed to decode; the report lists them all")
                skipped.append(failure)

            if batch.pixels is not None:
                labels = torch.tensor(batch.labels, dtype=torch.long)
                class_images.update(batch.labels)
                for (key, classifier), pixels in zip(classifiers.items(), batch.pixels):
                    tally = tallies[key]
                    model_started = time.perf_counter()
                    top = classifier.top_k(pixels)  # .cpu() inside waits for the device
                    tally.model_seconds += time.perf_counter() - model_started
                    tally.add(labels, top)

            done += len(batch.labels) + len(batch.skipped)
            bar.update(len(batch.labels) + len(batch.skipped))
            if progress and not show_bar and number % PROGRESS_LOG_BATCHES == 0:
                _logger.info("Evaluated %d of %d images", done, len(items))

    return Evaluation(tallies, skipped, class_images, time.perf_counter() - started)


# ---------------------------------------------------------------- report


def evaluation_report(
    evaluation: Evaluation,
    *,
    folder: str | os.PathLike,
    num_classes: int,
    candidate_classes: int,
    subset: str | None,
    templates: str,
) -> dict:
    """Return the evaluation as a JSON-serialisable dict, with accuracies as fractions from 0 to 1."""
    report = {
        "folder": str(folder),
        "subset": subset,
        "classes": num_classes,
        "candidate_classes": candidate_classes,
        "templates": templates,
        "images": evaluation.images,
        "skipped": [{"path": str(s.path), "error": s.error} for s in evaluation.skipped],
        "wall_seconds": evaluation.wall_seconds,
    }
    for key, tally in evaluation.tallies.items():
        report[key] = {
            "model": tally.name,
            "weights": tally.weights_name,
            "device": tally.device,
            "images": tally.images,
            "top1": tally.top1,
            "top5": tally.top5,
            "images_per_s": tally.images_per_s,
            "model_seconds": tally.model_seconds,
            "most_wrong": evaluation.most_wrong(tally),
        }
    return report


def _percent(fraction: float | None) -> str:
    return "-" if fraction is None else f"{fraction:.2%}"


def format_report(report: dict, model_keys: Sequence[str] = ("clip", "resnext")) -> str:
    """Format a report from :func:`evaluation_report` as a small text table."""
    if report["subset"]:
        candidates = f"the {report['candidate_classes']} classes of {report['subset']}"
    else:
        candidates = f"all {report['candidate_classes']} ImageNet-1k classes"
    skipped = len(report["skipped"])
    lines = [
        f"{report['folder']}: {report['images']} images of {report['classes']} classes evaluated, "
        f"{skipped} file{'' if skipped == 1 else 's'} skipped",
        f"Each model chooses among {candidates}; CLIP averages {report['templates']} prompt template(s) per class.",
        "",
        f"{'Model':<24} {'Weights':<28} {'Top-1':>8} {'Top-5':>8} {'Images':>8} {'Images/s':>9}",
    ]
    for key in model_keys:
        model = report[key]
        speed = "-" if model["images_per_s"] is None else f"{model['images_per_s']:.1f}"
        lines.append(
            f"{model['model']:<24} {model['weights']:<28} {_percent(model['top1']):>8} {_percent(model['top5']):>8} "
            f"{model['images']:>8} {speed:>9}"
        )
    lines += [
        "Images/s counts model time only (batch transfer, inference and top-5), not decoding or preprocessing, "
        "which run in background threads.",
        f"Wall time: {report['wall_seconds']:.1f} s on {report[model_keys[0]]['device']}.",
    ]

    for key in model_keys:
        model = report[key]
        if not model["most_wrong"]:
            continue
        lines += ["", f"{model['model']}: classes with the most top-1 errors (errors / images)"]
        lines += [
            f"  {wrong['wordnet_id']} {wrong['index']:>4} {wrong['name']:<32} {wrong['errors']:>6} / {wrong['images']}"
            for wrong in model["most_wrong"]
        ]

    if report["skipped"]:
        lines += ["", "Skipped files:"]
        lines += [f"  {entry['error']}" for entry in report["skipped"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _reference_accuracies() -> str:
    """Return the published ImageNet-1k top-1 accuracy of every model offered, for the --help epilog."""
    lines = [
        "Published top-1 accuracy on the 50,000 ImageNet-1k validation images, to compare a run on that set with.",
        "CLIP, zero-shot with the 80 templates of the CLIP paper (open_clip's results table; use --templates 80):",
    ]
    lines += [f"  {variant.key:<32} {variant.imagenet_top1:6.2f} %" for variant in CLIP_VARIANTS.values()]
    lines.append("ResNeXt (torchvision's weights metadata):")
    lines += [f"  {variant.key:<32} {variant.imagenet_top1:6.2f} %" for variant in RESNEXT_VARIANTS.values()]
    lines += [
        "",
        "Sort the validation images into one folder per class first. ImageNet-R and ImageNet-A are",
        "distributed with class folders named by WordNet id; evaluate them with --subset.",
    ]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m classifiers evaluate",
        description=(
            "Measure the top-1 and top-5 accuracy of CLIP (zero-shot) and ResNeXt on a folder with one\n"
            "sub-folder per ImageNet class, named by WordNet id (n01440764) or class index (0-999).\n"
            "A sub-folder with any other name is an error (exit 2). Hidden files and folders are ignored.\n"
            "Exit status: 0 when at least one image was evaluated, 1 when no image could be decoded,\n"
            "2 for usage, folder, device or weights errors."
        ),
        epilog=_reference_accuracies(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path, metavar="FOLDER", help="folder of class sub-folders")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of a table")

    parser.add_argument(
        "--templates",
        default=DEFAULT_TEMPLATES,
        choices=list(TEMPLATE_SETS),
        help="CLIP prompt templates averaged per class: 1, open_clip's 7, or the CLIP paper's 80 (default: 1)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="evaluate at most N images, taken round-robin over the classes in sorted order (default: all)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=DEFAULT_BATCH_SIZE,
        metavar="N",
        help=f"images per model forward pass (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--subset",
        choices=SUBSETS,
        help="let both models choose among this subset's 200 classes only; every class folder must be in it",
    )

    parser.add_argument(
        "--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}, or cuda:N (default: auto)"
    )
    parser.add_argument(
        "--clip-model", default=DEFAULT_CLIP, choices=list(CLIP_VARIANTS), help="CLIP model and weights"
    )
    parser.add_argument(
        "--resnext-model", default=DEFAULT_RESNEXT, choices=list(RESNEXT_VARIANTS), help="ResNeXt model and weights"
    )
    parser.add_argument(
        "--clip-checkpoint", type=Path, metavar="FILE", help="local open_clip checkpoint (default: $CLIP_CHECKPOINT)"
    )
    parser.add_argument(
        "--resnext-checkpoint",
        type=Path,
        metavar="FILE",
        help="local torchvision .pth file (default: $RESNEXT_CHECKPOINT)",
    )

    parser.add_argument("-v", "--verbose", action="store_true", help="log loading steps and progress to stderr")
    return parser


def evaluate_command(argv: list[str]) -> int:
    """Run ``python -m classifiers evaluate`` with the arguments after ``evaluate`` and return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    classes = subset_classes(args.subset) if args.subset else None
    try:
        listing = find_images(args.folder, classes=classes, limit=args.limit)
        _logger.info(
            "Evaluating %d of the %d image files in %d classes of %s",
            len(listing.images), listing.num_found, listing.num_classes, args.folder,
        )
        clip = load_clip(args.clip_model, checkpoint=args.clip_checkpoint, device=args.device, head_cache=HeadCache())
        resnext = load_resnext(
            args.resnext_model, checkpoint=args.resnext_checkpoint, device=args.device, progress=True
        )
        classifiers = {
            "clip": ClipBatchClassifier(clip, classes, args.templates),
            "resnext": ResNeXtBatchClassifier(resnext, classes),
        }
    except ClassifierError as e:
        _logger.error("%s", e)
        return EXIT_USAGE

    evaluation = evaluate_images(listing.images, classifiers, batch_size=args.batch_size, progress=True)
    report = evaluation_report(
        evaluation,
        folder=args.folder,
        num_classes=listing.num_classes,
        candidate_classes=len(classifiers["clip"].classes),
        subset=args.subset,
        templates=args.templates,
    )
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(format_report(report))

    if evaluation.images == 0:
        _logger.error("%s: none of the %d image files could be decoded", args.folder, len(listing.images))
        return EXIT_IMAGE_FAILED
    return EXIT_OK
