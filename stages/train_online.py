"""train-online: online REINFORCE from the aria-offline adapter of one training seed (--seed, the
first) with RM-scored self-play -> models/online/policy (learning curve in dvclive/train_online)."""
import argparse

from src.intention.aggregation import AggregationConfig
from src.intention.clustering import ClusterConfig
from src.config import load_section, run_main
from src.engines import Generation
from src.games import GamesConfig
from src.io_utils import lock_file, run_lock
from src.limits import Limits
from src.policy.models import ModelConfig
from src.paths import BASE_MODEL, OnlinePaths
from src.rollout.play import RolloutConfig
from src.training.online import OnlineConfig, OnlineSettings, train_online
from src.training.reward_model import RMConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", required=True, type=int,
                        help="training seed whose aria policy and data it starts from")
    paths = OnlinePaths.for_stage(parser.parse_args().seed)
    with run_lock(lock_file(paths.checkpoints), "train-online"):
        train(paths)


def train(paths: OnlinePaths) -> None:
    model_cfg = load_section("model", ModelConfig)
    settings = OnlineSettings(games=load_section("games", GamesConfig),
                              cluster=load_section("cluster", ClusterConfig),
                              aggregation=load_section("build", AggregationConfig),
                              rm=load_section("rm", RMConfig),
                              limits=load_section("limits", Limits),
                              dtype=model_cfg.dtype)
    # writes metrics/train_online.json on the main process, then removes its checkpoints
    train_online(load_section("online", OnlineConfig), settings, paths,
                 generation=Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                                       model_cfg.dtype, model_cfg.device))


if __name__ == "__main__":
    run_main(main)
