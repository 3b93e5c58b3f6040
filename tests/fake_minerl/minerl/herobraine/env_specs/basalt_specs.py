from minerl.env import _singleagent
from minerl.herobraine.env_specs.human_controls import HumanControlEnvSpec
from minerl.herobraine.hero import spaces
from minerl.herobraine.wrappers import Wrapper

MINUTE = 20 * 60


class BasaltTimeoutWrapper(Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.timeout = self.env.task.max_episode_steps
        self.num_steps = 0

    def reset(self):
        self.timeout = self.env.task.max_episode_steps
        self.num_steps = 0
        return self.env.reset()

    def step(self, action):
        observation, reward, done, info = self.env.step(action)
        self.num_steps += 1
        if self.num_steps >= self.timeout:
            done = True
        return observation, reward, done, info


class DoneOnESCWrapper(Wrapper):
    def __init__(self, env):
        super().__init__(env)
        self.episode_over = False

    def reset(self):
        self.episode_over = False
        return self.env.reset()

    def step(self, action):
        if self.episode_over:
            raise RuntimeError("Expected `reset` after episode terminated, not `step`.")
        observation, reward, done, info = self.env.step(action)
        done = done or bool(action["ESC"])  # KeyError without ESC, as in MineRL 1.0
        self.episode_over = done
        return observation, reward, done, info


def _basalt_gym_entrypoint(env_spec, fake=False):
    return DoneOnESCWrapper(BasaltTimeoutWrapper(_singleagent._SingleAgentEnv(env_spec=env_spec)))


class BasaltBaseEnvSpec(HumanControlEnvSpec):
    def __init__(self, name, demo_server_experiment_name, max_episode_steps=2400, inventory=(),
                 preferred_spawn_biome="plains"):
        self.inventory = inventory
        super().__init__(name=name, max_episode_steps=max_episode_steps, fov_range=[70, 70],
                         resolution=[640, 360], gamma_range=[2, 2], guiscale_range=[1, 1],
                         cursor_size_range=[16.0, 16.0])

    def _entry_point(self, fake):
        return "minerl.herobraine.env_specs.basalt_specs:_basalt_gym_entrypoint"

    @property
    def observation_space(self):
        width, height = self.resolution
        return spaces.Dict({"pov": spaces.Box(0, 255, (height, width, 3), "uint8")})


class FindCaveEnvSpec(BasaltBaseEnvSpec):
    def __init__(self):
        super().__init__("MineRLBasaltFindCave-v0", "findcaves", max_episode_steps=3 * MINUTE)


class MakeWaterfallEnvSpec(BasaltBaseEnvSpec):
    def __init__(self):
        super().__init__("MineRLBasaltMakeWaterfall-v0", "waterfall", max_episode_steps=5 * MINUTE)


class PenAnimalsVillageEnvSpec(BasaltBaseEnvSpec):
    def __init__(self):
        super().__init__("MineRLBasaltCreateVillageAnimalPen-v0", "village_pen_animals", max_episode_steps=5 * MINUTE)


class VillageMakeHouseEnvSpec(BasaltBaseEnvSpec):
    def __init__(self):
        super().__init__("MineRLBasaltBuildVillageHouse-v0", "village_make_house", max_episode_steps=12 * MINUTE)
