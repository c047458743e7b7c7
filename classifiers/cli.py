"""Command line: ``python -m classifiers [options] IMAGE...`` classifies images with both models.

Exit status: 0 when every image was classified, 1 when any image failed (the
others are still reported), 2 for usage, label, device or weights errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .clip import load_clip
from .devices import DEVICE_CHOICES, select_device
from .errors import ClassifierError, ImageError
from .heads import DEFAULT_TEMPLATES, TEMPLATE_SETS, HeadCache
from .images import decode_image
from .labels import parse_labels
from .logs import configure_logging
from .resnext import load_resnext
from .results import Classification, shared_classes
from .weights import CLIP_VARIANTS, DEFAULT_CLIP, DEFAULT_RESNEXT, RESNEXT_VARIANTS

_logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_IMAGE_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m classifiers",
        description="Classify images with CLIP (zero-shot) and ResNeXt (supervised ImageNet) side by side.",
        epilog="Subcommand: 'python -m classifiers evaluate FOLDER' measures accuracy on a labelled folder.",
    )

    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--top-k", type=int, default=5, metavar="K", help="labels shown per model (default: 5)")
    parser.add_argument("--device", default="auto", help=f"one of {', '.join(DEVICE_CHOICES)}, or cuda:N (default: auto)")

    parser.add_argument("--clip-model", default=DEFAULT_CLIP, choices=list(CLIP_VARIANTS), help="CLIP model and weights")
    parser.add_argument(
        "--resnext-model", default=DEFAULT_RESNEXT, choices=list(RESNEXT_VARIANTS), help="ResNeXt model and weights"
    )
    parser.add_argument(
        "--clip-checkpoint", type=Path, metavar="FILE", help="local open_clip checkpoint (default: $CLIP_CHECKPOINT)"
    )
    parser.add_argument(
        "--resnext-checkpoint", type=Path, metavar="FILE", help="local torchvision .pth file (default: $RESNEXT_CHECKPOINT)"
    )

    parser.add_argument(
        "--templates",
        default=DEFAULT_TEMPLATES,
        choices=list(TEMPLATE_SETS),
        help="CLIP prompt templates averaged per class: 1, open_clip's 7, or the CLIP paper's 80 (default: 1)",
    )

    labels = parser.add_mutually_exclusive_group()
    labels.add_argument("--labels", metavar="TEXT", help='CLIP classes instead of ImageNet\'s, e.g. "cat,dog,car"')
    labels.add_argument("--labels-file", type=Path, metavar="FILE", help="CLIP classes, one per line")

    parser.add_argument("-v", "--verbose", action="store_true", help="log loading steps to stderr")
    return parser


def _format_text(source: str, clip: Classification, resnext: Classification, notes: list[str]) -> str:
    lines = [source]
    lines += [f"  note: {note}" for note in notes]
    for result in (clip, resnext):
        timings = ", ".join(f"{step} {ms:.1f} ms" for step, ms in result.timings_ms.items())
        lines.append(f"  {result.model} [{result.weights}] on {result.device}: {timings}")
        lines += [f"    {rank}. {p.label:<40} {p.probability:7.2%}" for rank, p in enumerate(result.predictions, 1)]
    return "\n".join(lines)


def _read_labels(args: argparse.Namespace) -> list[str] | None:
    if args.labels is not None:
        return parse_labels(args.labels)
    if args.labels_file is not None:
        try:
            return parse_labels(args.labels_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as e:
            raise ClassifierError(f"{args.labels_file}: cannot read the labels file ({e})") from e
    return None


def classify_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")

    try:
        labels = _read_labels(args)
        device = select_device(args.device)
    except ClassifierError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE

    # Both models are tried before giving up, so that one run names every missing weights file.
    load_errors = []
    try:
        clip = load_clip(args.clip_model, checkpoint=args.clip_checkpoint, device=device, head_cache=HeadCache())
    except ClassifierError as e:
        load_errors.append(e)
    try:
        resnext = load_resnext(args.resnext_model, checkpoint=args.resnext_checkpoint, device=device, progress=True)
    except ClassifierError as e:
        load_errors.append(e)
    if load_errors:
        for error in load_errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE

    reports = []
    failed = 0
    for source in args.images:
        try:
            decoded = decode_image(source)
        except ImageError as e:
            failed += 1
            reports.append({"source": source, "error": str(e)})
            if not args.json:
                print(f"{source}\n  error: {e}", file=sys.stderr)
            continue

        clip_result = clip.classify(decoded.image, top_k=args.top_k, classnames=labels, templates=args.templates)
        resnext_result = resnext.classify(decoded.image, top_k=args.top_k)
        report = {"source": source, "clip": clip_result.to_dict(), "resnext": resnext_result.to_dict()}
        if decoded.notes:
            report["notes"] = decoded.notes
        if labels is None:
            report["agreement"] = [p.label for p in shared_classes(clip_result, resnext_result)]
        reports.append(report)
        if not args.json:
            print(_format_text(source, clip_result, resnext_result, decoded.notes))

    if args.json:
        document = {"clip_labels": "custom" if labels else "imagenet", "templates": args.templates, "images": reports}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return EXIT_IMAGE_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "evaluate":
        from .evaluate import evaluate_command

        return evaluate_command(argv[1:])
    return classify_command(argv)
