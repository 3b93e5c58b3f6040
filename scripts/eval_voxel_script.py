"""Score the scripted chopper (``vpt_envs.policies.TreechopScript``) on the same seeds as ``vpt_agent.evaluate``.

    python scripts/eval_voxel_script.py --episodes 50 --seed 1000 --max-steps 600 --out runs/script-eval.json

Episode ``i`` uses env seed ``seed + i`` (as ``python -m vpt_agent.evaluate`` does). ``--quantised`` executes the
script's actions after a round trip through VPT's action space (what a perfect clone could do). Prints and writes
one JSON object: returns, mean with a Student-t 95% CI, share of episodes with at least one log.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vpt_envs  # noqa: E402,F401
from train_voxel_demo import ENV_ID, mean_ci95  # noqa: E402
from vpt_agent.action_mapping import policy_to_env  # noqa: E402
from vpt_agent.train.targets import action_targets  # noqa: E402
from vpt_envs.policies import TreechopScript  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--episodes", type=int, default=50, help="number of episodes (default 50)")
    p.add_argument("--seed", type=int, default=1000, help="env seed of episode 0 (default 1000)")
    p.add_argument("--max-steps", type=int, default=600, help="steps per episode (default 600)")
    p.add_argument("--quantised", action="store_true", help="execute the actions as VPT's action space rounds them")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    if args.episodes < 1 or args.max_steps < 1:
        p.error("--episodes and --max-steps must be positive")
    returns, t0 = [], time.time()
    for i in range(args.episodes):
        env = gym.make(ENV_ID, max_episode_steps=args.max_steps)
        env.reset(seed=args.seed + i)
        script, total, done = TreechopScript(env), 0.0, False
        while not done:
            action = script()
            if args.quantised:
                t = action_targets([action])
                action = policy_to_env(t.buttons, t.camera)[0]
            _, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    mean, ci = mean_ci95(returns)
    result = {"policy": "scripted chopper" + (" (quantised)" if args.quantised else ""), "env": ENV_ID,
              "seeds": [args.seed, args.seed + args.episodes - 1], "max_steps": args.max_steps,
              "mean_return": mean, "ci95": ci, "share_with_log": sum(r > 0 for r in returns) / len(returns),
              "returns": returns, "seconds": time.time() - t0}
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
