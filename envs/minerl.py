"""Gymnasium adapter over MineRL 1.0 (old gym API), with VPT's settings and MineRL's quirks absorbed.

``minerl`` is imported only when an env is made; without it, :class:`vpt_envs.MineRLNotInstalledError` explains how
to install it. What the adapter does on top of MineRL:

* Gymnasium API: ``reset(seed=...) -> (obs, info)`` (the seed becomes ``env.seed(seed)`` before MineRL's
  ``reset()``, which consumes it), ``step -> (obs, reward, terminated, truncated, info)``, gymnasium spaces.
* Actions: missing keys are filled with no-ops, every one of the 24 keys is sent (BASALT raises ``KeyError``
  without ``ESC``), buttons are sent as ``int`` (Java parses integers; ``1.0`` kills the connection).
* Crashes: MineRL reports a dead socket as ``done=True`` with ``info["error"]`` and a *random* observation. The
  adapter closes the env and raises :class:`vpt_envs.EnvCrashed` instead of ending the episode normally; the same
  for exceptions from ``step``/``reset`` and for a launch that exceeds ``launch_timeout``. ``reset()`` after a
  crash relaunches Minecraft.
* Time limits: ``max_episode_steps`` truncates (HumanSurvival has none of its own). MineRL's own timeouts in
  ObtainDiamondShovel/BASALT (which say ``done``) are reported as ``truncated``. ObtainDiamondShovel's wrapper
  never resets its step counter (all episodes on one env share 18000 steps); the adapter resets it each episode.
* Long runs: ``close()`` always releases Minecraft (errors are logged, never raised), ``recycle_every=N`` starts
  a fresh Minecraft process every N episodes (MineRL leaks memory over hours).
* Validation like VPT's ``validate_env``: settings and action space are compared with what VPT needs, by value
  (MineRL's default ``resolution`` is a tuple where VPT writes a list), and every mismatch is listed.
"""
from __future__ import annotations

import importlib
import logging
import threading
from typing import Any, Callable, Mapping, Optional, Union

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .actions import ACTION_KEYS, BUTTON_KEYS, CAMERA_LIMIT, action_space, fill_action
from .errors import EnvCrashed, EnvValidationError, MineRLNotInstalledError
from .rewards import ItemRewardWrapper, TableLike, VPT_DIAMOND_PICKAXE_TABLE

logger = logging.getLogger(__name__)

#: VPT's ``ENV_KWARGS`` (openai/Video-Pre-Training ``run_agent.py``): the settings its models were trained with.
VPT_ENV_KWARGS: dict[str, Any] = {
    "fov_range": [70, 70], "frameskip": 1, "gamma_range": [2, 2], "guiscale_range": [1, 1],
    "resolution": [640, 360], "cursor_size_range": [16.0, 16.0],
}

_SPECS = "minerl.herobraine.env_specs"
#: MineRL 1.0 ids -> (module, spec class, constructor kwargs).
MINERL_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "MineRLHumanSurvival-v0": (f"{_SPECS}.human_survival_specs", "HumanSurvival", VPT_ENV_KWARGS),
    "MineRLObtainDiamondShovel-v0": (f"{_SPECS}.obtain_specs", "ObtainDiamondShovelEnvSpec", {}),
    "MineRLBasaltFindCave-v0": (f"{_SPECS}.basalt_specs", "FindCaveEnvSpec", {}),
    "MineRLBasaltMakeWaterfall-v0": (f"{_SPECS}.basalt_specs", "MakeWaterfallEnvSpec", {}),
    "MineRLBasaltCreateVillageAnimalPen-v0": (f"{_SPECS}.basalt_specs", "PenAnimalsVillageEnvSpec", {}),
    "MineRLBasaltBuildVillageHouse-v0": (f"{_SPECS}.basalt_specs", "VillageMakeHouseEnvSpec", {}),
}
_DEFAULT: Any = object()


def import_minerl():
    """Import ``minerl`` or raise :class:`MineRLNotInstalledError` with install instructions."""
    try:
        return importlib.import_module("minerl")
    except ImportError as error:
        raise MineRLNotInstalledError(error) from None


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
def to_gymnasium_space(space: Any) -> spaces.Space:
    """Convert a MineRL/old-gym space (Dict, Box, Discrete, Enum) to its gymnasium counterpart."""
    inner = getattr(space, "spaces", None)
    if isinstance(inner, Mapping):
        return spaces.Dict({key: to_gymnasium_space(sub) for key, sub in inner.items()})
    values = getattr(space, "values", None)
    if values is not None and not callable(values):  # MineRL Enum: observations are item-name strings
        names = [str(v) for v in values]
        charset = "".join(sorted(set("".join(names)))) or "a"
        return spaces.Text(max_length=max(1, max(len(n) for n in names)), min_length=0, charset=charset)
    if hasattr(space, "n"):
        return spaces.Discrete(int(space.n))
    if hasattr(space, "low") and hasattr(space, "high"):
        dtype = np.dtype(getattr(space, "dtype", np.float32))
        shape = tuple(getattr(space, "shape", np.shape(space.low)))
        return spaces.Box(np.broadcast_to(np.asarray(space.low, dtype), shape),
                          np.broadcast_to(np.asarray(space.high, dtype), shape), shape=shape, dtype=dtype)
    raise ValueError(f"cannot convert space {space!r} ({type(space).__name__}) to a gymnasium space")


# ------------------------------------------------------------------------------------------------ adapter
def _call_with_timeout(fn: Callable[[], Any], timeout: Optional[float], what: str) -> Any:
    """Run ``fn`` in a daemon thread and give up after ``timeout`` seconds (``None``: wait forever)."""
    if timeout is None:
        return fn()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            result["error"] = error

    worker = threading.Thread(target=target, name=f"minerl-{what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"{what} did not finish within {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["value"]


def _reset_wrapper_counters(env: Any) -> None:
    """Zero per-episode counters in MineRL's Python wrappers (ObtainDiamondShovelWrapper forgets to)."""
    seen = set()
    while env is not None and id(env) not in seen:
        seen.add(id(env))
        if "num_steps" in vars(env):
            env.num_steps = 0
        env = vars(env).get("env")


class MineRLEnv(gym.Env):
    """A MineRL 1.0 env behind the Gymnasium API. Build it with :func:`make`.

    Args:
        spec_factory: returns a MineRL EnvSpec; ``spec.make()`` is called for each (re)launch.
        max_episode_steps: truncate after this many steps (``None``: never).
        launch_timeout: seconds ``reset()`` may take (the first one launches Minecraft); ``None``: no limit.
        recycle_every: close and relaunch Minecraft every N episodes (``None``: never).
        validate: check the env against VPT's settings (:func:`validate_env`) when it is built.
        render_mode: ``"rgb_array"`` to get the last ``pov`` from ``render()``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(self, spec_factory: Callable[[], Any], max_episode_steps: Optional[int] = None,
                 launch_timeout: Optional[float] = 600.0, recycle_every: Optional[int] = None,
                 validate: bool = True, render_mode: Optional[str] = None):
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        for name, value in (("max_episode_steps", max_episode_steps), ("recycle_every", recycle_every)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")
        self._spec_factory = spec_factory
        self.max_episode_steps = max_episode_steps
        self.launch_timeout = launch_timeout
        self.recycle_every = recycle_every
        self.render_mode = render_mode
        self._validate = validate
        self._raw: Any = None
        self._build()
        self.action_space = action_space()
        self.observation_space = to_gymnasium_space(self._raw.observation_space)
        self.task_timeout = getattr(self._raw.task, "max_episode_steps", None)
        self.episodes_since_launch = 0
        self.launches = 0
        self._elapsed = 0
        self._needs_reset = True
        self._last_pov: Optional[np.ndarray] = None

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
            self._raw.seed(int(seed))
        try:
            obs = _call_with_timeout(self._raw.reset, self.launch_timeout, "reset")
        except Exception as error:  # noqa: BLE001
            self._release()
            raise EnvCrashed(f"reset failed: {error!r}") from error
        self.episodes_since_launch += 1
        self._elapsed = 0
        self._needs_reset = False
        return self._remember(obs), {}

    def step(self, action: Mapping[str, Any]):
        if self._needs_reset or self._raw is None:
            raise RuntimeError("call reset() before step() (the episode ended or the env crashed)")
        command = fill_action(action)
        try:
            obs, reward, done, info = self._raw.step(command)
        except Exception as error:  # noqa: BLE001
            self._crash(f"step raised {error!r}", {})
            raise EnvCrashed(f"step raised {error!r}", step=self._elapsed) from error
        info = dict(info or {})
        if "error" in info:
            self._crash(str(info["error"]), info)
            raise EnvCrashed(str(info["error"]), info=info, step=self._elapsed)
        self._elapsed += 1
        timed_out = self.task_timeout is not None and self._elapsed >= self.task_timeout
        terminated = bool(done) and not timed_out
        truncated = (bool(done) and timed_out) or (
            self.max_episode_steps is not None and self._elapsed >= self.max_episode_steps and not terminated)
        self._needs_reset = terminated or truncated
        return self._remember(obs), float(reward), terminated, truncated, info

    def _crash(self, reason: str, info: dict) -> None:
        logger.error("MineRL env crashed at step %d: %s; releasing Minecraft", self._elapsed, reason)
        self._needs_reset = True
        self._release()

    def _remember(self, obs: Any) -> Any:
        if isinstance(obs, Mapping) and "pov" in obs:
            self._last_pov = np.asarray(obs["pov"])
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
    if not isinstance(env_id_or_spec, str):
        if not callable(getattr(env_id_or_spec, "make", None)):
            raise ValueError(f"expected a MineRL env id or an EnvSpec with .make(), got {env_id_or_spec!r}")
        if spec_kwargs:
            raise ValueError("spec_kwargs only apply to env ids; configure a spec object when you build it")
        return env_id_or_spec.name if hasattr(env_id_or_spec, "name") else None, lambda: env_id_or_spec
    env_id = env_id_or_spec.split("/", 1)[1] if env_id_or_spec.startswith("vpt/") else env_id_or_spec
    if env_id not in MINERL_SPECS:
        raise ValueError(f"unknown MineRL env id {env_id_or_spec!r}; known: {sorted(MINERL_SPECS)}")
    import_minerl()
    module_name, class_name, defaults = MINERL_SPECS[env_id]
    spec_class = getattr(importlib.import_module(module_name), class_name)
    kwargs = {**defaults, **(spec_kwargs or {})}
    return env_id, lambda: spec_class(**kwargs)


def make(env_id_or_spec: Union[str, Any], *, max_episode_steps: Optional[int] = _DEFAULT,
         item_rewards: Union[TableLike, bool, None] = _DEFAULT, launch_timeout: Optional[float] = 600.0,
         recycle_every: Optional[int] = None, validate: bool = True, render_mode: Optional[str] = None,
         spec_kwargs: Optional[Mapping[str, Any]] = None) -> gym.Env:
    """Make a MineRL 1.0 env with the Gymnasium API.

    Args:
        env_id_or_spec: a MineRL id from :data:`MINERL_SPECS` (``"MineRLHumanSurvival-v0"``, optionally with the
            ``vpt/`` prefix) or a MineRL EnvSpec object (e.g. ``HumanSurvival(**VPT_ENV_KWARGS)``).
        max_episode_steps: time limit; default :data:`vpt_envs.MINERL_TIME_LIMITS` for known ids, else the spec's.
        item_rewards: reward table for :class:`vpt_envs.rewards.ItemRewardWrapper`; default: VPT's diamond-pickaxe
            table for HumanSurvival (which pays nothing otherwise), none for the rest; ``False`` disables.
        launch_timeout, recycle_every, validate, render_mode: see :class:`MineRLEnv`.
        spec_kwargs: extra constructor kwargs for the spec of an id (override VPT's settings at your risk).
    """
    from . import MINERL_TIME_LIMITS

    env_id, factory = _spec_factory(env_id_or_spec, spec_kwargs)
    if max_episode_steps is _DEFAULT:
        max_episode_steps = MINERL_TIME_LIMITS.get(env_id) if env_id in MINERL_TIME_LIMITS else getattr(
            env_id_or_spec, "max_episode_steps", None)
    env: gym.Env = MineRLEnv(factory, max_episode_steps=max_episode_steps, launch_timeout=launch_timeout,
                             recycle_every=recycle_every, validate=validate, render_mode=render_mode)
    if item_rewards is _DEFAULT:
        item_rewards = VPT_DIAMOND_PICKAXE_TABLE if env_id == "MineRLHumanSurvival-v0" else None
    if item_rewards is True:
        item_rewards = VPT_DIAMOND_PICKAXE_TABLE
    if item_rewards:
        env = ItemRewardWrapper(env, table=item_rewards)  # type: ignore[arg-type]
    return env
