"""train-dpo: a step-wise or trajectory-wise DPO baseline per training seed (docs/method.md §9.1)
-> models/policies/s<seed>/dpo_<kind>/ (a LoRA adapter on models/base, loaded by evaluate like
the other variants) and metrics/train_dpo/s<seed>/<kind>.json."""
import argparse

import torch

from src.config import ConfigError, load_section, run_main
from src.intention.aggregation import AggregationConfig
from src.io_utils import lock_file, run_lock, write_json
from src.limits import Limits
from src.paths import BASE_MODEL, DpoPaths, GameArtifacts, RECORDS, seed_dir
from src.policy.models import ModelConfig
from src.training.dpo import KINDS, DpoConfig, state_keys, train_dpo
from src.training.offline import TrainConfig, apply_limits
from src.training.records import NothingToLearn, read_records
from src.training.reinforce import build_trainable_model
from src.training.runs import export_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--seed", required=True, type=int, help="training seed (train.seeds)")
    args = parser.parse_args()
    if args.seed < 0:
        raise ConfigError(f"--seed {args.seed}: training seeds are >= 0")
    torch.set_num_threads(1)  # one thread per process: the seeds' runs go side by side
    paths = DpoPaths(args.kind, args.seed)
    with run_lock(lock_file(paths.work), f"train-dpo --kind {args.kind} --seed {args.seed}"):
        train(paths)


def train(paths: DpoPaths) -> None:
    model_cfg = load_section("model", ModelConfig)
    train_cfg = load_section("train", TrainConfig)
    cfg = load_section("dpo", DpoConfig)
    window = load_section("build", AggregationConfig).history_window
    records_by_game = {game: read_records(game, RECORDS / seed_dir(paths.seed))
                       for game in train_cfg.games}
    records_by_game, left_out = apply_limits(records_by_game, load_section("limits", Limits),
                                             BASE_MODEL)
    states = None
    if paths.kind == "step":
        states = {}
        for game in train_cfg.games:
            run = GameArtifacts(game, paths.seed)
            states[game] = state_keys(game, run.rollouts, run.labels, window)
    try:
        metrics = train_dpo(records_by_game, paths.kind, cfg, train_cfg.lora, BASE_MODEL,
                            paths.output, paths.work, paths.seed, model_cfg.dtype, states)
    except NothingToLearn as reason:  # as train-offline: train.if_nothing_to_learn decides
        if train_cfg.if_nothing_to_learn == "fail":
            raise
        metrics = keep_untrained(paths, train_cfg, model_cfg.dtype, str(reason))
    write_json(paths.metrics, {**metrics, "records_left_out": left_out})


def keep_untrained(paths: DpoPaths, train_cfg: TrainConfig, dtype: str, reason: str) -> dict:
    """No preference pair: the freshly initialised adapter (LoRA B = 0: the base model), so
    evaluation and the report run and say why."""
    import sys

    print(f"warning: {reason}; writing the untrained policy (= base model) to {paths.output}",
          file=sys.stderr)
    model, tokenizer = build_trainable_model(BASE_MODEL, dtype, train_cfg.lora, paths.seed)
    export_adapter(model, tokenizer, paths.output)
    return {"kind": paths.kind, "variant": f"dpo_{paths.kind}", "seed": paths.seed,
            "trained": False, "reason": reason, "pairs": 0, "steps": 0}


if __name__ == "__main__":
    run_main(main)
