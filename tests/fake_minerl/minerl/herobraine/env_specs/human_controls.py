"""Fake ``HumanControlEnvSpec``: VPT's 24-key action space and MineRL 1.0's settings attributes."""
import numpy as np

from minerl.herobraine.env_spec import EnvSpec
from minerl.herobraine.hero import spaces

KEYS = ("ESC", "attack", "back", "drop", "forward", "hotbar.1", "hotbar.2", "hotbar.3", "hotbar.4", "hotbar.5",
        "hotbar.6", "hotbar.7", "hotbar.8", "hotbar.9", "inventory", "jump", "left", "pickItem", "right",
        "sneak", "sprint", "swapHands", "use")
WOODS = ("oak", "spruce", "birch", "jungle", "acacia", "dark_oak")
# A subset of MineRL's 976 item names: VPT's tech tree, the woods, and a few others.
ITEMS = tuple(sorted({"air", "coal", "cobblestone", "crafting_table", "diamond", "diamond_pickaxe", "diamond_shovel",
                      "netherite_pickaxe",
                      "dirt", "furnace", "iron_ingot", "iron_ore", "iron_pickaxe", "stick", "stone_pickaxe",
                      "torch", "wooden_pickaxe", *(f"{w}_log" for w in WOODS), *(f"{w}_planks" for w in WOODS)}))


class HumanControlEnvSpec(EnvSpec):
    def __init__(self, name, *args, resolution=(640, 360), guiscale_range=[1, 1], gamma_range=[2.0, 2.0],
                 fov_range=[70.0, 70.0], cursor_size_range=[16, 16], **kwargs):
        self.resolution = resolution
        self.guiscale_range = guiscale_range
        self.gamma_range = gamma_range
        self.fov_range = fov_range
        self.cursor_size_range = cursor_size_range
        super().__init__(name, *args, **kwargs)

    def reset(self):
        # create_agent_start: GUI scale, gamma, FOV and cursor size come from numpy's global RNG on every reset
        np.random.uniform(*self.guiscale_range)
        np.random.uniform(*self.gamma_range)
        np.random.uniform(*self.fov_range)
        np.random.randint(self.cursor_size_range[0], self.cursor_size_range[1] + 1)

    @property
    def action_space(self):
        entries = {key: spaces.Discrete(2) for key in KEYS}
        entries["camera"] = spaces.Box(-180, 180, (2,), "float32")
        return spaces.Dict(entries)

    @property
    def observation_space(self):
        width, height = self.resolution
        return spaces.Dict({"pov": spaces.Box(0, 255, (height, width, 3), "uint8")})

    def create_monitors(self):
        return []
