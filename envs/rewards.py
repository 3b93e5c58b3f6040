"""Item rewards computed from inventory changes (MineRL's HumanSurvival pays no reward by itself).

An item table maps *reward names* to a reward per newly obtained unit and a cap on how many units pay. A
reward name is either an exact MineRL item name (``"cobblestone"``) or one of the :data:`ITEM_GROUPS`
categories, which sum several Minecraft 1.16 items: ``"log"`` = oak/spruce/birch/jungle/acacia/dark_oak
``_log`` (the same six MineRL's ObtainDiamondShovel counts; nether stems and stripped logs are not logs here),
``"planks"`` = the six matching ``_planks``.

"Newly obtained" means an increase of the (grouped) inventory count between two consecutive observations.
Decreases (crafting consumes logs, dropping items) are ignored, so re-obtaining an item after using it counts
again; ``info["items"]`` holds, per reward name, the total obtained so far in the episode (monotone, so
``info["items"][name] > 0`` means "obtained at least once" for success-rate reports).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import gymnasium as gym
import numpy as np

WOODS = ("oak", "spruce", "birch", "jungle", "acacia", "dark_oak")
ITEM_GROUPS: dict[str, tuple[str, ...]] = {
    "log": tuple(f"{wood}_log" for wood in WOODS),
    "planks": tuple(f"{wood}_planks" for wood in WOODS),
}


@dataclass(frozen=True)
class ItemReward:
    """Reward for one item (or item group).

    Attributes:
        reward: paid per newly obtained unit.
        max_times: how many units pay per episode (``None``: unlimited).
    """

    reward: float
    max_times: Optional[int] = 1


#: VPT's diamond-pickaxe item sequence (the milestones of its RL fine-tuning task), in order. Each item pays
#: once per episode, the first time it is obtained; values double along the tech tree like MineRL's
#: ObtainDiamond rewards. Pass your own table to :class:`ItemRewardWrapper` to change values or caps.
VPT_DIAMOND_PICKAXE_TABLE: dict[str, ItemReward] = {
    "log": ItemReward(1), "planks": ItemReward(2), "crafting_table": ItemReward(4),
    "wooden_pickaxe": ItemReward(8), "cobblestone": ItemReward(16), "stone_pickaxe": ItemReward(32),
    "furnace": ItemReward(32), "iron_ore": ItemReward(64), "iron_ingot": ItemReward(128),
    "iron_pickaxe": ItemReward(256), "diamond": ItemReward(1024), "diamond_pickaxe": ItemReward(2048),
}

#: MineRL's ObtainDiamondShovel table (each category pays once per episode).
OBTAIN_DIAMOND_SHOVEL_TABLE: dict[str, ItemReward] = {
    "log": ItemReward(1), "planks": ItemReward(2), "stick": ItemReward(4), "crafting_table": ItemReward(4),
    "wooden_pickaxe": ItemReward(8), "cobblestone": ItemReward(16), "furnace": ItemReward(32),
    "stone_pickaxe": ItemReward(32), "iron_ore": ItemReward(64), "iron_ingot": ItemReward(128),
    "iron_pickaxe": ItemReward(256), "diamond": ItemReward(1024), "diamond_shovel": ItemReward(2048),
}

TableLike = Mapping[str, Union[ItemReward, float, int]]


def normalise_table(table: TableLike) -> dict[str, ItemReward]:
    """Accept ``{name: ItemReward}`` or ``{name: number}`` (a number pays once per episode)."""
    if not isinstance(table, Mapping) or not table:
        raise ValueError("item reward table must be a non-empty mapping of item name -> ItemReward or number")
    out: dict[str, ItemReward] = {}
    for name, entry in table.items():
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = ItemReward(float(entry))
        if not isinstance(entry, ItemReward):
            raise ValueError(f"table entry for {name!r} must be an ItemReward or a number, got {entry!r}")
        if entry.max_times is not None and entry.max_times < 1:
            raise ValueError(f"max_times for {name!r} must be >= 1 or None, got {entry.max_times}")
        out[str(name)] = entry
    return out


def item_count(inventory: Mapping[str, Any], name: str) -> int:
    """Count of an item or item group in a MineRL inventory dict (values may be 0-d arrays; missing = 0)."""
    members = ITEM_GROUPS.get(name, (name,))
    return int(sum(int(np.asarray(inventory.get(member, 0))) for member in members))


class ItemRewardWrapper(gym.Wrapper):
    """Pay for newly obtained items, computed from ``obs["inventory"]`` changes.

    Args:
        env: a Gymnasium env whose observations have an ``inventory`` dict (MineRL, the voxel env).
        table: reward table (default :data:`VPT_DIAMOND_PICKAXE_TABLE`).
        keep_env_reward: add the env's own reward (default False: the item reward replaces it).

    ``info["items"]``: ``{reward name: units obtained this episode}``; ``info["item_reward"]``: this step's
    item reward.
    """

    def __init__(self, env: gym.Env, table: Optional[TableLike] = None, keep_env_reward: bool = False):
        super().__init__(env)
        self.table = normalise_table(VPT_DIAMOND_PICKAXE_TABLE if table is None else table)
        self.keep_env_reward = keep_env_reward
        self._last: dict[str, int] = {}
        self._obtained: dict[str, int] = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last = self._counts(obs)
        self._obtained = {name: 0 for name in self.table}
        info = dict(info)
        info["items"] = dict(self._obtained)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        counts = self._counts(obs)
        item_reward = 0.0
        for name, entry in self.table.items():
            gained = max(0, counts[name] - self._last.get(name, 0))
            if not gained:
                continue
            paid = gained if entry.max_times is None else max(0, min(gained, entry.max_times - self._obtained[name]))
            item_reward += paid * entry.reward
            self._obtained[name] += gained
        self._last = counts
        info = dict(info)
        info["items"] = dict(self._obtained)
        info["item_reward"] = item_reward
        total = item_reward + (float(reward) if self.keep_env_reward else 0.0)
        return obs, total, terminated, truncated, info

    def _counts(self, obs: Mapping[str, Any]) -> dict[str, int]:
        if not isinstance(obs, Mapping) or "inventory" not in obs:
            raise ValueError("ItemRewardWrapper needs observations with an 'inventory' dict")
        return {name: item_count(obs["inventory"], name) for name in self.table}
