"""Train the ``voxel-treechop-demo`` agent end to end: scripted-chopper demonstrations, behavioural cloning, DAgger.

    # what made the shipped model (benchmarks/gpu_round.sh, one H200 + 16 cores, 2026-11-26):
    python scripts/train_voxel_demo.py --out /tmp/demo --time-budget 265 --device cuda --workers 15 \
        --envs-per-worker 2 --expert-episodes 120 --val-episodes 30 --rounds 5 --batch 64 --test-episodes 50
    python scripts/train_voxel_demo.py --out runs/smoke --time-budget 120 --device cpu --workers 2 \
        --expert-episodes 4 --episode-steps 128 --val-episodes 2 --val-steps 100 --batch 4 --seq-len 32 --memory 64

What happens, all inside ``--time-budget`` seconds (wall clock, start-up included):

1. ``--expert-episodes`` episodes of the scripted chopper (:class:`vpt_envs.policies.TreechopScript`, which reads the
   world state) in ``vpt/VoxelTreechop-v0`` are recorded by ``--workers`` env processes: 128x128 frames and the
   script's actions as the policy's joint (button, camera) indices, with the official env -> policy mapping. The
   script executes the *quantised* action, i.e. exactly what a perfect clone could do.
2. Rounds: train a small VPT-architecture policy by BC (truncated BPTT over windows of ``--seq-len`` frames, the
   transformer memory carried from window to window of an episode, ``first`` at every episode start), evaluate it
   on held-out validation seeds with the model's own stochastic sampling, keep the best checkpoint, then collect
   ``--dagger-episodes`` more episodes where the *learner* acts (mixed with the expert with probability
   ``beta = --beta0 * --beta-decay**round``) and the script labels every visited state (DAgger); aggregate, repeat.
3. ``OUT/voxel-treechop-demo.model`` / ``.weights`` always hold the best validated model so far (written atomically
   after each evaluation), ``OUT/metrics.json`` the run's history; a timeout at any point leaves a usable model.

4. With ``--test-episodes 50`` the saved model is finally scored on env seeds ``--test-seed`` .. (default 1000..1049,
   the README's evaluation seeds), 600 steps, its own stochastic sampling: reported in ``metrics.json`` only.

Seeds: training episodes use env seeds from ``TRAIN_SEED0`` upwards, validation ``VAL_SEED0 ..``; both are disjoint
from the evaluation seeds 1000..1049 used in the README (``python -m vpt_agent.evaluate --seed 1000``).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpt_agent.action_mapping import policy_to_env  # noqa: E402
from vpt_agent.agent import resolve_device  # noqa: E402
from vpt_agent.attention import LayerMemory  # noqa: E402
from vpt_agent.train.checkpoint import atomic_write, save_torch  # noqa: E402
from vpt_agent.config import PolicyConfig  # noqa: E402
from vpt_agent.policy import VPTPolicy  # noqa: E402
from vpt_agent.train.loss import bc_loss  # noqa: E402
from vpt_agent.train.targets import action_targets  # noqa: E402

logger = logging.getLogger("train_voxel_demo")

ENV_ID = "vpt/VoxelTreechop-v0"
NAME = "voxel-treechop-demo"
TRAIN_SEED0 = 10_000
VAL_SEED0 = 2_000
TEST_SEEDS = range(1000, 1100)  # the README's evaluation seeds (1000..1049) and a margin: never trained on
IMG = 128


@dataclass
class Options:
    """Every option of the script; the argparse parser is generated from these fields."""

    out: str = field(default="runs/voxel-demo", metadata={"help": "output directory"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda (training and learner rollouts)"})
    workers: int = field(default=0, metadata={"help": "env worker processes (0: all CPU cores)"})
    envs_per_worker: int = field(default=1, metadata={"help": "envs stepped by each worker process"})
    time_budget: float = field(default=300.0, metadata={"help": "wall-clock seconds for the whole run"})
    seed: int = field(default=0, metadata={"help": "seed of the network init and of sampling"})
    # data
    expert_episodes: int = field(default=96, metadata={"help": "scripted episodes recorded before training"})
    episode_steps: int = field(default=640, metadata={"help": "steps per training episode (multiple of --seq-len)"})
    dagger_episodes: int = field(default=0, metadata={"help": "episodes per DAgger round (0: one per env)"})
    beta0: float = field(default=0.5, metadata={"help": "expert share of actions in the first DAgger round"})
    beta_decay: float = field(default=0.5, metadata={"help": "beta multiplier per DAgger round"})
    rounds: int = field(default=8, metadata={"help": "planned train/evaluate/collect rounds in the budget"})
    val_episodes: int = field(default=16, metadata={"help": "held-out validation episodes per evaluation"})
    val_steps: int = field(default=600, metadata={"help": "steps per validation (and test) episode"})
    test_episodes: int = field(default=0, metadata={"help": "after training, score the saved model on this many "
                                                            "episodes from --test-seed (report only)"})
    test_seed: int = field(default=1000, metadata={"help": "env seed of the first test episode"})
    test_random: bool = field(default=False, metadata={"help": "also score randomly initialised weights (same "
                                                                "config) on the test seeds, as a baseline"})
    # model
    hidsize: int = field(default=160, metadata={"help": "transformer width"})
    impala_width: float = field(default=0.5, metadata={"help": "ImpalaCNN channel multiplier (x [16, 32, 32])"})
    layers: int = field(default=2, metadata={"help": "transformer layers"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    memory: int = field(default=128, metadata={"help": "attention_memory_size (context = memory - seq-len)"})
    temperature: float = field(default=0.5, metadata={"help": "sampling temperature stored in the .model"})
    # optimisation
    batch: int = field(default=32, metadata={"help": "sequences per batch"})
    seq_len: int = field(default=64, metadata={"help": "frames per sequence (the .model's timesteps)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate"})
    weight_decay: float = field(default=0.039428, metadata={"help": "AdamW weight decay"})
    warmup: int = field(default=100, metadata={"help": "linear warm-up steps"})
    clip: float = field(default=5.0, metadata={"help": "gradient-norm clip"})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast on CUDA (ignored on CPU)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)"})
    progress: bool = field(default=True, metadata={"help": "log progress lines"})


class _Parser(argparse.ArgumentParser):
    """Errors are one line on stderr and exit code 2 (no usage block)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Options):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            kind = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, type=kind, default=f.default, help=f"{f.metadata['help']} (default {f.default})")
    return p


# ================================================================================ env workers
def _worker(conn, episode_limit: int) -> None:
    """Env process: steps its envs, and labels every state with the scripted chopper. No torch here."""
    import gymnasium as gym

    import vpt_envs  # noqa: F401 - registers the env
    from vpt_agent.frames import preprocess_pov
    from vpt_envs.policies import TreechopScript

    envs: List[Any] = []
    scripts: List[Any] = []

    def label() -> tuple:
        acts = [s() for s in scripts]
        t = action_targets(acts)
        return t.buttons, t.camera

    while True:
        cmd, arg = conn.recv()
        if cmd == "close":
            break
        if cmd == "reset":
            while len(envs) < len(arg):
                envs.append(gym.make(ENV_ID, max_episode_steps=episode_limit))
            frames = []
            scripts = []
            for env, seed in zip(envs, arg):
                obs, _ = env.reset(seed=int(seed))
                frames.append(preprocess_pov(obs, (IMG, IMG)))
                scripts.append(TreechopScript(env))
            b, c = label()
            conn.send((np.stack(frames), b, c))
        elif cmd == "step":
            expert_b, expert_c, chosen_b, chosen_c, use_expert = arg
            b = np.where(use_expert, expert_b, chosen_b)
            c = np.where(use_expert, expert_c, chosen_c)
            frames, rewards, done = [], [], []
            for env, action in zip(envs, policy_to_env(b, c)):
                obs, r, term, trunc, _ = env.step(action)
                frames.append(preprocess_pov(obs, (IMG, IMG)))
                rewards.append(r)
                done.append(term or trunc)
            nb, nc = label()
            conn.send((np.stack(frames), nb, nc, np.array(rewards), np.array(done)))


class EnvPool:
    """``workers`` processes with ``envs_per_worker`` envs each; one batched step at a time for all busy envs."""

    def __init__(self, workers: int, envs_per_worker: int, episode_limit: int):
        ctx = mp.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(workers):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, episode_limit), daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)
        self.envs_per_worker = envs_per_worker
        self._split: List[slice] = []

    @property
    def n_envs(self) -> int:
        return len(self.conns) * self.envs_per_worker

    def reset(self, seeds: Sequence[int]):
        """Start len(seeds) <= n_envs episodes, spread over the workers. Returns frames and expert labels."""
        n = len(seeds)
        assert 0 < n <= self.n_envs
        per = [len(range(i, n, len(self.conns))) for i in range(len(self.conns))]
        self._split, start, order = [], 0, []
        for i, k in enumerate(per):
            self._split.append(slice(start, start + k))
            order += list(range(i, n, len(self.conns)))
            start += k
        seeds_by_pos = [seeds[j] for j in order]
        for conn, sl in zip(self.conns, self._split):
            if sl.stop > sl.start:
                conn.send(("reset", seeds_by_pos[sl]))
        self._order = np.array(order)
        out = self._gather(3)
        return self._unpermute(out)

    def step(self, expert_b, expert_c, chosen_b, chosen_c, use_expert):
        arrays = [np.asarray(a)[self._order] for a in (expert_b, expert_c, chosen_b, chosen_c, use_expert)]
        for conn, sl in zip(self.conns, self._split):
            if sl.stop > sl.start:
                conn.send(("step", [a[sl] for a in arrays]))
        return self._unpermute(self._gather(5))

    def _gather(self, n_fields: int) -> List[np.ndarray]:
        parts: List[List[np.ndarray]] = [[] for _ in range(n_fields)]
        for conn, sl in zip(self.conns, self._split):
            if sl.stop > sl.start:
                for k, value in enumerate(conn.recv()):
                    parts[k].append(value)
        return [np.concatenate(p) for p in parts]

    def _unpermute(self, arrays: List[np.ndarray]) -> List[np.ndarray]:
        out = []
        for a in arrays:
            b = np.empty_like(a)
            b[self._order] = a
            out.append(b)
        return out

    def close(self) -> None:
        for conn in self.conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self.procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()


# ================================================================================ rollouts
@dataclass
class Episode:
    seed: int
    frames: np.ndarray  # (T, 128, 128, 3) uint8
    buttons: np.ndarray  # (T,) expert label, joint index
    camera: np.ndarray  # (T,)
    ret: float


class Learner:
    """The policy acting in N envs: batched forward, carried memory, tempered stochastic sampling."""

    def __init__(self, policy: VPTPolicy, device: torch.device, temperature: float, seed: int, bf16: bool):
        self.policy, self.device, self.temperature = policy, device, temperature
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(seed)
        self.bf16 = bf16 and device.type == "cuda"
        self.state: Optional[List[LayerMemory]] = None

    @torch.inference_mode()
    def act(self, frames: np.ndarray, first: bool) -> tuple[np.ndarray, np.ndarray]:
        n = len(frames)
        if first or self.state is None:
            self.state = self.policy.initial_state(n, self.device)
        x = torch.from_numpy(frames).to(self.device)[:, None]
        f = torch.full((n, 1), bool(first), device=self.device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.policy(x, f, self.state)
        self.state = out.state
        picks = []
        for key in ("buttons", "camera"):
            logits = out.logp[key][:, 0].float() / self.temperature
            u = torch.rand(logits.shape, generator=self.gen, device=self.device).clamp(1e-10, 1 - 1e-7)
            picks.append((logits - torch.log(-torch.log(u))).argmax(-1).cpu().numpy())
        return picks[0], picks[1]


def rollout(pool: EnvPool, seeds: Sequence[int], steps: int, beta: float, learner: Optional[Learner],
            rng: np.random.Generator, record: bool, deadline: float = math.inf) -> tuple[List[Episode], bool]:
    """Run episodes on ``seeds`` in waves of ``pool.n_envs``. Each step the expert acts with probability ``beta``
    (always when ``learner`` is None), else the learner; every visited state keeps the expert's label.

    Returns ``(episodes, complete)``; past ``deadline`` the current wave is cut short (its episodes are shorter)
    and no further wave starts.
    """
    episodes: List[Episode] = []
    complete = True
    for start in range(0, len(seeds), pool.n_envs):
        if time.time() > deadline:
            return episodes, False
        wave = list(seeds[start:start + pool.n_envs])
        n = len(wave)
        frames, eb, ec = pool.reset(wave)
        buf_f = np.empty((steps, n, IMG, IMG, 3), np.uint8) if record else None
        buf_b = np.empty((steps, n), np.int64)
        buf_c = np.empty((steps, n), np.int64)
        returns = np.zeros(n)
        alive = np.ones(n, bool)
        done_steps = steps
        for t in range(steps):
            if time.time() > deadline:
                done_steps, complete = t, False
                break
            if record:
                buf_f[t] = frames
            buf_b[t], buf_c[t] = eb, ec
            if learner is not None and beta < 1.0:
                lb, lc = learner.act(frames, first=(t == 0))
                use_expert = rng.random(n) < beta
            else:
                lb, lc, use_expert = eb, ec, np.ones(n, bool)
            frames, eb, ec, rewards, done = pool.step(eb, ec, lb, lc, use_expert)
            returns += rewards * alive
            alive &= ~done
        for i, seed in enumerate(wave):
            episodes.append(Episode(seed, buf_f[:done_steps, i].copy() if record else np.empty(0, np.uint8),
                                    buf_b[:done_steps, i].copy(), buf_c[:done_steps, i].copy(), float(returns[i])))
        if not complete:
            break
    return episodes, complete


def mean_ci95(values: Sequence[float]) -> tuple[float, list[float]]:
    """Mean and Student-t 95% confidence interval (t quantile by its Cornish-Fisher expansion, < 0.5% off)."""
    x = np.asarray(values, np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, [mean, mean]
    df, z = len(x) - 1, 1.959964
    t = z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
    half = t * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, [mean - half, mean + half]


def score(episodes: Sequence[Episode]) -> Dict[str, Any]:
    returns = [e.ret for e in episodes]
    mean, ci = mean_ci95(returns)
    return {"episodes": len(returns), "mean_return": mean, "ci95": ci,
            "share_with_log": float(np.mean([r > 0 for r in returns])), "returns": returns}


# ================================================================================ training
class WindowStreams:
    """``batch`` streams; each walks one random episode window by window (memory carried), then picks another."""

    def __init__(self, batch: int, seq_len: int, rng: np.random.Generator):
        self.batch, self.T, self.rng = batch, seq_len, rng
        self.frames: List[torch.Tensor] = []
        self.buttons: List[torch.Tensor] = []
        self.camera: List[torch.Tensor] = []
        self.cursor = [(-1, 0)] * batch  # (episode, window)

    def add(self, episodes: Sequence[Episode], device: torch.device) -> None:
        for e in episodes:
            n = (len(e.frames) // self.T) * self.T
            if n == 0:
                continue
            self.frames.append(torch.from_numpy(e.frames[:n]).to(device))
            self.buttons.append(torch.from_numpy(e.buttons[:n]).to(device))
            self.camera.append(torch.from_numpy(e.camera[:n]).to(device))

    @property
    def n_frames(self) -> int:
        return sum(len(f) for f in self.frames)

    def next(self):
        first, fr, bu, ca = [], [], [], []
        for s in range(self.batch):
            ep, w = self.cursor[s]
            if ep < 0 or (w + 1) * self.T > len(self.frames[ep]):
                ep, w = int(self.rng.integers(len(self.frames))), 0
            sl = slice(w * self.T, (w + 1) * self.T)
            fr.append(self.frames[ep][sl])
            bu.append(self.buttons[ep][sl])
            ca.append(self.camera[ep][sl])
            first.append(w == 0)
            self.cursor[s] = (ep, w + 1)
        return torch.stack(fr), torch.stack(bu), torch.stack(ca), first


class Trainer:
    def __init__(self, policy: VPTPolicy, opts: Options, device: torch.device, deadline: float):
        self.policy, self.opts, self.device = policy, opts, device
        decay, no_decay = [], []
        for name, p in policy.named_parameters():
            (no_decay if p.ndim < 2 else decay).append(p)
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": opts.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=opts.lr)
        self.start, self.deadline = time.time(), deadline
        self.step_count = 0
        self.state: Optional[List[LayerMemory]] = None
        self.bf16 = opts.bf16 and device.type == "cuda"
        self.history: List[Dict[str, float]] = []

    def lr(self) -> float:
        """Linear warm-up, then cosine decay over the wall-clock budget (down to 10%)."""
        warm = min(1.0, (self.step_count + 1) / max(1, self.opts.warmup))
        frac = min(1.0, (time.time() - self.start) / max(1.0, self.deadline - self.start))
        return self.opts.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))

    def train(self, data: WindowStreams, until: float) -> Dict[str, float]:
        self.policy.train()
        losses, frames, t0 = [], 0, time.time()
        while time.time() < until:
            x, b, c, first = data.next()
            if self.state is None:
                self.state = self.policy.initial_state(data.batch, self.device)
            f = torch.zeros(x.shape[:2], dtype=torch.bool, device=self.device)
            f[:, 0] = torch.tensor(first, device=self.device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
                out = self.policy(x, f, self.state)
            loss = bc_loss(out.logp, b, c, torch.ones_like(f))
            for g in self.opt.param_groups:
                g["lr"] = self.lr()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.policy.parameters(), self.opts.clip)
            self.opt.step()
            self.state = [LayerMemory(m.keys.detach(), m.values.detach(), m.valid) for m in out.state]
            self.step_count += 1
            losses.append(float(loss.detach()))
            frames += x.shape[0] * x.shape[1]
        self.policy.eval()
        dt = time.time() - t0
        rec = {"steps": len(losses), "loss_first": losses[0] if losses else float("nan"),
               "loss_last_50": float(np.mean(losses[-50:])) if losses else float("nan"),
               "frames_per_s": frames / dt if dt > 0 else 0.0, "total_steps": self.step_count}
        return rec


# ================================================================================ outputs
def model_dict(opts: Options) -> Dict[str, Any]:
    net = dict(
        attention_heads=opts.heads, attention_mask_style="clipped_causal", attention_memory_size=opts.memory,
        diff_mlp_embedding=False, hidsize=opts.hidsize, img_shape=[IMG, IMG, 3], impala_chans=[16, 32, 32],
        impala_kwargs={"post_pool_groups": 1}, impala_width=opts.impala_width,
        init_norm_kwargs={"batch_norm": False, "group_norm_groups": 1}, n_recurrence_layers=opts.layers,
        only_img_input=True, pointwise_ratio=4, pointwise_use_activation=False, recurrence_is_residual=True,
        recurrence_type="transformer", timesteps=opts.seq_len, use_pointwise_layer=True, use_pre_lstm_ln=False,
    )
    return {"model": {"args": {"net": {"args": net}, "pi_head_opts": {"temperature": opts.temperature}}}}


def save_model(out: Path, opts: Options, policy: VPTPolicy) -> None:
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in policy.state_dict().items()}
    atomic_write(out / f"{NAME}.weights", lambda p: save_torch(sd, p))
    atomic_write(out / f"{NAME}.model", lambda p: Path(p).write_bytes(pickle.dumps(model_dict(opts))))


def write_metrics(out: Path, metrics: Dict[str, Any]) -> None:
    atomic_write(out / "metrics.json", lambda p: Path(p).write_text(json.dumps(metrics, indent=1)))


# ================================================================================ main
@contextlib.contextmanager
def _seeded(seed: int):
    """Seed torch's global RNG inside the block only (parameter init)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _fail(message: str) -> None:
    """Bad input or an impossible run: one line on stderr, exit status 2."""
    print(message, file=sys.stderr)
    raise SystemExit(2)


def run(opts: Options) -> Dict[str, Any]:
    t_start = time.time()
    deadline = t_start + opts.time_budget
    if opts.episode_steps % opts.seq_len:
        _fail(f"error: --episode-steps {opts.episode_steps} is not a multiple of --seq-len {opts.seq_len}")
    if opts.memory <= opts.seq_len:
        _fail(f"error: --memory {opts.memory} must exceed --seq-len {opts.seq_len}")
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        device = resolve_device(opts.device)
    except ValueError as e:
        _fail(f"error: --device: {e}")
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest conv kernels
        torch.set_float32_matmul_precision("high")
    torch.manual_seed(opts.seed)
    rng = np.random.default_rng(opts.seed)
    workers = opts.workers or os.cpu_count() or 1
    cfg = PolicyConfig.from_model_dict(model_dict(dataclasses.replace(opts, temperature=1.0)))
    policy = VPTPolicy(cfg).to(device, memory_format=torch.channels_last)  # NHWC frames: channels-last convs
    n_params = sum(p.numel() for p in policy.parameters())
    logger.info("model: %.2f M parameters (%.1f MB fp32), device %s, %d workers x %d envs",
                n_params / 1e6, n_params * 4 / 1e6, device, workers, opts.envs_per_worker)
    val_seeds = [VAL_SEED0 + i for i in range(opts.val_episodes)]
    next_seed = TRAIN_SEED0
    assert not set(val_seeds) & set(TEST_SEEDS)
    metrics: Dict[str, Any] = {
        "options": dataclasses.asdict(opts), "n_params": n_params, "device": str(device),
        "torch": torch.__version__, "python": platform.python_version(), "cpus": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "train_seeds_from": TRAIN_SEED0, "val_seeds": val_seeds, "rounds": [], "best": None,
    }
    pool = EnvPool(workers, opts.envs_per_worker, episode_limit=max(opts.episode_steps, opts.val_steps) + 10)
    data = WindowStreams(opts.batch, opts.seq_len, rng)
    learner = Learner(policy, device, opts.temperature, opts.seed, opts.bf16)
    trainer = Trainer(policy, opts, device, deadline - 0.05 * opts.time_budget)
    best_key = None
    try:
        # 1. expert demonstrations (whole waves: every env busy)
        t0 = time.time()
        n_expert = -(-opts.expert_episodes // pool.n_envs) * pool.n_envs
        seeds = list(range(next_seed, next_seed + n_expert))
        next_seed += len(seeds)
        expert, _ = rollout(pool, seeds, opts.episode_steps, 1.0, None, rng, record=True,
                            deadline=t0 + 0.3 * opts.time_budget)
        data.add(expert, device)
        if data.n_frames == 0:
            _fail("error: no complete expert window was recorded within 30% of --time-budget")
        collect_rate = data.n_frames / (time.time() - t0)  # env steps / s with the expert alone
        metrics["expert"] = {**score(expert), "seconds": time.time() - t0, "frames": data.n_frames}
        del expert
        logger.info("expert: %d episodes, %d frames in %.0f s, mean return %.2f", len(seeds), data.n_frames,
                    time.time() - t0, metrics["expert"]["mean_return"])
        write_metrics(out, metrics)
        # 2. rounds of train / validate / DAgger. Learner rollouts cost about 3x expert ones until measured.
        dagger_n = opts.dagger_episodes or pool.n_envs
        val_time = 3.0 * opts.val_episodes * opts.val_steps / collect_rate
        overhead = val_time + 3.0 * dagger_n * opts.episode_steps / collect_rate
        for r in range(10_000):
            now = time.time()
            test_time = val_time * opts.test_episodes / max(1, opts.val_episodes) * 1.3 * (1 + opts.test_random)
            reserve = 0.03 * opts.time_budget + 5 + test_time
            # Round 0 gets a double share: DAgger data are only worth collecting once the clone is half decent.
            shares = max(1, opts.rounds - r) + (1 if r == 0 else 0)
            share = (deadline - reserve - now) / shares * (2 if r == 0 else 1)
            train_until = now + max(5.0, share - overhead)
            if train_until + overhead / 2 > deadline - reserve and r > 0:
                break
            rec: Dict[str, Any] = {"round": r, "frames": data.n_frames}
            rec["train"] = trainer.train(data, min(train_until, deadline - reserve))
            if best_key is None:  # a usable model on disk as early as possible
                save_model(out, opts, policy)
            t1 = time.time()
            val_eps, val_complete = rollout(pool, val_seeds, opts.val_steps, 0.0, learner, rng, record=False,
                                            deadline=deadline - reserve / 2)
            if not val_complete:
                logger.info("round %d: validation cut short by the time budget; model not compared", r)
                metrics["rounds"].append(rec)
                break
            val = rec["val"] = score(val_eps)
            key = (val["share_with_log"], val["mean_return"])
            if best_key is None or key >= best_key:
                best_key = key
                save_model(out, opts, policy)
                metrics["best"] = {"round": r, "val": val, "train_steps": trainer.step_count,
                                   "elapsed_s": time.time() - t_start}
            t2 = time.time()
            val_time = t2 - t1
            beta = opts.beta0 * opts.beta_decay ** r
            if deadline - reserve - time.time() > 2 * val_time:  # room left to train on new data
                seeds = list(range(next_seed, next_seed + dagger_n))
                next_seed += len(seeds)
                new, _ = rollout(pool, seeds, opts.episode_steps, beta, learner, rng, record=True,
                                 deadline=deadline - reserve)
                data.add(new, device)
                rec["dagger"] = {"beta": beta, **score(new)}
                del new
            t3 = time.time()
            overhead = (t3 - t1) * 1.1
            rec.update(val_seconds=t2 - t1, collect_seconds=t3 - t2, elapsed_s=t3 - t_start)
            metrics["rounds"].append(rec)
            write_metrics(out, metrics)
            if opts.progress:
                dagger = f"dagger beta {beta:.2f}" if "dagger" in rec else "no dagger (no time left)"
                logger.info("round %d: %d steps, loss %.3f, %.0f frames/s | val logs %.0f%% mean %.2f | %s | "
                            "%d frames | %.0f s", r, rec["train"]["steps"], rec["train"]["loss_last_50"],
                            rec["train"]["frames_per_s"], 100 * val["share_with_log"], val["mean_return"], dagger,
                            data.n_frames, t3 - t_start)
            if time.time() > deadline - reserve:
                break
        # 3. the saved (best) model on the evaluation seeds: reported only, never used for a choice
        test_seeds = list(range(opts.test_seed, opts.test_seed + opts.test_episodes))
        if opts.test_episodes and metrics["best"] is not None:
            sd = torch.load(out / f"{NAME}.weights", map_location=device, weights_only=True)
            policy.load_state_dict(sd)
            t4 = time.time()
            eps, complete = rollout(pool, test_seeds, opts.val_steps, 0.0, learner, rng, record=False,
                                    deadline=deadline)
            if complete:
                metrics["test"] = {"seeds": [test_seeds[0], test_seeds[-1]], "steps": opts.val_steps,
                                   **score(eps), "seconds": time.time() - t4}
                logger.info("test (seeds %d..%d): logs in %.0f%% of episodes, mean return %.2f %s",
                            test_seeds[0], test_seeds[-1], 100 * metrics["test"]["share_with_log"],
                            metrics["test"]["mean_return"], metrics["test"]["ci95"])
            else:
                logger.info("test evaluation cut short by the time budget")
        if opts.test_episodes and opts.test_random:
            with _seeded(opts.seed + 1):
                baseline = VPTPolicy(cfg).to(device, memory_format=torch.channels_last).eval()
            eps, complete = rollout(pool, test_seeds, opts.val_steps, 0.0,
                                    Learner(baseline, device, opts.temperature, opts.seed, opts.bf16), rng,
                                    record=False, deadline=deadline)
            if complete:
                metrics["test_random_weights"] = {"seeds": [test_seeds[0], test_seeds[-1]], **score(eps)}
                logger.info("random weights on the test seeds: logs in %.0f%% of episodes, mean return %.2f",
                            100 * metrics["test_random_weights"]["share_with_log"],
                            metrics["test_random_weights"]["mean_return"])
    finally:
        pool.close()
        metrics["elapsed_s"] = time.time() - t_start
        write_metrics(out, metrics)
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    opts = Options(**vars(build_parser().parse_args(argv)))
    if opts.time_budget <= 0 or opts.workers < 0 or opts.batch < 1 or opts.temperature <= 0:
        _fail("error: --time-budget, --batch and --temperature must be positive, --workers >= 0")
    metrics = run(opts)
    print(json.dumps({"best": metrics.get("best"), "elapsed_s": metrics["elapsed_s"]}))


if __name__ == "__main__":
    main()
