"""Reward model: the SPEC 9 weights, the metrics, training, and the saved format."""
import pytest
import torch

from src.training.reinforce import LoraSettings
from src.training.reward_model import (EmbedderMLP, LMSettings, MLPSettings, RewardModel,
                                       RMConfig, evaluate_reward_model, pairwise_accuracy,
                                       rm_weights, spearman, split_by_episode,
                                       train_reward_model, weighted_mse)
from synthetic_records import make_record


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
    cfg = RMConfig(mlp=MLPSettings(epochs=60, batch_size=16))
    before = evaluate_reward_model(RewardModel(EmbedderMLP.create(cfg)), records)
    trained = train_reward_model(records, cfg)
    after = evaluate_reward_model(trained, records)
    assert after["weighted_mse"] < 0.5 * before["weighted_mse"]
    assert after["spearman"] > 0.9

    trained.save(tmp_path / "rm")
    reloaded = evaluate_reward_model(RewardModel.load(tmp_path / "rm"), records)
    assert reloaded["weighted_mse"] == pytest.approx(after["weighted_mse"], abs=1e-7)


def test_lm_backbone_trains_saves_and_loads(tiny_model_dir, tmp_path):
    records = synthetic_records(6)
    cfg = RMConfig(backbone="lm_lora", lm=LMSettings(epochs=1, batch_size=3, lora=LoraSettings()))
    rm = train_reward_model(records, cfg, base=str(tiny_model_dir), device="cpu")
    rm.save(tmp_path / "rm")
    messages, actions = [r["messages"] for r in records], [r["action"] for r in records]
    scores = RewardModel.load(tmp_path / "rm", device="cpu").score(messages, actions)
    assert scores == pytest.approx(rm.score(messages, actions), abs=1e-5)
    assert all(0 <= s <= 1 for s in scores)
