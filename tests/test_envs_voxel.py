"""Tests for the embedded env ``vpt/VoxelTreechop-v0``."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import vpt_envs  # noqa: F401 - registers the ids
from vpt_envs.actions import ACTION_KEYS, fill_action, noop_action
from vpt_envs.policies import RandomPolicy, TreechopScript
from vpt_envs.voxel import VoxelTreechopEnv
from vpt_envs.voxel_render import VoxelRenderer, available_backends
from vpt_envs.voxel_world import LOG_ITEMS, OAK_LOG, generate_world

SEEDS = (0, 1, 2)
STEPS = 600


def make(**kwargs):
    return gym.make("vpt/VoxelTreechop-v0", **kwargs)


def run(env, policy, steps):
    total = 0.0
    for _ in range(steps):
        _, reward, terminated, truncated, _ = env.step(policy())
        total += reward
        if terminated or truncated:
            break
    return total


def test_spaces_match_minerl():
    env = make()
    obs, _ = env.reset(seed=0)
    assert obs["pov"].shape == (360, 640, 3) and obs["pov"].dtype == np.uint8
    assert set(env.action_space.spaces) == set(ACTION_KEYS) and len(ACTION_KEYS) == 24
    assert env.action_space["camera"].shape == (2,) and env.action_space["attack"].n == 2
    assert set(obs["inventory"]) >= set(LOG_ITEMS)
    assert env.observation_space.contains(obs)
    assert env.spec.max_episode_steps == 8000


def test_check_env_passes():
    check_env(make(render_mode="rgb_array").unwrapped, skip_render_check=False)
    check_env(VoxelTreechopEnv())


def test_same_seed_same_actions_same_observations():
    a, b, c = make(), make(), make()
    obs_a, _ = a.reset(seed=11)
    obs_b, _ = b.reset(seed=11)
    obs_c, _ = c.reset(seed=12)
    assert np.array_equal(obs_a["pov"], obs_b["pov"])
    assert not np.array_equal(obs_a["pov"], obs_c["pov"])
    policy = RandomPolicy(seed=3)
    for _ in range(40):
        action = policy()
        oa, ra, *_ = a.step(action)
        ob, rb, *_ = b.step(action)
        assert np.array_equal(oa["pov"], ob["pov"]) and ra == rb


def test_scripted_chopper_gets_logs_and_random_rarely_does():
    scripted, random = [], []
    for seed in SEEDS:
        env = make()
        env.reset(seed=seed)
        scripted.append(run(env, TreechopScript(env), STEPS))
        env.reset(seed=seed)
        random.append(run(env, RandomPolicy(seed), STEPS))
    assert min(scripted) >= 2, scripted  # every seed: at least two logs within STEPS steps
    assert sum(random) <= 0.1 * sum(scripted), (random, scripted)


def test_log_goal_terminates_and_reward_counts_logs():
    env = make(log_goal=2)
    obs, _ = env.reset(seed=1)
    policy = TreechopScript(env)
    rewards = []
    for _ in range(STEPS):
        obs, reward, terminated, truncated, info = env.step(policy())
        rewards.append(reward)
        if terminated:
            break
    assert terminated and not truncated
    assert sum(rewards) == 2 == info["logs"] == sum(int(obs["inventory"][item]) for item in LOG_ITEMS)


def test_time_limit_truncates():
    env = make(max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(noop_action())[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]


def test_camera_semantics_and_pitch_clamp():
    env = make().unwrapped
    env.reset(seed=0)
    yaw0 = env.yaw
    env.step({"camera": np.array([30.0, 15.0], np.float32)})
    assert env.pitch == pytest.approx(30.0) and (env.yaw - yaw0) % 360 == pytest.approx(15.0)
    for _ in range(5):
        env.step({"camera": [60.0, 0.0]})
    assert env.pitch == 90.0
    env.step({"camera": [-500.0, 0.0]})
    assert env.pitch == -90.0


def test_looking_down_sees_ground_and_up_sees_sky():
    env = make().unwrapped
    env.reset(seed=0)
    env.step({"camera": [-80.0, 0.0]})
    sky = env.step(noop_action())[0]["pov"][:100].reshape(-1, 3).mean(axis=0)
    env.step({"camera": [170.0, 0.0]})
    ground = env.step(noop_action())[0]["pov"][150:250, 250:390].reshape(-1, 3).mean(axis=0)
    assert sky[2] > sky[0] + 60  # blue sky
    assert ground[2] < ground[1]  # grass/dirt/sand: not blue


def test_gravity_jump_and_collision():
    env = make().unwrapped
    env.reset(seed=0)
    ground = env.world.heightmap[32, 32] + 1
    for _ in range(3):
        env.step(noop_action())
    assert env.position[1] == pytest.approx(ground, abs=1e-3)
    env.step({"jump": 1})
    heights = [env.step(noop_action()) and env.position[1] for _ in range(14)]
    assert max(heights) > ground + 1.0  # jumps over a block (Minecraft: ~1.25)
    assert heights[-1] == pytest.approx(ground, abs=1e-3)
    # walk into a wall: place logs in front of the player and walk forward
    env.yaw, env.pitch = 0.0, 0.0  # facing +z
    x, y, z = (int(np.floor(c)) for c in env.position)
    env.world.blocks[x % 64, y:y + 2, (z + 2) % 64] = OAK_LOG
    for _ in range(30):
        env.step({"forward": 1})
    assert env.position[2] == pytest.approx(z + 2 - 0.3, abs=1e-3)


def test_attack_breaks_log_after_60_ticks_and_resets_when_released():
    env = make().unwrapped
    env.reset(seed=0)
    env.yaw, env.pitch = 0.0, 0.0
    x, y, z = (int(np.floor(c)) for c in env.position)
    env.world.blocks[x % 64, y + 1, (z + 1) % 64] = OAK_LOG  # at eye level, 1 block ahead
    assert env.target_block() == (x, y + 1, z + 1)
    for _ in range(30):
        env.step({"attack": 1})
    env.step({"attack": 0})  # releasing resets the progress, as in Minecraft
    rewards = [env.step({"attack": 1})[1] for _ in range(60)]
    assert rewards == [0.0] * 59 + [1.0]
    assert env.world.blocks[x % 64, y + 1, (z + 1) % 64] == 0
    assert env.inventory["oak_log"] == 1


def test_missing_keys_and_batched_values_are_accepted():
    env = make()
    env.reset(seed=0)
    env.step({})
    env.step({"forward": np.array([1]), "camera": np.array([[1.0, -2.0]])})  # VPT agent shapes
    filled = fill_action({"attack": 1.0})
    assert filled["attack"] == 1 and type(filled["attack"]) is int and len(filled) == 24
    with pytest.raises(ValueError):
        fill_action({"camera": [1.0, 2.0, 3.0]})


def test_render_rgb_array_returns_last_pov():
    env = make(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    assert np.array_equal(env.render(), obs["pov"])


@pytest.mark.skipif("numba" not in available_backends(), reason="only one backend installed: nothing to compare")
def test_numba_and_numpy_backends_render_the_same_image():
    world = generate_world(5)
    eye = np.array(world.spawn) + (0, 1.62, 0)
    fast, reference = VoxelRenderer(backend="numba"), VoxelRenderer(backend="numpy")
    for yaw, pitch in ((0, 0), (70, -35), (200, 40), (10, 89)):
        a, b = fast.render(world, eye, yaw, pitch), reference.render(world, eye, yaw, pitch)
        assert np.mean(np.abs(a.astype(int) - b) > 2) < 0.001


@pytest.mark.parametrize("backend", available_backends())
def test_rendering_after_breaking_blocks_matches_a_fresh_renderer(backend):
    world = generate_world(0)
    eye = np.array(world.spawn) + (0, 1.62, 0)
    stale = VoxelRenderer(backend=backend)
    stale.render(world, eye, 0.0, 40.0)  # builds the empty-space fields for this world
    x, y, z = (int(c) for c in world.spawn)
    world.blocks[x - 3:x + 4, y - 3:y, z + 1:z + 6] = 0  # dig a pit in front of the player
    for yaw, pitch in ((0.0, 40.0), (10.0, 60.0), (-20.0, 25.0)):
        fresh = VoxelRenderer(backend=backend)
        assert np.array_equal(stale.render(world, eye, yaw, pitch), fresh.render(world, eye, yaw, pitch))


def test_world_generation_is_deterministic_and_has_trees():
    a, b = generate_world(3), generate_world(3)
    assert np.array_equal(a.blocks, b.blocks) and len(a.trees) >= 10
    assert not np.array_equal(a.blocks, generate_world(4).blocks)
    with pytest.raises(ValueError):
        generate_world(0, size=60)


def test_async_vector_env():
    vec = gym.vector.AsyncVectorEnv([lambda: make(max_episode_steps=50) for _ in range(2)])
    try:
        obs, _ = vec.reset(seed=[0, 1])
        assert obs["pov"].shape == (2, 360, 640, 3)
        for _ in range(3):
            obs, reward, terminated, truncated, _ = vec.step(vec.action_space.sample())
        assert reward.shape == (2,) and obs["inventory"]["oak_log"].shape == (2,)
    finally:
        vec.close()


def test_bad_arguments_and_misuse_are_vpt_errors():
    from vpt_agent.errors import VPTError
    from vpt_envs import EnvArgumentError, EnvStateError

    env = gym.make("vpt/VoxelTreechop-v0")
    with pytest.raises(EnvStateError, match="reset"):
        env.unwrapped.step(noop_action())
    env.reset(seed=0)
    for action, message in (({"attack": 2}, "must be 0 or 1"), ({"camera": [np.nan, 0.0]}, "finite"),
                            (None, "mapping")):
        with pytest.raises(EnvArgumentError, match=message) as err:
            env.step(action)
        assert isinstance(err.value, VPTError) and isinstance(err.value, ValueError)
    with pytest.raises(EnvArgumentError, match="log_goal"):
        gym.make("vpt/VoxelTreechop-v0", log_goal=0)
