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


@pytest.mark.parametrize("dpi", [-5, 0])
def test_report_dpi_must_be_positive(tmp_path, dpi):
    from src.evaluation.report import ReportConfig

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["report"]["dpi"] = dpi
    path = write(tmp_path, yaml.safe_dump(params))
    with pytest.raises(ConfigError) as err:
        load_section("report", ReportConfig, path)
    assert err.value.message == f"{path}: report.dpi must be a positive integer, got {dpi}"


# Game seeds: every stage plays its own -------------------------------------------------------
def params_with(tmp_path, **values):
    """The repository's params.yaml with dotted keys replaced, written to tmp_path."""
    params = yaml.safe_load(REPO_PARAMS.read_text())
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[leaf] = value
    return write(tmp_path, yaml.safe_dump(params, sort_keys=False))


def test_repository_seed_ranges_are_disjoint():
    from src.config import check_params, seed_ranges

    check_params(REPO_PARAMS)
    seeds = read_params(REPO_PARAMS)["train"]["seeds"]
    assert [name for name, _, _ in seed_ranges(read_params(REPO_PARAMS))] == [
        *(f"rollout.seed of training seed {s}" for s in seeds),
        "miniature.seed", "train.validation.seed", "online.seed", "evaluate.seed",
        *(f"iterate.seed of iteration {entry['iteration']}, training seed {s}"
          for entry in read_params(REPO_PARAMS)["iterate"]["iterations"] for s in seeds)]


@pytest.mark.parametrize("values, first, second", [
    ({"evaluate.seed": 0}, "rollout.seed of training seed 0 plays [0, 64)",
     "evaluate.seed plays [0, 32)"),
    ({"online.seed": 60}, "rollout.seed of training seed 0 plays [0, 64)",
     "online.seed plays [60, 62)"),
    ({"online.seed": 100}, "rollout.seed of training seed 1 plays [64, 128)",
     "online.seed plays [100, 102)"),  # each training seed plays its own rollout range
    ({"train.validation.seed": 1000149, "evaluate.primary_comparison.episodes": 150},
     "train.validation.seed plays [1000149, 1000157)",
     "evaluate.seed plays [1000000, 1000150)"),  # the primary comparison's 150 episodes
    ({"online.seed": 999_998, "online.iterations": 2}, "online.seed plays [999998, 1000002)",
     "evaluate.seed plays [1000000, 1000032)"),  # iterations x episodes (one iteration: clear)
    ({"miniature.seed": 1_000_010}, "miniature.seed plays [1000010, 1000410)",
     "evaluate.seed plays [1000000, 1000032)"),  # the corpus's scripted episodes
])
def test_overlapping_seed_ranges_fail_naming_both(tmp_path, values, first, second):
    from src.config import check_params

    path = params_with(tmp_path, **values)
    with pytest.raises(ConfigError) as err:
        check_params(path)
    message = err.value.message
    assert message.startswith(f"{path}: seed ranges overlap: ") and "\n" not in message
    assert first in message and second in message


def test_adjacent_seed_ranges_pass(tmp_path):
    from src.config import check_params

    check_params(params_with(tmp_path, **{"evaluate.seed": 320, "train.validation.episodes": 0,
                                          "train.validation.seed": 0}))  # validation off
    # (training seed 4's rollouts play [256, 320))


@pytest.mark.parametrize("key, value", [("rollout.seed", -4), ("evaluate.seed", -4),
                                        ("cluster.seed", -4), ("train.seeds", [0, -4])])
def test_negative_seeds_are_refused(tmp_path, key, value):
    from src.config import check_params

    path = params_with(tmp_path, **{key: value})
    with pytest.raises(ConfigError) as err:
        check_params(path)
    assert err.value.message.startswith(f"{path}: {key}: -4 is negative; ")


def test_seed_check_takes_any_list_of_ranges():
    """More ranges (say one per training seed, offset by a stride) go through the same check."""
    from src.config import check_seed_ranges

    stride = 100_000
    per_seed = [(f"train.seeds[{s}] rollout", s * stride, s * stride + 64) for s in range(3)]
    check_seed_ranges(per_seed + [("evaluate.seed", 1_000_000, 1_000_150)], "p")
    with pytest.raises(ConfigError, match=r"train.seeds\[1\] rollout plays \[100000, 100064\) "
                                          r"and online.seed plays \[100010, 100012\)"):
        check_seed_ranges(per_seed + [("online.seed", 100_010, 100_012)], "p")


# The whole file against every section's dataclass (the check-params stage) --------------------
def test_whole_params_check_passes_on_the_repository_params():
    from src.config import SECTIONS
    from src.params_check import SCHEMAS, check_all_params

    assert list(SCHEMAS) == list(SECTIONS)
    result = check_all_params(REPO_PARAMS)
    assert result["sections"] == list(SECTIONS)
    assert result["seed_ranges"]["evaluate.seed"] == [1_000_000, 1_000_032]
    assert result["seed_ranges"]["rollout.seed of training seed 1"] == [64, 128]


def test_whole_params_check_uses_the_stages_dataclasses():
    """Each section is checked against the class its stages load it into (one a dataclass the
    stage scripts load through load_section / to_config, read statically)."""
    from src.params_check import SCHEMAS
    from tests.test_dvc_declarations import config_loaders

    for key, classes in config_loaders().items():
        if "." not in key:
            assert (SCHEMAS[key].__module__, SCHEMAS[key].__name__) in classes, key


@pytest.mark.parametrize("text, expected", [
    ("\n  linkge: average\n  linkage: ward", "cluster.linkge: Key 'linkge' not in 'ClusterConfig'"),
    ("\nevalute:\n  episodes: 100\n", "unknown section 'evalute' (did you mean 'evaluate'?)"),
    ("\n  processs: 2\n  processes: 1", "launch.processs: Key 'processs' not in 'LaunchConfig'"),
    ("\n    temprature: 0.5\n    temperature: 0.7", "evaluate.sampling.temprature: Key"),
])
def test_whole_params_check_names_a_misspelled_key(tmp_path, text, expected):
    from src.params_check import check_all_params

    original = REPO_PARAMS.read_text()
    anchors = {"linkge": "\n  linkage: ward", "evalute": None, "processs": "\n  processes: 1",
               "temprature": "\n    temperature: 0.7"}
    anchor = next(a for k, a in anchors.items() if k in text)
    path = write(tmp_path, original + text if anchor is None
                 else original.replace(anchor, text.rstrip("\n"), 1))
    with pytest.raises(ConfigError) as err:
        check_all_params(path)
    assert err.value.message.startswith(f"{path}: ") and expected in err.value.message
    assert "\n" not in err.value.message
