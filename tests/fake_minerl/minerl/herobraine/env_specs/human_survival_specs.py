from minerl.herobraine.env_specs.human_controls import ITEMS, HumanControlEnvSpec
from minerl.herobraine.hero import spaces


class HumanSurvival(HumanControlEnvSpec):
    def __init__(self, *args, load_filename=None, **kwargs):
        if "name" not in kwargs:
            kwargs["name"] = "MineRLHumanSurvival-v0"
        self.load_filename = load_filename
        super().__init__(*args, **kwargs)

    @property
    def observation_space(self):
        space = super().observation_space
        space.spaces["equipped_items"] = spaces.Dict({"mainhand": spaces.Dict({
            "type": spaces.Enum(*ITEMS, default="air"),
            "damage": spaces.Box(-1, 1562, (), "int64"),
            "maxDamage": spaces.Box(-1, 1562, (), "int64")})})
        return space
