"""label: every utterance's intention (cluster id at its role's chosen k), each game of one
training seed."""
from src.paths import runs_from_args
from src.config import run_main
from src.intention.labels import label_game, write_labels


def main() -> None:
    for paths in runs_from_args(__doc__):
        write_labels(paths.labels, label_game(paths.game, paths.rollouts, paths.cluster_dir,
                                              paths.chosen_k))


if __name__ == "__main__":
    run_main(main)
