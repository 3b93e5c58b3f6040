"""The run directory: its identity (``run.json``), its lock, the checks of a new run or a resume, package versions.

A run directory is used by one evaluator at a time: :func:`locked_run_dir` holds an exclusive lock on
``DIR/.lock`` (``filelock``: ``fcntl`` on POSIX, ``msvcrt`` on Windows, released by the OS when the process dies,
even on SIGKILL) for the whole run. ``run.json`` records the settings that define the run and a fingerprint (size
and SHA-256) of the model and weights files, so ``--resume`` refuses to mix two networks in one report.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from ..atomic import TEMP_SUFFIX, out_dir_problem
from . import report
from .config import RANDOM_WEIGHTS, EvalConfig, EvalError
from .records import EpisodeRecord

logger = logging.getLogger(__name__)

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
_REPORT_FILES = (report.SUMMARY_FILE, report.PLOT_FILE, report.ITEMS_PLOT_FILE)  # rebuilt from episodes.jsonl
_OWN_FILES = (RUN_FILE, report.EPISODES_FILE, *_REPORT_FILES)
# Temporary files of earlier versions (fixed names); current ones are ".<name>.<random>.tmp" (atomic.atomic_path).
_LEGACY_TEMPS = tuple(name + TEMP_SUFFIX for name in (RUN_FILE, report.SUMMARY_FILE, report.EPISODES_FILE))
# Settings that change what the episodes of a run are; --resume refuses to mix them.
IDENTITY_FIELDS = ("env", "env_kwargs", "seed", "model", "weights", "zoo", "max_steps", "deterministic", "dtype",
                   "protocol")


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


# ----------------------------------------------------------------------------- file fingerprints

Fingerprint = Dict[str, Any]  # {"path": str, "size": int, "sha256": str}


def file_fingerprint(path: os.PathLike) -> Fingerprint:
    """Size and SHA-256 of a file (read in 1 MiB blocks: about 1 s per GB)."""
    from ..zoo import sha256_file

    path = Path(path)
    try:
        return {"path": str(path), "size": path.stat().st_size, "sha256": sha256_file(path)}
    except OSError as err:
        raise EvalError(f"cannot read {path}: {err.strerror or err}") from None


def policy_files(config: EvalConfig) -> Dict[str, Path]:
    """The files that define the policy: ``model`` and (unless random) ``weights``; a zoo entry's cached files
    (fetched, i.e. downloaded first if they are not cached yet)."""
    if config.zoo is not None:
        from ..zoo import ZooError, fetch

        try:
            model, weights = fetch(config.zoo, progress=config.progress, kind="policy")
        except ZooError as err:
            raise EvalError(f"--zoo {config.zoo}: {err}") from None
        return {"model": Path(model), "weights": Path(weights)}
    files = {"model": Path(config.model)} if config.model else {}
    if config.weights and not is_smoke_test(config):
        files["weights"] = Path(config.weights)
    return files


def fingerprints(config: EvalConfig) -> Dict[str, Fingerprint]:
    """:func:`file_fingerprint` of each of :func:`policy_files`."""
    return {role: file_fingerprint(path) for role, path in policy_files(config).items()}


def _fingerprint_diffs(stored: Mapping[str, Any], now: Mapping[str, Fingerprint]) -> List[str]:
    diffs = []
    for role in sorted(set(stored) | set(now)):
        old, new = stored.get(role), now.get(role)
        if not isinstance(old, dict) or new is None:
            diffs.append(f"{role} file: run has {old and old.get('path')!r}, now {new and new['path']!r}")
        elif (old.get("size"), old.get("sha256")) != (new["size"], new["sha256"]):
            diffs.append(f"the {role} file {new['path']} changed since the run started (size {old.get('size')} -> "
                         f"{new['size']} bytes, sha256 {str(old.get('sha256'))[:12]}... -> {new['sha256'][:12]}...)")
    return diffs


# ----------------------------------------------------------------------------- checks

def check_out_path(out: Path, what: str = "--out") -> None:
    """``out`` must be a directory or not exist yet (creatable later): one-line :class:`EvalError` otherwise."""
    problem = out_dir_problem(out, what)
    if problem:
        raise EvalError(problem)


def read_run_file(out: Path) -> Optional[Dict[str, Any]]:
    """``run.json`` of ``out`` (``None`` if there is none); a corrupt one is a one-line :class:`EvalError`."""
    path = out / RUN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise EvalError(f"{path} is corrupt or unreadable ({type(err).__name__}: {err}); it records which settings "
                        "the run used, so it cannot be resumed: restore the file or choose another --out") from None
    if not isinstance(data, dict) or not isinstance(data.get("identity"), dict) or \
            not isinstance(data.get("files", {}), dict):
        raise EvalError(f"{path} is not an evaluation run file (no 'identity' object); restore it or choose "
                        "another --out")
    return data


def prepare_run_dir(config: EvalConfig, out: Path, files: Optional[Mapping[str, Fingerprint]] = None, *,
                    repair: bool = True) -> List[EpisodeRecord]:
    """Check the run directory; returns the episode records already on disk. With ``repair=False`` it writes
    nothing (for a look before taking the lock); ``repair`` removes a truncated last line of the log, so use it
    only while holding the lock.

    A new run refuses a directory that already holds episodes. ``--resume`` refuses a directory whose run used
    different settings (seed, model, env, ...) or whose model/weights files (``files``, see :func:`fingerprints`)
    changed; an existing directory with no ``run.json`` and no episodes (a run killed before it wrote ``run.json``)
    is resumed as a new run, a directory that does not exist is refused (a mistyped ``--out``).
    """
    check_out_path(out)
    run = read_run_file(out)
    if run is None:  # a run writes run.json before any report file: these belong to something else
        foreign = [name for name in _REPORT_FILES if (out / name).exists()]
        if foreign:
            raise EvalError(f"--out {out} holds {foreign[0]} but no {RUN_FILE}: it is not an evaluation run, and "
                            "its files would be replaced; choose another --out")
    log = report.EpisodeLog(out / report.EPISODES_FILE)
    records = log.load(repair=repair)
    if config.resume:
        if not out.is_dir():
            raise EvalError(f"--resume: {out} is not an evaluation run directory (it does not exist)")
        if run is None:
            if records:
                raise EvalError(f"--resume: {out} holds episodes but no {RUN_FILE}; cannot tell which settings "
                                "they were run with (choose another --out)")
            logger.info("--resume: %s has no run yet; starting a new run there", out)
            return []
        stored = run["identity"]
        identity = run_identity(config)
        diffs = [f"{name}: run has {stored.get(name)!r}, now {identity[name]!r}"
                 for name in IDENTITY_FIELDS if stored.get(name) != identity[name]]
        if files is not None:
            if "files" in run:
                diffs += _fingerprint_diffs(run["files"], files)
            else:
                logger.warning("%s predates file fingerprints: cannot check that the model and weights files are "
                               "unchanged", out / RUN_FILE)
        if diffs:
            raise EvalError(f"--resume: {'; '.join(diffs)} (in {out}); use the same settings and files, or a new "
                            "--out")
        return records
    if run is not None or records:
        raise EvalError(f"{out} already holds an evaluation run; pass --resume to continue it or choose another --out")
    return []


def create_run_dir(config: EvalConfig, out: Path, files: Optional[Mapping[str, Fingerprint]] = None) -> None:
    """Create the directory of a new run and record its identity (and file fingerprints) in ``run.json``."""
    out.mkdir(parents=True, exist_ok=True)
    data: Dict[str, Any] = {"identity": run_identity(config), "created": _dt.datetime.now().isoformat()}
    if files is not None:
        data["files"] = dict(files)
    if config.protocol is not None:
        from .protocol import get

        data["protocol"] = get(config.protocol).to_dict()
    report.write_json_atomic(out / RUN_FILE, data)


def remove_stale_temps(out: Path) -> None:
    """Delete temporary files that killed writers left in ``out`` (call only while holding the lock)."""
    names = set(_LEGACY_TEMPS)
    for path in out.iterdir():
        own = any(path.name.startswith(f".{name}.") for name in _OWN_FILES)
        if path.name in names or (own and path.name.endswith(TEMP_SUFFIX)):
            with contextlib.suppress(OSError):
                path.unlink()
                logger.info("removed %s (left by an interrupted write)", path)


@contextlib.contextmanager
def locked_run_dir(out: Path, what: str = "--out") -> Iterator[Path]:
    """Hold the exclusive lock of run directory ``out`` (created if needed) for the ``with`` block.

    Another evaluator on the same ``out`` gets a one-line :class:`EvalError` at once instead of duplicating
    episodes. The lock file stays (deleting it would let two processes lock two different files).
    """
    from filelock import FileLock, Timeout

    check_out_path(out, what)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EvalError(f"{what} {out}: cannot create the directory: {err.strerror or err}") from None
    lock = FileLock(str(out / LOCK_FILE), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise EvalError(f"{what} {out} is in use by another evaluation (it holds {out / LOCK_FILE}); wait for it "
                        f"to finish or choose another {what}") from None
    except OSError as err:
        raise EvalError(f"{what} {out}: cannot create the lock file: {err.strerror or err}") from None
    try:
        remove_stale_temps(out)
        yield out
    finally:
        lock.release()


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
