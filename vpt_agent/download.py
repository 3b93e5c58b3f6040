"""Resumable, bounded HTTP(S) / ``file://`` downloads into a ``.part`` file, trusting nothing the server says.

Used by :mod:`vpt_agent.zoo`, which checks the finished ``.part`` file's content before it records a checksum.

* The ``.part`` file is opened with ``O_NOFOLLOW`` and must be a regular file: a symlink planted in its place is
  refused, never followed.
* A body is refused when it is content-encoded (``Accept-Encoding: identity`` is requested: a gzip body would not
  be the file's bytes), served as ``text/html``, or starts like an HTML/XML page; when its announced size exceeds
  ``max_bytes`` or differs from ``expected_size``; and when more bytes arrive than announced or allowed.
* A dropped connection is resumed with ``Range`` plus ``If-Range`` (the ETag or Last-Modified of the first response,
  kept in ``<part>.json``): if the file changed on the server, the server sends it whole and the download starts
  over, so a ``.part`` never mixes two versions. A ``.part`` without that record (or for another URL) is discarded.
* Each file has an overall deadline (:data:`DEADLINE_S`, across attempts); the ``.part`` is kept for the next run.
* Credentials in a URL (``https://user:pass@host/...``) are sent as an ``Authorization`` header, and neither they
  nor the query string (a signed URL's signature) appear in errors or logs: see :func:`redact`.
"""
from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import http.client
import json
import logging
import os
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .errors import VPTError
from .file_checks import sniff

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
TIMEOUT_S = 60.0  # per socket operation
DEADLINE_S = 3 * 3600.0  # per file, all attempts together (the largest official file, 2.1 GB, at 200 KB/s)
MAX_ATTEMPTS = 5  # per file and call; an attempt is retried only if the one before it made progress
RETRY_BACKOFF_S = 1.0
USER_AGENT = "vpt-agent-zoo/0.2 (+python urllib)"
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


class DownloadError(VPTError):
    """A download failed or was refused; the message is one line and never contains credentials."""


class _Retryable(Exception):
    """Internal: an attempt failed after receiving some bytes; another attempt resumes from the .part file."""


class _Restart(_Retryable):
    """Internal: the ``.part`` file cannot be continued (the file changed on the server); start over."""


def redact(url: str) -> str:
    """``url`` without user/password and with its query string hidden, for messages and the manifest."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, _host(parts), parts.path, "<redacted>" if parts.query else "", ""))


def _host(parts: urllib.parse.SplitResult) -> str:
    """``host[:port]`` of a split URL without any ``user:password@`` (IPv6 hosts bracketed)."""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port else host


def join_url(base: str, filename: str) -> str:
    """``base`` with ``/filename`` appended to its *path*; a query string (a signed-URL mirror) is kept after it."""
    parts = urllib.parse.urlsplit(base)
    path = parts.path.rstrip("/") + "/" + urllib.parse.quote(filename)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def download(url: str, part: Path, max_bytes: int, expected_size: Optional[int] = None, progress: bool = True,
             label: str = "", deadline_s: Optional[float] = None) -> None:
    """Fill ``part`` with the body of ``url``, resuming a previous ``.part`` of the same URL when that is safe.

    On success ``part`` holds exactly the announced number of bytes (at most ``max_bytes``). Raises
    :class:`DownloadError`; after a partial transfer the ``.part`` file is kept so the next call resumes it.
    """
    deadline = time.monotonic() + (DEADLINE_S if deadline_s is None else deadline_s)
    label = label or part.name
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            _attempt(url, part, max_bytes, expected_size, progress, label, deadline)
            return
        except _Retryable as exc:
            if isinstance(exc, _Restart):
                discard(part)
            if attempt == MAX_ATTEMPTS:
                kept = f"the partial file {part} is kept and the next run resumes it" if part.is_file() else "rerun"
                raise DownloadError(f"download of {redact(url)} failed after {attempt} attempt(s) ({exc}); "
                                    f"{kept}") from None
            delay = min(RETRY_BACKOFF_S * 2 ** (attempt - 1), max(0.0, deadline - time.monotonic()))
            logger.warning("%s; resuming in %.0f s (attempt %d of %d)", exc, delay, attempt + 1, MAX_ATTEMPTS)
            time.sleep(delay)


def discard(part: Path) -> None:
    """Remove a ``.part`` file and its resume record (a symlink is removed, never followed)."""
    for path in (part, _record_path(part)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --------------------------------------------------------------------------------------------------- one attempt
def _attempt(url: str, part: Path, max_bytes: int, expected_size: Optional[int], progress: bool, label: str,
             deadline: float) -> None:
    offset, record = _resume_point(url, part)
    response = _open(url, offset, record, deadline)
    with response:
        start, total = _body_range(response, offset, record, url)
        if offset and start == 0:
            logger.info("%s changed on the server or cannot be resumed; starting over", label)
        _check_headers(response, total, max_bytes, expected_size, url)
        if start == 0:
            _write_record(part, url, response, total)
        received = _copy_body(response, part, start, total, max_bytes, progress, label, deadline, url)
    size = part.stat().st_size
    if total is not None and size < total:
        detail = f"connection closed after {size:,} of {total:,} bytes of {redact(url)}"
        if received == 0:
            raise DownloadError(f"download failed: {detail}; rerun to resume from {part}")
        raise _Retryable(detail)
    if total is None:
        logger.warning("server gave no size for %s; the %d bytes received are checked by content only",
                       redact(url), size)


def _resume_point(url: str, part: Path) -> Tuple[int, Optional[Dict[str, Any]]]:
    """Bytes already in ``part`` that may be resumed, and the record of the response they came from."""
    try:
        st = os.lstat(part)
    except FileNotFoundError:
        _record_path(part).unlink(missing_ok=True)
        return 0, None
    if not stat.S_ISREG(st.st_mode):
        raise DownloadError(f"refusing to write {part}: it is a symlink or not a regular file; remove it and rerun")
    record = _read_record(part)
    if st.st_size == 0 or record is None or record.get("url_sha256") != _url_id(url) or not record.get("validator"):
        logger.info("discarding %s: it cannot be resumed safely (no record of the response it came from)", part)
        return 0, None
    if record.get("total") is not None and st.st_size >= record["total"]:
        return 0, None  # complete or oversized but not accepted: fetch again
    return st.st_size, record


def _open(url: str, offset: int, record: Optional[Dict[str, Any]], deadline: float) -> Any:
    """Send the (range) request; map failures to :class:`DownloadError`."""
    request_url, auth = _split_credentials(url)
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset and record:
        headers["Range"] = f"bytes={offset}-"
        headers["If-Range"] = record["validator"]
    timeout = max(0.1, min(TIMEOUT_S, deadline - time.monotonic()))
    try:
        request = urllib.request.Request(request_url, headers=headers)
        if auth:
            request.add_unredirected_header("Authorization", auth)  # never forwarded to a redirect's target
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:
            raise _Restart(f"server refused to resume at byte {offset:,} of {redact(url)} (HTTP 416); "
                             "restarting") from None
        raise DownloadError(f"HTTP {exc.code} {exc.reason} for {redact(url)}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot reach {redact(url)}: {_describe(exc.reason)}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise DownloadError(f"cannot download {redact(url)}: {_describe(exc)}") from None


def _split_credentials(url: str) -> Tuple[str, Optional[str]]:
    """(URL without ``user:pass@``, ``Authorization`` header value or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    plain = urllib.parse.urlunsplit((parts.scheme, _host(parts), parts.path, parts.query, parts.fragment))
    user = urllib.parse.unquote(parts.username or "")
    password = urllib.parse.unquote(parts.password or "")
    return plain, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _body_range(response: Any, offset: int, record: Optional[Dict[str, Any]], url: str
                ) -> Tuple[int, Optional[int]]:
    """(first byte offset of the body, total file size or None) from the response status and headers."""
    status = getattr(response, "status", None) or 200  # file:// responses carry no status
    length = _int_header(response, "Content-Length")
    if status != 206:
        return 0, length
    content_range = response.headers.get("Content-Range", "")
    try:
        unit, spec = content_range.split(" ", 1)
        span, total_s = spec.split("/", 1)
        start = int(span.split("-", 1)[0])
    except ValueError:
        raise DownloadError(f"bad Content-Range {content_range[:80]!r} from {redact(url)}") from None
    if unit != "bytes" or start != offset:
        raise DownloadError(f"server sent range {content_range[:80]!r} for a request from byte {offset:,} of "
                            f"{redact(url)}")
    total = int(total_s) if total_s.strip().isdigit() else None
    if total is None and length is not None:
        total = start + length
    validator = _validator(response)
    if record is None or (validator is not None and validator != record.get("validator")) or \
            (record.get("total") is not None and total != record.get("total")):
        raise _Restart(f"the server sent part of a different version of {redact(url)}; restarting")
    return start, total


def _check_headers(response: Any, total: Optional[int], max_bytes: int, expected_size: Optional[int],
                   url: str) -> None:
    encoding = (response.headers.get("Content-Encoding") or "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise DownloadError(f"refusing the body of {redact(url)}: it is {encoding}-encoded (Content-Encoding), "
                            "so its bytes are not the file's bytes")
    ctype = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype in ("text/html", "application/xhtml+xml"):
        raise DownloadError(f"refusing the body of {redact(url)}: the server sent an HTML page ({ctype}), "
                            "not the file (a login or error page?)")
    if total is not None and total > max_bytes:
        raise DownloadError(f"refusing {redact(url)}: the server announces {total:,} bytes, more than the "
                            f"{max_bytes:,}-byte limit for this file")
    if total is not None and expected_size is not None and total != expected_size:
        raise DownloadError(f"refusing {redact(url)}: the server announces {total:,} bytes but this file is "
                            f"known to be {expected_size:,} bytes")


def _copy_body(response: Any, part: Path, start: int, total: Optional[int], max_bytes: int, progress: bool,
               label: str, deadline: float, url: str) -> int:
    """Write the body to ``part`` (appending when ``start`` > 0); return the bytes received."""
    from tqdm.auto import tqdm

    limit = min(max_bytes, total) if total is not None else max_bytes
    received = 0
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=label,
               disable=not progress, leave=True)
    try:
        with _open_part(part, append=start > 0) as out:
            while True:
                if time.monotonic() > deadline:
                    raise DownloadError(f"download of {redact(url)} did not finish within its deadline "
                                        f"({start + received:,} bytes so far, kept in {part}; rerun to resume)")
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, http.client.HTTPException) as exc:
                    if received:
                        raise _Retryable(f"connection lost after {start + received:,} bytes: {_describe(exc)}")
                    raise DownloadError(f"download of {label} failed: {_describe(exc)}") from None
                if not chunk:
                    return received
                if start == 0 and received == 0:
                    kind = sniff(chunk[:1024])
                    if kind is not None and ("HTML" in kind or "XML" in kind):
                        out.close()
                        discard(part)
                        raise DownloadError(f"refusing the body of {redact(url)}: it is {kind}")
                if start + received + len(chunk) > limit:
                    out.close()
                    discard(part)
                    what = f"the {total:,} bytes announced" if total is not None and total <= max_bytes else \
                        f"the {max_bytes:,}-byte limit for this file"
                    raise DownloadError(f"refusing {redact(url)}: the server sent more than {what}")
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    finally:
        bar.close()


@contextlib.contextmanager
def _open_part(part: Path, append: bool):
    """Open ``part`` for writing without following a symlink; it must be (or become) a regular file."""
    flags = os.O_WRONLY | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | (os.O_APPEND if append else os.O_TRUNC)
    try:
        fd = os.open(part, flags, 0o600)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise DownloadError(f"refusing to write {part}: it is a symlink; remove it and rerun") from None
        raise DownloadError(f"cannot write {part}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DownloadError(f"refusing to write {part}: it is not a regular file; remove it and rerun")
    with os.fdopen(fd, "ab" if append else "wb") as out:
        yield out


# --------------------------------------------------------------------------------------------------- resume record
def _record_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _url_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()  # the URL itself may hold credentials: store a hash


def _validator(response: Any) -> Optional[str]:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):  # a weak ETag may not be used with If-Range
        return etag.strip()
    modified = response.headers.get("Last-Modified")
    return modified.strip() if modified else None


def _write_record(part: Path, url: str, response: Any, total: Optional[int]) -> None:
    """Remember which response ``part`` holds, so a later resume can ask for the same version (If-Range)."""
    data = json.dumps({"url_sha256": _url_id(url), "validator": _validator(response), "total": total})
    tmp = part.with_name(f"{part.name}.json.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(data)
    os.replace(tmp, _record_path(part))


def _read_record(part: Path) -> Optional[Dict[str, Any]]:
    path = _record_path(part)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode) or os.lstat(path).st_size > 4096:
            return None
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _int_header(response: Any, name: str) -> Optional[int]:
    value = response.headers.get(name)
    return int(value) if value and value.strip().isdigit() else None


def _describe(exc: Any) -> str:
    text = str(exc).strip()
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__
    return text[:200]


def main(argv: Optional[list] = None) -> int:
    """``python -m vpt_agent.download NAME [NAME ...]``: the zoo's ``download`` command under the job's name
    (models by catalogue name only; same options and exit codes as ``python -m vpt_agent.zoo download``)."""
    from . import zoo  # imported here: zoo imports this module
    from .cli import OneLineErrorParser

    parser = OneLineErrorParser(prog="python -m vpt_agent.download", description=zoo.DOWNLOAD_HELP)
    return zoo.main(argv, zoo.download_arguments(parser))


if __name__ == "__main__":
    raise SystemExit(main())
