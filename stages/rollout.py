"""rollout: self-play episodes of one game with the base policy -> data/rollouts/<game>.jsonl."""
from src import distributed
from src.paths import game_from_args
from src.config import load_section, run_main
from src.games import GamesConfig
from src.io_utils import InputError, write_json, write_jsonl
from src.limits import Limits
from src.policy.models import ModelConfig
from src.policy.policy import Policy
from src.rollout.play import RolloutConfig, self_play


def main() -> None:
    game = game_from_args(__doc__).game
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("rollout", RolloutConfig)
    limits = load_section("limits", Limits)
    policy = Policy.load("models/base", model_cfg.dtype, model_cfg.device, name="base")
    records, metrics = self_play(game, games_cfg, policy, cfg, limits)  # episodes shared by the processes
    if not distributed.is_main():
        return
    if not records:
        raise InputError(f"rollout {game}: every episode is over the size limits "
                         f"(params.yaml limits): {metrics['episodes_left_out']}")
    metrics["processes"] = distributed.world()
    write_jsonl(f"data/rollouts/{game}.jsonl", records)
    write_json(f"metrics/rollout/{game}.json", metrics)


if __name__ == "__main__":
    run_main(main)
