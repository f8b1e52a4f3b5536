"""The rollout record (docs/method.md §5): one episode per line of ``data/rollouts/<game>.jsonl``.

Every reader validates each line with :func:`validate_rollout` (the intention stages through
``src.intention.utterances.read_game_rollouts``, which adds the checks aggregation relies on)
and fails with file, line and field, so nothing downstream sees a malformed episode.
``action_ids`` are the tokens the policy sampled (before its end-of-turn token), so training
scores exactly those; imported episodes have text only and are tokenised from it.

    {"episode_id": "bargaining-000017", "game": "bargaining", "seed": 17,
     "setup": {...game parameters and hidden target...},
     "turns": [{"speaker": "alice", "text": "...", "valid": true, "move": {...},
                "messages": [{"role": "system", "content": "..."}, ...],   # policy turns only
                "truncated": true,          # optional: the reply was cut at max_new_tokens
                "action_ids": [9707, ...],  # optional, generated policy turns: sampled tokens
                "intention": "offer:high"},  # optional, policy turns a game played: the move's
                                             # true intention (src.games; diagnostics only)
               {"speaker": "env", "text": "Yes.", "valid": true, "move": {"answer": "yes"}}],
     "outcome": {...deal, split/price, round, payoffs, solved...},
     "rewards": {"alice": 1.0, "bob": 0.0},          # per player, in [0, 1]
     "policy": {"models": {"alice": "models/base", "bob": "models/base"},   # seat -> policy
                "sampling": {...}}}       # imported episodes: {"model": ..., "source": ...}
"""
from __future__ import annotations

from pathlib import Path

from src.io_utils import InputError, check_token_ids, read_jsonl, require

SPEAKERS = {"alice", "bob", "agent", "env"}
POLICY_SPEAKERS = SPEAKERS - {"env"}


def validate_rollout(row: dict, where: str) -> None:
    require(row, "episode_id", str, where)
    require(row, "game", str, where)
    if "seed" not in row or not (row["seed"] is None or isinstance(row["seed"], int)):
        raise InputError(f"{where}: field 'seed' should be int or null")
    require(row, "setup", dict, where)
    require(row, "outcome", dict, where)
    require(row, "policy", dict, where)
    rewards = require(row, "rewards", dict, where)
    for player, value in rewards.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise InputError(f"{where}: field 'rewards.{player}' should be a number in [0, 1]")
    turns = require(row, "turns", list, where)
    for i, turn in enumerate(turns):
        tw = f"{where}: turns[{i}]"
        if not isinstance(turn, dict):
            raise InputError(f"{tw}: expected an object")
        speaker = require(turn, "speaker", str, tw)
        if speaker not in SPEAKERS:
            raise InputError(f"{tw}: field 'speaker' is '{speaker}', expected one of {sorted(SPEAKERS)}")
        require(turn, "text", str, tw)
        require(turn, "valid", bool, tw)
        if not isinstance(turn.get("truncated", False), bool):
            raise InputError(f"{tw}: field 'truncated' should be true or false")
        check_token_ids(turn, tw)
        if not isinstance(turn.get("intention", ""), str):
            raise InputError(f"{tw}: field 'intention' should be a string")
        if speaker in POLICY_SPEAKERS:
            if speaker not in rewards:
                raise InputError(f"{tw}: speaker '{speaker}' has no entry in 'rewards'")
            messages = require(turn, "messages", list, tw)
            for j, m in enumerate(messages):
                mw = f"{tw}.messages[{j}]"
                if not isinstance(m, dict):
                    raise InputError(f"{mw}: expected an object")
                require(m, "role", str, mw)
                require(m, "content", str, mw)


def read_rollouts(path: Path | str) -> list[dict]:
    return read_jsonl(path, validate_rollout)
