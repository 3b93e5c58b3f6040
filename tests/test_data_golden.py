"""vpt_agent.data against the official VPT data loader: golden outputs made by tests/data/make_golden_data.py.

Actions are compared exactly, frames bit for bit (the golden videos are lossless H.264 RGB, so decoding is
exact in any OpenCV/ffmpeg).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vpt_agent.data import (CAMERA_DEGREES_PER_PIXEL, GUI_CAMERA_SCALE, DataError, ReadOptions, find_recordings,
                            gui_camera_scale, load_actions, load_recording, prepare_frame)
from vpt_agent.data.actions import parse_record, record_to_env_action
from vpt_agent.data.cursor import CURSOR_SIZE, cursor_image, draw_cursor
from vpt_agent.data.video import iter_video_frames

DATA = Path(__file__).parent / "data"
RECORDINGS = DATA / "golden_data"
NAMES = ("quirks", "short", "long")
OFFICIAL = ReadOptions.official()  # bit for bit the official loader
FIXED = ReadOptions(length_mismatch="truncate")  # our default camera (issue #54 fixed)


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(DATA / "golden_data.npz"))


@pytest.fixture(scope="module")
def button_keys(golden):
    return json.loads(str(golden["button_keys"]))


def files(name):
    (found,) = find_recordings([RECORDINGS / f"{name}.mp4"])
    return found


def as_rows(actions, button_keys):
    buttons = np.array([[a[k] for k in button_keys] for a in actions], np.uint8).reshape(-1, len(button_keys))
    camera = np.array([a["camera"] for a in actions], np.float32).reshape(-1, 2)
    return buttons, camera


def test_constants_match_official(golden):
    assert CAMERA_DEGREES_PER_PIXEL == float(golden["camera_scaler"])
    official = json.loads(str(golden["gui_scalers"]))
    assert GUI_CAMERA_SCALE == official
    for version, scale in official.items():
        assert gui_camera_scale(version) == scale
    assert gui_camera_scale(None) == 1.0  # the official loader never applies the table
    assert gui_camera_scale("7.3") == 1.0  # "if data version is not present, assume it is 1"


@pytest.mark.parametrize("integer_camera", [True, False])
def test_single_records(golden, button_keys, integer_camera):
    records = json.loads(str(golden["records"]))
    expected_camera = golden["records_camera" if integer_camera else "records_camera_float"].astype(np.float32)
    for i, record in enumerate(records):
        action, null = record_to_env_action(parse_record(record, f"record {i}"), integer_camera=integer_camera)
        buttons, camera = as_rows([action], button_keys)
        assert np.array_equal(buttons[0], golden["records_buttons"][i]), (i, record)
        assert np.array_equal(camera[0], expected_camera[i]), (i, record, camera[0], expected_camera[i])
        assert null == bool(golden["records_null"][i]), (i, record)
    # the records do exercise the integer truncation and the null rule
    assert not np.array_equal(golden["records_camera"], golden["records_camera_float"])
    assert 0 < golden["records_null"].sum() < len(records)


@pytest.mark.parametrize("name", NAMES)
def test_recording_matches_official_loader(golden, button_keys, name):
    recording = load_recording(files(name), options=OFFICIAL)
    assert recording.frames.shape == golden[f"{name}/frames"].shape
    assert np.array_equal(recording.frames, golden[f"{name}/frames"])
    buttons, camera = as_rows(recording.actions, button_keys)
    assert np.array_equal(buttons, golden[f"{name}/buttons"])
    assert np.array_equal(camera, golden[f"{name}/camera"].astype(np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_float_camera_matches_fixed_official_loader(golden, button_keys, name):
    buttons, camera = as_rows(load_actions(files(name), FIXED).actions, button_keys)
    assert np.array_equal(buttons, golden[f"{name}/buttons"])
    assert np.array_equal(camera, golden[f"{name}/camera_float"].astype(np.float32))


def test_quirks_are_exercised(golden, button_keys):
    """The golden recordings hit what they claim to: a stuck attack, hotbar scrolls, the cursor, null steps."""
    actions = load_actions(files("quirks"), OFFICIAL)
    assert actions.num_null >= 5 and actions.num_lines == actions.num_frames == 60
    assert actions.frame_index[0] == 1  # line 0: the stuck attack removed -> null
    first_attack = next(i for i, a in enumerate(actions.actions) if a["attack"])
    assert actions.frame_index[first_attack] == 3  # freed by the second press on line 3
    assert any(a["hotbar.8"] and not a["hotbar.9"] for a in actions.actions)  # a scroll without key
    gui = np.flatnonzero(actions.gui_open)
    assert len(gui) >= 8
    # without the cursor the GUI frames differ from the official ones (except where it lies off-frame)
    frames = dict(iter_video_frames(files("quirks").video, actions.frame_index[gui]))
    differ = [not np.array_equal(prepare_frame(frames[actions.frame_index[i]].copy(), False, (0, 0)),
                                 golden["quirks/frames"][i]) for i in gui]
    assert sum(differ) >= 6
    short = load_actions(files("short"), OFFICIAL)
    assert short.actions[0]["attack"] == 1 and short.actions[0]["hotbar.4"] == 1  # not stuck; slot 4 at start


@pytest.mark.parametrize("name", ["short", "long"])
def test_length_mismatch_is_an_error_by_default(name):
    with pytest.raises(DataError, match=rf"{name}\.mp4: \d+ frames but {name}\.jsonl has \d+ lines"):
        load_actions(files(name))


def test_full_resolution_frames_are_the_rgb_video_frames():
    recording = load_recording(files("long"), size=None, options=FIXED)
    raw = dict(iter_video_frames(files("long").video, recording.frame_index))
    for frame, index in zip(recording.frames, recording.frame_index):
        assert np.array_equal(frame, raw[index][..., ::-1])


def test_cursor_is_clipped_at_negative_positions():
    """Our own rule where the official loader fails (a negative start index gives an empty slice and the blend
    raises a broadcast ValueError)."""
    frame = np.full((40, 50, 3), 100, np.uint8)
    draw_cursor(frame, -5, -3)
    colour, alpha = cursor_image()
    expected = (np.full((13, 11, 3), 100.0) * (1 - alpha[3:, 5:]) + colour[3:, 5:] * alpha[3:, 5:]).astype(np.uint8)
    assert np.array_equal(frame[:13, :11], expected)
    assert (frame[13:] == 100).all() and (frame[:, 11:] == 100).all()
    untouched = np.full((40, 50, 3), 100, np.uint8)
    draw_cursor(untouched, -CURSOR_SIZE, 5)
    draw_cursor(untouched, 50, 5)
    assert (untouched == 100).all()
