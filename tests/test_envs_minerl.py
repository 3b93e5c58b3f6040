"""Tests for the MineRL 1.0 adapter (vpt_envs.minerl) against a fake ``minerl`` package (tests/fake_minerl)."""
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import vpt_envs
from vpt_envs import EnvCrashed, EnvValidationError, MineRLNotInstalledError
from vpt_envs import minerl as adapter
from vpt_envs.actions import ACTION_KEYS

FAKE_DIR = Path(__file__).parent / "fake_minerl"
ROOT = Path(__file__).resolve().parents[1]


def _drop_minerl_modules():
    for name in [n for n in sys.modules if n == "minerl" or n.startswith("minerl.")]:
        del sys.modules[name]


@pytest.fixture
def fake(monkeypatch):
    """Put the fake ``minerl`` first on sys.path; yield its control module (knobs FAKE, records EVENTS)."""
    _drop_minerl_modules()
    monkeypatch.syspath_prepend(str(FAKE_DIR))
    import minerl.env._singleagent as control

    control.FAKE.clear()
    control.EVENTS.update(launches=0, closes=0, actions=[], seeds=[])
    yield control
    control.FAKE.clear()
    _drop_minerl_modules()


def spec(name, **kwargs):
    """A fake MineRL spec object, e.g. spec('HumanSurvival', fov_range=[90, 90])."""
    module = {"HumanSurvival": "human_survival_specs", "ObtainDiamondShovelEnvSpec": "obtain_specs",
              "FindCaveEnvSpec": "basalt_specs"}[name]
    mod = __import__(f"minerl.herobraine.env_specs.{module}", fromlist=[name])
    return getattr(mod, name)(**kwargs)


def test_import_registers_ids_without_importing_minerl():
    code = ("import sys, gymnasium, vpt_envs; "
            "assert 'minerl' not in sys.modules and 'numba' not in sys.modules and 'cv2' not in sys.modules; "
            "print(' '.join(sorted(k for k in gymnasium.registry if k.startswith('vpt/'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    ids = set(out.stdout.split())
    assert ids == {"vpt/VoxelTreechop-v0"} | {f"vpt/{i}" for i in vpt_envs.MINERL_TIME_LIMITS}
    assert {"vpt/MineRLHumanSurvival-v0", "vpt/MineRLObtainDiamondShovel-v0", "vpt/MineRLBasaltFindCave-v0",
            "vpt/MineRLBasaltMakeWaterfall-v0", "vpt/MineRLBasaltCreateVillageAnimalPen-v0",
            "vpt/MineRLBasaltBuildVillageHouse-v0"} <= ids


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


def test_gymnasium_api_seed_and_action_filling(fake):
    env = adapter.make("MineRLHumanSurvival-v0")
    obs, info = env.reset(seed=7)
    assert obs["pov"].shape == (360, 640, 3) and isinstance(info, dict)
    assert fake.EVENTS["seeds"] == [7]  # reset(seed) -> env.seed(seed) then reset()
    assert isinstance(env.observation_space, gym.spaces.Dict)
    assert isinstance(env.observation_space["equipped_items"]["mainhand"]["type"], gym.spaces.Text)
    assert env.action_space == vpt_envs.actions.action_space()
    result = env.step({"attack": np.float32(1.0), "camera": np.array([[1.5, -2.0]])})  # VPT agent shapes
    assert len(result) == 5
    sent = fake.EVENTS["actions"][-1]
    assert sorted(sent) == sorted(ACTION_KEYS)  # all 24 keys, including ESC
    assert all(type(sent[k]) is int for k in ACTION_KEYS if k != "camera") and sent["attack"] == 1
    assert sent["camera"].dtype == np.float32 and sent["camera"].tolist() == [1.5, -2.0]
    # the same seed gives the same first frame; no seed -> seed() is not called
    other = adapter.make("MineRLHumanSurvival-v0")
    assert np.array_equal(other.reset(seed=7)[0]["pov"], obs["pov"])
    other.reset()
    assert fake.EVENTS["seeds"] == [7, 7]


def test_fake_is_faithful_about_float_buttons_and_esc(fake):
    raw = spec("HumanSurvival").make()
    raw.reset()
    assert "error" in raw.step({"attack": 1.0})[3]  # Java cannot parse "1.0": connection dies
    basalt = spec("FindCaveEnvSpec").make()
    basalt.reset()
    with pytest.raises(KeyError):
        basalt.step({"forward": 1})


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
    with pytest.raises(RuntimeError):
        env.step({})
    fake.FAKE["fail_at_step"] = None
    env.reset()  # relaunches Minecraft
    assert fake.EVENTS["launches"] == 2 and env.step({})[2] is False


def test_time_limit_and_item_rewards_for_human_survival(fake):
    env = adapter.make("MineRLHumanSurvival-v0", max_episode_steps=3)
    env.reset()
    steps = [env.step({"attack": 1}) for _ in range(3)]
    assert [s[1] for s in steps] == [1.0, 0.0, 0.0]  # first log pays 1 (VPT table), once
    assert [s[3] for s in steps] == [False, False, True] and not any(s[2] for s in steps)
    assert steps[-1][4]["items"]["log"] == 3
    plain = adapter.make("MineRLHumanSurvival-v0", item_rewards=False)
    plain.reset()
    assert plain.step({"attack": 1})[1] == 0.0  # HumanSurvival itself pays nothing


def test_registered_ids_use_gymnasium_time_limit(fake):
    env = gym.make("vpt/MineRLBasaltFindCave-v0", max_episode_steps=2)
    env.reset(seed=0)
    assert env.step({"forward": 1})[3] is False  # no KeyError: ESC is filled in
    assert env.step({})[3] is True
    assert gym.make("vpt/MineRLHumanSurvival-v0").spec.max_episode_steps == 18000
    esc = gym.make("vpt/MineRLBasaltFindCave-v0")
    esc.reset()
    assert esc.step({"ESC": 1})[2] is True  # ESC ends BASALT episodes: terminated


def test_obtain_diamond_shovel_step_counter_bug_is_not_inherited(fake):
    buggy = spec("ObtainDiamondShovelEnvSpec")
    buggy.max_episode_steps = 5
    raw = buggy.make()
    raw.reset()
    for _ in range(3):
        raw.step({k: 0 for k in ACTION_KEYS})
    raw.reset()
    dones = [raw.step({k: 0 for k in ACTION_KEYS})[2] for _ in range(2)]
    assert dones == [False, True]  # MineRL's bug: the 2nd episode only gets the 2 remaining steps

    fixed_spec = spec("ObtainDiamondShovelEnvSpec")
    fixed_spec.max_episode_steps = 5
    env = adapter.make(fixed_spec)
    env.reset()
    assert env.step({"attack": 1})[1] == 1.0  # MineRL's own reward (first log) passes through
    for _ in range(2):
        env.step({})
    env.reset()
    flags = [env.step({})[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]  # full budget again; timeout -> truncated


def test_validation_compares_values_and_lists_each_mismatch(fake):
    default = spec("HumanSurvival")  # gym.make path: resolution is the tuple (640, 360)
    assert default.resolution == (640, 360)
    adapter.make(default)  # passes: (640, 360) == [640, 360] by value
    with pytest.raises(EnvValidationError) as caught:
        adapter.make(spec("HumanSurvival", fov_range=[90, 90], resolution=[1280, 720]))
    assert len(caught.value.mismatches) == 2
    assert "fov_range" in str(caught.value) and "resolution" in str(caught.value)
    assert fake.EVENTS["closes"] == 1  # the rejected env was released

    class Broken:
        task = default
        action_space = type("S", (), {"spaces": {"forward": type("D", (), {"n": 3})()}})()

    problems = adapter.validation_errors(Broken())
    assert any("missing" in p for p in problems) and any("'forward'" in p for p in problems)


def test_launch_timeout_close_and_recycling(fake):
    fake.FAKE["reset_delay"] = 2.0
    env = adapter.make("MineRLHumanSurvival-v0", launch_timeout=0.1)
    with pytest.raises(EnvCrashed, match="did not finish"):
        env.reset()
    assert fake.EVENTS["closes"] == 1
    fake.FAKE["reset_delay"] = 0.0

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


def test_bad_arguments(fake):
    with pytest.raises(ValueError, match="unknown MineRL env id"):
        adapter.make("MineRLObtainDiamond-v0")
    with pytest.raises(ValueError):
        adapter.make(object())
    with pytest.raises(ValueError):
        adapter.make("MineRLHumanSurvival-v0", recycle_every=0)
