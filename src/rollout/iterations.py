"""ARIA iterations (docs/method.md §14): iterative offline RL after the first round.

Iteration 1 is the chain rollout -> ... -> train-offline (its ``aria`` policy). Iteration i >= 2
plays its own rollouts with iteration i-1's aria policy of the same training seed, re-embeds
and re-clusters them, selects k, labels, builds records, and continues training that policy
on the new records: the adapter of iteration i-1 is the starting point of iteration i (the
paper's iterative offline RL improves the current policy round after round; a fresh LoRA on
the base model would throw the earlier rounds away). Every iteration's policy plays the same
evaluation episodes as iteration 1, so the report pairs them by training seed.

The ``iterate`` section of params.yaml lists the iterations after the first, each with the
iteration whose policy it plays (DVC's templating does no arithmetic: the entry carries both
numbers, and the check here insists that ``previous`` is ``iteration - 1`` and that the
iterations run 2, 3, ... without a gap). Iteration i, training seed s, episode j plays game seed
``seed + (i - 2) * seed_stride + s * episodes + j``: disjoint from every other iteration and
seed (src/config.py checks every range against every other stage's).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from src.rollout.play import RolloutConfig, seeded_rollout

FIRST = 1  # the train-offline chain


@dataclass
class IterationEntry:
    iteration: int  # 2, 3, ...: the iteration's number (its run folder is i<iteration>/s<seed>)
    previous: int  # the iteration whose aria policy it plays and continues training (iteration - 1)


@dataclass
class IterateConfig:
    iterations: list[IterationEntry]  # after iteration 1, in order; [] = iteration 1 only
    episodes: int  # rollout episodes per game, iteration and training seed
    seed: int  # first game seed of iteration 2's rollouts
    seed_stride: int  # game seeds per iteration (every training seed's episodes fit in it)

    def validate(self) -> str | None:
        numbers = [entry.iteration for entry in self.iterations]
        if numbers != list(range(FIRST + 1, FIRST + 1 + len(numbers))):
            return f"iterations must number 2, 3, ... in order without a gap; got {numbers}"
        wrong = [e.iteration for e in self.iterations if e.previous != e.iteration - 1]
        if wrong:
            return (f"iterations: iteration {wrong[0]} must play iteration {wrong[0] - 1}'s policy "
                    f"(previous: {wrong[0] - 1})")
        if self.episodes < 1 or self.seed_stride < 1:
            return "episodes and seed_stride must be >= 1"
        return None


def iteration_rollout(cfg: RolloutConfig, iterate: IterateConfig, iteration: int,
                      train_seed: int) -> RolloutConfig:
    """The rollout settings of ``iteration`` (>= 2) and ``train_seed``: the rollout section's
    sampling and engine, the iterate section's episodes and game seeds."""
    first = first_seed(iterate.seed, iterate.seed_stride, iteration)
    return seeded_rollout(dataclasses.replace(cfg, episodes=iterate.episodes, seed=first),
                          train_seed)


def first_seed(seed: int, stride: int, iteration: int) -> int:
    """The first game seed of ``iteration``'s rollouts (training seed 0)."""
    return seed + (iteration - FIRST - 1) * stride



def iteration_name(iteration: int) -> str:
    """The name of ``iteration``'s aria policy in the evaluation files and the report."""
    return f"aria@{iteration}"
