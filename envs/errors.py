"""Exceptions raised by the ``vpt_envs`` package (source folder ``envs/``)."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from gymnasium.error import DependencyNotInstalled

from vpt_agent.errors import VPTError

MINERL_INSTALL_HINT = (
    "MineRL 1.0 is not installed. It needs a full JDK 8 (a JRE is not enough) and is installed from GitHub "
    "(it builds Minecraft 1.16.5 at install time, which takes a while and needs network access):\n"
    "    # Debian/Ubuntu: sudo apt-get install openjdk-8-jdk   (check with: javac -version)\n"
    "    pip install 'gym<=0.23.1' git+https://github.com/minerllabs/minerl\n"
    "Headless machines also need an X server, e.g. run under `xvfb-run -a`. "
    "Without Minecraft, use the embedded env: gymnasium.make('vpt/VoxelTreechop-v0')."
)


MINERL_GYM_HINT = (
    "MineRL 1.0 is installed but `import minerl` failed with {cause!r}{gym}. MineRL 1.0 registers its envs "
    "through old gym's registry (`gym.envs.registry.env_specs`), which gym 0.24 removed, so it needs "
    "gym<=0.23.1:\n"
    "    pip install 'gym<=0.23.1'\n"
    "(vpt_envs itself uses gymnasium; the old `gym` package is only for MineRL.)"
)


class MineRLNotInstalledError(VPTError, DependencyNotInstalled, ImportError):
    """``minerl`` could not be imported; the message explains how to install MineRL 1.0.

    An ``AttributeError`` during ``import minerl`` is what MineRL 1.0 raises under gym >= 0.24: the message then
    says to install ``gym<=0.23.1`` (``gym_too_new`` is True).
    """

    def __init__(self, cause: Optional[BaseException] = None, gym_version: Optional[str] = None):
        self.gym_too_new = isinstance(cause, AttributeError)
        if self.gym_too_new:
            gym = f" (installed gym: {gym_version})" if gym_version else ""
            message = MINERL_GYM_HINT.format(cause=cause, gym=gym)
        else:
            message = MINERL_INSTALL_HINT + (f"\n(import error: {cause})" if cause is not None else "")
        super().__init__(message)


class EnvCrashed(VPTError, RuntimeError):
    """The simulator failed mid-episode (e.g. MineRL's socket to Minecraft timed out or Minecraft died).

    This is never a normal episode end: the observation that came with it is garbage (MineRL returns a random
    sample of the observation space), so the episode must be discarded or counted as a crash. The adapter has
    already closed the broken Minecraft process when this is raised; call ``reset()`` to relaunch and go on.

    Attributes:
        reason: the error text (MineRL's ``info["error"]`` or the exception message).
        info: the raw ``info`` dict MineRL returned, if any.
        step: the step index within the episode at which the crash happened.
    """

    def __init__(self, reason: str, info: Optional[dict[str, Any]] = None, step: Optional[int] = None):
        self.reason = reason
        self.info = dict(info or {})
        self.step = step
        where = f" at step {step}" if step is not None else ""
        super().__init__(f"environment crashed{where}: {reason}")


class EnvValidationError(VPTError, ValueError):
    """The environment's settings or action space differ from what VPT's models need.

    Attributes:
        mismatches: one human-readable line per difference.
    """

    def __init__(self, mismatches: Sequence[str]):
        self.mismatches = list(mismatches)
        lines = "\n".join(f"  - {m}" for m in self.mismatches)
        super().__init__(f"environment does not match VPT's requirements:\n{lines}")


class UnknownProtocolError(VPTError, ValueError):
    """An evaluation protocol name that :data:`vpt_envs.protocols.PROTOCOLS` does not hold."""

    def __init__(self, name: str, known: Sequence[str]):
        self.name = name
        self.known = list(known)
        super().__init__(f"unknown protocol {name!r}; known: {', '.join(self.known)}")


class EnvArgumentError(VPTError, ValueError):
    """A bad argument to an env, a wrapper or ``step``: an unknown action key, an out-of-range value, a setting."""


class EnvStateError(VPTError, RuntimeError):
    """An env used out of order: ``step()`` before ``reset()`` or after the episode ended."""
