"""Zero-shot heads: one normalised text embedding per class, built once and cached on disk.

A zero-shot head is the matrix of class embeddings that CLIP image features are
compared against. Building it means encoding every class name in every prompt
template with the text encoder, which costs far more than classifying an image.
So a head is built once per (model, weights, classes, templates) and kept in
memory and in a disk cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES, SIMPLE_IMAGENET_TEMPLATES

_logger = logging.getLogger(__name__)

Template = Callable[[str], str]
ProgressCallback = Callable[[int, int], None]

# The prompt sets offered. "1" is the prompt "a photo of a {}.", taken from
# open_clip's OPENAI_IMAGENET_TEMPLATES, the 80 prompts OpenAI published with CLIP.
TEMPLATE_SETS: dict[str, tuple[Template, ...]] = {
    "1": tuple(t for t in OPENAI_IMAGENET_TEMPLATES if t("{}") == "a photo of a {}."),
    "7": tuple(SIMPLE_IMAGENET_TEMPLATES),
    "80": tuple(OPENAI_IMAGENET_TEMPLATES),
}
DEFAULT_TEMPLATES = "1"

HEAD_CACHE_ENV = "ZERO_SHOT_HEAD_CACHE"
# Bump when the file layout or the way heads are computed changes, so old files are rebuilt.
HEAD_FORMAT_VERSION = 1

# Prompts encoded per forward pass. On a GPU, 256 prompts of 77 tokens need about
# 1 GB of activations for ViT-L/14. On the CPU smaller batches are faster, because
# each batch is padded to its longest prompt. Building the 1000-class 1-template
# head on a 2-core CPU took 3.0-3.3 s at 64 and 4.3-4.5 s at 256 (docs/BENCHMARK.md).
TEXT_BATCH_SIZE = 256
CPU_TEXT_BATCH_SIZE = 64


def template_strings(templates: Sequence[Template]) -> list[str]:
    """Return the templates as format strings, such as ``"a photo of a {}."``."""
    return [t("{}") for t in templates]


def supports_trimmed_text(model: torch.nn.Module) -> bool:
    """Tell whether ``model``'s text tower can run on token ids cut after the longest prompt.

    Trimming is exact only for a causal text transformer pooled at the
    end-of-text token: then no position attends to the padding after it.
    """
    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "text_pool_type", None) == "argmax"
        and getattr(model, "attn_mask", None) is not None
    )


def encode_text_trimmed(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Encode token ids like ``model.encode_text(tokens, normalize=True)``, skipping trailing padding.

    CLIP's text transformer is causal, so the tokens after the end-of-text
    token never influence it. Running it on the ids cut to the longest prompt
    in the batch (with the positional embedding and mask cut to match) gives
    the same embeddings as the full 77-token pass, several times faster.
    """
    if not supports_trimmed_text(model):
        return model.encode_text(tokens, normalize=True)

    # open_clip pools at argmax(token id): the end-of-text token has the highest id.
    length = int(tokens.argmax(dim=-1).max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()

    x = model.token_embedding(tokens).to(cast_dtype)  # [batch, length, width]
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    return _pool_and_project(model, x, tokens.argmax(dim=-1))


def _pool_and_project(model: torch.nn.Module, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Take each row's hidden state at its end-of-text position, project it and normalise it, as open_clip does."""
    x = model.ln_final(hidden)
    x = x[torch.arange(x.shape[0], device=x.device), positions]  # [batch, width]
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return F.normalize(x, dim=-1)


def supports_shared_prefix(model: torch.nn.Module) -> bool:
    """Tell whether ``encode_text_shared_prefix`` can run ``model``'s text tower block by block.

    It reads the weights of open_clip's standard ``ResidualAttentionBlock``
    (pre-norm, one packed q/k/v projection). Models with any other block are
    encoded by ``encode_text_trimmed`` instead.
    """
    if not supports_trimmed_text(model):
        return False
    for block in model.transformer.resblocks:
        attention = getattr(block, "attn", None)
        if (
            type(block) is not ResidualAttentionBlock
            or hasattr(block, "ln_1_kv")
            or not isinstance(attention, torch.nn.MultiheadAttention)
            or attention.in_proj_weight is None
            or attention.bias_k is not None
        ):
            return False
    return True


def shared_prefix_length(tokens: torch.Tensor) -> int:
    """Return how many leading token ids all rows of ``tokens`` share, stopping before the earliest end-of-text token."""
    earliest_end = int(tokens.argmax(dim=-1).min())
    differs = (tokens[:, :earliest_end] != tokens[:1, :earliest_end]).any(dim=0)
    return int(differs.int().argmax()) if differs.any() else earliest_end


def _split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, length, width = x.shape
    return x.view(batch, length, num_heads, width // num_heads).transpose(1, 2)  # [batch, heads, length, head_dim]


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    batch, num_heads, length, head_dim = x.shape
    return x.transpose(1, 2).reshape(batch, length, num_heads * head_dim)


def encode_text_shared_prefix(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Encode token ids like ``encode_text_trimmed``, running the prefix the prompts share only once.

    Prompts built from one template start with the same tokens: "<start_of_text>
    a photo of a" is 5 of the 9.2 tokens of the average ImageNet prompt. With a
    causal mask, the hidden states at those positions are the same for every
    prompt. So they are computed for one row, and each layer's keys and values
    there are reused by the remaining tokens of all prompts. Only the tokens
    after the prefix are run for the whole batch.
    """
    prefix = shared_prefix_length(tokens)
    if prefix < 2 or not supports_shared_prefix(model):
        return encode_text_trimmed(model, tokens)

    ends = tokens.argmax(dim=-1)
    length = int(ends.max()) + 1
    cast_dtype = model.transformer.get_cast_dtype()
    embedded = model.token_embedding(tokens[:, :length]).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    head_x = embedded[:1, :prefix]  # [1, prefix, width]
    x = embedded[:, prefix:]  # [batch, length - prefix, width]
    batch, rest, width = x.shape
    # The token at absolute position prefix + i attends to every position up to and including itself.
    visible = torch.ones(rest, prefix + rest, dtype=torch.bool, device=x.device).tril(diagonal=prefix)

    for block in model.transformer.resblocks:
        attention = block.attn
        heads = attention.num_heads

        q, k, v = F.linear(block.ln_1(head_x), attention.in_proj_weight, attention.in_proj_bias).split(width, dim=-1)
        head_k, head_v = _split_heads(k, heads), _split_heads(v, heads)
        attended = F.scaled_dot_product_attention(_split_heads(q, heads), head_k, head_v, is_causal=True)
        head_x = head_x + block.ls_1(attention.out_proj(_merge_heads(attended)))
        head_x = head_x + block.ls_2(block.mlp(block.ln_2(head_x)))

        q, k, v = F.linear(block.ln_1(x), attention.in_proj_weight, attention.in_proj_bias).split(width, dim=-1)
        k = torch.cat([head_k.expand(batch, -1, -1, -1), _split_heads(k, heads)], dim=2)
        v = torch.cat([head_v.expand(batch, -1, -1, -1), _split_heads(v, heads)], dim=2)
        attended = F.scaled_dot_product_attention(_split_heads(q, heads), k, v, attn_mask=visible)
        x = x + block.ls_1(attention.out_proj(_merge_heads(attended)))
        x = x + block.ls_2(block.mlp(block.ln_2(x)))

    return _pool_and_project(model, x, ends - prefix)


def build_zero_shot_head(
    model: torch.nn.Module,
    tokenizer: Callable,
    classnames: Sequence[str],
    templates: Sequence[Template],
    *,
    device: torch.device,
    progress: ProgressCallback | None = None,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Build a zero-shot head: for each class, the re-normalised mean of its prompts' text embeddings.

    Prompts are grouped by template and sorted by token length within each
    template, so that the prompts of a batch share their template's opening
    tokens (encoded once per batch) and are trimmed to a similar length.
    ``progress(done, total)`` is called after each batch.
    ``batch_size`` defaults to ``CPU_TEXT_BATCH_SIZE`` on the CPU and ``TEXT_BATCH_SIZE`` elsewhere.

    Returns:
        A float32 tensor of shape ``[embed_dim, num_classes]`` on ``device``.
    """
    if batch_size is None:
        batch_size = CPU_TEXT_BATCH_SIZE if device.type == "cpu" else TEXT_BATCH_SIZE
    prompts = [template(name) for name in classnames for template in templates]
    tokens = tokenizer(prompts)
    # Prompts are listed class by class, so prompt i comes from template i % len(templates).
    template_index = torch.arange(len(prompts)) % len(templates)
    order = torch.argsort(template_index * tokens.shape[1] + tokens.argmax(dim=-1), stable=True)

    embeddings: torch.Tensor | None = None
    total = len(prompts)
    with torch.inference_mode():
        for start in range(0, total, batch_size):
            batch_indices = order[start : start + batch_size]
            batch = encode_text_shared_prefix(model, tokens[batch_indices].to(device)).float()
            if embeddings is None:
                embeddings = torch.empty(total, batch.shape[1], device=device)
            embeddings[batch_indices.to(device)] = batch
            if progress is not None:
                progress(min(start + batch_size, total), total)

    assert embeddings is not None, "at least one class name and one template are required"
    per_class = embeddings.reshape(len(classnames), len(templates), -1).mean(dim=1)
    return F.normalize(per_class, dim=-1).T.contiguous()


def default_cache_dir() -> Path:
    """Return the folder for cached heads: ``$ZERO_SHOT_HEAD_CACHE``, else the user's cache folder."""
    override = os.environ.get(HEAD_CACHE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or os.path.join(Path.home(), ".cache")
    return Path(base) / "clip-vs-resnext" / "zero-shot-heads"


def head_cache_key(
    *, architecture: str, weights_id: str, classnames: Sequence[str], templates: Sequence[Template], dtype: torch.dtype
) -> dict:
    """Return everything a cached head depends on, as a JSON-serialisable dict."""
    return {
        "format": HEAD_FORMAT_VERSION,
        "open_clip": open_clip.__version__,
        "architecture": architecture,
        "weights": weights_id,
        "dtype": str(dtype),
        "templates": template_strings(templates),
        "classnames": list(classnames),
    }


class HeadCache:
    """Zero-shot heads stored as ``<sha256 of key>.pt`` files in one folder.

    A file is trusted only if it loads with ``weights_only=True``, repeats the
    full key it was stored under, and contains a finite tensor of the expected
    shape with unit-norm columns. Anything else is rebuilt and overwritten.
    Writes go to a temporary file that is renamed into place, so a reader
    never sees half a file, even with several server processes.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else default_cache_dir()

    def path_for(self, key: dict) -> Path:
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        return self.folder / f"{digest}.pt"

    def load(self, key: dict, *, embed_dim: int) -> torch.Tensor | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # any unreadable file is rebuilt, whatever torch.load raised
            _logger.warning("Zero-shot head cache file %s is unreadable (%s); rebuilding it", path, e)
            return None

        head = stored.get("head") if isinstance(stored, dict) else None
        expected_shape = (embed_dim, len(key["classnames"]))
        if not isinstance(stored, dict) or stored.get("key") != key:
            _logger.warning("Zero-shot head cache file %s is for another model or label set; rebuilding it", path)
            return None
        if not isinstance(head, torch.Tensor) or tuple(head.shape) != expected_shape or head.dtype != torch.float32:
            _logger.warning("Zero-shot head cache file %s has the wrong shape or dtype; rebuilding it", path)
            return None
        norms = head.norm(dim=0)
        if not torch.isfinite(head).all() or not torch.allclose(norms, torch.ones_like(norms), atol=1e-3):
            _logger.warning("Zero-shot head cache file %s contains invalid values (not finite or not unit norm); rebuilding it", path)
            return None
        _logger.info("Read zero-shot head from %s", path)
        return head

    def save(self, key: dict, head: torch.Tensor) -> None:
        path = self.path_for(key)
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as f:
                temporary = Path(f.name)
                torch.save({"key": key, "head": head.detach().float().cpu().contiguous()}, f)
            os.replace(temporary, path)
        except OSError as e:
            # A read-only or full disk costs only speed: the head stays in memory.
            _logger.warning("Could not write zero-shot head cache file %s (%s); continuing without it", path, e)
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            return
        _logger.info("Wrote zero-shot head to %s", path)
