"""Model zoo: the official VPT models by name, with a verified cache; plus models bundled with the package.

The catalogue lists the models published in the official README of openai/Video-Pre-Training: nine policies (each a
``.weights`` state dict plus the ``.model`` config of its width, which all models of that width share:
``foundation-model-1x.model``, ``2x.model``, ``foundation-model-3x.model``) and the inverse dynamics model
``4x-idm``. ``voxel-treechop-demo`` is bundled: its files are package data and need no download.

>>> from vpt_agent import zoo
>>> model_path, weights_path = zoo.fetch("foundation-model-1x")   # doctest: +SKIP

Files are cached flat in ``~/.cache/vpt-agent`` (or ``$VPT_AGENT_CACHE``; created with mode 0700). Downloads are
done by :mod:`vpt_agent.download` (resumable, bounded, refusing encoded/HTML bodies). A finished download is
checked before it is trusted: its size against the pinned table (:data:`PINNED`) and the per-file limit, and its
content (a ``.weights`` file must be a well-formed torch zip, a ``.model`` file a safe plain-data pickle holding
``model.args.net.args``). Only then is its SHA-256 recorded in ``manifest.json`` and the file renamed into place;
every later load checks size and SHA-256 again. ``VPT_AGENT_ZOO_URL`` replaces the official location (a mirror,
an ``http://``/``file://`` URL, possibly signed with a query string, or a local directory);
``VPT_AGENT_OFFLINE=1`` never touches the network.

Command line: ``python -m vpt_agent.zoo list`` and ``python -m vpt_agent.zoo download NAME [NAME ...]``.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import stat
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import download
from .atomic import atomic_path
from .cli import OneLineErrorParser
from .config import VPT_SIZES
from .errors import VPTError
from .file_checks import MAX_MODEL_BYTES, GiB, ModelFileError, WeightsFileError, check_weights_file, read_net_args

logger = logging.getLogger(__name__)

OFFICIAL_ROOT = "https://openaipublic.blob.core.windows.net/minecraft-rl"
OFFICIAL_BASE_URL = f"{OFFICIAL_ROOT}/models"  # the policies; the IDM is under {OFFICIAL_ROOT}/idm
ENV_CACHE = "VPT_AGENT_CACHE"
ENV_BASE_URL = "VPT_AGENT_ZOO_URL"
ENV_OFFLINE = "VPT_AGENT_OFFLINE"
DEFAULT_CACHE_DIR = "~/.cache/vpt-agent"
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 1 << 20
#: Largest ``.weights`` download accepted (the largest official file, foundation-model-3x, is about 2.1 GB).
MAX_ZOO_WEIGHTS_BYTES = 4 * GiB
#: Directory of the bundled models' files (package data, see setup.cfg).
ASSETS_DIR = Path(__file__).resolve().parent / "assets"


class ZooError(VPTError):
    """A model could not be provided: network failure, bad cache entry, offline miss, or bad name."""


class UnknownModelError(ZooError, ValueError):
    """The requested name is not in the catalogue."""


class ChecksumMismatchError(ZooError):
    """A cached file does not match its recorded (or pinned) size or SHA-256, or its content is invalid."""


# --------------------------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------------------------

#: The ``.model`` config of each policy width class (keys: the sizes of :data:`vpt_agent.config.VPT_SIZES`).
CONFIG_FILES: Dict[str, str] = {
    "1x": "foundation-model-1x.model",
    "2x": "2x.model",
    "3x": "foundation-model-3x.model",
}

#: Known ``(size in bytes, SHA-256)`` of official files; ``None`` where not known. A value here is checked before a
#: download is recorded and on every verification. The table is empty on purpose: the files could not be
#: downloaded where this package was written, so no size or hash could be established from the files themselves
#: (the official README publishes neither). Fill it only from a trusted copy, e.g. from the ``size``/``sha256``
#: that a cache's ``manifest.json`` recorded for a download whose content check passed.
PINNED: Dict[str, Tuple[Optional[int], Optional[str]]] = {}


@dataclass(frozen=True)
class ZooModel:
    """One catalogue entry: a ``.model`` config and a ``.weights`` state dict, official or bundled.

    ``kind`` is ``"policy"`` (an agent, :class:`vpt_agent.VPTAgent`) or ``"idm"`` (an inverse dynamics model);
    ``size`` is the width class (``"1x"``..``"3x"`` for policies); ``source`` is ``"official"`` (downloaded from
    ``OFFICIAL_ROOT/<folder>/``) or ``"bundled"`` (files in :data:`ASSETS_DIR`, no download).
    """

    name: str
    size: str
    trained_on: str
    weights_file: str
    config_file: Optional[str] = None  # default: the shared config of the policy width class (CONFIG_FILES)
    kind: str = "policy"
    source: str = "official"
    folder: str = "models"

    @property
    def model_file(self) -> str:
        """File name of the ``.model`` config."""
        return self.config_file or CONFIG_FILES[self.size]

    @property
    def bundled(self) -> bool:
        return self.source == "bundled"

    @property
    def model_url(self) -> str:
        """Official URL of the ``.model`` config (a ``file://`` URL for bundled models)."""
        return self._url(self.model_file)

    @property
    def weights_url(self) -> str:
        """Official URL of the ``.weights`` state dict (a ``file://`` URL for bundled models)."""
        return self._url(self.weights_file)

    def _url(self, filename: str) -> str:
        if self.bundled:
            return (ASSETS_DIR / filename).as_uri()
        return f"{OFFICIAL_ROOT}/{self.folder}/{filename}"


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
    ZooModel("4x-idm", "4x", "inverse dynamics model (labels actions from video), contractor data",
             "4x_idm.weights", config_file="4x_idm.model", kind="idm", folder="idm"),
    ZooModel("voxel-treechop-demo", "small", "BC on scripted tree-chopping in vpt/VoxelTreechop-v0 (bundled)",
             "voxel-treechop-demo.weights", config_file="voxel-treechop-demo.model", source="bundled"),
)
_BY_NAME: Dict[str, ZooModel] = {m.name: m for m in _MODELS}
_KIND_NAMES = {"policy": "a policy (an agent)", "idm": "an inverse dynamics model"}


@dataclass(frozen=True)
class ZooFile:
    """A downloadable file: where it lives officially, what it must be, and its limits."""

    name: str
    official_url: str
    kind: str  # "model" or "weights"

    @property
    def max_bytes(self) -> int:
        return MAX_MODEL_BYTES if self.kind == "model" else MAX_ZOO_WEIGHTS_BYTES

    @property
    def pinned(self) -> Tuple[Optional[int], Optional[str]]:
        return PINNED.get(self.name, (None, None))


def _catalogue_files() -> Dict[str, ZooFile]:
    files: Dict[str, ZooFile] = {}
    for m in _MODELS:
        if not m.bundled:
            files[m.model_file] = ZooFile(m.model_file, m.model_url, "model")
            files[m.weights_file] = ZooFile(m.weights_file, m.weights_url, "weights")
    return files


_FILES: Dict[str, ZooFile] = _catalogue_files()


def list_models() -> List[ZooModel]:
    """All catalogue entries: the official policies in the order of the official README, the IDM, bundled ones."""
    return list(_MODELS)


def model_names() -> List[str]:
    """Catalogue names."""
    return [m.name for m in _MODELS]


def get_model(name: str, kind: Optional[str] = None) -> ZooModel:
    """Catalogue entry for ``name`` (case-insensitive); raises :class:`UnknownModelError` listing valid names.

    With ``kind`` (``"policy"`` or ``"idm"``), an entry of another kind is refused too, naming what it is.
    """
    key = str(name).strip().lower()
    valid = [m.name for m in _MODELS if kind is None or m.kind == kind]
    if key not in _BY_NAME:
        raise UnknownModelError(f"unknown model {str(name)[:80]!r}; valid names: {', '.join(valid)}")
    entry = _BY_NAME[key]
    if kind is not None and entry.kind != kind:
        raise UnknownModelError(f"{entry.name} is {_KIND_NAMES.get(entry.kind, entry.kind)}, not "
                                f"{_KIND_NAMES.get(kind, kind)}; valid names here: {', '.join(valid)}")
    return entry


def config_url(size: str) -> str:
    """Official URL of the ``.model`` config for policy width class ``size`` ('1x', '2x' or '3x')."""
    key = str(size).strip().lower()
    if key not in VPT_SIZES:
        raise UnknownModelError(f"unknown size class {str(size)[:20]!r}; valid: {', '.join(VPT_SIZES)}")
    return f"{OFFICIAL_BASE_URL}/{CONFIG_FILES[key]}"


def _zoo_file(filename: str) -> ZooFile:
    """The catalogue file ``filename``; anything else (``../x``, a path, an unknown name) is refused."""
    entry = _FILES.get(filename) if isinstance(filename, str) else None
    if entry is None:
        raise UnknownModelError(f"{str(filename)[:80]!r} is not a zoo file name; valid: {', '.join(_FILES)}")
    return entry


# --------------------------------------------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$VPT_AGENT_CACHE`` if set, else ``~/.cache/vpt-agent``."""
    return Path(os.environ.get(ENV_CACHE) or DEFAULT_CACHE_DIR).expanduser()


def base_url() -> Optional[str]:
    """The mirror base URL from ``$VPT_AGENT_ZOO_URL`` (None: the official locations).

    A value without a scheme is taken as a local directory and turned into a ``file://`` URL.
    """
    raw = os.environ.get(ENV_BASE_URL, "").strip()
    if not raw:
        return None
    if "://" not in raw:
        return Path(raw).expanduser().resolve().as_uri()
    return raw


def file_url(filename: str) -> str:
    """Where ``filename`` is downloaded from: ``<mirror>/<filename>`` (a query string kept), else official."""
    entry = _zoo_file(filename)
    mirror = base_url()
    return download.join_url(mirror, filename) if mirror else entry.official_url


def is_offline() -> bool:
    """True when ``$VPT_AGENT_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in {"1", "true", "yes", "on"}


# --------------------------------------------------------------------------------------------------------------
# Public fetch API
# --------------------------------------------------------------------------------------------------------------


def fetch(
    name: str, cache_dir: Optional[os.PathLike] = None, progress: bool = True, force: bool = False,
    kind: Optional[str] = None,
) -> Tuple[Path, Path]:
    """Return local ``(model_path, weights_path)`` for catalogue entry ``name``, downloading what is not cached.

    Bundled entries return their package-data paths (nothing is downloaded or cached). Cached files are verified
    against the manifest. ``force=True`` discards cached copies first. ``kind="policy"`` (or ``"idm"``) refuses
    an entry of the other kind before anything is downloaded. Raises :class:`ZooError` (one line).
    """
    entry = get_model(name, kind)
    if entry.bundled:
        return _bundled_path(entry.model_file), _bundled_path(entry.weights_file)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    model_path = fetch_file(entry.model_file, cache, progress=progress, force=force)
    weights_path = fetch_file(entry.weights_file, cache, progress=progress, force=force)
    return model_path, weights_path


def fetch_file(filename: str, cache_dir: Optional[os.PathLike] = None, progress: bool = True,
               force: bool = False) -> Path:
    """Return the verified cached copy of catalogue file ``filename``, downloading it if needed."""
    zfile = _zoo_file(filename)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = cache / filename
    if force and is_offline():
        raise ZooError(f"cannot re-download {filename}: offline mode is on ({ENV_OFFLINE}=1)")
    if not force and _exists(dest):
        return _verified(cache, zfile)
    if is_offline():
        raise ZooError(
            f"{filename} is not in the cache {cache} and offline mode is on ({ENV_OFFLINE}=1); "
            f"download it without {ENV_OFFLINE} or copy the file there"
        )
    _make_cache(cache)
    with _lock(cache / f"{filename}.lock"):
        if force:
            _discard(cache, filename)
        if not _exists(dest):  # another process may have finished it while we waited for the lock
            _download_and_record(cache, zfile, progress)
            return dest
    return _verified(cache, zfile)


def _bundled_path(filename: str) -> Path:
    path = ASSETS_DIR / filename
    if not path.is_file():
        raise ZooError(f"the bundled file {path} is missing from this installation; reinstall vpt-agent "
                       "(it is package data)")
    return path


def _exists(path: Path) -> bool:
    return os.path.lexists(path)


def _make_cache(cache: Path) -> None:
    """Create the cache directory private to the user (0700); an existing one is used as it is."""
    try:
        cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot create cache directory {cache}: {exc.strerror or exc}") from None
    if not cache.is_dir():
        raise ZooError(f"the cache path {cache} is not a directory")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock (``filelock``: fcntl on POSIX, msvcrt on Windows)."""
    from filelock import FileLock

    with FileLock(str(path)):
        yield


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
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError(f"larger than {MAX_MANIFEST_BYTES:,} bytes")
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, dict):
            raise TypeError("'files' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ZooError(f"cannot read the zoo manifest {path} ({exc}); delete it to re-record checksums") from None
    return files


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(download.CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def _update_manifest(cache: Path, filename: str, entry: Optional[dict]) -> None:
    """Set (or with ``None`` remove) one manifest entry; locked and written atomically."""
    with _lock(cache / f"{MANIFEST_NAME}.lock"):
        files = read_manifest(cache)
        if entry is None:
            files.pop(filename, None)
        else:
            files[filename] = entry
        with atomic_path(cache / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps({"version": MANIFEST_VERSION, "files": files}, indent=2, sort_keys=True) + "\n")


def _manifest_entry(size: int, url: str, sha256: str) -> dict:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return {"sha256": sha256, "size": size, "url": url, "downloaded_at": now}


def _force_hint(zfile: ZooFile, path: Path) -> str:
    names = [m.name for m in _MODELS if zfile.name in (m.model_file, m.weights_file)]
    return (f"delete it and download again (python -m vpt_agent.zoo download {names[0] if names else 'NAME'} "
            f"--force, or rm {path})")


def _regular_size(path: Path, zfile: ZooFile) -> int:
    """Size of ``path``, which must be a regular file (a symlink to one is fine) within the file's limit."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ZooError(f"cannot read cached file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ChecksumMismatchError(f"cached file {path} is not a regular file; {_force_hint(zfile, path)}")
    if st.st_size > zfile.max_bytes:
        raise ChecksumMismatchError(f"cached file {path} is {st.st_size:,} bytes, more than the {zfile.max_bytes:,}-"
                                    f"byte limit for this file; {_force_hint(zfile, path)}")
    return st.st_size


def _check_content(path: Path, zfile: ZooFile, size: int, sha: Optional[str], origin: str) -> None:
    """What a file must be before its checksum is trusted: pinned size/hash, then a structural content check."""
    want_size, want_sha = zfile.pinned
    if want_size is not None and size != want_size:
        raise ChecksumMismatchError(f"{origin} is {size:,} bytes, but {zfile.name} is known to be "
                                    f"{want_size:,} bytes")
    if want_sha is not None and sha is not None and sha != want_sha:
        raise ChecksumMismatchError(f"{origin} has SHA-256 {sha}, but {zfile.name} is known to have "
                                    f"{want_sha}")
    try:
        if zfile.kind == "weights":
            fmt = check_weights_file(path)
            if fmt == "safetensors":
                raise WeightsFileError(f"{path} is a .safetensors file, not the official torch .weights")
        else:
            read_net_args(path)
    except (ModelFileError, WeightsFileError) as exc:
        raise ChecksumMismatchError(f"{origin} is not a valid {zfile.kind} file: {exc}") from None


def _verified(cache: Path, zfile: ZooFile) -> Path:
    """Check a cached file against its manifest entry (recording one, after a content check, if it has none)."""
    path = cache / zfile.name
    size = _regular_size(path, zfile)
    stat_key = (size, os.stat(path).st_mtime_ns)
    entry = read_manifest(cache).get(zfile.name)
    fix = _force_hint(zfile, path)
    if entry is None:
        logger.info("recording the checksum of %s, which is cached but not in the manifest", path)
        sha = sha256_file(path)
        try:
            _check_content(path, zfile, size, sha, f"the cached file {path}")
        except ChecksumMismatchError as exc:
            raise ChecksumMismatchError(f"{exc}; {fix}") from None
        _update_manifest(cache, zfile.name, _manifest_entry(size, "(pre-existing file)", sha))
        _VERIFIED[path] = (*stat_key, sha)
        return path
    if size != entry.get("size"):
        raise ChecksumMismatchError(
            f"size mismatch for cached file {path}: the manifest records {entry.get('size')} bytes, "
            f"found {size}; {fix}"
        )
    if _VERIFIED.get(path) == (*stat_key, entry.get("sha256")):
        return path
    logger.debug("verifying the SHA-256 of %s", path)
    sha = sha256_file(path)
    if sha != entry.get("sha256"):
        raise ChecksumMismatchError(
            f"checksum mismatch for cached file {path}: SHA-256 {sha} but the manifest records "
            f"{entry.get('sha256')}; the file is corrupt or was modified; {fix}"
        )
    try:  # a manifest written by an older version may have recorded a file that was never valid
        _check_content(path, zfile, size, sha, f"the cached file {path}")
    except ChecksumMismatchError as exc:
        raise ChecksumMismatchError(f"{exc}; {fix}") from None
    _VERIFIED[path] = (*stat_key, sha)
    return path


def _discard(cache: Path, filename: str) -> None:
    """Forget a cached file: the file, its partial download and its manifest entry."""
    with contextlib.suppress(FileNotFoundError):
        (cache / filename).unlink()
    download.discard(cache / f"{filename}.part")
    _VERIFIED.pop(cache / filename, None)
    if (cache / MANIFEST_NAME).is_file():
        _update_manifest(cache, filename, None)


# --------------------------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------------------------


def _download_and_record(cache: Path, zfile: ZooFile, progress: bool) -> None:
    """Download into ``<file>.part``, check it, record its checksum, then rename it into place."""
    url = file_url(zfile.name)
    part = cache / f"{zfile.name}.part"
    logger.info("downloading %s to %s", download.redact(url), cache / zfile.name)
    try:
        download.download(url, part, zfile.max_bytes, expected_size=zfile.pinned[0], progress=progress,
                          label=zfile.name)
    except download.DownloadError as exc:
        raise ZooError(str(exc)) from None
    size = part.stat().st_size
    sha = sha256_file(part)
    try:
        _check_content(part, zfile, size, sha, f"the download of {download.redact(url)}")
    except ChecksumMismatchError as exc:
        download.discard(part)
        raise ZooError(f"{exc}; nothing was recorded (the server sent something else: an error page, a truncated "
                       "or a different file?)") from None
    _update_manifest(cache, zfile.name, _manifest_entry(size, download.redact(url), sha))
    os.replace(part, cache / zfile.name)
    download.discard(part)  # the resume record
    _VERIFIED[cache / zfile.name] = (size, os.stat(cache / zfile.name).st_mtime_ns, sha)


# --------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------


def _cached_state(entry: ZooModel, cache: Path) -> str:
    if entry.bundled:
        return "bundled"
    return "yes" if (cache / entry.model_file).is_file() and (cache / entry.weights_file).is_file() else "no"


def _format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cmd_list(args: argparse.Namespace) -> int:
    cache = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    header = ["name", "kind", "size", "trained on", "cached"] + (["model url", "weights url"] if args.urls else [])
    rows = [header]
    for m in list_models():
        row = [m.name, m.kind, m.size, m.trained_on, _cached_state(m, cache)]
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
    parser = OneLineErrorParser(prog="python -m vpt_agent.zoo", description="Official VPT models by name.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="show the catalogue")
    p_list.add_argument("--urls", action="store_true", help="also show the official file URLs")
    p_list.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    p_list.set_defaults(func=_cmd_list)
    download_arguments(sub.add_parser("download", help=DOWNLOAD_HELP))
    return parser


DOWNLOAD_HELP = "download models into the cache (or verify cached copies)"


def download_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``download`` command's arguments (also ``python -m vpt_agent.download``'s)."""
    parser.add_argument("names", nargs="+", metavar="NAME", help="model name(s) from `list`, or `all`")
    parser.add_argument("--cache-dir", default=None, help=_CACHE_HELP)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true", help="discard cached copies and download again")
    parser.set_defaults(func=_cmd_download)
    return parser


def main(argv: Optional[Sequence[str]] = None, parser: Optional[argparse.ArgumentParser] = None) -> int:
    """CLI entry point: 0 on success, 2 for a bad name, 1 for a failed download or cache check (one line)."""
    args = (parser or _parser()).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        return args.func(args)
    except UnknownModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ZooError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. a read-only cache directory
        where = f": {exc.filename}" if exc.filename else ""
        print(f"error: cannot use the model cache: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
