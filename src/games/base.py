"""The text-environment interface every game implements (after LMRL-Gym).

One ``Game`` object is one episode. The rollout engine drives many of them in lock-step:

    game = make_game("bargaining", games_config, oracle=...)
    game.reset(seed)                 # seed => setup (and hidden target)
    while not game.done:
        player = game.to_move        # "alice" / "bob" / "agent"
        messages = game.observation()   # chat messages for that player (system + user ...)
        game.step(text)              # the player's free text; never raises on bad text
    game.record()                    # the rollout record (docs/method.md §5)

``step`` parses the text tolerantly; unparseable text is an invalid move (``valid: False``)
handled as the game's rules say. Single-agent games append the oracle's answer as an ``env``
turn inside ``step``.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass
class Turn:
    speaker: str  # alice | bob | agent | env
    text: str
    valid: bool = True
    move: dict | None = None  # the parsed move, game specific
    messages: list[dict] | None = None  # policy turns: the exact chat the policy saw
    truncated: bool = False  # policy turns: the reply was cut at max_new_tokens
    action_ids: list[int] | None = None  # generated policy turns: the sampled tokens (no end token)
    # policy turns: the move's true intention, a label the game derives from the parsed move (each
    # game's ``INTENTIONS``); for diagnostics only, the ARIA stages never read it
    intention: str | None = None

    def to_dict(self) -> dict:
        d = {"speaker": self.speaker, "text": self.text, "valid": self.valid, "move": self.move}
        if self.messages is not None:
            d["messages"] = self.messages
        if self.truncated:
            d["truncated"] = True
        if self.action_ids is not None:
            d["action_ids"] = self.action_ids
        if self.intention is not None:
            d["intention"] = self.intention
        return d


def prepare_moves(games: list["Game"], texts: list[str]) -> None:
    """Before a lock-step step applies ``texts`` to ``games``: let each game class do the work
    its moves share (an oracle's model call) in one batch."""
    by_class: dict[type, list[int]] = {}
    for i, game in enumerate(games):
        by_class.setdefault(type(game), []).append(i)
    for cls, rows in by_class.items():
        cls.prepare([games[i] for i in rows], [texts[i] for i in rows])


class Game(ABC):
    name: ClassVar[str]
    players: ClassVar[tuple[str, ...]]  # the roles that act through a policy

    @classmethod
    def prepare(cls, games: list["Game"], texts: list[str]) -> None:
        """Batch work for these moves before they are stepped; most games have none."""

    def __init__(self) -> None:
        self.seed: int | None = None
        self.setup: dict[str, Any] = {}
        self.turns: list[Turn] = []
        self.done = False
        self.outcome: dict[str, Any] = {}
        self.rewards: dict[str, float] = {}

    # -- episode control ---------------------------------------------------------------
    def reset(self, seed: int) -> None:
        """Start an episode whose setup is fully determined by ``seed``."""
        self.start(self.sample_setup(random.Random(seed)), seed)

    def start(self, setup: dict[str, Any], seed: int | None = None) -> None:
        """Start an episode from an explicit setup (evaluation lists, tests)."""
        self.seed, self.setup = seed, dict(setup)
        self.turns, self.done, self.outcome, self.rewards = [], False, {}, {}
        self.on_start()

    # -- to implement ------------------------------------------------------------------
    @abstractmethod
    def sample_setup(self, rng: random.Random) -> dict[str, Any]:
        """Draw the game's parameters and hidden target."""

    def on_start(self) -> None:
        """Initialise per-episode state after ``setup`` is set."""

    @property
    @abstractmethod
    def to_move(self) -> str:
        """The player who acts next (only meaningful while not ``done``)."""

    @abstractmethod
    def observation(self) -> list[dict]:
        """Chat messages ({role, content}) shown to ``to_move`` for its next action."""

    @abstractmethod
    def step(self, text: str) -> None:
        """Apply ``to_move``'s free text. Must never raise on any string."""

    # -- output ------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """The rollout record of docs/method.md §5 (without episode_id / policy, added by the
        engine)."""
        return {
            "game": self.name,
            "seed": self.seed,
            "setup": self.setup,
            "turns": [t.to_dict() for t in self.turns],
            "outcome": self.outcome,
            "rewards": self.rewards,
        }


@dataclass
class GameRegistry:
    factories: dict[str, Any] = field(default_factory=dict)

    def register(self, cls):
        self.factories[cls.name] = cls
        return cls


REGISTRY = GameRegistry()


class UnknownGame(ValueError):
    pass


def game_class(name: str):
    if name not in REGISTRY.factories:
        known = ", ".join(sorted(REGISTRY.factories))
        raise UnknownGame(f"unknown game '{name}'; known games: {known}")
    return REGISTRY.factories[name]
