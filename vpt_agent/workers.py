"""Environment workers for evaluation: one env per subprocess (local) or per Ray actor (ray).

A worker owns one Gymnasium env and runs whole episodes on request: ``reset(seed)`` then
``step(action)`` until the episode ends. It tracks the episode's return, length, env time and
item counts itself, so only the ``pov`` frame travels back to the driver each step.

Every failure of a worker (the env raised, the process or actor died, or no reply came within the
timeout) surfaces on the driver as :class:`EnvCrash`; the driver then kills the worker and starts a
new one. This module never imports torch (nor does ``vpt_agent/__init__``, which is lazy), and local
workers run it as ``python -m vpt_agent.workers``, so worker processes stay light.
"""
from __future__ import annotations

import importlib
import os
import sys
import logging
import multiprocessing
import multiprocessing.connection
import signal
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Optional, Tuple

import numpy as np

from .errors import VPTError

logger = logging.getLogger(__name__)

# Keys of the info dict in which an env may report per-item counts (first one present wins).
ITEM_INFO_KEYS = ("items", "item_counts")


class EnvCrash(VPTError):
    """An env worker failed: its env raised, its process/actor died, or it hung past the timeout."""


@dataclass(frozen=True)
class EnvSpec:
    """What a worker needs to build its env: a Gymnasium id (``module:id`` allowed) and kwargs."""

    env_id: str
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    max_steps: Optional[int] = None
    obs_keys: Tuple[str, ...] = ("pov",)


def import_env_modules(env_id: str) -> None:
    """Import ``vpt_envs`` (registers the ``vpt/*`` ids) when present, and the module of a ``module:id``."""
    try:
        importlib.import_module("vpt_envs")
    except ModuleNotFoundError as err:
        if err.name != "vpt_envs":
            raise
    if ":" in env_id:
        importlib.import_module(env_id.split(":", 1)[0])


def make_env(spec: EnvSpec):
    """Build the env of ``spec`` with ``gymnasium.make``."""
    import gymnasium

    import_env_modules(spec.env_id)
    return gymnasium.make(spec.env_id, **spec.env_kwargs)


def _merge_counts(into: Dict[str, int], counts: Any) -> None:
    """Keep, per item, the largest count seen in the episode (nonzero items only)."""
    if not isinstance(counts, dict):
        return
    for name, value in counts.items():
        try:
            count = int(np.asarray(value).item())
        except (TypeError, ValueError):
            continue
        if count > 0 and count > into.get(name, 0):
            into[name] = count


class EnvRunner:
    """Runs episodes of one env in the current process (the body of a local or Ray worker)."""

    def __init__(self, spec: EnvSpec):
        self.spec = spec
        self.env = None
        self._reset_episode()

    def _reset_episode(self) -> None:
        self.episode_return = 0.0
        self.length = 0
        self.env_time = 0.0
        self.info_items: Dict[str, int] = {}
        self.info_reports_items = False
        self.inventory_items: Dict[str, int] = {}

    def _obs(self, obs: Dict[str, Any]) -> Dict[str, Any]:
        if "inventory" in obs:
            _merge_counts(self.inventory_items, obs["inventory"])
        return {key: obs[key] for key in self.spec.obs_keys if key in obs}

    def _note_info(self, info: Dict[str, Any]) -> None:
        if info.get("error"):
            raise EnvCrash(f"env reported an error: {info['error']}")
        for key in ITEM_INFO_KEYS:
            if key in info:
                self.info_reports_items = True
                _merge_counts(self.info_items, info[key])
                break

    def reset(self, seed: int) -> Dict[str, Any]:
        """Start an episode with ``seed``; builds the env on first use. Returns the observation."""
        if self.env is None:
            self.env = make_env(self.spec)
        self._reset_episode()
        start = time.perf_counter()
        obs, info = self.env.reset(seed=int(seed))
        self.env_time += time.perf_counter() - start
        self._note_info(info)
        return self._obs(obs)

    def step(self, action: Dict[str, Any]) -> Tuple[Dict[str, Any], float, bool, bool, Optional[dict]]:
        """One env step. Returns (obs, reward, terminated, truncated, episode summary at the end or None)."""
        start = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.env_time += time.perf_counter() - start
        self._note_info(info)
        reward = float(reward)
        self.episode_return += reward
        self.length += 1
        if self.spec.max_steps is not None and self.length >= self.spec.max_steps:
            truncated = True
        done = bool(terminated) or bool(truncated)
        return self._obs(obs), reward, bool(terminated), bool(truncated), self.summary() if done else None

    def summary(self) -> Dict[str, Any]:
        """Return, length, env time and item counts of the current episode."""
        if self.info_reports_items:
            items, source = self.info_items, "info"
        else:
            items, source = self.inventory_items, "inventory"
        result: Dict[str, Any] = {"return": self.episode_return, "length": self.length,
                                  "env_time_s": self.env_time}
        if items or self.info_reports_items:
            result["items"] = dict(sorted(items.items()))
            result["items_source"] = source
        return result

    def close(self) -> None:
        """Close the env (idempotent)."""
        if self.env is not None:
            env, self.env = self.env, None
            env.close()

    def ping(self) -> bool:
        """Liveness check (used by the Ray backend)."""
        return True


# ----------------------------------------------------------------------------- local subprocesses
#
# A local worker runs this very file as a script (``python .../workers.py FD``) rather than importing
# it through the ``vpt_agent`` package, so the worker process never imports torch (the package's
# ``__init__`` does): start-up is a fraction of a second and memory stays small. Requests and replies
# are pickled plain Python/numpy objects over a socket pair (``multiprocessing.connection``).

def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent(parent_pid: int) -> None:
    """Get SIGTERM when the driver dies, even while stuck in an env call (Linux; best effort)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the driver died before we got here
        raise SystemExit(0)


def _worker_main(conn, parent_pid: int) -> None:
    """Worker process loop: build the runner from the first message, then serve requests."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when workers stop
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a kill still closes the env (e.g. Minecraft)
    _die_with_parent(parent_pid)
    try:
        spec_fields = conn.recv()
    except (EOFError, OSError):
        return
    runner = EnvRunner(EnvSpec(**spec_fields))
    try:
        while True:
            try:
                command, argument = conn.recv()
            except (EOFError, OSError):
                return  # driver gone
            try:
                if command == "close":
                    runner.close()
                    conn.send(("ok", None))
                    return
                result = getattr(runner, command)(argument)
                conn.send(("ok", result))
            except Exception as err:  # report any env failure to the driver
                conn.send(("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}"))
    finally:
        try:
            runner.close()
        except Exception:  # the env may be broken; the process is going away anyway
            pass


def _child_python_path() -> str:
    """The driver's import path for a worker: ``''`` (the current directory) made absolute."""
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    paths += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join(dict.fromkeys(paths))


class LocalWorker:
    """One env in a child process, driven over a socket pair with per-request timeouts."""

    def __init__(self, spec: EnvSpec, name: str = "env-worker"):
        self.name = name
        self._conn, child = multiprocessing.Pipe(duplex=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = _child_python_path()
        try:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(child.fileno()),
                                             str(os.getpid())],
                                            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            child.close()  # the driver must not hold the child's end, or it would never see EOF
        self._conn.send(asdict(spec))
        self._deadline: Optional[float] = None
        self._timeout = 0.0

    def submit(self, command: str, argument: Any, timeout: float) -> None:
        """Send a request (``reset`` / ``step``); its reply must come within ``timeout`` seconds."""
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        try:
            self._conn.send((command, argument))
        except (BrokenPipeError, EOFError, OSError) as err:
            raise EnvCrash(f"worker process died ({self._exit_text()}): {err}") from None

    def poll(self) -> bool:
        """True when :meth:`result` would not block: a reply (or EOF) is there or the deadline passed."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        try:
            return self._conn.poll(0)
        except (EOFError, OSError):
            return True

    def result(self) -> Any:
        """Wait for the reply of the last request; raises :class:`EnvCrash` on error, death or hang."""
        remaining = max(0.0, (self._deadline or time.monotonic()) - time.monotonic())
        try:
            ready = self._conn.poll(remaining)
        except (EOFError, OSError):
            ready = True
        if not ready:
            self.kill()
            raise EnvCrash(f"env hung: no reply within {self._timeout:g}s (worker killed)")
        try:
            status, payload = self._conn.recv()
        except (EOFError, OSError):
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise EnvCrash(f"worker process died ({self._exit_text()})") from None
        if status == "error":
            raise EnvCrash(payload.strip())
        return payload

    def _exit_text(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code}"

    def close(self, timeout: float = 10.0) -> None:
        """Ask the worker to close its env and exit; kill it if it does not within ``timeout``."""
        if self.process.poll() is None:
            try:
                self._conn.send(("close", None))
                if self._conn.poll(timeout):
                    self._conn.recv()
            except (BrokenPipeError, EOFError, OSError):
                pass
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        """Terminate the process now (SIGTERM, then SIGKILL after 3 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=3)
        self._conn.close()


# ----------------------------------------------------------------------------- ray actors

class RayWorker:
    """One env in a Ray actor; requests are actor method calls, replies are awaited with a timeout."""

    def __init__(self, spec: EnvSpec, name: str = "env-worker", num_cpus: float = 1.0):
        import ray

        actor_class = ray.remote(EnvRunner)
        self._ray = ray
        self.actor = actor_class.options(num_cpus=num_cpus, max_restarts=0,
                                         name=None).remote(spec)
        self._ref = None
        self._deadline: Optional[float] = None
        self._timeout = 0.0
        self.name = name

    def submit(self, command: str, argument: Any, timeout: float) -> None:
        """Call ``command`` on the actor; its reply must come within ``timeout`` seconds."""
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout
        self._ref = getattr(self.actor, command).remote(argument)

    def poll(self) -> bool:
        """True when :meth:`result` would not block: the reply is there or the deadline passed."""
        if self._deadline is not None and time.monotonic() >= self._deadline:
            return True
        ready, _ = self._ray.wait([self._ref], timeout=0)
        return bool(ready)

    def result(self) -> Any:
        """Wait for the reply; raises :class:`EnvCrash` when the call failed, the actor died or hung."""
        ray = self._ray
        from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

        remaining = max(0.001, (self._deadline or time.monotonic()) - time.monotonic())
        try:
            return ray.get(self._ref, timeout=remaining)
        except GetTimeoutError:
            self.kill()
            raise EnvCrash(f"env hung: no reply within {self._timeout:g}s (actor killed)") from None
        except RayActorError as err:
            raise EnvCrash(f"env actor died: {str(err).splitlines()[0]}") from None
        except RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            raise EnvCrash(f"{type(cause).__name__}: {cause}") from None
        except RayError as err:
            raise EnvCrash(f"ray error: {type(err).__name__}: {err}") from None

    def close(self, timeout: float = 10.0) -> None:
        """Close the env in the actor, then kill the actor."""
        try:
            self._ray.get(self.actor.close.remote(), timeout=timeout)
        except Exception:  # dead or hung actor: killing it below is all that is left to do
            pass
        self.kill()

    def kill(self) -> None:
        """Kill the actor now."""
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # already dead
            pass


def ray_runtime_env(extra_paths=()) -> Dict[str, Any]:
    """A Ray runtime_env that lets workers import this package (and ``vpt_envs``) from this checkout."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [package_root, os.getcwd(), *extra_paths]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


if __name__ == "__main__":  # a LocalWorker's process: ``python -m vpt_agent.workers FD PARENT_PID``
    _worker_main(multiprocessing.connection.Connection(int(sys.argv[1])), int(sys.argv[2]))
