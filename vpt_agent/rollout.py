"""The evaluation loop: K env workers, one batched policy forward per step, crash retries.

:class:`Rollout` hands episode tasks (index, seed, attempt) to free workers, gathers each step's
observations, calls the policy once for all envs (``first[i]`` marks env i's episode start so its
recurrent memory is cleared), sends the actions back, and records every finished or crashed
episode through a callback. A crashed worker is killed and replaced, and its episode is queued
again with the same seed until ``max_retries`` retries are used up.
"""
from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence

from .errors import VPTError
from .workers import EnvCrash

logger = logging.getLogger(__name__)

PolicyFn = Callable[[List[Dict[str, Any]], List[bool]], List[Dict[str, Any]]]
RecordFn = Callable[[Dict[str, Any]], None]
WorkerFactory = Callable[[int], Any]


class RolloutAborted(VPTError, RuntimeError):
    """Every env keeps crashing (no episode finishes): a broken setup rather than bad luck."""


@dataclass
class EpisodeTask:
    """One episode to run: its index in the run, its seed, and which attempt this is (0 = first)."""

    index: int
    seed: int
    attempt: int = 0


@dataclass
class RolloutStats:
    """Counters of one session, for throughput numbers."""

    env_steps: int = 0
    agent_frames: int = 0
    agent_time: float = 0.0
    forwards: int = 0
    start: float = 0.0

    def session(self) -> Dict[str, Any]:
        """Throughput of this session as a dict for the summary."""
        wall = time.perf_counter() - self.start if self.start else 0.0
        return {
            "wall_time_s": wall,
            "env_steps": self.env_steps,
            "policy_forwards": self.forwards,
            "mean_batch": self.agent_frames / self.forwards if self.forwards else None,
            "agent_steps_per_s": self.agent_frames / self.agent_time if self.agent_time > 0 else None,
            "overall_steps_per_s": self.env_steps / wall if wall > 0 else None,
        }


class _Slot:
    """A worker and the episode it is running."""

    def __init__(self, slot_id: int, worker: Any):
        self.id = slot_id
        self.worker = worker
        self.task: Optional[EpisodeTask] = None
        self.phase: Optional[str] = None  # "reset" / "step" while a request is outstanding
        self.obs: Optional[Dict[str, Any]] = None
        self.first = False
        self.started = 0.0
        self.episode_return = 0.0
        self.length = 0

    @property
    def waiting(self) -> bool:
        return self.phase is not None

    @property
    def ready(self) -> bool:
        return self.task is not None and self.phase is None and self.obs is not None


class Rollout:
    """Runs a queue of episode tasks on K workers with a batched policy.

    Args:
        policy: ``policy(obs_list, first)`` -> one action per entry; called with exactly
            ``num_envs`` entries every time (idle workers get a padding copy with ``first=True``),
            so batch position i always belongs to worker i.
        make_worker: ``make_worker(slot_id)`` -> a started worker (``LocalWorker`` / ``RayWorker``).
        tasks: episodes to run, in order.
        on_record: called with the record of every finished or crashed episode, in finish order.
        on_frame: optional ``on_frame(task, obs, first)`` with every observation (video recording).
        on_episode_end: optional ``on_episode_end(task, finished)``; ``finished`` is False for a crash.
    """

    def __init__(self, policy: PolicyFn, make_worker: WorkerFactory, num_envs: int,
                 tasks: Sequence[EpisodeTask], on_record: RecordFn, *, max_retries: int = 2,
                 step_timeout: float = 180.0, reset_timeout: float = 600.0,
                 on_frame: Optional[Callable[[EpisodeTask, Dict[str, Any], bool], None]] = None,
                 on_episode_end: Optional[Callable[[EpisodeTask, bool], None]] = None):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.policy = policy
        self.make_worker = make_worker
        self.num_envs = num_envs
        self.queue: Deque[EpisodeTask] = deque(tasks)
        self.on_record = on_record
        self.max_retries = max_retries
        self.step_timeout = step_timeout
        self.reset_timeout = reset_timeout
        self.on_frame = on_frame
        self.on_episode_end = on_episode_end
        self.stats = RolloutStats()
        self.slots: List[_Slot] = []
        self.crash_streak = 0  # crashes since the last finished episode
        self.max_crash_streak = max(5, 2 * num_envs + max_retries + 1)

    def run(self) -> RolloutStats:
        """Run until every task finished or gave up. Workers are always shut down on exit."""
        self.stats.start = time.perf_counter()
        try:
            self.slots = [_Slot(i, self.make_worker(i)) for i in range(self.num_envs)]
            while self.queue or any(slot.task is not None for slot in self.slots):
                self._advance_until_ready()
                ready = [slot for slot in self.slots if slot.ready]
                if ready:
                    self._act(ready)
        finally:
            self._shutdown()
        return self.stats

    # ------------------------------------------------------------------ phases of one step

    def _advance_until_ready(self) -> None:
        """Start episodes on idle slots and collect replies until some env awaits an action.

        Step replies are awaited (they are quick); resets (which may launch Minecraft and take
        minutes) are only collected once they are done, so the other envs keep stepping meanwhile.
        """
        while True:
            for slot in self.slots:
                if slot.task is None and self.queue:
                    self._start_episode(slot, self.queue.popleft())
            for slot in self.slots:
                if slot.phase == "step":
                    self._collect(slot)
            for slot in self.slots:
                if slot.phase == "reset" and slot.worker.poll():
                    self._collect(slot)
            startable = bool(self.queue) and any(slot.task is None for slot in self.slots)
            if startable:
                continue
            if any(slot.ready for slot in self.slots) or not any(slot.waiting for slot in self.slots):
                return
            time.sleep(0.002)  # only resets are outstanding: wait for the first to finish

    def _start_episode(self, slot: _Slot, task: EpisodeTask) -> None:
        slot.task, slot.obs, slot.first = task, None, True
        slot.episode_return, slot.length = 0.0, 0
        slot.started = time.perf_counter()
        logger.debug("slot %d: episode %d (seed %d, attempt %d)", slot.id, task.index, task.seed, task.attempt)
        self._submit(slot, "reset", task.seed, self.reset_timeout)

    def _submit(self, slot: _Slot, command: str, argument: Any, timeout: float) -> None:
        slot.phase = command
        try:
            slot.worker.submit(command, argument, timeout)
        except EnvCrash as err:
            slot.phase = None
            self._crash(slot, err)

    def _collect(self, slot: _Slot) -> None:
        phase, slot.phase = slot.phase, None
        try:
            result = slot.worker.result()
        except EnvCrash as err:
            self._crash(slot, err)
            return
        if phase == "reset":
            slot.obs, slot.first = result, True
            self._frame(slot, result)
            return
        obs, reward, terminated, truncated, summary = result
        slot.episode_return += reward
        slot.length += 1
        self.stats.env_steps += 1
        self._frame(slot, obs)
        if summary is None:
            slot.obs = obs
            return
        self._finish(slot, "terminated" if terminated else "truncated", summary)

    def _act(self, ready: List[_Slot]) -> None:
        pad = ready[0].obs
        obs_list = [slot.obs if slot.ready else pad for slot in self.slots]
        first = [slot.first if slot.ready else True for slot in self.slots]
        start = time.perf_counter()
        actions = self.policy(obs_list, first)
        self.stats.agent_time += time.perf_counter() - start
        self.stats.agent_frames += len(ready)
        self.stats.forwards += 1
        for slot in ready:
            slot.first = False
            slot.obs = None
            self._submit(slot, "step", actions[slot.id], self.step_timeout)

    def _frame(self, slot: _Slot, obs: Dict[str, Any]) -> None:
        if self.on_frame is not None and slot.task is not None:
            self.on_frame(slot.task, obs, slot.length == 0)

    # ------------------------------------------------------------------ episode ends

    def _base_record(self, slot: _Slot, outcome: str) -> Dict[str, Any]:
        task = slot.task
        return {"index": task.index, "seed": task.seed, "attempt": task.attempt, "outcome": outcome,
                "return": slot.episode_return, "length": slot.length,
                "wall_time_s": round(time.perf_counter() - slot.started, 4), "worker": slot.id}

    def _finish(self, slot: _Slot, outcome: str, summary: Dict[str, Any]) -> None:
        record = self._base_record(slot, outcome)
        record.update(summary)
        record["return"] = summary.get("return", slot.episode_return)
        task = slot.task
        slot.task, slot.obs = None, None
        self.crash_streak = 0
        if self.on_episode_end is not None:
            self.on_episode_end(task, True)
        self.on_record(record)

    def _crash(self, slot: _Slot, err: Exception) -> None:
        task = slot.task
        retry = task.attempt < self.max_retries
        record = self._base_record(slot, "crashed")
        record["error"] = str(err)[:2000]
        record["will_retry"] = retry
        logger.warning("episode %d (seed %d, attempt %d) crashed on worker %d: %s%s", task.index, task.seed,
                       task.attempt, slot.id, str(err).splitlines()[0] if str(err) else type(err).__name__,
                       "; retrying with the same seed" if retry else "; retries exhausted")
        slot.task, slot.obs, slot.phase = None, None, None
        self._replace_worker(slot)
        if retry:
            self.queue.appendleft(EpisodeTask(task.index, task.seed, task.attempt + 1))
        if self.on_episode_end is not None:
            self.on_episode_end(task, False)
        self.on_record(record)
        self.crash_streak += 1
        if self.crash_streak >= self.max_crash_streak:
            raise RolloutAborted(f"{self.crash_streak} crashes in a row without a finished episode; "
                                 f"last error: {str(err).splitlines()[0] if str(err) else type(err).__name__}")

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
