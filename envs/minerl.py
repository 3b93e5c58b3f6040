"""Gymnasium adapter over MineRL 1.0 (old gym API), with VPT's settings and MineRL's quirks absorbed.

``minerl`` is imported only when an env is made; without it (or with a gym MineRL cannot import under),
:class:`vpt_envs.MineRLNotInstalledError` explains what to install. What the adapter does on top of MineRL:

* Gymnasium API: ``reset(seed=...) -> (obs, info)`` (the seed becomes ``env.seed(int(seed))`` before MineRL's
  ``reset()``, which consumes it; MineRL asserts a Python ``int``, and seeds above 2**63 - 1, which Java would
  drop for a random world, raise ``ValueError``), ``step -> (obs, reward, terminated, truncated,
  info)``, gymnasium spaces.
* Observations are members of the observation space: MineRL builds them from JSON, so stats Java has not sent
  yet arrive as float64 zeros where MineRL's space says int64, and some location/biome values as float64 where it
  says float32. The stats groups are declared float64 here (a float64 Box holds both kinds, at no cost per
  step), every other value is cast to its declared dtype, and ``pov`` (a vertically flipped view with negative
  strides) is copied to a contiguous array. Two declared bounds do not hold in the game: ``location_stats.yaw``
  (Minecraft's unwrapped ``rotationYaw``) is wrapped into [-180, 180), and ``life_stats.air`` (down to -20 while
  drowning) is declared from -20. So ``observation_space.contains(obs)`` holds and Gymnasium's env checker stays
  on. ``info`` is MineRL's, unchanged.
* Actions: missing keys are filled with no-ops, every one of the 24 keys is sent (BASALT raises ``KeyError``
  without ``ESC``), buttons are sent as ``int`` (Java parses them with ``Integer.parseInt``: ``1.0`` or ``True``
  kill the connection).
* Crashes: MineRL reports a dead socket as ``done=True`` with ``info["error"]`` and a *random* observation. The
  adapter closes the env and raises :class:`vpt_envs.EnvCrashed` instead of ending the episode normally; the same
  for exceptions from ``step``/``reset`` and for a ``reset()`` that exceeds ``launch_timeout``. ``reset()`` after a
  crash relaunches Minecraft.
* Launch timeouts: MineRL's launch waits on Minecraft's output with no timeout, and the new instance is already in
  MineRL's ``InstanceManager`` pool, where ``env.close()`` does not see it. When ``reset()`` times out, the adapter
  closes every pool instance that appeared during that reset (and the env's own), until the abandoned reset thread
  has ended, so no Minecraft process outlives the crash.
* Time limits: applied once, by Gymnasium's ``TimeLimit`` (``gymnasium.make(..., max_episode_steps=N)`` or this
  module's :func:`make`). MineRL's own timeouts in ObtainDiamondShovel/BASALT (which say ``done``) are reported as
  ``truncated``. ObtainDiamondShovel's wrapper never resets its step counter (all episodes on one env share 18000
  steps); the adapter resets it each episode.
* Long runs: ``close()`` always releases Minecraft (errors are logged, never raised), ``recycle_every=N`` starts
  a fresh Minecraft process every N episodes (MineRL leaks memory over hours).
* Validation like VPT's ``validate_env``: settings and action space are compared with what VPT needs, by value
  (MineRL's default ``resolution`` is a tuple where VPT writes a list), and every mismatch is listed.
"""
from __future__ import annotations

import importlib
import logging
import operator
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.wrappers import TimeLimit

from .actions import ACTION_KEYS, BUTTON_KEYS, CAMERA_LIMIT, action_space, fill_action
from .errors import EnvArgumentError, EnvCrashed, EnvStateError, EnvValidationError, MineRLNotInstalledError
from .rewards import VPT_RL_REWARDS, ItemReward, ItemRewardWrapper, TableLike

logger = logging.getLogger(__name__)

#: VPT's ``ENV_KWARGS`` (openai/Video-Pre-Training ``run_agent.py``): the settings its models were trained with.
VPT_ENV_KWARGS: dict[str, Any] = {
    "fov_range": [70, 70], "frameskip": 1, "gamma_range": [2, 2], "guiscale_range": [1, 1],
    "resolution": [640, 360], "cursor_size_range": [16.0, 16.0],
}


@dataclass(frozen=True)
class MineRLEnvInfo:
    """How ``vpt_envs`` builds one MineRL 1.0 id.

    Attributes:
        spec_module, spec_class: where MineRL defines the EnvSpec class.
        spec_kwargs: constructor kwargs for the spec (VPT's settings for HumanSurvival; the others fix their own).
        time_limit: default ``max_episode_steps`` (20 steps = 1 s of game time).
        item_rewards: default reward table (:class:`vpt_envs.rewards.ItemRewardWrapper`), ``None``: MineRL's reward.
        time_limit_source: where ``time_limit`` comes from.
    """

    spec_module: str
    spec_class: str
    time_limit: int
    time_limit_source: str
    spec_kwargs: Mapping[str, Any] = field(default_factory=dict)
    item_rewards: Optional[Mapping[str, ItemReward]] = None


_SPECS = "minerl.herobraine.env_specs"
#: Every MineRL 1.0 id ``vpt_envs`` registers (as ``vpt/<id>``): spec, time limit and default reward in one place.
MINERL_ENVS: dict[str, MineRLEnvInfo] = {
    "MineRLHumanSurvival-v0": MineRLEnvInfo(
        f"{_SPECS}.human_survival_specs", "HumanSurvival", 12_000,
        "VPT's RL fine-tuning episodes (10 min at 20 Hz; protocol vpt-rl); MineRL sets no limit",
        spec_kwargs=VPT_ENV_KWARGS, item_rewards=VPT_RL_REWARDS),
    "MineRLObtainDiamondShovel-v0": MineRLEnvInfo(
        f"{_SPECS}.obtain_specs", "ObtainDiamondShovelEnvSpec", 18_000, "MineRL's own (15 min)"),
    "MineRLBasaltFindCave-v0": MineRLEnvInfo(
        f"{_SPECS}.basalt_specs", "FindCaveEnvSpec", 3_600, "MineRL's own (3 min)"),
    "MineRLBasaltMakeWaterfall-v0": MineRLEnvInfo(
        f"{_SPECS}.basalt_specs", "MakeWaterfallEnvSpec", 6_000, "MineRL's own (5 min)"),
    "MineRLBasaltCreateVillageAnimalPen-v0": MineRLEnvInfo(
        f"{_SPECS}.basalt_specs", "PenAnimalsVillageEnvSpec", 6_000, "MineRL's own (5 min)"),
    "MineRLBasaltBuildVillageHouse-v0": MineRLEnvInfo(
        f"{_SPECS}.basalt_specs", "VillageMakeHouseEnvSpec", 14_400, "MineRL's own (12 min)"),
}
_DEFAULT: Any = object()
#: The largest seed Minecraft takes: Java parses it with ``Long.parseLong`` and ignores (random world) any other.
JAVA_LONG_MAX = 2**63 - 1


def import_minerl():
    """Import ``minerl`` or raise :class:`MineRLNotInstalledError` saying what to install.

    MineRL 1.0 under gym >= 0.24 fails with ``AttributeError`` (its registration uses an API gym removed), not
    ``ImportError``; that case gets the "install gym<=0.23.1" message.
    """
    try:
        return importlib.import_module("minerl")
    except ImportError as error:
        raise MineRLNotInstalledError(error) from None
    except AttributeError as error:
        gym_version = getattr(sys.modules.get("gym"), "__version__", None)
        raise MineRLNotInstalledError(error, gym_version=gym_version) from None


# ------------------------------------------------------------------------------------------------ validation
def _as_value(value: Any) -> Any:
    """Normalise containers for comparison: lists/tuples/arrays -> tuples of floats."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(_as_value(v) for v in value)
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return float(value)
    return value


def validation_errors(env: Any, required: Mapping[str, Any] = VPT_ENV_KWARGS) -> list[str]:
    """List every way an (old-gym) MineRL env differs from what VPT needs; empty if it matches.

    Checks ``env.task.<setting>`` against ``required`` (``frameskip`` is skipped: MineRL swallows it) and the
    action space: the 24 keys, ``Discrete(2)`` buttons and a ``Box(-180, 180, (2,))`` camera.
    """
    problems: list[str] = []
    task = getattr(env, "task", None)
    for name, wanted in required.items():
        if name == "frameskip":
            continue
        if task is None or not hasattr(task, name):
            problems.append(f"env.task has no setting {name!r} (VPT needs {wanted!r})")
        elif _as_value(getattr(task, name)) != _as_value(wanted):
            problems.append(f"{name} is {getattr(task, name)!r}, VPT needs {wanted!r}")
    subspaces = getattr(getattr(env, "action_space", None), "spaces", None)
    if not isinstance(subspaces, Mapping):
        return problems + ["action_space is not a Dict space"]
    missing, extra = sorted(set(ACTION_KEYS) - set(subspaces)), sorted(set(subspaces) - set(ACTION_KEYS))
    if missing:
        problems.append(f"action keys missing: {missing}")
    if extra:
        problems.append(f"unexpected action keys: {extra}")
    for key in BUTTON_KEYS:
        if key in subspaces and getattr(subspaces[key], "n", None) != 2:
            problems.append(f"action {key!r} is {subspaces[key]!r}, VPT needs Discrete(2)")
    camera = subspaces.get("camera")
    if camera is not None:
        shape = tuple(getattr(camera, "shape", ()) or ())
        low, high = np.asarray(getattr(camera, "low", np.nan)), np.asarray(getattr(camera, "high", np.nan))
        if shape != (2,) or not (np.all(low == -CAMERA_LIMIT) and np.all(high == CAMERA_LIMIT)):
            problems.append(f"action 'camera' is {camera!r}, VPT needs Box(-180, 180, (2,))")
    return problems


def validate_env(env: Any, required: Mapping[str, Any] = VPT_ENV_KWARGS) -> None:
    """Raise :class:`EnvValidationError` listing each mismatch found by :func:`validation_errors`."""
    problems = validation_errors(env, required)
    if problems:
        raise EnvValidationError(problems)


# ------------------------------------------------------------------------------------------------ spaces
def to_gymnasium_space(space: Any, box_dtype: Optional[np.dtype] = None) -> spaces.Space:
    """Convert a MineRL/old-gym space (Dict, Box, Discrete, Enum) to its gymnasium counterpart.

    ``box_dtype`` replaces the dtype of every Box (bounds are converted to it).
    """
    inner = getattr(space, "spaces", None)
    if isinstance(inner, Mapping):
        return spaces.Dict({key: to_gymnasium_space(sub, box_dtype) for key, sub in inner.items()})
    values = getattr(space, "values", None)
    if values is not None and not callable(values):  # MineRL Enum: observations are item-name strings
        names = [str(v) for v in values]
        charset = "".join(sorted(set("".join(names)))) or "a"
        return spaces.Text(max_length=max(1, max(len(n) for n in names)), min_length=0, charset=charset)
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    if hasattr(space, "low") and hasattr(space, "high"):
        dtype = np.dtype(box_dtype if box_dtype is not None else getattr(space, "dtype", np.float32))
        shape = tuple(getattr(space, "shape", np.shape(space.low)))
        return spaces.Box(np.broadcast_to(np.asarray(space.low, dtype), shape),
                          np.broadcast_to(np.asarray(space.high, dtype), shape), shape=shape, dtype=dtype)
    raise EnvArgumentError(f"cannot convert space {space!r} ({type(space).__name__}) to a gymnasium space")


#: MineRL's statistics groups: thousands of counters per observation (about 7,000 in HumanSurvival), declared
#: int64 but sent as int64 or, for stats Java has not reported yet, float64 zeros.
STAT_GROUPS: frozenset[str] = frozenset({
    "use_item", "pickup", "break_item", "craft_item", "drop", "mine_block", "kill_entity", "entity_killed_by",
    "damage_dealt", "full_stats"})


#: Bounds MineRL declares that the values Java sends leave, widened here (key path -> (low, high)):
#: ``air`` is ``getAir()``, which counts down to -20 while the player drowns; ``biome_temperature`` is the biome's
#: base temperature, -0.5 (snowy taiga) .. 2.0 (desert, badlands, savanna 1.2), declared 0..1; ``xp`` is
#: ``experienceTotal``, unbounded, declared <= 1395; equipped ``damage``/``maxDamage`` reach 2031 (netherite
#: tools), declared <= 1562. (``yaw``, declared +-180, is ``player.rotationYaw``, which accumulates past +-180 as
#: the agent turns: :func:`wrap_yaw` brings it back instead.)
REAL_BOUNDS: dict[tuple[str, ...], tuple[float, float]] = {
    ("life_stats", "air"): (-20, 300),
    ("life_stats", "xp"): (0, 2**31 - 1),
    ("location_stats", "biome_temperature"): (-0.5, 2.0),
    **{("equipped_items", slot, key): (-1, 2031) for slot in ("mainhand", "offhand", "head", "chest", "legs", "feet")
       for key in ("damage", "maxDamage")},
}


def wrap_yaw(obs: Any) -> Any:
    """Wrap ``obs["location_stats"]["yaw"]`` into [-180, 180) degrees, in place (same direction, in the space).

    Java sends Minecraft's ``rotationYaw``, which is not wrapped (MineRL's own tests/env/test_turn.py compares
    yaw modulo 360), so after turning 240 degrees right MineRL reports 240 where it declares Box(-180, 180).
    """
    location = obs.get("location_stats") if isinstance(obs, Mapping) else None
    if isinstance(location, dict) and "yaw" in location:
        yaw = np.asarray(location["yaw"])
        location["yaw"] = np.asarray((yaw + 180.0) % 360.0 - 180.0, yaw.dtype)  # a 0-d array, like MineRL's
    return obs


def _with_bounds(space: spaces.Box, low: float, high: float) -> spaces.Box:
    return spaces.Box(np.full(space.shape, low, space.dtype), np.full(space.shape, high, space.dtype),
                      shape=space.shape, dtype=space.dtype)


def observation_space_of(raw_space: Any) -> spaces.Space:
    """The Gymnasium observation space of a MineRL env: MineRL's, with the :data:`STAT_GROUPS` declared float64
    and the :data:`REAL_BOUNDS` widened.

    MineRL sends each counter as int64 or float64 (see :data:`STAT_GROUPS`); a float64 Box holds both, so these
    values pass through untouched, and casting ~7,000 of them each step (several ms) is not needed.
    """
    inner = getattr(raw_space, "spaces", None)
    if not isinstance(inner, Mapping):
        return to_gymnasium_space(raw_space)
    groups = {key: to_gymnasium_space(sub, np.float64 if key in STAT_GROUPS else None) for key, sub in inner.items()}
    for path, (low, high) in REAL_BOUNDS.items():
        parent: Any = groups.get(path[0])  # the Dict holding the Box at the end of the path
        for key in path[1:-1]:
            parent = parent.spaces.get(key) if isinstance(parent, spaces.Dict) else None
        if isinstance(parent, spaces.Dict) and isinstance(parent.spaces.get(path[-1]), spaces.Box):
            parent.spaces[path[-1]] = _with_bounds(parent.spaces[path[-1]], low, high)
    return spaces.Dict(groups)


def conform_observation(obs: Any, space: spaces.Space, passthrough: frozenset[str] = STAT_GROUPS) -> Any:
    """Make a MineRL observation a member of its space (from :func:`observation_space_of`).

    MineRL builds observations from JSON, so values come with whatever dtype numpy infers (and defaults for what
    Java has not sent): some location/biome values are float64 where the space says float32, life stats may
    be int64 where it says bool. Such values are cast to the declared dtype (never clipped). Arrays that are not
    C-contiguous (``pov`` is a vertically flipped view) are copied, so ``torch.from_numpy`` and OpenCV take
    them. Top-level keys in ``passthrough`` (the stats, whose float64 space holds what MineRL sends) and keys
    without a space are returned unchanged.
    """
    if isinstance(space, spaces.Dict):
        if not isinstance(obs, Mapping):
            return obs
        inner = space.spaces
        return {key: value if key in passthrough or key not in inner else conform_observation(value, inner[key], ())
                for key, value in obs.items()}
    if isinstance(space, spaces.Box):
        array = np.asarray(obs)
        if array.dtype != space.dtype:
            array = array.astype(space.dtype)
        elif not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        return array
    if isinstance(space, spaces.Text):
        return str(obs)
    if isinstance(space, spaces.Discrete):
        return np.int64(obs)
    return obs


# ------------------------------------------------------------------------------------------------ launch timeouts
def minerl_instance_pool() -> list:
    """MineRL's ``InstanceManager._instance_pool`` (every Minecraft instance it started), or ``[]``."""
    malmo = sys.modules.get("minerl.env.malmo")
    pool = getattr(getattr(malmo, "InstanceManager", None), "_instance_pool", None)
    return pool if isinstance(pool, list) else []


class _Background:
    """Runs ``fn`` in a daemon thread, so the caller can stop waiting for it (and clean up after it)."""

    def __init__(self, fn: Callable[[], Any], name: str):
        self._result: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self._result["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._result["error"] = error

    def wait(self, timeout: Optional[float]) -> bool:
        """Wait up to ``timeout`` seconds; True if ``fn`` has finished."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def result(self) -> Any:
        if "error" in self._result:
            raise self._result["error"]
        return self._result["value"]


def _close_instance(instance: Any) -> bool:
    """Close one MineRL ``MinecraftInstance``; True if that worked.

    ``close()``, not ``kill()``: MineRL's ``kill()`` does nothing while an instance is still launching.
    """
    try:
        instance.close()
        return True
    except Exception:  # noqa: BLE001 - e.g. the process does not exist yet; the caller retries
        # Not %r: MineRL's MinecraftInstance.__repr__ itself fails before the process exists.
        logger.warning("closing Minecraft instance %s failed; will retry", _describe_instance(instance),
                       exc_info=True)
        return False


def _describe_instance(instance: Any) -> str:
    return f"{type(instance).__name__} at {id(instance):#x} (port {getattr(instance, '_target_port', '?')})"


def close_new_instances(pool_before: list, keep: Sequence[Any] = ()) -> list:
    """Close the instances in MineRL's pool that were not there before (and are not in ``keep``): what a failed or
    abandoned launch leaves in the pool, possibly with Minecraft running, where ``env.close()`` cannot see it.
    Returns the instances it closed (one whose process does not exist yet fails, for a later call)."""
    closed = []
    for instance in list(minerl_instance_pool()):
        if not _same(instance, pool_before) and not _same(instance, keep) and _close_instance(instance):
            closed.append(instance)
    return closed


def _same(item: Any, items: Sequence[Any]) -> bool:
    return any(item is other for other in items)


def release_abandoned_reset(call: _Background, raw: Any, pool_before: list, deadline_s: float,
                            poll_s: float = 0.2) -> bool:
    """Release what a timed-out MineRL ``reset()`` started: True if its thread ended by ``deadline_s``.

    Closes the raw env, then, until the reset thread has ended, every instance in MineRL's pool that was not
    there before the reset (a launch that has not yet created its process is caught on a later round). Closing
    an instance kills its Minecraft process, which ends the launch's blocking read, so the thread ends with an
    error instead of later sending a mission.
    """
    deadline = time.monotonic() + deadline_s
    closed: list = []
    for instance in list(getattr(raw, "instances", None) or []):  # the env's own, if the launch got that far
        if _close_instance(instance):
            closed.append(instance)
    try:
        raw.close()
    except Exception:  # noqa: BLE001
        logger.exception("error while closing the MineRL env of a timed-out reset")
    while True:
        closed += close_new_instances(pool_before, keep=closed)
        remaining = deadline - time.monotonic()
        if call.wait(max(0.0, min(poll_s, remaining))):
            close_new_instances(pool_before, keep=closed)  # started just before the thread ended
            return True
        if remaining <= 0:
            logger.error("the timed-out MineRL reset is still running after %g s; closed %d instance(s)",
                         deadline_s, len(closed))
            return False


# ------------------------------------------------------------------------------------------------ adapter
def _reset_wrapper_counters(env: Any) -> None:
    """Zero per-episode counters in MineRL's Python wrappers (ObtainDiamondShovelWrapper forgets to)."""
    seen = set()
    while env is not None and id(env) not in seen:
        seen.add(id(env))
        if "num_steps" in vars(env):
            env.num_steps = 0
        env = vars(env).get("env")


class MineRLEnv(gym.Env):
    """A MineRL 1.0 env behind the Gymnasium API. Build it with :func:`make` or ``gymnasium.make("vpt/...")``.

    It has no time limit of its own (``make`` and ``gymnasium.make`` add Gymnasium's ``TimeLimit``).

    Args:
        spec_factory: returns a MineRL EnvSpec; ``spec.make()`` is called for each (re)launch.
        launch_timeout: seconds ``reset()`` may take (the first one launches Minecraft); ``None``: no limit.
        recycle_every: close and relaunch Minecraft every N episodes (``None``: never).
        validate: check the env against VPT's settings (:func:`validate_env`) when it is built.
        render_mode: ``"rgb_array"`` to get the last ``pov`` from ``render()``.
        release_timeout: after a timed-out reset, how long to keep closing what it started (seconds).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, spec_factory: Callable[[], Any], launch_timeout: Optional[float] = 600.0,
                 recycle_every: Optional[int] = None, validate: bool = True, render_mode: Optional[str] = None,
                 release_timeout: float = 60.0):
        if render_mode not in (None, "rgb_array"):
            raise EnvArgumentError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if recycle_every is not None and recycle_every < 1:
            raise EnvArgumentError(f"recycle_every must be >= 1 or None, got {recycle_every}")
        if launch_timeout is not None and not launch_timeout > 0:
            raise EnvArgumentError(f"launch_timeout must be > 0 seconds or None, got {launch_timeout}")
        self._spec_factory = spec_factory
        self.launch_timeout = launch_timeout
        self.release_timeout = release_timeout
        self.recycle_every = recycle_every
        self.render_mode = render_mode
        self._validate = validate
        self._raw: Any = None
        self._build()
        self.action_space = action_space()
        self.observation_space = observation_space_of(self._raw.observation_space)
        self.task_timeout = getattr(self._raw.task, "max_episode_steps", None)
        self.episodes_since_launch = 0
        self.launches = 0
        self._elapsed = 0
        self._needs_reset = True
        self._last_pov: Optional[np.ndarray] = None
        self.minerl_id: Optional[str] = None  # the MINERL_ENVS id it was made from, set by make()

    @property
    def raw_env(self) -> Any:
        """The underlying MineRL (old gym) env, or ``None`` while released."""
        return self._raw

    def _build(self) -> None:
        spec = self._spec_factory()
        self._raw = spec.make()
        if self._validate:
            try:
                validate_env(self._raw)
            except EnvValidationError:
                self._release()
                raise

    def _release(self) -> None:
        raw, self._raw = self._raw, None
        if raw is None:
            return
        try:
            raw.close()
        except Exception:  # noqa: BLE001 - closing must never fail (e.g. NoSuchProcess on Windows)
            logger.exception("error while closing MineRL env; dropped it anyway")

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        if seed is not None:
            seed = operator.index(seed)  # numpy integers too; MineRL asserts a Python int
            if seed > JAVA_LONG_MAX:  # negative seeds: Gymnasium refuses them below
                raise EnvArgumentError(f"seed must be at most 2**63 - 1 (Minecraft's seed is a Java long; MineRL "
                                       f"would silently use a random world instead), got {seed}")
        super().reset(seed=seed)
        if self._raw is not None and self.recycle_every and self.episodes_since_launch >= self.recycle_every:
            logger.info("recycling MineRL env after %d episodes", self.episodes_since_launch)
            self._release()
        if self._raw is None:
            self._build()
            self.episodes_since_launch = 0
        if self.episodes_since_launch == 0:
            self.launches += 1
        _reset_wrapper_counters(self._raw)
        if seed is not None:
            self._raw.seed(seed)
        self._needs_reset = True
        try:
            obs = self._raw_reset()
        except Exception as error:  # noqa: BLE001
            self._release()
            raise EnvCrashed(f"reset failed: {error}") from error
        self.episodes_since_launch += 1
        self._elapsed = 0
        self._needs_reset = False
        return self._observe(obs), {}

    def _raw_reset(self) -> Any:
        """MineRL's ``reset()``, given up after ``launch_timeout`` (then everything it started is closed). If it
        raises, instances it added to MineRL's pool but not to the env (a failed launch) are closed too."""
        pool_before = list(minerl_instance_pool())
        try:
            if self.launch_timeout is None:
                return self._raw.reset()
            call = _Background(self._raw.reset, "minerl-reset")
            if call.wait(self.launch_timeout):
                return call.result()
        except Exception:
            close_new_instances(pool_before, keep=getattr(self._raw, "instances", None) or [])
            raise
        raw, self._raw = self._raw, None
        logger.error("MineRL reset did not finish within %g s; closing what it started", self.launch_timeout)
        ended = release_abandoned_reset(call, raw, pool_before, self.release_timeout)
        detail = "" if ended else f"; its thread was still running after {self.release_timeout:g} s more"
        raise TimeoutError(f"reset did not finish within {self.launch_timeout:g} s (Minecraft's launch or world "
                           f"creation hung); the Minecraft instances it started were closed{detail}")

    def step(self, action: Mapping[str, Any]):
        if self._needs_reset or self._raw is None:
            raise EnvStateError("call reset() before step() (the episode ended or the env crashed)")
        command = fill_action(action)
        try:
            obs, reward, done, info = self._raw.step(command)
        except Exception as error:  # noqa: BLE001
            self._crash(f"step raised {error!r}")
            raise EnvCrashed(f"step raised {error!r}", step=self._elapsed) from error
        info = dict(info or {})
        if "error" in info:  # the observation is a random sample: never let it count
            self._crash(str(info["error"]))
            raise EnvCrashed(str(info["error"]), info=info, step=self._elapsed)
        self._elapsed += 1
        timed_out = bool(done) and self.task_timeout is not None and self._elapsed >= self.task_timeout
        terminated, truncated = bool(done) and not timed_out, timed_out
        self._needs_reset = terminated or truncated
        return self._observe(obs), float(reward), terminated, truncated, info

    def _crash(self, reason: str) -> None:
        logger.error("MineRL env crashed at step %d: %s; releasing Minecraft", self._elapsed, reason)
        self._needs_reset = True
        self._release()

    def _observe(self, obs: Any) -> Any:
        obs = wrap_yaw(conform_observation(obs, self.observation_space))
        if isinstance(obs, Mapping) and "pov" in obs:
            self._last_pov = obs["pov"]
        return obs

    def render(self) -> Optional[np.ndarray]:
        if self.render_mode == "rgb_array" and self._last_pov is not None:
            return self._last_pov.copy()
        return None

    def close(self) -> None:
        """Release Minecraft. Safe to call repeatedly; never raises."""
        self._release()
        self._needs_reset = True
        super().close()


def _spec_factory(env_id_or_spec: Union[str, Any], spec_kwargs: Optional[Mapping[str, Any]]):
    """``(MineRL id or None, zero-argument callable returning a fresh EnvSpec)``."""
    if not isinstance(env_id_or_spec, str):
        if not callable(getattr(env_id_or_spec, "make", None)):
            raise EnvArgumentError(f"expected a MineRL env id or an EnvSpec with .make(), got {env_id_or_spec!r}")
        if spec_kwargs:
            raise EnvArgumentError("spec_kwargs only apply to env ids; configure a spec object when you build it")
        return getattr(env_id_or_spec, "name", None), lambda: env_id_or_spec
    env_id = env_id_or_spec.split("/", 1)[1] if env_id_or_spec.startswith("vpt/") else env_id_or_spec
    if env_id not in MINERL_ENVS:
        raise EnvArgumentError(f"unknown MineRL env id {env_id_or_spec!r}; known: {sorted(MINERL_ENVS)}")
    import_minerl()
    entry = MINERL_ENVS[env_id]
    spec_class = getattr(importlib.import_module(entry.spec_module), entry.spec_class)
    kwargs = {**entry.spec_kwargs, **(spec_kwargs or {})}
    return env_id, lambda: spec_class(**kwargs)


def make(env_id_or_spec: Union[str, Any], *, max_episode_steps: Optional[int] = _DEFAULT,
         item_rewards: Union[TableLike, bool, None] = _DEFAULT, launch_timeout: Optional[float] = 600.0,
         recycle_every: Optional[int] = None, validate: bool = True, render_mode: Optional[str] = None,
         spec_kwargs: Optional[Mapping[str, Any]] = None, release_timeout: float = 60.0) -> gym.Env:
    """Make a MineRL 1.0 env with the Gymnasium API (what ``gymnasium.make("vpt/<id>")`` builds too).

    Args:
        env_id_or_spec: a MineRL id from :data:`MINERL_ENVS` (``"MineRLHumanSurvival-v0"``, optionally with the
            ``vpt/`` prefix) or a MineRL EnvSpec object (e.g. ``HumanSurvival(**VPT_ENV_KWARGS)``; the defaults
            below then follow its ``name``).
        max_episode_steps: Gymnasium ``TimeLimit``; default: a spec object's own ``max_episode_steps``, else the
            id's ``time_limit`` in :data:`MINERL_ENVS`; ``None``: no limit.
        item_rewards: reward table for :class:`vpt_envs.rewards.ItemRewardWrapper`; default: the id's (VPT's RL
            reward :data:`vpt_envs.rewards.VPT_RL_REWARDS` for HumanSurvival, which pays nothing otherwise; none
            for the rest, which keep MineRL's reward); ``True``: VPT_RL_REWARDS; ``False``/``None``: no wrapper.
        launch_timeout, recycle_every, validate, render_mode, release_timeout: see :class:`MineRLEnv`.
        spec_kwargs: extra constructor kwargs for the spec of an id (override VPT's settings at your risk).
    """
    env = make_without_time_limit(
        env_id_or_spec, item_rewards=item_rewards, launch_timeout=launch_timeout, recycle_every=recycle_every,
        validate=validate, render_mode=render_mode, spec_kwargs=spec_kwargs, release_timeout=release_timeout)
    if max_episode_steps is _DEFAULT:
        entry = MINERL_ENVS.get(env.unwrapped.minerl_id or "")
        own = None if isinstance(env_id_or_spec, str) else getattr(env_id_or_spec, "max_episode_steps", None)
        max_episode_steps = own if own is not None else (entry.time_limit if entry else None)
    if max_episode_steps is not None:
        if max_episode_steps < 1:
            raise EnvArgumentError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        env = TimeLimit(env, max_episode_steps=max_episode_steps)
    return env


def make_without_time_limit(env_id_or_spec: Union[str, Any], *,
                            item_rewards: Union[TableLike, bool, None] = _DEFAULT,
                            spec_kwargs: Optional[Mapping[str, Any]] = None, **env_kwargs: Any) -> gym.Env:
    """:func:`make` minus the ``TimeLimit``: the entry point of the ``vpt/MineRL*`` ids (``gymnasium.make`` adds
    its own ``TimeLimit``, so the limit is applied once). ``env_kwargs`` go to :class:`MineRLEnv`."""
    env_id, factory = _spec_factory(env_id_or_spec, spec_kwargs)
    raw_env = MineRLEnv(factory, **env_kwargs)
    raw_env.minerl_id = env_id if env_id in MINERL_ENVS else None
    env: gym.Env = raw_env
    if item_rewards is _DEFAULT:
        entry = MINERL_ENVS.get(env_id or "")
        item_rewards = entry.item_rewards if entry else None
    if item_rewards is True:
        item_rewards = VPT_RL_REWARDS
    if item_rewards:
        env = ItemRewardWrapper(env, table=item_rewards)  # type: ignore[arg-type]
    return env
