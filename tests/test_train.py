"""python -m vpt_agent.train: learning, resume, memory carry, episode starts, bad input, output layout."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from golden_helpers.key_layout import official_keys
from train_fixtures import TINY_NET, episode, record, write_model
from vpt_agent.loading import load_model_config
from vpt_agent.policy import VPTPolicy
from vpt_agent.train.batches import MemorySource, TrainDataError, WindowLoader, plan
from vpt_agent.train.cli import main
from vpt_agent.train.config import TrainConfig
from vpt_agent.train.loss import action_nll, bc_loss
from vpt_agent.train.trainer import (autocast_for, batch_tensors, build_policy, detach_state,
                                     enable_grad_checkpointing, make_optimizer, train, train_step,
                                     trainable_parameters)

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "tiny.model")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory) -> Path:
    return record(tmp_path_factory.mktemp("recordings"), [episode(i, 40 + 9 * i, null_every=7) for i in range(4)])


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, tiny_model, recorded):
    """One CLI training run on recorded data (shared by the output tests). No weight decay: with the official
    kind (Adam's L2 decay) on random weights 24 steps are too few to show the fall the first test checks."""
    out = tmp_path_factory.mktemp("run") / "out"
    rc = main(["--model", str(tiny_model), "--weights", "random", "--data", str(recorded), "--val-data",
               str(recorded), "--out", str(out), "--steps", "24", "--seq-len", "8", "--batch", "4", "--lr", "3e-3",
               "--weight-decay", "0", "--warmup", "8", "--log-every", "4", "--checkpoint-every", "8", "--workers", "1",
               "--threads", "1", "--no-progress"])
    assert rc == 0
    return out


def _config(model: Path, out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), weights="random", out=str(out), seq_len=4, batch=2, lr=3e-3, workers=0,
                checkpoint_every=3, log_every=1, no_progress=True, threads=1)
    return TrainConfig(**{**base, **kw})


# ----------------------------------------------------------------------------- learning and outputs
def test_loss_decreases_on_recorded_data(cli_run):
    rows = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert losses[-1] < 0.6 * losses[0], losses
    assert {"step", "loss", "frames_per_s", "lr", "grad_norm"} <= set(rows[0])
    assert rows[0]["lr"] < 3e-3 and rows[-1]["lr"] == pytest.approx(3e-3)  # warm-up, then the set rate
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert len(val) == 3 and val[-1] < val[0] and val[-1] > 0
    assert (cli_run / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_output_is_the_official_layout(cli_run, tiny_model):
    from safetensors.torch import load_file

    from vpt_agent import VPTAgent

    sd = torch.load(cli_run / "final.weights", weights_only=True)
    expected = official_keys({"net": TINY_NET})
    assert [(k, tuple(v.shape)) for k, v in sd.items()] == [(k, tuple(s)) for k, s in expected]
    st = load_file(str(cli_run / "final.safetensors"))
    assert all(torch.equal(st[k], sd[k]) for k in sd)
    assert (cli_run / "final.model").read_bytes() == tiny_model.read_bytes()
    agent = VPTAgent.from_files(cli_run / "final.model", cli_run / "final.weights", device="cpu")
    assert torch.equal(agent.policy.pi_head.camera.linear_layer.bias.detach(), sd["pi_head.camera.linear_layer.bias"])


# ----------------------------------------------------------------------------- resume
class _Killed(Exception):
    pass


class _DyingSource(MemorySource):
    """Raises after ``die_after`` frames were read, like a process killed between checkpoints."""

    def __init__(self, episodes, die_after: int):
        super().__init__(episodes)
        self.left = die_after

    def frames(self, i):
        for frame in super().frames(i):
            self.left -= 1
            if self.left < 0:
                raise _Killed()
            yield frame


def test_resume_equals_an_uninterrupted_run(tmp_path, tiny_model):
    episodes = [episode(i, 9 + 3 * i, null_every=4) for i in range(5)]
    full = train(_config(tiny_model, tmp_path / "full", steps=10), MemorySource(episodes))
    with pytest.raises(_Killed):
        train(_config(tiny_model, tmp_path / "cut", steps=10), _DyingSource(episodes, die_after=58))
    assert not (tmp_path / "cut" / "final.weights").exists()
    saved = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert 0 < saved["step"] < 10 and saved["step"] % 3 == 0
    resumed = train(_config(tiny_model, tmp_path / "cut", steps=10, resume=True), MemorySource(episodes))
    assert resumed.steps == full.steps == 10
    a = torch.load(tmp_path / "full" / "final.weights", weights_only=True)
    b = torch.load(tmp_path / "cut" / "final.weights", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-exact on CPU
    for name in ("final.weights", "final.safetensors"):  # and so are the files, byte for byte
        assert (tmp_path / "full" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes()
    rows = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))


def test_a_dict_with_pathlib_paths_is_a_config(tmp_path, tiny_model):
    result = train(dict(model=tiny_model, weights="random", out=tmp_path / "o", steps=1, seq_len=4, batch=2,
                        workers=0, no_progress=True, threads=1), MemorySource([episode(0, 12)]))
    assert result.steps == 1 and (tmp_path / "o" / "final.weights").exists()
    assert torch.load(tmp_path / "o" / "checkpoint.pt", weights_only=True)["config"]["out"] == str(tmp_path / "o")
    with pytest.raises(TrainDataError, match="unknown setting"):
        train({"bogus": 1})


def test_a_run_killed_before_its_first_checkpoint_restarts_its_metrics(tmp_path, tiny_model):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "metrics.jsonl").write_text('{"step": 1, "loss": 9.0}\n')  # the killed run's only row
    train(_config(tiny_model, tmp_path / "o", steps=3, resume=True), MemorySource([episode(0, 12)]))
    rows = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[0]["loss"] != 9.0


def test_resume_refuses_changed_options(tmp_path, tiny_model):
    episodes = [episode(0, 12)]
    train(_config(tiny_model, tmp_path / "o", steps=2), MemorySource(episodes))
    with pytest.raises(TrainDataError, match="--lr"):
        train(_config(tiny_model, tmp_path / "o", steps=4, lr=1e-2, resume=True), MemorySource(episodes))
    with pytest.raises(TrainDataError, match="--resume"):
        train(_config(tiny_model, tmp_path / "o", steps=4), MemorySource(episodes))


def test_snapshots_are_the_weights_at_their_step(tmp_path, tiny_model):
    from vpt_agent import VPTAgent

    episodes = [episode(i, 9 + 3 * i) for i in range(3)]
    train(_config(tiny_model, tmp_path / "long", steps=6, snapshot_every=2), MemorySource(episodes))
    train(_config(tiny_model, tmp_path / "short", steps=4), MemorySource(episodes))
    snaps = sorted((tmp_path / "long" / "snapshots").iterdir())
    assert [p.name for p in snaps] == ["step_0000002.weights", "step_0000004.weights", "step_0000006.weights"]
    at4 = torch.load(snaps[1], weights_only=True)
    for other, same in ((tmp_path / "short" / "final.weights", True), (snaps[2], False)):
        theirs = torch.load(other, weights_only=True)
        assert at4.keys() == theirs.keys()
        assert all(torch.equal(at4[k], theirs[k]) for k in at4) == same
    last = torch.load(snaps[2], weights_only=True)
    final = torch.load(tmp_path / "long" / "final.weights", weights_only=True)
    assert all(torch.equal(last[k], final[k]) for k in final)
    VPTAgent.from_files(tiny_model, snaps[0], device="cpu")  # loads strictly, like final.weights
    with pytest.raises(TrainDataError, match="--snapshot-every must be >= 1"):
        train(_config(tiny_model, tmp_path / "bad", steps=2, snapshot_every=0), MemorySource(episodes))


def test_a_kill_between_snapshot_and_checkpoint_loses_no_snapshot(tmp_path, tiny_model, monkeypatch):
    from vpt_agent.train import checkpoint as ckpt

    episodes = [episode(i, 9 + 3 * i) for i in range(3)]
    cfg = _config(tiny_model, tmp_path / "o", steps=6, checkpoint_every=2, snapshot_every=2)
    save = ckpt.save_snapshot

    def killed_at_4(out, policy, step):
        if step == 4:
            raise KeyboardInterrupt
        return save(out, policy, step)

    monkeypatch.setattr(ckpt, "save_snapshot", killed_at_4)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, MemorySource(episodes))
    monkeypatch.setattr(ckpt, "save_snapshot", save)
    train(_config(tiny_model, tmp_path / "o", steps=6, checkpoint_every=2, snapshot_every=2, resume=True),
          MemorySource(episodes))
    assert sorted(p.name for p in (tmp_path / "o" / "snapshots").iterdir()) == [
        "step_0000002.weights", "step_0000004.weights", "step_0000006.weights"]


def test_resume_after_a_kill_in_the_final_validation(tmp_path, tiny_model, monkeypatch):
    """The last in-loop checkpoint is at the final step with a partial logging interval: resuming runs no step,
    and still writes that interval's row (it needs the last step's epoch and gradient norm from the checkpoint)."""
    from vpt_agent.train import trainer

    episodes = [episode(i, 9 + 3 * i) for i in range(3)]
    cfg = dict(steps=6, checkpoint_every=3, log_every=4, val_every=100)
    evaluate = trainer.evaluate_loss
    monkeypatch.setattr(trainer, "evaluate_loss", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        train(_config(tiny_model, tmp_path / "o", **cfg), MemorySource(episodes), MemorySource(episodes))
    saved = torch.load(tmp_path / "o" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 6 and saved["meter"][2] == 2 and saved["last"]["epoch"] == 0
    monkeypatch.setattr(trainer, "evaluate_loss", evaluate)
    result = train(_config(tiny_model, tmp_path / "o", resume=True, **cfg), MemorySource(episodes),
                   MemorySource(episodes))
    assert result.steps == 6 and result.val_loss is not None
    rows = [json.loads(x) for x in (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [4, 6]
    assert rows[1]["epoch"] == 0 and rows[1]["grad_norm"] == saved["last"]["grad_norm"] and "val_loss" in rows[1]


def test_resume_takes_an_option_set_back_to_its_default(tmp_path, tiny_model, recorded):
    out = tmp_path / "o"
    base = ["--model", str(tiny_model), "--weights", "random", "--data", str(recorded), "--seq-len", "4",
            "--batch", "2", "--workers", "0", "--threads", "1", "--no-progress", "--out", str(out)]
    assert main([*base, "--steps", "2", "--log-every", "1"]) == 0
    assert main(["--out", str(out), "--resume", "--steps", "4", "--log-every", "10"]) == 0  # 10: the default
    saved = torch.load(out / "checkpoint.pt", weights_only=True)
    assert saved["config"]["log_every"] == 10 and saved["config"]["steps"] == 4
    assert [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 4]


@pytest.mark.parametrize("flag", ["checkpoint_every", "log_every", "snapshot_every", "val_every"])
def test_resume_checks_the_merged_options(tmp_path, tiny_model, flag):
    episodes = [episode(0, 12)]
    train(_config(tiny_model, tmp_path / "o", steps=2), MemorySource(episodes))
    with pytest.raises(TrainDataError, match=f"--{flag.replace('_', '-')} must be >= 1, got 0"):
        train(_config(tiny_model, tmp_path / "o", steps=4, resume=True, **{flag: 0}), MemorySource(episodes))


# ----------------------------------------------------------------------------- memory semantics
def test_a_decoding_worker_exits_by_itself_when_no_one_reads_its_queue():
    """Stopped with its queue and the pipe behind it full (as when the training process is killed), a worker must
    not wait at exit for its queue's feeder thread, which would block on the pipe for ever."""
    loader = WindowLoader(MemorySource([episode(i, 200, size=64) for i in range(2)]), 2, 32, epochs=1, workers=1)
    batches = iter(loader)
    next(batches)
    worker = loader._procs[0]
    time.sleep(1.5)  # it fills its queue (2 steps of 2 x 32 frames) and the pipe (64 KiB) behind it
    start = time.monotonic()
    batches.close()  # sets the stop event, joins with a 2 s timeout, then terminates
    assert worker.exitcode == 0 and time.monotonic() - start < 1.9


def test_training_after_an_inference_mode_forward(tiny_model):
    """The attention's cached index tensors must not be inference tensors (autograd refuses to save those)."""
    policy = build_policy(str(tiny_model), "random", 0)
    batch = next(iter(WindowLoader(MemorySource([episode(0, 12)]), 2, 5, epochs=1)))
    t = batch_tensors(batch, CPU)
    with torch.inference_mode():
        policy(t["frames"], t["first"], policy.initial_state(2))
    res = policy(t["frames"], t["first"], policy.initial_state(2))
    action_nll(res.logp, t["buttons"], t["camera"]).sum().backward()
    assert all(p.grad is not None for p in policy.net.parameters() if p.requires_grad)


def _nll_per_episode(policy, loader):
    """Per-step NLL of every episode, from a loader's batches with memory carried between windows."""
    out = {}
    state = policy.initial_state(loader.batch)
    with torch.no_grad():
        for batch in loader:
            t = batch_tensors(batch, CPU)
            res = policy(t["frames"], t["first"], state)
            nll = action_nll(res.logp, t["buttons"], t["camera"])
            for lane, ep in enumerate(batch.episode.tolist()):
                if ep >= 0:
                    out.setdefault(ep, []).extend(nll[lane][t["mask"][lane]].tolist())
            state = detach_state(res.state)
    return {k: np.array(v) for k, v in out.items()}


def test_memory_carry_equals_one_long_window(tiny_model):
    policy = build_policy(str(tiny_model), "random", 0).eval()
    src = MemorySource([episode(3, 24)])
    long = _nll_per_episode(policy, WindowLoader(src, 1, 24, epochs=1))
    short = _nll_per_episode(policy, WindowLoader(src, 1, 4, epochs=1))
    np.testing.assert_allclose(short[0], long[0], rtol=0, atol=2e-5)
    # the memory matters here (L=8 frames of context), so dropping it would be caught
    fresh = [_nll_per_episode(policy, WindowLoader(MemorySource([(f[i:i + 4], a[i:i + 4])]), 1, 4, epochs=1))[0]
             for f, a in [episode(3, 24)] for i in range(0, 24, 4)]
    assert np.abs(np.concatenate(fresh) - long[0]).max() > 1e-3


def test_episode_start_inside_a_batch_equals_fresh_memory(tiny_model):
    policy = build_policy(str(tiny_model), "random", 0).eval()
    episodes = [episode(i, n) for i, n in enumerate([6, 9, 5, 11, 7])]
    lengths = [len(e[1]) for e in episodes]
    slots = list(plan(lengths, 2, 4, seed=1, epochs=1))
    starts = [s for step in slots[1:] for s in step if s is not None and s.window == 0]
    assert starts, "the plan must start episodes after step 0 (on a lane with old memory)"
    batched = _nll_per_episode(policy, WindowLoader(MemorySource(episodes), 2, 4, seed=1, epochs=1))
    for i, ep in enumerate(episodes):
        alone = _nll_per_episode(policy, WindowLoader(MemorySource([ep]), 1, 4, epochs=1))[0]
        np.testing.assert_allclose(batched[i], alone, rtol=0, atol=2e-5, err_msg=f"episode {i}")


# ----------------------------------------------------------------------------- the step itself
def _one_batch(model: Path, b: int = 2, t: int = 4):
    loader = WindowLoader(MemorySource([episode(i, 10) for i in range(3)]), b, t, epochs=1)
    return batch_tensors(next(iter(loader)), CPU)


def test_grad_clip_is_applied_and_freeze_trunk_trains_heads_only(tiny_model):
    policy = build_policy(str(tiny_model), "random", 0)
    params = trainable_parameters(policy, freeze_trunk=True)
    assert params and all(not n.startswith("net.") for n, p in policy.named_parameters() if p.requires_grad)
    opt, _ = make_optimizer(params, TrainConfig(lr=1e-2, weight_decay=0.0))
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    t = _one_batch(tiny_model)
    _, norm, _ = train_step(policy, opt, params, t, policy.initial_state(2), 1e-3, autocast_for(CPU, torch.float32))
    clipped = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
    assert float(norm) > 1e-2 and float(clipped) <= 1e-3 * 1.001
    after = policy.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("net."))
    assert not torch.equal(before["pi_head.buttons.linear_layer.bias"], after["pi_head.buttons.linear_layer.bias"])


def test_grad_checkpointing_gives_the_same_gradients(tiny_model):
    t = _one_batch(tiny_model)
    grads = []
    for ckpt in (False, True):
        policy = build_policy(str(tiny_model), "random", 0)
        if ckpt:
            enable_grad_checkpointing(policy, cnn_chunk=3)  # 8 frames: chunks of 3, 3, 2
        out = policy(t["frames"], t["first"], policy.initial_state(2))
        bc_loss(out.logp, t["buttons"], t["camera"], t["mask"]).backward()
        grads.append({k: p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for k in grads[0]:  # chunks sum the weight gradients in another order: rounding-level differences
        scale = float(grads[0][k].abs().max())
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-4, atol=1e-5 * scale, msg=k)


def test_bc_loss_masks_padding_and_uses_both_heads():
    logp = {"buttons": torch.log_softmax(torch.randn(2, 3, 8641), -1),
            "camera": torch.log_softmax(torch.randn(2, 3, 121), -1)}
    b = torch.tensor([[1, 2, 3], [4, 5, 6]])
    c = torch.tensor([[60, 7, 8], [9, 10, 11]])
    mask = torch.tensor([[True, True, False], [True, False, False]])
    want = -np.mean([float(logp["buttons"][i, j, b[i, j]] + logp["camera"][i, j, c[i, j]])
                     for i, j in [(0, 0), (0, 1), (1, 0)]])
    assert float(bc_loss(logp, b, c, mask)) == pytest.approx(want, rel=1e-6)


def test_bfloat16_autocast_step_runs(tiny_model):
    policy = build_policy(str(tiny_model), "random", 0)
    params = trainable_parameters(policy, False)
    opt, _ = make_optimizer(params, TrainConfig())
    loss, _, state = train_step(policy, opt, params, _one_batch(tiny_model), policy.initial_state(2), 5.0,
                                autocast_for(CPU, torch.bfloat16))
    assert torch.isfinite(loss) and state[0].keys.dtype == torch.float32


# ----------------------------------------------------------------------------- bad input
def _cli(tmp_path, *args):
    return main(["--out", str(tmp_path / "out"), "--steps", "2", "--no-progress", "--workers", "0",
                 "--threads", "1", *map(str, args)])


def _assert_error(capsys, rc, *needles):
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) >= 1, err
    for n in needles:
        assert str(n) in err, err


def test_empty_data_dir(tmp_path, tiny_model, capsys):
    (tmp_path / "empty").mkdir()
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", "random", "--data", tmp_path / "empty")
    _assert_error(capsys, rc, tmp_path / "empty")
    assert not (tmp_path / "out" / "final.weights").exists()


def test_bad_jsonl_line(tmp_path, tiny_model, capsys):
    data = record(tmp_path / "d", [episode(0, 6)])
    lines = (data / "ep000.jsonl").read_text().splitlines()
    lines[2] = "{not json"
    (data / "ep000.jsonl").write_text("\n".join(lines) + "\n")
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", "random", "--data", data)
    _assert_error(capsys, rc, "ep000.jsonl")
    assert not (tmp_path / "out" / "final.weights").exists()


def test_mismatched_lengths(tmp_path, tiny_model, capsys):
    data = record(tmp_path / "d", [episode(0, 6)])
    with open(data / "ep000.jsonl", "a") as f:
        f.write((data / "ep000.jsonl").read_text().splitlines()[-1] + "\n")
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", "random", "--data", data)
    _assert_error(capsys, rc, "ep000")


def test_weights_that_do_not_fit(tmp_path, tiny_model, recorded, capsys):
    other = write_model(tmp_path / "other.model", dict(TINY_NET, hidsize=64))
    torch.save(VPTPolicy(load_model_config(other)).state_dict(), tmp_path / "other.weights")
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", tmp_path / "other.weights", "--data", recorded)
    _assert_error(capsys, rc, "other.weights")
    assert not (tmp_path / "out" / "final.weights").exists()


def test_corrupt_model_and_missing_flags(tmp_path, recorded, capsys):
    (tmp_path / "bad.model").write_bytes(b"\x80\x04garbage")
    _assert_error(capsys, _cli(tmp_path, "--model", tmp_path / "bad.model", "--weights", "random", "--data", recorded),
                  "bad.model")
    _assert_error(capsys, _cli(tmp_path, "--weights", "random", "--data", recorded), "--model")


@pytest.mark.parametrize("flag,value,message", [
    ("--lr", "-1", "--lr must be >= 0, got -1.0"),
    ("--weight-decay", "-0.5", "--weight-decay must be >= 0, got -0.5"),
    ("--grad-clip", "-1", "--grad-clip must be >= 0, got -1.0"),
    ("--warmup", "-3", "--warmup must be >= 0, got -3"),
    ("--workers", "-1", "--workers must be >= 0, got -1"),
    ("--threads", "0", "--threads must be >= 1, got 0"),
    ("--seq-len", "0", "--seq-len must be >= 1, got 0"),
    ("--seed", "-1", "--seed must be >= 0, got -1"),
])
def test_out_of_range_options(tmp_path, tiny_model, recorded, capsys, flag, value, message):
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", "random", "--data", recorded, flag, value)
    _assert_error(capsys, rc, message)
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_out_that_cannot_be_a_run_directory(tmp_path, tiny_model, recorded, capsys):
    (tmp_path / "file").write_text("x")
    rc = main(["--model", str(tiny_model), "--weights", "random", "--data", str(recorded), "--out",
               str(tmp_path / "file"), "--no-progress"])
    _assert_error(capsys, rc, "exists and is not a directory")
    assert (tmp_path / "file").read_text() == "x"


def test_resume_never_replaces_final_weights_without_a_checkpoint(tmp_path, tiny_model, recorded, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "final.weights").write_bytes(b"a finished run's weights")
    rc = _cli(tmp_path, "--model", tiny_model, "--weights", "random", "--data", recorded, "--resume")
    _assert_error(capsys, rc, "holds final.weights but no checkpoint.pt")
    assert (out / "final.weights").read_bytes() == b"a finished run's weights"
    assert _cli(tmp_path / "new", "--model", tiny_model, "--weights", "random", "--data", recorded, "--seq-len", "4",
                "--batch", "2", "--resume") == 0  # no run there yet: --resume starts one


def test_resume_or_interrupt_without_a_checkpoint_says_so(tmp_path, capsys, monkeypatch):
    assert main(["--out", str(tmp_path / "x"), "--resume", "--no-progress"]) == 2
    assert "--model is required (--resume: " in capsys.readouterr().err
    import vpt_agent.train.trainer as trainer

    def interrupted(cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "train", interrupted)
    assert main(["--out", str(tmp_path / "x"), "--no-progress"]) == 130
    assert capsys.readouterr().err.startswith("interrupted before the first checkpoint")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "checkpoint.pt").write_bytes(b"")
    assert main(["--out", str(tmp_path / "x"), "--no-progress"]) == 130
    assert capsys.readouterr().err.startswith("interrupted: resume with --resume")


def test_resume_finds_the_run_however_out_is_written(tmp_path, tiny_model, recorded, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["--model", str(tiny_model), "--weights", "random", "--data", str(recorded), "--seq-len", "4",
            "--batch", "2", "--workers", "0", "--threads", "1", "--no-progress"]
    assert main([*base, "--out", "run", "--steps", "1"]) == 0
    assert main(["--out", "./run/", "--resume", "--steps", "2"]) == 0
    (tmp_path / "run").rename(tmp_path / "moved")  # a run directory moved elsewhere still resumes, and stays there
    assert main(["--out", str(tmp_path / "moved"), "--resume", "--steps", "3"]) == 0
    saved = torch.load(tmp_path / "moved" / "checkpoint.pt", weights_only=True)
    assert saved["step"] == 3 and saved["config"]["out"] == str(tmp_path / "moved")
    assert not (tmp_path / "run").exists()


def test_all_null_actions(tmp_path, tiny_model):
    frames, actions = episode(0, 6, null_every=1)
    with pytest.raises(TrainDataError, match="null"):
        WindowLoader(MemorySource([(frames, actions)]), 1, 4, skip_null=True)
