"""Integration: the packaged SmolLM2-135M plays one short episode of every game."""
import pytest

from src.config import defaults
from src.games import GAME_NAMES, GamesConfig
from src.policy.models import ModelConfig, prepare_model
from src.policy.policy import Policy
from src.policy.sampling import SamplingConfig
from src.rollout.play import RolloutConfig, self_play
from src.rollout.format import validate_rollout

pytestmark = pytest.mark.real_model


def test_smollm2_plays_every_game(tmp_path):
    metrics = prepare_model(defaults(ModelConfig, "model", source="packaged:SmolLM2-135M-Instruct"),
                            tmp_path / "base")
    assert metrics["parameters"] > 100_000_000
    policy = Policy.load(tmp_path / "base", device="cpu", name="base")
    games = defaults(GamesConfig, "games")
    games.bargaining.max_rounds = games.negotiation.max_rounds = 1
    games.twenty_questions.max_turns = games.guess_my_city.max_turns = 2
    sampling = defaults(SamplingConfig, "rollout.sampling", max_new_tokens=16, batch_size=4)
    cfg = defaults(RolloutConfig, "rollout", episodes=1, sampling=sampling)
    for game in GAME_NAMES:
        records, stats = self_play(game, games, policy, cfg)
        validate_rollout(records[0], game)
        assert stats["generated_tokens"] > 0
        assert any(t["speaker"] != "env" and t["text"] for t in records[0]["turns"])
