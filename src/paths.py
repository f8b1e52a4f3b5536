"""Where the stages read and write: every path a stage script or training run uses, in one place.

dvc.yaml declares the same paths (tests/test_dvc_declarations.py checks that each stage's outs
and metrics are the ones written here); keeping them together keeps the stages in agreement.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from src.game_names import GAME_NAMES

BASE_MODEL = "models/base"  # a str: recorded in adapters as their base, so it stays relative
OFFLINE_POLICIES = Path("models/policies")  # <variant>: train-offline's adapters
RM_MODEL = Path("models/rm")
ROLLOUTS = Path("data/rollouts")  # <game>.jsonl
CHOSEN_K = Path("metrics/select_k")  # <game>.json
METRICS = Path("metrics")  # the report reads every stage's metrics from here
REPORTS = Path("reports")
PREPARE_MODEL_METRICS = METRICS / "prepare_model.json"
TRAIN_RM_METRICS = METRICS / "train_rm.json"
TRAIN_RM_LOCK = Path("checkpoints/train_rm.lock")  # train-rm keeps no checkpoints; its lock sits with the others
BASE_VALIDATION = METRICS / "validation" / "base.json"  # validate-base: every variant's step-0 point
PARAMS_CHECK = METRICS / "params_check.json"  # check-params: sections checked, game seed ranges


@dataclass(frozen=True)
class GameArtifacts:
    game: str

    @property
    def rollouts(self) -> Path:
        return ROLLOUTS / f"{self.game}.jsonl"

    @property
    def rollout_metrics(self) -> Path:
        return METRICS / "rollout" / f"{self.game}.json"

    @property
    def cluster_dir(self) -> Path:
        return Path(f"data/cluster/{self.game}")

    @property
    def cluster_metrics(self) -> Path:
        return METRICS / "cluster" / f"{self.game}.json"

    @property
    def chosen_k(self) -> Path:
        return CHOSEN_K / f"{self.game}.json"

    @property
    def labels(self) -> Path:
        return Path(f"data/labels/{self.game}.json")

    @property
    def records(self) -> Path:
        return Path(f"data/records/{self.game}.jsonl")

    @property
    def build_metrics(self) -> Path:
        return METRICS / "build" / f"{self.game}.json"

    @property
    def grad_variance_metrics(self) -> Path:
        return METRICS / "grad_variance" / f"{self.game}.json"

    @property
    def eval_records(self) -> Path:
        return Path(f"data/eval/{self.game}.jsonl")

    @property
    def eval_metrics(self) -> Path:
        return METRICS / "eval" / f"{self.game}.json"

    def plot_dir(self, stage: str) -> Path:
        return Path(f"plots/{stage}/{self.game}")

    def plot_png(self, stage: str) -> Path:
        return Path(f"plots/{stage}/{self.game}.png")


@dataclass
class RunPaths:
    """train-offline's run; the defaults are the aria variant's (see :meth:`for_variant`)."""
    base: str = BASE_MODEL
    output: Path = OFFLINE_POLICIES / "aria"
    checkpoints: Path = Path("checkpoints/train_offline/aria")
    live: Path = Path("dvclive/train_offline/aria")
    curves: Path = Path("plots/learning_curves/aria")  # validation reward per step (csv per metric)
    metrics: Path | None = None  # written before the checkpoints are removed

    @classmethod
    def for_variant(cls, variant: str) -> "RunPaths":
        return cls(output=OFFLINE_POLICIES / variant,
                   checkpoints=Path("checkpoints/train_offline") / variant,
                   live=Path("dvclive/train_offline") / variant,
                   curves=Path("plots/learning_curves") / variant,
                   metrics=METRICS / "train_offline" / f"{variant}.json")


@dataclass
class OnlinePaths:
    """train-online's inputs and run; :meth:`for_stage` adds the metrics file."""
    start: Path = OFFLINE_POLICIES / "aria"  # the aria-offline adapter
    rm: Path = RM_MODEL
    rollouts: Path = ROLLOUTS  # <game>.jsonl: the offline data the RM retrains on
    chosen_k: Path = CHOSEN_K  # <game>.json: k per role for re-aggregation
    output: Path = Path("models/online/policy")
    checkpoints: Path = Path("checkpoints/train_online")
    live: Path = Path("dvclive/train_online")
    metrics: Path | None = None  # written before the checkpoints go
    base: str = BASE_MODEL  # the base model every adapter loaded here must sit on

    @classmethod
    def for_stage(cls) -> "OnlinePaths":
        return cls(metrics=METRICS / "train_online.json")

    @property
    def episodes_file(self) -> Path:
        return self.checkpoints / "episodes.jsonl"

    def retrained_rm(self, iteration: int) -> Path:
        return self.checkpoints / f"rm-{iteration:07d}"


def game_from_args(description: str | None) -> GameArtifacts:
    """Parse ``--game``; an unknown name exits with the list of known games."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--game", required=True, help=", ".join(GAME_NAMES))
    game = parser.parse_args().game
    if game not in GAME_NAMES:
        parser.exit(2, f"error: unknown game '{game}'; known games: {', '.join(GAME_NAMES)}\n")
    return GameArtifacts(game)
