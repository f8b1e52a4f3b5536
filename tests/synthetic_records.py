"""Valid training records (the build stage's output) without running the pipeline."""
from __future__ import annotations

from src.config import defaults
from src.games import GamesConfig
from src.intention.aggregation import AggregationConfig
from src.intention.clustering import ClusterConfig
from src.limits import Limits
from src.training.offline import TrainConfig
from src.training.online import OnlineSettings
from src.training.reward_model import RMConfig
from src.training.records import GAMES
from src.training.validation import ValidationConfig


def train_config(**changes) -> TrainConfig:
    """params.yaml's train section at the tests' budget: no validation episodes, plain
    float32 REINFORCE at lr 1e-4 (tests assert what one such step does), and ``changes``."""
    return defaults(TrainConfig, "train", **{
        "max_records_per_game": 24, "lr": 1e-4, "baseline": "none", "mixed_precision": "no",
        "validation": defaults(ValidationConfig, "train.validation", episodes=0), **changes})


def online_settings(**changes) -> OnlineSettings:
    """params.yaml's sections that train-online reads besides its own, and ``changes``."""
    return OnlineSettings(**{"games": defaults(GamesConfig, "games"),
                             "rm": defaults(RMConfig, "rm"),
                             "cluster": defaults(ClusterConfig, "cluster"),
                             "aggregation": defaults(AggregationConfig, "build"),
                             "limits": defaults(Limits, "limits"),
                             "dtype": "float32", **changes})


def make_record(game: str = "twenty_questions", episode: int = 0, action: str = "Is it alive?",
                reward: float = 0.5, raw_reward: float = 0.5, won: bool = False,
                context: str = "Ask your first question.", turn: int = 1) -> dict:
    return {
        "episode_id": f"{game}-{episode:06d}", "game": game, "player": "agent", "turn": turn,
        "position": 2 * (turn - 1), "valid": True, "key_size": 1,
        "messages": [{"role": "system", "content": f"You play {game.replace('_', ' ')}."},
                     {"role": "user", "content": context}],
        "action": action, "reward": reward, "raw_reward": raw_reward,
        "episode_reward": float(won), "won": won,
    }


def records_by_game(per_game: int = 6) -> dict[str, list[dict]]:
    """Every game, ``per_game`` records each, with varied lengths and rewards; odd episodes won."""
    return {game: [make_record(game, i, action="Is it " + "very " * (i % 3) + "big?",
                               reward=(i + 1) / (per_game + 1), raw_reward=(i % 2) * 0.9,
                               won=bool(i % 2), context="Your move. " * (1 + i % 4))
                   for i in range(per_game)]
            for game in GAMES}
