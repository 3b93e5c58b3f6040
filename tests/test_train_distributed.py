"""Data-parallel training under torchrun (CPU, gloo): N processes with B/N lanes each train what one process with
B lanes trains (same windows, loss, gradients, weights), and a checkpoint resumes with another process count."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from train_fixtures import episode, record, write_model
from vpt_agent.train import distributed
from vpt_agent.train.batches import MemorySource, WindowLoader
from vpt_agent.train.cli import main
from vpt_agent.train.trainer import TrainConfigError, _train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Episodes of unequal lengths: the lanes' real (unpadded) step counts differ between the processes' shares, so a
# loss averaged per process instead of over all lanes would give other gradients.
EPISODES = [(20 + 13 * i, 7) for i in range(5)]
OPTIONS = ["--weights", "random", "--seq-len", "4", "--batch", "4", "--workers", "0", "--threads", "1",
           "--no-progress", "--checkpoint-every", "3", "--log-every", "1", "--lr", "3e-3"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    model = write_model(root / "tiny.model")
    data = record(root / "rec", [episode(i, n, null_every=k) for i, (n, k) in enumerate(EPISODES)])
    return root, ["--model", str(model), "--data", str(data), *OPTIONS]


def torchrun(args, processes=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                          str(processes), "-m", "vpt_agent.train", *args], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return run


def weights(out: Path):
    return torch.load(out / "final.weights", weights_only=True)


def assert_same_weights(a: Path, b: Path, atol=2e-6):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    worst = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    assert worst < atol, worst  # measured 3.6e-7 after 6 steps (sums in another order)


def metrics(out: Path):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(setup):
    root, args = setup
    assert main([*args, "--out", str(root / "one"), "--steps", "6"]) == 0
    return root / "one"


def test_shares_of_the_plan_make_the_full_batch():
    eps = [episode(i, n, size=8, null_every=k) for i, (n, k) in enumerate(EPISODES)]
    full = list(WindowLoader(MemorySource(eps), 4, 4, seed=3, epochs=1))
    group = [distributed.Group(r, 2) for r in range(2)]
    shares = [list(WindowLoader(MemorySource(eps), 4, 4, seed=3, epochs=1, lanes=g.lanes(4), workers=w))
              for g, w in zip(group, (0, 1))]
    assert len(full) == len(shares[0]) == len(shares[1]) > 10
    unequal = 0
    for b, s0, s1 in zip(full, *shares):
        for field in ("frames", "buttons", "camera", "mask", "first", "episode"):
            assert np.array_equal(getattr(b, field), np.concatenate([getattr(s0, field), getattr(s1, field)]))
        assert b.epoch == s0.epoch == s1.epoch and b.step == s0.step == s1.step
        unequal += int(s0.mask.sum() != s1.mask.sum())
    assert unequal > 0  # the per-share counts really differ somewhere
    with pytest.raises(ValueError, match="lanes"):
        WindowLoader(MemorySource(eps), 4, 4, lanes=[2, 4])


def test_group_lane_shares_and_state_slices():
    g = distributed.Group(1, 3)
    assert g.lanes(6) == range(2, 4) and not g.main and g.parallel
    saved = [[torch.arange(6).view(6, 1), torch.arange(6) % 2 == 0]]
    share = g.share_of(saved, 6)
    assert share[0][0].flatten().tolist() == [2, 3] and share[0][1].tolist() == [True, False]
    alone = distributed.Group()
    assert alone.main and not alone.parallel and alone.lanes(5) == range(5)
    extra = torch.tensor([1.5])
    assert alone.sum_gradients([], extra) is extra  # one process: nothing to reduce


def test_two_processes_train_what_one_process_trains(setup, one_process):
    root, args = setup
    run = torchrun([*args, "--out", str(root / "two"), "--steps", "6"])
    assert run.stdout.count("trained 6 steps") == 1  # process 0 reports
    assert_same_weights(one_process, root / "two")
    for a, b in zip(metrics(one_process), metrics(root / "two"), strict=True):
        assert a["step"] == b["step"] and a["epoch"] == b["epoch"]
        for key in ("loss", "grad_norm"):  # the loss and gradient of all 4 lanes, not of one process's 2
            assert b[key] == pytest.approx(a[key], rel=1e-5), (key, a, b)
    one = torch.load(one_process / "checkpoint.pt", weights_only=True)
    two = torch.load(root / "two" / "checkpoint.pt", weights_only=True)
    assert two["loader"] == one["loader"] and two["step"] == one["step"] == 6
    for mem_one, mem_two in zip(one["state"], two["state"], strict=True):  # all 4 lanes' memories, in lane order
        for a, b in zip(mem_one, mem_two, strict=True):
            assert a.shape == b.shape and a.shape[0] == 4
            assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_resume_with_another_number_of_processes(setup, one_process):
    root, args = setup
    torchrun([*args, "--out", str(root / "2to1"), "--steps", "3"])
    assert main([*args, "--out", str(root / "2to1"), "--steps", "6", "--resume"]) == 0
    assert_same_weights(one_process, root / "2to1")
    assert main([*args, "--out", str(root / "1to2"), "--steps", "3"]) == 0
    torchrun([*args, "--out", str(root / "1to2"), "--steps", "6", "--resume", "--workers", "1"])
    assert_same_weights(one_process, root / "1to2")
    assert [r["step"] for r in metrics(root / "1to2")] == list(range(1, 7))


def test_batch_must_split_evenly(setup, tmp_path):
    from vpt_agent.train.config import TrainConfig

    root, _ = setup
    cfg = TrainConfig(model=str(root / "tiny.model"), weights="random", out=str(tmp_path / "o"), batch=3)
    with pytest.raises(TrainConfigError, match="--batch 3 does not split into 2 processes"):
        _train(cfg, None, tmp_path / "o", torch.device("cpu"), torch.float32, distributed.Group(0, 2), None, None)
