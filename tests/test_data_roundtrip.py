"""Our own episodes in VPT's recording format: write (RecordingWriter, python -m vpt_agent.demos), read back
(vpt_agent.data) -> the same actions, the same frames (bit-exact for "lossless", within the stated error for
"standard"), and one clear error for each kind of bad input."""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest

import vpt_envs  # noqa: F401  (registers vpt/VoxelTreechop-v0)
from vpt_agent.action_mapping import MINERL_ACTION_KEYS
from vpt_agent.data import (DataError, ReadOptions, RecordingWriter, env_action_to_json, find_recordings,
                            iter_recording, load_actions, load_recording, noop_env_action, recording_files)
from vpt_agent.data.actions import decode_records
from vpt_agent.demos import episode_name, main as demos_main
from vpt_agent.frames import preprocess_pov
from vpt_envs.policies import TreechopScript

STEPS = 24
# "standard" (H.264 yuv420p crf 18) error bounds, after the agent's resize to 128x128; measured ~2.4 mean
STANDARD_MEAN_ERROR, STANDARD_P99_ERROR = 4.0, 25


def is_null(action) -> bool:
    return not any(action[k] for k in MINERL_ACTION_KEYS if k != "camera") and not np.any(action["camera"])


def assert_same_actions(got, expected):
    assert len(got) == len(expected)
    for i, (a, b) in enumerate(zip(got, expected)):
        assert set(a) == set(MINERL_ACTION_KEYS)
        for key in MINERL_ACTION_KEYS:
            if key == "camera":
                assert a[key].dtype == np.float32 and np.array_equal(a[key], np.float32(b[key])), (i, a[key], b[key])
            else:
                assert a[key] == b[key], (i, key)


def play(directory: Path, name: str, seed: int, quality: str):
    """A scripted episode written with RecordingWriter; returns the frames and actions that went in."""
    env = gymnasium.make("vpt/VoxelTreechop-v0")
    obs, _ = env.reset(seed=seed)
    policy = TreechopScript(env)
    frames, actions = [], []
    with RecordingWriter(directory, name, quality=quality) as writer:
        for step in range(STEPS):
            action = policy()
            if step in (3, 4):
                action = noop_env_action()  # null steps: skipped when read back
            if step == 5:
                action["hotbar.3"] = 1
            frames.append(obs["pov"])
            actions.append(action)
            writer.write(obs["pov"], action, extra={"reward": 0.0})
            obs, *_ = env.step(action)
    env.close()
    return np.stack(frames), actions


@pytest.fixture(scope="module")
def episodes(tmp_path_factory):
    directory = tmp_path_factory.mktemp("episodes")
    return directory, {quality: play(directory, f"ep-{quality}", 11, quality) for quality in ("lossless", "standard")}


@pytest.mark.parametrize("quality", ["lossless", "standard"])
def test_round_trip_actions_are_identical(episodes, quality):
    directory, written = episodes
    frames, actions = written[quality]
    (files,) = find_recordings(directory / f"ep-{quality}.jsonl")
    loaded = load_actions(files)
    kept = [i for i, a in enumerate(actions) if not is_null(a)]
    assert len(kept) < STEPS and loaded.num_null == STEPS - len(kept)
    assert loaded.frame_index.tolist() == kept
    assert_same_actions(loaded.actions, [actions[i] for i in kept])
    assert any(np.any(a["camera"] != np.round(a["camera"])) for a in loaded.actions)  # fractional degrees kept


def test_round_trip_lossless_frames_are_bit_exact(episodes):
    directory, written = episodes
    frames, _ = written["lossless"]
    files = recording_files(directory, "ep-lossless")
    full = load_recording(files, size=None)
    assert np.array_equal(full.frames, frames[full.frame_index])
    small = load_recording(files)
    expected = np.stack([preprocess_pov({"pov": f}) for f in frames[small.frame_index]])
    assert np.array_equal(small.frames, expected)


def test_round_trip_standard_frames_within_stated_error(episodes):
    directory, written = episodes
    frames, _ = written["standard"]
    small = load_recording(recording_files(directory, "ep-standard"))
    expected = np.stack([preprocess_pov({"pov": f}) for f in frames[small.frame_index]])
    error = np.abs(small.frames.astype(np.int16) - expected)
    assert 0 < error.mean() < STANDARD_MEAN_ERROR
    assert np.percentile(error, 99) < STANDARD_P99_ERROR


def test_iter_recording_streams_the_same_as_load(episodes):
    directory, _ = episodes
    files = recording_files(directory, "ep-standard")
    loaded = load_recording(files, size=(64, 96))
    streamed = list(iter_recording(files, size=(64, 96)))
    assert len(streamed) == len(loaded) and streamed[0][0].shape == (64, 96, 3)
    assert all(np.array_equal(f, g) for (f, _), g in zip(streamed, loaded.frames))


def test_env_action_to_json_round_trip_random_actions():
    rng = np.random.default_rng(0)
    actions, records = [], []
    for step in range(400):
        action = {key: int(rng.random() < 0.15) for key in MINERL_ACTION_KEYS if key != "camera"}
        scale = rng.choice([1e-3, 0.6, 10.0, 180.0])
        action["camera"] = (rng.uniform(-1, 1, 2) * scale).astype(np.float32) * (rng.random() < 0.7)
        actions.append(action)
        records.append(env_action_to_json(action, records[-1] if records else None))
        json.dumps(records[-1])  # plain JSON
    steps = decode_records(json.loads(json.dumps(records)), Path("random.jsonl"))
    assert_same_actions(steps.actions, actions)
    assert steps.is_null.tolist() == [is_null(a) for a in actions]


def test_first_step_attack_is_not_taken_for_a_stuck_button(tmp_path):
    attack = {**noop_env_action(), "attack": 1}
    records = [env_action_to_json(attack), env_action_to_json(attack, None)]
    assert records[0]["mouse"]["newButtons"] == []
    assert decode_records(records, tmp_path / "x.jsonl").actions[0]["attack"] == 1


def test_bad_env_actions_are_refused():
    with pytest.raises(DataError, match="unknown env action keys"):
        env_action_to_json({"fly": 1})
    with pytest.raises(DataError, match="camera"):
        env_action_to_json({"camera": [1.0]})
    with pytest.raises(DataError, match="camera"):
        env_action_to_json({"camera": [np.nan, 0.0]})


# ----------------------------------------------------------------------------- the writer's guarantees

def tiny_frame(value=0, size=(36, 64)):
    return np.full((*size, 3), value, np.uint8)


def test_writer_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with RecordingWriter(tmp_path, "crash") as writer:
            writer.write(tiny_frame(), {"forward": 1})
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_partial_files_are_invisible_until_close(tmp_path):
    writer = RecordingWriter(tmp_path, "ep")
    writer.write(tiny_frame(), {"forward": 1})
    assert not recording_files(tmp_path, "ep").video.exists()
    with pytest.raises(DataError, match="no recordings"):
        find_recordings(tmp_path)
    files = writer.close()
    assert find_recordings(tmp_path) == [files]
    assert len(load_actions(files)) == 1


def test_writer_refuses_bad_input(tmp_path):
    with pytest.raises(DataError, match="no steps"):
        RecordingWriter(tmp_path, "empty").close()
    assert list(tmp_path.iterdir()) == []
    with RecordingWriter(tmp_path, "ep") as writer:
        with pytest.raises(DataError, match="RGB uint8"):
            writer.write(tiny_frame().astype(np.float32), {})
        with pytest.raises(DataError, match="even"):
            writer.write(tiny_frame(size=(35, 64)), {})
        writer.write(tiny_frame(), {})
        with pytest.raises(DataError, match="size"):
            writer.write(tiny_frame(size=(36, 66)), {})
        with pytest.raises(DataError, match="replace"):
            writer.write(tiny_frame(), {}, extra={"hotbar": 3})
    with pytest.raises(DataError, match="already exists"):
        RecordingWriter(tmp_path, "ep")
    with pytest.raises(DataError, match="plain file name"):
        RecordingWriter(tmp_path, "../ep")
    for fps in (-5, 0, "20"):
        with pytest.raises(DataError, match="fps must be a number"):
            RecordingWriter(tmp_path, "fps", fps=fps)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep.jsonl", "ep.mp4"]


def test_a_step_refused_for_its_extra_fields_leaves_the_pair_in_step(tmp_path):
    with RecordingWriter(tmp_path, "ep") as writer:
        writer.write(tiny_frame(), {"forward": 1})
        for extra in ({"reward": np.float32(1)}, {"reward": float("nan")}):  # not JSON / not strict JSON
            with pytest.raises(DataError, match="cannot be written as JSON"):
                writer.write(tiny_frame(), {"forward": 1}, extra=extra)
        writer.write(tiny_frame(), {"forward": 1}, extra={"reward": 1.0})
    loaded = load_actions(recording_files(tmp_path, "ep"))
    assert loaded.num_frames == loaded.num_lines == 2


# ----------------------------------------------------------------------------- bad recordings

@pytest.fixture
def one_recording(tmp_path):
    with RecordingWriter(tmp_path, "rec") as writer:
        for i in range(4):
            writer.write(tiny_frame(40 * i), {"forward": 1})
    return recording_files(tmp_path, "rec")


def test_a_recording_can_be_named_by_a_path(one_recording):
    base = one_recording.video.with_suffix("")
    expected = load_actions(one_recording)
    for path in (str(base), base, one_recording.video, str(one_recording.actions)):
        assert load_actions(path).files == one_recording
        assert np.array_equal(load_actions(path).frame_index, expected.frame_index)
        assert len(load_recording(path, size=None)) == 4 and len(list(iter_recording(path))) == 4
    with pytest.raises(DataError, match="missing.jsonl"):
        load_actions(base.with_name("missing"))
    with pytest.raises(DataError, match="a directory, not a recording"):
        load_actions(base.parent)
    for size in ((0, 0), (-1, 5), 128, (2.5, 3)):
        with pytest.raises(DataError, match="size must be None or"):
            load_recording(one_recording, size=size)


def test_written_buttons_are_0_or_1_as_the_env_takes_them(tmp_path):
    with RecordingWriter(tmp_path, "ep") as writer:
        writer.write(tiny_frame(), {"forward": True, "attack": 1.0})
        for value in ("no", 2, float("nan")):
            with pytest.raises(DataError, match="must be one 0/1 value"):
                writer.write(tiny_frame(), {"attack": value})
    assert load_actions(recording_files(tmp_path, "ep")).actions[0]["attack"] == 1
    with pytest.raises(DataError, match="length_mismatch"):
        ReadOptions(length_mismatch="bogus")


def test_jsonl_line_not_json(one_recording):
    lines = one_recording.actions.read_text().splitlines()
    lines[2] = lines[2][:-5]
    one_recording.actions.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"rec\.jsonl:3: not a JSON line"):
        load_actions(one_recording)


def test_jsonl_line_not_an_object_or_missing_field(one_recording):
    lines = one_recording.actions.read_text().splitlines()
    one_recording.actions.write_text("\n".join([lines[0], "[1, 2]", *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"rec\.jsonl:2: expected a JSON object"):
        load_actions(one_recording)
    record = json.loads(lines[0])
    del record["mouse"]["dx"]
    one_recording.actions.write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    with pytest.raises(DataError, match=r"rec\.jsonl:1: missing 'mouse\.dx'"):
        load_actions(one_recording)


def test_unreadable_mp4(one_recording):
    one_recording.video.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DataError, match=r"rec\.mp4: cannot open the video"):
        load_actions(one_recording)


def test_mismatched_lengths(one_recording):
    with open(one_recording.actions, "a") as f:
        f.write(one_recording.actions.read_text().splitlines()[0] + "\n")
    with pytest.raises(DataError, match=r"rec\.mp4: 4 frames but rec\.jsonl has 5 lines"):
        load_actions(one_recording)


def test_empty_jsonl(one_recording):
    one_recording.actions.write_text("")
    with pytest.raises(DataError, match=r"rec\.jsonl: empty action file"):
        load_actions(one_recording)


def test_find_recordings_errors(tmp_path, one_recording):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no recordings"):
        find_recordings(empty)
    with pytest.raises(DataError, match="no such file or directory"):
        find_recordings(tmp_path / "missing")
    (tmp_path / "lonely.mp4").write_bytes(one_recording.video.read_bytes())
    with pytest.raises(DataError, match=r"lonely\.mp4: has no matching lonely\.jsonl"):
        find_recordings(tmp_path)
    (tmp_path / "lonely.mp4").unlink()
    one_recording.video.unlink()
    with pytest.raises(DataError, match=r"rec\.jsonl: has no matching rec\.mp4"):
        find_recordings(tmp_path)


# ----------------------------------------------------------------------------- python -m vpt_agent.demos

def test_demos_cli_records_resumes_and_round_trips(tmp_path, capsys):
    out = tmp_path / "demos"
    args = ["--episodes", "2", "--seed", "7", "--out", str(out), "--max-steps", "25", "--no-progress"]
    assert demos_main(args) == 0
    files = find_recordings(out)
    assert [f.name for f in files] == [episode_name(7), episode_name(8)] == sorted(f.name for f in files)
    lines = files[0].actions.read_text().splitlines()
    assert len(lines) == 25 and all("reward" in json.loads(line) for line in lines)
    first = load_recording(files[0])
    assert len(first) > 0 and first.frames.shape[1:] == (128, 128, 3)
    # a killed third episode: its partial files and a video without its jsonl are recorded again
    (out / f"{episode_name(9)}.mp4.partial").write_bytes(b"x")
    (out / f"{episode_name(9)}.mp4").write_bytes(b"x")
    before = files[0].video.stat().st_mtime_ns
    capsys.readouterr()
    assert demos_main([*args[:1], "3", *args[2:]]) == 0
    assert "recorded 1 episodes (2 already there)" in capsys.readouterr().out
    assert files[0].video.stat().st_mtime_ns == before
    assert [f.name for f in find_recordings(out)] == [episode_name(s) for s in (7, 8, 9)]
    assert not list(out.glob("*.partial"))


def test_demos_cli_bad_input(tmp_path, capsys):
    assert demos_main(["--env", "nope/Nope-v0", "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --env nope/Nope-v0") and "\n" not in err
    (tmp_path / "file").write_text("")
    assert demos_main(["--out", str(tmp_path / "file"), "--no-progress"]) == 2
    assert "not a directory" in capsys.readouterr().err
    for flag, value, minimum in (("--seed", "-1", 0), ("--episodes", "0", 1), ("--max-steps", "-5", 1)):
        assert demos_main([flag, value, "--out", str(tmp_path / "d"), "--no-progress"]) == 2
        assert capsys.readouterr().err == f"error: {flag} must be >= {minimum}, got {value}\n"
        assert not (tmp_path / "d").exists()
    broken = recording_files(tmp_path / "broken", episode_name(0))
    broken.video.parent.mkdir()
    broken.video.write_bytes(b"x")
    broken.actions.write_text("{not json\n")
    capsys.readouterr()
    assert demos_main(["--episodes", "1", "--out", str(broken.video.parent), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {broken.actions}: unreadable")
    with pytest.raises(SystemExit) as exit_info:
        demos_main(["--quality", "best"])
    assert exit_info.value.code == 2
