"""Load tests: eight page sessions classifying at once, and memory over 50 classifications.

Wall times and memory figures are logged at INFO. Run with
``-o log_cli=true --log-cli-level=INFO`` to see them (docs/LOAD.md lists the
figures measured). No timing is asserted, because test machines are shared.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest.mock import MagicMock

import pytest
import streamlit as st
from streamlit import config
from streamlit.runtime import Runtime
from streamlit.runtime.caching import cache_data_api
from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.runtime.stats import CACHE_MEMORY_FAMILY
from streamlit.testing.v1 import AppTest, local_script_runner

import classifiers
from classifiers import load_image
from conftest import SAMPLE_IMAGES
from test_app import APP, TIMEOUT_S, chart_data

_logger = logging.getLogger(__name__)

SESSIONS = 8
CLASSIFICATIONS = 50
# Allowed growth of the resident set from after the first classification to after 50 more.
MAX_RSS_GROWTH = 0.05
# The page loads its own models from the same checkpoints, so its probabilities
# may differ from a direct engine call by float32 rounding (docs/LOAD.md records 0).
# The random-weight models give every class about 0.001, so the label order is
# the stricter check. The closest neighbours in a top-5 were 3e-7 apart.
PROBABILITY_TOLERANCE = 1e-5


linux_only = pytest.mark.skipif(
    not Path("/proc/self/status").is_file(), reason="reads the resident set size from /proc, which only Linux has"
)


def release_free_heap() -> None:
    """Return freed heap memory to the operating system with glibc's malloc_trim, if the C library is glibc.

    glibc keeps freed memory mapped, so without this VmRSS also counts what the
    model loads and the zero-shot head build freed. The page test, run alone on
    the machine in docs/LOAD.md, then read 2142 MiB after the first
    classification and 1630 MiB after 50 more.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # NOTE: without glibc (musl, for example) the readings include freed heap.
    libc.malloc_trim(0)


def resident_set_bytes() -> int:
    """Return this process's resident set size (VmRSS in /proc/self/status), after a full garbage collection."""
    gc.collect()
    release_free_heap()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS is missing from /proc/self/status")


def mebibytes(size: int) -> float:
    return size / 2**20


class CountingLoader:
    """Wrap an engine loader and count its calls per (model variant, checkpoint, device), thread-safely."""

    def __init__(self, loader):
        self.loader = loader
        self.calls: Counter[tuple[str, str, str]] = Counter()
        self._lock = threading.Lock()

    def __call__(self, variant, *, checkpoint=None, device=None, **kwargs):
        with self._lock:
            self.calls[(str(variant), str(checkpoint), str(device))] += 1
        return self.loader(variant, checkpoint=checkpoint, device=device, **kwargs)


@pytest.fixture
def server_like_runtime(monkeypatch):
    """Give all AppTest sessions one Runtime and one config, as sessions of one server have.

    On every run, AppTest (Streamlit 1.67) installs a mock Runtime and sets it
    back to None when the run ends. It also patches ``config.get_option`` to
    report ``global.appTest`` during the run. With several sessions running at
    once, the first session to finish takes both away from the others. Without
    the ``global.appTest`` flag a widget does not save its format function, and
    AppTest then raises KeyError on the next ``select()``.

    AppTest also compiles the script with a new ScriptCache on every run, while
    a server compiles it once in a cache shared by all sessions. Eight threads
    calling ``ast.parse`` at once failed in one CI run with CPython 3.11.7's
    "SystemError: AST constructor recursion depth mismatch" (CPython issue
    106905), so the sessions share one cache here too.
    """
    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    monkeypatch.setattr(Runtime, "instance", classmethod(lambda cls: runtime))
    monkeypatch.setattr(Runtime, "exists", classmethod(lambda cls: True))

    get_option = config.get_option
    monkeypatch.setattr(config, "get_option", lambda name: True if name == "global.appTest" else get_option(name))

    script_cache = ScriptCache()
    monkeypatch.setattr(local_script_runner, "ScriptCache", lambda: script_cache)
    return runtime


@pytest.fixture
def empty_streamlit_caches():
    """Empty st.cache_resource and st.cache_data, so no model or result comes from an earlier test."""
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def counting_loaders(monkeypatch, empty_streamlit_caches):
    """Count the page's model loads.

    The page imports ``load_clip`` and ``load_resnext`` from ``classifiers`` on
    every script run, so replacing them on the package is what the page calls.
    """
    clip_loader = CountingLoader(classifiers.load_clip)
    resnext_loader = CountingLoader(classifiers.load_resnext)
    monkeypatch.setattr(classifiers, "load_clip", clip_loader)
    monkeypatch.setattr(classifiers, "load_resnext", resnext_loader)
    return clip_loader, resnext_loader


def cache_data_usage() -> dict[str, tuple[int, int]]:
    """Return the entry count and pickled bytes of each global st.cache_data function.

    NOTE: reads Streamlit's private ``_data_caches`` (checked on 1.67), because
    the public API has no per-function statistics.
    """
    usage = {}
    for cache in cache_data_api._data_caches._function_caches.get(None, {}).values():
        stats = cache.get_stats().get(CACHE_MEMORY_FAMILY, [])
        usage[cache.display_name] = (len(stats), sum(stat.byte_length for stat in stats))
    return usage


def chart_top_k(chart) -> tuple[list[str], list[float]]:
    """Return the labels, without their "1. " rank prefix, and probabilities of one top-k chart."""
    labels = [label.split(". ", 1)[1] for label in chart["label"]]
    return labels, [float(p) for p in chart["probability"]]


def engine_top_k(result) -> tuple[list[str], list[float]]:
    return [p.label for p in result.predictions], [p.probability for p in result.predictions]


def run_session(path: Path, start: threading.Barrier) -> AppTest:
    """Open the page, wait for the other sessions, then pick one sample image."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    try:
        at.run()
        assert not at.exception, f"{path.name}: landing page: {at.exception}"
    except BaseException:
        start.abort()  # so the other sessions raise BrokenBarrierError instead of waiting
        raise
    start.wait(timeout=TIMEOUT_S)
    at.multiselect(key="samples").select(path.name).run()
    return at


def test_eight_concurrent_sessions(server_like_runtime, counting_loaders, clip_model, resnext_model):
    """Eight sessions classifying at once load each model once and get the engine's own results."""
    clip_loader, resnext_loader = counting_loaders
    samples = SAMPLE_IMAGES[:SESSIONS]
    assert len(samples) == SESSIONS, f"need {SESSIONS} sample images in assets/, found {len(samples)}"

    # Single-threaded reference results. This also writes the zero-shot head to
    # the disk cache, so the sessions below read it instead of building it.
    expected = {}
    for path in samples:
        image = load_image(path)
        expected[path.name] = (
            engine_top_k(clip_model.classify(image, top_k=5)),
            engine_top_k(resnext_model.classify(image, top_k=5)),
        )

    # The barrier keeps every session on the landing page until all are there,
    # so the eight classifying runs start together, with no model loaded yet.
    released = []
    start = threading.Barrier(SESSIONS, action=lambda: released.append(time.perf_counter()))
    with ThreadPoolExecutor(max_workers=SESSIONS) as pool:
        futures = [pool.submit(run_session, path, start) for path in samples]
        errors = [future.exception() for future in futures]
    finished = time.perf_counter()
    # A failed session makes the others raise BrokenBarrierError, so its own error is raised first.
    errors.sort(key=lambda error: error is None or isinstance(error, threading.BrokenBarrierError))
    if errors[0] is not None:
        raise errors[0]
    sessions = [future.result() for future in futures]

    _logger.info(
        "%d concurrent sessions: %.1f s wall time from release to the last result (model loads included), "
        "CLIP loads %s, ResNeXt loads %s",
        SESSIONS, finished - released[0], dict(clip_loader.calls), dict(resnext_loader.calls),
    )
    assert list(clip_loader.calls.values()) == [1], f"CLIP loads per (variant, checkpoint, device): {clip_loader.calls}"
    assert list(resnext_loader.calls.values()) == [1], (
        f"ResNeXt loads per (variant, checkpoint, device): {resnext_loader.calls}"
    )

    max_difference = 0.0
    for path, at in zip(samples, sessions):
        assert not at.exception, f"{path.name}: {at.exception}"
        assert not at.error, f"{path.name}: {[e.value for e in at.error]}"
        charts = chart_data(at)
        assert len(charts) == 2, f"{path.name}: expected a CLIP and a ResNeXt chart, got {len(charts)}"

        for model, chart, (expected_labels, expected_probabilities) in zip(
            ("CLIP", "ResNeXt"), charts, expected[path.name]
        ):
            labels, probabilities = chart_top_k(chart)
            assert len(labels) == 5, f"{path.name} {model}: expected 5 bars, got {len(labels)}"
            assert labels == expected_labels, f"{path.name} {model}: page {labels}, engine {expected_labels}"
            assert probabilities == pytest.approx(expected_probabilities, abs=PROBABILITY_TOLERANCE), (
                f"{path.name} {model}: page {probabilities}, engine {expected_probabilities}"
            )
            max_difference = max(max_difference, *(abs(a - b) for a, b in zip(probabilities, expected_probabilities)))
    _logger.info("Largest page-engine probability difference: %.3g", max_difference)


@linux_only
def test_engine_memory_after_50_classifications(clip_model, resnext_model):
    """The resident set grows by at most 5 % from the first classification to the 50th after it."""
    images = [load_image(path) for path in SAMPLE_IMAGES]
    clip_model.classify(images[0], top_k=10)
    resnext_model.classify(images[0], top_k=10)
    first = resident_set_bytes()

    started = time.perf_counter()
    for i in range(CLASSIFICATIONS):
        image = images[i % len(images)]
        top_k = 1 + i // len(images)
        clip_model.classify(image, top_k=top_k)
        resnext_model.classify(image, top_k=top_k)
    _logger.info("Engine: %d CLIP and ResNeXt classifications in %.1f s", CLASSIFICATIONS, time.perf_counter() - started)
    after = resident_set_bytes()

    growth = (after - first) / first
    _logger.info(
        "Engine: RSS %.1f MiB after the first classification, %.1f MiB after %d more (%+.2f %%)",
        mebibytes(first), mebibytes(after), CLASSIFICATIONS, growth * 100,
    )
    assert growth <= MAX_RSS_GROWTH, (
        f"RSS grew {growth:.2%}: {mebibytes(first):.1f} MiB after the first classification, "
        f"{mebibytes(after):.1f} MiB after {CLASSIFICATIONS} more"
    )


@linux_only
def test_page_memory_after_50_reruns():
    """One session cycling through the samples and top-k values grows by at most 5 % over 50 reruns."""
    # Results cached by earlier tests would let reruns skip the classifications
    # measured here. The models may stay in st.cache_resource.
    st.cache_data.clear()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    at.run()
    at.slider[0].set_value(10)
    at.multiselect(key="samples").set_value([SAMPLE_IMAGES[0].name]).run()
    assert not at.exception, at.exception
    first = resident_set_bytes()

    started = time.perf_counter()
    for i in range(CLASSIFICATIONS):
        # Each (image, top-k) pair is new, so every rerun classifies instead of reading st.cache_data.
        path = SAMPLE_IMAGES[i % len(SAMPLE_IMAGES)]
        top_k = 1 + i // len(SAMPLE_IMAGES)
        at.slider[0].set_value(top_k)
        at.multiselect(key="samples").set_value([path.name]).run()
        assert not at.exception, f"rerun {i} ({path.name}, top-{top_k}): {at.exception}"
        assert [len(chart) for chart in chart_data(at)] == [top_k, top_k], f"rerun {i} ({path.name}, top-{top_k})"
        if i + 1 == CLASSIFICATIONS // 2:
            halfway = resident_set_bytes()
    _logger.info("Page: %d reruns in %.1f s", CLASSIFICATIONS, time.perf_counter() - started)
    after = resident_set_bytes()

    growth = (after - first) / first
    _logger.info(
        "Page: RSS %.1f MiB after the first classification, %.1f MiB after %d more reruns, %.1f MiB after %d (%+.2f %%)",
        mebibytes(first), mebibytes(halfway), CLASSIFICATIONS // 2, mebibytes(after), CLASSIFICATIONS, growth * 100,
    )
    _logger.info("Page: st.cache_data entries and bytes after the reruns: %s", cache_data_usage())
    assert growth <= MAX_RSS_GROWTH, (
        f"RSS grew {growth:.2%}: {mebibytes(first):.1f} MiB after the first page classification, "
        f"{mebibytes(after):.1f} MiB after {CLASSIFICATIONS} more reruns"
    )
