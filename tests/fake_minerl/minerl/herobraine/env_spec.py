"""Fake ``EnvSpec``: ``make()`` builds the env through the spec's entry point, like MineRL 1.0."""
import importlib


class EnvSpec:
    def __init__(self, name, max_episode_steps=None, reward_threshold=None, agent_count=None, **kwargs):
        # MineRL swallows unknown kwargs such as VPT's ``frameskip``.
        self.name = name
        self.max_episode_steps = max_episode_steps
        self.reset()

    def reset(self):
        """Called on construction and by every env reset (MineRL rebuilds the handlers here)."""

    def _entry_point(self, fake):
        return "minerl.env._singleagent:_SingleAgentEnv"

    def make(self, fake=False, **additional_kwargs):
        module_name, attr = self._entry_point(fake).split(":")
        return getattr(importlib.import_module(module_name), attr)(env_spec=self, **additional_kwargs)
