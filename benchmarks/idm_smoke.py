"""End-to-end smoke test of the IDM machinery: record, train a tiny IDM, label held-out episodes, score the labels.

1. Record episodes of the embedded env (``vpt/VoxelTreechop-v0``) played by the scripted chopper
   (``vpt_agent.demos``): the true actions are known.
2. Train a tiny IDM (the 4x IDM's structure: 3D conv, non-causal attention over 16-frame windows; 32x32 input,
   0.49M parameters) from scratch on the training episodes (cross-entropy on the 20 buttons and 2 camera axes).
3. Label the held-out episodes' videos with ``python -m vpt_agent.label``'s code (window 16, stride 8) and read
   both jsonl files back with ``vpt_agent.data``.
4. Per-key accuracy and camera agreement of the labels against the true actions, next to an always-no-op labeller.

This tests the machinery (training data, network, labeller, recording format), not the official IDM's accuracy.

    nice -n 10 python benchmarks/idm_smoke.py --out runs/idm_smoke          # a few minutes on 2 CPU cores
"""
from __future__ import annotations

import argparse
import json
import pickle
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from vpt_agent.action_mapping import BUTTONS, CAMERA_NULL_BIN  # noqa: E402
from vpt_agent.data import find_recordings  # noqa: E402
from vpt_agent.data.actions import decode_records  # noqa: E402
from vpt_agent.data.jsonl import read_jsonl  # noqa: E402
from vpt_agent.data.video import read_video_rgb  # noqa: E402
from vpt_agent.frames import preprocess_pov  # noqa: E402
from vpt_agent.idm import IDM_4X_NET_KWARGS, IDMConfig, InverseActionPolicy  # noqa: E402
from vpt_agent.idm_actions import env_to_idm  # noqa: E402

WINDOW = 16
TINY = dict(IDM_4X_NET_KWARGS, attention_heads=4, attention_memory_size=WINDOW, timesteps=WINDOW, hidsize=128,
            n_recurrence_layers=1, impala_width=1, img_shape=[32, 32, 8],
            conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 8, "padding": [2, 0, 0]})


def record(out: Path, episodes: int, seed: int, max_steps: int) -> None:
    from vpt_agent.demos import DemosConfig, record_demos

    record_demos(DemosConfig(episodes=episodes, seed=seed, out=str(out), max_steps=max_steps, quality="lossless",
                             progress=False))


def true_actions(jsonl: Path) -> Tuple[np.ndarray, np.ndarray]:
    """Every line of a recording (null steps included) -> (buttons (N, 20), camera bins (N, 2))."""
    return env_to_idm(decode_records(read_jsonl(jsonl), jsonl).actions)


def load_episodes(directory: Path, size: Tuple[int, int]) -> List[Dict[str, np.ndarray]]:
    episodes = []
    for rec in find_recordings(directory):
        frames = np.stack([preprocess_pov({"pov": f}, size) for f in read_video_rgb(rec.video)])
        buttons, bins = true_actions(rec.actions)
        assert len(frames) == len(buttons), rec.name
        episodes.append({"frames": frames, "buttons": buttons, "bins": bins})
    return episodes


def train(episodes: List[Dict[str, np.ndarray]], steps: int, batch: int, seed: int) -> InverseActionPolicy:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    policy = InverseActionPolicy(IDMConfig.from_kwargs(TINY))
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=0.0)
    usable = [e for e in episodes if len(e["frames"]) >= WINDOW]
    start = time.perf_counter()
    for step in range(1, steps + 1):
        picks = [usable[i] for i in rng.integers(0, len(usable), batch)]
        starts = [int(rng.integers(0, len(e["frames"]) - WINDOW + 1)) for e in picks]
        x = torch.from_numpy(np.stack([e["frames"][s:s + WINDOW] for e, s in zip(picks, starts)]))
        yb = torch.from_numpy(np.stack([e["buttons"][s:s + WINDOW] for e, s in zip(picks, starts)])).long()
        yc = torch.from_numpy(np.stack([e["bins"][s:s + WINDOW] for e, s in zip(picks, starts)]))
        logp = policy(x, policy.initial_state(batch)).logp
        loss = F.nll_loss(logp["buttons"].reshape(-1, 2), yb.reshape(-1)) * len(BUTTONS) + \
            F.nll_loss(logp["camera"].reshape(-1, logp["camera"].shape[-1]), yc.reshape(-1)) * 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == 1:
            print(f"  step {step}/{steps}  loss {loss.item():.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)
    return policy.eval()


def save(policy: InverseActionPolicy, directory: Path) -> Tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    model, weights = directory / "tiny_idm.model", directory / "tiny_idm.weights"
    model.write_bytes(pickle.dumps({"model": {"args": {"net": {"args": TINY}, "pi_head_opts": {"temperature": 1.0}}}}))
    torch.save(policy.state_dict(), weights)
    return model, weights


def score(truth_dir: Path, label_dir: Path) -> Dict[str, object]:
    """Per-key accuracy, recall on pressed steps and camera agreement of the labels and of an always-no-op labeller."""
    tb, tc, lb, lc = [], [], [], []
    for rec in find_recordings(truth_dir):
        b, c = true_actions(rec.actions)
        pb, pc = true_actions(label_dir / rec.actions.name)
        assert len(pb) == len(b), rec.name
        tb.append(b), tc.append(c), lb.append(pb), lc.append(pc)
    tb, tc, lb, lc = map(np.concatenate, (tb, tc, lb, lc))
    noop_b, noop_c = np.zeros_like(tb), np.full_like(tc, CAMERA_NULL_BIN)
    keys, false_presses_of_unused_keys = {}, {}
    for i, key in enumerate(BUTTONS):
        pressed = tb[:, i] == 1
        if not pressed.any():
            if lb[:, i].any():
                false_presses_of_unused_keys[key] = int(lb[:, i].sum())
            continue
        keys[key] = {"pressed_fraction": float(pressed.mean()),
                     "accuracy": float((lb[:, i] == tb[:, i]).mean()),
                     "noop_accuracy": float((noop_b[:, i] == tb[:, i]).mean()),
                     "recall_when_pressed": float((lb[pressed, i] == 1).mean()),
                     "false_press_rate": float((lb[~pressed, i] == 1).mean())}
    moving = (tc != CAMERA_NULL_BIN).any(axis=1)
    camera = {"moving_fraction": float(moving.mean()),
              "exact_agreement": float((lc == tc).all(axis=1).mean()),
              "noop_exact_agreement": float((noop_c == tc).all(axis=1).mean()),
              "pitch_agreement": float((lc[:, 0] == tc[:, 0]).mean()),
              "yaw_agreement": float((lc[:, 1] == tc[:, 1]).mean()),
              "exact_agreement_when_moving": float((lc[moving] == tc[moving]).all(axis=1).mean()),
              "mean_abs_bin_error": float(np.abs(lc - tc).mean()),
              "noop_mean_abs_bin_error": float(np.abs(noop_c - tc).mean())}
    return {"frames": int(len(tb)), "keys": keys, "camera": camera,
            "false_presses_of_unused_keys": false_presses_of_unused_keys}


def table(result: Dict[str, object]) -> str:
    lines = ["| key | pressed | IDM accuracy | no-op accuracy | IDM recall when pressed | IDM false presses |",
             "|---|---|---|---|---|---|"]
    for key, k in result["keys"].items():
        lines.append(f"| {key} | {k['pressed_fraction']:.1%} | {k['accuracy']:.1%} | {k['noop_accuracy']:.1%} | "
                     f"{k['recall_when_pressed']:.1%} | {k['false_press_rate']:.1%} |")
    c = result["camera"]
    lines.append(f"(labels of keys the true actions never press: {result['false_presses_of_unused_keys'] or 'none'})")
    lines += ["", "| camera | IDM | no-op |", "|---|---|---|",
              f"| both bins exact | {c['exact_agreement']:.1%} | {c['noop_exact_agreement']:.1%} |",
              f"| exact when the camera moved ({c['moving_fraction']:.0%} of steps) | "
              f"{c['exact_agreement_when_moving']:.1%} | 0.0% |",
              f"| pitch / yaw bin agreement | {c['pitch_agreement']:.1%} / {c['yaw_agreement']:.1%} | |",
              f"| mean abs bin error | {c['mean_abs_bin_error']:.2f} | {c['noop_mean_abs_bin_error']:.2f} |"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/idm_smoke")
    p.add_argument("--train-episodes", type=int, default=12)
    p.add_argument("--test-episodes", type=int, default=4)
    p.add_argument("--max-steps", type=int, default=200, help="steps per recorded episode")
    p.add_argument("--train-steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=8, help="windows per training step")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared machine more threads spin-wait and run several times slower)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    print("recording episodes (scripted chopper, embedded env) ...", flush=True)
    record(out / "train", args.train_episodes, seed=args.seed, max_steps=args.max_steps)
    record(out / "test", args.test_episodes, seed=args.seed + 100_000, max_steps=args.max_steps)
    size = tuple(TINY["img_shape"][:2])
    episodes = load_episodes(out / "train", size)
    print(f"training a tiny IDM on {sum(len(e['frames']) for e in episodes)} frames of {len(episodes)} episodes ...")
    policy = train(episodes, args.train_steps, args.batch, args.seed)
    model, weights = save(policy, out / "idm")
    print("labelling the held-out episodes with vpt_agent.label ...", flush=True)
    from vpt_agent.label import LabelConfig, label_videos

    tmp_videos = out / "test_videos"  # the labeller takes videos; give it only the mp4s (no true jsonl alongside)
    tmp_videos.mkdir(exist_ok=True)
    for rec in find_recordings(out / "test"):
        dst = tmp_videos / rec.video.name
        if not dst.exists():
            dst.hardlink_to(rec.video)
    shutil.rmtree(out / "labelled", ignore_errors=True)  # labels of an earlier run's IDM would be skipped as done
    label_videos(LabelConfig(videos=[str(tmp_videos)], out=str(out / "labelled"), model=str(model),
                             weights=str(weights), device="cpu", batch=8, progress=False))
    result = score(out / "test", out / "labelled")
    result.update(train_episodes=args.train_episodes, test_episodes=args.test_episodes, max_steps=args.max_steps,
                  train_steps=args.train_steps, seconds=time.perf_counter() - t0)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    print(f"{result['frames']} held-out frames; {result['seconds']:.0f} s in all; {out / 'results.json'}")


if __name__ == "__main__":
    main()
