"""build: training records with aggregated, raw and true-intention rewards and one reward per
grouping rule of build.grouping (docs/method.md §8.1), variance metrics, grouping diagnostics
and each rule's keys, each game of one training seed."""
from src.intention.aggregation import AggregationConfig
from src.paths import runs_from_args
from src.intention.records import build_game
from src.config import load_section, run_main
from src.io_utils import write_json
from src.limits import Limits


def main() -> None:
    runs = runs_from_args(__doc__)
    cfg = load_section("build", AggregationConfig)
    limits = load_section("limits", Limits)
    for paths in runs:
        metrics = build_game(cfg, paths.game, paths.rollouts, paths.labels, paths.records, limits)
        write_json(paths.build_metrics, metrics)


if __name__ == "__main__":
    run_main(main)
