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
OFFLINE_POLICIES = Path("models/policies")  # s<seed>/<variant>: train-offline's adapters
CORPUS = Path("data/miniature/corpus.jsonl")  # scripted play the miniature policy is pretrained on
CORPUS_METRICS = Path("metrics/corpus.json")
RM_MODEL = Path("models/rm")
ROLLOUTS = Path("data/rollouts")  # s<seed>/<game>.jsonl
RECORDS = Path("data/records")  # s<seed>/<game>.jsonl
CHOSEN_K = Path("metrics/select_k")  # s<seed>/<game>.json
METRICS = Path("metrics")  # the report reads every stage's metrics from here
REPORTS = Path("reports")
PREPARE_MODEL_METRICS = METRICS / "prepare_model.json"
TRAIN_RM_METRICS = METRICS / "train_rm.json"
TRAIN_RM_LOCK = Path("checkpoints/train_rm.lock")  # train-rm keeps no checkpoints; its lock sits with the others
BASE_VALIDATION = METRICS / "validation" / "base.json"  # validate-base: every variant's step-0 point
PARAMS_CHECK = METRICS / "params_check.json"  # check-params: sections checked, game seed ranges


def seed_dir(seed: int) -> str:
    """The folder of one training seed's artifacts under each kind (``data/records/s3/``)."""
    return f"s{seed}"


def run_dir(seed: int, iteration: int = 1) -> str:
    """The run folder of one training seed in one ARIA iteration (src/rollout/iterations.py): iteration
    1 is the train-offline chain's ``s<seed>``; iteration i >= 2 is ``i<i>/s<seed>``
    (``data/rollouts/i2/s0/``), beside it, so no stage of iteration 1 sees it."""
    if iteration < 1:
        raise ValueError(f"iteration {iteration}: iterations start at 1")
    return seed_dir(seed) if iteration == 1 else f"i{iteration}/{seed_dir(seed)}"


def iteration_policy(seed: int, iteration: int) -> Path:
    """Where iteration ``iteration``'s aria policy of ``seed`` lies for the next iteration:
    ``models/policies/i<i>/s<seed>/aria`` (iteration 1's is a copy of train-offline's
    ``models/policies/s<seed>/aria``, made by the iterate-start stage)."""
    return OFFLINE_POLICIES / f"i{iteration}" / seed_dir(seed) / "aria"


@dataclass(frozen=True)
class GameArtifacts:
    """One game's artifacts of one training seed (seed s draws its own rollouts and every
    artifact made from them); grad-variance, which reads the first seed's records, is per game."""
    game: str
    seed: int = 0
    iteration: int = 1  # ARIA iteration: 1 = the train-offline chain (src/rollout/iterations.py)

    @property
    def run(self) -> str:
        return run_dir(self.seed, self.iteration)

    @property
    def rollouts(self) -> Path:
        return ROLLOUTS / self.run / f"{self.game}.jsonl"

    @property
    def rollout_metrics(self) -> Path:
        return METRICS / "rollout" / self.run / f"{self.game}.json"

    @property
    def cluster_dir(self) -> Path:
        return Path("data/cluster") / self.run / self.game

    @property
    def cluster_metrics(self) -> Path:
        return METRICS / "cluster" / self.run / f"{self.game}.json"

    @property
    def chosen_k(self) -> Path:
        return CHOSEN_K / self.run / f"{self.game}.json"

    @property
    def labels(self) -> Path:
        return Path("data/labels") / self.run / f"{self.game}.json"

    @property
    def records(self) -> Path:
        return RECORDS / self.run / f"{self.game}.jsonl"

    @property
    def build_metrics(self) -> Path:
        return METRICS / "build" / self.run / f"{self.game}.json"

    @property
    def grad_variance_metrics(self) -> Path:
        return METRICS / "grad_variance" / f"{self.game}.json"

    @property
    def eval_records(self) -> Path:
        return Path("data/eval") / self.run / f"{self.game}.jsonl"

    @property
    def eval_metrics(self) -> Path:
        return METRICS / "eval" / self.run / f"{self.game}.json"

    def plot_dir(self, stage: str) -> Path:
        return Path("plots") / stage / self.run / self.game

    def plot_png(self, stage: str) -> Path:
        return Path("plots") / stage / self.run / f"{self.game}.png"


@dataclass
class RunPaths:
    """train-offline's run; the defaults are the aria variant's (see :meth:`for_variant`)."""
    base: str = BASE_MODEL
    output: Path = OFFLINE_POLICIES / "s0" / "aria"
    checkpoints: Path = Path("checkpoints/train_offline/s0/aria")
    live: Path = Path("dvclive/train_offline/s0/aria")
    curves: Path = Path("plots/learning_curves/s0/aria")  # validation reward per step (csv per metric)
    metrics: Path | None = None  # written before the checkpoints are removed
    start: Path | None = None  # an adapter (or model) to continue training; None: a fresh LoRA on base

    @classmethod
    def for_variant(cls, variant: str, seed: int, iteration: int = 1) -> "RunPaths":
        """Iteration 1: train-offline's run; iteration i >= 2: aria's run of that iteration,
        starting from iteration i-1's policy (src/rollout/iterations.py)."""
        run = Path(run_dir(seed, iteration)) / variant
        return cls(output=OFFLINE_POLICIES / run, checkpoints=Path("checkpoints/train_offline") / run,
                   live=Path("dvclive/train_offline") / run,
                   curves=Path("plots/learning_curves") / run,
                   metrics=METRICS / "train_offline" / run_dir(seed, iteration) / f"{variant}.json",
                   start=iteration_policy(seed, iteration - 1) if iteration > 1 else None)


@dataclass(frozen=True)
class DpoPaths:
    """train-dpo's run of one kind (step | trajectory) and training seed: an adapter evaluate
    loads as the variant ``dpo_<kind>``."""
    kind: str
    seed: int

    @property
    def variant(self) -> str:
        return f"dpo_{self.kind}"

    @property
    def output(self) -> Path:
        return OFFLINE_POLICIES / seed_dir(self.seed) / self.variant

    @property
    def work(self) -> Path:  # the trainer's scratch folder (nothing is kept there)
        return Path("checkpoints/train_dpo") / seed_dir(self.seed) / self.kind

    @property
    def metrics(self) -> Path:
        return METRICS / "train_dpo" / seed_dir(self.seed) / f"{self.kind}.json"


def policy_folder(variant: str, seed: int) -> str:
    """Where evaluation finds a variant trained with ``seed`` (``base``: the base model)."""
    return BASE_MODEL if variant == "base" else str(OFFLINE_POLICIES / seed_dir(seed) / variant)


@dataclass
class OnlinePaths:
    """train-online's inputs and run; :meth:`for_stage` adds the metrics file."""
    start: Path = OFFLINE_POLICIES / "s0" / "aria"  # the aria-offline adapter of the first seed
    rm: Path = RM_MODEL
    rollouts: Path = ROLLOUTS / "s0"  # <game>.jsonl: the offline data the RM retrains on
    chosen_k: Path = CHOSEN_K / "s0"  # <game>.json: k per role for re-aggregation
    output: Path = Path("models/online/policy")
    checkpoints: Path = Path("checkpoints/train_online")
    live: Path = Path("dvclive/train_online")
    metrics: Path | None = None  # written before the checkpoints go
    base: str = BASE_MODEL  # the base model every adapter loaded here must sit on

    @classmethod
    def for_stage(cls, seed: int) -> "OnlinePaths":
        """The stage's run on training seed ``seed``'s data and aria policy."""
        run = seed_dir(seed)
        return cls(start=OFFLINE_POLICIES / run / "aria", rollouts=ROLLOUTS / run,
                   chosen_k=CHOSEN_K / run, metrics=METRICS / "train_online.json")

    @property
    def episodes_file(self) -> Path:
        return self.checkpoints / "episodes.jsonl"

    def retrained_rm(self, iteration: int) -> Path:
        return self.checkpoints / f"rm-{iteration:07d}"


def runs_from_args(description: str | None) -> list[GameArtifacts]:
    """Parse ``--seed`` (the training seed), ``--game`` (default: every game, in order) and
    ``--iteration`` (default 1): the (game, seed, iteration) artifacts a per-seed stage makes,
    one process for all games of a seed. An unknown game exits with the list of known games."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seed", required=True, type=int, help="training seed (train.seeds)")
    parser.add_argument("--game", help=f"one game ({', '.join(GAME_NAMES)}); default: all")
    parser.add_argument("--iteration", type=int, default=1,
                        help="ARIA iteration (iterate.iterations); default 1, the first")
    args = parser.parse_args()
    if args.game is not None and args.game not in GAME_NAMES:
        parser.exit(2, f"error: unknown game '{args.game}'; known games: {', '.join(GAME_NAMES)}\n")
    if args.seed < 0:
        parser.exit(2, f"error: --seed {args.seed}: training seeds are >= 0\n")
    if args.iteration < 1:
        parser.exit(2, f"error: --iteration {args.iteration}: iterations start at 1\n")
    return [GameArtifacts(game, args.seed, args.iteration) for game in ([args.game] if args.game else GAME_NAMES)]
