"""The engine behind the CLIP vs ResNeXt app: image loading, both classifiers, weights and devices.

Nothing here imports Streamlit, so the CLI, the benchmark and the tests use it directly.
"""

from .clip import ClipZeroShot, load_clip
from .devices import select_device
from .errors import ClassifierError, DeviceError, ImageError, LabelsError, WeightsError
from .heads import TEMPLATE_SETS, HeadCache
from .images import DecodedImage, decode_image, load_image
from .resnext import ResNeXtClassifier, load_resnext
from .results import Classification, Prediction
from .weights import CLIP_VARIANTS, DEFAULT_CLIP, DEFAULT_RESNEXT, RESNEXT_VARIANTS

__all__ = [
    "CLIP_VARIANTS",
    "DEFAULT_CLIP",
    "DEFAULT_RESNEXT",
    "RESNEXT_VARIANTS",
    "TEMPLATE_SETS",
    "Classification",
    "ClassifierError",
    "ClipZeroShot",
    "DecodedImage",
    "DeviceError",
    "HeadCache",
    "ImageError",
    "LabelsError",
    "Prediction",
    "ResNeXtClassifier",
    "WeightsError",
    "decode_image",
    "load_clip",
    "load_image",
    "load_resnext",
    "select_device",
]
