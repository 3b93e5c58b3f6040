"""The command line is generated from ``EvalConfig``: every field is a flag, defaults come from the dataclass."""
from __future__ import annotations

import dataclasses

import pytest

from vpt_agent.eval.cli import build_parser, config_from_args
from vpt_agent.cli import flag
from vpt_agent.eval.config import EvalConfig, EvalError, config_from_mapping, validate


def test_no_flags_give_the_dataclass_defaults():
    assert config_from_args([]) == EvalConfig()


def test_every_field_is_a_flag_with_help():
    parser = build_parser()
    options = {option for action in parser._actions for option in action.option_strings}
    for f in dataclasses.fields(EvalConfig):
        if not f.metadata.get("cli", True):
            continue
        expected = f"--no-{f.name.replace('_', '-')}" if f.metadata.get("negate") else flag(f.name)
        assert expected in options, f.name
        assert f.metadata["help"]


def test_flags_parse_into_the_config():
    config = config_from_args(["-k", "3", "-n", "7", "--no-progress", "--deterministic", "--env-kwargs",
                               '{"length": 4}', "--pipeline", "2", "--step-timeout", "1.5", "--device", "cpu"])
    assert (config.num_envs, config.episodes, config.progress, config.deterministic) == (3, 7, False, True)
    assert config.env_kwargs == {"length": 4} and config.pipeline == 2 and config.step_timeout == 1.5
    assert config.device == "cpu" and config.max_retries == EvalConfig().max_retries


def test_compile_flag_reaches_the_agent():
    from conftest import SMALL_MODEL
    from vpt_agent.eval.runner import build_agent

    assert EvalConfig().compile == "off"
    for flag_value, mode in (("off", None), ("on", "default"), ("max-autotune", "max-autotune")):
        config = config_from_args(["--compile", flag_value, "--device", "cpu", "--model", str(SMALL_MODEL),
                                   "--weights", "random"])
        assert build_agent(config).compile_mode == mode  # the step (and its compile) comes later


@pytest.mark.parametrize("argv", [["--env-kwargs", "[1]"], ["--env-kwargs", "{bad"], ["--device", "tpu"],
                                  ["--episodes", "x"], ["--compile", "fast"]])
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        config_from_args(argv)
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("changes, message", [
    ({"device": "tpu"}, "--device must be one of auto, cpu, cuda"),
    ({"pipeline": 0}, "--pipeline must be >= 1"),
    ({"step_timeout": 0}, "--step-timeout must be > 0"),
    ({"video": -1}, "--video must be >= 0"),
    ({"ray_address": "auto"}, "--ray-address is used with --backend ray only"),
])
def test_python_api_checks_the_same_metadata(changes, message):
    with pytest.raises(EvalError, match=message):
        validate(EvalConfig(**changes))


def test_unknown_setting_is_named():
    with pytest.raises(EvalError, match="num_env"):
        config_from_mapping({"num_env": 2})
    with pytest.raises(EvalError, match="expected a config of type EvalConfig or a dict"):
        config_from_mapping(None)


def test_paths_may_be_pathlib_paths():
    from pathlib import Path

    config = config_from_mapping({"model": Path("a/b.model"), "out": Path("runs/x"), "episodes": 2})
    assert config.model == "a/b.model" and config.out == "runs/x" and config.episodes == 2
    assert config_from_mapping(EvalConfig(weights=Path("w.weights"))).weights == "w.weights"


def test_help_imports_neither_torch_nor_opencv():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\n"
            "from vpt_agent.evaluate import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "print(sorted(m for m in ('torch', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_pipeline_default_is_lock_step_on_cpu_two_groups_on_gpu_and_never_exceeds_the_envs():
    from vpt_agent.eval.config import pipeline_groups

    assert pipeline_groups(EvalConfig(), 4) == 1  # lock-step on a CPU unless asked for
    assert pipeline_groups(EvalConfig(), 4, "cuda") == 2
    assert pipeline_groups(EvalConfig(), 1, "cuda") == 1
    assert pipeline_groups(EvalConfig(pipeline=1), 4, "cuda") == 1
    assert pipeline_groups(EvalConfig(pipeline=2), 4) == 2
    assert pipeline_groups(EvalConfig(pipeline=3), 2) == 2  # never more groups than envs
    assert pipeline_groups(EvalConfig(pipeline=2), 1) == 1
