"""prepare-model: the configured base model as a plain HF folder in models/base."""
from src.config import load_section, run_main
from src.io_utils import write_json
from src.paths import BASE_MODEL, PREPARE_MODEL_METRICS
from src.policy.models import ModelConfig, prepare_model


def main() -> None:
    cfg = load_section("model", ModelConfig)
    write_json(PREPARE_MODEL_METRICS, prepare_model(cfg, BASE_MODEL))


if __name__ == "__main__":
    run_main(main)
