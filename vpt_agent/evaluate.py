"""Zero-shot evaluation of a VPT agent: N episodes in an env, a report that survives crashes.

Command line: ``python -m vpt_agent.evaluate --zoo foundation-model-1x --episodes 100`` (see
``--help``). Programmatic: :func:`evaluate` with an :class:`EvalConfig`, returns the summary dict.

Episode ``i`` of a run always uses env seed ``seed + i``; every finished or crashed episode is
appended to ``OUT/episodes.jsonl`` as it ends, ``OUT/summary.json``, ``OUT/returns.png`` and a
printed table are derived from that log, and ``--resume`` continues a run from it.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import importlib
import importlib.util
import json
import logging
import os
import platform
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from . import report
from .report import Progress
from .rollout import EpisodeTask, Rollout, RolloutAborted
from .video import VideoRecorder
from .errors import VPTError
from .workers import EnvSpec, LocalWorker, RayWorker, import_env_modules, ray_runtime_env

logger = logging.getLogger(__name__)

MINERL_ENV = "vpt/MineRLHumanSurvival-v0"
EMBEDDED_ENV = "vpt/VoxelTreechop-v0"
RUN_FILE = "run.json"
# Settings that change what the episodes of a run are; --resume refuses to mix them.
IDENTITY_FIELDS = ("env", "env_kwargs", "seed", "model", "weights", "zoo", "max_steps", "deterministic", "dtype")


class EvalError(VPTError):
    """A user-facing error: bad arguments, missing files, a resume that does not match the run."""


@dataclass
class EvalConfig:
    """Settings of an evaluation run (one field per command-line flag)."""

    episodes: int = 10
    env: Optional[str] = None  # None -> MineRL HumanSurvival when minerl is installed, else embedded env
    env_kwargs: Dict[str, Any] = field(default_factory=dict)
    max_steps: Optional[int] = None
    model: Optional[str] = None
    weights: Optional[str] = None  # a path, or "random" for an explicit smoke test
    zoo: Optional[str] = None
    device: str = "auto"
    dtype: str = "float32"
    num_envs: int = 1
    deterministic: bool = False
    seed: int = 0
    out: Optional[str] = None
    video: int = 0
    resume: bool = False
    backend: str = "local"
    ray_address: Optional[str] = None
    ray_cpus_per_env: float = 1.0
    max_retries: int = 2
    step_timeout: float = 180.0
    reset_timeout: float = 600.0
    threads: Optional[int] = None  # torch CPU threads for the policy; None -> CPUs left over by local env workers
    progress: bool = True
    print_table: bool = True


# ----------------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line on stderr (no usage block) and exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m vpt_agent.evaluate`` argument parser."""
    p = _Parser(prog="python -m vpt_agent.evaluate",
                description="Evaluate a VPT agent for N episodes and write a crash-safe reward report.")
    p.add_argument("--episodes", "-n", type=int, default=10, help="number of episodes N (default 10)")
    p.add_argument("--env", default=None,
                   help=f"Gymnasium env id, 'module:id' allowed (default {MINERL_ENV} if minerl is "
                        f"installed, else the embedded {EMBEDDED_ENV})")
    p.add_argument("--env-kwargs", default="{}", help="JSON object of keyword arguments for gymnasium.make")
    p.add_argument("--max-steps", type=int, default=None, help="truncate each episode after this many steps")
    p.add_argument("--model", default=None, help="path of the .model config")
    p.add_argument("--weights", default=None,
                   help="path of the .weights/.safetensors file, or 'random' for a smoke test with "
                        "untrained weights (labelled as such everywhere)")
    p.add_argument("--zoo", default=None, metavar="NAME", help="official model by name (python -m vpt_agent.zoo list)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    p.add_argument("--num-envs", "-k", type=int, default=1, help="parallel envs K (default 1)")
    p.add_argument("--deterministic", action="store_true", help="argmax actions instead of sampling")
    p.add_argument("--seed", type=int, default=0, help="episode i uses env seed SEED+i (default 0)")
    p.add_argument("--out", default=None, help="report directory (default runs/eval-<timestamp>)")
    p.add_argument("--video", type=int, default=0, metavar="N", help="save MP4s of the first N episodes")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--backend", choices=("local", "ray"), default="local")
    p.add_argument("--ray-address", default=None, help="address of a Ray cluster (default: start a local one)")
    p.add_argument("--ray-cpus-per-env", type=float, default=1.0, help="CPUs reserved per env actor")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a crashed episode (same seed)")
    p.add_argument("--step-timeout", type=float, default=180.0, help="seconds before a step counts as hung")
    p.add_argument("--reset-timeout", type=float, default=600.0,
                   help="seconds before a reset (incl. env start-up) counts as hung")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads for the policy (default: CPUs not taken by local env workers, >= 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def config_from_args(argv: Optional[Sequence[str]] = None) -> EvalConfig:
    """Parse command-line arguments into an :class:`EvalConfig` (exits 2 on a syntax error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        env_kwargs = json.loads(args.env_kwargs)
    except ValueError as err:
        parser.error(f"--env-kwargs is not valid JSON: {err}")
    if not isinstance(env_kwargs, dict):
        parser.error("--env-kwargs must be a JSON object, e.g. '{\"log_goal\": 5}'")
    logging.basicConfig(level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s")
    return EvalConfig(
        episodes=args.episodes, env=args.env, env_kwargs=env_kwargs, max_steps=args.max_steps,
        model=args.model, weights=args.weights, zoo=args.zoo, device=args.device, dtype=args.dtype,
        num_envs=args.num_envs, deterministic=args.deterministic, seed=args.seed, out=args.out,
        video=args.video, resume=args.resume, backend=args.backend, ray_address=args.ray_address,
        ray_cpus_per_env=args.ray_cpus_per_env, max_retries=args.max_retries,
        step_timeout=args.step_timeout, reset_timeout=args.reset_timeout, threads=args.threads,
        progress=not args.no_progress)


# ----------------------------------------------------------------------------- validation

def default_env() -> str:
    """MineRL's HumanSurvival when minerl is importable, else the embedded env."""
    return MINERL_ENV if importlib.util.find_spec("minerl") is not None else EMBEDDED_ENV


def check_env_id(env_id: str) -> None:
    """Raise :class:`EvalError` unless ``env_id`` is a registered Gymnasium id (after imports)."""
    import gymnasium

    try:
        import_env_modules(env_id)
    except ImportError as err:
        raise EvalError(f"--env {env_id!r}: cannot import its module: {err}") from None
    name = env_id.split(":", 1)[1] if ":" in env_id else env_id
    if name not in gymnasium.registry:
        vpt_ids = sorted(i for i in gymnasium.registry if i.startswith("vpt/"))
        hint = f"; registered vpt ids: {', '.join(vpt_ids)}" if vpt_ids else ""
        raise EvalError(f"--env: unknown Gymnasium env id {env_id!r}{hint}")


def probe_env(env_id: str, env_kwargs: Mapping[str, Any]) -> None:
    """Build (and close) the env once here, so a setup error (missing minerl, bad kwargs) is one clear
    error up front instead of a crash of every episode in the workers. Does not reset the env."""
    import gymnasium

    try:
        env = gymnasium.make(env_id, **dict(env_kwargs))
    except Exception as err:  # any failure here is a configuration problem the user must fix
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EvalError(f"--env {env_id!r}: cannot create the env: {type(err).__name__}: {text}") from None
    env.close()


def _require_file(path: Optional[str], flag: str) -> None:
    if path is not None and not Path(path).is_file():
        raise EvalError(f"{flag}: file not found: {path}")


def validate(config: EvalConfig) -> EvalConfig:
    """Check a config and fill in defaults; raises :class:`EvalError` with a one-line message."""
    config = dataclasses.replace(config, env_kwargs=dict(config.env_kwargs))
    if config.episodes < 1:
        raise EvalError(f"--episodes must be >= 1, got {config.episodes}")
    if config.num_envs < 1:
        raise EvalError(f"--num-envs must be >= 1, got {config.num_envs}")
    if config.max_steps is not None and config.max_steps < 1:
        raise EvalError(f"--max-steps must be >= 1, got {config.max_steps}")
    if config.threads is not None and config.threads < 1:
        raise EvalError(f"--threads must be >= 1, got {config.threads}")
    if config.max_retries < 0:
        raise EvalError(f"--max-retries must be >= 0, got {config.max_retries}")
    if config.video < 0:
        raise EvalError(f"--video must be >= 0, got {config.video}")
    if config.step_timeout <= 0 or config.reset_timeout <= 0:
        raise EvalError("--step-timeout and --reset-timeout must be > 0")
    if config.backend not in ("local", "ray"):
        raise EvalError(f"--backend must be 'local' or 'ray', got {config.backend!r}")
    if config.dtype not in ("float32", "bfloat16"):
        raise EvalError(f"--dtype must be float32 or bfloat16, got {config.dtype!r}")
    if config.device not in ("auto", "cpu", "cuda"):
        raise EvalError(f"--device must be auto, cpu or cuda, got {config.device!r}")
    _validate_policy_source(config)
    if config.env is None:
        config.env = default_env()
    check_env_id(config.env)
    probe_env(config.env, config.env_kwargs)
    if config.video:
        _check_video_support()
    if config.backend == "ray" and importlib.util.find_spec("ray") is None:
        raise EvalError("--backend ray needs Ray: pip install 'vpt-agent[ray]'")
    return config


def _validate_policy_source(config: EvalConfig) -> None:
    if config.zoo is not None:
        if config.model is not None or config.weights is not None:
            raise EvalError("give either --zoo NAME or --model/--weights, not both")
        from .zoo import ZooError, get_model

        try:
            get_model(config.zoo)
        except ZooError as err:
            raise EvalError(f"--zoo: {err}") from None
        return
    if config.weights is None:
        raise EvalError("no weights given: use --zoo NAME (see `python -m vpt_agent.zoo list`; fetch with "
                        "`python -m vpt_agent.zoo download NAME`) or --model PATH --weights PATH; "
                        "--weights random runs an untrained smoke test")
    if config.model is None:
        raise EvalError("--model PATH (the .model config) is required with --weights")
    _require_file(config.model, "--model")
    if config.weights != "random":
        _require_file(config.weights, "--weights")
    config.model = str(Path(config.model).resolve())
    if config.weights != "random":
        config.weights = str(Path(config.weights).resolve())


def _check_video_support() -> None:
    for module in ("imageio", "imageio_ffmpeg"):
        if importlib.util.find_spec(module) is None:
            raise EvalError(f"--video needs imageio and imageio-ffmpeg ({module} is missing): "
                            "pip install 'vpt-agent[video]'")


# ----------------------------------------------------------------------------- run directory

def policy_label(config: EvalConfig) -> str:
    """A human-readable name of the policy, marking random weights as a smoke test."""
    if config.zoo is not None:
        return f"zoo:{config.zoo}"
    if config.weights == "random":
        return f"RANDOM WEIGHTS (smoke test), config {config.model}"
    return f"{config.weights} (config {config.model})"


def run_identity(config: EvalConfig) -> Dict[str, Any]:
    """The settings that determine a run's episodes; a resume must match them."""
    return {name: getattr(config, name) for name in IDENTITY_FIELDS}


def default_out_dir() -> Path:
    """``runs/eval-<timestamp>`` under the current directory."""
    return Path("runs") / _dt.datetime.now().strftime("eval-%Y%m%d-%H%M%S")


def prepare_run_dir(config: EvalConfig, out: Path) -> List[Dict[str, Any]]:
    """Check the run directory (nothing is created yet); returns the episode records already on disk.

    A new run refuses a directory that already holds episodes; ``--resume`` refuses a directory
    whose run used different settings (seed, model, env, ...).
    """
    run_file = out / RUN_FILE
    log = report.EpisodeLog(out / report.EPISODES_FILE)
    identity = run_identity(config)
    if config.resume:
        if not run_file.is_file():
            raise EvalError(f"--resume: {out} is not an evaluation run directory (no {RUN_FILE})")
        stored = json.loads(run_file.read_text())["identity"]
        diffs = [f"{name}: run has {stored.get(name)!r}, now {identity[name]!r}"
                 for name in IDENTITY_FIELDS if stored.get(name) != identity[name]]
        if diffs:
            raise EvalError(f"--resume: settings differ from the original run in {out} ({'; '.join(diffs)}); "
                            "use the same settings or a new --out")
        return log.load()
    if run_file.exists() or (log.path.exists() and log.path.stat().st_size > 0):
        raise EvalError(f"{out} already holds an evaluation run; pass --resume to continue it or choose another --out")
    return []


def create_run_dir(config: EvalConfig, out: Path) -> None:
    """Create the directory of a new run and record its identity in ``run.json``."""
    out.mkdir(parents=True, exist_ok=True)
    report.write_json_atomic(out / RUN_FILE, {"identity": run_identity(config),
                                              "created": _dt.datetime.now().isoformat()})


def package_versions() -> Dict[str, Optional[str]]:
    """Versions of Python and the packages that matter for reproducing a run."""
    from importlib import metadata

    versions: Dict[str, Optional[str]] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("vpt-agent", "torch", "numpy", "gymnasium", "opencv-python-headless", "ray", "minerl",
                 "imageio", "imageio-ffmpeg"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


# ----------------------------------------------------------------------------- agent

def default_threads(config: EvalConfig) -> int:
    """CPU threads for the policy: the cores the local env worker processes (one busy core each) leave free."""
    cpus = os.cpu_count() or 1
    busy = config.num_envs if config.backend == "local" else 0
    return max(1, cpus - busy)


@contextlib.contextmanager
def _torch_threads(n: int):
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
    from .agent import VPTAgent

    dtype = config.dtype  # a dtype name; VPTAgent resolves it (agent.resolve_dtype)
    if config.zoo is not None:
        return VPTAgent.from_pretrained(config.zoo, device=config.device, dtype=dtype, seed=config.seed)
    if config.weights == "random":
        logger.warning("evaluating RANDOM weights: a smoke test, not a real evaluation")
        return VPTAgent.from_config(config.model, device=config.device, dtype=dtype, seed=config.seed)
    return VPTAgent.from_files(config.model, config.weights, device=config.device, dtype=dtype, seed=config.seed)


def _load_agent(config: EvalConfig):
    from .zoo import ZooError

    try:
        return build_agent(config)
    except (OSError, ValueError, KeyError, RuntimeError, ZooError) as err:
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise EvalError(f"cannot load the agent: {type(err).__name__}: {text}") from None


# ----------------------------------------------------------------------------- signals

class _Signals:
    """Turn SIGTERM into KeyboardInterrupt in the main thread, so both stop a run the same way."""

    def __enter__(self):
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGTERM, self._handle)
        return self

    @staticmethod
    def _handle(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)
        return False


# ----------------------------------------------------------------------------- the run

def _make_worker_factory(config: EvalConfig, spec: EnvSpec):
    if config.backend == "ray":
        return lambda slot: RayWorker(spec, name=f"env-{slot}", num_cpus=config.ray_cpus_per_env)
    return lambda slot: LocalWorker(spec, name=f"env-worker-{slot}")


def _init_ray(config: EvalConfig) -> bool:
    """Connect to (or start) Ray unless already initialised; returns whether we started it."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: Dict[str, Any] = {"runtime_env": ray_runtime_env(), "include_dashboard": False,
                              "log_to_driver": False}
    if config.ray_address:
        kwargs["address"] = config.ray_address
    else:
        kwargs["num_cpus"] = max(os.cpu_count() or 1, int(config.num_envs * config.ray_cpus_per_env + 0.999))
    ray.init(**kwargs)
    return True


def _write_summary(out: Path, config: EvalConfig, session: Mapping[str, Any], *, plot: bool) -> Dict[str, Any]:
    records = report.EpisodeLog(out / report.EPISODES_FILE).load()
    summary = report.build_summary(records, episodes_requested=config.episodes, max_retries=config.max_retries,
                                   config={**dataclasses.asdict(config), "out": str(out),
                                           "policy_label": policy_label(config)},
                                   versions=package_versions(), session=session)
    summary["env_note"] = ("embedded offline env (not Minecraft)" if config.env == EMBEDDED_ENV else
                           "MineRL (Minecraft)" if config.env == MINERL_ENV else "user-chosen env")
    report.write_json_atomic(out / report.SUMMARY_FILE, summary)
    if plot:
        title = f"{config.env} | {policy_label(config)} | n={summary['returns']['n']}"
        try:
            report.plot_returns([r for r in records if int(r["index"]) < config.episodes],
                                out / report.PLOT_FILE, title)
        except Exception as err:  # a plotting problem must not lose the summary
            logger.warning("could not write %s: %s", report.PLOT_FILE, err)
    return summary


def evaluate(config: Union[EvalConfig, Mapping[str, Any]]) -> Dict[str, Any]:
    """Run an evaluation and return its summary (also written to ``OUT/summary.json``).

    Raises :class:`EvalError` for bad settings and ``KeyboardInterrupt`` after an interrupt
    (Ctrl-C or SIGTERM), in which case the summary of the finished episodes was written first.
    """
    if not isinstance(config, EvalConfig):
        config = EvalConfig(**dict(config))
    config = validate(config)
    out = Path(config.out) if config.out else default_out_dir()
    config.out = str(out)
    existing = prepare_run_dir(config, out)
    status = report.episode_status([r for r in existing if int(r["index"]) < config.episodes], config.max_retries)
    tasks = [EpisodeTask(i, config.seed + i, status.attempts.get(i, 0)) for i in range(config.episodes)
             if i not in status.done and i not in status.gave_up]
    if existing:
        logger.info("resuming %s: %d episodes done, %d to run", out, len(status.done), len(tasks))
    session: Dict[str, Any] = {"started": _dt.datetime.now().isoformat(), "resumed": bool(existing),
                               "interrupted": False}
    agent = _load_agent(config) if tasks else None  # before creating anything: a bad model leaves no run dir
    if not config.resume:
        create_run_dir(config, out)
    if tasks:
        try:
            with _torch_threads(config.threads or default_threads(config)):
                session.update(_run_tasks(config, agent, out, tasks,
                                          [float(r["return"]) for r in status.done.values()]))
        except Exception as err:
            session["error"] = f"{type(err).__name__}: {err}"
            _write_summary(out, config, session, plot=False)  # what finished is still summarised
            raise
    summary = _write_summary(out, config, session, plot=True)
    if config.print_table:
        print(report.format_table(summary, out), flush=True)
    if session["interrupted"]:
        raise KeyboardInterrupt("evaluation interrupted; finished episodes and their summary are on disk")
    return summary


def _run_tasks(config: EvalConfig, agent: Any, out: Path, tasks: List[EpisodeTask],
               done_returns: List[float]) -> Dict[str, Any]:
    """Run the pending episodes; returns session info (throughput, interrupted flag)."""
    spec = EnvSpec(config.env, dict(config.env_kwargs), config.max_steps)
    log = report.EpisodeLog(out / report.EPISODES_FILE)
    progress = Progress(config.episodes, done_returns, config.progress)
    video = VideoRecorder(out / "videos", config.video) if config.video else None
    smoke = config.weights == "random"
    started_ray = False

    def on_record(record: Dict[str, Any]) -> None:
        record["smoke_test"] = smoke
        record["finished_at"] = _dt.datetime.now().isoformat(timespec="seconds")
        log.append(record)
        progress.record(record)

    def policy(obs_list, first):
        return agent.get_actions(obs_list, first, deterministic=config.deterministic)

    rollout = Rollout(policy, _make_worker_factory(config, spec), min(config.num_envs, len(tasks)), tasks,
                      on_record, max_retries=config.max_retries, step_timeout=config.step_timeout,
                      reset_timeout=config.reset_timeout, on_frame=video.frame if video else None,
                      on_episode_end=video.end if video else None)
    interrupted = False
    try:
        with _Signals():
            try:
                if config.backend == "ray":
                    started_ray = _init_ray(config)
                rollout.run()
            except KeyboardInterrupt:
                interrupted = True
                logger.warning("interrupted: finished episodes are in %s; continue with --resume", out)
    finally:
        log.close()
        progress.close()
        if video is not None:
            video.close()
        if started_ray:
            import ray

            ray.shutdown()
    return {**rollout.stats.session(), "interrupted": interrupted, "backend": config.backend,
            "num_envs": rollout.num_envs}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the process exit code."""
    config = config_from_args(argv)
    try:
        evaluate(config)
    except EvalError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RolloutAborted as err:
        print(f"error: run aborted: {err} (finished episodes are on disk)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished episodes and their summary are on disk; continue with --resume",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
