"""Speed benchmark of the engine on one device: ``python -m classifiers.benchmark``.

One run measures:

* warm top-5 classification of one sample image over the 1000 ImageNet classes
  by each classifier's ``classify()``, with the zero-shot head already built;
* building the 1-template zero-shot head the padded way (open_clip's
  ``build_zero_shot_classifier``, which encodes 77-token ids) and the trimmed
  way (``classifiers.heads.build_zero_shot_head``, which also encodes the
  template's opening tokens once per batch);
* the per-image cost of a naive app that encodes the 1000 prompts again for every image;
* each model's forward GFLOP/s, compared with an fp32 2048x2048 matmul on the same device;
* decoding and preprocessing a 24-megapixel JPEG with and without JPEG draft decoding.

Each time is the median of repeated runs after warm-up runs. Nothing is
downloaded: without checkpoint files the benchmark writes random weights of the
real architectures, which run the same operations on tensors of the same shapes
as trained weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import open_clip
import torch
import torchvision
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .clip import ClipZeroShot, load_clip
from .devices import DEVICE_CHOICES, describe_device, select_device, synchronize
from .errors import ClassifierError
from .heads import CPU_TEXT_BATCH_SIZE, TEMPLATE_SETS, TEXT_BATCH_SIZE, HeadCache, build_zero_shot_head
from .images import decode_image, load_image
from .logs import configure_logging
from .resnext import ResNeXtClassifier, load_resnext
from .weights import (
    CLIP_CHECKPOINT_ENV,
    CLIP_VARIANTS,
    DEFAULT_CLIP,
    DEFAULT_RESNEXT,
    RESNEXT_CHECKPOINT_ENV,
    RESNEXT_VARIANTS,
    checkpoint_from_env,
)

_logger = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# The image both classifiers are timed on.
CLASSIFY_IMAGE = ASSETS / "cat.jpg"
# The photo upscaled into the 24-megapixel JPEG. Its 640x427 px are 3:2 like 6000x4000.
JPEG_SOURCE_IMAGE = ASSETS / "rocket.jpg"
LARGE_JPEG_SIZE = (6000, 4000)
LARGE_JPEG_QUALITY = 90

HEAD_TEMPLATES = TEMPLATE_SETS["1"]
MATMUL_SIZE = 2048
# Above this fraction of CPU time used by other processes, the output warns that times are inflated.
BUSY_SHARE = 0.05
NUM_CLASSES = len(IMAGENET_CLASSNAMES)


@dataclass(frozen=True)
class Settings:
    """How many runs each measurement gets, and which classes the head builds use."""

    repeats: int
    warmup: int
    head_repeats: int
    # Head builds use every head_class_step-th ImageNet class; 1 builds all 1000.
    head_class_step: int
    # Time head_repeats trimmed builds on all 1000 classes. When False, the one
    # build that classify() needs is the only timed run.
    time_full_trimmed_head: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if args.quick:
            settings = cls(repeats=5, warmup=1, head_repeats=1, head_class_step=50, time_full_trimmed_head=False)
        else:
            settings = cls(repeats=20, warmup=3, head_repeats=3, head_class_step=10, time_full_trimmed_head=True)
        if args.repeats is not None:
            settings = replace(settings, repeats=args.repeats, head_repeats=min(args.repeats, settings.head_repeats))
        if args.full_head:
            settings = replace(settings, head_class_step=1)
        return settings


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds used so far by the whole machine and by this process, to tell whether others shared the CPU."""

    wall_s: float
    machine_busy_s: float | None
    process_s: float

    @classmethod
    def read(cls) -> CpuClock:
        times = os.times()
        return cls(time.perf_counter(), _machine_busy_seconds(), times.user + times.system)

    def others_share_since(self, start: CpuClock) -> float | None:
        """Return the fraction of all CPUs' time since ``start`` used by other processes, or None off Linux."""
        if self.machine_busy_s is None or start.machine_busy_s is None:
            return None
        others_s = (self.machine_busy_s - start.machine_busy_s) - (self.process_s - start.process_s)
        capacity_s = (self.wall_s - start.wall_s) * (os.cpu_count() or 1)
        if capacity_s <= 0:
            return None
        return max(0.0, others_s / capacity_s)


def _machine_busy_seconds() -> float | None:
    """Return the CPU seconds all processes have used since boot, from the first line of /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:  # not Linux
        return None
    # user, nice, system, idle, iowait, irq, softirq: everything except idle and iowait is busy.
    user, nice, system, _idle, _iowait, irq, softirq = (int(value) for value in fields[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs of one operation."""

    median_s: float
    min_s: float
    max_s: float
    runs: int
    # Fraction of all CPUs' time that other processes used during the timed runs; None off Linux.
    others_cpu_share: float | None = None


@dataclass(frozen=True)
class Target:
    """A goal for one result key, such as ``clip_over_resnext <= 1.5``."""

    key: str
    operator: str  # "<=" or ">="
    limit: float

    def is_met(self, value: float) -> bool:
        return value <= self.limit if self.operator == "<=" else value >= self.limit

    def __str__(self) -> str:
        return f"{self.operator} {self.limit:g}"


TARGETS = (
    Target("clip_over_resnext", "<=", 1.5),
    Target("seed_over_ours", ">=", 100),
    Target("head_speedup", ">=", 8),
    Target("clip_efficiency", ">=", 0.75),
    Target("resnext_efficiency", ">=", 0.75),
    Target("jpeg_draft_ms", "<=", 80),
    Target("jpeg_full_over_draft", ">=", 3),
)


def time_interleaved(
    operations: dict[str, Callable[[], object]], *, repeats: int, warmup: int, device: torch.device
) -> dict[str, Timing]:
    """Time each operation ``repeats`` times after ``warmup`` untimed runs.

    The operations take turns, one run each per round, so that a slow phase of
    a shared machine slows all of them alike instead of one.
    """
    for _ in range(warmup):
        for operation in operations.values():
            operation()
        synchronize(device)

    durations: dict[str, list[float]] = {name: [] for name in operations}
    clock_at_start = CpuClock.read()
    for _ in range(repeats):
        for name, operation in operations.items():
            synchronize(device)
            started = time.perf_counter()
            operation()
            synchronize(device)
            durations[name].append(time.perf_counter() - started)
    others_share = CpuClock.read().others_share_since(clock_at_start)
    return {
        name: Timing(statistics.median(values), min(values), max(values), len(values), others_share)
        for name, values in durations.items()
    }


def write_random_checkpoints(folder: Path, *, clip: bool, resnext: bool) -> dict[str, Path]:
    """Save random-weight state dicts of the default CLIP and ResNeXt architectures into ``folder``."""
    torch.manual_seed(0)
    paths: dict[str, Path] = {}
    if clip:
        architecture = CLIP_VARIANTS[DEFAULT_CLIP].architecture
        _logger.info("Writing random weights of %s", architecture)
        paths["clip"] = folder / f"{architecture}-random.pt"
        torch.save(open_clip.create_model(architecture, pretrained=None).state_dict(), paths["clip"])
    if resnext:
        architecture = RESNEXT_VARIANTS[DEFAULT_RESNEXT].architecture
        _logger.info("Writing random weights of %s", architecture)
        paths["resnext"] = folder / f"{architecture}-random.pth"
        torch.save(torchvision.models.get_model(architecture, weights=None).state_dict(), paths["resnext"])
    return paths


def measure_classification(
    clip: ClipZeroShot, resnext: ResNeXtClassifier, image: Image.Image, settings: Settings
) -> dict[str, Timing]:
    """Time warm top-5 ``classify()`` calls of both models on ``image``. CLIP's head must be built already."""
    _logger.info("Timing classification of one image (%d runs per model)", settings.repeats)
    return time_interleaved(
        {"clip": lambda: clip.classify(image, top_k=5), "resnext": lambda: resnext.classify(image, top_k=5)},
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=clip.device,
    )


def measure_head_builds(
    clip: ClipZeroShot, classnames: Sequence[str], settings: Settings
) -> tuple[dict[str, Timing], float]:
    """Time building the head for ``classnames`` padded (open_clip's way) and trimmed (ours).

    Returns:
        The timings under "padded" and "trimmed", and the largest absolute
        difference between the two heads, which should be float rounding only.
    """
    _logger.info(
        "Timing zero-shot head builds on %d classes (%d runs each way)", len(classnames), settings.head_repeats
    )
    device = clip.device
    built: dict[str, torch.Tensor] = {}

    def build_padded() -> None:
        built["padded"] = open_clip.build_zero_shot_classifier(
            clip.model, clip.tokenizer, classnames, HEAD_TEMPLATES, device=device
        )

    def build_trimmed() -> None:
        built["trimmed"] = build_zero_shot_head(clip.model, clip.tokenizer, classnames, HEAD_TEMPLATES, device=device)

    # Warm up on a few classes only, because a full padded build takes about 50 s on a 2-core CPU.
    warmup_classes = classnames[:10]
    open_clip.build_zero_shot_classifier(clip.model, clip.tokenizer, warmup_classes, HEAD_TEMPLATES, device=device)
    build_zero_shot_head(clip.model, clip.tokenizer, warmup_classes, HEAD_TEMPLATES, device=device)

    timings = time_interleaved(
        {"padded": build_padded, "trimmed": build_trimmed},
        repeats=settings.head_repeats,
        warmup=0,
        device=device,
    )
    difference = (built["padded"].float() - built["trimmed"].float()).abs().max().item()
    return timings, difference


def measure_full_trimmed_head(clip: ClipZeroShot, settings: Settings) -> Timing:
    """Time building the trimmed head on all 1000 ImageNet classes, as the app does."""
    _logger.info("Timing trimmed head builds on all %d classes (%d runs)", NUM_CLASSES, settings.head_repeats)
    classnames = list(IMAGENET_CLASSNAMES)
    timings = time_interleaved(
        {
            "trimmed": lambda: build_zero_shot_head(
                clip.model, clip.tokenizer, classnames, HEAD_TEMPLATES, device=clip.device
            )
        },
        repeats=settings.head_repeats,
        warmup=0,
        device=clip.device,
    )
    return timings["trimmed"]


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def count_flops(run: Callable[[], object]) -> int:
    """Count the FLOPs of one call of ``run`` with FlopCounterMode (a multiply-add counts as 2).

    FlopCounterMode (PyTorch 2.14) misses two parts of a ViT, so both are fixed here:

    * it does not see the input and output projections inside the fused fast
      path of ``nn.MultiheadAttention``, a third of ViT-B/32's FLOPs, so the
      fast path is switched off while counting;
    * it has no formula for the CPU attention kernel, so that kernel gets the
      formula FlopCounterMode uses for the CUDA attention kernels.
    """
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    counter = FlopCounterMode(
        display=False,
        custom_mapping={torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops},
    )
    try:
        with torch.inference_mode(), counter:
            run()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return counter.get_total_flops()


def measure_forwards(
    clip: ClipZeroShot, resnext: ResNeXtClassifier, image: Image.Image, settings: Settings
) -> tuple[dict[str, int], dict[str, Timing]]:
    """Count each model's forward FLOPs, and time the forwards and an fp32 matmul on the device.

    Returns:
        FLOPs under "clip" and "resnext", and timings under "clip", "resnext" and "matmul".
    """
    device = clip.device
    clip_pixels = clip.pixels([image])
    resnext_pixels = resnext.pixels([image])

    def clip_forward() -> None:
        clip.model.encode_image(clip_pixels)

    def resnext_forward() -> None:
        resnext.model(resnext_pixels)

    flops = {"clip": count_flops(clip_forward), "resnext": count_flops(resnext_forward)}

    _logger.info(
        "Timing forward passes and a %dx%d fp32 matmul (%d runs each)", MATMUL_SIZE, MATMUL_SIZE, settings.repeats
    )
    left = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.float32)
    right = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.float32)
    with torch.inference_mode():
        timings = time_interleaved(
            {"clip": clip_forward, "resnext": resnext_forward, "matmul": lambda: left @ right},
            repeats=settings.repeats,
            warmup=settings.warmup,
            device=device,
        )
    return flops, timings


def write_large_jpeg(folder: Path) -> Path:
    """Upscale a sample photo to 24 megapixels and save it as a quality-90 JPEG in ``folder``."""
    _logger.info("Writing a %dx%d JPEG upscaled from %s", *LARGE_JPEG_SIZE, JPEG_SOURCE_IMAGE.name)
    large = load_image(JPEG_SOURCE_IMAGE).resize(LARGE_JPEG_SIZE, Image.Resampling.BICUBIC)
    path = folder / f"{JPEG_SOURCE_IMAGE.stem}-{LARGE_JPEG_SIZE[0]}x{LARGE_JPEG_SIZE[1]}.jpg"
    large.save(path, quality=LARGE_JPEG_QUALITY)
    return path


def measure_jpeg(
    resnext: ResNeXtClassifier, path: Path, settings: Settings
) -> tuple[dict[str, Timing], int, tuple[int, int]]:
    """Time decoding ``path`` from bytes plus ResNeXt's transforms, at full size and with draft decoding.

    Returns:
        The timings under "full" and "draft", the file size in bytes and the draft-decoded size.
    """
    _logger.info("Timing decoding and preprocessing of %s (%d runs each way)", path.name, settings.repeats)
    data = path.read_bytes()
    timings = time_interleaved(
        {
            "full": lambda: resnext.transforms(decode_image(data, path.name, draft_min_side=None).image),
            "draft": lambda: resnext.transforms(decode_image(data, path.name).image),
        },
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=torch.device("cpu"),
    )
    return timings, len(data), decode_image(data, path.name).image.size


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _rounded_share(share: float | None) -> float | None:
    return None if share is None else round(share, 3)


@dataclass
class Measurements:
    """Everything one benchmark run measured, before ratios are taken."""

    settings: Settings
    device: torch.device
    models: dict[str, str]
    weights: dict[str, str]
    random_weights: list[str]
    classification: dict[str, Timing]
    head_classes: int
    # "padded" and "trimmed" on head_classes classes; "trimmed_full" on all 1000.
    heads: dict[str, Timing]
    head_max_abs_difference: float
    flops: dict[str, int]
    # "clip", "resnext" and "matmul".
    forwards: dict[str, Timing]
    matmul_flops: int
    jpeg: dict[str, Timing]
    jpeg_bytes: int
    jpeg_draft_size: tuple[int, int]
    # Fraction of all CPUs' time that other processes used during the run; None off Linux.
    others_cpu_share: float | None


def measure_all(
    *,
    device: str | None,
    clip_checkpoint: Path | None,
    resnext_checkpoint: Path | None,
    settings: Settings,
) -> Measurements:
    """Load both classifiers on one device and run every measurement.

    Raises:
        ClassifierError: a checkpoint failed to load, or the device is not available.
    """
    clock_at_start = CpuClock.read()
    selected = select_device(device)

    with tempfile.TemporaryDirectory(prefix="clip-vs-resnext-benchmark-") as temporary:
        folder = Path(temporary)
        random_paths = write_random_checkpoints(
            folder, clip=clip_checkpoint is None, resnext=resnext_checkpoint is None
        )
        clip_path = clip_checkpoint or random_paths["clip"]
        resnext_path = resnext_checkpoint or random_paths["resnext"]

        # A fresh cache folder, so no head is read from an earlier run.
        clip = load_clip(checkpoint=clip_path, device=selected, head_cache=HeadCache(folder / "heads"))
        resnext = load_resnext(checkpoint=resnext_path, device=selected)
        image = load_image(CLASSIFY_IMAGE)

        _logger.info("Building the %d-class zero-shot head that classify() uses", NUM_CLASSES)
        clock_before_head = CpuClock.read()
        started = time.perf_counter()
        clip.zero_shot_head()  # ImageNet's classes with classify()'s default templates
        synchronize(selected)
        head_once_s = time.perf_counter() - started
        head_once = Timing(
            head_once_s, head_once_s, head_once_s, 1, CpuClock.read().others_share_since(clock_before_head)
        )

        classification = measure_classification(clip, resnext, image, settings)

        head_classnames = list(IMAGENET_CLASSNAMES[:: settings.head_class_step])
        heads, head_difference = measure_head_builds(clip, head_classnames, settings)
        if len(head_classnames) == NUM_CLASSES:
            heads["trimmed_full"] = heads["trimmed"]
        elif settings.time_full_trimmed_head:
            heads["trimmed_full"] = measure_full_trimmed_head(clip, settings)
        else:
            heads["trimmed_full"] = head_once

        flops, forwards = measure_forwards(clip, resnext, image, settings)
        jpeg, jpeg_bytes, jpeg_draft_size = measure_jpeg(resnext, write_large_jpeg(folder), settings)

        return Measurements(
            settings=settings,
            device=selected,
            models={"clip": clip.name, "resnext": resnext.name},
            weights={"clip": clip_path.name, "resnext": resnext_path.name},
            random_weights=sorted(random_paths),
            classification=classification,
            head_classes=len(head_classnames),
            heads=heads,
            head_max_abs_difference=head_difference,
            flops=flops,
            forwards=forwards,
            matmul_flops=2 * MATMUL_SIZE**3,
            jpeg=jpeg,
            jpeg_bytes=jpeg_bytes,
            jpeg_draft_size=jpeg_draft_size,
            others_cpu_share=CpuClock.read().others_share_since(clock_at_start),
        )


def summarize(measured: Measurements) -> dict[str, object]:
    """Turn the measurements into the benchmark's JSON object: rounded times, ratios, targets and notes."""
    clip_s = measured.classification["clip"].median_s
    resnext_s = measured.classification["resnext"].median_s

    head_scale = NUM_CLASSES / measured.head_classes
    head_padded_s = measured.heads["padded"].median_s * head_scale
    head_trimmed_s = measured.heads["trimmed"].median_s * head_scale
    head_trimmed_full_s = measured.heads["trimmed_full"].median_s
    seed_per_image_s = head_padded_s + clip_s

    forwards = measured.forwards
    matmul_gflops = measured.matmul_flops / forwards["matmul"].median_s / 1e9
    clip_forward_gflops = measured.flops["clip"] / forwards["clip"].median_s / 1e9
    resnext_forward_gflops = measured.flops["resnext"] / forwards["resnext"].median_s / 1e9

    jpeg_full_s = measured.jpeg["full"].median_s
    jpeg_draft_s = measured.jpeg["draft"].median_s

    numbers = {
        "clip_ms": clip_s * 1000,
        "resnext_ms": resnext_s * 1000,
        "clip_over_resnext": clip_s / resnext_s,
        "head_padded_s": head_padded_s,
        "head_trimmed_s": head_trimmed_s,
        "head_speedup": head_padded_s / head_trimmed_s,
        "seed_per_image_s": seed_per_image_s,
        "seed_over_ours": seed_per_image_s / clip_s,
        "matmul_gflops": matmul_gflops,
        "clip_forward_gflops": clip_forward_gflops,
        "resnext_forward_gflops": resnext_forward_gflops,
        "clip_efficiency": clip_forward_gflops / matmul_gflops,
        "resnext_efficiency": resnext_forward_gflops / matmul_gflops,
        "jpeg_full_ms": jpeg_full_s * 1000,
        "jpeg_draft_ms": jpeg_draft_s * 1000,
        "jpeg_full_over_draft": jpeg_full_s / jpeg_draft_s,
        "head_trimmed_full_s": head_trimmed_full_s,
        "head_speedup_full": head_padded_s / head_trimmed_full_s,
        "head_max_abs_difference": measured.head_max_abs_difference,
        "clip_forward_ms": forwards["clip"].median_s * 1000,
        "resnext_forward_ms": forwards["resnext"].median_s * 1000,
        "matmul_ms": forwards["matmul"].median_s * 1000,
        "clip_forward_gflop": measured.flops["clip"] / 1e9,
        "resnext_forward_gflop": measured.flops["resnext"] / 1e9,
    }
    results: dict[str, object] = {key: _significant(value) for key, value in numbers.items()}

    timed_per_image = {
        "clip_ms": measured.classification["clip"],
        "resnext_ms": measured.classification["resnext"],
        "clip_forward_ms": forwards["clip"],
        "resnext_forward_ms": forwards["resnext"],
        "matmul_ms": forwards["matmul"],
        "jpeg_full_ms": measured.jpeg["full"],
        "jpeg_draft_ms": measured.jpeg["draft"],
    }
    results["min_max_ms"] = {
        key: [_significant(timing.min_s * 1000), _significant(timing.max_s * 1000)]
        for key, timing in timed_per_image.items()
    }
    results["targets"] = {
        target.key: {"target": str(target), "met": target.is_met(results[target.key])} for target in TARGETS
    }
    results.update(
        device=describe_device(measured.device),
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        open_clip=open_clip.__version__,
        models=measured.models,
        weights=measured.weights,
        repeats=measured.settings.repeats,
        head_repeats=measured.settings.head_repeats,
        head_classes=measured.head_classes,
        head_trimmed_full_runs=measured.heads["trimmed_full"].runs,
        jpeg_bytes=measured.jpeg_bytes,
        jpeg_draft_size=list(measured.jpeg_draft_size),
        others_cpu_share=_rounded_share(measured.others_cpu_share),
        others_cpu_share_by_step={
            "classification": _rounded_share(measured.classification["clip"].others_cpu_share),
            "head_builds": _rounded_share(measured.heads["padded"].others_cpu_share),
            "head_trimmed_full": _rounded_share(measured.heads["trimmed_full"].others_cpu_share),
            "forwards": _rounded_share(forwards["clip"].others_cpu_share),
            "jpeg": _rounded_share(measured.jpeg["full"].others_cpu_share),
        },
        notes=describe_method(measured),
    )
    return results


def describe_method(measured: Measurements) -> list[str]:
    """Return the notes printed under the results: which numbers are estimates, and how each was taken."""
    notes = []
    if measured.random_weights:
        notes.append(
            f"random weights for {' and '.join(measured.random_weights)}: the speed does not depend on the weight "
            "values, because trained weights run the same operations on tensors of the same shapes"
        )

    step = measured.settings.head_class_step
    if measured.head_classes != NUM_CLASSES:
        notes.append(
            f"head_padded_s and head_trimmed_s are estimates: both heads were built on {measured.head_classes} "
            f"of the {NUM_CLASSES} classes (every {step}th) and the times were multiplied by {NUM_CLASSES // measured.head_classes}"
        )
    runs = measured.heads["trimmed_full"].runs
    notes.append(
        f"head_trimmed_full_s is measured on all {NUM_CLASSES} classes ({runs} run{'s' if runs > 1 else ''}); "
        "head_speedup_full = head_padded_s / head_trimmed_full_s"
    )
    notes.append(
        "the padded head is built by open_clip.build_zero_shot_classifier with its default of 10 classes per batch, "
        "the trimmed head by build_zero_shot_head with its default batch size for the device "
        f"({CPU_TEXT_BATCH_SIZE} prompts on the CPU, {TEXT_BATCH_SIZE} elsewhere), which trims the padding and "
        "encodes the prompts' shared opening tokens once per batch"
    )
    notes.append(
        "seed_per_image_s is an estimate: the padded head build time plus one warm CLIP classification (clip_ms)"
    )
    notes.append(
        "forward GFLOP/s = FlopCounterMode FLOPs of one batch-1 forward (a multiply-add counts as 2) "
        "divided by the median forward time"
    )
    if measured.device.type == "cuda":
        notes.append(
            "the models run in float16 on CUDA and the matmul reference in float32, so an efficiency may exceed 1"
        )
    notes.append(
        f"the {LARGE_JPEG_SIZE[0]}x{LARGE_JPEG_SIZE[1]} JPEG is upscaled from {JPEG_SOURCE_IMAGE.name}, so it has "
        "less fine detail than a real 24-megapixel photo and may decode faster than one"
    )

    share = measured.others_cpu_share
    if share is not None and share > BUSY_SHARE:
        notes.append(
            f"other processes used {share:.0%} of the CPU time during the run, "
            "so the times are slower and noisier than on an idle machine"
        )
    return notes


# The table's sections: heading, key in "others_cpu_share_by_step", and (result key, unit) rows.
_TABLE_SECTIONS = (
    (
        "Warm top-5 classification of one image over the 1000 ImageNet classes",
        "classification",
        (("clip_ms", "ms"), ("resnext_ms", "ms"), ("clip_over_resnext", "x")),
    ),
    (
        "Building the 1-template 1000-class zero-shot head",
        "head_builds",
        (
            ("head_padded_s", "s"),
            ("head_trimmed_s", "s"),
            ("head_speedup", "x"),
            ("head_trimmed_full_s", "s"),
            ("head_speedup_full", "x"),
        ),
    ),
    (
        "Naive app that encodes the 1000 prompts again for every image",
        "head_builds",
        (("seed_per_image_s", "s"), ("seed_over_ours", "x")),
    ),
    (
        "Forward throughput at batch 1",
        "forwards",
        (
            ("matmul_gflops", "GFLOP/s"),
            ("clip_forward_gflops", "GFLOP/s"),
            ("resnext_forward_gflops", "GFLOP/s"),
            ("clip_efficiency", ""),
            ("resnext_efficiency", ""),
        ),
    ),
    (
        "Decoding and preprocessing a 24-megapixel JPEG",
        "jpeg",
        (("jpeg_full_ms", "ms"), ("jpeg_draft_ms", "ms"), ("jpeg_full_over_draft", "x")),
    ),
)


def format_table(results: dict[str, object]) -> str:
    """Format the results as a plain-text table with each target and whether it was met."""
    targets = {target.key: target for target in TARGETS}
    lines = [
        f"Device: {results['device']}, torch {results['torch']}, open_clip {results['open_clip']}",
        f"Models: {results['models']['clip']} ({results['weights']['clip']}), "
        f"{results['models']['resnext']} ({results['weights']['resnext']})",
        f"Runs: median of {results['repeats']} after warm-up. Head builds: median of {results['head_repeats']} "
        f"on {results['head_classes']} classes",
    ]
    for heading, step, rows in _TABLE_SECTIONS:
        share = results["others_cpu_share_by_step"][step]
        busy = f" (other processes used {share:.0%} of the CPU)" if share is not None and share > BUSY_SHARE else ""
        lines += ["", heading + busy]
        for key, unit in rows:
            value = f"{results[key]:g} {unit}".rstrip()
            row = f"  {key:<24}{value:>16}"
            if key in targets:
                verdict = "PASS" if results["targets"][key]["met"] else "MISS"
                row += f"   target {targets[key]!s:<8} {verdict}"
            lines.append(row)
    lines += ["", "Notes:"]
    lines += [f"  - {note}" for note in results["notes"]]
    return "\n".join(lines)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m classifiers.benchmark",
        description=(
            "Measure CLIP ViT-B/32 and ResNeXt-50 speed on one device: per-image classification, "
            "zero-shot head builds, forward GFLOP/s and large-JPEG decoding. Exits 0 even when a target is missed."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument(
        "--device",
        default="auto",
        metavar="DEVICE",
        help=f"device to run both models on: one of {', '.join(DEVICE_CHOICES)}, or cuda:N (default: auto, as the app)",
    )
    parser.add_argument(
        "--clip-checkpoint",
        type=Path,
        metavar="FILE",
        help=f"open_clip state dict of ViT-B-32-quickgelu (default: ${CLIP_CHECKPOINT_ENV}, else random weights)",
    )
    parser.add_argument(
        "--resnext-checkpoint",
        type=Path,
        metavar="FILE",
        help=f"torchvision resnext50_32x4d state dict (default: ${RESNEXT_CHECKPOINT_ENV}, else random weights)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        metavar="N",
        help="timed runs per measurement (default: 20, or 5 with --quick); head builds run at most 3 times",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs and a 20-class head slice, for tests (about 35 s on a 2-core CPU)",
    )
    parser.add_argument(
        "--full-head",
        action="store_true",
        help=(
            "build the heads on all 1000 classes instead of timing every 10th class and multiplying by 10 "
            "(the padded build alone takes about 50 s on a 2-core CPU)"
        ),
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table, or the JSON object with ``--json``, to stdout."""
    args = parse_args(argv)
    configure_logging(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_args(args)
    clip_checkpoint = args.clip_checkpoint or checkpoint_from_env(CLIP_CHECKPOINT_ENV)
    resnext_checkpoint = args.resnext_checkpoint or checkpoint_from_env(RESNEXT_CHECKPOINT_ENV)

    try:
        measured = measure_all(
            device=args.device,
            clip_checkpoint=clip_checkpoint,
            resnext_checkpoint=resnext_checkpoint,
            settings=settings,
        )
    except ClassifierError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        raise SystemExit(2) from None

    results = summarize(measured)
    print(json.dumps(results, indent=2) if args.json else format_table(results))


if __name__ == "__main__":
    main()
