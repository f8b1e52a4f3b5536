"""ARIA iterations (docs/method.md §14): run folders, game seeds, params, dvc.yaml's iteration
stages, continuing an adapter, the paired comparison with iteration 1 and the report rows."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import yaml

from src.config import ConfigError, defaults, read_params
from src.paths import GameArtifacts, RunPaths, iteration_policy, run_dir
from src.rollout.iterations import IterateConfig, iteration_rollout
from src.rollout.play import RolloutConfig
from tests.test_dvc_declarations import declared_params, declared_paths, expand_stages, read_dvc

ROOT = Path(__file__).resolve().parents[1]


# --- paths ----------------------------------------------------------------------------------
def test_iteration_one_keeps_the_paths_of_the_first_chain():
    first = GameArtifacts("bargaining", 3)
    assert GameArtifacts("bargaining", 3, 1) == first
    assert first.rollouts == Path("data/rollouts/s3/bargaining.jsonl")
    assert first.eval_metrics == Path("metrics/eval/s3/bargaining.json")
    assert RunPaths.for_variant("aria", 3, 1) == RunPaths.for_variant("aria", 3)
    assert RunPaths.for_variant("aria", 3).start is None


def test_a_later_iteration_writes_under_its_own_run_folder():
    later = GameArtifacts("guess_my_city", 1, 2)
    assert run_dir(1, 2) == "i2/s1"
    assert later.rollouts == Path("data/rollouts/i2/s1/guess_my_city.jsonl")
    assert later.cluster_dir == Path("data/cluster/i2/s1/guess_my_city")
    assert later.chosen_k == Path("metrics/select_k/i2/s1/guess_my_city.json")
    assert later.records == Path("data/records/i2/s1/guess_my_city.jsonl")
    assert later.eval_metrics == Path("metrics/eval/i2/s1/guess_my_city.json")
    run = RunPaths.for_variant("aria", 1, 3)
    assert run.output == Path("models/policies/i3/s1/aria") == iteration_policy(1, 3)
    assert run.metrics == Path("metrics/train_offline/i3/s1/aria.json")
    assert run.checkpoints == Path("checkpoints/train_offline/i3/s1/aria")
    assert run.start == iteration_policy(1, 2)  # continues the previous iteration's policy
    assert RunPaths.for_variant("aria", 1, 2).start == Path("models/policies/i1/s1/aria")
    with pytest.raises(ValueError):
        run_dir(0, 0)


# --- game seeds and params --------------------------------------------------------------------
def iterate_cfg(**overrides) -> IterateConfig:
    return defaults(IterateConfig, "iterate", **overrides)


def test_each_iteration_and_seed_plays_its_own_game_seeds():
    rollout, iterate = defaults(RolloutConfig, "rollout"), iterate_cfg()
    firsts = {(i, s): iteration_rollout(rollout, iterate, i, s).seed for i in (2, 3) for s in (0, 1)}
    assert firsts == {(2, 0): 4_000_000, (2, 1): 4_000_064, (3, 0): 4_100_000, (3, 1): 4_100_064}
    played = iteration_rollout(rollout, iterate, 2, 0)
    assert played.episodes == iterate.episodes and played.sampling == rollout.sampling


def test_repository_params_check_every_iteration_range():
    from src.params_check import check_all_params

    ranges = check_all_params(ROOT / "params.yaml")["seed_ranges"]
    seeds = read_params(ROOT / "params.yaml")["train"]["seeds"]
    for i in (2, 3):
        for s in seeds:
            first = 4_000_000 + (i - 2) * 100_000 + s * 64
            assert ranges[f"iterate.seed of iteration {i}, training seed {s}"] == [first, first + 64]


def params_file(tmp_path, **iterate) -> Path:
    data = read_params(ROOT / "params.yaml")
    data["iterate"].update(iterate)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("iterate, message", [
    ({"seed_stride": 100}, "seed ranges overlap: iterate.seed of iteration 2, training seed 1 "
                           "plays [4000064, 4000128) and iterate.seed of iteration 3, training "
                           "seed 0 plays [4000100, 4000164)"),
    ({"seed": 300}, "seed ranges overlap: rollout.seed of training seed 4 plays [256, 320) and "
                    "iterate.seed of iteration 2, training seed 0 plays [300, 364)"),
    ({"seed": 999_990}, "evaluate.seed plays [1000000, 1000032) and iterate.seed of iteration 2"),
])
def test_overlapping_iteration_seeds_are_refused(tmp_path, iterate, message):
    from src.params_check import check_all_params

    with pytest.raises(ConfigError) as err:
        check_all_params(params_file(tmp_path, **iterate))
    assert message in err.value.message, err.value.message


@pytest.mark.parametrize("entries, message", [
    ([{"iteration": 3, "previous": 2}], "iterations must number 2, 3, ... in order"),
    ([{"iteration": 2, "previous": 1}, {"iteration": 4, "previous": 3}], "without a gap"),
    ([{"iteration": 2, "previous": 0}], "iteration 2 must play iteration 1's policy"),
])
def test_iterations_run_two_three_and_so_on(tmp_path, entries, message):
    from src.params_check import check_all_params

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_all_params(params_file(tmp_path, iterations=entries))


def test_no_iterations_is_allowed(tmp_path):
    from src.params_check import check_all_params

    ranges = check_all_params(params_file(tmp_path, iterations=[]))["seed_ranges"]
    assert not any(name.startswith("iterate.") for name in ranges)


def test_the_default_runs_three_iterations_and_the_tiny_profile_two():
    params = read_params(ROOT / "params.yaml")
    assert [e["iteration"] for e in params["iterate"]["iterations"]] == [2, 3]
    tiny = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    assert [e["iteration"] for e in tiny["iterate"]["iterations"]] == [2]


# --- dvc.yaml -------------------------------------------------------------------------------
def test_iteration_stages_chain_the_previous_policy():
    stages = expand_stages(read_dvc())
    seed = read_params(ROOT / "params.yaml")["train"]["seeds"][0]
    assert declared_paths(stages[f"iterate-start@{seed}"]["deps"])[-1] == f"models/policies/s{seed}/aria"
    for index, previous in ((0, 1), (1, 2)):
        name = f"it{index}-{seed}"
        for stage in ("iterate-rollout", "iterate-train"):
            assert f"models/policies/i{previous}/s{seed}/aria" in declared_paths(
                stages[f"{stage}@{name}"]["deps"]), stage
        evaluate = declared_paths(stages[f"iterate-evaluate@{name}"]["deps"])
        assert {f"models/policies/i{previous + 1}/s{seed}/aria", f"data/eval/s{seed}"} <= set(evaluate)


def test_only_later_iterations_declare_the_iterate_params():
    """Changing iterate.* leaves every stage of iteration 1 as it is."""
    for name, body in expand_stages(read_dvc()).items():
        iterate = [p for p in declared_params(body.get("params")) if p.startswith("iterate")]
        if name.startswith("iterate-rollout@"):
            assert iterate == ["iterate.episodes", "iterate.seed", "iterate.seed_stride"], name
        else:
            assert not iterate, name


# --- training continues the previous adapter ------------------------------------------------
def test_training_starts_from_the_previous_adapter(tiny_model_dir, tmp_path):
    import torch

    from src.training.reinforce import LoraSettings, build_trainable_model, trainable_parameters
    from src.training.runs import export_adapter

    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"])
    model, tokenizer = build_trainable_model(str(tiny_model_dir), "float32", lora, 0)
    with torch.no_grad():
        for p in trainable_parameters(model).values():
            p.add_(0.5)  # a "trained" adapter: LoRA B no longer zero
    export_adapter(model, tokenizer, tmp_path / "previous")
    trained = {k: v.detach().clone() for k, v in trainable_parameters(model).items()}
    again, _ = build_trainable_model(str(tiny_model_dir), "float32", lora, 1, tmp_path / "previous")
    resumed = trainable_parameters(again)
    assert resumed.keys() == trained.keys()
    assert all(torch.equal(resumed[k], trained[k]) for k in trained)
    assert again.peft_config["default"].base_model_name_or_path == str(tiny_model_dir)


# --- evaluation and report ------------------------------------------------------------------
def episode(policy: str, seed: int, seat: str, reward: float) -> dict:
    return {"seed": seed, "evaluation": {"policy": policy, "seat": seat},
            "outcome": {}, "rewards": {seat: reward}}


def test_the_iteration_is_paired_with_iteration_one_episode_by_episode():
    from src.evaluation.iterations import with_first_iteration

    later = [episode("aria", s, "alice", 1.0) for s in range(6)]
    first = [episode("aria", s, "alice", 1.0 if s < 2 else 0.0) for s in range(6)]
    first += [episode("base", s, "alice", 1.0) for s in range(6)]  # other policies: ignored
    metrics = with_first_iteration({"seed": 1_000_000, "policies": {}}, later, first, 2)
    assert metrics["iteration"] == 2
    (c,) = metrics["comparisons"]
    assert (c["a"], c["b"], c["pairs"], c["only_a"], c["only_b"]) == ("aria@2", "aria@1", 6, 4, 0)


def fabricate_iterations(metrics: Path, iterations=(2, 3), seeds=(0, 1, 2, 3, 4),
                         gain: float = 0.0) -> None:
    from src.io_utils import read_json, write_json
    from tests.test_report import set_rates

    rng = random.Random(1)
    for i in iterations:
        for seed in seeds:
            for game in ("bargaining", "negotiation", "twenty_questions", "guess_my_city"):
                m = copy.deepcopy(read_json(metrics / "eval" / f"s{seed}" / f"{game}.json"))
                rate = m["policies"]["aria"][m["primary"]]["rate"]
                m = {**m, "policies": {"aria": m["policies"]["aria"]}, "policy_order": ["aria"],
                     "iteration": i, "comparisons": [{"a": f"aria@{i}", "b": "aria@1",
                                                      "pairs": 10, "only_a": 3, "only_b": 1}]}
                set_rates(m, "aria", rate + gain * (i - 1) + rng.gauss(0, 0.01))
                write_json(metrics / "eval" / f"i{i}" / f"s{seed}" / f"{game}.json", m)


def test_report_judges_each_iteration_against_the_first(tmp_path):
    from tests.test_report import fabricate, report, table_rows

    fabricate(tmp_path / "metrics")
    fabricate_iterations(tmp_path / "metrics", gain=0.2)
    text = report(tmp_path)
    assert text.index("## Verdicts") < text.index("## ARIA iterations") < text.index(
        "## Every policy on every game")
    rows = table_rows(text, "## ARIA iterations")
    assert len(rows) == 4 * 2
    claims = [line.split(" | ")[:3] for line in rows]
    assert claims[:2] == [["| bargaining", "aria@2 beats aria@1", "58.9 vs 53.2"],
                          ["| bargaining", "aria@3 beats aria@1", "58.0 vs 53.2"]]
    assert ["| guess_my_city", "aria@3 beats aria@1", "36.0 vs 29.0"] in claims
    assert ["| negotiation", "aria@2 beats aria@1", "—"] in claims
    assert all("| **reproduced**:" in line for line in rows)  # +20 pp per iteration, 5 seeds
    assert "| 15 / 5, p = " in rows[0]  # the iteration's paired comparisons, pooled over seeds
    assert "Of 8 rows: 8 reproduced" in text


def test_report_without_iterations_has_no_iteration_section(tmp_path):
    from tests.test_report import fabricate, report

    fabricate(tmp_path / "metrics")
    assert "## ARIA iterations" not in report(tmp_path)


def test_report_names_a_missing_iteration_file(tmp_path):
    from src.io_utils import InputError
    from tests.test_report import fabricate, report

    fabricate(tmp_path / "metrics")
    fabricate_iterations(tmp_path / "metrics", iterations=(2,))
    (tmp_path / "metrics" / "eval" / "i2" / "s3" / "negotiation.json").unlink()
    with pytest.raises(InputError, match=r"metrics/eval/i2/s3/negotiation.json \(stage "
                                         r"iterate-evaluate, iteration 2, seed 3\)"):
        report(tmp_path)
