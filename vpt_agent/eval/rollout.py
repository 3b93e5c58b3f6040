"""The evaluation loop: K env workers in G pipelined groups, batched policy forwards, crash retries.

:class:`Rollout` hands episode tasks (index, seed, attempt) to free workers, gathers each step's frames, calls
the policy once per group of envs (``first[i]`` marks env i's episode start so its recurrent memory is cleared),
sends the actions back, and reports every observation, step and finished or crashed episode to its listeners.
A crashed worker is killed and replaced, and its episode is queued again with the same seed until
``max_retries`` retries are used up.

Pipelining: the K workers are split into G groups, each with its own policy (own recurrent memory). The loop
visits the groups in turn: collect the group's step replies, run its forward, send its actions. While one group's
forward runs, the other groups' envs are stepping, so neither the policy nor the envs wait for each other as
they do in lock-step (G = 1). Each env's actions depend only on its own frames and memory, so with
deterministic actions the results are the same for any K and G.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence

import numpy as np

from ..errors import VPTError
from .records import CRASHED, TERMINATED, TRUNCATED, EpisodeRecord, EpisodeTask, episode_record
from .workers import RESET, STEP, EnvWorker, ResetRequest, Transition, WorkerFailed

logger = logging.getLogger(__name__)

Action = Dict[str, Any]


class Policy(Protocol):
    """``policy(frames, first)`` -> one action per frame; ``first[i]``: frame i starts an episode.

    ``frames`` is (B, H, W, 3) uint8 with B fixed per policy; row i always belongs to the same env slot.
    """

    def __call__(self, frames: np.ndarray, first: np.ndarray) -> List[Action]: ...


WorkerFactory = Callable[[int], EnvWorker]  # slot id -> a started worker


class RolloutListener(Protocol):
    """Receives what happens in a rollout; subclass it and override what you need (the bodies do nothing)."""

    def wants_full_frames(self, task: EpisodeTask) -> bool:
        """Whether this listener needs ``task``'s full-size frames (``Transition.full_frame``)."""
        return False

    def on_reset(self, task: EpisodeTask, obs: Transition) -> None:
        """The first observation of an episode attempt."""

    def on_step(self, task: EpisodeTask, action: Action, obs: Transition) -> None:
        """``action`` was taken in ``task``'s env, which answered ``obs``."""

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        """An attempt finished or crashed (``record["outcome"]``)."""


class RolloutAborted(VPTError, RuntimeError):
    """Every env keeps crashing (no episode finishes): a broken setup rather than bad luck."""


@dataclass
class RolloutStats:
    """Counters of one session, for throughput numbers."""

    env_steps: int = 0
    agent_frames: int = 0
    agent_time: float = 0.0
    forwards: int = 0
    start: float = 0.0
    first_forward: Optional[float] = None  # when the first forward began: worker start-up and first resets before
    group_sizes: Sequence[int] = ()

    def session(self) -> Dict[str, Any]:
        """Throughput of this session as a dict for the summary."""
        wall = time.perf_counter() - self.start if self.start else 0.0
        return {
            "wall_time_s": wall,
            "startup_s": self.first_forward - self.start if self.first_forward is not None else None,
            "env_steps": self.env_steps,
            "policy_forwards": self.forwards,
            "mean_batch": self.agent_frames / self.forwards if self.forwards else None,
            "pipeline_groups": len(self.group_sizes),
            "group_sizes": list(self.group_sizes),
            "agent_steps_per_s": self.agent_frames / self.agent_time if self.agent_time > 0 else None,
            "overall_steps_per_s": self.env_steps / wall if wall > 0 else None,
        }


class _Slot:
    """A worker, the episode it is running and that episode's ledger (return, length, start time)."""

    def __init__(self, slot_id: int, worker: EnvWorker):
        self.id = slot_id
        self.worker = worker
        self.task: Optional[EpisodeTask] = None
        self.phase: Optional[str] = None  # RESET / STEP while a request is outstanding
        self.obs: Optional[Transition] = None  # the observation awaiting an action
        self.action: Optional[Action] = None  # the action of the outstanding step
        self.first = False
        self.episode_return = 0.0
        self.length = 0
        self.started = 0.0

    def begin(self, task: EpisodeTask) -> None:
        self.task, self.obs, self.action, self.first = task, None, None, True
        self.episode_return, self.length = 0.0, 0
        self.started = time.perf_counter()

    def book(self, obs: Transition) -> None:
        """Add a step's reward to the ledger."""
        self.episode_return += obs.reward
        self.length += 1

    def record(self, outcome: str, **extra: Any) -> EpisodeRecord:
        return episode_record(self.task, outcome, self.episode_return, self.length,
                              time.perf_counter() - self.started, self.id, **extra)

    def clear(self) -> None:
        self.task, self.obs, self.action, self.phase = None, None, None, None

    @property
    def waiting(self) -> bool:
        return self.phase is not None

    @property
    def ready(self) -> bool:
        return self.task is not None and self.phase is None and self.obs is not None


def split_groups(num_envs: int, groups: int) -> List[range]:
    """Contiguous slot ranges of G nearly equal groups (the last ones one larger): 5, 2 -> [0:2], [2:5]."""
    groups = max(1, min(groups, num_envs))
    bounds = [num_envs * g // groups for g in range(groups + 1)]
    return [range(lo, hi) for lo, hi in zip(bounds, bounds[1:])]


class Rollout:
    """Runs a queue of episode tasks on K workers with batched policies, one per pipelined group.

    Args:
        policies: one per group (G = ``min(len(policies), num_envs)``; each has its own memory). Policy g is
            called with exactly its group's number of frames every time (idle workers get a padding copy with
            ``first=True``), so batch position i always belongs to the same worker.
        make_worker: ``make_worker(slot_id)`` -> a started :class:`~vpt_agent.eval.workers.EnvWorker`.
        tasks: episodes to run, in order.
        listeners: get every observation, step and episode end (log, progress bar, video).
    """

    def __init__(self, policies: Sequence[Policy], make_worker: WorkerFactory, num_envs: int,
                 tasks: Sequence[EpisodeTask], listeners: Sequence[RolloutListener] = (), *, max_retries: int,
                 step_timeout: float, reset_timeout: float):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not policies:
            raise ValueError("at least one policy is needed")
        self.groups = split_groups(num_envs, len(policies))
        self.policies = list(policies)[:len(self.groups)]
        self.make_worker = make_worker
        self.num_envs = num_envs
        self.queue: Deque[EpisodeTask] = deque(tasks)
        self.listeners = list(listeners)
        self.max_retries = max_retries
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout
        self.stats = RolloutStats(group_sizes=[len(group) for group in self.groups])
        self.slots: List[_Slot] = []
        self.crash_streak = 0  # crashes since the last finished episode
        self.max_crash_streak = max(5, 2 * num_envs + max_retries + 1)

    def run(self) -> RolloutStats:
        """Run until every task finished or gave up. Workers are always shut down on exit."""
        self.stats.start = time.perf_counter()
        try:
            self.slots = [_Slot(i, self.make_worker(i)) for i in range(self.num_envs)]
            while self.queue or any(slot.task is not None for slot in self.slots):
                acted = False
                for policy, group in zip(self.policies, self.groups):
                    members = [self.slots[i] for i in group]
                    self._advance(members)
                    ready = [slot for slot in members if slot.ready]
                    if ready:
                        self._act(policy, members, ready)
                        acted = True
                if not acted and any(slot.waiting for slot in self.slots):
                    time.sleep(0.002)  # only resets are outstanding: wait for the first to finish
        finally:
            self._shutdown()
        return self.stats

    # ------------------------------------------------------------------ phases of one step

    def _advance(self, members: List[_Slot]) -> None:
        """Start episodes on idle slots, collect the step replies of ``members`` and any finished resets.

        Step replies are awaited (they are quick); resets (which may launch Minecraft and take minutes) are only
        collected once they are done, so the other envs keep stepping meanwhile.
        """
        while True:
            for slot in self.slots:
                if slot.task is None and self.queue:
                    self._start_episode(slot, self.queue.popleft())
            for slot in members:
                if slot.phase == STEP:
                    self._collect(slot)
            for slot in self.slots:
                if slot.phase == RESET and slot.worker.poll():
                    self._collect(slot)
            if not (self.queue and any(slot.task is None for slot in self.slots)):
                return

    def _start_episode(self, slot: _Slot, task: EpisodeTask) -> None:
        slot.begin(task)
        logger.debug("slot %d: episode %d (seed %d, attempt %d)", slot.id, task.index, task.seed, task.attempt)
        full_frames = any(listener.wants_full_frames(task) for listener in self.listeners)
        self._submit(slot, RESET, ResetRequest(task.seed, full_frames), self.reset_timeout)

    def _submit(self, slot: _Slot, command: str, argument: Any, timeout: float) -> None:
        slot.phase = command
        try:
            slot.worker.submit(command, argument, timeout)
        except WorkerFailed as err:
            slot.phase = None
            self._crash(slot, err)

    def _collect(self, slot: _Slot) -> None:
        phase, slot.phase = slot.phase, None
        try:
            obs = slot.worker.result()
        except WorkerFailed as err:
            self._crash(slot, err)
            return
        if phase == RESET:
            slot.obs, slot.first = obs, True
            for listener in self.listeners:
                listener.on_reset(slot.task, obs)
            return
        slot.book(obs)
        self.stats.env_steps += 1
        for listener in self.listeners:
            listener.on_step(slot.task, slot.action, obs)
        if obs.done:
            self._finish(slot, obs)
        else:
            slot.obs = obs

    def _act(self, policy: Policy, members: List[_Slot], ready: List[_Slot]) -> None:
        """One forward for a group: its ready slots' frames, padding (``first=True``) for the others."""
        pad = ready[0].obs.frame
        frames = np.stack([slot.obs.frame if slot.ready else pad for slot in members])
        first = np.array([slot.first if slot.ready else True for slot in members])
        start = time.perf_counter()
        if self.stats.first_forward is None:
            self.stats.first_forward = start
        actions = policy(frames, first)
        self.stats.agent_time += time.perf_counter() - start
        self.stats.agent_frames += len(ready)
        self.stats.forwards += 1
        for position, slot in enumerate(members):
            if slot.ready:
                slot.first, slot.obs, slot.action = False, None, actions[position]
                self._submit(slot, STEP, slot.action, self.step_timeout)

    # ------------------------------------------------------------------ episode ends

    def _finish(self, slot: _Slot, obs: Transition) -> None:
        record = slot.record(TERMINATED if obs.terminated else TRUNCATED, end=obs.end)
        task = slot.task
        slot.clear()
        self.crash_streak = 0
        self._emit_end(task, record)

    def _crash(self, slot: _Slot, err: Exception) -> None:
        task = slot.task
        retry = task.attempt < self.max_retries
        first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
        record = slot.record(CRASHED, error=str(err), will_retry=retry)
        logger.warning("episode %d (seed %d, attempt %d) crashed on worker %d: %s%s", task.index, task.seed,
                       task.attempt, slot.id, first_line,
                       "; retrying with the same seed" if retry else "; retries exhausted")
        slot.clear()
        self._replace_worker(slot)
        if retry:
            self.queue.appendleft(task.retry())
        self._emit_end(task, record)
        self.crash_streak += 1
        if self.crash_streak >= self.max_crash_streak:
            raise RolloutAborted(f"{self.crash_streak} crashes in a row without a finished episode; "
                                 f"last error: {first_line}")

    def _emit_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        for listener in self.listeners:
            listener.on_episode_end(task, record)

    def _replace_worker(self, slot: _Slot) -> None:
        try:
            slot.worker.kill()
        except Exception as err:  # a broken worker must not stop the run
            logger.debug("killing worker %d failed: %s", slot.id, err)
        slot.worker = self.make_worker(slot.id)

    def _shutdown(self) -> None:
        for slot in self.slots:
            try:
                if slot.task is None and not slot.waiting:
                    slot.worker.close()
                else:
                    slot.worker.kill()
            except Exception as err:  # shutting down: log and go on with the others
                logger.debug("shutting down worker %d failed: %s", slot.id, err)
