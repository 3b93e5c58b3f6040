"""Deterministic generators shared by the golden-data scripts and tests (copied from ../shared/golden).

* ``weights_gen.make_tensor`` / ``make_state_dict``: synthetic weights in the official layout.
* ``obs_gen.make_obs``: MineRL-like 360x640 RGB frames.
* ``key_layout.official_keys``: the official state_dict layout for the standard VPT configs.
"""
