"""Import the original ARIA release's rollout files into our rollout format (docs/method.md §5).

Original two-player episodes (bargaining, negotiation) carry ``alice_actions``,
``bob_actions``, ``alice_reward``, ``bob_reward``, ``player_1_system_prompt`` (Alice) and
``player_2_system_prompt`` (Bob), optionally ``alice_ids`` / ``bob_ids`` (each action's
position in the dialogue; without them the players alternate, Alice first). Single-agent
episodes (twenty_questions, guess_my_city) carry ``actions``, ``obs`` (the oracle's answer
after each action) and ``reward``: LMRL-Gym's -1 per unsolved question and 0 on the solving
one, either per step (a list: solved if any is 0) or for the episode (a number: solved if 0).
Embedding fields are dropped; the other fields become the episode's ``setup``.

Approximation: the release does not store the chat each action was generated from, so
``messages`` is rebuilt as a multi-turn chat: a system message (the player's system prompt;
for single-agent games a short statement of the game), then the dialogue so far with the
player's own earlier utterances as ``assistant`` and everyone else's as ``user`` messages.
Twenty Questions answers get their class from the answer's first word (yes / no / anything
else = unknown; the original substring test read "I don't know" as "no").
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

from src.game_names import GAME_NAMES
from src.io_utils import InputError, decode_utf8, require
from src.limits import Limits, episode_problem
from src.rollout.format import validate_rollout
from src.intention.utterances import FIXED_ANSWER_GAMES

TWO_PLAYER = {"bargaining", "negotiation"}
GAMES = sorted(GAME_NAMES)
SINGLE_AGENT_SYSTEM = {
    "twenty_questions": "Let's play Twenty Questions. I am thinking of an object. Ask one yes/no "
                        "question per turn, in the form 'Question: <your question>', until you "
                        "name the object.",
    "guess_my_city": "Let's play Guess My City. I am thinking of a city. Ask one question per "
                     "turn, in the form 'Question: <your question>', until you name the city.",
}
CONSUMED = {"alice_actions", "bob_actions", "alice_reward", "bob_reward", "alice_ids", "bob_ids",
            "player_1_system_prompt", "player_2_system_prompt", "actions", "obs", "reward"}
OUTCOME_FIELDS = ("alice_gain", "bob_gain")


def read_original(path: Path) -> Iterator[tuple[dict, str]]:
    """(episode, "file:line") pairs from a JSON list of episodes or a JSON-lines file."""
    text = decode_utf8(path.read_bytes(), path)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("["):  # a JSON list (a JSON-lines file holds objects)
            raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}"
                             + ("; the file ends inside the list: cut short?)"
                                if exc.pos >= len(text.rstrip()) else ")")) from None
        whole = None
    items = list_items(text) if isinstance(whole, list) else jsonl_items(text, path)
    for row, lineno in items:
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        yield row, where


def list_items(text: str) -> Iterator[tuple[object, int]]:
    """Elements of a valid JSON array with the line each starts on."""
    decoder = json.JSONDecoder()
    whitespace = re.compile(r"[ \t\r\n]*")
    i = whitespace.match(text, text.index("[") + 1).end()
    line, counted = 1, 0
    while text[i] != "]":
        item, end = decoder.raw_decode(text, i)
        line, counted = line + text.count("\n", counted, i), i
        yield item, line
        i = whitespace.match(text, end).end()
        if text[i] == ",":
            i = whitespace.match(text, i + 1).end()


def jsonl_items(text: str, path: Path) -> Iterator[tuple[object, int]]:
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield json.loads(line), lineno
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def strings(row: dict, field: str, where: str) -> list[str]:
    values = require(row, field, list, where)
    for i, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{where}: field '{field}[{i}]' should be str, got {type(value).__name__}")
    return values


def chat_history(system: str, turns: list[dict], me: str) -> list[dict]:
    return [{"role": "system", "content": system.strip()}] + [
        {"role": "assistant" if t["speaker"] == me else "user", "content": t["text"]} for t in turns]


def dialogue_order(row: dict, n_alice: int, n_bob: int, where: str) -> list[str]:
    """Speaker of each position, from alice_ids / bob_ids or by alternation (Alice first)."""
    if "alice_ids" in row or "bob_ids" in row:
        ids = {"alice": require(row, "alice_ids", list, where), "bob": require(row, "bob_ids", list, where)}
        for name, n in (("alice", n_alice), ("bob", n_bob)):
            if len(ids[name]) != n:
                raise InputError(f"{where}: field '{name}_ids' has {len(ids[name])} entries for "
                                 f"{n} {name}_actions")
        positions = sorted((p, s) for s, values in ids.items() for p in values)
        if [p for p, _ in positions] != list(range(n_alice + n_bob)):
            raise InputError(f"{where}: fields 'alice_ids'/'bob_ids' should number the "
                             f"positions 0..{n_alice + n_bob - 1} once each")
        return [s for _, s in positions]
    if not 0 <= n_alice - n_bob <= 1:
        raise InputError(f"{where}: field 'bob_actions' has {n_bob} entries for {n_alice} "
                         f"alice_actions; without alice_ids/bob_ids they must alternate")
    return ["alice", "bob"] * n_bob + ["alice"] * (n_alice - n_bob)


def reward_in_unit(row: dict, field: str, where: str) -> float:
    value = require(row, field, float, where)
    if not 0 <= value <= 1:
        raise InputError(f"{where}: field '{field}' should be in [0, 1], got {value}")
    return float(value)


def two_player_episode(row: dict, where: str) -> tuple[list[dict], dict, dict]:
    texts = {"alice": strings(row, "alice_actions", where), "bob": strings(row, "bob_actions", where)}
    systems = {"alice": require(row, "player_1_system_prompt", str, where),
               "bob": require(row, "player_2_system_prompt", str, where)}
    rewards = {p: reward_in_unit(row, f"{p}_reward", where) for p in ("alice", "bob")}
    turns: list[dict] = []
    next_index = {"alice": 0, "bob": 0}
    for speaker in dialogue_order(row, len(texts["alice"]), len(texts["bob"]), where):
        text = texts[speaker][next_index[speaker]]
        next_index[speaker] += 1
        turns.append({"speaker": speaker, "text": text, "valid": True, "move": None,
                      "messages": chat_history(systems[speaker], turns, speaker)})
    outcome = {f: row[f] for f in OUTCOME_FIELDS if f in row}
    return turns, rewards, outcome


def solved_from(row: dict, where: str) -> bool:
    reward = row.get("reward")
    steps = reward if isinstance(reward, list) else [require(row, "reward", float, where)]
    if not steps or any(isinstance(r, bool) or r not in (-1, 0) for r in steps):
        raise InputError(f"{where}: field 'reward' should be -1 or 0 (or a list of them), got {reward!r}")
    return 0 in steps


def answer_class(text: str) -> str:
    first = re.match(r"\W*(\w+)", text.lower())
    word = first.group(1) if first else ""
    return word if word in ("yes", "no") else "unknown"


def single_agent_episode(game: str, row: dict, where: str) -> tuple[list[dict], dict, dict]:
    actions, observations = strings(row, "actions", where), strings(row, "obs", where)
    if len(observations) > len(actions):
        raise InputError(f"{where}: field 'obs' has {len(observations)} entries for "
                         f"{len(actions)} actions")
    solved = solved_from(row, where)
    turns: list[dict] = []
    for i, action in enumerate(actions):
        turns.append({"speaker": "agent", "text": action, "valid": True, "move": None,
                      "messages": chat_history(SINGLE_AGENT_SYSTEM[game], turns, "agent")})
        if i < len(observations):
            move = {"answer": answer_class(observations[i])} if game in FIXED_ANSWER_GAMES else None
            turns.append({"speaker": "env", "text": observations[i], "valid": True, "move": move})
    return turns, {"agent": 1.0 if solved else 0.0}, {"solved": solved}


def convert(game: str, row: dict, where: str, episode_id: str, source: str) -> dict:
    if game in TWO_PLAYER:
        turns, rewards, outcome = two_player_episode(row, where)
    else:
        turns, rewards, outcome = single_agent_episode(game, row, where)
    setup = {k: v for k, v in row.items()
             if k not in CONSUMED and k not in OUTCOME_FIELDS and "embedding" not in k}
    episode = {"episode_id": episode_id, "game": game, "seed": None, "setup": setup,
               "turns": turns, "outcome": outcome, "rewards": rewards,
               "policy": {"model": "original ARIA release", "source": source}}
    validate_rollout(episode, where)
    return episode


def import_original(game: str, paths: list[Path], limits: Limits | None = None,
                    left_out: dict[str, int] | None = None) -> Iterator[dict]:
    """Our rollout records, in file order; the first bad episode stops with file:line: field.
    With ``limits``, an episode with an over-long utterance or prompt is left out and counted
    by reason in ``left_out`` (src.limits)."""
    if game not in GAMES:
        raise InputError(f"unknown game '{game}'; expected one of {GAMES}")
    n = 0
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: not found")
        for row, where in read_original(path):
            episode = convert(game, row, where, f"{game}-orig-{n:06d}", path.name)
            n += 1
            reason = episode_problem(episode, limits) if limits is not None else None
            if reason:
                if left_out is not None:
                    left_out[reason] = left_out.get(reason, 0) + 1
                continue
            yield episode
    if n == 0:
        raise InputError(f"no episodes in {', '.join(map(str, paths))}")


def import_metrics(episodes: list[dict], left_out: dict[str, int], files: list[Path]) -> dict:
    """What ``metrics/rollout/<game>.json`` says after an import: the imported episodes (not
    the self-play run the file described before)."""
    players = sorted({p for e in episodes for p in e["rewards"]})
    turns = [t for e in episodes for t in e["turns"] if t["speaker"] != "env"]
    metrics = {
        "source": "import_original", "files": [str(f) for f in files],
        "episodes": len(episodes), "episodes_left_out": left_out,
        "mean_reward": {p: round(sum(e["rewards"][p] for e in episodes) / len(episodes), 4)
                        for p in players},
        "invalid_move_rate": round(sum(not t["valid"] for t in turns) / max(1, len(turns)), 4),
        "mean_policy_turns": round(len(turns) / max(1, len(episodes)), 3),
    }
    if episodes and all("solved" in e["outcome"] for e in episodes):
        metrics["solve_rate"] = round(sum(bool(e["outcome"]["solved"]) for e in episodes)
                                      / len(episodes), 4)
    return metrics
