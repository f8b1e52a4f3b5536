"""corpus: scripted play of every game -> data/miniature/corpus.jsonl, the text the miniature
policy is pretrained on (each policy move: the chat the player saw, its reply and the intention
the reply was rendered from), and a summary of what it teaches in metrics/corpus.json."""
import torch

from src.config import load_section, run_main
from src.games import GamesConfig
from src.games.scripted import scripted_corpus
from src.io_utils import write_json, write_jsonl
from src.paths import CORPUS, CORPUS_METRICS
from src.policy.miniature import MiniatureConfig, corpus_summary


def main() -> None:
    torch.set_num_threads(1)
    games_cfg = load_section("games", GamesConfig)
    cfg = load_section("miniature", MiniatureConfig)
    rows = scripted_corpus(games_cfg, list(games_cfg.names), cfg.episodes_per_game, cfg.seed)
    write_jsonl(CORPUS, rows)
    write_json(CORPUS_METRICS, {"episodes_per_game": cfg.episodes_per_game, "rows": len(rows),
                                "games": corpus_summary(rows)})


if __name__ == "__main__":
    run_main(main)
