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
