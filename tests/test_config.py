"""params.yaml loading: unknown or missing keys, wrong types and bad YAML fail with one line."""
from dataclasses import dataclass, field

import pytest
import yaml

from src.config import REPO_PARAMS, ConfigError, defaults, load_section, read_params
from src.policy.models import ModelConfig
from src.policy.sampling import SamplingConfig


@dataclass
class Inner:
    rate: float = 0.1


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)


def write(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def test_loads_typed_section(tmp_path):
    cfg = load_section("s", Outer, write(tmp_path, "s:\n  name: y\n  inner:\n    rate: 2\n"))
    assert cfg == Outer("y", Inner(2.0))


@pytest.mark.parametrize("text, expected", [
    ("s:\n  nmae: y\n", "s.nmae"),
    ("s:\n  inner:\n    rate: fast\n", "s.inner.rate"),
    ("t:\n  name: y\n", "missing section 's'"),
    ("s: [1, 2\n", "not valid YAML"),
])
def test_bad_params_name_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_section("s", Outer, write(tmp_path, text))
    assert expected in err.value.message
    assert "\n" not in err.value.message


def test_validate_hook_runs():
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        defaults(ModelConfig, "model", dtype="int8")
    with pytest.raises(ConfigError, match="top_p"):
        defaults(SamplingConfig, "rollout.sampling", top_p=0)


@pytest.mark.parametrize("section, key", [("rollout", "sampling.max_new_tokens"),
                                          ("games", "twenty_questions.candidates"),
                                          ("limits", "max_prompt_tokens")])
def test_a_missing_key_fails_naming_it(tmp_path, section, key):
    """Fields have no defaults: a key left out of params.yaml is an error, not a silent value."""
    from src.games import GamesConfig
    from src.limits import Limits
    from src.rollout.play import RolloutConfig

    cls = {"rollout": RolloutConfig, "games": GamesConfig, "limits": Limits}[section]
    params = yaml.safe_load(REPO_PARAMS.read_text())
    *parents, last = key.split(".")
    node = params[section]
    for name in parents:
        node = node[name]
    del node[last]
    path = write(tmp_path, yaml.safe_dump(params))
    with pytest.raises(ConfigError) as err:
        load_section(section, cls, path)
    missing = "missing key (every value lives in params.yaml)"
    assert err.value.message == f"{path}: {section}.{key}: {missing}"


def test_repository_params_load():
    """Every section of the committed params.yaml is a mapping."""
    assert all(isinstance(v, dict) for v in read_params().values())
