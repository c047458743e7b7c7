"""CLIP vs ResNeXt: zero-shot and supervised ImageNet classification of the same images, side by side.

The page only: inputs, layout, charts and messages. Models, image decoding and
timing live in the ``classifiers`` package.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import altair as alt
import pandas as pd
import streamlit as st
import torch

from classifiers import (
    CLIP_VARIANTS,
    DEFAULT_CLIP,
    DEFAULT_RESNEXT,
    RESNEXT_VARIANTS,
    TEMPLATE_SETS,
    Classification,
    ClassifierError,
    ClipZeroShot,
    DecodedImage,
    HeadCache,
    ResNeXtClassifier,
    WeightsError,
    decode_image,
    load_clip,
    load_resnext,
)
from classifiers.devices import describe_device, select_device
from classifiers.images import MAX_PIXELS
from classifiers.labels import MAX_LABEL_CHARS, MAX_LABELS, parse_labels
from classifiers.results import shared_classes
from classifiers.weights import CLIP_CHECKPOINT_ENV, RESNEXT_CHECKPOINT_ENV, checkpoint_from_env

ASSETS = Path(__file__).resolve().parent / "assets"
SAMPLE_SUFFIXES = (".jpg", ".jpeg", ".png")
# SVG and HEIC are accepted so that the engine can explain why they are not supported,
# instead of the browser rejecting them without a reason.
UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "svg", "heic", "heif"]
TEMPLATE_NAMES = {"1": "1 prompt: “a photo of a {}.”", "7": "7 prompts (open_clip's set)", "80": "80 prompts (CLIP paper)"}
BAR_HEIGHT_PX = 34
# The same label column width in both charts keeps their 0-100 % axes aligned;
# a longer label is cut with an ellipsis and shown whole in the tooltip.
LABEL_WIDTH_PX = 150
IMAGE_WIDTH_PX = 320
# Narrower images are shown scaled up to this width, so that the caption under them fits on one line.
MIN_IMAGE_WIDTH_PX = 160
# A model that failed to load is tried again after this long, or when the user presses the retry button.
LOAD_RETRY_AFTER_S = 600
Model = TypeVar("Model", ClipZeroShot, ResNeXtClassifier)
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: str) -> str:
    """Escape Markdown so that file names, labels and messages from users show as typed.

    Streamlit renders the text of st.error, st.subheader and friends as Markdown;
    a backslash before every ASCII punctuation character turns that off.
    """
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)


@dataclass
class Settings:
    device: torch.device
    top_k: int
    clip_key: str
    resnext_key: str
    templates: str
    labels: list[str] | None


@dataclass
class ImageResult:
    decoded: DecodedImage
    clip: Classification | None
    resnext: Classification | None


# --- Models: one instance per server process, shared by every session -------


@st.cache_resource(show_spinner=False, max_entries=3)
def load_clip_model(variant_key: str, checkpoint: str | None, device: str) -> ClipZeroShot:
    return load_clip(variant_key, checkpoint=checkpoint, device=device, head_cache=HeadCache())


@st.cache_resource(show_spinner=False, max_entries=3)
def load_resnext_model(variant_key: str, checkpoint: str | None, device: str) -> ResNeXtClassifier:
    return load_resnext(variant_key, checkpoint=checkpoint, device=device)


@st.cache_resource(show_spinner=False)
def load_failures() -> dict[tuple[str, ...], tuple[float, ClassifierError]]:
    """Return the server-wide record of failed model loads: key to (time.monotonic() of the failure, error).

    Without it, every rerun of every session would try the download again, and
    with no network each try waits for the download library's retries (about
    50 s for CLIP in one measurement on a machine that resolves no host names).
    """
    return {}


def _checkpoint(variable: str) -> str | None:
    path = checkpoint_from_env(variable)
    return str(path) if path else None


def model_ui(
    model_name: str, title: str, source: str, load: Callable[[], Model], key: tuple[str, ...]
) -> Model | None:
    """Load a model by calling ``load()`` under a spinner, or show why it failed and return None.

    A failure is remembered for ``LOAD_RETRY_AFTER_S`` seconds. Meanwhile the
    page shows the same error with a button that tries again at once.
    """
    failures = load_failures()
    failure = failures.get(key)
    if failure is None or time.monotonic() - failure[0] > LOAD_RETRY_AFTER_S:
        try:
            with st.spinner(f"Loading {title} ({source})…"):
                model = load()
            failures.pop(key, None)
            return model
        except ClassifierError as e:
            failure = failures[key] = (time.monotonic(), e)

    error = failure[1]
    st.error(plain(f"{model_name} is unavailable: {error}"))
    if isinstance(error, WeightsError):
        st.caption(
            f"The app reads {CLIP_CHECKPOINT_ENV} and {RESNEXT_CHECKPOINT_ENV} from the server's environment, "
            "so restart `streamlit run` after setting them."
        )
    st.button(f"Try loading {model_name} again", key=f"retry-{model_name}", on_click=failures.pop, args=(key, None))
    return None


def clip_model_ui(settings: Settings) -> ClipZeroShot | None:
    """Load the selected CLIP model, or show why it cannot be loaded and return None."""
    variant = CLIP_VARIANTS[settings.clip_key]
    checkpoint = _checkpoint(CLIP_CHECKPOINT_ENV)
    source = f"from {checkpoint}" if checkpoint else f"downloading about {variant.download_mb} MB on first use"
    device = str(settings.device)
    return model_ui(
        "CLIP",
        f"CLIP {variant.title}",
        source,
        lambda: load_clip_model(settings.clip_key, checkpoint, device),
        ("clip", settings.clip_key, checkpoint or "", device),
    )


def resnext_model_ui(settings: Settings) -> ResNeXtClassifier | None:
    """Load the selected ResNeXt, or show why it cannot be loaded and return None."""
    variant = RESNEXT_VARIANTS[settings.resnext_key]
    checkpoint = _checkpoint(RESNEXT_CHECKPOINT_ENV)
    source = f"from {checkpoint}" if checkpoint else f"downloading {variant.download_mb} MB on first use"
    device = str(settings.device)
    return model_ui(
        "ResNeXt",
        variant.title,
        source,
        lambda: load_resnext_model(settings.resnext_key, checkpoint, device),
        ("resnext", settings.resnext_key, checkpoint or "", device),
    )


def zero_shot_head_ui(clip: ClipZeroShot, settings: Settings) -> bool:
    """Build (or read) the zero-shot head with a progress bar; return False if the labels are unusable."""
    count = len(settings.labels) if settings.labels else 1000
    bar = st.progress(0.0, text=f"Preparing CLIP's zero-shot head for {count} classes…")
    try:
        clip.zero_shot_head(
            settings.labels,
            settings.templates,
            progress=lambda done, total: bar.progress(
                done / total, text=f"Encoding CLIP prompts: {done} of {total} ({count} classes)"
            ),
        )
        return True
    except ClassifierError as e:
        st.error(plain(str(e)))
        return False
    finally:
        bar.empty()


# --- Inputs ------------------------------------------------------------------


def sidebar_ui() -> Settings:
    st.sidebar.header("Settings")
    devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    devices += ["mps"] if torch.backends.mps.is_available() else []
    device = select_device(st.sidebar.selectbox("Device", devices, help="auto: CUDA, else Apple MPS, else CPU"))
    st.sidebar.caption(f"Running on **{describe_device(device)}**" + (", half precision" if device.type == "cuda" else ""))

    clip_key = st.sidebar.selectbox(
        "CLIP model",
        list(CLIP_VARIANTS),
        index=list(CLIP_VARIANTS).index(DEFAULT_CLIP),
        format_func=lambda key: f"{CLIP_VARIANTS[key].title} · {CLIP_VARIANTS[key].imagenet_top1:.1f}%",
        help="The percentage is the published zero-shot ImageNet top-1 from open_clip's results table.",
    )
    st.sidebar.caption(
        f"About {CLIP_VARIANTS[clip_key].download_mb} MB to download, "
        f"{CLIP_VARIANTS[clip_key].imagenet_top1:.1f}% zero-shot ImageNet top-1"
    )
    resnext_key = st.sidebar.selectbox(
        "ResNeXt model",
        list(RESNEXT_VARIANTS),
        index=list(RESNEXT_VARIANTS).index(DEFAULT_RESNEXT),
        format_func=lambda key: f"{RESNEXT_VARIANTS[key].title} · {RESNEXT_VARIANTS[key].imagenet_top1:.1f}%",
        help="The percentage is the ImageNet top-1 from torchvision's weights metadata.",
    )
    st.sidebar.caption(
        f"{RESNEXT_VARIANTS[resnext_key].download_mb} MB to download, "
        f"{RESNEXT_VARIANTS[resnext_key].imagenet_top1:.1f}% ImageNet top-1"
    )
    top_k = st.sidebar.slider("Labels per model (top-k)", 1, 10, 5)
    templates = st.sidebar.radio(
        "CLIP prompt templates",
        list(TEMPLATE_SETS),
        format_func=TEMPLATE_NAMES.get,
        help="Each class is encoded in every template and the embeddings are averaged. More templates are "
        "slightly more accurate and take longer to prepare: for the 1000 ImageNet classes with ViT-B/32 on a "
        "2-core CPU, about 3 s with 1 template, 30 s with 7 and 5 minutes with 80. This happens once per model "
        "and label set, then the result is read from a disk cache.",
    )

    labels_text = st.sidebar.text_area(
        "Your own labels for CLIP (optional)",
        placeholder="cat\ndog\nbicycle",
        help=f"One label per line. A single line is split at its commas instead. At most {MAX_LABELS} labels of "
        f"{MAX_LABEL_CHARS} characters. Leave empty for ImageNet's 1000 classes.",
    )
    labels = None
    if labels_text.strip():
        try:
            labels = parse_labels(labels_text)
        except ClassifierError as e:
            st.sidebar.error(plain(f"Labels ignored: {e}"))

    return Settings(device, top_k, clip_key, resnext_key, templates, labels)


def inputs_ui() -> list[tuple[str, bytes]]:
    """Collect (name, bytes) pairs from the uploader, the sample picker and the camera."""
    max_upload_mb = st.get_option("server.maxUploadSize")
    # Streamlit rejects a larger file in the browser and names the limit only in a tooltip, so the label states it.
    uploads = st.file_uploader(
        f"Drop images here (up to {max_upload_mb} MB each)",
        type=UPLOAD_TYPES,
        accept_multiple_files=True,
        help=f"JPEG, PNG, WebP, BMP, GIF or TIFF, up to {max_upload_mb} MB each. Several files at once are fine.",
    )
    samples = sorted(p.name for p in ASSETS.iterdir() if p.suffix.lower() in SAMPLE_SUFFIXES)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    right.button(
        "All samples", width="stretch", on_click=lambda: st.session_state.update(samples=samples)
    )
    chosen = left.multiselect("…or pick sample images", samples, key="samples", placeholder="Choose samples")

    images = [(upload.name, upload.getvalue()) for upload in uploads or []]
    images += [(name, (ASSETS / name).read_bytes()) for name in chosen]
    if st.toggle("Use the camera"):
        photo = st.camera_input("Take a picture")
        if photo is not None:
            images.append(("camera photo", photo.getvalue()))
    return images


# --- Classification (cached per image and settings) --------------------------


# NOTE: entries are full decoded images (3 bytes per pixel, up to MAX_PIXELS), so
# this cache can hold about 8 x 240 MB for huge PNGs. A byte-size bound would need
# a custom cache; Streamlit's cache_data bounds only the entry count.
@st.cache_data(show_spinner=False, max_entries=8, ttl=3600)
def decode_cached(digest: str, name: str, _data: bytes) -> DecodedImage:
    """Decode once per file content; ``digest`` is the cache key, the bytes are not hashed again."""
    return decode_image(_data, name)


@st.cache_data(show_spinner=False, max_entries=256)
def classify_clip_cached(digest: str, model_id: str, top_k: int, labels, templates: str, _clip, _image):
    return _clip.classify(_image, top_k=top_k, classnames=labels, templates=templates)


@st.cache_data(show_spinner=False, max_entries=256)
def classify_resnext_cached(digest: str, model_id: str, top_k: int, _resnext, _image):
    return _resnext.classify(_image, top_k=top_k)


def _model_id(model: ClipZeroShot | ResNeXtClassifier) -> str:
    return f"{model.variant.key}|{model.weights_name}|{model.device}"


def classify_on_cpu_if_gpu_is_full(classify, model, load_on_cpu, image_name: str):
    """Run ``classify(model)``; if the GPU runs out of memory, say so and run it again on the CPU."""
    try:
        return classify(model)
    except torch.OutOfMemoryError:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        st.warning(plain(f"{image_name}: the GPU ran out of memory for {model.name}, so it was classified on the CPU."))
        return classify(load_on_cpu())


def classify_all(
    images: list[tuple[str, bytes]], settings: Settings, clip: ClipZeroShot | None, resnext: ResNeXtClassifier | None
) -> list[ImageResult]:
    """Decode and classify every image; a bad file gets an error message and the others go on."""
    results = []
    bar = st.progress(0.0) if len(images) > 1 else None
    labels = tuple(settings.labels) if settings.labels else None
    for done, (name, data) in enumerate(images, 1):
        if bar is not None:
            bar.progress(done / len(images), text=f"Classifying {name} ({done} of {len(images)})")
        digest = hashlib.sha256(data).hexdigest()
        try:
            decoded = decode_cached(digest, name, data)
        except ClassifierError as e:
            st.error(plain(str(e)), icon="🚫")
            continue

        clip_result = resnext_result = None
        if clip is not None:
            clip_result = classify_on_cpu_if_gpu_is_full(
                lambda model: classify_clip_cached(
                    digest, _model_id(model), settings.top_k, labels, settings.templates, model, decoded.image
                ),
                clip,
                lambda: load_clip_model(settings.clip_key, _checkpoint(CLIP_CHECKPOINT_ENV), "cpu"),
                name,
            )
        if resnext is not None:
            resnext_result = classify_on_cpu_if_gpu_is_full(
                lambda model: classify_resnext_cached(digest, _model_id(model), settings.top_k, model, decoded.image),
                resnext,
                lambda: load_resnext_model(settings.resnext_key, _checkpoint(RESNEXT_CHECKPOINT_ENV), "cpu"),
                name,
            )
        results.append(ImageResult(decoded, clip_result, resnext_result))
    if bar is not None:
        bar.empty()
    return results


# --- Output ------------------------------------------------------------------


def top_k_chart(result: Classification) -> alt.Chart:
    """Build a horizontal bar chart of the top-k probabilities on a fixed 0-100 % axis."""
    data = pd.DataFrame(
        {
            # The rank keeps bars apart when two classes share a name (ImageNet has two "crane"s).
            "label": [f"{rank}. {p.label}" for rank, p in enumerate(result.predictions, 1)],
            "probability": [p.probability for p in result.predictions],
        }
    )
    base = alt.Chart(data).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title=None)),
        y=alt.Y("label:N", sort=None, axis=alt.Axis(title=None, labelLimit=LABEL_WIDTH_PX, minExtent=LABEL_WIDTH_PX)),
        tooltip=[alt.Tooltip("label:N"), alt.Tooltip("probability:Q", format=".2%")],
    )
    bars = base.mark_bar()
    values = base.mark_text(align="left", dx=4).encode(text=alt.Text("probability:Q", format=".1%"))
    # Streamlit's default autosize "fit" would squeeze the axis into the given height,
    # leaving no room for one to three bars. "fit-x" stretches the width only.
    return (bars + values).properties(
        height=BAR_HEIGHT_PX * len(data), autosize=alt.AutoSizeParams(type="fit-x", contains="padding")
    )


def model_column_ui(result: Classification | None, title: str) -> None:
    st.markdown(f"**{title}**")
    if result is None:
        st.caption("Not classified: the model could not be loaded (see the message above).")
        return
    st.caption(f"{result.model} · weights: {result.weights}")
    st.altair_chart(top_k_chart(result), width="stretch")
    # A horizontal container keeps the two figures side by side on a phone too.
    timings = st.container(horizontal=True)
    timings.metric("Inference", f"{result.timings_ms['inference']:.0f} ms")
    timings.metric("Preprocess", f"{result.timings_ms['preprocess']:.0f} ms")
    st.caption(f"Device: {result.device}")


def image_result_ui(item: ImageResult, settings: Settings) -> None:
    decoded = item.decoded
    st.subheader(plain(decoded.name), divider="gray")
    width, height = decoded.original_size
    shown_width = min(IMAGE_WIDTH_PX, max(MIN_IMAGE_WIDTH_PX, decoded.image.width))
    st.image(decoded.image, caption=f"{width}×{height} {decoded.format or ''}".strip(), width=shown_width)
    for note in decoded.notes:
        st.info(plain(f"{decoded.name}: {note}"), icon="ℹ️")

    clip_column, resnext_column = st.columns(2)
    with clip_column:
        scope = "your labels" if settings.labels else "ImageNet's 1000 classes"
        model_column_ui(item.clip, f"CLIP, zero-shot over {scope}")
    with resnext_column:
        model_column_ui(item.resnext, "ResNeXt, trained on ImageNet")

    if item.clip is None or item.resnext is None or settings.labels:
        return
    shared = shared_classes(item.clip, item.resnext)
    if shared:
        st.success(plain(f"Both top-{settings.top_k} lists contain: " + ", ".join(p.label for p in shared)))
    else:
        st.warning(f"The two top-{settings.top_k} lists have no class in common.")


def summary_rows(results: list[ImageResult], settings: Settings) -> list[dict]:
    rows = []
    for item in results:
        row = {"image": item.decoded.name}
        if item.clip is not None:
            row |= {"clip_top1": item.clip.top1.label, "clip_probability": round(item.clip.top1.probability, 4)}
        if item.resnext is not None:
            row |= {"resnext_top1": item.resnext.top1.label, "resnext_probability": round(item.resnext.top1.probability, 4)}
        if item.clip is not None and item.resnext is not None and not settings.labels:
            row["agree"] = item.clip.top1.index == item.resnext.top1.index
        rows.append(row)
    return rows


def summary_ui(results: list[ImageResult], settings: Settings) -> None:
    """Show every image's top-1 from both models in a table, with the agreement rate and downloads."""
    rows = summary_rows(results, settings)
    st.subheader("Summary", divider="gray")
    if rows and "agree" in rows[0]:
        agreed = sum(row.get("agree", False) for row in rows)
        st.metric("Top-1 agreement", f"{agreed / len(rows):.0%}", help=f"{agreed} of {len(rows)} images")
    table = pd.DataFrame(rows)
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "image": st.column_config.TextColumn("Image"),
            "clip_top1": st.column_config.TextColumn("CLIP top-1"),
            "clip_probability": st.column_config.NumberColumn("CLIP p", format="percent"),
            "resnext_top1": st.column_config.TextColumn("ResNeXt top-1"),
            "resnext_probability": st.column_config.NumberColumn("ResNeXt p", format="percent"),
            "agree": st.column_config.CheckboxColumn("Same class"),
        },
    )
    downloads = st.container(horizontal=True)
    downloads.download_button("Download CSV", table.to_csv(index=False), "clip-vs-resnext.csv", "text/csv")
    document = [
        {"image": r.decoded.name, "clip": r.clip and r.clip.to_dict(), "resnext": r.resnext and r.resnext.to_dict()}
        for r in results
    ]
    downloads.download_button(
        "Download JSON", json.dumps(document, indent=2), "clip-vs-resnext.json", "application/json"
    )


def main() -> None:
    st.set_page_config(page_title="CLIP vs ResNeXt", page_icon="🔍", layout="wide")
    st.title("CLIP vs ResNeXt")
    st.markdown(
        "Two ways to classify an image. **CLIP** was trained on image–caption pairs from the web and "
        "classifies *zero-shot*: it compares the picture with a text prompt for every class, so it can "
        "take any labels you write. **ResNeXt** is a convolutional network trained on ImageNet's labelled "
        "photos and knows exactly those 1000 classes. Drop images to see both top-5 lists and how long "
        "each model took."
    )
    settings = sidebar_ui()
    images = inputs_ui()
    if not images:
        st.info("Drop one or more images above, pick a sample, or use the camera to start.")
        return
    if settings.labels:
        st.caption(
            f"CLIP chooses among your {len(settings.labels)} labels. ResNeXt cannot learn new classes "
            "without retraining, so it still shows ImageNet classes."
        )

    clip = clip_model_ui(settings)
    if clip is not None and not zero_shot_head_ui(clip, settings):
        clip = None
    resnext = resnext_model_ui(settings)
    results = classify_all(images, settings, clip, resnext)

    if len(results) > 1:
        summary_ui(results, settings)
    for item in results:
        image_result_ui(item, settings)
    st.caption(
        f"Images larger than {MAX_PIXELS // 1_000_000} megapixels are refused. Both models see a square "
        "centre crop of each image, resized to 224 px."
    )


main()
