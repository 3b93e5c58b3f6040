"""The error raised for bad recordings."""
from __future__ import annotations

from ..errors import VPTError


class DataError(VPTError, ValueError):
    """A recording that cannot be read as VPT data; the message names the file (and the jsonl line)."""
