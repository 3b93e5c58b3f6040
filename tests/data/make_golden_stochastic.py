"""Record the official agent's *sampled* actions on the golden small model (tests/data/golden_stochastic.npz).

Needs the official code (VPT_OFFICIAL=/path/to/Video-Pre-Training) and torch, numpy, opencv in its environment;
``minerl`` and ``gym`` are stubbed. The official sampler draws from torch's global RNG, seeded here right before
the rollout; ``VPTAgent(seed=SEED)`` draws the same numbers from its own generator.
"""
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SEED, OBS_SEED, STEPS = 123, 9, 40


def main() -> None:
    sys.path.insert(0, str(HERE.parent))
    from golden_helpers.official import small_model_agent, use_official_code

    use_official_code()
    from golden_helpers.obs_gen import make_obs

    off = small_model_agent(HERE)
    torch.manual_seed(SEED)
    buttons, camera = [], []
    for t in range(STEPS):
        inp = off._env_obs_to_agent({"pov": make_obs(OBS_SEED, t)})
        ac, off.hidden_state, _ = off.policy.act(inp, off._dummy_first, off.hidden_state, stochastic=True)
        buttons.append(int(ac["buttons"][0, 0]))
        camera.append(int(ac["camera"][0, 0]))
    np.savez_compressed(HERE / "golden_stochastic.npz", seed=SEED, obs_seed=OBS_SEED,
                        joint_buttons=np.array(buttons), joint_camera=np.array(camera))
    print("distinct sampled button actions:", len(set(buttons)))


if __name__ == "__main__":
    main()
