"""Gymnasium environments for VPT agents.

Importing this package registers (cheaply: nothing heavy is imported, ``minerl`` least of all):

* ``vpt/VoxelTreechop-v0``: an embedded Minecraft-like env that runs anywhere (see :mod:`vpt_envs.voxel`).
* ``vpt/MineRLHumanSurvival-v0`` (VPT's settings plus the item-reward wrapper), ``vpt/MineRLObtainDiamondShovel-v0``
  and the BASALT ids ``vpt/MineRLBasalt{FindCave,MakeWaterfall,CreateVillageAnimalPen,BuildVillageHouse}-v0``:
  MineRL 1.0 behind a Gymnasium adapter (see :mod:`vpt_envs.minerl`). They need MineRL installed at ``make`` time.
"""
from __future__ import annotations

import gymnasium

from .errors import EnvCrashed, EnvValidationError, MineRLNotInstalledError

#: Registered default time limits (steps; 20 steps = 1 s of game time).
MINERL_TIME_LIMITS: dict[str, int] = {
    "MineRLHumanSurvival-v0": 18000,  # HumanSurvival has none; 15 min like ObtainDiamondShovel
    "MineRLObtainDiamondShovel-v0": 18000,
    "MineRLBasaltFindCave-v0": 3600,
    "MineRLBasaltMakeWaterfall-v0": 6000,
    "MineRLBasaltCreateVillageAnimalPen-v0": 6000,
    "MineRLBasaltBuildVillageHouse-v0": 14400,
}
VOXEL_TREECHOP_ID = "vpt/VoxelTreechop-v0"
VOXEL_TIME_LIMIT = 8000  # as MineRLTreechop


def _register_all() -> None:
    if VOXEL_TREECHOP_ID not in gymnasium.registry:
        gymnasium.register(VOXEL_TREECHOP_ID, entry_point="vpt_envs.voxel:VoxelTreechopEnv",
                           max_episode_steps=VOXEL_TIME_LIMIT)
    for minerl_id, limit in MINERL_TIME_LIMITS.items():
        env_id = f"vpt/{minerl_id}"
        if env_id in gymnasium.registry:
            continue
        # The time limit is applied by gymnasium.make (TimeLimit), so the adapter's own limit is switched off.
        gymnasium.register(env_id, entry_point="vpt_envs.minerl:make", max_episode_steps=limit,
                           disable_env_checker=True,
                           kwargs={"env_id_or_spec": minerl_id, "max_episode_steps": None})


_register_all()

__all__ = ["EnvCrashed", "EnvValidationError", "MineRLNotInstalledError", "MINERL_TIME_LIMITS",
           "VOXEL_TREECHOP_ID"]
