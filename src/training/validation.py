"""Learning curves on held-out play (docs/method.md §13): the policy being trained plays a small
fixed set of validation episodes at regular steps, so a user sees whether (and how fast) each
variant improves, and learning rate and steps are chosen on these seeds, never on evaluation's.

Validation seeds start at 2 000 000, disjoint from rollout (0..), online (500 000..) and
evaluation (1 000 000..). Two-player games are played against the base model in both seats;
with a LoRA policy the base is the same network with its adapter switched off, so no second
copy of the weights is loaded.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from src.engines import Generation, playing
from src.evaluation.evaluate import play_matches, won
from src.games import GamesConfig
from src.policy.policy import Policy
from src.policy.sampling import SamplingConfig


@dataclass
class ValidationConfig:
    episodes: int  # per game and validation point (two-player: half the setups x both seats); 0 = off
    every: int  # optimizer steps between validation points (also at the start and the end)
    seed: int  # first validation seed
    sampling: SamplingConfig

    def validate(self) -> str | None:
        if self.episodes < 0 or self.episodes % 2 or self.every < 1:
            return "need an even episodes >= 0 (two-player games play both seats) and every >= 1"
        return None


class AdapterOff:
    """The base model behind a LoRA policy: generates with the adapter disabled."""

    def __init__(self, policy: Policy):
        self.policy, self.name, self.stats = policy, "base", policy.stats

    def generate(self, *args, **kwargs):
        with self.policy.model.disable_adapter():
            return self.policy.generate(*args, **kwargs)


def validation_point(model, tokenizer, games: list[str], games_cfg: GamesConfig,
                     cfg: ValidationConfig, step: int, base: Policy | None = None,
                     generation: Generation | None = None) -> dict:
    """Mean own reward (and main rate) per game of ``model`` on the validation episodes.
    ``base``: the opponent for a model without a LoRA adapter (full fine-tuning);
    ``generation``: the engine that plays (default: the model in memory)."""
    with playing(model, tokenizer, "current", generation) as policy:
        if generation is not None and generation.serves:
            opponent = generation.base_policy()
        else:
            opponent = base or AdapterOff(policy)
        return played_point(policy, opponent, games, games_cfg, cfg, step)


def played_point(policy, opponent, games: list[str], games_cfg: GamesConfig,
                 cfg: ValidationConfig, step: int) -> dict:
    """One validation point: ``policy`` plays every game's validation episodes."""
    point = {"step": step}
    records = play_matches(games, games_cfg, {"current": policy}, opponent, cfg.episodes,
                           cfg.seed, cfg.sampling, desc=f"validate @ step {step}",
                           sharded=False)  # all games in one lock-step loop
    for game in games:
        mine = [r for r in records if r["game"] == game]
        point[f"{game}_reward"] = round(statistics.fmean(
            r["rewards"][r["evaluation"]["seat"]] for r in mine), 4)
        point[f"{game}_rate"] = round(statistics.fmean(map(won, mine)), 4)
    point["mean_reward"] = round(statistics.fmean(point[f"{g}_reward"] for g in games), 4)
    return point


def base_validation_point(generation: Generation, games: list[str], games_cfg: GamesConfig,
                          cfg: ValidationConfig) -> dict:
    """The step-0 point of every train-offline variant, played once: each variant starts as the
    base model (LoRA's B starts at 0; full fine-tuning starts from the base weights). The
    opponent is a second policy on the same weights, batched apart from the player as the
    adapter-off opponent is during training, so the point equals the one each variant would
    play. Empty when validation is off."""
    if cfg.episodes == 0:
        return {}
    return played_point(*generation.base_pair(), games, games_cfg, cfg, step=0)


__all__ = ["AdapterOff", "ValidationConfig", "base_validation_point", "validation_point"]
