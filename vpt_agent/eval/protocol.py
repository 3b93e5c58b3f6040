"""``--protocol NAME``: an evaluation preset of :mod:`vpt_envs.protocols` (env, episode length and reward together).

:func:`apply_protocol` fills ``--env`` and ``--max-steps`` from the preset where they were not given; the env
workers then build the env with the preset's reward (``EnvSpec.protocol``, :meth:`vpt_envs.protocols.Protocol.make`).
Flags given explicitly still win, and :func:`protocol_section` (in ``summary.json`` and the table) says which
settings were overridden, so a result is never presented as comparable when it is not.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional

from .config import EvalConfig, EvalError, registered_id


def get(name: str):
    """The :class:`vpt_envs.protocols.Protocol` called ``name``; an unknown name is a one-line :class:`EvalError`."""
    from vpt_envs.protocols import get_protocol

    try:
        return get_protocol(name)
    except ValueError as err:
        raise EvalError(f"--protocol: {err}") from None


def apply_protocol(config: EvalConfig) -> EvalConfig:
    """A copy of ``config`` with ``env`` and ``max_steps`` taken from ``config.protocol`` where they are ``None``."""
    if config.protocol is None:
        return config
    protocol = get(config.protocol)
    return dataclasses.replace(config, env=config.env if config.env is not None else protocol.env_id,
                               max_steps=config.max_steps if config.max_steps is not None
                               else protocol.max_episode_steps)


def uses_protocol_env(protocol_name: Optional[str], env_id: str) -> bool:
    """Whether the workers should build ``env_id`` through the protocol (same env: its reward applies)."""
    return protocol_name is not None and registered_id(get(protocol_name).env_id) == registered_id(env_id)


def overrides(config: Mapping[str, Any]) -> List[str]:
    """The settings of a run (``summary["config"]``-like mapping) that differ from its protocol's."""
    protocol = get(config["protocol"])
    out = []
    if registered_id(config.get("env")) != registered_id(protocol.env_id):
        out.append(f"--env {config.get('env')} instead of {protocol.env_id} (so the reward is that env's own, "
                   f"not {protocol.reward_name})")
    if config.get("max_steps") != protocol.max_episode_steps:
        out.append(f"--max-steps {config.get('max_steps')} instead of {protocol.max_episode_steps}")
    if "item_rewards" in (config.get("env_kwargs") or {}):
        out.append(f"--env-kwargs item_rewards instead of {protocol.reward_name}")
    return out


def protocol_section(config: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The summary's ``protocol``: the preset as ``run.json`` records it, what was overridden, and a verdict."""
    if not config.get("protocol"):
        return None
    protocol = get(config["protocol"])
    changed = overrides(config)
    return {**protocol.to_dict(), "description": protocol.description, "overridden": changed,
            "comparable": not changed,
            "note": (f"{protocol.name}, as defined" if not changed else
                     f"{protocol.name} with explicit flags overriding it ({'; '.join(changed)}): results "
                     "are not comparable with runs under the protocol")}
