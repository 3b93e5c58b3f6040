"""Item rewards computed from inventory changes (MineRL's HumanSurvival pays no reward by itself).

A reward table maps *reward names* to an :class:`ItemReward`: a reward per unit obtained and a cap on how many
units pay per episode. A reward name is either an exact MineRL item name (``"cobblestone"``) or one of the
:data:`ITEM_GROUPS`, which sum several Minecraft 1.16 items: ``"log"`` = oak/spruce/birch/jungle/acacia/dark_oak
``_log`` (the six MineRL's ObtainDiamondShovel counts; nether stems and stripped logs are not logs here),
``"planks"`` = the six matching ``_planks``.

"Obtained" means an increase of the (grouped) inventory count between two consecutive observations. Decreases
(crafting consumes logs, placing a crafting table, dropping items) are ignored, so an item used up and obtained
again counts again, until the cap. Counts are compared per reward name, so within a group only the net change of
the whole group in one step is seen. ``info["items"]`` holds, per reward name, the units obtained so far in the
episode, capped or not (monotone, so ``info["items"][name] > 0`` means "obtained at least once": what per-item
success rates count).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import gymnasium as gym
import numpy as np

from .errors import EnvArgumentError

WOODS = ("oak", "spruce", "birch", "jungle", "acacia", "dark_oak")
ITEM_GROUPS: dict[str, tuple[str, ...]] = {
    "log": tuple(f"{wood}_log" for wood in WOODS),
    "planks": tuple(f"{wood}_planks" for wood in WOODS),
}


@dataclass(frozen=True)
class ItemReward:
    """Reward for one item (or item group).

    Attributes:
        per_unit: paid for each unit obtained, up to ``cap`` units.
        cap: how many units pay per episode (``None``: unlimited).
    """

    per_unit: float
    cap: Optional[int] = 1


#: VPT's RL fine-tuning reward (the VPT paper's appendix, as quoted in issue 12): each unit obtained pays
#: ``per_unit`` until ``cap`` units were paid in the episode. The entry order is the tech-tree order used in
#: reports. Capped items pay at most 24 in total; each diamond adds 8/3 and each diamond pickaxe 8.
VPT_RL_REWARDS: dict[str, ItemReward] = {
    "log": ItemReward(1 / 8, cap=8),
    "planks": ItemReward(1 / 20, cap=20),
    "stick": ItemReward(1 / 16, cap=16),
    "crafting_table": ItemReward(1.0, cap=1),
    "wooden_pickaxe": ItemReward(1.0, cap=1),
    "cobblestone": ItemReward(1 / 11, cap=11),
    "stone_pickaxe": ItemReward(1.0, cap=1),
    "furnace": ItemReward(1.0, cap=1),
    "coal": ItemReward(2 / 5, cap=5),
    "torch": ItemReward(1 / 8, cap=16),
    "iron_ore": ItemReward(4 / 3, cap=3),
    "iron_ingot": ItemReward(4 / 3, cap=3),
    "iron_pickaxe": ItemReward(4.0, cap=1),
    "diamond": ItemReward(8 / 3, cap=None),
    "diamond_pickaxe": ItemReward(8.0, cap=None),
}

TableLike = Mapping[str, Union[ItemReward, float, int]]


def normalise_table(table: TableLike) -> dict[str, ItemReward]:
    """Accept ``{name: ItemReward}`` or ``{name: number}`` (a number pays once per episode: cap 1)."""
    if not isinstance(table, Mapping) or not table:
        raise EnvArgumentError("item reward table must be a non-empty mapping of item name -> ItemReward or number")
    out: dict[str, ItemReward] = {}
    for name, entry in table.items():
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = ItemReward(float(entry))
        if not isinstance(entry, ItemReward):
            raise EnvArgumentError(f"table entry for {name!r} must be an ItemReward or a number, got {entry!r}")
        if entry.cap is not None and (isinstance(entry.cap, bool) or not isinstance(entry.cap, int)
                                      or entry.cap < 1):
            raise EnvArgumentError(f"cap for {name!r} must be an int >= 1 or None, got {entry.cap!r}")
        if not np.isfinite(entry.per_unit):
            raise EnvArgumentError(f"per_unit for {name!r} must be finite, got {entry.per_unit!r}")
        out[str(name)] = entry
    return out


def item_count(inventory: Mapping[str, Any], name: str) -> int:
    """Count of an item or item group in a MineRL inventory dict (values may be 0-d arrays; missing = 0)."""
    members = ITEM_GROUPS.get(name, (name,))
    return int(sum(int(np.asarray(inventory.get(member, 0))) for member in members))


def max_capped_reward(table: TableLike) -> float:
    """The most the capped entries of a table can pay in one episode (uncapped entries are left out)."""
    return float(sum(e.per_unit * e.cap for e in normalise_table(table).values() if e.cap is not None))


class ItemRewardWrapper(gym.Wrapper):
    """Pay for obtained items, computed from ``obs["inventory"]`` changes between consecutive observations.

    Args:
        env: a Gymnasium env whose observations have an ``inventory`` dict (MineRL, the voxel env).
        table: reward table (default :data:`VPT_RL_REWARDS`).
        keep_env_reward: add the env's own reward (default False: the item reward replaces it).

    ``info["items"]``: ``{reward name: units obtained this episode}`` (also beyond the cap);
    ``info["item_reward"]``: this step's item reward.
    """

    def __init__(self, env: gym.Env, table: Optional[TableLike] = None, keep_env_reward: bool = False):
        super().__init__(env)
        self.table = normalise_table(VPT_RL_REWARDS if table is None else table)
        self.keep_env_reward = keep_env_reward
        self._last: dict[str, int] = {}
        self._obtained: dict[str, int] = {}

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last = self._counts(obs)  # the starting inventory is not "obtained"
        self._obtained = {name: 0 for name in self.table}
        info = dict(info)
        info["items"] = dict(self._obtained)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        counts = self._counts(obs)
        item_reward = 0.0
        for name, entry in self.table.items():
            gained = max(0, counts[name] - self._last[name])
            if not gained:
                continue
            already = self._obtained[name]
            paid = gained if entry.cap is None else max(0, min(already + gained, entry.cap) - already)
            item_reward += paid * entry.per_unit
            self._obtained[name] = already + gained
        self._last = counts
        info = dict(info)
        info["items"] = dict(self._obtained)
        info["item_reward"] = item_reward
        total = item_reward + (float(reward) if self.keep_env_reward else 0.0)
        return obs, total, terminated, truncated, info

    def _counts(self, obs: Mapping[str, Any]) -> dict[str, int]:
        if not isinstance(obs, Mapping) or "inventory" not in obs:
            raise EnvArgumentError("ItemRewardWrapper needs observations with an 'inventory' dict")
        return {name: item_count(obs["inventory"], name) for name in self.table}
