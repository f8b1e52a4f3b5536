"""Evaluation of a later ARIA iteration (src/rollout/iterations.py, docs/method.md §14): its aria
policy plays the episodes iteration 1's aria played, and is compared with it episode by episode."""
from __future__ import annotations

import dataclasses

from src.evaluation.evaluate import EvaluateConfig, comparison
from src.paths import iteration_policy
from src.rollout.iterations import FIRST, iteration_name


def iteration_evaluation(cfg: EvaluateConfig, seed: int, iteration: int) -> EvaluateConfig:
    """The evaluate section for ``iteration`` (>= 2): its aria policy alone, named ``aria`` so it
    plays exactly the episodes (and draws the sampling seeds) iteration 1's aria played; base
    and iteration 1's policies are evaluated by the evaluate stage already."""
    return dataclasses.replace(cfg, policies={"aria": str(iteration_policy(seed, iteration))},
                               comparisons=[])


def with_first_iteration(metrics: dict, records: list[dict], first_records: list[dict],
                         iteration: int) -> dict:
    """``iteration``'s evaluation metrics plus the paired comparison of its aria policy with
    iteration 1's (the same seeds and seats, from iteration 1's episode records)."""
    name, first = iteration_name(iteration), iteration_name(FIRST)

    def relabel(rows: list[dict], as_name: str) -> list[dict]:
        return [{**r, "evaluation": {**r["evaluation"], "policy": as_name}} for r in rows
                if r["evaluation"]["policy"] == "aria"]

    paired = relabel(records, name) + relabel(first_records, first)
    return {**metrics, "iteration": iteration,
            "comparisons": [comparison(paired, name, first, metrics["seed"])]}
