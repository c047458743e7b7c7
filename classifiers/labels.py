"""User-supplied class labels for CLIP zero-shot: parsing and limits."""

from __future__ import annotations

from .errors import LabelsError

MAX_LABELS = 1000
MAX_LABEL_CHARS = 100


def parse_labels(text: str) -> list[str]:
    """Split user text into class labels: one per line, or comma-separated on a single line.

    Surrounding white space and empty entries are dropped, and so are repeats
    (compared case-insensitively, keeping the first spelling).

    Raises:
        LabelsError: no label is left, more than ``MAX_LABELS`` labels, or a
            label longer than ``MAX_LABEL_CHARS`` characters.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    entries = lines[0].split(",") if len(lines) == 1 else lines

    labels: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        label = " ".join(entry.split())
        if not label or label.casefold() in seen:
            continue
        if len(label) > MAX_LABEL_CHARS:
            raise LabelsError(
                f"label {label[:40]!r}... is {len(label)} characters long; the limit is {MAX_LABEL_CHARS}"
            )
        seen.add(label.casefold())
        labels.append(label)

    if not labels:
        raise LabelsError("no labels were given; write one label per line, or separate them with commas")
    if len(labels) > MAX_LABELS:
        raise LabelsError(f"{len(labels)} labels were given; the limit is {MAX_LABELS}")
    if len(labels) == 1:
        raise LabelsError(
            f"only one label ({labels[0]!r}) was given; zero-shot classification needs at least two to choose between"
        )
    return labels
