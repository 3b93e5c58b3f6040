"""Fake ``_SingleAgentEnv``: MineRL 1.0's old-gym env, with the Java side replaced by a small emulation.

Follows ``minerl/env/_multiagent.py`` on the paths the adapter uses: ``seed()`` asserts a Python int and is
consumed by the next reset; ``reset()`` launches an instance through ``InstanceManager`` (a real child process,
see ``malmo.py``) the first time and sends a mission each time; ``step()`` formats the action like MineRL's
handlers (``str`` of each value, arrays flattened), and the emulated Java side parses buttons with
``Integer.parseInt`` semantics (``1.0``/``True`` throw: the connection dies) and presses only the value 1. A dead
connection gives MineRL's answer: a random observation, reward 0, ``done=True``, ``info={"error": ...}``; the
next ``step()`` raises ``RuntimeError``. Observations are built as MineRL's handlers build them from Java's JSON:
``pov`` is a vertically flipped view (negative strides), ``inventory`` is int32 with ``air`` always 0, stats
Java has not sent are float64 zeros (declared int64), biome rainfall/temperature are float64 (declared float32).
``info`` is ``{"isGuiOpen", "location_stats"}`` for HumanSurvival and ``{}`` for envs without monitors.
Knobs and records: ``minerl.env.fake_control`` (re-exported here as ``FAKE``, ``EVENTS``).
"""
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minerl.env.fake_control import EVENTS, FAKE, knob  # noqa: F401 - re-exported for tests
from minerl.env.malmo import InstanceManager

_JAVA_INT = re.compile(r"^[+-]?[0-9]+$")


def _to_hero(value):
    """How MineRL's action handlers turn a value into text (``minerl/herobraine/hero/handlers/agent/action.py``)."""
    if isinstance(value, np.ndarray):
        return " ".join(str(v) for v in value.flatten().tolist())
    if hasattr(value, "__iter__") and not isinstance(value, str):
        return " ".join(str(v) for v in value)
    return str(value)


def _java_parse(command):
    """The Java side's parse of a step command: ``{key: 1 or 0, "camera": [pitch, yaw]}``; ValueError kills it."""
    pressed = {}
    for line in command.splitlines():
        key, _, text = line.partition(" ")
        if key == "camera":
            pressed[key] = [float(part) for part in text.split()]  # Double.parseDouble
        elif _JAVA_INT.match(text.strip()):
            pressed[key] = 1 if int(text) == 1 else 0  # Integer.parseInt; only 1 presses
        else:
            raise ValueError(f'NumberFormatException: For input string: "{text}"')
    return pressed


def _default_inventory_fn(step, pressed, inventory):
    if pressed.get("attack") == 1:
        inventory["oak_log"] = inventory.get("oak_log", 0) + 1


class _SingleAgentEnv:
    metadata = {"render.modes": ["human"]}

    def __init__(self, env_spec, instances=None, is_fault_tolerant=True, verbose=False,
                 refresh_instances_every=None):
        self.task = env_spec
        self.instances = list(instances) if instances is not None else []
        self.observation_space = env_spec.observation_space
        self.action_space = env_spec.action_space
        self._seed = None
        self.done = True
        self._already_closed = False
        self._world_seed = 0
        self._step = 0
        self._inventory = {}
        self._stats = {}

    def seed(self, seed=None, seed_spaces=True):
        assert isinstance(seed, int) or seed is None, "Seed must be an int!"
        self._seed = seed
        EVENTS["seeds"].append(seed)

    def reset(self):
        try:
            self._setup_instances()
            if not self.instances[0].alive():
                raise ConnectionRefusedError("[Errno 111] Connection refused")
            EVENTS["missions"] += 1
            self._world_seed = self._seed if self._seed is not None else int(np.random.randint(2**31))
            self.done = False
            self._step = 0
            self._inventory = {}
            self._stats = {}
            return self._observation()
        finally:
            self._seed = None

    def _setup_instances(self):
        missing = 1 - len(self.instances)
        if missing > 0:
            with ThreadPoolExecutor(max_workers=missing) as pool:
                futures = [pool.submit(self._get_new_instance) for _ in range(missing)]
            self.instances.extend(f.result() for f in futures)

    def _get_new_instance(self):
        instance = InstanceManager.get_instance(os.getpid())
        instance.launch()
        instance.had_to_clean = False
        return instance

    def step(self, action):
        if self.done:
            raise RuntimeError("Attempted to step an environment server with done=True")
        EVENTS["actions"].append(dict(action))
        command = "\n".join(f"{key} {_to_hero(action[key])}" for key in self.action_space.spaces if key in action)
        EVENTS["commands"].append(command)
        self._step += 1
        try:
            pressed = _java_parse(command)
            if self._step == knob("fail_at_step") or not self.instances[0].alive():
                raise ConnectionResetError("socket closed")
        except (ValueError, ConnectionError):
            # Java closed the socket; MineRL logs it and answers with a random observation
            self.done = True
            return self.observation_space.sample(), 0, self.done, {"error": "Connection timed out!"}
        (knob("inventory_fn") or _default_inventory_fn)(self._step, pressed, self._inventory)
        if pressed.get("attack") == 1:
            self._stats["dirt"] = self._stats.get("dirt", 0) + 1
        return self._observation(), 0.0, False, self._monitors()

    def _observation(self):
        spaces = self.observation_space.spaces
        width, height = self.task.resolution
        rng = np.random.default_rng([self._world_seed, self._step])
        received = np.frombuffer(rng.bytes(height * width * 3), dtype=np.uint8)
        obs = {"pov": received.reshape(height, width, 3)[::-1, :, :]}
        if "inventory" in spaces:
            inventory = {}
            for item in spaces["inventory"].spaces:
                value = np.zeros((), np.int32)  # space.no_op(), then += quantity of each stack Java sent
                value += 0 if item == "air" else self._inventory.get(item, 0)
                inventory[item] = value
            obs["inventory"] = inventory
        if "equipped_items" in spaces:
            obs["equipped_items"] = {slot: {"type": "air", "damage": np.array(0), "maxDamage": np.array(0)}
                                     for slot in spaces["equipped_items"].spaces}
        if "life_stats" in spaces:
            obs["life_stats"] = {"is_alive": np.array(True), "life": np.array(20.0), "food": np.array(20),
                                 "xp": np.array(0)}
        if "location_stats" in spaces:
            obs["location_stats"] = self._location()
        if "mine_block" in spaces:  # a stat Java has not sent is MineRL's float default
            obs["mine_block"] = {block: np.array(self._stats[block]) if block in self._stats else np.zeros(())
                                 for block in spaces["mine_block"].spaces}
        return obs

    def _location(self):
        return {"xpos": np.array(0.5 + self._step), "yaw": np.array(0.0), "biome_id": np.array(1),
                "biome_rainfall": np.array(0.4), "biome_temperature": np.array(0.8)}

    def _monitors(self):
        if not self.task.create_monitors():
            return {}
        return {"isGuiOpen": False, "location_stats": self._location()}

    def close(self):
        EVENTS["closes"] += 1
        if not self._already_closed:
            for instance in self.instances:
                if instance.running:
                    instance.kill()
            self._already_closed = True
        if knob("close_raises"):
            raise RuntimeError("NoSuchProcess")
