"""Test-only Gymnasium envs for the evaluation runner (registered on import).

``evalenvs/Pov-v0``: deterministic toy env with MineRL's 24-key action space; the pov depends on the
seed and the step, the reward on the actions, the length is ``length + seed % length_jitter``, and
``info["items"]`` reports item counts.
``crash_mode`` makes chosen seeds fail at step ``crash_at``: ``raise`` (an exception), ``exit``
(the process dies with ``os._exit``), ``hang`` (sleeps past any step timeout), or a hostile reply:
``float_pov`` / ``no_pov`` / ``bad_shape`` / ``flat_pov`` (a malformed observation), ``nan_reward`` /
``inf_reward``. ``crash_plan`` ({"seed": mode}) gives each seed its own mode (and makes only those seeds
fail). ``hang_init`` makes the constructor sleep (a hanging env start-up). With ``action_log`` every
action the env receives is appended to that file as one JSON line (what was actually sent). With ``crash_dir``
the failure is transient: a seed fails ``crash_times`` times, then runs normally, like a flaky
Minecraft. Use as ``--env evalenvs:evalenvs/Pov-v0`` with ``tests/`` on the Python path.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import gymnasium
import numpy as np
from gymnasium import spaces

HOSTILE_MODES = ("float_pov", "no_pov", "bad_shape", "flat_pov", "nan_reward", "inf_reward")
BUTTONS = ("ESC", "attack", "back", "drop", "forward", *(f"hotbar.{i}" for i in range(1, 10)), "inventory",
           "jump", "left", "pickItem", "right", "sneak", "sprint", "swapHands", "use")


def minerl_action_space() -> spaces.Dict:
    """MineRL 1.0's 24-key action space: 23 Discrete(2) buttons and a Box camera [pitch, yaw]."""
    entries: Dict[str, spaces.Space] = {name: spaces.Discrete(2) for name in BUTTONS}
    entries["camera"] = spaces.Box(-180.0, 180.0, shape=(2,), dtype=np.float32)
    return spaces.Dict(entries)


class PovEnv(gymnasium.Env):
    """Deterministic given seed and actions; can crash on purpose (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 20, pov_shape: Sequence[int] = (72, 128), crash_mode: Optional[str] = None,
                 crash_at: int = 3, crash_seeds: Optional[Sequence[int]] = None, crash_dir: Optional[str] = None,
                 crash_times: int = 1, length_jitter: int = 1, step_delay: float = 0.0,
                 action_log: Optional[str] = None, hang_init: float = 0.0,
                 crash_plan: Optional[Dict[str, str]] = None):
        if hang_init:
            time.sleep(hang_init)
        self.action_log = action_log
        self.step_delay = step_delay
        self.base_length = length
        self.length_jitter = max(1, length_jitter)
        self.length = length
        self.pov_shape = tuple(pov_shape)
        self.crash_mode = crash_mode
        self.crash_plan = crash_plan
        self.default_crash_mode = crash_mode
        self.crash_at = crash_at
        self.crash_seeds = None if crash_seeds is None else set(crash_seeds)
        self.crash_dir = crash_dir
        self.crash_times = crash_times
        self.action_space = minerl_action_space()
        self.observation_space = spaces.Dict({
            "pov": spaces.Box(0, 255, shape=(*self.pov_shape, 3), dtype=np.uint8),
            "inventory": spaces.Dict({"oak_log": spaces.Box(0, 2304, shape=(), dtype=np.int64)}),
        })
        self._seed = 0
        self._t = 0
        self._logs = 0
        self._jumps = 0

    def _pov(self) -> np.ndarray:
        rng = np.random.default_rng(self._seed * 1000 + self._t)
        low = rng.integers(0, 256, size=(3, 4, 3), dtype=np.uint8)
        return np.kron(low, np.ones((self.pov_shape[0] // 3, self.pov_shape[1] // 4, 1), dtype=np.uint8))

    def _obs(self) -> Dict[str, Any]:
        return {"pov": self._pov(), "inventory": {"oak_log": np.array(self._logs)}}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        self._seed = int(seed or 0)
        if self.crash_plan is not None:
            self.crash_mode = self.crash_plan.get(str(self._seed))
        self.length = self.base_length + self._seed % self.length_jitter  # staggers episode ends across envs
        self._t = self._logs = self._jumps = 0
        return self._obs(), {}

    def _should_crash(self) -> bool:
        if self.crash_mode is None or self._t != self.crash_at:
            return False
        if self.crash_seeds is not None and self._seed not in self.crash_seeds:
            return False
        if self.crash_dir is None:
            return True
        marks = Path(self.crash_dir)
        marks.mkdir(parents=True, exist_ok=True)
        done = len(list(marks.glob(f"seed{self._seed}-*")))
        if done >= self.crash_times:
            return False
        (marks / f"seed{self._seed}-{done}").touch()
        return True

    def _crash(self) -> None:
        if self.crash_mode == "raise":
            raise RuntimeError(f"PovEnv crashed on purpose (seed {self._seed}, step {self._t})")
        if self.crash_mode == "exit":
            os._exit(3)
        if self.crash_mode == "hang":
            time.sleep(3600)
        raise ValueError(f"unknown crash_mode {self.crash_mode!r}")

    def _log_action(self, action: Dict[str, Any]) -> None:
        record = {key: (np.asarray(value).tolist() if key == "camera" else int(value)) for key, value in action.items()}
        with open(self.action_log, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"seed": self._seed, "t": self._t, "action": record}) + "\n")

    def step(self, action: Dict[str, Any]):
        if self.action_log:
            self._log_action(action)
        hostile = None
        if self._should_crash():
            if self.crash_mode not in HOSTILE_MODES:
                self._crash()
            hostile = self.crash_mode
        if self.step_delay:
            time.sleep(self.step_delay)  # a slow simulator, for tests that must interrupt a run midway
        self._t += 1
        attack, jump = int(action["attack"]), int(action["jump"])
        camera = np.asarray(action["camera"], dtype=np.float64)
        self._logs += attack
        self._jumps += jump
        reward = float(attack) + 0.5 * jump + float(np.abs(camera).sum()) / 100.0
        info = {"items": {"oak_log": self._logs, "jumps": self._jumps}}
        obs = self._obs()
        if hostile == "float_pov":
            obs["pov"] = obs["pov"].astype(np.float32) / 255.0
        elif hostile == "no_pov":
            del obs["pov"]
        elif hostile == "bad_shape":
            obs["pov"] = obs["pov"][: self.pov_shape[0] // 2]
        elif hostile == "flat_pov":
            obs["pov"] = obs["pov"][:, :, 0]
        elif hostile == "nan_reward":
            reward = float("nan")
        elif hostile == "inf_reward":
            reward = float("inf")
        return obs, reward, False, self._t >= self.length, info


gymnasium.register("evalenvs/Pov-v0", entry_point="evalenvs:PovEnv")
#: The id as ``--env`` takes it: ``module:id`` imports this module (which registers the id) first.
POV_ENV = "evalenvs:evalenvs/Pov-v0"
