"""Convert VPT ``.weights`` files (pickled torch state dicts) to ``.safetensors``.

``python -m vpt_agent.convert IN.weights OUT.safetensors [--model CONFIG.model]``

The tensors are written unchanged (made contiguous; 0-dim tensors such as ``value_head.normalizer.debiasing_term``
are kept). The ``.model`` config is copied next to the output with the same stem (``OUT.model``), so the pair loads
with ``VPTAgent.from_files("OUT.model", "OUT.safetensors")``. The config is taken from ``--model``, else from
``IN.model`` when that exists; without one only the tensors are written (and a warning is logged).
A ``.safetensors`` file holds no pickle and is memory-mapped on load.
"""
from __future__ import annotations

import filecmp
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from .atomic import atomic_path
from .cli import OneLineErrorParser
from .errors import VPTError, one_line
from .loading import ModelFileError, WeightsFileError, load_net_args, read_state_dict

logger = logging.getLogger(__name__)


class ConversionError(VPTError, ValueError):
    """The input cannot be converted (missing, unreadable, or not a state dict of tensors)."""


def read_weights(path: os.PathLike) -> Dict[str, torch.Tensor]:
    """Load a ``.weights`` state dict safely (see :func:`vpt_agent.loading.read_state_dict`).

    Raises :class:`ConversionError` when the file is missing, unreadable, oversized, not a dict of name -> tensor,
    or holds sparse, meta or quantized tensors.
    """
    try:
        return read_state_dict(path)
    except WeightsFileError as exc:
        raise ConversionError(str(exc)) from exc


def _contiguous_unshared(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Contiguous tensors with no two sharing memory (safetensors refuses shared storage)."""
    seen = set()
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def convert(weights_in: os.PathLike, out_path: os.PathLike, model_in: Optional[os.PathLike] = None) -> Path:
    """Write ``weights_in`` as safetensors to ``out_path`` and copy the ``.model`` config to ``out_path.model``.

    ``model_in`` defaults to ``weights_in`` with a ``.model`` suffix when that file exists. Returns ``out_path``.
    Raises :class:`ConversionError` for bad input (including sparse, meta or quantized tensors, which safetensors
    cannot hold, and an output path that is a directory or cannot be written). Both outputs are written to
    temporary names and renamed into place, so a failure leaves no partial file.
    """
    from safetensors.torch import save_file

    weights_in, out_path = Path(weights_in), Path(out_path)
    if out_path.suffix != ".safetensors":
        raise ConversionError(f"output must end in .safetensors, got {out_path}")
    target = out_path.with_suffix(".model")
    for path in (out_path, target):
        if path.is_dir():
            raise ConversionError(f"output {path} is a directory; give a file name ending in {path.suffix}")
    config = _config_source(weights_in, model_in)
    copy_config = config is not None and config.resolve() != target.resolve()
    if copy_config and target.is_file() and not filecmp.cmp(target, config, shallow=False):
        # It may be the config of other weights (e.g. the input's own, beside an output of the same name).
        raise ConversionError(f"{target} exists and differs from the config {config}; remove it or choose another "
                              "output name")
    tensors = _contiguous_unshared(read_weights(weights_in))
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt", "source": weights_in.name})
        logger.info("wrote %d tensors to %s", len(tensors), out_path)
        if copy_config:
            with atomic_path(target) as tmp:
                shutil.copyfile(config, tmp)
            logger.info("copied config %s to %s", config, target)
    except OSError as exc:
        raise ConversionError(f"cannot write {out_path}: {exc.strerror or exc}") from None
    if config is None:
        logger.warning("no .model config given (--model); only the tensors were written")
    return out_path


def _config_source(weights_in: Path, model_in: Optional[os.PathLike]) -> Optional[Path]:
    """The config to copy: ``model_in`` (must exist) or ``weights_in.with_suffix('.model')`` if present."""
    if model_in is None:
        guess = weights_in.with_suffix(".model")
        if not guess.is_file():
            return None
        model_in = guess
    model_in = Path(model_in)
    if not model_in.is_file():
        raise ConversionError(f"model config not found: {model_in}")
    _check_config(model_in)
    return model_in


def _check_config(path: Path) -> None:
    """Parse the config with the safe (bounded, restricted-unpickler) loader before copying it.

    Only the structure is checked (``model.args.net.args`` is a dict), so IDM configs convert too.
    """
    try:
        load_net_args(path)
    except ModelFileError as exc:
        raise ConversionError(f"{path} is not a valid .model config: {exc}") from exc


def main(argv: Optional[Sequence[str]] = None) -> int:
    """CLI entry point; bad input is one line on stderr (``error: ...``) and exit status 2."""
    parser = OneLineErrorParser(
        prog="python -m vpt_agent.convert",
        description="Convert a VPT .weights file to .safetensors (the .model config is copied to OUT.model).",
    )
    parser.add_argument("weights", help="input .weights file (torch state dict)")
    parser.add_argument("output", help="output .safetensors file")
    parser.add_argument("--model", default=None, help="the .model config to copy next to the output "
                        "(default: IN.model if it exists)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        convert(args.weights, args.output, args.model)
    except ConversionError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
