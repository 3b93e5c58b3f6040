"""vpt-agent: OpenAI's VPT Minecraft agents, exact, safe to load, batched and fast."""
from .agent import AgentStep, VPTAgent, preprocess_pov
from .config import PolicyConfig
from .loading import (LoadReport, ModelFileError, WeightsFileError, WeightsMismatchError, load_model_config,
                      read_state_dict)
from .policy import VPTPolicy

__version__ = "0.1.0"
__all__ = [
    "VPTAgent", "AgentStep", "VPTPolicy", "PolicyConfig", "LoadReport", "load_model_config", "read_state_dict",
    "preprocess_pov", "ModelFileError", "WeightsFileError", "WeightsMismatchError",
]
