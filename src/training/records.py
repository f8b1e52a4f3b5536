"""Training records (``data/records/<game>.jsonl``) and the per-variant REINFORCE weights.

A record is one action instance: the exact chat the player saw, its action text (and the
tokens it sampled, ``action_ids``, null for imported episodes), and the rewards the build stage
attached (docs/method.md §8, §9): ``reward`` and ``raw_reward`` always, and one optional
``reward_<rule>`` per further grouping rule (``reward_true``, ``reward_exact``,
``reward_similarity``; docs/method.md §8.1), absent from records built without that rule.
Reading goes through :func:`validate_record`, so a malformed line fails with file, line and
field instead of training on garbage.
"""
from __future__ import annotations

import math
import random
from pathlib import Path

from src.game_names import GAME_NAMES
from src.io_utils import InputError, check_token_ids, read_jsonl, require

GAMES = GAME_NAMES
VARIANTS = ("aria", "raw", "bc", "true_intention", "exact", "similarity")
# variant -> the record field holding its weights (bc: 1 on won episodes); the optional fields
# are written by build's grouping rule of the same name (build.grouping)
VARIANT_FIELDS = {"aria": "reward", "raw": "raw_reward", "true_intention": "reward_true",
                  "exact": "reward_exact", "similarity": "reward_similarity"}
REQUIRED_REWARDS = ("reward", "raw_reward")


class NothingToLearn(InputError):
    """The selected records give every action a zero weight: training would change nothing."""


def validate_record(row: dict, where: str) -> None:
    for field in ("episode_id", "game", "player", "action"):
        require(row, field, str, where)
    require(row, "turn", int, where)
    require(row, "won", bool, where)
    if not isinstance(row.get("truncated", False), bool):
        raise InputError(f"{where}: field 'truncated' should be true or false")
    check_token_ids(row, where)
    messages = require(row, "messages", list, where)
    for i, message in enumerate(messages):
        if not (isinstance(message, dict) and isinstance(message.get("role"), str)
                and isinstance(message.get("content"), str)):
            raise InputError(f"{where}: field 'messages[{i}]' should be "
                             "{role: str, content: str}")
    optional = [f for f in row if f.startswith("reward_") and row[f] is not None]
    for field in (*REQUIRED_REWARDS, *optional):  # reward_<rule>: only where build ran the rule
        value = require(row, field, float, where)
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise InputError(f"{where}: field '{field}' should be a number in [0, 1], got {value}")


def read_records(game: str, records_dir: Path | str) -> list[dict]:
    """``records_dir``/<game>.jsonl, validated (``records_dir``: one training seed's folder)."""
    return read_jsonl(Path(records_dir) / f"{game}.jsonl", validate_record)


def sample_records(records: list[dict], limit: int | None, seed: int) -> list[dict]:
    """At most ``limit`` records, drawn with a fixed seed and kept in file order."""
    if limit is None or len(records) <= limit:
        return list(records)
    keep = sorted(random.Random(seed).sample(range(len(records)), limit))
    return [records[i] for i in keep]


def variant_weights(records: list[dict], variant: str) -> tuple[list[dict], list[float]]:
    """The records a variant trains on and their weights w (docs/method.md §9).

    aria: w = aggregated reward; raw: w = discounted episode reward; bc: w = 1 on records of
    won episodes only (the others are dropped, not weighted 0, so they cost no compute);
    true_intention: w = the reward aggregated by the moves' recorded true intentions instead of
    clusters (the miniature's upper bound on what clustering can give); exact, similarity: w =
    the reward aggregated by identical or similar history and action text (docs/method.md
    §8.1).
    """
    if variant in VARIANT_FIELDS:
        field = VARIANT_FIELDS[variant]
        missing = sum(r.get(field) is None for r in records)
        if missing:
            reason = f"built without the grouping rule '{variant}'" + (
                " or from rollouts without recorded intentions" if variant == "true_intention"
                else "")
            raise InputError(f"variant {variant}: {missing} of {len(records)} records have no "
                             f"'{field}' ({reason})")
        return list(records), [float(r[field]) for r in records]
    if variant == "bc":
        won = [r for r in records if r["won"]]
        return won, [1.0] * len(won)
    raise ValueError(f"unknown variant '{variant}'; expected one of {VARIANTS}")


def check_learnable(weights: list[float], variant: str, baseline: str) -> None:
    """Refuse a run whose every effective weight is zero, with the reason in the message."""
    if not weights:
        reason = "no records from won episodes" if variant == "bc" else "no records"
        raise NothingToLearn(f"nothing to learn for variant '{variant}': {reason}")
    if all(w == 0 for w in weights):
        raise NothingToLearn(f"nothing to learn for variant '{variant}': every weight is 0")
    if baseline == "batch_mean" and len(set(weights)) == 1:
        raise NothingToLearn(f"nothing to learn for variant '{variant}': every weight is "
                             f"{weights[0]}, so subtracting the batch mean leaves 0")
