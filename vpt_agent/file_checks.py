"""Bounded structural checks of untrusted model files, done before any parser allocates memory for them.

Every check here reads at most a small, fixed amount of the file (a header, a zip directory, a config of at most
``MAX_MODEL_BYTES``), so a hostile file fails fast with a one-line error that names it, instead of exhausting
memory or time inside ``pickle``, ``torch.load`` or ``safetensors``. This module is torch-free: the zoo uses it to
check downloads before recording them as verified.

Limits (every released VPT file is far inside them: configs are under 1 KB, the largest ``.weights`` is ~2 GB
with ~140 tensors):

====================================  =========  ============================================================
``MAX_MODEL_BYTES``                   1 MiB      a ``.model`` config (pickle of plain data)
``MAX_WEIGHTS_BYTES``                 16 GiB     a ``.weights`` / ``.safetensors`` file
``MAX_TENSORS``                       10,000     tensors in one weights file (zip members / header entries)
``MAX_ZIP_DIRECTORY_BYTES``           16 MiB     the zip central directory of a ``.weights`` file
``MAX_WEIGHTS_PICKLE_BYTES``          4 MiB      the ``data.pkl`` member of a ``.weights`` zip (13 KB for 106 tensors)
``MAX_SAFETENSORS_HEADER_BYTES``      16 MiB     the JSON header of a ``.safetensors`` file
``MAX_PICKLE_MEMO``                   100,000    memo slots a ``.model`` pickle may use
====================================  =========  ============================================================
"""
from __future__ import annotations

import io
import json
import os
import pickle
import pickletools
import stat
import struct
import zipfile
from typing import Any, BinaryIO, Dict, Optional, Tuple, Union

from .errors import VPTError

PathLike = Union[str, "os.PathLike[str]"]

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
MAX_MODEL_BYTES = 1 * MiB
MAX_WEIGHTS_BYTES = 16 * GiB
MAX_TENSORS = 10_000
MAX_ZIP_DIRECTORY_BYTES = 16 * MiB
MAX_WEIGHTS_PICKLE_BYTES = 4 * MiB
MAX_SAFETENSORS_HEADER_BYTES = 16 * MiB
MAX_PICKLE_MEMO = 100_000

#: How ``torch.save`` with the legacy (pre-1.6, non-zip) format starts: pickle protocol 2, then its magic number.
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
#: Bytes per element of each safetensors dtype.
SAFETENSORS_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                           "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


class ModelFileError(VPTError, ValueError):
    """A ``.model`` file is unreadable, malformed, too large, or contains something other than plain data."""


class WeightsFileError(VPTError, ValueError):
    """A weights file is unreadable, truncated, too large, unsafe, not a state dict, or holds unusable tensors."""


# ----------------------------------------------------------------------------------------------------- opening
def open_regular(path: PathLike, max_bytes: int, what: str, error: type = ValueError) -> Tuple[BinaryIO, int]:
    """Open ``path`` for reading if it is a regular file of at most ``max_bytes``; return ``(file, size)``.

    Opened non-blocking, so a FIFO cannot hang the caller; devices (``/dev/zero``), FIFOs and directories are
    refused (a symlink to a regular file is fine). ``what`` names the kind of file in messages.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise error(f"{path} is not a regular file ({_file_kind(st.st_mode)}); expected a {what}")
        if st.st_size > max_bytes:
            raise error(f"{path} is {st.st_size:,} bytes, more than the {max_bytes:,}-byte limit for a {what}")
        return os.fdopen(fd, "rb"), st.st_size
    except BaseException:
        os.close(fd)
        raise


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def sniff(head: bytes) -> Optional[str]:
    """Name the format of a file from its first bytes when it is recognisably *not* a pickle of plain data.

    Returns e.g. ``"a zip archive (a torch .weights file)"``, or None when nothing is recognised.
    """
    if not head:
        return "an empty file"
    if head.startswith(ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC):
        return "a zip archive (a torch .weights file)"
    if head.startswith(TORCH_LEGACY_MAGIC):
        return "a legacy-format torch .weights file"
    if looks_like_safetensors(head):
        return "a .safetensors file"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    text = head[:1024].lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in text:
        return "an HTML page (an error page saved instead of the file?)"
    if text.startswith(b"<?xml") or text.startswith(b"<error"):
        return "an XML document (a server's error response saved instead of the file?)"
    return None


def looks_like_safetensors(head: bytes) -> bool:
    """True when ``head`` starts like a safetensors file: an 8-byte header length, then a JSON object."""
    return len(head) >= 10 and head[8:9] == b"{" and struct.unpack("<Q", head[:8])[0] < (1 << 40)


# ----------------------------------------------------------------------------------------------------- .model
def read_model_bytes(path: PathLike) -> bytes:
    """The bytes of a ``.model`` file after the size/type checks and :func:`check_plain_pickle`."""
    f, size = open_regular(path, MAX_WEIGHTS_BYTES, ".model file", ModelFileError)
    with f:
        head = f.read(1024)
        kind = sniff(head)
        if kind is not None:  # e.g. a .weights file given as the config: say so rather than "too large"
            hint = "; pass it as the weights file" if "weights" in kind else ""
            raise ModelFileError(f"{path} is {kind}, not a .model config (a pickle of plain settings){hint}")
        if size > MAX_MODEL_BYTES:
            raise ModelFileError(f"{path} is {size:,} bytes, more than the {MAX_MODEL_BYTES:,}-byte limit for a "
                                 ".model file (VPT configs are under 1 KB)")
        data = head + f.read(MAX_MODEL_BYTES + 1 - len(head))
    if len(data) > MAX_MODEL_BYTES:  # the file grew after the check
        raise ModelFileError(f"{path} is more than the {MAX_MODEL_BYTES:,}-byte limit for a .model file")
    check_plain_pickle(data, path)
    return data


def check_plain_pickle(data: bytes, path: PathLike) -> None:
    """Walk the pickle opcodes of a ``.model`` file without executing them; raise :class:`ModelFileError`.

    Catches, before any unpickler runs: files that are not pickles (with what they look like instead), truncated
    pickles, and memo indices that would make the C unpickler allocate a huge memo (a 700-byte file can ask for
    a 4 GB one). Whether the pickle only builds plain data is decided by the restricted unpickler afterwards.
    """
    kind = sniff(data[:1024])
    if kind is not None:
        hint = "; pass it as the weights file" if "weights" in kind else ""
        raise ModelFileError(f"{path} is {kind}, not a .model config (a pickle of plain settings){hint}")
    memo: set = set()
    stream = io.BytesIO(data)
    try:
        for opcode, arg, pos in pickletools.genops(stream):
            if opcode.name == "MEMOIZE":
                memo.add(len(memo))
            elif opcode.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if not 0 <= arg < MAX_PICKLE_MEMO:
                    raise ModelFileError(f"refusing to load {path}: its pickle stores memo slot {arg} at byte {pos} "
                                         f"(the limit is {MAX_PICKLE_MEMO:,}; a VPT config uses a few dozen)")
                memo.add(arg)
            elif opcode.name in ("GET", "BINGET", "LONG_BINGET") and arg not in memo:
                raise ModelFileError(f"{path} is not a valid .model file: its pickle reads memo slot {arg} "
                                     f"at byte {pos}, which it never stored")
    except ModelFileError:
        raise
    except ValueError as e:  # genops: unknown opcode, truncated argument, no STOP
        text = str(e)
        if "exhausted" in text or "but only" in text or "not enough data" in text:
            raise ModelFileError(f"{path} is not a valid .model file: the pickle is truncated ({text})") from None
        if text.startswith("at position 0,"):
            raise ModelFileError(f"{path} is not a .model file: it is not a pickle ({text})") from None
        raise ModelFileError(f"{path} is not a valid .model file: corrupt pickle ({text})") from None
    if stream.tell() != len(data):
        raise ModelFileError(f"{path} is not a valid .model file: {len(data) - stream.tell():,} unexpected bytes "
                             f"after the end of the pickle (byte {stream.tell():,})")


class _PlainDataUnpickler(pickle.Unpickler):
    """Only plain containers and scalars. Any other global (functions, classes) is refused."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
                ("builtins", "tuple"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it references {module}.{name}"[:200])

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it uses a persistent id (an external object reference)")


def read_model_dict(path: PathLike) -> Dict[str, Any]:
    """Parse a ``.model`` file into a dict without executing code; raise :class:`ModelFileError`.

    Size and type checks and the opcode walk (:func:`read_model_bytes`) come first; then a restricted unpickler
    that admits only dict, list, tuple, set, str, numbers, bools and None.
    """
    data = read_model_bytes(path)
    try:
        obj = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise ModelFileError(f"refusing to load {path}: {e}, which could run code when unpickled; a VPT .model "
                             "file holds only a dict of plain settings") from None
    except Exception as e:  # well-formed opcodes that build nonsense, e.g. dict() of a string
        raise ModelFileError(f"{path} is not a valid .model file (malformed pickle: {e!r:.200})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} is not a VPT .model file: expected a dict, found {type(obj).__name__}")
    return obj


def read_net_args(path: PathLike) -> Dict[str, Any]:
    """The ``model.args.net.args`` dict of a ``.model`` file (policy or IDM), parsed safely, not validated."""
    model = read_model_dict(path)
    try:
        net = model["model"]["args"]["net"]["args"]
    except (KeyError, TypeError, IndexError):
        keys = ", ".join(repr(k)[:40] for k in list(model)[:8])
        raise ModelFileError(f"{path} is not a VPT .model config: expected model['model']['args']['net']['args'] "
                             f"(top-level keys: {keys})") from None
    if not isinstance(net, dict):
        raise ModelFileError(f"{path} is not a VPT .model config: net.args is a {type(net).__name__}, not a dict")
    return net


# ----------------------------------------------------------------------------------------------------- weights
def check_weights_file(path: PathLike) -> str:
    """Check a weights file's structure without loading it; return its format: ``zip``, ``legacy``, ``safetensors``.

    Raises :class:`WeightsFileError` naming the file: not found, not a regular file, over ``MAX_WEIGHTS_BYTES``,
    a recognisably different format (HTML, a ``.model`` pickle, ...), a zip with compressed or inconsistent
    members, or a safetensors header that is too large or inconsistent with the file.
    """
    f, size = open_regular(path, MAX_WEIGHTS_BYTES, "weights file", WeightsFileError)
    with f:
        head = f.read(1024)
        if head.startswith(ZIP_MAGIC) or head.startswith(_EMPTY_ZIP_MAGIC):
            check_torch_zip(f, size, path)
            return "zip"
        if head.startswith(TORCH_LEGACY_MAGIC):
            return "legacy"
        if looks_like_safetensors(head):
            check_safetensors_header(f, size, path)
            return "safetensors"
    kind = sniff(head)
    if kind is None and head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        kind = "a pickle of plain data (a .model config?), not a torch .weights file"
    if kind is None:
        kind = "neither a torch .weights zip nor a .safetensors file (unrecognised content)"
    raise WeightsFileError(f"{path} is not a weights file: it is {kind}")


def _end_of_central_directory(f: BinaryIO, size: int, path: PathLike) -> Tuple[int, int, int]:
    """``(number of entries, directory size, directory offset)`` from the zip's end records (zip64 aware)."""
    tail_len = min(size, 22 + 0xFFFF)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    i = tail.rfind(_EMPTY_ZIP_MAGIC)
    if i < 0 or len(tail) - i < 22:
        raise WeightsFileError(f"{path} is truncated or corrupt: the zip archive has no end record "
                               "(an interrupted download?)")
    _, _, _, _, n, cd_size, cd_offset, _ = struct.unpack("<IHHHHIIH", tail[i:i + 22])
    if n == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:  # zip64: read its end record
        locator = tail[i - 20:i] if i >= 20 else b""
        if len(locator) != 20 or not locator.startswith(b"PK\x06\x07"):
            raise WeightsFileError(f"{path} is corrupt: zip64 end record locator missing")
        (record_offset,) = struct.unpack("<Q", locator[8:16])
        if record_offset + 56 > size:
            raise WeightsFileError(f"{path} is corrupt: zip64 end record out of range")
        f.seek(record_offset)
        record = f.read(56)
        if not record.startswith(b"PK\x06\x06"):
            raise WeightsFileError(f"{path} is corrupt: bad zip64 end record")
        n, cd_size, cd_offset = struct.unpack("<QQQ", record[32:56])
    return n, cd_size, cd_offset


def check_torch_zip(f: BinaryIO, size: int, path: PathLike) -> None:
    """Bound a torch zip archive before ``torch.load`` reads it.

    torch writes every member uncompressed ("stored"), so a compressed member can only be an attempt to expand a
    small file into a huge one; it is refused, as are more than ``MAX_TENSORS`` members, members that do not fit
    in the file or overlap, and a ``data.pkl`` over ``MAX_WEIGHTS_PICKLE_BYTES``.
    """
    n, cd_size, cd_offset = _end_of_central_directory(f, size, path)
    if n > MAX_TENSORS + 16:
        raise WeightsFileError(f"{path} has {n:,} zip members, more than the limit of {MAX_TENSORS + 16:,}")
    if cd_size > MAX_ZIP_DIRECTORY_BYTES or cd_offset + cd_size > size:
        raise WeightsFileError(f"{path} is corrupt: its zip directory ({cd_size:,} bytes at {cd_offset:,}) does not "
                               f"fit the {MAX_ZIP_DIRECTORY_BYTES:,}-byte limit or the {size:,}-byte file")
    f.seek(0)
    try:
        members = zipfile.ZipFile(f).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise WeightsFileError(f"{path} is truncated or corrupt: bad zip archive ({e})") from None
    total = 0
    pickles = [m for m in members if m.filename == "data.pkl" or m.filename.endswith("/data.pkl")]
    for m in members:
        if m.compress_type != zipfile.ZIP_STORED or m.compress_size != m.file_size:
            raise WeightsFileError(f"refusing to load {path}: zip member {m.filename!r} is compressed "
                                   f"({m.compress_size:,} -> {m.file_size:,} bytes); torch never writes compressed "
                                   "members, so this file was not saved by torch.save")
        if m.flag_bits & 0x1:
            raise WeightsFileError(f"refusing to load {path}: zip member {m.filename!r} is encrypted")
        total += m.file_size
        if m.header_offset + m.file_size > size or total > size:
            raise WeightsFileError(f"{path} is corrupt: zip member {m.filename!r} ({m.file_size:,} bytes) does not "
                                   f"fit in the {size:,}-byte file (truncated, or overlapping members)")
    if len(pickles) != 1:
        raise WeightsFileError(f"{path} is a zip archive but not a torch weights file (no single data.pkl member)")
    if pickles[0].file_size > MAX_WEIGHTS_PICKLE_BYTES:
        raise WeightsFileError(f"{path}: its data.pkl is {pickles[0].file_size:,} bytes, more than the "
                               f"{MAX_WEIGHTS_PICKLE_BYTES:,}-byte limit")


def check_safetensors_header(f: BinaryIO, size: int, path: PathLike) -> Dict[str, Any]:
    """Read and check a safetensors header (before ``safetensors`` materialises anything); return it.

    Refused: a header over ``MAX_SAFETENSORS_HEADER_BYTES``, more than ``MAX_TENSORS`` entries, unknown dtypes,
    shapes whose byte size disagrees with their data offsets, and data offsets outside the file.
    """
    f.seek(0)
    (n,) = struct.unpack("<Q", f.read(8))
    if n > MAX_SAFETENSORS_HEADER_BYTES:
        raise WeightsFileError(f"refusing to load {path}: its safetensors header is {n:,} bytes, more than the "
                               f"{MAX_SAFETENSORS_HEADER_BYTES:,}-byte limit")
    if 8 + n > size:
        raise WeightsFileError(f"{path} is truncated: its safetensors header needs {n:,} bytes")
    try:
        header = json.loads(f.read(n))
    except (ValueError, RecursionError) as e:
        raise WeightsFileError(f"{path} is corrupt: its safetensors header is not valid JSON ({e})"[:300]) from None
    if not isinstance(header, dict):
        raise WeightsFileError(f"{path} is corrupt: its safetensors header is not a JSON object")
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if len(entries) > MAX_TENSORS:
        raise WeightsFileError(f"refusing to load {path}: {len(entries):,} tensors, more than the limit of "
                               f"{MAX_TENSORS:,}")
    data_size = size - 8 - n
    for name, entry in entries.items():
        _check_safetensors_entry(name, entry, data_size, path)
    return header


def _check_safetensors_entry(name: str, entry: Any, data_size: int, path: PathLike) -> None:
    bad = f"{path} is corrupt: safetensors entry {name[:80]!r}"
    if not isinstance(entry, dict):
        raise WeightsFileError(f"{bad} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPE_BYTES:
        raise WeightsFileError(f"{bad} has an unsupported dtype {str(dtype)[:20]!r}")
    if not isinstance(shape, list) or len(shape) > 16 or not all(_is_count(d) for d in shape):
        raise WeightsFileError(f"{bad} has an invalid shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(o) for o in offsets)
            and offsets[0] <= offsets[1] <= data_size):
        raise WeightsFileError(f"{bad} has data offsets outside the file")
    numel = 1
    for d in shape:
        numel *= d
    if numel * SAFETENSORS_DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
        raise WeightsFileError(f"{bad}: shape {shape} does not match its {offsets[1] - offsets[0]:,} data bytes")


def _is_count(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0
