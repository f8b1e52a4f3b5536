"""evaluate: every policy on one game's fixed evaluation episodes -> metrics/eval/<game>.json
(rates with 95 % Wilson intervals) and the episodes in data/eval/<game>.jsonl."""
import argparse

from src.config import load_section, run_main
from src.evaluate import EvaluateConfig, evaluate_game
from src.games import GamesConfig, game_class
from src.io_utils import write_json, write_jsonl
from src.models import ModelConfig


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
    cfg = load_section("evaluate", EvaluateConfig)
    records, metrics = evaluate_game(args.game, games_cfg, cfg, model_cfg.dtype, model_cfg.device)
    write_jsonl(f"data/eval/{args.game}.jsonl", records)
    write_json(f"metrics/eval/{args.game}.json", metrics)


if __name__ == "__main__":
    run_main(main)
