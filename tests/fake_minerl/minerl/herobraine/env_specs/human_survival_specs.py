"""Fake ``HumanSurvival``: the observation groups of MineRL 1.0's HumanSurvival (short item/stat lists).

``life_stats`` and ``location_stats`` hold every key of MineRL's handlers, with the declared spaces of
``minerl/herobraine/hero/handlers/agent/observations/lifestats.py`` and ``location_stats.py``.
"""
import numpy as np

from minerl.herobraine.env_specs.human_controls import ITEMS, HumanControlEnvSpec
from minerl.herobraine.hero import spaces

INT64_MAX = np.iinfo(np.int64).max
SLOTS = ("chest", "feet", "head", "legs", "mainhand", "offhand")
POSITION = 640000.0


def inventory_space():
    return spaces.Dict({item: spaces.Box(0, 2304, (), "int32") for item in ITEMS})


def life_stats_space():
    return spaces.Dict({
        "air": spaces.Box(0, 300, (), int), "food": spaces.Box(0, 20, (), int),
        "is_alive": spaces.Box(0, 1, (), bool), "life": spaces.Box(0, 20, (), float),
        "saturation": spaces.Box(0, 20.0, (), float), "score": spaces.Box(0, 0x7FFFFF, (), int),
        "xp": spaces.Box(0, 1395, (), int)})


def location_stats_space():
    return spaces.Dict({
        "biome_id": spaces.Box(0, 167, (), int),
        "biome_rainfall": spaces.Box(0.0, 1.0, ()), "biome_temperature": spaces.Box(0.0, 1.0, ()),  # float32
        "can_see_sky": spaces.Box(0, 1, (), int), "is_raining": spaces.Box(0, 1, (), int),
        "light_level": spaces.Box(0, 15, (), int), "pitch": spaces.Box(-180.0, 180.0, (), float),
        "sea_level": spaces.Box(0, 255, (), int), "sky_light_level": spaces.Box(0.0, 1.0, (), float),
        "sun_brightness": spaces.Box(0.0, 1.0, (), float), "xpos": spaces.Box(-POSITION, POSITION, (), float),
        "yaw": spaces.Box(-180.0, 180.0, (), float), "ypos": spaces.Box(-POSITION, POSITION, (), float),
        "zpos": spaces.Box(-POSITION, POSITION, (), float)})


class HumanSurvival(HumanControlEnvSpec):
    def __init__(self, *args, load_filename=None, **kwargs):
        if "name" not in kwargs:
            kwargs["name"] = "MineRLHumanSurvival-v0"
        self.load_filename = load_filename
        super().__init__(*args, **kwargs)

    @property
    def observation_space(self):
        space = super().observation_space
        item = {"type": spaces.Enum(*ITEMS, default="air"),
                "damage": spaces.Box(-1, 1562, (), "int64"), "maxDamage": spaces.Box(-1, 1562, (), "int64")}
        space.spaces.update({
            "inventory": inventory_space(),
            "equipped_items": spaces.Dict({slot: spaces.Dict(dict(item)) for slot in SLOTS}),
            "life_stats": life_stats_space(),
            "location_stats": location_stats_space(),
            "mine_block": spaces.Dict({block: spaces.Box(0, INT64_MAX, (), int)
                                       for block in ("diamond_ore", "dirt", "oak_log", "stone")}),
        })
        return spaces.Dict(space.spaces)

    def create_monitors(self):
        return ["isGuiOpen", "location_stats"]
