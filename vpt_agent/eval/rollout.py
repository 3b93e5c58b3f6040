"""The evaluation loop: K env workers in G pipelined groups, batched policy forwards, crash retries.

:class:`Rollout` hands episode tasks (index, seed, attempt) to free workers, gathers each step's frames, runs
the policy once per group of envs (``first[i]`` marks env i's episode start so its recurrent memory is cleared),
sends the actions back, and reports every observation, step and finished or crashed episode to its listeners.
A crashed worker is killed and replaced, and its episode is queued again with the same seed until
``max_retries`` retries are used up.

Pipelining: the K workers are split into G groups, each with its own policy (own recurrent memory). Nothing in
the loop blocks: it polls, and moves each group on as soon as it can::

    group waiting for its envs --(all of its step replies are in)--> submit(frames) --> forward on the device
        ^                                                                                   |
        +---------------- send each env its action <--(the forward is done: collect)-------+

While one group's forward runs on the GPU (on its agent's own CUDA stream, so forwards of several groups can
overlap too), the driver keeps collecting the other groups' replies and sending their actions. Each env's
actions depend only on its own frames and memory, so with deterministic actions the results are the same for
any K and G.
"""
from __future__ import annotations

import logging
import select
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Protocol, Sequence, Tuple

import numpy as np

from ..errors import VPTError
from .records import CRASHED, TERMINATED, TRUNCATED, EpisodeRecord, EpisodeTask, episode_record
from .workers import RESET, STEP, EnvWorker, ResetRequest, Transition, WorkerFailed

logger = logging.getLogger(__name__)

Action = Dict[str, Any]


class Pending(Protocol):
    """A policy step in progress."""

    def ready(self) -> bool:
        """Whether :meth:`result` would return without waiting."""

    def result(self) -> Sequence[Action]:
        """One action per frame (waits if needed)."""


class Policy(Protocol):
    """``policy.submit(frames, first)`` starts a step and returns its :class:`Pending` actions.

    ``frames`` is (B, H, W, 3) uint8 with B fixed per policy; row i always belongs to the same env slot;
    ``first[i]``: frame i starts an episode. A plain callable ``policy(frames, first) -> actions`` works too
    (:func:`as_policy`): its step is done when the call returns.
    """

    def submit(self, frames: np.ndarray, first: np.ndarray) -> Pending: ...


class _Done:
    """A finished step (what a plain callable policy returns)."""

    def __init__(self, actions: Sequence[Action]):
        self.actions = actions

    def ready(self) -> bool:
        return True

    def result(self) -> Sequence[Action]:
        return self.actions


class _CallPolicy:
    def __init__(self, fn: Callable[[np.ndarray, np.ndarray], Sequence[Action]]):
        self.fn = fn

    def submit(self, frames: np.ndarray, first: np.ndarray) -> Pending:
        return _Done(self.fn(frames, first))


def as_policy(policy: Any) -> Policy:
    """``policy`` if it has ``submit``, else a plain callable wrapped as a :class:`Policy`."""
    return policy if hasattr(policy, "submit") else _CallPolicy(policy)


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
    agent_time: float = 0.0  # time with at least one policy step in progress (overlapping steps count once)
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


ACT = "act"  # a slot's phase while its frame is in a policy step
STALL_WARNING_S = 60.0  # log a warning after this long without progress (and again every such interval)


class _Slot:
    """A worker, the episode it is running and that episode's ledger (return, length, start time)."""

    def __init__(self, slot_id: int, worker: EnvWorker):
        self.id = slot_id
        self.worker = worker
        self.task: Optional[EpisodeTask] = None
        self.phase: Optional[str] = None  # RESET / STEP while a worker request is outstanding, ACT in a policy step
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
        """A worker request is outstanding."""
        return self.phase in (RESET, STEP)

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
        self.policies = [as_policy(policy) for policy in list(policies)[:len(self.groups)]]
        # per group: the policy step in progress, the (batch position, slot) pairs it acts for, its sequence number
        self.inflight: List[Optional[Tuple[Pending, List[Tuple[int, _Slot]], int]]] = [None] * len(self.groups)
        self._submitted = 0  # policy steps submitted so far
        self._last_move = time.perf_counter()  # when the loop last made progress
        self._next_stall_warning = STALL_WARNING_S
        self._busy_since = 0.0  # when the policy last went from idle to busy
        self._poller = select.poll()  # the pipes of local workers with a request outstanding
        self._watched: Dict[int, int] = {}  # slot id -> its worker's fd in _poller
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
        self.stats.start = self._last_move = time.perf_counter()
        try:
            for i in range(self.num_envs):  # one by one: if a start fails, _shutdown closes those started
                self.slots.append(_Slot(i, self.make_worker(i)))
            while self.queue or any(slot.task is not None for slot in self.slots):
                moved = self._start_episodes()
                for g in range(len(self.groups)):
                    moved = self._advance_group(g) or moved
                for slot in self.slots:
                    if slot.phase == RESET and slot.worker.poll():
                        self._collect(slot)
                        moved = True
                if moved:
                    self._last_move = time.perf_counter()
                else:
                    self._idle()
        finally:
            self._shutdown()
        return self.stats

    # ------------------------------------------------------------------ phases of one step

    def _start_episodes(self) -> bool:
        """Start queued episodes on idle slots (a crash at reset frees its slot again, so loop)."""
        started = False
        while self.queue and any(slot.task is None for slot in self.slots):
            for slot in self.slots:
                if slot.task is None and self.queue:
                    self._start_episode(slot, self.queue.popleft())
                    started = True
        return started

    def _advance_group(self, g: int) -> bool:
        """Move group ``g`` on without blocking: finish its policy step, collect replies, or start its next step."""
        moved = False
        if self.inflight[g] is not None:
            if not self.inflight[g][0].ready():
                return False
            self._finish_step(g)
            moved = True
        members = [self.slots[i] for i in self.groups[g]]
        for slot in members:
            if slot.phase == STEP and slot.worker.poll():
                self._collect(slot)
                moved = True
        if any(slot.phase == STEP for slot in members):
            return moved  # the group steps together: wait for the rest of its replies
        ready = [slot for slot in members if slot.ready]
        if ready:
            self._submit_group(g, members, ready)
            moved = True
        return moved

    def _idle(self) -> None:
        """Nothing moved: wait for something to happen instead of spinning on the CPU.

        With only policy steps in progress, block on the oldest one. Otherwise wait on the workers' pipes (or
        sleep, for workers without one), briefly while a policy step is in progress, since its end cannot be
        waited for together with the pipes.
        """
        busy = [g for g, item in enumerate(self.inflight) if item is not None]
        waiting = sum(1 for slot in self.slots if slot.waiting)
        if busy and not waiting:
            self._finish_step(min(busy, key=lambda g: self.inflight[g][2]))  # the first submitted (may wait)
            return
        if waiting and waiting == len(self._watched):  # every outstanding request has a pipe to wait on
            self._poller.poll(0.2 if busy else 10.0)  # milliseconds
        else:
            time.sleep(0.0002 if busy else 0.001)
        stalled = time.perf_counter() - self._last_move
        if stalled > self._next_stall_warning:  # e.g. a hung env that has not hit its timeout yet
            self._next_stall_warning += STALL_WARNING_S
            phases = sorted({str(slot.phase) for slot in self.slots if slot.task is not None})
            logger.warning("no progress for %.0f s: %d env requests outstanding (slot phases: %s), %d policy steps "
                           "in progress", stalled, waiting, ", ".join(phases), len(busy))

    def _watch(self, slot: _Slot, on: bool) -> None:
        """Add (remove) ``slot``'s worker pipe to (from) the pipes :meth:`_idle` waits on, if it has one."""
        fd = self._watched.pop(slot.id, None)
        if fd is not None:
            self._poller.unregister(fd)
        fileno = getattr(slot.worker, "fileno", None)
        if on and fileno is not None:
            self._watched[slot.id] = fd = fileno()
            self._poller.register(fd, select.POLLIN)

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
            return
        self._watch(slot, True)

    def _collect(self, slot: _Slot) -> None:
        phase, slot.phase = slot.phase, None
        self._watch(slot, False)
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

    def _submit_group(self, g: int, members: List[_Slot], ready: List[_Slot]) -> None:
        """Start group ``g``'s policy step: its ready slots' frames, padding (``first=True``) for the others."""
        pad = ready[0].obs.frame
        frames = np.stack([slot.obs.frame if slot.ready else pad for slot in members])
        first = np.array([slot.first if slot.ready else True for slot in members])
        started = time.perf_counter()
        if self.stats.first_forward is None:
            self.stats.first_forward = started
        if all(item is None for item in self.inflight):
            self._busy_since = started
        pending = self.policies[g].submit(frames, first)
        submitted = []
        for position, slot in enumerate(members):
            if slot.ready:
                slot.first, slot.obs, slot.phase = False, None, ACT
                submitted.append((position, slot))
        self._submitted += 1
        self.inflight[g] = (pending, submitted, self._submitted)

    def _finish_step(self, g: int) -> None:
        """Take group ``g``'s policy step (waiting for it if needed) and send each of its envs its action."""
        pending, submitted, _ = self.inflight[g]
        self.inflight[g] = None
        actions = pending.result()
        if all(item is None for item in self.inflight):  # the last step in progress: close the busy interval
            self.stats.agent_time += time.perf_counter() - self._busy_since
        self.stats.agent_frames += len(submitted)
        self.stats.forwards += 1
        for position, slot in submitted:
            slot.phase, slot.action = None, actions[position]
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
        self._watch(slot, False)
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
