"""Running an evaluation: the agent, the workers, the rollout, signals and the summary.

:func:`evaluate` validates an :class:`~vpt_agent.eval.config.EvalConfig`, checks the run directory, loads the
agent (before creating anything, so a bad model leaves no run directory), runs the missing episodes and writes
``summary.json``, ``returns.png`` and the table. Episode ``i`` always uses env seed ``seed + i``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np

from ..action_mapping import JointAction
from . import report
from ..errors import one_line
from .config import (EMBEDDED_ENV, MINERL_ENV, EvalConfig, EvalError, config_from_mapping, env_spec, pipeline_groups,
                     validate)
from .recorder import EpisodeRecorder, recorded_already
from .records import EpisodeRecord, EpisodeTask
from .report import Progress
from .rollout import Policy, Rollout, RolloutListener, WorkerFactory
from .rundir import (RUN_FILE, create_run_dir, default_out_dir, fingerprints, is_smoke_test, locked_run_dir,
                     package_versions, policy_label, prepare_run_dir)
from .video import VIDEO_DIR, VideoRecorder
from .workers import EnvSpec, LocalWorker, RayWorker, ray_runtime_env

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- agent

def default_threads(config: EvalConfig, num_envs: Optional[int] = None) -> int:
    """CPU threads for the policy: the cores the local env worker processes (one busy core each) leave free.

    ``num_envs``: the workers that really run (fewer than ``--num-envs`` when fewer episodes are left to run).
    """
    cpus = os.cpu_count() or 1
    busy = (config.num_envs if num_envs is None else num_envs) if config.backend == "local" else 0
    return max(1, cpus - busy)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    """Run the policy with ``n`` CPU threads, restoring the caller's setting afterwards.

    Oversubscribed OpenMP threads spin against the env processes and can make a step several times slower.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_agent(config: EvalConfig):
    """Load the VPT agent the config asks for (files, zoo name, or random init for smoke tests)."""
    from ..agent import VPTAgent
    from ..inference import compile_from_flag

    options = dict(device=config.device, dtype=config.dtype, seed=config.seed,
                   compile=compile_from_flag(config.compile))
    if config.zoo is not None:
        return VPTAgent.from_pretrained(config.zoo, **options)
    if is_smoke_test(config):
        logger.warning("evaluating RANDOM weights: a smoke test, not a real evaluation")
        return VPTAgent.from_config(config.model, **options)
    return VPTAgent.from_files(config.model, config.weights, **options)


def _load_agent(config: EvalConfig):
    from ..zoo import ZooError

    try:
        return build_agent(config)
    except (OSError, ValueError, KeyError, RuntimeError, ZooError) as err:
        raise EvalError(f"cannot load the agent: {type(err).__name__}: {one_line(err)}") from None


class AgentPolicy:
    """The rollout's view of a ``VPTAgent``: frames (already at the model's input size) and first flags in,
    :class:`~vpt_agent.action_mapping.JointAction` s out (two ints per env; the workers map them to MineRL dicts).

    :meth:`submit` returns at once on CUDA (the step runs on the agent's stream), so the rollout can serve
    other groups meanwhile.
    """

    def __init__(self, agent: Any, deterministic: bool):
        self.agent = agent
        self.deterministic = deterministic

    def submit(self, frames: np.ndarray, first: np.ndarray) -> "_JointActions":
        return _JointActions(self.agent.submit([{"pov": frame} for frame in frames], first, self.deterministic))


class _JointActions:
    def __init__(self, pending: Any):
        self.pending = pending

    def ready(self) -> bool:
        return self.pending.ready()

    def result(self) -> List[JointAction]:
        buttons, camera = self.pending.joint()
        return [JointAction(b, c) for b, c in zip(buttons.tolist(), camera.tolist())]


def group_policies(agent: Any, groups: int, config: EvalConfig) -> List[Policy]:
    """One policy per pipelined group: ``agent`` and its siblings (the same network and CUDA stream), each with
    its own memory and sampling generator (group g seeded with ``seed + g``; group 0 is ``agent`` itself).

    One stream is enough: a group's GPU step is short next to its envs' steps, and what pipelining needs is the
    host free while the GPU works, not two steps on the GPU at once."""
    agents = [agent] + [agent.sibling(seed=config.seed + g) for g in range(1, groups)]
    return [AgentPolicy(member, config.deterministic) for member in agents]


# ----------------------------------------------------------------------------- signals and Ray

class _Signals:
    """Turn SIGTERM into KeyboardInterrupt in the main thread, so both stop a run the same way.

    ``ray.init`` installs its own SIGTERM handler (which exits without a summary): call :meth:`install` again
    after it.
    """

    def __enter__(self):
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    def install(self) -> None:
        """(Re)install the handler, e.g. after a library replaced it."""
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._handle)

    @staticmethod
    def _handle(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


def _worker_factory(config: EvalConfig, spec: EnvSpec) -> WorkerFactory:
    if config.backend == "ray":
        return lambda slot: RayWorker(spec, num_cpus=config.ray_cpus_per_env)
    return lambda slot: LocalWorker(spec)


def _init_ray(config: EvalConfig) -> Tuple[bool, Optional[Any]]:
    """Connect to (or start) Ray unless already initialised; returns whether we started it, and the reaper.

    When this process starts a local Ray instance, a reaper process (:mod:`.reaper`) watches its processes and
    stops them if this process dies without ``ray.shutdown`` (SIGKILL), which Ray alone does not fully do.
    """
    import ray

    from . import reaper

    if ray.is_initialized():
        return False, None
    kwargs: Dict[str, Any] = {"runtime_env": ray_runtime_env(), "include_dashboard": False, "log_to_driver": False}
    watchdog = None
    if config.ray_address:
        kwargs["address"] = config.ray_address
    else:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(config.num_envs * config.ray_cpus_per_env + 0.999))
        watchdog = reaper.start()
    before = reaper.children()
    try:
        ray.init(**kwargs)
    except BaseException:
        if watchdog is not None:
            watchdog.stop()
        raise
    if watchdog is not None:
        watchdog.watch(reaper.children() - before - {watchdog.process.pid})
    return True, watchdog


# ----------------------------------------------------------------------------- the run

class _LogWriter(RolloutListener):
    """Stamps the run-level keys on each record and appends it to ``episodes.jsonl`` (fsync'd)."""

    def __init__(self, log: report.EpisodeLog, smoke_test: bool):
        self.log = log
        self.smoke_test = smoke_test

    def on_episode_end(self, task: EpisodeTask, record: EpisodeRecord) -> None:
        record["smoke_test"] = self.smoke_test
        record["finished_at"] = _dt.datetime.now().isoformat(timespec="seconds")
        self.log.append(record)


def env_note(env_id: str) -> str:
    """What kind of env ran, for the summary."""
    if env_id == EMBEDDED_ENV:
        return "embedded offline env (not Minecraft)"
    return "MineRL (Minecraft)" if env_id == MINERL_ENV else "user-chosen env"


def write_summary(out: Path, config: EvalConfig, session: Mapping[str, Any], *, plot: bool) -> Dict[str, Any]:
    """Rebuild the summary from ``episodes.jsonl`` and write it (and, with ``plot``, ``returns.png`` and
    ``items.png``)."""
    records = report.EpisodeLog(out / report.EPISODES_FILE).load()
    summary = report.build_summary(records, episodes_requested=config.episodes, max_retries=config.max_retries,
                                   smoke_test=is_smoke_test(config),
                                   config={**dataclasses.asdict(config), "out": str(out),
                                           "policy_label": policy_label(config)},
                                   versions=package_versions(), session=session)
    summary["env_note"] = env_note(config.env)
    report.write_json_atomic(out / report.SUMMARY_FILE, summary)
    if plot:
        title = f"{config.env} | {policy_label(config)} | n={summary['returns']['n']}"
        try:
            report.plot_returns(report.requested(records, config.episodes), out / report.PLOT_FILE, title)
        except Exception as err:  # a plotting problem must not lose the summary
            logger.warning("could not write %s: %s", report.PLOT_FILE, err)
        try:
            report.plot_items(summary, out / report.ITEMS_PLOT_FILE, title)
        except Exception as err:
            logger.warning("could not write %s: %s", report.ITEMS_PLOT_FILE, err)
    return summary


def evaluate(config: Union[EvalConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """Run an evaluation and return its summary (also written to ``OUT/summary.json``).

    Raises :class:`~vpt_agent.eval.config.EvalError` for bad settings and ``KeyboardInterrupt`` after an
    interrupt (Ctrl-C or SIGTERM), in which case the summary of the finished episodes was written first.
    """
    config = validate(config_from_mapping(config))
    out = Path(config.out) if config.out else default_out_dir()
    config.out = str(out)
    files = fingerprints(config)
    # A first look, writing nothing: refuse a bad resume before the (slow) agent load, and load the agent before
    # creating anything, so a bad model leaves no run directory.
    existing = prepare_run_dir(config, out, files, repair=False)
    pending = _pending(config, _status(config, existing))
    if config.record is not None and not (out / RUN_FILE).exists():  # a new run
        clash = recorded_already(Path(config.record), pending)
        if clash:  # another run's recordings (same index and seed), which a resume of this run would not touch
            raise EvalError(f"--record {config.record} already holds {clash[0]} ({len(clash)} of this run's "
                            "names); choose another --record or --seed")
    agent = _load_agent(config) if pending else None
    with locked_run_dir(out), _locked_record_dir(config):
        existing = prepare_run_dir(config, out, files)  # again, under the lock: the authoritative state
        status = _status(config, existing)
        tasks = _pending(config, status)
        if existing:
            logger.info("resuming %s: %d episodes done, %d to run", out, len(status.done), len(tasks))
        session: Dict[str, Any] = {"started": _dt.datetime.now().isoformat(), "resumed": bool(existing),
                                   "interrupted": False}
        if tasks and agent is None:
            agent = _load_agent(config)
        if not (out / RUN_FILE).exists():  # a new run (or one killed before it wrote run.json)
            create_run_dir(config, out, files)
        if tasks:
            try:
                with _torch_threads(config.threads or default_threads(config, min(config.num_envs, len(tasks)))):
                    session.update(_run_tasks(config, agent, out, tasks,
                                              [float(r["return"]) for r in status.done.values()]))
            except Exception as err:
                session["error"] = f"{type(err).__name__}: {err}"
                with contextlib.suppress(Exception):  # e.g. a full disk: the original error is the one to report
                    write_summary(out, config, session, plot=False)  # what finished is still summarised
                raise
        summary = write_summary(out, config, session, plot=True)
    if config.print_table:
        print(report.format_table(summary, out), flush=True)
    if session["interrupted"]:
        raise KeyboardInterrupt("evaluation interrupted; finished episodes and their summary are on disk")
    return summary


def _status(config: EvalConfig, existing: List[EpisodeRecord]) -> report.EpisodeStatus:
    """Which of this run's episodes (index < N) finished, gave up or crashed, from the records on disk."""
    return report.episode_status(report.requested(existing, config.episodes), config.max_retries)


def _pending(config: EvalConfig, status: report.EpisodeStatus) -> List[EpisodeTask]:
    """The episodes still to run: neither finished nor given up (index < N, seed = seed + index)."""
    return [EpisodeTask(i, config.seed + i, status.attempts.get(i, 0)) for i in range(config.episodes)
            if i not in status.done and i not in status.gave_up]


def _locked_record_dir(config: EvalConfig):
    """The ``--record`` directory's lock (two runs recording into one directory would overwrite each other)."""
    if config.record is None:
        return contextlib.nullcontext()
    return locked_run_dir(Path(config.record), what="--record")


def _run_tasks(config: EvalConfig, agent: Any, out: Path, tasks: List[EpisodeTask],
               done_returns: List[float]) -> Dict[str, Any]:
    """Run the pending episodes; returns session info (throughput, interrupted flag)."""
    log = report.EpisodeLog(out / report.EPISODES_FILE)
    progress = Progress(config.episodes, done_returns, config.progress)
    video = VideoRecorder(out / VIDEO_DIR, config.video) if config.video else None
    recorder = EpisodeRecorder(Path(config.record)) if config.record is not None else None
    # Side outputs first: an episode's files are complete before the episode enters the log.
    listeners: List[RolloutListener] = [*([video] if video else []), *([recorder] if recorder else []),
                                        _LogWriter(log, is_smoke_test(config)), progress]
    num_envs = min(config.num_envs, len(tasks))
    policies = group_policies(agent, pipeline_groups(config, num_envs, agent.device.type), config)
    spec = env_spec(config, frame_size=tuple(agent.config.img_shape[:2]))
    rollout = Rollout(policies, _worker_factory(config, spec), num_envs, tasks, listeners,
                      max_retries=config.max_retries, step_timeout=config.step_timeout,
                      reset_timeout=config.reset_timeout)
    interrupted = started_ray = False
    watchdog = None
    try:
        with _Signals() as signals:
            try:
                if config.backend == "ray":
                    started_ray, watchdog = _init_ray(config)
                    signals.install()  # ray.init replaced our SIGTERM handler
                rollout.run()
            except KeyboardInterrupt:
                interrupted = True
                logger.warning("interrupted: finished episodes are in %s; continue with --resume", out)
    finally:
        log.close()
        progress.close()
        if video is not None:
            video.close()
        if recorder is not None:
            recorder.close()
        if started_ray:
            import ray

            ray.shutdown()
        if watchdog is not None:
            watchdog.stop()
    extra: Dict[str, Any] = {}
    if video is not None:
        extra["videos"] = video.session()
    if recorder is not None:
        extra["recordings"] = recorder.session()
    return {**rollout.stats.session(), "interrupted": interrupted, "backend": config.backend,
            "num_envs": num_envs, **extra}
