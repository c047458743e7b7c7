"""Speed benchmark of the engine on one device: ``python -m classifiers.benchmark``.

One run measures:

* warm top-5 classification of one sample image over the 1000 ImageNet classes
  by each classifier's ``classify()``, with the zero-shot head already built;
* building the 1-template zero-shot head the padded way (open_clip's
  ``build_zero_shot_classifier``, which encodes 77-token ids) and the trimmed
  way (``classifiers.heads.build_zero_shot_head``);
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
from torch.utils.flop_counter import FlopCounterMode

from .clip import ClipZeroShot, load_clip
from .devices import DEVICE_CHOICES, describe_device, select_device, synchronize
from .errors import ClassifierError
from .heads import TEMPLATE_SETS, HeadCache, build_zero_shot_head
from .images import decode_image, load_image
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
NUM_CLASSES = len(IMAGENET_CLASSNAMES)


@dataclass(frozen=True)
class Settings:
    """How many runs each measurement gets, and which classes the head builds use."""

    repeats: int
    warmup: int
    head_repeats: int
    # Head builds use every head_class_step-th ImageNet class; 1 builds all 1000.
    head_class_step: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        if args.quick:
            settings = cls(repeats=5, warmup=1, head_repeats=1, head_class_step=50)
        else:
            settings = cls(repeats=20, warmup=3, head_repeats=3, head_class_step=10)
        if args.repeats is not None:
            settings = replace(settings, repeats=args.repeats, head_repeats=min(args.repeats, settings.head_repeats))
        if args.full_head:
            settings = replace(settings, head_class_step=1)
        return settings


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of repeated runs of one operation."""

    median_s: float
    min_s: float
    max_s: float
    runs: int


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
    for _ in range(repeats):
        for name, operation in operations.items():
            synchronize(device)
            started = time.perf_counter()
            operation()
            synchronize(device)
            durations[name].append(time.perf_counter() - started)
    return {
        name: Timing(statistics.median(values), min(values), max(values), len(values))
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
    """Time warm top-5 ``classify()`` calls of both models on ``image``; CLIP's head must be built already."""
    _logger.info("Timing classification of one image (%d runs per model)", settings.repeats)
    return time_interleaved(
        {"clip": lambda: clip.classify(image, top_k=5), "resnext": lambda: resnext.classify(image, top_k=5)},
        repeats=settings.repeats,
        warmup=settings.warmup,
        device=clip.device,
    )


def measure_head_builds(clip: ClipZeroShot, classnames: Sequence[str], settings: Settings) -> dict[str, object]:
    """Time building one head for ``classnames`` padded (open_clip) and trimmed (ours), and compare the heads."""
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

    # Warm up on a few classes only: a full padded build costs a minute on a CPU.
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
    return {"padded": timings["padded"], "trimmed": timings["trimmed"], "max_abs_difference": difference}


def count_flops(run: Callable[[], object]) -> int:
    """Count the FLOPs of one call of ``run`` with FlopCounterMode (a multiply-add counts as 2).

    The fused fast path of ``nn.MultiheadAttention`` is switched off while
    counting because FlopCounterMode does not count its input and output
    projections, a third of a ViT's matmul FLOPs. NOTE: the attention products
    themselves (about 1% of ViT-B/32's FLOPs) stay uncounted on the CPU, where
    PyTorch 2.14 runs them as a kernel that FlopCounterMode has no formula for.
    """
    fast_path = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            run()
    finally:
        torch.backends.mha.set_fastpath_enabled(fast_path)
    return counter.get_total_flops()


def measure_forwards(
    clip: ClipZeroShot, resnext: ResNeXtClassifier, image: Image.Image, settings: Settings
) -> dict[str, object]:
    """Count each model's forward FLOPs and time the forwards and an fp32 matmul on the device."""
    device = clip.device
    clip_pixels = clip.pixels([image])
    resnext_pixels = resnext.pixels([image])

    def clip_forward() -> None:
        clip.model.encode_image(clip_pixels)

    def resnext_forward() -> None:
        resnext.model(resnext_pixels)

    flops = {"clip": count_flops(clip_forward), "resnext": count_flops(resnext_forward)}

    _logger.info("Timing forward passes and a %dx%d fp32 matmul (%d runs each)", MATMUL_SIZE, MATMUL_SIZE, settings.repeats)
    left = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.float32)
    right = torch.randn(MATMUL_SIZE, MATMUL_SIZE, device=device, dtype=torch.float32)
    with torch.inference_mode():
        timings = time_interleaved(
            {"clip": clip_forward, "resnext": resnext_forward, "matmul": lambda: left @ right},
            repeats=settings.repeats,
            warmup=settings.warmup,
            device=device,
        )
    return {"flops": flops, "timings": timings, "matmul_flops": 2 * MATMUL_SIZE**3}


def write_large_jpeg(folder: Path) -> Path:
    """Upscale a sample photo to 24 megapixels and save it as a quality-90 JPEG in ``folder``."""
    _logger.info("Writing a %dx%d JPEG upscaled from %s", *LARGE_JPEG_SIZE, JPEG_SOURCE_IMAGE.name)
    large = load_image(JPEG_SOURCE_IMAGE).resize(LARGE_JPEG_SIZE, Image.Resampling.BICUBIC)
    path = folder / f"{JPEG_SOURCE_IMAGE.stem}-{LARGE_JPEG_SIZE[0]}x{LARGE_JPEG_SIZE[1]}.jpg"
    large.save(path, quality=LARGE_JPEG_QUALITY)
    return path


def measure_jpeg(resnext: ResNeXtClassifier, path: Path, settings: Settings) -> dict[str, object]:
    """Time decoding ``path`` from bytes and applying ResNeXt's transforms, at full size and with draft decoding."""
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
    draft_size = decode_image(data, path.name).image.size
    return {"timings": timings, "bytes": len(data), "draft_size": draft_size}


def _significant(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_benchmark(
    *,
    device: str | None,
    clip_checkpoint: Path | None,
    resnext_checkpoint: Path | None,
    settings: Settings,
) -> dict[str, object]:
    """Load both classifiers, run every measurement and return the results as a JSON-ready dict.

    Raises:
        ClassifierError: a checkpoint failed to load, or the device is not available.
    """
    load_at_start = _load_average()
    selected = select_device(device)
    notes: list[str] = []

    with tempfile.TemporaryDirectory(prefix="clip-vs-resnext-benchmark-") as temporary:
        folder = Path(temporary)
        random_paths = write_random_checkpoints(
            folder, clip=clip_checkpoint is None, resnext=resnext_checkpoint is None
        )
        if random_paths:
            notes.append(
                "random weights for "
                + " and ".join(sorted(random_paths))
                + ": they run the same operations on tensors of the same shapes as trained weights, "
                "so the speed does not depend on the weight values"
            )
        clip_path = clip_checkpoint or random_paths["clip"]
        resnext_path = resnext_checkpoint or random_paths["resnext"]

        # A fresh cache folder, so no head is read from an earlier run.
        clip = load_clip(checkpoint=clip_path, device=selected, head_cache=HeadCache(folder / "heads"))
        resnext = load_resnext(checkpoint=resnext_path, device=selected)
        image = load_image(CLASSIFY_IMAGE)

        _logger.info("Building the %d-class zero-shot head used by classify()", NUM_CLASSES)
        started = time.perf_counter()
        clip.zero_shot_head()  # the ImageNet head with classify()'s default templates
        synchronize(selected)
        head_full_once_s = time.perf_counter() - started

        classification = measure_classification(clip, resnext, image, settings)

        head_classnames = list(IMAGENET_CLASSNAMES[:: settings.head_class_step])
        head_scale = NUM_CLASSES / len(head_classnames)
        heads = measure_head_builds(clip, head_classnames, settings)

        forwards = measure_forwards(clip, resnext, image, settings)
        jpeg = measure_jpeg(resnext, write_large_jpeg(folder), settings)

        weights = {"clip": clip_path.name, "resnext": resnext_path.name}
        architectures = {"clip": clip.name, "resnext": resnext.name}

    clip_s = classification["clip"].median_s
    resnext_s = classification["resnext"].median_s
    head_padded_s = heads["padded"].median_s * head_scale
    head_trimmed_s = heads["trimmed"].median_s * head_scale
    seed_per_image_s = head_padded_s + clip_s

    forward_timings = forwards["timings"]
    matmul_gflops = forwards["matmul_flops"] / forward_timings["matmul"].median_s / 1e9
    clip_forward_gflops = forwards["flops"]["clip"] / forward_timings["clip"].median_s / 1e9
    resnext_forward_gflops = forwards["flops"]["resnext"] / forward_timings["resnext"].median_s / 1e9

    jpeg_full_s = jpeg["timings"]["full"].median_s
    jpeg_draft_s = jpeg["timings"]["draft"].median_s

    if head_scale != 1:
        notes.append(
            f"head_padded_s and head_trimmed_s are estimates: both heads were built on {len(head_classnames)} "
            f"of the {NUM_CLASSES} classes (every {settings.head_class_step}th) and the times multiplied by "
            f"{head_scale:g}; building the full {NUM_CLASSES}-class trimmed head once took {head_full_once_s:.1f} s"
        )
    notes.append(
        "head_padded_s runs open_clip.build_zero_shot_classifier with its default of 10 classes per batch; "
        "head_trimmed_s runs build_zero_shot_head with its default batch of 256 prompts"
    )
    notes.append(
        "seed_per_image_s is an estimate: the padded head build time plus one warm CLIP classification (clip_ms)"
    )
    notes.append(
        "forward GFLOP/s = FlopCounterMode FLOPs of one batch-1 forward (a multiply-add counts as 2) "
        "divided by the median forward time"
    )
    if selected.type == "cuda":
        notes.append(
            "the models run in float16 on CUDA and the matmul reference in float32, so an efficiency may exceed 1"
        )
    notes.append(
        f"the {LARGE_JPEG_SIZE[0]}x{LARGE_JPEG_SIZE[1]} JPEG is upscaled from {JPEG_SOURCE_IMAGE.name}, so it holds "
        "less fine detail than a real 24-megapixel photo and its full decode may be faster than such a photo's"
    )
    load_at_end = _load_average()
    busy = [load for load in (load_at_start, load_at_end) if load is not None and load > 0.5]
    if busy:
        notes.append(
            f"other processes were using the CPU (1-minute load average {max(busy):.1f} at the start or end of the "
            "run), so the times may be slower and noisier than on an idle machine"
        )

    results: dict[str, object] = {
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
        "clip_forward_ms": forward_timings["clip"].median_s * 1000,
        "resnext_forward_ms": forward_timings["resnext"].median_s * 1000,
        "matmul_ms": forward_timings["matmul"].median_s * 1000,
        "clip_forward_gflop": forwards["flops"]["clip"] / 1e9,
        "resnext_forward_gflop": forwards["flops"]["resnext"] / 1e9,
        "head_trimmed_full_once_s": head_full_once_s,
        "head_max_abs_difference": heads["max_abs_difference"],
    }
    results = {key: _significant(value) for key, value in results.items()}

    results["ranges_ms"] = {
        name: [_significant(timing.min_s * 1000), _significant(timing.max_s * 1000)]
        for name, timing in (
            ("clip_ms", classification["clip"]),
            ("resnext_ms", classification["resnext"]),
            ("clip_forward_ms", forward_timings["clip"]),
            ("resnext_forward_ms", forward_timings["resnext"]),
            ("matmul_ms", forward_timings["matmul"]),
            ("jpeg_full_ms", jpeg["timings"]["full"]),
            ("jpeg_draft_ms", jpeg["timings"]["draft"]),
        )
    }
    results["targets"] = {
        target.key: {"target": str(target), "met": target.is_met(results[target.key])} for target in TARGETS
    }
    results["device"] = describe_device(selected)
    results["threads"] = torch.get_num_threads()
    results["torch"] = torch.__version__
    results["open_clip"] = open_clip.__version__
    results["models"] = architectures
    results["weights"] = weights
    results["repeats"] = settings.repeats
    results["head_repeats"] = settings.head_repeats
    results["head_classes"] = len(head_classnames)
    results["jpeg_bytes"] = jpeg["bytes"]
    results["jpeg_draft_size"] = list(jpeg["draft_size"])
    results["load_average"] = [load_at_start, load_at_end]
    results["notes"] = notes
    return results


# Rows of the table: (result key, unit, heading printed above the row or "").
_TABLE_ROWS = (
    ("clip_ms", "ms", "Warm top-5 classification of one image, 1000 ImageNet classes"),
    ("resnext_ms", "ms", ""),
    ("clip_over_resnext", "x", ""),
    ("head_padded_s", "s", "Building the 1-template 1000-class zero-shot head"),
    ("head_trimmed_s", "s", ""),
    ("head_speedup", "x", ""),
    ("seed_per_image_s", "s", "Naive app that encodes the 1000 prompts again for every image"),
    ("seed_over_ours", "x", ""),
    ("matmul_gflops", "GFLOP/s", "Forward throughput, batch 1"),
    ("clip_forward_gflops", "GFLOP/s", ""),
    ("resnext_forward_gflops", "GFLOP/s", ""),
    ("clip_efficiency", "", ""),
    ("resnext_efficiency", "", ""),
    ("jpeg_full_ms", "ms", "Decoding and preprocessing a 24-megapixel JPEG"),
    ("jpeg_draft_ms", "ms", ""),
    ("jpeg_full_over_draft", "x", ""),
)


def format_table(results: dict[str, object]) -> str:
    """Format the results as a plain-text table with each target and whether it was met."""
    targets = {target.key: target for target in TARGETS}
    lines = [
        f"Device: {results['device']}, torch {results['torch']}, open_clip {results['open_clip']}",
        f"Models: {results['models']['clip']} ({results['weights']['clip']}), "
        f"{results['models']['resnext']} ({results['weights']['resnext']})",
        f"Runs: median of {results['repeats']} after warm-up; head builds: median of {results['head_repeats']} "
        f"on {results['head_classes']} classes",
    ]
    for key, unit, heading in _TABLE_ROWS:
        if heading:
            lines += ["", heading]
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
        "--device", choices=DEVICE_CHOICES, default="auto", help="device to run on (default: auto, as the app)"
    )
    parser.add_argument(
        "--clip-checkpoint",
        type=Path,
        help=f"open_clip state dict of ViT-B-32-quickgelu (default: ${CLIP_CHECKPOINT_ENV}, else random weights)",
    )
    parser.add_argument(
        "--resnext-checkpoint",
        type=Path,
        help=f"torchvision resnext50_32x4d state dict (default: ${RESNEXT_CHECKPOINT_ENV}, else random weights)",
    )
    parser.add_argument(
        "--repeats",
        type=_positive_int,
        help="timed runs per measurement (default: 20, or 5 with --quick); head builds run at most 3 times",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer runs and a 20-class head slice, for tests (about half a minute on 2 CPU cores)",
    )
    parser.add_argument(
        "--full-head",
        action="store_true",
        help="build the heads on all 1000 classes instead of every 10th class times 10 (over a minute on a CPU)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark and print the table, or the JSON object with ``--json``, to stdout."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_args(args)
    clip_checkpoint = args.clip_checkpoint or checkpoint_from_env(CLIP_CHECKPOINT_ENV)
    resnext_checkpoint = args.resnext_checkpoint or checkpoint_from_env(RESNEXT_CHECKPOINT_ENV)

    try:
        results = run_benchmark(
            device=args.device,
            clip_checkpoint=clip_checkpoint,
            resnext_checkpoint=resnext_checkpoint,
            settings=settings,
        )
    except ClassifierError as e:
        raise SystemExit(f"benchmark failed: {e}") from None

    print(json.dumps(results, indent=2) if args.json else format_table(results))


if __name__ == "__main__":
    main()
