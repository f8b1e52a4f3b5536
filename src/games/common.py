"""Mechanics and prompt helpers shared by the four games.

The observation contract: :meth:`TextGame.step` computes ``observation()`` for the player to move
*before* applying its text and stores it in that player's :class:`Turn` (``messages``), so a
rollout record holds exactly the chat the policy was conditioned on.

Prompts are short on purpose (a 135M policy on CPU pays for every prompt token): a system
message with the rules, the private information and one reply example; one user message with
a compact line per earlier move and, last, what to do now.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING

from src.games.base import Game, Turn

if TYPE_CHECKING:
    from src.games import GamesConfig

HISTORY_WORDS = 12  # free text quoted in a history line is cut to this many words


class TextGame(Game):
    """A game whose players act through free text; counts invalid moves per player."""

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: "GamesConfig", oracle=None) -> "TextGame":
        """A game configured by its section of ``GamesConfig`` (``oracle``: shared, optional)."""

    def on_start(self) -> None:
        self.invalid = dict.fromkeys(self.players, 0)
        self.log: list[str] = []  # one compact line per earlier move, shown to the players

    def step(self, text: str) -> None:
        if self.done:
            return
        player, messages = self.to_move, self.observation()
        self.play(player, text, messages)

    @abstractmethod
    def play(self, player: str, text: str, messages: list[dict]) -> None:
        """Apply ``player``'s text; ``messages`` is the observation it acted on."""

    def add_turn(self, player: str, text: str, move: dict, messages: list[dict],
                 valid: bool = True) -> None:
        self.turns.append(Turn(player, text, valid, move, messages))
        if not valid:
            self.invalid[player] += 1

    def finish(self, outcome: dict, rewards: dict[str, float]) -> None:
        self.done = True
        self.outcome = {**outcome, "invalid": dict(self.invalid)}
        self.rewards = rewards

    def chat(self, system: str, now: str) -> list[dict]:
        return [{"role": "system", "content": system},
                {"role": "user", "content": "\n".join([*self.log, now])}]


def rival(player: str) -> str:
    return "bob" if player == "alice" else "alice"


def money(x: float) -> str:
    return f"${x:,.0f}" if float(x).is_integer() else f"${x:,.2f}"


def loss_percent(delta: float) -> str:
    """The per-round loss stated to players: (1 - δ)·100 %, never δ itself (SPEC 3.1)."""
    return f"{round((1 - delta) * 100, 2):g}%"


def clip_words(text: str, n: int = HISTORY_WORDS) -> str:
    words = text.split()
    return " ".join(words[:n]) + (" ..." if len(words) > n else "")


def relative_rewards(payoffs: dict[str, float]) -> dict[str, float]:
    """1 for the higher payoff, 0.5 each when equal (no deal included), 0 for the lower."""
    (a, pa), (b, pb) = payoffs.items()
    if math.isclose(pa, pb, rel_tol=1e-9, abs_tol=1e-9):
        return {a: 0.5, b: 0.5}
    return {a: float(pa > pb), b: float(pb > pa)}
