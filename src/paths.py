"""Where the intention stages (cluster, select-k, label, build) read and write, per game.

dvc.yaml declares the same paths; keeping them in one place keeps the stages in agreement.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GameArtifacts:
    game: str

    @property
    def rollouts(self) -> Path:
        return Path(f"data/rollouts/{self.game}.jsonl")

    @property
    def cluster_dir(self) -> Path:
        return Path(f"data/cluster/{self.game}")

    @property
    def cluster_metrics(self) -> Path:
        return Path(f"metrics/cluster/{self.game}.json")

    @property
    def chosen_k(self) -> Path:
        return Path(f"metrics/select_k/{self.game}.json")

    @property
    def labels(self) -> Path:
        return Path(f"data/labels/{self.game}.json")

    @property
    def records(self) -> Path:
        return Path(f"data/records/{self.game}.jsonl")

    @property
    def build_metrics(self) -> Path:
        return Path(f"metrics/build/{self.game}.json")

    def plot_dir(self, stage: str) -> Path:
        return Path(f"plots/{stage}/{self.game}")

    def plot_png(self, stage: str) -> Path:
        return Path(f"plots/{stage}/{self.game}.png")


def game_from_args(description: str | None) -> GameArtifacts:
    """Parse ``--game``; an unknown name exits with the list of known games."""
    from src.games import GAME_NAMES

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--game", required=True, help=", ".join(GAME_NAMES))
    game = parser.parse_args().game
    if game not in GAME_NAMES:
        parser.exit(2, f"error: unknown game '{game}'; known games: {', '.join(GAME_NAMES)}\n")
    return GameArtifacts(game)
