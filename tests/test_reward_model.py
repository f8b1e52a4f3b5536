"""Reward model: the weights of docs/method.md §9, the metrics, training, and the saved format."""
import dataclasses

import pytest
import torch

from src.config import defaults
from src.training.reward_model import (EmbedderMLP, LMSettings, RewardModel,
                                       RMConfig, context_text, evaluate_reward_model,
                                       fit_and_evaluate, pairwise_accuracy, rm_weights,
                                       spearman, split_by_episode, system_text,
                                       train_reward_model, weighted_mse)
from synthetic_records import make_record


def rm_config(**mlp) -> RMConfig:
    """params.yaml's rm section with these mlp settings (unchecked: 0 epochs is a test case)."""
    cfg = defaults(RMConfig, "rm")
    return dataclasses.replace(cfg, mlp=dataclasses.replace(cfg.mlp, **mlp))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_match_spec_at_the_boundaries(dtype):
    targets = torch.tensor([0.0, 0.0099, 0.01, 0.4499, 0.45, 0.5, 0.55, 0.5501, 0.8, 0.8001, 1.0],
                           dtype=dtype)
    expected = [2.0, 2.0, 1.0, 1.0, 0.5, 0.5, 0.5, 1.0, 1.0, 2.0, 2.0]
    assert rm_weights(targets).tolist() == expected


def test_weighted_mse_by_hand():
    predictions, targets = torch.tensor([0.5, 0.2, 0.0]), torch.tensor([1.0, 0.3, 0.5])
    assert weighted_mse(predictions, targets).item() == pytest.approx(
        (2.0 * 0.25 + 1.0 * 0.01 + 0.5 * 0.25) / 3)


def test_spearman_on_known_values():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([4, 3, 2, 1], [10, 20, 30, 40]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [0.5, 0.5, 0.5]) is None


def test_pairwise_accuracy_on_known_values():
    # pairs with different targets: (0,1) (0,2) (0,3) (1,2) (1,3); only (1,2) is misordered
    assert pairwise_accuracy([0.1, 0.4, 0.35, 0.8], [0.0, 0.5, 1.0, 1.0]) == pytest.approx(0.8)
    assert pairwise_accuracy([0.5, 0.5], [0.0, 1.0]) == 0.5  # a tied prediction counts half
    assert pairwise_accuracy([0.1, 0.9], [0.3, 0.3]) is None


def synthetic_records(n: int = 40) -> list[dict]:
    """Accepting earns 1, rejecting 0, a counter-offer 0.5: the action text carries the reward."""
    actions = [("I accept the deal.", 1.0), ("I reject this, goodbye.", 0.0),
               ("Counter-offer: Alice gets 50.", 0.5)]
    return [make_record("bargaining", i, action=actions[i % 3][0], reward=actions[i % 3][1],
                        context=f"Bob offers Alice {10 * (i % 7)} dollars.") for i in range(n)]


def test_split_keeps_episodes_whole():
    records = synthetic_records() + [make_record("bargaining", 0, turn=2)]
    train, held_out = split_by_episode(records, 0.25, seed=0)
    assert len(train) + len(held_out) == len(records) and held_out
    assert not {r["episode_id"] for r in train} & {r["episode_id"] for r in held_out}


def test_training_lowers_weighted_mse(tmp_path):
    records = synthetic_records()
    cfg = rm_config(epochs=60, batch_size=16, residual=False, validation_fraction=0.0)
    before = evaluate_reward_model(RewardModel(EmbedderMLP.create(cfg)), records)
    trained = train_reward_model(records, cfg)
    after = evaluate_reward_model(trained, records)
    assert after["weighted_mse"] < 0.5 * before["weighted_mse"]
    assert after["spearman"] > 0.9

    trained.save(tmp_path / "rm")
    reloaded = evaluate_reward_model(RewardModel.load(tmp_path / "rm"), records)
    assert reloaded["weighted_mse"] == pytest.approx(after["weighted_mse"], abs=1e-7)


def test_context_keeps_the_system_message():
    messages = ([{"role": "system", "content": "Your value is $70."}]
                + [{"role": "user" if i % 2 else "assistant", "content": f"move {i}"}
                   for i in range(6)])
    assert system_text(messages) == "Your value is $70."
    assert context_text(messages, 2) == "user: move 5\nassistant: move 4"  # newest first


def values_game(episodes: int = 60) -> list[dict]:
    """Two games with different mean rewards; within bargaining, the reward of the same late
    action depends only on a private value stated in the system prompt, which the last three
    messages no longer show: the context must carry the system message to beat the means."""
    records = []
    for e in range(episodes):
        high = e % 2 == 0
        value = "Your private value is very high: you love this item." if high else \
            "Your private value is zero: you do not want this item."
        messages = [{"role": "system", "content": "You play bargaining. " + value}]
        for turn in range(1, 4):
            messages = messages + [{"role": "user", "content": f"Round {turn}: make a move."}]
            records.append({**make_record("bargaining", e, action="I accept the offer.",
                                          turn=turn, reward=0.9 if high else 0.1),
                            "messages": list(messages)})
            messages = messages + [{"role": "assistant", "content": "I accept the offer."}]
        records.append(make_record("twenty_questions", e, action="Is it a dog?",
                                   reward=0.0))
    return records


def test_residual_rm_beats_the_game_mean_baseline():
    rm, metrics = fit_and_evaluate(values_game(), rm_config(epochs=40, batch_size=16))
    held = metrics["held_out"]
    assert held["beats_game_mean_baseline"] and held["mse"] < 0.5 * held["game_mean_baseline"]["mse"]
    assert set(held["per_game"]) == {"bargaining", "twenty_questions"}
    assert held["per_game"]["twenty_questions"]["game_mean_mse"] == pytest.approx(0.0)
    assert metrics["epochs"] > 0 and len(metrics["validation_weighted_mse"]) == 41
    assert held["game_mean_baseline"]["pairwise_accuracy"] is not None


def test_residual_rm_starts_on_the_game_means():
    """With no epochs chosen the model predicts each game's training mean exactly."""
    records = values_game(10)
    rm = train_reward_model(records, rm_config(epochs=0, validation_fraction=0))
    scores = rm.score(records)
    assert scores[:3] == pytest.approx([0.5] * 3, abs=1e-6)  # bargaining mean (0.9 + 0.1) / 2
    assert scores[3] == pytest.approx(0.001, abs=1e-4)  # twenty questions: 0, logit clipped
    with pytest.raises(ValueError, match="game"):
        rm.score([{"messages": records[0]["messages"], "action": records[0]["action"]}])


def test_lm_backbone_trains_saves_and_loads(tiny_model_dir, tmp_path):
    records = synthetic_records(6)
    lm = defaults(LMSettings, "rm.lm", epochs=1, batch_size=3)
    cfg = defaults(RMConfig, "rm", backbone="lm_lora", lm=lm)
    rm = train_reward_model(records, cfg, base=str(tiny_model_dir), device="cpu")
    rm.save(tmp_path / "rm")
    scores = RewardModel.load(tmp_path / "rm", device="cpu", base=str(tiny_model_dir)).score(records)
    assert scores == pytest.approx(rm.score(records), abs=1e-5)
    assert all(0 <= s <= 1 for s in scores)
