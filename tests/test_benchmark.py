"""The benchmark command: its JSON keys, and ratios that agree with their parts. No timing is asserted."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from conftest import REPO

MEASURED_KEYS = (
    "clip_ms",
    "resnext_ms",
    "clip_over_resnext",
    "head_padded_s",
    "head_trimmed_s",
    "head_speedup",
    "seed_per_image_s",
    "seed_over_ours",
    "matmul_gflops",
    "clip_forward_gflops",
    "resnext_forward_gflops",
    "clip_efficiency",
    "resnext_efficiency",
    "jpeg_full_ms",
    "jpeg_draft_ms",
)

# (ratio key, numerator key, denominator key, factor applied to the quotient of the parts)
RATIOS = (
    ("clip_over_resnext", "clip_ms", "resnext_ms", 1),
    ("head_speedup", "head_padded_s", "head_trimmed_s", 1),
    ("seed_over_ours", "seed_per_image_s", "clip_ms", 1000),
    ("clip_efficiency", "clip_forward_gflops", "matmul_gflops", 1),
    ("resnext_efficiency", "resnext_forward_gflops", "matmul_gflops", 1),
    ("jpeg_full_over_draft", "jpeg_full_ms", "jpeg_draft_ms", 1),
)

# The benchmark rounds every number to 4 significant digits, so a ratio and
# the quotient of its rounded parts can differ by about 1e-3 of their value.
ROUNDING = 5e-3


@pytest.fixture(scope="module")
def quick_report(clip_checkpoint, resnext_checkpoint) -> dict:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifiers.benchmark",
            "--json",
            "--quick",
            "--device",
            "cpu",
            "--clip-checkpoint",
            str(clip_checkpoint),
            "--resnext-checkpoint",
            str(resnext_checkpoint),
        ],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, f"benchmark exited with {completed.returncode}: {completed.stderr[-3000:]}"
    return json.loads(completed.stdout)


def test_quick_benchmark_reports_positive_numbers(quick_report):
    for key in MEASURED_KEYS:
        assert key in quick_report, f"missing key {key}"
        value = quick_report[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{key} is not a number: {value!r}"
        assert math.isfinite(value), f"{key} is not finite: {value}"
        assert value > 0, f"{key} is not positive: {value}"


def test_quick_benchmark_ratios_match_parts(quick_report):
    for ratio, numerator, denominator, factor in RATIOS:
        quotient = quick_report[numerator] / quick_report[denominator] * factor
        assert quick_report[ratio] == pytest.approx(quotient, rel=ROUNDING), f"{ratio} != {numerator} / {denominator}"

    naive = quick_report["head_padded_s"] + quick_report["clip_ms"] / 1000
    assert quick_report["seed_per_image_s"] == pytest.approx(naive, rel=ROUNDING), "seed_per_image_s != padded + clip"


def test_quick_benchmark_reports_targets_and_setup(quick_report, clip_checkpoint, resnext_checkpoint):
    targets = quick_report["targets"]
    for key in ("clip_over_resnext", "seed_over_ours", "head_speedup", "clip_efficiency", "resnext_efficiency"):
        assert isinstance(targets[key]["met"], bool), f"target of {key}: {targets[key]}"
    assert isinstance(targets["jpeg_draft_ms"]["met"], bool), targets
    assert isinstance(targets["jpeg_full_over_draft"]["met"], bool), targets

    assert quick_report["weights"] == {"clip": clip_checkpoint.name, "resnext": resnext_checkpoint.name}
    assert quick_report["head_classes"] == 20
    assert quick_report["threads"] >= 1
    assert quick_report["device"].startswith("cpu")
    # The trimmed head must be the padded head, or the speedup would be meaningless.
    assert quick_report["head_max_abs_difference"] < 1e-4
    assert any("estimates" in note for note in quick_report["notes"]), quick_report["notes"]
