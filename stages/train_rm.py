"""train-rm: one pointwise reward model over every game's records of one training seed (the
first, --seed) -> models/rm/."""
import argparse

from src import distributed
from src.config import load_section, run_main
from src.io_utils import run_lock, write_json
from src.limits import Limits, records_within_limits
from src.paths import BASE_MODEL, RECORDS, RM_MODEL, TRAIN_RM_LOCK, TRAIN_RM_METRICS, seed_dir
from src.policy.models import ModelConfig, load_tokenizer
from src.training.records import read_records
from src.training.reward_model import RMConfig, fit_and_evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", required=True, type=int, help="training seed whose records train it")
    seed = parser.parse_args().seed
    with run_lock(TRAIN_RM_LOCK, "train-rm"):
        train(seed)


def train(seed: int) -> None:
    model_cfg = load_section("model", ModelConfig)
    cfg = load_section("rm", RMConfig)
    limits = load_section("limits", Limits)
    tokenizer = load_tokenizer(BASE_MODEL)
    records, left_out = [], {}
    for game in cfg.games:
        kept, left_out[game] = records_within_limits(read_records(game, RECORDS / seed_dir(seed)),
                                                     limits, tokenizer)
        records += kept
    rm, metrics = fit_and_evaluate(records, cfg, dtype=model_cfg.dtype, device=model_cfg.device)
    metrics["records_left_out"] = left_out
    if distributed.is_main():  # trained data-parallel under accelerate launch; main writes
        rm.save(RM_MODEL)
        write_json(TRAIN_RM_METRICS, metrics)


if __name__ == "__main__":
    run_main(main)
