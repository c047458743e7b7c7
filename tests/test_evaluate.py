"""The evaluate command: class folder labels, counting, subsets, batched exactness and the report.

With random weights the accuracies are meaningless, so the tests check the
counting against per-image predictions, the bounds of the fractions, the labels
and the report's shape, not the accuracy itself.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter

import numpy as np
import pytest
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image
from timm.data import ImageNetInfo

from classifiers import evaluate
from classifiers.cli import main
from classifiers.evaluate import (
    ClipBatchClassifier,
    FolderError,
    LabelledImage,
    ResNeXtBatchClassifier,
    class_index,
    evaluate_images,
    find_images,
    subset_classes,
)
from classifiers.images import load_image

from conftest import SAMPLE_IMAGES

# Three classes of ImageNet-R, named both ways: goldfish by WordNet id, and
# great white shark (2) and golden retriever (207) by index.
CLASS_FOLDERS = {"n01443537": 1, "2": 2, "207": 207}
CORRUPT_FILE = "207/zz-corrupt.jpg"


def _generated_images() -> list[Image.Image]:
    gradient = np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))
    noise = np.random.default_rng(0).integers(0, 256, size=(80, 120, 3), dtype=np.uint8)
    return [
        Image.fromarray(gradient, mode="L").convert("RGB"),
        Image.fromarray(noise, mode="RGB"),
        Image.new("RGB", (50, 70), (200, 30, 30)),
    ]


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory):
    """Three class folders of three images each, one corrupt file, and files the listing must ignore."""
    root = tmp_path_factory.mktemp("evaluation")
    folders = [root / name for name in CLASS_FOLDERS]
    for folder in folders:
        folder.mkdir()

    # Six sample images, copied or shrunk, then three generated ones: three per class.
    for number, path in enumerate(SAMPLE_IMAGES[:6]):
        target = folders[number % 3] / f"sample-{number}{path.suffix}"
        if number % 2:
            shutil.copy(path, target)
        else:
            image = load_image(path)
            image.resize((image.width // 3, image.height // 3)).save(target)
    for number, image in enumerate(_generated_images()):
        image.save(folders[number] / f"generated-{number}.png")

    (root / CORRUPT_FILE).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    (folders[0] / "notes.txt").write_text("not an image suffix, so not listed")
    (folders[1] / ".hidden.png").write_bytes(b"hidden files are not listed")
    (root / ".cache").mkdir()
    return root


@pytest.fixture
def loaded_models(monkeypatch, clip_model, resnext_model):
    """Make the command use the session's models instead of loading them again, and record the load arguments."""
    calls = {}

    def fake_load_clip(variant, **kwargs):
        calls["clip"] = (variant, kwargs)
        return clip_model

    def fake_load_resnext(variant, **kwargs):
        calls["resnext"] = (variant, kwargs)
        return resnext_model

    monkeypatch.setattr(evaluate, "load_clip", fake_load_clip)
    monkeypatch.setattr(evaluate, "load_resnext", fake_load_resnext)
    return calls


# ---------------------------------------------------------------- labels


def test_class_index_matches_timm_list():
    wordnet_ids = ImageNetInfo().label_names()

    assert class_index("n01440764") == 0
    assert class_index("207") == 207
    assert class_index("0207") == 207, "leading zeros are allowed"
    assert wordnet_ids[207] == "n02099601"
    assert class_index("n02099601") == 207
    assert [class_index(wordnet_id) for wordnet_id in wordnet_ids] == list(range(1000))


@pytest.mark.parametrize("name", ["1000", "-1", "n99999999", "goldfish", "", "٣", "n01440764 "])
def test_class_index_rejects_other_names(name):
    assert class_index(name) is None


@pytest.mark.parametrize("subset", ["imagenet-r", "imagenet-a"])
def test_subset_classes_are_timm_indices(subset):
    classes = subset_classes(subset)

    assert len(classes) == 200
    assert len(set(classes)) == 200
    assert list(classes) == sorted(classes)
    assert all(0 <= index < 1000 for index in classes)
    assert 207 in classes, "golden retriever is in both subsets"


def test_subset_classes_rejects_unknown_subset():
    with pytest.raises(ValueError, match="imagenet-sketch"):
        subset_classes("imagenet-sketch")


# ---------------------------------------------------------------- folder listing


def test_find_images_labels_and_sorts(class_folder):
    listing = find_images(class_folder)

    assert listing.num_classes == 3
    assert listing.num_found == 10, "nine images and the corrupt .jpg"
    assert [image.label for image in listing.images] == [1] * 3 + [2] * 3 + [207] * 4
    for image in listing.images:
        assert CLASS_FOLDERS[image.path.parent.name] == image.label, image.path
    paths = [image.path for image in listing.images]
    assert paths == sorted(paths, key=lambda path: (CLASS_FOLDERS[path.parent.name], path))
    names = {path.name for path in paths}
    assert "notes.txt" not in names
    assert ".hidden.png" not in names
    assert "zz-corrupt.jpg" in names


def test_find_images_limit_spreads_over_classes(class_folder):
    everything = find_images(class_folder).images

    listing = find_images(class_folder, limit=4)

    assert listing.num_found == 10
    assert [image.label for image in listing.images] == [1, 1, 2, 207]
    first_of_each = [everything[0], everything[1], everything[3], everything[6]]
    assert listing.images == first_of_each, "the first images in sorted order, round-robin over the classes"


def test_find_images_rejects_unknown_folder(class_folder, tmp_path):
    shutil.copytree(class_folder, tmp_path / "data")
    (tmp_path / "data" / "cats").mkdir()

    with pytest.raises(FolderError) as raised:
        find_images(tmp_path / "data")

    assert "'cats'" in str(raised.value)
    assert "WordNet id" in str(raised.value)


def test_find_images_rejects_class_outside_subset(class_folder):
    with pytest.raises(FolderError) as raised:
        find_images(class_folder, classes=subset_classes("imagenet-a"))

    message = str(raised.value)
    assert "'n01443537'" in message, "goldfish (1) is not in ImageNet-A"
    assert "'2'" in message, "great white shark (2) is not in ImageNet-A"
    assert "'207'" not in message


def test_find_images_rejects_missing_and_empty_folders(tmp_path):
    with pytest.raises(FolderError, match="not found"):
        find_images(tmp_path / "missing")
    with pytest.raises(FolderError, match="no class sub-folders"):
        find_images(tmp_path)
    (tmp_path / "5").mkdir()
    with pytest.raises(FolderError, match="no image files"):
        find_images(tmp_path)


# ---------------------------------------------------------------- batched classifiers


@pytest.fixture(scope="module")
def sample_images():
    return [load_image(path) for path in SAMPLE_IMAGES[:2]]


def test_clip_batch_matches_classify(clip_model, sample_images):
    classes = subset_classes("imagenet-r")[:10]
    classnames = [IMAGENET_CLASSNAMES[i] for i in classes]
    batched = ClipBatchClassifier(clip_model, classes)

    probabilities = batched.probabilities(batched.pixels(sample_images)).cpu()

    assert probabilities.shape == (2, 10)
    for row, image in enumerate(sample_images):
        single = clip_model.classify(image, top_k=10, classnames=classnames)
        for prediction in single.predictions:
            difference = abs(probabilities[row, prediction.index].item() - prediction.probability)
            assert difference < 1e-5, f"image {row}, {prediction.label}: off by {difference}"


def test_resnext_batch_matches_classify(resnext_model, sample_images):
    batched = ResNeXtBatchClassifier(resnext_model)

    probabilities = batched.probabilities(batched.pixels(sample_images)).cpu()

    assert probabilities.shape == (2, 1000)
    for row, image in enumerate(sample_images):
        single = resnext_model.classify(image, top_k=5)
        for prediction in single.predictions:
            difference = abs(probabilities[row, prediction.index].item() - prediction.probability)
            assert difference < 1e-5, f"image {row}, {prediction.label}: off by {difference}"


def test_subset_predictions_stay_in_subset(clip_model, resnext_model, sample_images):
    classes = subset_classes("imagenet-r")
    for batched in (ClipBatchClassifier(clip_model, classes), ResNeXtBatchClassifier(resnext_model, classes)):
        top = batched.top_k(batched.pixels(sample_images), 5)
        probabilities = batched.probabilities(batched.pixels(sample_images[:1])).cpu()

        assert top.shape == (2, 5), batched.name
        assert set(top.flatten().tolist()) <= set(classes), f"{batched.name} predicted a class outside the subset"
        assert probabilities.shape == (1, 200), batched.name
        assert abs(probabilities.sum().item() - 1) < 1e-5, f"{batched.name}: not a softmax over the subset"


def _record_predictions(monkeypatch, classifier) -> list[list[int]]:
    """Record every ranked row the classifier returns, in order."""
    rows: list[list[int]] = []
    top_k = classifier.top_k

    def recording_top_k(pixels, k=5):
        top = top_k(pixels, k)
        rows.extend(top.tolist())
        return top

    monkeypatch.setattr(classifier, "top_k", recording_top_k)
    return rows


def test_evaluate_images_counts_match_predictions(monkeypatch, clip_model, resnext_model, class_folder):
    listing = find_images(class_folder)
    classes = sorted(CLASS_FOLDERS.values())
    classifiers = {"clip": ClipBatchClassifier(clip_model, classes), "resnext": ResNeXtBatchClassifier(resnext_model)}
    predictions = {key: _record_predictions(monkeypatch, classifier) for key, classifier in classifiers.items()}

    evaluation = evaluate_images(listing.images, classifiers, batch_size=4)

    assert evaluation.images == 9
    assert [skipped.path.name for skipped in evaluation.skipped] == ["zz-corrupt.jpg"]
    assert evaluation.class_images == {1: 3, 2: 3, 207: 3}
    labels = [image.label for image in listing.images if image.path.name != "zz-corrupt.jpg"]
    for key in classifiers:
        tally = evaluation.tallies[key]
        tops = predictions[key]
        assert len(tops) == 9, key
        expected_top1 = sum(top[0] == label for top, label in zip(tops, labels))
        expected_top5 = sum(label in top for top, label in zip(tops, labels))

        assert tally.images == 9, key
        assert tally.top1_correct == expected_top1, key
        assert tally.top5_correct == expected_top5, key
        expected_errors = Counter(label for top, label in zip(tops, labels) if top[0] != label)
        assert tally.errors == expected_errors, key
        assert tally.model_seconds > 0, key
    assert evaluation.tallies["clip"].top5 == 1.0, "with 3 candidate classes, top-5 always holds the true class"


def test_evaluate_images_without_decodable_images(resnext_model, tmp_path):
    broken = [tmp_path / "a.png", tmp_path / "b.jpg"]
    for path in broken:
        path.write_bytes(b"broken")
    items = [LabelledImage(path, 3) for path in broken]

    evaluation = evaluate_images(items, {"resnext": ResNeXtBatchClassifier(resnext_model)}, batch_size=1)

    assert evaluation.images == 0
    assert [skipped.path for skipped in evaluation.skipped] == broken
    assert evaluation.tallies["resnext"].top1 is None
    assert evaluation.tallies["resnext"].images_per_s is None


# ---------------------------------------------------------------- command line


def _check_model_report(report: dict, images: int, classes: set[int]) -> None:
    assert set(report) >= {"model", "weights", "device", "images", "top1", "top5", "images_per_s", "most_wrong"}
    assert report["images"] == images
    assert isinstance(report["top1"], float)
    assert isinstance(report["top5"], float)
    assert 0 <= report["top1"] <= report["top5"] <= 1
    assert isinstance(report["images_per_s"], float) and report["images_per_s"] > 0
    assert len(report["most_wrong"]) <= 5
    errors = [entry["errors"] for entry in report["most_wrong"]]
    assert errors == sorted(errors, reverse=True)
    for entry in report["most_wrong"]:
        assert set(entry) == {"index", "wordnet_id", "name", "errors", "images"}
        assert entry["index"] in classes
        assert entry["wordnet_id"] == ImageNetInfo().label_names()[entry["index"]]
        assert entry["name"] == IMAGENET_CLASSNAMES[entry["index"]]
        assert 1 <= entry["errors"] <= entry["images"] == 3


def test_cli_json_report_over_all_classes(loaded_models, class_folder, capsys):
    status = main(["evaluate", str(class_folder), "--json", "--batch-size", "4", "--device", "cpu"])

    output = capsys.readouterr()
    assert status == 0, output.err
    report = json.loads(output.out)
    assert report["images"] == 9
    assert report["classes"] == 3
    assert report["candidate_classes"] == 1000
    assert report["subset"] is None
    assert [entry["path"] for entry in report["skipped"]] == [str(class_folder / CORRUPT_FILE)]
    assert report["skipped"][0]["error"].startswith(f"{class_folder / CORRUPT_FILE}: not a readable image file")
    for key in ("clip", "resnext"):
        _check_model_report(report[key], 9, set(CLASS_FOLDERS.values()))
    assert loaded_models["clip"][1]["device"] == "cpu"
    assert loaded_models["resnext"][1]["device"] == "cpu"


def test_cli_text_table_with_subset_and_limit(loaded_models, class_folder, capsys):
    status = main(["evaluate", str(class_folder), "--subset", "imagenet-r", "--limit", "4"])

    output = capsys.readouterr()
    assert status == 0, output.err
    lines = output.out.splitlines()
    assert lines[0] == f"{class_folder}: 4 images of 3 classes evaluated, 0 files skipped"
    assert "the 200 classes of imagenet-r" in lines[1]
    header = next(line for line in lines if line.startswith("Model"))
    assert header.split() == ["Model", "Weights", "Top-1", "Top-5", "Images", "Images/s"]
    rows = [line for line in lines if line.startswith(("CLIP ViT-B/32 ", "ResNeXt-50 32x4d "))]
    assert len(rows) == 2, lines
    for row in rows:
        assert row.split()[-2] == "4", row


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{folder}/missing"], "not found"),
        (["{folder}", "--subset", "imagenet-a"], "not among the 200 classes"),
        (["{folder}/n01443537"], "no class sub-folders found"),
    ],
    ids=["missing folder", "class outside subset", "one class folder given"],
)
def test_cli_folder_errors_exit_2(class_folder, capsys, caplog, arguments, message):
    status = main(["evaluate", *(argument.format(folder=class_folder) for argument in arguments)])

    assert status == 2
    assert message in caplog.text
    assert capsys.readouterr().out == "", "no report on a folder error"


@pytest.mark.parametrize("option", ["--limit", "--batch-size"])
def test_cli_rejects_counts_below_one(class_folder, capsys, option):
    with pytest.raises(SystemExit) as raised:
        main(["evaluate", str(class_folder), option, "0"])

    assert raised.value.code == 2
    assert f"{option} must be at least 1" in capsys.readouterr().err
