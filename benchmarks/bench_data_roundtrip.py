"""Round-trip error, size and speed of our VPT recordings (vpt_agent.data) for each video quality.

Plays the scripted chopper in the embedded env, writes each episode with :class:`RecordingWriter`, reads it back
with :func:`load_recording` and compares with the frames that went in (full 640x360 and the agent's 128x128)::

    python benchmarks/bench_data_roundtrip.py --episodes 3 --steps 200 [--json out.json]

Prints one JSON object: per quality, kB per frame, write and read frames/s (wall clock), and the absolute error
in grey levels (mean, p99, max) at both sizes; actions must come back identical (checked, not timed).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium
import numpy as np

import vpt_envs  # noqa: F401
from vpt_agent.data import RecordingWriter, load_actions, load_recording, recording_files
from vpt_agent.data.video import VIDEO_QUALITIES
from vpt_agent.frames import preprocess_pov
from vpt_envs.policies import TreechopScript


def episodes(count: int, steps: int, seed: int):
    env = gymnasium.make("vpt/VoxelTreechop-v0")
    for i in range(count):
        obs, _ = env.reset(seed=seed + i)
        policy = TreechopScript(env)
        frames, actions = [], []
        for _ in range(steps):
            action = policy()
            frames.append(obs["pov"])
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break
        yield np.stack(frames), actions
    env.close()


def errors(got: np.ndarray, expected: np.ndarray) -> dict:
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    return {"mean": round(float(diff.mean()), 3), "p99": float(np.percentile(diff, 99)), "max": int(diff.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args()
    data = list(episodes(args.episodes, args.steps, args.seed))
    result = {"episodes": args.episodes, "frames": sum(len(f) for f, _ in data), "qualities": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for quality in VIDEO_QUALITIES:
            write_s = read_s = 0.0
            size = 0
            full_got, full_ref, small_got, small_ref = [], [], [], []
            for index, (frames, actions) in enumerate(data):
                name = f"{quality}-{index}"
                start = time.perf_counter()
                with RecordingWriter(tmp, name, quality=quality) as writer:
                    for frame, action in zip(frames, actions):
                        writer.write(frame, action)
                write_s += time.perf_counter() - start
                files = recording_files(tmp, name)
                size += files.video.stat().st_size
                start = time.perf_counter()
                small = load_recording(files)
                read_s += time.perf_counter() - start
                full = load_recording(files, size=None)
                kept = load_actions(files)
                assert len(kept) == len(small)  # actions themselves are checked by tests/test_data_roundtrip.py
                full_got.append(full.frames)
                full_ref.append(frames[full.frame_index])
                small_got.append(small.frames)
                small_ref.append(np.stack([preprocess_pov({"pov": f}) for f in frames[small.frame_index]]))
            n = sum(len(f) for f, _ in data)
            result["qualities"][quality] = {
                "codec": " ".join([VIDEO_QUALITIES[quality][0], VIDEO_QUALITIES[quality][1],
                                   *VIDEO_QUALITIES[quality][2]]),
                "kB_per_frame": round(size / n / 1e3, 1),
                "write_frames_per_s": round(n / write_s, 1),
                "read_frames_per_s_128": round(sum(len(s) for s in small_got) / read_s, 1),
                "error_640x360": errors(np.concatenate(full_got), np.concatenate(full_ref)),
                "error_128x128": errors(np.concatenate(small_got), np.concatenate(small_ref)),
            }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
