"""Reading and writing VPT action files: one JSON object per line, one line per video frame.

The official loader joins all lines into one JSON array, so a single bad line fails the whole file; here each
line is parsed on its own so that the error can name the line.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

from .errors import DataError


def read_jsonl(path: Path) -> List[dict]:
    """All records of ``path`` in order. Blank lines at the end of the file are ignored.

    Raises:
        DataError: the file cannot be read, a line is not JSON, or a line is not a JSON object.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the action file ({err})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}:{number}: not a JSON line ({err})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def format_jsonl_line(record: Any) -> str:
    """One record as a compact JSON line (with its newline). Strict JSON: NaN/Infinity raise ``ValueError``."""
    return json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n"

