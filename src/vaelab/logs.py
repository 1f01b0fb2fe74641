"""One logging set-up for every stage and command."""

from __future__ import annotations

import logging
import os


def setup_logging() -> None:
    """Log to stderr as ``vaelab: LEVEL: message``, at $VAELAB_LOG_LEVEL (default INFO)."""
    level = os.environ.get("VAELAB_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="vaelab: %(levelname)s: %(message)s")
