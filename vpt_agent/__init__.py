"""vpt-agent: OpenAI's VPT Minecraft agents, exact, safe to load, batched and fast.

The package is lazy (PEP 562): ``import vpt_agent`` imports neither torch nor cv2, so command-line ``--help``
and env worker processes start fast. Each public name is imported from its module on first access.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "VPTAgent": "agent", "AgentStep": "agent", "preprocess_pov": "agent",
    "VPTPolicy": "policy", "PolicyConfig": "config",
    "LoadReport": "loading", "load_model_config": "loading", "read_state_dict": "loading",
    "ModelFileError": "loading", "WeightsFileError": "loading", "WeightsMismatchError": "loading",
    "VPTError": "errors", "VPTIDM": "idm",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'vpt_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .agent import AgentStep, VPTAgent, preprocess_pov  # noqa: F401
    from .config import PolicyConfig  # noqa: F401
    from .errors import VPTError  # noqa: F401
    from .idm import VPTIDM  # noqa: F401
    from .loading import (LoadReport, ModelFileError, WeightsFileError, WeightsMismatchError,  # noqa: F401
                          load_model_config, read_state_dict)
    from .policy import VPTPolicy  # noqa: F401
