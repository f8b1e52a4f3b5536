"""Offline REINFORCE on the tiny random Llama: the loss, the variants, resume, and failures."""
import dataclasses
import os
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from src.config import REPO_PARAMS, defaults, run_main
from src.io_utils import InputError
from src.policy.models import load_model
from src.policy.chat import ChatFormat
from src.training import offline, reinforce
from src.training.checkpoint import TrainingError
from src.paths import RunPaths
from src.training.offline import train_offline
from src.training.records import NothingToLearn, check_learnable, variant_weights
from src.training.reinforce import (action_log_probs, apply_baseline, collate,
                                    encode_records, reinforce_loss)
from src.training.reinforce import LoraSettings
from src.training.validation import ValidationConfig
from synthetic_records import make_record, records_by_game, train_config

# 12 records -> 3 steps per epoch, 6 steps
SMALL = train_config(max_records_per_game=3, epochs=2, batch_size=4, checkpoint_every=2,
                     lora=defaults(LoraSettings, "train.lora", dropout=0.1))


def run_paths(tmp_path: Path, base: Path) -> RunPaths:
    return RunPaths(base=str(base), output=tmp_path / "policy", checkpoints=tmp_path / "ckpt",
                    live=tmp_path / "live", curves=tmp_path / "curves")


def test_loss_equals_hand_computed_value(tiny_model_dir):
    model, tokenizer = load_model(tiny_model_dir, device="cpu")
    records = [make_record(action="Is it a cat?", context="Guess."),
               make_record(action="Is it bigger than a breadbox or not?", context="Your turn " * 9),
               make_record(action="No.", context="Go.")]
    weights = torch.tensor([1.0, 0.25, -0.5])
    expected = 0.0
    with torch.no_grad():
        for record, w in zip(records, weights):  # one unpadded sequence at a time
            ids, start = ChatFormat(tokenizer).encode(record["messages"], record["action"])
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            expected -= w.item() * sum(logp[t - 1, ids[t]].item() for t in range(start, len(ids)))
        batch = collate(encode_records(records, tokenizer), tokenizer.pad_token_id)
        loss = reinforce_loss(action_log_probs(model, batch), weights)
    assert loss.item() == pytest.approx(expected / len(records), rel=1e-5)


def test_variant_weights():
    records = [make_record(reward=0.3, raw_reward=0.1, won=False),
               make_record(episode=1, reward=0.7, raw_reward=0.9, won=True)]
    assert variant_weights(records, "aria") == (records, [0.3, 0.7])
    assert variant_weights(records, "raw") == (records, [0.1, 0.9])
    assert variant_weights(records, "bc") == ([records[1]], [1.0])
    with pytest.raises(InputError, match="2 of 2 records have no 'reward_true'"):
        variant_weights(records, "true_intention")
    intended = [{**r, "reward_true": w} for r, w in zip(records, [0.2, 0.8])]
    assert variant_weights(intended, "true_intention") == (intended, [0.2, 0.8])
    for variant, field in (("exact", "reward_exact"), ("similarity", "reward_similarity")):
        with pytest.raises(InputError, match=f"2 of 2 records have no '{field}'"):
            variant_weights(records, variant)
        grouped = [{**r, field: w} for r, w in zip(records, [0.4, 0.6])]
        assert variant_weights(grouped, variant) == (grouped, [0.4, 0.6])


def test_batch_mean_baseline():
    w = torch.tensor([1.0, 0.0, 0.5])
    assert torch.allclose(apply_baseline(w, "batch_mean"), torch.tensor([0.5, -0.5, 0.0]))
    assert torch.equal(apply_baseline(w, "none"), w)


@pytest.mark.parametrize("variant, weights, baseline, reason", [
    ("bc", [], "none", "no records from won episodes"),
    ("aria", [0.0, 0.0], "none", "every weight is 0"),
    ("bc", [1.0, 1.0], "batch_mean", "subtracting the batch mean leaves 0"),
])
def test_nothing_to_learn(variant, weights, baseline, reason):
    with pytest.raises(NothingToLearn, match=reason):
        check_learnable(weights, variant, baseline)


def test_one_step_raises_log_prob_of_rewarded_action(tiny_model_dir, tmp_path):
    good = make_record(action="Is it a cat?", reward=1.0)
    bad = make_record(episode=1, action="Banana banana.", reward=0.0)
    cfg = train_config(games=["twenty_questions"], batch_size=2, lr=1e-2)
    paths = run_paths(tmp_path, tiny_model_dir)
    train_offline({"twenty_questions": [good, bad]}, "aria", cfg, paths=paths)

    def log_prob(path):
        model, tokenizer = load_model(path, device="cpu", base=tiny_model_dir)
        with torch.no_grad():
            return action_log_probs(model, collate(encode_records([good], tokenizer), 0)).item()

    assert log_prob(paths.output) > log_prob(tiny_model_dir)


def test_resume_equals_uninterrupted(tiny_model_dir, tmp_path):
    data = records_by_game()
    whole = run_paths(tmp_path / "whole", tiny_model_dir)
    parts = run_paths(tmp_path / "parts", tiny_model_dir)
    reference = train_offline(data, "aria", SMALL, paths=whole)

    stopped = train_offline(data, "aria", SMALL, paths=parts, stop_after_steps=3)
    assert stopped["completed"] is False
    assert sorted(os.listdir(parts.checkpoints)) == ["step-0000002"]
    resumed = train_offline(data, "aria", SMALL, paths=parts)

    assert resumed["resumed_from_step"] == 2 and resumed["steps"] == reference["steps"] == 6
    assert reference["records_tokenised_from_text"] == reference["records"]  # text-only records
    assert resumed["final_loss"] == reference["final_loss"]
    expected = load_file(whole.output / "adapter_model.safetensors")
    got = load_file(parts.output / "adapter_model.safetensors")
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    rows = (parts.live / "plots" / "metrics" / "loss.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + 6  # header + one row per step, none repeated by the resume
    assert not parts.checkpoints.exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    calls = []

    def loss_turning_nan(log_probs, weights):
        calls.append(1)
        loss = reinforce_loss(log_probs, weights)
        return loss * float("nan") if len(calls) == 3 else loss

    monkeypatch.setattr(reinforce, "reinforce_loss", loss_turning_nan)
    paths = run_paths(tmp_path, tiny_model_dir)
    with pytest.raises(TrainingError, match=r"loss is nan at step 3.*checkpoint \(step 2\)"):
        train_offline(records_by_game(), "aria", SMALL, paths=paths)
    assert sorted(os.listdir(paths.checkpoints)) == ["step-0000002"]
    assert not paths.output.exists()


def test_corrupt_checkpoint_is_a_clear_error(tiny_model_dir, tmp_path):
    paths = run_paths(tmp_path, tiny_model_dir)
    train_offline(records_by_game(), "aria", SMALL, paths=paths, stop_after_steps=2)
    (paths.checkpoints / "step-0000002" / "trainable.safetensors").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="unreadable checkpoint.*delete"):
        train_offline(records_by_game(), "aria", SMALL, paths=paths)


def test_stage_reports_empty_records_without_traceback(tmp_path, monkeypatch, capsys):
    from stages import train_offline as stage

    params = yaml.safe_load(REPO_PARAMS.read_text())
    params["train"]["games"] = ["bargaining"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data" / "records" / "s0").mkdir(parents=True)
    (tmp_path / "data" / "records" / "s0" / "bargaining.jsonl").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["train_offline", "--variant", "aria", "--seed", "0"])
    with pytest.raises(SystemExit) as exit_info:
        run_main(stage.main)
    assert exit_info.value.code == 3
    assert "s0/bargaining.jsonl: empty file" in capsys.readouterr().err


def test_bc_without_wins_keeps_base_or_fails(tiny_model_dir, tmp_path):
    lost = {"twenty_questions": [make_record(won=False), make_record(episode=1, won=False)]}
    paths = run_paths(tmp_path, tiny_model_dir)
    metrics = train_offline(lost, "bc", train_config(games=["twenty_questions"]), paths=paths)
    assert metrics["trained"] is False and "no records from won episodes" in metrics["reason"]
    assert (paths.live / "plots" / "metrics" / "loss.tsv").read_text() == "step\tloss\n"
    kept = load_model(paths.output, device="cpu", base=tiny_model_dir)[0]
    base = load_model(tiny_model_dir, device="cpu")[0]
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), base.state_dict().values()))
    with pytest.raises(NothingToLearn):
        train_offline(lost, "bc", train_config(games=["twenty_questions"], if_nothing_to_learn="fail"),
                      paths=run_paths(tmp_path / "fail", tiny_model_dir))


def test_game_mean_baseline_centres_each_game_and_spares_bc():
    cfg = train_config(baseline="game_mean")
    data = records_by_game()
    for variant in ("aria", "raw"):
        records, weights = offline.select_training_set(data, variant, cfg, 0)
        for game in cfg.games:
            mine = [w for r, w in zip(records, weights) if r["game"] == game]
            assert abs(sum(mine)) < 1e-9 and any(mine)
    records, weights = offline.select_training_set(data, "bc", cfg, 0)
    assert weights == [1.0] * len(records)


def test_validation_curve_at_start_every_and_end_survives_resume(tiny_model_dir, tmp_path):
    from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig
    from src.policy.sampling import SamplingConfig

    games = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=1),
                     negotiation=TwoPlayerConfig(max_rounds=1),
                     twenty_questions=QuestionsConfig(max_turns=1, candidates=0),
                     guess_my_city=QuestionsConfig(max_turns=1, candidates=0))
    sampling = defaults(SamplingConfig, "rollout.sampling", max_new_tokens=4, batch_size=8)
    cfg = dataclasses.replace(SMALL, validation=defaults(
        ValidationConfig, "train.validation", episodes=2, every=4, sampling=sampling))
    paths = run_paths(tmp_path, tiny_model_dir)
    paths.curves = tmp_path / "curves"
    # killed after step 3: resumes from the step-2 checkpoint, which is off the schedule and
    # gets no point of its own (the curve equals an uninterrupted run's)
    train_offline(records_by_game(), "aria", cfg, paths=paths, stop_after_steps=3, games_cfg=games)
    metrics = train_offline(records_by_game(), "aria", cfg, paths=paths, games_cfg=games)
    assert metrics["resumed_from_step"] == 2
    assert [p["step"] for p in metrics["validation"]] == [0, 4, 6]
    rows = (paths.curves / "validation.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and "mean_reward" in rows[0].split(",") and len(rows) == 4
    assert all(0 <= p["mean_reward"] <= 1 for p in metrics["validation"])


def test_base_point_is_every_variants_step0_point(
        tiny_model_dir, tmp_path, fresh_accelerate_state):
    """validate-base's point stands for each variant's step 0: a variant trained (under bf16
    autocast, the default) without a start point plays the same step-0 episodes (LoRA B = 0 is
    the base; the adapter-off opponent is batched as validate-base's second policy), a given
    start point is taken as is, and one of other games is refused."""
    from src.games import GamesConfig, QuestionsConfig, TwoPlayerConfig
    from src.policy.sampling import SamplingConfig
    from src.engines import EngineConfig, Generation
    from src.training.validation import base_validation_point

    games = defaults(GamesConfig, "games", bargaining=TwoPlayerConfig(max_rounds=2),
                     negotiation=TwoPlayerConfig(max_rounds=1),
                     twenty_questions=QuestionsConfig(max_turns=2, candidates=4),
                     guess_my_city=QuestionsConfig(max_turns=2, candidates=4))
    sampling = defaults(SamplingConfig, "rollout.sampling", max_new_tokens=6, batch_size=8)
    cfg = dataclasses.replace(SMALL, mixed_precision="bf16", validation=defaults(
        ValidationConfig, "train.validation", episodes=4, every=100, sampling=sampling))
    hf = Generation(defaults(EngineConfig, "rollout.engine"), tiny_model_dir)
    base_point = base_validation_point(hf, cfg.games, games, cfg.validation)
    paths = run_paths(tmp_path, tiny_model_dir)
    paths.curves = tmp_path / "curves"
    played = train_offline(records_by_game(), "aria", cfg, paths=paths, games_cfg=games)
    assert played["validation"][0] == base_point
    marked = {**base_point, "mean_reward": -1.0}  # a point no play can give
    given = train_offline(records_by_game(), "aria", cfg, paths=run_paths(tmp_path / "b", tiny_model_dir),
                          games_cfg=games, start_point=marked)
    assert given["validation"][0] == marked and given["validation"][1:] == played["validation"][1:]
    with pytest.raises(TrainingError, match="validate-base"):
        train_offline(records_by_game(), "aria", cfg, paths=run_paths(tmp_path / "c", tiny_model_dir),
                      games_cfg=games, start_point={"step": 0, "mean_reward": 0.5})
