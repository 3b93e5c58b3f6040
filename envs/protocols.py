"""Evaluation protocols: presets that fix env, episode length and reward together, with public reference results.

A result is comparable with the paper or with someone else's run only under the same protocol. Look one up
with :func:`get_protocol` (``vpt-rl``, ``vpt-bc``, ``voxel-treechop``) and build its env with
:meth:`Protocol.make`; :data:`TECH_TREE` is the item order for reports.

Sources: VPT's RL fine-tuning episodes last 10 minutes (12,000 steps at 20 Hz) and pay
:data:`vpt_envs.rewards.VPT_RL_REWARDS`; its BC-model evaluations ran 60-minute episodes (72,000 steps)
(VPT paper, arXiv:2206.11795, as summarised in issue 12). Reference success rates: openai/Video-Pre-Training
PR #14 (a comment by KarolisRam, 2022-07-22, read in the thread) and the paper's abstract / Fig. 7d.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import gymnasium

from . import VOXEL_TIME_LIMIT, VOXEL_TREECHOP_ID
from .errors import UnknownProtocolError
from .minerl import MINERL_ENVS
from .rewards import VPT_RL_REWARDS, ItemReward, ItemRewardWrapper

#: VPT's diamond-pickaxe tech tree, in the order reports list items (the order of VPT_RL_REWARDS).
TECH_TREE: tuple[str, ...] = tuple(VPT_RL_REWARDS)

HUMAN_SURVIVAL = "MineRLHumanSurvival-v0"
VPT_BC_EPISODE_STEPS = 72_000  # 60 min at 20 Hz: the VPT paper's BC-model evaluations


@dataclass(frozen=True)
class ReferenceResult:
    """Published per-item success rates: the share of episodes that obtained the item at least once.

    Attributes:
        source: who reported it, where.
        url: where to read it.
        model: the zoo model the numbers are for.
        episodes: how many episodes (``None``: not stated in the source).
        episodes_approx: True if the source gives the count only roughly ("about 1.5k").
        success_rates: item -> fraction in [0, 1].
        approx_rates: True if the source gives the rates only roughly ("over 80%").
        conditions: what the source says about how it was run, and what it leaves open.
    """

    source: str
    url: str
    model: str
    episodes: Optional[int]
    episodes_approx: bool
    success_rates: Mapping[str, float]
    approx_rates: bool
    conditions: str

    @property
    def label(self) -> str:
        """One line for tables and plots: source and episode count."""
        if self.episodes is None:
            count = "episode count not stated"
        else:
            count = f"{'~' if self.episodes_approx else ''}{self.episodes:,} episodes"
        return f"{self.source} ({count})"


@dataclass(frozen=True)
class Protocol:
    """An evaluation preset.

    Attributes:
        name: the preset's name (``--protocol NAME``).
        env_id: Gymnasium id (registered by ``import vpt_envs``).
        max_episode_steps: episode length in steps (20 steps = 1 s of game time).
        reward: item reward table paid through :class:`vpt_envs.rewards.ItemRewardWrapper`.
        reward_name: how reports name the reward.
        items: items whose per-episode success rate reports show, in tech-tree order.
        description: one line on what it is and where it comes from.
        references: public results under this protocol, for comparison.
    """

    name: str
    env_id: str
    max_episode_steps: int
    reward: Mapping[str, ItemReward]
    reward_name: str
    items: tuple[str, ...]
    description: str
    references: tuple[ReferenceResult, ...] = field(default=())

    def references_for(self, model: str) -> list[ReferenceResult]:
        """The reference results reported for a zoo model name (e.g. ``"rl-from-early-game-2x"``)."""
        return [ref for ref in self.references if ref.model == model]

    def to_dict(self) -> dict[str, Any]:
        """What ``run.json`` records: name, env, length and reward (the references stay here)."""
        return {"name": self.name, "env_id": self.env_id, "max_episode_steps": self.max_episode_steps,
                "reward": self.reward_name, "items": list(self.items)}

    def make(self, **overrides: Any) -> gymnasium.Env:
        """``gymnasium.make`` with this protocol's length and reward; ``overrides`` go to ``gymnasium.make``.

        MineRL ids take the table as their ``item_rewards`` kwarg; other envs are wrapped in
        :class:`vpt_envs.rewards.ItemRewardWrapper`, which then replaces their own reward.
        """
        kwargs = {"max_episode_steps": self.max_episode_steps, **overrides}
        if self.env_id.removeprefix("vpt/") in MINERL_ENVS:
            kwargs.setdefault("item_rewards", dict(self.reward))
            return gymnasium.make(self.env_id, **kwargs)
        return ItemRewardWrapper(gymnasium.make(self.env_id, **kwargs), table=self.reward)


_PR14_URL = "https://github.com/openai/Video-Pre-Training/pull/14"
_PR14_CONDITIONS = ("MineRL 1.0 HumanSurvival, {fps} steps/s wall-clock on average; episode length and reward not "
                    "stated in the thread")
#: Public results for ``rl-from-early-game-2x`` (VPT's RL fine-tuned diamond-pickaxe model).
RL_EARLY_GAME_REFERENCES: tuple[ReferenceResult, ...] = (
    ReferenceResult(
        source="openai/Video-Pre-Training PR #14, 21 FPS run", url=_PR14_URL, model="rl-from-early-game-2x",
        episodes=1500, episodes_approx=True, approx_rates=False,
        success_rates={"wooden_pickaxe": 0.9993, "stone_pickaxe": 0.9965, "iron_pickaxe": 0.7959,
                       "diamond": 0.1438, "diamond_pickaxe": 0.0161},
        conditions=_PR14_CONDITIONS.format(fps=21)),
    ReferenceResult(
        source="openai/Video-Pre-Training PR #14, 26 FPS run", url=_PR14_URL, model="rl-from-early-game-2x",
        episodes=1500, episodes_approx=True, approx_rates=False,
        success_rates={"wooden_pickaxe": 0.9954, "stone_pickaxe": 0.9928, "iron_pickaxe": 0.7731,
                       "diamond": 0.1682, "diamond_pickaxe": 0.0183},
        conditions=_PR14_CONDITIONS.format(fps=26)),
    ReferenceResult(
        source="VPT paper (Baker et al. 2022), abstract and Fig. 7d", url="https://arxiv.org/abs/2206.11795",
        model="rl-from-early-game-2x", episodes=None, episodes_approx=False, approx_rates=True,
        success_rates={"iron_pickaxe": 0.80, "diamond": 0.20, "diamond_pickaxe": 0.025},
        conditions="the paper's RL fine-tuned agent, 10-minute episodes; rates as worded: over 80% iron pickaxe, "
                   "almost 20% diamonds, 2.5% diamond pickaxe"),
)

_human_survival = MINERL_ENVS[HUMAN_SURVIVAL]
#: Every preset, by name.
PROTOCOLS: dict[str, Protocol] = {
    "vpt-rl": Protocol(
        name="vpt-rl", env_id=f"vpt/{HUMAN_SURVIVAL}", max_episode_steps=_human_survival.time_limit,
        reward=VPT_RL_REWARDS, reward_name="VPT_RL_REWARDS", items=TECH_TREE,
        description="VPT's RL fine-tuning setting: HumanSurvival, 10-minute episodes (12,000 steps), VPT's RL reward",
        references=RL_EARLY_GAME_REFERENCES),
    "vpt-bc": Protocol(
        name="vpt-bc", env_id=f"vpt/{HUMAN_SURVIVAL}", max_episode_steps=VPT_BC_EPISODE_STEPS,
        reward=VPT_RL_REWARDS, reward_name="VPT_RL_REWARDS", items=TECH_TREE,
        description="VPT's BC-model evaluations: HumanSurvival, 60-minute episodes (72,000 steps); reward reported "
                    "with VPT's RL table for comparison"),
    "voxel-treechop": Protocol(
        name="voxel-treechop", env_id=VOXEL_TREECHOP_ID, max_episode_steps=VOXEL_TIME_LIMIT,
        reward={"log": ItemReward(1.0, cap=None)}, reward_name="log +1 each (the env's own reward)",
        items=("log",),
        description="the embedded env (no Minecraft): chop trees for 8,000 steps; not comparable with MineRL"),
}


def get_protocol(name: str) -> Protocol:
    """The preset called ``name``; :class:`vpt_envs.UnknownProtocolError` (a ValueError) lists the known ones."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise UnknownProtocolError(str(name), sorted(PROTOCOLS)) from None
