"""Shared fixtures: random-weight checkpoints of the real architectures, written once per test session.

No test downloads weights. The checkpoints below go through the same
local-checkpoint path (``CLIP_CHECKPOINT``/``RESNEXT_CHECKPOINT``) that
offline users take, so loading, preprocessing and inference are the product's
own code; only the weight values are random.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Set before anything imports huggingface_hub or torch.hub, so that a test that
# forgets a checkpoint fails at once instead of trying the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")

import open_clip  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from classifiers import HeadCache, load_clip, load_resnext  # noqa: E402
from classifiers.weights import CLIP_CHECKPOINT_ENV, CLIP_VARIANTS, DEFAULT_CLIP, RESNEXT_CHECKPOINT_ENV  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ASSETS = REPO / "assets"
SAMPLE_IMAGES = sorted(p for p in ASSETS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def checkpoint_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("checkpoints")


@pytest.fixture(scope="session")
def clip_checkpoint(checkpoint_dir) -> Path:
    """A random-weight open_clip state dict of the default CLIP architecture."""
    torch.manual_seed(0)
    model = open_clip.create_model(CLIP_VARIANTS[DEFAULT_CLIP].architecture, pretrained=None)
    path = checkpoint_dir / "clip-vit-b-32-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def resnext_checkpoint(checkpoint_dir) -> Path:
    """A random-weight state dict of torchvision's resnext50_32x4d."""
    torch.manual_seed(0)
    model = torchvision.models.resnext50_32x4d(weights=None)
    path = checkpoint_dir / "resnext50_32x4d-random.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def head_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("zero-shot-heads")


@pytest.fixture(scope="session", autouse=True)
def offline_environment(clip_checkpoint, resnext_checkpoint, head_cache_dir, tmp_path_factory):
    """Point the app, the CLI and their subprocesses at the random checkpoints and a temporary head cache."""
    saved = dict(os.environ)
    os.environ[CLIP_CHECKPOINT_ENV] = str(clip_checkpoint)
    os.environ[RESNEXT_CHECKPOINT_ENV] = str(resnext_checkpoint)
    os.environ["ZERO_SHOT_HEAD_CACHE"] = str(head_cache_dir)
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def clip_model(clip_checkpoint, head_cache_dir):
    return load_clip(checkpoint=clip_checkpoint, device="cpu", head_cache=HeadCache(head_cache_dir))


@pytest.fixture(scope="session")
def resnext_model(resnext_checkpoint):
    return load_resnext(checkpoint=resnext_checkpoint, device="cpu")
