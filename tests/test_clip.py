"""CLIP zero-shot: exactness against open_clip's own code paths, QuickGELU, and the head cache."""

from __future__ import annotations

import logging
import warnings

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

import classifiers.clip as clip_module
from classifiers import ClipZeroShot, HeadCache, LabelsError, WeightsError, load_clip, load_image
import classifiers.heads as heads_module
from classifiers.heads import (
    TEMPLATE_SETS,
    build_zero_shot_head,
    encode_text_shared_prefix,
    encode_text_trimmed,
    head_cache_key,
    shared_prefix_length,
    supports_shared_prefix,
)
from classifiers.weights import CLIP_VARIANTS, DEFAULT_CLIP

from conftest import ASSETS

SOME_CLASSES = IMAGENET_CLASSNAMES[:12]
FEW_CLASSES = IMAGENET_CLASSNAMES[100:106]


def with_cache(clip_model: ClipZeroShot, cache: HeadCache | None) -> ClipZeroShot:
    """The same loaded network behind a fresh wrapper: empty in-memory heads, the given disk cache."""
    return ClipZeroShot(
        clip_model.model,
        clip_model.preprocess,
        clip_model.tokenizer,
        variant=clip_model.variant,
        device=clip_model.device,
        checkpoint=clip_model.checkpoint,
        head_cache=cache,
    )


def reference_probabilities(clip_model, image, classnames, templates) -> torch.Tensor:
    """open_clip's documented zero-shot path: build_zero_shot_classifier, then scaled cosine logits."""
    model = clip_model.model
    with torch.no_grad():
        head = open_clip.build_zero_shot_classifier(
            model, clip_model.tokenizer, classnames, templates, num_classes_per_batch=8, device="cpu"
        )
        features = model.encode_image(clip_model.preprocess(image).unsqueeze(0), normalize=True)
        return (model.logit_scale.exp() * features @ head).softmax(dim=-1)[0]


@pytest.mark.parametrize(
    "prompts",
    [
        ["a photo of a cat.", "dog", "a photo of a large red double-decker bus parked in the street."],
        # Longer than the context: the tokenizer truncates to 77 tokens, so nothing is trimmed.
        ["a photo of " + "a very long and winding description " * 12, "x"],
    ],
    ids=["short", "full-context"],
)
def test_trimmed_text_encoder_matches_encode_text(clip_model, prompts):
    tokens = clip_model.tokenizer(prompts)
    with torch.no_grad():
        expected = clip_model.model.encode_text(tokens, normalize=True)
        actual = encode_text_trimmed(clip_model.model, tokens)
    difference = (actual - expected).abs().max().item()
    assert difference < 1e-4, f"trimmed encoding differs from open_clip's by {difference}"


@pytest.mark.parametrize(
    "prompts, prefix",
    [
        # "<start_of_text> a photo of a" is shared.
        (["a photo of a cat.", "a photo of a dog.", "a photo of a large red double-decker bus."], 5),
        # One prompt is the shared prefix itself: the prefix stops before its end-of-text token.
        (["a photo of a", "a photo of a goldfish."], 5),
        # Truncated to 77 tokens: every prompt fills the context.
        (["a photo of a " + "very long and winding description " * 12, "a photo of a " + "cat sitting on a mat " * 15], 5),
        # Only the start token is shared: encode_text_trimmed does the work.
        (["a photo of a cat.", "itap of a dog."], 1),
    ],
    ids=["one-template", "prompt-is-prefix", "full-context", "no-shared-words"],
)
def test_shared_prefix_encoder_matches_encode_text(clip_model, prompts, prefix):
    tokens = clip_model.tokenizer(prompts)
    assert shared_prefix_length(tokens) == prefix
    with torch.no_grad():
        expected = clip_model.model.encode_text(tokens, normalize=True)
        actual = encode_text_shared_prefix(clip_model.model, tokens)
    difference = (actual - expected).abs().max().item()
    assert difference < 1e-4, f"shared-prefix encoding differs from open_clip's by {difference}"


def test_text_tower_supports_shared_prefix(clip_model):
    assert supports_shared_prefix(clip_model.model)
    # open_clip's CustomResidualAttentionBlock has another layout, so it is not read block by block.
    custom = open_clip.create_model("ViT-B-32-quickgelu", text_cfg={"layers": 1, "width": 64, "heads": 2})
    custom.transformer.resblocks[0] = open_clip.transformer.CustomResidualAttentionBlock(64, 2)
    assert not supports_shared_prefix(custom)


# With a batch size that divides the class count, no batch spans two templates.
@pytest.mark.parametrize("template_set, classnames, batch_size", [("1", SOME_CLASSES, None), ("7", FEW_CLASSES, 3)])
def test_head_build_uses_shared_prefix(clip_model, monkeypatch, template_set, classnames, batch_size):
    templates = TEMPLATE_SETS[template_set]
    with torch.no_grad():
        expected = open_clip.build_zero_shot_classifier(
            clip_model.model, clip_model.tokenizer, classnames, templates, num_classes_per_batch=8, device="cpu"
        )
    fallback_batches: list[int] = []
    fallback = heads_module.encode_text_trimmed

    def recording_fallback(model, tokens):
        fallback_batches.append(len(tokens))
        return fallback(model, tokens)

    monkeypatch.setattr(heads_module, "encode_text_trimmed", recording_fallback)
    head = build_zero_shot_head(
        clip_model.model, clip_model.tokenizer, classnames, templates, device=torch.device("cpu"), batch_size=batch_size
    )

    assert (head - expected).abs().max().item() < 1e-4
    assert fallback_batches == [], "a batch of one template's prompts was encoded without its shared prefix"


@pytest.mark.parametrize("template_set, classnames", [("1", SOME_CLASSES), ("7", FEW_CLASSES)])
def test_zero_shot_probabilities_match_open_clip_reference(clip_model, template_set, classnames):
    image = load_image(ASSETS / "cat.jpg")
    templates = TEMPLATE_SETS[template_set]
    expected = reference_probabilities(clip_model, image, classnames, templates)

    result = clip_model.classify(image, top_k=len(classnames), classnames=classnames, templates=template_set)

    assert len(result.predictions) == len(classnames), "top-k equal to the class count returns every class"
    for prediction in result.predictions:
        assert prediction.label == classnames[prediction.index], "label and index disagree"
        reference = expected[prediction.index].item()
        assert abs(prediction.probability - reference) < 1e-4, f"{prediction.label}: {prediction.probability} vs {reference}"
    ranked = [p.probability for p in result.predictions]
    assert ranked == sorted(ranked, reverse=True), "predictions are not ranked by probability"


def test_imagenet_top5_is_ranked_with_timings(clip_model):
    result = clip_model.classify(load_image(ASSETS / "coffee.jpg"), top_k=5)

    assert [p.label for p in result.predictions] == [IMAGENET_CLASSNAMES[p.index] for p in result.predictions]
    assert len(result.predictions) == 5
    assert 0 < sum(p.probability for p in result.predictions) <= 1.0 + 1e-6
    assert result.timings_ms["inference"] > 0, "inference time was not measured"
    assert result.timings_ms["preprocess"] > 0, "preprocess time was not measured"
    assert result.device == "cpu"
    assert result.weights == "clip-vit-b-32-random.pt", "a local checkpoint is reported by its file name"


def _uses_quick_gelu(model: torch.nn.Module) -> bool:
    activations = [m for m in model.modules() if isinstance(m, (QuickGELU, torch.nn.GELU))]
    return bool(activations) and all(isinstance(m, QuickGELU) for m in activations)


def test_openai_variants_are_configured_with_quick_gelu():
    for variant in CLIP_VARIANTS.values():
        trained_with = (open_clip.get_pretrained_cfg(variant.architecture, variant.pretrained) or {}).get("quick_gelu", False)
        configured = open_clip.get_model_config(variant.architecture).get("quick_gelu", False)
        assert configured == trained_with, f"{variant.key}: config quick_gelu={configured}, weights trained with {trained_with}"
    assert CLIP_VARIANTS[DEFAULT_CLIP].architecture.endswith("-quickgelu")


def test_local_checkpoint_model_uses_quick_gelu(clip_model):
    assert _uses_quick_gelu(clip_model.model), "the model from a local checkpoint must use QuickGELU"


def test_download_path_builds_quick_gelu_without_mismatch_warning(monkeypatch, clip_checkpoint, caplog):
    # Stand in for the network: open_clip's downloader returns our local file, so the
    # tag-based code path (configuration, QuickGELU check, preprocessing) runs for real.
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda config, cache_dir=None: str(clip_checkpoint))
    monkeypatch.delenv("CLIP_CHECKPOINT", raising=False)

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        classifier = load_clip(DEFAULT_CLIP, device="cpu", warm_up=False)

    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "QuickGELU" in m], f"QuickGELU mismatch reported: {messages}"
    assert _uses_quick_gelu(classifier.model), "the downloaded model must use QuickGELU"
    assert classifier.weights_name == "openai"


def test_local_checkpoint_loads_without_quick_gelu_warning(clip_checkpoint, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        load_clip(checkpoint=clip_checkpoint, device="cpu", warm_up=False)
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if "QuickGELU" in m], f"QuickGELU mismatch reported: {messages}"


def test_local_checkpoint_uses_the_pretrained_tags_preprocessing(monkeypatch, clip_checkpoint, clip_model):
    monkeypatch.setattr(open_clip.factory, "download_pretrained", lambda config, cache_dir=None: str(clip_checkpoint))
    monkeypatch.delenv("CLIP_CHECKPOINT", raising=False)
    downloaded = load_clip(DEFAULT_CLIP, device="cpu", warm_up=False)
    image = load_image(ASSETS / "astronaut.jpg")
    assert torch.equal(downloaded.preprocess(image), clip_model.preprocess(image)), "preprocessing differs by source"


def test_download_failure_names_file_and_variable(monkeypatch):
    def fail(config, cache_dir=None):
        raise RuntimeError("Failed to download weights for tag 'openai': no network")

    monkeypatch.setattr(open_clip.factory, "download_pretrained", fail)
    monkeypatch.delenv("CLIP_CHECKPOINT", raising=False)
    with pytest.raises(WeightsError) as raised:
        load_clip(DEFAULT_CLIP, device="cpu", warm_up=False)
    message = str(raised.value)
    assert "CLIP ViT-B/32" in message, message
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in message, message
    assert "CLIP_CHECKPOINT" in message, message


def test_second_head_build_reads_the_disk_cache(clip_model, tmp_path, monkeypatch):
    cache = HeadCache(tmp_path)
    head = with_cache(clip_model, cache).zero_shot_head(FEW_CLASSES)
    assert len(list(tmp_path.glob("*.pt"))) == 1, "the head was not written to the cache folder"

    def must_not_build(*args, **kwargs):
        raise AssertionError("the text encoder ran although the head was cached")

    monkeypatch.setattr(clip_module, "build_zero_shot_head", must_not_build)
    second = with_cache(clip_model, cache)
    assert torch.equal(second.zero_shot_head(FEW_CLASSES), head), "the cached head differs from the built one"


def test_head_is_built_once_per_model_in_memory(clip_model, monkeypatch):
    labels = ["red apple", "green pear", "yellow banana"]
    classifier = with_cache(clip_model, None)  # no disk cache: only the in-memory copy can answer
    first = classifier.zero_shot_head(labels)
    monkeypatch.setattr(clip_module, "build_zero_shot_head", lambda *a, **k: pytest.fail("head rebuilt"))
    assert classifier.zero_shot_head(labels) is first


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other_key", "wrong_shape", "not_normalised"])
def test_damaged_head_cache_file_is_rebuilt(clip_model, tmp_path, damage):
    cache = HeadCache(tmp_path)
    classifier = with_cache(clip_model, cache)
    good = classifier.zero_shot_head(FEW_CLASSES)
    (path,) = tmp_path.glob("*.pt")
    key = head_cache_key(
        architecture=classifier.variant.architecture,
        weights_id=classifier.weights_id(),
        classnames=FEW_CLASSES,
        templates=TEMPLATE_SETS["1"],
        dtype=torch.float32,
    )
    if damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "other_key":
        torch.save({"key": key | {"open_clip": "0.0.1"}, "head": good.cpu()}, path)
    elif damage == "wrong_shape":
        torch.save({"key": key, "head": good.cpu()[:, :3]}, path)
    else:
        torch.save({"key": key, "head": good.cpu() * 3}, path)

    assert cache.load(key, embed_dim=good.shape[0]) is None, f"a {damage} cache file was trusted"
    fresh = with_cache(clip_model, cache)
    assert torch.allclose(fresh.zero_shot_head(FEW_CLASSES), good, atol=1e-6), "rebuilt head differs"
    assert cache.load(key, embed_dim=good.shape[0]) is not None, "the rebuilt head was not written back"


def test_head_cache_key_changes_with_weights_and_labels():
    base = dict(architecture="ViT-B-32-quickgelu", weights_id="sha256:aa", classnames=["a", "b"],
                templates=TEMPLATE_SETS["1"], dtype=torch.float32)
    cache = HeadCache("/unused")
    paths = {
        cache.path_for(head_cache_key(**base)),
        cache.path_for(head_cache_key(**(base | {"weights_id": "sha256:bb"}))),
        cache.path_for(head_cache_key(**(base | {"classnames": ["a", "c"]}))),
        cache.path_for(head_cache_key(**(base | {"templates": TEMPLATE_SETS["7"]}))),
    }
    assert len(paths) == 4, "different weights, labels or templates must not share a cache file"


def test_head_build_reports_progress(clip_model):
    calls = []
    build_zero_shot_head(
        clip_model.model, clip_model.tokenizer, FEW_CLASSES, TEMPLATE_SETS["7"],
        device=torch.device("cpu"), progress=lambda done, total: calls.append((done, total)), batch_size=16,
    )
    assert calls[-1] == (42, 42), f"progress did not reach the end: {calls}"
    assert [done for done, _ in calls] == sorted(done for done, _ in calls), "progress went backwards"


def test_empty_label_list_is_rejected(clip_model):
    with pytest.raises(LabelsError):
        clip_model.zero_shot_head([])


def test_custom_labels_rank_only_those_labels(clip_model):
    labels = ["a cat", "a rocket", "a cup of coffee"]
    result = clip_model.classify(load_image(ASSETS / "rocket.jpg"), classnames=labels)
    assert sorted(p.label for p in result.predictions) == sorted(labels), "top-k over 3 labels returns those 3"
    assert abs(sum(p.probability for p in result.predictions) - 1.0) < 1e-5, "probabilities over all labels sum to 1"
