"""Gradient variance on the tiny random Llama."""
import math

import pytest

from src.training.grad_variance import GradientSpread, GradVarianceConfig, gradient_variance
from src.training.reinforce import LoraSettings
from synthetic_records import records_by_game

CFG = GradVarianceConfig(minibatches=4, batch_size=3)


def test_spread_of_known_vectors():
    import torch

    spread = GradientSpread()
    for v in ([0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]):  # mean (1, 1): each at distance^2 2
        spread.add(torch.tensor(v))
    assert spread.summary()["variance"] == pytest.approx(2.0)


def test_variance_is_a_non_negative_number(tiny_model_dir):
    metrics = gradient_variance(records_by_game()["negotiation"], CFG, LoraSettings(),
                                base=str(tiny_model_dir))
    for kind in ("aggregated", "raw"):
        assert math.isfinite(metrics[kind]["variance"]) and metrics[kind]["variance"] >= 0
    assert metrics["aggregated"]["variance"] > 0


def test_identical_rewards_give_identical_variance(tiny_model_dir):
    records = [dict(r, raw_reward=r["reward"]) for r in records_by_game()["bargaining"]]
    metrics = gradient_variance(records, CFG, LoraSettings(enabled=False), base=str(tiny_model_dir))
    assert metrics["aggregated"] == metrics["raw"]
    assert metrics["ratio_aggregated_to_raw"] == 1.0
