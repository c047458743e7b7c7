"""Logging set-up for the command-line entry points (the library itself only creates loggers)."""

from __future__ import annotations

import logging

# Libraries that attach their own stderr handler to their top-level logger.
# Their records also reach the root handler, so each line would print twice.
_SELF_HANDLING_LOGGERS = ("huggingface_hub",)


def configure_logging(level: int, format: str) -> None:
    """Send every log record to stderr once, through one root handler with ``format``."""
    logging.basicConfig(level=level, format=format)
    for name in _SELF_HANDLING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
