"""Model zoo: the official VPT models by name, with cached, resumable and verified downloads.

The registry lists the models published in the official README of openai/Video-Pre-Training. Every model is a pair
of files: a ``.model`` config (shared by all models of one width: ``foundation-model-1x.model``, ``2x.model``,
``foundation-model-3x.model``) and a ``.weights`` state dict.

>>> from vpt_agent import zoo
>>> model_path, weights_path = zoo.fetch("foundation-model-1x")   # doctest: +SKIP

Files are cached flat in ``~/.cache/vpt-agent`` (or ``$VPT_AGENT_CACHE``). A download goes to ``<file>.part``, is
resumed with an HTTP ``Range`` request after a dropped connection, is checked against the size the server announced,
and is renamed into place atomically. Its SHA-256 is recorded in ``manifest.json`` in the cache directory on first
download and checked again on every later load. ``VPT_AGENT_ZOO_URL`` replaces the official base URL (a mirror, an
``http://``/``file://`` URL, or a local directory); ``VPT_AGENT_OFFLINE=1`` never touches the network.

Command line: ``python -m vpt_agent.zoo list`` and ``python -m vpt_agent.zoo download NAME [NAME ...]``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import logging
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

try:  # POSIX only; without it concurrent downloads of one file are not serialised.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from .errors import VPTError

logger = logging.getLogger(__name__)

OFFICIAL_BASE_URL = "https://openaipublic.blob.core.windows.net/minecraft-rl/models"
ENV_CACHE = "VPT_AGENT_CACHE"
ENV_BASE_URL = "VPT_AGENT_ZOO_URL"
ENV_OFFLINE = "VPT_AGENT_OFFLINE"
DEFAULT_CACHE_DIR = "~/.cache/vpt-agent"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60.0
MAX_ATTEMPTS = 5  # per file and call; an attempt is retried only if the one before it made progress
RETRY_BACKOFF_S = 1.0
USER_AGENT = "vpt-agent-zoo/0.1 (+python urllib)"


class ZooError(VPTError):
    """A model could not be provided: network failure, bad cache entry, offline miss, or bad name."""


class UnknownModelError(ZooError, ValueError):
    """The requested name is not in the registry."""


class ChecksumMismatchError(ZooError):
    """A cached file no longer matches the size or SHA-256 recorded in the manifest."""


class _Retryable(Exception):
    """Internal: an attempt failed after receiving some bytes; another attempt resumes from the .part file."""


# --------------------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------------------

CONFIG_FILES: Dict[str, str] = {
    "1x": "foundation-model-1x.model",
    "2x": "2x.model",
    "3x": "foundation-model-3x.model",
}


@dataclass(frozen=True)
class ZooModel:
    """One official VPT model: a width class, a short training description and its two files."""

    name: str
    size: str
    trained_on: str
    weights_file: str

    @property
    def model_file(self) -> str:
        """File name of the ``.model`` config (shared by every model of the same width)."""
        return CONFIG_FILES[self.size]

    @property
    def model_url(self) -> str:
        """Official URL of the ``.model`` config."""
        return f"{OFFICIAL_BASE_URL}/{self.model_file}"

    @property
    def weights_url(self) -> str:
        """Official URL of the ``.weights`` state dict."""
        return f"{OFFICIAL_BASE_URL}/{self.weights_file}"


_BC = "behavioural cloning"
_RL = "RL fine-tuning toward a diamond pickaxe"
_MODELS: Tuple[ZooModel, ...] = (
    ZooModel("foundation-model-1x", "1x", f"{_BC} on ~70k h of IDM-labelled web video", "foundation-model-1x.weights"),
    ZooModel("foundation-model-2x", "2x", f"{_BC} on ~70k h of IDM-labelled web video", "foundation-model-2x.weights"),
    ZooModel("foundation-model-3x", "3x", f"{_BC} on ~70k h of IDM-labelled web video", "foundation-model-3x.weights"),
    ZooModel("bc-house-3x", "3x", "foundation 3x + BC on contractor house-building data", "bc-house-3x.weights"),
    ZooModel("bc-early-game-2x", "2x", "foundation 2x + BC on the early-game video subset", "bc-early-game-2x.weights"),
    ZooModel("bc-early-game-3x", "3x", "foundation 3x + BC on the early-game video subset", "bc-early-game-3x.weights"),
    ZooModel("rl-from-foundation-2x", "2x", f"foundation 2x + {_RL}", "rl-from-foundation-2x.weights"),
    ZooModel("rl-from-house-2x", "2x", f"house-building BC model + {_RL}", "rl-from-house-2x.weights"),
    ZooModel("rl-from-early-game-2x", "2x", f"early-game BC 2x + {_RL}", "rl-from-early-game-2x.weights"),
)
_BY_NAME: Dict[str, ZooModel] = {m.name: m for m in _MODELS}


def list_models() -> List[ZooModel]:
    """All registered models, in the order of the official README."""
    return list(_MODELS)


def model_names() -> List[str]:
    """Registered model names."""
    return [m.name for m in _MODELS]


def get_model(name: str) -> ZooModel:
    """Registry entry for ``name`` (case-insensitive); raises :class:`UnknownModelError` listing valid names."""
    key = str(name).strip().lower()
    if key not in _BY_NAME:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(model_names())}")
    return _BY_NAME[key]


def config_url(size: str) -> str:
    """Official URL of the ``.model`` config for width class ``size`` ('1x', '2x' or '3x')."""
    return f"{OFFICIAL_BASE_URL}/{_config_file(size)}"


def _config_file(size: str) -> str:
    key = str(size).strip().lower()
    if key not in CONFIG_FILES:
        raise UnknownModelError(f"unknown size class {size!r}; valid: {', '.join(CONFIG_FILES)}")
    return CONFIG_FILES[key]


# --------------------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$VPT_AGENT_CACHE`` if set, else ``~/.cache/vpt-agent``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE_DIR).expanduser()


def base_url() -> str:
    """Base URL that file names are resolved against (``$VPT_AGENT_ZOO_URL`` or the official one).

    A value without a scheme is taken as a local directory and turned into a ``file://`` URL.
    """
    raw = os.environ.get(ENV_BASE_URL, "").strip()
    if not raw:
        return OFFICIAL_BASE_URL
    if "://" not in raw:
        return Path(raw).expanduser().resolve().as_uri()
    return raw.rstrip("/")


def file_url(filename: str) -> str:
    """URL of ``filename`` under :func:`base_url`."""
    return f"{base_url()}/{urllib.parse.quote(filename)}"


def is_offline() -> bool:
    """True when ``$VPT_AGENT_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------------------------------------------
# Public fetch API
# --------------------------------------------------------------------------------------------------------------


def fetch(
    name: str, cache_dir: Optional[os.PathLike] = None, progress: bool = True, force: bool = False
) -> Tuple[Path, Path]:
    """Return local ``(model_path, weights_path)`` for zoo model ``name``, downloading what is not cached.

    Cached files are verified against the SHA-256 manifest. ``force=True`` discards cached copies first.
    Raises :class:`ZooError` (one-line message) on any failure.
    """
    entry = get_model(name)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    model_path = fetch_file(entry.model_file, cache, progress=progress, force=force)
    weights_path = fetch_file(entry.weights_file, cache, progress=progress, force=force)
    return model_path, weights_path


def fetch_config(size: str, cache_dir: Optional[os.PathLike] = None, progress: bool = True) -> Path:
    """Return the local path of the ``.model`` config of width class ``size`` ('1x', '2x', '3x')."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return fetch_file(_config_file(size), cache, progress=progress)


def fetch_file(filename: str, cache_dir: Optional[os.PathLike] = None, progress: bool = True,
               force: bool = False) -> Path:
    """Return the verified cached copy of ``filename`` (a zoo file name), downloading it if needed."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / filename
    if force and is_offline():
        raise ZooError(f"cannot re-download {filename}: offline mode is on ({ENV_OFFLINE}=1)")
    if force:
        _discard(cache, filename)
    if dest.is_file():
        return _verified(cache, filename)
    if is_offline():
        raise ZooError(
            f"{filename} is not in the cache {cache} and offline mode is on ({ENV_OFFLINE}=1); "
            f"download it without {ENV_OFFLINE} or copy the file there"
        )
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot create cache directory {cache}: {exc}") from exc
    with _file_lock(cache / f"{filename}.lock"):
        if not dest.is_file():  # another process may have finished it while we waited for the lock
            _download_and_record(cache, filename, progress)
            return dest
    return _verified(cache, filename)


# --------------------------------------------------------------------------------------------------------------
# Manifest and verification
# --------------------------------------------------------------------------------------------------------------

_VERIFIED: Dict[Path, Tuple[int, int, str]] = {}  # path -> (size, mtime_ns, sha256) checked in this process


def read_manifest(cache_dir: Optional[os.PathLike] = None) -> Dict[str, dict]:
    """Manifest entries ``{filename: {"sha256", "size", "url", "downloaded_at"}}`` of a cache directory."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = cache / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"cannot read the zoo manifest {path} ({exc}); delete it to re-record checksums") from exc
    return files


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def _update_manifest(cache: Path, filename: str, entry: Optional[dict]) -> None:
    """Set (or with ``None`` remove) one manifest entry; locked and written atomically."""
    with _file_lock(cache / f"{MANIFEST_NAME}.lock"):
        files = read_manifest(cache)
        if entry is None:
            files.pop(filename, None)
        else:
            files[filename] = entry
        tmp = cache / f"{MANIFEST_NAME}.tmp.{os.getpid()}"
        tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, cache / MANIFEST_NAME)


def _manifest_entry(path: Path, url: str, sha256: str) -> dict:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"sha256": sha256, "size": path.stat().st_size, "url": url, "downloaded_at": now}


def _verified(cache: Path, filename: str) -> Path:
    """Check a cached file against its manifest entry (recording one if the file has none)."""
    path = cache / filename
    stat = path.stat()
    entry = read_manifest(cache).get(filename)
    if entry is None:
        logger.info("recording the checksum of %s, which is cached but not in the manifest", path)
        sha = sha256_file(path)
        _update_manifest(cache, filename, _manifest_entry(path, "(pre-existing file)", sha))
        _VERIFIED[path] = (stat.st_size, stat.st_mtime_ns, sha)
        return path
    fix = f"delete it and download again (python -m vpt_agent.zoo download NAME --force, or rm {path})"
    if stat.st_size != entry.get("size"):
        raise ChecksumMismatchError(
            f"size mismatch for cached file {path}: the manifest records {entry.get('size')} bytes, "
            f"found {stat.st_size}; {fix}"
        )
    if _VERIFIED.get(path) == (stat.st_size, stat.st_mtime_ns, entry.get("sha256")):
        return path
    logger.debug("verifying the SHA-256 of %s", path)
    sha = sha256_file(path)
    if sha != entry.get("sha256"):
        raise ChecksumMismatchError(
            f"checksum mismatch for cached file {path}: SHA-256 {sha} but the manifest records "
            f"{entry.get('sha256')}; the file is corrupt or was modified; {fix}"
        )
    _VERIFIED[path] = (stat.st_size, stat.st_mtime_ns, sha)
    return path


def _discard(cache: Path, filename: str) -> None:
    """Forget a cached file: the file, its partial download and its manifest entry."""
    for path in (cache / filename, cache / f"{filename}.part"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    _VERIFIED.pop(cache / filename, None)
    if (cache / MANIFEST_NAME).is_file():
        _update_manifest(cache, filename, None)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (a no-op where ``fcntl`` is missing)."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------------------


def _download_and_record(cache: Path, filename: str, progress: bool) -> None:
    """Download into ``<file>.part``, record its checksum, then rename it into place."""
    url = file_url(filename)
    part = cache / f"{filename}.part"
    logger.info("downloading %s to %s", url, cache / filename)
    _download(url, part, progress, label=filename)
    _update_manifest(cache, filename, _manifest_entry(part, url, sha256_file(part)))
    os.replace(part, cache / filename)


def _download(url: str, part: Path, progress: bool, label: str) -> None:
    """Fill ``part`` with the body of ``url``, resuming after interrupted attempts."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            _download_attempt(url, part, progress, label)
            return
        except _Retryable as exc:
            if attempt == MAX_ATTEMPTS:
                kept = f"the partial file {part} is kept and the next run resumes it" if part.is_file() else "rerun"
                raise ZooError(f"download of {url} failed after {attempt} attempt(s) ({exc}); {kept}") from None
            delay = RETRY_BACKOFF_S * 2 ** (attempt - 1)
            logger.warning("%s; resuming in %.0f s (attempt %d of %d)", exc, delay, attempt + 1, MAX_ATTEMPTS)
            time.sleep(delay)


def _download_attempt(url: str, part: Path, progress: bool, label: str) -> None:
    """One request: append to ``part`` from its current size; raise :class:`_Retryable` after partial progress."""
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(url, offset, part)
    with response:
        start, total = _body_range(response, offset, url)
        if start != offset:
            logger.info("server did not honour the resume request for %s; starting over", url)
        received = _copy_body(response, part, start, total, progress, label)
    size = part.stat().st_size
    if total is not None and size < total:
        detail = f"connection closed after {size} of {total} bytes of {url}"
        if received == 0:
            raise ZooError(f"download failed: {detail}; rerun to resume from {part}")
        raise _Retryable(detail)
    if total is not None and size > total:
        part.unlink()
        raise ZooError(f"size mismatch for {url}: received {size} bytes but the server announced {total}")
    if total is None:
        logger.warning("server gave no size for %s; cannot check the %d bytes received", url, size)


def _open(url: str, offset: int, part: Path) -> http.client.HTTPResponse:
    """Send the (range) request; map failures to :class:`ZooError`."""
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            part.unlink()
            raise _Retryable(f"server refused to resume at byte {offset} of {url} (HTTP 416); restarting") from None
        raise ZooError(f"HTTP {exc.code} {exc.reason} for {url}") from None
    except urllib.error.URLError as exc:
        raise ZooError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, http.client.HTTPException) as exc:
        raise ZooError(f"cannot download {url}: {_describe(exc)}") from None


def _body_range(response, offset: int, url: str) -> Tuple[int, Optional[int]]:
    """(first byte offset of the body, total file size or None) from the response status and headers."""
    status = getattr(response, "status", None) or 200  # file:// responses carry no status
    length = response.headers.get("Content-Length")
    length_n = int(length) if length and length.strip().isdigit() else None
    if status != 206:
        return 0, length_n
    content_range = response.headers.get("Content-Range", "")
    try:
        unit, spec = content_range.split(" ", 1)
        span, total_s = spec.split("/", 1)
        start = int(span.split("-", 1)[0])
    except ValueError:
        raise ZooError(f"bad Content-Range {content_range!r} from {url}") from None
    if unit != "bytes" or start != offset:
        raise ZooError(f"server sent range {content_range!r} for a request from byte {offset} of {url}")
    total = int(total_s) if total_s.strip().isdigit() else None
    if total is None and length_n is not None:
        total = start + length_n
    return start, total


def _copy_body(response, part: Path, start: int, total: Optional[int], progress: bool, label: str) -> int:
    """Write the body to ``part`` (appending when ``start`` > 0); return the bytes received."""
    from tqdm.auto import tqdm

    received = 0
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
               disable=not progress, leave=True)
    try:
        with open(part, "ab" if start else "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    if received:
                        raise _Retryable(f"connection lost after {start + received} bytes: {_describe(exc)}")
                    raise ZooError(f"download of {label} failed: {_describe(exc)}") from None
                if not chunk:
                    return received
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def _is_cached(entry: ZooModel, cache: Path) -> bool:
    return (cache / entry.model_file).is_file() and (cache / entry.weights_file).is_file()


def _format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    header = ["name", "size", "trained on", "cached"] + (["model url", "weights url"] if args.urls else [])
    rows = [header]
    for m in list_models():
        row = [m.name, m.size, m.trained_on, "yes" if _is_cached(m, cache) else "no"]
        rows.append(row + ([m.model_url, m.weights_url] if args.urls else []))
    print(_format_table(rows))
    print(f"\ncache: {cache}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    names = model_names() if args.names == ["all"] else args.names
    entries = [get_model(n) for n in names]  # fail on a bad name before downloading anything
    for entry in entries:
        model_path, weights_path = fetch(entry.name, args.cache_dir, progress=not args.no_progress, force=args.force)
        print(f"{entry.name}: {model_path} {weights_path}")
    return 0


_CACHE_HELP = f"cache directory (default ${ENV_CACHE} or {DEFAULT_CACHE_DIR})"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vpt_agent.zoo", description="Official VPT models by name.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the registered models")
    p_list.add_argument("--urls", action="store_true", help="also show the official file URLs")
    p_list.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    p_list.set_defaults(func=_cmd_list)
    p_dl = sub.add_parser("download", help="download models into the cache (or verify cached copies)")
    p_dl.add_argument("names", nargs="+", metavar="NAME", help="model name(s) from `list`, or `all`")
    p_dl.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    p_dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_dl.add_argument("--force", action="store_true", help="discard cached copies and download again")
    p_dl.set_defaults(func=_cmd_download)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; returns the exit status (errors are one line on stderr)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
