"""``vpt/VoxelTreechop-v0``: an embedded Minecraft-like tree-chopping env with MineRL's spaces.

One step is one Minecraft tick (20 per game second). The player follows Minecraft's numbers where it matters
for an agent: walk 4.317 blocks/s, sprint 5.612, sneak 1.295; jump impulse 0.42 blocks/tick with gravity
0.08 blocks/tick^2 and drag 0.98; a 0.6 x 1.8 x 0.6 collision box with eyes at 1.62; reach 4.5 blocks; and
hand break times from Minecraft's formula (a log takes 60 ticks of uninterrupted attacking on the same block).
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Optional

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .actions import action_space, fill_action
from .errors import EnvArgumentError, EnvStateError
from .voxel_render import VoxelRenderer, camera_basis
from .voxel_world import AIR, BLOCKS, INVENTORY_ITEMS, LOG_ITEMS, World, generate_world

WALK_SPEED = 4.317 / 20
SPRINT_SPEED = 5.612 / 20
SNEAK_FACTOR = 0.3
JUMP_VELOCITY = 0.42
GRAVITY = 0.08
DRAG = 0.98
AIR_CONTROL = 0.09
HALF_WIDTH = 0.3
PLAYER_HEIGHT = 1.8
EYE_HEIGHT = 1.62
REACH = 4.5
MAX_STACK = 2304  # MineRL's inventory Box upper bound (36 slots x 64)
EPS = 1e-6


class VoxelTreechopEnv(gym.Env):
    """Chop trees in a small procedurally generated block world.

    Observation: ``{"pov": (360, 640, 3) uint8 RGB, "inventory": {item: int32 count}}`` with MineRL item names.
    Action: MineRL 1.0's 24-key dict (see :mod:`vpt_envs.actions`); ``camera`` is ``[pitch, yaw]`` degrees per
    step, positive pitch looks down, pitch is clamped to +-90. Movement keys, ``jump``, ``sneak``, ``sprint``,
    ``attack`` and ``hotbar.1-9`` (slot highlight) act; ``use``, ``drop``, ``inventory``, ``ESC``, ``pickItem``
    and ``swapHands`` are accepted and ignored. Missing keys are no-ops.
    Reward: +1 per log obtained. ``terminated`` once ``log_goal`` logs were obtained; time limits come from
    ``gymnasium.make`` (``max_episode_steps``, registered default 8000 like MineRLTreechop).

    Args:
        log_goal: logs needed to end the episode successfully (MineRLTreechop: 64).
        world_size, world_height, n_trees: world generation parameters.
        render_mode: ``"rgb_array"`` (``render()`` returns the last pov) or ``None``.
        resolution: ``(width, height)`` of ``pov`` (MineRL convention; default VPT's 640x360).
        internal_resolution: ``(rows, cols)`` at which the renderer casts rays before upscaling.
        fov: vertical field of view in degrees (VPT: 70).
        backend: renderer backend, ``"numba"``/``"numpy"``/``None`` (fastest available).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, log_goal: int = 64, world_size: int = 64, world_height: int = 32, n_trees: int = 24,
                 render_mode: Optional[str] = None, resolution: tuple[int, int] = (640, 360),
                 internal_resolution: tuple[int, int] = (72, 128), fov: float = 70.0,
                 backend: Optional[str] = None):
        if log_goal < 1:
            raise EnvArgumentError(f"log_goal must be >= 1, got {log_goal}")
        if render_mode not in (None, "rgb_array"):
            raise EnvArgumentError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        width, height = resolution
        self.log_goal = int(log_goal)
        self.render_mode = render_mode
        self._world_args = dict(size=world_size, height=world_height, n_trees=n_trees)
        self.renderer = VoxelRenderer(height, width, internal=internal_resolution, fov=fov, backend=backend)
        self.action_space = action_space()
        self.observation_space = spaces.Dict({
            "inventory": spaces.Dict({item: spaces.Box(0, MAX_STACK, shape=(), dtype=np.int32)
                                      for item in INVENTORY_ITEMS}),
            "pov": spaces.Box(0, 255, shape=(height, width, 3), dtype=np.uint8),
        })
        self.world: Optional[World] = None
        self._pov: Optional[np.ndarray] = None

    # ------------------------------------------------------------------------------------------------ API
    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.world = generate_world(world_seed, **self._world_args)
        self.position = np.array(self.world.spawn, np.float64)
        self.velocity = np.zeros(3)
        self.yaw, self.pitch = self.world.spawn_yaw, 0.0
        self.on_ground = True
        self.hotbar_slot = 0
        self.inventory: Counter[str] = Counter()
        self.logs = 0
        self.steps = 0
        self._mining: Optional[tuple[int, int, int]] = None
        self._mining_ticks = 0
        return self._observe(), self._info()

    def step(self, action: dict):
        if self.world is None:
            raise EnvStateError("call reset() before step()")
        act = fill_action(action)
        self.steps += 1
        self._turn(act["camera"])
        for slot in range(9):
            if act[f"hotbar.{slot + 1}"]:
                self.hotbar_slot = slot
        self._move(act)
        logs_before = self.logs
        self._attack(bool(act["attack"]))
        reward = float(self.logs - logs_before)
        terminated = self.logs >= self.log_goal
        return self._observe(), reward, terminated, False, self._info()

    def render(self) -> Optional[np.ndarray]:
        if self.render_mode == "rgb_array":
            return None if self._pov is None else self._pov.copy()
        return None

    # ------------------------------------------------------------------------------------------------ state
    @property
    def eye(self) -> np.ndarray:
        return self.position + (0.0, EYE_HEIGHT, 0.0)

    def target_block(self) -> Optional[tuple[int, int, int]]:
        """Integer coordinates of the block under the crosshair within reach (unwrapped), or ``None``."""
        forward, _, _ = camera_basis(self.yaw, self.pitch)
        return _first_solid(self.world, self.eye, forward, REACH)

    def _observe(self) -> dict[str, Any]:
        self._pov = self.renderer.render(self.world, self.eye, self.yaw, self.pitch, self.hotbar_slot)
        inventory = {item: np.array(min(self.inventory[item], MAX_STACK), np.int32) for item in INVENTORY_ITEMS}
        return {"inventory": inventory, "pov": self._pov}

    def _info(self) -> dict[str, Any]:
        x, y, z = self.position
        return {"logs": self.logs, "location_stats": {"xpos": x, "ypos": y, "zpos": z,
                                                      "pitch": self.pitch, "yaw": self.yaw}}

    # ------------------------------------------------------------------------------------------------ dynamics
    def _turn(self, camera: np.ndarray) -> None:
        self.pitch = float(np.clip(self.pitch + float(camera[0]), -90.0, 90.0))
        self.yaw = (self.yaw + float(camera[1]) + 180.0) % 360.0 - 180.0

    def _move(self, act: dict[str, Any]) -> None:
        ahead = act["forward"] - act["back"]
        strafe = act["right"] - act["left"]
        speed = SPRINT_SPEED if (act["sprint"] and ahead > 0 and not act["sneak"]) else WALK_SPEED
        if act["sneak"]:
            speed *= SNEAK_FACTOR
        yaw = math.radians(self.yaw)
        wish = np.array([-math.sin(yaw) * ahead - math.cos(yaw) * strafe, 0.0,
                         math.cos(yaw) * ahead - math.sin(yaw) * strafe])
        norm = math.hypot(wish[0], wish[2])
        if norm > 0:
            wish *= speed / norm
        if self.on_ground:
            self.velocity[[0, 2]] = wish[[0, 2]]
            if act["jump"]:
                self.velocity[1] = JUMP_VELOCITY
        else:
            self.velocity[[0, 2]] = self.velocity[[0, 2]] * (1 - AIR_CONTROL) + wish[[0, 2]] * AIR_CONTROL
        landed = False
        for axis in (1, 0, 2):
            blocked = self._move_axis(axis, self.velocity[axis])
            if blocked:
                if axis == 1 and self.velocity[1] < 0:
                    landed = True
                self.velocity[axis] = 0.0
        self.on_ground = landed
        self.velocity[1] = (self.velocity[1] - GRAVITY) * DRAG

    def _move_axis(self, axis: int, delta: float) -> bool:
        """Move along one axis in sub-steps of at most 0.45 blocks; return True if a block stopped us."""
        steps = max(1, int(math.ceil(abs(delta) / 0.45)))
        for _ in range(steps):
            candidate = self.position.copy()
            candidate[axis] += delta / steps
            if not self._collides(candidate):
                self.position = candidate
                continue
            self.position[axis] = self._snap(axis, candidate[axis], delta)
            return True
        return False

    @staticmethod
    def _snap(axis: int, coord: float, delta: float) -> float:
        """Position touching the face of the block we ran into along ``axis``."""
        if axis == 1:
            if delta < 0:
                return math.floor(coord) + 1.0 + EPS
            return math.floor(coord + PLAYER_HEIGHT) - PLAYER_HEIGHT - EPS
        if delta > 0:
            return math.floor(coord + HALF_WIDTH) - HALF_WIDTH - EPS
        return math.floor(coord - HALF_WIDTH) + 1.0 + HALF_WIDTH + EPS

    def _collides(self, feet: np.ndarray) -> bool:
        x, y, z = feet
        for bx in range(math.floor(x - HALF_WIDTH), math.floor(x + HALF_WIDTH - EPS) + 1):
            for by in range(math.floor(y), math.floor(y + PLAYER_HEIGHT - EPS) + 1):
                for bz in range(math.floor(z - HALF_WIDTH), math.floor(z + HALF_WIDTH - EPS) + 1):
                    if self.world.block_at(bx, by, bz) != AIR:
                        return True
        return False

    def _attack(self, attacking: bool) -> None:
        target = self.target_block() if attacking else None
        if target is None:
            self._mining, self._mining_ticks = None, 0
            return
        if target != self._mining:
            self._mining, self._mining_ticks = target, 0
        self._mining_ticks += 1
        block = BLOCKS[self.world.block_at(*target)]
        if block.break_ticks is None or self._mining_ticks < block.break_ticks:
            return
        x, y, z = target
        self.world.blocks[x % self.world.size, y, z % self.world.size] = AIR
        self._mining, self._mining_ticks = None, 0
        if block.drop is not None:
            self.inventory[block.drop] += 1
            if block.drop in LOG_ITEMS:
                self.logs += 1


def _first_solid(world: World, origin: np.ndarray, direction: np.ndarray, reach: float):
    """Voxel DDA along one ray; first non-air block within ``reach`` (unwrapped integer coords) or ``None``."""
    cell = [math.floor(c) for c in origin]
    step, t_max, t_delta = [0, 0, 0], [math.inf] * 3, [math.inf] * 3
    for a in range(3):
        if direction[a] > 0:
            step[a], t_max[a] = 1, (cell[a] + 1 - origin[a]) / direction[a]
        elif direction[a] < 0:
            step[a], t_max[a] = -1, (cell[a] - origin[a]) / direction[a]
        if direction[a] != 0:
            t_delta[a] = abs(1.0 / direction[a])
    while True:
        a = min(range(3), key=lambda i: t_max[i])
        if t_max[a] > reach:
            return None
        cell[a] += step[a]
        t_max[a] += t_delta[a]
        if world.block_at(*cell) != AIR:
            return tuple(cell)

