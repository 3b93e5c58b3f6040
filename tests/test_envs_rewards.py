"""Tests for the item-reward wrapper (vpt_envs.rewards) and VPT's RL reward table."""
from fractions import Fraction

import gymnasium as gym
import numpy as np
import pytest
import vpt_envs  # noqa: F401
from gymnasium import spaces
from vpt_envs.policies import TreechopScript
from vpt_envs.rewards import (
    ITEM_GROUPS,
    VPT_RL_REWARDS,
    ItemReward,
    ItemRewardWrapper,
    item_count,
    max_capped_reward,
    normalise_table,
)

#: Issue 12's table (the VPT paper's RL reward), typed in independently of the module: item -> (cap, per unit).
ISSUE_TABLE = {
    "log": (8, Fraction(1, 8)), "planks": (20, Fraction(1, 20)), "stick": (16, Fraction(1, 16)),
    "crafting_table": (1, 1), "wooden_pickaxe": (1, 1), "cobblestone": (11, Fraction(1, 11)),
    "stone_pickaxe": (1, 1), "furnace": (1, 1), "coal": (5, Fraction(2, 5)), "torch": (16, Fraction(1, 8)),
    "iron_ore": (3, Fraction(4, 3)), "iron_ingot": (3, Fraction(4, 3)), "iron_pickaxe": (1, 4),
    "diamond": (None, Fraction(8, 3)), "diamond_pickaxe": (None, 8),
}


class InventoryScript(gym.Env):
    """Replays a list of inventories (MineRL style: 0-d int32 arrays) and pays env reward 0.5 per step."""

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
        return {"inventory": {k: np.array(v, np.int32) for k, v in self.inventories[self.t].items()}}


def rollout(env, steps=None):
    _, info = env.reset()
    rewards, infos = [], [info]
    for _ in range(steps if steps is not None else len(env.unwrapped.inventories) - 1):
        _, reward, _, _, info = env.step(0)
        rewards.append(reward)
        infos.append(info)
    return rewards, infos


def vpt(inventories):
    return rollout(ItemRewardWrapper(InventoryScript(inventories)))


def test_vpt_rl_table_is_the_papers_in_tech_tree_order():
    assert list(VPT_RL_REWARDS) == list(ISSUE_TABLE)
    for name, (cap, per_unit) in ISSUE_TABLE.items():
        entry = VPT_RL_REWARDS[name]
        assert entry.cap == cap and entry.per_unit == pytest.approx(float(per_unit), abs=1e-15), name
    assert max_capped_reward(VPT_RL_REWARDS) == pytest.approx(24.0)  # 13 capped items: 1+...+1+2+2+4+4+4


def test_log_group_covers_all_six_woods():
    assert item_count({"oak_log": np.array(2), "dark_oak_log": 3, "oak_planks": 5}, "log") == 5
    assert set(ITEM_GROUPS["log"]) == {"oak_log", "spruce_log", "birch_log", "jungle_log", "acacia_log",
                                       "dark_oak_log"}
    assert set(ITEM_GROUPS["planks"]) == {w.replace("_log", "_planks") for w in ITEM_GROUPS["log"]}
    assert item_count({}, "diamond") == 0


def test_wood_groups_sum_the_wood_types():
    rewards, infos = vpt([{}, {"oak_log": 1}, {"oak_log": 1, "birch_log": 2}, {"oak_log": 1, "birch_log": 2,
                                                                              "spruce_planks": 4, "oak_planks": 4}])
    assert rewards == pytest.approx([1 / 8, 2 / 8, 8 / 20])
    assert infos[-1]["items"]["log"] == 3 and infos[-1]["items"]["planks"] == 8


def test_caps_stop_paying_but_counting_goes_on():
    inventories = [{}, {"oak_log": 5}, {"oak_log": 12}, {"oak_log": 12, "torch": 20}, {"oak_log": 30, "torch": 40}]
    rewards, infos = vpt(inventories)
    assert rewards == pytest.approx([5 / 8, 3 / 8, 16 / 8, 0.0])  # log cap 8, torch cap 16 at 1/8
    assert infos[-1]["items"]["log"] == 30 and infos[-1]["items"]["torch"] == 40
    assert sum(rewards) == pytest.approx(1.0 + 2.0)


def test_uncapped_diamonds_pay_every_unit():
    rewards, infos = vpt([{}, {"diamond": 2}, {"diamond": 1}, {"diamond": 4, "diamond_pickaxe": 1},
                          {"diamond": 4, "diamond_pickaxe": 2}])
    # 2 diamonds; 3 used for the pickaxe... then 3 more; a second pickaxe
    assert rewards == pytest.approx([2 * 8 / 3, 0.0, 3 * 8 / 3 + 8, 8])
    assert infos[-1]["items"]["diamond"] == 5 and infos[-1]["items"]["diamond_pickaxe"] == 2


def test_crafting_consumption_is_ignored_and_reobtained_items_count_to_the_cap():
    inventories = [
        {},
        {"oak_log": 3},                                               # +3 logs
        {"oak_log": 2, "oak_planks": 4},                              # craft planks: log -1 ignored, +4 planks
        {"oak_log": 0, "oak_planks": 12},                             # 2 more logs -> +8 planks
        {"oak_planks": 8, "crafting_table": 1},                       # table from 4 planks
        {"oak_planks": 6, "crafting_table": 1, "stick": 4},           # 2 planks -> 4 sticks
        {"oak_planks": 3, "crafting_table": 1, "stick": 2, "wooden_pickaxe": 1},  # 3 planks + 2 sticks
        {"oak_planks": 3, "stick": 2, "wooden_pickaxe": 1},           # table placed: decrease ignored
        {"oak_planks": 3, "stick": 2, "wooden_pickaxe": 1, "crafting_table": 1},  # picked up again: cap 1
        {"oak_log": 6, "oak_planks": 3, "stick": 2, "wooden_pickaxe": 1, "crafting_table": 1},  # 6 logs (cap 8)
    ]
    rewards, infos = vpt(inventories)
    expected = [3 / 8, 4 / 20, 8 / 20, 1.0, 4 / 16, 1.0, 0.0, 0.0, 5 / 8]  # 3 + 6 logs: only 5 more pay
    assert rewards == pytest.approx(expected)
    items = infos[-1]["items"]
    assert items["log"] == 9 and items["planks"] == 12 and items["stick"] == 4
    assert items["crafting_table"] == 2 and items["wooden_pickaxe"] == 1


def test_a_full_diamond_pickaxe_episode_pays_the_whole_table():
    everything = {"oak_log": 8, "oak_planks": 20, "stick": 16, "crafting_table": 1, "wooden_pickaxe": 1,
                  "cobblestone": 11, "stone_pickaxe": 1, "furnace": 1, "coal": 5, "torch": 16, "iron_ore": 3,
                  "iron_ingot": 3, "iron_pickaxe": 1, "diamond": 3, "diamond_pickaxe": 1}
    doubled = {name: 2 * count for name, count in everything.items()}
    rewards, infos = vpt([{}, everything, doubled])
    assert rewards[0] == pytest.approx(24.0 + 3 * 8 / 3 + 8)
    assert rewards[1] == pytest.approx(3 * 8 / 3 + 8)  # only the uncapped items pay again
    assert all(infos[-1]["items"][name] == 2 * everything.get(name, 0) for name in ("stick", "coal", "diamond"))


def test_starting_inventory_is_not_obtained_and_default_table_is_vpts():
    env = ItemRewardWrapper(InventoryScript([{"oak_log": 4}, {"oak_log": 5}]))
    rewards, infos = rollout(env)
    assert rewards == pytest.approx([1 / 8]) and infos[0]["items"]["log"] == 0
    assert env.table == VPT_RL_REWARDS and set(infos[-1]["items"]) == set(VPT_RL_REWARDS)
    assert infos[-1]["kept"] and infos[-1]["item_reward"] == pytest.approx(1 / 8)


def test_user_table_with_caps_and_env_reward():
    inventories = [{}, {"dirt": 2}, {"dirt": 5}, {"dirt": 9, "birch_log": 1}]
    table = {"dirt": ItemReward(0.25, cap=4), "log": ItemReward(1.0, cap=None)}
    rewards, infos = rollout(ItemRewardWrapper(InventoryScript(inventories), table, keep_env_reward=True))
    assert rewards == [0.5 + 0.5, 0.5 + 0.5, 0.5 + 1.0]  # dirt pays for 2 then 2 more (cap 4), then log
    assert infos[-1]["items"] == {"dirt": 9, "log": 1}
    assert normalise_table({"diamond": 3}) == {"diamond": ItemReward(3.0, 1)}  # a number pays once


def test_counters_reset_between_episodes():
    env = ItemRewardWrapper(InventoryScript([{}, {"crafting_table": 1}]))
    assert rollout(env)[0] == [1.0]
    assert rollout(env)[0] == [1.0]


@pytest.mark.parametrize("table", [{}, {"log": "a lot"}, {"log": ItemReward(1, cap=0)}, {"log": ItemReward(1, 2.5)},
                                   {"log": ItemReward(float("nan"))}, [("log", 1)]])
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
    env = ItemRewardWrapper(gym.make("vpt/VoxelTreechop-v0"), table={"log": ItemReward(1.0, cap=None),
                                                                      "dirt": 5.0})
    env.reset(seed=2)
    policy = TreechopScript(env)
    total, info = 0.0, {}
    for _ in range(400):
        _, reward, terminated, truncated, info = env.step(policy())
        total += reward
    assert info["items"]["log"] >= 2 and total == info["items"]["log"]
    assert info["items"]["log"] == env.unwrapped.logs
