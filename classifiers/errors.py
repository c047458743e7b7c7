"""Exceptions raised by the engine.

Every message names what failed (the file or the model), why, and what to do,
so the page and the CLI can show it to the user as it is.
"""


class ClassifierError(Exception):
    """Base class of every error the engine raises on purpose."""


class ImageError(ClassifierError):
    """An input image cannot be decoded or is refused (size, format, content)."""


class WeightsError(ClassifierError):
    """Model weights cannot be downloaded, read or matched to the architecture."""


class DeviceError(ClassifierError):
    """The requested device does not exist on this machine."""


class LabelsError(ClassifierError):
    """User-supplied class labels are empty, too many or too long."""
