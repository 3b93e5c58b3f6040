"""metrics.jsonl: every row has the fields docs/training.md lists, the last (partial-interval) row included."""
from __future__ import annotations

import json

import pytest

from train_fixtures import episode, write_model
from vpt_agent.train.batches import MemorySource
from vpt_agent.train.config import TrainConfig
from vpt_agent.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_metrics_row_has_the_documented_fields(tmp_path):
    model = write_model(tmp_path / "tiny.model")
    cfg = TrainConfig(model=str(model), weights="random", out=str(tmp_path / "out"), steps=3, seq_len=4, batch=2,
                      workers=0, log_every=2, checkpoint_every=10, no_progress=True, threads=1)
    train(cfg, MemorySource([episode(i, 9, null_every=4) for i in range(3)]))
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 3]  # the second row covers a partial interval (step 3 of log_every 2)
    for row in rows:
        assert {"step", "epoch", "loss", "frames_per_s", "lr", "grad_norm"} <= set(row), row
