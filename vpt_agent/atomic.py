"""Output: every file this package writes appears whole or not at all, in a directory checked up front.

    atomic_path(target) -> tmp ".<name>.<random>.tmp" beside target   (the caller writes tmp)
        success: chmod to the umask's usual permissions -> fsync tmp -> rename onto target -> fsync the directory
        any error, Ctrl-C included: tmp removed, target untouched

The temporary name is unique, so two writers never share one; the rename is atomic on POSIX file systems, so a
reader sees the old file or the new one. :func:`out_dir_problem` checks an output directory before a job starts,
so that bad ``--out`` is one line before any work. Torch-free (the zoo and the env workers import it).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Union

TEMP_SUFFIX = ".tmp"  # temporary files are ".<name>.<random>.tmp" next to their target


def _umask() -> int:
    """The process's umask, read without changing it where Linux shows it (setting it to read it back would
    briefly give files that other threads create meanwhile the wrong permissions)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: Union[str, Path], directory: bool = False) -> None:
    """Flush a file (or a directory's entries, after a rename) to disk; a no-op where a directory cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def out_dir_problem(out: Union[str, Path], what: str = "--out") -> Optional[str]:
    """Why ``out`` cannot be an output directory (it must be one, or be creatable), as one line; None if it can."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        return f"{what} {out}: exists and is not a directory"
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        return f"{what} {out}: {parent} is not a directory"
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        return f"{what} {out}: {parent} is not writable"
    return None


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path``; once the block succeeds it replaces ``path``.

    A failed write (disk full, an exception, Ctrl-C) leaves neither a half-written ``path`` nor a temporary file.
    The file gets the permissions a plain ``open`` would give it (``mkstemp`` makes owner-only files).
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync(path.parent, directory=True)
