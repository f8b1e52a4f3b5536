"""Choose train.lr and the number of steps on validation seeds, never on evaluation's: train one
variant at each learning rate on the records of every game (as train-offline does) and play the
validation episodes (train.validation) along the way.

    python -m scripts.tune_lr --lr 1e-4 3e-4 --out reports/tuning/lr.json   # (as a module: scripts/profile.py would shadow the standard library's profile)

Reads one training seed's records (``--seed``, default the first of train.seeds: run
``dvc repro build@<seed>`` first) and params.yaml; ``--set KEY=VALUE``
overrides a train.* key for the sweep (e.g. ``--set max_records_per_game=96``). The step-0
point (the base model's, the same for every rate) is played once, or read from
``--start-point`` (validate-base's metrics/validation/base.json, when the sweep keeps
train.validation). Writes each rate's validation curve and the best point; the choice is then
written into params.yaml with these figures beside it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from src.config import load_section, run_main, to_config, read_params
from src.games import GamesConfig
from src.engines import Generation
from src.io_utils import read_json, write_json
from src.limits import Limits
from src.paths import BASE_MODEL, RECORDS, RunPaths, seed_dir
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig
from src.training.offline import TrainConfig, train_offline
from src.training.records import read_records
from src.training.validation import base_validation_point


def sweep_config(overrides: list[str], lr: float) -> TrainConfig:
    section = read_params()["train"]
    for item in overrides:
        key, _, value = item.partition("=")
        node = section
        *parents, leaf = key.split(".")
        for parent in parents:
            node = node[parent]
        node[leaf] = yaml.safe_load(value)
    return to_config(TrainConfig, {**section, "lr": lr}, "params.yaml: train (sweep)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lr", type=float, nargs="+", required=True)
    parser.add_argument("--variant", default="aria")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--start-point", type=Path, help="the base model's step-0 validation point")
    parser.add_argument("--seed", type=int, help="training seed whose records it trains on (default: the first)")
    args = parser.parse_args()
    model_cfg = load_section("model", ModelConfig)
    games_cfg = load_section("games", GamesConfig)
    limits = load_section("limits", Limits)
    generation = Generation(load_section("rollout", RolloutConfig).engine, BASE_MODEL,
                            model_cfg.dtype, model_cfg.device)
    results, start_point = [], read_json(args.start_point) if args.start_point else None
    for lr in args.lr:
        cfg = sweep_config(args.overrides, lr)
        if start_point is None:
            start_point = base_validation_point(generation, cfg.games, games_cfg, cfg.validation)
        seed = cfg.seeds[0] if args.seed is None else args.seed
        records = {game: read_records(game, RECORDS / seed_dir(seed)) for game in cfg.games}
        with tempfile.TemporaryDirectory() as tmp:
            paths = RunPaths(output=Path(tmp) / "policy", checkpoints=Path(tmp) / "checkpoints",
                             live=Path(tmp) / "live", curves=Path(tmp) / "curves")
            metrics = train_offline(records, args.variant, cfg, model_cfg.dtype, paths=paths,
                                    limits=limits, games_cfg=games_cfg,
                                    start_point=start_point or None, generation=generation,
                                    seed=seed)
        curve = metrics.get("validation", [])
        best = max(curve, key=lambda p: (p["mean_reward"], -p["step"])) if curve else None
        results.append({"lr": lr, "records": metrics.get("records"), "steps": metrics.get("steps"),
                        "seconds": metrics.get("seconds"), "validation": curve, "best": best})
        print(json.dumps(results[-1]["best"]))
    write_json(args.out, {"variant": args.variant, "overrides": args.overrides,
                          "validation": {"episodes": cfg.validation.episodes,
                                         "seed": cfg.validation.seed},
                          "runs": results})


if __name__ == "__main__":
    run_main(main)
