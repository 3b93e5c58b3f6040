"""A tiny IDM (.model + .weights in the official file formats) and small test videos, for the IDM/label tests."""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import torch

from vpt_agent.data.video import VideoEncoder
from vpt_agent.idm import IDM_4X_NET_KWARGS, IDMConfig, InverseActionPolicy

#: The 4x IDM's structure at toy size: window (timesteps) 8, no memory between chunks, 16x16 input.
TINY_NET: Dict = dict(IDM_4X_NET_KWARGS, attention_heads=2, attention_memory_size=8, timesteps=8, hidsize=32,
                      impala_width=0.5, img_shape=[16, 16, 4],
                      conv3d_params={"inchan": 3, "kernel_size": [5, 1, 1], "outchan": 4, "padding": [2, 0, 0]})

#: The same with a two-block "multi_layer_bilstm" recurrence (block 1 runs backwards in time).
TINY_LSTM_NET: Dict = dict(TINY_NET, recurrence_type="multi_layer_bilstm")


def tiny_config() -> IDMConfig:
    return IDMConfig.from_kwargs(TINY_NET)


def write_tiny_idm(directory: Path, seed: int = 0, net: Optional[Dict] = None) -> Tuple[Path, Path]:
    """``tiny.model`` + ``tiny.weights`` (of ``net``, default :data:`TINY_NET`) with random weights whose heads
    are sharpened (varied predictions)."""
    net = TINY_NET if net is None else net
    torch.manual_seed(seed)
    policy = InverseActionPolicy(IDMConfig.from_kwargs(net))
    with torch.no_grad():
        for head in policy.pi_head.values():
            head.linear_layer.weight.mul_(30.0)
            head.linear_layer.bias.normal_(0, 0.5)
    model = directory / "tiny.model"
    weights = directory / "tiny.weights"
    args = {"net": {"args": net}, "pi_head_opts": {"temperature": 1.0}}
    model.write_bytes(pickle.dumps({"model": {"args": args}}))
    torch.save(policy.state_dict(), weights)
    return model, weights


def video_frames(n: int, seed: int, size=(48, 64)) -> np.ndarray:
    """Smooth moving blobs plus noise: frames that differ from each other."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        cx, cy = (w / 2) + (w / 3) * np.sin(0.3 * t + seed), (h / 2) + (h / 3) * np.cos(0.2 * t)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 60.0)
        img = np.stack([255 * blob, 128 + 100 * np.sin(0.1 * xx + t), rng.uniform(0, 255, (h, w))], -1)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_video(path: Path, frames: np.ndarray, fps: int = 20) -> Path:
    """A lossless H.264 mp4 (decodes back to exactly ``frames``), or for ``.avi`` an MJPEG file (any size)."""
    if path.suffix == ".avi":
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, frames.shape[2:0:-1])
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        writer.release()
        return path
    enc = VideoEncoder(path, fps=fps, quality="lossless")
    for f in frames:
        enc.write(f)
    enc.close()
    return path
