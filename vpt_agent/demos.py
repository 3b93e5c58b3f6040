"""``python -m vpt_agent.demos`` (``vpt-demos``): record a scripted policy's episodes as VPT recordings.

Episode i is played with env seed ``SEED + i`` and saved as ``OUT/demo-seedNNNNNNNN.mp4`` + ``.jsonl``
(:class:`vpt_agent.data.RecordingWriter`; names sort in episode order). Each step stores the frame the policy
saw and the action it took (plus the reward it got, as ``reward`` in the record). Episodes whose two files are
already there are skipped, so an interrupted run continues where it stopped; a half-written episode leaves
only ``*.partial`` files and is recorded again.

Example::

    python -m vpt_agent.demos --env vpt/VoxelTreechop-v0 --episodes 200 --seed 1000 --out data/treechop
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import cli
from .atomic import out_dir_problem
from .data import DataError, RecordingWriter, recording_files
from .data.video import DEFAULT_QUALITY, VIDEO_QUALITIES
from .errors import VPTError, one_line

logger = logging.getLogger(__name__)

PROG = "python -m vpt_agent.demos"
POLICIES = ("treechop", "random")
NAME_FORMAT = "demo-seed{seed:08d}"


class DemosError(VPTError, ValueError):
    """Bad options (unknown env, unusable output directory, ...)."""


@dataclass
class DemosConfig:
    """Options of a demonstration recording run (one field per command-line flag)."""

    env: str = field(default="vpt/VoxelTreechop-v0", metadata={"help": "Gymnasium env id"})
    episodes: int = field(default=10, metadata={"help": "number of episodes N", "minimum": 1})
    seed: int = field(default=0, metadata={"help": "episode i uses env seed SEED+i (env seeds are non-negative)",
                                                "minimum": 0})
    out: str = field(default="demos", metadata={"help": "output directory of the recordings"})
    max_steps: int = field(default=600, metadata={"help": "steps per episode at most (20 steps = 1 s)", "minimum": 1})
    policy: str = field(default="treechop", metadata={
        "help": "treechop: the scripted chopper (vpt_envs.policies.TreechopScript, embedded env only); "
                "random: uniformly random buttons", "choices": POLICIES})
    quality: str = field(default=DEFAULT_QUALITY, metadata={
        "help": "video quality: standard (H.264 yuv420p crf 18, like VPT's data; ~2.4 grey levels of error at "
                "128x128) or lossless (H.264 RGB, bit-exact, ~5x larger, ~3x slower to decode)",
        "choices": tuple(VIDEO_QUALITIES)})
    progress: bool = field(default=True, metadata={"help": "no progress bar", "negate": True})


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    """One option per :class:`DemosConfig` field (``--max-steps`` for ``max_steps``; ``--no-progress``)."""
    return cli.build_parser(DemosConfig, PROG, "Record a scripted policy's episodes as VPT recordings "
                                               "(NAME.mp4 + NAME.jsonl) for behavioural cloning.")


def config_from_args(argv: Optional[Sequence[str]] = None) -> DemosConfig:
    """Parse arguments into a :class:`DemosConfig` (exits 2 on a syntax error)."""
    return cli.parse_config(DemosConfig, argv, PROG, "", parser=build_parser())


# ----------------------------------------------------------------------------- recording

def episode_name(seed: int) -> str:
    """File name (without suffix) of the episode played with env ``seed``."""
    return NAME_FORMAT.format(seed=seed)


def _check(config: DemosConfig) -> Path:
    cli.check_fields(config, DemosError)
    out = Path(config.out)
    problem = out_dir_problem(out)
    if problem:
        raise DemosError(problem)
    return out


def _make_env(env_id: str):
    import gymnasium

    import vpt_envs  # noqa: F401  (registers the vpt/ ids)

    try:
        return gymnasium.make(env_id)
    except gymnasium.error.Error as err:
        raise DemosError(f"--env {env_id}: {err}") from None


def _make_policy(name: str, env, seed: int):
    from vpt_envs.policies import RandomPolicy, TreechopScript

    if name == "random":
        return RandomPolicy(seed=seed)
    if not hasattr(env.unwrapped, "world"):
        raise DemosError(f"--policy treechop needs the embedded env (vpt/VoxelTreechop-v0), not {env.spec.id}")
    return TreechopScript(env)


def record_episode(env, policy_name: str, seed: int, out: Path, max_steps: int, quality: str,
                   on_step=None) -> Dict[str, Any]:
    """Play one episode with env ``seed`` and save it; returns ``{"seed", "steps", "return"}``."""
    obs, _ = env.reset(seed=seed)
    policy = _make_policy(policy_name, env, seed)
    total, steps = 0.0, 0
    with RecordingWriter(out, episode_name(seed), quality=quality, overwrite=True) as writer:
        for steps in range(1, max_steps + 1):
            action = policy()
            frame = obs["pov"]
            obs, reward, terminated, truncated, _ = env.step(action)
            writer.write(frame, action, extra={"reward": float(reward)})
            total += float(reward)
            if on_step is not None:
                on_step()
            if terminated or truncated:
                break
    return {"seed": seed, "steps": steps, "return": total}


def _recorded_return(seed: int, out: Path) -> Optional[float]:
    """The return stored in a complete episode's jsonl (None if the episode is not complete)."""
    files = recording_files(out, episode_name(seed))
    if not (files.video.is_file() and files.actions.is_file()):
        return None
    try:
        with open(files.actions, encoding="utf-8") as f:
            return sum(float(json.loads(line).get("reward", 0.0)) for line in f if line.strip())
    except (OSError, ValueError, AttributeError) as err:
        raise DemosError(f"{files.actions}: unreadable ({err}); delete it to record the episode again") from None


def record_demos(config: DemosConfig) -> Dict[str, Any]:
    """Record ``config.episodes`` episodes into ``config.out`` (skipping complete ones); returns a summary."""
    from tqdm import tqdm

    out = _check(config)
    seeds = [config.seed + i for i in range(config.episodes)]
    done = {seed: ret for seed in seeds if (ret := _recorded_return(seed, out)) is not None}
    todo = [seed for seed in seeds if seed not in done]
    returns: List[float] = list(done.values())
    started = time.perf_counter()
    steps = 0
    if todo:
        env = _make_env(config.env)
        out.mkdir(parents=True, exist_ok=True)
        bar = tqdm(total=len(todo) * config.max_steps, unit="step", desc="demos", disable=not config.progress)
        try:
            for seed in todo:
                result = record_episode(env, config.policy, seed, out, config.max_steps, config.quality,
                                        on_step=lambda: bar.update(1))
                bar.update(config.max_steps - result["steps"])  # an early end skips the rest of its budget
                returns.append(result["return"])
                steps += result["steps"]
                bar.set_postfix(mean_return=f"{sum(returns) / len(returns):.2f}")
        finally:
            bar.close()
            env.close()
    seconds = time.perf_counter() - started
    return {"out": str(out), "recorded": len(todo), "skipped": len(done), "steps": steps, "seconds": seconds,
            "mean_return": sum(returns) / len(returns) if returns else 0.0,
            "with_reward": sum(r > 0 for r in returns), "episodes": len(returns)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit code."""
    config = config_from_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        summary = record_demos(config)
    except (DemosError, DataError, OSError) as err:  # OSError: e.g. an output directory we may not write
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished episodes are on disk; run the same command again to continue",
              file=sys.stderr)
        return 130
    print(f"{summary['out']}: recorded {summary['recorded']} episodes ({summary['skipped']} already there), "
          f"{summary['steps']} steps in {summary['seconds']:.1f} s; mean return {summary['mean_return']:.2f}, "
          f"{summary['with_reward']}/{summary['episodes']} episodes with reward")
    return 0


if __name__ == "__main__":
    sys.exit(main())
