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
``life_stats``/``location_stats`` are what Java's ``buildLifeStats``/``buildPositionStats``/``buildBiomeStats``/
``buildWeatherStats`` send (``scripts/mcp_patch.diff``), read as MineRL's handlers read them: ``yaw`` is
``player.rotationYaw``, which accumulates past +-180 as the agent turns (pitch is clamped to +-90);
``is_raining``/``can_see_sky`` are JSON booleans (declared int); keys Java never sends (``biome_rainfall``: Java
sends ``biome_downfall``; ``biome_id``, ``sun_brightness``, ``sky_light_level``) take the handlers' defaults.
A seed outside Java's ``long`` range is dropped by ``Long.parseLong`` on the Java side (random world).
Each reset draws the GUI scale, gamma, FOV and cursor size from numpy's global RNG, as ``EnvSpec.reset`` does.
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
    """The Java side's parse of a step command (``EnvServer``'s ``constructKeyboardState``/``constructMouseState``):
    ``{key: 1 or 0, "camera": [pitch, yaw]}``; a ValueError is an exception there, which kills the connection."""
    pressed = {}
    for line in command.splitlines():
        parts = line.strip().split(" ")
        key, values = parts[0], parts[1:]
        if key == "camera":
            if len(values) < 2:  # splitAction[2]: ArrayIndexOutOfBoundsException
                raise ValueError(f"ArrayIndexOutOfBoundsException: camera needs 2 numbers, got {values}")
            pressed[key] = [float(values[0]), float(values[1])]  # Double.parseDouble
        elif values:
            if not _JAVA_INT.match(values[0]):
                raise ValueError(f'NumberFormatException: For input string: "{values[0]}"')
            pressed[key] = 1 if int(values[0]) == 1 else 0  # Integer.parseInt; only 1 presses
    return pressed


# Defaults of MineRL's life/location handlers for keys missing from Java's JSON (``default_if_missing``).
LIFE_DEFAULTS = {"air": 300, "food": 20, "is_alive": 1, "life": 20, "saturation": 5.0, "score": 0, "xp": 0}
LOCATION_DEFAULTS = {"biome_id": 0, "biome_rainfall": 0.5, "biome_temperature": 0.5, "can_see_sky": 1,
                     "is_raining": 0, "light_level": 15, "pitch": 0.0, "sea_level": 63, "sky_light_level": 0.71,
                     "sun_brightness": 0.94, "xpos": 0.0, "yaw": 0.0, "ypos": 0.0, "zpos": 0.0}
JAVA_LONG = (-2**63, 2**63 - 1)


def _from_json(sent, defaults):
    """``KeymapTranslationHandler.walk_dict``: ``np.array`` of what Java sent, else of the handler's default."""
    return {key: np.array(sent[key] if key in sent else default) for key, default in defaults.items()}


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
        self._pitch = 0.0
        self._yaw = 0.0

    def seed(self, seed=None, seed_spaces=True):
        assert isinstance(seed, int) or seed is None, "Seed must be an int!"
        self._seed = seed
        EVENTS["seeds"].append(seed)

    def reset(self):
        try:
            self._setup_instances()
            if not self.instances[0].alive():
                raise ConnectionRefusedError("[Errno 111] Connection refused")
            self.task.reset()
            EVENTS["missions"] += 1
            seed = self._seed
            if seed is not None and not JAVA_LONG[0] <= seed <= JAVA_LONG[1]:
                seed = None  # Java: Long.parseLong throws, "Received invalid seed", a random world
            self._world_seed = seed if seed is not None else int(np.random.randint(2**31))
            self.done = False
            self._step = 0
            self._inventory = {}
            self._stats = {}
            self._pitch = 0.0
            self._yaw = 0.0
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
        pitch, yaw = pressed.get("camera", (0.0, 0.0))
        self._pitch = min(90.0, max(-90.0, self._pitch + pitch))  # Minecraft clamps pitch; yaw accumulates
        self._yaw += yaw
        obs, monitors = self._observation(), self._monitors()
        if self._step == knob("server_fail_at_step"):
            # the <StepServer> send failed: MineRL logs it and marks itself done, but this step's answer is the
            # normal one (done=False, no "error"); the next step raises RuntimeError
            self.done = True
        return obs, 0.0, False, monitors

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
            if knob("extreme_stats"):
                obs["equipped_items"]["mainhand"] = {"type": "netherite_pickaxe", "damage": np.array(2031),
                                                     "maxDamage": np.array(2031)}
        if "life_stats" in spaces:
            sent = {"life": 20.0, "score": 0, "food": 20, "saturation": 5.0, "xp": 5000 if knob("extreme_stats") else 0,
                    "is_alive": True, "air": 300, "name": "agent"}
            obs["life_stats"] = _from_json(sent, LIFE_DEFAULTS)
        if "location_stats" in spaces:
            obs["location_stats"] = self._location()
        if "mine_block" in spaces:  # a stat Java has not sent is MineRL's float default
            obs["mine_block"] = {block: np.array(self._stats[block]) if block in self._stats else np.zeros(())
                                 for block in spaces["mine_block"].spaces}
        return obs

    def _location(self):
        sent = {"xpos": 0.5 + self._step, "ypos": 64.0, "zpos": 0.5, "pitch": self._pitch, "yaw": self._yaw,
                "biome_name": "desert" if knob("extreme_stats") else "plains",
                "biome_temperature": 2.0 if knob("extreme_stats") else 0.8, "biome_downfall": 0.4, "sea_level": 63,
                "light_level": 15, "is_raining": False, "can_see_sky": True}
        return _from_json(sent, LOCATION_DEFAULTS)

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
