"""Valid rollouts (docs/method.md §5) without a model: small phrase pools, so texts repeat and
paraphrases form real clusters, and rewards that depend on the phrasing, so aggregation has
signal."""
from __future__ import annotations

import json
import random
from pathlib import Path

TWO_PLAYER_GAMES = ("bargaining", "negotiation")
SINGLE_AGENT_GAMES = ("twenty_questions", "guess_my_city")

ALICE_LINES = {
    "tough": ["I propose Alice gets 80 and Bob gets 20.", "My offer: Alice 80, Bob 20.",
              "Alice gets 75, Bob gets 25. Take it."],
    "fair": ["Let's split it evenly, 50 each.", "A fair split: 50 for me, 50 for you.",
             "Fifty-fifty sounds right to me."],
    "weak": ["I will take 30 and you take 70.", "Alice gets 30, Bob gets 70."],
}
BOB_LINES = {
    "accept": ["I accept your offer.", "Deal, I accept.", "Accepted."],
    "reject": ["I reject this offer.", "No, I reject.", "That does not work for me, rejected."],
}
QUESTIONS = {
    "broad": ["Is it an animal?", "Is it alive?", "Is it a living thing?"],
    "object": ["Is it made of metal?", "Is it used in the kitchen?", "Is it electronic?"],
    "guess": ["Is it a cat?", "Is it a spoon?", "Is it a laptop?"],
}
CITY_ANSWERS = ["It is in Europe.", "My city is in Asia.", "The city is on the coast.",
                "It is not a capital.", "Its climate is warm."]
ANSWERS = [("Yes.", "yes"), ("No.", "no"), ("I don't know.", "unknown")]


def chat(system: str, history: list[str]) -> list[dict]:
    return [{"role": "system", "content": system},
            {"role": "user", "content": "\n".join(history) or "Begin."}]


def two_player_episode(game: str, index: int, rng: random.Random) -> dict:
    turns, history = [], []
    style = rng.choice(list(ALICE_LINES))
    for _ in range(rng.randint(1, 3)):
        text = rng.choice(ALICE_LINES[style])
        turns.append({"speaker": "alice", "text": text, "valid": rng.random() > 0.1,
                      "move": None, "messages": chat("You are Alice.", history)})
        history.append(f"Alice: {text}")
        answer = rng.choice(list(BOB_LINES))
        text = rng.choice(BOB_LINES[answer])
        turns.append({"speaker": "bob", "text": text, "valid": True, "move": None,
                      "messages": chat("You are Bob.", history)})
        history.append(f"Bob: {text}")
        if answer == "accept":
            break
    alice = {"tough": 1.0, "fair": 0.5, "weak": 0.0}[style] if answer == "accept" else 0.5
    return episode(game, index, turns, {"alice": alice, "bob": 1.0 - alice})


def single_agent_episode(game: str, index: int, rng: random.Random) -> dict:
    turns, history = [], []
    n = rng.randint(1, 4)
    solved = False
    for t in range(n):
        kind = "guess" if t == n - 1 else rng.choice(["broad", "object"])
        text = rng.choice(QUESTIONS[kind])
        turns.append({"speaker": "agent", "text": text, "valid": True, "move": None,
                      "messages": chat("Guess the hidden thing.", history)})
        history.append(f"Q: {text}")
        solved = kind == "guess" and rng.random() < 0.4
        if game == "twenty_questions":
            answer, cls = ANSWERS[0] if solved else rng.choice(ANSWERS)
            turns.append({"speaker": "env", "text": answer, "valid": True, "move": {"answer": cls}})
        else:
            answer = "Yes, that is my city." if solved else rng.choice(CITY_ANSWERS)
            turns.append({"speaker": "env", "text": answer, "valid": True, "move": None})
        history.append(f"A: {answer}")
    return episode(game, index, turns, {"agent": 1.0 if solved else 0.0})


def episode(game: str, index: int, turns: list[dict], rewards: dict) -> dict:
    return {"episode_id": f"{game}-{index:06d}", "game": game, "seed": index, "setup": {},
            "turns": turns, "outcome": {}, "rewards": rewards,
            "policy": {"models": {"all": "synthetic"}}}


def synthetic_rollouts(game: str, episodes: int = 60, seed: int = 0) -> list[dict]:
    rng = random.Random(f"{game}-{seed}")
    make = two_player_episode if game in TWO_PLAYER_GAMES else single_agent_episode
    return [make(game, i, rng) for i in range(episodes)]


def write_rollouts(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
