"""Tests for the evaluation presets (vpt_envs.protocols)."""
import gymnasium as gym
import pytest
import vpt_envs
from vpt_envs import UnknownProtocolError
from vpt_envs.errors import VPTError
from vpt_envs.protocols import PROTOCOLS, TECH_TREE, get_protocol
from vpt_envs.rewards import VPT_RL_REWARDS, ItemRewardWrapper


def test_vpt_presets_fix_env_length_and_reward_together():
    rl, bc = get_protocol("vpt-rl"), get_protocol("vpt-bc")
    assert (rl.env_id, rl.max_episode_steps, rl.reward) == ("vpt/MineRLHumanSurvival-v0", 12_000, VPT_RL_REWARDS)
    assert (bc.env_id, bc.max_episode_steps, bc.reward) == ("vpt/MineRLHumanSurvival-v0", 72_000, VPT_RL_REWARDS)
    assert rl.max_episode_steps == gym.spec(rl.env_id).max_episode_steps  # the registered default is vpt-rl's
    assert rl.items == bc.items == TECH_TREE
    assert rl.to_dict() == {"name": "vpt-rl", "env_id": "vpt/MineRLHumanSurvival-v0", "max_episode_steps": 12_000,
                            "reward": "VPT_RL_REWARDS", "items": list(TECH_TREE)}
    for protocol in PROTOCOLS.values():
        assert protocol.env_id in gym.registry and protocol.name == next(k for k, v in PROTOCOLS.items()
                                                                         if v is protocol)


def test_tech_tree_order():
    assert TECH_TREE[0] == "log" and TECH_TREE[-2:] == ("diamond", "diamond_pickaxe")
    order = {item: i for i, item in enumerate(TECH_TREE)}
    for before, after in [("log", "planks"), ("planks", "crafting_table"), ("crafting_table", "wooden_pickaxe"),
                          ("wooden_pickaxe", "cobblestone"), ("cobblestone", "stone_pickaxe"),
                          ("stone_pickaxe", "iron_ore"), ("iron_ore", "iron_ingot"), ("furnace", "iron_ingot"),
                          ("iron_ingot", "iron_pickaxe"), ("iron_pickaxe", "diamond"), ("coal", "torch")]:
        assert order[before] < order[after]


def test_reference_results_are_labelled_with_source_and_episode_count():
    refs = get_protocol("vpt-rl").references_for("rl-from-early-game-2x")
    assert len(refs) == 3 and get_protocol("vpt-rl").references_for("foundation-model-1x") == []
    pr14 = refs[0]
    assert pr14.success_rates == {"wooden_pickaxe": 0.9993, "stone_pickaxe": 0.9965, "iron_pickaxe": 0.7959,
                                  "diamond": 0.1438, "diamond_pickaxe": 0.0161}
    assert pr14.label == "openai/Video-Pre-Training PR #14, 21 FPS run (~1,500 episodes)"
    assert "pull/14" in pr14.url
    paper = refs[-1]
    assert paper.approx_rates and paper.episodes is None and "episode count not stated" in paper.label
    assert paper.success_rates == {"iron_pickaxe": 0.80, "diamond": 0.20, "diamond_pickaxe": 0.025}
    for ref in refs:
        assert set(ref.success_rates) <= set(TECH_TREE)
        assert all(0.0 <= rate <= 1.0 for rate in ref.success_rates.values())


@pytest.mark.parametrize("name", ["vpt-xl", "", None, "VPT-RL"])
def test_unknown_protocol_is_one_clear_error(name):
    with pytest.raises(UnknownProtocolError) as caught:
        get_protocol(name)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, VPTError)
    assert str(caught.value) == f"unknown protocol {str(name)!r}; known: voxel-treechop, vpt-bc, vpt-rl"


def test_make_applies_length_and_reward():
    env = get_protocol("voxel-treechop").make(max_episode_steps=3)  # explicit arguments override
    assert isinstance(env, ItemRewardWrapper) and env.env.spec.max_episode_steps == 3
    _, info = env.reset(seed=0)
    steps = [env.step({}) for _ in range(3)]
    assert steps[-1][3] is True and steps[-1][4]["items"] == {"log": 0}
    env.close()
    assert get_protocol("voxel-treechop").max_episode_steps == vpt_envs.VOXEL_TIME_LIMIT
