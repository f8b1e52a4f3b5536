"""The four text games (docs/method.md §3) and their params section.

    cfg = load_section("games", GamesConfig)
    game = make_game("twenty_questions", cfg)   # oracles are built once per process and shared
    game.reset(seed)

See :mod:`src.games.base` for the episode loop and :mod:`src.games.common` for the observation
contract (each policy turn stores the exact chat it acted on).
"""
from __future__ import annotations

from dataclasses import dataclass

from src.game_names import GAME_NAMES
from src.games import bargaining, guess_my_city, negotiation, twenty_questions  # noqa: F401 (register)
from src.games.base import REGISTRY, Game, UnknownGame, game_class
from src.oracles import Oracle, OracleConfig


@dataclass
class TwoPlayerConfig:
    max_rounds: int  # no agreement after this many rounds: no deal

    def validate(self) -> str | None:
        return None if self.max_rounds >= 1 else "max_rounds must be >= 1"


@dataclass
class QuestionsConfig:
    max_turns: int  # questions the agent may ask
    candidates: int  # > 0: the prompt lists this many names, the target among them; 0: whole KB

    def validate(self) -> str | None:
        if self.max_turns < 1 or self.candidates < 0:
            return "need max_turns >= 1 and candidates >= 0"
        return None


@dataclass
class GamesConfig:
    names: list[str]  # the games dvc.yaml's per-game stages run (foreach): every registered game
    bargaining: TwoPlayerConfig
    negotiation: TwoPlayerConfig
    twenty_questions: QuestionsConfig
    guess_my_city: QuestionsConfig
    oracle: OracleConfig

    def validate(self) -> str | None:
        if list(self.names) != list(GAME_NAMES):
            return f"names must list the registered games in order: {list(GAME_NAMES)}"
        return None


def make_game(name: str, cfg: GamesConfig, oracle: Oracle | None = None) -> Game:
    """A new game object; UnknownGame (listing the known games) for a bad name.

    Single-agent games use ``oracle`` if given, else the process-wide one for ``cfg.oracle``.
    """
    return game_class(name).from_config(cfg, oracle)


__all__ = ["GAME_NAMES", "REGISTRY", "Game", "GamesConfig", "QuestionsConfig", "TwoPlayerConfig",
           "UnknownGame", "game_class", "make_game"]
