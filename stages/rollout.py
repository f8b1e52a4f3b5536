"""rollout: self-play episodes of every game with the base policy, training seed s's own
episodes -> data/rollouts/s<seed>/<game>.jsonl (one process per seed: the model loads once)."""
from src import distributed
from src.engines import Generation
from src.paths import BASE_MODEL, GameArtifacts, runs_from_args
from src.config import load_section, run_main
from src.games import GamesConfig
from src.io_utils import InputError, write_json, write_jsonl
from src.limits import Limits
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig, seeded_rollout, self_play


def main() -> None:
    runs = runs_from_args(__doc__)
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    cfg = seeded_rollout(load_section("rollout", RolloutConfig), runs[0].seed)
    limits = load_section("limits", Limits)
    policy = Generation(cfg.engine, BASE_MODEL, model_cfg.dtype, model_cfg.device).policy(
        BASE_MODEL, "base")
    for artifacts in runs:
        play_game(artifacts, games_cfg, policy, cfg, limits)


def play_game(artifacts: GameArtifacts, games_cfg: GamesConfig, policy, cfg: RolloutConfig,
              limits: Limits) -> None:
    game = artifacts.game
    records, metrics = self_play(game, games_cfg, policy, cfg, limits)  # episodes shared by the processes
    if not distributed.is_main():
        return
    if not records:
        raise InputError(f"rollout {game}: every episode is over the size limits "
                         f"(params.yaml limits): {metrics['episodes_left_out']}")
    metrics["processes"] = distributed.world()
    write_jsonl(artifacts.rollouts, records)
    write_json(artifacts.rollout_metrics, metrics)


if __name__ == "__main__":
    run_main(main)
