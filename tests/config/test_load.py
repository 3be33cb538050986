"""Configuration layering, validation and its CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from kbtool.config import Config, load_config, split_overrides
from kbtool.errors import KbtoolError
from kbtool_plugins.kernelbench.settings import KernelBenchSettings
from tests.helpers import DOCS, run_kbtool


def kb(config: Config) -> KernelBenchSettings:
    return config.section(KernelBenchSettings)


def test_defaults_and_overrides() -> None:
    config = load_config({"level": "1", "task_start": 1, "task_end": "5", "timeout_s": "12.5"})
    assert (config.level, config.task_start, config.task_end) == (1, 1, 5)
    assert config.timeout_s == 12.5
    assert kb(config).correctness_trials == 5 and config.mode is None


def test_yaml_words_stay_words() -> None:
    _, overrides = split_overrides(["sandbox=off", "baseline_cache=false", "compile_mode=no"])
    assert overrides == {"sandbox": "off", "baseline_cache": False, "compile_mode": "no"}
    assert load_config(overrides).sandbox == "off"


def test_split_overrides_keeps_tasks_and_paths() -> None:
    words, overrides = split_overrides(["builtin/1/2", "level=1", "a/b=c.py", "sizes.dim=8"])
    assert words == ["builtin/1/2", "a/b=c.py"]
    assert overrides == {"level": 1, "sizes.dim": 8}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"levle": 1}, "unknown config key 'levle' (did you mean 'level'?)"),
    ({"level": "abc"}, "config key 'level'"),
    ({"mode": "fast"}, "config key 'mode'"),
    ({"baselines": ["eager", "compiel"]}, "config key 'baselines': 'compiel' is no task kind's"),
    ({"tolerances.float32.atl": 1}, "unknown config key 'tolerances.float32.atl' (did you mean 'atol'?)"),
    ({"timeout_s": -1}, "config key 'timeout_s'"),
    ({"profile": "quik"}, "unknown config profile 'quik' (did you mean 'quick'?)"),
])
def test_bad_values_name_the_key(overrides: dict, message: str) -> None:
    with pytest.raises(KbtoolError) as info:
        load_config(overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_layers_files_profiles_and_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user = tmp_path / "user.yaml"
    user.write_text("correctness_trials: 3\ntimeout_s: 50\nprofiles:\n  mine: {timeout_s: 7}\n")
    monkeypatch.setenv("KBTOOL_CONFIG", str(user))
    project = tmp_path / "project"
    project.mkdir()
    (project / "kbtool.yaml").write_text("timeout_s: 60\nseed: 7\n")
    monkeypatch.chdir(project)
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text("seed: 8\ntolerances:\n  float32: {atol: 0.001, rtol: 0.001}\n")
    config = load_config({"max_trials": 50}, config_file=explicit)
    assert (kb(config).correctness_trials, config.timeout_s, config.seed) == (3, 60, 8)
    assert kb(config).tolerances["float32"].atol == 0.001
    assert kb(config).tolerances["float16"].atol == 0.01  # partial overrides keep the rest
    assert config.max_trials == 50
    assert load_config({"profile": "mine"}).timeout_s == 7
    assert load_config({"profile": "mine", "timeout_s": 9}).timeout_s == 9
    assert kb(load_config(profile="quick")).correctness_trials == 2


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(KbtoolError, match="config file not found"):
        load_config(config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("level: [1\n")
    with pytest.raises(KbtoolError, match="not valid YAML"):
        load_config(config_file=bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("num_sampls: 3\n")
    with pytest.raises(KbtoolError, match="unknown config key 'num_sampls'"):
        load_config(config_file=unknown)


def test_config_show_cli(tmp_path: Path) -> None:
    proc = run_kbtool("config", "show", "level=2", "sizes.batch_size=4")
    assert proc.returncode == 0, proc.stderr
    assert "level: 2" in proc.stdout and "batch_size: 4" in proc.stdout
    bad = run_kbtool("config", "show", "levle=2")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "kbtool: error: unknown config key 'levle' (did you mean 'level'?)"
    missing = run_kbtool("config", "show", "--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_every_key_is_documented() -> None:
    """Every core key and every key of every built-in kind's section has a row."""
    from kbtool.config import Config
    from kbtool.config.load import section_models

    doc = (DOCS / "config.md").read_text()
    keys = [k for k in Config.model_fields if k != "sections"]
    for model in section_models().values():
        keys += list(model.model_fields)
    missing = [key for key in keys if f"| `{key}` |" not in doc
               and f"`{key}`," not in doc and f", `{key}` |" not in doc]
    assert not missing


def test_sections_flat_and_nested_keys_meet() -> None:
    """A kind's settings are reached by their flat legacy names and under the section."""
    config = load_config({"sizes.N": 8, "kernelbench.sizes.M": 4,
                          "kernelbench.tolerances.float32.atol": 1e-3})
    assert kb(config).sizes == {"N": 8, "M": 4}
    assert kb(config).tolerances["float32"].atol == 1e-3
    with pytest.raises(KbtoolError, match=r"unknown config key .kernelbench\.sizez."):
        load_config({"kernelbench.sizez.N": 8})
    with pytest.raises(KbtoolError, match=r"config key .correctness_trials."):
        load_config({"kernelbench.correctness_trials": 0})


def test_a_saved_config_loads_back(tmp_path: Path) -> None:
    """What `config show` and a run's config.yaml hold is valid input again."""
    from kbtool.config import config_as_yaml

    config = load_config({"sizes.N": 8, "mode": "compile", "level": 2})
    saved = tmp_path / "saved.yaml"
    saved.write_text(config_as_yaml(config))
    again = load_config(config_file=saved)
    # The saved file spells out every section's defaults; loaded back it means the same.
    assert config_as_yaml(again) == config_as_yaml(config)
    assert again.model_dump(exclude={"sections"}) == config.model_dump(exclude={"sections"})
    assert kb(again).sizes == {"N": 8}
