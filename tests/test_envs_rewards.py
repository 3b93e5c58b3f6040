"""Tests for the item-reward wrapper (vpt_envs.rewards)."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

import vpt_envs  # noqa: F401
from vpt_envs.policies import TreechopScript
from vpt_envs.rewards import (ITEM_GROUPS, VPT_DIAMOND_PICKAXE_TABLE, ItemReward, ItemRewardWrapper, item_count,
                          normalise_table)


class InventoryScript(gym.Env):
    """Replays a list of inventories (MineRL style: 0-d arrays) and pays env reward 0.5 per step."""

    observation_space = spaces.Dict({"inventory": spaces.Dict({})})
    action_space = spaces.Discrete(1)

    def __init__(self, inventories):
        self.inventories = inventories

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.5, self.t == len(self.inventories) - 1, False, {"kept": True}

    def _obs(self):
        return {"inventory": {k: np.array(v) for k, v in self.inventories[self.t].items()}}


def rollout(env, steps):
    _, info = env.reset()
    rewards, infos = [], [info]
    for _ in range(steps):
        _, reward, _, _, info = env.step(0)
        rewards.append(reward)
        infos.append(info)
    return rewards, infos


def test_log_group_covers_all_six_woods():
    assert item_count({"oak_log": np.array(2), "dark_oak_log": 3, "oak_planks": 5}, "log") == 5
    assert set(ITEM_GROUPS["log"]) == {"oak_log", "spruce_log", "birch_log", "jungle_log", "acacia_log",
                                       "dark_oak_log"}
    assert item_count({}, "diamond") == 0


def test_default_table_pays_each_item_once_and_reports_counts():
    inventories = [{}, {"oak_log": 1}, {"oak_log": 3}, {"oak_log": 1, "oak_planks": 8},
                   {"oak_log": 2, "oak_planks": 4, "crafting_table": 1}]
    env = ItemRewardWrapper(InventoryScript(inventories))
    rewards, infos = rollout(env, 4)
    assert rewards == [1.0, 0.0, 2.0, 4.0]  # log once, planks once, crafting table once
    assert infos[0]["items"]["log"] == 0
    assert infos[-1]["items"]["log"] == 4  # 1 + 2 + (decrease ignored) + 1
    assert infos[-1]["items"]["planks"] == 8 and infos[-1]["items"]["crafting_table"] == 1
    assert infos[-1]["kept"] and set(infos[-1]["items"]) == set(VPT_DIAMOND_PICKAXE_TABLE)


def test_user_table_with_caps_and_env_reward():
    inventories = [{}, {"dirt": 2}, {"dirt": 5}, {"dirt": 9, "birch_log": 1}]
    table = {"dirt": ItemReward(0.25, max_times=4), "log": ItemReward(1.0, max_times=None)}
    rewards, infos = rollout(ItemRewardWrapper(InventoryScript(inventories), table, keep_env_reward=True), 3)
    assert rewards == [0.5 + 0.5, 0.5 + 0.5, 0.5 + 1.0]  # dirt pays for 2 then 2 more (cap 4), then log
    assert infos[-1]["items"] == {"dirt": 9, "log": 1}
    # plain numbers are accepted as "pay once"
    assert normalise_table({"diamond": 3}) == {"diamond": ItemReward(3.0, 1)}


def test_counters_reset_between_episodes():
    env = ItemRewardWrapper(InventoryScript([{}, {"oak_log": 1}]))
    assert rollout(env, 1)[0] == [1.0]
    assert rollout(env, 1)[0] == [1.0]


@pytest.mark.parametrize("table", [{}, {"log": "a lot"}, {"log": ItemReward(1, max_times=0)}, [("log", 1)]])
def test_bad_tables_are_rejected(table):
    with pytest.raises(ValueError):
        normalise_table(table)


def test_missing_inventory_is_a_clear_error():
    class NoInventory(InventoryScript):
        def _obs(self):
            return {"pov": np.zeros((2, 2, 3), np.uint8)}

    with pytest.raises(ValueError, match="inventory"):
        ItemRewardWrapper(NoInventory([{}, {}])).reset()


def test_wrapper_on_embedded_env():
    env = ItemRewardWrapper(gym.make("vpt/VoxelTreechop-v0"), table={"log": ItemReward(1.0, max_times=None),
                                                                      "dirt": 5.0})
    env.reset(seed=2)
    policy = TreechopScript(env)
    total, info = 0.0, {}
    for _ in range(400):
        _, reward, terminated, truncated, info = env.step(policy())
        total += reward
    assert info["items"]["log"] >= 2 and total == info["items"]["log"]
    assert info["items"]["log"] == env.unwrapped.logs
