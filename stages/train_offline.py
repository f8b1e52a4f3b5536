"""train-offline: one multi-game policy per variant and training seed
-> models/policies/s<seed>/<variant>/ (a LoRA adapter on models/base, or a full model)."""
import argparse

from src.config import ConfigError, load_section, run_main
from src.engines import Generation
from src.io_utils import lock_file, read_json, run_lock
from src.games import GamesConfig
from src.limits import Limits
from src.paths import BASE_MODEL, BASE_VALIDATION, RECORDS, RunPaths, seed_dir
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig
from src.training.offline import TrainConfig, train_offline
from src.training.records import VARIANTS, read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--seed", required=True, type=int, help="training seed (train.seeds)")
    args = parser.parse_args()
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: training seeds are >= 0")
    with run_lock(lock_file(RunPaths.for_variant(args.variant, args.seed).checkpoints),
                  f"train-offline --variant {args.variant} --seed {args.seed}"):
        train(args.variant, args.seed)


def train(variant: str, seed: int) -> None:
    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("train", TrainConfig)
    limits = load_section("limits", Limits)
    records_by_game = {game: read_records(game, RECORDS / seed_dir(seed)) for game in cfg.games}
    # writes metrics/train_offline/s<seed>/<variant>.json on the main process, then removes its checkpoints
    train_offline(records_by_game, variant, cfg, model_cfg.dtype, limits=limits,
                  games_cfg=load_section("games", GamesConfig),
                  start_point=read_json(BASE_VALIDATION) or None,  # validate-base's step-0 point
                  generation=Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                                        model_cfg.dtype, model_cfg.device),
                  seed=seed)


if __name__ == "__main__":
    run_main(main)
