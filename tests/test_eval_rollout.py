"""In-process tests of the evaluation loop (``vpt_agent.eval.rollout``) with fake workers: no subprocesses.

A fake worker runs :class:`vpt_agent.eval.workers.EnvRunner` in this process; the policy is a numpy stand-in with
a per-position memory, so wrong ``first`` flags or batch positions change the returns.
"""
from __future__ import annotations

from typing import List

import numpy as np
import pytest

from evalenvs import POV_ENV
from vpt_agent.eval.records import CRASHED, TRUNCATED, EpisodeRecord, EpisodeTask
from vpt_agent.eval.rollout import Rollout, RolloutAborted, RolloutListener, split_groups
from vpt_agent.eval.workers import EnvRunner, EnvSpec, ResetRequest, Transition, WorkerFailed



class FakeWorker:
    """An :class:`EnvWorker` that runs the env in this process when its result is asked for."""

    def __init__(self, spec: EnvSpec):
        self.runner = EnvRunner(spec)
        self.request = None
        self.killed = False

    def submit(self, command, argument, timeout):
        self.request = (command, argument)

    def poll(self):
        return True

    def result(self) -> Transition:
        command, argument = self.request
        self.request = None
        try:
            return getattr(self.runner, command)(argument)
        except Exception as err:  # as a real worker reports it
            raise WorkerFailed(f"{type(err).__name__}: {err}") from None

    def close(self, timeout=10.0):
        self.runner.close()

    def kill(self):
        self.killed = True
        self.runner.close()


class MemoryPolicy:
    """Actions from the frame and the steps since ``first`` at each batch position (a stand-in for memory)."""

    def __init__(self):
        self.age = None
        self.batches: List[int] = []

    def __call__(self, frames, first):
        if self.age is None:
            self.age = np.zeros(len(frames), dtype=np.int64)
        assert len(frames) == len(self.age), "the batch size must not change"
        self.batches.append(len(frames))
        self.age[np.asarray(first)] = 0
        actions = []
        for frame, age in zip(frames, self.age):
            actions.append({"attack": int(frame[0, 0, 0]) % 2, "jump": int(age % 3 == 1),
                            "camera": np.array([age % 5, 0.0], dtype=np.float32)})
        self.age += 1
        return actions


class Recorder(RolloutListener):
    def __init__(self):
        self.events = []
        self.records: List[EpisodeRecord] = []

    def on_reset(self, task, obs):
        self.events.append(("reset", task.index))

    def on_step(self, task, action, obs):
        self.events.append(("step", task.index))

    def on_episode_end(self, task, record):
        self.records.append(record)


def run(tasks, num_envs, env_kwargs, max_retries=2, policies=None, max_steps=None):
    spec = EnvSpec(POV_ENV, env_kwargs, max_steps)
    workers = []

    def make_worker(slot):
        workers.append(FakeWorker(spec))
        return workers[-1]

    recorder = Recorder()
    rollout = Rollout(policies or [MemoryPolicy()], make_worker, num_envs, tasks, [recorder], max_retries=max_retries,
                      step_timeout=5.0, reset_timeout=5.0)
    rollout.run()
    return recorder, rollout, workers


def by_index(records):
    return {r["index"]: (r["return"], r["length"]) for r in records if r["outcome"] != CRASHED}


TASKS = [EpisodeTask(i, 50 + i) for i in range(7)]
KWARGS = {"length": 4, "length_jitter": 4}


def test_each_task_recorded_once_and_k_does_not_change_results():
    alone, _, _ = run(TASKS, 1, KWARGS)
    reference = by_index(alone.records)
    assert sorted(reference) == list(range(7)) and len(alone.records) == 7
    assert len({length for _, length in reference.values()}) > 1  # episodes end at different steps
    assert len({ret for ret, _ in reference.values()}) > 3  # and returns depend on the actions
    for k in (3, 7):
        recorder, rollout, _ = run(TASKS, k, KWARGS)
        assert by_index(recorder.records) == reference
        assert {r["seed"] for r in recorder.records} == {t.seed for t in TASKS}
        assert rollout.stats.env_steps == sum(length for _, length in reference.values())


def test_ledger_matches_a_plain_loop():
    """Return and length come from one ledger in the rollout; a plain env loop gives the same numbers."""
    from vpt_agent.eval.workers import make_env

    env = make_env(EnvSpec(POV_ENV, KWARGS))
    policy = MemoryPolicy()
    obs, _ = env.reset(seed=TASKS[2].seed)
    total, length, first, done = 0.0, 0, True, False
    while not done:
        action = policy(obs["pov"][None], np.array([first]))[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total, length, first, done = total + reward, length + 1, False, terminated or truncated
    recorder, _, _ = run([TASKS[2]], 1, KWARGS)
    assert by_index(recorder.records) == {2: (pytest.approx(total), length)}
    assert recorder.records[0]["outcome"] == TRUNCATED and recorder.records[0]["items"]["oak_log"] >= 0


def test_listeners_see_reset_then_steps_then_end():
    recorder, _, _ = run(TASKS[:2], 1, KWARGS)
    events = [e for e in recorder.events if e[1] == 0]
    length = by_index(recorder.records)[0][1]
    assert events == [("reset", 0)] + [("step", 0)] * length


def test_crash_is_recorded_worker_replaced_and_retried_with_same_seed(tmp_path):
    kwargs = dict(KWARGS, crash_mode="raise", crash_at=2, crash_seeds=[TASKS[1].seed], crash_dir=str(tmp_path))
    reference = by_index(run(TASKS[:3], 2, KWARGS)[0].records)
    recorder, _, workers = run(TASKS[:3], 2, kwargs)
    crashed = [r for r in recorder.records if r["outcome"] == CRASHED]
    assert [(r["index"], r["seed"], r["attempt"], r["length"], r["will_retry"]) for r in crashed] == [
        (1, TASKS[1].seed, 0, 2, True)]
    assert "crashed on purpose" in crashed[0]["error"]
    assert by_index(recorder.records) == reference  # the retry equals an uncrashed run
    assert len(workers) == 3 and sum(w.killed for w in workers) == 1  # the crashed worker was replaced


def test_endless_crashes_abort_after_a_streak_and_are_all_recorded():
    kwargs = dict(KWARGS, crash_mode="raise", crash_at=0)
    with pytest.raises(RolloutAborted, match="5 crashes in a row"):
        run([EpisodeTask(i, i) for i in range(20)], 1, kwargs, max_retries=0)


def test_a_worker_that_cannot_start_leaves_no_started_worker_running():
    class ClosedWorker(FakeWorker):
        closed = False

        def close(self, timeout=10.0):
            self.closed = True
            super().close(timeout)

    started = []

    def make_worker(slot):
        if slot == 2:
            raise OSError("cannot start worker 2")
        started.append(ClosedWorker(EnvSpec(POV_ENV, KWARGS, None)))
        return started[-1]

    rollout = Rollout([MemoryPolicy()], make_worker, 3, TASKS, [], max_retries=0, step_timeout=5.0, reset_timeout=5.0)
    with pytest.raises(OSError, match="worker 2"):
        rollout.run()
    assert len(started) == 2 and all(w.closed or w.killed for w in started)


def test_step_without_reset_is_a_reset_needed_error():
    from gymnasium.error import ResetNeeded

    runner = EnvRunner(EnvSpec(POV_ENV, KWARGS))
    with pytest.raises(ResetNeeded):
        runner.step({})


def test_time_limit_is_applied_once_by_gymnasium():
    recorder, _, _ = run(TASKS[:3], 2, {"length": 50}, max_steps=3)
    assert [(r["length"], r["outcome"]) for r in recorder.records] == [(3, TRUNCATED)] * 3


def test_pipelined_groups_give_the_same_results_with_their_own_memories():
    reference = by_index(run(TASKS, 1, KWARGS)[0].records)
    for k, g, sizes in ((4, 2, [2, 2]), (5, 2, [2, 3]), (5, 3, [1, 2, 2]), (2, 3, [1, 1])):
        policies = [MemoryPolicy() for _ in range(g)]
        recorder, rollout, _ = run(TASKS, k, KWARGS, policies=policies)
        assert by_index(recorder.records) == reference, (k, g)
        used = [p for p in policies if p.batches]
        assert sorted(set(p.batches[0] for p in used)) == sorted(set(sizes))
        assert all(len(set(p.batches)) == 1 for p in used)  # each group's batch size is fixed
        assert rollout.stats.session()["group_sizes"] == [len(r) for r in split_groups(k, g)]


def test_split_groups():
    assert split_groups(5, 2) == [range(0, 2), range(2, 5)]
    assert split_groups(12, 3) == [range(0, 4), range(4, 8), range(8, 12)]
    assert split_groups(2, 4) == [range(0, 1), range(1, 2)]
    assert split_groups(3, 1) == [range(0, 3)]


def test_full_frames_only_for_episodes_a_listener_asks_for():
    class Wants(Recorder):
        def wants_full_frames(self, task):
            return task.index == 1

        def on_step(self, task, action, obs):
            self.events.append((task.index, obs.frame.shape, None if obs.full_frame is None else obs.full_frame.shape))

    spec = EnvSpec(POV_ENV, {"length": 2, "pov_shape": (36, 64)}, frame_size=(12, 16))
    listener = Wants()
    Rollout([MemoryPolicy()], lambda slot: FakeWorker(spec), 1, TASKS[:2], [listener], max_retries=0,
            step_timeout=5.0, reset_timeout=5.0).run()
    steps = {event for event in listener.events if event[0] != "reset"}
    assert steps == {(0, (12, 16, 3), None), (1, (12, 16, 3), (36, 64, 3))}


class SlowPending:
    """A policy step that is only ready after ``polls`` calls of ready() (a GPU forward still running)."""

    def __init__(self, actions, polls, log, group):
        self.actions, self.polls, self.log, self.group = actions, polls, log, group

    def ready(self):
        self.polls -= 1
        return self.polls < 0

    def result(self):
        self.log.append(("result", self.group))
        return self.actions


class AsyncMemoryPolicy(MemoryPolicy):
    """MemoryPolicy behind the submit/ready/result interface, slow to finish."""

    def __init__(self, group, log, polls=3):
        super().__init__()
        self.group, self.log, self.polls = group, log, polls

    def submit(self, frames, first):
        self.log.append(("submit", self.group))
        return SlowPending(self(frames, first), self.polls, self.log, self.group)


def test_policy_steps_in_progress_do_not_block_the_other_groups():
    """While group 0's step is not ready the loop submits group 1's: the steps overlap, and results equal the
    synchronous lock-step run."""
    reference = by_index(run(TASKS, 1, KWARGS)[0].records)
    log = []
    recorder, rollout, _ = run(TASKS, 4, KWARGS, policies=[AsyncMemoryPolicy(0, log), AsyncMemoryPolicy(1, log)])
    assert by_index(recorder.records) == reference
    first_result = log.index(("result", 0))
    assert ("submit", 1) in log[:first_result]  # group 1 started before group 0's step was collected
    assert rollout.stats.forwards == log.count(("submit", 0)) + log.count(("submit", 1))


def test_joint_actions_reach_the_env_as_minerl_dicts(tmp_path):
    """A JointAction (two ints, what the evaluator sends) steps the env exactly like its MineRL dict."""
    from vpt_agent.action_mapping import JointAction

    log_a, log_b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    joint = [JointAction(b, c) for b, c in ((0, 60), (3, 17), (8640, 5), (1234, 120))]
    for log, actions in ((log_a, joint), (log_b, [a.to_env() for a in joint])):
        runner = EnvRunner(EnvSpec(POV_ENV, {"length": 10, "action_log": str(log)}))
        runner.reset(ResetRequest(1))
        for action in actions:
            runner.step(action)
    assert log_a.read_text() == log_b.read_text() and len(log_a.read_text().splitlines()) == 4
