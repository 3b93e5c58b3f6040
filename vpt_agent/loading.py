"""Safe loading of ``.model`` configs and ``.weights`` / ``.safetensors`` state dicts.

* ``.model`` files are pickles. They are parsed with a restricted unpickler that admits plain data
  only (dict, list, tuple, set, str, numbers, bools, None), so a crafted file cannot run code.
* ``.weights`` files go through ``torch.load(weights_only=True)``; ``.safetensors`` never unpickle.
* Unlike the official loader's ``strict=False``, a *missing* key is an error (it would leave a layer
  randomly initialised). Unexpected keys (e.g. the ``aux_value_head.*`` of RL checkpoints) are ignored
  and logged. The error message diagnoses the usual causes.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
from torch import nn

from .errors import VPTError
from .config import PolicyConfig

logger = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]


class ModelFileError(VPTError, ValueError):
    """A ``.model`` file is unreadable, malformed, or contains something other than plain data."""


class WeightsFileError(VPTError, ValueError):
    """A weights file is unreadable, truncated, unsafe, or not a state dict."""


class WeightsMismatchError(VPTError, ValueError):
    """A state dict does not fit the network (missing keys or wrong shapes)."""


# ----------------------------------------------------------------------------- .model
class _PlainDataUnpickler(pickle.Unpickler):
    """Only plain containers and scalars. Any other global (functions, classes) is refused."""

    _ALLOWED = {("builtins", "set"), ("builtins", "frozenset"), ("builtins", "dict"), ("builtins", "list"),
                ("builtins", "tuple"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed (only plain data)")


def load_model_dict(path: PathLike) -> Dict[str, Any]:
    """Parse a ``.model`` pickle without executing code. Raises :class:`ModelFileError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read model file {path}: {e.strerror or e}") from e
    try:
        obj = _PlainDataUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise ModelFileError(f"refusing to load {path}: {e}. A VPT .model file holds only a dict of settings; "
                             "this one could run code when unpickled.") from e
    except Exception as e:  # truncated or not a pickle at all: EOFError, ValueError, KeyError, ...
        raise ModelFileError(f"{path} is not a valid .model file (corrupt or truncated pickle: {e!r})") from e
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path} is not a VPT .model file: expected a dict, found {type(obj).__name__}")
    return obj


def load_model_config(path: PathLike) -> PolicyConfig:
    """Read a ``.model`` file into a validated :class:`PolicyConfig`."""
    try:
        return PolicyConfig.from_model_dict(load_model_dict(path))
    except (ValueError, TypeError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"{path}: {e}") from e


# ----------------------------------------------------------------------------- weights
def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from ``.weights``/``.pt`` (torch.load, weights_only) or ``.safetensors`` (memory-mapped).

    Raises :class:`WeightsFileError` with the file name for missing, truncated, unsafe or non-state-dict files.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        sd = _read_safetensors(path)
    else:
        sd = _read_torch(path)
    if not isinstance(sd, Mapping) or not sd:
        raise WeightsFileError(f"{path} is not a state dict (found {type(sd).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFileError(f"{path} is not a state dict of tensors (e.g. entry {bad[0]!r})")
    return dict(sd)


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsFileError(f"refusing to load {path}: it contains objects other than tensors and plain data, "
                               f"which could run code when unpickled ({str(e).splitlines()[0]})") from e
    except Exception as e:  # truncated zip, random bytes, ...
        raise WeightsFileError(f"{path} is corrupt or truncated, or not a torch weights file ({e!r:.200})") from e


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:
        raise WeightsFileError(f"{path} is not a valid .safetensors file ({e!r:.200})") from e


@dataclass
class LoadReport:
    """What :func:`load_state_dict` did. ``unexpected_keys`` were ignored; ``missing_keys`` kept their init."""

    missing_keys: List[str] = field(default_factory=list)
    unexpected_keys: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing_keys


def load_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], allow_missing: bool = False,
                    source: str = "state dict") -> LoadReport:
    """Load ``state_dict`` into ``module`` with explicit key checks (see the module docstring)."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong_shape = [k for k in expected if k in found and expected[k] != found[k]]
    if wrong_shape or (missing and not allow_missing):
        raise WeightsMismatchError(diagnose(source, expected, found, missing, unexpected, wrong_shape))
    if unexpected:
        logger.info("%s: ignoring %d unexpected key(s): %s", source, len(unexpected), _preview(unexpected))
    if missing:
        logger.warning("%s: %d key(s) missing, left at their random init (allow_missing=True): %s",
                       source, len(missing), _preview(missing))
    module.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=False)
    return LoadReport(missing, unexpected)


# Key renamings that explain a mismatch: (description, function from a file key to a network key).
_PREFIX_FIXES: List[Tuple[str, Any]] = [
    ("the file's keys lack the 'net.' prefix (stripped)", lambda k: "net." + k),
    ("the file's keys carry an extra 'net.' prefix", lambda k: k[4:] if k.startswith("net.") else k),
    ("the file's keys carry a 'module.' prefix (saved from DataParallel/DDP)",
     lambda k: k[7:] if k.startswith("module.") else k),
    ("the file's keys carry a 'policy.' prefix", lambda k: k[7:] if k.startswith("policy.") else k),
]


def diagnose(source: str, expected: Mapping[str, Tuple[int, ...]], found: Mapping[str, Tuple[int, ...]],
             missing: List[str], unexpected: List[str], wrong_shape: List[str]) -> str:
    """A human-readable explanation of why ``found`` does not fit ``expected``."""
    lines = [f"{source} does not fit the network: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(wrong_shape)} wrong-shape key(s) (the network has {len(expected)} keys)."]
    if missing and unexpected:
        for why, fix in _PREFIX_FIXES:
            fixed = {fix(k) for k in unexpected}
            covered = sum(k in fixed for k in missing)
            if covered >= max(1, len(missing) // 2):
                lines.append(f"Likely cause: {why}; that renaming would supply {covered} of the "
                             f"{len(missing)} missing keys.")
                break
    if wrong_shape:
        lines.append("Shape mismatches (key: network expects vs file has):")
        lines += [f"  {k}: {expected[k]} vs {found[k]}" for k in wrong_shape[:10]]
        if len(wrong_shape) > 10:
            lines.append(f"  ... and {len(wrong_shape) - 10} more")
        lines.append(_size_hint(expected, found))
    if not set(expected) & set(found) and not any("Likely" in line for line in lines):
        lines.append(f"No key matches: this does not look like a VPT checkpoint (first keys: {_preview(list(found))}).")
    if missing:
        lines.append(f"Missing: {_preview(missing)}")
    if unexpected:
        lines.append(f"Unexpected: {_preview(unexpected)}")
    lines.append("Pass allow_missing=True only if leaving missing layers randomly initialised is intended.")
    return "\n".join(lines)


def _size_hint(expected: Mapping[str, Tuple[int, ...]], found: Mapping[str, Tuple[int, ...]]) -> str:
    key = "net.final_ln.weight"
    if key in expected and key in found and expected[key] != found[key]:
        sizes = {1024: "1x", 2048: "2x", 3072: "3x"}
        want, have = expected[key][0], found[key][0]
        return (f"Wrong model size: the weights have hidsize {have} ({sizes.get(have, 'custom')}) but the .model "
                f"config says {want} ({sizes.get(want, 'custom')}); pair each .weights with its own .model.")
    return "The weights were made for a different .model config; pair each .weights with its own .model."


def _preview(keys: List[str], n: int = 5) -> str:
    head = ", ".join(keys[:n])
    return head + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
