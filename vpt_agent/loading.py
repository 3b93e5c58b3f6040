"""Safe, bounded and transactional loading of ``.model`` configs and ``.weights`` / ``.safetensors`` state dicts.

* ``.model`` files are pickles. They are size-capped, checked opcode by opcode without being executed
  (:mod:`vpt_agent.file_checks`), then parsed with a restricted unpickler that admits plain data only (dict,
  list, tuple, set, str, numbers, bools, None), so a crafted file can neither run code nor exhaust memory.
* ``.weights`` files are checked as zip archives (stored members only, sizes within the file) and then read with
  ``torch.load(weights_only=True)``; ``.safetensors`` headers are checked before ``safetensors`` reads them.
  The format is recognised from the content, not the file name.
* Every tensor is checked before the network is touched: dense and strided (not sparse, meta, quantized or
  nested), a floating dtype, finite values. On any error the network is left exactly as it was.
* Unlike the official loader's ``strict=False``, a *missing* key is an error (it would leave a layer
  randomly initialised). Unexpected keys (e.g. the ``aux_value_head.*`` of RL checkpoints) are ignored
  and logged. The error message diagnoses the usual causes.
"""
from __future__ import annotations

import logging
import os
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Type, TypeVar, Union

import torch
from torch import nn

from .config import PolicyConfig, size_name
from .errors import VPTError
from .file_checks import ModelFileError, WeightsFileError, check_weights_file, read_model_dict, read_net_args

logger = logging.getLogger(__name__)
PathLike = Union[str, "os.PathLike[str]"]
ConfigT = TypeVar("ConfigT", bound=PolicyConfig)

__all__ = ["ModelFileError", "WeightsFileError", "WeightsMismatchError", "LoadReport", "load_model_dict",
           "load_net_args", "load_model_config", "read_state_dict", "load_state_dict", "diagnose"]


class WeightsMismatchError(VPTError, ValueError):
    """A state dict does not fit the network (missing keys or wrong shapes); the message diagnoses why."""


# ----------------------------------------------------------------------------- .model
def load_model_dict(path: PathLike) -> Dict[str, Any]:
    """Parse a ``.model`` pickle without executing code. Raises :class:`ModelFileError`.

    The file must be a regular file of at most ``file_checks.MAX_MODEL_BYTES``; its opcodes are checked before a
    restricted unpickler builds plain data from it (see :func:`vpt_agent.file_checks.read_model_dict`).
    """
    return read_model_dict(path)


def load_net_args(path: PathLike) -> Dict[str, Any]:
    """The ``net.args`` dict of a ``.model`` file (policy or IDM), parsed safely but not validated as a config."""
    return read_net_args(path)


def load_model_config(path: PathLike, config_cls: Type[ConfigT] = PolicyConfig) -> ConfigT:  # type: ignore[assignment]
    """Read a ``.model`` file into a validated :class:`PolicyConfig` (or ``config_cls``, e.g. the IDM's config).

    Any problem is one :class:`ModelFileError` naming the file.
    """
    try:
        return config_cls.from_model_dict(load_model_dict(path))
    except (ValueError, TypeError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"{path}: {e}") from e


# ----------------------------------------------------------------------------- weights
#: Keys under which training frameworks nest the state dict inside a checkpoint dict.
_NESTING_KEYS = ("state_dict", "model", "policy", "model_state_dict", "module", "net", "weights")


def read_state_dict(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from a torch ``.weights``/``.pt`` zip (``torch.load``, weights_only) or ``.safetensors``.

    The file is structure-checked first (:func:`vpt_agent.file_checks.check_weights_file`), and every tensor must
    be dense and strided with real data (not sparse, meta, quantized or nested). Raises :class:`WeightsFileError`
    with the file name for missing, oversized, truncated, unsafe or non-state-dict files.
    """
    path = Path(path)
    fmt = check_weights_file(path)
    sd = _read_safetensors(path) if fmt == "safetensors" else _read_torch(path)
    sd = _as_state_dict(sd, path)
    _check_storage(sd, str(path))
    return sd


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsFileError(f"refusing to load {path}: it contains objects other than tensors and plain data "
                               f"({_weights_only_reason(e)}), which could run code when unpickled") from None
    except Exception as e:  # truncated data, inconsistent records, ...
        raise WeightsFileError(f"{path} is corrupt or truncated ({_first_line(e)})") from None


def _weights_only_reason(e: BaseException) -> str:
    """The informative part of torch's weights_only error, without its advice to disable the protection."""
    text = str(e)
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\s*Please use|\n\n|$)", text, re.S)
    reason = m.group(1) if m else "an unsupported pickle instruction"
    return " ".join(reason.split())[:200]


def _first_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return f"{type(e).__name__}: {lines[0][:200]}" if lines else type(e).__name__


def _read_safetensors(path: Path) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as e:
        raise WeightsFileError(f"{path} is not a valid .safetensors file ({_first_line(e)})") from None


def _as_state_dict(obj: Any, path: Path) -> Dict[str, torch.Tensor]:
    """``obj`` as a ``{str: Tensor}`` dict, or a :class:`WeightsFileError` that says how to fix the file."""
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsFileError(f"{path} is not a state dict (found {type(obj).__name__}"
                               f"{' (empty)' if isinstance(obj, Mapping) else ''})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if not bad:
        return dict(obj)
    nested = _nested_state_dict(obj)
    if nested is not None:
        where = "".join(f"[{k!r}]" for k in nested)
        raise WeightsFileError(
            f"{path} is a checkpoint dict with the state dict nested under {where}; unwrap it: "
            f"torch.save(torch.load(IN, weights_only=True){where}, OUT)")
    raise WeightsFileError(f"{path} is not a state dict of tensors (e.g. entry {str(bad[0])[:80]!r} holds a "
                           f"{type(obj[bad[0]]).__name__})")


def _nested_state_dict(obj: Mapping, depth: int = 2) -> Optional[Tuple[str, ...]]:
    """The key path to a ``{str: Tensor}`` dict nested in a checkpoint dict (two levels deep at most)."""
    for key in _NESTING_KEYS:
        inner = obj.get(key) if isinstance(obj, Mapping) else None
        if not isinstance(inner, Mapping) or not inner:
            continue
        if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in inner.items()):
            return (key,)
        if depth > 1:
            deeper = _nested_state_dict(inner, depth - 1)
            if deeper is not None:
                return (key, *deeper)
    return None


def _check_storage(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Every tensor must be dense, strided and hold data on the CPU (not sparse, meta, quantized or nested)."""
    problems = []
    for k, t in sd.items():
        if t.is_meta:
            problems.append(f"{k} (a meta tensor: it has no data)")
        elif t.is_quantized:
            problems.append(f"{k} (quantized)")
        elif getattr(t, "is_nested", False):
            problems.append(f"{k} (a nested tensor)")
        elif t.layout != torch.strided:
            problems.append(f"{k} (layout {str(t.layout).replace('torch.', '')})")
    if problems:
        raise WeightsFileError(f"{source}: {len(problems)} tensor(s) are not dense weights: {_preview(problems, 3)}")


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
    """Load ``state_dict`` into ``module``, all or nothing (see the module docstring).

    Keys, shapes and every tensor that would be loaded (dtype, finiteness, layout) are checked before the first
    parameter is written, so on any error (:class:`WeightsMismatchError`, :class:`WeightsFileError`) ``module`` is
    unchanged. Floating tensors are cast to the parameter's dtype.
    """
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsFileError(f"{source} is not a state dict of tensors (e.g. entry {str(bad[0])[:80]!r})")
    _check_storage(state_dict, source)
    targets = module.state_dict()
    expected = {k: tuple(v.shape) for k, v in targets.items()}
    found = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong_shape = [k for k in expected if k in found and expected[k] != found[k]]
    if wrong_shape or (missing and not allow_missing):
        raise WeightsMismatchError(diagnose(source, expected, found, missing, unexpected, wrong_shape))
    loaded = {k: v for k, v in state_dict.items() if k in expected}
    _check_values(loaded, targets, source)
    if unexpected:
        logger.info("%s: ignoring %d unexpected key(s): %s", source, len(unexpected), _preview(unexpected))
    if missing:
        logger.warning("%s: %d key(s) missing, left at their random init (allow_missing=True): %s",
                       source, len(missing), _preview(missing))
    module.load_state_dict(loaded, strict=False)
    return LoadReport(missing, unexpected)


def _check_values(loaded: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], source: str) -> None:
    """Dtypes that can be cast to the network's, and finite values; errors name the keys."""
    wrong_dtype, not_finite = [], []
    for k, t in loaded.items():
        want = targets[k].dtype
        if want.is_floating_point:
            if not t.is_floating_point():
                wrong_dtype.append(f"{k} ({_dtype(t.dtype)})")
            elif not bool(torch.isfinite(t).all()):
                not_finite.append(k)
        elif t.dtype != want:
            wrong_dtype.append(f"{k} ({_dtype(t.dtype)}, expected {_dtype(want)})")
    if wrong_dtype:
        raise WeightsFileError(f"{source}: {len(wrong_dtype)} tensor(s) are not floating point, so they cannot be "
                               f"network weights (integer, bool and complex tensors are refused, not cast): "
                               f"{_preview(wrong_dtype, 3)}")
    if not_finite:
        raise WeightsFileError(f"{source}: {len(not_finite)} tensor(s) hold NaN or Inf values (a diverged or "
                               f"corrupt checkpoint): {_preview(not_finite, 5)}")


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


#: Why a file's keys may carry an extra prefix (shown with the "strip it" hint).
_PREFIX_ORIGINS = {
    "module.": "saved from DataParallel/DDP",
    "_orig_mod.": "saved from a torch.compile'd model",
    "model.": "saved from a wrapper module",
    "policy.": "saved from a wrapper module",
    "agent.policy.": "saved from an agent object",
    "state_dict.": "a flattened checkpoint dict",
}


def _prefix_fix(missing: List[str], unexpected: List[str]) -> Optional[str]:
    """A prefix that, stripped from (or added to) the file's keys, supplies at least half the missing keys."""
    if not missing or not unexpected:
        return None
    missing_set, unexpected_set = set(missing), set(unexpected)
    extra: Counter = Counter()  # file key = prefix + network key
    lacking: Counter = Counter()  # network key = prefix + file key
    for k in unexpected:
        for m in re.finditer(r"\.", k):
            if k[m.end():] in missing_set:
                extra[k[:m.end()]] += 1
    for k in missing:
        for m in re.finditer(r"\.", k):
            if k[m.end():] in unexpected_set:
                lacking[k[:m.end()]] += 1
    best = max([(n, "extra", p) for p, n in extra.items()] + [(n, "lacking", p) for p, n in lacking.items()],
               default=None)
    if best is None or best[0] < max(1, len(missing) // 2):
        return None
    covered, how, prefix = best
    if how == "lacking":
        return (f"Likely cause: the file's keys lack the {prefix!r} prefix (stripped); adding it would supply "
                f"{covered} of the {len(missing)} missing keys: {{{prefix!r} + k: v for k, v in sd.items()}}.")
    origin = _PREFIX_ORIGINS.get(prefix)
    return (f"Likely cause: the file's keys carry an extra {prefix!r} prefix"
            f"{f' ({origin})' if origin else ''}; stripping it would supply {covered} of the {len(missing)} "
            f"missing keys: {{k.removeprefix({prefix!r}): v for k, v in sd.items()}}.")


def diagnose(source: str, expected: Mapping[str, Tuple[int, ...]], found: Mapping[str, Tuple[int, ...]],
             missing: List[str], unexpected: List[str], wrong_shape: List[str]) -> str:
    """A human-readable explanation of why ``found`` does not fit ``expected``."""
    lines = [f"{source} does not fit the network: {len(missing)} missing, {len(unexpected)} unexpected, "
             f"{len(wrong_shape)} wrong-shape key(s) (the network has {len(expected)} keys)."]
    fix = _prefix_fix(missing, unexpected)
    if fix:
        lines.append(fix)
    if wrong_shape:
        lines.append("Shape mismatches (key: network expects vs file has):")
        lines += [f"  {k}: {expected[k]} vs {found[k]}" for k in wrong_shape[:10]]
        if len(wrong_shape) > 10:
            lines.append(f"  ... and {len(wrong_shape) - 10} more")
        lines.append(_size_hint(expected, found))
    if not set(expected) & set(found) and not fix:
        lines.append(f"No key matches: this does not look like a VPT checkpoint (first keys: {_preview(list(found))}).")
    if missing:
        lines.append(f"Missing: {_preview(missing)}")
    if unexpected:
        lines.append(f"Unexpected: {_preview(unexpected)}")
    lines.append("Pass allow_missing=True only if leaving missing layers randomly initialised is intended.")
    return "\n".join(lines)


def _size_hint(expected: Mapping[str, Tuple[int, ...]], found: Mapping[str, Tuple[int, ...]]) -> str:
    key = "net.final_ln.weight"
    if key in expected and key in found and expected[key] != found[key] and len(found[key]) == 1:
        want, have = expected[key][0], found[key][0]
        return (f"Wrong model size: the weights have hidsize {have} ({size_name(have)}) but the .model "
                f"config says {want} ({size_name(want)}); pair each .weights with its own .model.")
    return "The weights were made for a different .model config; pair each .weights with its own .model."


def _preview(keys: List[str], n: int = 5) -> str:
    head = ", ".join(str(k)[:120] for k in keys[:n])
    return head + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
