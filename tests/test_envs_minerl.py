"""Tests for the MineRL 1.0 adapter (vpt_envs.minerl) against a fake ``minerl`` package (tests/fake_minerl).

The fake follows MineRL 1.0's own code on the paths the adapter uses (see tests/fake_minerl/README.md); its
Minecraft is a small child process, so launch timeouts and process clean-up are tested for real.
"""
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import vpt_envs
from gymnasium.utils.env_checker import check_env
from gymnasium.wrappers import TimeLimit
from vpt_envs import EnvCrashed, EnvValidationError, MineRLNotInstalledError
from vpt_envs import minerl as adapter
from vpt_envs.actions import ACTION_KEYS, BUTTON_KEYS
from vpt_envs.protocols import get_protocol
from vpt_envs.rewards import VPT_RL_REWARDS, ItemRewardWrapper

FAKE_DIR = Path(__file__).parent / "fake_minerl"
ROOT = Path(__file__).resolve().parents[1]
MINERL_IDS = [f"vpt/{minerl_id}" for minerl_id in vpt_envs.MINERL_ENVS]


def _drop_minerl_modules():
    for name in [n for n in sys.modules if n == "minerl" or n.startswith("minerl.")]:
        del sys.modules[name]


@pytest.fixture
def fake(monkeypatch):
    """Put the fake ``minerl`` first on sys.path, with fast launches/closes; yield its control module.

    Knobs: ``fake.FAKE``; records: ``fake.EVENTS`` (see ``minerl.env.fake_control``).
    """
    _drop_minerl_modules()
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    import minerl.env.fake_control as control
    from minerl.env.malmo import InstanceManager

    control.clear()
    control.FAKE.update(launch_delay=0.01, close_delay=0.0)
    yield control
    for instance in list(InstanceManager._instance_pool):  # whatever a failing test left running
        instance.close()
    for process in control.EVENTS["processes"]:
        if process.poll() is None:
            process.kill()
            process.wait()
    control.clear()
    _drop_minerl_modules()


def spec(name, **kwargs):
    """A fake MineRL spec object, e.g. spec('HumanSurvival', fov_range=[90, 90])."""
    module = {"HumanSurvival": "human_survival_specs", "ObtainDiamondShovelEnvSpec": "obtain_specs",
              "FindCaveEnvSpec": "basalt_specs"}[name]
    mod = __import__(f"minerl.herobraine.env_specs.{module}", fromlist=[name])
    return getattr(mod, name)(**kwargs)


def noop_raw():
    return {key: 0 for key in BUTTON_KEYS} | {"camera": np.zeros(2, np.float32)}


def instance_pool():
    from minerl.env.malmo import InstanceManager

    return InstanceManager._instance_pool


def count_wrappers(env, kind):
    count = 0
    while True:
        count += isinstance(env, kind)
        if not hasattr(env, "env"):
            return count
        env = env.env


# ------------------------------------------------------------------------------------------------ registration
def test_import_registers_ids_without_importing_minerl():
    code = ("import sys, gymnasium, vpt_envs; "
            "assert not {'minerl', 'numba', 'cv2', 'torch'} & set(sys.modules), sys.modules.keys(); "
            "print(' '.join(sorted(k for k in gymnasium.registry if k.startswith('vpt/'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert set(out.stdout.split()) == {"vpt/VoxelTreechop-v0", *MINERL_IDS}
    assert {"vpt/MineRLHumanSurvival-v0", "vpt/MineRLObtainDiamondShovel-v0", "vpt/MineRLBasaltFindCave-v0",
            "vpt/MineRLBasaltMakeWaterfall-v0", "vpt/MineRLBasaltCreateVillageAnimalPen-v0",
            "vpt/MineRLBasaltBuildVillageHouse-v0"} == set(MINERL_IDS)


def test_one_table_drives_registration_limits_and_rewards():
    for env_id in MINERL_IDS:
        registered = gym.spec(env_id)
        entry = vpt_envs.MINERL_ENVS[env_id.removeprefix("vpt/")]
        assert registered.max_episode_steps == entry.time_limit
        assert registered.disable_env_checker is False  # Gymnasium's passive checker is on
        assert registered.entry_point == "vpt_envs.minerl:make_without_time_limit"
    human = vpt_envs.MINERL_ENVS["MineRLHumanSurvival-v0"]
    assert human.time_limit == 12_000 == get_protocol("vpt-rl").max_episode_steps  # VPT's 10-minute RL episodes
    assert human.item_rewards is VPT_RL_REWARDS and human.spec_kwargs is adapter.VPT_ENV_KWARGS
    others = [entry for key, entry in vpt_envs.MINERL_ENVS.items() if key != "MineRLHumanSurvival-v0"]
    assert all(entry.item_rewards is None for entry in others)  # they keep MineRL's own reward


def test_action_key_copies_are_pinned_together():
    from evalenvs import BUTTONS as EVALENV_BUTTONS

    from vpt_agent.action_mapping import MINERL_ACTION_KEYS

    assert ACTION_KEYS == MINERL_ACTION_KEYS and len(ACTION_KEYS) == 24
    assert set(BUTTON_KEYS) | {"camera"} == set(ACTION_KEYS) and len(BUTTON_KEYS) == 23
    assert set(EVALENV_BUTTONS) == set(BUTTON_KEYS)  # tests/evalenvs.py keeps its own copy
    fake_keys = (FAKE_DIR / "minerl/herobraine/env_specs/human_controls.py").read_text()
    assert all(f'"{key}"' in fake_keys for key in BUTTON_KEYS)


# ------------------------------------------------------------------------------------------------ installation
def test_missing_minerl_gives_install_instructions(monkeypatch):
    _drop_minerl_modules()
    monkeypatch.setitem(sys.modules, "minerl", None)  # import minerl -> ImportError
    for attempt in (lambda: adapter.make("MineRLHumanSurvival-v0"),
                    lambda: gym.make("vpt/MineRLHumanSurvival-v0")):
        with pytest.raises(MineRLNotInstalledError) as caught:
            attempt()
        message = str(caught.value)
        assert "JDK 8" in message and "git+https://github.com/minerllabs/minerl" in message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        assert not caught.value.gym_too_new


def test_minerl_under_new_gym_says_install_old_gym(tmp_path, monkeypatch):
    """MineRL 1.0 registers with ``gym.envs.registry.env_specs``; gym >= 0.24 has a plain dict there."""
    (tmp_path / "gym").mkdir()
    (tmp_path / "gym" / "__init__.py").write_text(
        "__version__ = '0.26.2'\nclass envs:\n    registry = {}\n")
    (tmp_path / "minerl").mkdir()
    (tmp_path / "minerl" / "__init__.py").write_text(
        "import gym\nif 'MineRLHumanSurvival-v0' not in gym.envs.registry.env_specs:\n    pass\n")
    _drop_minerl_modules()
    monkeypatch.delitem(sys.modules, "gym", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        with pytest.raises(MineRLNotInstalledError) as caught:
            adapter.make("MineRLHumanSurvival-v0")
    finally:
        _drop_minerl_modules()
        sys.modules.pop("gym", None)
    message = str(caught.value)
    assert caught.value.gym_too_new and isinstance(caught.value, ImportError)
    assert "gym<=0.23.1" in message and "0.26.2" in message and "env_specs" in message


# ------------------------------------------------------------------------------------------------ the fake itself
def test_fake_is_faithful_to_minerl_1_0(fake):
    raw = spec("HumanSurvival").make()
    with pytest.raises(AssertionError, match="Seed must be an int"):
        raw.seed(np.int64(3))
    raw.seed(3)
    obs = raw.reset()
    assert obs["pov"].strides[0] < 0 and not obs["pov"].flags.c_contiguous  # flipped view
    assert obs["inventory"]["air"] == 0 and obs["inventory"]["oak_log"].dtype == np.int32
    assert obs["mine_block"]["stone"].dtype == np.float64  # absent stat: MineRL's float default
    assert obs["location_stats"]["biome_rainfall"].dtype == np.float64  # declared float32
    assert not adapter.to_gymnasium_space(raw.observation_space).contains(obs)
    assert raw.action_space.spaces["camera"].dtype == np.float32
    assert raw.step({"attack": np.int64(1), "camera": np.zeros(2, np.float32)})[3].keys() == {"isGuiOpen",
                                                                                             "location_stats"}
    assert raw.step({"attack": 2})[0]["inventory"]["oak_log"] == 1  # Java presses only on 1
    for bad in (1.0, True):
        raw.reset()
        assert raw.step({"attack": bad})[3] == {"error": "Connection timed out!"}  # parseInt throws
        with pytest.raises(RuntimeError, match="done=True"):
            raw.step({"attack": 1})
    raw.close()

    obtain = spec("ObtainDiamondShovelEnvSpec").make()
    obs = obtain.reset()
    assert set(obs) == {"pov", "inventory"}
    assert obtain.step(noop_raw())[3] == {}
    obtain.close()
    basalt = spec("FindCaveEnvSpec").make()
    basalt.reset()
    with pytest.raises(KeyError):
        basalt.step({"forward": 1})  # DoneOnESCWrapper reads action["ESC"]
    basalt.reset()
    assert basalt.step(noop_raw())[3] == {}
    basalt.close()
    assert len(fake.EVENTS["processes"]) == 3 and all(p.poll() is not None for p in fake.EVENTS["processes"])


def test_fake_stats_are_what_java_sends(fake):
    """life/location stats as Java's JSON (scripts/mcp_patch.diff) read by MineRL's handlers (with defaults)."""
    raw = spec("HumanSurvival").make()
    obs = raw.reset()
    life, location = obs["life_stats"], obs["location_stats"]
    assert set(life) == set(raw.observation_space.spaces["life_stats"].spaces) and len(life) == 7
    assert set(location) == set(raw.observation_space.spaces["location_stats"].spaces) and len(location) == 14
    assert life["is_alive"].dtype == np.bool_ and life["life"].dtype == np.float64 and life["food"] == 20
    assert location["is_raining"].dtype == np.bool_ and location["can_see_sky"].dtype == np.bool_  # declared int
    assert location["biome_rainfall"] == 0.5 and location["biome_rainfall"].dtype == np.float64  # not sent
    assert location["sun_brightness"] == 0.94 and location["biome_id"] == 0  # not sent either: defaults
    for _ in range(8):
        info = raw.step({"camera": np.array([20.0, 30.0], np.float32)})[3]
    assert info["location_stats"]["yaw"] == 240.0  # player.rotationYaw accumulates past 180
    assert info["location_stats"]["pitch"] == 90.0  # pitch is clamped
    assert raw.step({"camera": 0})[3] == {"error": "Connection timed out!"}  # Java reads camera[2]: it throws
    raw.close()


def test_fake_noop_is_deprecated_for_no_op(fake):
    space = spec("HumanSurvival").make().action_space
    no_op = space.no_op()
    assert list(no_op) == list(ACTION_KEYS) and no_op["camera"].dtype == np.float32
    assert all(type(no_op[key]) is int and no_op[key] == 0 for key in BUTTON_KEYS)
    with pytest.warns(DeprecationWarning, match="no_op"):
        assert space.noop().keys() == no_op.keys()


def test_action_space_no_op_like_minerl(fake):
    """``env.action_space.no_op()`` (and the deprecated ``noop()``, used all over MineRL code) work as in MineRL."""
    raw_no_op = spec("HumanSurvival").make().action_space.no_op()
    env = gym.make("vpt/MineRLHumanSurvival-v0")
    no_op = env.action_space.no_op()
    assert list(no_op) == list(raw_no_op) and no_op["camera"].dtype == np.float32
    assert all(np.array_equal(no_op[key], raw_no_op[key]) and type(no_op[key]) is type(raw_no_op[key])
               for key in no_op)
    with pytest.warns(DeprecationWarning, match="no_op"):
        action = env.action_space.noop()
    assert action.keys() == no_op.keys() and env.action_space.contains(action)
    action["camera"][:] = [0.0, 30.0]  # each call gives a fresh dict (MineRL code edits it in place)
    assert env.action_space.no_op()["camera"].tolist() == [0.0, 0.0]
    env.reset(seed=0)
    assert env.step(action)[0]["location_stats"]["yaw"] == 30.0
    env.close()


def test_fake_close_takes_its_time_and_kill_is_a_no_op_while_launching(fake):
    from minerl.env.fake_control import DEFAULTS

    assert DEFAULTS["close_delay"] == 3.0 and DEFAULTS["launch_delay"] >= 1.0  # realistic unless a test says
    fake.FAKE.update(launch_delay=30.0)
    raw = spec("HumanSurvival").make()
    outcome = []

    def reset():
        try:
            raw.reset()
        except Exception as error:  # noqa: BLE001 - inspected below
            outcome.append(error)

    worker = threading.Thread(target=reset, daemon=True)
    worker.start()
    deadline = time.monotonic() + 10
    while not (instance_pool() and instance_pool()[0].minecraft_process) and time.monotonic() < deadline:
        time.sleep(0.01)
    instance = instance_pool()[0]  # in the pool while still launching
    instance.kill()
    raw.close()
    assert instance.alive() and instance in instance_pool()  # neither kill() nor env.close() reaches it
    fake.FAKE["close_delay"] = 0.3
    started = time.monotonic()
    instance.close()
    assert time.monotonic() - started >= 0.1 and not instance.alive() and not instance_pool()
    worker.join(5)
    assert not worker.is_alive() and isinstance(outcome[0], EOFError)  # the launch saw its process die


# ------------------------------------------------------------------------------------------------ adapter
def test_gymnasium_api_seed_and_action_filling(fake):
    env = adapter.make("MineRLHumanSurvival-v0")
    obs, info = env.reset(seed=np.int64(7))  # numpy seeds are turned into the Python int MineRL asserts
    assert obs["pov"].shape == (360, 640, 3) and isinstance(info, dict)
    assert fake.EVENTS["seeds"] == [7] and type(fake.EVENTS["seeds"][0]) is int
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert isinstance(env.observation_space["equipped_items"]["mainhand"]["type"], gym.spaces.Text)
    assert env.action_space == vpt_envs.actions.action_space()
    result = env.step({"attack": np.float32(1.0), "use": True, "camera": np.array([[1.5, -2.0]])})  # VPT shapes
    assert len(result) == 5
    sent = fake.EVENTS["actions"][-1]
    assert sorted(sent) == sorted(ACTION_KEYS)  # all 24 keys, including ESC
    assert all(type(sent[k]) is int for k in BUTTON_KEYS) and sent["attack"] == 1 and sent["use"] == 1
    assert sent["camera"].dtype == np.float32 and sent["camera"].tolist() == [1.5, -2.0]
    assert "attack 1\n" in fake.EVENTS["commands"][-1] and "camera 1.5 -2.0" in fake.EVENTS["commands"][-1]
    assert result[0]["inventory"]["oak_log"] == 1  # the Java side pressed attack
    # the same seed gives the same first frame; no seed -> seed() is not called
    other = adapter.make("MineRLHumanSurvival-v0")
    assert np.array_equal(other.reset(seed=7)[0]["pov"], obs["pov"])
    other.reset()
    assert fake.EVENTS["seeds"] == [7, 7]
    env.close()
    other.close()


def test_seed_beyond_javas_long_is_refused_not_ignored(fake):
    """Java parses the seed with ``Long.parseLong``; a larger one is logged and replaced by a random seed."""
    raw = spec("HumanSurvival").make()
    frames = []
    for _ in range(2):
        raw.seed(2**63)  # MineRL accepts it (a Python int) ...
        frames.append(raw.reset()["pov"])
    assert not np.array_equal(*frames)  # ... but the worlds are random
    raw.close()
    env = adapter.make("MineRLHumanSurvival-v0")
    with pytest.raises(ValueError, match="2\\*\\*63"):
        env.reset(seed=2**63)
    assert fake.EVENTS["seeds"] == [2**63, 2**63] and fake.EVENTS["launches"] == 1  # refused before MineRL
    first = env.reset(seed=2**63 - 1)[0]["pov"]
    assert np.array_equal(first, env.reset(seed=2**63 - 1)[0]["pov"])  # the largest long still seeds
    env.close()


@pytest.mark.parametrize("minerl_id", ["MineRLHumanSurvival-v0", "MineRLObtainDiamondShovel-v0",
                                       "MineRLBasaltFindCave-v0"])
def test_observations_are_members_of_the_declared_space(fake, minerl_id):
    env = adapter.make(minerl_id)
    obs, _ = env.reset(seed=1)
    observations = [obs] + [env.step({"attack": 1})[0] for _ in range(3)]
    for obs in observations:
        assert env.observation_space.contains(obs)
        assert obs["pov"].flags.c_contiguous and obs["pov"].dtype == np.uint8
    if "mine_block" in obs:  # stats: declared float64, which holds both kinds MineRL sends, passed unchanged
        assert env.observation_space["mine_block"]["stone"].dtype == np.float64
        assert obs["mine_block"]["stone"].dtype == np.float64 and obs["mine_block"]["stone"] == 0
        assert obs["mine_block"]["dirt"].dtype == np.int64 and obs["mine_block"]["dirt"] == 3  # Java sent it
        location = obs["location_stats"]
        assert location["biome_temperature"].dtype == np.float32 and location["biome_temperature"] == np.float32(0.8)
        assert location["biome_rainfall"] == np.float32(0.5)  # Java sends biome_downfall: the handler's default
        assert location["can_see_sky"].dtype == np.int64 and location["can_see_sky"] == 1  # JSON true -> 1
        assert location["is_raining"].dtype == np.int64 and location["is_raining"] == 0
        assert obs["life_stats"]["is_alive"].dtype == np.bool_ and obs["life_stats"]["air"] == 300
    env.close()


def test_turning_and_drowning_stay_in_the_declared_space(fake):
    """Java sends ``rotationYaw`` unwrapped (MineRL's own tests/env/test_turn.py compares yaw modulo 360) and
    ``getAir()``, which counts down to -20 while drowning: MineRL declares +-180 and 0..300."""
    env = adapter.make("MineRLHumanSurvival-v0")
    env.reset(seed=0)
    yaws = []
    for _ in range(8):
        obs, _, _, _, info = env.step({"camera": [0.0, 30.0]})
        yaws.append(float(obs["location_stats"]["yaw"]))
        assert obs["location_stats"]["yaw"].shape == () and isinstance(obs["location_stats"]["yaw"], np.ndarray)
        assert env.observation_space.contains(obs)
    assert info["location_stats"]["yaw"] == 240.0  # MineRL's value (info is passed through)
    assert yaws == [30.0, 60.0, 90.0, 120.0, 150.0, -180.0, -150.0, -120.0]  # the same directions, wrapped
    yaw_space = env.observation_space["location_stats"]["yaw"]
    assert yaw_space.dtype == np.float64 and yaw_space.low == -180 and yaw_space.high == 180  # MineRL's
    assert env.observation_space["life_stats"]["air"].contains(np.array(-19))
    assert not env.observation_space["life_stats"]["air"].contains(np.array(-21))
    env.close()


def test_deserts_veterans_and_netherite_stay_in_the_declared_space(fake):
    """Java sends a biome's base temperature (-0.5..2.0), ``experienceTotal`` and netherite durability (2031)
    where MineRL declares 0..1, <= 1395 and <= 1562: widened, so every observation is in the space."""
    fake.FAKE["extreme_stats"] = True
    env = adapter.make("MineRLHumanSurvival-v0")
    obs, _ = env.reset(seed=0)
    assert obs["location_stats"]["biome_temperature"] == 2.0 and obs["life_stats"]["xp"] == 5000
    assert obs["equipped_items"]["mainhand"]["damage"] == 2031
    assert env.observation_space.contains(obs)
    space = env.observation_space
    assert space["location_stats"]["biome_temperature"].contains(np.array(-0.5, np.float32))
    assert not space["equipped_items"]["offhand"]["maxDamage"].contains(np.array(2032))
    env.close()


def test_a_failed_launch_closes_the_instance_it_pooled(fake):
    """MineRL's launch raises (no X server, say) after its instance joined the pool, with Java still running; the
    env never saw the instance, so its close() cannot reach it: the adapter closes it."""
    fake.FAKE["launch_error"] = "Minecraft could not open a display"
    env = adapter.make("MineRLHumanSurvival-v0")
    with pytest.raises(EnvCrashed, match="could not open a display"):
        env.reset()
    assert not instance_pool()
    assert all(p.poll() is not None for p in fake.EVENTS["processes"]) and fake.EVENTS["processes"]
    fake.FAKE["launch_error"] = None
    env.reset()  # the next launch works
    env.close()


def test_buttons_other_than_0_or_1_are_refused():
    from vpt_envs.actions import fill_action

    assert fill_action({"attack": np.array([1.0]), "jump": True, "use": 0})["attack"] == 1
    for bad in (2, -1, float("nan"), 0.5):
        with pytest.raises(ValueError, match="must be 0 or 1"):
            fill_action({"attack": bad})


def test_gymnasium_env_checker_passes_for_every_minerl_id(fake):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the passive checker warns on anything outside the spaces
        # ... and recommends [-1, 1] Box actions; the camera's +-180 degrees is MineRL's (and VPT's) space
        warnings.filterwarnings("ignore", message=".*symmetric and normalized space")
        for env_id in MINERL_IDS:
            env = gym.make(env_id)
            env.reset(seed=0)
            env.step(env.action_space.sample() | {"ESC": 0})
            env.step({})
            env.close()
        for minerl_id in ("MineRLHumanSurvival-v0", "MineRLObtainDiamondShovel-v0", "MineRLBasaltFindCave-v0"):
            raw = adapter.make(minerl_id, max_episode_steps=None, item_rewards=False)
            check_env(raw, skip_render_check=True)
            raw.close()


def test_socket_error_raises_env_crashed_and_releases(fake):
    fake.FAKE["fail_at_step"] = 3
    env = adapter.make("MineRLHumanSurvival-v0")
    env.reset(seed=1)
    env.step({})
    env.step({})
    with pytest.raises(EnvCrashed) as caught:
        env.step({})
    assert caught.value.reason == "Connection timed out!" and caught.value.step == 2
    assert caught.value.info == {"error": "Connection timed out!"}
    assert fake.EVENTS["closes"] == 1 and env.unwrapped.raw_env is None
    assert fake.EVENTS["processes"][0].poll() is not None and not instance_pool()
    with pytest.raises(RuntimeError):
        env.step({})
    fake.FAKE["fail_at_step"] = None
    env.reset()  # relaunches Minecraft
    assert fake.EVENTS["launches"] == 2 and env.step({})[2] is False
    env.close()


def test_failed_server_step_surfaces_on_the_next_step(fake):
    """MineRL's ``<StepServer>`` send failing: that step answers normally, the next one raises RuntimeError."""
    fake.FAKE["server_fail_at_step"] = 2
    raw = spec("HumanSurvival").make()
    raw.reset()
    raw.step(noop_raw())
    assert raw.step(noop_raw())[2:] == (False, {"isGuiOpen": False, "location_stats": raw._location()})
    with pytest.raises(RuntimeError, match="done=True"):
        raw.step(noop_raw())
    raw.close()
    env = adapter.make("MineRLHumanSurvival-v0")
    env.reset()
    assert [env.step({})[2] for _ in range(2)] == [False, False]
    with pytest.raises(EnvCrashed, match="done=True") as caught:
        env.step({})
    assert caught.value.step == 2 and env.unwrapped.raw_env is None  # released
    env.close()


def test_crash_never_pays_obtain_reward_of_the_random_frame(fake):
    fake.FAKE["fail_at_step"] = 1
    raw = spec("ObtainDiamondShovelEnvSpec").make()
    raw.reset()
    assert raw.step(noop_raw())[1] > 0  # MineRL's wrapper pays for the random observation
    raw.close()
    env = adapter.make("MineRLObtainDiamondShovel-v0")
    env.reset()
    with pytest.raises(EnvCrashed):
        env.step({})
    env.close()


def test_time_limit_is_applied_once_and_rewards_are_vpts(fake):
    env = gym.make("vpt/MineRLHumanSurvival-v0", max_episode_steps=3)
    assert count_wrappers(env, TimeLimit) == 1 and env.spec.max_episode_steps == 3
    env.reset()
    steps = [env.step({"attack": 1}) for _ in range(3)]
    assert [s[1] for s in steps] == [1 / 8] * 3  # VPT_RL_REWARDS: each log pays 1/8 (up to 8)
    assert [s[3] for s in steps] == [False, False, True] and not any(s[2] for s in steps)
    assert steps[-1][4]["items"]["log"] == 3
    env.close()
    assert gym.make("vpt/MineRLHumanSurvival-v0").spec.max_episode_steps == 12_000

    direct = adapter.make("MineRLHumanSurvival-v0")
    assert count_wrappers(direct, TimeLimit) == 1 and direct._max_episode_steps == 12_000
    assert isinstance(direct.env, ItemRewardWrapper) and direct.env.table == VPT_RL_REWARDS
    assert count_wrappers(adapter.make("MineRLHumanSurvival-v0", max_episode_steps=None), TimeLimit) == 0
    assert not hasattr(direct.unwrapped, "max_episode_steps")  # the adapter itself has no limit
    plain = adapter.make("MineRLHumanSurvival-v0", item_rewards=False)
    plain.reset()
    assert plain.step({"attack": 1})[1] == 0.0  # HumanSurvival itself pays nothing
    plain.close()


def test_protocol_presets_build_the_minerl_env(fake):
    env = get_protocol("vpt-bc").make()
    assert env.spec.max_episode_steps == 72_000 and count_wrappers(env, TimeLimit) == 1
    env.reset()
    assert env.step({"attack": 1})[1] == pytest.approx(1 / 8)
    env.close()


def test_registered_basalt_ids(fake):
    env = gym.make("vpt/MineRLBasaltFindCave-v0", max_episode_steps=2)
    env.reset(seed=0)
    assert env.step({"forward": 1})[3] is False  # no KeyError: ESC is filled in
    assert env.step({})[3] is True
    esc = gym.make("vpt/MineRLBasaltFindCave-v0")
    esc.reset()
    assert esc.step({"ESC": 1})[2] is True  # ESC ends BASALT episodes: terminated
    env.close()
    esc.close()


def test_obtain_diamond_shovel_step_counter_bug_is_not_inherited(fake):
    buggy = spec("ObtainDiamondShovelEnvSpec")
    buggy.max_episode_steps = 5
    raw = buggy.make()
    raw.reset()
    for _ in range(3):
        raw.step(noop_raw())
    raw.reset()
    dones = [raw.step(noop_raw())[2] for _ in range(2)]
    assert dones == [False, True]  # MineRL's bug: the 2nd episode only gets the 2 remaining steps
    raw.close()

    fixed_spec = spec("ObtainDiamondShovelEnvSpec")
    fixed_spec.max_episode_steps = 5
    env = adapter.make(fixed_spec, max_episode_steps=None)
    env.reset()
    assert env.step({"attack": 1})[1] == 1.0  # MineRL's own reward (first log) passes through
    for _ in range(2):
        env.step({})
    env.reset()
    flags = [env.step({})[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]  # full budget again; timeout -> truncated
    env.close()


def test_validation_compares_values_and_lists_each_mismatch(fake):
    default = spec("HumanSurvival")  # gym.make path: resolution is the tuple (640, 360)
    assert default.resolution == (640, 360)
    adapter.make(default).close()  # passes: (640, 360) == [640, 360] by value
    with pytest.raises(EnvValidationError) as caught:
        adapter.make(spec("HumanSurvival", fov_range=[90, 90], resolution=[1280, 720]))
    assert len(caught.value.mismatches) == 2
    assert "fov_range" in str(caught.value) and "resolution" in str(caught.value)
    assert fake.EVENTS["closes"] == 2  # the rejected env was released

    class Broken:
        task = default
        action_space = type("S", (), {"spaces": {"forward": type("D", (), {"n": 3})()}})()

    problems = adapter.validation_errors(Broken())
    assert any("missing" in p for p in problems) and any("'forward'" in p for p in problems)


@pytest.mark.parametrize("spawn_delay", [0.0, 0.4])
def test_launch_timeout_releases_every_instance_it_started(fake, spawn_delay):
    """MineRL's launch blocks with no timeout and its instance is only in InstanceManager's pool: the adapter
    must close it there, also when the timeout hits before the process exists (spawn_delay)."""
    fake.FAKE.update(launch_delay=60.0, spawn_delay=spawn_delay)
    env = adapter.make("MineRLHumanSurvival-v0", launch_timeout=0.2, release_timeout=5)
    started = time.monotonic()
    with pytest.raises(EnvCrashed, match="did not finish within 0.2 s"):
        env.reset()
    assert time.monotonic() - started < 10
    processes = fake.EVENTS["processes"]
    assert len(processes) == 1 and processes[0].poll() is not None  # the fake Minecraft process is gone
    assert not instance_pool()
    assert not [t for t in threading.enumerate() if t.name == "minerl-reset"]  # the reset thread ended
    time.sleep(0.2)
    assert fake.EVENTS["missions"] == 0  # the abandoned reset never sent a mission
    assert env.unwrapped.raw_env is None

    fake.FAKE.update(launch_delay=0.01, spawn_delay=0.0)
    env.reset()  # a fresh launch works afterwards
    assert fake.EVENTS["launches"] == 2 and fake.EVENTS["missions"] == 1
    env.close()
    assert all(p.poll() is not None for p in fake.EVENTS["processes"])


def test_close_never_raises_and_recycling(fake):
    fake.FAKE["close_raises"] = True
    env = adapter.make("MineRLHumanSurvival-v0")
    env.reset()
    env.close()  # logs, never raises
    env.close()
    assert env.unwrapped.raw_env is None
    fake.FAKE["close_raises"] = False

    fake.EVENTS.update(launches=0, closes=0)
    env = adapter.make("MineRLHumanSurvival-v0", recycle_every=2)
    for _ in range(5):
        env.reset()
        env.step({})
    assert fake.EVENTS["launches"] == 3 and fake.EVENTS["closes"] == 2
    assert env.unwrapped.launches == 3
    env.close()
    assert all(p.poll() is not None for p in fake.EVENTS["processes"])


def test_bad_arguments(fake):
    with pytest.raises(ValueError, match="unknown MineRL env id"):
        adapter.make("MineRLObtainDiamond-v0")
    with pytest.raises(ValueError):
        adapter.make(object())
    with pytest.raises(ValueError):
        adapter.make("MineRLHumanSurvival-v0", recycle_every=0)
    with pytest.raises(ValueError):
        adapter.make("MineRLHumanSurvival-v0", launch_timeout=0)
