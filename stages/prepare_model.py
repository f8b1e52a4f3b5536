"""prepare-model: the configured base model as a plain HF folder in models/base (the
miniature: its tokenizer and weights made from the scripted-play corpus)."""
from src.config import load_section, run_main
from src.io_utils import write_json
from src.paths import BASE_MODEL, CORPUS, PREPARE_MODEL_METRICS
from src.policy.miniature import MiniatureConfig, read_corpus
from src.policy.models import MINIATURE, ModelConfig, prepare_model


def main() -> None:
    cfg = load_section("model", ModelConfig)
    miniature = corpus = None
    if cfg.source == MINIATURE:
        miniature, corpus = load_section("miniature", MiniatureConfig), read_corpus(CORPUS)
    write_json(PREPARE_MODEL_METRICS, prepare_model(cfg, BASE_MODEL, miniature, corpus))


if __name__ == "__main__":
    run_main(main)
