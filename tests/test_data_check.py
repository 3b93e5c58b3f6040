"""python -m vpt_agent.data: recordings checked as training reads them, every problem reported, totals right."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vpt_agent.data import DataError, RecordingWriter, ReadOptions, find_recordings, load_actions, recording_files
from vpt_agent.data import check as check_module
from vpt_agent.data.check import check_recordings, format_summary, summarize
from vpt_agent.data.cli import main
from vpt_agent.train.targets import action_targets

STEPS = 30


def noise_frame(rng, size=(36, 64)):
    return rng.integers(0, 256, (*size, 3), dtype=np.uint8)  # incompressible: every frame is many bytes


def write(directory, name, seed=0):
    """A recording of buttons and camera moves with one null step (skipped when read) and one sub-bin camera
    move (kept, but null for the agent): forward on 14 kept steps, attack on 10."""
    rng = np.random.default_rng(seed)
    with RecordingWriter(directory, name, quality="lossless") as writer:
        for step in range(STEPS):
            action = {"forward": int(step % 2), "attack": int(step % 3 == 0), "camera": [0.0, 1.5 + 3.0 * (step % 4)]}
            if step == 4:
                action = {}
            if step == 5:
                action = {"camera": [0.0, 0.15]}  # one mouse pixel: moves, but inside the null camera bin
            writer.write(noise_frame(rng), action)
    return recording_files(directory, name)


@pytest.fixture
def good(tmp_path):
    directory = tmp_path / "good"
    return directory, [write(directory, f"ep{i}", seed=i) for i in range(3)]


def test_counts_are_what_training_reads(good):
    directory, files = good
    checks = check_recordings(directory)
    assert [c.name for c in checks] == [str(f.video.with_suffix("")) for f in files]
    for check, f in zip(checks, files):
        read = load_actions(f)
        assert check.ok and check.decoded is None
        assert (check.lines, check.frames, check.null_skipped, check.steps) == (STEPS, STEPS, 1, STEPS - 1) == (
            read.num_lines, read.num_frames, read.num_null, len(read))
        assert check.agent_null == int(action_targets(read.actions).null.sum()) == 1
        assert check.camera_moving == sum(bool(np.any(a["camera"])) for a in read.actions)
        assert check.buttons == {"forward": 14, "attack": 10}
    summary = summarize(checks)
    assert summary["usable"] == 3 and summary["unusable"] == 0 and summary["problems"] == []
    assert summary["steps"] == 3 * (STEPS - 1) and summary["agent_null"] == 3
    assert list(summary["buttons"])[:2] == ["forward", "attack"] and summary["buttons"]["jump"] == 0
    text = format_summary(summary)
    assert "3 recordings: 3 usable, 0 not" in text and f"steps: {3 * (STEPS - 1)} for training" in text
    assert "forward 48.3%, attack 34.5%" in text and "never pressed: ESC" in text


def test_every_problem_is_reported_and_the_rest_still_counted(tmp_path, good):
    directory, files = good
    lines = files[1].actions.read_text().splitlines()
    files[1].actions.write_text("\n".join(lines[:7] + [lines[7][:-4]] + lines[8:]) + "\n")  # line 8 broken
    with open(files[2].actions, "a") as f:
        f.write(lines[0] + "\n")  # one line more than frames
    write(directory, "ep3").actions.unlink()  # an mp4 without its jsonl
    (directory / "ep4.mp4").write_bytes(b"\x00" * 100)
    (directory / "ep4.jsonl").write_text(lines[0] + "\n")
    checks = check_recordings(directory, jobs=2)
    assert [c.ok for c in checks] == [True, False, False, False, False]
    problems = summarize(checks)["problems"]
    assert "ep1.jsonl:8: not a JSON line" in problems[0]
    assert f"ep2.mp4: {STEPS} frames but ep2.jsonl has {STEPS + 1} lines" in problems[1]
    assert "ep3.mp4: has no matching ep3.jsonl" in problems[2]
    assert "ep4.mp4: cannot open the video" in problems[3]
    assert summarize(checks)["steps"] == STEPS - 1  # ep0 alone
    # the official loader's truncation makes ep2 usable, as train --official-loader would read it
    official = check_recordings(files[2].video, ReadOptions.official())
    assert official[0].ok and official[0].lines == STEPS + 1 and official[0].steps == STEPS - 1
    with pytest.raises(DataError, match="ep3.mp4: has no matching"):  # training stops at the first problem
        find_recordings(directory)


def truncate_keeping_the_index(files, fraction=0.5):
    """Move the mp4's index (moov) to the front, then cut the file: it opens, announces every frame, and only the
    first ones decode (a copy interrupted mid-way)."""
    import imageio_ffmpeg

    moved = files.video.with_name("moved.mp4")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(files.video), "-c", "copy",
                    "-movflags", "+faststart", str(moved)], check=True)
    data = moved.read_bytes()
    moved.unlink()
    files.video.write_bytes(data[:int(len(data) * fraction)])


def test_decode_finds_a_truncated_video_that_the_counts_miss(good):
    directory, files = good
    truncate_keeping_the_index(files[1])
    quick = check_recordings(directory)
    assert all(c.ok for c in quick)  # the container still says STEPS frames
    decoded = check_recordings(directory, decode=True, jobs=2)
    assert [c.ok for c in decoded] == [True, False, True]
    assert decoded[0].decoded == STEPS and 0 < decoded[1].decoded < STEPS
    assert f"ep1.mp4: {decoded[1].decoded} frames decode, the container announces {STEPS}" in decoded[1].error
    assert summarize(decoded)["decoded"] == 2 * STEPS


def test_parallel_equals_serial(good):
    directory, _ = good
    assert check_recordings(directory, jobs=3, decode=True) == check_recordings(directory, jobs=1, decode=True)
    with pytest.raises(ValueError, match="jobs"):
        check_recordings(directory, jobs=0)


def test_cli_exit_codes_and_json(tmp_path, good, capsys):
    directory, files = good
    out = tmp_path / "check.json"
    assert main([str(directory), "--no-progress", "--json", str(out), "--decode"]) == 0
    report = json.loads(out.read_text())
    assert report["usable"] == 3 and len(report["per_recording"]) == 3 and report["decoded"] == 3 * STEPS
    assert report["per_recording"][0]["buttons"] == {"forward": 14, "attack": 10}
    out_text = capsys.readouterr().out
    assert "3 recordings: 3 usable, 0 not" in out_text and f"videos: {3 * STEPS} of the {3 * STEPS} frames" in out_text
    files[0].actions.write_text("")
    assert main([str(directory), "--no-progress"]) == 1
    assert "ep0.jsonl: empty action file" in capsys.readouterr().out
    assert main([str(tmp_path / "missing"), "--no-progress"]) == 2
    assert "missing: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--no-progress"]) == 2
    assert "no recordings" in capsys.readouterr().err
    assert main([str(directory), "--jobs", "0"]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
    assert main([str(directory), "--no-progress", "--json", str(tmp_path / "no" / "dir.json")]) == 2
    assert capsys.readouterr().err == f"error: --json {tmp_path}/no/dir.json: {tmp_path}/no is not a directory\n"
    assert main([str(directory), "--no-progress", "--json", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: --json {tmp_path}: is a directory\n"
    (tmp_path / "old.json").write_text('{"old": 1}')

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    with pytest.MonkeyPatch.context() as m:  # a failed write keeps the old report whole
        m.setattr(Path, "write_text", disk_full)
        assert main([str(directory), "--no-progress", "--json", str(tmp_path / "old.json")]) == 2
    assert "No space left" in capsys.readouterr().err and (tmp_path / "old.json").read_text() == '{"old": 1}'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".old.json")) == []


def test_python_m_entry_point(good):
    directory, _ = good
    run = subprocess.run([sys.executable, "-m", "vpt_agent.data", str(directory), "--no-progress"], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "3 recordings: 3 usable" in run.stdout


def _die(*args):
    os._exit(3)  # a decoder crash takes the whole process down


def test_a_dying_checker_is_one_line(good, monkeypatch, capsys):
    directory, _ = good
    monkeypatch.setattr(check_module, "check_recording", _die)
    assert main([str(directory), "--no-progress", "--jobs", "2"]) == 2
    assert "a checking process died" in capsys.readouterr().err


def test_edge_cases_of_the_listing_and_the_totals(tmp_path, good, capsys, monkeypatch):
    directory, files = good
    # the same recordings named twice, relatively and absolutely: counted once
    monkeypatch.chdir(directory.parent)
    assert len(check_recordings([directory.name, directory, files[0].video, files[0].actions])) == 3
    # a file name OpenCV cannot take (it would crash the process): one problem line
    odd = tmp_path / "odd"
    odd.mkdir()
    stem = os.fsdecode(b"bad\xffname")
    (odd / (stem + ".mp4")).write_bytes(files[0].video.read_bytes())
    (odd / (stem + ".jsonl")).write_bytes(files[0].actions.read_bytes())
    [result] = check_recordings(odd)
    assert not result.ok and "file name is not valid UTF-8" in result.error
    # usable recordings without a single training step: training would refuse them, so does the check
    empty = tmp_path / "nulls"
    with RecordingWriter(empty, "still") as writer:
        for _ in range(4):
            writer.write(noise_frame(np.random.default_rng(0)), {})
    assert main([str(empty), "--no-progress"]) == 1
    assert "no training steps" in capsys.readouterr().err
    # a path that is not a recording at all is a bad argument
    (tmp_path / "notes.txt").write_text("hi")
    assert main([str(tmp_path / "notes.txt"), "--no-progress"]) == 2
    assert "not a recording" in capsys.readouterr().err


def test_official_loader_decode_needs_only_the_frames_it_reads(good):
    directory, files = good
    with open(files[0].actions, "a") as f:
        f.write(files[0].actions.read_text().splitlines()[0] + "\n")  # one line more than frames
    [strict] = check_recordings(files[0].video, decode=True)
    [official] = check_recordings(files[0].video, ReadOptions.official(), decode=True)
    assert not strict.ok and "31 lines" in strict.error
    assert official.ok and official.decoded == STEPS


SLOW_CHECK = """
import sys, time
from vpt_agent.data import check
from vpt_agent.data.cli import main

def slow(*args):
    time.sleep(60)

check.check_recording = slow
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_with_several_jobs_stops_at_once_and_cleanly(good, tmp_path):
    import signal
    import time

    directory, _ = good
    script = tmp_path / "slow_check.py"
    script.write_text(SLOW_CHECK)
    run = subprocess.Popen([sys.executable, str(script), str(directory), "--jobs", "2", "--no-progress"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(3)  # both workers are inside a 60 s check
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    started = time.monotonic()
    out, err = run.communicate(timeout=30)
    assert run.returncode == 130 and err.strip() == "interrupted", err
    assert time.monotonic() - started < 10  # not after the recordings already handed out
