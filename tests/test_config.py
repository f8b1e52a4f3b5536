"""params.yaml loading: unknown keys, wrong types and bad YAML fail with one line."""
from dataclasses import dataclass, field

import pytest

from src.config import ConfigError, load_section, read_params
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


def test_validate_hook_runs(tmp_path):
    with pytest.raises(ConfigError, match="dtype 'int8'"):
        load_section("model", ModelConfig, write(tmp_path, "model:\n  dtype: int8\n"))
    with pytest.raises(ConfigError, match="top_p"):
        load_section("s", SamplingConfig, write(tmp_path, "s:\n  top_p: 0\n"))


def test_repository_params_load():
    """Every section of the committed params.yaml is a mapping."""
    assert all(isinstance(v, dict) for v in read_params().values())
