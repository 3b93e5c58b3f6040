"""``python -m vpt_agent.label``: schedule, output format (read back by vpt_agent.data), resume, bad input."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from idm_helpers import TINY_LSTM_NET, video_frames, write_tiny_idm, write_video
from vpt_agent.action_mapping import CAMERA_NULL_BIN
from vpt_agent.data import find_recordings, load_actions
from vpt_agent.data.video import read_video_rgb
from vpt_agent.idm import VPTIDM
from vpt_agent.idm_actions import env_to_idm
from vpt_agent.label import (LabelConfig, in_shard, label_videos, main, owned_ranges, resample_indices,
                             window_starts)

WINDOW, STRIDE = 8, 4  # the tiny IDM's timesteps and the default stride


# ----------------------------------------------------------------------------- schedule
def test_resample_rule():
    assert resample_indices(5, 20.0).tolist() == [0, 1, 2, 3, 4]
    assert resample_indices(5, 20.03).tolist() == [0, 1, 2, 3, 4]  # within tolerance: kept as is
    assert resample_indices(9, 30.0).tolist() == [0, 1, 3, 4, 6, 7]  # frame on screen at k/20 s
    assert resample_indices(9, 60.0).tolist() == [0, 3, 6]
    assert resample_indices(3, 10.0).tolist() == [0, 0, 1, 1, 2, 2]
    assert resample_indices(1000, 29.97).max() < 1000


@pytest.mark.parametrize("n", [1, 5, 8, 9, 12, 13, 30, 101])
def test_windows_cover_every_frame_once_with_context(n):
    starts = window_starts(n, WINDOW, STRIDE)
    ranges = owned_ranges(starts, WINDOW, n)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:]))
    for s, (lo, hi) in zip(starts, ranges):
        assert s <= lo <= hi <= min(s + WINDOW, n)
        for f in range(lo, hi):
            if STRIDE // 2 <= f < n - STRIDE // 2 and n >= WINDOW:
                assert min(f - s, s + WINDOW - 1 - f) >= STRIDE // 2, (n, f, s)


# ----------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def idm_files(tmp_path_factory):
    return write_tiny_idm(tmp_path_factory.mktemp("idm"))


@pytest.fixture
def videos(tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "a_long.mp4", video_frames(21, seed=1), fps=20)  # 21 frames: several windows + a flush one
    write_video(d / "b_short.mp4", video_frames(6, seed=2), fps=20)  # shorter than a window
    write_video(d / "c_30fps.avi", video_frames(12, seed=3, size=(47, 63)), fps=30)  # resampled to 8 frames
    return d


def _config(idm_files, videos, out, **kw):
    model, weights = idm_files
    options = dict(batch=3, progress=False, device="cpu")
    options.update(kw)
    return LabelConfig(videos=[str(videos)], out=str(out), model=str(model), weights=str(weights), **options)


def _expected_labels(idm: VPTIDM, frames: np.ndarray):
    """Labels by the stated rule, computed window by window through VPTIDM.predict_arrays (fresh memory)."""
    n = len(frames)
    starts = window_starts(n, WINDOW, STRIDE)
    buttons, bins = np.zeros((n, 20), np.uint8), np.zeros((n, 2), np.int64)
    for s, (lo, hi) in zip(starts, owned_ranges(starts, WINDOW, n)):
        idm.reset()
        p = idm.predict_arrays(frames[s:s + WINDOW])
        buttons[lo:hi], bins[lo:hi] = p.buttons[lo - s:hi - s], p.camera_bins[lo - s:hi - s]
    return buttons, bins


def test_labels_read_back_unchanged_by_the_data_loader(idm_files, videos, tmp_path):
    out = tmp_path / "out"
    summary = label_videos(_config(idm_files, videos, out))
    assert summary["labelled"] == 3 and summary["frames"] == 21 + 6 + 8
    recs = {r.name: r for r in find_recordings(out)}
    assert sorted(recs) == ["a_long", "b_short", "c_30fps"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{s}" for n in recs for s in ("mp4", "jsonl"))
    idm = VPTIDM.from_files(*idm_files, device="cpu")
    pressed_any = 0
    for name, rec in recs.items():
        source = read_video_rgb(next(videos.glob(name + ".*")))
        if name == "c_30fps":
            source = [source[i] for i in resample_indices(len(source), 30.0)]
        buttons, bins = _expected_labels(idm, np.stack(source))
        assert len(read_video_rgb(rec.video)) == len(source)
        loaded = load_actions(rec)
        assert loaded.num_lines == len(source)
        got_b, got_c = env_to_idm(loaded.actions)
        keep = loaded.frame_index
        assert (got_b == buttons[keep]).all() and (got_c == bins[keep]).all(), name
        skipped = np.setdiff1d(np.arange(len(source)), keep)  # null actions: nothing pressed, camera still
        assert not buttons[skipped].any() and (bins[skipped] == CAMERA_NULL_BIN).all()
        pressed_any += int(buttons.any(axis=1).sum())
    assert pressed_any > 5  # the tiny IDM's labels are not all no-ops
    assert os.path.samefile(recs["a_long"].video, videos / "a_long.mp4") or \
        (recs["a_long"].video.read_bytes() == (videos / "a_long.mp4").read_bytes())


def test_resume_skips_done_videos_and_redoes_unfinished_ones(idm_files, videos, tmp_path):
    out = tmp_path / "out"
    label_videos(_config(idm_files, videos, out))
    before = (out / "a_long.jsonl").read_bytes()
    (out / "b_short.jsonl").unlink()  # as if killed between the video and the jsonl rename
    (out / "c_30fps.jsonl.partial").write_text("{half")
    summary = label_videos(_config(idm_files, videos, out))
    assert summary["skipped"] == 2 and summary["labelled"] == 1
    assert (out / "a_long.jsonl").read_bytes() == before
    assert (out / "b_short.jsonl").is_file() and len(find_recordings(out)) == 3


def test_failure_mid_run_leaves_no_half_written_pair(idm_files, videos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = {"n": 0}
    original = VPTIDM.predict_windows

    def failing(self, windows):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated crash")
        return original(self, windows)

    monkeypatch.setattr(VPTIDM, "predict_windows", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        label_videos(_config(idm_files, videos, out, batch=1))
    assert not any(p.name.endswith(".jsonl") for p in out.iterdir())
    assert not any(p.name.endswith(".partial") for p in out.iterdir())


def test_official_mode_is_back_to_back_calls_with_memory_carried(idm_files, videos, tmp_path):
    """--official: calls of --n-frames frames to one IDM per video (memory carried), the last call on the frames
    left; a video ending on a call boundary and one shorter than a call are finished too."""
    out = tmp_path / "out"
    summary = label_videos(_config(idm_files, videos, out, official=True, n_frames=7))
    assert summary["labelled"] == 3
    idm = VPTIDM.from_files(*idm_files, device="cpu")
    recs = {r.name: r for r in find_recordings(out)}
    differs_from_windows = 0
    for name, calls in (("a_long", (7, 7, 7)), ("b_short", (6,)), ("c_30fps", (7, 1))):
        source = read_video_rgb(next(videos.glob(name + ".*")))
        if name == "c_30fps":
            source = [source[i] for i in resample_indices(len(source), 30.0)]
        source = np.stack(source)
        assert len(source) == sum(calls)
        idm.reset()
        expected = [idm.predict_arrays(source[s - n:s]) for n, s in zip(calls, np.cumsum(calls))]
        buttons = np.concatenate([p.buttons for p in expected])
        bins = np.concatenate([p.camera_bins for p in expected])
        loaded = load_actions(recs[name])
        got_b, got_c = env_to_idm(loaded.actions)
        assert (got_b == buttons[loaded.frame_index]).all() and (got_c == bins[loaded.frame_index]).all(), name
        windowed = _expected_labels(idm, source)
        differs_from_windows += int((windowed[0] != buttons).any() or (windowed[1] != bins).any())
    assert differs_from_windows  # the two procedures really label differently


def test_official_mode_from_the_command_line(idm_files, videos, tmp_path, capsys):
    model, weights = map(str, idm_files)
    base = ["--model", model, "--weights", weights, "--videos", str(videos / "a_long.mp4"), "--device", "cpu",
            "--no-progress"]
    for extra, message in ((["--official", "--stride", "4"], "--stride"), (["--n-frames", "4"], "--official"),
                           (["--official", "--n-frames", "0"], "--n-frames")):
        code, err = _run_cli(base + ["--out", str(tmp_path / "bad")] + extra, capsys)
        assert code == 2 and err.startswith("error: ") and message in err, (extra, err)
    assert not (tmp_path / "bad").exists()
    assert _run_cli(base + ["--out", str(tmp_path / "a"), "--official", "--n-frames", "7"], capsys)[0] == 0
    assert _run_cli(base + ["--out", str(tmp_path / "b"), "--official"], capsys)[0] == 0  # 128: one call
    idm = VPTIDM.from_files(*idm_files, device="cpu")
    source = np.stack(read_video_rgb(videos / "a_long.mp4"))
    for out, calls in ((tmp_path / "a", (0, 7, 14, 21)), (tmp_path / "b", (0, 21))):
        idm.reset()
        parts = [idm.predict_arrays(source[a:b]) for a, b in zip(calls[:-1], calls[1:])]
        loaded = load_actions(find_recordings(out)[0])
        got_b, _ = env_to_idm(loaded.actions)
        assert (got_b == np.concatenate([p.buttons for p in parts])[loaded.frame_index]).all(), out


def _labels(out, name: str):
    """(buttons, camera bins) per frame of OUT/NAME, as the data loader reads them back."""
    loaded = load_actions(next(r for r in find_recordings(out) if r.name == name))
    assert (loaded.frame_index == np.arange(len(loaded.frame_index))).all()
    return env_to_idm(loaded.actions)


def test_lstm_idm_labels_by_both_procedures(tmp_path, videos, capsys):
    """A bidirectional-LSTM IDM from the command line: overlapping windows each from a fresh state, and --official
    with its (h, c) carried from call to call; without ``timesteps`` in its config the windows are 128 frames."""
    idm_dir = tmp_path / "idm"
    idm_dir.mkdir()
    source = np.stack(read_video_rgb(videos / "a_long.mp4"))
    base = ["--videos", str(videos / "a_long.mp4"), "--device", "cpu", "--no-progress"]
    no_timesteps = {k: v for k, v in TINY_LSTM_NET.items() if k != "timesteps"}
    for net, name in ((TINY_LSTM_NET, "lstm"), (no_timesteps, "lstm_no_timesteps")):
        model, weights = write_tiny_idm(idm_dir, seed=3, net=net)
        idm = VPTIDM.from_files(model, weights, device="cpu")
        assert idm.config.is_lstm
        files = ["--model", str(model), "--weights", str(weights)]
        for official in (False, True):
            out = tmp_path / f"{name}_{official}"
            code, err = _run_cli(base + files + ["--out", str(out)] + (["--official", "--n-frames", "7"]
                                                                        if official else []), capsys)
            assert code == 0, err
            if official:  # calls of 7 frames, state carried
                idm.reset()
                parts = [idm.predict_arrays(source[a:a + 7]) for a in range(0, len(source), 7)]
                buttons = np.concatenate([p.buttons for p in parts])
                bins = np.concatenate([p.camera_bins for p in parts])
            elif "timesteps" in net:
                buttons, bins = _expected_labels(idm, source)
            else:  # one window of 128 frames: the whole video from a fresh state
                idm.reset()
                p = idm.predict_arrays(source)
                buttons, bins = p.buttons, p.camera_bins
            got_b, got_c = _labels(out, "a_long")
            assert (got_b == buttons).all() and (got_c == bins).all(), (name, official)
    # The state carried between calls matters: restarting it every call labels differently.
    idm.reset()
    carried = np.concatenate([idm.predict_arrays(source[a:a + 7]).buttons for a in range(0, 21, 7)])
    fresh = []
    for a in range(0, 21, 7):
        idm.reset()
        fresh.append(idm.predict_arrays(source[a:a + 7]).buttons)
    assert (carried != np.concatenate(fresh)).any()


# ----------------------------------------------------------------------------- bad input
def _run_cli(args, capsys):
    code = main(args)
    return code, capsys.readouterr().err


def test_bad_inputs_are_one_clear_error_and_nothing_written(idm_files, videos, tmp_path, capsys):
    model, weights = map(str, idm_files)
    base = ["--model", model, "--weights", weights, "--device", "cpu", "--no-progress"]
    out = tmp_path / "out"
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(os.urandom(2000))
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    own_dir = tmp_path / "own"
    own_dir.mkdir()
    write_video(own_dir / "fast.mp4", video_frames(3, seed=5), fps=30)
    odd_name = tmp_path / os.fsdecode(b"odd\xffname.mp4")  # OpenCV would crash the process on it
    write_video(odd_name, video_frames(3, seed=5), fps=20)
    cases = [
        (["--videos", str(odd_name), "--out", str(out)], f"{tmp_path}/odd\\xffname.mp4: the file name is not valid"),
        (["--videos", str(own_dir), "--out", str(own_dir)], "would replace it"),  # the source is not overwritten
        (["--videos", str(videos), "--out", str(a_file)], "not a directory"),
        (["--videos", str(empty_dir), "--out", str(out)], "no videos"),
        (["--videos", str(videos), str(garbage), "--out", str(out)], "garbage.mp4"),
        (["--videos", str(zero), "--out", str(out)], "zero.mp4"),
        (["--videos", str(tmp_path / "missing.mp4"), "--out", str(out)], "no such file"),
        (["--videos", str(videos), "--out", str(out), "--batch", "0"], "--batch must be >= 1, got 0"),
        (["--videos", str(videos), "--out", str(out), "--frame-batch", "-2"], "--frame-batch must be >= 1, got -2"),
        (["--videos", str(videos), "--out", str(out), "--fps", "0"], "--fps must be >= 1, got 0.0"),
        (["--videos", str(videos), "--out", str(out), "--fps", "1e9"], "--fps must be <= 1,000, got 1000000000.0"),
        (["--videos", str(videos), "--out", str(out), "--stride", "0"], "--stride must be between 1 and the window"),
        (["--videos", str(videos), "--out", str(out), "--official", "--n-frames", "0"], "--n-frames must be >= 1"),
    ]
    for args, message in cases:
        code, err = _run_cli(args + base, capsys)
        assert code == 2, args
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
        assert sorted(p.name for p in own_dir.iterdir()) == ["fast.mp4"]
    code, err = _run_cli(["--videos", str(videos), "--out", str(out), "--device", "cpu"], capsys)
    assert code == 2 and "--idm" in err
    code, err = _run_cli(["--videos", str(videos), "--out", str(out), "--idm", "no-such-idm", "--device", "cpu"],
                         capsys)
    assert code == 2 and err.startswith("error: unknown model 'no-such-idm'") and "\n" not in err.strip()
    if not torch.cuda.is_available():
        code, err = _run_cli(["--videos", str(videos), "--out", str(out), "--model", model, "--weights", weights,
                              "--device", "cuda"], capsys)
        assert code == 2 and err.startswith("error: --device cuda")
    assert not out.exists()


def test_cli_labels_and_reports(idm_files, videos, tmp_path, capsys):
    model, weights = map(str, idm_files)
    out = tmp_path / "out"
    code = main(["--model", model, "--weights", weights, "--videos", str(videos / "b_short.mp4"), "--out",
                 str(out), "--device", "cpu", "--no-progress", "--batch", "1"])
    assert code == 0
    assert "labelled 1 videos" in capsys.readouterr().out
    assert [r.name for r in find_recordings(out)] == ["b_short"]


def test_shards_split_the_videos_and_label_them_as_one_run(idm_files, videos, tmp_path, capsys, monkeypatch):
    label_videos(_config(idm_files, videos, tmp_path / "all"))
    names = sorted(p.stem for p in videos.iterdir())
    files = [str(videos / n) for n in sorted(p.name for p in videos.iterdir())]
    shards = []
    for k, order in ((0, files), (1, files[::-1]), (2, files[1:] + files[:1])):  # each job lists them its own way
        cfg = _config(idm_files, videos, tmp_path / "split", shard=f"{k}/3")
        cfg.videos = order
        shards.append(label_videos(cfg))
    assert sum(s["videos"] for s in shards) == len(names) and [s["shard"] for s in shards] == ["0/3", "1/3", "2/3"]
    assert [s["skipped"] for s in shards] == [0, 0, 0]  # disjoint shares: no job found another's video done
    expected = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == expected  # and together, every video
    for name in expected:
        assert (tmp_path / "split" / name).read_bytes() == (tmp_path / "all" / name).read_bytes(), name
    assert [in_shard(n, k, 3) for n in names for k in range(3)].count(True) == len(names)
    monkeypatch.setenv("RANK", "1")  # as torchrun sets it: the shard comes from the environment
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert label_videos(_config(idm_files, videos, tmp_path / "env"))["shard"] == "1/3"
    model, weights = map(str, idm_files)
    base = ["--videos", str(videos), "--out", str(tmp_path / "x"), "--model", model, "--weights", weights,
            "--device", "cpu"]
    monkeypatch.setenv("RANK", "3")
    code, err = _run_cli(base, capsys)
    assert code == 2 and "RANK/WORLD_SIZE" in err and len(err.strip().splitlines()) == 1, err
    monkeypatch.delenv("WORLD_SIZE")
    code, err = _run_cli(base, capsys)
    assert code == 2 and "RANK/WORLD_SIZE" in err, err
    monkeypatch.delenv("RANK")
    for bad in ("2/2", "1", "a/b", "-1/2"):
        code, err = _run_cli(base + [f"--shard={bad}"], capsys)
        assert code == 2 and "--shard" in err and len(err.strip().splitlines()) == 1, (bad, err)
