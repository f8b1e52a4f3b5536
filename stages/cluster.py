"""cluster: embed each game's unique utterances (one training seed's rollouts), build one tree,
cut it at every k."""
from src.paths import runs_from_args
from src.intention.clustering import ClusterConfig, cluster_game
from src.config import load_section, run_main
from src.io_utils import write_json


def main() -> None:
    runs = runs_from_args(__doc__)
    cfg = load_section("cluster", ClusterConfig)
    for paths in runs:
        write_json(paths.cluster_metrics,
                   cluster_game(cfg, paths.game, paths.rollouts, paths.cluster_dir))


if __name__ == "__main__":
    run_main(main)
