"""vpt_agent.atomic: whole files or none, with the permissions a plain open() gives, for every writer."""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from conftest import SMALL_MODEL, SMALL_WEIGHTS

from vpt_agent.atomic import atomic_path
from vpt_agent.convert import convert
from vpt_agent.eval import report
from vpt_agent.train import checkpoint


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_permissions_follow_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    with atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("x")
    assert _mode(tmp_path / "out.txt") == expected


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_every_writer_gives_readable_files(tmp_path, umask):
    """Reports, converted weights and training outputs are 0644 under umask 022 (mkstemp alone gives 0600)."""
    umask(0o022)
    report.write_json_atomic(tmp_path / "summary.json", {"a": 1})
    convert(SMALL_WEIGHTS, tmp_path / "small.safetensors", SMALL_MODEL)
    checkpoint.atomic_write(tmp_path / "final.weights", lambda p: torch.save({"w": torch.zeros(1)}, p))
    for name in ("summary.json", "small.safetensors", "small.model", "final.weights"):
        assert _mode(tmp_path / name) == 0o644, name
    assert json.loads((tmp_path / "summary.json").read_text()) == {"a": 1}
