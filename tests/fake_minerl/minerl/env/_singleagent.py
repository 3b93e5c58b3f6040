"""Fake ``_SingleAgentEnv``: old-gym API, no Minecraft.

``FAKE`` holds knobs tests may set (restored by the fixture); ``EVENTS`` records launches, closes and actions.
- ``reset_delay``: seconds reset() blocks (simulates a hanging launch).
- ``fail_at_step``: step index (1-based, per episode) at which the socket "times out".
- ``inventory_fn(step, action, inventory)``: mutates the inventory dict each step (default: +1 oak_log when
  attack is 1).
- ``close_raises``: close() raises after cleaning up (like psutil.NoSuchProcess on Windows).
"""
import time

import numpy as np

FAKE = {}
EVENTS = {"launches": 0, "closes": 0, "actions": [], "seeds": []}
DEFAULTS = {"reset_delay": 0.0, "fail_at_step": None, "inventory_fn": None, "close_raises": False}


def knob(name):
    return FAKE.get(name, DEFAULTS[name])


def _default_inventory_fn(step, action, inventory):
    if action.get("attack") == 1:
        inventory["oak_log"] = inventory.get("oak_log", 0) + 1


class _SingleAgentEnv:
    metadata = {"render.modes": ["human"]}

    def __init__(self, env_spec, **kwargs):
        self.task = env_spec
        self.observation_space = env_spec.observation_space
        self.action_space = env_spec.action_space
        self._seed = None
        self._launched = False
        self._done = True
        self._world_seed = 0
        self._step = 0

    def seed(self, seed=None):
        self._seed = seed  # consumed by the next reset only
        EVENTS["seeds"].append(seed)

    def reset(self):
        if not self._launched:
            EVENTS["launches"] += 1
            self._launched = True
        if knob("reset_delay"):
            time.sleep(knob("reset_delay"))
        self._world_seed = self._seed if self._seed is not None else np.random.randint(2**31)
        self._seed = None
        self._done = False
        self._step = 0
        self._inventory = {}
        return self._obs()

    def step(self, action):
        if self._done:
            raise RuntimeError("Expected `reset` after episode terminated, not `step`.")
        EVENTS["actions"].append(dict(action))
        self._step += 1
        buttons_ok = all("." not in str(value) for key, value in action.items() if key != "camera")
        if not buttons_ok or self._step == knob("fail_at_step"):
            # MineRL 1.0: socket error -> random observation, done, info["error"]
            self._done = True
            return self.observation_space.sample(), 0.0, True, {"error": "Connection timed out!"}
        (knob("inventory_fn") or _default_inventory_fn)(self._step, action, self._inventory)
        return self._obs(), 0.0, False, {"isGuiOpen": False}

    def _obs(self):
        obs = {}
        space = self.observation_space.spaces
        width, height = self.task.resolution
        rng = np.random.default_rng([self._world_seed, self._step])
        obs["pov"] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        if "inventory" in space:
            obs["inventory"] = {item: np.array(self._inventory.get(item, 0)) for item in space["inventory"].spaces}
        if "equipped_items" in space:
            obs["equipped_items"] = {"mainhand": {"type": "air", "damage": np.array(0), "maxDamage": np.array(0)}}
        return obs

    def close(self):
        EVENTS["closes"] += 1
        self._launched = False
        if knob("close_raises"):
            raise RuntimeError("NoSuchProcess")
