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


class MineRLNotInstalledError(VPTError, DependencyNotInstalled, ImportError):
    """``minerl`` could not be imported; the message explains how to install MineRL 1.0."""

    def __init__(self, cause: Optional[BaseException] = None):
        detail = f"\n(import error: {cause})" if cause is not None else ""
        super().__init__(MINERL_INSTALL_HINT + detail)


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
