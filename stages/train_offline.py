"""train-offline: one multi-game policy per variant and training seed
-> models/policies/s<seed>/<variant>/ (a LoRA adapter on models/base, or a full model).
``--iteration i`` (i >= 2, variant aria; src/rollout/iterations.py): continue training iteration i-1's
aria policy on iteration i's records -> models/policies/i<i>/s<seed>/aria/."""
import argparse

from src.config import ConfigError, load_section, run_main
from src.engines import Generation
from src.io_utils import lock_file, read_json, run_lock
from src.games import GamesConfig
from src.limits import Limits
from src.paths import BASE_MODEL, BASE_VALIDATION, RECORDS, RunPaths, run_dir
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig
from src.training.offline import TrainConfig, train_offline
from src.training.records import VARIANTS, read_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", required=True, choices=VARIANTS)
    parser.add_argument("--seed", required=True, type=int, help="training seed (train.seeds)")
    parser.add_argument("--iteration", type=int, default=1,
                        help="ARIA iteration (iterate.iterations; >= 2: variant aria only)")
    args = parser.parse_args()
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: training seeds are >= 0")
    if args.iteration < 1 or (args.iteration > 1 and args.variant != "aria"):
        raise ConfigError(f"--iteration {args.iteration}: iterations start at 1, and later "
                          "iterations train the aria variant only")
    with run_lock(lock_file(RunPaths.for_variant(args.variant, args.seed, args.iteration).checkpoints),
                  f"train-offline --variant {args.variant} --seed {args.seed}"):
        train(args.variant, args.seed, args.iteration)


def start_point(paths: RunPaths, iteration: int, seed: int) -> dict | None:
    """The step-0 validation point: validate-base's (iteration 1), or the previous iteration's
    last point, played by the very policy this run starts from (relabelled step 0)."""
    if iteration == 1:
        return read_json(BASE_VALIDATION) or None
    previous = RunPaths.for_variant("aria", seed, iteration - 1).metrics
    points = (read_json(previous) or {}).get("validation") or [] if previous.exists() else []
    return {**points[-1], "step": 0} if points else None


def train(variant: str, seed: int, iteration: int = 1) -> None:
    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("train", TrainConfig)
    limits = load_section("limits", Limits)
    paths = RunPaths.for_variant(variant, seed, iteration)
    records_by_game = {game: read_records(game, RECORDS / run_dir(seed, iteration))
                       for game in cfg.games}
    # writes metrics/train_offline/<run>/<variant>.json on the main process, then removes its checkpoints
    train_offline(records_by_game, variant, cfg, model_cfg.dtype, paths=paths, limits=limits,
                  games_cfg=load_section("games", GamesConfig),
                  start_point=start_point(paths, iteration, seed),
                  generation=Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                                        model_cfg.dtype, model_cfg.device),
                  seed=seed)


if __name__ == "__main__":
    run_main(main)
