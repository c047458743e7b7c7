"""ResNeXt: exactness against torchvision's documented path, and every way a checkpoint can be bad."""

from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision
from torchvision.models import ResNeXt50_32X4D_Weights

from classifiers import WeightsError, load_clip, load_image, load_resnext

from conftest import SAMPLE_IMAGES

WEIGHTS = ResNeXt50_32X4D_Weights.IMAGENET1K_V2


@pytest.fixture(scope="module")
def reference_model(resnext_checkpoint):
    model = torchvision.models.resnext50_32x4d(weights=None)
    model.load_state_dict(torch.load(resnext_checkpoint, weights_only=True))
    return model.eval()


@pytest.mark.parametrize("path", SAMPLE_IMAGES[:4], ids=lambda p: p.name)
def test_probabilities_match_torchvision_reference(resnext_model, reference_model, path):
    image = load_image(path)
    with torch.no_grad():
        expected = reference_model(WEIGHTS.transforms()(image).unsqueeze(0)).softmax(dim=-1)[0]

    result = resnext_model.classify(image, top_k=5)

    expected_top = expected.topk(5)
    assert [p.index for p in result.predictions] == expected_top.indices.tolist(), "top-5 classes differ"
    for prediction in result.predictions:
        difference = abs(prediction.probability - expected[prediction.index].item())
        assert difference < 1e-5, f"{prediction.label}: off by {difference}"


def test_labels_come_from_the_weights_categories(resnext_model):
    result = resnext_model.classify(load_image(SAMPLE_IMAGES[0]), top_k=5)
    categories = WEIGHTS.meta["categories"]
    assert [p.label for p in result.predictions] == [categories[p.index] for p in result.predictions]
    assert result.weights == "resnext50_32x4d-random.pth", "a local checkpoint is reported by its file name"
    assert result.model == "ResNeXt-50 32x4d"
    assert set(result.timings_ms) >= {"preprocess", "inference"}


def test_checkpoint_of_another_architecture_is_rejected(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsError) as raised:
        load_resnext(checkpoint=path, device="cpu", warm_up=False)
    message = str(raised.value)
    assert str(path) in message, message
    assert "resnext50_32x4d" in message, message


def test_clip_checkpoint_of_another_architecture_is_rejected(tmp_path, resnext_checkpoint):
    with pytest.raises(WeightsError) as raised:
        load_clip(checkpoint=resnext_checkpoint, device="cpu", warm_up=False)
    message = str(raised.value)
    assert str(resnext_checkpoint) in message, message
    assert "ViT-B-32-quickgelu" in message, message


@pytest.mark.parametrize("loader", [load_resnext, load_clip], ids=["resnext", "clip"])
def test_truncated_checkpoint_is_rejected(tmp_path, resnext_checkpoint, loader):
    path = tmp_path / "truncated.pth"
    path.write_bytes(resnext_checkpoint.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError) as raised:
        loader(checkpoint=path, device="cpu", warm_up=False)
    assert str(path) in str(raised.value)
    assert "truncated or corrupt" in str(raised.value), str(raised.value)


class _WritesMarker:
    """Unpickling this object would create a file: the test checks it never does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("loader", [load_resnext, load_clip], ids=["resnext", "clip"])
def test_checkpoint_with_pickled_code_is_refused(tmp_path, loader):
    marker = tmp_path / "code-ran"
    path = tmp_path / "malicious.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": _WritesMarker(marker)}, path)

    with pytest.raises(WeightsError) as raised:
        loader(checkpoint=path, device="cpu", warm_up=False)

    assert not marker.exists(), "loading the checkpoint ran code from it"
    assert "weights_only=True" in str(raised.value), str(raised.value)


@pytest.mark.parametrize("loader, variable", [(load_resnext, "RESNEXT_CHECKPOINT"), (load_clip, "CLIP_CHECKPOINT")])
def test_missing_checkpoint_file_names_the_variable(tmp_path, loader, variable):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(WeightsError) as raised:
        loader(checkpoint=missing, device="cpu", warm_up=False)
    assert str(missing) in str(raised.value)
    assert variable in str(raised.value)


def test_download_failure_names_url_and_variable(monkeypatch):
    def fail(self, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(type(WEIGHTS), "get_state_dict", fail)
    monkeypatch.delenv("RESNEXT_CHECKPOINT", raising=False)
    with pytest.raises(WeightsError) as raised:
        load_resnext(device="cpu", warm_up=False)
    message = str(raised.value)
    assert WEIGHTS.url in message, message
    assert "RESNEXT_CHECKPOINT=/path/to/resnext50_32x4d-1a0047aa.pth" in message, message
    assert "ResNeXt-50 32x4d" in message, message


def test_checkpoint_from_environment_is_used(monkeypatch, resnext_checkpoint):
    monkeypatch.setenv("RESNEXT_CHECKPOINT", str(resnext_checkpoint))
    classifier = load_resnext(device="cpu", warm_up=False)
    assert classifier.checkpoint == resnext_checkpoint
