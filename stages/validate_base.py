"""validate-base: the base model's validation point, which is every train-offline variant's
step-0 point (each starts as the base) -> metrics/validation/base.json."""
from src.config import load_section, run_main
from src.engines import Generation
from src.games import GamesConfig
from src.io_utils import write_json
from src.paths import BASE_MODEL, BASE_VALIDATION
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig
from src.training.offline import TrainConfig
from src.training.validation import base_validation_point


def main() -> None:
    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("train", TrainConfig)
    generation = Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                            model_cfg.dtype, model_cfg.device)
    write_json(BASE_VALIDATION, base_validation_point(
        generation, cfg.games, load_section("games", GamesConfig), cfg.validation))


if __name__ == "__main__":
    run_main(main)
