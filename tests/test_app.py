"""The page, run by Streamlit's AppTest on the real engine and the random-weight checkpoints."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa
import pytest
import torch
from streamlit.testing.v1 import AppTest

from conftest import ASSETS, REPO

APP = str(REPO / "streamlit_app.py")
# The first run loads both models and may build the 1000-class zero-shot head.
TIMEOUT_S = 300


def chart_data(at: AppTest) -> list[pd.DataFrame]:
    """The data behind every Altair chart on the page."""
    frames = []
    for chart in at.get("vega_lite_chart"):
        (dataset,) = chart.proto.datasets
        frames.append(pa.ipc.open_stream(dataset.data.data).read_pandas())
    return frames


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.run()
    assert not at.exception, at.exception
    return at


def messages(elements) -> list[str]:
    """The text of each element as the user reads it: the page escapes Markdown with backslashes."""
    return [re.sub(r"\\(.)", r"\1", element.value) for element in elements]


def test_landing_page_asks_for_an_image():
    at = new_app()
    assert at.title[0].value == "CLIP vs ResNeXt"
    assert any("Drop one or more images" in text for text in messages(at.info)), messages(at.info)
    assert not at.get("vega_lite_chart"), "no chart before an image is given"
    assert at.file_uploader[0].label == "Drop images here (up to 25 MB each)", "the limit of .streamlit/config.toml"


def test_sample_renders_two_top5_charts_with_timings():
    at = new_app()
    at.multiselect(key="samples").select("cat.jpg").run()

    assert not at.exception, at.exception
    assert not at.error, messages(at.error)
    charts = chart_data(at)
    assert len(charts) == 2, "one chart for CLIP and one for ResNeXt"
    for chart in charts:
        assert len(chart) == 5, f"expected 5 bars, got {len(chart)}"
        assert chart["probability"].between(0, 1).all()
        assert chart["probability"].is_monotonic_decreasing, "bars are not ranked"
    assert [m.label for m in at.metric] == ["Inference", "Preprocess"] * 2
    assert all(m.value.endswith(" ms") for m in at.metric), messages(at.metric)
    assert "cat.jpg" in messages(at.subheader)


def test_bad_upload_is_named_and_the_good_one_still_classified():
    at = new_app()
    at.file_uploader[0].set_value(
        [
            ("notes.jpg", b"shopping list: milk, eggs", "image/jpeg"),
            ("owl.png", (ASSETS / "owl.png").read_bytes(), "image/png"),
        ]
    ).run()

    assert not at.exception, at.exception
    errors = messages(at.error)
    assert len(errors) == 1, errors
    assert errors[0].startswith("notes.jpg: not an image file"), errors
    assert "owl.png" in messages(at.subheader)
    assert len(chart_data(at)) == 2, "the good image still gets both charts"


def test_top_k_setting_changes_the_number_of_bars():
    at = new_app()
    at.slider[0].set_value(3)
    at.multiselect(key="samples").select("coffee.jpg").run()
    assert [len(chart) for chart in chart_data(at)] == [3, 3]


def test_chart_height_is_the_plot_height():
    at = new_app()
    at.slider[0].set_value(1)
    at.multiselect(key="samples").select("coffee.jpg").run()

    assert not at.exception, at.exception
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        # With Streamlit's default "fit", the axis would take its room from the 34 px of one bar.
        assert spec["autosize"]["type"] == "fit-x", spec.get("autosize")
        assert spec["height"] == 34, spec["height"]


def test_custom_labels_apply_to_clip_only():
    at = new_app()
    at.text_area[0].input("a cat\na rocket\na cup of coffee")
    at.multiselect(key="samples").select("rocket.jpg").run()

    assert not at.exception, at.exception
    clip_chart, resnext_chart = chart_data(at)
    clip_labels = sorted(label.split(". ", 1)[1] for label in clip_chart["label"])
    assert clip_labels == ["a cat", "a cup of coffee", "a rocket"], clip_labels
    assert len(resnext_chart) == 5, "ResNeXt keeps ImageNet's top-5"
    assert any("ResNeXt cannot learn new classes" in text for text in messages(at.caption)), messages(at.caption)


def test_invalid_labels_are_reported_and_imagenet_is_used():
    at = new_app()
    at.text_area[0].input("just one label")
    at.multiselect(key="samples").select("cat.jpg").run()
    assert any("at least two" in text for text in messages(at.sidebar.error)), messages(at.sidebar.error)
    assert [len(chart) for chart in chart_data(at)] == [5, 5]


def test_several_images_get_a_summary_with_downloads():
    at = new_app()
    at.multiselect(key="samples").select("cat.jpg").select("tiger.png").select("rocket.jpg").run()

    assert not at.exception, at.exception
    (table,) = at.dataframe
    assert list(table.value["image"]) == ["cat.jpg", "tiger.png", "rocket.jpg"]
    assert {"clip_top1", "resnext_top1", "agree"} <= set(table.value.columns)
    assert [m.label for m in at.metric][0] == "Top-1 agreement"
    downloads = [button.proto.label for button in at.get("download_button")]
    assert downloads == ["Download CSV", "Download JSON"], downloads
    assert len(chart_data(at)) == 6, "each image keeps its two charts below the summary"


def test_missing_weights_name_the_model_and_the_other_model_still_works(monkeypatch, tmp_path):
    monkeypatch.setenv("RESNEXT_CHECKPOINT", str(tmp_path / "resnext-missing.pth"))
    at = new_app()
    at.multiselect(key="samples").select("cat.jpg").run()

    assert not at.exception, at.exception
    errors = messages(at.error)
    assert any("RESNEXT_CHECKPOINT" in e and "resnext-missing.pth" in e for e in errors), errors
    assert len(chart_data(at)) == 1, "CLIP is still classified"
    assert any("restart `streamlit run`" in text for text in messages(at.caption)), messages(at.caption)


def test_failed_load_waits_for_retry(monkeypatch, tmp_path):
    import classifiers

    missing = tmp_path / "resnext-missing.pth"
    monkeypatch.setenv("RESNEXT_CHECKPOINT", str(missing))
    real_load = classifiers.load_resnext
    calls = []

    def counting_load(*args, **kwargs):
        calls.append(kwargs.get("checkpoint"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(classifiers, "load_resnext", counting_load)
    at = new_app()
    at.multiselect(key="samples").select("cat.jpg").run()
    assert calls == [str(missing)]

    at.slider[0].set_value(3).run()
    assert calls == [str(missing)], "a rerun tried the failed load again"
    assert any("resnext-missing.pth" in e for e in messages(at.error)), messages(at.error)
    assert [len(chart) for chart in chart_data(at)] == [3], "CLIP is still classified"

    (retry,) = [button for button in at.button if button.label == "Try loading ResNeXt again"]
    retry.click().run()
    assert calls == [str(missing), str(missing)], "the retry button did not load the model again"


@pytest.mark.parametrize("name", ["drawing.svg", "photo.heic"])
def test_unsupported_format_says_what_to_convert_to(name):
    content = b"<svg xmlns='http://www.w3.org/2000/svg'/>" if name.endswith("svg") else b"\0\0\0\x18ftypheic" + bytes(32)
    at = new_app()
    at.file_uploader[0].set_value((name, content, "application/octet-stream")).run()
    (error,) = messages(at.error)
    assert error.startswith(f"{name}: ") and "PNG" in error, error


def test_out_of_memory_is_reported_and_the_image_classified_on_cpu(monkeypatch):
    from classifiers import ResNeXtClassifier

    real_classify = ResNeXtClassifier.classify
    calls = []

    def out_of_memory_once(self, image, **kwargs):
        calls.append(self.device)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_classify(self, image, **kwargs)

    monkeypatch.setattr(ResNeXtClassifier, "classify", out_of_memory_once)
    at = new_app()
    at.slider[0].set_value(4)  # a top-k no other test uses, so the result is not already cached
    at.multiselect(key="samples").select("penguin.png").run()

    assert not at.exception, at.exception
    warnings = messages(at.warning)
    assert any("penguin.png: the GPU ran out of memory for ResNeXt-50 32x4d" in w for w in warnings), warnings
    assert len(calls) == 2, "the image is classified again after the out-of-memory error"
    assert [len(chart) for chart in chart_data(at)] == [4, 4]


def test_file_names_are_shown_as_typed_not_as_markdown():
    name = "**bold** [link](http://example.invalid) :red[x].jpg"
    at = new_app()
    at.file_uploader[0].set_value((name, b"not an image", "image/jpeg")).run()
    (error,) = at.error
    assert "\\*\\*bold\\*\\*" in error.value, f"Markdown was not escaped: {error.value}"
    assert messages(at.error)[0].startswith(f"{name}: not an image file"), messages(at.error)


def test_camera_input_appears_when_switched_on():
    at = new_app()
    assert not at.camera_input, "the camera stays off until asked for"
    at.toggle[0].set_value(True).run()
    assert len(at.camera_input) == 1
