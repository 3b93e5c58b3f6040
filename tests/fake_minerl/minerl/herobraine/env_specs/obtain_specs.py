from minerl.env import _singleagent
from minerl.herobraine.env_specs.human_survival_specs import HumanSurvival, inventory_space
from minerl.herobraine.hero import spaces
from minerl.herobraine.wrappers import Wrapper

TIMEOUT = 18000
DIAMOND_ITEMS = [
    [["acacia_log", "birch_log", "dark_oak_log", "jungle_log", "oak_log", "spruce_log"], 1],
    [["acacia_planks", "birch_planks", "dark_oak_planks", "jungle_planks", "oak_planks", "spruce_planks"], 2],
    [["stick"], 4], [["crafting_table"], 4], [["wooden_pickaxe"], 8], [["cobblestone"], 16], [["furnace"], 32],
    [["stone_pickaxe"], 32], [["iron_ore"], 64], [["iron_ingot"], 128], [["iron_pickaxe"], 256],
    [["diamond"], 1024], [["diamond_shovel"], 2048],
]


class ObtainDiamondShovelWrapper(Wrapper):
    """Like MineRL 1.0's: pays each category once; BUG kept on purpose: reset() does not zero num_steps."""

    def __init__(self, env):
        super().__init__(env)
        self.seen = [0] * len(DIAMOND_ITEMS)
        self.timeout = self.env.task.max_episode_steps
        self.num_steps = 0
        self.episode_over = False

    def step(self, action):
        if self.episode_over:
            raise RuntimeError("Expected `reset` after episode terminated, not `step`.")
        observation, reward, done, info = self.env.step(action)
        for i, (items, value) in enumerate(DIAMOND_ITEMS):
            if not self.seen[i] and any(observation["inventory"].get(item, 0) > 0 for item in items):
                reward += value
                self.seen[i] = 1
                done = done or i == len(DIAMOND_ITEMS) - 1
        self.num_steps += 1
        if self.num_steps >= self.timeout:
            done = True
        self.episode_over = done
        return observation, reward, done, info

    def reset(self):
        self.seen = [0] * len(DIAMOND_ITEMS)
        self.episode_over = False
        return self.env.reset()


def _obtain_diamond_shovel_gym_entrypoint(env_spec, fake=False):
    return ObtainDiamondShovelWrapper(_singleagent._SingleAgentEnv(env_spec=env_spec))


class ObtainDiamondShovelEnvSpec(HumanSurvival):
    def __init__(self):
        super().__init__(name="MineRLObtainDiamondShovel-v0", max_episode_steps=TIMEOUT, fov_range=[70, 70],
                         resolution=[640, 360], gamma_range=[2, 2], guiscale_range=[1, 1],
                         cursor_size_range=[16.0, 16.0])

    def _entry_point(self, fake):
        return "minerl.herobraine.env_specs.obtain_specs:_obtain_diamond_shovel_gym_entrypoint"

    @property
    def observation_space(self):  # only pov and inventory (no equipped_items, no stats)
        width, height = self.resolution
        return spaces.Dict({"pov": spaces.Box(0, 255, (height, width, 3), "uint8"), "inventory": inventory_space()})

    def create_monitors(self):
        return []
