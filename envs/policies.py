"""Reference policies for the embedded env: a scripted tree chopper (an oracle that reads the world) and a
random policy. Used by tests and benchmarks to show the reward is reachable but not by chance."""
from __future__ import annotations

import math
from typing import Any, Optional

import gymnasium as gym
import numpy as np

from .actions import CAMERA_LIMIT, action_space, noop_action
from .voxel import REACH
from .voxel_world import BLOCKS, LOG_BLOCKS

_LEAVES = {i for i, b in enumerate(BLOCKS) if b.name.endswith("_leaves")}
MAX_TURN = 10.0  # degrees per step, about what VPT's camera bins allow
# Camera errors below this (degrees, per axis) are left alone. Without it the script corrects every tick's
# +-0.6 deg drift while walking, which makes its camera labels noisy for behavioural cloning; a log block
# within reach spans > 12 deg, so aiming stays well inside it.
CAMERA_DEAD_BAND = 1.0


class TreechopScript:
    """Walk to the nearest log (within jumping-and-reaching height) and chop it, clearing leaves in the way.

    Call ``policy()`` once per step (after ``reset``) to get the next action for ``env``.
    """

    def __init__(self, env: gym.Env):
        self.env = env.unwrapped
        self._last_position: Optional[np.ndarray] = None

    def __call__(self) -> dict[str, Any]:
        env = self.env
        action = noop_action()
        target = self._nearest_log()
        if target is None:
            return action
        size = env.world.size
        eye = env.eye
        delta = np.array(target, np.float64) + 0.5 - eye
        delta[[0, 2]] = (delta[[0, 2]] + size / 2) % size - size / 2  # shortest way around the torus
        horizontal = math.hypot(delta[0], delta[2])
        yaw = math.degrees(math.atan2(-delta[0], delta[2]))
        pitch = -math.degrees(math.atan2(delta[1], horizontal))
        turn = (yaw - env.yaw + 180.0) % 360.0 - 180.0
        camera = np.clip([pitch - env.pitch, turn], -MAX_TURN, MAX_TURN)
        camera[np.abs(camera) < CAMERA_DEAD_BAND] = 0.0
        action["camera"] = camera.astype(np.float32)
        if horizontal > 1.6:
            action["forward"] = 1
            stuck = self._last_position is not None and np.hypot(*(env.position - self._last_position)[[0, 2]]) < 0.05
            action["jump"] = int(stuck)
        crosshair = env.target_block()
        if crosshair is not None and abs(turn) < 15 and horizontal < REACH:
            block = env.world.block_at(*crosshair)
            action["attack"] = int(block in LOG_BLOCKS or block in _LEAVES)
        self._last_position = env.position.copy()
        return action

    def _nearest_log(self) -> Optional[tuple[int, int, int]]:
        env = self.env
        size = env.world.size
        xs, ys, zs = np.nonzero(np.isin(env.world.blocks, LOG_BLOCKS))
        if not len(xs):
            return None
        feet = env.position
        dx = (xs + 0.5 - feet[0] + size / 2) % size - size / 2
        dz = (zs + 0.5 - feet[2] + size / 2) % size - size / 2
        dy = ys - feet[1]
        reachable = dy < 4.0
        if not reachable.any():
            return None
        cost = np.hypot(dx, dz) + 0.5 * np.abs(dy) + np.where(reachable, 0, 1e9)
        i = int(np.argmin(cost))
        # unwrapped coordinates closest to the player
        return (int(round(feet[0] + dx[i] - 0.5)), int(ys[i]), int(round(feet[2] + dz[i] - 0.5)))


class RandomPolicy:
    """Uniformly random buttons and a small Gaussian camera move (std ``camera_std`` degrees)."""

    def __init__(self, seed: int = 0, camera_std: float = 5.0):
        self.space = action_space()
        self.space.seed(seed)
        self.rng = np.random.default_rng(seed)
        self.camera_std = camera_std

    def __call__(self) -> dict[str, Any]:
        action = self.space.sample()
        camera = np.clip(self.rng.normal(0.0, self.camera_std, 2), -CAMERA_LIMIT, CAMERA_LIMIT)
        action["camera"] = camera.astype(np.float32)
        return action
