"""validate-base: the base model's validation point, which is every train-offline variant's
step-0 point (each starts as the base) -> metrics/validation/base.json."""
from src.config import load_section, run_main
from src.games import GamesConfig
from src.io_utils import write_json
from src.paths import BASE_MODEL, BASE_VALIDATION
from src.policy.models import ModelConfig
from src.training.offline import TrainConfig
from src.training.validation import base_validation_point


def main() -> None:
    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("train", TrainConfig)
    write_json(BASE_VALIDATION, base_validation_point(
        BASE_MODEL, cfg.games, load_section("games", GamesConfig), cfg.validation, model_cfg.dtype))


if __name__ == "__main__":
    run_main(main)
