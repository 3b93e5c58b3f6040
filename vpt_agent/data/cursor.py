"""The mouse cursor drawn onto frames while a GUI is open.

The recorder's video does not show the mouse cursor, but the agent needs to see where it points in the
inventory, so the loader draws a 16x16 arrow at the recorded mouse position (``mouse.x``/``y`` are in the
1280x720 window; frames are scaled by ``frame height / 720``). The blend is the official loader's:
``frame * (1 - alpha) + cursor * alpha`` in float64, truncated to uint8.

The arrow's pixel values (``_GRAY``/``_ALPHA`` below) are the top-left 16x16 of ``cursors/mouse_cursor_white_16x16.png``
in openai/Video-Pre-Training, used unchanged so that frames match the official loader exactly. That file is
Copyright (c) 2022 OpenAI and MIT licensed:

    Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
    associated documentation files (the "Software"), to deal in the Software without restriction, including
    without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is furnished to do so, subject to the
    following conditions: The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT NOT
    LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO
    EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER
    IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE
    USE OR OTHER DEALINGS IN THE SOFTWARE.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Tuple

import numpy as np

#: Window height the recorder's mouse coordinates refer to.
RECORDER_WINDOW_HEIGHT = 720
CURSOR_SIZE = 16

# One hex string per row; the arrow is grey (equal B, G, R): black outline, white fill.
_GRAY = (
    "00000000ffff00000000ee0000000000", "0000000000ffee00ffee000000000000", "00ff000000000000ee00000000000000",
    "00ffff0000000000ee00000000000000", "00ffffff0000000000ee000000000000", "00ffffffff00000000ee000000000000",
    "00ffffffffff00000000000000000000", "00ffffffffffff000000ff0000000000", "00ffffffffffffff0000000000000000",
    "00ffffffffffffffff00ee0000000000", "00ffffffffff00000000000000000000", "00ffffffffff00000000000000000000",
    "00ff0000ffff00000000000000000000", "0000ee00ffffff000000000000000000", "000000ff00ffff00eeff000000000000",
    "00000000000000000000000000000000",
)
_ALPHA = (
    "ff000000080a00000000010000000000", "ffff000000060900030e000000000000", "ffffff00000000000100000000000000",
    "ffffffff000000000600000000000000", "ffffffffff0000000005000000000000", "ffffffffffff0000000d000000000000",
    "ffffffffffffff000000000000000000", "ffffffffffffffff0000020000000000", "ffffffffffffffffff00000000000000",
    "ffffffffffffffffffff020000000000", "ffffffffffffffffffff000000000000", "ffffffffffffff000000000000000000",
    "ffffffffffffff000000000000000000", "ffcd32ffffffffff0000000000000000", "ff000019ffffffff1301000000000000",
    "0000000000ffffff0000000000000000",
)


def _plane(rows: Tuple[str, ...]) -> np.ndarray:
    return np.array([list(bytes.fromhex(row)) for row in rows], np.uint8)


@lru_cache(maxsize=1)
def cursor_image() -> Tuple[np.ndarray, np.ndarray]:
    """``(colour, alpha)``: the arrow as (16, 16, 3) uint8 (same in RGB and BGR) and (16, 16, 1) float64 in [0, 1]."""
    gray = _plane(_GRAY)
    return np.repeat(gray[:, :, None], 3, axis=2), _plane(_ALPHA)[:, :, None] / 255.0


def cursor_position(mouse_x: float, mouse_y: float, frame_height: int) -> Tuple[int, int]:
    """Frame pixel ``(x, y)`` of the cursor's top-left corner for a recorder mouse position."""
    scale = frame_height / RECORDER_WINDOW_HEIGHT
    return int(mouse_x * scale), int(mouse_y * scale)


def draw_cursor(frame: np.ndarray, x: int, y: int) -> None:
    """Blend the cursor into ``frame`` (HxWx3 uint8, modified in place) with its top-left corner at (x, y).

    The part outside the frame is clipped. (The official loader fails on a negative position: numpy reads a
    negative start as counted from the far edge, the slice comes out empty and the blend raises a broadcast
    ValueError, which ends its worker. Recorded positions are inside the window, so this only matters for odd
    data.)
    """
    colour, alpha = cursor_image()
    height, width = frame.shape[:2]
    top, left = max(y, 0), max(x, 0)
    bottom, right = min(y + CURSOR_SIZE, height), min(x + CURSOR_SIZE, width)
    if top >= bottom or left >= right:
        return
    window = (slice(top - y, bottom - y), slice(left - x, right - x))
    a = alpha[window]
    region = frame[top:bottom, left:right]
    frame[top:bottom, left:right] = (region * (1 - a) + colour[window] * a).astype(np.uint8)
