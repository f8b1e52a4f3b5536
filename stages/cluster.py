"""cluster: embed a game's unique utterances, build one tree, cut it at every k."""
from src.paths import game_from_args
from src.intention.clustering import ClusterConfig, cluster_game
from src.config import load_section, run_main
from src.io_utils import write_json


def main() -> None:
    paths = game_from_args(__doc__)
    cfg = load_section("cluster", ClusterConfig)
    metrics = cluster_game(cfg, paths.game, paths.rollouts, paths.cluster_dir)
    write_json(paths.cluster_metrics, metrics)


if __name__ == "__main__":
    run_main(main)
