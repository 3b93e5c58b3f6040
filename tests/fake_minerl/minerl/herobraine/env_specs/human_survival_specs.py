"""Fake ``HumanSurvival``: the observation groups of MineRL 1.0's HumanSurvival, with fewer keys in each."""
import numpy as np

from minerl.herobraine.env_specs.human_controls import ITEMS, HumanControlEnvSpec
from minerl.herobraine.hero import spaces

INT64_MAX = np.iinfo(np.int64).max
SLOTS = ("chest", "feet", "head", "legs", "mainhand", "offhand")


def inventory_space():
    return spaces.Dict({item: spaces.Box(0, 2304, (), "int32") for item in ITEMS})


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
            "life_stats": spaces.Dict({"is_alive": spaces.Box(0, 1, (), bool), "life": spaces.Box(0, 20, (), float),
                                       "food": spaces.Box(0, 20, (), int), "xp": spaces.Box(0, 1395, (), int)}),
            "location_stats": spaces.Dict({
                "xpos": spaces.Box(-640000.0, 640000.0, (), float), "yaw": spaces.Box(-180.0, 180.0, (), float),
                "biome_id": spaces.Box(0, 167, (), int),
                "biome_rainfall": spaces.Box(0.0, 1.0, ()), "biome_temperature": spaces.Box(0.0, 1.0, ())}),
            "mine_block": spaces.Dict({block: spaces.Box(0, INT64_MAX, (), int)
                                       for block in ("diamond_ore", "dirt", "oak_log", "stone")}),
        })
        return spaces.Dict(space.spaces)

    def create_monitors(self):
        return ["isGuiOpen", "location_stats"]
