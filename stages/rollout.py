"""rollout: self-play episodes of one game with the base policy -> data/rollouts/<game>.jsonl."""
import argparse

from src.config import load_section, run_main
from src.games import GamesConfig, game_class
from src.io_utils import write_json, write_jsonl
from src.models import ModelConfig
from src.policy import Policy
from src.rollout import RolloutConfig, self_play


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--game", required=True)
    args = parser.parse_args()
    try:
        game_class(args.game)
    except ValueError as exc:
        parser.exit(2, f"error: {exc}\n")
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("rollout", RolloutConfig)
    policy = Policy.load("models/base", model_cfg.dtype, model_cfg.device, name="base")
    records, metrics = self_play(args.game, games_cfg, policy, cfg)
    write_jsonl(f"data/rollouts/{args.game}.jsonl", records)
    write_json(f"metrics/rollout/{args.game}.json", metrics)


if __name__ == "__main__":
    run_main(main)
