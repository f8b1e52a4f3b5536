"""select-k: the number of intentions per game and role (SplitScore, silhouette or fixed), for
one training seed's rollouts."""
from src.intention.aggregation import AggregationConfig
from src.paths import runs_from_args
from src.config import load_section, run_main
from src.io_utils import write_json
from src.intention.select_k import SelectKConfig, select_k


def main() -> None:
    runs = runs_from_args(__doc__)
    cfg = load_section("select_k", SelectKConfig)
    aggregation = load_section("build", AggregationConfig)
    for paths in runs:
        metrics = select_k(cfg, aggregation, paths.game, paths.rollouts, paths.cluster_dir,
                           paths.plot_dir("select_k"), paths.plot_png("select_k"))
        write_json(paths.chosen_k, metrics)


if __name__ == "__main__":
    run_main(main)
