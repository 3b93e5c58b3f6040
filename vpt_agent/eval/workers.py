"""Environment workers for evaluation: one env per subprocess (local) or per Ray actor (ray).

A worker owns one Gymnasium env and runs whole episodes on request: ``reset`` then ``step`` until the
episode ends. Each reply is a :class:`Transition` (the frame plus reward and done flags); at the end of an
episode it also carries the :class:`~vpt_agent.eval.records.EpisodeEnd` (env time, item counts), which only
the worker can know. Returns and lengths are counted by the driver (one ledger, in the rollout).

Frames are resized to the model's input in the worker (``EnvSpec.frame_size``), so a step moves 49 KB instead
of a 691 KB 360x640 frame, and the resizing runs in parallel in the K workers instead of on the driver. The full
frame travels only for episodes that need it (``ResetRequest.full_frames``, e.g. for ``--video``). Local workers
send arrays as raw bytes after a small pickled header (no pickled observation dicts).

Every failure of a worker (the env raised, the process or actor died, or no reply came within the timeout)
surfaces on the driver as :class:`WorkerFailed`; the driver then kills the worker and starts a new one. This
module never imports torch, and local workers start as ``python -m vpt_agent.eval.workers``, so worker
processes stay light.
"""
from __future__ import annotations

import importlib
import logging
import math
import multiprocessing
import multiprocessing.connection
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Dict, List, Optional, Protocol, Tuple

import numpy as np

from ..action_mapping import JointAction
from ..errors import VPTError
from .records import EpisodeEnd

logger = logging.getLogger(__name__)

# Keys of the info dict in which an env may report per-item counts (first one present wins).
ITEM_INFO_KEYS = ("items", "item_counts")
RESET, STEP, CLOSE = "reset", "step", "close"


class WorkerFailed(VPTError, RuntimeError):
    """An env worker failed: its env raised, its process/actor died, or it hung past the timeout."""


@dataclass(frozen=True)
class EnvSpec:
    """What a worker needs to build its env: a Gymnasium id (``module:id`` allowed), kwargs and time limit."""

    env_id: str
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    max_steps: Optional[int] = None  # passed to gymnasium.make as max_episode_steps (None: the env's own)
    frame_size: Optional[Tuple[int, int]] = None  # (h, w) the worker resizes frames to; None: full frames
    protocol: Optional[str] = None  # a vpt_envs.protocols name: build the env with its length and reward


@dataclass(frozen=True)
class ResetRequest:
    """Start an episode with ``seed``; ``full_frames``: also send the full-size frames of this episode."""

    seed: int
    full_frames: bool = False


@dataclass
class Transition:
    """A worker's reply to ``reset`` (reward 0, not done) or ``step``."""

    frame: np.ndarray  # the observation's ``pov``, resized to ``EnvSpec.frame_size`` when that is set
    full_frame: Optional[np.ndarray] = None  # the unresized ``pov`` when the reset asked for full frames
    reward: float = 0.0
    terminated: bool = False
    truncated: bool = False
    end: Optional[EpisodeEnd] = None  # set when the episode is over

    @property
    def done(self) -> bool:
        """Whether the episode ended with this transition."""
        return self.terminated or self.truncated

    @property
    def pov(self) -> np.ndarray:
        """The frame at the env's resolution when it was asked for, else the (resized) frame the policy saw."""
        return self.frame if self.full_frame is None else self.full_frame


class EnvWorker(Protocol):
    """A handle on one env in another process or actor: one outstanding request at a time."""

    def submit(self, command: str, argument: Any, timeout: float) -> None:
        """Send ``reset`` (a :class:`ResetRequest`) or ``step`` (an action); reply due within ``timeout`` s."""

    def poll(self) -> bool:
        """True when :meth:`result` would not block (a reply, a death, or the deadline passed)."""

    def result(self) -> Transition:
        """The reply to the last request; raises :class:`WorkerFailed` on error, death or hang."""

    def close(self, timeout: float = 10.0) -> None:
        """Close the env and stop the worker (killing it if it does not stop)."""

    def kill(self) -> None:
        """Stop the worker now."""


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
    """Build the env of ``spec`` with ``gymnasium.make``; the time limit is gymnasium's ``TimeLimit``.

    With ``spec.protocol`` the env is built by :meth:`vpt_envs.protocols.Protocol.make`, which adds the
    protocol's reward (``spec.env_kwargs`` and ``spec.max_steps`` still go to ``gymnasium.make``).
    """
    import gymnasium

    import_env_modules(spec.env_id)
    kwargs = dict(spec.env_kwargs)
    if spec.max_steps is not None:
        kwargs["max_episode_steps"] = spec.max_steps
    if spec.protocol is not None:
        from vpt_envs.protocols import get_protocol

        return get_protocol(spec.protocol).make(**kwargs)
    return gymnasium.make(spec.env_id, **kwargs)


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
        self.running = False
        self.full_frames = False
        self._new_episode()

    def _new_episode(self) -> None:
        self.pov_shape: Optional[Tuple[int, ...]] = None  # the first frame's: every frame of the episode has it
        self.env_time = 0.0
        self.info_items: Dict[str, int] = {}
        self.info_reports_items = False
        self.inventory_items: Dict[str, int] = {}

    def _transition(self, obs: Dict[str, Any], reward: float = 0.0, terminated: bool = False,
                    truncated: bool = False) -> Transition:
        # OpenCV (behind ..frames) is imported by the workers only, not by --help.
        from ..frames import check_pov, preprocess_pov

        if not math.isfinite(reward):
            raise ValueError(f"the env paid a non-finite reward ({reward!r})")
        # An env whose pov is not an RGB uint8 image (H, W, 3), the same shape all episode, is broken: the worker
        # raises, so the driver records that env's crash.
        pov = check_pov(obs)
        if self.pov_shape is not None and pov.shape != self.pov_shape:
            raise ValueError(f"obs['pov'] changed shape within the episode: {pov.shape}, first {self.pov_shape}")
        self.pov_shape = pov.shape
        if "inventory" in obs:
            _merge_counts(self.inventory_items, obs["inventory"])
        if self.spec.frame_size is None:
            frame = pov
        else:
            frame = preprocess_pov(obs, self.spec.frame_size)
        done = terminated or truncated
        return Transition(frame, pov if self.full_frames else None, reward, terminated, truncated,
                          self._episode_end() if done else None)

    def _note_info(self, info: Dict[str, Any]) -> None:
        if info.get("error"):
            raise RuntimeError(f"env reported an error: {info['error']}")
        for key in ITEM_INFO_KEYS:
            if key in info:
                self.info_reports_items = True
                _merge_counts(self.info_items, info[key])
                break

    def reset(self, request: ResetRequest) -> Transition:
        """Start an episode; builds the env on first use."""
        if self.env is None:
            self.env = make_env(self.spec)
        self._new_episode()
        start = time.perf_counter()
        obs, info = self.env.reset(seed=int(request.seed))
        self.env_time += time.perf_counter() - start
        self._note_info(info)
        self.running = True
        self.full_frames = request.full_frames
        return self._transition(obs)

    def step(self, action: Any) -> Transition:
        """One env step (a MineRL action dict, or a :class:`~vpt_agent.action_mapping.JointAction`); the reply
        carries the :class:`EpisodeEnd` when the episode is over."""
        if not self.running:
            from gymnasium.error import ResetNeeded

            raise ResetNeeded("step before reset, or after the episode ended")
        if isinstance(action, JointAction):
            action = action.to_env()
        start = time.perf_counter()
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.env_time += time.perf_counter() - start
        self._note_info(info)
        self.running = not (terminated or truncated)
        return self._transition(obs, float(reward), bool(terminated), bool(truncated))

    def _episode_end(self) -> EpisodeEnd:
        if self.info_reports_items:
            items, source = self.info_items, "info"
        else:
            items, source = self.inventory_items, "inventory"
        end: EpisodeEnd = {"env_time_s": self.env_time}
        if items or self.info_reports_items:
            end["items"] = dict(sorted(items.items()))
            end["items_source"] = source
        return end

    def close(self) -> None:
        """Close the env (idempotent)."""
        self.running = False
        if self.env is not None:
            env, self.env = self.env, None
            env.close()


# ----------------------------------------------------------------------------- local subprocesses
#
# A local worker is ``python -m vpt_agent.eval.workers FD PARENT_PID``: the package is lazy, so the worker never
# imports torch; start-up is a fraction of a second and memory stays small. Requests and replies travel over a
# socket pair (``multiprocessing.connection``): a reply is a small pickled header (status, the Transition without
# its arrays, their shapes and dtypes), then each array as raw bytes.

def _send_reply(conn, status: str, payload: Any) -> None:
    arrays: List[np.ndarray] = []
    if isinstance(payload, Transition):
        arrays = [np.ascontiguousarray(a) for a in (payload.frame, payload.full_frame) if a is not None]
        payload = replace(payload, frame=None, full_frame=None)
    conn.send((status, payload, [(a.shape, a.dtype.str) for a in arrays]))
    for array in arrays:
        conn.send_bytes(memoryview(array).cast("B"))  # 1-D bytes view: no copy, no pickle


def _receive_reply(conn) -> Tuple[str, Any]:
    status, payload, layouts = conn.recv()
    arrays = [np.frombuffer(conn.recv_bytes(), dtype=np.dtype(dtype)).reshape(shape) for shape, dtype in layouts]
    if isinstance(payload, Transition):
        payload.frame = arrays[0]
        payload.full_frame = arrays[1] if len(arrays) > 1 else None
    return status, payload


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
    import cv2

    cv2.setNumThreads(1)  # K workers resize in parallel already; OpenCV thread pools would oversubscribe the CPUs
    try:
        spec_fields = conn.recv()
    except (EOFError, OSError):
        return
    runner = EnvRunner(EnvSpec(**spec_fields))
    handlers = {RESET: runner.reset, STEP: runner.step}
    try:
        while True:
            try:
                command, argument = conn.recv()
            except (EOFError, OSError):
                return  # driver gone
            try:
                if command == CLOSE:
                    runner.close()
                    _send_reply(conn, "ok", None)
                    return
                reply = handlers[command](argument)
            except Exception as err:  # report any env failure to the driver
                _send_reply(conn, "error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=8)}")
                continue
            _send_reply(conn, "ok", reply)
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


class _Deadline:
    """The due time of the outstanding request."""

    def __init__(self) -> None:
        self.timeout = 0.0
        self.at: Optional[float] = None

    def start(self, timeout: float) -> None:
        self.timeout, self.at = timeout, time.monotonic() + timeout

    def passed(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at

    def remaining(self) -> float:
        return max(0.0, (self.at or time.monotonic()) - time.monotonic())


class LocalWorker:
    """One env in a child process, driven over a socket pair with per-request timeouts (an :class:`EnvWorker`)."""

    def __init__(self, spec: EnvSpec):
        self._conn, child = multiprocessing.Pipe(duplex=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = _child_python_path()
        try:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(child.fileno()), str(os.getpid())],
                                            pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, env=env)
        finally:
            child.close()  # the driver must not hold the child's end, or it would never see EOF
        self._conn.send(asdict(spec))
        self._deadline = _Deadline()
        # One poll object for the worker's life: asking "is a reply there?" is then one cheap syscall
        # (Connection.poll builds and tears down a selector on every call, ~20x the cost).
        self._poller = select.poll()
        self._poller.register(self._conn.fileno(), select.POLLIN)

    def fileno(self) -> int:
        """The driver's end of the socket pair (readable when a reply, or the worker's death, is there)."""
        return self._conn.fileno()

    def submit(self, command: str, argument: Any, timeout: float) -> None:
        self._deadline.start(timeout)
        try:
            self._conn.send((command, argument))
        except (BrokenPipeError, EOFError, OSError) as err:
            raise WorkerFailed(f"worker process died ({self._exit_text()}): {err}") from None

    def poll(self) -> bool:
        return self._deadline.passed() or self._readable(0.0)

    def _readable(self, timeout: float) -> bool:
        """Whether a reply (or EOF/error) is there within ``timeout`` seconds."""
        try:
            return bool(self._poller.poll(math.ceil(timeout * 1000)))
        except (OSError, ValueError):  # a closed connection: result() reports the death
            return True

    def result(self) -> Transition:
        ready = self._readable(self._deadline.remaining())
        if not ready:
            self.kill()
            raise WorkerFailed(f"env hung: no reply within {self._deadline.timeout:g}s (worker killed)")
        try:
            status, payload = _receive_reply(self._conn)
        except (EOFError, OSError):
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            raise WorkerFailed(f"worker process died ({self._exit_text()})") from None
        if status == "error":
            raise WorkerFailed(payload.strip())
        return payload

    def _exit_text(self) -> str:
        code = self.process.poll()
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by signal {-code}"
        return f"exit code {code}"

    def close(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            try:
                self._conn.send((CLOSE, None))
                if self._conn.poll(timeout):
                    _receive_reply(self._conn)
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

    def __init__(self, spec: EnvSpec, num_cpus: float = 1.0):
        import ray

        self._ray = ray
        self.actor = ray.remote(EnvRunner).options(num_cpus=num_cpus, max_restarts=0).remote(spec)
        self._ref = None
        self._deadline = _Deadline()

    def submit(self, command: str, argument: Any, timeout: float) -> None:
        self._deadline.start(timeout)
        self._ref = getattr(self.actor, command).remote(argument)

    def poll(self) -> bool:
        if self._deadline.passed():
            return True
        ready, _ = self._ray.wait([self._ref], timeout=0)
        return bool(ready)

    def result(self) -> Transition:
        from ray.exceptions import GetTimeoutError, RayActorError, RayError, RayTaskError

        try:
            return self._ray.get(self._ref, timeout=max(0.001, self._deadline.remaining()))
        except GetTimeoutError:
            self.kill()
            raise WorkerFailed(f"env hung: no reply within {self._deadline.timeout:g}s (actor killed)") from None
        except RayActorError as err:
            raise WorkerFailed(f"env actor died: {str(err).splitlines()[0]}") from None
        except RayTaskError as err:
            cause = err.cause if getattr(err, "cause", None) is not None else err
            raise WorkerFailed(f"{type(cause).__name__}: {cause}") from None
        except RayError as err:
            raise WorkerFailed(f"ray error: {type(err).__name__}: {err}") from None

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._ray.get(self.actor.close.remote(), timeout=timeout)
        except Exception:  # dead or hung actor: killing it below is all that is left to do
            pass
        self.kill()

    def kill(self) -> None:
        try:
            self._ray.kill(self.actor, no_restart=True)
        except Exception:  # already dead
            pass


def ray_runtime_env() -> Dict[str, Any]:
    """A Ray runtime_env that lets workers import this package (and ``vpt_envs``) from this checkout."""
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    paths = [package_root, os.getcwd()]
    existing = os.environ.get("PYTHONPATH")
    if existing:
        paths.append(existing)
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}


if __name__ == "__main__":  # a LocalWorker's process: ``python -m vpt_agent.eval.workers FD PARENT_PID``
    # Run the loop from the module's import name, so replies pickle as vpt_agent.eval.workers.Transition.
    from vpt_agent.eval.workers import _worker_main as _main

    _main(multiprocessing.connection.Connection(int(sys.argv[1])), int(sys.argv[2]))
