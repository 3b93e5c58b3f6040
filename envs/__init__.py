"""Gymnasium environments for VPT agents.

Importing this package registers (cheaply: nothing heavy is imported, ``minerl`` least of all):

* ``vpt/VoxelTreechop-v0``: an embedded Minecraft-like env that runs anywhere (see :mod:`vpt_envs.voxel`).
* ``vpt/MineRLHumanSurvival-v0`` (VPT's settings, VPT's RL reward, 12,000 steps), ``vpt/MineRLObtainDiamondShovel-v0``
  and the BASALT ids ``vpt/MineRLBasalt{FindCave,MakeWaterfall,CreateVillageAnimalPen,BuildVillageHouse}-v0``:
  MineRL 1.0 behind a Gymnasium adapter (see :mod:`vpt_envs.minerl`; ids, limits and rewards in
  :data:`vpt_envs.minerl.MINERL_ENVS`). They need MineRL installed at ``make`` time.

Evaluation presets (env, episode length, reward, public reference results) are in :mod:`vpt_envs.protocols`.
"""
from __future__ import annotations

import gymnasium

from .errors import (EnvArgumentError, EnvCrashed, EnvStateError, EnvValidationError, MineRLNotInstalledError,
                     UnknownProtocolError)
from .minerl import MINERL_ENVS

VOXEL_TREECHOP_ID = "vpt/VoxelTreechop-v0"
VOXEL_TIME_LIMIT = 8000  # as MineRLTreechop


def _register_all() -> None:
    if VOXEL_TREECHOP_ID not in gymnasium.registry:
        gymnasium.register(VOXEL_TREECHOP_ID, entry_point="vpt_envs.voxel:VoxelTreechopEnv",
                           max_episode_steps=VOXEL_TIME_LIMIT)
    for minerl_id, entry in MINERL_ENVS.items():
        env_id = f"vpt/{minerl_id}"
        if env_id in gymnasium.registry:
            continue
        # gymnasium.make applies the time limit (TimeLimit); the entry point adds none of its own. Gymnasium's
        # passive env checker stays on: the adapter makes observations members of the declared space.
        gymnasium.register(env_id, entry_point="vpt_envs.minerl:make_without_time_limit",
                           max_episode_steps=entry.time_limit, kwargs={"env_id_or_spec": minerl_id})


_register_all()

__all__ = ["EnvArgumentError", "EnvCrashed", "EnvStateError", "EnvValidationError", "MineRLNotInstalledError",
           "UnknownProtocolError", "MINERL_ENVS", "VOXEL_TIME_LIMIT", "VOXEL_TREECHOP_ID"]
