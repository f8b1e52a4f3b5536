"""iterate-rollout: ARIA iteration i >= 2 (src/rollout/iterations.py): iteration i-1's aria
policy of training seed s plays every game on iteration i's own game seeds
-> data/rollouts/i<i>/s<seed>/<game>.jsonl (the rollout stage's play and files otherwise)."""
from src.config import ConfigError, load_section, run_main
from src.engines import Generation
from src.games import GamesConfig
from src.limits import Limits
from src.paths import BASE_MODEL, iteration_policy, runs_from_args
from src.policy.models import ModelConfig
from src.rollout.iterations import IterateConfig, iteration_rollout
from src.rollout.play import RolloutConfig
from stages.rollout import play_game


def main() -> None:
    runs = runs_from_args(__doc__)
    seed, iteration = runs[0].seed, runs[0].iteration
    if iteration < 2:
        raise ConfigError(f"--iteration {iteration}: iteration 1 is the rollout stage's")
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    cfg = iteration_rollout(load_section("rollout", RolloutConfig),
                            load_section("iterate", IterateConfig), iteration, seed)
    limits = load_section("limits", Limits)
    policy = Generation(cfg.engine, BASE_MODEL, model_cfg.dtype, model_cfg.device).policy(
        str(iteration_policy(seed, iteration - 1)), "aria")
    for artifacts in runs:
        play_game(artifacts, games_cfg, policy, cfg, limits)


if __name__ == "__main__":
    run_main(main)
