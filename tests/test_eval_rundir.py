"""The run directory: file fingerprints, the exclusive lock, resume after early kills, corrupt files, bad --out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from vpt_agent.eval import report, rundir
from vpt_agent.eval.cli import config_from_args
from vpt_agent.eval.config import EvalConfig, EvalError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "files" / "a.model"
    weights = tmp_path / "files" / "a.weights"
    model.parent.mkdir()
    model.write_bytes(b"model-config")
    weights.write_bytes(b"W" * 4096)
    return model, weights


def config_for(files, out, **changes):
    model, weights = files
    settings = dict(model=str(model), weights=str(weights), env="vpt/VoxelTreechop-v0", out=str(out))
    return EvalConfig(**{**settings, **changes})


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text
    return text


# ----------------------------------------------------------------------------- fingerprints

def test_fingerprint_is_size_and_sha256(files):
    import hashlib

    fp = rundir.file_fingerprint(files[1])
    assert fp == {"path": str(files[1]), "size": 4096, "sha256": hashlib.sha256(b"W" * 4096).hexdigest()}


def test_resume_refuses_a_weights_file_changed_at_the_same_path(files, tmp_path):
    out = tmp_path / "run"
    config = config_for(files, out)
    create = rundir.fingerprints(config)
    rundir.create_run_dir(config, out, create)
    assert json.loads((out / rundir.RUN_FILE).read_text())["files"]["weights"]["size"] == 4096
    resume = config_for(files, out, resume=True)
    assert rundir.prepare_run_dir(resume, out, rundir.fingerprints(resume)) == []  # unchanged: fine

    files[1].write_bytes(b"W" * 4095 + b"X")  # same size, one byte differs
    with pytest.raises(EvalError, match="weights file .* changed") as exc:
        rundir.prepare_run_dir(resume, out, rundir.fingerprints(resume))
    assert "sha256" in one_line(exc.value)
    files[0].write_bytes(b"other-config!")
    with pytest.raises(EvalError, match="model file .* changed.*size 12 -> 13"):
        rundir.prepare_run_dir(resume, out, rundir.fingerprints(resume))


def test_random_weights_fingerprint_only_the_model(files, tmp_path):
    config = config_for(files, tmp_path / "run", weights="random")
    assert set(rundir.fingerprints(config)) == {"model"}


def test_a_run_file_without_fingerprints_is_resumed_with_a_warning(files, tmp_path, caplog):
    out = tmp_path / "run"
    config = config_for(files, out)
    rundir.create_run_dir(config, out)  # as an older version wrote it
    with caplog.at_level("WARNING"):
        rundir.prepare_run_dir(config_for(files, out, resume=True), out, rundir.fingerprints(config))
    assert "predates file fingerprints" in caplog.text


# ----------------------------------------------------------------------------- corrupt files, bad --out

@pytest.mark.parametrize("content", ["{not json", "[]", '{"identity": 3}', ""])
def test_corrupt_run_file_is_a_one_line_error(files, tmp_path, content):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.RUN_FILE).write_text(content)
    for resume in (True, False):
        with pytest.raises(EvalError, match="run.json") as exc:
            rundir.prepare_run_dir(config_for(files, out, resume=resume), out)
        one_line(exc.value)


def test_corrupt_middle_line_of_the_log_is_a_one_line_error_on_resume(files, tmp_path):
    out = tmp_path / "run"
    config = config_for(files, out)
    rundir.create_run_dir(config, out)
    (out / report.EPISODES_FILE).write_text('{"index": 0, "outcome": "truncated", "return": 1, "length": 2}\n'
                                            'garbage\n{"index": 1, "outcome": "truncated", "return": 1, '
                                            '"length": 2}\n')
    with pytest.raises(EvalError, match="line 2") as exc:
        rundir.prepare_run_dir(config_for(files, out, resume=True), out)
    one_line(exc.value)


def test_out_must_be_a_directory_that_can_be_made(files, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        with pytest.raises(EvalError, match="not a directory"):
            rundir.prepare_run_dir(config_for(files, out), out)
        with pytest.raises(EvalError, match="not a directory"):
            with rundir.locked_run_dir(out):
                pass
    with pytest.raises(EvalError, match="--out /proc/vpt-agent-test"):  # no one can create a directory there
        with rundir.locked_run_dir(Path("/proc/vpt-agent-test/run")):
            pass


def test_a_folder_with_report_files_but_no_run_is_refused(files, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.json").write_text('{"my": "numbers"}')
    for resume in (False, True):
        with pytest.raises(EvalError, match="holds summary.json but no run.json"):
            rundir.prepare_run_dir(config_for(files, out, resume=resume), out)
    assert (out / "summary.json").read_text() == '{"my": "numbers"}'


def test_cli_out_is_a_file_exit_2_one_line(files, tmp_path, capsys):
    from vpt_agent.eval.cli import main

    a_file = tmp_path / "file"
    a_file.write_text("x")
    code = main(["--model", str(files[0]), "--weights", "random", "--env", "vpt/VoxelTreechop-v0", "--out",
                 str(a_file), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "not a directory" in err


@pytest.mark.parametrize("argv", [["--step-timeout", "nan"], ["--step-timeout", "inf"], ["--reset-timeout=-inf"],
                                  ["--env-kwargs", '{"a": NaN}'], ["--ray-cpus-per-env", "nan"]])
def test_non_finite_numbers_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        config_from_args(argv)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_cli_disk_full_is_one_line_exit_2(monkeypatch, capsys):
    import errno

    from vpt_agent.eval import cli, runner

    def full(config):
        raise OSError(errno.ENOSPC, "No space left on device", "/x/episodes.jsonl")

    monkeypatch.setattr(runner, "evaluate", full)
    assert cli.main(["--out", "/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device: /x/episodes.jsonl" in err and "--resume" in err


# ----------------------------------------------------------------------------- the lock, early kills

def test_second_holder_of_a_run_directory_is_refused(tmp_path):
    out = tmp_path / "run"
    with rundir.locked_run_dir(out):
        with pytest.raises(EvalError, match="in use by another evaluation") as exc:
            with rundir.locked_run_dir(out):
                pass
        one_line(exc.value)
    with rundir.locked_run_dir(out):  # released at the end of the block
        pass


_HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from vpt_agent.eval import rundir
    with rundir.locked_run_dir(Path(sys.argv[1])):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_lock_is_held_across_processes_and_released_by_sigkill(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(EvalError, match="in use"):
            with rundir.locked_run_dir(out):
                pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    deadline = time.monotonic() + 5
    while True:  # the OS releases the lock of a killed process
        try:
            with rundir.locked_run_dir(out):
                break
        except EvalError:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_a_run_killed_before_run_json_can_be_resumed_and_its_temporaries_go(files, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / rundir.LOCK_FILE).touch()
    stale = [out / ".run.json.k2j3h4.tmp", out / "run.json.tmp", out / ".episodes.jsonl.abc.tmp"]
    for path in stale:
        path.write_text("{half")
    (out / "notes.tmp").write_text("user file")  # not ours: kept
    config = config_for(files, out, resume=True)
    with rundir.locked_run_dir(out):
        assert rundir.prepare_run_dir(config, out, rundir.fingerprints(config)) == []
        rundir.create_run_dir(config, out, rundir.fingerprints(config))
    assert sorted(p.name for p in out.iterdir()) == sorted([".lock", "notes.tmp", "run.json"])
    # episodes without a run.json are not a run this evaluator can vouch for
    (out / rundir.RUN_FILE).unlink()
    (out / report.EPISODES_FILE).write_text('{"index": 0, "outcome": "truncated", "return": 1, "length": 2}\n')
    with pytest.raises(EvalError, match="no run.json"):
        rundir.prepare_run_dir(config, out)
