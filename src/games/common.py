"""Mechanics and prompt helpers shared by the four games.

The observation contract: :meth:`TextGame.step` computes ``observation()`` for the player to move
*before* applying its text and stores it in that player's :class:`Turn` (``messages``), so a
rollout record holds exactly the chat the policy was conditioned on.

Prompts are a short multi-turn chat, rendered per viewer from one event history
(:class:`Event`): a system message with the rules and the private information; the viewer's
own earlier moves as ``assistant`` messages, clipped to the parsed move (bargaining,
negotiation: the canonical move text; question games: the first question, at most
``HISTORY_WORDS`` words); everything else (the rival's moves, the oracle's answers, the game's
announcements and the instructions the viewer was given) as ``user`` messages, consecutive
ones merged so roles alternate. The chat always ends with a user message saying what to do
now, with a reply example (in the history only the brief form of each instruction is kept).
An invalid move has no parsed form, so it is shown to everyone, its author included, as the
game's note on it (a user message), never as the raw text. A 135M policy copies a transcript
pasted into one message; as a chat it answers.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from src.games.base import Game, Turn

if TYPE_CHECKING:
    from src.games import GamesConfig

HISTORY_WORDS = 12  # an own question shown back to its author is cut to this many words
INVALID = "invalid"  # the true intention of every invalid move, in every game


@dataclass(frozen=True)
class Event:
    """One entry of the shared history, rendered per viewer by :meth:`TextGame.chat`."""

    text: str  # a user message for every viewer, except ``by`` when ``own`` is set
    by: str | None = None  # the player who made this move
    own: str | None = None  # ``by``'s view of its own move (assistant); None: ``text`` as user
    to: str | None = None  # private: only this player sees ``text``


class TextGame(Game):
    """A game whose players act through free text; counts invalid moves per player."""

    @classmethod
    @abstractmethod
    def from_config(cls, cfg: "GamesConfig", oracle=None) -> "TextGame":
        """A game configured by its section of ``GamesConfig`` (``oracle``: shared, optional)."""

    def on_start(self) -> None:
        self.invalid = dict.fromkeys(self.players, 0)
        self.events: list[Event] = []  # the history every observation is rendered from

    @abstractmethod
    def system_prompt(self) -> str:
        """Rules, private information and reply format for ``to_move``."""

    @abstractmethod
    def now_prompt(self, brief: bool = False) -> str:
        """What ``to_move`` must do now (the chat's last user message); ``brief``: the form kept
        in the player's history once it has moved (no reply example, fewer prompt tokens)."""

    def observation(self) -> list[dict]:
        return self.chat(self.system_prompt(), self.now_prompt())

    def step(self, text: str) -> None:
        if self.done:
            return
        player, now = self.to_move, self.now_prompt()
        messages = self.chat(self.system_prompt(), now)
        self.events.append(Event(self.now_prompt(brief=True), to=player))  # kept in its history
        first_new = len(self.turns)
        self.play(player, text, messages)
        # A generated reply (src.policy.Reply) knows whether it was cut and its sampled tokens;
        # plain text knows neither.
        self.turns[first_new].truncated = bool(getattr(text, "truncated", False))
        self.turns[first_new].action_ids = getattr(text, "action_ids", None)

    def note(self, text: str, by: str | None = None, own: str | None = None) -> None:
        """Record an event: a move ``by`` a player (``own``: its assistant form) or an announcement."""
        self.events.append(Event(text, by, own))

    @abstractmethod
    def play(self, player: str, text: str, messages: list[dict]) -> None:
        """Apply ``player``'s text; ``messages`` is the observation it acted on."""

    def add_turn(self, player: str, text: str, move: dict, messages: list[dict],
                 valid: bool = True, intention: str | None = None) -> None:
        """A policy turn; ``intention``: the valid move's label (an invalid one is ``INVALID``)."""
        self.turns.append(Turn(player, text, valid, move, messages,
                               intention=intention if valid else INVALID))
        if not valid:
            self.invalid[player] += 1

    def finish(self, outcome: dict, rewards: dict[str, float]) -> None:
        self.done = True
        self.outcome = {**outcome, "invalid": dict(self.invalid)}
        self.rewards = rewards

    def chat(self, system: str, now: str, viewer: str | None = None) -> list[dict]:
        """The history as ``viewer``'s (default ``to_move``) chat, ending with the user message ``now``."""
        viewer = viewer or self.to_move
        messages = [{"role": "system", "content": system}]
        for event in [*self.events, Event(now)]:
            if event.to not in (None, viewer):
                continue
            role, content = ("assistant", event.own) if event.by == viewer and event.own else ("user", event.text)
            if messages[-1]["role"] == role == "user":
                messages[-1] = {"role": role, "content": f"{messages[-1]['content']} {content}"}
            else:
                messages.append({"role": role, "content": content})
        return messages


class TwoPlayerGame(TextGame):
    """Alice and Bob over at most ``max_rounds`` rounds, each round announced to both."""

    players = ("alice", "bob")

    def __init__(self, max_rounds: int = 20):
        super().__init__()
        self.max_rounds = max_rounds

    @classmethod
    def from_config(cls, cfg, oracle=None):
        return cls(getattr(cfg, cls.name).max_rounds)

    def on_start(self) -> None:
        super().on_start()
        self.setup.setdefault("max_rounds", self.max_rounds)

    def announce_round(self) -> None:
        self.note(f"Round {self.round} of {self.setup['max_rounds']}.")


def rival(player: str) -> str:
    return "bob" if player == "alice" else "alice"


def money(x: float) -> str:
    return f"${x:,.0f}" if float(x).is_integer() else f"${x:,.2f}"


def loss_percent(delta: float) -> str:
    """The per-round loss stated to players: (1 - δ)·100 %, never δ itself
    (docs/method.md §3.1)."""
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
