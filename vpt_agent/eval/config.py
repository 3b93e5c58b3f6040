"""The settings of an evaluation run (:class:`EvalConfig`) and their validation.

Each field is one command-line flag: its default is the field's default and its help, choices and bounds are in
the field's metadata, from which :mod:`vpt_agent.eval.cli` generates the parser and :func:`validate` the checks.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from ..atomic import out_dir_problem
from ..cli import as_config, check_fields
from ..errors import VPTError, one_line
from .workers import EnvSpec, import_env_modules, make_env

MINERL_ENV = "vpt/MineRLHumanSurvival-v0"
EMBEDDED_ENV = "vpt/VoxelTreechop-v0"
RANDOM_WEIGHTS = "random"  # --weights random: untrained weights, a smoke test labelled as such everywhere
# Explicit limits. The episode list is built up front (~100 bytes an episode); a timeout is a poll() of at most
# 2**31-1 ms (~24.8 days); a seed must stay a valid seed for envs and torch after adding the episode index.
MAX_EPISODES = 1_000_000
MAX_TIMEOUT_S = 1_000_000.0
MAX_SEED = 2**32 - 1


class EvalError(VPTError, ValueError):
    """A user-facing error: bad arguments, missing files, a resume that does not match the run."""


def _opt(help: str, **meta: Any) -> Dict[str, Any]:
    """Field metadata: ``help``, and optionally ``short`` (e.g. ``-n``), ``choices``, ``minimum``,
    ``exclusive_minimum``, ``metavar``, ``cli=False`` (not a flag) or ``negate`` (a ``--no-X`` switch)."""
    return {"help": help, **meta}


@dataclass
class EvalConfig:
    """Settings of an evaluation run (one field per command-line flag)."""

    episodes: int = field(default=10, metadata=_opt(
        "episodes to record; exactly N are recorded, whatever K is", short="-n", minimum=1, maximum=MAX_EPISODES,
        metavar="N"))
    env: Optional[str] = field(default=None, metadata=_opt(
        f"Gymnasium id; 'module:id' imports module first (default {MINERL_ENV} when minerl is installed, "
        f"else the embedded {EMBEDDED_ENV})", metavar="ID"))
    protocol: Optional[str] = field(default=None, metadata=_opt(
        "evaluation preset of vpt_envs.protocols (vpt-rl, vpt-bc, voxel-treechop): sets the env, the episode length "
        "and the reward together; --env/--max-steps given explicitly override it and the report says so",
        metavar="NAME"))
    env_kwargs: Dict[str, Any] = field(default_factory=dict, metadata=_opt(
        "keyword arguments for gymnasium.make, as a JSON object, e.g. '{\"log_goal\": 5}'", metavar="JSON"))
    max_steps: Optional[int] = field(default=None, metadata=_opt(
        "truncate episodes after S steps (default: the env's own limit)", minimum=1, metavar="S"))
    model: Optional[str] = field(default=None, metadata=_opt("the .model config file", metavar="PATH"))
    weights: Optional[str] = field(default=None, metadata=_opt(
        f"the .weights/.safetensors file, or '{RANDOM_WEIGHTS}' for a smoke test with untrained weights "
        "(labelled as such everywhere)", metavar="PATH"))
    zoo: Optional[str] = field(default=None, metadata=_opt(
        "official model by name (python -m vpt_agent.zoo list), downloaded and cached on first use", metavar="NAME"))
    device: str = field(default="auto", metadata=_opt("where the policy runs", choices=("auto", "cpu", "cuda")))
    dtype: str = field(default="float32", metadata=_opt(
        "policy precision (bfloat16 is fast on GPUs and on CPUs with native bf16)", choices=("float32", "bfloat16")))
    compile: str = field(default="off", metadata=_opt(
        "compile the policy's CPU steps: 'on' (torch.compile, frozen weights; with --dtype bfloat16 on a CPU with "
        "AMX 2.4x eager fp32 at B=1) or 'max-autotune' (also autotuned matrix products: fp32 1.23x at B=1 on a 2-core "
        "AVX2 CPU); the first step of each group compiles for 1-2 min",
        choices=("off", "on", "max-autotune")))
    num_envs: int = field(default=1, metadata=_opt("env processes in parallel", short="-k", minimum=1, metavar="K"))
    pipeline: Optional[int] = field(default=None, metadata=_opt(
        "split the K envs into G groups, each with its own policy memory, so that one group's policy forward "
        "overlaps the other groups' env steps (default: 2 on a GPU, 1 = lock-step on a CPU; docs/evaluation.md)",
        minimum=1, metavar="G"))
    deterministic: bool = field(default=False, metadata=_opt("argmax actions instead of sampling"))
    seed: int = field(default=0, metadata=_opt("episode i uses env seed S+i; also seeds action sampling",
                                               minimum=0, maximum=MAX_SEED, metavar="S"))
    out: Optional[str] = field(default=None, metadata=_opt(
        "report directory (default runs/eval-<timestamp>)", metavar="DIR"))
    video: int = field(default=0, metadata=_opt(
        "MP4s of the first N episodes in DIR/videos/ (needs pip install 'vpt-agent[video]')", minimum=0,
        metavar="N"))
    record: Optional[str] = field(default=None, metadata=_opt(
        "write every episode as a VPT recording (NAME.mp4 + NAME.jsonl: full-resolution frames and the env actions "
        "sent) into DIR, readable by vpt_agent.data and python -m vpt_agent.train", metavar="DIR"))
    resume: bool = field(default=False, metadata=_opt("continue the run in --out"))
    backend: str = field(default="local", metadata=_opt("where the envs run", choices=("local", "ray")))
    ray_address: Optional[str] = field(default=None, metadata=_opt(
        "address of a Ray cluster (default: start a local one)", metavar="ADDR"))
    ray_cpus_per_env: float = field(default=1.0, metadata=_opt("CPUs reserved per env actor", exclusive_minimum=0,
                                                               metavar="C"))
    max_retries: int = field(default=2, metadata=_opt("retries of a crashed episode (same seed)", minimum=0,
                                                      metavar="R"))
    step_timeout: float = field(default=180.0, metadata=_opt("seconds after which a step counts as hung",
                                                             exclusive_minimum=0, maximum=MAX_TIMEOUT_S, metavar="T"))
    reset_timeout: float = field(default=600.0, metadata=_opt(
        "seconds after which a reset (incl. env start-up) counts as hung", exclusive_minimum=0, maximum=MAX_TIMEOUT_S,
        metavar="T"))
    threads: Optional[int] = field(default=None, metadata=_opt(
        "torch CPU threads for the policy (default: the CPUs the local env processes leave free, at least 1; "
        "oversubscribed OpenMP threads spin and can slow a step several times)", minimum=1, metavar="T"))
    progress: bool = field(default=True, metadata=_opt("no progress bar", negate=True))
    print_table: bool = field(default=True, metadata=_opt("print the summary table at the end", cli=False))


def default_env() -> str:
    """MineRL's HumanSurvival when minerl is importable, else the embedded env."""
    return MINERL_ENV if importlib.util.find_spec("minerl") is not None else EMBEDDED_ENV


def registered_id(env_id: Optional[str]) -> str:
    """The Gymnasium id of ``--env``: ``"module:id"`` -> ``"id"`` (the module is imported first); ``None`` -> ``""``."""
    return (env_id or "").split(":", 1)[-1]


def check_env_id(env_id: str) -> None:
    """Raise :class:`EvalError` unless ``env_id`` is a registered Gymnasium id (after imports)."""
    import gymnasium

    try:
        import_env_modules(env_id)
    except ImportError as err:
        raise EvalError(f"--env {env_id!r}: cannot import its module: {err}") from None
    if registered_id(env_id) not in gymnasium.registry:
        vpt_ids = sorted(i for i in gymnasium.registry if i.startswith("vpt/"))
        hint = f"; registered vpt ids: {', '.join(vpt_ids)}" if vpt_ids else ""
        raise EvalError(f"--env: unknown Gymnasium env id {env_id!r}{hint}")


def probe_env(spec: EnvSpec, timeout: Optional[float] = None) -> None:
    """Build (and close) the env once here, so a setup error (missing minerl, bad kwargs) is one clear
    error up front instead of a crash of every episode in the workers. Does not reset the env.

    Runs in a daemon thread so that a constructor or ``close`` that hangs costs ``timeout`` seconds and an
    :class:`EvalError`, not the evaluator (the abandoned thread cannot be killed, but it does not keep the process
    alive).
    """
    outcome: Dict[str, BaseException] = {}

    def probe() -> None:
        try:
            env = make_env(spec)
        except BaseException as err:  # any failure here is a configuration problem the user must fix
            outcome["create"] = err
            return
        try:
            env.close()
        except BaseException as err:
            outcome["close"] = err

    thread = threading.Thread(target=probe, name="vpt-env-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise EvalError(f"--env {spec.env_id!r}: creating and closing the env did not finish within {timeout:g}s "
                        "(--reset-timeout); the env hangs")
    for stage, err in outcome.items():
        raise EvalError(f"--env {spec.env_id!r}: cannot {stage} the env: {type(err).__name__}: {one_line(err)}")


def env_spec(config: EvalConfig, frame_size: Optional[Tuple[int, int]] = None) -> EnvSpec:
    """What the env workers of this run build; ``frame_size`` = the model's input (h, w), resized in the workers."""
    from .protocol import uses_protocol_env

    protocol = config.protocol if uses_protocol_env(config.protocol, config.env) else None
    return EnvSpec(config.env, dict(config.env_kwargs), config.max_steps, frame_size, protocol)


def pipeline_groups(config: EvalConfig, num_envs: int, device_type: str = "cpu") -> int:
    """G: ``--pipeline``, else 2 when the policy runs on a GPU and 1 (lock-step) on a CPU; never more than the envs.

    On a GPU a group's forward runs while the other group's envs step (H200, 1x, K=12, embedded env: 1,117 env
    steps/s in steady state with G = 2 vs 964 with G = 1, docs/evaluation.md). On a CPU the forward competes with
    the envs for the same cores, and lock-step made more env steps per second on the 2-core machines.
    """
    default = 2 if device_type == "cuda" else 1
    return max(1, min(config.pipeline or default, num_envs))


def validate(config: EvalConfig) -> EvalConfig:
    """Check a config and fill in defaults; raises :class:`EvalError` with a one-line message.

    Returns a new config: the env resolved, model/weights paths made absolute. Presets of settings
    (e.g. an evaluation protocol) belong before these checks, so that they are checked like any flag.
    """
    from .protocol import apply_protocol

    if not isinstance(config.env_kwargs, dict):
        raise EvalError(f"--env-kwargs must be a JSON object, got {config.env_kwargs!r}")
    config = dataclasses.replace(config, env_kwargs=dict(config.env_kwargs))
    check_fields(config, EvalError)
    config = apply_protocol(config)
    if "max_episode_steps" in config.env_kwargs:
        raise EvalError("--env-kwargs: give the time limit as --max-steps, not max_episode_steps")
    if config.ray_address is not None and config.backend != "ray":
        raise EvalError("--ray-address is used with --backend ray only")
    _validate_policy_source(config)
    if config.env is None:
        config.env = default_env()
    check_env_id(config.env)
    probe_env(env_spec(config), timeout=config.reset_timeout)
    if config.video:
        _check_importable("--video", ("imageio", "imageio_ffmpeg"), "video")
    if config.record is not None:
        _check_importable("--record", ("imageio_ffmpeg",), "video")
        problem = out_dir_problem(config.record, "--record")
        if problem:
            raise EvalError(problem)
        config.record = str(Path(config.record).resolve())
        if config.out is not None and Path(config.out).resolve() == Path(config.record):
            raise EvalError("--record must be another directory than --out (the report's own files live there)")
    if config.backend == "ray":
        _check_importable("--backend ray", ("ray",), "ray")
    return config


def _require_file(path: Optional[str], flag_name: str) -> None:
    if path is not None and not Path(path).is_file():
        raise EvalError(f"{flag_name}: file not found: {path}")


def _validate_policy_source(config: EvalConfig) -> None:
    if config.zoo is not None:
        if config.model is not None or config.weights is not None:
            raise EvalError("give either --zoo NAME or --model/--weights, not both")
        from ..zoo import ZooError, get_model

        try:
            get_model(config.zoo)
        except ZooError as err:
            raise EvalError(f"--zoo: {err}") from None
        return
    if config.weights is None:
        raise EvalError("no weights given: use --zoo NAME (see `python -m vpt_agent.zoo list`; fetch with "
                        "`python -m vpt_agent.zoo download NAME`) or --model PATH --weights PATH; "
                        f"--weights {RANDOM_WEIGHTS} runs an untrained smoke test")
    if config.model is None:
        raise EvalError("--model PATH (the .model config) is required with --weights")
    _require_file(config.model, "--model")
    config.model = str(Path(config.model).resolve())
    if config.weights != RANDOM_WEIGHTS:
        _require_file(config.weights, "--weights")
        config.weights = str(Path(config.weights).resolve())


def _check_importable(what: str, modules, extra: str) -> None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise EvalError(f"{what} needs {' and '.join(modules)} ({module} is missing): "
                            f"pip install 'vpt-agent[{extra}]'")


def config_from_mapping(values: Any) -> EvalConfig:
    """An :class:`EvalConfig` from a dict (or an EvalConfig); an unknown key is an :class:`EvalError` naming it,
    path-like values become strings (:func:`vpt_agent.cli.as_config`)."""
    return as_config(EvalConfig, values, EvalError)
