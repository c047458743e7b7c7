"""The result type both classifiers return: plain data, ready for JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Prediction:
    """One ranked label with its probability and its index in the model's label list."""

    label: str
    probability: float
    index: int


@dataclass
class Classification:
    """Top-k predictions of one model for one image, with how long each step took."""

    model: str
    weights: str
    device: str
    predictions: list[Prediction]
    timings_ms: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def top1(self) -> Prediction:
        return self.predictions[0]


def shared_classes(first: Classification, second: Classification) -> list[Prediction]:
    """Return the predictions of ``first`` whose class index is also in ``second``'s top-k.

    Both models must rank the same label set in the same order (ImageNet's 1000
    classes): CLIP's curated class names and torchvision's category names
    differ in spelling, so classes are matched by index, never by name.
    """
    other = {p.index for p in second.predictions}
    return [p for p in first.predictions if p.index in other]
