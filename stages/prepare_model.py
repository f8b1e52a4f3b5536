"""prepare-model: the configured base model as a plain HF folder in models/base."""
from src.config import load_section, run_main
from src.io_utils import write_json
from src.policy.models import ModelConfig, prepare_model


def main() -> None:
    cfg = load_section("model", ModelConfig)
    write_json("metrics/prepare_model.json", prepare_model(cfg, "models/base"))


if __name__ == "__main__":
    run_main(main)
