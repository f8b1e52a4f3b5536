"""The whole of params.yaml against every section's dataclass, on every ``dvc repro``.

DVC tracks only the params that stages declare, and a stage checks its own section only when
it runs: a misspelled key beside the right one (``cluster.linkge`` next to ``linkage``) or a
misspelled extra section (``evalute:``) would never be seen. The check-params stage
(``always_changed`` in dvc.yaml) loads every section here, so ``dvc repro`` fails on such a
file in one line naming the file and the key; its output, the sections checked and the game
seed ranges, is deterministic and no other stage depends on it, so nothing reruns after it.
"""
from __future__ import annotations

from pathlib import Path

from src.config import (PARAMS_FILE, SECTIONS, ConfigError, check_params, read_params,
                        seed_ranges, to_config)
from src.evaluation.evaluate import EvaluateConfig
from src.evaluation.report import ReportConfig
from src.games import GamesConfig
from src.intention.aggregation import AggregationConfig
from src.intention.clustering import ClusterConfig
from src.intention.select_k import SelectKConfig
from src.rollout.iterations import IterateConfig
from src.launch import LaunchConfig
from src.limits import Limits
from src.policy.miniature import MiniatureConfig
from src.policy.models import ModelConfig
from src.rollout.play import RolloutConfig
from src.training.dpo import DpoConfig
from src.training.grad_variance import GradVarianceConfig
from src.training.offline import TrainConfig
from src.training.online import OnlineConfig
from src.training.reward_model import RMConfig

# Each section of params.yaml -> the dataclass its stages load it into.
SCHEMAS: dict[str, type] = {
    "model": ModelConfig, "miniature": MiniatureConfig, "launch": LaunchConfig, "games": GamesConfig, "rollout": RolloutConfig,
    "cluster": ClusterConfig, "select_k": SelectKConfig, "build": AggregationConfig,
    "train": TrainConfig, "grad_variance": GradVarianceConfig, "rm": RMConfig,
    "online": OnlineConfig, "evaluate": EvaluateConfig, "report": ReportConfig, "limits": Limits,
    "dpo": DpoConfig, "iterate": IterateConfig,
}


def check_all_params(path: Path | str = PARAMS_FILE) -> dict:
    """Every section of ``path`` loaded into its dataclass (an unknown, missing or mistyped key
    or a value out of range -> ConfigError naming the file and key); the sections checked and
    the game-seed ranges, for the stage's output."""
    check_params(path)  # known sections, finite numbers, seeds
    data = read_params(path)
    for section in SECTIONS:
        if section not in data:
            raise ConfigError(f"{path}: missing section '{section}'")
        to_config(SCHEMAS[section], data[section], f"{path}: {section}")
    return {"sections": list(SECTIONS),
            "seed_ranges": {name: [first, end] for name, first, end in seed_ranges(data)}}
