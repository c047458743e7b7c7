"""The command line: JSON contract, text output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from classifiers.cli import main

from conftest import ASSETS, REPO


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "classifiers", *args],
        cwd=REPO,
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_json_reports_both_models_and_the_bad_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("this is not a picture")

    completed = run_cli("--json", str(ASSETS / "cat.jpg"), str(bad), str(ASSETS / "owl.png"))

    assert completed.returncode == 1, f"one bad image must give exit 1: {completed.stderr}"
    document = json.loads(completed.stdout)
    images = document["images"]
    assert [image["source"] for image in images] == [str(ASSETS / "cat.jpg"), str(bad), str(ASSETS / "owl.png")]
    assert images[1]["error"].startswith(f"{bad}: not an image file"), images[1]
    for image in (images[0], images[2]):
        for model in ("clip", "resnext"):
            report = image[model]
            assert set(report) >= {"model", "weights", "device", "predictions", "timings_ms"}, report.keys()
            assert len(report["predictions"]) == 5, f"{model}: expected the top 5"
            assert set(report["predictions"][0]) >= {"label", "probability"}
            probabilities = [p["probability"] for p in report["predictions"]]
            assert probabilities == sorted(probabilities, reverse=True), f"{model}: not ranked"
            assert report["timings_ms"]["inference"] > 0 and report["timings_ms"]["preprocess"] > 0
            assert report["device"] == "cpu"
    assert images[0]["clip"]["weights"] == "clip-vit-b-32-random.pt"


def test_all_good_images_exit_zero_with_text_output():
    completed = run_cli("--top-k", "3", str(ASSETS / "coffee.jpg"))
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    assert lines[0] == str(ASSETS / "coffee.jpg")
    assert any(line.strip().startswith("CLIP ViT-B/32 [clip-vit-b-32-random.pt] on cpu") for line in lines), lines
    assert any(line.strip().startswith("ResNeXt-50 32x4d") for line in lines), lines
    assert sum(line.strip()[:2] in ("1.", "2.", "3.") for line in lines) == 6, "3 ranked labels per model"


def test_missing_checkpoint_exits_two_with_the_variable_named(tmp_path):
    completed = run_cli(str(ASSETS / "cat.jpg"), env={"CLIP_CHECKPOINT": str(tmp_path / "missing.pt")})
    assert completed.returncode == 2
    assert "CLIP_CHECKPOINT" in completed.stderr and "missing.pt" in completed.stderr, completed.stderr
    assert completed.stdout == ""


def test_both_missing_checkpoints_named_in_one_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLIP_CHECKPOINT", str(tmp_path / "missing-clip.pt"))
    monkeypatch.setenv("RESNEXT_CHECKPOINT", str(tmp_path / "missing-resnext.pth"))

    assert main([str(ASSETS / "cat.jpg")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2, errors
    assert "CLIP_CHECKPOINT" in errors[0], errors[0]
    assert "missing-clip.pt" in errors[0], errors[0]
    assert "RESNEXT_CHECKPOINT" in errors[1], errors[1]
    assert "missing-resnext.pth" in errors[1], errors[1]


def test_hub_warning_printed_once():
    script = (
        "import logging\n"
        "from huggingface_hub.utils import logging as hub_logging\n"
        "from classifiers.logs import configure_logging\n"
        "hub_logging.get_logger('huggingface_hub.file_download').warning('probe warning')\n"
        "configure_logging(logging.WARNING, '%(levelname)s %(message)s')\n"
        "hub_logging.get_logger('huggingface_hub.file_download').warning('second warning')\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)

    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.splitlines()
    assert lines.count("probe warning") == 1, "before: the hub library's own handler prints it"
    assert [line for line in lines if "second warning" in line] == ["WARNING second warning"], lines


def test_usage_error_exits_two():
    completed = run_cli("--top-k", "many", str(ASSETS / "cat.jpg"))
    assert completed.returncode == 2
    assert "--top-k" in completed.stderr


def test_custom_labels_are_used_for_clip_only(capsys):
    status = main(["--json", "--labels", "cat, rocket ,cup of coffee,cat", str(ASSETS / "rocket.jpg")])
    assert status == 0
    document = json.loads(capsys.readouterr().out)
    assert document["clip_labels"] == "custom"
    image = document["images"][0]
    assert sorted(p["label"] for p in image["clip"]["predictions"]) == ["cat", "cup of coffee", "rocket"]
    assert len(image["resnext"]["predictions"]) == 5, "ResNeXt keeps its ImageNet top-5"
    assert "agreement" not in image, "custom labels cannot be matched to ImageNet classes"


def test_labels_file_with_one_label_is_a_usage_error(tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("only one\n\n")
    assert main(["--labels-file", str(labels), str(ASSETS / "cat.jpg")]) == 2
    assert "at least two" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--templates", "--clip-model", "--resnext-model"])
def test_unknown_choice_is_a_usage_error(flag):
    with pytest.raises(SystemExit) as raised:
        main([flag, "nonsense", str(ASSETS / "cat.jpg")])
    assert raised.value.code == 2
