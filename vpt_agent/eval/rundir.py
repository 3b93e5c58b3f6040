"""The run directory: its identity (``run.json``), the checks of a new run or a resume, package versions."""
from __future__ import annotations

import datetime as _dt
import json
import platform
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import report
from .config import RANDOM_WEIGHTS, EvalConfig, EvalError
from .records import EpisodeRecord

RUN_FILE = "run.json"
# Settings that change what the episodes of a run are; --resume refuses to mix them.
IDENTITY_FIELDS = ("env", "env_kwargs", "seed", "model", "weights", "zoo", "max_steps", "deterministic", "dtype")


def run_identity(config: EvalConfig) -> Dict[str, Any]:
    """The settings that determine a run's episodes; a resume must match them."""
    return {name: getattr(config, name) for name in IDENTITY_FIELDS}


def policy_label(config: EvalConfig) -> str:
    """A human-readable name of the policy, marking random weights as a smoke test."""
    if config.zoo is not None:
        return f"zoo:{config.zoo}"
    if is_smoke_test(config):
        return f"RANDOM WEIGHTS (smoke test), config {config.model}"
    return f"{config.weights} (config {config.model})"


def is_smoke_test(config: EvalConfig) -> bool:
    """Whether the run evaluates untrained weights (``--weights random``)."""
    return config.weights == RANDOM_WEIGHTS


def default_out_dir() -> Path:
    """``runs/eval-<timestamp>`` under the current directory."""
    return Path("runs") / _dt.datetime.now().strftime("eval-%Y%m%d-%H%M%S")


def prepare_run_dir(config: EvalConfig, out: Path) -> List[EpisodeRecord]:
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
